//! From a `ws://` or `wss://` URL to an open websocket: TCP (through an HTTP proxy's
//! `CONNECT` tunnel when `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` names one and `NO_PROXY`
//! does not exempt the host, read the same way as for every HTTP request), then TLS for
//! `wss://` with the same trust as every HTTP request (the bundled web PKI roots plus
//! `TLS_CA_FILE`), then the upgrade.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{WebSocket, WsError};
use crate::config::{ProxyConfig, ProxyUrl};
use crate::http::route::{proxy_auth_message, route, Route};

/// A connected stream: plain (`ws://`, the loopback simulator) or TLS (`wss://`).
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }

    /// Sets how long a read waits before giving up with a timeout.
    pub fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        self.tcp()
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// A parsed `ws://` or `wss://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Target {
    /// Parses the URL; `None` when it is not `ws://` or `wss://` with a host.
    pub fn parse(url: &str) -> Option<Target> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else {
            (false, url.strip_prefix("ws://")?)
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                (host, port.parse().ok()?)
            }
            _ => (authority, default_port),
        };
        if host.is_empty() || authority.contains('@') {
            return None;
        }
        Some(Target {
            tls,
            host: host.to_string(),
            port,
            path,
        })
    }

    /// The `Host` header: the port only when it is not the scheme's default.
    fn host_header(&self) -> String {
        if self.port == if self.tls { 443 } else { 80 } {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The TLS settings of every websocket: the bundled web PKI roots plus the certificates
/// of `TLS_CA_FILE` (`ca_file`), TLS 1.2 and 1.3 with the ring provider rustls already
/// uses for HTTP.
pub fn tls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(
        crate::http::roots(ca_file)?
            .iter()
            .map(|cert| CertificateDer::from(cert.der().to_vec())),
    );
    let config = ClientConfig::builder_with_provider(crate::http::tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Opens a websocket to `url`; every step (connect, proxy, TLS, upgrade) within `timeout`.
pub fn connect(
    url: &str,
    tls: &Arc<ClientConfig>,
    proxies: &ProxyConfig,
    timeout: Duration,
) -> Result<WebSocket<Stream>, WsError> {
    let target = Target::parse(url).ok_or_else(|| {
        WsError::Protocol(format!("{url:?} is not a ws:// or wss:// URL with a host"))
    })?;
    let tcp = match proxy_for(proxies, &target) {
        Some(proxy) => tunnel(proxy, &target, timeout)?,
        None => tcp_connect(&target.host, target.port, timeout)?,
    };
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let _ = tcp.set_nodelay(true);
    let stream = if target.tls {
        let name = ServerName::try_from(target.host.clone())
            .map_err(|e| WsError::Protocol(format!("{}: {e}", target.host)))?;
        let connection = ClientConnection::new(Arc::clone(tls), name)
            .map_err(|e| WsError::Protocol(format!("TLS: {e}")))?;
        Stream::Tls(Box::new(StreamOwned::new(connection, tcp)))
    } else {
        Stream::Plain(tcp)
    };
    WebSocket::client(stream, &target.host_header(), &target.path)
}

fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, WsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(tcp) => return Ok(tcp),
            Err(e) => last = Some(e),
        }
    }
    Err(WsError::Io(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )
    })))
}

/// The proxy the websocket goes through: the one [`route`] picks for its host as for
/// `https://` (`wss://`) or `http://` (`ws://`), the proxy variables read as for every
/// other request. Always as a `CONNECT` tunnel: an upgrade cannot travel in absolute form.
fn proxy_for<'a>(proxies: &'a ProxyConfig, target: &Target) -> Option<&'a ProxyUrl> {
    match route(proxies, target.tls, &target.host, target.port) {
        Route::Direct(_) => None,
        Route::Tunnel(proxy) | Route::Forward(proxy) => Some(proxy),
    }
}

/// A `CONNECT host:port` tunnel through an HTTP proxy.
fn tunnel(proxy: &ProxyUrl, target: &Target, timeout: Duration) -> Result<TcpStream, WsError> {
    let mut tcp = tcp_connect(&proxy.host, proxy.port, timeout)?;
    tcp.set_read_timeout(Some(timeout))?;
    let authority = format!("{}:{}", target.host, target.port);
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(authorization) = proxy.authorization() {
        request.push_str(&authorization);
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte: nothing after the proxy's head may be consumed (it is the server's).
    while super::handshake::head_end(&head).is_none() {
        if head.len() > super::handshake::MAX_HEAD_BYTES || tcp.read(&mut byte)? == 0 {
            return Err(WsError::Protocol(format!(
                "the proxy {proxy} ({}) closed the CONNECT tunnel",
                proxy.variable
            )));
        }
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(tcp),
        Some(407) => Err(WsError::Protocol(proxy_auth_message(proxy))),
        other => Err(WsError::Protocol(format!(
            "the proxy {proxy} ({}) refused CONNECT {authority} (HTTP {})",
            proxy.variable,
            other.map_or("?".to_string(), |s| s.to_string())
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let t = Target::parse("wss://streaming.mypurecloud.com/channels/streaming-2-aa5h").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.path.as_str()),
            (
                true,
                "streaming.mypurecloud.com",
                443,
                "/channels/streaming-2-aa5h"
            )
        );
        assert_eq!(t.host_header(), "streaming.mypurecloud.com");
        let t = Target::parse("ws://127.0.0.1:4711/channels/x?y=1").unwrap();
        assert_eq!(
            (t.tls, t.port, t.path.as_str()),
            (false, 4711, "/channels/x?y=1")
        );
        assert_eq!(t.host_header(), "127.0.0.1:4711");
        assert_eq!(Target::parse("ws://h").unwrap().path, "/");
        assert_eq!(Target::parse("ws://[::1]:9/a").unwrap().host, "[::1]");
        for bad in [
            "http://h/",
            "ws://",
            "ws://:80/",
            "wss://u:p@h/",
            "ws://h:99999/",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad}");
        }
    }

    /// Through an HTTP proxy: `CONNECT host:port` with the proxy's credentials, then the
    /// upgrade inside the tunnel (the fake proxy plays the websocket server itself).
    #[test]
    fn a_proxy_tunnel_carries_the_websocket() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy_side = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while crate::websocket::handshake::head_end(&head).is_none() {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            stream
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .unwrap();
            let (mut ws, path) = WebSocket::server(stream, |_| Ok(())).unwrap();
            ws.send_text("hello through the tunnel").unwrap();
            (head, path)
        });
        let proxy = ProxyUrl {
            variable: "HTTPS_PROXY",
            host: "127.0.0.1".into(),
            port,
            username: Some("user".into()),
            password: Some(crate::config::Secret::new("pw")),
        };
        let target = Target::parse("ws://streaming.example:8443/channels/c1").unwrap();
        let tcp = tunnel(&proxy, &target, Duration::from_secs(5)).unwrap();
        let mut ws = WebSocket::client(tcp, &target.host_header(), &target.path).unwrap();
        assert_eq!(
            ws.read_text().unwrap().as_deref(),
            Some("hello through the tunnel")
        );
        let (head, path) = proxy_side.join().unwrap();
        assert!(
            head.starts_with("CONNECT streaming.example:8443 HTTP/1.1\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!(
                "Proxy-Authorization: {}",
                crate::http::basic_auth("user", "pw")
            )),
            "{head}"
        );
        assert_eq!(path, "/channels/c1");
    }

    #[test]
    fn the_tls_settings_build_with_and_without_extra_roots() {
        assert!(tls_config(None).is_ok());
        let dir = crate::testing::TempDir::new("ws-tls");
        let path = dir.0.join("ca.pem");
        std::fs::write(&path, "no certificate here").unwrap();
        let err = tls_config(Some(&path)).unwrap_err();
        assert!(err.contains("TLS_CA_FILE"), "{err}");
    }
}
