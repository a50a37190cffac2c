//! The heartbeat watchdog: a socket that has said nothing for twice the server's heartbeat
//! period is dead, even if TCP has not noticed. The period is learned from the gap between
//! two heartbeats (Genesys sends one about every 30 s; the simulator as configured), so
//! the watchdog is as quick as the server's heartbeat allows. Pure: time is passed in.

/// Assumed period until two heartbeats have been seen.
pub const DEFAULT_PERIOD_MS: u64 = 30_000;
/// Bounds of a learned period: a doubled heartbeat must not make the watchdog twitchy, a
/// late one must not make it blind.
const PERIOD_RANGE_MS: (u64, u64) = (1_000, 120_000);

#[derive(Debug, Clone)]
pub struct Watchdog {
    period_ms: u64,
    last_message_ms: u64,
    last_heartbeat_ms: Option<u64>,
}

impl Watchdog {
    pub fn new(now_ms: u64) -> Watchdog {
        Watchdog {
            period_ms: DEFAULT_PERIOD_MS,
            last_message_ms: now_ms,
            last_heartbeat_ms: None,
        }
    }

    /// A socket was (re)opened: the silence starts now; the learned period is kept.
    pub fn connected(&mut self, now_ms: u64) {
        self.last_message_ms = now_ms;
        self.last_heartbeat_ms = None;
    }

    /// Any message arrived.
    pub fn message(&mut self, now_ms: u64) {
        self.last_message_ms = self.last_message_ms.max(now_ms);
    }

    /// A heartbeat arrived: the gap since the previous one is the period.
    pub fn heartbeat(&mut self, now_ms: u64) {
        self.message(now_ms);
        if let Some(previous) = self.last_heartbeat_ms {
            let (low, high) = PERIOD_RANGE_MS;
            self.period_ms = now_ms.saturating_sub(previous).clamp(low, high);
        }
        self.last_heartbeat_ms = Some(now_ms);
    }

    /// How long a silence is tolerated: twice the period.
    pub fn limit_ms(&self) -> u64 {
        2 * self.period_ms
    }

    /// True when nothing has arrived for longer than [`Watchdog::limit_ms`].
    pub fn expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_message_ms) > self.limit_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_beyond_twice_the_default_period_expires() {
        let mut w = Watchdog::new(0);
        assert!(!w.expired(60_000));
        assert!(w.expired(60_001));
        w.message(50_000);
        assert!(!w.expired(110_000));
    }

    #[test]
    fn the_period_is_learned_from_heartbeats_and_bounded() {
        let mut w = Watchdog::new(0);
        w.heartbeat(1_000);
        w.heartbeat(3_000);
        assert_eq!(w.limit_ms(), 4_000);
        assert!(!w.expired(7_000));
        assert!(w.expired(7_001));
        w.heartbeat(3_010);
        assert_eq!(w.limit_ms(), 2_000, "never below 1 s");
        w.connected(10_000);
        assert!(!w.expired(12_000));
        w.heartbeat(20_000);
        w.heartbeat(1_000_000);
        assert_eq!(w.limit_ms(), 240_000, "never above 120 s");
    }
}
