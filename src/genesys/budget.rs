//! Request budget planning (docs/genesys-api.md#request-budget,
//! docs/genesys-api.md#rate-limits): how many observation requests a poll needs, how to
//! spread them over the poll interval, and whether the poll interval has to be widened so
//! the OAuth client's requests-per-minute budget is not exceeded.
//!
//! A poll's requests are spread, but never so far that a retry of the last one (a 429's
//! `Retry-After: 1`, a 5xx backoff) no longer fits before the poll's deadline: a retry
//! that does not fit loses that chunk's sample. Up to [`REQUESTS_IN_FLIGHT`] requests run
//! at once, so one waiting out its retry does not hold the following ones back.
//!
//! Pure arithmetic, so the plan (and the sentence explaining it) can be tested exactly.

use std::time::Duration;

use super::observations::MAX_QUEUES_PER_REQUEST;

/// Share of the per-minute budget planned polls may use; the rest is for retries.
pub const PLANNED_SHARE: f64 = 0.8;
/// Share of the poll interval over which a poll's requests are spread at most; the rest
/// of the interval is left for retries of the last requests.
pub const SPREAD_SHARE: f64 = 0.5;
/// Time kept after the last request's start for its retries: a chunk may meet a 429
/// (`Retry-After: 1`) twice, as every retry can meet another, and a 5xx (~0.6 s of
/// backoff), plus the answers. Shorter intervals spread less, down to none: all requests
/// are sent as soon as a request thread is free, and each has the whole poll for retries.
pub const RETRY_ROOM: Duration = Duration::from_secs(4);
/// Time kept free at the end of each poll interval, so a poll's last retry ends before
/// the next poll starts.
pub const MAX_TICK_MARGIN: Duration = Duration::from_secs(1);
/// Observation requests of one poll under way at once: up to three chunks may be waiting
/// out a retry while the next one is sent on schedule.
pub const REQUESTS_IN_FLIGHT: usize = 4;
/// The poll interval is never widened beyond this multiple of `POLL_INTERVAL`.
pub const MAX_WIDENING: u32 = 360;

/// How the poller will use its request budget.
#[derive(Debug, Clone, PartialEq)]
pub struct PollPlan {
    pub queues: usize,
    /// Observation requests per poll: ceil(queues / 100).
    pub chunks: usize,
    /// `POLL_INTERVAL` as configured.
    pub configured_interval: Duration,
    /// The interval actually used: `configured_interval` or a multiple of it.
    pub poll_interval: Duration,
    /// Pause between the start of two requests of one poll.
    pub spacing: Duration,
    /// From the tick to the end of the poll: no request starts or waits beyond it.
    pub poll_time: Duration,
    /// Observation requests per minute with `poll_interval`.
    pub requests_per_minute: f64,
    pub budget_per_minute: u32,
    pub reserved_per_minute: u32,
    /// Why the interval was widened, when it was.
    pub widened: Option<String>,
}

impl PollPlan {
    /// When request `index` of the poll at `tick_ms` may start (ms since the epoch).
    pub fn start_ms(&self, tick_ms: u64, index: usize) -> u64 {
        tick_ms.saturating_add((self.spacing * index as u32).as_millis() as u64)
    }

    /// When the poll at `tick_ms` must be over (ms since the epoch).
    pub fn deadline_ms(&self, tick_ms: u64) -> u64 {
        tick_ms.saturating_add(self.poll_time.as_millis() as u64)
    }

    /// Requests per minute of the planned share of the budget that the poll and the
    /// reserved requests leave free: on-demand queue refreshes and early re-polls use them.
    pub fn free_per_minute(&self) -> f64 {
        f64::from(self.budget_per_minute) * PLANNED_SHARE
            - f64::from(self.reserved_per_minute)
            - self.requests_per_minute
    }

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
        if self.chunks > 1 && self.spacing.is_zero() {
            text.push_str(", all at once");
        } else if self.chunks > 1 {
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
) -> PollPlan {
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
    let poll_time = effective - tick_margin(effective);
    let spread = effective
        .mul_f64(SPREAD_SHARE)
        .min(poll_time.saturating_sub(RETRY_ROOM));
    let spacing = if chunks > 1 {
        spread / chunks as u32
    } else {
        Duration::ZERO
    };
    PollPlan {
        queues: queue_count,
        chunks,
        configured_interval: poll_interval,
        poll_interval: effective,
        spacing,
        poll_time,
        requests_per_minute: rate(factor),
        budget_per_minute,
        reserved_per_minute,
        widened,
    }
}

/// On-demand queue-list refreshes (SIGHUP) never wait longer than this.
pub const MAX_ON_DEMAND_REFRESH_GAP: Duration = Duration::from_secs(300);

/// Shortest time between two on-demand queue-list refreshes (SIGHUP) of
/// `listing_requests` requests each: at least one poll interval, and long enough that
/// they fit in what `plan` leaves of the planned share of the budget.
pub fn on_demand_refresh_gap(plan: &PollPlan, listing_requests: usize) -> Duration {
    let free = plan.free_per_minute();
    let gap = if free > 0.0 {
        Duration::from_secs_f64(
            (listing_requests as f64 * 60.0 / free).min(MAX_ON_DEMAND_REFRESH_GAP.as_secs_f64()),
        )
    } else {
        MAX_ON_DEMAND_REFRESH_GAP
    };
    gap.max(plan.poll_interval)
}

/// The part of `interval` kept free at its end: a tenth, at most [`MAX_TICK_MARGIN`].
fn tick_margin(interval: Duration) -> Duration {
    MAX_TICK_MARGIN.min(interval / 10)
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
/// multiple of it whose requests fit in [`KPI_BUDGET_SHARE`] of the budget
/// (docs/genesys-api.md#request-budget: beyond ~3,400 queues, poll aggregates every few
/// minutes). Late data is not lost by widening: each poll re-queries every bucket not yet
/// final.
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
    use proptest::prelude::*;

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
    fn the_last_request_of_a_poll_leaves_room_for_a_retry() {
        // 1,200 queues every 5 s: 12 requests over 0.5 s (not half the interval), so
        // the deadline 4.5 s after the tick leaves 4 s.
        let p = plan(1200, Duration::from_secs(5), 300, 0);
        let tick = 1_795_981_785_000;
        assert_eq!(p.spacing.as_micros(), 41_666);
        assert_eq!(p.start_ms(tick, 0), tick);
        assert_eq!(p.start_ms(tick, 11), tick + 458);
        assert_eq!(p.deadline_ms(tick), tick + 4500);
        // Two 429s (`Retry-After: 1`) and a 500 (backoff ≤ 0.625 s) in a row on the last
        // request, each answer taking 0.3 s: its third retry is answered at +4.283 s.
        let answered = p.start_ms(tick, 11) + 4 * 300 + 2 * 1000 + 625;
        assert!(answered <= p.deadline_ms(tick));
    }

    #[test]
    fn short_intervals_spread_less_to_keep_the_retry_room() {
        let six = plan(1200, Duration::from_secs(6), 1000, 0);
        // 6 s − 0.6 s margin − 4 s retry room = 1.4 s of spread instead of 3 s.
        assert_eq!(six.spacing, Duration::from_millis(1400) / 12);
        let two = plan(1200, Duration::from_secs(2), 1000, 0);
        assert_eq!(two.spacing, Duration::ZERO);
        assert_eq!(two.start_ms(0, 11), 0);
        assert!(two.summary().ends_with("all at once"), "{}", two.summary());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever the queues, interval and budget: requests start in order, within the
        /// spread share, before the deadline, and leave the retry room whenever the
        /// interval has it.
        #[test]
        fn every_plan_keeps_its_requests_inside_the_poll(
            queues in 0usize..20_000,
            interval_s in 1u64..600,
            budget in 1u32..5_000,
            reserved in 0u32..500,
        ) {
            let p = plan(queues, Duration::from_secs(interval_s), budget, reserved);
            let tick = 1_795_981_785_000;
            let last = p.chunks.saturating_sub(1);
            let interval_ms = p.poll_interval.as_millis() as u64;
            prop_assert!(p.deadline_ms(tick) <= tick + interval_ms);
            prop_assert!(p.deadline_ms(tick) >= tick + interval_ms * 9 / 10);
            prop_assert!(p.start_ms(tick, last) <= tick + interval_ms / 2);
            for i in 1..p.chunks {
                prop_assert!(p.start_ms(tick, i - 1) <= p.start_ms(tick, i));
            }
            if p.poll_time >= RETRY_ROOM {
                let room = p.deadline_ms(tick) - p.start_ms(tick, last);
                prop_assert!(room >= RETRY_ROOM.as_millis() as u64, "room {room} ms");
            }
        }
    }

    #[test]
    fn on_demand_refreshes_fit_in_what_the_polls_leave_of_the_budget() {
        // 144/min of 240/min planned and 3/min reserved: 93/min for 12 listing pages.
        let busy = plan(1200, Duration::from_secs(5), 300, 3);
        let gap = on_demand_refresh_gap(&busy, 12);
        assert_eq!(gap.as_millis(), 7741);
        // A small org: at most once per poll.
        let small = plan(3, Duration::from_secs(1), 300, 0);
        assert_eq!(on_demand_refresh_gap(&small, 1), Duration::from_secs(1));
        // Nothing left: the longest gap.
        let full = plan(4000, Duration::from_secs(10), 300, 0);
        assert_eq!(on_demand_refresh_gap(&full, 40), MAX_ON_DEMAND_REFRESH_GAP);
    }

    #[test]
    fn the_tick_margin_is_small() {
        assert_eq!(tick_margin(Duration::from_secs(10)), Duration::from_secs(1));
        assert_eq!(
            tick_margin(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
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
