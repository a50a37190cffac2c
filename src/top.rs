//! `genesys2influx top`: the wallboard table for the selected queues of a real org, so an
//! operator can hold what the service sees next to Genesys Cloud's own screens.
//!
//! Read-only: the real client and poller (with the notifications threads, so a queue
//! that changed is re-polled early), and nothing behind them (no aggregator, no writer,
//! no spool, no KPI state). It stops on SIGINT/SIGTERM with exit 0.

use std::sync::Arc;
use std::thread;

use crossbeam_channel::{bounded, select, Receiver};

use crate::config::Config;
use crate::duration;
use crate::exit::Exit;
use crate::genesys::poller::ObservationPoller;
use crate::genesys::poller_start::StartError;
use crate::model::{PollEvent, QueueChanged, SharedQueues};
use crate::pipeline::{connect, poller_settings, Shutdown, HINT_QUEUE};
use crate::stats::Stats;
use crate::wallboard::Wallboard;

/// Poll events in flight: a few polls of a large org (chunks of ≤ 100 queues each).
const EVENT_QUEUE: usize = 64;

/// Polls and shows the table until a signal; returns the exit code.
pub fn run(config: &Config) -> Exit {
    let stats = Arc::new(Stats::default());
    let (_, client) = match connect(config, &stats) {
        Ok(both) => both,
        Err(code) => return code,
    };
    let shutdown = Shutdown::install(None);
    let selected_queues = SharedQueues::default();
    let mut settings = poller_settings(config, selected_queues.clone());
    // No KPI polls share the request budget.
    settings.kpi_poll = None;
    let mut poller = ObservationPoller::new(client.clone(), settings, stats.clone());
    let started = match poller.start(&shutdown.control) {
        Ok(started) => started,
        Err(StartError::Stopped) => return Exit::Ok,
        Err(error) => {
            log::error!("{error}");
            return error.exit_code();
        }
    };
    let title = format!(
        "genesys2influx top: {} queues of {}, poll {}, Ctrl-C ends",
        started.queues,
        config.genesys.region_label,
        duration::format(started.poll_interval),
    );
    let (event_tx, event_rx) = bounded(EVENT_QUEUE);
    // Queues that Genesys says changed are re-polled early, as by the service: the table
    // is fresh to the second (unless NOTIFICATIONS=off).
    let (hint_tx, hints) = bounded::<QueueChanged>(HINT_QUEUE);
    crate::notifications::spawn(
        config,
        client.clone(),
        selected_queues,
        hint_tx,
        shutdown.stop.clone(),
        stats.clone(),
    );
    let control = shutdown.control.clone();
    let spawned = thread::Builder::new()
        .name("poller".into())
        .spawn(move || poller.run(event_tx, control, hints));
    if let Err(e) = spawned {
        log::error!("could not start the poller thread ({e})");
        return Exit::Failure;
    }
    let view = Wallboard::start(title, None, false);
    show(&view, &event_rx, &shutdown.stop, &stats);
    view.finish();
    Exit::Ok
}

/// Feeds the table until `stop` disconnects (a signal) or the poller ends. Each
/// complete poll also refreshes the self-metrics of that poll.
fn show(view: &Wallboard, events: &Receiver<PollEvent>, stop: &Receiver<()>, stats: &Stats) {
    loop {
        select! {
            recv(events) -> event => match event {
                Ok(event) => {
                    if matches!(event, PollEvent::TickDone { .. }) {
                        view.status(&stats.take_window(), 0);
                    }
                    view.observe(&event);
                }
                Err(_) => return,
            },
            recv(stop) -> _ => return,
        }
    }
}
