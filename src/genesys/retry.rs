//! The client's retry arithmetic, apart from any HTTP: how long to back off, what a 429's
//! message says about the wait, and when the `inin-ratelimit-*` window asks to pace
//! (docs/genesys-api.md#retry-policy, docs/genesys-api.md#rate-limits). Pure, with time
//! passed in, so it is tested without a server.

use std::time::{Duration, Instant};

/// First wait after a failed attempt; doubles per attempt (0.5 s, 1 s, 2 s, ...).
pub const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest single backoff wait.
pub const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// At most this many attempts per call, whatever the deadline (every loop is bounded).
pub const MAX_ATTEMPTS: u32 = 6;
/// A 429 asking for a longer wait than this fails the call (as the official Go SDK does).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(180);
/// An `inin-ratelimit-reset` further away than this is read as this (a wrong header
/// never holds requests back for longer).
const MAX_RATE_RESET_SECONDS: u64 = 3600;
/// Pace when fewer than this share (in 1/1000) of `inin-ratelimit-allowed` is left.
const PACING_HEADROOM_PER_MILLE: u32 = 20;

/// The number in `Retry the request in [17] seconds` (docs/genesys-api.md#rate-limits), if
/// any.
pub fn seconds_in_message(message: &str) -> Option<u64> {
    let mut rest = message;
    while let Some((_, after)) = rest.split_once('[') {
        let (number, tail) = after.split_once(']')?;
        if tail.trim_start().starts_with("second") {
            if let Ok(n) = number.trim().parse() {
                return Some(n);
            }
        }
        rest = tail;
    }
    None
}

/// The seconds a `Retry-After` header asks to wait (RFC 9110, section 10.2.3): a number
/// of seconds, or an HTTP date, counted from the answer's own `Date` when it has one (so
/// no clock skew enters) and else from `now_ms` (Genesys's clock, epoch ms). A date
/// already past is 0 s; anything else unreadable is `None`.
pub(crate) fn retry_after_seconds(value: &str, date_ms: Option<u64>, now_ms: u64) -> Option<u64> {
    let value = value.trim();
    if let Ok(seconds) = value.parse() {
        return Some(seconds);
    }
    let at_ms = crate::time::parse_http_date(value)?;
    Some(
        at_ms
            .saturating_sub(date_ms.unwrap_or(now_ms))
            .div_ceil(1000),
    )
}

/// The seconds a 429 asks to wait: `Retry-After`, else `inin-ratelimit-reset`, else the
/// `[N] seconds` of the message; `None` leaves the wait to the backoff.
pub(crate) fn rate_limit_seconds(
    retry_after: Option<u64>,
    ratelimit_reset: Option<u64>,
    message: &str,
) -> Option<u64> {
    retry_after
        .or(ratelimit_reset)
        .or_else(|| seconds_in_message(message))
}

/// Exponential backoff for retry number `attempt` (1-based) with up to +25 % jitter.
pub fn backoff(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    doubled
        .min(BACKOFF_MAX)
        .mul_f64(1.0 + 0.25 * jitter.clamp(0.0, 1.0))
}

/// A number in [0, 1) that differs between calls; good enough to de-synchronise retries.
pub(crate) fn jitter() -> f64 {
    crate::jitter::shared()
}

/// What the `inin-ratelimit-*` headers of the last answer said.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateWindow {
    pub allowed: u32,
    pub count: u32,
    pub reset_at: Option<Instant>,
}

impl RateWindow {
    /// The window the `inin-ratelimit-allowed`, `-count` and `-reset` headers of an answer
    /// received at `now` describe; `None` unless both counts were sent.
    pub(crate) fn from_headers(
        allowed: Option<u64>,
        count: Option<u64>,
        reset: Option<u64>,
        now: Instant,
    ) -> Option<RateWindow> {
        let (allowed, count) = (allowed?, count?);
        Some(RateWindow {
            allowed: u32::try_from(allowed).unwrap_or(u32::MAX),
            count: u32::try_from(count).unwrap_or(u32::MAX),
            reset_at: reset.map(|s| now + Duration::from_secs(s.min(MAX_RATE_RESET_SECONDS))),
        })
    }

    /// How long to hold the next request back: until the window resets when the count is
    /// within 2 % (at least one request) of the allowance.
    pub fn pacing_delay(&self, now: Instant) -> Option<Duration> {
        if self.allowed == 0 {
            return None;
        }
        let headroom = (self.allowed * PACING_HEADROOM_PER_MILLE / 1000).max(1);
        let reset_at = self.reset_at?;
        (self.count.saturating_add(headroom) > self.allowed && reset_at > now)
            .then(|| reset_at - now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_waits_for_the_window_reset_when_nearly_used_up() {
        let now = Instant::now();
        let reset_at = Some(now + Duration::from_secs(20));
        let window = |count| RateWindow {
            allowed: 300,
            count,
            reset_at,
        };
        assert_eq!(window(200).pacing_delay(now), None);
        assert_eq!(window(293).pacing_delay(now), None);
        assert_eq!(window(295).pacing_delay(now), Some(Duration::from_secs(20)));
        assert_eq!(
            window(300).pacing_delay(now + Duration::from_secs(20)),
            None
        );
        assert_eq!(RateWindow::default().pacing_delay(now), None);
    }

    #[test]
    fn the_headers_make_a_window_only_with_both_counts() {
        let now = Instant::now();
        assert_eq!(
            RateWindow::from_headers(Some(300), Some(12), Some(30), now),
            Some(RateWindow {
                allowed: 300,
                count: 12,
                reset_at: Some(now + Duration::from_secs(30)),
            })
        );
        let far = RateWindow::from_headers(Some(u64::MAX), Some(1), Some(u64::MAX), now);
        assert_eq!(far.map(|w| w.allowed), Some(u32::MAX));
        assert_eq!(
            far.and_then(|w| w.reset_at),
            Some(now + Duration::from_secs(3600))
        );
        assert_eq!(
            RateWindow::from_headers(Some(300), None, Some(30), now),
            None
        );
        assert_eq!(RateWindow::from_headers(None, Some(3), None, now), None);
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date_counted_from_the_answer_date() {
        let date = 1_796_612_400_000; // Mon, 07 Dec 2026 03:00:00 GMT
        assert_eq!(retry_after_seconds("20", None, 0), Some(20));
        assert_eq!(retry_after_seconds(" 7 ", Some(date), date), Some(7));
        let later = "Mon, 07 Dec 2026 03:00:20 GMT";
        assert_eq!(
            retry_after_seconds(later, Some(date), date + 300_000),
            Some(20)
        );
        assert_eq!(retry_after_seconds(later, None, date + 500), Some(20));
        assert_eq!(
            retry_after_seconds("Monday, 07-Dec-26 03:00:20 GMT", Some(date), 0),
            Some(20)
        );
        assert_eq!(
            retry_after_seconds("Mon Dec  7 03:00:20 2026", Some(date), 0),
            Some(20)
        );
        assert_eq!(retry_after_seconds(later, Some(date + 60_000), 0), Some(0));
        assert_eq!(retry_after_seconds("soon", Some(date), date), None);
        assert_eq!(retry_after_seconds("-5", Some(date), date), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any header text: a wait or nothing, never a panic; a formatted date in the
        /// future is that many seconds away.
        #[test]
        fn any_retry_after_reads_or_is_refused(
            text in "\\PC{0,40}",
            date in proptest::option::of(0u64..4_000_000_000_000),
            now in 0u64..4_000_000_000_000,
        ) {
            let _ = retry_after_seconds(&text, date, now);
        }

        #[test]
        fn a_formatted_retry_date_waits_its_seconds(
            date_s in 0u64..4_000_000_000,
            wait in 0u64..100_000,
        ) {
            let header = crate::time::format_http_date((date_s + wait) * 1000);
            proptest::prop_assert_eq!(
                retry_after_seconds(&header, Some(date_s * 1000), 0),
                Some(wait)
            );
        }
    }

    #[test]
    fn a_429_wait_prefers_retry_after_then_the_reset_then_the_message() {
        let message = "Retry the request in [17] seconds";
        assert_eq!(rate_limit_seconds(Some(5), Some(9), message), Some(5));
        assert_eq!(rate_limit_seconds(None, Some(9), message), Some(9));
        assert_eq!(rate_limit_seconds(None, None, message), Some(17));
        assert_eq!(rate_limit_seconds(None, None, "slow down"), None);
    }

    #[test]
    fn retry_after_from_the_message() {
        assert_eq!(
            seconds_in_message(
                "Rate limit exceeded the maximum. Retry the request in [17] seconds"
            ),
            Some(17)
        );
        assert_eq!(
            seconds_in_message(
                "Rate limit exceeded the maximum [300] requests within [60] seconds"
            ),
            Some(60)
        );
        assert_eq!(seconds_in_message("no number"), None);
        assert_eq!(seconds_in_message("[x] seconds"), None);
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_millis(500);
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(base, 3, 0.0), Duration::from_secs(2));
        assert_eq!(backoff(base, 30, 0.0), BACKOFF_MAX);
        assert_eq!(backoff(base, 2, 1.0), Duration::from_millis(1250));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
