//! Delivery of one body of line protocol: cut into requests of at most
//! `max_lines_per_request` lines, each sent through the [`Transport`] and judged by the
//! response policy; what InfluxDB rejects as a whole is halved (at line ends only) until
//! the one bad line is isolated and dropped; what cannot be delivered now is handed back,
//! in order, to be kept.

use std::time::{Duration, Instant};

use crate::influx::policy::{decide, truncate, Decision, FailureClass, Failures};
use crate::influx::transport::Transport;
use crate::stats::Stats;

const REJECTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What became of one body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Done,
    /// InfluxDB cannot take data now; `rest` (in order) was not stored.
    Retry {
        class: FailureClass,
        message: String,
        /// How long to wait, and until when, before trying `rest` again.
        wait: Duration,
        at: Instant,
        rest: String,
        rest_lines: usize,
        /// When the failed request got no answer at all (it may still be applied): when
        /// it was sent, and its length, a prefix of `rest`.
        unanswered: Option<(Instant, usize)>,
    },
}

/// Logs rejected lines at most once per minute, with a count of the ones in between.
#[derive(Debug, Default)]
pub(crate) struct RejectionLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RejectionLog {
    fn report(&mut self, now: Instant, lines: usize, what: impl FnOnce() -> String) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < REJECTION_LOG_INTERVAL)
        {
            self.suppressed += lines as u64;
            return;
        }
        let earlier = std::mem::take(&mut self.suppressed);
        let earlier = if earlier > 0 {
            format!(" ({earlier} more lines rejected since the last message)")
        } else {
            String::new()
        };
        log::warn!("{}{earlier}", what());
        self.last = Some(now);
    }
}

/// Sends `lines` in requests of at most `max_lines` lines, splitting what InfluxDB
/// rejects as a whole until the bad line is isolated. `failures` counts the failures in a
/// row should this request fail too; `random` in `[0, 1)` jitters the retry.
pub(crate) fn deliver(
    transport: &mut dyn Transport,
    lines: &str,
    max_lines: usize,
    stats: &Stats,
    rejections: &mut RejectionLog,
    failures: Failures,
    random: f64,
) -> Delivery {
    // Pieces still to send; the next one is at the end.
    let mut stack: Vec<&str> = chunks(lines, max_lines.max(1));
    stack.reverse();
    while let Some(piece) = stack.pop() {
        let count = count_lines(piece);
        let started = Instant::now();
        let answer = transport.post(piece);
        Stats::raise_to(
            &stats.write_ms_max,
            started.elapsed().as_millis().min(u128::from(u64::MAX)) as u64,
        );
        match decide(&answer, failures, Instant::now(), random) {
            Decision::Stored => Stats::add(&stats.points_written, count as u64),
            Decision::Partial { message, rejected } => {
                let rejected = rejected.min(count);
                Stats::add(&stats.points_written, (count - rejected) as u64);
                Stats::add(&stats.lines_dropped, rejected as u64);
                Stats::incr(&stats.write_errors);
                rejections.report(Instant::now(), rejected, || {
                    format!(
                        "InfluxDB stored {} of {count} lines and rejected {rejected}: {message}",
                        count - rejected
                    )
                });
            }
            Decision::Split { message } => {
                Stats::incr(&stats.write_errors);
                match split_point(piece).and_then(|mid| piece.split_at_checked(mid)) {
                    Some((head, tail)) => {
                        stack.push(tail);
                        stack.push(head);
                    }
                    None => {
                        Stats::add(&stats.lines_dropped, count as u64);
                        rejections.report(Instant::now(), count, || {
                            format!(
                                "dropped a line ({message}): {}",
                                truncate(piece.trim_end(), 500)
                            )
                        });
                    }
                }
            }
            Decision::Retry {
                class,
                message,
                wait,
                at,
            } => {
                Stats::incr(&stats.write_errors);
                let unanswered = answer.outcome_unknown().map(|_| (started, piece.len()));
                let mut rest = String::with_capacity(
                    piece.len() + stack.iter().map(|p| p.len()).sum::<usize>(),
                );
                rest.push_str(piece);
                for later in stack.iter().rev() {
                    rest.push_str(later);
                }
                let rest_lines = count_lines(&rest);
                return Delivery::Retry {
                    class,
                    message,
                    wait,
                    at,
                    rest,
                    rest_lines,
                    unanswered,
                };
            }
        }
    }
    Delivery::Done
}

pub(crate) fn count_lines(lines: &str) -> usize {
    // A char pattern searches with memchr: several times faster than a byte filter.
    lines.matches('\n').count() + usize::from(!lines.is_empty() && !lines.ends_with('\n'))
}

/// Consecutive groups of at most `max_lines` (at least 1) whole lines.
fn chunks(lines: &str, max_lines: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = lines;
    // Each round takes at least one byte: the loop ends.
    while !rest.is_empty() {
        let end = rest
            .match_indices('\n')
            .nth(max_lines.max(1) - 1)
            .map_or(rest.len(), |(at, _)| at + 1);
        // Just after a `\n` (or the end) is a char boundary: the split cannot panic.
        let (piece, tail) = rest.split_at(end);
        pieces.push(piece);
        rest = tail;
    }
    pieces
}

/// Where to cut `piece` in two halves of whole lines; `None` for a single line. Works on
/// bytes and cuts only just after a `\n`, so the cut is always a char boundary whatever
/// the text holds.
fn split_point(piece: &str) -> Option<usize> {
    let bytes = piece.as_bytes();
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mid = body.len() / 2;
    body[mid..]
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| mid + i + 1)
        .or_else(|| body[..mid].iter().rposition(|&b| b == b'\n').map(|i| i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influx::policy::Answer;
    use crate::influx::testing::{
        arbitrary_answer, arbitrary_lines, fake, joined, lines, scripted, status,
    };
    use proptest::prelude::*;
    use std::sync::atomic::Ordering::Relaxed;

    /// Delivers `body` as a first attempt, with no earlier rejections logged.
    fn first_attempt(
        t: &mut dyn Transport,
        body: &str,
        max_lines: usize,
        stats: &Stats,
    ) -> Delivery {
        deliver(
            t,
            body,
            max_lines,
            stats,
            &mut RejectionLog::default(),
            Failures::attempt(1),
            0.5,
        )
    }

    #[test]
    fn a_type_conflict_in_one_body_is_isolated_by_halves() {
        let stats = Stats::default();
        let mut body = lines(0..7);
        body.push_str("m f=1.5 99\n");
        body.push_str(&lines(7..16));
        let mut t = fake(|b| {
            if b.contains("f=1.5") && b.matches('\n').count() > 1 {
                status(400, r#"{"error":"field type conflict"}"#)
            } else if b.contains("f=1.5") {
                status(
                    400,
                    r#"{"error":"partial write: field type conflict: input field \"f\" on measurement \"m\" is type float, already exists as type integer dropped=1"}"#,
                )
            } else {
                status(204, "")
            }
        });
        let result = first_attempt(&mut t, &body, 5000, &stats);
        assert_eq!(result, Delivery::Done);
        assert_eq!(stats.points_written.load(Relaxed), 16);
        assert_eq!(stats.lines_dropped.load(Relaxed), 1);
        // Every good line was sent and stored exactly once after the splits.
        let stored: String = t
            .sent
            .iter()
            .filter(|b| !b.contains("f=1.5"))
            .cloned()
            .collect();
        assert_eq!(stored, lines(0..16));
        assert!(t.sent.len() <= 1 + 2 * 5, "{} requests", t.sent.len());
    }

    #[test]
    fn too_large_bodies_are_split_and_an_oversized_line_dropped() {
        let stats = Stats::default();
        let mut body = lines(0..20);
        body.push_str(&format!("m s=\"{}\" 1\n", "x".repeat(400)));
        let mut t = fake(|b| {
            if b.len() > 200 {
                status(413, r#"{"error":"Request Entity Too Large"}"#)
            } else {
                status(204, "")
            }
        });
        assert_eq!(first_attempt(&mut t, &body, 5000, &stats), Delivery::Done);
        assert_eq!(stats.points_written.load(Relaxed), 20);
        assert_eq!(stats.lines_dropped.load(Relaxed), 1);
        let stored: String = t.sent.iter().filter(|b| b.len() <= 200).cloned().collect();
        assert_eq!(stored, lines(0..20));
    }

    #[test]
    fn requests_hold_at_most_max_lines() {
        let stats = Stats::default();
        let mut t = fake(|_| status(204, ""));
        let body = lines(0..12);
        first_attempt(&mut t, &body, 5, &stats);
        let sizes: Vec<usize> = t.sent.iter().map(|b| b.matches('\n').count()).collect();
        assert_eq!(sizes, vec![5, 5, 2]);
        assert_eq!(t.sent.concat(), body);
    }

    #[test]
    fn an_outage_mid_body_returns_the_unsent_rest_in_order() {
        let stats = Stats::default();
        let mut calls = 0;
        let mut t = fake(|_| {
            calls += 1;
            if calls == 1 {
                status(204, "")
            } else {
                Answer::Unanswered("connection refused".into())
            }
        });
        let body = lines(0..10);
        match first_attempt(&mut t, &body, 4, &stats) {
            Delivery::Retry {
                class,
                rest,
                rest_lines,
                ..
            } => {
                assert_eq!(class, FailureClass::Unreachable);
                assert_eq!(rest, lines(4..10));
                assert_eq!(rest_lines, 6);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stats.points_written.load(Relaxed), 4);
        assert_eq!(stats.write_errors.load(Relaxed), 1);
    }

    #[test]
    fn split_points_and_chunks() {
        assert_eq!(split_point("a\n"), None);
        assert_eq!(split_point("a"), None);
        assert_eq!(split_point("a\nb\n"), Some(2));
        assert_eq!(split_point("aaaaaaaa\nb\n"), Some(9));
        assert_eq!(split_point("a\nbbbbbbbbb\n"), Some(2));
        assert_eq!(chunks("a\nb\nc\n", 2), vec!["a\nb\n", "c\n"]);
        assert_eq!(chunks("a\nb\n", 2), vec!["a\nb\n"]);
        assert_eq!(chunks("a\nb", 1), vec!["a\n", "b"]);
        assert_eq!(count_lines("a\nb"), 2);
        assert_eq!(count_lines(""), 0);
    }

    #[test]
    fn split_points_never_cut_inside_a_character() {
        // The middle byte (19) is inside "セ": the cut goes to the nearest line end.
        let body = "a\n東京センター東京センター\n";
        assert_eq!(split_point(body), Some(2));
        let stats = Stats::default();
        let mut t = fake(|b| {
            if b.matches('\n').count() > 1 {
                status(413, r#"{"error":"Request Entity Too Large"}"#)
            } else {
                status(204, "")
            }
        });
        let body: String = (0..9)
            .map(|i| format!("m,site=東京センター f={i}i {i}\n"))
            .collect();
        let result = first_attempt(&mut t, &body, 5000, &stats);
        assert_eq!(result, Delivery::Done);
        assert_eq!(stats.points_written.load(Relaxed), 9);
        assert_eq!(stats.lines_dropped.load(Relaxed), 0);
    }

    #[test]
    fn a_redirect_keeps_the_whole_body_and_says_where_it_points() {
        let stats = Stats::default();
        let mut t = fake(|_| Answer::Status {
            code: 302,
            retry_after: None,
            location: Some("/login".into()),
            body: String::new(),
        });
        let body = lines(0..3);
        match first_attempt(&mut t, &body, 5000, &stats) {
            Delivery::Retry {
                class: FailureClass::Redirected,
                rest,
                message,
                ..
            } => {
                assert_eq!(rest, body, "nothing dropped");
                assert!(message.contains("302 to /login;"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(stats.lines_dropped.load(Relaxed), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text in chunks of any size: every line once, in order, whole, at most
        /// `max_lines` per chunk.
        #[test]
        fn any_text_chunks_into_whole_lines(text in "(\\PC{0,8}\n?){0,20}", max_lines in 1usize..5) {
            let pieces = chunks(&text, max_lines);
            prop_assert_eq!(pieces.concat(), text.clone());
            for (i, piece) in pieces.iter().enumerate() {
                prop_assert!(!piece.is_empty() && count_lines(piece) <= max_lines);
                if i + 1 < pieces.len() {
                    prop_assert!(piece.ends_with('\n') && count_lines(piece) == max_lines);
                }
            }
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Splitting any body at any point never panics and always cuts just after a
        /// line end, inside the body.
        #[test]
        fn any_body_splits_at_a_line_end(body in ".{0,200}") {
            if let Some(cut) = split_point(&body) {
                prop_assert!(cut > 0 && cut < body.len());
                prop_assert_eq!(body.as_bytes()[cut - 1], b'\n');
            }
        }

        /// Any answers over any lines: no panic, and every line is stored, dropped
        /// (counted) or handed back unsent, exactly once and in order.
        #[test]
        fn deliver_accounts_for_every_line_once(
            lines in arbitrary_lines(),
            answers in proptest::collection::vec(arbitrary_answer(), 0..40),
            max_lines in 1usize..8,
        ) {
            let stats = Stats::default();
            let body = joined(&lines);
            let mut t = scripted(answers);
            let result = first_attempt(&mut t, &body.lines, max_lines, &stats);
            let unsent = match &result {
                Delivery::Done => 0,
                Delivery::Retry { rest, rest_lines, .. } => {
                    prop_assert!(body.lines.ends_with(rest.as_str()));
                    prop_assert_eq!(count_lines(rest), *rest_lines);
                    *rest_lines as u64
                }
            };
            let written = stats.points_written.load(Relaxed);
            let dropped = stats.lines_dropped.load(Relaxed);
            prop_assert_eq!(written + dropped + unsent, lines.len() as u64);
            prop_assert!(t.sent.iter().all(|b| count_lines(b) <= max_lines));
        }
    }
}
