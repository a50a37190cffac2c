//! Genesys Cloud regions: a region name (`eu-west-1`) or domain (`mypurecloud.ie`) becomes
//! the API and login base URLs. The table is the one the official SDKs ship
//! (docs/genesys-api.md#regions).

/// `(AWS-style region name, domain)` for every region the current SDKs know.
pub const REGIONS: [(&str, &str); 18] = [
    ("us-east-1", "mypurecloud.com"),
    ("us-east-2", "use2.us-gov-pure.cloud"),
    ("us-west-2", "usw2.pure.cloud"),
    ("ca-central-1", "cac1.pure.cloud"),
    ("sa-east-1", "sae1.pure.cloud"),
    ("mx-central-1", "mxc1.pure.cloud"),
    ("eu-west-1", "mypurecloud.ie"),
    ("eu-west-2", "euw2.pure.cloud"),
    ("eu-central-1", "mypurecloud.de"),
    ("eu-central-2", "euc2.pure.cloud"),
    ("eusc-de-east-1", "edee1.eusc-pure.cloud"),
    ("me-central-1", "mec1.pure.cloud"),
    ("ap-south-1", "aps1.pure.cloud"),
    ("ap-southeast-1", "apse1.pure.cloud"),
    ("ap-southeast-2", "mypurecloud.com.au"),
    ("ap-northeast-1", "mypurecloud.jp"),
    ("ap-northeast-2", "apne2.pure.cloud"),
    ("ap-northeast-3", "apne3.pure.cloud"),
];

/// The default region, as the contract sets it.
pub const DEFAULT_REGION: &str = "mypurecloud.com";

/// A known region, resolved to the hosts the service talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub name: &'static str,
    pub domain: &'static str,
}

impl Region {
    pub fn api_url(&self) -> String {
        format!("https://api.{}", self.domain)
    }

    pub fn login_url(&self) -> String {
        format!("https://login.{}", self.domain)
    }
}

/// The login base for an API base, derived as the official SDKs do (`//api.` →
/// `//login.`), so `GENESYS_API_URL` alone does not send the login to the default region.
/// `None` when the API base has no `api.` host (a loopback simulator, a gateway): the
/// login base then comes from `GENESYS_LOGIN_URL` or the region, as before.
pub fn login_url_for(api_url: &str) -> Option<String> {
    // ASCII lowercasing keeps every byte offset, so `at` is an offset in `api_url` too.
    let at = api_url.to_ascii_lowercase().find("//api.")?;
    let scheme = api_url.get(..at)?;
    let host = api_url.get(at + "//api.".len()..)?;
    Some(format!("{scheme}//login.{host}"))
}

/// Accepts a region name or domain, case-insensitively, with an optional `api.`/`login.`
/// prefix pasted from a URL. `Err` lists every accepted value.
pub fn resolve(value: &str) -> Result<Region, String> {
    let wanted = value.trim().to_ascii_lowercase();
    let wanted = wanted
        .strip_prefix("https://")
        .unwrap_or(&wanted)
        .trim_end_matches('/');
    let wanted = wanted
        .strip_prefix("api.")
        .or_else(|| wanted.strip_prefix("login."))
        .unwrap_or(wanted);
    REGIONS
        .iter()
        .find(|(name, domain)| *name == wanted || *domain == wanted)
        .map(|&(name, domain)| Region { name, domain })
        .ok_or_else(|| {
            let known: Vec<String> = REGIONS.iter().map(|(n, d)| format!("{n} ({d})")).collect();
            format!(
                "'{value}' is not a known Genesys Cloud region; use one of: {}; or set GENESYS_API_URL and GENESYS_LOGIN_URL",
                known.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_region_resolves_by_name_and_by_domain() {
        for (name, domain) in REGIONS {
            assert_eq!(resolve(name).unwrap().domain, domain);
            assert_eq!(resolve(domain).unwrap().name, name);
        }
    }

    #[test]
    fn builds_both_hosts() {
        let region = resolve("eu-central-1").unwrap();
        assert_eq!(region.api_url(), "https://api.mypurecloud.de");
        assert_eq!(region.login_url(), "https://login.mypurecloud.de");
    }

    #[test]
    fn the_login_base_is_derived_from_an_api_host() {
        assert_eq!(
            login_url_for("https://api.mypurecloud.ie").as_deref(),
            Some("https://login.mypurecloud.ie")
        );
        assert_eq!(
            login_url_for("https://API.example.net:8443/prefix").as_deref(),
            Some("https://login.example.net:8443/prefix")
        );
        assert_eq!(login_url_for("http://127.0.0.1:9000"), None);
        assert_eq!(login_url_for("https://gateway.example/api.v2"), None);
    }

    #[test]
    fn tolerates_case_and_pasted_hosts() {
        assert_eq!(resolve("MyPureCloud.IE").unwrap().name, "eu-west-1");
        assert_eq!(resolve("api.mypurecloud.de").unwrap().name, "eu-central-1");
        assert_eq!(
            resolve("https://login.usw2.pure.cloud/").unwrap().name,
            "us-west-2"
        );
    }

    #[test]
    fn unknown_region_lists_the_valid_ones() {
        let err = resolve("mars-1").unwrap_err();
        assert!(err.contains("'mars-1' is not a known"));
        assert!(err.contains("eu-west-1 (mypurecloud.ie)"));
        assert!(err.contains("ap-northeast-3 (apne3.pure.cloud)"));
    }
}
