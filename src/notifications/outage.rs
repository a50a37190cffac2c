//! What happens while notifications cannot be used: how long to wait before the next
//! attempt, and how loudly to say so. With `NOTIFICATIONS=auto` the first failure that
//! retrying soon cannot fix (403 `missing.permissions`, another 4xx, a refused websocket,
//! TLS) is one warning and later ones are quiet; with `on` every such failure warns, and
//! transient ones from the third in a row.
//! Either way polling goes on, and the next attempt comes at most [`MAX_DELAY`] later.

use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::Notifications;

/// Longest wait between attempts: "retried every few minutes".
pub const MAX_DELAY: Duration = Duration::from_secs(300);
/// With `NOTIFICATIONS=on`, transient failures warn from this many in a row (a socket
/// that one reconnect brings back is not worth a warning).
const LOUD_AFTER: u32 = 3;
/// First wait after a transient failure; doubled per failure in a row.
const FIRST_DELAY: Duration = Duration::from_secs(1);

/// How a failure is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// May pass by itself (network, 5xx, 429, a dropped socket): back off from 1 s.
    Transient,
    /// Will not pass by retrying soon (permissions, 4xx, refused websocket, TLS).
    Lasting,
}

/// The wait before attempt `failures + 1` (1-based count of failures in a row), with up
/// to +25 % jitter (`jitter` in `[0, 1)`), never over [`MAX_DELAY`].
pub fn delay(kind: Kind, failures: u32, jitter: f64) -> Duration {
    let base = match kind {
        Kind::Lasting => MAX_DELAY,
        Kind::Transient => FIRST_DELAY.saturating_mul(1u32 << failures.saturating_sub(1).min(16)),
    };
    base.mul_f64(1.0 + 0.25 * jitter.clamp(0.0, 1.0))
        .min(MAX_DELAY)
}

/// The one voice of every notifications thread about failures, so `auto` warns once per
/// process, not once per channel.
#[derive(Debug)]
pub struct Outage {
    mode: Notifications,
    reported: AtomicBool,
}

impl Outage {
    pub fn new(mode: Notifications) -> Outage {
        Outage {
            mode,
            reported: AtomicBool::new(false),
        }
    }

    /// A failed attempt, the `failures`th in a row; `retry_in` is when the next one comes.
    pub fn failed(&self, kind: Kind, failures: u32, what: &dyn Display, retry_in: Duration) {
        let retry = crate::duration::format(Duration::from_secs(retry_in.as_secs().max(1)));
        let loud = match self.mode {
            Notifications::On => kind == Kind::Lasting || failures >= LOUD_AFTER,
            _ => kind == Kind::Lasting && !self.reported.swap(true, Ordering::Relaxed),
        };
        if !loud {
            log::debug!("notifications: {what}; next attempt in {retry}");
            return;
        }
        self.reported.store(true, Ordering::Relaxed);
        if self.mode == Notifications::On {
            log::warn!(
                "notifications cannot be used (NOTIFICATIONS=on): {what}; polling alone, next attempt in {retry}"
            );
        } else {
            log::warn!(
                "notifications unavailable: {what}; polling alone (as with NOTIFICATIONS=off), retrying every {}",
                crate::duration::format(MAX_DELAY)
            );
        }
    }

    /// An attempt worked after failures: said once, if the failures were.
    pub fn recovered(&self) {
        if self.reported.swap(false, Ordering::Relaxed) {
            log::info!("notifications work again: changed queues are re-polled early");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_failures_back_off_to_five_minutes_lasting_ones_wait_five_minutes() {
        assert_eq!(delay(Kind::Transient, 1, 0.0), Duration::from_secs(1));
        assert_eq!(delay(Kind::Transient, 4, 0.0), Duration::from_secs(8));
        assert_eq!(delay(Kind::Transient, 40, 0.99), MAX_DELAY);
        assert_eq!(delay(Kind::Lasting, 1, 0.0), MAX_DELAY);
        let jittered = delay(Kind::Transient, 2, 0.5);
        assert_eq!(jittered, Duration::from_millis(2_250));
    }
}
