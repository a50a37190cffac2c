//! The interval-KPI thread: re-queries the conversation aggregates of the selected queues
//! every `KPI_POLL` and hands `genesys_queue_interval` points to the writer.
//!
//! It runs beside the observation poller on its own schedule, so a slow aggregate query
//! never delays an observation tick. Buckets are fixed UTC multiples of `KPI_BUCKET`; each
//! poll asks for the open bucket and those that ended less than `KPI_LOOKBACK` ago, and
//! InfluxDB overwrites the same series and timestamp, so late data lands. Where the
//! re-querying has to resume is remembered (`kpi-state.json` in the state directory, else
//! in memory), so after a Genesys outage or a service stop longer than the look-back the
//! next successful poll backfills the missed buckets in ≤ 1-day requests (at most 7 days).
//! A 403 disables KPIs for the run with one clear log line; observations keep flowing.
//!
//! This file is the thread (`KpiPoller` and its loop); which buckets a poll asks for is
//! [`plan`](mod@plan), the resume point on disk is [`state`], the written line is `lines`.
//!
//! # Reading the KPIs (for the README)
//!
//! Every field is a count or a sum, never an average, so any range of buckets, queues or
//! media types combines correctly: add up first, divide last. Never average the per-bucket
//! ratios.
//!
//! | KPI | formula |
//! |---|---|
//! | service level % | 100 × Σ`service_level_numerator` / Σ`service_level_denominator` |
//! | ASA (average speed of answer, s) | Σ`answer_seconds_sum` / Σ`answered` |
//! | AHT (average handle time, s) | Σ`handle_seconds_sum` / Σ`handled` |
//! | average wait (s) | Σ`wait_seconds_sum` / Σ`waited` |
//! | abandon rate % | 100 × Σ`abandoned` / Σ`offered` |
//! | answer rate % | 100 × Σ`answered` / Σ`offered` |
//!
//! Per-bucket answer/abandon rates can exceed 100 % (an interaction offered at 14:14 is
//! answered in the 14:15 bucket); compute them over an hour or a day.
//! `service_level_target` is the queue's target (0.8 = 80 %), for a threshold line.
//!
//! InfluxQL (InfluxDB 1.x; checked against influxd 1.6: a quotient of two aggregates in
//! one `SELECT` is valid and integer sums divide as floats), e.g. for Grafana:
//!
//! ```text
//! SELECT sum("service_level_numerator") / sum("service_level_denominator") * 100 AS "service level %"
//!   FROM "genesys_queue_interval" WHERE $timeFilter AND "queue_name" =~ /^$queue$/
//!   GROUP BY time(1h), "queue_name", "media_type"
//! SELECT sum("answer_seconds_sum") / sum("answered") AS "ASA" FROM "genesys_queue_interval" WHERE $timeFilter GROUP BY "queue_name"
//! SELECT sum("handle_seconds_sum") / sum("handled") AS "AHT" FROM "genesys_queue_interval" WHERE $timeFilter GROUP BY "queue_name"
//! SELECT sum("abandoned") / sum("offered") * 100 AS "abandon %" FROM "genesys_queue_interval" WHERE $timeFilter GROUP BY "queue_name"
//! ```
//!
//! `GROUP BY time(…)` should be a multiple of `KPI_BUCKET` (a bucket's point sits at its
//! start). A range with no answered interaction yields no ASA value rather than a 0.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, RecvTimeoutError, Sender};

use crate::aggregate::{PART_BYTES, PART_CAPACITY};
use crate::config::KpiConfig;
use crate::duration;
use crate::genesys::budget::{self, requests_per_minute};
use crate::genesys::client::{GenesysClient, AGGREGATES_PERMISSION};
use crate::genesys::conversation_aggregates::{self, granularity, DAY_MS, MAX_QUEUES_PER_REQUEST};
use crate::genesys::error::ApiError;
use crate::genesys::lenient;
use crate::model::Batch;
use crate::model::{Queue, SharedQueues};
use crate::stats::Stats;
use crate::time::{self, now_ms};
use crate::wallboard::Wallboard;

mod lines;
pub mod plan;
pub mod state;

use plan::{plan, Timing, MAX_BACKFILL_MS};
use state::{load_state, StateSaver, STATE_FILE};

/// Share of `KPI_POLL` one poll may take before its remaining requests are left for the
/// next poll (which re-queries the same buckets): polls never overlap.
const POLL_DEADLINE_SHARE: f64 = 0.9;
/// Below this Genesys may reject the granularity (docs/genesys-api.md#granularity,
/// unverified).
const SMALLEST_VERIFIED_BUCKET: Duration = Duration::from_secs(15 * 60);

/// What the KPI thread needs from the configuration.
#[derive(Debug, Clone)]
pub struct KpiSettings {
    pub config: KpiConfig,
    /// `INFLUXDB_TAGS`, sorted.
    pub static_tags: Vec<(String, String)>,
    /// Where `kpi-state.json` lives (`SPOOL_DIR`); `None` keeps the resume point in memory.
    pub state_dir: Option<PathBuf>,
    /// The OAuth client's request budget: a KPI poll that would take more than its share
    /// is spread out (`budget::kpi_poll`).
    pub requests_per_minute: u32,
    /// The terminal table (`demo`), shown each bucket as it is parsed.
    pub view: Option<Arc<Wallboard>>,
}

// ---- one poll --------------------------------------------------------------------------

/// How one poll ended (its points went to the sink as they came).
#[derive(Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// When every request succeeded or was refused with 400, the new resume point.
    Polled { resume_from_ms: Option<u64> },
    /// 403: the role lacks the permission; KPIs stop for this run.
    Forbidden,
}

/// Queries, parses and encodes; owns the in-memory resume point.
struct KpiPoller {
    client: Arc<GenesysClient>,
    /// `poll_ms` is the period in use: `KPI_POLL`, or wider for many queues.
    timing: Timing,
    configured_poll: Duration,
    budget_per_minute: u32,
    bucket: Duration,
    static_tags: Vec<(String, String)>,
    stats: Arc<Stats>,
    resume_from_ms: Option<u64>,
    /// Chunks and period last logged, so the request plan is logged when it changes.
    logged_plan: Option<(usize, u64)>,
    view: Option<Arc<Wallboard>>,
}

impl KpiPoller {
    /// One poll at `now_ms` over `queues`, giving up on requests past `deadline`. Points
    /// go to `sink` in batches of about [`PART_BYTES`] as the answers come in, so a
    /// large org's KPIs never sit in memory all at once.
    fn poll(
        &mut self,
        queues: &[Arc<Queue>],
        now_ms: u64,
        deadline: Instant,
        sink: &mut dyn FnMut(Batch),
    ) -> PollOutcome {
        let plan = plan(now_ms, self.resume_from_ms, self.timing);
        if let Some(before) = plan.gave_up_before_ms {
            log::warn!(
                "KPI buckets before {} are older than {} days and are not backfilled",
                time::format_utc_ms(before),
                MAX_BACKFILL_MS / DAY_MS
            );
        }
        if let Some(backfill) = plan.backfill {
            log::info!("KPI backfill of missed buckets: {}", backfill.to_iso());
        }
        // Batches of one part's size, each in a buffer given that room once, when its first
        // line comes (a poll without lines allocates nothing): a backfill's answers add
        // many lines per chunk, and a buffer doubling past it held up to twice its text
        // (1.8 MB of KPI text at once at 1,000 queues, measured).
        let mut lines = String::new();
        let mut line_count = 0;
        let mut complete = true;
        'chunks: for chunk in queues.chunks(MAX_QUEUES_PER_REQUEST) {
            let names: HashMap<&str, &str> = chunk
                .iter()
                .map(|q| (q.id.as_str(), q.name.as_str()))
                .collect();
            for piece in &plan.pieces {
                match conversation_aggregates::query(
                    &self.client,
                    chunk,
                    *piece,
                    self.bucket,
                    deadline,
                ) {
                    Ok(parsed) => {
                        if parsed.unreadable_intervals > 0 {
                            lenient::note_once(
                                "unreadable KPI interval",
                                format_args!(
                                    "{} KPI buckets of {} with an unreadable interval; they are skipped",
                                    parsed.unreadable_intervals,
                                    piece.to_iso()
                                ),
                            );
                        }
                        for bucket in &parsed.buckets {
                            if let Some(name) = names.get(bucket.queue_id.as_str()) {
                                if let Some(view) = &self.view {
                                    view.observe_kpi(bucket);
                                }
                                if lines.capacity() == 0 {
                                    lines.reserve_exact(PART_CAPACITY);
                                }
                                lines::encode(bucket, &mut lines, name, &self.static_tags);
                                line_count += 1;
                            }
                            if lines.len() >= PART_BYTES {
                                sink(Batch {
                                    lines: std::mem::take(&mut lines),
                                    line_count,
                                    window: None,
                                });
                                line_count = 0;
                            }
                        }
                    }
                    Err(ApiError::Forbidden {
                        message,
                        context_id,
                        ..
                    }) => {
                        log::error!(
                            "Genesys Cloud refused the conversation aggregates query (HTTP 403: \
                             {message}{}); interval KPIs (genesys_queue_interval) are disabled \
                             until restart. Give the OAuth client's role the permission {AGGREGATES_PERMISSION} \
                             (Analytics > Conversation Aggregate > View), or set KPIS=off. \
                             Queue observations are not affected",
                            context_id.map(|c| format!(", contextId {c}")).unwrap_or_default()
                        );
                        return PollOutcome::Forbidden;
                    }
                    Err(error @ ApiError::BadRequest { .. }) => {
                        // Re-asking the same question would fail the same way: move on.
                        Stats::incr(&self.stats.poll_errors);
                        log::error!("KPI query {} skipped: {error}", piece.to_iso());
                    }
                    Err(error) => {
                        Stats::incr(&self.stats.poll_errors);
                        log::warn!(
                            "KPI query failed, the same buckets are re-queried next poll: {error}"
                        );
                        complete = false;
                        break 'chunks;
                    }
                }
            }
        }
        let resume_from_ms = complete.then_some(plan.resume_from_ms);
        if resume_from_ms.is_some() {
            self.resume_from_ms = resume_from_ms;
        }
        if line_count > 0 {
            sink(Batch {
                lines,
                line_count,
                window: None,
            });
        }
        PollOutcome::Polled { resume_from_ms }
    }

    /// Sets the poll period for `queue_count` queues (widened when the configured one
    /// would take more than the KPI share of the request budget).
    fn adapt_to(&mut self, queue_count: usize) {
        let poll = budget::kpi_poll(queue_count, self.configured_poll, self.budget_per_minute);
        self.timing.poll_ms = u64::try_from(poll.as_millis()).unwrap_or(u64::MAX).max(1);
        if poll > self.configured_poll
            && self
                .logged_plan
                .is_none_or(|(_, p)| p != self.timing.poll_ms)
        {
            log::warn!(
                "KPIs: {queue_count} queues every KPI_POLL={} would take {} of the {}/min request budget; \
                 polling them every {} instead so the real-time observations keep their requests",
                duration::format(self.configured_poll),
                requests_per_minute(queue_count, self.configured_poll),
                self.budget_per_minute,
                duration::format(poll)
            );
        }
    }

    fn log_request_plan(&mut self, queue_count: usize) {
        let chunks = queue_count.div_ceil(MAX_QUEUES_PER_REQUEST);
        if self.logged_plan == Some((chunks, self.timing.poll_ms)) {
            return;
        }
        self.logged_plan = Some((chunks, self.timing.poll_ms));
        let poll = Duration::from_millis(self.timing.poll_ms);
        log::info!(
            "KPIs: {queue_count} queues in {chunks} aggregate requests every {} ({} requests/minute), \
             buckets of {} ({}), re-queried for {} after they end",
            duration::format(poll),
            requests_per_minute(queue_count, poll),
            duration::format(self.bucket),
            granularity(self.bucket),
            duration::format(Duration::from_millis(self.timing.lookback_ms)),
        );
    }
}

// ---- the thread ------------------------------------------------------------------------

/// KPI settings that work but deserve a warning at start-up: the variables they come
/// from, and the message. (`demo` leaves out those that only its own defaults cause.)
pub fn setting_warnings(config: &KpiConfig) -> Vec<(&'static [&'static str], String)> {
    let mut warnings = Vec::new();
    if config.bucket < SMALLEST_VERIFIED_BUCKET {
        warnings.push((
            &["KPI_BUCKET"][..],
            format!(
                "KPI_BUCKET {} is below 15m; Genesys Cloud may reject the granularity {} (HTTP 400)",
                duration::format(config.bucket),
                granularity(config.bucket)
            ),
        ));
    }
    if config.lookback < config.poll {
        warnings.push((
            &["KPI_LOOKBACK", "KPI_POLL"][..],
            format!(
                "KPI_LOOKBACK {} is shorter than KPI_POLL {}: the last minutes of a bucket may \
                 never be re-queried; set KPI_LOOKBACK to at least KPI_POLL + 2m",
                duration::format(config.lookback),
                duration::format(config.poll)
            ),
        ));
    }
    warnings
}

/// Runs the KPI polls until `stop` disconnects (or a 403 disables them), sending the
/// points of each poll to the writer as one [`Batch`].
///
/// The HTTP work happens on a helper thread, so this one can return, and drop its
/// `batches` sender, the moment `stop` fires, even while a slow query is in flight: the
/// writer's final flush never waits for Genesys.
pub fn run(
    settings: KpiSettings,
    client: Arc<GenesysClient>,
    queues: SharedQueues,
    batches: Sender<Batch>,
    stop: Receiver<()>,
    stats: Arc<Stats>,
) {
    let state_file = settings.state_dir.as_ref().map(|dir| dir.join(STATE_FILE));
    let resume_from_ms = state_file
        .as_deref()
        .and_then(|path| match load_state(path) {
            Ok(resume) => resume,
            Err(e) => {
                log::warn!("{e}");
                None
            }
        });
    if let Some(resume) = resume_from_ms {
        log::info!(
            "KPIs resume from {} ({STATE_FILE})",
            time::format_utc_ms(resume)
        );
    }
    let poller = KpiPoller {
        client,
        timing: Timing::of(&settings.config),
        configured_poll: settings.config.poll,
        budget_per_minute: settings.requests_per_minute,
        bucket: settings.config.bucket,
        static_tags: settings.static_tags,
        stats,
        resume_from_ms,
        logged_plan: None,
        view: settings.view,
    };
    let mut state_saver = state_file.map(StateSaver::new);
    let (done_tx, done_rx) = bounded(1);
    let poll_stop = stop.clone();
    let spawned = thread::Builder::new()
        .name("kpi-poll".into())
        .spawn(move || poll_loop(poller, queues, done_tx, poll_stop));
    if let Err(e) = spawned {
        log::error!("cannot start the KPI thread ({e}); interval KPIs are not written");
        return;
    }
    loop {
        select! {
            recv(stop) -> _ => return,
            recv(done_rx) -> report => match report {
                Ok(Report::Points(batch)) => {
                    if !hand_to_writer(batch, &batches, &stop) {
                        return;
                    }
                }
                // Every point of the poll is with the writer now.
                Ok(Report::Polled(Some(resume))) => {
                    if let Some((level, message)) =
                        state_saver.as_mut().and_then(|saver| saver.save(resume))
                    {
                        log::log!(level, "{message}");
                    }
                }
                Ok(Report::Polled(None)) => {}
                Err(_) => return,
            },
        }
    }
}

/// Hands a batch to the writer unless `stop` fires first; false when we should end.
fn hand_to_writer(batch: Batch, batches: &Sender<Batch>, stop: &Receiver<()>) -> bool {
    select! {
        send(batches, batch) -> sent => {
            if sent.is_err() {
                log::warn!("the writer has stopped; KPI points are not written");
            }
            sent.is_ok()
        }
        recv(stop) -> _ => false,
    }
}

/// What the polling helper thread tells the KPI thread, in order.
enum Report {
    /// Points of the poll under way.
    Points(Batch),
    /// The poll is over; its new resume point, if it completed.
    Polled(Option<u64>),
}

/// The helper thread: waits for each tick (or `stop`), polls, reports.
fn poll_loop(
    mut poller: KpiPoller,
    queues: SharedQueues,
    done: Sender<Report>,
    stop: Receiver<()>,
) {
    loop {
        poller.adapt_to(queues.snapshot().len());
        let poll = Duration::from_millis(poller.timing.poll_ms);
        let now = now_ms();
        let wait = Duration::from_millis(poller.timing.next_fire_ms(now).saturating_sub(now));
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let selected = queues.snapshot();
        if selected.is_empty() {
            log::debug!("KPI poll skipped: no queue selected yet");
            continue;
        }
        poller.log_request_plan(selected.len());
        let deadline = Instant::now() + poll.mul_f64(POLL_DEADLINE_SHARE);
        let mut sink = |batch| {
            let _ = done.send(Report::Points(batch));
        };
        match poller.poll(&selected, now_ms(), deadline, &mut sink) {
            PollOutcome::Forbidden => return,
            PollOutcome::Polled { resume_from_ms } => {
                if done.send(Report::Polled(resume_from_ms)).is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesys::client::tests::recording_client;
    use crate::genesys::conversation_aggregates::KpiBucket;
    use crate::genesys::conversation_aggregates::{bucket_floor, Interval};
    use crate::sim::{Endpoint, Fault, KpiValues, RequestRecord, Sim, SimOptions};

    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;

    fn sim() -> Sim {
        Sim::start(SimOptions {
            queue_count: 3,
            media_types: vec!["voice".into(), "chat".into()],
            kpi_settle: Duration::from_secs(120),
            value_period: Duration::from_secs(1),
            ..SimOptions::default()
        })
        .unwrap()
    }

    fn poller_for(sim: &Sim, timing: Timing) -> KpiPoller {
        let (client, _, stats) = recording_client(&crate::testing::sim_genesys(sim));
        KpiPoller {
            client: Arc::new(client),
            timing,
            bucket: Duration::from_millis(timing.bucket_ms),
            static_tags: vec![("env".into(), "test".into())],
            stats,
            resume_from_ms: None,
            configured_poll: Duration::from_millis(timing.poll_ms),
            budget_per_minute: 300,
            logged_plan: None,
            view: None,
        }
    }

    fn minutes() -> Timing {
        Timing {
            bucket_ms: MINUTE,
            poll_ms: MINUTE,
            lookback_ms: 5 * MINUTE,
        }
    }

    fn sim_queues(sim: &Sim) -> Vec<Arc<Queue>> {
        sim.queues()
            .into_iter()
            .map(|(id, name)| Arc::new(Queue { id, name }))
            .collect()
    }

    /// The point the Sim's numbers should produce, or `None` when it answers nothing.
    fn expected_line(queue: &Queue, media: &str, start_ms: u64, v: &KpiValues) -> Option<String> {
        let any = v.offered
            + v.answered.count
            + v.abandoned.count
            + v.short_abandoned.count
            + v.flowed_out.count
            + v.waited.count
            + v.handled.count
            + v.over_sla
            + v.transferred
            + v.sl_denominator;
        if any == 0 {
            return None;
        }
        let secs = |ms: u64| ms as f64 / 1000.0;
        let bucket = KpiBucket {
            queue_id: queue.id.clone(),
            media_type: media.into(),
            bucket_start_ms: start_ms,
            offered: v.offered,
            answered: v.answered.count,
            answer_seconds_sum: secs(v.answered.sum),
            abandoned: v.abandoned.count,
            abandon_seconds_sum: secs(v.abandoned.sum),
            short_abandoned: v.short_abandoned.count,
            flowed_out: v.flowed_out.count,
            handled: v.handled.count,
            handle_seconds_sum: secs(v.handled.sum),
            waited: v.waited.count,
            wait_seconds_sum: secs(v.waited.sum),
            transferred: v.transferred,
            over_sla: v.over_sla,
            service_level_numerator: v.sl_numerator,
            service_level_denominator: v.sl_denominator,
            service_level_target: (v.sl_denominator > 0 && v.sl_target.is_finite())
                .then_some(v.sl_target),
        };
        let mut line = String::new();
        lines::encode(
            &bucket,
            &mut line,
            &queue.name,
            &[("env".into(), "test".into())],
        );
        Some(line)
    }

    fn sorted_lines(text: &str) -> Vec<String> {
        let mut lines: Vec<String> = text.lines().map(|l| format!("{l}\n")).collect();
        lines.sort();
        lines
    }

    /// One poll with its points joined into one batch (`None`: no point).
    fn poll_all(
        poller: &mut KpiPoller,
        queues: &[Arc<Queue>],
        now: u64,
        deadline: Instant,
    ) -> (PollOutcome, Option<Batch>) {
        let mut joined: Option<Batch> = None;
        let outcome = poller.poll(queues, now, deadline, &mut |batch| match &mut joined {
            Some(all) => {
                all.lines.push_str(&batch.lines);
                all.line_count += batch.line_count;
            }
            None => joined = Some(batch),
        });
        (outcome, joined)
    }

    #[test]
    fn one_poll_against_the_sim_writes_what_genesys_counted_including_late_data() {
        let sim = sim();
        let queues = sim_queues(&sim);
        let mut poller = poller_for(&sim, minutes());
        let now = now_ms();
        let (outcome, batch) = poll_all(
            &mut poller,
            &queues,
            now,
            Instant::now() + Duration::from_secs(20),
        );
        let (PollOutcome::Polled { resume_from_ms }, Some(batch)) = (outcome, batch) else {
            panic!("no points");
        };
        let interval = Interval::recent(now, MINUTE, 5 * MINUTE);
        // The oldest bucket asked for is final now; the next poll starts one later.
        assert_eq!(resume_from_ms, Some(interval.start_ms + MINUTE));
        let requests: Vec<_> = sim
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == Some(Endpoint::Aggregates))
            .collect();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].status, 200);
        let answered_at = requests[0].time_ms;
        let mut expected = Vec::new();
        for queue in &queues {
            for media in ["voice", "chat"] {
                for start in (interval.start_ms..interval.end_ms).step_by(MINUTE as usize) {
                    let v = sim.kpis_at(&queue.id, media, start, MINUTE, answered_at);
                    expected.extend(expected_line(queue, media, start, &v));
                }
            }
        }
        assert!(!expected.is_empty());
        expected.sort();
        assert_eq!(sorted_lines(&batch.lines), expected);
        assert_eq!(batch.line_count, expected.len());
    }

    #[test]
    fn settled_buckets_match_the_final_numbers_and_backfill_asks_day_pieces() {
        let sim = sim();
        let queues = sim_queues(&sim);
        let timing = Timing {
            bucket_ms: HOUR,
            poll_ms: MINUTE,
            lookback_ms: 10 * MINUTE,
        };
        let mut poller = poller_for(&sim, timing);
        // Pretend the service last ran two days and three hours ago.
        let now = now_ms() - 3 * HOUR;
        poller.resume_from_ms = Some(bucket_floor(now - 2 * DAY_MS, HOUR));
        let (outcome, batch) = poll_all(
            &mut poller,
            &queues,
            now,
            Instant::now() + Duration::from_secs(20),
        );
        let (
            PollOutcome::Polled {
                resume_from_ms: Some(resume),
            },
            Some(batch),
        ) = (outcome, batch)
        else {
            panic!("unexpected outcome");
        };
        let first = bucket_floor(now - 2 * DAY_MS, HOUR);
        assert_eq!(resume, first + DAY_MS);
        assert_eq!(poller.resume_from_ms, Some(first + DAY_MS));
        let asked: Vec<RequestRecord> = sim
            .requests()
            .into_iter()
            .filter(|r| r.endpoint == Some(Endpoint::Aggregates))
            .collect();
        assert_eq!(asked.len(), 2, "one backfill day and the recent buckets");
        assert!(asked
            .iter()
            .all(|r| r.status == 200 && r.queue_ids.len() == 3));
        let recent = Interval::recent(now, HOUR, 10 * MINUTE);
        let mut expected = Vec::new();
        for queue in &queues {
            for media in ["voice", "chat"] {
                let starts = (first..first + DAY_MS).chain(recent.start_ms..recent.end_ms);
                for start in starts.step_by(HOUR as usize) {
                    let v = sim.expected_kpis(&queue.id, media, start, HOUR);
                    expected.extend(expected_line(queue, media, start, &v));
                }
            }
        }
        expected.sort();
        assert_eq!(sorted_lines(&batch.lines), expected);
    }

    #[test]
    fn forbidden_disables_and_failures_keep_the_resume_point() {
        let sim = sim();
        let queues = sim_queues(&sim);
        let mut poller = poller_for(&sim, minutes());
        let soon = || Instant::now() + Duration::from_secs(20);
        let now = now_ms();
        // A 400 is skipped: nothing to retry, the resume point moves on.
        sim.inject(Endpoint::Aggregates, Fault::Status(400), 1);
        let (outcome, batch) = poll_all(&mut poller, &queues, now, soon());
        assert!(batch.is_none());
        assert!(
            matches!(
                outcome,
                PollOutcome::Polled {
                    resume_from_ms: Some(_)
                }
            ),
            "{outcome:?}"
        );
        // A 5xx that outlasts the retries: the same buckets are asked again next time.
        poller.resume_from_ms = Some(now - HOUR);
        sim.inject(Endpoint::Aggregates, Fault::Status(503), 100);
        let (outcome, _) = poll_all(
            &mut poller,
            &queues,
            now,
            Instant::now() + Duration::from_millis(300),
        );
        assert_eq!(
            outcome,
            PollOutcome::Polled {
                resume_from_ms: None
            }
        );
        assert_eq!(poller.resume_from_ms, Some(now - HOUR));
        sim.clear_faults();
        sim.forbid(Endpoint::Aggregates);
        assert_eq!(
            poll_all(&mut poller, &queues, now, soon()).0,
            PollOutcome::Forbidden
        );
        assert!(
            poller
                .stats
                .poll_errors
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 2
        );
    }

    #[test]
    fn the_thread_ends_as_soon_as_stop_disconnects() {
        let sim = sim();
        let poller = poller_for(&sim, minutes());
        let settings = KpiSettings {
            config: KpiConfig {
                bucket: Duration::from_secs(60),
                poll: Duration::from_secs(60),
                lookback: Duration::from_secs(300),
            },
            static_tags: Vec::new(),
            state_dir: None,
            requests_per_minute: 300,
            view: None,
        };
        let (batch_tx, batch_rx) = bounded(1);
        let (stop_tx, stop_rx) = bounded::<()>(0);
        let client = poller.client.clone();
        let handle = thread::spawn(move || {
            run(
                settings,
                client,
                SharedQueues::default(),
                batch_tx,
                stop_rx,
                Arc::new(Stats::default()),
            )
        });
        drop(stop_tx);
        // The writer's channel closes once the thread has returned.
        assert!(batch_rx.recv_timeout(Duration::from_secs(5)).is_err());
        handle.join().unwrap();
    }
}
