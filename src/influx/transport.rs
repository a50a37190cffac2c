//! The seam between the response policy and the network: a [`Transport`] sends one body
//! of line protocol and says what came back. [`HttpTransport`] gzips the body and POSTs
//! it on a helper thread the shutdown deadline can abandon; tests use a scripted fake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::influx::endpoint::{header, read_bounded, write_request, Endpoint};
use crate::influx::gzip::Gzip;
use crate::influx::policy::Answer;
use crate::influx::shutdown::ShutdownClock;

/// Sends one body of line protocol and says what came back: the seam between the
/// response policy and HTTP. The HTTP one gzips; tests use a scripted fake.
pub(crate) trait Transport {
    fn post(&mut self, lines: &str) -> Answer;
}

/// The transport of the running service: gzipped POSTs to the write endpoint.
pub(crate) struct HttpTransport {
    pub(crate) agent: ureq::Agent,
    pub(crate) endpoint: Arc<Endpoint>,
    pub(crate) clock: ShutdownClock,
    pub(crate) gzip: Gzip,
}

impl Transport for HttpTransport {
    /// The request runs on a short-lived thread so that a server that never answers
    /// cannot hold the writer past the shutdown deadline; once shutting down, requests
    /// also carry a timeout no longer than the time left.
    fn post(&mut self, lines: &str) -> Answer {
        let body = match self.gzip.body(lines.as_bytes()) {
            Ok(body) => body,
            Err(e) => return Answer::Unanswered(format!("gzip: {e}")),
        };
        let timeout = match self.clock.deadline() {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Answer::Unanswered(SHUTDOWN_OVER.to_string());
                }
                let configured = self.agent.config().timeouts().global;
                Some(configured.map_or(left, |t| t.min(left)))
            }
        };
        let (done, answer) = crossbeam_channel::bounded(1);
        let (agent, endpoint) = (self.agent.clone(), self.endpoint.clone());
        let started = std::thread::Builder::new()
            .name("influx-write".into())
            .spawn(move || {
                let answer = post_once(&agent, &endpoint, &body, timeout);
                let _ = done.send((answer, body));
            });
        if let Err(e) = started {
            return Answer::Unanswered(format!("cannot start the request thread: {e}"));
        }
        // An abandoned request keeps its buffer; the next body gets a new one.
        match self.clock.wait_for(&answer) {
            Some((answer, body)) => {
                self.gzip.give_back(body);
                answer
            }
            None => Answer::Unanswered(SHUTDOWN_OVER.to_string()),
        }
    }
}

pub(crate) const SHUTDOWN_OVER: &str = "no answer within SHUTDOWN_TIMEOUT";

fn post_once(
    agent: &ureq::Agent,
    endpoint: &Endpoint,
    body: &[u8],
    timeout: Option<Duration>,
) -> Answer {
    let request = write_request(agent, endpoint, timeout)
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("Content-Encoding", "gzip");
    match request.send(body) {
        Ok(mut response) => Answer::Status {
            code: response.status().as_u16(),
            retry_after: header(&response, "retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs),
            location: header(&response, "location"),
            body: read_bounded(response.body_mut()),
        },
        Err(e) => unanswered(e),
    }
}

/// What a request that got no usable answer means: never sent, answered unreadably, or
/// unknown (it may have been, or may yet be, applied).
fn unanswered(error: ureq::Error) -> Answer {
    use ureq::{Error, Timeout};
    let message = crate::http::describe_error(&error);
    match error {
        Error::Protocol(_) | Error::LargeResponseHeader(..) => Answer::Garbled(message),
        Error::HostNotFound
        | Error::ConnectionFailed
        | Error::Timeout(Timeout::Resolve | Timeout::Connect) => Answer::NotSent(message),
        Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Answer::NotSent(message)
        }
        _ => Answer::Unanswered(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InfluxTarget, V1Auth};
    use crate::influx::endpoint::ANSWER_BODY_MAX_BYTES;

    /// A loopback server answering 400 with a body that goes on for 16 MB.
    fn endless_answer_server() -> String {
        use std::io::{BufRead, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut out = stream;
            let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
            let _ =
                out.write_all(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n");
            for _ in 0..256 {
                if out.write_all(chunk.as_bytes()).is_err() {
                    break;
                }
            }
        });
        url
    }

    #[test]
    fn an_endless_answer_is_read_bounded() {
        let endpoint = Endpoint::new(&InfluxTarget::V1 {
            url: endless_answer_server(),
            database: "db".into(),
            retention_policy: None,
            auth: V1Auth::None,
        })
        .unwrap();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let body = Gzip::new().body(b"m f=1i 1\n").unwrap();
        match post_once(&agent, &endpoint, &body, Some(Duration::from_secs(10))) {
            Answer::Status { code, body, .. } => {
                assert_eq!(code, 400);
                assert_eq!(body.len() as u64, ANSWER_BODY_MAX_BYTES);
            }
            other => panic!("{other:?}"),
        }
    }
}
