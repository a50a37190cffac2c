//! Genesys Cloud's Notifications API as a change signal (`NOTIFICATIONS`,
//! docs/genesys-api.md#notifications): a websocket message about a selected queue's
//! observations becomes a [`QueueChanged`] hint, and the poller re-polls that queue early
//! within the request budget. Only a hint: every value written still comes from an
//! observations query, and when notifications cannot be used the service polls as
//! before.
//!
//! One thread per channel (`worker`), each following its slice of 1,000 of the selected
//! queues (`topic`), started by a small supervisor thread that watches the selection
//! (`SharedQueues`, replaced after each resolution, refresh and SIGHUP). The parts:
//! `message` (reading a websocket message), `channel` (the two REST requests), `watchdog`
//! (heartbeats), `outage` (waits and warnings while it fails), `probe` (`check`'s line).

mod channel;
mod message;
mod outage;
pub mod probe;
mod topic;
mod watchdog;
mod worker;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::config::{Config, Notifications};
use crate::genesys::client::GenesysClient;
use crate::model::{QueueChanged, SharedQueues};
use crate::stats::Stats;

/// How often the supervisor looks at the selection for a change in the channels needed.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);

/// Starts the notifications threads unless `NOTIFICATIONS=off` (or the TLS settings are
/// unusable, which is said). They are never joined: they end when `stop` disconnects.
pub fn spawn(
    config: &Config,
    client: Arc<GenesysClient>,
    queues: SharedQueues,
    hints: Sender<QueueChanged>,
    stop: Receiver<()>,
    stats: Arc<Stats>,
) {
    if config.notifications == Notifications::Off {
        log::info!(
            "notifications off (NOTIFICATIONS=off): queues are polled every POLL_INTERVAL only"
        );
        return;
    }
    let tls = match crate::websocket::dial::tls_config(config.http.tls_ca_file.as_deref()) {
        Ok(tls) => tls,
        Err(e) => {
            log::warn!("notifications unavailable: {e}; polling alone");
            return;
        }
    };
    let shared = worker::Shared {
        client,
        queues,
        hints,
        stop,
        stats,
        outage: Arc::new(outage::Outage::new(config.notifications)),
        tls,
        proxies: config.http.proxy.clone(),
        timeout: config.http.timeout,
    };
    let started = thread::Builder::new()
        .name("notifications".into())
        .spawn(move || supervise(shared));
    if let Err(e) = started {
        log::error!("could not start the notifications thread ({e}); polling alone");
    }
}

/// Starts one channel thread per 1,000 selected queues as the selection grows (a thread
/// whose slice becomes empty closes its socket and waits).
fn supervise(shared: worker::Shared) {
    let mut started = 0;
    let mut warned_over = false;
    loop {
        let selected = shared.queues.snapshot().len();
        let needed = topic::channels_for(selected);
        if selected > topic::MAX_CHANNELS * topic::TOPICS_PER_CHANNEL && !warned_over {
            warned_over = true;
            log::warn!(
                "{selected} queues need more than {} notification channels (Genesys allows {} per OAuth client, {} topics each): the queues past the first {} (by id) get no notifications and are polled every POLL_INTERVAL only; split the org with QUEUE_SHARD and one OAuth client per shard",
                topic::MAX_CHANNELS,
                topic::MAX_CHANNELS,
                topic::TOPICS_PER_CHANNEL,
                topic::MAX_CHANNELS * topic::TOPICS_PER_CHANNEL,
            );
        }
        while started < needed {
            let for_worker = shared.clone();
            let index = started;
            let spawned = thread::Builder::new()
                .name(format!("notifications-{index}"))
                .spawn(move || worker::run(index, for_worker));
            if let Err(e) = spawned {
                log::error!(
                    "could not start a notifications thread ({e}); those queues are polled only"
                );
                break;
            }
            started += 1;
        }
        if !matches!(
            shared.stop.recv_timeout(SUPERVISE_EVERY),
            Err(RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}
