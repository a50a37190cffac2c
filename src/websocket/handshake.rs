//! The opening handshake of RFC 6455 section 4: the HTTP/1.1 upgrade request a client
//! sends, the `101 Switching Protocols` a server answers, and the accept key that proves
//! the server read the client's key. Pure text in, text out (the simulator's server side
//! uses the same functions), so both are tested without a socket.

use crate::http::base64;

/// RFC 6455 section 1.3: appended to the client's key before hashing.
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Longest handshake head either side reads.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}{GUID}").as_bytes(),
    );
    base64(digest.as_ref())
}

/// The client's upgrade request for `path` on `host` (`host:port` when not the default).
pub fn client_request(host: &str, path: &str, key: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
User-Agent: genesys2influx/{}\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Why a server did not switch to the websocket protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// It answered with another status (404: the channel is gone).
    Status(u16),
    /// It answered 101 without the headers that prove it speaks RFC 6455.
    NotWebSocket,
    /// The answer is not HTTP.
    Garbled,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Status(status) => write!(f, "the server answered HTTP {status}"),
            Refusal::NotWebSocket => f.write_str("the server did not accept the websocket key"),
            Refusal::Garbled => f.write_str("the server's answer is not HTTP"),
        }
    }
}

/// Checks a server's answer head (up to the blank line) to `client_request` with `key`.
pub fn check_response(head: &str, key: &str) -> Result<(), Refusal> {
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or(Refusal::Garbled)?;
    if status != 101 {
        return Err(Refusal::Status(status));
    }
    let expected = accept_key(key);
    let accepted = headers(lines).any(|(name, value)| {
        name.eq_ignore_ascii_case("sec-websocket-accept") && value == expected
    });
    if accepted {
        Ok(())
    } else {
        Err(Refusal::NotWebSocket)
    }
}

/// A client's upgrade request as a server reads it: the path and the key, or `None` when
/// it is not a websocket upgrade.
pub fn read_request(head: &str) -> Option<(&str, &str)> {
    let mut lines = head.split("\r\n");
    let path = lines
        .next()?
        .strip_prefix("GET ")?
        .strip_suffix(" HTTP/1.1")?;
    let key = headers(lines)
        .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-key"))?
        .1;
    Some((path, key))
}

/// The server's `101` for a client's key.
pub fn server_response(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
}

/// A short non-101 answer (a server refusing an upgrade).
pub fn refusal_response(status: u16, reason: &str) -> String {
    format!("HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
}

/// Where the head ends (the index just past `\r\n\r\n`), if it has ended.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn headers<'a>(lines: impl Iterator<Item = &'a str>) -> impl Iterator<Item = (&'a str, &'a str)> {
    lines.filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        Some((name.trim(), value.trim()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key_is_accepted() {
        // RFC 6455 section 1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn a_server_answer_is_checked_against_the_key() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let request = client_request("streaming.example:443", "/channels/x", key);
        let head = request
            .get(..head_end(request.as_bytes()).unwrap())
            .unwrap();
        assert_eq!(read_request(head), Some(("/channels/x", key)));
        assert_eq!(check_response(&server_response(key), key), Ok(()));
        assert_eq!(
            check_response(&server_response("other"), key),
            Err(Refusal::NotWebSocket)
        );
        assert_eq!(
            check_response(&refusal_response(404, "Not Found"), key),
            Err(Refusal::Status(404))
        );
        assert_eq!(check_response("SSH-2.0", key), Err(Refusal::Garbled));
        assert_eq!(read_request("POST / HTTP/1.1\r\n"), None);
    }
}
