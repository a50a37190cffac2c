//! The early re-poll thread: it takes the notifications thread's hints
//! ([`QueueChanged`]), keeps the [`DirtySet`], and re-polls the dirty queues with the
//! ordinary observations query, sending what it reads to the aggregator as
//! [`PollEvent::EarlyObservations`].
//!
//! A thread of its own beside the poller's tick loop, with its own single request at a
//! time, so an early re-poll can never hold back a regular tick's requests (the regular
//! poll never yields to it). It uses only the requests the regular poll plan leaves free
//! ([`super::budget::PollPlan::free_per_minute`]), as the poller publishes them with each
//! plan ([`FreeBudget`]). It ends when the hints' sender is gone (no notifications,
//! e.g. `NOTIFICATIONS=off`), when the poller stops, or when the aggregator is gone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender};

use crate::model::{PollEvent, Queue, QueueChanged, SharedQueues};
use crate::stats::Stats;
use crate::time::now_ms;

use super::client::GenesysClient;
use super::early::DirtySet;
use super::observations::{self, Chunk};

/// An early re-poll gives up after this long (retries included): by then the regular
/// poll is the fresher way.
pub const EARLY_REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// Without hints or dirty queues the thread still looks at the queue list this often.
const IDLE_WAIT: Duration = Duration::from_secs(60);

/// What the thread needs; see the module documentation.
pub(super) struct EarlyPoller {
    pub client: Arc<GenesysClient>,
    /// The selected queues, as the poller publishes them.
    pub queues: SharedQueues,
    pub budget: FreeBudget,
    pub stats: Arc<Stats>,
    pub hints: Receiver<QueueChanged>,
    pub events: Sender<PollEvent>,
    /// Disconnects when the poller stops.
    pub stop: Receiver<()>,
}

/// Requests per minute the poller's plan leaves free, published with each plan.
#[derive(Debug, Clone, Default)]
pub struct FreeBudget(Arc<AtomicU64>);

impl FreeBudget {
    pub fn set(&self, per_minute: f64) {
        self.0.store(per_minute.max(0.0).to_bits(), Relaxed);
    }

    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Relaxed))
    }
}

/// The selected queues by id, and the budget they leave free, as last published.
struct Selected {
    list: Arc<Vec<Arc<Queue>>>,
    by_id: HashMap<String, Arc<Queue>>,
    /// Requests per minute the regular poll plan leaves free for early re-polls.
    free_per_minute: f64,
}

impl EarlyPoller {
    pub(super) fn run(self) {
        let mut dirty = DirtySet::new(0.0, now_ms());
        let mut selected = Selected {
            list: Arc::default(),
            by_id: HashMap::new(),
            free_per_minute: 0.0,
        };
        let mut told = false;
        // Each round handles hints, sends what is due, or waits (bounded) for either.
        loop {
            let now = now_ms();
            self.follow_queue_list(&mut selected, &mut dirty, now);
            while let Some(ids) = dirty.next_request(now_ms()) {
                if !self.repoll(&ids, &selected) {
                    return;
                }
            }
            Stats::add(&self.stats.early_polls_skipped, dirty.take_skipped());
            let now = now_ms();
            let wait = dirty.wake_at(now).map_or(IDLE_WAIT, |at| {
                Duration::from_millis(at.saturating_sub(now))
            });
            let mut select = Select::new();
            let hint = select.recv(&self.hints);
            select.recv(&self.stop);
            let Ok(operation) = select.select_timeout(wait) else {
                continue;
            };
            if operation.index() != hint {
                let _ = operation.recv(&self.stop);
                return;
            }
            match operation.recv(&self.hints) {
                Ok(changed) => {
                    if !told {
                        told = true;
                        log_budget(selected.free_per_minute);
                    }
                    self.mark(&changed, &selected, &mut dirty);
                    // Take in what else is waiting: one request carries them all.
                    for changed in self.hints.try_iter() {
                        self.mark(&changed, &selected, &mut dirty);
                    }
                }
                // No notifications thread (any more): nothing will be hinted.
                Err(_) => return,
            }
        }
    }

    /// Marks a selected queue dirty; an unknown id is ignored. Ids are matched in any
    /// case (the queue list holds them lower-cased).
    fn mark(&self, changed: &QueueChanged, selected: &Selected, dirty: &mut DirtySet) {
        let at_ms = changed.at_ms.min(now_ms());
        if selected.by_id.contains_key(&*changed.queue_id) {
            dirty.mark(&changed.queue_id, at_ms);
        } else if let Some(queue) = selected.by_id.get(&changed.queue_id.to_ascii_lowercase()) {
            dirty.mark(&Arc::from(queue.id.as_str()), at_ms);
        }
    }

    /// After a new queue list or plan: the new index, the dirty queues no longer
    /// selected forgotten, the new budget.
    fn follow_queue_list(&self, selected: &mut Selected, dirty: &mut DirtySet, now: u64) {
        let free = self.budget.get();
        if free != selected.free_per_minute {
            selected.free_per_minute = free;
            dirty.set_budget(free, now);
        }
        let list = self.queues.snapshot();
        if Arc::ptr_eq(&list, &selected.list) {
            return;
        }
        selected.by_id = list.iter().map(|q| (q.id.clone(), q.clone())).collect();
        selected.list = list;
        dirty.retain(|id| selected.by_id.contains_key(id));
    }

    /// One early request for `ids`; false when the aggregator is gone.
    fn repoll(&self, ids: &[Arc<str>], selected: &Selected) -> bool {
        let queues: Vec<Arc<Queue>> = ids
            .iter()
            .filter_map(|id| selected.by_id.get(&**id).cloned())
            .collect();
        if queues.is_empty() {
            return true;
        }
        Stats::incr(&self.stats.early_polls);
        let chunk = Chunk::new(&queues);
        match observations::observe(
            &self.client,
            &chunk,
            Instant::now() + EARLY_REQUEST_DEADLINE,
        ) {
            Ok(result) if result.observations.is_empty() => true,
            Ok(result) => self
                .events
                .send(PollEvent::EarlyObservations {
                    answered_ms: now_ms(),
                    observations: result.observations,
                })
                .is_ok(),
            Err(error) => {
                // The regular poll reads these queues anyway; its failures are the ones
                // that are warned about.
                Stats::incr(&self.stats.poll_errors);
                log::debug!("early re-poll of {} queue(s) failed: {error}", queues.len());
                true
            }
        }
    }
}

/// Says, at the first hint, what early re-polls may use.
fn log_budget(free_per_minute: f64) {
    if free_per_minute >= 1.0 {
        log::info!(
            "queues that change are re-polled early, within the {free_per_minute:.0} requests per \
             minute the poll leaves free of GENESYS_REQUESTS_PER_MINUTE"
        );
    } else {
        log::warn!(
            "the poll uses all of GENESYS_REQUESTS_PER_MINUTE: queues that change are not \
             re-polled early (counted in early_polls_skipped); a larger budget, a longer \
             POLL_INTERVAL or fewer queues would leave room"
        );
    }
}

/// The hint receiver of a poller that has no notifications: never fires.
#[cfg(test)]
pub fn no_hints() -> Receiver<QueueChanged> {
    crossbeam_channel::never()
}

#[cfg(test)]
mod tests {
    use super::super::client::test_server::{fixture, reply, token, Server};
    use super::super::client::tests::client_for;
    use super::*;

    const SUPPORT: &str = "118fd762-9005-45cf-9fad-a87f37eacbc3";
    const SALES: &str = "a5b4e893-b5b4-4d27-a7de-d6d3b104b490";

    fn early_poller(
        url: &str,
        hints: Receiver<QueueChanged>,
        events: Sender<PollEvent>,
        stop: Receiver<()>,
    ) -> (EarlyPoller, Arc<Stats>) {
        let (client, _, _) = client_for(url);
        let published = SharedQueues::default();
        published.publish(
            [SUPPORT, SALES, "ddbae152-439c-48d1-91ae-150634494c33"]
                .iter()
                .map(|id| {
                    Arc::new(Queue {
                        id: id.to_string(),
                        name: format!("queue {id}"),
                    })
                })
                .collect(),
        );
        let stats = Arc::new(Stats::default());
        let budget = FreeBudget::default();
        budget.set(120.0);
        let poller = EarlyPoller {
            client: Arc::new(client),
            queues: published,
            budget,
            stats: stats.clone(),
            hints,
            events,
            stop,
        };
        (poller, stats)
    }

    fn changed(id: &str) -> QueueChanged {
        QueueChanged {
            queue_id: Arc::from(id),
            at_ms: now_ms(),
        }
    }

    /// Hints for two selected queues (one in upper case) and an unknown one: one request
    /// names the two, its readings go to the aggregator as early observations, and the
    /// thread ends when the hints' sender is gone.
    #[test]
    fn hinted_queues_are_re_polled_in_one_request() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &fixture("observations-response.json")),
        ]);
        let (hint_tx, hints) = crossbeam_channel::bounded(16);
        let (events_tx, events) = crossbeam_channel::bounded(16);
        let (_stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let (poller, stats) = early_poller(&server.url, hints, events_tx, stop);
        let sales_upper = SALES.to_ascii_uppercase();
        for id in [
            SUPPORT,
            "00000000-0000-0000-0000-000000000000",
            &sales_upper,
        ] {
            hint_tx.send(changed(id)).unwrap();
        }
        let before = now_ms();
        let thread = std::thread::spawn(move || poller.run());
        match events.recv_timeout(Duration::from_secs(5)).unwrap() {
            PollEvent::EarlyObservations {
                answered_ms,
                observations,
            } => {
                assert!(answered_ms >= before);
                let mut ids: Vec<&str> = observations.iter().map(|o| o.queue.id.as_str()).collect();
                ids.sort_unstable();
                assert_eq!(ids, vec![SUPPORT, SALES]);
            }
            other => panic!("{other:?}"),
        }
        drop(hint_tx);
        thread.join().unwrap();
        let requests = server.requests();
        let body: serde_json::Value = serde_json::from_str(&requests[1].body).unwrap();
        assert_eq!(body["filter"]["predicates"].as_array().unwrap().len(), 2);
        assert_eq!(stats.early_polls.load(Relaxed), 1);
        assert_eq!(stats.early_polls_skipped.load(Relaxed), 0);
    }

    /// No notifications thread (`NOTIFICATIONS=off`): the thread ends at once, asking
    /// nothing, instead of waking on the disconnected channel forever.
    #[test]
    fn without_a_hint_sender_the_thread_ends_at_once() {
        let (hint_tx, hints) = crossbeam_channel::bounded::<QueueChanged>(1);
        drop(hint_tx);
        let (events_tx, events) = crossbeam_channel::bounded(1);
        let (_stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let (poller, stats) = early_poller("http://127.0.0.1:9", hints, events_tx, stop);
        let thread = std::thread::spawn(move || poller.run());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(thread.is_finished());
        assert!(events.try_recv().is_err());
        assert_eq!(stats.early_polls.load(Relaxed), 0);
    }

    /// The poller stopping ends the thread even while hints may still come.
    #[test]
    fn the_thread_ends_when_the_poller_stops() {
        let (_hint_tx, hints) = crossbeam_channel::bounded::<QueueChanged>(1);
        let (events_tx, _events) = crossbeam_channel::bounded(1);
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let (poller, _) = early_poller("http://127.0.0.1:9", hints, events_tx, stop);
        let thread = std::thread::spawn(move || poller.run());
        drop(stop_tx);
        thread.join().unwrap();
    }
}
