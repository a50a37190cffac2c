//! A simulated Genesys Cloud on 127.0.0.1, speaking the real API shapes (docs/genesys-api.md, tests/fixtures/genesys)
//! over real HTTP/1.1, so the real client code can be run against it.
//!
//! Two users: `genesys2influx demo` (plausible, changing values and odd queue names) and
//! the black-box tests, which host a [`Sim`] in the test process, point the binary at
//! [`Sim::base_url`] and then predict every number it should write. Hence the values are
//! pure functions of (seed, queue index, time slot) exposed as [`Sim::observation_at`] and
//! [`Sim::expected_kpis`], faults can be injected per endpoint, and every request is
//! logged ([`Sim::requests`]) so tests can assert chunking, pacing and retries.
//!
//! Layout: `api` (routing, faults, errors; served by [`crate::loopback_http`]), `oauth`,
//! `queues`, `observations`, `aggregates`
//! (conversation aggregates and ISO-8601 times), `values` (the deterministic numbers).

mod aggregates;
mod api;
mod errors;
mod notifications;
mod oauth;
mod observations;
mod query;
mod queues;
mod streaming;
mod values;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::genesys::paths;
use crate::loopback_http::{self, Server, Stop};
use crate::time::now_ms;

pub use values::{
    ExpectedMedia, ExpectedObservation, KpiValues, Timer, ODD_NAMES, SHORT_ABANDON_MS,
};

/// Default lifetime of a token: Genesys' default 24 h shows up as `expires_in: 86399`.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(86_399);
/// The media types of the fixtures, in their order.
pub const DEFAULT_MEDIA_TYPES: [&str; 5] = ["voice", "chat", "email", "callback", "message"];
/// The request budget `inin-ratelimit-allowed` reports when no limit is enforced (docs/genesys-api.md#rate-limits).
pub const DEFAULT_RATE_LIMIT: u32 = 300;
/// Largest request body accepted: Genesys' `request.bytes.max` (docs/genesys-api.md#rate-limits).
pub const MAX_BODY_BYTES: usize = 512_000;
/// The request log keeps this many records, so a long demo run does not grow forever.
pub const MAX_LOG_RECORDS: usize = 100_000;

/// What the Sim does with an observation query naming a queue id it does not know
/// (docs/genesys-api.md#missing-and-unknown: unverified, so clients must cope with all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownQueues {
    /// Answered as an empty queue: every count 0 (the assumed real behaviour).
    #[default]
    Empty,
    /// Left out of `results`.
    Omit,
    /// The whole request fails with 400 `bad.request`.
    Reject,
}

/// Start-up settings of a [`Sim`]. `Default` gives 20 queues, values changing every
/// 10 s, 24 h tokens and the five fixture media types.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Queues created at start: the odd names of [`ODD_NAMES`] first, then `Queue 0009`, ….
    pub queue_count: usize,
    /// Values change once per period: `slot = request_time_ms / value_period_ms`.
    pub value_period: Duration,
    /// `expires_in` of issued tokens; a token is refused once it is older.
    pub token_lifetime: Duration,
    pub client_id: String,
    pub client_secret: String,
    pub media_types: Vec<String>,
    /// Changes every id and value; the same seed gives the same Sim.
    pub seed: u64,
    /// `pageSize` above this is silently capped (docs/genesys-api.md#queues-paging).
    pub max_page_size: usize,
    /// More `queueId` predicates than this in one query → 400 `bad.request`.
    pub max_predicates: usize,
    pub unknown_queues: UnknownQueues,
    /// Aggregates: an event becomes visible at most this long after it happened, so a
    /// bucket's numbers are final `kpi_settle` after its end.
    pub kpi_settle: Duration,
    /// Smallest accepted aggregate `granularity`.
    pub min_granularity: Duration,
    /// Enforce this many API requests per UTC minute (429 beyond); `None` only reports
    /// [`DEFAULT_RATE_LIMIT`] in the headers.
    pub rate_limit_per_minute: Option<u32>,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// Serve a repeated observation query from the answer rendered for it earlier in the
    /// same value period (see [`observations::AnswerCache`]): for benchmarks with
    /// thousands of queues, where rendering every answer would make the Sim, not the
    /// service, the bottleneck. Queue changes then show from the next period.
    pub prerendered_answers: bool,
    /// How far the Sim's clock is ahead of the host's (negative: behind), in ms: what it
    /// answers in `Date` headers and `oLongest*` timestamps, and what its request log and
    /// value slots follow. Tests of a host whose clock is wrong.
    pub clock_offset_ms: i64,
    /// Each queue's values change once per `value_period` at a moment of its own (see
    /// [`Sim::value_changes`]) instead of all at each multiple of the period.
    pub changes_at_random_moments: bool,
    /// How often the notification websockets carry a heartbeat.
    pub heartbeat_period: Duration,
    /// How long a notification channel lives (`expires` of its creation answer).
    pub channel_lifetime: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            queue_count: 20,
            value_period: Duration::from_secs(10),
            token_lifetime: DEFAULT_TOKEN_LIFETIME,
            client_id: "sim-client-id".into(),
            client_secret: "sim-client-secret".into(),
            media_types: DEFAULT_MEDIA_TYPES.iter().map(|m| m.to_string()).collect(),
            seed: 1,
            max_page_size: 100,
            max_predicates: 100,
            unknown_queues: UnknownQueues::Empty,
            kpi_settle: Duration::from_secs(120),
            min_granularity: Duration::from_secs(60),
            rate_limit_per_minute: None,
            max_connections: 32,
            prerendered_answers: false,
            clock_offset_ms: 0,
            changes_at_random_moments: false,
            heartbeat_period: Duration::from_secs(30),
            channel_lifetime: Duration::from_secs(24 * 3600),
        }
    }
}

/// The API endpoints the Sim serves, for fault injection and the request log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /oauth/token`
    Token,
    /// `GET /api/v2/routing/queues`
    Queues,
    /// `POST /api/v2/analytics/queues/observations/query`
    Observations,
    /// `POST /api/v2/analytics/conversations/aggregates/query`
    Aggregates,
    /// `POST /api/v2/notifications/channels`
    NotificationChannels,
    /// `PUT /api/v2/notifications/channels/{id}/subscriptions`
    Subscriptions,
    /// Every endpoint above (only as a fault target).
    Any,
}

impl Endpoint {
    fn of(method: &str, path: &str) -> Option<Endpoint> {
        let path = path.trim_end_matches('/');
        if method == "PUT" && notifications::channel_of(path).is_some() {
            return Some(Endpoint::Subscriptions);
        }
        [
            ("POST", paths::TOKEN, Endpoint::Token),
            ("GET", paths::QUEUES, Endpoint::Queues),
            ("POST", paths::OBSERVATIONS, Endpoint::Observations),
            ("POST", paths::AGGREGATES, Endpoint::Aggregates),
            (
                "POST",
                paths::NOTIFICATION_CHANNELS,
                Endpoint::NotificationChannels,
            ),
        ]
        .into_iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, endpoint)| endpoint)
    }

    fn covers(self, other: Endpoint) -> bool {
        self == Endpoint::Any || self == other
    }
}

/// A misbehaviour to inject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// That status with the fixture's `ErrorBody` (429 comes with `Retry-After: 1`,
    /// 403 with the endpoint's missing permission, 401 is `bad.credentials`).
    Status(u16),
    /// 429 `too.many.requests.retry.after` with this `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// A 5xx with an HTML body, as a load balancer sends it (docs/genesys-api.md#error-body).
    GatewayHtml(u16),
    /// Close the socket without answering.
    DropConnection,
    /// 200 with a truncated JSON body.
    MalformedJson,
    /// The normal answer, plus `null`s where objects and lists are expected: one more
    /// `oWaiting` datum with `"stats": null` and one more result group with `"data": null`
    /// in the first group's queue. Nothing is lost by reading them as absent.
    Nulls,
    /// Answer normally after this long.
    Delay(Duration),
}

impl Fault {
    /// Whether a well-behaved client retries this fault (429, 5xx except 501, network).
    pub fn is_retryable(&self) -> bool {
        match self {
            Fault::Status(s) | Fault::GatewayHtml(s) => *s == 429 || (*s >= 500 && *s != 501),
            Fault::RateLimited { .. } | Fault::DropConnection => true,
            Fault::MalformedJson | Fault::Nulls | Fault::Delay(_) => false,
        }
    }
}

/// A misbehaviour of the notification websockets, applied to the sockets open when it
/// is injected ([`Sim::socket_fault`]); sockets opened later behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketFault {
    /// Close the TCP connection without a close frame.
    Drop,
    /// Go silent: no heartbeat, no message, no pong, as a connection that died without
    /// TCP noticing.
    StopHeartbeats,
    /// Send `v2.system.socket_closing`, then close.
    SocketClosing,
    /// Send text that is not JSON, an unknown topic, a queue of no subscription, a
    /// binary frame.
    Garbage,
    /// Send a frame over the 1 MiB a client accepts.
    Oversized,
}

/// A notification channel of the simulated org.
#[derive(Debug, Clone)]
struct SimChannel {
    /// `(queue id, index)` of the subscribed observation topics.
    topics: Arc<Vec<(String, u64)>>,
    expires_ms: u64,
    /// The socket allowed to publish (the newest); 0 before the first.
    connection: u64,
}

/// One request the Sim received, with what it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// Arrival time, ms since the epoch; the values answered are those of this instant.
    pub time_ms: u64,
    pub endpoint: Option<Endpoint>,
    pub method: String,
    pub path: String,
    /// Raw query string, percent-encoded as received.
    pub query: String,
    /// 0 when the connection was dropped on purpose.
    pub status: u16,
    /// Queue ids named by the request: `queueId` predicates of a POST body or `id=` params.
    pub queue_ids: Vec<String>,
    /// The injected fault that shaped the answer, if any.
    pub fault: Option<Fault>,
    /// True when the answer was an injected fault a client should retry.
    pub retryable_fault: bool,
}

/// A queue of the simulated organisation.
#[derive(Debug, Clone)]
struct SimQueue {
    /// Drives every simulated value; never reused, so a re-added name is a new queue.
    index: u64,
    id: String,
    name: String,
    modified_ms: u64,
}

#[derive(Debug)]
struct Injected {
    endpoint: Endpoint,
    fault: Fault,
    remaining: u32,
}

#[derive(Debug)]
struct EveryNth {
    endpoint: Endpoint,
    n: u64,
    fault: Fault,
}

/// Everything the control methods change and the handlers read.
#[derive(Debug)]
struct State {
    options: SimOptions,
    queues: Vec<SimQueue>,
    next_index: u64,
    /// token → expiry (ms since the epoch).
    tokens: HashMap<String, u64>,
    injected: Vec<Injected>,
    every_nth: Vec<EveryNth>,
    forbidden: HashSet<Endpoint>,
    /// Requests seen per endpoint (1-based after counting), for `every_nth`.
    counts: HashMap<Endpoint, u64>,
    /// The newest [`MAX_LOG_RECORDS`] requests.
    log: VecDeque<RequestRecord>,
    rng: values::Rng,
    /// UTC minute of the rate-limit window and API calls counted in it.
    rate_minute: u64,
    rate_count: u32,
    answers: observations::AnswerCache,
    /// Notification channels by id (expired ones too, until [`Sim::expire_channels`]).
    channels: HashMap<String, SimChannel>,
    /// `ws://127.0.0.1:PORT` of the notification websocket.
    streaming_url: String,
    /// Every socket fault injected, in order; each socket applies those after its start.
    socket_faults: Vec<SocketFault>,
    connection_seq: u64,
    /// `(time, queue id)` of each observations message published, the newest
    /// [`MAX_LOG_RECORDS`].
    published: VecDeque<(u64, String)>,
}

impl State {
    fn note_published(&mut self, time_ms: u64, queue_id: &str) {
        if self.published.len() >= MAX_LOG_RECORDS {
            self.published.pop_front();
        }
        self.published.push_back((time_ms, queue_id.to_string()));
    }
}

/// State shared by the connection threads and the [`Sim`] handle.
#[derive(Debug)]
struct Shared {
    /// The server's stop flag: an injected delay ends when the Sim stops.
    stop: Stop,
    state: Mutex<State>,
    /// [`SimOptions::clock_offset_ms`], kept outside the lock.
    clock_offset_ms: i64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Sim's clock: the host's, moved by [`SimOptions::clock_offset_ms`].
    fn now_ms(&self) -> u64 {
        now_ms().saturating_add_signed(self.clock_offset_ms)
    }
}

/// Milliseconds since the Unix epoch.
/// A running simulated Genesys Cloud. Dropping it stops the server.
#[derive(Debug)]
pub struct Sim {
    shared: Arc<Shared>,
    /// `None` once shut down.
    server: Option<Server>,
    /// The notification websocket's accept thread; it ends with the server's stop flag.
    streaming: Option<std::thread::JoinHandle<()>>,
    base_url: String,
}

impl Sim {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub fn start(options: SimOptions) -> std::io::Result<Sim> {
        let clock_offset_ms = options.clock_offset_ms;
        let now = now_ms().saturating_add_signed(clock_offset_ms);
        let queues = (0..options.queue_count as u64)
            .map(|index| SimQueue {
                index,
                id: values::queue_id(options.seed, index),
                name: values::queue_name(index),
                modified_ms: now,
            })
            .collect();
        let state = State {
            rng: values::Rng::new(options.seed ^ now.rotate_left(17)),
            next_index: options.queue_count as u64,
            queues,
            tokens: HashMap::new(),
            injected: Vec::new(),
            every_nth: Vec::new(),
            forbidden: HashSet::new(),
            counts: HashMap::new(),
            log: VecDeque::new(),
            rate_minute: 0,
            rate_count: 0,
            answers: observations::AnswerCache::default(),
            channels: HashMap::new(),
            streaming_url: String::new(),
            socket_faults: Vec::new(),
            connection_seq: 0,
            published: VecDeque::new(),
            options,
        };
        let server_options = loopback_http::Options {
            name: "sim",
            max_connections: state.options.max_connections,
            max_body_bytes: MAX_BODY_BYTES,
            keep_alive: true,
        };
        let shared = Arc::new(Shared {
            stop: Stop::default(),
            state: Mutex::new(state),
            clock_offset_ms,
        });
        let for_server = Arc::clone(&shared);
        let server = Server::start(server_options, shared.stop.clone(), move |request| {
            api::handle(&for_server, request)
        })?;
        // Sims started in the same millisecond still differ in their ids.
        {
            let mut state = shared.lock();
            let port = u64::from(server.addr().port());
            state.rng = values::Rng::new(state.options.seed ^ now.rotate_left(17) ^ port);
        }
        let (streaming_url, streaming) = streaming::start(Arc::clone(&shared))?;
        shared.lock().streaming_url = streaming_url;
        let base_url = server.url();
        Ok(Sim {
            shared,
            server: Some(server),
            streaming: Some(streaming),
            base_url,
        })
    }
}

impl Sim {
    /// `http://127.0.0.1:PORT`: both the API and the login base URL.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The current queues as `(id, name)`, in creation order.
    pub fn queues(&self) -> Vec<(String, String)> {
        let state = self.shared.lock();
        state
            .queues
            .iter()
            .map(|q| (q.id.clone(), q.name.clone()))
            .collect()
    }

    /// The configured [`SimOptions::value_period`].
    pub fn value_period(&self) -> Duration {
        self.shared.lock().options.value_period
    }

    /// The value slot of an instant: `time_ms / value_period_ms`.
    pub fn slot_at(&self, time_ms: u64) -> u64 {
        let state = self.shared.lock();
        time_ms / period_ms(&state.options)
    }

    /// The value slot of one queue at an instant: [`Sim::slot_at`], or with
    /// [`SimOptions::changes_at_random_moments`] the queue's own. `None` for an unknown id.
    pub fn queue_slot_at(&self, queue_id: &str, time_ms: u64) -> Option<u64> {
        let state = self.shared.lock();
        let o = &state.options;
        let q = state.queues.iter().find(|q| q.id == queue_id)?;
        Some(values::slot(
            o.seed,
            q.index,
            time_ms,
            period_ms(o),
            o.changes_at_random_moments,
        ))
    }

    /// The log of a queue's values in `[from_ms, to_ms)`: `(instant, what an observation
    /// query answers from then on)`, the first entry being the value at `from_ms`. Empty
    /// for an unknown id.
    pub fn value_changes(
        &self,
        queue_id: &str,
        from_ms: u64,
        to_ms: u64,
    ) -> Vec<(u64, ExpectedObservation)> {
        let state = self.shared.lock();
        let o = &state.options;
        let Some(q) = state.queues.iter().find(|q| q.id == queue_id) else {
            return Vec::new();
        };
        let period = period_ms(o);
        let first = values::slot(
            o.seed,
            q.index,
            from_ms,
            period,
            o.changes_at_random_moments,
        );
        let later = if o.changes_at_random_moments {
            values::changes(o.seed, q.index, from_ms, to_ms, period)
        } else {
            (from_ms / period + 1..=to_ms.saturating_sub(1) / period)
                .map(|slot| (slot * period, slot))
                .collect()
        };
        std::iter::once((from_ms, first))
            .chain(later)
            .map(|(at, slot)| {
                (
                    at,
                    values::observation(o.seed, q.index, slot, &o.media_types),
                )
            })
            .collect()
    }

    /// What an observation query answers for `queue_id` in `slot` (all zeros for an id
    /// that is not a current queue, as [`UnknownQueues::Empty`] answers it).
    pub fn observation_at(&self, queue_id: &str, slot: u64) -> ExpectedObservation {
        let state = self.shared.lock();
        let options = &state.options;
        match state.queues.iter().find(|q| q.id == queue_id) {
            Some(q) => values::observation(options.seed, q.index, slot, &options.media_types),
            None => values::empty_observation(&options.media_types),
        }
    }

    /// Final KPIs of one queue, media type and bucket (what the aggregates endpoint
    /// answers once `kpi_settle` has passed after the bucket end). Zero for unknown ids.
    pub fn expected_kpis(
        &self,
        queue_id: &str,
        media: &str,
        bucket_start_ms: u64,
        bucket_ms: u64,
    ) -> KpiValues {
        self.kpis_at(queue_id, media, bucket_start_ms, bucket_ms, u64::MAX)
    }

    /// The KPIs of a bucket as visible at `at_ms` (late data still arriving).
    pub fn kpis_at(
        &self,
        queue_id: &str,
        media: &str,
        bucket_start_ms: u64,
        bucket_ms: u64,
        at_ms: u64,
    ) -> KpiValues {
        let state = self.shared.lock();
        let options = &state.options;
        let Some(q) = state.queues.iter().find(|q| q.id == queue_id) else {
            return KpiValues::default();
        };
        let scope = values::KpiScope {
            seed: options.seed,
            index: q.index,
            media,
            settle_ms: options.kpi_settle.as_millis() as u64,
        };
        values::kpis(&scope, bucket_start_ms, bucket_start_ms + bucket_ms, at_ms)
    }

    /// Every request received so far (the newest [`MAX_LOG_RECORDS`]), in the order they
    /// were answered.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.iter().cloned().collect()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// Renames a queue; false when the id is unknown.
    pub fn rename_queue(&self, id: &str, new_name: &str) -> bool {
        let mut state = self.shared.lock();
        match state.queues.iter_mut().find(|q| q.id == id) {
            Some(q) => {
                q.name = new_name.to_string();
                q.modified_ms = self.shared.now_ms();
                true
            }
            None => false,
        }
    }

    /// Deletes a queue: it leaves the listing and becomes an unknown id. False when unknown.
    pub fn delete_queue(&self, id: &str) -> bool {
        let mut state = self.shared.lock();
        let before = state.queues.len();
        state.queues.retain(|q| q.id != id);
        state.queues.len() != before
    }

    /// Adds a queue (with fresh values) and returns its id.
    pub fn add_queue(&self, name: &str) -> String {
        let mut state = self.shared.lock();
        let index = state.next_index;
        state.next_index += 1;
        let id = values::queue_id(state.options.seed, index);
        state.queues.push(SimQueue {
            index,
            id: id.clone(),
            name: name.to_string(),
            modified_ms: self.shared.now_ms(),
        });
        id
    }

    /// Invalidates every issued token: the next API call gets 401 `bad.credentials`.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Changes the client credentials the token endpoint accepts.
    pub fn set_credentials(&self, client_id: &str, client_secret: &str) {
        let mut state = self.shared.lock();
        state.options.client_id = client_id.to_string();
        state.options.client_secret = client_secret.to_string();
    }

    /// Changes what observation queries answer for unknown queue ids.
    pub fn set_unknown_queues(&self, behaviour: UnknownQueues) {
        self.shared.lock().options.unknown_queues = behaviour;
    }

    /// The next `times` requests to `endpoint` get `fault` (queued faults fire in order).
    pub fn inject(&self, endpoint: Endpoint, fault: Fault, times: u32) {
        if times > 0 {
            self.shared.lock().injected.push(Injected {
                endpoint,
                fault,
                remaining: times,
            });
        }
    }

    /// Every `n`th request to `endpoint` (counted since start) gets `fault`, until
    /// [`Sim::clear_faults`].
    pub fn every_nth(&self, endpoint: Endpoint, n: u64, fault: Fault) {
        if n > 0 {
            self.shared
                .lock()
                .every_nth
                .push(EveryNth { endpoint, n, fault });
        }
    }

    /// Authenticated calls to `endpoint` get 403 `missing.permissions` from now on.
    pub fn forbid(&self, endpoint: Endpoint) {
        self.shared.lock().forbidden.insert(endpoint);
    }

    /// Undoes [`Sim::forbid`].
    pub fn allow(&self, endpoint: Endpoint) {
        self.shared.lock().forbidden.remove(&endpoint);
    }

    /// Removes every injected, periodic and permission fault.
    pub fn clear_faults(&self) {
        let mut state = self.shared.lock();
        state.injected.clear();
        state.every_nth.clear();
        state.forbidden.clear();
    }

    /// Stops accepting, ends every connection and waits for the threads (well under a
    /// second; a pending [`Fault::Delay`] is cut short).
    pub fn shutdown(&mut self) {
        self.server = None;
        if let Some(streaming) = self.streaming.take() {
            let _ = streaming.join();
        }
    }

    /// Injects a fault into every notification websocket open now.
    pub fn socket_fault(&self, fault: SocketFault) {
        self.shared.lock().socket_faults.push(fault);
    }

    /// Every channel expires now: its socket closes and connecting to it is refused
    /// (404), as for a channel past its `expires`.
    pub fn expire_channels(&self) {
        let now = now_ms();
        for channel in self.shared.lock().channels.values_mut() {
            channel.expires_ms = channel.expires_ms.min(now);
        }
    }

    /// The queue ids subscribed on each channel that has not expired.
    pub fn subscriptions(&self) -> Vec<Vec<String>> {
        let now = now_ms();
        let state = self.shared.lock();
        state
            .channels
            .values()
            .filter(|c| c.expires_ms > now)
            .map(|c| c.topics.iter().map(|(id, _)| id.clone()).collect())
            .collect()
    }

    /// `(time, queue id)` of every observations message published so far (the newest
    /// [`MAX_LOG_RECORDS`]).
    pub fn published(&self) -> Vec<(u64, String)> {
        self.shared.lock().published.iter().cloned().collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn period_ms(options: &SimOptions) -> u64 {
    (options.value_period.as_millis() as u64).max(1)
}
