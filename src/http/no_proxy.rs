//! `NO_PROXY`: which destinations are reached directly although a proxy is set.
//!
//! ureq's own matcher knows exact names and `.suffix` only, so `localhost, 127.0.0.1`
//! (with a space), `10.0.0.0/8` or `influx:8086` silently sent an internal InfluxDB
//! through the corporate proxy. This follows curl's rules, plus ports as Go and most
//! tools read them:
//!
//! - entries are separated by commas (or blanks), blanks around them are ignored;
//! - `*` matches every destination;
//! - a name matches itself and every name below it: `example.com`, `.example.com` and
//!   `*.example.com` all match `example.com` and `a.example.com`, not `badexample.com`;
//!   case does not matter, a trailing dot neither;
//! - an IPv4 or IPv6 address matches that address, `10.0.0.0/8` or `fd00::/8` every
//!   address in the network (only when the destination is given as an address: no name
//!   is looked up);
//! - `host:port` (`[v6]:port` for IPv6) matches that port only.
//!
//! Pure: parsed once at start-up ([`NoProxy::parse`]), asked per connection.

use std::net::IpAddr;

/// The parsed `NO_PROXY` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    entries: Vec<Entry>,
    /// Entries that are none of the forms above (shown by `check`, logged at start-up).
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    All,
    /// A lower-case name without leading `*.`/`.` or trailing dot.
    Domain {
        name: String,
        port: Option<u16>,
    },
    /// An address and how many leading bits of it must match.
    Network {
        address: IpAddr,
        prefix: u8,
        port: Option<u16>,
    },
}

impl NoProxy {
    /// Reads a `NO_PROXY` value; entries of no known form are kept in `ignored`.
    pub fn parse(value: &str) -> NoProxy {
        let mut list = NoProxy::default();
        for token in value
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
        {
            match parse_entry(token) {
                Some(entry) => list.entries.push(entry),
                None => list.ignored.push(token.to_string()),
            }
        }
        list
    }

    /// True when a connection to `host` (a name, an address, or `[v6]`) on `port` must
    /// not use the proxy.
    pub fn matches(&self, host: &str, port: u16) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        let host = unbracket(host).trim_end_matches('.');
        let address = host.parse::<IpAddr>().ok();
        let name = host.to_ascii_lowercase();
        self.entries
            .iter()
            .any(|entry| entry.matches(&name, address, port))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Entry {
    fn matches(&self, name: &str, address: Option<IpAddr>, port: u16) -> bool {
        let port_matches = |wanted: &Option<u16>| wanted.is_none_or(|p| p == port);
        match self {
            Entry::All => true,
            Entry::Domain {
                name: entry,
                port: wanted,
            } => {
                port_matches(wanted)
                    && address.is_none()
                    && (name == entry
                        || name
                            .strip_suffix(entry.as_str())
                            .is_some_and(|above| above.ends_with('.')))
            }
            Entry::Network {
                address: network,
                prefix,
                port: wanted,
            } => port_matches(wanted) && address.is_some_and(|a| in_network(a, *network, *prefix)),
        }
    }
}

fn parse_entry(token: &str) -> Option<Entry> {
    if token == "*" {
        return Some(Entry::All);
    }
    if let Some(inside) = token.strip_prefix('[') {
        // `[v6]`, `[v6]:port` or `[v6/bits]`.
        let (inside, after) = inside.split_once(']')?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':')?)?),
        };
        return network(inside, port);
    }
    if token.contains('/') || token.parse::<IpAddr>().is_ok() {
        return network(token, None);
    }
    let (host, port) = match token.rsplit_once(':') {
        Some((host, port)) => (host, Some(parse_port(port)?)),
        None => (token, None),
    };
    if host.parse::<IpAddr>().is_ok() {
        return network(host, port);
    }
    domain(host, port)
}

fn network(text: &str, port: Option<u16>) -> Option<Entry> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, bits)) => (address.parse::<IpAddr>().ok()?, Some(bits)),
        None => (text.parse::<IpAddr>().ok()?, None),
    };
    let width = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        None => width,
        Some(bits) => bits.parse::<u8>().ok().filter(|b| *b <= width)?,
    };
    Some(Entry::Network {
        address,
        prefix,
        port,
    })
}

fn domain(text: &str, port: Option<u16>) -> Option<Entry> {
    let name = text
        .strip_prefix("*.")
        .or_else(|| text.strip_prefix('.'))
        .unwrap_or(text)
        .trim_end_matches('.');
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'));
    valid.then(|| Entry::Domain {
        name: name.to_ascii_lowercase(),
        port,
    })
}

fn parse_port(text: &str) -> Option<u16> {
    text.parse::<u16>().ok().filter(|p| *p > 0)
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// True when the first `prefix` bits of `address` and `network` are equal (same family).
fn in_network(address: IpAddr, network: IpAddr, prefix: u8) -> bool {
    let (a, n, width) = match (address, network) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        _ => return false,
    };
    let shift = width - u32::from(prefix);
    // A shift of 128 would overflow: a /0 network holds every address of its family.
    shift >= 128 || (a >> shift) == (n >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn follows_curls_rules_and_ports() {
        #[rustfmt::skip]
        let table: &[(&str, &str, u16, bool)] = &[
            // (NO_PROXY, host, port, reached directly)
            ("", "localhost", 80, false),
            ("localhost, 127.0.0.1", "127.0.0.1", 8086, true),
            ("localhost, 127.0.0.1", "localhost", 8086, true),
            ("  localhost ,\t127.0.0.1  ", "127.0.0.1", 1, true),
            ("localhost 127.0.0.1", "127.0.0.1", 1, true),
            ("*", "api.mypurecloud.com", 443, true),
            ("a.com,*", "b.com", 443, true),
            ("example.com", "example.com", 443, true),
            ("example.com", "a.example.com", 443, true),
            ("example.com", "a.b.example.com", 443, true),
            ("example.com", "badexample.com", 443, false),
            ("example.com", "example.com.evil.net", 443, false),
            (".example.com", "a.example.com", 443, true),
            (".example.com", "example.com", 443, true),
            ("*.example.com", "a.example.com", 443, true),
            ("Example.COM", "A.example.com", 443, true),
            ("example.com.", "a.example.com", 443, true),
            ("example.com", "a.example.com.", 443, true),
            ("127.0.0.0/8", "127.0.0.1", 8086, true),
            ("127.0.0.0/8", "127.255.0.9", 8086, true),
            ("127.0.0.0/8", "128.0.0.1", 8086, false),
            ("10.0.0.0/8", "10.20.30.40", 8086, true),
            ("10.0.0.0/8", "11.0.0.1", 8086, false),
            ("192.168.1.0/24", "192.168.1.200", 80, true),
            ("192.168.1.0/24", "192.168.2.1", 80, false),
            ("0.0.0.0/0", "8.8.8.8", 80, true),
            ("0.0.0.0/0", "[::1]", 80, false),
            ("10.0.0.0/8", "ten.example.com", 80, false),
            ("127.0.0.1", "127.0.0.2", 80, false),
            ("::1", "[::1]", 8086, true),
            ("[::1]", "[::1]", 8086, true),
            ("::1/128", "[::1]", 8086, true),
            ("fd00::/8", "[fd12:3456::1]", 8086, true),
            ("fd00::/8", "[fe80::1]", 8086, false),
            ("::/0", "[2001:db8::1]", 443, true),
            ("::/0", "10.0.0.1", 443, false),
            ("[::1]:8086", "[::1]", 8086, true),
            ("[::1]:8086", "[::1]", 8087, false),
            ("influx:8086", "influx", 8086, true),
            ("influx:8086", "influx", 443, false),
            ("influx:8086", "db.influx", 8086, true),
            ("127.0.0.1:8086", "127.0.0.1", 8086, true),
            ("127.0.0.1:8086", "127.0.0.1", 9999, false),
            ("10.0.0.0/33", "10.0.0.1", 80, false),
            ("not a host!", "not", 80, true),
            ("ex ample.com", "ample.com", 80, true),
            ("bad!name", "bad!name", 80, false),
            ("localhost", "127.0.0.1", 80, false),
        ];
        for (no_proxy, host, port, direct) in table {
            assert_eq!(
                NoProxy::parse(no_proxy).matches(host, *port),
                *direct,
                "NO_PROXY={no_proxy:?} host={host} port={port}"
            );
        }
    }

    #[test]
    fn entries_of_no_known_form_are_reported() {
        let list = NoProxy::parse("localhost,bad!name,10.0.0.0/33,[::1,host:99999,*");
        assert_eq!(
            list.ignored,
            ["bad!name", "10.0.0.0/33", "[::1", "host:99999"]
        );
        assert_eq!(list.entries.len(), 2);
    }

    /// A host the way a URL carries it, and the same host written as a `NO_PROXY` entry.
    fn host() -> impl Strategy<Value = (String, String)> {
        prop_oneof![
            "[a-zA-Z0-9_-]{1,10}(\\.[a-zA-Z0-9_-]{1,10}){0,3}".prop_map(|h| (h.clone(), h)),
            any::<std::net::Ipv4Addr>().prop_map(|a| (a.to_string(), a.to_string())),
            any::<std::net::Ipv6Addr>().prop_map(|a| (format!("[{a}]"), format!("[{a}]"))),
            any::<std::net::Ipv6Addr>().prop_map(|a| (format!("[{a}]"), a.to_string())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_parses_and_matches_without_panicking(value in any::<String>(), host in any::<String>(), port: u16) {
            let _ = NoProxy::parse(&value).matches(&host, port);
        }

        #[test]
        fn an_entry_always_matches_itself((host, entry) in host(), port in 1u16.., with_port: bool, prefix_bits in 0u8..=128) {
            let entry = if with_port && (!entry.contains(':') || entry.starts_with('[')) {
                format!("{entry}:{port}")
            } else {
                entry
            };
            prop_assert!(NoProxy::parse(&entry).matches(&host, port), "{entry} vs {host}:{port}");
            let listed = format!(" x.invalid ,{entry} ");
            prop_assert!(NoProxy::parse(&listed).matches(&host, port), "{listed}");
            if let Ok(address) = unbracket(&host).parse::<IpAddr>() {
                let bits = prefix_bits.min(if address.is_ipv4() { 32 } else { 128 });
                let cidr = format!("{address}/{bits}");
                prop_assert!(NoProxy::parse(&cidr).matches(&host, port), "{cidr} vs {host}");
            }
        }
    }
}
