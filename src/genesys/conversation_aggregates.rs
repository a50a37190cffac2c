//! The conversation-aggregates API (docs/genesys-api.md#aggregates), the Genesys side of
//! the interval KPIs. Genesys counts what happened per fixed time bucket; we ask for the
//! buckets around now and parse every (queue, media type, bucket) into a [`KpiBucket`] of
//! raw counts and sums — never averages — so dashboards can combine any range. Turning a
//! bucket into a `genesys_queue_interval` line is the KPI module's (`kpi::lines`).
//!
//! Everything except [`query`] is pure: bucket alignment and intervals take the clock as a
//! value, the ISO-8601 formatting is hand-written (no date crate), parsing is a function of
//! the response text, so every rule is tested on the fixtures without a network.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::model::Queue;
use crate::time;

use super::client::GenesysClient;
use super::error::ApiError;
use super::filter::{self, QueueFilter, ResultGroup};
use super::lenient;
use super::paths;

/// Queue ids per request (docs/genesys-api.md#aggregates-request, same cap as
/// observations).
pub const MAX_QUEUES_PER_REQUEST: usize = 100;
/// The ten metrics of docs/genesys-api.md#aggregates-request, in its order.
pub const METRICS: [&str; 10] = [
    "nOffered",
    "tAnswered",
    "tAbandon",
    "tShortAbandon",
    "tFlowOut",
    "tWait",
    "tHandle",
    "nOverSla",
    "nTransferred",
    "oServiceLevel",
];

const SECOND_MS: u64 = 1000;
const MINUTE_MS: u64 = 60 * SECOND_MS;
const HOUR_MS: u64 = 60 * MINUTE_MS;
pub const DAY_MS: u64 = 24 * HOUR_MS;

// ---- time: alignment, intervals, ISO-8601 --------------------------------------------

/// Start of the UTC bucket holding `time_ms`: buckets are multiples of `bucket_ms` since
/// the epoch, so every query cuts the same buckets (docs/genesys-api.md#granularity).
pub fn bucket_floor(time_ms: u64, bucket_ms: u64) -> u64 {
    time_ms - time_ms % bucket_ms.max(1)
}

/// A half-open UTC range `[start_ms, end_ms)`, both on bucket boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Interval {
    /// What a poll at `now_ms` re-queries: `floor(T − L, B) / floor(T, B) + B` — the open
    /// bucket plus every bucket that ended less than the look-back `L` ago
    /// (docs/genesys-api.md#aggregates-polling).
    pub fn recent(now_ms: u64, bucket_ms: u64, lookback_ms: u64) -> Interval {
        Interval {
            start_ms: bucket_floor(now_ms.saturating_sub(lookback_ms), bucket_ms),
            end_ms: bucket_floor(now_ms, bucket_ms) + bucket_ms,
        }
    }

    #[cfg(test)]
    pub fn len_ms(&self) -> u64 {
        self.end_ms.saturating_sub(self.start_ms)
    }

    /// Cuts the range into consecutive pieces of at most `max_ms` (a multiple of the
    /// bucket, so the pieces stay aligned), oldest first.
    pub fn split(&self, max_ms: u64) -> Vec<Interval> {
        let max_ms = max_ms.max(1);
        let mut pieces = Vec::new();
        let mut start = self.start_ms;
        while start < self.end_ms {
            let end = start.saturating_add(max_ms).min(self.end_ms);
            pieces.push(Interval {
                start_ms: start,
                end_ms: end,
            });
            start = end;
        }
        pieces
    }

    /// `2025-06-02T14:15:00.000Z/2025-06-02T14:45:00.000Z`, as the API wants it.
    pub fn to_iso(self) -> String {
        format!(
            "{}/{}",
            time::format_utc_ms(self.start_ms),
            time::format_utc_ms(self.end_ms)
        )
    }
}

/// The ISO-8601 period of a bucket: `PT15M`, `PT1H`, `PT1H30M`, `P1D`.
pub fn granularity(bucket: Duration) -> String {
    let ms = u64::try_from(bucket.as_millis()).unwrap_or(u64::MAX);
    if ms > 0 && ms % DAY_MS == 0 {
        return format!("P{}D", ms / DAY_MS);
    }
    let mut text = String::from("PT");
    let parts = [
        (ms / HOUR_MS, 'H'),
        (ms % HOUR_MS / MINUTE_MS, 'M'),
        (ms % MINUTE_MS / SECOND_MS, 'S'),
    ];
    for (value, unit) in parts {
        if value > 0 {
            let _ = write!(text, "{value}{unit}");
        }
    }
    if text.len() == 2 {
        text.push_str("0S");
    }
    text
}

// ---- request ---------------------------------------------------------------------------

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Query<'a> {
    interval: String,
    granularity: String,
    /// Explicit although it is the default: daily buckets are then UTC days for sure.
    time_zone: &'static str,
    group_by: [&'static str; 2],
    filter: QueueFilter<'a>,
    metrics: &'static [&'static str],
}

/// The request body for `chunk` (≤ 100 queues, each id sent once) over `interval`, cut
/// into buckets of `bucket`: the shape of `fixtures/aggregates-request.json`.
pub fn query_body(chunk: &[Arc<Queue>], interval: Interval, bucket: Duration) -> String {
    let query = Query {
        interval: interval.to_iso(),
        granularity: granularity(bucket),
        time_zone: "UTC",
        group_by: ["queueId", "mediaType"],
        filter: filter::queue_ids(chunk),
        metrics: &METRICS,
    };
    // Serialising plain structs of strings cannot fail.
    serde_json::to_string(&query).unwrap_or_default()
}

// ---- response --------------------------------------------------------------------------

// The answer is folded group by group as it is read, borrowing from the body: a chunk's
// answer lists every (queue, media type, bucket) with ten metrics, and the whole answer as
// lists of owned structs held up to 1.6 MB at 1,000 queues (measured) for a moment. Only
// one group's data is kept at a time. `{}` (no `results`) is how Genesys answers a query
// that matched nothing (docs/genesys-api.md#aggregates-answer). Every field is read
// leniently: a `null` or a wrong type is absent.

#[derive(Debug, Deserialize)]
struct BucketData<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::text")]
    interval: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::list")]
    metrics: Vec<Metric<'a>>,
}

#[derive(Debug, Deserialize)]
struct Metric<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::text")]
    metric: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::object")]
    stats: Stats,
}

#[derive(Debug, Default, Deserialize)]
struct Stats {
    #[serde(default, deserialize_with = "lenient::number")]
    count: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    sum: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    numerator: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    denominator: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    target: Option<f64>,
}

/// One point of `genesys_queue_interval`: the raw counts and sums of one queue, media
/// type and bucket. Sums are in seconds; a metric absent from the answer is 0.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KpiBucket {
    /// Lower-cased, as queue discovery stores ids.
    pub queue_id: String,
    /// Lower-cased Genesys media type (`voice`, `chat`, …).
    pub media_type: String,
    pub bucket_start_ms: u64,
    pub offered: u64,
    pub answered: u64,
    pub answer_seconds_sum: f64,
    pub abandoned: u64,
    pub abandon_seconds_sum: f64,
    pub short_abandoned: u64,
    pub flowed_out: u64,
    pub handled: u64,
    pub handle_seconds_sum: f64,
    pub waited: u64,
    pub wait_seconds_sum: f64,
    pub transferred: u64,
    pub over_sla: u64,
    pub service_level_numerator: u64,
    pub service_level_denominator: u64,
    /// The queue's service-level target as a fraction (0.8 = 80 %), when Genesys sent one.
    pub service_level_target: Option<f64>,
}

/// What one aggregate answer held.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// Sorted by queue id, media type and bucket start.
    pub buckets: Vec<KpiBucket>,
    /// `data[]` entries whose `interval` could not be read (left out, worth a warning).
    pub unreadable_intervals: usize,
}

/// Queries `interval` for `chunk` (≤ 100 queues) in buckets of `bucket`.
pub fn query(
    client: &GenesysClient,
    chunk: &[Arc<Queue>],
    interval: Interval,
    bucket: Duration,
    deadline: Instant,
) -> Result<Parsed, ApiError> {
    client.post_encoded(
        paths::AGGREGATES,
        &query_body(chunk, interval, bucket),
        deadline,
        &|body| decode(body).map_err(|e| e.to_string()),
    )
}

fn decode(body: &str) -> Result<Parsed, serde_json::Error> {
    let mut fold = Fold::default();
    lenient::answer_seed(
        body,
        lenient::Results(&mut lenient::each(|group| fold.add(group))),
    )?;
    Ok(fold.finish())
}

/// Parses a response body (tests, and callers that hold the text).
#[cfg(test)]
pub fn parse(body: &str) -> Result<Parsed, ApiError> {
    decode(body).map_err(|e| {
        ApiError::Malformed(format!("aggregates answer is not the expected JSON: {e}"))
    })
}

/// The buckets of one answer, built group by group as it is read.
#[derive(Default)]
struct Fold {
    parsed: Parsed,
    /// Position in `parsed.buckets` of each (queue id, media type, bucket start): two
    /// groups can name the same queue and media (ids or media in other cases), and are
    /// added up.
    index: HashMap<(String, String, u64), usize>,
}

impl Fold {
    fn add(&mut self, group: ResultGroup<BucketData>) {
        let Some(queue_id) = group.group.queue_id.map(|id| id.to_ascii_lowercase()) else {
            return;
        };
        let media_type = group
            .group
            .media_type
            .map(|m| m.to_lowercase())
            .unwrap_or_default();
        for data in group.data {
            let interval = data.interval.as_deref().unwrap_or_default();
            let Some(bucket_start_ms) = interval.split('/').next().and_then(time::parse_utc) else {
                self.parsed.unreadable_intervals += 1;
                continue;
            };
            let buckets = &mut self.parsed.buckets;
            let key = (queue_id.clone(), media_type.clone(), bucket_start_ms);
            let slot = *self.index.entry(key).or_insert_with(|| {
                buckets.push(KpiBucket {
                    queue_id: queue_id.clone(),
                    media_type: media_type.clone(),
                    bucket_start_ms,
                    ..KpiBucket::default()
                });
                buckets.len() - 1
            });
            for metric in &data.metrics {
                add_metric(&mut buckets[slot], metric);
            }
        }
    }

    /// The buckets sorted by queue id, media type and bucket start.
    fn finish(mut self) -> Parsed {
        self.parsed.buckets.sort_by(|a, b| {
            (&a.queue_id, &a.media_type, a.bucket_start_ms).cmp(&(
                &b.queue_id,
                &b.media_type,
                b.bucket_start_ms,
            ))
        });
        self.parsed
    }
}

/// A non-negative whole count (odd ones coerced and logged once by [`lenient::count`]).
fn whole(value: Option<f64>) -> u64 {
    lenient::count(value) as u64
}

fn seconds(value: Option<f64>) -> f64 {
    value.filter(|v| v.is_finite() && *v > 0.0).unwrap_or(0.0) / 1000.0
}

fn add_metric(b: &mut KpiBucket, metric: &Metric) {
    let s = &metric.stats;
    match metric.metric.as_deref().unwrap_or_default() {
        "nOffered" => b.offered += whole(s.count),
        "tAnswered" => {
            b.answered += whole(s.count);
            b.answer_seconds_sum += seconds(s.sum);
        }
        "tAbandon" => {
            b.abandoned += whole(s.count);
            b.abandon_seconds_sum += seconds(s.sum);
        }
        "tShortAbandon" => b.short_abandoned += whole(s.count),
        "tFlowOut" => b.flowed_out += whole(s.count),
        "tHandle" => {
            b.handled += whole(s.count);
            b.handle_seconds_sum += seconds(s.sum);
        }
        "tWait" => {
            b.waited += whole(s.count);
            b.wait_seconds_sum += seconds(s.sum);
        }
        "nTransferred" => b.transferred += whole(s.count),
        "nOverSla" => b.over_sla += whole(s.count),
        "oServiceLevel" => {
            b.service_level_numerator += whole(s.numerator);
            b.service_level_denominator += whole(s.denominator);
            if let Some(target) = s.target.filter(|t| t.is_finite()) {
                b.service_level_target = Some(target);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SUPPORT: &str = "118fd762-9005-45cf-9fad-a87f37eacbc3";
    pub(crate) const SALES: &str = "a5b4e893-b5b4-4d27-a7de-d6d3b104b490";
    const VIP: &str = "da689914-f8d0-4a56-aa1c-425d83163d12";
    const WEEKEND: &str = "1ba56b25-0d62-42e3-b4c3-dc6280f604f3";
    /// 2025-06-02T14:00:00Z, 14:15, 14:30 and 14:45.
    const T1400: u64 = 1_748_872_800_000;
    pub(crate) const T1415: u64 = T1400 + 15 * MINUTE_MS;
    pub(crate) const T1430: u64 = T1400 + 30 * MINUTE_MS;
    const T1445: u64 = T1400 + 45 * MINUTE_MS;
    const QUARTER: Duration = Duration::from_secs(15 * 60);

    fn queue(id: &str, name: &str) -> Arc<Queue> {
        Arc::new(Queue {
            id: id.into(),
            name: name.into(),
        })
    }

    /// The fixture answer, parsed (the KPI line encoder's tests read it too).
    pub(crate) fn fixture_response() -> Parsed {
        parse(include_str!(
            "../../tests/fixtures/genesys/aggregates-response.json"
        ))
        .unwrap()
    }

    pub(crate) fn find<'a>(parsed: &'a Parsed, id: &str, media: &str, start: u64) -> &'a KpiBucket {
        parsed
            .buckets
            .iter()
            .find(|b| b.queue_id == id && b.media_type == media && b.bucket_start_ms == start)
            .unwrap()
    }

    #[test]
    fn buckets_are_utc_multiples_of_their_length() {
        assert_eq!(bucket_floor(T1415 + 59_999, 15 * MINUTE_MS), T1415);
        assert_eq!(bucket_floor(T1415, 15 * MINUTE_MS), T1415);
        assert_eq!(bucket_floor(T1415 - 1, 15 * MINUTE_MS), T1400);
        assert_eq!(bucket_floor(T1430 + 1, DAY_MS), 1_748_822_400_000);
    }

    #[test]
    fn the_recent_interval_holds_the_open_bucket_and_the_look_back() {
        let served = T1430 + 65_000; // 14:31:05
        let ten = 10 * MINUTE_MS;
        let interval = Interval::recent(served, 15 * MINUTE_MS, ten);
        assert_eq!(
            interval,
            Interval {
                start_ms: T1415,
                end_ms: T1445
            }
        );
        assert_eq!(
            interval.to_iso(),
            "2025-06-02T14:15:00.000Z/2025-06-02T14:45:00.000Z"
        );
        // After the look-back of the 14:15 bucket only the open one is left.
        let later = Interval::recent(T1430 + ten, 15 * MINUTE_MS, ten);
        assert_eq!(
            later,
            Interval {
                start_ms: T1430,
                end_ms: T1445
            }
        );
        // No look-back: the open bucket alone.
        assert_eq!(
            Interval::recent(T1430, 15 * MINUTE_MS, 0),
            Interval {
                start_ms: T1430,
                end_ms: T1445
            }
        );
    }

    #[test]
    fn intervals_split_into_aligned_pieces() {
        let range = Interval {
            start_ms: T1400,
            end_ms: T1400 + 2 * DAY_MS + 15 * MINUTE_MS,
        };
        let pieces = range.split(DAY_MS);
        assert_eq!(pieces.len(), 3);
        assert_eq!(
            pieces[0],
            Interval {
                start_ms: T1400,
                end_ms: T1400 + DAY_MS
            }
        );
        assert_eq!(pieces[2].len_ms(), 15 * MINUTE_MS);
        assert!(Interval {
            start_ms: T1400,
            end_ms: T1400
        }
        .split(DAY_MS)
        .is_empty());
    }

    #[test]
    fn granularity_is_an_iso_period() {
        let m = |n: u64| Duration::from_secs(n * 60);
        assert_eq!(granularity(m(15)), "PT15M");
        assert_eq!(granularity(m(1)), "PT1M");
        assert_eq!(granularity(m(30)), "PT30M");
        assert_eq!(granularity(m(60)), "PT1H");
        assert_eq!(granularity(m(90)), "PT1H30M");
        assert_eq!(granularity(m(720)), "PT12H");
        assert_eq!(granularity(m(1440)), "P1D");
        assert_eq!(granularity(Duration::from_secs(30)), "PT30S");
    }

    #[test]
    fn the_request_body_is_the_fixture_one() {
        let expected: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/genesys/aggregates-request.json"
        ))
        .unwrap();
        let mut chunk = vec![
            queue(SUPPORT, "Support – Ünïcode"),
            queue(SALES, "Sales, EMEA = \"Tier 1\""),
            queue(VIP, "🎧 VIP Line 📞"),
            queue(WEEKEND, "Weekend Overflow"),
        ];
        let interval = Interval {
            start_ms: T1400,
            end_ms: T1445,
        };
        let body = |chunk: &[Arc<Queue>]| -> serde_json::Value {
            serde_json::from_str(&query_body(chunk, interval, QUARTER)).unwrap()
        };
        assert_eq!(body(&chunk), expected);
        chunk.push(queue(SALES, "again"));
        assert_eq!(body(&chunk), expected);
    }

    #[test]
    fn parses_the_fixture_response() {
        let parsed = fixture_response();
        assert_eq!(parsed.unreadable_intervals, 0);
        assert_eq!(parsed.buckets.len(), 33);
        assert!(parsed.buckets.iter().all(|b| b.queue_id != WEEKEND));
        let sales = find(&parsed, SALES, "voice", T1415);
        let expected = KpiBucket {
            queue_id: SALES.into(),
            media_type: "voice".into(),
            bucket_start_ms: T1415,
            offered: 30,
            answered: 23,
            answer_seconds_sum: 899.924,
            abandoned: 4,
            abandon_seconds_sum: 188.196,
            short_abandoned: 1,
            flowed_out: 2,
            handled: 16,
            handle_seconds_sum: 4282.447,
            waited: 29,
            wait_seconds_sum: 1329.271,
            transferred: 0,
            over_sla: 14,
            service_level_numerator: 9,
            service_level_denominator: 27,
            service_level_target: Some(0.8),
        };
        assert_eq!(sales, &expected);
        // Only tHandle in the open bucket: everything else absent = 0, no target.
        let open = find(&parsed, SUPPORT, "voice", T1430);
        assert_eq!(open.handled, 2);
        assert_eq!(open.offered, 0);
        assert_eq!(open.service_level_denominator, 0);
        assert_eq!(open.service_level_target, None);
    }

    #[test]
    fn empty_answers_and_odd_groups() {
        let empty = include_str!("../../tests/fixtures/genesys/aggregates-response-empty.json");
        assert_eq!(parse(empty).unwrap(), Parsed::default());
        assert_eq!(parse(r#"{"results":[]}"#).unwrap(), Parsed::default());
        let body = r#"{"results":[
            {"group":{"queueId":"118FD762-9005-45CF-9FAD-A87F37EACBC3","mediaType":"Voice"}},
            {"group":{"mediaType":"voice"},"data":[{"interval":"2025-06-02T14:00:00.000Z/2025-06-02T14:15:00.000Z",
              "metrics":[{"metric":"nOffered","stats":{"count":50}}]}]},
            {"group":{"queueId":"118FD762-9005-45CF-9FAD-A87F37EACBC3","mediaType":"Voice","x":1},
             "data":[{"interval":"2025-06-02T16:00:00.000+02:00/2025-06-02T16:15:00.000+02:00",
                      "metrics":[{"metric":"nOffered","stats":{"count":3}},{"metric":"tBrandNew","stats":{"count":9}}]},
                     {"interval":"garbage","metrics":[{"metric":"nOffered","stats":{"count":1}}]}]},
            {"group":{"queueId":"118fd762-9005-45cf-9fad-a87f37eacbc3","mediaType":"voice"},
             "data":[{"interval":"2025-06-02T14:00:00.000Z/2025-06-02T14:15:00.000Z",
                      "metrics":[{"metric":"nOffered","stats":{"count":2}}]}]}
        ]}"#;
        let parsed = parse(body).unwrap();
        assert_eq!(parsed.unreadable_intervals, 1);
        assert_eq!(parsed.buckets.len(), 1);
        let b = &parsed.buckets[0];
        assert_eq!(
            (b.queue_id.as_str(), b.media_type.as_str()),
            (SUPPORT, "voice")
        );
        assert_eq!((b.bucket_start_ms, b.offered), (T1400, 5));
        assert!(matches!(parse("[1]"), Err(ApiError::Malformed(_))));
    }

    #[test]
    fn nulls_where_lists_or_objects_are_expected_lose_only_their_part() {
        let mut doc: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/genesys/aggregates-response.json"
        ))
        .unwrap();
        doc["results"][0]["data"] = serde_json::Value::Null;
        doc["results"][1]["data"][0]["metrics"] = serde_json::Value::Null;
        doc["results"][2]["data"][0]["metrics"][0]["stats"] = serde_json::Value::Null;
        doc["results"][3]["group"] = serde_json::Value::Null;
        let parsed = parse(&doc.to_string()).unwrap();
        let expected = fixture_response();
        // Sales and VIP (groups 5..) are untouched and read exactly as before.
        for b in expected.buckets.iter().filter(|b| b.queue_id != SUPPORT) {
            assert!(parsed.buckets.contains(b), "{b:?}");
        }
        // Support's voice group lost its data; its chat group keeps its later buckets.
        assert!(!parsed
            .buckets
            .iter()
            .any(|b| b.queue_id == SUPPORT && b.media_type == "voice"));
        assert!(
            parsed
                .buckets
                .iter()
                .filter(|b| b.queue_id == SUPPORT && b.media_type == "chat")
                .count()
                >= 2
        );
    }

    mod mutated {
        use super::*;
        use crate::genesys::lenient::mutation;
        use proptest::prelude::*;

        const BODY: &str = include_str!("../../tests/fixtures/genesys/aggregates-response.json");

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever is damaged, nothing panics, and every bucket of a queue and media
            /// whose result group was not touched is read exactly as from the intact
            /// answer.
            #[test]
            fn answers_never_panic_and_untouched_groups_keep_their_buckets(
                mutations in mutation::mutations()
            ) {
                let original: serde_json::Value = serde_json::from_str(BODY).unwrap();
                let expected = parse(BODY).unwrap();
                let mut doc = original.clone();
                let touched = mutation::apply(&mut doc, &mutations);
                let result = parse(&doc.to_string());
                let key = |i: usize| {
                    let g = &original["results"][i]["group"];
                    let text = |k: &str| g[k].as_str().unwrap_or("").to_lowercase();
                    (text("queueId"), text("mediaType"))
                };
                let hit: Option<Vec<_>> = touched
                    .iter()
                    .map(|p| mutation::entry_of(p, "results").map(key))
                    .collect();
                let Some(hit) = hit else { return Ok(()) };
                let result = result.unwrap();
                for kept in expected
                    .buckets
                    .iter()
                    .filter(|b| !hit.contains(&(b.queue_id.clone(), b.media_type.clone())))
                {
                    prop_assert!(result.buckets.contains(kept), "{:?}", kept);
                }
            }
        }
    }
}
