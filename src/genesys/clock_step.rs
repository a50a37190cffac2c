//! Steps of the wall clock, and pauses of the whole process, told apart from the passing
//! of time. Ticks follow the wall clock (UTC-aligned windows) while waits follow the
//! monotonic clock, so the poller reads both at every turn of its loop: a wall clock that
//! moved more or less than the monotonic one was stepped (NTP, `date -s`, a restored VM),
//! and a wait that ended far later than asked means the process did not run (SIGSTOP, a
//! suspended host). Without this, a wall clock stepped back by five minutes froze the
//! poll for five minutes, and a step forward was reported as a slow poll.
//!
//! Pure: the clock readings are values, so every case is tested without a clock.

use std::fmt;
use std::time::{Duration, Instant};

use crate::time::Clocks;

/// Below this, a difference between the two clocks is drift or NTP slewing, not a step.
pub const STEP_TOLERANCE: Duration = Duration::from_secs(1);
/// A wait that ends this much later than asked means the process was not running.
pub const PAUSE_TOLERANCE: Duration = Duration::from_secs(5);

/// How the wall clock moved beyond the time that passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Forward(Duration),
    Back(Duration),
}

impl Step {
    /// The step as signed milliseconds (forward positive).
    fn signed_ms(self) -> i128 {
        match self {
            Step::Forward(d) => d.as_millis() as i128,
            Step::Back(d) => -(d.as_millis() as i128),
        }
    }

    fn of_signed_ms(ms: i128) -> Option<Step> {
        let size = Duration::from_millis(u64::try_from(ms.unsigned_abs()).unwrap_or(u64::MAX));
        if size < STEP_TOLERANCE {
            None
        } else if ms > 0 {
            Some(Step::Forward(size))
        } else {
            Some(Step::Back(size))
        }
    }

    /// Two steps in a row as one (a step and its correction may cancel out).
    pub fn then(first: Option<Step>, second: Step) -> Option<Step> {
        Step::of_signed_ms(first.map_or(0, Step::signed_ms) + second.signed_ms())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (way, size) = match self {
            Step::Forward(d) => ("forward", d),
            Step::Back(d) => ("back", d),
        };
        write!(f, "stepped {way} by {} s", size.as_secs_f64().round())
    }
}

/// The step of the wall clock between two readings, if it moved at least
/// [`STEP_TOLERANCE`] more or less than the monotonic clock.
pub fn step_between(before: Clocks, after: Clocks) -> Option<Step> {
    let mono_ms = after
        .mono
        .saturating_duration_since(before.mono)
        .as_millis() as i128;
    let wall_ms = i128::from(after.wall_ms) - i128::from(before.wall_ms);
    Step::of_signed_ms(wall_ms - mono_ms)
}

/// How much longer than `asked` a wait from `started` to `ended` took, when that is more
/// than [`PAUSE_TOLERANCE`]: the process did not run meanwhile.
pub fn pause_between(started: Instant, ended: Instant, asked: Duration) -> Option<Duration> {
    let over = ended
        .saturating_duration_since(started)
        .saturating_sub(asked);
    (over > PAUSE_TOLERANCE).then_some(over)
}

/// The poller's last reading of both clocks; each new reading is compared with it.
#[derive(Debug, Clone, Copy)]
pub struct ClockWatch {
    last: Clocks,
}

impl ClockWatch {
    pub fn new(now: Clocks) -> Self {
        ClockWatch { last: now }
    }

    /// Takes a new reading; the step since the last one, if any.
    pub fn check(&mut self, now: Clocks) -> Option<Step> {
        let step = step_between(self.last, now);
        self.last = now;
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, mono_s: u64, wall_ms: u64) -> Clocks {
        Clocks {
            wall_ms,
            mono: base + Duration::from_secs(mono_s),
        }
    }

    const T: u64 = 1_796_600_000_000;

    #[test]
    fn time_passing_on_both_clocks_is_no_step() {
        let base = Instant::now();
        assert_eq!(step_between(at(base, 0, T), at(base, 10, T + 10_000)), None);
        // NTP slewing and drift stay below the tolerance.
        assert_eq!(step_between(at(base, 0, T), at(base, 10, T + 10_900)), None);
        assert_eq!(step_between(at(base, 0, T), at(base, 10, T + 9_100)), None);
        // A process paused for 3 minutes (SIGSTOP): both clocks moved alike.
        assert_eq!(
            step_between(at(base, 0, T), at(base, 180, T + 180_000)),
            None
        );
    }

    #[test]
    fn a_wall_clock_that_moved_differently_was_stepped() {
        let base = Instant::now();
        assert_eq!(
            step_between(at(base, 0, T), at(base, 1, T + 1_000 - 300_000)),
            Some(Step::Back(Duration::from_secs(300)))
        );
        assert_eq!(
            step_between(at(base, 0, T), at(base, 1, T + 1_000 + 3_600_000)),
            Some(Step::Forward(Duration::from_secs(3600)))
        );
        assert_eq!(
            Step::Back(Duration::from_secs(300)).to_string(),
            "stepped back by 300 s"
        );
        // Stepped back to before 1970 (the wall clock reads 0).
        assert_eq!(
            step_between(at(base, 0, T), at(base, 1, 0)),
            Some(Step::Back(Duration::from_millis(T + 1_000)))
        );
    }

    #[test]
    fn a_watch_reports_each_step_once() {
        let base = Instant::now();
        let mut watch = ClockWatch::new(at(base, 0, T));
        assert_eq!(watch.check(at(base, 1, T + 1_000)), None);
        assert_eq!(
            watch.check(at(base, 2, T + 2_000 - 300_000)),
            Some(Step::Back(Duration::from_secs(300)))
        );
        assert_eq!(watch.check(at(base, 3, T + 3_000 - 300_000)), None);
    }

    #[test]
    fn steps_in_a_row_add_up() {
        let back = Step::Back(Duration::from_secs(300));
        assert_eq!(Step::then(None, back), Some(back));
        assert_eq!(
            Step::then(Some(back), Step::Forward(Duration::from_secs(300))),
            None
        );
        assert_eq!(
            Step::then(Some(back), Step::Back(Duration::from_secs(5))),
            Some(Step::Back(Duration::from_secs(305)))
        );
    }

    #[test]
    fn a_wait_far_longer_than_asked_is_a_pause() {
        let base = Instant::now();
        let asked = Duration::from_secs(1);
        assert_eq!(
            pause_between(base, base + Duration::from_secs(1), asked),
            None
        );
        assert_eq!(
            pause_between(base, base + Duration::from_secs(6), asked),
            None
        );
        assert_eq!(
            pause_between(base, base + Duration::from_secs(181), asked),
            Some(Duration::from_secs(180))
        );
        // A wait cut short (a message came) is no pause.
        assert_eq!(pause_between(base, base, asked), None);
    }
}
