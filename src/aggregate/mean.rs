//! The time-weighted `_mean` (README, "Data written"): each reading stands for the time
//! until the queue's next reading, at most one poll interval, so the extra readings that
//! early re-polls take at moments of change do not pull the mean toward those moments.
//!
//! Where a reading is placed: a regular poll's at its tick (however late in its slot it
//! was answered), an early re-poll's at the moment it was answered. A reading placed
//! before the queue's previous one is older news ([`is_older`]: a poll's answer that
//! arrives after an early re-poll answered after its tick, typically the tick's request
//! sent just before the change and answered just after the re-poll): it is a sample for
//! `samples`, `_min` and `_max`, but weighs nothing and does not become `_last`.
//! The last reading of a window stands until the next tick after it (at most one poll
//! interval): the moment the next regular reading is due, in the next window. So with
//! evenly spaced polls every weight is exactly one interval and the mean is exactly the
//! plain mean of the readings, summed in the same order (bit for bit).
//!
//! The aggregator folds readings in one at a time ([`super::Aggregator`]); this module
//! holds the rules they share with [`time_weighted_mean`], the direct formula that tests
//! use as their oracle.
//!
//! For a black-box test predicting a window from the simulator's request log: an early
//! re-poll answered between a window's last tick and its end belongs to that window if it
//! reached the aggregator before the last tick was done, else to the next window, at its
//! start (see [`super`]); which one depends on timing the log does not show, but the split
//! is one point in time (earlier re-polls in the window, later ones in the next). And the
//! moment an early reading is placed at is when the service had its answer, a little after
//! the simulator logged the request, so the predicted mean is close, not bit-exact, where
//! early re-polls took part.

/// Weight, in poll intervals (0 to 1), of a reading placed at `at_ms` when the next one
/// is placed at `next_ms`.
pub fn weight(at_ms: u64, next_ms: u64, poll_ms: u64) -> f64 {
    let poll_ms = poll_ms.max(1);
    let span = next_ms.saturating_sub(at_ms);
    if span >= poll_ms {
        1.0
    } else {
        span as f64 / poll_ms as f64
    }
}

/// The first tick (multiple of `poll_ms` on the UTC clock) strictly after `at_ms`: when the
/// next regular reading is due after a reading placed at `at_ms`.
pub fn next_tick(at_ms: u64, poll_ms: u64) -> u64 {
    let poll_ms = poll_ms.max(1);
    (at_ms / poll_ms + 1) * poll_ms
}

/// Weight of a window's last reading, placed at `at_ms`.
pub fn last_weight(at_ms: u64, poll_ms: u64) -> f64 {
    weight(at_ms, next_tick(at_ms, poll_ms), poll_ms)
}

/// Whether a reading meant for `at_ms` is older than the queue's previous reading, placed
/// at `previous_ms`.
pub fn is_older(at_ms: u64, previous_ms: Option<u64>) -> bool {
    previous_ms.is_some_and(|previous| at_ms < previous)
}

/// The `_mean` of the window starting at `window_start_ms` from its readings, in the
/// order the aggregator received them: `(meant for, value)`, the tick for a regular poll,
/// the answer's moment for an early re-poll (one answered before the window's start, carried
/// over from the window before, is placed at the start; one older than the reading before
/// it weighs nothing; a queue's reading that did not include a media type reads 0 for it). `None` without readings. The oracle of the tests:
/// a direct sum, not the aggregator's running one.
pub fn time_weighted_mean(
    window_start_ms: u64,
    readings: &[(u64, f64)],
    poll_ms: u64,
) -> Option<f64> {
    let mut placed: Vec<(u64, f64)> = Vec::with_capacity(readings.len());
    for &(at_ms, value) in readings {
        let previous = placed.last().map(|(at, _)| *at);
        if !is_older(at_ms, previous) {
            placed.push((at_ms.max(window_start_ms), value));
        }
    }
    let (last_at, _) = *placed.last()?;
    let weights: Vec<f64> = placed
        .windows(2)
        .map(|pair| weight(pair[0].0, pair[1].0, poll_ms))
        .chain([last_weight(last_at, poll_ms)])
        .collect();
    let mut sum = 0.0;
    let mut total = 0.0;
    for ((_, value), w) in placed.iter().zip(&weights) {
        sum += w * value;
        total += w;
    }
    Some(sum / total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const P: u64 = 10_000;
    const T0: u64 = 1_748_874_600_000;

    #[test]
    fn a_reading_stands_until_the_next_at_most_one_interval() {
        assert_eq!(weight(T0, T0 + P, P), 1.0);
        assert_eq!(weight(T0, T0 + 3 * P, P), 1.0, "a missed poll leaves a gap");
        assert_eq!(weight(T0, T0 + 2_500, P), 0.25);
        assert_eq!(weight(T0 + 5, T0, P), 0.0);
        assert_eq!(next_tick(T0, P), T0 + P);
        assert_eq!(next_tick(T0 + 9_999, P), T0 + P);
        assert_eq!(last_weight(T0 + 9_000, P), 0.1);
        assert!(is_older(T0, Some(T0 + 3)));
        assert!(!is_older(T0 + 3, Some(T0 + 3)));
        assert!(!is_older(T0, None));
    }

    #[test]
    fn a_burst_of_readings_in_one_second_weighs_one_second() {
        // 0 for the whole window but for 1 s of 100, read 50 times in that second.
        let mut readings: Vec<(u64, f64)> = (0..6).map(|i| (T0 + i * P, 0.0)).collect();
        let burst: Vec<(u64, f64)> = (0..50).map(|i| (T0 + 20_000 + i * 20, 100.0)).collect();
        readings.splice(3..3, burst);
        readings.insert(53, (T0 + 21_000, 0.0));
        let mean = time_weighted_mean(T0, &readings, P).unwrap();
        let expected = 100.0 * 1.0 / 60.0;
        assert!((mean - expected).abs() < 1e-9, "{mean} != {expected}");
        let plain = readings.iter().map(|r| r.1).sum::<f64>() / readings.len() as f64;
        assert!(plain > 80.0, "the plain mean would be {plain}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Evenly spaced polls: exactly (bit for bit) the plain mean, summed in order.
        #[test]
        fn even_spacing_is_the_plain_mean(
            values in proptest::collection::vec(-1e9f64..1e9, 1..40),
            poll_s in 1u64..120,
        ) {
            let poll_ms = poll_s * 1_000;
            let start = T0 - T0 % poll_ms;
            let readings: Vec<(u64, f64)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| (start + i as u64 * poll_ms, *v))
                .collect();
            let mut plain = 0.0;
            for v in &values {
                plain += v;
            }
            let plain = plain / values.len() as f64;
            prop_assert_eq!(time_weighted_mean(start, &readings, poll_ms).unwrap().to_bits(), plain.to_bits());
        }

        /// Any readings at any moments: the mean lies between their min and max.
        #[test]
        fn the_mean_is_bounded_by_the_readings(
            readings in proptest::collection::vec((0u64..120_000, -1e6f64..1e6), 1..60),
            poll_ms in 1u64..30_000,
        ) {
            let readings: Vec<(u64, f64)> = readings.into_iter().map(|(t, v)| (T0 + t, v)).collect();
            let mean = time_weighted_mean(T0, &readings, poll_ms).unwrap();
            let min = readings.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
            let max = readings.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
            let slack = 1e-9 * (min.abs().max(max.abs()) + 1.0);
            prop_assert!(mean >= min - slack && mean <= max + slack, "{min} <= {mean} <= {max}");
        }
    }
}
