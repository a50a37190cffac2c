//! Plain-`http://` requests through an HTTP proxy, the way curl sends them: to the proxy,
//! with the destination's absolute URL in the request line (`POST http://influx:8086/write?db=x
//! HTTP/1.1`, RFC 9112 §3.2.2) and `Proxy-Authorization` when the proxy URL has
//! credentials. No `CONNECT`, which corporate proxies allow to port 443 only.
//!
//! ureq 3 writes every request in origin form (`POST /write?db=x`) and can reach an
//! HTTP destination through a proxy only by tunnelling. So [`AbsoluteForm`] wraps the
//! connection to the proxy: ureq writes into its buffers, and the first line of each
//! request is rewritten on its way out. A 407 from the proxy becomes an error naming
//! the variable to put the credentials in, so it is never read as InfluxDB's answer.

use std::fmt;

use ureq::unversioned::transport::{Buffers, LazyBuffers, NextTimeout, Transport};

use super::route::proxy_auth_message;
use crate::config::ProxyUrl;

/// The connection to the proxy for one destination (`origin`).
pub struct AbsoluteForm {
    inner: Box<dyn Transport>,
    /// What ureq reads and writes; bytes are copied to and from `inner`'s buffers.
    buffers: LazyBuffers,
    /// `http://host:port` of the destination.
    origin: String,
    /// The whole `Proxy-Authorization: Basic …\r\n` line, if the proxy URL has credentials.
    authorization: Option<String>,
    /// The message for a 407.
    refused: String,
    /// The next bytes written start a request (nothing sent yet, or an answer was read).
    request_start: bool,
    /// The next bytes read start an answer.
    answer_start: bool,
    scratch: Vec<u8>,
}

impl AbsoluteForm {
    pub fn new(
        inner: Box<dyn Transport>,
        origin: String,
        proxy: &ProxyUrl,
        (input_buffer, output_buffer): (usize, usize),
    ) -> Self {
        let authorization = proxy.authorization();
        AbsoluteForm {
            inner,
            buffers: LazyBuffers::new(input_buffer, output_buffer),
            origin,
            authorization,
            refused: proxy_auth_message(proxy),
            request_start: true,
            answer_start: false,
            scratch: Vec::new(),
        }
    }

    /// Moves what `inner` has read into `buffers`; returns how many bytes moved.
    fn take_input(&mut self) -> usize {
        let available = self.inner.buffers().input();
        let room = self.buffers.input_append_buf();
        let amount = available.len().min(room.len());
        room[..amount].copy_from_slice(&available[..amount]);
        self.buffers.input_appended(amount);
        self.inner.buffers().input_consume(amount);
        amount
    }
}

/// Writes `request` to `out` with its request line in absolute form (`origin` before the
/// path) and `authorization` after it. Bytes that do not start with a whole origin-form
/// request line are copied as they are.
pub fn absolute_form(request: &[u8], origin: &str, authorization: Option<&str>, out: &mut Vec<u8>) {
    let line_end = request.windows(2).position(|w| w == b"\r\n");
    let target = request
        .iter()
        .position(|b| *b == b' ')
        .map(|space| space + 1);
    match (target, line_end) {
        (Some(target), Some(line_end)) if target < line_end && request[target] == b'/' => {
            out.extend_from_slice(&request[..target]);
            out.extend_from_slice(origin.as_bytes());
            out.extend_from_slice(&request[target..line_end + 2]);
            out.extend_from_slice(authorization.unwrap_or_default().as_bytes());
            out.extend_from_slice(&request[line_end + 2..]);
        }
        _ => out.extend_from_slice(request),
    }
}

impl Transport for AbsoluteForm {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        let written = &self.buffers.output()[..amount];
        if self.request_start {
            absolute_form(
                written,
                &self.origin,
                self.authorization.as_deref(),
                &mut data,
            );
            self.request_start = false;
            self.answer_start = true;
        } else {
            data.extend_from_slice(written);
        }
        let mut sent = 0;
        while sent < data.len() {
            let out = self.inner.buffers().output();
            let amount = out.len().min(data.len() - sent);
            out[..amount].copy_from_slice(&data[sent..sent + amount]);
            self.inner.transmit_output(amount, timeout)?;
            sent += amount;
        }
        self.scratch = data;
        Ok(())
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.request_start = true;
        if self.inner.buffers().input().is_empty() && !self.inner.await_input(timeout)? {
            return Ok(false);
        }
        let moved = self.take_input();
        if self.answer_start {
            let input = self.buffers.input();
            if input.len() >= 12 {
                self.answer_start = false;
                if input.starts_with(b"HTTP/1.") && input[8..12] == *b" 407" {
                    return Err(ureq::Error::ConnectProxyFailed(self.refused.clone()));
                }
            }
        }
        Ok(moved > 0)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }
}

impl fmt::Debug for AbsoluteForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbsoluteForm")
            .field("origin", &self.origin)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(request: &str, authorization: Option<&str>) -> String {
        let mut out = Vec::new();
        absolute_form(
            request.as_bytes(),
            "http://influx:8086",
            authorization,
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_request_line_gets_the_origin_and_the_credentials_follow_it() {
        assert_eq!(
            rewritten(
                "POST /write?db=x HTTP/1.1\r\nHost: influx:8086\r\n\r\nbody",
                None
            ),
            "POST http://influx:8086/write?db=x HTTP/1.1\r\nHost: influx:8086\r\n\r\nbody"
        );
        assert_eq!(
            rewritten(
                "GET /ping HTTP/1.1\r\n\r\n",
                Some("Proxy-Authorization: Basic eA==\r\n")
            ),
            "GET http://influx:8086/ping HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\n\r\n"
        );
    }

    /// The proxy's side of the connection: records what it is sent, answers in turn.
    #[derive(Debug)]
    struct FakeProxy {
        buffers: LazyBuffers,
        sent: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
        answers: std::collections::VecDeque<&'static str>,
    }

    impl Transport for FakeProxy {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }

        fn transmit_output(&mut self, amount: usize, _: NextTimeout) -> Result<(), ureq::Error> {
            let output = &self.buffers.output()[..amount];
            self.sent.lock().unwrap().extend_from_slice(output);
            Ok(())
        }

        fn await_input(&mut self, _: NextTimeout) -> Result<bool, ureq::Error> {
            let Some(answer) = self.answers.pop_front() else {
                return Ok(false);
            };
            let room = self.buffers.input_append_buf();
            room[..answer.len()].copy_from_slice(answer.as_bytes());
            self.buffers.input_appended(answer.len());
            Ok(true)
        }

        fn is_open(&mut self) -> bool {
            true
        }
    }

    type Sent = std::sync::Arc<std::sync::Mutex<Vec<u8>>>;

    fn connection(answers: &[&'static str], proxy: &ProxyUrl) -> (AbsoluteForm, Sent) {
        let sent = Sent::default();
        let fake = FakeProxy {
            buffers: LazyBuffers::new(1024, 1024),
            sent: sent.clone(),
            answers: answers.iter().copied().collect(),
        };
        let origin = "http://influx:8086".to_string();
        let connection = AbsoluteForm::new(Box::new(fake), origin, proxy, (1024, 64));
        (connection, sent)
    }

    fn send(connection: &mut AbsoluteForm, request: &str) -> Result<String, ureq::Error> {
        // Written in pieces smaller than the output buffer, as ureq does with a body.
        for piece in request.as_bytes().chunks(48) {
            connection.buffers().output()[..piece.len()].copy_from_slice(piece);
            connection.transmit_output(piece.len(), NextTimeout::default())?;
        }
        connection.await_input(NextTimeout::default())?;
        let answer = String::from_utf8_lossy(connection.buffers().input()).into_owned();
        let length = answer.len();
        connection.buffers().input_consume(length);
        Ok(answer)
    }

    /// Every request on a kept-alive connection is rewritten, the body never; the proxy's
    /// credentials go with each; its 407 is an error naming the variable.
    #[test]
    fn each_request_of_a_kept_alive_connection_is_rewritten_and_a_407_is_an_error() {
        let proxy = ProxyUrl {
            variable: "HTTP_PROXY",
            host: "proxy".into(),
            port: 3128,
            username: Some("u".into()),
            password: Some(crate::config::Secret::new("p")),
        };
        let ok = "HTTP/1.1 204 No Content\r\n\r\n";
        let (mut kept_alive, sent) = connection(&[ok, ok], &proxy);
        let body = "m f=1 1 /write?db=x HTTP/1.1 ".repeat(5);
        let length = body.len();
        let first = format!("POST /write?db=x HTTP/1.1\r\nContent-Length: {length}\r\n\r\n{body}");
        assert_eq!(send(&mut kept_alive, &first).unwrap(), ok);
        assert_eq!(
            send(&mut kept_alive, "GET /ping HTTP/1.1\r\n\r\n").unwrap(),
            ok
        );
        let sent = String::from_utf8(sent.lock().unwrap().clone()).unwrap();
        let authorization = "Proxy-Authorization: Basic dTpw\r\n";
        assert_eq!(
            sent,
            format!(
                "POST http://influx:8086/write?db=x HTTP/1.1\r\n{authorization}\
                 Content-Length: {length}\r\n\r\n{body}\
                 GET http://influx:8086/ping HTTP/1.1\r\n{authorization}\r\n"
            )
        );

        let refused = "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n";
        let (mut refusing, _) = connection(&[refused], &proxy);
        let error = send(&mut refusing, "GET /ping HTTP/1.1\r\n\r\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("refused the credentials in HTTP_PROXY"),
            "{error}"
        );
        assert!(!error.contains("dTpw"), "{error}");
    }

    #[test]
    fn anything_else_passes_unchanged() {
        for other in [
            "",
            "body bytes",
            "POST /write",
            "GET http://x/ HTTP/1.1\r\n",
            "\r\n/x y",
        ] {
            assert_eq!(rewritten(other, Some("P: x\r\n")), other);
        }
    }
}
