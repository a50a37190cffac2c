//! The running service in one place: threads, channels and shutdown.
//!
//! ```text
//!   signals ──stop/refresh──▶ poller ──PollEvent──▶ aggregator ──Batch──▶ writer ──▶ InfluxDB
//!                                     (bounded)                (bounded)      └──▶ spool
//! ```
//! Shutdown is a channel that is dropped: the poller and the aggregator both watch it, so
//! a poll stuck in a slow request cannot hold the final flush back. The aggregator then
//! closes the open window with the samples it has (and saves its state so a restart in
//! the same window completes it), the batch channel closes, and the writer flushes
//! within `SHUTDOWN_TIMEOUT` of the signal (it watches the stop channel too, so a write
//! InfluxDB never answers cannot hold it), spooling the rest. The poller thread is not
//! waited for, and the writer only that long.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::aggregate::{Aggregator, ClosedWindow, OpenWindow};
use crate::config::{Config, InfluxTarget};
use crate::duration;
use crate::exit::Exit;
use crate::genesys::client::GenesysClient;
use crate::genesys::poller::{ObservationPoller, PollerControl, PollerSettings};
use crate::genesys::poller_start::{StartError, StartInfo};
use crate::influx::writer::{self, Batch, WriterSettings};
use crate::kpi::{self, KpiSettings};
use crate::model::{PollEvent, SharedQueues};
use crate::notify::Notifier;
use crate::state_file;
use crate::stats::{Stats, StatsSnapshot};
use crate::time::{millis, now_ms};
use crate::wallboard::Wallboard;

/// Poll events in flight between poller and aggregator (chunks of ≤ 100 queues each):
/// enough for a few polls of a large org; beyond it the poller waits rather than memory
/// growing while the writer is slow.
const EVENT_QUEUE: usize = 64;
/// Parts of finished windows (≤ 128 KiB each) waiting for the writer: small, so a big
/// window is encoded only as fast as the writer takes it; the writer has its own
/// backlog and spool.
const BATCH_QUEUE: usize = 4;
/// How often the aggregator logs what was written meanwhile (info level).
pub const SUMMARY_PERIOD: Duration = Duration::from_secs(300);
/// The writer ends by itself within `SHUTDOWN_TIMEOUT` of SIGTERM (its requests are
/// abandoned then); this much more is allowed for spooling what is left before the
/// process exits without it.
const WRITER_EXIT_MARGIN: Duration = Duration::from_secs(2);
/// Where the open window is saved at shutdown, inside `SPOOL_DIR`.
const OPEN_WINDOW_FILE: &str = "open-window.json";
/// The most `open-window.json` is read of: it takes about 2 KB a queue (1.2 MB measured
/// for 600 queues), so this allows some 30,000.
const OPEN_WINDOW_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// Runs the service until SIGTERM/SIGINT (or `stop_after`, for `demo`). Returns the exit code.
///
/// `view` (the terminal table of `demo`) sees every poll event and each window's
/// self-metrics; with it, line protocol meant for stdout is discarded instead, since
/// the table owns the terminal.
pub fn run(config: &Config, stop_after: Option<Duration>, view: Option<Arc<Wallboard>>) -> Exit {
    let notifier = Arc::new(Notifier::from_env());
    let agent = match crate::http::agent(&config.http) {
        Ok(agent) => agent,
        Err(message) => {
            log::error!("{message}");
            return Exit::Config;
        }
    };
    let stats = Arc::new(Stats::default());
    let client = Arc::new(GenesysClient::new(
        &config.genesys,
        agent.clone(),
        stats.clone(),
    ));
    let shutdown = Shutdown::install(stop_after);

    let selected_queues = SharedQueues::default();
    let settings = poller_settings(config, selected_queues.clone());
    let poller = ObservationPoller::new(client.clone(), settings, stats.clone());
    let (poller, started) = match start(poller, &shutdown) {
        Ok(started) => started,
        Err(code) => return code,
    };
    log_startup(config, started.queues, started.poll_interval);
    notifier.ready();
    notifier.status(&format!("polling {} queues", started.queues));

    let (event_tx, event_rx) = bounded(EVENT_QUEUE);
    let (batch_tx, batch_rx) = bounded(BATCH_QUEUE);
    let writer = if view.is_some() && config.influx == InfluxTarget::Stdout {
        spawn_discard(batch_rx)
    } else {
        spawn_writer(
            config,
            agent,
            batch_rx,
            shutdown.stop.clone(),
            stats.clone(),
        )
    };
    spawn_kpis(
        config,
        client,
        selected_queues,
        batch_tx.clone(),
        shutdown.stop.clone(),
        stats.clone(),
        view.clone(),
    );
    let aggregator_job = AggregatorJob::new(
        config,
        started.poll_interval,
        batch_tx,
        stats,
        notifier.clone(),
        view,
    );
    let stop = shutdown.stop.clone();
    let aggregator = thread::Builder::new()
        .name("aggregator".into())
        .spawn(move || aggregator_job.run(event_rx, stop));
    let control = shutdown.control.clone();
    let poller_thread = thread::Builder::new()
        .name("poller".into())
        .spawn(move || poller.run(event_tx, control));

    let (Ok(writer), Ok(aggregator), Ok(_poller)) = (writer, aggregator, poller_thread) else {
        log::error!("could not start the worker threads");
        return Exit::Failure;
    };
    let aggregated = aggregator.join();
    notifier.stopping();
    let Some(written) = join_within(writer, config.shutdown_timeout + WRITER_EXIT_MARGIN) else {
        log::error!(
            "the writer did not finish within SHUTDOWN_TIMEOUT={}; exiting without it (what it held in memory is lost)",
            duration::format(config.shutdown_timeout)
        );
        return Exit::Failure;
    };
    if aggregated.is_err() || written.is_err() {
        log::error!("a worker thread failed; see the messages above");
        return Exit::Failure;
    }
    log::info!("stopped cleanly");
    Exit::Ok
}

/// Waits for `handle` at most `limit`; `None` if the thread is still running then.
fn join_within<T>(handle: thread::JoinHandle<T>, limit: Duration) -> Option<thread::Result<T>> {
    let deadline = Instant::now() + limit;
    // Bounded by the deadline.
    while !handle.is_finished() {
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
    Some(handle.join())
}

fn spawn_writer(
    config: &Config,
    agent: ureq::Agent,
    batches: Receiver<Batch>,
    stop: Receiver<()>,
    stats: Arc<Stats>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let settings = WriterSettings {
        target: config.influx.clone(),
        spool: config.spool.clone(),
        shutdown_timeout: config.shutdown_timeout,
        max_lines_per_request: writer::DEFAULT_MAX_LINES_PER_REQUEST,
    };
    thread::Builder::new()
        .name("writer".into())
        .spawn(move || writer::run(settings, agent, batches, stop, stats))
}

/// Takes the batches and drops them: the writer of a `demo` whose stdout shows the table.
fn spawn_discard(batches: Receiver<Batch>) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("discard".into())
        .spawn(move || batches.iter().for_each(drop))
}

pub(crate) fn poller_settings(config: &Config, published: SharedQueues) -> PollerSettings {
    PollerSettings {
        poll_interval: config.poll_interval,
        queue_refresh: config.queue_refresh,
        selectors: config.queues.clone(),
        shard: config.shard,
        requests_per_minute: config.genesys.requests_per_minute,
        kpi_poll: config.kpi.map(|kpi| kpi.poll),
        published,
    }
}

/// Starts the KPI thread when KPIs are on. It is never joined: it stops as soon as the
/// stop channel disconnects and must not hold the final flush back.
fn spawn_kpis(
    config: &Config,
    client: Arc<GenesysClient>,
    queues: SharedQueues,
    batches: Sender<Batch>,
    stop: Receiver<()>,
    stats: Arc<Stats>,
    view: Option<Arc<Wallboard>>,
) {
    let Some(kpi) = config.kpi else {
        log::info!("interval KPIs are off (KPIS=off)");
        return;
    };
    let settings = KpiSettings {
        config: kpi,
        static_tags: config.static_tags.clone(),
        state_dir: config.spool.dir.clone(),
        requests_per_minute: config.genesys.requests_per_minute,
        view,
    };
    let started = thread::Builder::new()
        .name("kpi".into())
        .spawn(move || kpi::run(settings, client, queues, batches, stop, stats));
    if let Err(e) = started {
        log::error!("could not start the KPI thread ({e}); observations continue without KPIs");
    }
}

/// Login and the first queue resolution, on their own thread so that a stop ends the
/// process at once even while a slow login or listing request is under way (that thread
/// is then left behind; it holds nothing that needs flushing). `Err` is the exit code.
fn start(
    mut poller: ObservationPoller,
    shutdown: &Shutdown,
) -> Result<(ObservationPoller, StartInfo), Exit> {
    let (done_tx, done_rx) = bounded(1);
    let control = shutdown.control.clone();
    let spawned = thread::Builder::new()
        .name("start-up".into())
        .spawn(move || {
            let result = poller.start(&control);
            let _ = done_tx.send(result.map(|info| (poller, info)));
        });
    if let Err(e) = spawned {
        log::error!("could not start the start-up thread ({e})");
        return Err(Exit::Failure);
    }
    let result = select! {
        recv(done_rx) -> done => done.unwrap_or(Err(StartError::Stopped)),
        recv(shutdown.stop) -> _ => Err(StartError::Stopped),
    };
    result.map_err(|error| start_error_code(&error))
}

fn start_error_code(error: &StartError) -> Exit {
    if matches!(error, StartError::Stopped) {
        log::info!("{error}");
    } else {
        log::error!("{error}");
    }
    error.exit_code()
}

/// The one line that says what this run does. Never a secret: only labels and paths.
fn log_startup(config: &Config, queues: usize, poll_interval: Duration) {
    let spool = config
        .spool
        .dir
        .as_deref()
        .map_or("none".to_string(), |d| d.display().to_string());
    log::info!(
        "genesys2influx {} started: region {}, InfluxDB mode {}, {queues} queues, poll {}, window {}, spool {}",
        env!("CARGO_PKG_VERSION"),
        config.genesys.region_label,
        config.influx.mode_name(),
        duration::format(poll_interval),
        duration::format(config.window),
        spool,
    );
}

/// The stop and refresh switches. Dropping every `stop` sender and every `control`
/// sender is the shutdown signal; the signal thread and the `stop_after` timer hold them.
pub(crate) struct Shutdown {
    pub(crate) stop: Receiver<()>,
    pub(crate) control: Receiver<PollerControl>,
    /// Kept so that shutdown never happens merely because no other holder is left.
    _senders: Senders,
}

type Senders = Arc<Mutex<Option<(Sender<()>, Sender<PollerControl>)>>>;

impl Shutdown {
    pub(crate) fn install(stop_after: Option<Duration>) -> Shutdown {
        let (stop_tx, stop_rx) = bounded(0);
        let (control_tx, control_rx) = bounded(4);
        let senders: Senders = Arc::new(Mutex::new(Some((stop_tx, control_tx))));
        listen_for_signals(senders.clone());
        if let Some(after) = stop_after {
            let timer = senders.clone();
            thread::spawn(move || {
                thread::sleep(after);
                log::info!("--seconds elapsed, stopping");
                trigger(&timer);
            });
        }
        Shutdown {
            stop: stop_rx,
            control: control_rx,
            _senders: senders,
        }
    }
}

fn trigger(senders: &Senders) {
    if let Ok(mut guard) = senders.lock() {
        guard.take();
    }
}

fn listen_for_signals(senders: Senders) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            log::warn!(
                "cannot install signal handlers ({e}); SIGTERM will kill without a final flush"
            );
            return;
        }
    };
    thread::spawn(move || {
        for signal in signals.forever() {
            if signal == SIGHUP {
                // The poller logs the refresh: a burst of SIGHUPs is one refresh.
                if let Ok(guard) = senders.lock() {
                    if let Some((_, control)) = guard.as_ref() {
                        let _ = control.try_send(PollerControl::RefreshQueues);
                    }
                }
            } else {
                log::info!("signal {signal} received: closing the current window and flushing");
                trigger(&senders);
            }
        }
    });
}

/// The aggregator thread: folds poll events into windows and hands finished windows,
/// with the self-metrics point, to the writer.
struct AggregatorJob {
    aggregator: Aggregator,
    batches: Sender<Batch>,
    stats: Arc<Stats>,
    instance: String,
    static_tags: Vec<(String, String)>,
    state_file: Option<PathBuf>,
    notifier: Arc<Notifier>,
    watchdog_every: Option<Duration>,
    summary: Summary,
    view: Option<Arc<Wallboard>>,
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
    fn new(
        config: &Config,
        poll_interval: Duration,
        batches: Sender<Batch>,
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
        }
    }

    fn run(mut self, events: Receiver<PollEvent>, stop: Receiver<()>) {
        self.resume_saved_window();
        let heartbeat = self.watchdog_every.unwrap_or(Duration::from_secs(3600));
        loop {
            select! {
                recv(events) -> event => match event {
                    Ok(event) => {
                        self.notifier.watchdog();
                        if let Some(view) = &self.view {
                            view.observe(&event);
                        }
                        for window in self.aggregator.handle(&event) {
                            self.send(window);
                        }
                    }
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

    /// Hands the window to the writer part by part (the bounded channel paces the
    /// encoding to the writer), the self-metrics point at the end of the last part.
    fn send(&mut self, window: ClosedWindow) {
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
