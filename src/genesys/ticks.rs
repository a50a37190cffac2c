//! The observation poll's clock: a tick is a multiple of the poll interval on the UTC
//! clock, and a poll that ran late skips the ticks it missed rather than queueing them.
//! Pure (the time is a value), so late polls are tested without waiting.

/// The first tick at or after `now_ms`: a multiple of `interval_ms` since the epoch.
pub fn tick_at_or_after(now_ms: u64, interval_ms: u64) -> u64 {
    let interval_ms = interval_ms.max(1);
    now_ms.div_ceil(interval_ms) * interval_ms
}

/// The tick after `done_tick` that can still be polled at `now_ms`, and how many ticks in
/// between are skipped because the poll of `done_tick` ran late.
pub fn following_tick(done_tick: u64, now_ms: u64, interval_ms: u64) -> (u64, u64) {
    let interval_ms = interval_ms.max(1);
    let next = done_tick + interval_ms;
    let reachable = tick_at_or_after(now_ms, interval_ms).max(next);
    (reachable, (reachable - next) / interval_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_aligned_to_the_utc_clock() {
        assert_eq!(
            tick_at_or_after(1_748_874_610_000, 10_000),
            1_748_874_610_000
        );
        assert_eq!(
            tick_at_or_after(1_748_874_610_001, 10_000),
            1_748_874_620_000
        );
        assert_eq!(
            tick_at_or_after(1_748_874_619_999, 10_000),
            1_748_874_620_000
        );
        assert_eq!(tick_at_or_after(59_000, 60_000), 60_000);
    }

    #[test]
    fn overdue_ticks_are_skipped_not_queued() {
        // finished in time: the next tick follows
        assert_eq!(following_tick(100_000, 104_000, 10_000), (110_000, 0));
        // finished exactly at the next tick: still polled
        assert_eq!(following_tick(100_000, 110_000, 10_000), (110_000, 0));
        // ran 25 s: 110 and 120 are skipped, 130 is next
        assert_eq!(following_tick(100_000, 125_000, 10_000), (130_000, 2));
        assert_eq!(following_tick(100_000, 110_001, 10_000), (120_000, 1));
    }
}
