//! The proxy variables, read as curl reads them, checked once.
//!
//! `https_proxy`/`HTTPS_PROXY` serves `https://` destinations (Genesys Cloud, an HTTPS
//! InfluxDB), `http_proxy`/`HTTP_PROXY` serves `http://` ones (a plain-HTTP InfluxDB),
//! `all_proxy`/`ALL_PROXY` both when the scheme's own variable is unset; the lower-case
//! form wins over the upper-case one, and an empty value means no proxy. `no_proxy`/
//! `NO_PROXY` lists the destinations reached directly (`http::no_proxy`).
//!
//! Only HTTP proxies are supported (`http://[user:password@]host[:port]`, port 80 when
//! left out). Any other value (SOCKS, TLS to the proxy, a typo) exits 78 naming the
//! variable, instead of being ignored and connecting directly. The value is never
//! echoed: it may hold the proxy password.

use std::fmt;

use super::error::{ConfigError, Result};
use super::secrets::Secret;
use super::urls::{is_host, split_host_port};
use super::vars::Vars;
use crate::http::no_proxy::NoProxy;

/// Port of an HTTP proxy whose URL names none (the scheme's default, as ureq, Go and
/// Python use; curl alone assumes 1080).
pub const DEFAULT_PROXY_PORT: u16 = 80;

/// Which proxy serves which destinations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// For `https://` destinations.
    pub https: Option<ProxyUrl>,
    /// For `http://` destinations.
    pub http: Option<ProxyUrl>,
    pub no_proxy: NoProxy,
    /// The variable `no_proxy` was read from, for messages.
    pub no_proxy_variable: Option<&'static str>,
}

/// One HTTP proxy and the variable that named it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub variable: &'static str,
    /// A name, an IPv4 address, or a bracketed IPv6 address.
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<Secret>,
}

impl ProxyUrl {
    pub fn has_credentials(&self) -> bool {
        self.username.is_some() || self.password.is_some()
    }

    /// The whole `Proxy-Authorization: Basic …\r\n` line, if the URL has credentials:
    /// for the absolute-form requests and the `CONNECT` of the websocket alike.
    pub fn authorization(&self) -> Option<String> {
        self.has_credentials().then(|| {
            format!(
                "Proxy-Authorization: {}\r\n",
                crate::http::basic_auth(
                    self.username.as_deref().unwrap_or_default(),
                    self.password
                        .as_ref()
                        .map(|p| p.expose())
                        .unwrap_or_default()
                )
            )
        })
    }
}

/// `http://host:port`, credentials never shown.
impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = if self.has_credentials() { "***@" } else { "" };
        write!(f, "http://{hidden}{}:{}", self.host, self.port)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self, self.variable)
    }
}

const HTTPS_VARIABLES: [&str; 2] = ["https_proxy", "HTTPS_PROXY"];
const HTTP_VARIABLES: [&str; 2] = ["http_proxy", "HTTP_PROXY"];
const ALL_VARIABLES: [&str; 2] = ["all_proxy", "ALL_PROXY"];
const NO_PROXY_VARIABLES: [&str; 2] = ["no_proxy", "NO_PROXY"];

pub(super) fn proxy_config(vars: &Vars) -> Result<ProxyConfig> {
    let all = first_set(vars, &ALL_VARIABLES)
        .map(|(variable, value)| parse(variable, &value))
        .transpose()?;
    let for_scheme = |names: &[&'static str]| -> Result<Option<ProxyUrl>> {
        match first_set(vars, names) {
            Some((variable, value)) => parse(variable, &value).map(Some),
            None => Ok(all.clone()),
        }
    };
    let no_proxy = first_set(vars, &NO_PROXY_VARIABLES);
    Ok(ProxyConfig {
        https: for_scheme(&HTTPS_VARIABLES)?,
        http: for_scheme(&HTTP_VARIABLES)?,
        no_proxy: no_proxy
            .as_ref()
            .map(|(_, value)| NoProxy::parse(value))
            .unwrap_or_default(),
        no_proxy_variable: no_proxy.map(|(variable, _)| variable),
    })
}

/// Warnings for `NO_PROXY` entries of no known form (they match nothing).
pub(super) fn warnings(config: &ProxyConfig) -> Vec<String> {
    let variable = config.no_proxy_variable.unwrap_or("NO_PROXY");
    config
        .no_proxy
        .ignored
        .iter()
        .map(|entry| {
            format!(
                "{variable}: entry '{entry}' is not a host name, IP address, CIDR network \
                 (10.0.0.0/8) or host:port, so it matches nothing"
            )
        })
        .collect()
}

fn first_set(vars: &Vars, names: &[&'static str]) -> Option<(&'static str, String)> {
    names
        .iter()
        .find_map(|name| vars.optional(name).map(|value| (*name, value)))
}

/// Reads `[http://][user[:password]@]host[:port][/]`.
fn parse(variable: &'static str, value: &str) -> Result<ProxyUrl> {
    let refuse = |why: &str| ConfigError::new(variable, why.to_string());
    let rest =
        match value.split_once("://") {
            None => value,
            Some((scheme, rest)) => {
                match scheme.to_ascii_lowercase().as_str() {
                    "http" => rest,
                    "https" => return Err(refuse(
                        "a TLS connection to the proxy itself (https://) is not supported; give \
                     the proxy as http://host:port (HTTPS destinations are still encrypted end \
                     to end through its CONNECT tunnel)",
                    )),
                    socks if socks.starts_with("socks") => {
                        return Err(refuse(&format!(
                            "SOCKS proxies ({socks}://) are not supported; give an HTTP proxy as \
                     http://host:port"
                        )))
                    }
                    _ => return Err(refuse(
                        "has an unknown scheme; give the proxy as http://[user:password@]host:port",
                    )),
                }
            }
        };
    if value.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(refuse("contains a space or a control character"));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err(refuse(
            "has a path, query or fragment; give the proxy as http://[user:password@]host:port",
        ));
    }
    let (userinfo, authority) = match rest.rsplit_once('@') {
        Some((userinfo, authority)) => (Some(userinfo), authority),
        None => (None, rest),
    };
    let (host, port) = split_host_port(authority);
    if host.is_empty() || !is_host(host) {
        return Err(refuse(
            "has no valid host; give the proxy as http://[user:password@]host:port",
        ));
    }
    let port = match port {
        None => DEFAULT_PROXY_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| refuse("has an invalid port; a port is a number from 1 to 65535"))?,
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(userinfo) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (userinfo, None),
            };
            let decode = |text: &str| {
                percent_decode(text).ok_or_else(|| {
                    refuse(
                        "has user info that is not valid percent-encoded UTF-8; encode @ : / % \
                         in the user name and password as %40 %3A %2F %25",
                    )
                })
            };
            (
                Some(decode(user)?),
                password.map(decode).transpose()?.map(Secret::new),
            )
        }
    };
    Ok(ProxyUrl {
        variable,
        host: host.to_string(),
        port,
        username,
        password,
    })
}

/// `%XX` decoded once; `None` for a broken escape or invalid UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use crate::config::tests::run;

    fn proxies(pairs: &[(&str, &str)]) -> (Option<String>, Option<String>) {
        let config = run(pairs).unwrap().http.proxy;
        (
            config.https.map(|p| format!("{p:?}")),
            config.http.map(|p| format!("{p:?}")),
        )
    }

    #[test]
    fn each_scheme_has_its_variable_and_all_proxy_fills_in() {
        assert_eq!(proxies(&[]), (None, None));
        assert_eq!(
            proxies(&[("HTTPS_PROXY", "http://proxy:3128")]),
            (Some("http://proxy:3128 (HTTPS_PROXY)".into()), None)
        );
        assert_eq!(
            proxies(&[("HTTP_PROXY", "proxy:8080")]),
            (None, Some("http://proxy:8080 (HTTP_PROXY)".into()))
        );
        assert_eq!(
            proxies(&[("ALL_PROXY", "http://all:1"), ("https_proxy", "http://s:2")]),
            (
                Some("http://s:2 (https_proxy)".into()),
                Some("http://all:1 (ALL_PROXY)".into())
            )
        );
        assert_eq!(
            proxies(&[
                ("https_proxy", "http://lower:1"),
                ("HTTPS_PROXY", "http://upper:2")
            ]),
            (Some("http://lower:1 (https_proxy)".into()), None)
        );
        assert_eq!(
            proxies(&[("HTTPS_PROXY", "http://[::1]")]),
            (Some("http://[::1]:80 (HTTPS_PROXY)".into()), None)
        );
    }

    #[test]
    fn credentials_are_decoded_and_never_shown() {
        let config = run(&[("HTTPS_PROXY", "http://us%40er:p%3Ass@proxy:3128/")]).unwrap();
        let proxy = config.http.proxy.https.unwrap();
        assert_eq!(proxy.username.as_deref(), Some("us@er"));
        assert_eq!(proxy.password.as_ref().map(|p| p.expose()), Some("p:ss"));
        assert_eq!(proxy.to_string(), "http://***@proxy:3128");
        assert!(!format!("{proxy:?}").contains("p:ss"));
    }

    #[test]
    fn an_unusable_proxy_exits_78_naming_the_variable_without_echoing_it() {
        for (variable, value, message) in [
            (
                "HTTPS_PROXY",
                "socks5://u:SECRET@proxy:1080",
                "SOCKS proxies (socks5://) are not supported",
            ),
            (
                "https_proxy",
                "socks5h://proxy:1080",
                "SOCKS proxies (socks5h://) are not supported",
            ),
            (
                "ALL_PROXY",
                "https://proxy:443",
                "a TLS connection to the proxy itself (https://) is not supported",
            ),
            ("HTTP_PROXY", "htp://proxy:3128", "has an unknown scheme"),
            ("http_proxy", "http://proxy:99999", "has an invalid port"),
            ("HTTPS_PROXY", "http://proxy:port", "has an invalid port"),
            ("HTTPS_PROXY", "http://", "has no valid host"),
            (
                "HTTPS_PROXY",
                "http://u:SECRET@pro xy:3128",
                "contains a space",
            ),
            ("HTTPS_PROXY", "http://pro!xy:3128", "has no valid host"),
            ("HTTPS_PROXY", "http://proxy:3128/path", "has a path"),
            (
                "HTTPS_PROXY",
                "http://u:SECRET%zz@proxy:3128",
                "not valid percent-encoded",
            ),
        ] {
            let err = match run(&[(variable, value)]) {
                Ok(_) => panic!("{variable}={value} accepted"),
                Err(e) => e.to_string(),
            };
            assert!(err.starts_with(&format!("{variable}: ")), "{err}");
            assert!(err.contains(message), "{value}: {err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn unknown_no_proxy_entries_are_warned_about() {
        let config = run(&[("NO_PROXY", "localhost, bad!entry")]).unwrap();
        assert!(
            config
                .warnings
                .iter()
                .any(|w| w.starts_with("NO_PROXY: entry 'bad!entry' is not a host name")),
            "{:?}",
            config.warnings
        );
        assert!(config.http.proxy.no_proxy.matches("localhost", 1));
    }
}
