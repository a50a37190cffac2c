//! Final points written again after a live update whose outcome is unknown.
//!
//! InfluxDB keeps the last write per series and timestamp. A live request that got no
//! answer (a timeout, a reset connection) may still be applied later: held by a proxy,
//! queued in a stalled influxd, retried by a load balancer. Applied after its window's
//! final point, it would replace the complete window with a partial one, and nothing
//! would say so. The writer cannot learn whether or when that happens, so such a window
//! is *in doubt*: no further live update of it is sent, the writer keeps a copy of its
//! final lines, and writes them again [`REWRITE_AFTER`] × `HTTP_TIMEOUT` after the
//! doubtful request was sent (2, 8 and 32 times: 20 s, 80 s and 5 min 20 s at the
//! default). A re-write already due when the final point comes is skipped, the final
//! itself being later. So a late live request InfluxDB applies within 32 × `HTTP_TIMEOUT`
//! of its sending is overwritten by the final point again, at most four times its delay
//! after it was sent; one applied later still is not.
//!
//! The same holds for a request replaying an earlier run's backlog: it may carry the
//! partial point that run spooled at SIGTERM, and a restart inside that window writes
//! the complete point at its close. Such a request without an answer puts the windows of
//! its lines in doubt in the same way.
//!
//! Re-writes go to the writer as fresh batches: delivered, or spooled while InfluxDB is
//! failing, like any final data (so they come later than their time, never sooner). At
//! exit the pending ones are spooled and written once at the next start: across a
//! restart the bound ends with that start. At most [`MAX_DOUBTFUL_WINDOWS`] windows are in doubt
//! (each holds a copy of its final lines); while that many are, no live update is sent.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::model::Batch;

/// When a doubtful window's final lines are written again: these multiples of
/// `HTTP_TIMEOUT` after the live request whose outcome is unknown was sent.
pub(crate) const REWRITE_AFTER: [u32; 3] = [2, 8, 32];
/// Windows in doubt at once; while this many are, live updates pause.
pub(crate) const MAX_DOUBTFUL_WINDOWS: usize = 4;

/// The windows in doubt and the final lines to write again.
#[derive(Debug)]
pub(crate) struct Rewrites {
    http_timeout: Duration,
    /// By window start (ms).
    doubtful: BTreeMap<u64, Doubt>,
    /// Lines handed out to be written again, since the start.
    lines_rewritten: u64,
}

#[derive(Debug)]
struct Doubt {
    /// When the live request whose outcome is unknown was sent.
    sent_at: Instant,
    /// Index into [`REWRITE_AFTER`] of the next re-write.
    next: usize,
    /// A copy of the window's final lines as they came.
    lines: String,
    line_count: usize,
    /// The final point has come whole (its last part).
    complete: bool,
}

impl Doubt {
    fn due_at(&self, http_timeout: Duration) -> Option<Instant> {
        let times = REWRITE_AFTER.get(self.next)?;
        Some(self.sent_at + http_timeout.saturating_mul(*times))
    }
}

impl Rewrites {
    pub(crate) fn new(http_timeout: Duration) -> Rewrites {
        Rewrites {
            http_timeout,
            doubtful: BTreeMap::new(),
            lines_rewritten: 0,
        }
    }

    /// A live request of the window starting at `window_start_ms`, sent at `sent_at`,
    /// got no answer: the window is in doubt from now on.
    pub(crate) fn doubt(&mut self, window_start_ms: u64, sent_at: Instant) {
        let doubt = self.doubtful.entry(window_start_ms).or_insert(Doubt {
            sent_at,
            next: 0,
            lines: String::new(),
            line_count: 0,
            complete: false,
        });
        doubt.sent_at = doubt.sent_at.max(sent_at);
    }

    pub(crate) fn http_timeout(&self) -> Duration {
        self.http_timeout
    }

    pub(crate) fn lines_rewritten(&self) -> u64 {
        self.lines_rewritten
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.doubtful.is_empty()
    }

    /// A request replaying an earlier run's backlog, sent at `sent_at`, got no answer:
    /// it may hold the partial point that run spooled at shutdown, and land after the
    /// complete point this run writes when it closes that window. Every window whose
    /// lines it carried (told by each line's timestamp, the window start in seconds) is
    /// in doubt; those whose final point never comes drop out when a newer one does.
    pub(crate) fn doubt_replayed(&mut self, lines: &str, sent_at: Instant) {
        let starts: std::collections::BTreeSet<u64> = lines
            .lines()
            .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
            .map(|seconds| seconds.saturating_mul(1000))
            .collect();
        for start in starts {
            self.doubt(start, sent_at);
        }
    }

    /// Whether a live update of the window starting at `window_start_ms` may be sent.
    pub(crate) fn live_allowed(&self, window_start_ms: u64) -> bool {
        self.doubtful.len() < MAX_DOUBTFUL_WINDOWS && !self.doubtful.contains_key(&window_start_ms)
    }

    /// Sees every batch the writer takes in: keeps a copy of the parts of a doubtful
    /// window's final point. A window older than the one whose part comes, still without
    /// any final line, will get none: its doubt ends.
    pub(crate) fn capture(&mut self, batch: &Batch, now: Instant) {
        let Some(part) = batch.window else {
            return;
        };
        self.doubtful
            .retain(|start, doubt| *start >= part.start_ms || doubt.line_count > 0);
        let http_timeout = self.http_timeout;
        let Some(doubt) = self.doubtful.get_mut(&part.start_ms) else {
            return;
        };
        if doubt.complete {
            return;
        }
        doubt.lines.push_str(&batch.lines);
        doubt.line_count += batch.line_count;
        if !part.last {
            return;
        }
        doubt.complete = true;
        // Re-writes due by now are the final point itself, which is written later.
        while doubt.due_at(http_timeout).is_some_and(|at| at <= now) {
            doubt.next += 1;
        }
        if doubt.due_at(http_timeout).is_none() {
            self.doubtful.remove(&part.start_ms);
        }
    }

    /// The next re-write due at `now`, if any: a copy of a doubtful window's final lines
    /// (the lines themselves with its last re-write, which ends the doubt).
    pub(crate) fn due(&mut self, now: Instant) -> Option<Batch> {
        let http_timeout = self.http_timeout;
        let (&start, doubt) = self.doubtful.iter_mut().find(|(_, doubt)| {
            doubt.complete && doubt.due_at(http_timeout).is_some_and(|at| at <= now)
        })?;
        doubt.next += 1;
        self.lines_rewritten += doubt.line_count as u64;
        if doubt.due_at(http_timeout).is_some() {
            return Some(rewrite(doubt.lines.clone(), doubt.line_count));
        }
        let doubt = self.doubtful.remove(&start)?;
        Some(rewrite(doubt.lines, doubt.line_count))
    }

    /// At exit: the final lines of every window still in doubt, oldest first, and those
    /// windows' starts (ms), so they can be written again after a restart.
    pub(crate) fn take_all(&mut self) -> (Vec<Batch>, Vec<u64>) {
        let doubtful = std::mem::take(&mut self.doubtful);
        doubtful
            .into_iter()
            .filter(|(_, doubt)| doubt.complete)
            .map(|(start, doubt)| (rewrite(doubt.lines, doubt.line_count), start))
            .unzip()
    }
}

/// When the re-writes come, for the log: `20s, 80s and 320s`.
pub(crate) fn schedule(http_timeout: Duration) -> String {
    let times: Vec<String> = REWRITE_AFTER
        .iter()
        .map(|n| crate::duration::format(http_timeout.saturating_mul(*n)))
        .collect();
    match times.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// A re-write: final lines again, not themselves a window's part (never captured twice).
fn rewrite(lines: String, line_count: usize) -> Batch {
    Batch {
        lines,
        line_count,
        window: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::WindowPart;
    use proptest::prelude::*;

    const T: Duration = Duration::from_secs(10);

    fn part(start_ms: u64, lines: &str, last: bool) -> Batch {
        Batch {
            lines: lines.to_string(),
            line_count: lines.matches('\n').count(),
            window: Some(WindowPart { start_ms, last }),
        }
    }

    /// Every re-write handed out from `t0` to `until`, in steps of one second.
    fn rewrites_until(r: &mut Rewrites, t0: Instant, until: Duration) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut at = Duration::ZERO;
        while at <= until {
            while let Some(batch) = r.due(t0 + at) {
                out.push((at.as_secs(), batch.lines));
            }
            at += Duration::from_secs(1);
        }
        out
    }

    #[test]
    fn a_doubtful_window_is_written_again_2_8_and_32_timeouts_after_the_live_request() {
        let t0 = Instant::now();
        let mut r = Rewrites::new(T);
        r.doubt(60_000, t0);
        assert!(!r.live_allowed(60_000), "no more live updates of it");
        assert!(r.live_allowed(120_000), "other windows go on");
        r.capture(&part(60_000, "a\n", false), t0 + Duration::from_secs(5));
        assert_eq!(r.due(t0 + Duration::from_secs(25)), None, "not whole yet");
        r.capture(&part(60_000, "b\n", true), t0 + Duration::from_secs(6));
        // A KPI batch and another window's part are not kept.
        r.capture(&Batch::default(), t0);
        r.capture(&part(0, "old\n", true), t0);
        let got = rewrites_until(&mut r, t0, Duration::from_secs(400));
        assert_eq!(
            got,
            vec![
                (20, "a\nb\n".to_string()),
                (80, "a\nb\n".to_string()),
                (320, "a\nb\n".to_string())
            ]
        );
        assert!(
            r.live_allowed(60_000),
            "the doubt ended with the last re-write"
        );
    }

    #[test]
    fn re_writes_already_due_when_the_final_point_comes_are_skipped() {
        let t0 = Instant::now();
        let mut r = Rewrites::new(T);
        r.doubt(0, t0);
        r.capture(&part(0, "f\n", true), t0 + Duration::from_secs(30));
        assert_eq!(
            rewrites_until(&mut r, t0, Duration::from_secs(400)),
            vec![(80, "f\n".to_string()), (320, "f\n".to_string())]
        );
        // A final later than every re-write time is the last write by itself.
        r.doubt(5, t0);
        r.capture(&part(5, "g\n", true), t0 + Duration::from_secs(321));
        assert!(r.take_all().0.is_empty());
    }

    #[test]
    fn a_replayed_request_without_an_answer_puts_the_windows_of_its_lines_in_doubt() {
        let t0 = Instant::now();
        let mut r = Rewrites::new(T);
        r.doubt_replayed("q,a=1 f=1i 60\nq,a=2 f=2i 60\nno timestamp\n", t0);
        assert!(!r.live_allowed(60_000));
        assert_eq!(r.doubtful.len(), 1);
        r.capture(
            &part(60_000, "complete\n", true),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(
            rewrites_until(&mut r, t0, Duration::from_secs(400)),
            vec![
                (20, "complete\n".to_string()),
                (80, "complete\n".to_string()),
                (320, "complete\n".to_string())
            ]
        );
    }

    #[test]
    fn the_schedule_is_logged_in_durations() {
        assert_eq!(schedule(T), "20s, 80s and 320s");
    }

    #[test]
    fn live_updates_pause_while_too_many_windows_are_in_doubt() {
        let t0 = Instant::now();
        let mut r = Rewrites::new(T);
        for window in 0..MAX_DOUBTFUL_WINDOWS as u64 {
            r.doubt(window, t0);
        }
        assert!(!r.live_allowed(99));
        // A newer window's final comes: the older ones without a final line are done.
        r.capture(&part(99, "x\n", true), t0);
        assert!(r.live_allowed(100));
    }

    #[test]
    fn at_exit_the_windows_in_doubt_are_handed_over_whole() {
        let t0 = Instant::now();
        let mut r = Rewrites::new(T);
        r.doubt(0, t0);
        r.doubt(10, t0);
        r.capture(&part(0, "a\n", true), t0);
        r.capture(&part(10, "b\n", false), t0);
        let (batches, windows) = r.take_all();
        assert_eq!(windows, vec![0]);
        assert_eq!(batches[0].lines, "a\n");
        assert_eq!(batches[0].window, None, "a re-write is not captured again");
        assert!(r.live_allowed(0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A live request in doubt, applied by InfluxDB any time up to 32 timeouts after it
        /// was sent, and the final point arriving any time: some write of the final lines
        /// comes after the late request, at most four times its delay after the sending
        /// (or with the final point itself, when that is later).
        #[test]
        fn some_final_write_follows_any_late_live_request_within_the_bound(
            final_after_s in 0u64..400,
            landed_after_ms in 1u64..320_000,
        ) {
            let t0 = Instant::now();
            let mut r = Rewrites::new(T);
            r.doubt(0, t0);
            let final_at = Duration::from_secs(final_after_s);
            r.capture(&part(0, "f\n", true), t0 + final_at);
            let mut writes = vec![final_at];
            writes.extend(
                rewrites_until(&mut r, t0, Duration::from_secs(400))
                    .into_iter()
                    .map(|(at, _)| Duration::from_secs(at)),
            );
            let landed = Duration::from_millis(landed_after_ms);
            let next = writes.iter().copied().filter(|w| *w > landed).min();
            prop_assert!(next.is_some(), "nothing after {:?}: {:?}", landed, writes);
            let next = next.unwrap_or_default();
            prop_assert!(next <= (landed * 4).max(final_at).max(2 * T), "{:?} {:?}", landed, writes);
            prop_assert!(writes.len() <= 1 + REWRITE_AFTER.len());
        }
    }
}
