//! The response policy of the writer ("No window lost" in the README, and
//! docs/influxdb-outages.md#response-policy) as one pure function: what InfluxDB answered,
//! how many attempts in a row have failed, the time and a random fraction in; what to do
//! with the body out. No I/O and no clock, so every row of the table is tested with time
//! passed in. How InfluxDB words its answers (`partial write`, `dropped=N`, type
//! conflicts) is recorded in docs/line-protocol.md#write-answers.
//!
//! | InfluxDB answers | the writer |
//! |---|---|
//! | 2xx | done |
//! | 400 `partial write` (bad lines, or a type conflict with stored data), v2 422 `partial write` | the good lines of that body were stored: log InfluxDB's message (which names the first bad line) once per minute, count the rejected lines as dropped, do not resend |
//! | 400 `field type conflict` within one body (nothing stored), other 400/4xx, 413 too large | split the body in halves and send them again, down to the single line InfluxDB refuses, which is dropped, counted and logged |
//! | an answer that cannot be read (`http parse fail`, a head too large) | keep the data, backoff as below; the third such answer in a row to the same body splits it like a refused one, so no body blocks the queue for ever |
//! | 401 / 403 credentials refused | keep the data, retry every 30 s, log loudly once |
//! | 404 database / bucket not found | keep the data, retry every 30 s, log once |
//! | 3xx redirect | never followed (a client would resend a write as a GET without its body): keep the data, retry every 30 s, log the `Location` once with the `INFLUXDB_URL` to set |
//! | 429 / 503 | keep the data, retry after `Retry-After` (else backoff) |
//! | other 5xx, timeout, connection refused | keep the data, exponential backoff with jitter, 1 s doubling up to 30 s |

use std::time::{Duration, Instant};

/// Retry period while credentials are refused or the database/bucket does not exist.
pub(crate) const SLOW_RETRY: Duration = Duration::from_secs(30);
/// Ceiling of the exponential backoff (and of a `Retry-After` we honour).
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest `Retry-After` honoured.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Unreadable answers in a row to the same body before it is split like a refused one.
pub(crate) const GARBLED_TRIES: u32 = 3;

/// What one POST came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Status {
        code: u16,
        retry_after: Option<Duration>,
        /// The `Location` of a 3xx.
        location: Option<String>,
        body: String,
    },
    /// No HTTP answer, and the request may have reached InfluxDB: a timeout, a reset
    /// connection, TLS, or none before the shutdown deadline. It may still be applied
    /// later (held by a proxy, queued in a stalled influxd).
    Unanswered(String),
    /// The request never left: connection refused, host not found.
    NotSent(String),
    /// An answer came but could not be read (`http parse fail: invalid header value`, a
    /// head too large): something is there and answering, so this is not "unreachable".
    Garbled(String),
}

impl Answer {
    /// Why, when the request may have been stored (or may yet be) although no answer
    /// said so.
    pub(crate) fn outcome_unknown(&self) -> Option<&str> {
        match self {
            Answer::Unanswered(why) => Some(why),
            _ => None,
        }
    }
}

/// The failures in a row before an answer, as the policy counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failures {
    /// This request's number among the failing ones, from 1: the backoff grows with it.
    pub(crate) attempt: u32,
    /// Unreadable answers in a row to the same body before this one.
    pub(crate) garbled: u32,
}

impl Failures {
    /// The `attempt`-th request in a row, with no unreadable answer before it.
    pub(crate) fn attempt(attempt: u32) -> Failures {
        Failures {
            attempt,
            garbled: 0,
        }
    }
}

/// Why InfluxDB is not taking data right now; each is logged once, not per retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    Unreachable,
    Garbled,
    ServerError,
    Busy,
    Refused,
    NotFound,
    Redirected,
}

impl FailureClass {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            FailureClass::Unreachable => "unreachable",
            FailureClass::Garbled => "answering with something that cannot be read",
            FailureClass::ServerError => "failing (5xx)",
            FailureClass::Busy => "busy (429/503)",
            FailureClass::Refused => "refusing the credentials",
            FailureClass::NotFound => "answering 404 (database/bucket not found)",
            FailureClass::Redirected => "redirecting the writes (3xx)",
        }
    }
}

/// What to do with a body after an answer (a row of the policy table).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    Stored,
    /// The good lines were stored; `rejected` lines were not.
    Partial {
        message: String,
        rejected: usize,
    },
    /// Nothing stored (or nothing known) and resending the same body will not help:
    /// split it. `message` says why, as a whole clause for the log.
    Split {
        message: String,
    },
    /// Nothing stored; the same body may succeed at `at` (`wait` after the answer).
    Retry {
        class: FailureClass,
        message: String,
        wait: Duration,
        at: Instant,
    },
}

/// The decision on `answer`, given the failures in a row so far (`failures`), the time
/// of the answer and `random` in `[0, 1)` for the jitter.
pub(crate) fn decide(answer: &Answer, failures: Failures, now: Instant, random: f64) -> Decision {
    let retry = |class, hint, message| {
        let wait = retry_delay(class, hint, failures.attempt, random);
        Decision::Retry {
            class,
            message,
            wait,
            at: now + wait,
        }
    };
    let (code, retry_after, body) = match answer {
        Answer::Unanswered(message) | Answer::NotSent(message) => {
            return retry(FailureClass::Unreachable, None, message.clone())
        }
        Answer::Garbled(message) if failures.garbled + 1 >= GARBLED_TRIES => {
            return Decision::Split {
                message: format!(
                    "InfluxDB's answer could not be read {GARBLED_TRIES} times in a row \
                     ({message}), so whether it was stored is unknown"
                ),
            }
        }
        Answer::Garbled(message) => return retry(FailureClass::Garbled, None, message.clone()),
        Answer::Status {
            code: code @ 300..=399,
            location,
            ..
        } => {
            return retry(
                FailureClass::Redirected,
                None,
                redirect_message(*code, location.as_deref()),
            )
        }
        Answer::Status {
            code,
            retry_after,
            body,
            ..
        } => (*code, *retry_after, body),
    };
    let message = error_message(body);
    let status_retry = |class| retry(class, retry_after, format!("{code} {message}"));
    match code {
        200..=299 => Decision::Stored,
        401 | 403 => status_retry(FailureClass::Refused),
        404 => status_retry(FailureClass::NotFound),
        429 | 503 => status_retry(FailureClass::Busy),
        400 | 422 if message.to_ascii_lowercase().contains("partial write") => Decision::Partial {
            rejected: rejected_lines(&message),
            message,
        },
        400..=499 => Decision::Split {
            message: format!("InfluxDB rejected it: {code} {message}"),
        },
        _ => status_retry(FailureClass::ServerError),
    }
}

/// Delay before the next attempt after `attempt` consecutive failures; `random` in
/// `[0, 1)` spreads retries of many instances.
fn retry_delay(class: FailureClass, hint: Option<Duration>, attempt: u32, random: f64) -> Duration {
    match class {
        FailureClass::Refused | FailureClass::NotFound | FailureClass::Redirected => SLOW_RETRY,
        FailureClass::Busy if hint.is_some() => hint.unwrap_or(MAX_BACKOFF).min(MAX_RETRY_AFTER),
        _ => {
            let exp = FIRST_BACKOFF
                .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
                .min(MAX_BACKOFF);
            exp.mul_f64(0.5 + 0.5 * random)
        }
    }
}

/// What to say about a 3xx: where it points (no credentials, no query) and what to set.
pub(crate) fn redirect_message(code: u16, location: Option<&str>) -> String {
    let Some(location) = location.map(shown_url) else {
        return format!(
            "{code} without a Location; writes never follow a redirect: check INFLUXDB_URL"
        );
    };
    let advice = match influx_base(&location) {
        Some(base) => format!("set INFLUXDB_URL={base}"),
        None => "set INFLUXDB_URL to the address InfluxDB answers on itself".to_string(),
    };
    format!(
        "{code} to {location}; writes never follow a redirect (the body would be lost): {advice}"
    )
}

/// `url` without credentials, query or fragment, at most 300 bytes, for a log line.
fn shown_url(url: &str) -> String {
    let bare = url.split(['?', '#']).next().unwrap_or_default();
    let without_user = match bare.split_once("://") {
        Some((scheme, rest)) => {
            // `find` gives a char boundary, so the split cannot panic.
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}{path}"),
                None => bare.to_string(),
            }
        }
        None => bare.to_string(),
    };
    truncate(&without_user, 300)
}

/// The `INFLUXDB_URL` an absolute redirect to `…/write` or `…/api/v2/write` implies.
fn influx_base(location: &str) -> Option<&str> {
    if !(location.starts_with("http://") || location.starts_with("https://")) {
        return None;
    }
    location
        .strip_suffix("/api/v2/write")
        .or_else(|| location.strip_suffix("/write"))
}

/// InfluxDB's `{"error": …}` (1.x) or `{"message": …}` (2.x), else the body itself.
pub(crate) fn error_message(body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let text = parsed
        .as_ref()
        .and_then(|v| v.get("error").or_else(|| v.get("message")))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    truncate(&text, 1000)
}

/// Lines a partial write did not store: each `unable to parse` plus InfluxDB's `dropped=N`.
fn rejected_lines(message: &str) -> usize {
    let unparsable = message.matches("unable to parse").count();
    let dropped = message
        .rsplit_once("dropped=")
        .and_then(|(_, after)| {
            let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
            digits.parse::<usize>().ok()
        })
        .unwrap_or(0);
    (unparsable + dropped).max(1)
}

/// `text`, cut to at most `max` bytes on a char boundary and marked with `…` if cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    let kept = prefix_within(text, max);
    if kept.len() == text.len() {
        return text.to_string();
    }
    format!("{kept}…")
}

/// The longest start of `text` that is at most `max` bytes and ends on a char boundary.
fn prefix_within(text: &str, max: usize) -> &str {
    let end = text
        .char_indices()
        .map(|(at, c)| at + c.len_utf8())
        .take_while(|&end| end <= max)
        .last()
        .unwrap_or(0);
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influx::testing::status;
    use proptest::prelude::*;

    /// A `Retry` decision as the table says it, `wait` after `now`.
    fn retry(class: FailureClass, message: &str, wait: Duration, now: Instant) -> Decision {
        Decision::Retry {
            class,
            message: message.to_string(),
            wait,
            at: now + wait,
        }
    }

    fn with_retry_after(code: u16, secs: u64) -> Answer {
        Answer::Status {
            code,
            retry_after: Some(Duration::from_secs(secs)),
            location: None,
            body: r#"{"code":"too many requests","message":"slow down"}"#.into(),
        }
    }

    /// Each row of the policy table (module documentation), in order, with the time and
    /// the attempt count passed in.
    #[test]
    fn decisions_follow_the_policy_table_row_by_row() {
        let now = Instant::now();
        let first = |answer: &Answer| decide(answer, Failures::attempt(1), now, 0.0);
        // 2xx: done.
        assert_eq!(first(&status(204, "")), Decision::Stored);
        assert_eq!(first(&status(200, "{}")), Decision::Stored);
        // 400 partial write: the good lines were stored, the rejected ones counted.
        assert_eq!(
            first(&status(
                400,
                r#"{"error":"partial write: unable to parse 'm f= 1': missing field value dropped=0"}"#
            )),
            Decision::Partial {
                message: "partial write: unable to parse 'm f= 1': missing field value dropped=0"
                    .into(),
                rejected: 1
            }
        );
        assert!(matches!(
            first(&status(
                400,
                r#"{"error":"partial write: field type conflict: input field \"f\" on measurement \"m\" is type float, already exists as type integer dropped=2"}"#
            )),
            Decision::Partial { rejected: 2, .. }
        ));
        // 400 type conflict within one body, other 4xx, 413: split.
        assert_eq!(
            first(&status(400, r#"{"error":"field type conflict"}"#)),
            Decision::Split {
                message: "InfluxDB rejected it: 400 field type conflict".into()
            }
        );
        assert_eq!(
            first(&status(413, r#"{"error":"Request Entity Too Large"}"#)),
            Decision::Split {
                message: "InfluxDB rejected it: 413 Request Entity Too Large".into()
            }
        );
        assert!(matches!(
            first(&status(422, "unprocessable")),
            Decision::Split { .. }
        ));
        // 401 / 403: keep, retry every 30 s, whatever the attempt.
        for attempt in [1, 9] {
            assert_eq!(
                decide(
                    &status(401, r#"{"error":"authorization failed"}"#),
                    Failures::attempt(attempt),
                    now,
                    0.3
                ),
                retry(
                    FailureClass::Refused,
                    "401 authorization failed",
                    SLOW_RETRY,
                    now
                )
            );
        }
        assert_eq!(
            first(&status(403, "")),
            retry(FailureClass::Refused, "403 ", SLOW_RETRY, now)
        );
        // 404: keep, retry every 30 s.
        assert_eq!(
            first(&status(404, r#"{"error":"database not found: \"x\""}"#)),
            retry(
                FailureClass::NotFound,
                "404 database not found: \"x\"",
                SLOW_RETRY,
                now
            )
        );
        // 3xx: never followed, keep, retry every 30 s, name the URL to set.
        for code in [301, 302, 307, 308] {
            let answer = Answer::Status {
                code,
                retry_after: None,
                location: Some(
                    "https://user:pw@influx.example:8086/write?db=genesys&p=secret".into(),
                ),
                body: String::new(),
            };
            match decide(&answer, Failures::attempt(3), now, 0.5) {
                Decision::Retry {
                    class: FailureClass::Redirected,
                    message,
                    wait: SLOW_RETRY,
                    at,
                } => {
                    assert_eq!(at, now + SLOW_RETRY);
                    assert!(
                        message.contains("to https://influx.example:8086/write;")
                            && message.contains("set INFLUXDB_URL=https://influx.example:8086"),
                        "{message}"
                    );
                    assert!(!message.contains("pw") && !message.contains("secret"));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        // 429 / 503: after Retry-After (at most 5 minutes), else the backoff.
        assert_eq!(
            first(&with_retry_after(429, 7)),
            retry(
                FailureClass::Busy,
                "429 slow down",
                Duration::from_secs(7),
                now
            )
        );
        assert_eq!(
            first(&with_retry_after(503, 100_000)),
            retry(FailureClass::Busy, "503 slow down", MAX_RETRY_AFTER, now)
        );
        assert_eq!(
            first(&status(503, "")),
            retry(FailureClass::Busy, "503 ", Duration::from_millis(500), now)
        );
        // Other 5xx, no answer: exponential backoff with jitter, 1 s doubling up to 30 s.
        assert_eq!(
            first(&status(500, "")),
            retry(
                FailureClass::ServerError,
                "500 ",
                Duration::from_millis(500),
                now
            )
        );
        assert_eq!(
            decide(&status(502, ""), Failures::attempt(3), now, 0.5),
            retry(
                FailureClass::ServerError,
                "502 ",
                Duration::from_secs(3),
                now
            )
        );
        assert_eq!(
            decide(
                &Answer::Unanswered("connection refused".into()),
                Failures::attempt(40),
                now,
                0.999
            ),
            retry(
                FailureClass::Unreachable,
                "connection refused",
                MAX_BACKOFF.mul_f64(0.5 + 0.5 * 0.999),
                now
            )
        );
    }

    #[test]
    fn a_v2_partial_write_is_not_resent_and_counts_its_dropped_lines() {
        let now = Instant::now();
        let answer = status(
            422,
            r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict: input field \"f\" on measurement \"m\" is type float, already exists as type integer dropped=3"}"#,
        );
        assert!(matches!(
            decide(&answer, Failures::attempt(1), now, 0.5),
            Decision::Partial { rejected: 3, .. }
        ));
        assert!(matches!(
            decide(
                &status(422, "unprocessable"),
                Failures::attempt(1),
                now,
                0.5
            ),
            Decision::Split { .. }
        ));
    }

    #[test]
    fn an_unreadable_answer_is_retried_then_its_body_split() {
        let now = Instant::now();
        let garbled = Answer::Garbled("http parse fail: invalid header value".into());
        for garbled_before in 0..GARBLED_TRIES - 1 {
            let failures = Failures {
                attempt: garbled_before + 1,
                garbled: garbled_before,
            };
            match decide(&garbled, failures, now, 0.0) {
                Decision::Retry {
                    class: FailureClass::Garbled,
                    message,
                    ..
                } => assert_eq!(message, "http parse fail: invalid header value"),
                other => panic!("{other:?}"),
            }
        }
        let third = Failures {
            attempt: GARBLED_TRIES,
            garbled: GARBLED_TRIES - 1,
        };
        match decide(&garbled, third, now, 0.0) {
            Decision::Split { message } => assert!(
                message.contains("could not be read 3 times in a row")
                    && message.contains("invalid header value"),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
        // Refused connections never reached InfluxDB; timeouts may have.
        assert!(matches!(
            decide(
                &Answer::NotSent("connection refused".into()),
                third,
                now,
                0.0
            ),
            Decision::Retry {
                class: FailureClass::Unreachable,
                ..
            }
        ));
        assert_eq!(
            Answer::Unanswered("timeout".into()).outcome_unknown(),
            Some("timeout")
        );
        assert_eq!(Answer::NotSent("refused".into()).outcome_unknown(), None);
        assert_eq!(garbled.outcome_unknown(), None);
    }

    #[test]
    fn retry_delays() {
        for attempt in 1..40 {
            for random in [0.0, 0.5, 0.999] {
                let d = retry_delay(FailureClass::Unreachable, None, attempt, random);
                assert!(d <= MAX_BACKOFF && d >= Duration::from_millis(500), "{d:?}");
            }
        }
        assert_eq!(
            retry_delay(FailureClass::ServerError, None, 1, 0.0),
            Duration::from_millis(500)
        );
        assert_eq!(
            retry_delay(FailureClass::ServerError, None, 3, 0.999_999_999),
            Duration::from_secs(4).mul_f64(0.5 + 0.5 * 0.999_999_999)
        );
        assert_eq!(retry_delay(FailureClass::Refused, None, 1, 0.3), SLOW_RETRY);
        assert_eq!(
            retry_delay(FailureClass::NotFound, None, 9, 0.3),
            SLOW_RETRY
        );
        assert_eq!(
            retry_delay(FailureClass::Busy, Some(Duration::from_secs(12)), 1, 0.3),
            Duration::from_secs(12)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever was answered before: an unreadable answer never counts as stored, is
        /// retried while fewer than GARBLED_TRIES came in a row, and splits the body after.
        #[test]
        fn an_unreadable_answer_is_retried_a_bounded_number_of_times(
            message in ".{0,80}",
            attempt in 1u32..100,
            garbled in 0u32..100,
            random in 0.0f64..1.0,
        ) {
            let now = Instant::now();
            let failures = Failures { attempt, garbled };
            match decide(&Answer::Garbled(message), failures, now, random) {
                Decision::Retry { class: FailureClass::Garbled, at, .. } => {
                    prop_assert!(garbled + 1 < GARBLED_TRIES);
                    prop_assert!(at > now && at <= now + MAX_BACKOFF);
                }
                Decision::Split { .. } => prop_assert!(garbled + 1 >= GARBLED_TRIES),
                other => prop_assert!(false, "{:?}", other),
            }
        }

        /// Any Unicode text cut at any byte count: no panic, a prefix on a char boundary
        /// within the limit, and the longest such prefix (the next character would not fit).
        #[test]
        fn any_text_cuts_to_the_longest_prefix_within(text in "\\PC{0,40}", max in 0usize..200) {
            let kept = prefix_within(&text, max);
            prop_assert!(text.starts_with(kept) && text.is_char_boundary(kept.len()));
            prop_assert!(kept.len() <= max);
            if let Some(next) = text.strip_prefix(kept).and_then(|rest| rest.chars().next()) {
                prop_assert!(kept.len() + next.len_utf8() > max);
            }
            let shown = truncate(&text, max);
            prop_assert_eq!(shown == text, text.len() <= max);
        }
    }
}
