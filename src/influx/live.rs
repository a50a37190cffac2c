//! Live updates (`LIVE_UPDATES`): the window in progress written after every poll, so a
//! wallboard reading InfluxDB is never a whole window behind.
//!
//! A live update is best effort and must never cost a final point, nor land after one:
//! InfluxDB keeps the last write per series and timestamp, so a stale partial written
//! after its window's final point would replace the complete window. Hence live updates
//! bypass the batch channel: the aggregator leaves at most one in a [`LiveSlot`] (a
//! newer one replaces it), and the writer takes it only when no final data is waiting.
//! The slot refuses and drops updates of any window whose final point was handed over,
//! and everything once shutdown has begun. Live updates are never spooled or kept: a
//! failed one is simply dropped (the next poll brings a newer one). One that got no
//! answer may still be applied late, after the final point: the writer then writes that
//! final point again (`rewrite.rs`, with the bound it keeps).
//!
//! An early re-poll (notifications) updates just the queues it read
//! ([`LiveSlot::offer_queues`]): such an update joins a waiting update of the whole
//! window instead of replacing it.
//!
//! `auto` turns them on only for a backend that keeps one point per series and
//! timestamp, told by its `/ping` answer: InfluxDB 1.x/2.x/3.x send `X-Influxdb-Version`,
//! VictoriaMetrics (which keeps every sample, so live updates would multiply its
//! storage) does not.

use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::config::LiveUpdates;
use crate::influx::endpoint::{ping_version, Endpoint};
use crate::stats::Stats;

/// What `auto` makes of the `/ping` answer's `X-Influxdb-Version`: whether live updates
/// go on, and the start-up log line saying which backend and why.
pub(crate) fn auto_decision(version: Option<&str>) -> (bool, String) {
    match version {
        Some(version) => (
            true,
            format!(
                "live updates on (LIVE_UPDATES=auto): InfluxDB {version} keeps one point per \
                 series and timestamp, so each poll's update of the window in progress is \
                 replaced by the next and by the final point"
            ),
        ),
        None => (
            false,
            "live updates off (LIVE_UPDATES=auto): the backend's /ping has no \
             X-Influxdb-Version (VictoriaMetrics or unknown); a backend that keeps every \
             sample would store each update, so each window is written once, at close"
                .to_string(),
        ),
    }
}

/// Turns live updates on or off as `mode` says, and logs the decision once. For `auto`
/// the backend is identified by its `/ping` on a thread of its own; while it does not
/// answer, live updates stay off and the ping is tried again each time the returned
/// sender signals (the writer does after each successful write).
pub(crate) fn start(
    mode: LiveUpdates,
    agent: &ureq::Agent,
    endpoint: &Arc<Endpoint>,
    slot: &LiveSlot,
) -> Option<Sender<()>> {
    match mode {
        LiveUpdates::On => {
            slot.enable();
            log::info!("live updates on (LIVE_UPDATES=on): the window in progress is written after every poll");
            None
        }
        LiveUpdates::Off => {
            log::info!(
                "live updates off (LIVE_UPDATES=off): each window is written once, at close"
            );
            None
        }
        LiveUpdates::Auto => {
            let (retry, retries) = bounded(1);
            let (agent, endpoint, slot) = (agent.clone(), endpoint.clone(), slot.clone());
            let started = std::thread::Builder::new()
                .name("identify".into())
                .spawn(move || identify(&agent, &endpoint, &slot, &retries));
            match started {
                Ok(_) => Some(retry),
                Err(e) => {
                    log::warn!("live updates off (LIVE_UPDATES=auto): cannot start the thread identifying the backend ({e})");
                    None
                }
            }
        }
    }
}

/// Pings until the backend answers, then decides. Ends when the writer does.
fn identify(agent: &ureq::Agent, endpoint: &Endpoint, slot: &LiveSlot, retries: &Receiver<()>) {
    let mut told = false;
    // Bounded: each further ping waits for a successful write; the writer's end ends it.
    loop {
        match ping_version(agent, endpoint) {
            Ok(version) => {
                let (on, why) = auto_decision(version.as_deref());
                if on {
                    slot.enable();
                }
                log::info!("{why}");
                return;
            }
            Err(e) if !told => {
                told = true;
                log::info!(
                    "live updates off until the backend is identified (LIVE_UPDATES=auto): {e}; \
                     asked again after the next successful write"
                );
            }
            Err(e) => log::debug!("backend still not identified: {e}"),
        }
        if retries.recv().is_err() {
            return;
        }
    }
}

/// The window in progress so far, as line protocol in parts of whole lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveUpdate {
    pub window_start_ms: u64,
    pub parts: Vec<String>,
}

/// The one live update waiting for the writer, shared by the aggregator and the writer.
#[derive(Clone)]
pub struct LiveSlot {
    state: Arc<Mutex<SlotState>>,
    stats: Arc<Stats>,
    /// Rung when an update is left, so an idle writer sends it at once.
    doorbell: (Sender<()>, Receiver<()>),
}

#[derive(Default)]
struct SlotState {
    enabled: bool,
    /// Shutdown has begun: nothing live is taken any more.
    closed: bool,
    pending: Option<LiveUpdate>,
    /// Leading parts of `pending` that are an update of the whole window; the parts after
    /// them are the latest update of the queues re-polled early since.
    whole_parts: usize,
    /// Start of the newest window whose final point was handed to the writer.
    newest_final: Option<u64>,
}

impl LiveSlot {
    /// A slot that takes nothing until [`LiveSlot::enable`].
    pub fn new(stats: Arc<Stats>) -> LiveSlot {
        LiveSlot {
            state: Arc::default(),
            stats,
            doorbell: bounded(1),
        }
    }

    /// Whether `update` is refused: live updates off or closed (shutdown), or its
    /// window's final point already handed over (counted as skipped).
    fn refuses(&self, state: &SlotState, update: &LiveUpdate) -> bool {
        if !state.enabled || state.closed {
            return true;
        }
        let after_final = state
            .newest_final
            .is_some_and(|done| update.window_start_ms <= done);
        if after_final {
            Stats::incr(&self.stats.live_updates_skipped);
        }
        after_final
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn enable(&self) {
        self.state().enabled = true;
    }

    /// Whether an update would be taken now: the aggregator encodes one only then.
    pub fn wanted(&self) -> bool {
        let state = self.state();
        state.enabled && !state.closed
    }

    /// Leaves `update` for the writer, replacing (and counting as skipped) an older one.
    /// Refused, and counted, when its window's final point was already handed over.
    pub fn offer(&self, update: LiveUpdate) {
        let mut state = self.state();
        if self.refuses(&state, &update) {
            return;
        }
        state.whole_parts = update.parts.len();
        if state.pending.replace(update).is_some() {
            Stats::incr(&self.stats.live_updates_skipped);
        }
        drop(state);
        let _ = self.doorbell.0.try_send(());
    }

    /// Leaves an update of the queues re-polled early since the last update of the whole
    /// window (each such update holds all of them, so it replaces the one before). It
    /// joins a waiting update of the whole window, after its parts (the later line of a
    /// series wins), and replaces a waiting update of an older window. Refused, and
    /// counted, like [`LiveSlot::offer`].
    pub fn offer_queues(&self, update: LiveUpdate) {
        let mut guard = self.state();
        if self.refuses(&guard, &update) {
            return;
        }
        let state = &mut *guard;
        match &mut state.pending {
            Some(pending) if pending.window_start_ms == update.window_start_ms => {
                pending.parts.truncate(state.whole_parts);
                pending.parts.extend(update.parts);
            }
            pending => {
                state.whole_parts = 0;
                if pending.replace(update).is_some() {
                    Stats::incr(&self.stats.live_updates_skipped);
                }
            }
        }
        drop(guard);
        let _ = self.doorbell.0.try_send(());
    }

    /// The final point of the window starting at `window_start_ms` is being handed to the
    /// writer: from now on no live update of it (or of an older window) is sent.
    pub fn final_handed(&self, window_start_ms: u64) {
        let mut state = self.state();
        state.newest_final = state.newest_final.max(Some(window_start_ms));
        if state
            .pending
            .as_ref()
            .is_some_and(|p| p.window_start_ms <= window_start_ms)
        {
            state.pending = None;
            Stats::incr(&self.stats.live_updates_skipped);
        }
    }

    /// The waiting update, to be sent now.
    pub(crate) fn take(&self) -> Option<LiveUpdate> {
        self.state().pending.take()
    }

    /// Shutdown has begun: the waiting update is dropped and no other is taken.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        if state.pending.take().is_some() {
            Stats::incr(&self.stats.live_updates_skipped);
        }
    }

    /// Rings when an update was left (for the writer's wait).
    pub(crate) fn doorbell(&self) -> &Receiver<()> {
        &self.doorbell.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    fn update(window_start_ms: u64, text: &str) -> LiveUpdate {
        LiveUpdate {
            window_start_ms,
            parts: vec![text.to_string()],
        }
    }

    fn enabled() -> LiveSlot {
        let slot = LiveSlot::new(Arc::new(Stats::default()));
        slot.enable();
        slot
    }

    fn skipped(slot: &LiveSlot) -> u64 {
        slot.stats.live_updates_skipped.load(Relaxed)
    }

    #[test]
    fn auto_means_on_only_for_a_ping_that_names_an_influxdb_version() {
        for version in ["1.6.7~rc0", "v2.7.11", "3.0.1"] {
            let (on, why) = auto_decision(Some(version));
            assert!(on && why.contains(version), "{why}");
        }
        let (on, why) = auto_decision(None);
        assert!(!on && why.contains("VictoriaMetrics"), "{why}");
    }

    #[test]
    fn a_disabled_slot_takes_nothing() {
        let slot = LiveSlot::new(Arc::new(Stats::default()));
        assert!(!slot.wanted());
        slot.offer(update(0, "a"));
        assert_eq!(slot.take(), None);
        assert_eq!(skipped(&slot), 0);
    }

    #[test]
    fn a_newer_update_replaces_the_waiting_one_and_counts_it_skipped() {
        let slot = enabled();
        slot.offer(update(0, "a"));
        slot.offer(update(0, "b"));
        assert_eq!(slot.take(), Some(update(0, "b")));
        assert_eq!(skipped(&slot), 1);
        assert!(slot.doorbell().try_recv().is_ok(), "the writer is woken");
    }

    #[test]
    fn no_update_of_a_window_whose_final_point_was_handed_over_is_taken() {
        let slot = enabled();
        slot.offer(update(10, "live"));
        slot.final_handed(10);
        assert_eq!(slot.take(), None, "the waiting one is dropped");
        slot.offer(update(10, "late"));
        slot.offer(update(5, "older"));
        assert_eq!(slot.take(), None);
        assert_eq!(skipped(&slot), 3);
        slot.offer(update(20, "next window"));
        assert_eq!(slot.take(), Some(update(20, "next window")));
    }

    #[test]
    fn an_update_of_re_polled_queues_joins_the_waiting_whole_window() {
        let slot = enabled();
        slot.offer(update(10, "whole"));
        slot.offer_queues(update(10, "q1"));
        slot.offer_queues(update(10, "q1 q2"));
        let both = LiveUpdate {
            window_start_ms: 10,
            parts: vec!["whole".into(), "q1 q2".into()],
        };
        assert_eq!(
            slot.take(),
            Some(both),
            "the whole window, then the latest queues"
        );
        assert_eq!(skipped(&slot), 0, "nothing was dropped");
        slot.offer_queues(update(10, "q3"));
        slot.offer_queues(update(10, "q3 q4"));
        assert_eq!(slot.take(), Some(update(10, "q3 q4")));
        slot.offer_queues(update(10, "q5"));
        slot.offer_queues(update(20, "next window"));
        assert_eq!(slot.take(), Some(update(20, "next window")));
        assert_eq!(skipped(&slot), 1, "the older window's update was dropped");
        slot.offer(update(20, "whole"));
        assert_eq!(slot.take(), Some(update(20, "whole")));
    }

    #[test]
    fn no_update_of_re_polled_queues_follows_the_final_point() {
        let slot = enabled();
        slot.offer(update(10, "whole"));
        slot.offer_queues(update(10, "q1"));
        slot.final_handed(10);
        slot.offer_queues(update(10, "late"));
        assert_eq!(slot.take(), None);
        assert_eq!(skipped(&slot), 2);
        slot.close();
        slot.offer_queues(update(20, "after shutdown"));
        assert_eq!(slot.take(), None);
    }

    #[test]
    fn nothing_is_taken_once_shutdown_began() {
        let slot = enabled();
        slot.offer(update(0, "a"));
        slot.close();
        assert!(!slot.wanted());
        slot.offer(update(0, "b"));
        assert_eq!(slot.take(), None);
        assert_eq!(skipped(&slot), 1);
    }
}
