//! Whether the service is healthy, for systemd's watchdog (`WatchdogSec=`): pings must
//! come while the threads are alive and making progress, not only when a poll runs (a
//! wall clock stepped back, a widened poll interval or a long wait for Genesys are not
//! hangs), and must stop when a thread is stuck, so that systemd restarts it.
//!
//! The poller promises, before each thing it waits for, by when it will be back: a slice
//! of its sleep, a poll's deadline, a queue listing's deadline, each plus
//! [`PROGRESS_GRACE`]. The aggregator, whose own loop turns at least every ping period,
//! pings only while that promise holds. Promises are monotonic (`Instant`), so no step
//! of the wall clock can break or fake one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Added to every promise: answers arriving just after a deadline, a busy machine.
pub const PROGRESS_GRACE: Duration = Duration::from_secs(15);

/// The poller's latest promise; see the module documentation.
#[derive(Debug)]
pub struct Liveness {
    base: Instant,
    /// Milliseconds after `base` by which the poller will show progress again;
    /// `u64::MAX` before its first promise.
    due_ms: AtomicU64,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            base: Instant::now(),
            due_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl Liveness {
    /// The poller will show progress again within `within` (plus [`PROGRESS_GRACE`]) of
    /// `now`.
    pub fn promise(&self, now: Instant, within: Duration) {
        let due = now.saturating_duration_since(self.base) + within + PROGRESS_GRACE;
        let due_ms = u64::try_from(due.as_millis()).unwrap_or(u64::MAX - 1);
        self.due_ms.store(due_ms, Ordering::Relaxed);
    }

    /// How long the last promise has been broken at `now`; `None` while it holds.
    pub fn overdue(&self, now: Instant) -> Option<Duration> {
        let due_ms = self.due_ms.load(Ordering::Relaxed);
        if due_ms == u64::MAX {
            return None;
        }
        let now_ms = now.saturating_duration_since(self.base).as_millis();
        (now_ms > u128::from(due_ms))
            .then(|| Duration::from_millis((now_ms - u128::from(due_ms)) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_promise_is_healthy_a_broken_one_is_overdue() {
        let liveness = Liveness::default();
        let start = Instant::now();
        assert_eq!(liveness.overdue(start + Duration::from_secs(3600)), None);
        liveness.promise(start, Duration::from_secs(1));
        let due = start + Duration::from_secs(1) + PROGRESS_GRACE;
        assert_eq!(liveness.overdue(due), None);
        assert_eq!(
            liveness.overdue(due + Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        // A poll with a long deadline is no hang while it lasts.
        liveness.promise(due, Duration::from_secs(54));
        assert_eq!(liveness.overdue(due + Duration::from_secs(60)), None);
    }
}
