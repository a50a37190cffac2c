//! Base URLs of Genesys Cloud and InfluxDB: checked once, with a trailing slash dropped.
//!
//! User info (`user:password@`) is refused and never echoed, because a URL is printed in
//! logs and by `check`, while credentials have variables of their own.

use super::error::{ConfigError, Result};

/// Checks an `http(s)://host[:port][/path]` base URL and drops a trailing slash. User
/// info (`user:password@`) is refused, and never echoed: credentials have their own
/// variables, and a URL is printed in logs and by `check`.
pub(super) fn base_url(variable: &str, value: &str) -> Result<String> {
    let shown = without_userinfo(value);
    let invalid = |why: &str| ConfigError::new(variable, format!("'{shown}' {why}"));
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(invalid(&format!(
            "holds user info (user:password@), which is never sent; {}",
            credentials_hint(variable)
        )));
    }
    if value.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains a space or a control character"));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(
            "has a query or fragment; give only scheme, host, port and path",
        ));
    }
    let (host, port) = split_host_port(authority);
    if host.is_empty() {
        return Err(invalid("has no host"));
    }
    if !is_host(host) {
        return Err(invalid(&format!("has an invalid host '{host}'")));
    }
    if let Some(port) = port {
        if port.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
            return Err(invalid(&format!(
                "has port '{port}'; a port is a number from 1 to 65535"
            )));
        }
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn credentials_hint(variable: &str) -> &'static str {
    if variable.starts_with("INFLUXDB") {
        "set INFLUXDB_USERNAME and INFLUXDB_PASSWORD (or INFLUXDB_TOKEN) instead"
    } else {
        "the OAuth client goes in GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET"
    }
}

/// `value` with anything before an `@` in its authority replaced by `***`.
fn without_userinfo(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), value),
    };
    // `find` gives a char boundary, so the split cannot panic.
    let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}***@{host}{after}"),
        None => value.to_string(),
    }
}

/// `host:port`, `[v6]:port`, or either without a port.
pub(super) fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        // The host keeps its `]`.
        return match authority
            .find(']')
            .and_then(|end| authority.split_at_checked(end + 1))
        {
            Some((host, "")) => (host, None),
            Some((host, rest)) => (host, Some(rest.strip_prefix(':').unwrap_or(rest))),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// A DNS name or IPv4 address, or a bracketed IPv6 address.
pub(super) fn is_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        }
        None => host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{error, run};
    use crate::config::{InfluxTarget, V1Auth};

    #[test]
    fn urls_need_a_host_and_a_valid_port_and_no_user_info() {
        for (value, message) in [
            ("http://127.0.0.1:99999", "'http://127.0.0.1:99999' has port '99999'; a port is a number from 1 to 65535"),
            ("http://127.0.0.1:0", "'http://127.0.0.1:0' has port '0'; a port is a number from 1 to 65535"),
            ("http://host:", "'http://host:' has port ''; a port is a number from 1 to 65535"),
            ("http://:8086", "'http://:8086' has no host"),
            ("http://ho st", "'http://ho st' contains a space or a control character"),
            ("http://host/x?db=a", "'http://host/x?db=a' has a query or fragment; give only scheme, host, port and path"),
            ("http://user:PW@host:8086", "'http://***@host:8086' holds user info (user:password@), which is never sent; set INFLUXDB_USERNAME and INFLUXDB_PASSWORD (or INFLUXDB_TOKEN) instead"),
            ("user:PW@host:8086", "'***@host:8086' must start with http:// or https://"),
        ] {
            assert_eq!(error(&[("INFLUXDB_URL", value)]), format!("INFLUXDB_URL: {message}"));
        }
        let err = error(&[("GENESYS_API_URL", "https://id:secret@api.example.com")]);
        assert!(
            err.starts_with("GENESYS_API_URL: 'https://***@api.example.com' holds user info"),
            "{err}"
        );
        assert!(!err.contains("secret@"), "{err}");
        for good in [
            "http://[::1]:8086",
            "https://influx.example.com/prefix/",
            "http://h_1.local:1",
        ] {
            run(&[("INFLUXDB_URL", good)]).unwrap();
        }
        assert_eq!(
            run(&[("INFLUXDB_URL", "http://[::1]:8086/")])
                .unwrap()
                .influx,
            InfluxTarget::V1 {
                url: "http://[::1]:8086".into(),
                database: "genesys".into(),
                retention_policy: None,
                auth: V1Auth::None
            }
        );
    }
}
