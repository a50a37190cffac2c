//! The running service in one place: threads, channels and shutdown.
//!
//! ```text
//!   signals ──stop/refresh──▶ poller ──PollEvent──▶ aggregator ──Batch──▶ writer ──▶ InfluxDB
//!                                     (bounded)          │     (bounded)  ▲   └──▶ spool
//!                                                        └──LiveSlot──────┘
//!                                                     (one live update at most)
//! ```
//! Shutdown is a channel that is dropped: the poller and the aggregator both watch it, so
//! a poll stuck in a slow request cannot hold the final flush back. The aggregator then
//! closes the open window with the samples it has (and saves its state so a restart in
//! the same window completes it), the batch channel closes, and the writer flushes
//! within `SHUTDOWN_TIMEOUT` of the signal (it watches the stop channel too, so a write
//! InfluxDB never answers cannot hold it), spooling the rest. The poller thread is not
//! waited for, and the writer only that long.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select, Receiver, Sender};

use crate::aggregate::job::AggregatorJob;
use crate::aggregate::{self, PartBuffers};
use crate::config::{Config, InfluxTarget};
use crate::duration;
use crate::exit::Exit;
use crate::genesys::client::GenesysClient;
use crate::genesys::poller::{ObservationPoller, PollerControl, PollerSettings};
use crate::genesys::poller_start::{StartError, StartInfo};
use crate::influx::live::LiveSlot;
use crate::influx::writer::{self, WriterSettings};
use crate::kpi::{self, KpiSettings};
use crate::model::{Batch, QueueChanged, SharedQueues};
use crate::notify::Notifier;
use crate::stats::Stats;
use crate::wallboard::Wallboard;

/// Poll events in flight between poller and aggregator (chunks of ≤ 100 queues each):
/// enough for a few polls of a large org; beyond it the poller waits rather than memory
/// growing while the writer is slow.
const EVENT_QUEUE: usize = 64;
/// Hints from the notifications thread to the poller (queues that changed). A full
/// channel drops the hint: the queue is still read by the regular poll.
pub(crate) const HINT_QUEUE: usize = 1024;
/// Parts of finished windows (≤ 128 KiB each) waiting for the writer: small, so a big
/// window is encoded only as fast as the writer takes it; the writer has its own
/// backlog and spool.
const BATCH_QUEUE: usize = 4;
/// The writer ends by itself within `SHUTDOWN_TIMEOUT` of SIGTERM (its requests are
/// abandoned then); this much more is allowed for spooling what is left before the
/// process exits without it.
const WRITER_EXIT_MARGIN: Duration = Duration::from_secs(2);

/// Runs the service until SIGTERM/SIGINT (or `stop_after`, for `demo`). Returns the exit code.
///
/// `view` (the terminal table of `demo`) sees every poll event and each window's
/// self-metrics; with it, line protocol meant for stdout is discarded instead, since
/// the table owns the terminal.
pub fn run(config: &Config, stop_after: Option<Duration>, view: Option<Arc<Wallboard>>) -> Exit {
    let notifier = Arc::new(Notifier::from_env());
    let stats = Arc::new(Stats::default());
    let (agent, client) = match connect(config, &stats) {
        Ok(both) => both,
        Err(code) => return code,
    };
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
    let live = LiveSlot::new(stats.clone());
    let part_buffers = aggregate::part_buffers();
    let writer = if view.is_some() && config.influx == InfluxTarget::Stdout {
        spawn_discard(batch_rx)
    } else {
        spawn_writer(
            config,
            agent,
            batch_rx,
            live.clone(),
            shutdown.stop.clone(),
            stats.clone(),
            part_buffers.clone(),
        )
    };
    // The notifications threads hold the sender (none with NOTIFICATIONS=off, which ends
    // the early re-polls at once).
    let (hint_tx, hints) = bounded::<QueueChanged>(HINT_QUEUE);
    crate::notifications::spawn(
        config,
        client.clone(),
        selected_queues.clone(),
        hint_tx,
        shutdown.stop.clone(),
        stats.clone(),
    );
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
        live,
        stats,
        notifier.clone(),
        view,
    )
    .with_part_buffers(part_buffers)
    .with_poller_liveness(poller.liveness());
    let stop = shutdown.stop.clone();
    let aggregator = thread::Builder::new()
        .name("aggregator".into())
        .spawn(move || aggregator_job.run(event_rx, stop));
    let control = shutdown.control.clone();
    let poller_thread = thread::Builder::new()
        .name("poller".into())
        .spawn(move || poller.run(event_tx, control, hints));

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
/// The HTTP agent shared by Genesys and InfluxDB, and the Genesys client over it; when
/// the HTTP settings are unusable (`TLS_CA_FILE`), logs why and gives `Exit::Config`.
pub(crate) fn connect(
    config: &Config,
    stats: &Arc<Stats>,
) -> Result<(ureq::Agent, Arc<GenesysClient>), Exit> {
    let agent = crate::http::agent(&config.http).map_err(|message| {
        log::error!("{message}");
        Exit::Config
    })?;
    let client = GenesysClient::new(&config.genesys, agent.clone(), stats.clone());
    Ok((agent, Arc::new(client)))
}

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
    live: LiveSlot,
    stop: Receiver<()>,
    stats: Arc<Stats>,
    part_buffers: Arc<PartBuffers>,
) -> std::io::Result<thread::JoinHandle<()>> {
    let settings = WriterSettings {
        target: config.influx.clone(),
        spool: config.spool.clone(),
        shutdown_timeout: config.shutdown_timeout,
        max_lines_per_request: writer::DEFAULT_MAX_LINES_PER_REQUEST,
        live_updates: config.live_updates,
    };
    thread::Builder::new()
        .name("writer".into())
        .spawn(move || writer::run(settings, agent, batches, live, stop, stats, part_buffers))
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
        window: config.window,
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
