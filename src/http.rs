//! The one place HTTP agents are built, so Genesys and InfluxDB share the same timeout,
//! proxy and trust settings (`HTTP_TIMEOUT`, `HTTPS_PROXY`/`NO_PROXY`, `TLS_CA_FILE`).
//!
//! Agents never turn a 4xx/5xx into an error: callers read the status, headers and body
//! themselves, because both APIs put the reason for a failure in the body.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::unversioned::transport::{Connector, RustlsConnector, TcpConnector};

use resolver::CachingResolver;
use route::{RouteConnector, RoutedResolver};

use crate::config::HttpConfig;

mod forward;
pub mod no_proxy;
mod resolver;
pub mod route;

/// Each pooled connection keeps an input and an output buffer (ureq's default: 128 KiB
/// each), and up to four Genesys requests run at once: 1 MB resident for buffers alone.
/// The input buffer must hold a whole response header (ureq allows 64 KiB of them); the
/// output buffer only stages the request, whose body is a few KB (Genesys) or ≤ 512 KiB
/// of gzip written through it in pieces (InfluxDB).
const INPUT_BUFFER_BYTES: usize = 64 * 1024;
const OUTPUT_BUFFER_BYTES: usize = 16 * 1024;

/// Builds an agent with the configured timeout on connect and on the whole call, the
/// proxies of the configuration applied per destination (`route`), the bundled web PKI
/// roots plus `TLS_CA_FILE`, and host names looked up once a minute (`resolver`).
pub fn agent(http: &HttpConfig) -> Result<ureq::Agent, String> {
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::from(roots(http.tls_ca_file.as_deref())?))
        .unversioned_rustls_crypto_provider(tls_provider())
        .build();
    let config = |proxy: Option<ureq::Proxy>| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(http.timeout))
            .timeout_global(Some(http.timeout))
            .max_idle_age(Duration::from_secs(50))
            .input_buffer_size(INPUT_BUFFER_BYTES)
            .output_buffer_size(OUTPUT_BUFFER_BYTES)
            .user_agent(concat!("genesys2influx/", env!("CARGO_PKG_VERSION")))
            .proxy(proxy)
            .tls_config(tls.clone())
            .build()
    };
    let proxies = Arc::new(http.proxy.clone());
    let routes = RouteConnector::new(
        proxies.clone(),
        config,
        (INPUT_BUFFER_BYTES, OUTPUT_BUFFER_BYTES),
    )?;
    let connector =
        ().chain(routes)
            .chain(TcpConnector::default())
            .chain(RustlsConnector::default());
    let resolver = RoutedResolver {
        proxies,
        inner: CachingResolver::default(),
    };
    Ok(ureq::Agent::with_parts(config(None), connector, resolver))
}

/// A readable reason for a transport failure (never contains headers or credentials).
pub fn describe_error(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(what) => format!("timed out ({what})"),
        ureq::Error::HostNotFound => "host not found (DNS)".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        ureq::Error::Io(e) => format!("I/O error: {e}"),
        // Written by `route` and `forward`: names the proxy (credentials hidden).
        ureq::Error::ConnectProxyFailed(reason) => reason.clone(),
        other => other.to_string(),
    }
}

/// The TLS provider of every connection, HTTP and websocket alike: rustls with ring.
pub(crate) fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What every connection trusts, the agent's and the notifications websocket's alike: the
/// bundled web PKI roots, plus every certificate in the PEM file `TLS_CA_FILE` names.
pub(crate) fn roots(ca_file: Option<&Path>) -> Result<Vec<Certificate<'static>>, String> {
    let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if let Some(path) = ca_file {
        add_ca_file(&mut roots, path)?;
    }
    Ok(roots)
}

/// Adds every certificate in the PEM file at `path`; one without any is an error.
fn add_ca_file(roots: &mut Vec<Certificate<'static>>, path: &Path) -> Result<(), String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("TLS_CA_FILE: cannot read {}: {e}", path.display()))?;
    let bundled = roots.len();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => roots.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "TLS_CA_FILE: {} is not valid PEM: {e}",
                    path.display()
                ))
            }
        }
    }
    if roots.len() == bundled {
        return Err(format!(
            "TLS_CA_FILE: {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(())
}

/// `Basic base64(user:password)` (RFC 7617): the Genesys login and InfluxDB 1.x both use it.
pub fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648), as Basic auth and the redaction of its
/// header need it.
pub fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
pub(crate) fn url_encode(value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn config(ca: Option<&Path>) -> HttpConfig {
        HttpConfig {
            timeout: Duration::from_secs(1),
            tls_ca_file: ca.map(Path::to_path_buf),
            proxy: Default::default(),
        }
    }

    #[test]
    fn a_missing_or_empty_ca_file_names_the_variable() {
        let err = agent(&config(Some(Path::new("/nonexistent.pem")))).unwrap_err();
        assert!(
            err.starts_with("TLS_CA_FILE: cannot read /nonexistent.pem"),
            "{err}"
        );
        let temp = TempDir::new("empty-ca");
        let path = temp.0.join("empty.pem");
        std::fs::write(&path, "not pem").unwrap();
        let err = agent(&config(Some(&path))).unwrap_err();
        assert!(err.contains("holds no PEM certificate"), "{err}");
    }

    #[test]
    fn builds_without_a_ca_file() {
        assert!(agent(&config(None)).is_ok());
    }

    #[test]
    fn builds_with_proxies_named_by_address_or_name() {
        for host in ["[::1]", "127.0.0.1", "proxy.example.com"] {
            let mut http = config(None);
            http.proxy.https = Some(crate::config::ProxyUrl {
                variable: "HTTPS_PROXY",
                host: host.to_string(),
                port: 3128,
                username: Some("u".into()),
                password: Some(crate::config::Secret::new("p:w@/")),
            });
            assert!(agent(&http).is_ok(), "{host}");
        }
    }

    #[test]
    fn base64_follows_rfc4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("ü", "w7w="),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn basic_auth_matches_rfc7617() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn url_encoding() {
        assert_eq!(url_encode("abc-._~XYZ09"), "abc-._~XYZ09");
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
