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
//! What each answer means is decided by the response policy (`policy.rs`); the requests
//! are cut and halved by `delivery.rs` and sent by `transport.rs`; unsent data waits in
//! the backlog (`backlog.rs`).
//!
//! Live updates of the window in progress (`live.rs`) come through a [`LiveSlot`], not
//! the channel: one is sent only when no final data waits, InfluxDB is not failing and
//! shutdown has not begun, and it is dropped, never kept, when it cannot be sent. One
//! that got no answer may still land late: its window's final point is written again
//! later (`rewrite.rs`).
//!
//! Every failure class is logged once when it starts, then as a summary every 5 minutes
//! (`InfluxDB unreachable for 5m, 30 batches (1200 lines) spooled`), and once on recovery.
//!
//! Shutdown ends within `SHUTDOWN_TIMEOUT` of SIGTERM whatever the network does: each
//! request runs on a helper thread the writer stops waiting for at the deadline. What is
//! not delivered then is spooled; what cannot be spooled (no `SPOOL_DIR`, or the spool
//! unwritable) is counted in `lines_dropped` and logged as lost, with the number.
//!
//! About 740 lines of code, the thread loop and nothing else; the rest are its tests,
//! which drive that loop with a scripted transport and a clock passed in.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, RecvTimeoutError, Sender, TryRecvError};

use crate::aggregate::PartBuffers;
use crate::config::{InfluxTarget, LiveUpdates, SpoolConfig};
use crate::duration;
use crate::influx::backlog::{Backlog, MEMORY_BACKLOG_MAX_BYTES};
use crate::influx::delivery::{count_lines, deliver, Delivery, RejectionLog};
use crate::influx::endpoint::{credentials_hint, Endpoint};
use crate::influx::gzip::Gzip;
use crate::influx::live::{self, LiveSlot};
use crate::influx::policy::{decide, Decision, FailureClass, Failures};
use crate::influx::rewrite::{self, Rewrites};
use crate::influx::shutdown::ShutdownClock;
use crate::influx::transport::{HttpTransport, Transport};
use crate::jitter::Jitter;
use crate::model::Batch;
use crate::stats::Stats;

/// Small batches (KPI polls, small windows) are joined into one request up to this many
/// bytes; a larger batch is sent on its own, so a big window is never copied again.
const COALESCE_MAX_BYTES: usize = 512 * 1024;
/// Default for [`WriterSettings::max_lines_per_request`].
pub const DEFAULT_MAX_LINES_PER_REQUEST: usize = 5000;
/// At most one replay request per this interval, so fresh batches go first.
/// Spool records are window parts of ≤ 128 KiB (about 200 lines), so this replays
/// up to about 5 MB of line protocol a second: a backlog drains many times faster than
/// windows arrive, and fresh windows still go first.
const REPLAY_INTERVAL: Duration = Duration::from_millis(25);
/// How often a continuing outage or continuing rejections are summarised in the log.
const SUMMARY_INTERVAL: Duration = Duration::from_secs(300);
/// Longest blocking wait on the input channel, so the loop re-checks its timers.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// After the shutdown deadline, how long the last parts of the closing window may still
/// take to arrive (they are spooled, not sent).
const FINAL_PARTS_GRACE: Duration = Duration::from_millis(200);
/// `HTTP_TIMEOUT` when the agent has none (tests): paces the re-writes of `rewrite.rs`.
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
#[derive(Debug, Clone)]
pub struct WriterSettings {
    pub target: InfluxTarget,
    pub spool: SpoolConfig,
    pub shutdown_timeout: Duration,
    pub max_lines_per_request: usize,
    pub live_updates: LiveUpdates,
}

/// Writes every batch from `input` until it disconnects and everything is delivered,
/// and the live updates left in `live` while nothing final waits.
/// Shutdown starts when `stop` disconnects (SIGTERM) or `input` does, and ends
/// `shutdown_timeout` later whatever the network does: a request still unanswered then
/// is abandoned, and what is unsent is spooled (with a `SPOOL_DIR`) or counted and
/// logged as lost.
pub fn run(
    settings: WriterSettings,
    agent: ureq::Agent,
    input: Receiver<Batch>,
    live: LiveSlot,
    stop: Receiver<()>,
    stats: Arc<Stats>,
    part_buffers: Arc<PartBuffers>,
) {
    let Some(endpoint) = Endpoint::new(&settings.target) else {
        if settings.live_updates != LiveUpdates::Off {
            log::info!("live updates off: line protocol goes to stdout, each window once at close");
        }
        write_stdout(&input, &stats);
        return;
    };
    let description = endpoint.description.clone();
    let clock = ShutdownClock::new(stop, settings.shutdown_timeout);
    let endpoint = Arc::new(endpoint);
    let identify = live::start(settings.live_updates, &agent, &endpoint, &live);
    let http_timeout = agent
        .config()
        .timeouts()
        .global
        .unwrap_or(DEFAULT_HTTP_TIMEOUT);
    let transport = HttpTransport {
        agent,
        endpoint,
        clock: clock.clone(),
        gzip: Gzip::new(),
    };
    let backlog = Backlog::new(&settings.spool, MEMORY_BACKLOG_MAX_BYTES, stats.clone());
    log::info!("writer: sending to {description}; {}", backlog.summary());
    let mut writer = Writer::new(transport, backlog, &settings, stats, clock, live);
    writer.identify = identify;
    writer.part_buffers = Some(part_buffers);
    writer.rewrites = Rewrites::new(http_timeout);
    writer.run(&input);
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
    /// Fresh batches joined into one request; kept between requests.
    coalesced: String,
    /// Where sent batches' buffers go back to the aggregator (not in stdout mode or tests).
    part_buffers: Option<Arc<PartBuffers>>,
    /// While InfluxDB is failing: when to try again.
    retry_at: Option<Instant>,
    attempt: u32,
    /// Unreadable answers in a row (to the body at the front).
    garbled: u32,
    outage: Option<Outage>,
    next_replay: Instant,
    rejections: RejectionLog,
    jitter: Jitter,
    destination: &'static str,
    /// The variables to check when InfluxDB refuses the credentials.
    credentials: &'static str,
    /// An earlier run left a backlog: until it is replayed, fresh batches queue behind it
    /// instead of going first, so a partial window spooled at that run's shutdown can never
    /// overwrite the complete point of the same window written after the restart.
    behind_old_backlog: bool,
    clock: ShutdownClock,
    live: LiveSlot,
    /// After a live update failed: no other before then.
    live_retry_at: Option<Instant>,
    /// Windows whose live update got no answer, and their final lines to write again.
    rewrites: Rewrites,
    /// While `LIVE_UPDATES=auto` has not identified the backend: asks for another ping.
    identify: Option<Sender<()>>,
}

impl<T: Transport> Writer<T> {
    fn new(
        transport: T,
        backlog: Backlog,
        settings: &WriterSettings,
        stats: Arc<Stats>,
        clock: ShutdownClock,
        live: LiveSlot,
    ) -> Self {
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
            coalesced: String::new(),
            part_buffers: None,
            retry_at: None,
            attempt: 0,
            garbled: 0,
            outage: None,
            next_replay: Instant::now(),
            rejections: RejectionLog::default(),
            jitter: Jitter::from_clock(),
            destination,
            credentials: credentials_hint(&settings.target),
            behind_old_backlog,
            clock,
            live,
            live_retry_at: None,
            rewrites: Rewrites::new(DEFAULT_HTTP_TIMEOUT),
            identify: None,
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
            if shutting_down {
                self.live.close();
            }
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
        // The last window's self-metrics point is made: drops since then (the lines lost
        // at exit among them) are reported by the next start.
        self.backlog.keep_unreported_drops();
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
                recv(self.live.doorbell()) -> _ => Err(RecvTimeoutError::Timeout),
                default(wait) => Err(RecvTimeoutError::Timeout),
            },
        };
        match first {
            Ok(batch) => self.take_in(batch, Instant::now()),
            // Woken by a live update: final data that came meanwhile still goes first.
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return false,
        }
        while !self.fresh_is_full() {
            match input.try_recv() {
                Ok(batch) => self.take_in(batch, Instant::now()),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// A batch from the input joins the fresh ones; a copy is kept if its window is in
    /// doubt.
    fn take_in(&mut self, batch: Batch, now: Instant) {
        self.rewrites.capture(&batch, now);
        self.fresh.push_back(batch);
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

    /// Does at most one unit of work: a fresh request, a retry, one replay request, or,
    /// with nothing final waiting, the live update. A re-write that is due joins the
    /// fresh batches first.
    fn step(&mut self, now: Instant) {
        if let Some(rewrite) = self.rewrites.due(now) {
            self.fresh.push_back(rewrite);
        }
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
            None if self.backlog.is_empty() => self.send_live(now),
            None => {}
        }
    }

    /// Sends the waiting live update, if any and none failed lately; any failure drops
    /// it (counted in `live_updates_skipped`): the next poll brings a newer one. One
    /// without an answer puts its window in doubt (see `rewrite.rs`); no live update of
    /// a window in doubt is sent.
    fn send_live(&mut self, now: Instant) {
        if self.live_retry_at.is_some_and(|at| now < at) {
            return;
        }
        let Some(update) = self.live.take() else {
            return;
        };
        let stats = Arc::clone(&self.stats);
        if !self.rewrites.live_allowed(update.window_start_ms) {
            Stats::incr(&stats.live_updates_skipped);
            return;
        }
        // `now` moved on by the requests already made: when each part is sent.
        let started = Instant::now();
        for part in &update.parts {
            let count = count_lines(part);
            let sent_at = now + started.elapsed();
            let answer = self.transport.post(part);
            if let Some(why) = answer.outcome_unknown() {
                self.doubt_live(update.window_start_ms, sent_at, why);
            }
            match decide(
                &answer,
                Failures::attempt(1),
                now,
                self.jitter.next_fraction(),
            ) {
                Decision::Stored => Stats::add(&stats.live_points_written, count as u64),
                Decision::Partial { rejected, .. } => Stats::add(
                    &stats.live_points_written,
                    count.saturating_sub(rejected) as u64,
                ),
                Decision::Split { .. } => {
                    Stats::incr(&stats.live_updates_skipped);
                    return;
                }
                Decision::Retry { at, .. } => {
                    self.live_retry_at = Some(at);
                    Stats::incr(&stats.live_updates_skipped);
                    return;
                }
            }
        }
        self.live_retry_at = None;
        for part in update.parts {
            self.give_back(part);
        }
    }

    /// A live request of the window starting at `window_start_ms` got no answer: logged
    /// (a warning when no other window is in doubt), and the window put in doubt.
    fn doubt_live(&mut self, window_start_ms: u64, sent_at: Instant, why: &str) {
        let level = if self.rewrites.is_empty() {
            log::Level::Warn
        } else {
            log::Level::Debug
        };
        log::log!(
            level,
            "a live update of the window of {} got no answer ({why}), outcome unknown: it \
             may still land, so that window's final point will be written again {} after it \
             was sent, and no more live updates of it are sent",
            crate::time::format_utc_ms(window_start_ms),
            rewrite::schedule(self.rewrites.http_timeout())
        );
        self.rewrites.doubt(window_start_ms, sent_at);
    }

    /// After a successful write: if the backend is still to be identified, ask again.
    fn wrote(&mut self) {
        if let Some(retry) = &self.identify {
            if let Err(crossbeam_channel::TrySendError::Disconnected(())) = retry.try_send(()) {
                self.identify = None;
            }
        }
    }

    /// Sends the fresh batches that fit in one request: a batch alone as it is, several
    /// joined in the kept coalescing buffer.
    fn send_fresh(&mut self) {
        let Some(first) = self.fresh.pop_front() else {
            return;
        };
        let join = self
            .fresh
            .front()
            .is_some_and(|next| self.fits(first.lines.len(), first.line_count, next));
        let (alone, line_count) = if join {
            (None, self.coalesce(first))
        } else {
            let count = first.line_count;
            (Some(first), count)
        };
        if line_count == 0 {
            return;
        }
        let failures = self.failures();
        let lines = alone.as_ref().map_or(&self.coalesced, |batch| &batch.lines);
        match deliver(
            &mut self.transport,
            lines,
            self.max_lines,
            &self.stats,
            &mut self.rejections,
            failures,
            self.jitter.next_fraction(),
        ) {
            Delivery::Done => self.wrote(),
            Delivery::Retry {
                class,
                message,
                wait,
                at,
                rest,
                rest_lines,
                ..
            } => {
                self.failed(class, wait, at, &message);
                self.keep(Batch {
                    lines: rest,
                    line_count: rest_lines,
                    window: None,
                });
            }
        }
        if let Some(batch) = alone {
            self.give_back(batch.lines);
        }
    }

    /// A buffer whose lines are sent (or kept elsewhere) goes back to the aggregator.
    fn give_back(&self, lines: String) {
        if let Some(part_buffers) = &self.part_buffers {
            part_buffers.give_back(lines);
        }
    }

    /// Whether `next` joins a request of `bytes` and `lines` so far.
    fn fits(&self, bytes: usize, lines: usize, next: &Batch) -> bool {
        lines + next.line_count <= self.max_lines && bytes + next.lines.len() <= COALESCE_MAX_BYTES
    }

    /// Joins `first` and the fresh batches after it that fit into the coalescing buffer;
    /// returns their line count. The buffer holds at most [`COALESCE_MAX_BYTES`], the
    /// room it is given once, so it never grows and is kept for the writer's life.
    fn coalesce(&mut self, first: Batch) -> usize {
        self.coalesced.clear();
        self.coalesced.reserve(COALESCE_MAX_BYTES);
        self.coalesced.push_str(&first.lines);
        let mut line_count = first.line_count;
        self.give_back(first.lines);
        while let Some(next) = self.fresh.front() {
            if !self.fits(self.coalesced.len(), line_count, next) {
                break;
            }
            self.coalesced.push_str(&next.lines);
            line_count += next.line_count;
            if let Some(next) = self.fresh.pop_front() {
                self.give_back(next.lines);
            }
        }
        line_count
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
        let failures = self.failures();
        let Some((lines, _)) = self.backlog.front() else {
            return true;
        };
        let delivery = deliver(
            &mut self.transport,
            lines,
            self.max_lines,
            &self.stats,
            &mut self.rejections,
            failures,
            self.jitter.next_fraction(),
        );
        match delivery {
            Delivery::Done => {
                self.backlog.ack_front();
                self.wrote();
                true
            }
            Delivery::Retry {
                class,
                message,
                wait,
                at,
                rest,
                rest_lines,
                unanswered,
            } => {
                if let (true, Some((sent_at, len))) = (self.behind_old_backlog, unanswered) {
                    self.rewrites
                        .doubt_replayed(rest.get(..len).unwrap_or_default(), sent_at);
                }
                self.backlog.front_partly_delivered(Batch {
                    lines: rest,
                    line_count: rest_lines,
                    window: None,
                });
                self.failed(class, wait, at, &message);
                false
            }
        }
    }

    /// The failures in a row so far, as the policy counts them, for the next request.
    fn failures(&self) -> Failures {
        Failures {
            attempt: self.attempt.saturating_add(1),
            garbled: self.garbled,
        }
    }

    fn keep(&mut self, batch: Batch) {
        if let Some(outage) = &mut self.outage {
            outage.batches_kept += 1;
            outage.lines_kept += batch.line_count as u64;
        }
        self.backlog.push(batch);
    }

    /// Records a failed request: InfluxDB is tried again at `at`, `wait` from now.
    fn failed(&mut self, class: FailureClass, wait: Duration, at: Instant, message: &str) {
        let now = Instant::now();
        self.attempt = self.attempt.saturating_add(1);
        self.garbled = match class {
            FailureClass::Garbled => self.garbled.saturating_add(1),
            _ => 0,
        };
        self.retry_at = Some(at);
        if self.live.take().is_some() {
            Stats::incr(&self.stats.live_updates_skipped);
        }
        match &mut self.outage {
            Some(outage) if outage.class == class => outage.failed_requests += 1,
            _ => {
                let hint = match class {
                    FailureClass::Refused => format!(" (check {})", self.credentials),
                    _ => String::new(),
                };
                let line = format!(
                    "InfluxDB {}: {message}{hint}; unsent data is {} and retried (next in {})",
                    class.describe(),
                    self.destination,
                    duration::format(Duration::from_secs(wait.as_secs().max(1)))
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
        self.garbled = 0;
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
    /// Re-writes still to come go to the spool too, to be done after a restart.
    fn settle_at_exit(&mut self, input: &Receiver<Batch>) {
        let until = Instant::now() + FINAL_PARTS_GRACE;
        while let Ok(batch) = input.recv_deadline(until) {
            self.take_in(batch, Instant::now());
        }
        while let Some(batch) = self.fresh.pop_front() {
            self.backlog.push(batch);
        }
        self.spool_rewrites_at_exit();
        let lost = self.backlog.abandon_memory();
        if lost > 0 {
            log::error!(
                "shutdown: {lost} lines were neither delivered to InfluxDB nor spooled ({}); they are lost",
                self.backlog.why_not_spooled()
            );
        }
    }

    /// The final points still to be written again go to the spool, replayed at the next
    /// start; without a spool they are abandoned (their windows were written, only the
    /// protection against a late live update ends), and the log says which.
    fn spool_rewrites_at_exit(&mut self) {
        let (batches, windows) = self.rewrites.take_all();
        if windows.is_empty() {
            return;
        }
        let windows: Vec<String> = windows
            .into_iter()
            .map(crate::time::format_utc_ms)
            .collect();
        let windows = windows.join(", ");
        if !self.backlog.spool_configured() {
            log::warn!(
                "shutdown: the final points of the windows of {windows} are not written again \
                 (a live update of each got no answer and may still land; no SPOOL_DIR to keep \
                 them until the next start)"
            );
            return;
        }
        for batch in batches {
            self.backlog.push(batch);
        }
        log::info!(
            "shutdown: the final points of the windows of {windows} are spooled, to be written \
             again at the next start (a live update of each got no answer and may still land)"
        );
    }

    fn log_summary_at_exit(&self) {
        let rewritten = self.rewrites.lines_rewritten();
        if rewritten > 0 {
            log::info!(
                "writer: {rewritten} lines of final points were written again, after live \
                 updates that got no answer (counted in points_written)"
            );
        }
        let waiting = self.backlog.lines();
        if waiting > 0 {
            log::info!(
                "writer stopped; {waiting} lines wait in the {}",
                self.backlog.summary()
            );
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influx::live::LiveUpdate;
    use crate::influx::policy::{Answer, MAX_BACKOFF, MAX_RETRY_AFTER};
    use crate::influx::testing::{
        arbitrary_answer, arbitrary_lines, batch, fake, joined, lines, no_spool, scripted, status,
        transient_answer,
    };
    use proptest::prelude::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering::Relaxed;

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
            live_updates: LiveUpdates::Off,
        }
    }

    /// A writer over `transport` without a spool, offering live updates to `slot`.
    fn writer<T: Transport>(
        transport: T,
        max_lines: usize,
        stats: &Arc<Stats>,
        slot: LiveSlot,
    ) -> Writer<T> {
        let backlog = Backlog::new(&no_spool(), 1 << 20, stats.clone());
        Writer::new(
            transport,
            backlog,
            &settings(max_lines),
            stats.clone(),
            clock(),
            slot,
        )
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
                Answer::Unanswered("connection refused".into())
            }
        });
        let mut w = writer(t, 100, &stats, LiveSlot::new(stats.clone()));
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
        let due = Instant::now() + MAX_BACKOFF;
        w.step(due);
        assert!(w.retry_at.is_none() && w.outage.is_none());
        w.fresh.push_back(batch(6..7));
        w.step(due); // fresh first
        w.step(due + REPLAY_INTERVAL); // then the replay
        assert_eq!(
            &w.transport.sent[1..],
            &[lines(0..5), lines(6..7), lines(5..6)]
        );
        assert!(w.backlog.is_empty());
        assert_eq!(stats.points_written.load(Relaxed), 7);
    }

    #[test]
    fn at_exit_without_a_spool_every_unsent_line_is_counted_as_lost() {
        let stats = Arc::new(Stats::default());
        let t = fake(|_| Answer::Unanswered("connection refused".into()));
        let mut w = writer(t, 100, &stats, LiveSlot::new(stats.clone()));
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

    fn live(window: u64, lines: &str) -> LiveUpdate {
        LiveUpdate {
            window_start_ms: window,
            parts: vec![lines.to_string()],
        }
    }

    /// A writer with live updates on, over `transport`, without a spool.
    fn live_writer<T: Transport>(transport: T) -> (Writer<T>, LiveSlot, Arc<Stats>) {
        let stats = Arc::new(Stats::default());
        let slot = LiveSlot::new(stats.clone());
        slot.enable();
        let w = writer(transport, 100, &stats, slot.clone());
        (w, slot, stats)
    }

    #[test]
    fn a_live_update_goes_only_once_nothing_final_waits() {
        let (mut w, slot, stats) = live_writer(fake(|_| status(204, "")));
        slot.offer(live(0, "live 1\n"));
        w.fresh.push_back(batch(0..2));
        let now = Instant::now();
        w.step(now);
        w.step(now);
        assert_eq!(w.transport.sent, vec![lines(0..2), "live 1\n".to_string()]);
        assert_eq!(stats.live_points_written.load(Relaxed), 1);
        assert_eq!(stats.points_written.load(Relaxed), 2);
    }

    #[test]
    fn a_live_update_of_a_window_whose_final_was_handed_over_is_never_sent() {
        let (mut w, slot, stats) = live_writer(fake(|_| status(204, "")));
        slot.offer(live(10, "live 10\n"));
        // The aggregator hands window 10's final point over.
        slot.final_handed(10);
        w.fresh.push_back(batch(0..1));
        slot.offer(live(10, "late live 10\n"));
        let now = Instant::now();
        w.step(now);
        w.step(now);
        assert_eq!(w.transport.sent, vec![lines(0..1)]);
        assert_eq!(stats.live_updates_skipped.load(Relaxed), 2);
    }

    #[test]
    fn a_failed_live_update_is_dropped_never_kept_and_holds_the_next_back_a_while() {
        let up = std::rc::Rc::new(std::cell::Cell::new(false));
        let up2 = up.clone();
        let (mut w, slot, stats) = live_writer(fake(move |_| {
            if up2.get() {
                status(204, "")
            } else {
                Answer::NotSent("connection refused".into())
            }
        }));
        let now = Instant::now();
        slot.offer(live(0, "live 1\n"));
        w.step(now);
        assert_eq!(stats.live_updates_skipped.load(Relaxed), 1);
        assert!(w.backlog.is_empty() && w.retry_at.is_none(), "nothing kept");
        up.set(true);
        slot.offer(live(0, "live 2\n"));
        w.step(now);
        assert_eq!(w.transport.sent.len(), 1, "not before the retry time");
        w.step(now + MAX_BACKOFF);
        assert_eq!(w.transport.sent, vec!["live 1\n", "live 2\n"]);
        assert_eq!(stats.live_points_written.load(Relaxed), 1);
    }

    #[test]
    fn a_failing_final_write_drops_the_waiting_live_update() {
        let (mut w, slot, stats) = live_writer(fake(|_| status(503, "")));
        slot.offer(live(0, "live 1\n"));
        w.fresh.push_back(batch(0..2));
        w.step(Instant::now());
        assert_eq!(slot.take(), None);
        assert_eq!(stats.live_updates_skipped.load(Relaxed), 1);
        assert_eq!(w.backlog.lines(), 2, "the final lines are kept");
    }

    /// A final point's part of the window starting at `start_ms`.
    fn final_part(start_ms: u64, lines: &str, last: bool) -> Batch {
        Batch {
            lines: lines.to_string(),
            line_count: count_lines(lines),
            window: Some(crate::model::WindowPart { start_ms, last }),
        }
    }

    #[test]
    fn a_live_update_without_an_answer_gets_its_final_point_written_again_later() {
        let (mut w, slot, stats) = live_writer(fake(|body: &str| {
            if body.starts_with("live") {
                Answer::Unanswered("timeout: global".into())
            } else {
                status(204, "")
            }
        }));
        let t = Duration::from_secs(1);
        w.rewrites = Rewrites::new(t);
        let t0 = Instant::now();
        slot.offer(live(0, "live 0\n"));
        w.step(t0);
        // No other live update of that window is sent.
        slot.offer(live(0, "live 0 again\n"));
        w.step(t0 + MAX_BACKOFF);
        assert_eq!(stats.live_updates_skipped.load(Relaxed), 2);
        w.take_in(final_part(0, "final a\n", false), t0 + MAX_BACKOFF);
        w.take_in(final_part(0, "final b\n", true), t0 + MAX_BACKOFF);
        let mut at = t0 + MAX_BACKOFF;
        while at < t0 + 40 * t {
            w.step(at);
            at += Duration::from_millis(500);
        }
        let finals = w
            .transport
            .sent
            .iter()
            .filter(|b| b.starts_with("final"))
            .count();
        // The final itself (after 2 s and 8 s: the 30 s backoff passed them), then 32 s.
        assert_eq!(finals, 2, "{:?}", w.transport.sent);
        assert_eq!(
            w.transport.sent.last().map(String::as_str),
            Some("final a\nfinal b\n")
        );
        assert!(w.rewrites.is_empty());
    }

    #[test]
    fn a_live_update_that_never_left_puts_nothing_in_doubt() {
        let (mut w, slot, _) = live_writer(fake(|_| Answer::NotSent("connection refused".into())));
        slot.offer(live(0, "live 0\n"));
        w.step(Instant::now());
        assert!(w.rewrites.is_empty());
    }

    #[test]
    fn re_writes_still_due_at_exit_go_to_the_spool() {
        let temp = crate::testing::TempDir::new("writer-rewrites");
        let spool = SpoolConfig {
            dir: Some(temp.0.clone()),
            max_bytes: 1 << 20,
        };
        let stats = Arc::new(Stats::default());
        let slot = LiveSlot::new(stats.clone());
        slot.enable();
        let backlog = Backlog::new(&spool, 1 << 20, stats.clone());
        let t = fake(|body: &str| {
            if body.starts_with("live") {
                Answer::Unanswered("connection reset".into())
            } else {
                status(204, "")
            }
        });
        let mut w = Writer::new(
            t,
            backlog,
            &settings(100),
            stats.clone(),
            clock(),
            slot.clone(),
        );
        slot.offer(live(0, "live 0\n"));
        w.step(Instant::now());
        w.take_in(final_part(0, "final 0\n", true), Instant::now());
        w.step(Instant::now());
        let (_, closed) = crossbeam_channel::bounded::<Batch>(0);
        w.settle_at_exit(&closed);
        assert_eq!(
            w.backlog.front().map(|f| f.0.to_string()),
            Some("final 0\n".into())
        );
        assert_eq!(stats.lines_dropped.load(Relaxed), 0);
    }

    #[test]
    fn an_earlier_runs_partial_point_replayed_without_an_answer_gets_the_complete_one_again() {
        let temp = crate::testing::TempDir::new("writer-replay-doubt");
        let spool = SpoolConfig {
            dir: Some(temp.0.clone()),
            max_bytes: 1 << 20,
        };
        let stats = Arc::new(Stats::default());
        // The earlier run spooled the partial point of the window starting at 60 s.
        Backlog::new(&spool, 1 << 20, stats.clone()).push(Batch {
            lines: "q samples=2i 60\n".into(),
            line_count: 1,
            window: None,
        });
        let mut answers = vec![Answer::Unanswered("timeout: global".into())].into_iter();
        let t = fake(move |_| answers.next().unwrap_or_else(|| status(204, "")));
        let backlog = Backlog::new(&spool, 1 << 20, stats.clone());
        let mut w = Writer::new(
            t,
            backlog,
            &settings(100),
            stats.clone(),
            clock(),
            LiveSlot::new(stats.clone()),
        );
        w.rewrites = Rewrites::new(Duration::from_secs(1));
        assert!(w.behind_old_backlog);
        let t0 = Instant::now();
        w.step(t0);
        w.step(t0 + MAX_BACKOFF);
        assert!(w.backlog.is_empty(), "replayed on the retry");
        // This run closes that window: complete, written, then written again later.
        w.take_in(
            final_part(60_000, "q samples=6i 60\n", true),
            t0 + MAX_BACKOFF,
        );
        let mut at = t0 + MAX_BACKOFF;
        while at < t0 + 40 * Duration::from_secs(1) {
            w.step(at);
            at += Duration::from_millis(500);
        }
        let complete = w
            .transport
            .sent
            .iter()
            .filter(|b| b.contains("samples=6i"))
            .count();
        assert_eq!(
            complete, 2,
            "the final and its re-write 32 s after: {:?}",
            w.transport.sent
        );
        assert_eq!(
            w.transport.sent.last().map(String::as_str),
            Some("q samples=6i 60\n")
        );
    }

    /// InfluxDB answers every body holding `bad` with something unreadable, the rest 204.
    fn garbling(bad: &'static str) -> impl FnMut(&str) -> Answer {
        move |body: &str| {
            if body.contains(bad) {
                Answer::Garbled("http parse fail: invalid header value".into())
            } else {
                status(204, "")
            }
        }
    }

    #[test]
    fn a_body_whose_answer_cannot_be_read_is_split_and_its_line_dropped_after_three_tries() {
        let stats = Arc::new(Stats::default());
        let mut w = writer(
            fake(garbling("f=5i")),
            100,
            &stats,
            LiveSlot::new(stats.clone()),
        );
        w.fresh.push_back(batch(0..16));
        let mut now = Instant::now();
        // Bounded: each step is later than any retry due.
        for _ in 0..10 {
            w.step(now);
            now += MAX_BACKOFF;
        }
        w.fresh.push_back(batch(16..20));
        w.step(now);
        assert!(
            w.backlog.is_empty() && w.retry_at.is_none(),
            "the queue moves"
        );
        assert_eq!(stats.points_written.load(Relaxed), 19);
        assert_eq!(stats.lines_dropped.load(Relaxed), 1);
        // Three tries of the whole body, then halves down to the line: 2 per level.
        assert_eq!(
            w.transport.sent.len(),
            3 + 2 * 4 + 1,
            "{:?}",
            w.transport.sent
        );
        assert_eq!(w.transport.sent.last(), Some(&lines(16..20)));
    }

    #[test]
    fn a_v2_partial_write_is_not_resent() {
        let stats = Arc::new(Stats::default());
        let t = fake(|_| {
            status(
                422,
                r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: points beyond retention policy dropped=2"}"#,
            )
        });
        let mut w = writer(t, 100, &stats, LiveSlot::new(stats.clone()));
        w.fresh.push_back(batch(0..5));
        let now = Instant::now();
        for i in 0..5 {
            w.step(now + MAX_RETRY_AFTER * i);
        }
        assert_eq!(
            w.transport.sent,
            vec![lines(0..5)],
            "one request, never resent"
        );
        assert_eq!(stats.points_written.load(Relaxed), 3);
        assert_eq!(stats.lines_dropped.load(Relaxed), 2);
        assert!(w.backlog.is_empty() && w.retry_at.is_none());
    }

    /// What the aggregator and the clock do in the property below.
    #[derive(Debug, Clone)]
    enum Event {
        /// A poll of the open window: its live update.
        Poll,
        /// The open window closes: its final lines are handed over; the next opens.
        Close(usize),
        /// The writer loop runs once, this much later.
        Step(u64),
    }

    fn arbitrary_event() -> impl Strategy<Value = Event> {
        prop_oneof![
            3 => Just(Event::Poll),
            1 => (1usize..6).prop_map(Event::Close),
            4 => (0u64..3000).prop_map(Event::Step),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Live updates and final windows interleaved with any answers: no live line of a
        /// window is ever sent once its final lines were handed over (so none lands
        /// after them), no live line is kept, and every final line is accounted for once.
        #[test]
        fn live_updates_never_follow_their_final_and_finals_are_all_accounted(
            events in proptest::collection::vec(arbitrary_event(), 1..60),
            answers in proptest::collection::vec(arbitrary_answer(), 0..30),
        ) {
            let (mut w, slot, stats) = live_writer(scripted(answers));
            let mut window = 0u64;
            let mut poll = 0;
            let mut produced = 0u64;
            let mut handed_at = Vec::new(); // (window, sent requests then)
            let mut now = Instant::now();
            for event in events {
                match event {
                    Event::Poll => {
                        poll += 1;
                        slot.offer(live(window, &format!("live,w={window} p={poll}i\n")));
                    }
                    Event::Close(count) => {
                        slot.final_handed(window);
                        handed_at.push((window, w.transport.sent.len()));
                        let lines: String =
                            (0..count).map(|i| format!("final,w={window} i={i}i\n")).collect();
                        w.take_in(Batch {
                            lines,
                            line_count: count,
                            window: Some(crate::model::WindowPart { start_ms: window, last: true }),
                        }, now);
                        produced += count as u64;
                        window += 1;
                    }
                    Event::Step(ms) => {
                        now += Duration::from_millis(ms);
                        if w.retry_at.is_some_and(|at| now < at) {
                            while let Some(batch) = w.fresh.pop_front() {
                                w.keep(batch);
                            }
                        }
                        w.step(now);
                    }
                }
            }
            for (done, sent_then) in handed_at {
                let stale = format!("live,w={done} ");
                prop_assert!(
                    !w.transport.sent[sent_then..].iter().any(|body| body.contains(&stale)),
                    "a live update of window {} was sent after its final", done
                );
            }
            let (_, closed) = crossbeam_channel::bounded::<Batch>(0);
            w.settle_at_exit(&closed);
            prop_assert_eq!(
                stats.points_written.load(Relaxed) + stats.lines_dropped.load(Relaxed),
                produced + w.rewrites.lines_rewritten(),
                "final lines, each once (and once per re-write); live ones never among them"
            );
        }

        /// The defect of issue 20: a live request without an answer that InfluxDB applies
        /// late, after its window's final point. Any events and any failures of InfluxDB
        /// (none refusing a line for its content, which would refuse it every time), each
        /// request applied when sent, or (no answer) up to 31 × HTTP_TIMEOUT later: once
        /// the re-writes are done, the write of every window applied last is a final one.
        #[test]
        fn a_live_update_applied_late_is_always_followed_by_its_final_point(
            events in proptest::collection::vec(arbitrary_event(), 1..60),
            answers in proptest::collection::vec(transient_answer(), 0..30),
            delays in proptest::collection::vec(0u64..31_000, 1..8),
        ) {
            let t = Duration::from_secs(1);
            let clock = std::rc::Rc::new(std::cell::Cell::new(Instant::now()));
            let applied = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
            let (sent_clock, sent_log) = (clock.clone(), applied.clone());
            let mut script = scripted(answers);
            let mut late = 0;
            let transport = fake(move |body: &str| {
                let answer = script.post(body);
                let at = sent_clock.get();
                let applied_at = match &answer {
                    Answer::Status { code: 200..=299, .. } => Some(at),
                    Answer::Status { code: 400 | 422, body: text, .. }
                        if text.contains("partial write") => Some(at),
                    Answer::Unanswered(_) => {
                        late += 1;
                        Some(at + Duration::from_millis(delays[late % delays.len()]))
                    }
                    _ => None,
                };
                if let Some(applied_at) = applied_at {
                    sent_log.borrow_mut().push((applied_at, body.to_string()));
                }
                answer
            });
            let (mut w, slot, _) = live_writer(transport);
            w.rewrites = Rewrites::new(t);
            let (mut window, mut poll) = (0u64, 0);
            let mut now = clock.get();
            let step = |w: &mut Writer<_>, now: Instant| {
                clock.set(now);
                if w.retry_at.is_some_and(|at| now < at) {
                    while let Some(batch) = w.fresh.pop_front() {
                        w.keep(batch);
                    }
                }
                w.step(now);
            };
            for event in events {
                match event {
                    Event::Poll => {
                        poll += 1;
                        slot.offer(live(window, &format!("live,w={window} p={poll}i\n")));
                    }
                    Event::Close(count) => {
                        slot.final_handed(window);
                        let lines: String =
                            (0..count).map(|i| format!("final,w={window} i={i}i\n")).collect();
                        w.take_in(Batch {
                            lines,
                            line_count: count,
                            window: Some(crate::model::WindowPart { start_ms: window, last: true }),
                        }, now);
                        window += 1;
                    }
                    Event::Step(ms) => {
                        now += Duration::from_millis(ms);
                        step(&mut w, now);
                    }
                }
            }
            // Bounded: long enough for every re-write and every retry of final data (a
            // Retry-After of up to 300 s included).
            for _ in 0..800 {
                now += Duration::from_millis(500);
                step(&mut w, now);
            }
            // Per window: the write applied last (when, whether final), and whether any
            // final one was (InfluxDB may have refused them all: then nothing to keep).
            let mut last: BTreeMap<String, (Instant, bool, bool)> = BTreeMap::new();
            for (at, body) in applied.borrow().iter() {
                for line in body.lines() {
                    let (kind, rest) = line.split_once(",w=").unwrap_or(("", ""));
                    let is_final = kind == "final";
                    let w = rest.split(' ').next().unwrap_or("").to_string();
                    let entry = last.entry(w).or_insert((*at, is_final, false));
                    entry.2 |= is_final;
                    if *at >= entry.0 {
                        (entry.0, entry.1) = (*at, is_final);
                    }
                }
            }
            for (w, (_, final_last, any_final)) in &last {
                prop_assert!(
                    !any_final || *final_last,
                    "window {} ends with a live write: {:?}", w, applied.borrow()
                );
            }
        }

        /// Batches of any sizes, some sent alone and some joined in the kept coalescing
        /// buffer (shorter requests after longer ones included): the requests together
        /// are exactly the batches, in order, each line once, nothing left from an
        /// earlier request.
        #[test]
        fn coalesced_requests_carry_exactly_the_batches(
            batches in proptest::collection::vec(arbitrary_lines(), 1..12),
            max_lines in 1usize..40,
            rounds in 1usize..4,
        ) {
            let stats = Arc::new(Stats::default());
            let mut w = writer(fake(|_| status(204, "")), max_lines, &stats, LiveSlot::new(stats.clone()));
            let (mut expected, mut produced) = (String::new(), 0);
            for (i, lines) in batches.iter().enumerate() {
                let batch = joined(lines);
                expected.push_str(&batch.lines);
                produced += batch.line_count as u64;
                w.fresh.push_back(batch);
                if i % rounds == 0 {
                    while !w.fresh.is_empty() {
                        w.step(Instant::now());
                    }
                }
            }
            while !w.fresh.is_empty() {
                w.step(Instant::now());
            }
            prop_assert_eq!(w.transport.sent.concat(), expected);
            prop_assert_eq!(stats.points_written.load(Relaxed), produced);
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
            let mut w = Writer::new(scripted(answers), backlog, &settings(3), stats.clone(), clock(), LiveSlot::new(stats.clone()));
            let mut produced = 0u64;
            // Time passed in: each step comes later than any retry or replay due.
            let mut now = Instant::now();
            for lines in &batches {
                produced += lines.len() as u64;
                w.fresh.push_back(joined(lines));
                for _ in 0..3 {
                    now += MAX_RETRY_AFTER + REPLAY_INTERVAL;
                    if w.retry_at.is_some() {
                        // Failing: fresh data is kept, as the run loop does.
                        while let Some(batch) = w.fresh.pop_front() {
                            w.keep(batch);
                        }
                    }
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
}
