//! Which queues to re-poll early, and when: the rules behind the notifications' promise
//! of a wall fresh to the second, as pure logic with the time passed in.
//!
//! A hint ([`crate::model::QueueChanged`]) marks a selected queue dirty. A request of
//! the ordinary observations query then carries every queue dirty at that moment (up to
//! [`MAX_QUEUES_PER_REQUEST`] ids; more dirty queues make more requests), oldest change
//! first. Three limits hold whatever the hints say:
//! - a queue is re-polled early at most once per [`MIN_REPOLL_GAP_MS`] (a change during
//!   that second waits for its end, nothing is lost);
//! - requests come out of a token bucket filled at the rate the regular poll plan leaves
//!   free ([`super::budget::PollPlan::free_per_minute`]), holding one second's worth (at
//!   least one request), so the request budget is never exceeded;
//! - a change that could not be re-polled within [`MAX_EARLY_DELAY_MS`] (the bucket was
//!   empty) is left to the regular poll and counted (`early_polls_skipped`): freshness
//!   degrades to the poll interval, nothing else does.

use std::collections::HashMap;
use std::sync::Arc;

use super::observations::MAX_QUEUES_PER_REQUEST;

/// Shortest time between two early re-polls of one queue (Genesys publishes a topic at
/// most once a second).
pub const MIN_REPOLL_GAP_MS: u64 = 1_000;
/// A change waits at most this long for a request before it is left to the regular
/// poll: twice the per-queue gap, the freshness the notifications aim at.
pub const MAX_EARLY_DELAY_MS: u64 = 2_000;
/// The bucket holds this much time's worth of requests (at least one request).
const BURST_MS: f64 = 1_000.0;

/// Requests allowed at a steady rate with a small burst. Pure: time is passed in.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    per_ms: f64,
    capacity: f64,
    tokens: f64,
    at_ms: u64,
}

impl TokenBucket {
    /// A full bucket allowing `per_minute` requests per minute.
    pub fn new(per_minute: f64, now_ms: u64) -> Self {
        let mut bucket = TokenBucket {
            per_ms: 0.0,
            capacity: 0.0,
            tokens: 0.0,
            at_ms: now_ms,
        };
        bucket.set_rate(per_minute, now_ms);
        bucket.tokens = bucket.capacity;
        bucket
    }

    /// A new rate (the plan changed); the tokens held are kept, up to the new capacity.
    /// A rate of zero (or less, or not a number) allows nothing.
    pub fn set_rate(&mut self, per_minute: f64, now_ms: u64) {
        self.refill(now_ms);
        self.per_ms = if per_minute.is_finite() && per_minute > 0.0 {
            per_minute / 60_000.0
        } else {
            0.0
        };
        self.capacity = if self.per_ms > 0.0 {
            (self.per_ms * BURST_MS).max(1.0)
        } else {
            0.0
        };
        self.tokens = self.tokens.min(self.capacity);
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64;
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        self.at_ms = self.at_ms.max(now_ms);
    }

    /// Takes one request's token if there is one.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When the next token will be there (`None`: never, the rate is zero).
    pub fn next_token_ms(&self, now_ms: u64) -> Option<u64> {
        let mut bucket = self.clone();
        bucket.refill(now_ms);
        if bucket.tokens >= 1.0 {
            return Some(now_ms);
        }
        if bucket.per_ms <= 0.0 {
            return None;
        }
        let wait = ((1.0 - bucket.tokens) / bucket.per_ms).ceil() as u64;
        Some(now_ms.saturating_add(wait.max(1)))
    }
}

/// The dirty queues and when each was last re-polled early.
#[derive(Debug, Clone)]
pub struct DirtySet {
    /// Queue id → when its oldest change not yet re-polled was hinted.
    dirty: HashMap<Arc<str>, u64>,
    /// Queue id → when it was last re-polled early (entries older than the gap pruned).
    last_polled: HashMap<Arc<str>, u64>,
    bucket: TokenBucket,
    skipped: u64,
}

impl DirtySet {
    /// An empty set whose requests may use `per_minute` requests per minute.
    pub fn new(per_minute: f64, now_ms: u64) -> Self {
        DirtySet {
            dirty: HashMap::new(),
            last_polled: HashMap::new(),
            bucket: TokenBucket::new(per_minute, now_ms),
            skipped: 0,
        }
    }

    /// The budget left free by the regular poll changed.
    pub fn set_budget(&mut self, per_minute: f64, now_ms: u64) {
        self.bucket.set_rate(per_minute, now_ms);
    }

    /// A change of the (selected: the caller checks) queue `id` hinted at `now_ms`.
    pub fn mark(&mut self, id: &Arc<str>, now_ms: u64) {
        self.dirty.entry(Arc::clone(id)).or_insert(now_ms);
    }

    /// Forgets the queues `keep` says are no longer selected.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.dirty.retain(|id, _| keep(id));
        self.last_polled.retain(|id, _| keep(id));
    }

    /// The next request due at `now_ms`: the ids of every dirty queue allowed now (oldest
    /// change first, at most [`MAX_QUEUES_PER_REQUEST`]), its token taken and the queues
    /// marked as re-polled. `None` when nothing is due or the bucket is empty. Call it
    /// again for the next request.
    pub fn next_request(&mut self, now_ms: u64) -> Option<Vec<Arc<str>>> {
        self.expire(now_ms);
        let mut due: Vec<(u64, &Arc<str>)> = self
            .dirty
            .iter()
            .filter(|(id, _)| self.allowed_at(id) <= now_ms)
            .map(|(id, since)| (*since, id))
            .collect();
        if due.is_empty() || !self.bucket.try_take(now_ms) {
            return None;
        }
        due.sort_unstable();
        let ids: Vec<Arc<str>> = due
            .into_iter()
            .take(MAX_QUEUES_PER_REQUEST)
            .map(|(_, id)| Arc::clone(id))
            .collect();
        for id in &ids {
            self.dirty.remove(id);
            self.last_polled.insert(Arc::clone(id), now_ms);
        }
        Some(ids)
    }

    /// The earliest moment after `now_ms` at which [`DirtySet::next_request`] may give
    /// something or a change may be left to the regular poll; `None` when nothing is dirty.
    pub fn wake_at(&self, now_ms: u64) -> Option<u64> {
        let allowed = self
            .dirty
            .keys()
            .map(|id| self.allowed_at(id).max(now_ms))
            .min()?;
        let token = self.bucket.next_token_ms(now_ms).unwrap_or(u64::MAX);
        let expiry = self
            .dirty
            .values()
            .map(|since| since.saturating_add(MAX_EARLY_DELAY_MS + 1))
            .min()
            .unwrap_or(u64::MAX);
        Some(allowed.max(token).min(expiry).max(now_ms))
    }

    /// Changes left to the regular poll since the last call.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// When `id` may be re-polled early again.
    fn allowed_at(&self, id: &str) -> u64 {
        self.last_polled
            .get(id)
            .map_or(0, |at| at.saturating_add(MIN_REPOLL_GAP_MS))
    }

    /// Leaves the changes that waited too long to the regular poll; forgets re-polls too
    /// old to matter.
    fn expire(&mut self, now_ms: u64) {
        let before = self.dirty.len();
        self.dirty
            .retain(|_, since| now_ms.saturating_sub(*since) <= MAX_EARLY_DELAY_MS);
        self.skipped += (before - self.dirty.len()) as u64;
        self.last_polled
            .retain(|_, at| now_ms.saturating_sub(*at) < MIN_REPOLL_GAP_MS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_795_981_785_000;

    fn id(n: usize) -> Arc<str> {
        Arc::from(format!("{n:032x}"))
    }

    #[test]
    fn one_request_carries_every_dirty_queue() {
        let mut set = DirtySet::new(120.0, T0);
        for n in 0..5 {
            set.mark(&id(n), T0 + n as u64);
        }
        let ids = set.next_request(T0 + 10).unwrap();
        assert_eq!(ids, (0..5).map(id).collect::<Vec<_>>(), "oldest first");
        assert!(set.dirty.is_empty());
        assert_eq!(set.next_request(T0 + 10), None);
    }

    #[test]
    fn more_than_a_hundred_dirty_queues_make_more_requests() {
        let mut set = DirtySet::new(600.0, T0);
        for n in 0..250 {
            set.mark(&id(n), T0);
        }
        let sizes: Vec<usize> = std::iter::from_fn(|| set.next_request(T0))
            .map(|ids| ids.len())
            .collect();
        assert_eq!(sizes, vec![100, 100, 50]);
    }

    #[test]
    fn a_queue_is_re_polled_at_most_once_a_second_and_its_next_change_waits() {
        let mut set = DirtySet::new(6_000.0, T0);
        set.mark(&id(1), T0);
        assert!(set.next_request(T0).is_some());
        set.mark(&id(1), T0 + 200);
        assert_eq!(set.next_request(T0 + 200), None);
        assert_eq!(set.wake_at(T0 + 200), Some(T0 + 1_000));
        assert_eq!(set.next_request(T0 + 999), None);
        assert_eq!(set.next_request(T0 + 1_000), Some(vec![id(1)]));
        assert_eq!(set.take_skipped(), 0, "nothing lost");
    }

    #[test]
    fn a_change_the_budget_cannot_carry_is_left_to_the_regular_poll() {
        // 30 requests a minute: one every 2 s, a burst of one.
        let mut set = DirtySet::new(30.0, T0);
        set.mark(&id(1), T0);
        assert!(set.next_request(T0).is_some());
        set.mark(&id(2), T0 + 1);
        assert_eq!(set.next_request(T0 + 1), None, "no token");
        assert_eq!(set.wake_at(T0 + 1), Some(T0 + 2_000));
        assert_eq!(set.next_request(T0 + 2_000), Some(vec![id(2)]));
        set.mark(&id(3), T0 + 2_001);
        assert_eq!(set.next_request(T0 + 4_002), None, "waited too long");
        assert_eq!(set.take_skipped(), 1);
        assert_eq!(set.take_skipped(), 0);
        assert!(set.dirty.is_empty());
    }

    #[test]
    fn no_budget_at_all_leaves_every_change_to_the_regular_poll() {
        let mut set = DirtySet::new(0.0, T0);
        set.mark(&id(1), T0);
        assert_eq!(set.next_request(T0), None);
        assert_eq!(set.wake_at(T0), Some(T0 + MAX_EARLY_DELAY_MS + 1));
        assert_eq!(set.next_request(T0 + MAX_EARLY_DELAY_MS + 1), None);
        assert_eq!(set.take_skipped(), 1);
    }

    #[test]
    fn queues_no_longer_selected_are_forgotten() {
        let mut set = DirtySet::new(60.0, T0);
        set.mark(&id(1), T0);
        set.mark(&id(2), T0);
        let keep = id(2);
        set.retain(|queue| queue == &*keep);
        assert_eq!(set.next_request(T0), Some(vec![id(2)]));
    }

    #[derive(Debug, Clone)]
    enum Step {
        Hint(usize),
        Advance(u64),
        Poll,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0usize..300).prop_map(Step::Hint),
            (0u64..1_500).prop_map(Step::Advance),
            Just(Step::Poll),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever hints come, in any order and number: no queue is re-polled early twice
        /// within a second, no request names more than 100 queues or a queue twice, the
        /// requests of any minute stay within the rate plus one burst, and every change is
        /// either re-polled or counted as left to the regular poll.
        #[test]
        fn no_hints_can_break_the_limits(
            steps in proptest::collection::vec(step(), 0..400),
            per_minute in 0.0f64..600.0,
        ) {
            let mut set = DirtySet::new(per_minute, T0);
            let mut now = T0;
            let mut last: HashMap<Arc<str>, u64> = HashMap::new();
            let mut requests: Vec<u64> = Vec::new();
            let mut hinted_unserved: std::collections::HashSet<Arc<str>> = Default::default();
            let mut skipped = 0;
            for step in steps {
                match step {
                    Step::Hint(n) => {
                        set.mark(&id(n), now);
                        hinted_unserved.insert(id(n));
                    }
                    Step::Advance(ms) => now += ms,
                    Step::Poll => {
                        if let Some(wake) = set.wake_at(now) {
                            prop_assert!(wake >= now);
                        }
                        while let Some(ids) = set.next_request(now) {
                            prop_assert!(!ids.is_empty() && ids.len() <= MAX_QUEUES_PER_REQUEST);
                            let unique: std::collections::HashSet<_> = ids.iter().collect();
                            prop_assert_eq!(unique.len(), ids.len());
                            requests.push(now);
                            for queue in ids {
                                if let Some(before) = last.insert(queue.clone(), now) {
                                    prop_assert!(now - before >= MIN_REPOLL_GAP_MS);
                                }
                                hinted_unserved.remove(&queue);
                            }
                        }
                        skipped += set.take_skipped();
                    }
                }
            }
            let capacity = (per_minute / 60.0).max(1.0);
            for (i, start) in requests.iter().enumerate() {
                let in_minute = requests[i..].iter().take_while(|t| **t < start + 60_000).count();
                prop_assert!(in_minute as f64 <= per_minute + capacity + 1e-9,
                    "{in_minute} requests in a minute at {per_minute}/min");
            }
            // Every change still waiting is in the set or was counted.
            prop_assert!(hinted_unserved.len() as u64 <= skipped + set.dirty.len() as u64);
        }
    }

    #[test]
    fn the_bucket_refills_at_its_rate_and_holds_one_second() {
        let mut bucket = TokenBucket::new(120.0, T0);
        assert!(bucket.try_take(T0));
        assert!(bucket.try_take(T0), "two a second: a burst of two");
        assert!(!bucket.try_take(T0));
        assert_eq!(bucket.next_token_ms(T0), Some(T0 + 500));
        assert!(bucket.try_take(T0 + 500));
        bucket.set_rate(0.0, T0 + 600);
        assert_eq!(bucket.next_token_ms(T0 + 600), None);
        assert!(!bucket.try_take(T0 + 60_000));
        bucket.set_rate(f64::NAN, T0 + 60_000);
        assert!(!bucket.try_take(T0 + 120_000));
    }
}
