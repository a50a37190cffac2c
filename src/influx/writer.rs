//! The writer thread: finished line protocol in, InfluxDB (or stdout) out, nothing lost.
//!
//! Batches from the aggregator are coalesced into requests of at most
//! `max_lines_per_request` lines, gzipped and POSTed to the v1 (`/write`) or v2
//! (`/api/v2/write`) endpoint with credentials in headers only. What InfluxDB does not
//! take yet goes to the backlog: the spool in `SPOOL_DIR` (fsynced at once, so a SIGKILL
//! loses nothing already polled), or a capped in-memory queue without one. The backlog is
//! replayed oldest first once InfluxDB answers again, after fresh batches and at a
//! limited rate. A backlog found at start-up (left by an earlier run) is the exception:
//! fresh batches queue behind it until it is replayed, because it may hold the partial
//! point of the window the restart is completing, which must not land last.
//!
//! Response policy ("No window lost"):
//!
//! | InfluxDB answers | the writer |
//! |---|---|
//! | 2xx | done |
//! | 400 `partial write` (bad lines, or a type conflict with stored data) | the good lines of that body were stored: log InfluxDB's message (which names the first bad line) once per minute, count the rejected lines as dropped, do not resend |
//! | 400 `field type conflict` within one body (nothing stored), other 400/4xx, 413 too large | split the body in halves and send them again, down to the single line InfluxDB refuses, which is dropped, counted and logged |
//! | 401 / 403 credentials refused | keep the data, retry every 30 s, log loudly once |
//! | 404 database / bucket not found | keep the data, retry every 30 s, log once |
//! | 3xx redirect | never followed (a client would resend a write as a GET without its body): keep the data, retry every 30 s, log the `Location` once with the `INFLUXDB_URL` to set |
//! | 429 / 503 | keep the data, retry after `Retry-After` (else backoff) |
//! | other 5xx, timeout, connection refused | keep the data, exponential backoff with jitter, 1 s doubling up to 30 s |
//!
//! Every failure class is logged once when it starts, then as a summary every 5 minutes
//! (`InfluxDB unreachable for 5m, 30 batches (1200 lines) spooled`), and once on recovery.
//!
//! Shutdown ends within `SHUTDOWN_TIMEOUT` of SIGTERM whatever the network does: each
//! request runs on a helper thread the writer stops waiting for at the deadline. What is
//! not delivered then is spooled; what cannot be spooled (no `SPOOL_DIR`, or the spool
//! unwritable) is counted in `lines_dropped` and logged as lost, with the number.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvTimeoutError, TryRecvError};
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::config::{InfluxTarget, SpoolConfig, V1Auth};
use crate::duration;
use crate::influx::spool::Spool;
use crate::stats::Stats;

/// Small batches (KPI polls, small windows) are joined into one request up to this many
/// bytes; a larger batch is sent on its own, so a big window is never copied again.
const COALESCE_MAX_BYTES: usize = 512 * 1024;
/// Default for [`WriterSettings::max_lines_per_request`].
pub const DEFAULT_MAX_LINES_PER_REQUEST: usize = 5000;
/// Cap of the in-memory backlog used when no `SPOOL_DIR` is set.
pub const MEMORY_BACKLOG_MAX_BYTES: usize = 32 * 1024 * 1024;
/// Retry period while credentials are refused or the database/bucket does not exist.
pub const SLOW_RETRY: Duration = Duration::from_secs(30);
/// Ceiling of the exponential backoff (and of a `Retry-After` we honour).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// At most one replay request per this interval, so fresh batches go first.
/// Spool records are window parts of ≤ 128 KiB (about 200 lines), so this replays
/// up to about 5 MB of line protocol a second: a backlog drains many times faster than
/// windows arrive, and fresh windows still go first.
const REPLAY_INTERVAL: Duration = Duration::from_millis(25);
/// How often a continuing outage or continuing rejections are summarised in the log.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(300);
const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// Longest blocking wait on the input channel, so the loop re-checks its timers.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// After the shutdown deadline, how long the last parts of the closing window may still
/// take to arrive (they are spooled, not sent).
const FINAL_PARTS_GRACE: Duration = Duration::from_millis(200);
/// InfluxDB's answers are small; a huge or endless body is read only this far.
const ANSWER_BODY_MAX_BYTES: u64 = 64 * 1024;

/// Complete, `\n`-terminated lines of line protocol.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub lines: String,
    pub line_count: usize,
}

#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub target: InfluxTarget,
    pub spool: SpoolConfig,
    pub shutdown_timeout: Duration,
    pub max_lines_per_request: usize,
}

/// Writes every batch from `input` until it disconnects and everything is delivered.
/// Shutdown starts when `stop` disconnects (SIGTERM) or `input` does, and ends
/// `shutdown_timeout` later whatever the network does: a request still unanswered then
/// is abandoned, and what is unsent is spooled (with a `SPOOL_DIR`) or counted and
/// logged as lost.
pub fn run(
    settings: WriterSettings,
    agent: ureq::Agent,
    input: Receiver<Batch>,
    stop: Receiver<()>,
    stats: Arc<Stats>,
) {
    let Some(endpoint) = Endpoint::new(&settings.target) else {
        write_stdout(&input, &stats);
        return;
    };
    let description = endpoint.description.clone();
    let clock = ShutdownClock::new(stop, settings.shutdown_timeout);
    let transport = HttpTransport {
        agent,
        endpoint: Arc::new(endpoint),
        clock: clock.clone(),
    };
    let backlog = Backlog::new(&settings.spool, MEMORY_BACKLOG_MAX_BYTES, stats.clone());
    log::info!("writer: sending to {description}; {}", backlog.summary());
    Writer::new(transport, backlog, &settings, stats, clock).run(&input);
}

/// Why `genesys2influx check` could not confirm InfluxDB is writable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// No answer (connection refused, DNS, TLS, timeout).
    Unreachable(String),
    /// 401/403: the credentials do not allow writing.
    Refused(String),
    /// 404: the database or bucket does not exist (or the URL is not an InfluxDB).
    NotFound(String),
    /// Any other answer to the probe.
    Rejected(String),
}

impl CheckError {
    /// The process exit code of the contract: 69, 77 or 78.
    pub fn exit_code(&self) -> u8 {
        match self {
            CheckError::Unreachable(_) => 69,
            CheckError::Refused(_) => 77,
            CheckError::NotFound(_) | CheckError::Rejected(_) => 78,
        }
    }
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Unreachable(m) => write!(f, "InfluxDB unreachable: {m}"),
            CheckError::Refused(m) => write!(
                f,
                "InfluxDB refused the credentials: {m}; check INFLUXDB_USERNAME/INFLUXDB_PASSWORD or INFLUXDB_TOKEN"
            ),
            CheckError::NotFound(m) => write!(
                f,
                "InfluxDB answered 404: {m}; check INFLUXDB_DATABASE/INFLUXDB_BUCKET and INFLUXDB_URL"
            ),
            CheckError::Rejected(m) => write!(f, "InfluxDB rejected the write probe: {m}"),
        }
    }
}

impl std::error::Error for CheckError {}

/// `GET /ping`, then an empty POST to the write endpoint (204 when authorised: FINDINGS
/// H05), so no data point is written.
pub fn check(target: &InfluxTarget, agent: &ureq::Agent) -> Result<String, CheckError> {
    let Some(endpoint) = Endpoint::new(target) else {
        return Ok("line protocol goes to stdout".to_string());
    };
    let ping = agent
        .get(format!("{}/ping", endpoint.base))
        .call()
        .map_err(|e| CheckError::Unreachable(format!("{}/ping: {e}", endpoint.base)))?;
    let version = ping
        .headers()
        .get("x-influxdb-version")
        .and_then(|v| v.to_str().ok())
        .map(|v| format!("InfluxDB {v}"))
        .unwrap_or_else(|| "InfluxDB".to_string());
    let mut response = write_request(agent, &endpoint, None)
        .send_empty()
        .map_err(|e| CheckError::Unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let location = header(&response, "location");
    let message = error_message(&read_bounded(response.body_mut()));
    match status {
        200..=299 => Ok(format!(
            "{version} at {}, {} writable",
            endpoint.base, endpoint.destination
        )),
        // Authorisation and the database are checked before the body: a 400 about the
        // empty body still proves both (InfluxDB 2.x may answer so).
        400 if !message.contains("database is required") => Ok(format!(
            "{version} at {}, {} writable (empty probe answered: {message})",
            endpoint.base, endpoint.destination
        )),
        300..=399 => Err(CheckError::Rejected(redirect_message(
            status,
            location.as_deref(),
        ))),
        401 | 403 => Err(CheckError::Refused(format!("{status} {message}"))),
        404 => Err(CheckError::NotFound(format!(
            "{} ({message})",
            endpoint.destination
        ))),
        _ => Err(CheckError::Rejected(format!("{status} {message}"))),
    }
}

/// Where requests go, built once from the target.
#[derive(Debug, Clone)]
struct Endpoint {
    base: String,
    write_url: String,
    /// `Basic …` or `Token …`: a secret, never logged.
    authorization: Option<String>,
    /// `database "x"` / `bucket "x"`, for log lines.
    destination: String,
    /// `InfluxDB v1 at http://…, database "x"`, for log lines.
    description: String,
}

impl Endpoint {
    fn new(target: &InfluxTarget) -> Option<Endpoint> {
        let (base, write_url, authorization, destination) = match target {
            InfluxTarget::Stdout => return None,
            InfluxTarget::V1 {
                url,
                database,
                retention_policy,
                auth,
            } => {
                let mut write_url = format!("{url}/write?db={}", url_encode(database));
                if let Some(rp) = retention_policy {
                    write_url.push_str("&rp=");
                    write_url.push_str(&url_encode(rp));
                }
                write_url.push_str("&precision=s");
                let authorization = match auth {
                    V1Auth::None => None,
                    V1Auth::Basic { username, password } => {
                        Some(crate::http::basic_auth(username, password.expose()))
                    }
                    V1Auth::Token(token) => Some(format!("Token {}", token.expose())),
                };
                (
                    url,
                    write_url,
                    authorization,
                    format!("database \"{database}\""),
                )
            }
            InfluxTarget::V2 {
                url,
                org,
                bucket,
                token,
            } => {
                let mut write_url = format!("{url}/api/v2/write?");
                if let Some(org) = org {
                    write_url.push_str("org=");
                    write_url.push_str(&url_encode(org));
                    write_url.push('&');
                }
                write_url.push_str("bucket=");
                write_url.push_str(&url_encode(bucket));
                write_url.push_str("&precision=s");
                (
                    url,
                    write_url,
                    Some(format!("Token {}", token.expose())),
                    format!("bucket \"{bucket}\""),
                )
            }
        };
        Some(Endpoint {
            description: format!("InfluxDB {} at {base}, {destination}", target.mode_name()),
            base: base.clone(),
            write_url,
            authorization,
            destination,
        })
    }
}

/// What one POST came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Status {
        code: u16,
        retry_after: Option<Duration>,
        /// The `Location` of a 3xx.
        location: Option<String>,
        body: String,
    },
    /// No HTTP answer: refused connection, timeout, reset, DNS, TLS, or none before the
    /// shutdown deadline.
    NoAnswer(String),
}

/// Sends one body of line protocol and says what came back: the seam between the
/// response policy and HTTP. The HTTP one gzips; tests use a scripted fake.
trait Transport {
    fn post(&mut self, lines: &str) -> Answer;
}

/// When the shutdown flush must end: `SHUTDOWN_TIMEOUT` after `stop` disconnects
/// (SIGTERM) or the input closes, whichever comes first. Shared by the writer loop and
/// the transport, so a request in flight at SIGTERM is waited for only that long.
#[derive(Debug, Clone)]
struct ShutdownClock {
    stop: Receiver<()>,
    timeout: Duration,
    started: Arc<OnceLock<Instant>>,
}

impl ShutdownClock {
    fn new(stop: Receiver<()>, timeout: Duration) -> ShutdownClock {
        ShutdownClock {
            stop,
            timeout,
            started: Arc::default(),
        }
    }

    /// Starts the shutdown now, unless it already started.
    fn start(&self) {
        self.started.get_or_init(Instant::now);
    }

    /// The deadline, once the shutdown has started.
    fn deadline(&self) -> Option<Instant> {
        if self.started.get().is_none()
            && matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
        {
            self.start();
        }
        self.started.get().map(|at| *at + self.timeout)
    }

    /// Waits for `answer`; once the shutdown has started, no later than its deadline.
    fn wait_for<T>(&self, answer: &Receiver<T>) -> Option<T> {
        if self.deadline().is_none() {
            select! {
                recv(answer) -> got => return got.ok(),
                recv(self.stop) -> _ => {}
            }
        }
        // `stop` is never sent on: its arm fired because it disconnected.
        match self.deadline() {
            Some(deadline) => answer.recv_deadline(deadline).ok(),
            None => answer.recv().ok(),
        }
    }
}

struct HttpTransport {
    agent: ureq::Agent,
    endpoint: Arc<Endpoint>,
    clock: ShutdownClock,
}

impl Transport for HttpTransport {
    /// The request runs on a short-lived thread so that a server that never answers
    /// cannot hold the writer past the shutdown deadline; once shutting down, requests
    /// also carry a timeout no longer than the time left.
    fn post(&mut self, lines: &str) -> Answer {
        let body = match gzip(lines.as_bytes()) {
            Ok(body) => body,
            Err(e) => return Answer::NoAnswer(format!("gzip: {e}")),
        };
        let timeout = match self.clock.deadline() {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Answer::NoAnswer(SHUTDOWN_OVER.to_string());
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
                let _ = done.send(post_once(&agent, &endpoint, &body, timeout));
            });
        if let Err(e) = started {
            return Answer::NoAnswer(format!("cannot start the request thread: {e}"));
        }
        self.clock
            .wait_for(&answer)
            .unwrap_or_else(|| Answer::NoAnswer(SHUTDOWN_OVER.to_string()))
    }
}

const SHUTDOWN_OVER: &str = "no answer within SHUTDOWN_TIMEOUT";

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
        Err(e) => Answer::NoAnswer(e.to_string()),
    }
}

/// A POST to the write endpoint, with its credentials, that never follows a redirect:
/// a client follows 301/302 with a GET without the body, so the data would be gone.
fn write_request(
    agent: &ureq::Agent,
    endpoint: &Endpoint,
    timeout: Option<Duration>,
) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
    let mut config = agent.post(&endpoint.write_url).config().max_redirects(0);
    if timeout.is_some() {
        config = config.timeout_global(timeout);
    }
    let request = config.build();
    match &endpoint.authorization {
        Some(auth) => request.header("Authorization", auth),
        None => request,
    }
}

fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The answer's body, at most [`ANSWER_BODY_MAX_BYTES`]; a body cut short (timeout,
/// reset) still says what it said so far.
fn read_bounded(body: &mut ureq::Body) -> String {
    let mut bytes = Vec::new();
    let _ = body
        .as_reader()
        .take(ANSWER_BODY_MAX_BYTES)
        .read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Deflate level of the request bodies. Measured on demo windows (miniz_oxide, one core):
/// level 1 shrinks 8× at 266 MB/s but only 5× on some windows, level 3 15× at 105 MB/s,
/// the default level 6 16× at 52 MB/s. Level 3 keeps a wide margin on the ratio for half
/// the CPU of the default.
const GZIP_LEVEL: Compression = Compression::new(3);

fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 10 + 64), GZIP_LEVEL);
    encoder.write_all(data)?;
    encoder.finish()
}

/// Why InfluxDB is not taking data right now; each is logged once, not per retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FailureClass {
    Unreachable,
    ServerError,
    Busy,
    Refused,
    NotFound,
    Redirected,
}

impl FailureClass {
    fn describe(self) -> &'static str {
        match self {
            FailureClass::Unreachable => "unreachable",
            FailureClass::ServerError => "failing (5xx)",
            FailureClass::Busy => "busy (429/503)",
            FailureClass::Refused => "refusing the credentials",
            FailureClass::NotFound => "answering 404 (database/bucket not found)",
            FailureClass::Redirected => "redirecting the writes (3xx)",
        }
    }
}

/// How to treat an answer (the policy table of the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Stored,
    /// The good lines were stored; `rejected` lines were not.
    Partial {
        message: String,
        rejected: usize,
    },
    /// Nothing stored and resending the same body will not help: split it.
    Rejected {
        message: String,
    },
    /// Nothing stored; the same body may succeed later.
    Retry {
        class: FailureClass,
        hint: Option<Duration>,
        message: String,
    },
}

fn classify(answer: &Answer) -> Verdict {
    let (code, retry_after, body) = match answer {
        Answer::NoAnswer(message) => {
            return Verdict::Retry {
                class: FailureClass::Unreachable,
                hint: None,
                message: message.clone(),
            }
        }
        Answer::Status {
            code: code @ 300..=399,
            location,
            ..
        } => {
            return Verdict::Retry {
                class: FailureClass::Redirected,
                hint: None,
                message: redirect_message(*code, location.as_deref()),
            }
        }
        Answer::Status {
            code,
            retry_after,
            body,
            ..
        } => (*code, *retry_after, body),
    };
    let message = error_message(body);
    let retry = |class| Verdict::Retry {
        class,
        hint: retry_after,
        message: format!("{code} {message}"),
    };
    match code {
        200..=299 => Verdict::Stored,
        401 | 403 => retry(FailureClass::Refused),
        404 => retry(FailureClass::NotFound),
        429 | 503 => retry(FailureClass::Busy),
        400 if message.to_ascii_lowercase().contains("partial write") => Verdict::Partial {
            rejected: rejected_lines(&message),
            message,
        },
        400..=499 => Verdict::Rejected {
            message: format!("{code} {message}"),
        },
        _ => retry(FailureClass::ServerError),
    }
}

/// What to say about a 3xx: where it points (no credentials, no query) and what to set.
fn redirect_message(code: u16, location: Option<&str>) -> String {
    let Some(location) = location.map(shown_url) else {
        return format!(
            "{code} without a Location; writes never follow a redirect: check INFLUXDB_URL"
        );
    };
    let advice = match influx_base(&location) {
        Some(base) => format!("set INFLUXDB_URL={base}"),
        None => "set INFLUXDB_URL to the address InfluxDB answers on itself".to_string(),
    };
    format!(
        "{code} to {location}; writes never follow a redirect (the body would be lost): {advice}"
    )
}

/// `url` without credentials, query or fragment, at most 300 bytes, for a log line.
fn shown_url(url: &str) -> String {
    let bare = url.split(['?', '#']).next().unwrap_or_default();
    let without_user = match bare.split_once("://") {
        Some((scheme, rest)) => {
            // `find` gives a char boundary, so the split cannot panic.
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}{path}"),
                None => bare.to_string(),
            }
        }
        None => bare.to_string(),
    };
    truncate(&without_user, 300)
}

/// The `INFLUXDB_URL` an absolute redirect to `…/write` or `…/api/v2/write` implies.
fn influx_base(location: &str) -> Option<&str> {
    if !(location.starts_with("http://") || location.starts_with("https://")) {
        return None;
    }
    location
        .strip_suffix("/api/v2/write")
        .or_else(|| location.strip_suffix("/write"))
}

/// InfluxDB's `{"error": …}` (1.x) or `{"message": …}` (2.x), else the body itself.
fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    truncate(&text, 1000)
}

/// Lines a partial write did not store: each `unable to parse` plus InfluxDB's `dropped=N`.
fn rejected_lines(message: &str) -> usize {
    let unparsable = message.matches("unable to parse").count();
    let dropped = message
        .rsplit_once("dropped=")
        .and_then(|(_, after)| {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .unwrap_or(0);
    (unparsable + dropped).max(1)
}

/// `text`, cut to at most `max` bytes on a char boundary and marked with `…` if cut.
fn truncate(text: &str, max: usize) -> String {
    let kept = prefix_within(text, max);
    if kept.len() == text.len() {
        return text.to_string();
    }
    format!("{kept}…")
}

/// The longest start of `text` that is at most `max` bytes and ends on a char boundary.
fn prefix_within(text: &str, max: usize) -> &str {
    let end = text
        .char_indices()
        .map(|(at, c)| at + c.len_utf8())
        .take_while(|&end| end <= max)
        .last()
        .unwrap_or(0);
    text.get(..end).unwrap_or_default()
}

/// What became of one body.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    Done,
    /// InfluxDB cannot take data now; `rest` (in order) was not stored.
    Retry {
        class: FailureClass,
        hint: Option<Duration>,
        message: String,
        rest: String,
        rest_lines: usize,
    },
}

/// Logs rejected lines at most once per minute, with a count of the ones in between.
#[derive(Debug, Default)]
struct RejectionLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RejectionLog {
    fn report(&mut self, now: Instant, lines: usize, what: impl FnOnce() -> String) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < REJECTION_LOG_INTERVAL)
        {
            self.suppressed += lines as u64;
            return;
        }
        let earlier = std::mem::take(&mut self.suppressed);
        let earlier = if earlier > 0 {
            format!(" ({earlier} more lines rejected since the last message)")
        } else {
            String::new()
        };
        log::warn!("{}{earlier}", what());
        self.last = Some(now);
    }
}

/// Sends `lines` in requests of at most `max_lines` lines, splitting what InfluxDB
/// rejects as a whole until the bad line is isolated.
fn deliver(
    transport: &mut dyn Transport,
    lines: &str,
    max_lines: usize,
    stats: &Stats,
    rejections: &mut RejectionLog,
) -> Delivery {
    // Pieces still to send; the next one is at the end.
    let mut stack: Vec<&str> = chunks(lines, max_lines.max(1));
    stack.reverse();
    while let Some(piece) = stack.pop() {
        let count = count_lines(piece);
        let started = Instant::now();
        let answer = transport.post(piece);
        Stats::raise_to(
            &stats.write_ms_max,
            started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64,
        );
        match classify(&answer) {
            Verdict::Stored => Stats::add(&stats.points_written, count as u64),
            Verdict::Partial { message, rejected } => {
                let rejected = rejected.min(count);
                Stats::add(&stats.points_written, (count - rejected) as u64);
                Stats::add(&stats.lines_dropped, rejected as u64);
                Stats::incr(&stats.write_errors);
                rejections.report(Instant::now(), rejected, || {
                    format!(
                        "InfluxDB stored {} of {count} lines and rejected {rejected}: {message}",
                        count - rejected
                    )
                });
            }
            Verdict::Rejected { message } => {
                Stats::incr(&stats.write_errors);
                match split_point(piece).and_then(|mid| piece.split_at_checked(mid)) {
                    Some((head, tail)) => {
                        stack.push(tail);
                        stack.push(head);
                    }
                    None => {
                        Stats::add(&stats.lines_dropped, count as u64);
                        rejections.report(Instant::now(), count, || {
                            format!(
                                "InfluxDB rejected a line, dropped: {message}; line: {}",
                                truncate(piece.trim_end(), 500)
                            )
                        });
                    }
                }
            }
            Verdict::Retry {
                class,
                hint,
                message,
            } => {
                Stats::incr(&stats.write_errors);
                let mut rest = String::with_capacity(
                    piece.len() + stack.iter().map(|p| p.len()).sum::<usize>(),
                );
                rest.push_str(piece);
                for later in stack.iter().rev() {
                    rest.push_str(later);
                }
                let rest_lines = count_lines(&rest);
                return Delivery::Retry {
                    class,
                    hint,
                    message,
                    rest,
                    rest_lines,
                };
            }
        }
    }
    Delivery::Done
}

fn count_lines(lines: &str) -> usize {
    lines.bytes().filter(|&b| b == b'\n').count()
        + usize::from(!lines.is_empty() && !lines.ends_with('\n'))
}

/// Consecutive groups of at most `max_lines` (at least 1) whole lines.
fn chunks(lines: &str, max_lines: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = lines;
    // Each round takes at least one byte: the loop ends.
    while !rest.is_empty() {
        let end = rest
            .match_indices('\n')
            .nth(max_lines.max(1) - 1)
            .map_or(rest.len(), |(at, _)| at + 1);
        // Just after a `\n` (or the end) is a char boundary: the split cannot panic.
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// Where to cut `piece` in two halves of whole lines; `None` for a single line. Works on
/// bytes and cuts only just after a `\n`, so the cut is always a char boundary whatever
/// the text holds.
fn split_point(piece: &str) -> Option<usize> {
    let bytes = piece.as_bytes();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mid = body.len() / 2;
    body[mid..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| mid + i + 1)
        .or_else(|| body[..mid].iter().rposition(|&b| b == b'\n').map(|i| i + 1))
}

/// Data InfluxDB has not accepted yet: the spool when `SPOOL_DIR` is set, else a
/// byte-capped queue in memory. While the spool cannot be opened or written (read-only,
/// full, removed) batches wait in memory and every later batch tries the spool again;
/// once it works, what waited in memory moves there first, so the order is kept.
struct Backlog {
    spool_config: SpoolConfig,
    spool: Option<Spool>,
    /// The spool's last error while it fails; its start and end are logged once.
    spool_error: Option<String>,
    memory: VecDeque<Batch>,
    memory_bytes: usize,
    memory_max_bytes: usize,
    /// Lines the memory cap dropped since it started dropping; logged when the episode
    /// starts and, with the total, when the memory backlog is empty again.
    dropping: Option<u64>,
    stats: Arc<Stats>,
}

impl Backlog {
    fn new(config: &SpoolConfig, memory_max_bytes: usize, stats: Arc<Stats>) -> Backlog {
        let mut backlog = Backlog {
            spool_config: config.clone(),
            spool: None,
            spool_error: None,
            memory: VecDeque::new(),
            memory_bytes: 0,
            memory_max_bytes,
            dropping: None,
            stats,
        };
        backlog.open_spool();
        backlog
    }

    /// Opens the spool if `SPOOL_DIR` is set and it is not open yet; false when there is
    /// no usable spool.
    fn open_spool(&mut self) -> bool {
        if self.spool.is_some() {
            return true;
        }
        let Some(dir) = &self.spool_config.dir else {
            return false;
        };
        match Spool::open(dir, self.spool_config.max_bytes, self.stats.clone()) {
            Ok(spool) => {
                self.spool = Some(spool);
                true
            }
            Err(e) => {
                self.spool_failed(format!("cannot be opened ({e})"));
                false
            }
        }
    }

    fn spool_failed(&mut self, error: String) {
        if self.spool_error.is_none() {
            log::error!(
                "spool {}: {error}; unsent data waits in memory (up to {} bytes) and the spool is tried again with every batch",
                self.spool_dir_shown(),
                self.memory_max_bytes
            );
        }
        self.spool_error = Some(error);
    }

    fn spool_dir_shown(&self) -> String {
        self.spool_config
            .dir
            .as_deref()
            .map_or_else(String::new, |d| d.display().to_string())
    }

    fn spool_configured(&self) -> bool {
        self.spool_config.dir.is_some()
    }

    fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.spool.as_ref().is_none_or(Spool::is_empty)
    }

    /// Nothing waits in memory: everything not delivered is on disk.
    fn memory_is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    fn lines(&self) -> u64 {
        self.memory.iter().map(|b| b.line_count as u64).sum::<u64>()
            + self.spool.as_ref().map_or(0, Spool::lines)
    }

    fn summary(&self) -> String {
        match (&self.spool, &self.spool_error) {
            (Some(spool), None) => spool.summary(),
            (_, Some(error)) => format!(
                "spool {}: {error}, {} lines wait in memory",
                self.spool_dir_shown(),
                self.memory.iter().map(|b| b.line_count).sum::<usize>()
            ),
            (None, None) => format!(
                "no SPOOL_DIR: up to {} bytes kept in memory while InfluxDB is down",
                self.memory_max_bytes
            ),
        }
    }

    fn push(&mut self, batch: Batch) {
        if batch.line_count == 0 {
            return;
        }
        if self.spool_configured() && self.move_to_spool(Some(&batch)) {
            return;
        }
        self.push_memory(batch);
    }

    /// Moves what waits in memory to the spool (oldest first), then `batch`; true when
    /// all of it is spooled.
    fn move_to_spool(&mut self, batch: Option<&Batch>) -> bool {
        if !self.open_spool() {
            return false;
        }
        let Some(spool) = self.spool.as_mut() else {
            return false;
        };
        let mut moved = 0;
        let mut result = Ok(());
        while let Some(old) = self.memory.front() {
            result = spool.push(&old.lines, old.line_count);
            if result.is_err() {
                break;
            }
            moved += old.line_count;
            self.memory_bytes -= old.lines.len();
            self.memory.pop_front();
        }
        if let (Ok(()), Some(batch)) = (&result, batch) {
            result = spool.push(&batch.lines, batch.line_count);
        }
        if let Err(e) = result {
            self.spool_failed(format!("cannot be written ({e})"));
            return false;
        }
        if self.spool_error.take().is_some() {
            log::info!(
                "spool {}: writable again; {moved} lines that waited in memory are spooled",
                self.spool_dir_shown()
            );
        }
        self.memory_drained();
        true
    }

    fn push_memory(&mut self, batch: Batch) {
        self.memory_bytes += batch.lines.len();
        self.memory.push_back(batch);
        let mut dropped = 0;
        while self.memory_bytes > self.memory_max_bytes && self.memory.len() > 1 {
            if let Some(old) = self.memory.pop_front() {
                self.memory_bytes -= old.lines.len();
                dropped += old.line_count as u64;
            }
        }
        if dropped == 0 {
            return;
        }
        Stats::add(&self.stats.lines_dropped, dropped);
        match &mut self.dropping {
            Some(total) => *total += dropped,
            None => {
                let why = if self.spool_configured() {
                    "the spool cannot be written"
                } else {
                    "set SPOOL_DIR to keep more"
                };
                log::warn!(
                    "backlog in memory over {} bytes ({why}): dropping the oldest lines, {dropped} so far; the total follows when the backlog has drained",
                    self.memory_max_bytes
                );
                self.dropping = Some(dropped);
            }
        }
    }

    /// Ends a dropping episode once memory is empty, with its total.
    fn memory_drained(&mut self) {
        if !self.memory.is_empty() {
            return;
        }
        if let Some(total) = self.dropping.take() {
            log::warn!(
                "backlog in memory: {total} lines in all were dropped while it was over {} bytes",
                self.memory_max_bytes
            );
        }
    }

    /// The oldest batch: spool first (older), then memory.
    fn front(&mut self) -> Option<(&str, usize)> {
        if let Some(spool) = &mut self.spool {
            match spool.front() {
                Ok(Some(_)) => return spool.front().ok().flatten(),
                Ok(None) => {}
                Err(e) => log::error!("spool: cannot read ({e})"),
            }
        }
        self.memory
            .front()
            .map(|b| (b.lines.as_str(), b.line_count))
    }

    fn ack_front(&mut self) {
        if let Some(spool) = &mut self.spool {
            if !spool.is_empty() {
                spool.ack_front();
                return;
            }
        }
        if let Some(batch) = self.memory.pop_front() {
            self.memory_bytes -= batch.lines.len();
            self.memory_drained();
        }
    }

    /// After the front batch was delivered in part: only `rest` (its suffix) is unsent.
    /// A spool record stays whole on disk, so a crash cannot lose the rest; the part
    /// InfluxDB already has is overwritten, not duplicated, when it comes again.
    fn front_partly_delivered(&mut self, rest: Batch) {
        if self.spool.as_ref().is_some_and(|spool| !spool.is_empty()) {
            return;
        }
        if let Some(front) = self.memory.front_mut() {
            self.memory_bytes -= front.lines.len().saturating_sub(rest.lines.len());
            *front = rest;
        }
    }

    /// At exit: what waits in memory goes to the spool if it can; the rest is counted as
    /// dropped. Returns those lost lines.
    fn abandon_memory(&mut self) -> u64 {
        if self.spool_configured() {
            self.move_to_spool(None);
        }
        let lost: u64 = self.memory.drain(..).map(|b| b.line_count as u64).sum();
        self.memory_bytes = 0;
        Stats::add(&self.stats.lines_dropped, lost);
        self.memory_drained();
        lost
    }

    /// Why data is in memory rather than in the spool, for the loss message at exit.
    fn why_not_spooled(&self) -> String {
        match &self.spool_error {
            Some(error) => format!("spool {}: {error}", self.spool_dir_shown()),
            None => "no SPOOL_DIR is set".to_string(),
        }
    }
}

/// A continuing failure, for the once-per-class log lines and the summaries.
#[derive(Debug)]
struct Outage {
    class: FailureClass,
    since: Instant,
    last_summary: Instant,
    failed_requests: u64,
    batches_kept: u64,
    lines_kept: u64,
}

struct Writer<T: Transport> {
    transport: T,
    backlog: Backlog,
    stats: Arc<Stats>,
    max_lines: usize,
    fresh: VecDeque<Batch>,
    /// While InfluxDB is failing: when to try again.
    retry_at: Option<Instant>,
    attempt: u32,
    outage: Option<Outage>,
    next_replay: Instant,
    rejections: RejectionLog,
    rng: u64,
    destination: &'static str,
    /// An earlier run left a backlog: until it is replayed, fresh batches queue behind it
    /// instead of going first, so a partial window spooled at that run's shutdown can never
    /// overwrite the complete point of the same window written after the restart.
    behind_old_backlog: bool,
    clock: ShutdownClock,
}

impl<T: Transport> Writer<T> {
    fn new(
        transport: T,
        backlog: Backlog,
        settings: &WriterSettings,
        stats: Arc<Stats>,
        clock: ShutdownClock,
    ) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        let behind_old_backlog = !backlog.is_empty();
        let destination = if backlog.spool_configured() {
            "spooled"
        } else {
            "kept in memory"
        };
        Writer {
            transport,
            backlog,
            stats,
            max_lines: settings.max_lines_per_request.max(1),
            fresh: VecDeque::new(),
            retry_at: None,
            attempt: 0,
            outage: None,
            next_replay: Instant::now(),
            rejections: RejectionLog::default(),
            rng: seed | 1,
            destination,
            behind_old_backlog,
            clock,
        }
    }

    fn run(mut self, input: &Receiver<Batch>) {
        let mut open = true;
        // Bounded: each pass receives, sends one request, or waits at most IDLE_WAIT;
        // once the shutdown has started, its deadline ends the loop.
        loop {
            let now = Instant::now();
            let deadline = self.clock.deadline();
            if deadline.is_some_and(|d| now >= d) {
                break;
            }
            // Take no more than one request's worth from the channel: the bounded channel
            // is what slows the aggregator down when InfluxDB is slow, and memory stays flat.
            if open && !self.fresh_is_full() {
                open = self.receive(input, self.wait_time(now), deadline);
                if !open {
                    self.clock.start();
                }
            } else if let (false, Some(deadline)) = (open, deadline) {
                let wait = self.wait_time(now).min(deadline - now);
                std::thread::sleep(wait);
            }
            let now = Instant::now();
            if self.behind_old_backlog && self.backlog.is_empty() {
                self.behind_old_backlog = false;
            }
            let shutting_down = self.clock.deadline().is_some();
            let failing = self.retry_at.is_some_and(|at| now < at);
            // SIGKILL must not lose what was already polled; at shutdown, data InfluxDB
            // is failing to take goes to the spool at once.
            if failing || self.behind_old_backlog || (shutting_down && self.retry_at.is_some()) {
                while let Some(batch) = self.fresh.pop_front() {
                    self.keep(batch);
                }
            }
            // The spool keeps what is not flushed across restarts: at shutdown only
            // what is in memory is worth the time.
            if shutting_down && !open && self.fresh.is_empty() && self.backlog.memory_is_empty() {
                break;
            }
            self.step(now);
        }
        self.settle_at_exit(input);
        self.log_summary_at_exit();
    }

    /// Waits up to `wait` (never past `deadline`, and no longer than until SIGTERM) for
    /// input, taking at most one request's worth; false once the input is closed.
    fn receive(
        &mut self,
        input: &Receiver<Batch>,
        wait: Duration,
        deadline: Option<Instant>,
    ) -> bool {
        let first = match deadline {
            Some(deadline) => input.recv_deadline(deadline.min(Instant::now() + wait)),
            None => select! {
                recv(input) -> got => got.map_err(|_| RecvTimeoutError::Disconnected),
                recv(self.clock.stop) -> _ => Err(RecvTimeoutError::Timeout),
                default(wait) => Err(RecvTimeoutError::Timeout),
            },
        };
        match first {
            Ok(batch) => self.fresh.push_back(batch),
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        while !self.fresh_is_full() {
            match input.try_recv() {
                Ok(batch) => self.fresh.push_back(batch),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// Whether the fresh batches already make a full request.
    fn fresh_is_full(&self) -> bool {
        let bytes: usize = self.fresh.iter().map(|b| b.lines.len()).sum();
        let lines: usize = self.fresh.iter().map(|b| b.line_count).sum();
        bytes >= COALESCE_MAX_BYTES || lines >= self.max_lines
    }

    /// How long the loop may block waiting for input.
    fn wait_time(&self, now: Instant) -> Duration {
        if let Some(at) = self.retry_at {
            return at.saturating_duration_since(now).min(IDLE_WAIT);
        }
        if !self.fresh.is_empty() {
            return Duration::ZERO;
        }
        if !self.backlog.is_empty() {
            return self
                .next_replay
                .saturating_duration_since(now)
                .min(IDLE_WAIT);
        }
        IDLE_WAIT
    }

    /// Does at most one unit of work: a fresh request, a retry, or one replay request.
    fn step(&mut self, now: Instant) {
        match self.retry_at {
            Some(at) if now < at => {
                self.summarise_outage(now);
            }
            Some(_) => self.retry(),
            None if !self.fresh.is_empty() => self.send_fresh(),
            None if !self.backlog.is_empty() && now >= self.next_replay => {
                self.next_replay = now + REPLAY_INTERVAL;
                self.replay_one();
            }
            None => {}
        }
    }

    fn send_fresh(&mut self) {
        let mut body = Batch::default();
        while let Some(next) = self.fresh.front() {
            let full = body.line_count + next.line_count > self.max_lines
                || body.lines.len() + next.lines.len() > COALESCE_MAX_BYTES;
            if body.line_count > 0 && full {
                break;
            }
            let next = self.fresh.pop_front().expect("front exists");
            if body.line_count == 0 {
                body = next;
            } else {
                body.lines.push_str(&next.lines);
                body.line_count += next.line_count;
            }
        }
        if body.line_count == 0 {
            return;
        }
        match deliver(
            &mut self.transport,
            &body.lines,
            self.max_lines,
            &self.stats,
            &mut self.rejections,
        ) {
            Delivery::Done => {}
            Delivery::Retry {
                class,
                hint,
                message,
                rest,
                rest_lines,
            } => {
                self.failed(class, hint, &message);
                self.keep(Batch {
                    lines: rest,
                    line_count: rest_lines,
                });
            }
        }
    }

    /// After a failure: one attempt with the oldest kept data (or fresh data).
    fn retry(&mut self) {
        if self.backlog.is_empty() {
            self.retry_at = None;
            self.send_fresh();
            if self.retry_at.is_none() {
                self.recovered();
            }
            return;
        }
        if self.replay_one() {
            self.recovered();
        }
    }

    /// Sends the oldest backlog record; true when it was delivered.
    fn replay_one(&mut self) -> bool {
        let Some((lines, _)) = self.backlog.front() else {
            return true;
        };
        let delivery = deliver(
            &mut self.transport,
            lines,
            self.max_lines,
            &self.stats,
            &mut self.rejections,
        );
        match delivery {
            Delivery::Done => {
                self.backlog.ack_front();
                true
            }
            Delivery::Retry {
                class,
                hint,
                message,
                rest,
                rest_lines,
            } => {
                self.backlog.front_partly_delivered(Batch {
                    lines: rest,
                    line_count: rest_lines,
                });
                self.failed(class, hint, &message);
                false
            }
        }
    }

    fn keep(&mut self, batch: Batch) {
        if let Some(outage) = &mut self.outage {
            outage.batches_kept += 1;
            outage.lines_kept += batch.line_count as u64;
        }
        self.backlog.push(batch);
    }

    fn failed(&mut self, class: FailureClass, hint: Option<Duration>, message: &str) {
        let now = Instant::now();
        self.attempt = self.attempt.saturating_add(1);
        let delay = retry_delay(class, hint, self.attempt, next_random(&mut self.rng));
        self.retry_at = Some(now + delay);
        match &mut self.outage {
            Some(outage) if outage.class == class => outage.failed_requests += 1,
            _ => {
                let line = format!(
                    "InfluxDB {}: {message}; unsent data is {} and retried (next in {})",
                    class.describe(),
                    self.destination,
                    duration::format(Duration::from_secs(delay.as_secs().max(1)))
                );
                match class {
                    FailureClass::Refused | FailureClass::NotFound | FailureClass::Redirected => {
                        log::error!("{line}")
                    }
                    _ => log::warn!("{line}"),
                }
                let (batches_kept, lines_kept) = self
                    .outage
                    .as_ref()
                    .map_or((0, 0), |o| (o.batches_kept, o.lines_kept));
                self.outage = Some(Outage {
                    class,
                    since: self.outage.as_ref().map_or(now, |o| o.since),
                    last_summary: now,
                    failed_requests: 1,
                    batches_kept,
                    lines_kept,
                });
            }
        }
    }

    fn summarise_outage(&mut self, now: Instant) {
        let destination = self.destination;
        let Some(outage) = &mut self.outage else {
            return;
        };
        if now.duration_since(outage.last_summary) < SUMMARY_INTERVAL {
            return;
        }
        outage.last_summary = now;
        log::warn!(
            "InfluxDB {} for {}, {} batches ({} lines) {destination}, {} failed requests",
            outage.class.describe(),
            duration::format(Duration::from_secs(
                now.duration_since(outage.since).as_secs()
            )),
            outage.batches_kept,
            outage.lines_kept,
            outage.failed_requests
        );
    }

    fn recovered(&mut self) {
        self.retry_at = None;
        self.attempt = 0;
        if let Some(outage) = self.outage.take() {
            log::info!(
                "InfluxDB accepts writes again after {}; {} lines waiting are being replayed",
                duration::format(Duration::from_secs(outage.since.elapsed().as_secs())),
                self.backlog.lines()
            );
        }
    }

    /// At exit: the parts of the closing window still arriving, the fresh batches and
    /// the memory backlog go to the spool; what cannot is counted and logged as lost.
    fn settle_at_exit(&mut self, input: &Receiver<Batch>) {
        let until = Instant::now() + FINAL_PARTS_GRACE;
        while let Ok(batch) = input.recv_deadline(until) {
            self.fresh.push_back(batch);
        }
        while let Some(batch) = self.fresh.pop_front() {
            self.backlog.push(batch);
        }
        let lost = self.backlog.abandon_memory();
        if lost > 0 {
            log::error!(
                "shutdown: {lost} lines were neither delivered to InfluxDB nor spooled ({}); they are lost",
                self.backlog.why_not_spooled()
            );
        }
    }

    fn log_summary_at_exit(&self) {
        let waiting = self.backlog.lines();
        if waiting > 0 {
            log::info!(
                "writer stopped; {waiting} lines wait in the {}",
                self.backlog.summary()
            );
        }
    }
}

/// Delay before the next attempt after `attempt` consecutive failures; `random` in
/// `[0, 1)` spreads retries of many instances.
fn retry_delay(class: FailureClass, hint: Option<Duration>, attempt: u32, random: f64) -> Duration {
    match class {
        FailureClass::Refused | FailureClass::NotFound | FailureClass::Redirected => SLOW_RETRY,
        FailureClass::Busy if hint.is_some() => hint.unwrap_or(MAX_BACKOFF).min(MAX_RETRY_AFTER),
        _ => {
            let exp = FIRST_BACKOFF
                .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
                .min(MAX_BACKOFF);
            exp.mul_f64(0.5 + 0.5 * random)
        }
    }
}

/// xorshift64*: jitter only, no need for a crate.
fn next_random(state: &mut u64) -> f64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
}

/// `INFLUXDB_URL=-` / `--dry-run`: each batch on stdout, flushed.
fn write_stdout(input: &Receiver<Batch>, stats: &Stats) {
    let mut broken = false;
    for batch in input.iter() {
        if broken {
            Stats::add(&stats.lines_dropped, batch.line_count as u64);
            continue;
        }
        let mut out = io::stdout().lock();
        match out
            .write_all(batch.lines.as_bytes())
            .and_then(|()| out.flush())
        {
            Ok(()) => Stats::add(&stats.points_written, batch.line_count as u64),
            Err(e) => {
                log::error!("cannot write to stdout: {e}; further lines are dropped");
                Stats::incr(&stats.write_errors);
                Stats::add(&stats.lines_dropped, batch.line_count as u64);
                broken = true;
            }
        }
    }
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn url_encode(value: &str) -> String {
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
    use crate::config::Secret;
    use std::sync::atomic::Ordering::Relaxed;

    /// A transport answering with a closure and recording every body.
    struct Fake<F: FnMut(&str) -> Answer> {
        answer: F,
        sent: Vec<String>,
    }

    impl<F: FnMut(&str) -> Answer> Transport for Fake<F> {
        fn post(&mut self, lines: &str) -> Answer {
            self.sent.push(lines.to_string());
            (self.answer)(lines)
        }
    }

    fn fake<F: FnMut(&str) -> Answer>(answer: F) -> Fake<F> {
        Fake {
            answer,
            sent: Vec::new(),
        }
    }

    fn status(code: u16, body: &str) -> Answer {
        Answer::Status {
            code,
            retry_after: None,
            location: None,
            body: body.to_string(),
        }
    }

    fn lines(range: std::ops::Range<usize>) -> String {
        range.map(|i| format!("m f={i}i {i}\n")).collect()
    }

    #[test]
    fn classification_follows_the_policy_table() {
        assert_eq!(classify(&status(204, "")), Verdict::Stored);
        assert_eq!(
            classify(&status(
                400,
                r#"{"error":"partial write: unable to parse 'm f= 1': missing field value dropped=0"}"#
            )),
            Verdict::Partial {
                message: "partial write: unable to parse 'm f= 1': missing field value dropped=0"
                    .into(),
                rejected: 1
            }
        );
        assert!(matches!(
            classify(&status(
                400,
                r#"{"error":"partial write: field type conflict: input field \"f\" on measurement \"m\" is type float, already exists as type integer dropped=2"}"#
            )),
            Verdict::Partial { rejected: 2, .. }
        ));
        assert!(matches!(
            classify(&status(400, r#"{"error":"field type conflict"}"#)),
            Verdict::Rejected { .. }
        ));
        assert!(matches!(
            classify(&status(413, r#"{"error":"Request Entity Too Large"}"#)),
            Verdict::Rejected { .. }
        ));
        let class = |a: &Answer| match classify(a) {
            Verdict::Retry { class, .. } => Some(class),
            _ => None,
        };
        assert_eq!(
            class(&status(401, r#"{"error":"authorization failed"}"#)),
            Some(FailureClass::Refused)
        );
        assert_eq!(class(&status(403, "")), Some(FailureClass::Refused));
        assert_eq!(
            class(&status(404, r#"{"error":"database not found: \"x\""}"#)),
            Some(FailureClass::NotFound)
        );
        assert_eq!(class(&status(500, "")), Some(FailureClass::ServerError));
        assert_eq!(class(&status(502, "")), Some(FailureClass::ServerError));
        assert_eq!(
            class(&Answer::NoAnswer("connection refused".into())),
            Some(FailureClass::Unreachable)
        );
        assert_eq!(
            classify(&Answer::Status {
                code: 429,
                retry_after: Some(Duration::from_secs(7)),
                location: None,
                body: r#"{"code":"too many requests","message":"slow down"}"#.into()
            }),
            Verdict::Retry {
                class: FailureClass::Busy,
                hint: Some(Duration::from_secs(7)),
                message: "429 slow down".into()
            }
        );
    }

    #[test]
    fn a_type_conflict_in_one_body_is_isolated_by_halves() {
        let stats = Stats::default();
        let mut body = lines(0..7);
        body.push_str("m f=1.5 99\n");
        body.push_str(&lines(7..16));
        let mut t = fake(|b| {
            if b.contains("f=1.5") && b.matches('\n').count() > 1 {
                status(400, r#"{"error":"field type conflict"}"#)
            } else if b.contains("f=1.5") {
                status(
                    400,
                    r#"{"error":"partial write: field type conflict: input field \"f\" on measurement \"m\" is type float, already exists as type integer dropped=1"}"#,
                )
            } else {
                status(204, "")
            }
        });
        let result = deliver(&mut t, &body, 5000, &stats, &mut RejectionLog::default());
        assert_eq!(result, Delivery::Done);
        assert_eq!(stats.points_written.load(Relaxed), 16);
        assert_eq!(stats.lines_dropped.load(Relaxed), 1);
        // Every good line was sent and stored exactly once after the splits.
        let stored: String = t
            .sent
            .iter()
            .filter(|b| !b.contains("f=1.5"))
            .cloned()
            .collect();
        assert_eq!(stored, lines(0..16));
        assert!(t.sent.len() <= 1 + 2 * 5, "{} requests", t.sent.len());
    }

    #[test]
    fn too_large_bodies_are_split_and_an_oversized_line_dropped() {
        let stats = Stats::default();
        let mut body = lines(0..20);
        body.push_str(&format!("m s=\"{}\" 1\n", "x".repeat(400)));
        let mut t = fake(|b| {
            if b.len() > 200 {
                status(413, r#"{"error":"Request Entity Too Large"}"#)
            } else {
                status(204, "")
            }
        });
        assert_eq!(
            deliver(&mut t, &body, 5000, &stats, &mut RejectionLog::default()),
            Delivery::Done
        );
        assert_eq!(stats.points_written.load(Relaxed), 20);
        assert_eq!(stats.lines_dropped.load(Relaxed), 1);
        let stored: String = t.sent.iter().filter(|b| b.len() <= 200).cloned().collect();
        assert_eq!(stored, lines(0..20));
    }

    #[test]
    fn requests_hold_at_most_max_lines() {
        let stats = Stats::default();
        let mut t = fake(|_| status(204, ""));
        let body = lines(0..12);
        deliver(&mut t, &body, 5, &stats, &mut RejectionLog::default());
        let sizes: Vec<usize> = t.sent.iter().map(|b| b.matches('\n').count()).collect();
        assert_eq!(sizes, vec![5, 5, 2]);
        assert_eq!(t.sent.concat(), body);
    }

    #[test]
    fn an_outage_mid_body_returns_the_unsent_rest_in_order() {
        let stats = Stats::default();
        let mut calls = 0;
        let mut t = fake(|_| {
            calls += 1;
            if calls == 1 {
                status(204, "")
            } else {
                Answer::NoAnswer("connection refused".into())
            }
        });
        let body = lines(0..10);
        match deliver(&mut t, &body, 4, &stats, &mut RejectionLog::default()) {
            Delivery::Retry {
                class,
                rest,
                rest_lines,
                ..
            } => {
                assert_eq!(class, FailureClass::Unreachable);
                assert_eq!(rest, lines(4..10));
                assert_eq!(rest_lines, 6);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stats.points_written.load(Relaxed), 4);
        assert_eq!(stats.write_errors.load(Relaxed), 1);
    }

    #[test]
    fn split_points_and_chunks() {
        assert_eq!(split_point("a\n"), None);
        assert_eq!(split_point("a"), None);
        assert_eq!(split_point("a\nb\n"), Some(2));
        assert_eq!(split_point("aaaaaaaa\nb\n"), Some(9));
        assert_eq!(split_point("a\nbbbbbbbbb\n"), Some(2));
        assert_eq!(chunks("a\nb\nc\n", 2), vec!["a\nb\n", "c\n"]);
        assert_eq!(chunks("a\nb\n", 2), vec!["a\nb\n"]);
        assert_eq!(chunks("a\nb", 1), vec!["a\n", "b"]);
        assert_eq!(count_lines("a\nb"), 2);
        assert_eq!(count_lines(""), 0);
    }

    #[test]
    fn split_points_never_cut_inside_a_character() {
        // The middle byte (19) is inside "セ": the cut goes to the nearest line end.
        let body = "a\n東京センター東京センター\n";
        assert_eq!(split_point(body), Some(2));
        let stats = Stats::default();
        let mut t = fake(|b| {
            if b.matches('\n').count() > 1 {
                status(413, r#"{"error":"Request Entity Too Large"}"#)
            } else {
                status(204, "")
            }
        });
        let body: String = (0..9)
            .map(|i| format!("m,site=東京センター f={i}i {i}\n"))
            .collect();
        let result = deliver(&mut t, &body, 5000, &stats, &mut RejectionLog::default());
        assert_eq!(result, Delivery::Done);
        assert_eq!(stats.points_written.load(Relaxed), 9);
        assert_eq!(stats.lines_dropped.load(Relaxed), 0);
    }

    #[test]
    fn retry_delays() {
        for attempt in 1..40 {
            for random in [0.0, 0.5, 0.999] {
                let d = retry_delay(FailureClass::Unreachable, None, attempt, random);
                assert!(d <= MAX_BACKOFF && d >= Duration::from_millis(500), "{d:?}");
            }
        }
        assert_eq!(
            retry_delay(FailureClass::ServerError, None, 1, 0.0),
            Duration::from_millis(500)
        );
        assert_eq!(
            retry_delay(FailureClass::ServerError, None, 3, 0.999_999_999),
            Duration::from_secs(4).mul_f64(0.5 + 0.5 * 0.999_999_999)
        );
        assert_eq!(retry_delay(FailureClass::Refused, None, 1, 0.3), SLOW_RETRY);
        assert_eq!(
            retry_delay(FailureClass::NotFound, None, 9, 0.3),
            SLOW_RETRY
        );
        assert_eq!(
            retry_delay(FailureClass::Busy, Some(Duration::from_secs(12)), 1, 0.3),
            Duration::from_secs(12)
        );
        let mut rng = 42;
        for _ in 0..1000 {
            let r = next_random(&mut rng);
            assert!((0.0..1.0).contains(&r));
        }
    }

    #[test]
    fn endpoints_put_secrets_in_headers_only() {
        let v1 = Endpoint::new(&InfluxTarget::V1 {
            url: "http://127.0.0.1:8086".into(),
            database: "gen esys&x=1".into(),
            retention_policy: Some("one week".into()),
            auth: V1Auth::Basic {
                username: "writer".into(),
                password: Secret::new("p@ss:wörd"),
            },
        })
        .unwrap();
        assert_eq!(
            v1.write_url,
            "http://127.0.0.1:8086/write?db=gen%20esys%26x%3D1&rp=one%20week&precision=s"
        );
        assert_eq!(
            v1.authorization.as_deref(),
            Some(crate::http::basic_auth("writer", "p@ss:wörd").as_str())
        );
        let token = Endpoint::new(&InfluxTarget::V1 {
            url: "http://h".into(),
            database: "db".into(),
            retention_policy: None,
            auth: V1Auth::Token(Secret::new("tok")),
        })
        .unwrap();
        assert_eq!(token.write_url, "http://h/write?db=db&precision=s");
        assert_eq!(token.authorization.as_deref(), Some("Token tok"));
        let v2 = Endpoint::new(&InfluxTarget::V2 {
            url: "https://eu.example".into(),
            org: Some("my org".into()),
            bucket: "b/1".into(),
            token: Secret::new("secret-token"),
        })
        .unwrap();
        assert_eq!(
            v2.write_url,
            "https://eu.example/api/v2/write?org=my%20org&bucket=b%2F1&precision=s"
        );
        assert_eq!(v2.authorization.as_deref(), Some("Token secret-token"));
        assert!(!v2.description.contains("secret-token"));
        assert!(Endpoint::new(&InfluxTarget::Stdout).is_none());
    }

    fn no_spool() -> SpoolConfig {
        SpoolConfig {
            dir: None,
            max_bytes: 0,
        }
    }

    /// A shutdown clock no signal starts.
    fn clock() -> ShutdownClock {
        ShutdownClock::new(crossbeam_channel::never(), Duration::from_secs(1))
    }

    fn settings(max_lines: usize) -> WriterSettings {
        WriterSettings {
            target: InfluxTarget::Stdout,
            spool: no_spool(),
            shutdown_timeout: Duration::from_secs(1),
            max_lines_per_request: max_lines,
        }
    }

    fn batch(range: std::ops::Range<usize>) -> Batch {
        Batch {
            line_count: range.len(),
            lines: lines(range),
        }
    }

    #[test]
    fn an_outage_keeps_batches_and_replays_them_oldest_first() {
        let stats = Arc::new(Stats::default());
        let up = std::rc::Rc::new(std::cell::Cell::new(false));
        let up2 = up.clone();
        let t = fake(move |_| {
            if up2.get() {
                status(204, "")
            } else {
                Answer::NoAnswer("connection refused".into())
            }
        });
        let backlog = Backlog::new(&no_spool(), 1 << 20, stats.clone());
        let mut w = Writer::new(t, backlog, &settings(100), stats.clone(), clock());
        w.fresh.push_back(batch(0..3));
        w.fresh.push_back(batch(3..5));
        w.step(Instant::now());
        assert!(w.retry_at.is_some(), "failing");
        assert_eq!(w.backlog.lines(), 5);
        assert_eq!(w.transport.sent, vec![lines(0..5)], "coalesced");
        // More data while down goes straight to the backlog (the run loop does this).
        w.keep(batch(5..6));
        // Not yet time: nothing is sent.
        w.step(Instant::now());
        assert_eq!(w.transport.sent.len(), 1);
        // Time for the retry, InfluxDB is back: oldest first, then the rest by replay.
        up.set(true);
        w.retry_at = Some(Instant::now());
        w.step(Instant::now());
        assert!(w.retry_at.is_none() && w.outage.is_none());
        w.fresh.push_back(batch(6..7));
        w.step(Instant::now()); // fresh first
        w.next_replay = Instant::now();
        w.step(Instant::now()); // then the replay
        assert_eq!(
            &w.transport.sent[1..],
            &[lines(0..5), lines(6..7), lines(5..6)]
        );
        assert!(w.backlog.is_empty());
        assert_eq!(stats.points_written.load(Relaxed), 7);
    }

    #[test]
    fn memory_backlog_drops_the_oldest_past_its_cap() {
        let stats = Arc::new(Stats::default());
        let mut backlog = Backlog::new(&no_spool(), 100, stats.clone());
        for i in 0..10 {
            backlog.push(batch(i * 2..i * 2 + 2));
        }
        assert!(backlog.memory_bytes <= 100);
        let dropped = stats.lines_dropped.load(Relaxed);
        assert!(dropped > 0);
        assert_eq!(backlog.lines() + dropped, 20);
        assert_eq!(backlog.front().map(|f| f.1), Some(2));
        // One episode (logged at its start and end), not one message per batch.
        assert_eq!(backlog.dropping, Some(dropped));
        while !backlog.is_empty() {
            backlog.ack_front();
        }
        assert_eq!(backlog.dropping, None, "the episode ended with the backlog");
    }

    #[test]
    fn redirects_keep_the_data_and_name_the_url_to_configure() {
        for code in [301, 302, 307, 308] {
            let answer = Answer::Status {
                code,
                retry_after: None,
                location: Some(
                    "https://user:pw@influx.example:8086/write?db=genesys&p=secret".into(),
                ),
                body: String::new(),
            };
            match classify(&answer) {
                Verdict::Retry {
                    class: FailureClass::Redirected,
                    message,
                    ..
                } => {
                    assert!(
                        message.contains("to https://influx.example:8086/write;")
                            && message.contains("set INFLUXDB_URL=https://influx.example:8086"),
                        "{message}"
                    );
                    assert!(!message.contains("pw") && !message.contains("secret"));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        let stats = Stats::default();
        let mut t = fake(|_| Answer::Status {
            code: 302,
            retry_after: None,
            location: Some("/login".into()),
            body: String::new(),
        });
        let body = lines(0..3);
        match deliver(&mut t, &body, 5000, &stats, &mut RejectionLog::default()) {
            Delivery::Retry {
                class: FailureClass::Redirected,
                rest,
                message,
                ..
            } => {
                assert_eq!(rest, body, "nothing dropped");
                assert!(message.contains("302 to /login;"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stats.lines_dropped.load(Relaxed), 0);
        assert_eq!(
            retry_delay(FailureClass::Redirected, None, 3, 0.5),
            SLOW_RETRY
        );
    }

    /// Makes `dir` unusable for the spool even for root: a plain file in its place.
    fn block_dir(dir: &std::path::Path) {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::write(dir, "not a directory").unwrap();
    }

    fn unblock_dir(dir: &std::path::Path) {
        std::fs::remove_file(dir).unwrap();
        std::fs::create_dir(dir).unwrap();
    }

    #[test]
    fn an_unwritable_spool_is_tried_again_and_what_waited_in_memory_moves_there_in_order() {
        let dir = std::env::temp_dir().join(format!("g2i-writer-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = SpoolConfig {
            dir: Some(dir.clone()),
            max_bytes: 1 << 20,
        };
        let stats = Arc::new(Stats::default());
        let mut backlog = Backlog::new(&config, 1 << 20, stats.clone());
        block_dir(&dir);
        backlog.push(batch(0..2));
        backlog.push(batch(2..3));
        assert!(!backlog.memory_is_empty());
        assert_eq!(backlog.lines(), 3);
        unblock_dir(&dir);
        backlog.push(batch(3..4));
        assert!(backlog.memory_is_empty(), "memory moved to the spool");
        assert_eq!(stats.lines_spooled.load(Relaxed), 4);
        for expected in [lines(0..2), lines(2..3), lines(3..4)] {
            assert_eq!(backlog.front().map(|f| f.0.to_string()), Some(expected));
            backlog.ack_front();
        }
        // Broken again at exit: what cannot be spooled is counted as lost, exactly.
        block_dir(&dir);
        backlog.push(batch(4..6));
        assert_eq!(backlog.abandon_memory(), 2);
        assert_eq!(stats.lines_dropped.load(Relaxed), 2);
        assert!(backlog.why_not_spooled().contains("cannot be written"));
        assert_eq!(backlog.lines(), 0);
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn at_exit_without_a_spool_every_unsent_line_is_counted_as_lost() {
        let stats = Arc::new(Stats::default());
        let t = fake(|_| Answer::NoAnswer("connection refused".into()));
        let backlog = Backlog::new(&no_spool(), 1 << 20, stats.clone());
        let mut w = Writer::new(t, backlog, &settings(100), stats.clone(), clock());
        w.fresh.push_back(batch(0..3));
        w.step(Instant::now());
        w.fresh.push_back(batch(3..5));
        let (tx, input) = crossbeam_channel::bounded(1);
        tx.send(batch(5..6)).unwrap();
        drop(tx);
        w.settle_at_exit(&input);
        assert_eq!(stats.lines_dropped.load(Relaxed), 6);
        assert_eq!(w.backlog.lines(), 0);
    }

    #[test]
    fn the_shutdown_clock_starts_when_stop_disconnects() {
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let clock = ShutdownClock::new(stop, Duration::ZERO);
        assert_eq!(clock.deadline(), None);
        drop(stop_tx);
        let deadline = clock.deadline().expect("started");
        assert_eq!(clock.deadline(), Some(deadline), "started once");
        let (_answer_tx, answer) = crossbeam_channel::bounded::<Answer>(1);
        assert_eq!(
            clock.wait_for(&answer),
            None,
            "no waiting past the deadline"
        );
    }

    fn arbitrary_answer() -> impl Strategy<Value = Answer> {
        let fixed = |code: u16, body: &'static str| Just(status(code, body));
        prop_oneof![
            fixed(204, ""),
            fixed(200, "{}"),
            (0usize..12).prop_map(|n| status_owned(
                400,
                format!(r#"{{"error":"partial write: unable to parse 'x': bad dropped={n}"}}"#)
            )),
            fixed(400, r#"{"error":"field type conflict"}"#),
            fixed(401, r#"{"error":"authorization failed"}"#),
            fixed(403, ""),
            fixed(404, r#"{"error":"database not found"}"#),
            fixed(413, r#"{"error":"Request Entity Too Large"}"#),
            proptest::option::of(any::<u64>()).prop_map(|secs| Answer::Status {
                code: 429,
                retry_after: secs.map(Duration::from_secs),
                location: None,
                body: String::new(),
            }),
            (500u16..600).prop_map(|code| status_owned(code, String::new())),
            (300u16..400, proptest::option::of("[^\r\n]{0,40}")).prop_map(|(code, location)| {
                Answer::Status {
                    code,
                    retry_after: None,
                    location,
                    body: String::new(),
                }
            }),
            (100u16..1000, ".{0,300}").prop_map(|(code, body)| status_owned(code, body)),
            (400u16..500, "x{0,3}").prop_map(|(code, tail)| status_owned(
                code,
                format!("partial write{}", "ü".repeat(70_000 + tail.len()))
            )),
            Just(Answer::NoAnswer("connection reset".into())),
            Just(Answer::NoAnswer(SHUTDOWN_OVER.into())),
        ]
    }

    fn status_owned(code: u16, body: String) -> Answer {
        Answer::Status {
            code,
            retry_after: None,
            location: None,
            body,
        }
    }

    /// Lines of any text but a newline, multi-byte characters included.
    fn arbitrary_lines() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec("[^\n]{0,24}", 1..30)
    }

    /// A transport answering from `script`, then 204 for ever.
    fn scripted(script: Vec<Answer>) -> Fake<impl FnMut(&str) -> Answer> {
        let mut next = 0;
        fake(move |_| {
            next += 1;
            script
                .get(next - 1)
                .cloned()
                .unwrap_or_else(|| status(204, ""))
        })
    }

    fn joined(lines: &[String]) -> Batch {
        Batch {
            lines: lines.iter().map(|l| format!("{l}\n")).collect(),
            line_count: lines.len(),
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any Unicode text cut at any byte count: no panic, a prefix on a char boundary
        /// within the limit, and the longest such prefix (the next character would not fit).
        #[test]
        fn any_text_cuts_to_the_longest_prefix_within(text in "\\PC{0,40}", max in 0usize..200) {
            let kept = prefix_within(&text, max);
            prop_assert!(text.starts_with(kept) && text.is_char_boundary(kept.len()));
            prop_assert!(kept.len() <= max);
            if let Some(next) = text.strip_prefix(kept).and_then(|rest| rest.chars().next()) {
                prop_assert!(kept.len() + next.len_utf8() > max);
            }
            let shown = truncate(&text, max);
            prop_assert_eq!(shown == text, text.len() <= max);
        }

        /// Any text in chunks of any size: every line once, in order, whole, at most
        /// `max_lines` per chunk.
        #[test]
        fn any_text_chunks_into_whole_lines(text in "(\\PC{0,8}\n?){0,20}", max_lines in 1usize..5) {
            let pieces = chunks(&text, max_lines);
            prop_assert_eq!(pieces.concat(), text.clone());
            for (i, piece) in pieces.iter().enumerate() {
                prop_assert!(!piece.is_empty() && count_lines(piece) <= max_lines);
                if i + 1 < pieces.len() {
                    prop_assert!(piece.ends_with('\n') && count_lines(piece) == max_lines);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Splitting any body at any point never panics and always cuts just after a
        /// line end, inside the body.
        #[test]
        fn any_body_splits_at_a_line_end(body in ".{0,200}") {
            if let Some(cut) = split_point(&body) {
                prop_assert!(cut > 0 && cut < body.len());
                prop_assert_eq!(body.as_bytes()[cut - 1], b'\n');
            }
        }

        /// Any answers over any lines: no panic, and every line is stored, dropped
        /// (counted) or handed back unsent, exactly once and in order.
        #[test]
        fn deliver_accounts_for_every_line_once(
            lines in arbitrary_lines(),
            answers in proptest::collection::vec(arbitrary_answer(), 0..40),
            max_lines in 1usize..8,
        ) {
            let stats = Stats::default();
            let body = joined(&lines);
            let mut t = scripted(answers);
            let result = deliver(&mut t, &body.lines, max_lines, &stats, &mut RejectionLog::default());
            let unsent = match &result {
                Delivery::Done => 0,
                Delivery::Retry { rest, rest_lines, .. } => {
                    prop_assert!(body.lines.ends_with(rest.as_str()));
                    prop_assert_eq!(count_lines(rest), *rest_lines);
                    *rest_lines as u64
                }
            };
            let written = stats.points_written.load(Relaxed);
            let dropped = stats.lines_dropped.load(Relaxed);
            prop_assert_eq!(written + dropped + unsent, lines.len() as u64);
            prop_assert!(t.sent.iter().all(|b| count_lines(b) <= max_lines));
        }

        /// The writer over many batches, answers and a small memory cap, then the exit:
        /// every line produced is acknowledged or counted as dropped, exactly once.
        #[test]
        fn the_writer_accounts_for_every_line_once(
            batches in proptest::collection::vec(arbitrary_lines(), 1..10),
            answers in proptest::collection::vec(arbitrary_answer(), 0..40),
            cap in 64usize..2048,
        ) {
            let stats = Arc::new(Stats::default());
            let backlog = Backlog::new(&no_spool(), cap, stats.clone());
            let mut w = Writer::new(scripted(answers), backlog, &settings(3), stats.clone(), clock());
            let mut produced = 0u64;
            for lines in &batches {
                produced += lines.len() as u64;
                w.fresh.push_back(joined(lines));
                for _ in 0..3 {
                    let now = Instant::now();
                    if w.retry_at.is_some() {
                        // The retry is due (time is not waited for here).
                        w.retry_at = Some(now);
                        while let Some(batch) = w.fresh.pop_front() {
                            w.keep(batch);
                        }
                    }
                    w.next_replay = now;
                    w.step(now);
                }
                let fresh: usize = w.fresh.iter().map(|b| b.line_count).sum();
                let accounted = stats.points_written.load(Relaxed)
                    + stats.lines_dropped.load(Relaxed)
                    + w.backlog.lines()
                    + fresh as u64;
                prop_assert_eq!(accounted, produced);
            }
            let (_, closed) = crossbeam_channel::bounded::<Batch>(0);
            w.settle_at_exit(&closed);
            prop_assert_eq!(
                stats.points_written.load(Relaxed) + stats.lines_dropped.load(Relaxed),
                produced
            );
        }
    }

    /// A loopback server answering 400 with a body that goes on for 16 MB.
    fn endless_answer_server() -> String {
        use std::io::{BufRead, BufReader};
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
        let body = gzip(b"m f=1i 1\n").unwrap();
        match post_once(&agent, &endpoint, &body, Some(Duration::from_secs(10))) {
            Answer::Status { code, body, .. } => {
                assert_eq!(code, 400);
                assert_eq!(body.len() as u64, ANSWER_BODY_MAX_BYTES);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn url_encoding() {
        assert_eq!(url_encode("abc-._~XYZ09"), "abc-._~XYZ09");
        assert_eq!(url_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
