//! A loopback HTTP gate in front of a real `influxd`: it forwards every write, records
//! what it saw (decompressed lines, sizes, the status it answered, when) and can be told
//! to fail: answer 500 the next `n` times, delay the next forward, hold the next write
//! carrying a chosen line for a while and then apply it (a proxy or a stalled InfluxDB
//! that lets a request land long after the client gave up), drop connections without
//! answering (InfluxDB "unreachable" without stopping it), answer 413 to every body of
//! more than one line, or redirect. [`Silent`] accepts connections and never answers.
//!
//! It answers without InfluxDB's headers, so `LIVE_UPDATES=auto` sees an unknown backend
//! behind it and leaves live updates off: what passes the gate is final windows only.
//!
//! Used by the self-metrics test (to compare the service's counters with what InfluxDB
//! really acknowledged) and by the end-to-end benchmark (to count bytes on the wire).
//! Both servers are handlers on the crate's [`loopback_http`] server.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use genesys2influx::loopback_http::{self, Reply, Request, Response, Stop};

/// Larger than any batch the writer sends.
const MAX_BODY_BYTES: usize = 64 << 20;

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
    /// The next write with a line ending in this text is forwarded only after the delay.
    hold_line_ending: Option<(String, Duration)>,
    dropping: bool,
    single_lines_only: bool,
    /// Answered in turn instead of forwarding: (status, Location).
    redirects: Vec<(u16, String)>,
    answered: usize,
}

pub struct Gate {
    server: loopback_http::Server,
    plan: Arc<Mutex<Plan>>,
    log: Arc<Mutex<Vec<Exchange>>>,
}

impl Gate {
    /// Listens on a free loopback port and forwards to `upstream` (`http://127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Gate {
        let (plan, log) = (Arc::<Mutex<Plan>>::default(), Arc::default());
        let upstream = upstream.trim_end_matches('/').to_string();
        let agent = super::agent();
        let stop = Stop::default();
        let handler = {
            let (plan, log, stop) = (plan.clone(), Arc::clone(&log), stop.clone());
            move |request: &Request| serve(request, &upstream, &agent, &plan, &log, &stop)
        };
        let server = loopback_http::Server::start(options("gate"), stop, handler)
            .expect("gate starts on 127.0.0.1");
        Gate { server, plan, log }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The next `times` requests are answered 500 (InfluxDB's JSON error), not forwarded.
    pub fn fail_with_500(&self, times: u32) {
        self.plan.lock().unwrap().fail_500 += times;
    }

    /// The next forwarded request is answered only after `delay`.
    pub fn delay_next(&self, delay: Duration) {
        self.plan.lock().unwrap().delay_next = Some(delay);
    }

    /// The next write with a line ending in `suffix` is held for `delay`, then forwarded
    /// to InfluxDB whether or not the client is still waiting (it has usually given up):
    /// the write lands `delay` after it was sent.
    pub fn hold_write_with_line_ending(&self, suffix: &str, delay: Duration) {
        self.plan.lock().unwrap().hold_line_ending = Some((suffix.to_string(), delay));
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

fn options(name: &'static str) -> loopback_http::Options {
    loopback_http::Options {
        name,
        max_connections: 64,
        max_body_bytes: MAX_BODY_BYTES,
        keep_alive: true,
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

fn serve(
    request: &Request,
    upstream: &str,
    agent: &ureq::Agent,
    plan: &Mutex<Plan>,
    log: &Mutex<Vec<Exchange>>,
    stop: &Stop,
) -> Reply {
    let received_ms = now_ms();
    let headers: Vec<(String, String)> = request
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect();
    let gzip = request
        .header("content-encoding")
        .is_some_and(|v| v.contains("gzip"));
    let body = &request.body;
    let text = if gzip {
        let mut out = String::new();
        let _ = flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut out);
        out
    } else {
        String::from_utf8_lossy(body).into_owned()
    };
    let path = if request.query.is_empty() {
        request.path.clone()
    } else {
        format!("{}?{}", request.path, request.query)
    };
    let mut exchange = Exchange {
        answered_ms: 0,
        received_ms,
        status: 0,
        wire_bytes: body.len(),
        lines: text.lines().map(str::to_string).collect(),
        path,
        headers,
    };
    // Only writes follow the plan and are logged; the rest (the `/ping` identifying the
    // backend) passes through untouched.
    let is_write = exchange.path.contains("/write");
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
        } else if let Some(delay) = plan
            .hold_line_ending
            .take_if(|(suffix, _)| exchange.lines.iter().any(|l| l.ends_with(suffix.as_str())))
        {
            Action::Forward(Some(delay.1))
        } else {
            Action::Forward(plan.delay_next.take())
        }
    };
    let reply = match action {
        Action::Drop => Reply::Drop,
        Action::Fail500 => json(500, r#"{"error":"engine: injected failure"}"#),
        Action::TooLarge => json(413, r#"{"error":"Request Entity Too Large"}"#),
        Action::Redirect(status, location) => {
            Reply::Send(json_response(status, "").with_header("Location", location))
        }
        Action::Forward(delay) => {
            if let Some(delay) = delay {
                stop.sleep(delay);
            }
            let (status, answer) =
                forward(agent, upstream, request, &exchange.path, &exchange.headers);
            json(status, &answer)
        }
    };
    if let Reply::Send(response) = &reply {
        exchange.status = response.status;
    }
    exchange.answered_ms = now_ms();
    if is_write {
        log.lock().unwrap().push(exchange);
    }
    reply
}

fn json_response(status: u16, body: &str) -> Response {
    Response::new(status, "application/json", body)
}

fn json(status: u16, body: &str) -> Reply {
    Reply::Send(json_response(status, body))
}

/// A server that accepts connections, reads nothing and never answers: InfluxDB hung.
/// Connections are held until it is dropped.
pub struct Silent {
    server: loopback_http::Server,
}

impl Silent {
    pub fn start() -> Silent {
        let server =
            loopback_http::Server::start(options("silent"), Stop::default(), |_| Reply::Hold)
                .expect("silent server starts on 127.0.0.1");
        Silent { server }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

fn forward(
    agent: &ureq::Agent,
    upstream: &str,
    request: &Request,
    path: &str,
    headers: &[(String, String)],
) -> (u16, String) {
    let url = format!("{upstream}{path}");
    let result = if request.method == "POST" {
        let mut forwarded = agent.post(&url);
        for (k, v) in headers {
            if matches!(
                k.as_str(),
                "authorization" | "content-encoding" | "content-type"
            ) {
                forwarded = forwarded.header(k, v);
            }
        }
        forwarded.send(&request.body[..])
    } else {
        let mut forwarded = agent.get(&url);
        for (k, v) in headers {
            if k == "authorization" {
                forwarded = forwarded.header(k, v);
            }
        }
        forwarded.call()
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
