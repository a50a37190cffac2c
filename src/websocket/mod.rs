//! A minimal blocking websocket (RFC 6455) over any `Read + Write` stream: text messages,
//! ping/pong, close, fragmented messages reassembled; no extensions, no compression.
//! Written here rather than taken from `tungstenite` because the static binary must stay
//! at most 3 MB (README: dependencies), and this is all the notifications thread and the
//! simulator's websocket need: `frame` (the codec), `handshake` (the upgrade), `dial`
//! (`ws://` and `wss://` URLs to a stream: proxy, TLS).
//!
//! The socket's read timeout is the caller's: a read that times out returns
//! `Ok(None)` and leaves any partial frame in the buffer for the next read.

pub mod dial;
pub mod frame;
pub mod handshake;

use std::io::{ErrorKind, Read, Write};

use frame::{Frame, FrameError, Opcode};
use handshake::Refusal;

/// Largest message either side accepts; Genesys notifications are a few KB.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
/// Read size per `read` call.
const CHUNK: usize = 16 * 1024;

/// Why a websocket failed.
#[derive(Debug)]
pub enum WsError {
    Io(std::io::Error),
    /// The upgrade was refused.
    Refused(Refusal),
    /// The peer broke the protocol (or sent more than [`MAX_MESSAGE_BYTES`]).
    Protocol(String),
    /// The peer closed the connection (a close frame or end of stream).
    Closed,
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Io(e) => write!(f, "{e}"),
            WsError::Refused(refusal) => write!(f, "{refusal}"),
            WsError::Protocol(why) => write!(f, "websocket protocol error: {why}"),
            WsError::Closed => f.write_str("the server closed the websocket"),
        }
    }
}

impl From<std::io::Error> for WsError {
    fn from(e: std::io::Error) -> Self {
        WsError::Io(e)
    }
}

impl From<FrameError> for WsError {
    fn from(e: FrameError) -> Self {
        WsError::Protocol(e.to_string())
    }
}

/// Which end of the connection this is: a client masks what it sends, a server does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Server,
}

/// One open websocket.
#[derive(Debug)]
pub struct WebSocket<S> {
    stream: S,
    role: Role,
    /// Bytes read but not yet decoded.
    input: Vec<u8>,
    /// The text message being reassembled from fragments.
    partial: Option<Vec<u8>>,
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

impl<S: Read + Write> WebSocket<S> {
    /// Upgrades `stream` as a client: `host` is the `Host` header, `path` the request target.
    pub fn client(mut stream: S, host: &str, path: &str) -> Result<WebSocket<S>, WsError> {
        let key = crate::http::base64(&random_bytes::<16>());
        stream.write_all(handshake::client_request(host, path, &key).as_bytes())?;
        stream.flush()?;
        let (head, rest) = read_head(&mut stream)?;
        handshake::check_response(&head, &key).map_err(WsError::Refused)?;
        Ok(WebSocket {
            stream,
            role: Role::Client,
            input: rest,
            partial: None,
        })
    }

    /// Reads a client's upgrade request and hands it to `route`, which names the status to
    /// refuse it with, or accepts (`Ok`) with the path requested.
    pub fn server(
        mut stream: S,
        route: impl FnOnce(&str) -> Result<(), u16>,
    ) -> Result<(WebSocket<S>, String), WsError> {
        let (head, rest) = read_head(&mut stream)?;
        let Some((path, key)) = handshake::read_request(&head) else {
            let _ = stream.write_all(handshake::refusal_response(400, "Bad Request").as_bytes());
            return Err(WsError::Refused(Refusal::Garbled));
        };
        if let Err(status) = route(path) {
            let _ = stream.write_all(handshake::refusal_response(status, "Refused").as_bytes());
            return Err(WsError::Refused(Refusal::Status(status)));
        }
        stream.write_all(handshake::server_response(key).as_bytes())?;
        stream.flush()?;
        let path = path.to_string();
        Ok((
            WebSocket {
                stream,
                role: Role::Server,
                input: rest,
                partial: None,
            },
            path,
        ))
    }

    /// The next text message; `Ok(None)` when the stream's read timeout passed first.
    /// Pings are answered, pongs and binary messages skipped.
    pub fn read_text(&mut self) -> Result<Option<String>, WsError> {
        loop {
            while let Some(frame) = self.next_frame()? {
                if let Some(text) = self.take(frame)? {
                    return Ok(Some(text));
                }
            }
            let mut chunk = [0u8; CHUNK];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(WsError::Closed),
                Ok(n) => self.input.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(WsError::Io(e)),
            }
        }
    }

    /// Sends one text message.
    pub fn send_text(&mut self, text: &str) -> Result<(), WsError> {
        self.send(Opcode::Text, text.as_bytes())
    }

    /// Sends a close frame (best effort); the caller then drops the socket.
    pub fn close(&mut self) {
        let _ = self.send(Opcode::Close, &1000u16.to_be_bytes());
    }

    /// Sends raw bytes as they are (the simulator's malformed-frame fault).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), WsError> {
        self.stream.write_all(bytes)?;
        Ok(self.stream.flush()?)
    }

    /// The underlying stream (for its timeouts).
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    fn send(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), WsError> {
        let mask = (self.role == Role::Client).then(random_bytes::<4>);
        let mut out = Vec::with_capacity(payload.len() + 14);
        frame::encode(&mut out, opcode, payload, mask);
        self.send_raw(&out)
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, WsError> {
        let masked = self.role == Role::Server;
        let Some((frame, used)) = frame::decode(&self.input, masked, MAX_MESSAGE_BYTES)? else {
            return Ok(None);
        };
        self.input.drain(..used);
        Ok(Some(frame))
    }

    /// Folds one frame into the message under way; a finished text message is returned.
    fn take(&mut self, frame: Frame) -> Result<Option<String>, WsError> {
        let Frame {
            fin,
            opcode,
            payload,
        } = frame;
        let whole = match opcode {
            Opcode::Ping => {
                self.send(Opcode::Pong, &payload)?;
                return Ok(None);
            }
            Opcode::Pong => return Ok(None),
            Opcode::Close => {
                self.close();
                return Err(WsError::Closed);
            }
            Opcode::Text | Opcode::Binary if self.partial.is_some() => {
                return Err(WsError::Protocol(
                    "a new message inside a fragmented one".into(),
                ))
            }
            Opcode::Text | Opcode::Binary => {
                let keep = opcode == Opcode::Text;
                if fin {
                    keep.then_some(payload)
                } else {
                    // A fragmented binary message is collected too, then dropped whole.
                    self.partial = Some(payload);
                    None
                }
            }
            Opcode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(WsError::Protocol("a continuation without a message".into()));
                };
                if partial.len() + payload.len() > MAX_MESSAGE_BYTES {
                    return Err(WsError::Protocol("a message over 1 MiB".into()));
                }
                partial.extend_from_slice(&payload);
                if fin {
                    self.partial.take()
                } else {
                    None
                }
            }
        };
        match whole.map(String::from_utf8) {
            Some(Ok(text)) => Ok(Some(text)),
            Some(Err(_)) => Err(WsError::Protocol("a text message is not UTF-8".into())),
            None => Ok(None),
        }
    }
}

/// Reads up to the end of the HTTP head; returns the head and the bytes after it.
fn read_head(stream: &mut impl Read) -> Result<(String, Vec<u8>), WsError> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = handshake::head_end(&bytes) {
            let rest = bytes.split_off(end);
            return match String::from_utf8(bytes) {
                Ok(head) => Ok((head, rest)),
                Err(_) => Err(WsError::Refused(Refusal::Garbled)),
            };
        }
        if bytes.len() > handshake::MAX_HEAD_BYTES {
            return Err(WsError::Refused(Refusal::Garbled));
        }
        match stream.read(&mut chunk) {
            Ok(0) => return Err(WsError::Closed),
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(WsError::Io(e)),
        }
    }
}

/// Unpredictable bytes for the handshake key and the masks (RFC 6455 section 10.3),
/// from the system's random source that TLS already uses.
fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; N];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: the clock-seeded jitter is still unpredictable to a proxy.
        for b in &mut bytes {
            *b = (crate::jitter::shared() * 256.0) as u8;
        }
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// A client and a server over loopback TCP exchange text, fragments and pings.
    #[test]
    fn a_client_and_a_server_talk() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let (mut ws, path) = WebSocket::server(stream, |_| Ok(())).unwrap();
            assert_eq!(path, "/channels/abc");
            let mut fragments = Vec::new();
            frame::encode(&mut fragments, Opcode::Ping, b"hi", None);
            fragments.extend_from_slice(&[0x01, 0x02, b'{', b'"']);
            fragments.extend_from_slice(&[0x80, 0x02, b'"', b'}']);
            ws.send_raw(&fragments).unwrap();
            let echoed = ws.read_text().unwrap();
            ws.send_text(&format!("got {}", echoed.unwrap())).unwrap();
            ws.close();
        });
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut ws = WebSocket::client(stream, "127.0.0.1", "/channels/abc").unwrap();
        assert_eq!(ws.read_text().unwrap().as_deref(), Some("{\"\"}"));
        ws.send_text("ping").unwrap();
        assert_eq!(ws.read_text().unwrap().as_deref(), Some("got ping"));
        assert!(matches!(ws.read_text(), Err(WsError::Closed)));
        server.join().unwrap();
    }

    #[test]
    fn a_refused_upgrade_says_the_status() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let refused = WebSocket::server(stream, |_| Err(404));
            assert!(refused.is_err());
        });
        let stream = TcpStream::connect(addr).unwrap();
        let refused = WebSocket::client(stream, "127.0.0.1", "/channels/gone").unwrap_err();
        assert!(
            matches!(refused, WsError::Refused(Refusal::Status(404))),
            "{refused:?}"
        );
        server.join().unwrap();
    }
}
