//! The Genesys Cloud side: OAuth client, region or custom URLs, request budget, and
//! which queues to poll (`GENESYS_QUEUES`, `GENESYS_QUEUES_FILE`, `QUEUE_SHARD`).

use super::error::{ConfigError, Result};
use super::limits::{DEFAULT_REQUESTS_PER_MINUTE, REQUESTS_PER_MINUTE_RANGE};
use super::secrets::{Secret, SECRET_CREDENTIAL_NAME};
use super::urls::base_url;
use super::vars::Vars;
use crate::genesys::region;

#[derive(Debug, Clone)]
pub struct GenesysConfig {
    /// What the user set (`eu-west-1`, a domain, or "custom URLs"), for log lines.
    pub region_label: String,
    pub api_url: String,
    pub login_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Request budget per minute for this OAuth client (`GENESYS_REQUESTS_PER_MINUTE`).
    pub requests_per_minute: u32,
}

/// One entry of `GENESYS_QUEUES` / `GENESYS_QUEUES_FILE`. An empty selection means all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSelector {
    Id(String),
    Name(String),
    /// A name with `*` wildcards.
    Pattern(String),
}

/// `QUEUE_SHARD=i/n`, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// The OAuth client, the API and login URLs (a region, or overrides; a login URL is
/// derived from an API URL of a known region) and the request budget.
pub(super) fn genesys_config(vars: &Vars) -> Result<GenesysConfig> {
    let client_id = vars.required(
        "GENESYS_CLIENT_ID",
        "set it to the OAuth client id (client credentials grant)",
    )?;
    let client_secret = vars.secret("GENESYS_CLIENT_SECRET", SECRET_CREDENTIAL_NAME)?.ok_or_else(|| {
        ConfigError::new(
            "GENESYS_CLIENT_SECRET",
            "is required; set it, or GENESYS_CLIENT_SECRET_FILE, or a systemd credential named genesys_client_secret",
        )
    })?;
    let region_value = vars.optional("GENESYS_REGION");
    let region = region::resolve(region_value.as_deref().unwrap_or(region::DEFAULT_REGION))
        .map_err(|why| ConfigError::new("GENESYS_REGION", why));
    let api_override = vars
        .optional("GENESYS_API_URL")
        .map(|u| base_url("GENESYS_API_URL", &u))
        .transpose()?;
    let login_override = vars
        .optional("GENESYS_LOGIN_URL")
        .map(|u| base_url("GENESYS_LOGIN_URL", &u))
        .transpose()?
        .or_else(|| api_override.as_deref().and_then(region::login_url_for));
    let (region_label, api_url, login_url) = match (api_override, login_override) {
        (Some(api), Some(login)) => (format!("custom ({api})"), api, login),
        (api, login) => {
            let region = region?;
            let label = format!("{} ({})", region.name, region.domain);
            (
                label,
                api.unwrap_or_else(|| region.api_url()),
                login.unwrap_or_else(|| region.login_url()),
            )
        }
    };
    let requests_per_minute = vars.number_within(
        "GENESYS_REQUESTS_PER_MINUTE",
        DEFAULT_REQUESTS_PER_MINUTE.into(),
        REQUESTS_PER_MINUTE_RANGE,
    )?;
    let requests_per_minute = u32::try_from(requests_per_minute).unwrap_or(u32::MAX);
    Ok(GenesysConfig {
        region_label,
        api_url,
        login_url,
        client_id,
        client_secret,
        requests_per_minute,
    })
}

/// `GENESYS_QUEUES` then the lines of `GENESYS_QUEUES_FILE`, duplicates dropped.
pub(super) fn queue_selectors(vars: &Vars) -> Result<Vec<QueueSelector>> {
    let mut selectors: Vec<QueueSelector> = Vec::new();
    if let Some(list) = vars.optional("GENESYS_QUEUES") {
        selectors.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(parse_selector),
        );
    }
    if let Some(path) = vars.optional("GENESYS_QUEUES_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new("GENESYS_QUEUES_FILE", format!("cannot read {path}: {e}"))
        })?;
        selectors.extend(
            text.lines()
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(parse_selector),
        );
    }
    let mut unique = Vec::with_capacity(selectors.len());
    for selector in selectors {
        if !unique.contains(&selector) {
            unique.push(selector);
        }
    }
    Ok(unique)
}

/// A UUID is a queue id, a value with `*` a pattern, anything else an exact name.
pub fn parse_selector(text: &str) -> QueueSelector {
    if is_uuid(text.trim()) {
        QueueSelector::Id(text.trim().to_ascii_lowercase())
    } else if text.contains('*') {
        QueueSelector::Pattern(text.to_string())
    } else {
        QueueSelector::Name(text.to_string())
    }
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub(super) fn parse_shard(text: &str) -> Result<Shard> {
    let invalid = || {
        ConfigError::new(
            "QUEUE_SHARD",
            format!("'{text}' is not a shard; use i/n with 1 ≤ i ≤ n, e.g. 2/4"),
        )
    };
    let (index, count) = text.split_once('/').ok_or_else(invalid)?;
    let index: u32 = index.trim().parse().map_err(|_| invalid())?;
    let count: u32 = count.trim().parse().map_err(|_| invalid())?;
    if index == 0 || count == 0 || index > count {
        return Err(invalid());
    }
    Ok(Shard { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{error, run};
    use crate::config::{from_lookup, Mode};
    use crate::testing::TempDir;
    use std::collections::HashMap;

    #[test]
    fn missing_credentials_name_the_variable() {
        let mut env = HashMap::new();
        env.insert("INFLUXDB_URL".to_string(), "-".to_string());
        let err = from_lookup(&|n| env.get(n).cloned(), Mode::Check).unwrap_err();
        assert_eq!(err.variable, "GENESYS_CLIENT_ID");
        let err = run(&[("GENESYS_CLIENT_SECRET", "")]).unwrap_err();
        assert_eq!(err.variable, "GENESYS_CLIENT_SECRET");
        assert!(err.message.contains("GENESYS_CLIENT_SECRET_FILE"));
    }

    #[test]
    fn region_by_name_domain_or_override() {
        assert_eq!(
            run(&[("GENESYS_REGION", "eu-west-1")])
                .unwrap()
                .genesys
                .api_url,
            "https://api.mypurecloud.ie"
        );
        assert_eq!(
            run(&[("GENESYS_REGION", "mypurecloud.de")])
                .unwrap()
                .genesys
                .login_url,
            "https://login.mypurecloud.de"
        );
        let err = error(&[("GENESYS_REGION", "nowhere")]);
        assert!(
            err.starts_with("GENESYS_REGION: 'nowhere' is not a known"),
            "{err}"
        );
        let c = run(&[
            ("GENESYS_REGION", "nowhere"),
            ("GENESYS_API_URL", "http://127.0.0.1:9000/"),
            ("GENESYS_LOGIN_URL", "http://127.0.0.1:9001"),
        ])
        .unwrap();
        assert_eq!(c.genesys.api_url, "http://127.0.0.1:9000");
        assert_eq!(c.genesys.login_url, "http://127.0.0.1:9001");
        assert!(error(&[("GENESYS_API_URL", "ftp://x")]).starts_with("GENESYS_API_URL:"));
    }

    #[test]
    fn queue_selectors_mix_ids_names_and_patterns() {
        let c = run(&[(
            "GENESYS_QUEUES",
            "118FD762-9005-45cf-9fad-a87f37eacbc3, Support*, Sales EMEA,,Sales EMEA",
        )])
        .unwrap();
        assert_eq!(
            c.queues,
            vec![
                QueueSelector::Id("118fd762-9005-45cf-9fad-a87f37eacbc3".into()),
                QueueSelector::Pattern("Support*".into()),
                QueueSelector::Name("Sales EMEA".into()),
            ]
        );
    }

    #[test]
    fn queue_file_keeps_commas_in_names() {
        let temp = TempDir::new("config-queues");
        let path = temp.0.join("queues");
        std::fs::write(&path, "# comment\nSales, EMEA = \"Tier 1\"\n\n*VIP*\r\n").unwrap();
        let c = run(&[("GENESYS_QUEUES_FILE", &path.display().to_string())]).unwrap();
        assert_eq!(
            c.queues,
            vec![
                QueueSelector::Name("Sales, EMEA = \"Tier 1\"".into()),
                QueueSelector::Pattern("*VIP*".into())
            ]
        );
        assert_eq!(
            error(&[("GENESYS_QUEUES_FILE", "/nonexistent")])
                .split(':')
                .next(),
            Some("GENESYS_QUEUES_FILE")
        );
    }

    #[test]
    fn shard_accepts_only_i_of_n() {
        assert_eq!(parse_shard("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(parse_shard("1/1"), Ok(Shard { index: 1, count: 1 }));
        for bad in ["3/2", "0/0", "0/3", "x", "1/", "/2", "1/2/3", "-1/2"] {
            let err = parse_shard(bad).unwrap_err();
            assert_eq!(err.variable, "QUEUE_SHARD");
            assert!(
                err.message.contains("use i/n with 1 ≤ i ≤ n"),
                "{bad}: {err}"
            );
        }
    }
}
