//! Request budget planning (API.md §5, §7): how many observation requests a poll needs,
//! how to spread them over the poll interval, and whether the poll interval has to be
//! widened so the OAuth client's requests-per-minute budget is not exceeded.
//!
//! Pure arithmetic, so the plan (and the sentence explaining it) can be tested exactly.

use std::time::Duration;

use super::observations::MAX_QUEUES_PER_REQUEST;

/// Share of the per-minute budget planned polls may use; the rest is for retries.
pub const PLANNED_SHARE: f64 = 0.8;
/// Share of the poll interval over which a poll's requests are spread; the rest of the
/// interval is left for retries of the last requests.
pub const SPREAD_SHARE: f64 = 0.5;
/// The poll interval is never widened beyond this multiple of `POLL_INTERVAL`.
pub const MAX_WIDENING: u32 = 360;

/// How the poller will use its request budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub queues: usize,
    /// Observation requests per poll: ceil(queues / 100).
    pub chunks: usize,
    /// `POLL_INTERVAL` as configured.
    pub configured_interval: Duration,
    /// The interval actually used: `configured_interval` or a multiple of it.
    pub poll_interval: Duration,
    /// Pause between the start of two requests of one poll.
    pub spacing: Duration,
    /// Observation requests per minute with `poll_interval`.
    pub requests_per_minute: f64,
    pub budget_per_minute: u32,
    pub reserved_per_minute: u32,
    /// Why the interval was widened, when it was.
    pub widened: Option<String>,
}

impl Plan {
    /// One line for the start-up log.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "polling {} queues in {} request{} every {}s ({}/min of a budget of {}/min, {}/min reserved for queue refresh and KPIs)",
            thousands(self.queues as u64),
            self.chunks,
            if self.chunks == 1 { "" } else { "s" },
            self.poll_interval.as_secs(),
            per_minute(self.requests_per_minute),
            self.budget_per_minute,
            self.reserved_per_minute,
        );
        if self.chunks > 1 {
            text.push_str(&format!(", {} ms apart", self.spacing.as_millis()));
        }
        if let Some(why) = &self.widened {
            text.push_str("; ");
            text.push_str(why);
        }
        text
    }
}

/// Plans polls of `queue_count` queues every `poll_interval` within `budget_per_minute`
/// requests, of which `reserved_per_minute` are kept for other requests.
pub fn plan(
    queue_count: usize,
    poll_interval: Duration,
    budget_per_minute: u32,
    reserved_per_minute: u32,
) -> Plan {
    let chunks = queue_count.div_ceil(MAX_QUEUES_PER_REQUEST);
    let interval_s = poll_interval.as_secs_f64().max(1.0);
    let rate = |k: u32| chunks as f64 * 60.0 / (interval_s * f64::from(k));
    let available = f64::from(budget_per_minute) * PLANNED_SHARE - f64::from(reserved_per_minute);
    let factor = (1..=MAX_WIDENING)
        .find(|&k| rate(k) <= available)
        .unwrap_or(MAX_WIDENING);
    let effective = poll_interval * factor;
    let widened = (factor > 1).then(|| {
        format!(
            "{} queues at {}s need {} requests per {}s ({}/min), over {}% of {}/min{}: polling every {}s instead",
            thousands(queue_count as u64),
            poll_interval.as_secs(),
            chunks,
            poll_interval.as_secs(),
            per_minute(rate(1)),
            (PLANNED_SHARE * 100.0).round(),
            budget_per_minute,
            if reserved_per_minute > 0 {
                format!(" with {reserved_per_minute}/min reserved")
            } else {
                String::new()
            },
            effective.as_secs(),
        )
    });
    let spacing = if chunks > 1 {
        effective.mul_f64(SPREAD_SHARE) / chunks as u32
    } else {
        Duration::ZERO
    };
    Plan {
        queues: queue_count,
        chunks,
        configured_interval: poll_interval,
        poll_interval: effective,
        spacing,
        requests_per_minute: rate(factor),
        budget_per_minute,
        reserved_per_minute,
        widened,
    }
}

fn per_minute(rate: f64) -> String {
    if (rate - rate.round()).abs() < 0.05 {
        format!("{}", rate.round())
    } else {
        format!("{rate:.1}")
    }
}

/// `12000` → `12,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Requests per minute (rounded up) of something that sends one request per chunk of
/// ≤ 100 queues every `period`: `ceil(Q/100) × 60 s / period`. Used for what the
/// observation poll must leave free: queue-list refreshes and the KPI poll.
pub fn requests_per_minute(queue_count: usize, period: Duration) -> u32 {
    let chunks = queue_count.div_ceil(MAX_QUEUES_PER_REQUEST) as u128;
    let period_ms = period.as_millis().max(1);
    u32::try_from((chunks * 60_000).div_ceil(period_ms)).unwrap_or(u32::MAX)
}

/// Share of the request budget the KPI poll may take: the real-time observations come
/// first, so a KPI poll that would need more is spread out, never the observations.
pub const KPI_BUDGET_SHARE: f64 = 0.2;
/// The KPI poll is never widened beyond this multiple of `KPI_POLL`.
const MAX_KPI_WIDENING: u32 = 60;

/// The KPI poll period in use for `queue_count` queues: `KPI_POLL`, or the smallest
/// multiple of it whose requests fit in [`KPI_BUDGET_SHARE`] of the budget (API.md §9.6:
/// beyond ~3,400 queues, poll aggregates every few minutes). Late data is not lost by
/// widening: each poll re-queries every bucket not yet final.
pub fn kpi_poll(queue_count: usize, configured: Duration, budget_per_minute: u32) -> Duration {
    let allowed = (f64::from(budget_per_minute) * KPI_BUDGET_SHARE)
        .floor()
        .max(1.0) as u32;
    (1..=MAX_KPI_WIDENING)
        .map(|factor| configured * factor)
        .find(|poll| requests_per_minute(queue_count, *poll) <= allowed)
        .unwrap_or(configured * MAX_KPI_WIDENING)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_S: Duration = Duration::from_secs(10);

    #[test]
    fn twelve_hundred_queues_fit_in_twelve_requests_per_poll() {
        let p = plan(1200, TEN_S, 300, 0);
        assert_eq!(p.chunks, 12);
        assert_eq!(p.poll_interval, TEN_S);
        assert_eq!(p.requests_per_minute, 72.0);
        assert_eq!(p.widened, None);
        assert_eq!(
            p.spacing,
            Duration::from_millis(416) + Duration::from_nanos(666_666)
        );
        assert_eq!(
            p.summary(),
            "polling 1,200 queues in 12 requests every 10s (72/min of a budget of 300/min, 0/min reserved for queue refresh and KPIs), 416 ms apart"
        );
    }

    #[test]
    fn a_partial_chunk_counts_as_a_request() {
        assert_eq!(plan(1, TEN_S, 300, 0).chunks, 1);
        assert_eq!(plan(100, TEN_S, 300, 0).chunks, 1);
        assert_eq!(plan(101, TEN_S, 300, 0).chunks, 2);
        let none = plan(0, TEN_S, 300, 0);
        assert_eq!(
            (none.chunks, none.spacing, none.poll_interval),
            (0, Duration::ZERO, TEN_S)
        );
        assert_eq!(plan(50, TEN_S, 300, 0).spacing, Duration::ZERO);
    }

    #[test]
    fn the_interval_widens_to_the_smallest_multiple_that_fits() {
        let p = plan(12_000, TEN_S, 300, 0);
        assert_eq!(p.chunks, 120);
        assert_eq!(p.poll_interval, Duration::from_secs(30));
        assert_eq!(p.requests_per_minute, 240.0);
        assert_eq!(
            p.widened.as_deref(),
            Some("12,000 queues at 10s need 120 requests per 10s (720/min), over 80% of 300/min: polling every 30s instead")
        );
        assert_eq!(p.spacing, Duration::from_millis(125));
        let reserved = plan(12_000, TEN_S, 300, 40);
        assert_eq!(reserved.poll_interval, Duration::from_secs(40));
        assert!(reserved.widened.unwrap().contains("with 40/min reserved"));
    }

    #[test]
    fn exactly_eighty_percent_still_fits() {
        // 40 requests per 10 s = 240/min = 80 % of 300
        assert_eq!(plan(4000, TEN_S, 300, 0).poll_interval, TEN_S);
        assert_eq!(
            plan(4001, TEN_S, 300, 0).poll_interval,
            Duration::from_secs(20)
        );
    }

    #[test]
    fn an_exhausted_budget_caps_the_widening() {
        let p = plan(500, TEN_S, 300, 300);
        assert_eq!(p.poll_interval, TEN_S * MAX_WIDENING);
        assert!(p.widened.is_some());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
    #[test]
    fn requests_per_minute_rounds_up_per_chunk() {
        let minute = Duration::from_secs(60);
        assert_eq!(requests_per_minute(0, minute), 0);
        assert_eq!(requests_per_minute(1, minute), 1);
        assert_eq!(requests_per_minute(100, minute), 1);
        assert_eq!(requests_per_minute(101, minute), 2);
        assert_eq!(requests_per_minute(3400, minute), 34);
        assert_eq!(requests_per_minute(250, Duration::from_secs(30)), 6);
        assert_eq!(requests_per_minute(250, Duration::from_secs(300)), 1);
        assert_eq!(requests_per_minute(1000, Duration::from_secs(300)), 2);
    }

    #[test]
    fn the_kpi_poll_widens_to_stay_within_its_share_of_the_budget() {
        let minute = Duration::from_secs(60);
        assert_eq!(
            kpi_poll(3_000, minute, 300),
            minute,
            "30/min fits in 60/min"
        );
        assert_eq!(kpi_poll(6_000, minute, 300), minute, "60/min just fits");
        assert_eq!(
            kpi_poll(10_000, minute, 300),
            2 * minute,
            "100/min does not: every 2m = 50/min"
        );
        assert_eq!(
            kpi_poll(3_000, Duration::from_secs(5), 300),
            Duration::from_secs(30)
        );
        assert_eq!(
            kpi_poll(100, Duration::from_secs(5), 300),
            Duration::from_secs(5)
        );
        assert_eq!(kpi_poll(1_000_000, minute, 1), 60 * minute, "capped");
    }
}
