//! The aggregator thread: poll events in, windows out. It folds each event into the
//! [`Aggregator`], hands every finished window (with the self-metrics point) to the
//! writer part by part, saves the open window at shutdown and continues it after a
//! restart inside the same window. With live updates on, it also leaves the open
//! window so far for the writer after each poll, and after each early re-poll the
//! queues re-polled early since (not the whole window).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::aggregate::PartBuffers;
use crate::aggregate::{Aggregator, ClosedWindow, OpenWindow};
use crate::config::Config;
use crate::duration;
use crate::influx::live::{LiveSlot, LiveUpdate};
use crate::model::Batch;
use crate::model::{PollEvent, QueueObservation};
use crate::notify::Notifier;
use crate::state_file;
use crate::stats::{Stats, StatsSnapshot};
use crate::time::{millis, now_ms};
use crate::wallboard::Wallboard;

/// How often the aggregator logs what was written meanwhile (info level).
pub const SUMMARY_PERIOD: Duration = Duration::from_secs(300);
/// Where the open window is saved at shutdown, inside `SPOOL_DIR`.
const OPEN_WINDOW_FILE: &str = "open-window.json";
/// The most `open-window.json` is read of: it takes about 2 KB a queue (1.2 MB measured
/// for 600 queues), so this allows some 30,000.
const OPEN_WINDOW_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// The aggregator thread: folds poll events into windows and hands finished windows,
/// with the self-metrics point, to the writer.
pub(crate) struct AggregatorJob {
    aggregator: Aggregator,
    batches: Sender<Batch>,
    live: LiveSlot,
    stats: Arc<Stats>,
    instance: String,
    static_tags: Vec<(String, String)>,
    state_file: Option<PathBuf>,
    notifier: Arc<Notifier>,
    watchdog_every: Option<Duration>,
    summary: Summary,
    view: Option<Arc<Wallboard>>,
    /// The queues re-polled early since the last live update of the whole window, and
    /// that window's start: each live update after an early re-poll carries them all.
    early_live: (u64, BTreeSet<String>),
}

/// What the windows' self-metrics added up to since the last periodic summary line.
struct Summary {
    since: Instant,
    windows: u64,
    points: u64,
    points_written: u64,
    poll_errors: u64,
    write_errors: u64,
    lines_dropped: u64,
}

impl Summary {
    fn new(now: Instant) -> Summary {
        Summary {
            since: now,
            windows: 0,
            points: 0,
            points_written: 0,
            poll_errors: 0,
            write_errors: 0,
            lines_dropped: 0,
        }
    }

    /// Adds one window; returns the summary line when `SUMMARY_PERIOD` has passed.
    fn add(&mut self, points: usize, snapshot: &StatsSnapshot, now: Instant) -> Option<String> {
        self.windows += 1;
        self.points += points as u64;
        self.points_written += snapshot.points_written;
        self.poll_errors += snapshot.poll_errors;
        self.write_errors += snapshot.write_errors;
        self.lines_dropped += snapshot.lines_dropped;
        let elapsed = now.duration_since(self.since);
        if elapsed < SUMMARY_PERIOD {
            return None;
        }
        let line = format!(
            "last {}: {} windows closed ({} points), {} points written, {} poll errors, \
             {} write errors, {} lines dropped, {} bytes spooled now",
            duration::format(Duration::from_secs(elapsed.as_secs())),
            self.windows,
            self.points,
            self.points_written,
            self.poll_errors,
            self.write_errors,
            self.lines_dropped,
            snapshot.spool_bytes,
        );
        *self = Summary::new(now);
        Some(line)
    }
}

impl AggregatorJob {
    pub(crate) fn new(
        config: &Config,
        poll_interval: Duration,
        batches: Sender<Batch>,
        live: LiveSlot,
        stats: Arc<Stats>,
        notifier: Arc<Notifier>,
        view: Option<Arc<Wallboard>>,
    ) -> AggregatorJob {
        AggregatorJob {
            aggregator: Aggregator::new(
                millis(config.window),
                millis(poll_interval),
                config.static_tags.clone(),
            ),
            batches,
            live,
            stats,
            instance: config.instance.clone(),
            static_tags: config.static_tags.clone(),
            state_file: config
                .spool
                .dir
                .as_deref()
                .map(|dir| dir.join(OPEN_WINDOW_FILE)),
            watchdog_every: notifier.watchdog_interval().map(|d| d / 2),
            notifier,
            summary: Summary::new(Instant::now()),
            view,
            early_live: (0, BTreeSet::new()),
        }
    }

    /// Encodes windows into the buffers the writer hands back.
    pub(crate) fn with_part_buffers(mut self, part_buffers: Arc<PartBuffers>) -> Self {
        self.aggregator = self.aggregator.with_part_buffers(part_buffers);
        self
    }

    pub(crate) fn run(mut self, events: Receiver<PollEvent>, stop: Receiver<()>) {
        self.resume_saved_window();
        let heartbeat = self.watchdog_every.unwrap_or(Duration::from_secs(3600));
        loop {
            select! {
                recv(events) -> event => match event {
                    Ok(event) => self.handle(&event),
                    Err(_) => break,
                },
                recv(stop) -> _ => break,
                default(heartbeat) => log::debug!("no poll event for {}", duration::format(heartbeat)),
            }
        }
        self.save_open_window();
        if let Some(window) = self.aggregator.close() {
            log::info!("closing the open window early with the samples it has");
            self.send(window);
        }
    }

    /// One poll event: folded in, the windows it closed sent, the live update it allows
    /// left for the writer.
    fn handle(&mut self, event: &PollEvent) {
        self.notifier.watchdog();
        if let Some(view) = &self.view {
            view.observe(event);
        }
        for window in self.aggregator.handle(event) {
            self.send(window);
        }
        match event {
            PollEvent::TickDone { tick_ms } => self.send_live(*tick_ms),
            PollEvent::EarlyObservations { observations, .. } => {
                self.send_early_live(observations);
            }
            PollEvent::Observations { .. } => {}
        }
    }

    /// Hands the window to the writer part by part (the bounded channel paces the
    /// encoding to the writer), the self-metrics point at the end of the last part.
    fn send(&mut self, window: ClosedWindow) {
        self.live.final_handed(window.start_ms);
        let timestamp_s = (window.start_ms / 1000) as i64;
        let snapshot = self.stats.take_window();
        let mut line_count = 0;
        let mut parts = self.aggregator.encode(&window).peekable();
        while let Some(mut part) = parts.next() {
            let mut points = part.points;
            if parts.peek().is_none() {
                snapshot.encode(
                    &mut part.lines,
                    &self.instance,
                    &self.static_tags,
                    timestamp_s,
                );
                points += 1;
            }
            line_count += points;
            if self
                .batches
                .send(Batch {
                    lines: part.lines,
                    line_count: points,
                })
                .is_err()
            {
                log::error!("the writer has stopped; window {timestamp_s} is lost");
                return;
            }
        }
        if let Some(view) = &self.view {
            view.status(&snapshot, line_count as u64);
        }
        if let Some(summary) = self.summary.add(line_count, &snapshot, Instant::now()) {
            log::info!("{summary}");
        }
    }

    /// After the poll of `tick_ms`, when it did not close its window: the window so far,
    /// as its final point would be now, for the writer to send if it can.
    fn send_live(&mut self, tick_ms: u64) {
        if !self.live.wanted() {
            return;
        }
        if let Some((window_start_ms, parts)) = self.aggregator.encode_open(tick_ms) {
            self.live.offer(LiveUpdate {
                window_start_ms,
                parts: parts.map(|part| part.lines).collect(),
            });
            if self.early_live.0 == window_start_ms {
                self.early_live.1.clear();
            }
        }
    }

    /// After an early re-poll: the queues re-polled early since the last update of the
    /// whole window, as their final points would be now.
    fn send_early_live(&mut self, observations: &[QueueObservation]) {
        if !self.live.wanted() {
            return;
        }
        let Some(window_start_ms) = self.aggregator.open_window().map(|w| w.start_ms) else {
            return;
        };
        let (start, queues) = &mut self.early_live;
        if *start != window_start_ms {
            *start = window_start_ms;
            queues.clear();
        }
        queues.extend(observations.iter().map(|o| o.queue.id.clone()));
        if let Some((window_start_ms, parts)) = self.aggregator.encode_open_queues(queues) {
            self.live.offer_queues(LiveUpdate {
                window_start_ms,
                parts: parts.map(|part| part.lines).collect(),
            });
        }
    }

    fn save_open_window(&self) {
        let (Some(path), Some(open)) = (&self.state_file, self.aggregator.open_window()) else {
            return;
        };
        let saved = serde_json::to_vec(open)
            .map_err(|e| e.to_string())
            .and_then(|json| state_file::write_atomically(path, &json).map_err(|e| e.to_string()));
        match saved {
            Ok(()) => log::info!(
                "saved the open window ({} queues) to {}",
                open.queue_count(),
                path.display()
            ),
            Err(e) => log::warn!("could not save the open window to {}: {e}", path.display()),
        }
    }

    /// Continues the window a previous run saved at shutdown, when we restart inside it.
    fn resume_saved_window(&mut self) {
        let Some(path) = &self.state_file else { return };
        let Some(json) = take_saved_window(path) else {
            return;
        };
        match serde_json::from_slice::<OpenWindow>(&json) {
            Ok(saved) => {
                let queues = saved.queue_count();
                if self.aggregator.resume(saved, now_ms()) {
                    log::info!(
                        "continuing the window saved at the last shutdown ({queues} queues)"
                    );
                }
            }
            Err(e) => log::warn!("ignoring unreadable {}: {e}", path.display()),
        }
    }
}

/// Reads and removes the saved open window: it is used once. Anything but a regular file
/// of a sane size is named in a warning and removed too.
fn take_saved_window(path: &Path) -> Option<Vec<u8>> {
    let json = match state_file::read_if_present(path, OPEN_WINDOW_MAX_BYTES) {
        Ok(json) => json,
        Err(e) => {
            log::warn!("ignoring {} ({e})", path.display());
            None
        }
    };
    let _ = std::fs::remove_file(path);
    json
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Queue, QueueObservation};
    use crossbeam_channel::bounded;
    use std::collections::HashMap;

    const T0: u64 = 1_748_874_600_000;

    fn reading(queue: &Arc<Queue>, idle: f64) -> QueueObservation {
        let mut agents = [0.0; 8];
        agents[crate::model::agent::IDLE] = idle;
        QueueObservation {
            queue: queue.clone(),
            agents,
            media: Vec::new(),
        }
    }

    /// The aggregator with live updates on, fed `events`; the slot as it is once they are
    /// all handled.
    fn live_after(events: Vec<PollEvent>) -> LiveSlot {
        let vars: HashMap<&str, &str> = [
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "secret"),
            ("INFLUXDB_URL", "-"),
        ]
        .into();
        let config = crate::config::from_lookup(
            &|key| vars.get(key).map(|v| v.to_string()),
            crate::config::Mode::Run { dry_run: false },
        )
        .unwrap();
        let stats = Arc::new(Stats::default());
        let live = LiveSlot::new(stats.clone());
        live.enable();
        let (batch_tx, _batches) = bounded(16);
        let mut job = AggregatorJob::new(
            &config,
            Duration::from_secs(10),
            batch_tx,
            live.clone(),
            stats,
            Arc::new(Notifier::from_env_values(None, None, None, 1)),
            None,
        );
        for event in &events {
            job.handle(event);
        }
        live
    }

    /// After an early re-poll the live update carries just the queues re-polled early
    /// since the last update of the whole window, and joins the whole one still waiting.
    #[test]
    fn an_early_re_poll_sends_a_live_update_of_its_queues_only() {
        let queues: Vec<Arc<Queue>> = ["a", "b", "c"]
            .iter()
            .map(|id| {
                Arc::new(Queue {
                    id: id.to_string(),
                    name: id.to_uppercase(),
                })
            })
            .collect();
        let early = |at: u64, queue: &Arc<Queue>, idle| PollEvent::EarlyObservations {
            answered_ms: T0 + at,
            observations: vec![reading(queue, idle)],
        };
        let live = live_after(vec![
            PollEvent::Observations {
                tick_ms: T0,
                observations: queues.iter().map(|q| reading(q, 1.0)).collect(),
            },
            PollEvent::TickDone { tick_ms: T0 },
            early(2_000, &queues[1], 7.0),
            early(3_000, &queues[2], 8.0),
        ]);
        let update = live.take().expect("a live update waits");
        assert_eq!(update.window_start_ms, T0);
        let [whole, early_part] = &update.parts[..] else {
            panic!("{:?}", update.parts)
        };
        assert_eq!(whole.lines().count(), 3, "{whole}");
        let lines: Vec<&str> = early_part.lines().collect();
        assert_eq!(lines.len(), 2, "b and c, not a: {early_part}");
        assert!(lines[0].starts_with("genesys_queue,queue_id=b,"));
        assert!(lines[0].contains("idle_last=7i") && lines[0].contains("samples=2i"));
        assert!(lines[1].starts_with("genesys_queue,queue_id=c,"));
    }

    /// A live update after an early re-poll is not sent once its window's final point was
    /// handed over (an early reading after the last tick belongs to the next window).
    #[test]
    fn no_early_live_update_follows_the_final_point() {
        let q = Arc::new(Queue {
            id: "q".into(),
            name: "Q".into(),
        });
        let mut events = Vec::new();
        for i in 0..6 {
            events.push(PollEvent::Observations {
                tick_ms: T0 + i * 10_000,
                observations: vec![reading(&q, 1.0)],
            });
            events.push(PollEvent::TickDone {
                tick_ms: T0 + i * 10_000,
            });
        }
        events.push(PollEvent::EarlyObservations {
            answered_ms: T0 + 55_000,
            observations: vec![reading(&q, 9.0)],
        });
        let live = live_after(events);
        let update = live.take().expect("the next window's update");
        assert_eq!(update.window_start_ms, T0 + 60_000);
        assert!(update.parts[0].contains("idle_last=9i"));
    }

    #[test]
    fn the_summary_line_comes_once_per_period_and_adds_up_the_windows() {
        let t0 = Instant::now();
        let mut summary = Summary::new(t0);
        let snapshot = StatsSnapshot {
            points_written: 10,
            poll_errors: 1,
            write_errors: 2,
            ..StatsSnapshot::default()
        };
        assert_eq!(
            summary.add(11, &snapshot, t0 + Duration::from_secs(60)),
            None
        );
        let line = summary.add(11, &snapshot, t0 + SUMMARY_PERIOD);
        assert_eq!(
            line.as_deref(),
            Some(
                "last 5m: 2 windows closed (22 points), 20 points written, 2 poll errors, \
                 4 write errors, 0 lines dropped, 0 bytes spooled now"
            )
        );
        assert_eq!(
            summary.add(11, &snapshot, t0 + SUMMARY_PERIOD + Duration::from_secs(1)),
            None
        );
    }
}
