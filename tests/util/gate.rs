//! A loopback HTTP gate in front of a real `influxd`: it forwards every write, records
//! what it saw (decompressed lines, sizes, the status it answered, when) and can be told
//! to fail: answer 500 the next `n` times, delay the next forward, drop connections
//! without answering (InfluxDB "unreachable" without stopping it), answer 413 to every
//! body of more than one line, or redirect. [`Silent`] accepts connections and never
//! answers.
//!
//! It answers without InfluxDB's headers, so `LIVE_UPDATES=auto` sees an unknown backend
//! behind it and leaves live updates off: what passes the gate is final windows only.
//!
//! Used by the self-metrics test (to compare the service's counters with what InfluxDB
//! really acknowledged) and by the end-to-end benchmark (to count bytes on the wire).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One request the gate received, with its fate.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// When the answer was sent (or the connection dropped), ms since the epoch.
    pub answered_ms: u64,
    /// When the request had been read completely, ms since the epoch.
    pub received_ms: u64,
    /// Status answered; 0 = connection dropped without an answer.
    pub status: u16,
    /// Body bytes as sent (gzip when `Content-Encoding: gzip`).
    pub wire_bytes: usize,
    /// The line protocol after decompression.
    pub lines: Vec<String>,
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Exchange {
    pub fn acknowledged(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn raw_bytes(&self) -> usize {
        self.lines.iter().map(|l| l.len() + 1).sum()
    }
}

#[derive(Debug, Default)]
struct Plan {
    fail_500: u32,
    delay_next: Option<Duration>,
    dropping: bool,
    single_lines_only: bool,
    /// Answered in turn instead of forwarding: (status, Location).
    redirects: Vec<(u16, String)>,
    answered: usize,
}

pub struct Gate {
    port: u16,
    plan: Arc<Mutex<Plan>>,
    log: Arc<Mutex<Vec<Exchange>>>,
    stop: Arc<AtomicBool>,
}

impl Gate {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Gate {
        let listener = TcpListener::bind("127.0.0.1:0").expect("gate binds");
        let port = listener.local_addr().expect("gate address").port();
        let gate = Gate {
            port,
            plan: Arc::default(),
            log: Arc::default(),
            stop: Arc::default(),
        };
        let (plan, log, stop) = (gate.plan.clone(), gate.log.clone(), gate.stop.clone());
        let upstream = upstream.trim_end_matches('/').to_string();
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (plan, log, upstream) = (plan.clone(), log.clone(), upstream.clone());
                thread::spawn(move || serve(stream, &upstream, &plan, &log));
            }
        });
        gate
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The next `times` requests are answered 500 (InfluxDB's JSON error), not forwarded.
    pub fn fail_with_500(&self, times: u32) {
        self.plan.lock().unwrap().fail_500 += times;
    }

    /// The next forwarded request is answered only after `delay`.
    pub fn delay_next(&self, delay: Duration) {
        self.plan.lock().unwrap().delay_next = Some(delay);
    }

    /// While on, every request is read and its connection closed without an answer.
    pub fn set_dropping(&self, on: bool) {
        self.plan.lock().unwrap().dropping = on;
    }

    /// While on, a body of more than one line is answered 413 (single lines are forwarded).
    pub fn set_single_lines_only(&self, on: bool) {
        self.plan.lock().unwrap().single_lines_only = on;
    }

    /// Every request is answered with these redirects in turn (empty: forward again).
    pub fn set_redirects(&self, redirects: Vec<(u16, String)>) {
        self.plan.lock().unwrap().redirects = redirects;
    }

    pub fn exchanges(&self) -> Vec<Exchange> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

enum Action {
    Fail500,
    Drop,
    TooLarge,
    Redirect(u16, String),
    Forward(Option<Duration>),
}

fn serve(stream: TcpStream, upstream: &str, plan: &Mutex<Plan>, log: &Mutex<Vec<Exchange>>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    let agent = super::agent();
    // Bounded by the client: each pass reads one request or ends the connection.
    while let Some((method, path, headers, body)) = read_request(&mut reader) {
        let received_ms = now_ms();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let gzip = header("content-encoding").is_some_and(|v| v.contains("gzip"));
        let text = if gzip {
            let mut out = String::new();
            let _ = flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut out);
            out
        } else {
            String::from_utf8_lossy(&body).into_owned()
        };
        let mut exchange = Exchange {
            answered_ms: 0,
            received_ms,
            status: 0,
            wire_bytes: body.len(),
            lines: text.lines().map(str::to_string).collect(),
            path: path.clone(),
            headers: headers.clone(),
        };
        // Only writes follow the plan and are logged; the rest (the `/ping` identifying
        // the backend) passes through untouched.
        let is_write = path.contains("/write");
        let action = if !is_write {
            Action::Forward(None)
        } else {
            let mut plan = plan.lock().unwrap();
            plan.answered += 1;
            if plan.dropping {
                Action::Drop
            } else if !plan.redirects.is_empty() {
                let turn = (plan.answered - 1) % plan.redirects.len();
                let (status, location) = plan.redirects[turn].clone();
                Action::Redirect(status, location)
            } else if plan.fail_500 > 0 {
                plan.fail_500 -= 1;
                Action::Fail500
            } else if plan.single_lines_only && exchange.lines.len() > 1 {
                Action::TooLarge
            } else {
                Action::Forward(plan.delay_next.take())
            }
        };
        let mut extra_header = String::new();
        let (status, answer) = match action {
            Action::Drop => {
                exchange.answered_ms = now_ms();
                log.lock().unwrap().push(exchange);
                let _ = writer.shutdown(std::net::Shutdown::Both);
                return;
            }
            Action::Fail500 => (500, r#"{"error":"engine: injected failure"}"#.to_string()),
            Action::TooLarge => (413, r#"{"error":"Request Entity Too Large"}"#.to_string()),
            Action::Redirect(status, location) => {
                extra_header = format!("Location: {location}\r\n");
                (status, String::new())
            }
            Action::Forward(delay) => {
                if let Some(delay) = delay {
                    thread::sleep(delay);
                }
                forward(&agent, upstream, &method, &path, &headers, &body)
            }
        };
        let reply = format!(
            "HTTP/1.1 {status} X\r\n{extra_header}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
        exchange.status = status;
        exchange.answered_ms = now_ms();
        if is_write {
            log.lock().unwrap().push(exchange);
        }
    }
}

/// A server that accepts connections, reads nothing and never answers: InfluxDB hung.
/// Connections are held until it is dropped.
pub struct Silent {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Silent {
    pub fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").expect("silent server binds");
        let port = listener.local_addr().expect("silent server address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                held.extend(stream.ok());
            }
        });
        Silent { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn forward(
    agent: &ureq::Agent,
    upstream: &str,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    let url = format!("{upstream}{path}");
    let result = if method == "POST" {
        let mut request = agent.post(&url);
        for (k, v) in headers {
            if matches!(
                k.as_str(),
                "authorization" | "content-encoding" | "content-type"
            ) {
                request = request.header(k, v);
            }
        }
        request.send(body)
    } else {
        let mut request = agent.get(&url);
        for (k, v) in headers {
            if k == "authorization" {
                request = request.header(k, v);
            }
        }
        request.call()
    };
    match result {
        Ok(mut response) => {
            let status = response.status().as_u16();
            let text = response.body_mut().read_to_string().unwrap_or_default();
            (status, text)
        }
        Err(e) => (502, format!("{{\"error\":\"gate: {e}\"}}")),
    }
}

type Request = (String, String, Vec<(String, String)>, Vec<u8>);

/// One HTTP/1.1 request (Content-Length or chunked body); `None` at end of stream.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let value = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v): &(String, String)| v.clone())
    };
    let mut body = Vec::new();
    if value("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
    }
    Some((method, path, headers, body))
}
