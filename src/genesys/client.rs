//! The one door to the Genesys Cloud API: bearer token, JSON in and out, and the retry
//! policy of docs/genesys-api.md#token-renewal and docs/genesys-api.md#retry-policy, so
//! callers (queue discovery, observations, check) only see a result or an [`ApiError`] that
//! says what to do.
//!
//! Inside the caller's deadline: 401 → renew the token once and retry once; 429 → wait
//! `Retry-After` (else `inin-ratelimit-reset`, else the `[N] seconds` of the message, else
//! backoff) and retry; 5xx
//! (not 501), network errors, timeouts and malformed JSON → exponential backoff with
//! jitter; other 4xx → no retry. The `inin-ratelimit-*` headers are watched and requests
//! are delayed when the token's budget is nearly used up. `Retry-After` may be seconds or
//! an HTTP date. The `Date` header of every answer measures how far Genesys's clock is
//! from this host's ([`skew`](super::skew)), so ages are computed on Genesys's clock.
//!
//! Retries are logged at info/debug; the final failure is returned, not logged, so the
//! caller decides how loud to be (the poller warns once per failure class).
//!
//! About 450 lines of code; the rest are its tests and the scripted test server (on
//! [`crate::loopback_http`]) that the other client modules' tests share.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{GenesysConfig, Secret};
use crate::stats::Stats;
use crate::time::{now_ms, parse_http_date};

use super::answer_buffers::{Answer, AnswerBuffers, ReadError};
use super::auth::Authenticator;
use super::error::ApiError;
use super::lenient;
use super::limits::REQUESTS_IN_FLIGHT;
use super::paths;
use super::retry::{
    backoff, jitter, rate_limit_seconds, retry_after_seconds, RateWindow, BACKOFF_BASE,
    MAX_ATTEMPTS, MAX_RETRY_AFTER,
};
use super::skew::{DateSample, SkewEstimate};
use crate::http::describe_error;

/// The permission the OAuth client's role needs for the conversation-aggregates query
/// (docs/genesys-api.md#permissions).
pub const AGGREGATES_PERMISSION: &str = "analytics:conversationAggregate:view";

/// The permission docs/genesys-api.md#permissions lists for an endpoint.
pub fn permission_for(path: &str) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or(path);
    match path {
        paths::QUEUES => Some("routing:queue:view"),
        paths::OBSERVATIONS => Some("analytics:queueObservation:view"),
        paths::AGGREGATES => Some(AGGREGATES_PERMISSION),
        _ => None,
    }
}

/// Genesys's error body (docs/genesys-api.md#error-body); everything optional, unknown
/// fields ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    #[serde(default, deserialize_with = "lenient::text")]
    message: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    code: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    context_id: Option<String>,
}

/// One HTTP answer, reduced to what the policy needs.
#[derive(Debug)]
struct Reply<'a> {
    status: u16,
    body: Answer<'a>,
    retry_after: Option<u64>,
    /// `inin-ratelimit-reset`: seconds until the rate-limit window resets.
    ratelimit_reset: Option<u64>,
    correlation_id: Option<String>,
}

/// What to do after an attempt.
/// The usual decoder: the whole answer as one JSON object read as `T`.
fn json<T: DeserializeOwned>(body: &str) -> Result<T, String> {
    lenient::answer(body).map_err(|e| e.to_string())
}

enum Next<T> {
    Done(T),
    Renew(ApiError),
    Retry {
        error: ApiError,
        wait: Option<Duration>,
    },
    Fail(ApiError),
}

type Sleeper = Arc<dyn Fn(Duration) + Send + Sync>;

/// Authenticated JSON calls to the Genesys Cloud API. Shared (`Arc`) by all callers.
pub struct GenesysClient {
    api_url: String,
    agent: ureq::Agent,
    auth: Authenticator,
    stats: Arc<Stats>,
    rate: Mutex<RateWindow>,
    /// `GENESYS_REQUESTS_PER_MINUTE`, to compare with what the server allows.
    requests_per_minute: u32,
    /// Genesys's clock against this host's, from the answers' `Date` headers.
    skew: Mutex<SkewEstimate>,
    /// Answers are read into these, one kept per request the poll has in flight; the
    /// KPI poller's occasional request borrows one of them or a buffer of its own.
    answers: AnswerBuffers,
    sleep: Sleeper,
    backoff_base: Duration,
}

impl fmt::Debug for GenesysClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenesysClient")
            .field("api_url", &self.api_url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

impl GenesysClient {
    pub fn new(config: &GenesysConfig, agent: ureq::Agent, stats: Arc<Stats>) -> Self {
        GenesysClient {
            api_url: config.api_url.trim_end_matches('/').to_string(),
            auth: Authenticator::new(config, agent.clone(), stats.clone()),
            agent,
            stats,
            rate: Mutex::new(RateWindow::default()),
            requests_per_minute: config.requests_per_minute,
            skew: Mutex::new(SkewEstimate::default()),
            answers: AnswerBuffers::new(REQUESTS_IN_FLIGHT),
            sleep: Arc::new(std::thread::sleep),
            backoff_base: BACKOFF_BASE,
        }
    }

    /// Replaces how the client waits between attempts (tests record instead of sleeping).
    #[cfg(test)]
    pub(crate) fn with_sleeper(mut self, sleep: Sleeper, backoff_base: Duration) -> Self {
        self.sleep = sleep;
        self.backoff_base = backoff_base;
        self
    }

    /// The time on Genesys Cloud's clock (epoch ms): this host's, moved by the skew the
    /// answers' `Date` headers showed. Ages Genesys gives as start times are taken against
    /// it.
    pub fn genesys_now_ms(&self) -> u64 {
        let offset = self
            .skew
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .offset_ms();
        now_ms().saturating_add_signed(offset)
    }

    /// Gets a token now (start-up, `check`): the way to learn early that the credentials
    /// or the region are wrong.
    pub fn login(&self) -> Result<(), ApiError> {
        self.auth.login()
    }

    /// `GET {api}{path_and_query}` → JSON.
    pub fn get<T: DeserializeOwned>(
        &self,
        path_and_query: &str,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        self.call("GET", path_and_query, None, deadline, &json)
    }

    /// `POST {api}{path}` with a JSON body → JSON.
    #[cfg(test)]
    pub fn post<T: DeserializeOwned, B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let body = serde_json::to_string(body).expect("a test body encodes");
        self.post_encoded(path, &body, deadline, &json)
    }

    /// `POST {api}{path}` with `body`, already encoded as JSON (the poller sends the same
    /// bodies every tick); the 2xx answer is read by `decode`, which may borrow from the
    /// body (the observation poll parses megabytes per minute). A `decode` error counts
    /// as malformed JSON: retried like a 5xx.
    pub fn post_encoded<T>(
        &self,
        path: &str,
        body: &str,
        deadline: Instant,
        decode: &dyn Fn(&str) -> Result<T, String>,
    ) -> Result<T, ApiError> {
        self.call("POST", path, Some(body), deadline, decode)
    }

    /// `PUT {api}{path}` with `body`, already encoded as JSON; the answer read by `decode`
    /// (the notification subscriptions, which replace a channel's topic list).
    pub fn put_encoded<T>(
        &self,
        path: &str,
        body: &str,
        deadline: Instant,
        decode: &dyn Fn(&str) -> Result<T, String>,
    ) -> Result<T, ApiError> {
        self.call("PUT", path, Some(body), deadline, decode)
    }

    fn call<T>(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        deadline: Instant,
        decode: &dyn Fn(&str) -> Result<T, String>,
    ) -> Result<T, ApiError> {
        let request = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let mut token = self.auth.token()?;
        let mut renewed = false;
        let mut attempt = 0;
        // Only the waits the client chooses itself grow the backoff: a 429 says how long to
        // wait, and counting it would push a following 5xx's retry out of the poll.
        let mut own_waits = 0;
        loop {
            attempt += 1;
            self.pace(deadline)?;
            let next = match self.send(method, path, body, &token, deadline) {
                Ok(reply) => self.judge(&request, path, reply, decode),
                Err(error) => Next::Retry { error, wait: None },
            };
            let (error, wait) = match next {
                Next::Done(value) => return Ok(value),
                Next::Fail(error) => return Err(error),
                Next::Renew(_) if !renewed => {
                    log::info!("Genesys Cloud answered 401 to {request}; renewing the token once");
                    renewed = true;
                    token = self.auth.renew_after_401(&token)?;
                    attempt -= 1;
                    continue;
                }
                Next::Renew(error) => return Err(error),
                Next::Retry { error, wait } => (error, wait),
            };
            let wait = wait.unwrap_or_else(|| {
                own_waits += 1;
                backoff(self.backoff_base, own_waits, jitter())
            });
            if attempt >= MAX_ATTEMPTS || Instant::now() + wait >= deadline {
                log::debug!(
                    "{request} failed ({}), giving up after {attempt} attempt(s): {error}",
                    error.class()
                );
                return Err(match error {
                    ApiError::RateLimited {
                        message,
                        context_id,
                        ..
                    } => ApiError::RateLimited {
                        retry_after: Some(wait),
                        message,
                        context_id,
                    },
                    other => other,
                });
            }
            // One line per retry would flood the log in an outage: the poller logs each
            // failure class once.
            log::debug!(
                "{request} failed ({}), attempt {attempt}, retrying in {} ms",
                error.class(),
                wait.as_millis()
            );
            log::debug!("{request}: {error}");
            (self.sleep)(wait);
        }
    }

    /// Waits while the token's request budget is almost used up.
    fn pace(&self, deadline: Instant) -> Result<(), ApiError> {
        let now = Instant::now();
        let delay = {
            let rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            rate.pacing_delay(now)
        };
        let Some(delay) = delay else { return Ok(()) };
        if now + delay >= deadline {
            let allowed = self.rate.lock().unwrap_or_else(|e| e.into_inner()).allowed;
            return Err(ApiError::Paced {
                allowed,
                configured: self.requests_per_minute,
                wait: delay,
            });
        }
        log::info!(
            "Genesys request budget nearly used up: pausing {} ms",
            delay.as_millis()
        );
        (self.sleep)(delay);
        let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
        rate.count = 0;
        Ok(())
    }

    /// One HTTP exchange; `Err` only for transport failures.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: &Secret,
        deadline: Instant,
    ) -> Result<Reply<'_>, ApiError> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(ApiError::DeadlineExceeded);
        }
        let timeout = self
            .agent
            .config()
            .timeouts()
            .global
            .map_or(remaining, |t| t.min(remaining));
        let url = format!("{}{}", self.api_url, path);
        let authorization = format!("Bearer {}", token.expose());
        Stats::incr(&self.stats.api_requests);
        let sent_ms = now_ms();
        log::debug!("{method} {url}");
        let result = match body {
            None => self
                .agent
                .get(&url)
                .header("Authorization", &authorization)
                .header("Accept", "application/json")
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call(),
            Some(body) => if method == "PUT" {
                self.agent.put(&url)
            } else {
                self.agent.post(&url)
            }
            .header("Authorization", &authorization)
            .header("Accept", "application/json")
            .header("Content-Type", "application/json")
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(body.as_bytes()),
        };
        let mut response = result
            .map_err(|e| ApiError::Network(format!("{method} {url}: {}", describe_error(&e))))?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
        };
        let number = |name: &str| header(name).and_then(|v| v.parse::<u64>().ok());
        let date_ms = header("date").as_deref().and_then(parse_http_date);
        if let Some(date_ms) = date_ms {
            self.note_date(DateSample {
                date_ms,
                sent_ms,
                received_ms: now_ms(),
            });
        }
        let retry_after = header("retry-after")
            .and_then(|value| retry_after_seconds(&value, date_ms, self.genesys_now_ms()));
        let ratelimit_reset = number("inin-ratelimit-reset");
        let correlation_id = header("inin-correlation-id");
        self.note_rate_headers(
            number("inin-ratelimit-allowed"),
            number("inin-ratelimit-count"),
            ratelimit_reset,
        );
        let status = response.status().as_u16();
        let body = self
            .answers
            .read(response.body_mut().as_reader())
            .map_err(|e| {
                let why = match e {
                    ReadError::Io(e) => describe_error(&ureq::Error::from(e)),
                    too_large => too_large.to_string(),
                };
                ApiError::Network(format!("{method} {url}: reading the answer: {why}"))
            })?;
        log::debug!("{method} {url} → HTTP {status}, {} bytes", body.len());
        Ok(Reply {
            status,
            body,
            retry_after,
            ratelimit_reset,
            correlation_id,
        })
    }

    fn note_rate_headers(&self, allowed: Option<u64>, count: Option<u64>, reset: Option<u64>) {
        if let Some(window) = RateWindow::from_headers(allowed, count, reset, Instant::now()) {
            let mut rate = self.rate.lock().unwrap_or_else(|e| e.into_inner());
            if window.allowed != rate.allowed && window.allowed < self.requests_per_minute {
                log::warn!(
                    "Genesys Cloud allows this OAuth client {} requests per minute \
                     (inin-ratelimit-allowed), fewer than GENESYS_REQUESTS_PER_MINUTE={}: \
                     polls are planned for the larger number, so requests will be held back \
                     when the server's minute is nearly used up; set \
                     GENESYS_REQUESTS_PER_MINUTE={} to plan within the server's limit",
                    window.allowed,
                    self.requests_per_minute,
                    window.allowed
                );
            }
            *rate = window;
        }
    }

    fn note_date(&self, sample: DateSample) {
        let news = self
            .skew
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(sample);
        if let Some(news) = news {
            log::warn!("{news}");
        }
    }

    /// Applies the policy to one answer.
    fn judge<T>(
        &self,
        request: &str,
        path: &str,
        reply: Reply,
        decode: &dyn Fn(&str) -> Result<T, String>,
    ) -> Next<T> {
        let status = reply.status;
        let body = reply.body.text();
        if (200..300).contains(&status) {
            return match decode(&body) {
                Ok(value) => Next::Done(value),
                Err(e) => Next::Retry {
                    error: ApiError::Malformed(format!(
                        "the answer of Genesys Cloud to {request} is not the expected JSON: {e}"
                    )),
                    wait: None,
                },
            };
        }
        let parsed: ErrorBody = lenient::answer(&body).unwrap_or_default();
        let context_id = parsed.context_id.or(reply.correlation_id);
        let message = parsed.message.unwrap_or_else(|| format!("HTTP {status}"));
        let code = parsed.code.unwrap_or_default();
        match status {
            401 => Next::Renew(ApiError::Unauthorized {
                message,
                context_id,
            }),
            403 => Next::Fail(ApiError::Forbidden {
                request: request.to_string(),
                message,
                context_id,
                permission: permission_for(path),
            }),
            429 => {
                Stats::incr(&self.stats.api_rate_limited);
                let seconds =
                    rate_limit_seconds(reply.retry_after, reply.ratelimit_reset, &message);
                let error = ApiError::RateLimited {
                    retry_after: seconds.map(Duration::from_secs),
                    message,
                    context_id,
                };
                match seconds.map(Duration::from_secs) {
                    Some(wait) if wait > MAX_RETRY_AFTER => Next::Fail(error),
                    Some(wait) => Next::Retry {
                        error,
                        wait: Some(wait.mul_f64(1.0 + 0.1 * jitter())),
                    },
                    None => Next::Retry { error, wait: None },
                }
            }
            408 | 500 | 502..=599 => Next::Retry {
                error: ApiError::Server {
                    status,
                    message,
                    context_id,
                },
                wait: None,
            },
            501 => Next::Fail(ApiError::Server {
                status,
                message,
                context_id,
            }),
            _ => Next::Fail(ApiError::BadRequest {
                request: request.to_string(),
                status,
                code,
                message,
                context_id,
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_server {
    //! A scripted server on [`crate::loopback_http`]: answers canned replies in order, one
    //! per connection (`Connection: close`), and records what it was asked. Requests past
    //! the end of the script are dropped unanswered and not recorded.

    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use crate::loopback_http::{self, Reply, Request, Response, Stop};

    /// The text of `tests/fixtures/genesys/<name>` (copies of the shared API fixtures).
    pub fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/genesys/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    pub enum Canned {
        Reply {
            status: u16,
            headers: Vec<(String, String)>,
            body: String,
        },
        /// Read the request, then close the connection without answering.
        Hangup,
    }

    pub fn reply(status: u16, body: &str) -> Canned {
        Canned::Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    pub fn reply_with(status: u16, headers: &[(&str, &str)], body: &str) -> Canned {
        Canned::Reply {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: body.to_string(),
        }
    }

    pub fn token(lifetime_s: u64, token: &str) -> Canned {
        reply(
            200,
            &format!(
                r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{lifetime_s}}}"#
            ),
        )
    }

    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub method: String,
        pub path: String,
        pub headers: Vec<(String, String)>,
        pub body: String,
    }

    impl Recorded {
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    pub struct Server {
        pub url: String,
        recorded: Arc<Mutex<Vec<Recorded>>>,
        _server: loopback_http::Server,
    }

    impl Server {
        pub fn start(script: Vec<Canned>) -> Server {
            let recorded = Arc::new(Mutex::new(Vec::new()));
            let log = recorded.clone();
            let script = Mutex::new(VecDeque::from(script));
            let options = loopback_http::Options {
                name: "test-server",
                max_connections: 8,
                max_body_bytes: 1 << 20,
                keep_alive: false,
            };
            let server = loopback_http::Server::start(options, Stop::default(), move |request| {
                let Some(canned) = script.lock().unwrap().pop_front() else {
                    return Reply::Drop;
                };
                log.lock().unwrap().push(Recorded::of(request));
                answer(canned)
            })
            .expect("test server starts on 127.0.0.1");
            Server {
                url: server.url(),
                recorded,
                _server: server,
            }
        }

        pub fn requests(&self) -> Vec<Recorded> {
            self.recorded.lock().unwrap().clone()
        }
    }

    impl Recorded {
        fn of(request: &Request) -> Recorded {
            let path = if request.query.is_empty() {
                request.path.clone()
            } else {
                format!("{}?{}", request.path, request.query)
            };
            Recorded {
                method: request.method.clone(),
                path,
                headers: request.headers.clone(),
                body: String::from_utf8_lossy(&request.body).into_owned(),
            }
        }
    }

    fn answer(canned: Canned) -> Reply {
        match canned {
            Canned::Hangup => Reply::Drop,
            Canned::Reply {
                status,
                headers,
                body,
            } => Reply::Send(headers.into_iter().fold(
                Response::new(status, "application/json", body),
                |response, (name, value)| response.with_header(&name, value),
            )),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::test_server::{fixture, reply, reply_with, token, Canned, Server};
    use super::*;
    use crate::genesys::answer_buffers::MAX_ANSWER_BYTES;
    use std::sync::atomic::Ordering::Relaxed;

    /// A client for `server` whose waits are recorded, not slept.
    pub(crate) fn client_for(url: &str) -> (GenesysClient, Arc<Mutex<Vec<Duration>>>, Arc<Stats>) {
        recording_client(&GenesysConfig {
            region_label: "custom".into(),
            api_url: url.to_string(),
            login_url: url.to_string(),
            client_id: "client-id".into(),
            client_secret: Secret::new("top-secret-value"),
            requests_per_minute: 300,
        })
    }

    /// A client for `config` whose waits are recorded, not slept.
    pub(crate) fn recording_client(
        config: &GenesysConfig,
    ) -> (GenesysClient, Arc<Mutex<Vec<Duration>>>, Arc<Stats>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .proxy(None)
            .build()
            .into();
        let stats = Arc::new(Stats::default());
        let waits = Arc::new(Mutex::new(Vec::new()));
        let record = waits.clone();
        let client = GenesysClient::new(config, agent, stats.clone()).with_sleeper(
            Arc::new(move |d| record.lock().unwrap().push(d)),
            Duration::from_millis(500),
        );
        (client, waits, stats)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Pong {
        ok: u32,
    }

    #[test]
    fn logs_in_with_basic_auth_and_sends_the_bearer_token() {
        let server = Server::start(vec![token(86_399, "tok-1"), reply(200, r#"{"ok":1}"#)]);
        let (client, _, stats) = client_for(&server.url);
        let pong: Pong = client.get("/api/v2/ping?x=1", soon()).unwrap();
        assert_eq!(pong, Pong { ok: 1 });
        let requests = server.requests();
        assert_eq!(requests[0].method, "POST");
        assert_eq!(requests[0].path, "/oauth/token");
        assert_eq!(requests[0].body, "grant_type=client_credentials");
        assert_eq!(
            requests[0].header("authorization"),
            Some("Basic Y2xpZW50LWlkOnRvcC1zZWNyZXQtdmFsdWU=")
        );
        assert_eq!(
            requests[0].header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(requests[1].path, "/api/v2/ping?x=1");
        assert_eq!(requests[1].header("authorization"), Some("Bearer tok-1"));
        assert_eq!(stats.api_requests.load(Relaxed), 1);
        assert_eq!(stats.token_refreshes.load(Relaxed), 0);
    }

    #[test]
    fn a_401_renews_the_token_once_and_retries_once() {
        let server = Server::start(vec![
            token(86_399, "old"),
            reply(401, &fixture("error-401.json")),
            token(86_399, "new"),
            reply(200, r#"{"ok":2}"#),
        ]);
        let (client, waits, stats) = client_for(&server.url);
        let pong: Pong = client
            .post("/api/v2/x", &serde_json::json!({"a": 1}), soon())
            .unwrap();
        assert_eq!(pong.ok, 2);
        let requests = server.requests();
        assert_eq!(requests.len(), 4);
        assert_eq!(requests[1].header("authorization"), Some("Bearer old"));
        assert_eq!(requests[2].path, "/oauth/token");
        assert_eq!(requests[3].header("authorization"), Some("Bearer new"));
        assert_eq!(requests[3].body, r#"{"a":1}"#);
        assert_eq!(requests[3].header("content-type"), Some("application/json"));
        assert_eq!(stats.token_refreshes.load(Relaxed), 1);
        assert_eq!(stats.api_requests.load(Relaxed), 2);
        assert!(waits.lock().unwrap().is_empty());
    }

    #[test]
    fn a_second_401_is_reported_without_a_loop() {
        let server = Server::start(vec![
            token(86_399, "old"),
            reply(401, &fixture("error-401.json")),
            token(86_399, "new"),
            reply(401, &fixture("error-401.json")),
        ]);
        let (client, _, _) = client_for(&server.url);
        let err = client.get::<Pong>("/api/v2/x", soon()).unwrap_err();
        assert!(matches!(err, ApiError::Unauthorized { .. }), "{err:?}");
        assert!(
            err.to_string().contains("Invalid login credentials."),
            "{err}"
        );
        assert_eq!(server.requests().len(), 4);
    }

    #[test]
    fn a_429_waits_retry_after_then_succeeds() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply_with(
                429,
                &[
                    ("Retry-After", "17"),
                    ("inin-ratelimit-allowed", "300"),
                    ("inin-ratelimit-count", "250"),
                ],
                &fixture("error-429.json"),
            ),
            reply(200, r#"{"ok":3}"#),
        ]);
        let (client, waits, stats) = client_for(&server.url);
        let pong: Pong = client.get("/api/v2/x", soon()).unwrap();
        assert_eq!(pong.ok, 3);
        let waits = waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 1);
        assert!(
            waits[0] >= Duration::from_secs(17) && waits[0] <= Duration::from_millis(18_700),
            "{waits:?}"
        );
        assert_eq!(stats.api_rate_limited.load(Relaxed), 1);
        assert_eq!(stats.api_requests.load(Relaxed), 2);
    }

    /// RFC 9110 allows `Retry-After` as an HTTP date; it is counted from the answer's
    /// `Date`, so a host clock far off changes nothing.
    #[test]
    fn a_429_with_retry_after_as_an_http_date_waits_until_that_date() {
        let date = crate::time::format_http_date(1_796_612_400_000);
        let retry = crate::time::format_http_date(1_796_612_420_000);
        let server = Server::start(vec![
            token(86_399, "t"),
            reply_with(
                429,
                &[("Date", date.as_str()), ("Retry-After", retry.as_str())],
                r#"{"message":"Rate limit exceeded the maximum","code":"too.many.requests","status":429}"#,
            ),
            reply(200, r#"{"ok":3}"#),
        ]);
        let (client, waits, _) = client_for(&server.url);
        let pong: Pong = client.get("/api/v2/x", soon()).unwrap();
        assert_eq!(pong.ok, 3);
        let waits = waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 1);
        assert!(
            waits[0] >= Duration::from_secs(20) && waits[0] <= Duration::from_secs(22),
            "{waits:?}"
        );
    }

    /// `GENESYS_REQUESTS_PER_MINUTE` above the server's own limit: requests are held back
    /// before a 429 comes, and the error says so with both numbers, not "rate limit
    /// exceeded".
    #[test]
    fn holding_back_below_a_lower_server_limit_names_both_numbers() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply_with(
                200,
                &[
                    ("inin-ratelimit-allowed", "200"),
                    ("inin-ratelimit-count", "199"),
                    ("inin-ratelimit-reset", "30"),
                ],
                r#"{"ok":1}"#,
            ),
        ]);
        let (client, waits, stats) = client_for(&server.url);
        let _: Pong = client.get("/api/v2/x", soon()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = client.get::<Pong>("/api/v2/x", deadline).unwrap_err();
        assert!(matches!(err, ApiError::Paced { .. }), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains("rate limit exceeded"), "{text}");
        assert!(
            text.contains("allows this OAuth client 200 requests per minute")
                && text.contains("GENESYS_REQUESTS_PER_MINUTE=300")
                && text.contains("set GENESYS_REQUESTS_PER_MINUTE=200"),
            "{text}"
        );
        assert!(waits.lock().unwrap().is_empty());
        assert_eq!(stats.api_rate_limited.load(Relaxed), 0);
        assert_eq!(
            server.requests().len(),
            2,
            "the held-back request was not sent"
        );
    }

    #[test]
    fn a_429_without_header_uses_the_seconds_of_the_message_and_respects_the_deadline() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(429, &fixture("error-429.json")),
        ]);
        let (client, waits, _) = client_for(&server.url);
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = client.get::<Pong>("/api/v2/x", deadline).unwrap_err();
        match &err {
            ApiError::RateLimited {
                retry_after: Some(wait),
                context_id,
                ..
            } => {
                assert!(*wait >= Duration::from_secs(17));
                assert_eq!(
                    context_id.as_deref(),
                    Some("d3f5b7a9-1c4e-4a2b-9f8d-6b0e2c4a8f71")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(waits.lock().unwrap().is_empty());
        assert!(err.to_string().contains("GENESYS_REQUESTS_PER_MINUTE"));
    }

    #[test]
    fn a_429_without_retry_after_waits_for_the_rate_limit_reset_before_the_message() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply_with(
                429,
                &[("inin-ratelimit-reset", "5")],
                &fixture("error-429.json"),
            ),
            reply(200, r#"{"ok":5}"#),
        ]);
        let (client, waits, _) = client_for(&server.url);
        let pong: Pong = client.get("/api/v2/x", soon()).unwrap();
        assert_eq!(pong.ok, 5);
        let waits = waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 1);
        assert!(
            waits[0] >= Duration::from_secs(5) && waits[0] <= Duration::from_millis(5_500),
            "{waits:?}"
        );
    }

    #[test]
    fn waits_a_429_asked_for_do_not_grow_the_backoff_of_a_later_5xx() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply_with(429, &[("Retry-After", "1")], &fixture("error-429.json")),
            reply_with(429, &[("Retry-After", "1")], &fixture("error-429.json")),
            reply(503, "{}"),
            reply(200, r#"{"ok":6}"#),
        ]);
        let (client, waits, _) = client_for(&server.url);
        let pong: Pong = client.get("/api/v2/x", soon()).unwrap();
        assert_eq!(pong.ok, 6);
        let waits = waits.lock().unwrap().clone();
        assert_eq!(waits.len(), 3, "{waits:?}");
        let first_backoff = backoff(BACKOFF_BASE, 1, 1.0);
        assert!(waits[2] <= first_backoff, "{waits:?}");
    }

    #[test]
    fn an_error_body_with_nulls_or_wrong_types_keeps_what_it_can() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(
                400,
                r#"{"message":null,"code":7,"contextId":"ctx-1","status":"400"}"#,
            ),
        ]);
        let (client, _, _) = client_for(&server.url);
        match client.get::<Pong>("/api/v2/x", soon()).unwrap_err() {
            ApiError::BadRequest {
                message,
                context_id,
                ..
            } => {
                assert_eq!(message, "HTTP 400");
                assert_eq!(context_id.as_deref(), Some("ctx-1"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn server_errors_dropped_connections_and_bad_json_are_retried_with_backoff() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(500, &fixture("error-500.json")),
            Canned::Hangup,
            reply(200, "{not json"),
            reply(503, "<html>bad gateway</html>"),
            reply(200, r#"{"ok":4}"#),
        ]);
        let (client, waits, stats) = client_for(&server.url);
        let pong: Pong = client.get("/api/v2/x", soon()).unwrap();
        assert_eq!(pong.ok, 4);
        let waits = waits.lock().unwrap().clone();
        let floors = [500u64, 1000, 2000, 4000];
        assert_eq!(waits.len(), 4, "{waits:?}");
        for (wait, floor) in waits.iter().zip(floors) {
            let floor = Duration::from_millis(floor);
            assert!(*wait >= floor && *wait <= floor.mul_f64(1.25), "{waits:?}");
        }
        assert_eq!(stats.api_requests.load(Relaxed), 5);
    }

    #[test]
    fn an_answer_over_the_size_limit_is_refused_with_a_clear_error() {
        let huge = format!(r#"{{"ok":1,"pad":"{}"}}"#, " ".repeat(MAX_ANSWER_BYTES));
        let mut script = vec![token(86_399, "t")];
        script.extend((0..MAX_ATTEMPTS).map(|_| reply(200, &huge)));
        let server = Server::start(script);
        let (client, _, _) = client_for(&server.url);
        let err = client.get::<Pong>("/api/v2/x", soon()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ApiError::Network(_)), "{err:?}");
        assert!(text.contains("GET http://"), "{text}");
        assert!(
            text.contains("/api/v2/x: reading the answer: the answer is larger than 10 MiB"),
            "{text}"
        );
    }

    #[test]
    fn a_shorter_answer_after_a_longer_one_is_read_alone() {
        let long = format!(r#"{{"ok":1,"pad":"{}"}}"#, "x".repeat(300_000));
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &long),
            reply(200, r#"{"ok":2}"#),
            reply(200, r#"{"ok":3}  "#),
        ]);
        let (client, _, _) = client_for(&server.url);
        let seen = |body: &str| Ok(body.to_string());
        let first = client
            .call("GET", "/api/v2/x", None, soon(), &seen)
            .unwrap();
        assert_eq!(first, long);
        let second = client
            .call("GET", "/api/v2/x", None, soon(), &seen)
            .unwrap();
        assert_eq!(second, r#"{"ok":2}"#);
        let pong: Pong = client.get("/api/v2/x", soon()).unwrap();
        assert_eq!(pong.ok, 3);
    }

    #[test]
    fn retries_stop_at_the_deadline() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(503, &fixture("error-500.json")),
        ]);
        let (client, waits, _) = client_for(&server.url);
        let err = client
            .get::<Pong>("/api/v2/x", Instant::now() + Duration::from_millis(300))
            .unwrap_err();
        assert!(
            matches!(err, ApiError::Server { status: 503, .. }),
            "{err:?}"
        );
        assert!(waits.lock().unwrap().is_empty());
    }

    #[test]
    fn a_403_is_not_retried_and_names_the_permission() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(403, &fixture("error-403.json")),
        ]);
        let (client, _, _) = client_for(&server.url);
        let err = client
            .post::<Pong, _>(paths::OBSERVATIONS, &serde_json::json!({}), soon())
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("analytics:queueObservation:view"), "{text}");
        assert!(
            text.contains("contextId 9a1c3e5b-7d2f-4b6a-8e0c-5f7d9b1a3e58"),
            "{text}"
        );
        assert!(
            text.contains("POST /api/v2/analytics/queues/observations/query"),
            "{text}"
        );
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn a_400_is_not_retried_and_keeps_the_genesys_message() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(400, &fixture("error-400-bad-request.json")),
        ]);
        let (client, waits, _) = client_for(&server.url);
        let err = client.get::<Pong>("/api/v2/x?a=b", soon()).unwrap_err();
        match &err {
            ApiError::BadRequest {
                status,
                code,
                context_id,
                ..
            } => {
                assert_eq!((*status, code.as_str()), (400, "bad.request"));
                assert_eq!(
                    context_id.as_deref(),
                    Some("e7d9b1f3-5a2c-4e8b-9d6f-1a3c5e7b9d42")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("malformed syntax"));
        assert!(waits.lock().unwrap().is_empty());
    }

    #[test]
    fn refused_credentials_are_not_retried_immediately() {
        let server = Server::start(vec![reply(
            401,
            &fixture("token-error-invalid-client.json"),
        )]);
        let (client, _, stats) = client_for(&server.url);
        let err = client.login().unwrap_err();
        assert!(matches!(
            err,
            ApiError::CredentialsRefused { status: 401, .. }
        ));
        // Held off: no second login request, same error.
        let again = client.get::<Pong>("/api/v2/x", soon()).unwrap_err();
        assert_eq!(again, err);
        assert_eq!(server.requests().len(), 1);
        assert_eq!(stats.api_requests.load(Relaxed), 0);
        let text = format!("{err} {err:?} {client:?}");
        assert!(!text.contains("top-secret-value"), "{text}");
    }

    #[test]
    fn an_unreachable_host_is_a_network_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let (client, _, _) = client_for(&url);
        let err = client.login().unwrap_err();
        assert!(matches!(err, ApiError::Network(_)), "{err:?}");
        assert!(err.to_string().contains("/oauth/token"), "{err}");
    }

    #[test]
    fn permissions_per_endpoint() {
        assert_eq!(
            permission_for("/api/v2/routing/queues?pageSize=100"),
            Some("routing:queue:view")
        );
        assert_eq!(
            permission_for(paths::OBSERVATIONS),
            Some("analytics:queueObservation:view")
        );
        assert_eq!(permission_for("/api/v2/other"), None);
    }

    mod mutated {
        use super::*;
        use crate::genesys::lenient::mutation::{self, Step};
        use proptest::prelude::*;

        const ERRORS: [&str; 10] = [
            "error-400-bad-request.json",
            "error-400-invalid-date.json",
            "error-400-invalid-value.json",
            "error-401-no-token.json",
            "error-401.json",
            "error-403-aggregates.json",
            "error-403.json",
            "error-429.json",
            "error-500.json",
            "error-503.json",
        ];

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever is damaged, reading an error body never panics, and an untouched
            /// contextId is still found.
            #[test]
            fn error_bodies_never_panic_and_keep_an_intact_context_id(
                which in 0..ERRORS.len(),
                mutations in mutation::mutations()
            ) {
                let text = super::super::test_server::fixture(ERRORS[which]);
                let original: serde_json::Value = serde_json::from_str(&text).unwrap();
                let mut doc = original.clone();
                let touched = mutation::apply(&mut doc, &mutations);
                let parsed: ErrorBody = lenient::answer(&doc.to_string()).unwrap_or_default();
                let intact = touched
                    .iter()
                    .all(|p| matches!(p.first(), Some(Step::Key(k)) if k != "contextId"));
                if intact {
                    prop_assert_eq!(parsed.context_id.as_deref(), original["contextId"].as_str());
                }
            }
        }
    }
}
