//! Test doubles and generators shared by the unit tests of the writer's modules: a
//! scripted [`Transport`], InfluxDB answers, batches of numbered lines.

use std::time::Duration;

use proptest::prelude::*;

use crate::config::SpoolConfig;
use crate::influx::policy::Answer;
use crate::influx::transport::{Transport, SHUTDOWN_OVER};
use crate::model::Batch;

/// A transport answering with a closure and recording every body.
pub(crate) struct Fake<F: FnMut(&str) -> Answer> {
    answer: F,
    pub(crate) sent: Vec<String>,
}

impl<F: FnMut(&str) -> Answer> Transport for Fake<F> {
    fn post(&mut self, lines: &str) -> Answer {
        self.sent.push(lines.to_string());
        (self.answer)(lines)
    }
}

pub(crate) fn fake<F: FnMut(&str) -> Answer>(answer: F) -> Fake<F> {
    Fake {
        answer,
        sent: Vec::new(),
    }
}

pub(crate) fn status(code: u16, body: &str) -> Answer {
    Answer::Status {
        code,
        retry_after: None,
        location: None,
        body: body.to_string(),
    }
}

pub(crate) fn status_owned(code: u16, body: String) -> Answer {
    Answer::Status {
        code,
        retry_after: None,
        location: None,
        body,
    }
}

pub(crate) fn lines(range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("m f={i}i {i}\n")).collect()
}

pub(crate) fn batch(range: std::ops::Range<usize>) -> Batch {
    Batch {
        line_count: range.len(),
        lines: lines(range),
        window: None,
    }
}

pub(crate) fn joined(lines: &[String]) -> Batch {
    Batch {
        lines: lines.iter().map(|l| format!("{l}\n")).collect(),
        line_count: lines.len(),
        window: None,
    }
}

pub(crate) fn no_spool() -> SpoolConfig {
    SpoolConfig {
        dir: None,
        max_bytes: 0,
    }
}

pub(crate) fn arbitrary_answer() -> impl Strategy<Value = Answer> {
    let fixed = |code: u16, body: &'static str| Just(status(code, body));
    prop_oneof![
        fixed(204, ""),
        fixed(200, "{}"),
        (0usize..12).prop_map(|n| status_owned(
            400,
            format!(r#"{{"error":"partial write: unable to parse 'x': bad dropped={n}"}}"#)
        )),
        fixed(400, r#"{"error":"field type conflict"}"#),
        fixed(401, r#"{"error":"authorization failed"}"#),
        fixed(403, ""),
        fixed(404, r#"{"error":"database not found"}"#),
        fixed(413, r#"{"error":"Request Entity Too Large"}"#),
        proptest::option::of(any::<u64>()).prop_map(|secs| Answer::Status {
            code: 429,
            retry_after: secs.map(Duration::from_secs),
            location: None,
            body: String::new(),
        }),
        (500u16..600).prop_map(|code| status_owned(code, String::new())),
        (300u16..400, proptest::option::of("[^\r\n]{0,40}")).prop_map(|(code, location)| {
            Answer::Status {
                code,
                retry_after: None,
                location,
                body: String::new(),
            }
        }),
        (100u16..1000, ".{0,300}").prop_map(|(code, body)| status_owned(code, body)),
        (400u16..500, "x{0,3}").prop_map(|(code, tail)| status_owned(
            code,
            format!("partial write{}", "ü".repeat(70_000 + tail.len()))
        )),
        Just(Answer::Unanswered("connection reset".into())),
        Just(Answer::Unanswered(SHUTDOWN_OVER.into())),
        Just(Answer::NotSent("connection refused".into())),
        Just(Answer::Garbled(
            "http parse fail: invalid header value".into()
        )),
    ]
}

/// Any answer but one that refuses the lines themselves (a 4xx other than 401, 403,
/// 404 and 429, or an unreadable one, which ends in a split): InfluxDB failing for a
/// while, never for a line's content.
pub(crate) fn transient_answer() -> impl Strategy<Value = Answer> {
    arbitrary_answer().prop_filter("refuses lines", |answer| match answer {
        Answer::Status { code, .. } => {
            !(400..500).contains(code) || matches!(code, 401 | 403 | 404 | 429)
        }
        Answer::Garbled(_) => false,
        Answer::Unanswered(_) | Answer::NotSent(_) => true,
    })
}

/// Lines of any text but a newline, multi-byte characters included.
pub(crate) fn arbitrary_lines() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[^\n]{0,24}", 1..30)
}

/// A transport answering from `script`, then 204 for ever.
pub(crate) fn scripted(script: Vec<Answer>) -> Fake<impl FnMut(&str) -> Answer> {
    let mut next = 0;
    fake(move |_| {
        next += 1;
        script
            .get(next - 1)
            .cloned()
            .unwrap_or_else(|| status(204, ""))
    })
}
