//! Which KPI buckets one poll asks for: the open bucket and the look-back, plus at most
//! one backfill piece when polls were missed, and where the next poll resumes. Pure (the
//! clock is a value), so every schedule is tested without a network or a thread.

use std::time::Duration;

use crate::config::KpiConfig;
use crate::genesys::conversation_aggregates::{bucket_floor, Interval, DAY_MS};

/// Polls fire this long after their aligned tick, so the observation polls of the same
/// instant go first and the second boundary has passed on Genesys' clock too.
pub const TICK_DELAY: Duration = Duration::from_secs(5);
/// Longest interval per request when backfilling (docs/genesys-api.md#granularity).
pub const MAX_REQUEST_SPAN_MS: u64 = DAY_MS;
/// How far back a backfill reaches at most; older missed buckets are given up (logged).
pub const MAX_BACKFILL_MS: u64 = 7 * DAY_MS;
/// Backfill pieces (≤ 1 day each, per chunk of queues) added to one poll, so catching up
/// costs a bounded share of the request budget: a 7-day gap closes in 7 polls.
pub const BACKFILL_PIECES_PER_POLL: usize = 1;

/// The schedule in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub bucket_ms: u64,
    pub poll_ms: u64,
    pub lookback_ms: u64,
}

impl Timing {
    pub fn of(config: &KpiConfig) -> Timing {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timing {
            bucket_ms: ms(config.bucket).max(1),
            poll_ms: ms(config.poll).max(1),
            lookback_ms: ms(config.lookback),
        }
    }

    /// When the first poll after `now_ms` fires: a multiple of the poll period, plus
    /// [`TICK_DELAY`].
    pub fn next_fire_ms(&self, now_ms: u64) -> u64 {
        let delay = TICK_DELAY.as_millis() as u64;
        bucket_floor(now_ms.saturating_sub(delay), self.poll_ms) + self.poll_ms + delay
    }
}

/// The requests of one poll (per chunk of queues) and where the next poll resumes if
/// every one of them succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiPlan {
    /// Oldest first, disjoint, each ≤ 1 day and on bucket boundaries.
    pub pieces: Vec<Interval>,
    /// The backfill piece among `pieces`, when buckets older than the look-back are
    /// missing.
    pub backfill: Option<Interval>,
    pub resume_from_ms: u64,
    /// Set when the resume point was older than [`MAX_BACKFILL_MS`]: the buckets before
    /// this instant are given up.
    pub gave_up_before_ms: Option<u64>,
}

/// Plans a poll at `now_ms`. `resume_from_ms` is the start of the oldest bucket whose final
/// write (the last poll within `KPI_LOOKBACK` of its end) has not happened yet (`None`:
/// nothing known, query just the recent buckets). A resume point older than the look-back
/// means polls were missed (outage, service stopped): those buckets are backfilled.
pub fn plan(now_ms: u64, resume_from_ms: Option<u64>, timing: Timing) -> KpiPlan {
    let recent = Interval::recent(now_ms, timing.bucket_ms, timing.lookback_ms);
    let oldest_allowed = bucket_floor(now_ms.saturating_sub(MAX_BACKFILL_MS), timing.bucket_ms);
    let wanted = resume_from_ms.map_or(recent.start_ms, |r| bucket_floor(r, timing.bucket_ms));
    let gave_up_before_ms = (wanted < oldest_allowed).then_some(oldest_allowed);
    let start = wanted.max(oldest_allowed);
    let mut pieces = Vec::new();
    let mut backfill = None;
    // Once every piece is answered, the buckets this poll writes for the last time are
    // final (the next poll no longer asks for them): resume at the first one that is not.
    let next_poll_ms = now_ms.saturating_add(timing.poll_ms);
    let mut resume_from_ms = bucket_floor(
        next_poll_ms.saturating_sub(timing.lookback_ms),
        timing.bucket_ms,
    )
    .clamp(recent.start_ms, recent.end_ms);
    if start < recent.start_ms {
        let missed = Interval {
            start_ms: start,
            end_ms: recent.start_ms,
        }
        .split(MAX_REQUEST_SPAN_MS);
        if missed.len() > BACKFILL_PIECES_PER_POLL {
            resume_from_ms = missed[BACKFILL_PIECES_PER_POLL].start_ms;
        }
        pieces.extend(missed.into_iter().take(BACKFILL_PIECES_PER_POLL));
        backfill = Some(Interval {
            start_ms: start,
            end_ms: pieces.last().map_or(start, |p| p.end_ms),
        });
    }
    pieces.extend(recent.split(MAX_REQUEST_SPAN_MS));
    KpiPlan {
        pieces,
        backfill,
        resume_from_ms,
        gave_up_before_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{self, parse_utc};
    use std::collections::HashMap;

    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    /// 2025-06-02T14:31:05Z.
    const NOW: u64 = 1_748_874_665_000;

    fn quarter_hours() -> Timing {
        Timing {
            bucket_ms: 15 * MINUTE,
            poll_ms: MINUTE,
            lookback_ms: 10 * MINUTE,
        }
    }

    fn at(iso: &str) -> u64 {
        parse_utc(iso).unwrap()
    }

    #[test]
    fn polls_fire_a_few_seconds_after_aligned_ticks() {
        let timing = quarter_hours();
        let minute = at("2025-06-02T14:31:00Z");
        assert_eq!(timing.next_fire_ms(minute), minute + 5_000);
        assert_eq!(timing.next_fire_ms(minute + 4_999), minute + 5_000);
        assert_eq!(timing.next_fire_ms(minute + 5_000), minute + MINUTE + 5_000);
        assert_eq!(
            timing.next_fire_ms(minute + 59_000),
            minute + MINUTE + 5_000
        );
    }

    #[test]
    fn a_normal_poll_asks_for_the_open_bucket_and_the_look_back() {
        let p = plan(NOW, None, quarter_hours());
        let expected = Interval {
            start_ms: at("2025-06-02T14:15:00Z"),
            end_ms: at("2025-06-02T14:45:00Z"),
        };
        assert_eq!(p.pieces, vec![expected]);
        assert_eq!(p.backfill, None);
        assert_eq!(p.resume_from_ms, expected.start_ms);
        // A resume point inside the look-back (or in the future) changes nothing.
        assert_eq!(plan(NOW, Some(expected.start_ms), quarter_hours()), p);
        assert_eq!(plan(NOW, Some(NOW + HOUR), quarter_hours()), p);
        // Polls every minute: never a backfill; the 14:15 bucket is last asked at 14:39:05.
        let mut resume = None;
        let mut last_asked_1415 = 0;
        for minute in 0..40 {
            let now = NOW + minute * MINUTE;
            let p = plan(now, resume, quarter_hours());
            assert_eq!(p.backfill, None, "at {}", time::format_utc_ms(now));
            assert_eq!(
                p.pieces,
                vec![Interval::recent(now, 15 * MINUTE, 10 * MINUTE)]
            );
            if p.pieces[0].start_ms <= expected.start_ms {
                last_asked_1415 = now;
            }
            resume = Some(p.resume_from_ms);
        }
        assert_eq!(
            time::format_utc_ms(last_asked_1415),
            "2025-06-02T14:39:05.000Z"
        );
    }

    #[test]
    fn a_short_outage_is_covered_by_one_wider_request() {
        let resume = at("2025-06-02T13:45:00Z");
        let p = plan(NOW, Some(resume + 7 * MINUTE), quarter_hours());
        assert_eq!(
            p.pieces
                .iter()
                .copied()
                .map(Interval::to_iso)
                .collect::<Vec<_>>(),
            [
                "2025-06-02T13:45:00.000Z/2025-06-02T14:15:00.000Z",
                "2025-06-02T14:15:00.000Z/2025-06-02T14:45:00.000Z"
            ]
        );
        assert_eq!(p.backfill, Some(p.pieces[0]));
        assert_eq!(p.resume_from_ms, at("2025-06-02T14:15:00Z"));
    }

    #[test]
    fn a_long_stop_is_backfilled_in_day_pieces_without_gaps() {
        let timing = quarter_hours();
        let stopped = at("2025-05-30T09:07:00Z"); // 3 days, 5 hours before NOW
        let mut resume = Some(bucket_floor(stopped - 10 * MINUTE, timing.bucket_ms));
        let mut covered: Vec<Interval> = Vec::new();
        let mut now = NOW;
        for _ in 0..10 {
            let p = plan(now, resume, timing);
            assert!(p.gave_up_before_ms.is_none());
            assert!(p
                .pieces
                .iter()
                .all(|i| i.len_ms() <= DAY_MS && i.start_ms % timing.bucket_ms == 0));
            assert!(p.pieces.len() <= 1 + BACKFILL_PIECES_PER_POLL);
            covered.extend(&p.pieces);
            resume = Some(p.resume_from_ms);
            if p.backfill.is_none() {
                break;
            }
            now += timing.poll_ms;
        }
        assert_eq!(covered[0].start_ms, at("2025-05-30T08:45:00Z"));
        assert_eq!(covered[0].len_ms(), DAY_MS);
        // Every bucket from the resume point to the open one was asked for at least once.
        covered.sort();
        let mut reached = covered[0].start_ms;
        for piece in &covered {
            assert!(piece.start_ms <= reached, "gap before {}", piece.to_iso());
            reached = reached.max(piece.end_ms);
        }
        assert!(reached > now);
        // Caught up after 4 backfill polls (3 full days, then the rest).
        assert_eq!(covered.iter().filter(|i| i.len_ms() == DAY_MS).count(), 3);
    }

    #[test]
    fn on_an_injected_clock_no_bucket_is_skipped_and_each_is_asked_until_its_look_back_ends() {
        let minutes = |bucket: u64, poll_s: u64, lookback: u64| Timing {
            bucket_ms: bucket * MINUTE,
            poll_ms: poll_s * 1000,
            lookback_ms: lookback * MINUTE,
        };
        let timings = [
            minutes(1, 5, 2),
            minutes(1, 2, 3),
            minutes(15, 60, 10),
            minutes(30, 60, 10),
            minutes(60, 300, 10),
        ];
        for timing in timings {
            // Three hours of polls at their real fire times, the service stopped for 40
            // minutes in the middle and restarted with the saved resume point.
            let stop = (NOW + HOUR, NOW + HOUR + 40 * MINUTE);
            let mut resume = None;
            let mut last_asked: HashMap<u64, u64> = HashMap::new();
            let mut now = timing.next_fire_ms(NOW);
            let first_poll = now;
            while now < NOW + 3 * HOUR {
                if !(stop.0..stop.1).contains(&now) {
                    let p = plan(now, resume, timing);
                    for piece in &p.pieces {
                        assert_eq!(piece.start_ms % timing.bucket_ms, 0, "{timing:?}");
                        assert_eq!(piece.end_ms % timing.bucket_ms, 0, "{timing:?}");
                        let buckets =
                            (piece.start_ms..piece.end_ms).step_by(timing.bucket_ms as usize);
                        for b in buckets {
                            last_asked.insert(b, now);
                        }
                    }
                    resume = Some(p.resume_from_ms);
                }
                now = timing.next_fire_ms(now);
            }
            let first = bucket_floor(first_poll - timing.lookback_ms, timing.bucket_ms);
            let last = bucket_floor(now - timing.lookback_ms, timing.bucket_ms) - timing.bucket_ms;
            for b in (first..=last).step_by(timing.bucket_ms as usize) {
                let Some(&asked) = last_asked.get(&b) else {
                    panic!("{timing:?}: bucket {} never asked", time::format_utc_ms(b));
                };
                let end = b + timing.bucket_ms;
                assert!(
                    asked + timing.poll_ms >= end + timing.lookback_ms,
                    "{timing:?}: bucket {} last asked at {}, before its look-back ended",
                    time::format_utc_ms(b),
                    time::format_utc_ms(asked)
                );
                if end + timing.lookback_ms > stop.0 && b < stop.1 {
                    assert!(
                        asked >= stop.1,
                        "{timing:?}: bucket {} not re-asked after the restart",
                        time::format_utc_ms(b)
                    );
                }
            }
        }
    }

    #[test]
    fn a_resume_point_older_than_seven_days_is_clamped() {
        let p = plan(NOW, Some(NOW - 30 * DAY_MS), quarter_hours());
        let oldest = bucket_floor(NOW - MAX_BACKFILL_MS, 15 * MINUTE);
        assert_eq!(p.gave_up_before_ms, Some(oldest));
        assert_eq!(
            p.pieces[0],
            Interval {
                start_ms: oldest,
                end_ms: oldest + DAY_MS
            }
        );
        assert_eq!(p.resume_from_ms, oldest + DAY_MS);
    }
}
