//! The poller thread: every tick (a multiple of the poll interval on the UTC clock) it asks
//! Genesys for the current state of every selected queue, chunk by chunk, and sends what
//! it learns to the aggregator as [`PollEvent`]s.
//!
//! The chunks start as the budget plan says and run on a few short-lived request threads,
//! so one chunk waiting out a 429 or a 5xx backoff does not push the others past the
//! poll's deadline. Polls never overlap: a chunk not started before the tick's deadline
//! is abandoned (those queues miss one sample) and ticks that are already past are
//! skipped, not queued. The queue list is re-resolved every `QUEUE_REFRESH` and, after a
//! poll and within the request budget, when a SIGHUP asked for it
//! ([`PollerControl::RefreshQueues`]; a burst of them is one refresh); a failed refresh
//! keeps the old list. Waiting is done on the control channel, so a stop (the channel
//! disconnecting) wakes the thread at once.

use std::collections::HashSet;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, unbounded, Receiver, RecvTimeoutError, Select, Sender};

use crate::config::{QueueSelector, Shard};
use crate::model::{PollEvent, Queue, QueueChanged, SharedQueues};
use crate::stats::Stats;

use super::budget::{self, PollPlan, REQUESTS_IN_FLIGHT};
use super::client::GenesysClient;
use super::early_poller::{EarlyPoller, FreeBudget};
use super::error::ApiError;
use super::observations::{self, Chunk, ChunkResult};
use super::poller_start::{StartError, StartInfo};
use super::queues::{self, merge_queue_lists, QueueChanges};
use super::retry::BACKOFF_BASE;
use super::ticks::{following_tick, tick_at_or_after};
use crate::time::now_ms;

/// Deadline for resolving the queue list (it may take many pages).
pub const QUEUE_LIST_DEADLINE: Duration = Duration::from_secs(60);
/// After a failed queue refresh, the next attempt comes this much later.
pub const REFRESH_RETRY: Duration = Duration::from_secs(60);
/// A chunk rejected with 400 triggers a queue refresh at most this often.
pub const MIN_RECOVERY_REFRESH_GAP: Duration = Duration::from_secs(60);
/// First wait between start-up attempts; doubles up to [`MAX_START_BACKOFF`].
pub const START_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_START_BACKOFF: Duration = Duration::from_secs(60);

/// One poll's chunks and where their answers go.
struct Answers<'a> {
    tick: u64,
    deadline: Instant,
    events: &'a Sender<PollEvent>,
    done: &'a Receiver<(usize, Result<ChunkResult, ApiError>)>,
    chunks: &'a [Chunk],
}

/// What the poller needs to know besides the client.
#[derive(Debug, Clone)]
pub struct PollerSettings {
    pub poll_interval: Duration,
    pub queue_refresh: Duration,
    pub selectors: Vec<QueueSelector>,
    pub shard: Option<Shard>,
    pub requests_per_minute: u32,
    /// `KPI_POLL` when the KPI poller shares the budget: its requests are kept free.
    pub kpi_poll: Option<Duration>,
    /// Where every resolved queue list is published for the KPI poller.
    pub published: SharedQueues,
}

impl PollerSettings {
    /// Requests per minute that `queue_count` queues leave to the queue-list refresh
    /// and the KPI poll, which the observation poll must not use.
    fn reserved_per_minute(&self, queue_count: usize) -> u32 {
        let refresh = budget::requests_per_minute(queue_count, self.queue_refresh);
        let kpi = self
            .kpi_poll
            .map_or(0, |poll| budget::requests_per_minute(queue_count, poll));
        refresh.saturating_add(kpi)
    }
}

/// Messages to the poller; the channel disconnecting means stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollerControl {
    /// Re-resolve the queue list now (SIGHUP).
    RefreshQueues,
}

/// What woke a wait on the control channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    Timeout,
    Refresh,
    Stop,
}

fn wait(control: &Receiver<PollerControl>, duration: Duration) -> Wake {
    match control.recv_timeout(duration) {
        Ok(PollerControl::RefreshQueues) => Wake::Refresh,
        Err(RecvTimeoutError::Timeout) => Wake::Timeout,
        Err(RecvTimeoutError::Disconnected) => Wake::Stop,
    }
}

/// One chunk's observations, asked again once after [`BACKOFF_BASE`] when the client
/// gave up on a 5xx, a network error or a bad answer because its backoff, grown by the
/// attempts before (429s included), no longer fit: a chunk that met two 429s and then a
/// 500 would otherwise lose its sample with most of the poll still left. A 429 whose
/// `Retry-After` does not fit is not asked again.
fn observe_chunk(
    client: &GenesysClient,
    chunk: &Chunk,
    deadline: Instant,
) -> Result<ChunkResult, ApiError> {
    let result = observations::observe(client, chunk, deadline);
    let worth_one_more = match &result {
        Err(ApiError::Server { .. } | ApiError::Network(_) | ApiError::Malformed(_)) => {
            Instant::now() + BACKOFF_BASE * 2 < deadline
        }
        _ => false,
    };
    if !worth_one_more {
        return result;
    }
    thread::sleep(BACKOFF_BASE);
    observations::observe(client, chunk, deadline)
}

/// Warns once per failure class until a success, then notes the recovery: a failing
/// Genesys does not fill the log with one line per chunk and tick.
#[derive(Debug, Default)]
struct FailureLog {
    active: HashSet<&'static str>,
}

impl FailureLog {
    fn failed(&mut self, what: &str, error: &ApiError) {
        if self.active.insert(error.class()) {
            log::warn!("{what}: {error} (further failures of this kind are logged at debug level)");
        } else {
            log::debug!("{what}: {error}");
        }
    }

    fn succeeded(&mut self) {
        if !self.active.is_empty() {
            log::info!("Genesys Cloud answers again");
            self.active.clear();
        }
    }
}

/// Polls the selected queues; see the module documentation.
pub struct ObservationPoller {
    client: Arc<GenesysClient>,
    settings: PollerSettings,
    stats: Arc<Stats>,
    queues: Vec<Arc<Queue>>,
    /// `queues` as the poll's requests, rebuilt when the list changes.
    chunks: Arc<[Chunk]>,
    plan: PollPlan,
    last_refresh: Instant,
    next_refresh: Instant,
    /// A SIGHUP asked for a refresh not yet done.
    refresh_asked: bool,
    /// Requests of the last queue listing (its pages).
    listing_requests: usize,
    warned_unmatched: HashSet<String>,
    warned_missing: HashSet<String>,
    failures: FailureLog,
    /// What `plan` leaves of the budget, for the early re-polls.
    early_budget: FreeBudget,
}

impl ObservationPoller {
    pub fn new(client: Arc<GenesysClient>, settings: PollerSettings, stats: Arc<Stats>) -> Self {
        let plan = budget::plan(0, settings.poll_interval, settings.requests_per_minute, 0);
        ObservationPoller {
            client,
            stats,
            queues: Vec::new(),
            chunks: Arc::new([]),
            plan,
            last_refresh: Instant::now(),
            next_refresh: Instant::now() + settings.queue_refresh,
            refresh_asked: false,
            listing_requests: 1,
            warned_unmatched: HashSet::new(),
            warned_missing: HashSet::new(),
            failures: FailureLog::default(),
            early_budget: FreeBudget::default(),
            settings,
        }
    }

    /// Start-up: login + first queue resolution. Retries network/5xx errors with backoff
    /// until it works or `control` disconnects.
    pub fn start(&mut self, control: &Receiver<PollerControl>) -> Result<StartInfo, StartError> {
        let mut backoff = START_BACKOFF;
        loop {
            match self.try_start() {
                Ok(info) => return Ok(info),
                Err(Err(fatal)) => return Err(fatal),
                Err(Ok(transient)) => {
                    log::warn!(
                        "start-up: {transient}; trying again in {}s",
                        backoff.as_secs()
                    );
                    // A SIGHUP meanwhile does not cut the backoff short.
                    let until = now_ms() + backoff.as_millis() as u64;
                    if self.wait_until(until, control) == Wake::Stop {
                        return Err(StartError::Stopped);
                    }
                    backoff = (backoff * 2).min(MAX_START_BACKOFF);
                }
            }
        }
    }

    /// `Err(Ok(e))`: worth retrying; `Err(Err(e))`: give up.
    fn try_start(&mut self) -> Result<StartInfo, Result<ApiError, StartError>> {
        let classify = |e: ApiError| {
            if e.is_refusal() {
                Err(StartError::Refused(e))
            } else {
                Ok(e)
            }
        };
        self.client.login().map_err(classify)?;
        let all = queues::list_all(&self.client, Instant::now() + QUEUE_LIST_DEADLINE)
            .map_err(classify)?;
        let available = all.len();
        let (selected, unmatched) = self.resolve(all);
        if selected.is_empty() {
            return Err(Err(StartError::NothingSelected {
                unmatched,
                available,
                shard: self.settings.shard,
            }));
        }
        self.install(selected);
        Ok(StartInfo {
            queues: self.queues.len(),
            poll_interval: self.plan.poll_interval,
            plan: self.plan.summary(),
        })
    }

    /// Selection and sharding of a fresh listing; warns once about selectors that match
    /// nothing.
    fn resolve(&mut self, all: Vec<Queue>) -> (Vec<Arc<Queue>>, Vec<String>) {
        self.listing_requests = all.len().div_ceil(queues::PAGE_SIZE as usize).max(1);
        let selection = queues::select(&all, &self.settings.selectors);
        let fresh: Vec<&String> = selection
            .unmatched
            .iter()
            .filter(|s| !self.warned_unmatched.contains(*s))
            .collect();
        if !fresh.is_empty() {
            let names: Vec<&str> = fresh.iter().map(|s| s.as_str()).collect();
            log::warn!(
                "GENESYS_QUEUES entries that match no queue: {} (names are case-sensitive; the role may not cover the queue's division)",
                names.join(", ")
            );
        }
        self.warned_unmatched
            .extend(selection.unmatched.iter().cloned());
        let selected = selection.queues.len();
        let sharded = queues::in_shard(selection.queues, self.settings.shard);
        if let Some(shard) = self.settings.shard {
            if self.queues.is_empty() || self.queues.len() != sharded.len() {
                log::info!(
                    "QUEUE_SHARD={}/{}: this instance polls {} of the {} selected queues",
                    shard.index,
                    shard.count,
                    sharded.len(),
                    selected
                );
            }
        }
        (sharded, selection.unmatched)
    }

    /// Makes `selected` the polled list and re-plans the budget.
    fn install(&mut self, selected: Vec<Arc<Queue>>) {
        let (merged, changes) = merge_queue_lists(&self.queues, selected);
        let first = self.queues.is_empty();
        self.queues = merged;
        self.chunks = observations::chunks(&self.queues).into();
        self.settings.published.publish(self.queues.clone());
        self.refreshed();
        Stats::set(&self.stats.queues, self.queues.len() as u64);
        let plan = budget::plan(
            self.queues.len(),
            self.settings.poll_interval,
            self.settings.requests_per_minute,
            self.settings.reserved_per_minute(self.queues.len()),
        );
        if first || plan.chunks != self.plan.chunks || plan.poll_interval != self.plan.poll_interval
        {
            log::info!("{}", plan.summary());
        }
        if !first && changes != QueueChanges::default() {
            log::info!(
                "queue list refreshed: {} added, {} removed, {} renamed; {} polled",
                changes.added,
                changes.removed,
                changes.renamed,
                self.queues.len()
            );
        }
        self.early_budget.set(plan.free_per_minute());
        self.plan = plan;
    }

    fn refreshed(&mut self) {
        self.last_refresh = Instant::now();
        self.next_refresh = self.last_refresh + self.settings.queue_refresh;
    }

    /// Re-resolves the queue list; a failure or an empty result keeps the old list.
    fn refresh(&mut self) {
        self.refresh_asked = false;
        match queues::list_all(&self.client, Instant::now() + QUEUE_LIST_DEADLINE) {
            Ok(all) => {
                let (selected, _) = self.resolve(all);
                if selected.is_empty() {
                    log::warn!(
                        "queue refresh selected no queue at all; keeping the previous {} queues",
                        self.queues.len()
                    );
                    self.refreshed();
                } else {
                    self.install(selected);
                }
            }
            Err(error) => {
                self.failures
                    .failed("queue refresh failed, keeping the previous list", &error);
                // Try again soon rather than a whole QUEUE_REFRESH later.
                self.next_refresh = Instant::now() + self.settings.queue_refresh.min(REFRESH_RETRY);
            }
        }
    }

    /// Polls until `control` disconnects. The queues `hints` names are re-polled early,
    /// on a thread of their own (`early_poller`) that ends with this one; a `hints` whose
    /// sender is gone, or [`super::early_poller::no_hints`], means no early re-polls.
    pub fn run(
        mut self,
        events: Sender<PollEvent>,
        control: Receiver<PollerControl>,
        hints: Receiver<QueueChanged>,
    ) {
        let _early = self.start_early_polls(&events, hints);
        let mut tick = tick_at_or_after(now_ms(), self.interval_ms());
        loop {
            if self.wait_until(tick, &control) == Wake::Stop {
                return;
            }
            match self.poll_tick(tick, &events, &control) {
                Wake::Stop => return,
                Wake::Refresh => self.refresh_asked = true,
                Wake::Timeout => {}
            }
            self.refresh_if_due();
            let (next, skipped) = following_tick(tick, now_ms(), self.interval_ms());
            if skipped > 0 {
                log::warn!(
                    "polling ran {skipped} tick(s) late; skipping them (those samples are missing); \
                     a longer POLL_INTERVAL or fewer queues would avoid it"
                );
            }
            tick = next;
        }
    }

    /// Starts the early re-poll thread; it stops when the returned sender is dropped.
    fn start_early_polls(
        &self,
        events: &Sender<PollEvent>,
        hints: Receiver<QueueChanged>,
    ) -> Sender<()> {
        let (stop_tx, stop) = bounded(0);
        let early = EarlyPoller {
            client: Arc::clone(&self.client),
            queues: self.settings.published.clone(),
            budget: self.early_budget.clone(),
            stats: Arc::clone(&self.stats),
            hints,
            events: events.clone(),
            stop,
        };
        let spawned = thread::Builder::new()
            .name("early-polls".into())
            .spawn(move || early.run());
        if let Err(e) = spawned {
            log::warn!("cannot start the early re-poll thread ({e}); polling on the clock only");
        }
        stop_tx
    }

    fn interval_ms(&self) -> u64 {
        self.plan.poll_interval.as_millis().max(1) as u64
    }

    /// After a poll: the periodic refresh when due, or the one SIGHUP asked for once it
    /// fits in the request budget (a burst of SIGHUPs is one refresh, one log line).
    fn refresh_if_due(&mut self) {
        let gap = budget::on_demand_refresh_gap(&self.plan, self.listing_requests);
        let asked = self.refresh_asked && self.last_refresh.elapsed() >= gap;
        if asked {
            log::info!("SIGHUP: re-resolving the queue list");
        }
        if asked || Instant::now() >= self.next_refresh {
            self.refresh();
        }
    }

    /// Sleeps until `at_ms`, noting refresh requests meanwhile.
    fn wait_until(&mut self, at_ms: u64, control: &Receiver<PollerControl>) -> Wake {
        // Each round either returns or sleeps; messages are bounded by the channel.
        loop {
            let now = now_ms();
            if now >= at_ms {
                return Wake::Timeout;
            }
            match wait(control, Duration::from_millis(at_ms - now)) {
                Wake::Stop => return Wake::Stop,
                Wake::Refresh => self.refresh_asked = true,
                Wake::Timeout => {}
            }
        }
    }

    /// One tick: every chunk once, then `TickDone`. Returns `Refresh` if a refresh was
    /// requested meanwhile, `Stop` if the thread must end.
    fn poll_tick(
        &mut self,
        tick: u64,
        events: &Sender<PollEvent>,
        control: &Receiver<PollerControl>,
    ) -> Wake {
        let started = Instant::now();
        let chunks = Arc::clone(&self.chunks);
        let deadline = Instant::now()
            + Duration::from_millis(self.plan.deadline_ms(tick).saturating_sub(now_ms()));
        let client = Arc::clone(&self.client);
        let (work_tx, work_rx) = bounded::<usize>(0);
        let (done_tx, done_rx) = unbounded();
        let outcome = thread::scope(|scope| {
            for n in 0..REQUESTS_IN_FLIGHT.min(chunks.len()) {
                let (work, done, client, chunks) =
                    (work_rx.clone(), done_tx.clone(), &client, &chunks);
                let spawned = thread::Builder::new()
                    .name(format!("poll-request-{n}"))
                    .spawn_scoped(scope, move || {
                        for i in work {
                            let Some(chunk) = chunks.get(i) else { continue };
                            let result = observe_chunk(client, chunk, deadline);
                            if done.send((i, result)).is_err() {
                                return;
                            }
                        }
                    });
                if let Err(e) = spawned {
                    log::warn!("cannot start a request thread ({e}); polling with fewer");
                }
            }
            drop((work_rx, done_tx));
            let answers = Answers {
                tick,
                deadline,
                events,
                done: &done_rx,
                chunks: &chunks,
            };
            let outcome = self.dispatch(&answers, &work_tx, control);
            drop(work_tx);
            if outcome == Wake::Stop {
                return outcome;
            }
            for (i, result) in done_rx.iter() {
                if !self.take(&answers, i, result) {
                    return Wake::Stop;
                }
            }
            outcome
        });
        if outcome == Wake::Stop {
            return outcome;
        }
        // Counted before `TickDone`: it may close the window, whose self-metrics must
        // include this poll.
        Stats::incr(&self.stats.polls);
        Stats::raise_to(
            &self.stats.poll_ms_max,
            started.elapsed().as_millis() as u64,
        );
        if events.send(PollEvent::TickDone { tick_ms: tick }).is_err() {
            return Wake::Stop;
        }
        outcome
    }

    /// Hands the chunks in order to the request threads, none before its planned start,
    /// none after the deadline (those queues miss this sample), taking in the answers
    /// meanwhile.
    fn dispatch(
        &mut self,
        answers: &Answers<'_>,
        work: &Sender<usize>,
        control: &Receiver<PollerControl>,
    ) -> Wake {
        let deadline_ms = self.plan.deadline_ms(answers.tick);
        let mut outcome = Wake::Timeout;
        let mut next = 0;
        // Each round hands over a chunk, takes an answer or a control message, or waits
        // at most until the next start; the deadline ends it.
        while next < answers.chunks.len() {
            let now = now_ms();
            if now >= deadline_ms {
                self.abandon(answers, next, "out of time");
                break;
            }
            let start_ms = self.plan.start_ms(answers.tick, next);
            let mut select = Select::new();
            let answer = select.recv(answers.done);
            select.recv(control);
            let hand_over = (now >= start_ms).then(|| select.send(work));
            let until = if now >= start_ms {
                deadline_ms
            } else {
                start_ms
            };
            let Ok(operation) = select.select_timeout(Duration::from_millis(until - now)) else {
                continue;
            };
            match operation.index() {
                i if Some(i) == hand_over => {
                    if operation.send(work, next).is_err() {
                        self.abandon(answers, next, "no request thread");
                        break;
                    }
                    next += 1;
                }
                i if i == answer => match operation.recv(answers.done) {
                    Ok((chunk, result)) => {
                        if !self.take(answers, chunk, result) {
                            return Wake::Stop;
                        }
                    }
                    Err(_) => {
                        self.abandon(answers, next, "no request thread");
                        break;
                    }
                },
                _ => match operation.recv(control) {
                    Ok(PollerControl::RefreshQueues) => outcome = Wake::Refresh,
                    Err(_) => return Wake::Stop,
                },
            }
        }
        outcome
    }

    /// Counts and logs the chunks from `next` on as not sent.
    fn abandon(&self, answers: &Answers<'_>, next: usize, why: &str) {
        let left = answers.chunks.len() - next;
        log::warn!(
            "poll at {}: {why}, {left} of {} request(s) not sent (their queues miss this sample)",
            answers.tick,
            answers.chunks.len()
        );
        Stats::add(&self.stats.poll_errors, left as u64);
    }

    /// Handles the answer to chunk `index` and passes its observations on; false when the
    /// aggregator is gone.
    fn take(
        &mut self,
        answers: &Answers<'_>,
        index: usize,
        result: Result<ChunkResult, ApiError>,
    ) -> bool {
        let Some(chunk) = answers.chunks.get(index) else {
            return true;
        };
        let Some(result) = self.chunk_result(chunk.queues(), result, answers.deadline) else {
            return true;
        };
        result.observations.is_empty()
            || answers
                .events
                .send(PollEvent::Observations {
                    tick_ms: answers.tick,
                    observations: result.observations,
                })
                .is_ok()
    }

    /// One chunk's observations, or `None` (counted and logged) when it failed.
    fn chunk_result(
        &mut self,
        chunk: &[Arc<Queue>],
        result: Result<ChunkResult, ApiError>,
        deadline: Instant,
    ) -> Option<ChunkResult> {
        match result {
            Ok(result) => {
                self.failures.succeeded();
                self.note_missing(&result.missing);
                Some(result)
            }
            Err(error @ ApiError::BadRequest { .. }) => {
                Stats::incr(&self.stats.poll_errors);
                self.failures.failed("observations query rejected", &error);
                self.retry_without_stale(chunk, deadline)
            }
            Err(error) => {
                Stats::incr(&self.stats.poll_errors);
                self.failures.failed("observations query failed", &error);
                None
            }
        }
    }

    /// After a 400: refresh the queue list and, if queues of the chunk disappeared, ask
    /// again for the ones still there.
    fn retry_without_stale(
        &mut self,
        chunk: &[Arc<Queue>],
        deadline: Instant,
    ) -> Option<ChunkResult> {
        if self.last_refresh.elapsed() < MIN_RECOVERY_REFRESH_GAP {
            return None;
        }
        self.refresh();
        let current: HashSet<&str> = self.queues.iter().map(|q| q.id.as_str()).collect();
        let kept: Vec<Arc<Queue>> = chunk
            .iter()
            .filter(|q| current.contains(q.id.as_str()))
            .cloned()
            .collect();
        if kept.is_empty() || kept.len() == chunk.len() {
            return None;
        }
        log::info!(
            "retrying the rejected request without {} queue(s) that no longer exist",
            chunk.len() - kept.len()
        );
        match observations::observe(&self.client, &Chunk::new(&kept), deadline) {
            Ok(result) => {
                self.note_missing(&result.missing);
                Some(result)
            }
            Err(error) => {
                self.failures
                    .failed("observations query failed again", &error);
                None
            }
        }
    }

    fn note_missing(&mut self, missing: &[Arc<Queue>]) {
        for queue in missing {
            if self.warned_missing.insert(queue.id.clone()) {
                log::warn!(
                    "Genesys returned no observations for queue {} ({}); it is still polled (deleted, or outside the role's divisions?)",
                    queue.name,
                    queue.id
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::client::test_server::{fixture, reply, token, Server};
    use super::super::client::tests::client_for;
    use super::*;
    use crate::exit::Exit;

    fn settings(poll_interval: Duration, selectors: Vec<QueueSelector>) -> PollerSettings {
        PollerSettings {
            poll_interval,
            queue_refresh: Duration::from_secs(300),
            selectors,
            shard: None,
            requests_per_minute: 300,
            kpi_poll: None,
            published: SharedQueues::default(),
        }
    }

    #[test]
    fn start_refuses_when_the_credentials_are_refused() {
        let server = Server::start(vec![reply(
            401,
            &fixture("token-error-invalid-client.json"),
        )]);
        let (client, _, _) = client_for(&server.url);
        let mut poller = ObservationPoller::new(
            Arc::new(client),
            settings(Duration::from_secs(10), vec![]),
            Arc::default(),
        );
        let (_tx, rx) = crossbeam_channel::bounded(1);
        let err = poller.start(&rx).unwrap_err();
        assert_eq!(err.exit_code(), Exit::Credentials);
        assert!(err.to_string().contains("/oauth/token"));
    }

    #[test]
    fn start_fails_when_nothing_matches() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &fixture("queues-page-1.json")),
            reply(200, &fixture("queues-page-2.json")),
        ]);
        let (client, _, _) = client_for(&server.url);
        let selectors = vec![QueueSelector::Name("support – ünïcode".into())];
        let mut poller = ObservationPoller::new(
            Arc::new(client),
            settings(Duration::from_secs(10), selectors),
            Arc::default(),
        );
        let (_tx, rx) = crossbeam_channel::bounded(1);
        match poller.start(&rx).unwrap_err() {
            StartError::NothingSelected {
                unmatched,
                available,
                ..
            } => {
                assert_eq!(unmatched, vec!["support – ünïcode"]);
                assert_eq!(available, 7);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn start_stops_when_the_control_channel_closes_during_retries() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let (client, _, _) = client_for(&url);
        let mut poller = ObservationPoller::new(
            Arc::new(client),
            settings(Duration::from_secs(10), vec![]),
            Arc::default(),
        );
        let (tx, rx) = crossbeam_channel::bounded(1);
        drop(tx);
        assert_eq!(poller.start(&rx).unwrap_err(), StartError::Stopped);
    }

    /// The chunks are kept between polls: each change of the list (added, removed,
    /// renamed queues) must show in them, and nothing of the list before.
    #[test]
    fn the_chunks_follow_every_change_of_the_queue_list() {
        let (client, _, _) = client_for("http://127.0.0.1:9");
        let mut poller = ObservationPoller::new(
            Arc::new(client),
            settings(Duration::from_secs(10), vec![]),
            Arc::default(),
        );
        let list = |ids: std::ops::Range<usize>, name: &str| -> Vec<Arc<Queue>> {
            ids.map(|i| {
                Arc::new(Queue {
                    id: format!("{i:032x}"),
                    name: format!("{name} {i}"),
                })
            })
            .collect()
        };
        for selected in [
            list(0..250, "a"),
            list(0..120, "a"),
            list(0..120, "renamed"),
            list(50..51, "b"),
            list(0..300, "c"),
        ] {
            poller.install(selected.clone());
            assert_eq!(&*poller.chunks, &observations::chunks(&selected)[..]);
            let polled: Vec<Arc<Queue>> = poller
                .chunks
                .iter()
                .flat_map(|chunk| chunk.queues().iter().cloned())
                .collect();
            assert_eq!(polled, selected);
        }
    }

    #[test]
    fn one_tick_end_to_end_against_a_scripted_genesys() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &fixture("queues-page-1.json")),
            reply(200, &fixture("queues-page-2.json")),
            reply(200, &fixture("observations-response.json")),
        ]);
        let (client, _, _) = client_for(&server.url);
        let stats = Arc::new(Stats::default());
        let selectors = vec![
            QueueSelector::Pattern("Support*".into()),
            QueueSelector::Pattern("Sales*".into()),
            QueueSelector::Pattern("*VIP*".into()),
            QueueSelector::Name("Weekend Overflow".into()),
            QueueSelector::Name("Gone".into()),
        ];
        let mut poller = ObservationPoller::new(
            Arc::new(client),
            settings(Duration::from_secs(1), selectors),
            stats.clone(),
        );
        let (control_tx, control_rx) = crossbeam_channel::bounded(1);
        let info = poller.start(&control_rx).unwrap();
        assert_eq!(info.queues, 4);
        assert_eq!(info.poll_interval, Duration::from_secs(1));
        assert!(
            info.plan
                .starts_with("polling 4 queues in 1 request every 1s"),
            "{}",
            info.plan
        );
        assert_eq!(stats.queues.load(std::sync::atomic::Ordering::Relaxed), 4);

        let (events_tx, events_rx) = crossbeam_channel::bounded(16);
        let thread = std::thread::spawn(move || {
            poller.run(
                events_tx,
                control_rx,
                super::super::early_poller::no_hints(),
            )
        });
        let first = events_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let tick = match first {
            PollEvent::Observations {
                tick_ms,
                observations,
            } => {
                assert_eq!(tick_ms % 1000, 0);
                let names: Vec<&str> = observations.iter().map(|o| o.queue.name.as_str()).collect();
                // sorted by id; Weekend Overflow is absent from the answer
                assert_eq!(
                    names,
                    vec![
                        "Support – Ünïcode",
                        "Sales, EMEA = \"Tier 1\"",
                        "🎧 VIP Line 📞"
                    ]
                );
                tick_ms
            }
            other => panic!("{other:?}"),
        };
        match events_rx.recv_timeout(Duration::from_secs(5)).unwrap() {
            PollEvent::TickDone { tick_ms } => assert_eq!(tick_ms, tick),
            other => panic!("{other:?}"),
        }
        let body: serde_json::Value = serde_json::from_str(&server.requests()[3].body).unwrap();
        assert_eq!(body["filter"]["predicates"].as_array().unwrap().len(), 4);
        drop(control_tx);
        // the next tick fails (the script is over) or the stop arrives first; either way the
        // thread ends promptly
        thread.join().unwrap();
        assert!(stats.polls.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    }

    /// A poller against the simulator, polling every 2 s, with `hints` as its
    /// notifications; its events and the stop switch.
    fn sim_poller(
        sim: &crate::sim::Sim,
        hints: Receiver<QueueChanged>,
    ) -> (
        Receiver<PollEvent>,
        Sender<PollerControl>,
        thread::JoinHandle<()>,
        Arc<Stats>,
    ) {
        let (client, _, _) = client_for(&sim.base_url());
        let stats = Arc::new(Stats::default());
        let mut poller = ObservationPoller::new(
            Arc::new(client),
            settings(Duration::from_secs(2), vec![]),
            stats.clone(),
        );
        let (control_tx, control_rx) = crossbeam_channel::bounded(1);
        poller.start(&control_rx).unwrap();
        let (events_tx, events_rx) = crossbeam_channel::bounded(64);
        let thread = thread::spawn(move || poller.run(events_tx, control_rx, hints));
        (events_rx, control_tx, thread, stats)
    }

    fn sim() -> crate::sim::Sim {
        crate::sim::Sim::start(crate::sim::SimOptions {
            client_id: "client-id".into(),
            client_secret: "top-secret-value".into(),
            ..Default::default()
        })
        .unwrap()
    }

    /// A hint makes the poller read just that queue at once, between its ticks, and send
    /// it on as early observations; a flood of hints for it is one request a second.
    #[test]
    fn a_hinted_queue_is_re_polled_early_against_the_simulator() {
        let sim = sim();
        let (hint_tx, hints) = crossbeam_channel::bounded(64);
        let (events, control, thread, stats) = sim_poller(&sim, hints);
        let deadline = Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline: until the first poll is done.
        while !matches!(
            events.recv_deadline(deadline).unwrap(),
            PollEvent::TickDone { .. }
        ) {}
        let (id, _) = sim.queues()[3].clone();
        let hinted = now_ms();
        for _ in 0..5 {
            hint_tx
                .send(QueueChanged {
                    queue_id: Arc::from(id.as_str()),
                    at_ms: now_ms(),
                })
                .unwrap();
        }
        let early = loop {
            match events.recv_deadline(deadline).unwrap() {
                PollEvent::EarlyObservations {
                    answered_ms,
                    observations,
                } => break (answered_ms, observations),
                _ => continue,
            }
        };
        assert!(early.0 >= hinted && early.0 - hinted < 1_000, "{early:?}");
        let ids: Vec<&str> = early.1.iter().map(|o| o.queue.id.as_str()).collect();
        assert_eq!(ids, vec![id.as_str()]);
        drop(control);
        thread.join().unwrap();
        let singles = sim
            .requests()
            .iter()
            .filter(|r| r.queue_ids == vec![id.clone()])
            .count();
        assert_eq!(singles, 1, "five hints at once, one request");
        assert_eq!(
            stats.early_polls.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }

    /// No notifications (the hints' sender dropped, as with `NOTIFICATIONS=off`): the
    /// poller polls on the clock as before, and nothing early.
    #[test]
    fn without_notifications_the_poller_polls_on_the_clock_only() {
        let sim = sim();
        let (hint_tx, hints) = crossbeam_channel::bounded::<QueueChanged>(1);
        drop(hint_tx);
        let (events, control, thread, stats) = sim_poller(&sim, hints);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ticks = 0;
        // Bounded by the deadline: two polls.
        while ticks < 2 {
            match events.recv_deadline(deadline).unwrap() {
                PollEvent::TickDone { .. } => ticks += 1,
                PollEvent::EarlyObservations { .. } => panic!("nothing was hinted"),
                PollEvent::Observations { .. } => {}
            }
        }
        drop(control);
        thread.join().unwrap();
        assert_eq!(
            stats.early_polls.load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }
}
