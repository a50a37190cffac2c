//! How far Genesys Cloud's clock is from this host's, read from the `Date` header every
//! answer carries. `oLongestWaiting` and `oLongestInteracting` come as the epoch time the
//! oldest conversation started, on Genesys's clock: a host 300 s fast stored waits 300 s
//! too long, a slow one stored 0. Ages are therefore computed on Genesys's clock (this
//! host's plus the offset), and a skew beyond [`WARN_SKEW`] is logged once.
//!
//! A `Date` header has whole seconds and is written between the request's sending and its
//! answer's arrival, so each answer bounds the offset to an interval about a second wide;
//! the intervals of the last [`SAMPLES`] answers are intersected, which narrows it to the
//! answers' latency. The offset used is the one of that interval nearest to zero: a host
//! in step is never corrected by the noise of the header's rounding. An empty
//! intersection (a clock was stepped) starts again from the latest answer.
//!
//! Pure: the times are values.

use std::collections::VecDeque;
use std::time::Duration;

/// A skew beyond this is logged: once, and again only when it moves by as much (a clock
/// was stepped) or is back within [`IN_STEP`].
pub const WARN_SKEW: Duration = Duration::from_secs(2);
/// A skew within this after a warning counts as fixed.
const IN_STEP: Duration = Duration::from_secs(1);
/// Answers whose bounds are intersected.
pub const SAMPLES: usize = 16;

/// One answer's `Date` and this host's clock around its request (all epoch ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateSample {
    pub date_ms: u64,
    pub sent_ms: u64,
    pub received_ms: u64,
}

impl DateSample {
    /// The offsets (Genesys minus host, ms) this answer allows: the header was written
    /// at a host time between sending and arrival, in the second it names.
    fn bounds(&self) -> (i64, i64) {
        let date = i64::try_from(self.date_ms).unwrap_or(i64::MAX);
        let sent = i64::try_from(self.sent_ms).unwrap_or(i64::MAX);
        let received = i64::try_from(self.received_ms).unwrap_or(i64::MAX);
        (
            date.saturating_sub(received),
            date.saturating_add(1000).saturating_sub(sent),
        )
    }
}

/// The offset as the last answers say it; see the module documentation.
#[derive(Debug, Default)]
pub struct SkewEstimate {
    bounds: VecDeque<(i64, i64)>,
    /// The offset last warned about.
    warned: Option<i64>,
}

impl SkewEstimate {
    /// Takes one answer's `Date` in; the line to log when the skew newly exceeds
    /// [`WARN_SKEW`], moved by that much since the last warning, or is back in step.
    pub fn add(&mut self, sample: DateSample) -> Option<String> {
        let bounds = sample.bounds();
        if bounds.0 > bounds.1 {
            return None;
        }
        if self.bounds.len() == SAMPLES {
            self.bounds.pop_front();
        }
        self.bounds.push_back(bounds);
        if self.intersection().is_none() {
            self.bounds.clear();
            self.bounds.push_back(bounds);
        }
        self.news()
    }

    /// Milliseconds Genesys's clock is ahead of this host's (negative: behind).
    pub fn offset_ms(&self) -> i64 {
        self.intersection()
            .map_or(0, |(low, high)| 0.clamp(low, high))
    }

    fn intersection(&self) -> Option<(i64, i64)> {
        let low = self.bounds.iter().map(|b| b.0).max()?;
        let high = self.bounds.iter().map(|b| b.1).min()?;
        (low <= high).then_some((low, high))
    }

    fn news(&mut self) -> Option<String> {
        let offset = self.offset_ms();
        let size = Duration::from_millis(offset.unsigned_abs());
        let moved = self
            .warned
            .is_none_or(|warned| Duration::from_millis(offset.abs_diff(warned)) > WARN_SKEW);
        if size > WARN_SKEW && moved {
            self.warned = Some(offset);
            let way = if offset > 0 { "behind" } else { "ahead of" };
            return Some(format!(
                "this host's clock is {:.0} s {way} Genesys Cloud's (the Date header of its \
                 answers): waiting times are computed on Genesys Cloud's clock, but windows \
                 and timestamps follow this host's; synchronise it (NTP: chrony or \
                 systemd-timesyncd)",
                size.as_secs_f64()
            ));
        }
        if self.warned.is_some() && size <= IN_STEP {
            self.warned = None;
            return Some(
                "this host's clock is in step with Genesys Cloud's again (within 1 s)".into(),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: u64 = 1_796_612_400_000;

    /// An answer written at host time `at_ms` by a server `offset_ms` ahead, `latency_ms`
    /// each way.
    fn answer(at_ms: u64, offset_ms: i64, latency_ms: u64) -> DateSample {
        let server_ms = at_ms.saturating_add_signed(offset_ms);
        DateSample {
            date_ms: server_ms / 1000 * 1000,
            sent_ms: at_ms - latency_ms,
            received_ms: at_ms + latency_ms,
        }
    }

    #[test]
    fn a_host_in_step_is_not_corrected_by_the_rounding_of_the_header() {
        let mut skew = SkewEstimate::default();
        for i in 0..40 {
            assert_eq!(skew.add(answer(T + i * 737, 0, 20)), None);
            assert_eq!(skew.offset_ms(), 0);
        }
    }

    #[test]
    fn a_skewed_host_is_measured_to_within_the_latency_and_warned_about_once() {
        let mut skew = SkewEstimate::default();
        let warning = skew.add(answer(T + 250, 300_000, 20)).expect("a warning");
        assert!(
            warning.starts_with("this host's clock is 300 s behind Genesys Cloud's"),
            "{warning}"
        );
        for i in 1..40 {
            assert_eq!(skew.add(answer(T + 250 + i * 737, 300_000, 20)), None);
        }
        assert!(
            (skew.offset_ms() - 300_000).abs() <= 100,
            "{}",
            skew.offset_ms()
        );
        let mut fast = SkewEstimate::default();
        let warning = fast.add(answer(T, -5_000, 20)).expect("a warning");
        // One answer bounds it to a second: the offset nearest to zero is used.
        assert!(warning.contains("4 s ahead of Genesys"), "{warning}");
        assert!((fast.offset_ms() + 5_000).abs() <= 1_020);
    }

    #[test]
    fn a_skew_that_moves_is_warned_about_again() {
        let mut skew = SkewEstimate::default();
        assert!(skew.add(answer(T, 300_000, 20)).is_some());
        assert_eq!(skew.add(answer(T + 737, 300_500, 20)), None);
        let moved = skew
            .add(answer(T + 2_000, -3_600_000, 20))
            .expect("a warning");
        assert!(moved.contains("3599 s ahead of Genesys"), "{moved}");
    }

    #[test]
    fn a_step_of_either_clock_starts_the_measurement_again() {
        let mut skew = SkewEstimate::default();
        for i in 0..20 {
            skew.add(answer(T + i * 737, 300_000, 20));
        }
        let back = skew.add(answer(T + 20_000, 0, 20));
        assert_eq!(
            back.as_deref(),
            Some("this host's clock is in step with Genesys Cloud's again (within 1 s)")
        );
        assert_eq!(skew.offset_ms(), 0);
    }

    #[test]
    fn a_small_skew_is_corrected_without_a_warning() {
        let mut skew = SkewEstimate::default();
        for i in 0..20 {
            assert_eq!(skew.add(answer(T + i * 737, 1_500, 10)), None);
        }
        assert!(
            (skew.offset_ms() - 1_500).abs() <= 100,
            "{}",
            skew.offset_ms()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the skew, latency and timing of the answers, the offset used is
        /// within a second plus the latency of the true one.
        #[test]
        fn the_offset_is_within_the_uncertainty_of_the_answers(
            offset in -4_000_000i64..4_000_000,
            latency in 0u64..500,
            gaps in proptest::collection::vec(1u64..5_000, 1..30),
        ) {
            let mut skew = SkewEstimate::default();
            let mut at = T;
            for gap in gaps {
                at += gap;
                skew.add(answer(at, offset, latency));
            }
            let error = (skew.offset_ms() - offset).unsigned_abs();
            prop_assert!(error <= 1_000 + 2 * latency, "error {} ms", error);
        }
    }
}
