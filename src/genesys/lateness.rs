//! Which tick the poller polls next, and what it says when that is not simply the
//! following one: after a step of the wall clock it re-aligns to the current tick (a
//! wall clock stepped back must not freeze polling for the size of the step); after a
//! poll that ran late it skips the ticks it missed and names the cause an operator can
//! act on. Only a poll whose requests did not fit in the interval gets the advice of a
//! longer `POLL_INTERVAL`: a paused process, a failing Genesys or a clock step would not
//! be helped by it.
//!
//! Pure: the time and what happened during the poll are values.

use std::time::Duration;

use super::clock_step::Step;
use super::ticks::{following_tick, tick_at_or_after};
use crate::time::format_utc_ms;

/// What the poller noticed since it chose the last tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollFacts {
    /// The wall clock was stepped (against the monotonic clock).
    pub step: Option<Step>,
    /// The process did not run for this long (a wait ended that much later than asked).
    pub paused: Option<Duration>,
    /// Genesys failed, was rate limited, or answered too late for some request.
    pub genesys_trouble: bool,
}

impl PollFacts {
    pub fn stepped(&mut self, step: Step) {
        self.step = Step::then(self.step, step);
    }

    pub fn paused(&mut self, pause: Duration) {
        self.paused = Some(self.paused.unwrap_or_default() + pause);
    }
}

/// Why ticks were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateCause {
    Paused(Duration),
    Genesys,
    /// The poll's requests did not fit in the interval: too many queues for it.
    TooMuchWork,
}

impl LateCause {
    fn of(facts: &PollFacts) -> LateCause {
        match (facts.paused, facts.genesys_trouble) {
            (Some(pause), _) => LateCause::Paused(pause),
            (None, true) => LateCause::Genesys,
            (None, false) => LateCause::TooMuchWork,
        }
    }
}

/// The tick after `done_tick` (polled, or waited for when a step cut the wait short) at
/// wall time `now_ms`, and the warning to log, if any.
pub fn next_tick(
    done_tick: u64,
    now_ms: u64,
    interval_ms: u64,
    facts: &PollFacts,
) -> (u64, Option<String>) {
    if let Some(step) = facts.step {
        let next = tick_at_or_after(now_ms, interval_ms);
        return (next, Some(step_message(step, next)));
    }
    let (next, skipped) = following_tick(done_tick, now_ms, interval_ms);
    let message = (skipped > 0).then(|| late_message(skipped, LateCause::of(facts), interval_ms));
    (next, message)
}

fn step_message(step: Step, next_tick: u64) -> String {
    let consequence = match step {
        Step::Back(_) => {
            "windows already written are not written again, so samples are stored again once \
             the clock passes the last tick polled before the step"
        }
        Step::Forward(_) => "the windows in between get no points",
    };
    format!(
        "the wall clock {step} (the monotonic clock did not move with it): polling goes on at \
         the tick {}; {consequence}",
        format_utc_ms(next_tick)
    )
}

fn late_message(skipped: u64, cause: LateCause, interval_ms: u64) -> String {
    let why = match cause {
        LateCause::Paused(pause) => format!(
            "the process did not run for {} s (stopped with SIGSTOP, or a suspended host or VM)",
            pause.as_secs_f64().round()
        ),
        LateCause::Genesys => {
            "Genesys Cloud answered slowly or failed (see the warnings above)".to_string()
        }
        LateCause::TooMuchWork => format!(
            "the poll's requests did not fit in the {} s poll interval; a longer POLL_INTERVAL \
             or fewer queues would avoid it",
            interval_ms / 1000
        ),
    };
    format!("polling ran {skipped} tick(s) late and skips them (those samples are missing): {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07T03:00:00Z.
    const T: u64 = 1_796_612_400_000;
    const TEN_S: u64 = 10_000;

    #[test]
    fn a_poll_in_time_is_followed_by_the_next_tick_silently() {
        let facts = PollFacts::default();
        assert_eq!(next_tick(T, T + 4_000, TEN_S, &facts), (T + TEN_S, None));
    }

    #[test]
    fn a_step_back_re_aligns_to_the_current_tick_instead_of_waiting_it_out() {
        let facts = PollFacts {
            step: Some(Step::Back(Duration::from_secs(300))),
            ..PollFacts::default()
        };
        let (next, message) = next_tick(T, T + 1_000 - 300_000, TEN_S, &facts);
        assert_eq!(next, T - 290_000);
        let message = message.unwrap();
        assert!(
            message.starts_with("the wall clock stepped back by 300 s"),
            "{message}"
        );
        assert!(message.contains("2026-12-07T02:55:10.000Z"), "{message}");
        assert!(!message.contains("POLL_INTERVAL"), "{message}");
    }

    #[test]
    fn a_step_forward_is_named_as_such_not_as_late_polls() {
        let facts = PollFacts {
            step: Some(Step::Forward(Duration::from_secs(3600))),
            // the step also made the poll look 3,600 s late and paused-free
            genesys_trouble: false,
            paused: None,
        };
        let (next, message) = next_tick(T, T + 3_602_000, TEN_S, &facts);
        assert_eq!(next, T + 3_610_000);
        let message = message.unwrap();
        assert!(message.contains("stepped forward by 3600 s"), "{message}");
        assert!(!message.contains("late"), "{message}");
    }

    #[test]
    fn late_polls_name_their_cause_and_only_too_much_work_gets_the_interval_advice() {
        let late = |facts: PollFacts| next_tick(T, T + 25_000, TEN_S, &facts);
        let paused = late(PollFacts {
            paused: Some(Duration::from_secs(180)),
            genesys_trouble: true,
            ..PollFacts::default()
        });
        assert_eq!(paused.0, T + 30_000);
        let text = paused.1.unwrap();
        assert!(text.starts_with("polling ran 2 tick(s) late"), "{text}");
        assert!(text.contains("did not run for 180 s"), "{text}");
        assert!(!text.contains("POLL_INTERVAL"), "{text}");

        let genesys = late(PollFacts {
            genesys_trouble: true,
            ..PollFacts::default()
        })
        .1
        .unwrap();
        assert!(
            genesys.contains("Genesys Cloud answered slowly or failed"),
            "{genesys}"
        );
        assert!(!genesys.contains("POLL_INTERVAL"), "{genesys}");

        let work = late(PollFacts::default()).1.unwrap();
        assert!(
            work.contains(
                "did not fit in the 10 s poll interval; a longer POLL_INTERVAL or fewer queues"
            ),
            "{work}"
        );
    }
}
