//! Real-time queue observations (docs/genesys-api.md#observations): one query per chunk of
//! ≤ 100 queues, parsed into [`QueueObservation`]s.
//!
//! Parsing is a pure function of the response text and the receive time, so every rule
//! (qualifiers summed, absent = 0, `oLongest*` epoch timestamps turned into seconds waited,
//! with or without a `count`; a group repeated for the same queue and media read once) is
//! tested on the fixtures without a network. Fields are read through [`lenient`]: a
//! `null` or odd value in one datum costs that datum, never the other queues of the chunk.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::model::{agent, media, MediaObservation, Queue, QueueObservation};

use super::client::GenesysClient;
use super::error::ApiError;
use super::filter::{self, GroupKey, QueueFilter};
use super::lenient;
use super::limits::MAX_QUEUES_PER_REQUEST;
use super::paths;

/// The metrics the contract writes, in the order of
/// docs/genesys-api.md#observation-metrics. The endpoint knows two more, `oUserPresences`
/// and `oUserRoutingStatuses` (per-presence and per-status member counts); nothing is
/// written from them, and asking for them would add about a fifth to every answer that has
/// to be fetched and parsed each poll.
pub const METRICS: [&str; 9] = [
    "oWaiting",
    "oInteracting",
    "oAlerting",
    "oLongestWaiting",
    "oLongestInteracting",
    "oOnQueueUsers",
    "oOffQueueUsers",
    "oActiveUsers",
    "oMemberUsers",
];
/// A `calculatedMetricValue` below this cannot be a current epoch-ms timestamp; it is
/// then read as a duration in ms (docs/genesys-api.md#longest-waiting, defensive rule).
const EPOCH_MS_FLOOR: f64 = 1e12;
/// How far in the future an `oLongest*` start may lie (clock skew between Genesys and us)
/// before it is not believed; within it, the wait reads 0.
const CLOCK_SKEW_MS: f64 = 60_000.0;
/// An `oLongest*` older than this (a year) is not a conversation still waiting.
const MAX_LONGEST_MS: f64 = 366.0 * 86_400_000.0;

#[derive(Debug, Serialize)]
struct Query<'a> {
    filter: QueueFilter<'a>,
    metrics: &'static [&'static str],
}

/// The request body for `queues`: their ids `or`-ed, each once, the [`METRICS`].
fn query_body(queues: &[Arc<Queue>]) -> String {
    let query = Query {
        filter: filter::queue_ids(queues),
        metrics: &METRICS,
    };
    // Serialising plain structs of strings cannot fail.
    serde_json::to_string(&query).unwrap_or_default()
}

/// The queues of one request and its body, encoded once: the poller asks for the same
/// chunks every tick until the queue list changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    queues: Vec<Arc<Queue>>,
    body: String,
}

impl Chunk {
    pub fn new(queues: &[Arc<Queue>]) -> Self {
        Chunk {
            body: query_body(queues),
            queues: queues.to_vec(),
        }
    }

    pub fn queues(&self) -> &[Arc<Queue>] {
        &self.queues
    }
}

/// `queues` in chunks of at most [`MAX_QUEUES_PER_REQUEST`], in order.
pub fn chunks(queues: &[Arc<Queue>]) -> Vec<Chunk> {
    queues
        .chunks(MAX_QUEUES_PER_REQUEST)
        .map(Chunk::new)
        .collect()
}

// The answer is parsed borrowing from the body, and folded into the observations as it is
// read: a poll of 1,000 queues reads a few megabytes of JSON, and owned strings for every
// metric name, or a list of every group and datum kept until the end of the answer, would
// be most of its cost (thousands of short-lived allocations per poll).

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum GroupField {
    Group,
    Data,
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
struct Datum<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::text")]
    metric: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::text")]
    qualifier: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "lenient::object")]
    stats: DatumStats,
}

/// `count` is optional in the official SDKs' `StatisticalSummary`: the `oLongest*`
/// metrics may come with a `calculatedMetricValue` only.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DatumStats {
    #[serde(default, deserialize_with = "lenient::number")]
    count: Option<f64>,
    #[serde(default, deserialize_with = "lenient::number")]
    calculated_metric_value: Option<f64>,
}

/// What one chunk's query produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkResult {
    /// One per queue of the chunk present in the answer, in chunk order.
    pub observations: Vec<QueueObservation>,
    /// Queues of the chunk the answer said nothing about.
    pub missing: Vec<Arc<Queue>>,
}

/// Queries the current state of the queues of `chunk`.
pub fn observe(
    client: &GenesysClient,
    chunk: &Chunk,
    deadline: Instant,
) -> Result<ChunkResult, ApiError> {
    client.post_encoded(paths::OBSERVATIONS, &chunk.body, deadline, &|body| {
        decode(body, &chunk.queues, client.genesys_now_ms())
    })
}

/// Parses a response body received at `now_ms`.
#[cfg(test)]
pub fn parse(body: &str, chunk: &[Arc<Queue>], now_ms: u64) -> Result<ChunkResult, ApiError> {
    decode(body, chunk, now_ms).map_err(ApiError::Malformed)
}

fn decode(body: &str, chunk: &[Arc<Queue>], now_ms: u64) -> Result<ChunkResult, String> {
    let mut fold = Fold::new(chunk, now_ms);
    lenient::answer_seed(body, lenient::Results(&mut fold))
        .map_err(|e| format!("observations answer is not the expected JSON: {e}"))?;
    Ok(fold.finish())
}

/// One chunk's observations, built group by group as the answer is read.
struct Fold<'c> {
    chunk: &'c [Arc<Queue>],
    now_ms: u64,
    /// Position in `chunk` of each id (ids are lower-case; answers are matched in any case).
    positions: HashMap<&'c str, usize>,
    found: Vec<Option<QueueObservation>>,
    agents_seen: Vec<bool>,
}

/// Where the data of one result group goes.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The agent counts of the queue at this position of the chunk.
    Agents(usize),
    /// The values of one media entry (position in the chunk, index in its `media`).
    Media(usize, usize),
    /// Nowhere: no queue id, a queue not asked for, or a group already read.
    Skip,
}

impl<'c> Fold<'c> {
    fn new(chunk: &'c [Arc<Queue>], now_ms: u64) -> Self {
        Fold {
            chunk,
            now_ms,
            positions: chunk
                .iter()
                .enumerate()
                .rev()
                .map(|(i, q)| (q.id.as_str(), i))
                .collect(),
            found: vec![None; chunk.len()],
            agents_seen: vec![false; chunk.len()],
        }
    }

    /// Where the data of the group `key` goes; the queue's observation (and the group's
    /// media entry) exists from here on, even if the group has no data.
    fn target(&mut self, key: &GroupKey) -> Target {
        let Some(id) = key.queue_id.as_deref() else {
            return Target::Skip;
        };
        let position = self
            .positions
            .get(id)
            .or_else(|| self.positions.get(id.to_ascii_lowercase().as_str()));
        let Some(&position) = position else {
            return Target::Skip;
        };
        let queue = &self.chunk[position];
        let observation = self.found[position].get_or_insert_with(|| QueueObservation {
            queue: Arc::clone(queue),
            agents: [0.0; 8],
            media: Vec::with_capacity(5),
        });
        let media_type = key.media_type.as_deref();
        let seen = match media_type {
            None => std::mem::replace(&mut self.agents_seen[position], true),
            Some(media_type) => observation
                .media
                .iter()
                .any(|m| m.media_type.eq_ignore_ascii_case(media_type)),
        };
        if seen {
            lenient::note_once(
                "duplicate observation group",
                format_args!(
                    "queue {id} (media {}) twice in one observations answer; the first is used",
                    media_type.unwrap_or("none")
                ),
            );
            return Target::Skip;
        }
        match media_type {
            None => Target::Agents(position),
            Some(media_type) => {
                observation.media.push(MediaObservation {
                    media_type: intern(media_type),
                    values: [0.0; 5],
                });
                Target::Media(position, observation.media.len() - 1)
            }
        }
    }

    fn add(&mut self, target: Target, datum: &Datum) {
        match target {
            Target::Agents(position) => {
                if let Some(observation) = &mut self.found[position] {
                    add_agent_metric(&mut observation.agents, datum);
                }
            }
            Target::Media(position, i) => {
                let entry = self.found[position]
                    .as_mut()
                    .and_then(|o| o.media.get_mut(i));
                if let Some(entry) = entry {
                    add_media_metric(&mut entry.values, datum, self.now_ms);
                }
            }
            Target::Skip => {}
        }
    }

    /// The observations in chunk order, and the queues the answer said nothing about.
    fn finish(mut self) -> ChunkResult {
        let mut result = ChunkResult {
            observations: Vec::with_capacity(self.chunk.len()),
            missing: Vec::new(),
        };
        for (position, queue) in self.chunk.iter().enumerate() {
            if self.positions.get(queue.id.as_str()) != Some(&position) {
                continue; // the same id twice in the chunk: reported once
            }
            match self.found[position].take() {
                Some(observation) => result.observations.push(observation),
                None => result.missing.push(Arc::clone(queue)),
            }
        }
        result
    }
}

/// Each entry of `results` is one group.
impl<'de> lenient::Entry<'de> for Fold<'_> {
    fn entry<D: Deserializer<'de>>(&mut self, group: D) -> Result<(), D::Error> {
        group.deserialize_map(Group(self))
    }
}

/// One result group: its `data` folded into the target its `group` names. Keys may come
/// in any order: data read before the group key is kept until the key is known.
struct Group<'f, 'c>(&'f mut Fold<'c>);

impl<'de> Visitor<'de> for Group<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an observations group")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fold = self.0;
        let mut target = None;
        let mut data = false;
        let mut early: Vec<Datum<'de>> = Vec::new();
        while let Some(field) = map.next_key()? {
            match field {
                GroupField::Group if target.is_some() => {
                    return Err(de::Error::duplicate_field("group"))
                }
                GroupField::Data if data => return Err(de::Error::duplicate_field("data")),
                GroupField::Group => {
                    let key: GroupKey = map.next_value_seed(lenient::Object::default())?;
                    let known = fold.target(&key);
                    for datum in early.drain(..) {
                        fold.add(known, &datum);
                    }
                    target = Some(known);
                }
                GroupField::Data => {
                    data = true;
                    match target {
                        Some(known) => map.next_value_seed(lenient::Each(&mut lenient::each(
                            |datum: Datum| fold.add(known, &datum),
                        )))?,
                        None => {
                            map.next_value_seed(lenient::Each(&mut lenient::each(|datum| {
                                early.push(datum)
                            })))?
                        }
                    }
                }
                GroupField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

fn count(datum: &Datum) -> f64 {
    lenient::count(datum.stats.count)
}

fn add_agent_metric(agents: &mut [f64; 8], datum: &Datum) {
    let n = count(datum);
    match datum.metric.as_deref().unwrap_or_default() {
        "oOnQueueUsers" => {
            agents[agent::ON_QUEUE] += n;
            let slot = match datum.qualifier.as_deref() {
                Some("IDLE") => Some(agent::IDLE),
                Some("INTERACTING") => Some(agent::INTERACTING),
                Some("COMMUNICATING") => Some(agent::COMMUNICATING),
                Some("NOT_RESPONDING") => Some(agent::NOT_RESPONDING),
                _ => None,
            };
            if let Some(slot) = slot {
                agents[slot] += n;
            }
        }
        "oOffQueueUsers" => agents[agent::OFF_QUEUE] += n,
        "oActiveUsers" => agents[agent::ACTIVE] += n,
        "oMemberUsers" => agents[agent::MEMBERS] += n,
        _ => {}
    }
}

fn add_media_metric(values: &mut [f64; 5], datum: &Datum, now_ms: u64) {
    match datum.metric.as_deref().unwrap_or_default() {
        "oWaiting" => values[media::WAITING] += count(datum),
        "oInteracting" => values[media::INTERACTING] += count(datum),
        "oAlerting" => values[media::ALERTING] += count(datum),
        "oLongestWaiting" => {
            let s = longest_seconds_of(datum, now_ms);
            values[media::LONGEST_WAITING_SECONDS] = values[media::LONGEST_WAITING_SECONDS].max(s);
        }
        "oLongestInteracting" => {
            let s = longest_seconds_of(datum, now_ms);
            values[media::LONGEST_INTERACTING_SECONDS] =
                values[media::LONGEST_INTERACTING_SECONDS].max(s);
        }
        _ => {}
    }
}

/// Seconds the oldest interaction has been waiting/interacting at `now_ms`; 0 when none.
/// `calculated` counts whenever it is plausible, even without a `count` (optional in the
/// official SDKs); only an explicit count of 0 says nobody is there.
pub fn longest_seconds(count: Option<f64>, calculated: Option<f64>, now_ms: u64) -> f64 {
    if count.is_some_and(|c| lenient::count(Some(c)) == 0.0) {
        return 0.0;
    }
    let Some(value) = calculated else {
        return 0.0;
    };
    let ms = if value < EPOCH_MS_FLOOR {
        value
    } else {
        now_ms as f64 - value
    };
    if !(-CLOCK_SKEW_MS..=MAX_LONGEST_MS).contains(&ms) {
        lenient::note_once(
            "implausible longest",
            format_args!(
                "an oLongest* calculatedMetricValue of {value} (now {now_ms} ms since 1970); read as 0"
            ),
        );
        return 0.0;
    }
    (ms / 1000.0).max(0.0)
}

fn longest_seconds_of(datum: &Datum, now_ms: u64) -> f64 {
    longest_seconds(
        datum.stats.count,
        datum.stats.calculated_metric_value,
        now_ms,
    )
}

/// The shared lower-case `Arc<str>` for a media type (matched in any case), so thousands
/// of observations share a handful of allocations. The table is bounded; unusual values
/// past it get their own allocation.
pub fn intern(media_type: &str) -> Arc<str> {
    const MAX_INTERNED: usize = 64;
    static TABLE: OnceLock<Mutex<Vec<Arc<str>>>> = OnceLock::new();
    let table = TABLE.get_or_init(|| Mutex::new(Vec::new()));
    let mut table = table.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(existing) = table.iter().find(|m| m.eq_ignore_ascii_case(media_type)) {
        return Arc::clone(existing);
    }
    let fresh: Arc<str> = Arc::from(media_type.to_lowercase());
    if table.len() < MAX_INTERNED {
        table.push(Arc::clone(&fresh));
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When the fixtures were served: 2025-06-02T14:30:10.000Z.
    const SERVED_MS: u64 = 1_748_874_610_000;
    const SUPPORT: &str = "118fd762-9005-45cf-9fad-a87f37eacbc3";
    const SALES: &str = "a5b4e893-b5b4-4d27-a7de-d6d3b104b490";
    const VIP: &str = "da689914-f8d0-4a56-aa1c-425d83163d12";
    const WEEKEND: &str = "1ba56b25-0d62-42e3-b4c3-dc6280f604f3";

    fn queue(id: &str, name: &str) -> Arc<Queue> {
        Arc::new(Queue {
            id: id.into(),
            name: name.into(),
        })
    }

    fn chunk() -> Vec<Arc<Queue>> {
        vec![
            queue(SUPPORT, "Support – Ünïcode"),
            queue(SALES, "Sales, EMEA = \"Tier 1\""),
            queue(VIP, "🎧 VIP Line 📞"),
        ]
    }

    fn media<'a>(o: &'a QueueObservation, media_type: &str) -> &'a [f64; 5] {
        &o.media
            .iter()
            .find(|m| &*m.media_type == media_type)
            .unwrap()
            .values
    }

    #[test]
    fn the_request_body_is_the_documented_one_without_the_unused_metrics() {
        let mut expected: serde_json::Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/genesys/observations-request.json"
        ))
        .unwrap();
        let metrics = expected["metrics"].as_array_mut().unwrap();
        metrics.retain(|m| m != "oUserPresences" && m != "oUserRoutingStatuses");
        assert_eq!(metrics.len(), 9);
        let sent = |queues: &[Arc<Queue>]| -> serde_json::Value {
            serde_json::from_str(&query_body(queues)).unwrap()
        };
        assert_eq!(sent(&chunk()), expected);
        let mut doubled = chunk();
        doubled.push(queue(SUPPORT, "again"));
        assert_eq!(sent(&doubled), expected);
    }

    #[test]
    fn chunks_hold_at_most_a_request_of_queues_in_order_each_with_its_own_body() {
        let queues: Vec<Arc<Queue>> = (0..250).map(|i| queue(&format!("{i:032x}"), "q")).collect();
        let chunks = chunks(&queues);
        let sizes: Vec<usize> = chunks.iter().map(|c| c.queues().len()).collect();
        assert_eq!(sizes, vec![100, 100, 50]);
        for (chunk, queues) in chunks.iter().zip(queues.chunks(MAX_QUEUES_PER_REQUEST)) {
            assert_eq!(chunk.queues(), queues);
            assert_eq!(chunk.body, query_body(queues));
        }
        assert!(super::chunks(&[]).is_empty());
    }

    #[test]
    fn parses_the_fixture_response() {
        let body = include_str!("../../tests/fixtures/genesys/observations-response.json");
        let result = parse(body, &chunk(), SERVED_MS).unwrap();
        assert!(result.missing.is_empty());
        assert_eq!(result.observations.len(), 3);
        let support = &result.observations[0];
        assert_eq!(support.queue.name, "Support – Ünïcode");
        // on_queue, idle, interacting, communicating, not_responding, off_queue, active, members
        assert_eq!(support.agents, [10.0, 3.0, 5.0, 1.0, 1.0, 8.0, 18.0, 22.0]);
        let types: Vec<&str> = support.media.iter().map(|m| &*m.media_type).collect();
        assert_eq!(types, vec!["voice", "chat", "email", "callback", "message"]);
        let voice = media(support, "voice");
        assert_eq!(voice[media::WAITING], 7.0);
        assert_eq!(voice[media::INTERACTING], 5.0);
        assert_eq!(voice[media::ALERTING], 1.0);
        assert!((voice[media::LONGEST_WAITING_SECONDS] - 312.412).abs() < 1e-9);
        assert!((voice[media::LONGEST_INTERACTING_SECONDS] - 1004.117).abs() < 1e-9);
        assert_eq!(media(support, "chat"), &[0.0; 5]);
        assert!((media(support, "email")[media::LONGEST_WAITING_SECONDS] - 183_605.0).abs() < 1e-9);

        let sales = &result.observations[1];
        assert_eq!(sales.agents, [6.0, 2.0, 4.0, 0.0, 0.0, 3.0, 9.0, 9.0]);
        let chat = media(sales, "chat");
        assert_eq!(chat[media::LONGEST_WAITING_SECONDS], 0.0);
        assert!((chat[media::LONGEST_INTERACTING_SECONDS] - 300.0).abs() < 1e-9);

        let vip = &result.observations[2];
        assert_eq!(vip.agents, [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 4.0]);
        assert!((media(vip, "voice")[media::LONGEST_WAITING_SECONDS] - 3.12).abs() < 1e-9);
        // Media types are shared allocations.
        assert!(Arc::ptr_eq(
            &support.media[0].media_type,
            &vip.media[0].media_type
        ));
    }

    #[test]
    fn an_empty_queue_is_all_zeros() {
        let body =
            include_str!("../../tests/fixtures/genesys/observations-response-empty-queue.json");
        let result = parse(body, &[queue(WEEKEND, "Weekend Overflow")], SERVED_MS).unwrap();
        let weekend = &result.observations[0];
        assert_eq!(weekend.agents, [0.0; 8]);
        assert_eq!(weekend.media.len(), 5);
        assert!(weekend.media.iter().all(|m| m.values == [0.0; 5]));
    }

    #[test]
    fn a_queue_absent_from_the_answer_is_reported_missing() {
        let body = include_str!("../../tests/fixtures/genesys/observations-response.json");
        let mut asked = chunk();
        asked.push(queue(WEEKEND, "Weekend Overflow"));
        let result = parse(body, &asked, SERVED_MS).unwrap();
        assert_eq!(result.observations.len(), 3);
        assert_eq!(result.missing.len(), 1);
        assert_eq!(result.missing[0].id, WEEKEND);
    }

    #[test]
    fn unknown_fields_metrics_and_upper_case_ids_are_tolerated() {
        let body = r#"{"results":[
            {"group":{"queueId":"118FD762-9005-45CF-9FAD-A87F37EACBC3","mediaType":"Voice","extra":"x"},
             "data":[{"metric":"oWaiting","stats":{"count":2,"min":1}},
                     {"metric":"oBrandNew","stats":{"count":99}},
                     {"metric":"oLongestWaiting","stats":{"count":2,"calculatedMetricValue":4500}}],
             "newField":true},
            {"group":{"mediaType":"voice"},"data":[{"metric":"oWaiting","stats":{"count":50}}]},
            {"group":{"queueId":"unasked"},"data":[]}
        ],"somethingElse":{}}"#;
        let result = parse(body, &chunk()[..1], SERVED_MS).unwrap();
        let support = &result.observations[0];
        assert_eq!(support.agents, [0.0; 8]);
        let voice = media(support, "voice");
        assert_eq!(voice[media::WAITING], 2.0);
        // below 10^12: a duration in ms, not a timestamp
        assert_eq!(voice[media::LONGEST_WAITING_SECONDS], 4.5);
        assert!(matches!(
            parse("[1,2]", &chunk(), SERVED_MS),
            Err(ApiError::Malformed(_))
        ));
        assert_eq!(parse("{}", &chunk(), SERVED_MS).unwrap().missing.len(), 3);
    }

    /// The fixture answer with one edit applied to its JSON.
    fn edited(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let body = include_str!("../../tests/fixtures/genesys/observations-response.json");
        let mut value: serde_json::Value = serde_json::from_str(body).unwrap();
        edit(&mut value);
        value.to_string()
    }

    #[test]
    fn a_null_or_a_wrong_type_in_one_datum_loses_nothing_else() {
        let expected = parse(
            include_str!("../../tests/fixtures/genesys/observations-response.json"),
            &chunk(),
            SERVED_MS,
        )
        .unwrap();
        for odd in [
            serde_json::Value::Null,
            serde_json::json!("x"),
            serde_json::json!([1]),
        ] {
            // results[0] is Support's agent group; its first datum is oOnQueueUsers IDLE (3).
            let body = edited(|v| v["results"][0]["data"][0]["stats"] = odd.clone());
            let result = parse(&body, &chunk(), SERVED_MS).unwrap();
            assert_eq!(result.observations[1..], expected.observations[1..]);
            assert_eq!(result.observations[0].agents[agent::IDLE], 0.0);
            assert_eq!(result.observations[0].media, expected.observations[0].media);
        }
        let body = edited(|v| {
            v["results"][1]["data"] = serde_json::Value::Null;
            v["results"][2]["group"] = serde_json::Value::Null;
        });
        let result = parse(&body, &chunk(), SERVED_MS).unwrap();
        assert_eq!(result.observations[1..], expected.observations[1..]);
    }

    #[test]
    fn longest_without_a_count_uses_the_calculated_value() {
        let body = r#"{"results":[{"group":{"queueId":"118fd762-9005-45cf-9fad-a87f37eacbc3","mediaType":"voice"},
            "data":[{"metric":"oLongestWaiting","stats":{"calculatedMetricValue":1748874600000}},
                    {"metric":"oLongestInteracting","stats":{"count":null,"calculatedMetricValue":1748874550000}}]}]}"#;
        let result = parse(body, &chunk()[..1], SERVED_MS).unwrap();
        let voice = media(&result.observations[0], "voice");
        assert_eq!(voice[media::LONGEST_WAITING_SECONDS], 10.0);
        assert_eq!(voice[media::LONGEST_INTERACTING_SECONDS], 60.0);
    }

    #[test]
    fn a_duplicate_group_is_counted_once() {
        let expected = parse(
            include_str!("../../tests/fixtures/genesys/observations-response.json"),
            &chunk(),
            SERVED_MS,
        )
        .unwrap();
        let body = edited(|v| {
            let results = v["results"].as_array_mut().unwrap();
            let doubled: Vec<_> = results.iter().take(3).cloned().collect();
            results.extend(doubled);
        });
        assert_eq!(parse(&body, &chunk(), SERVED_MS).unwrap(), expected);
    }

    #[test]
    fn longest_is_never_negative_and_zero_without_a_value() {
        assert_eq!(
            longest_seconds(Some(1.0), Some(SERVED_MS as f64 + 5000.0), SERVED_MS),
            0.0
        );
        assert_eq!(
            longest_seconds(Some(0.0), Some(1_748_874_297_588.0), SERVED_MS),
            0.0
        );
        assert_eq!(longest_seconds(Some(3.0), None, SERVED_MS), 0.0);
        assert_eq!(
            longest_seconds(Some(3.0), Some(1_748_874_600_000.0), SERVED_MS),
            10.0
        );
        // implausible: far in the future, absurdly old, not a number
        let future = SERVED_MS as f64 + 3_600_000.0;
        assert_eq!(longest_seconds(Some(1.0), Some(future), SERVED_MS), 0.0);
        assert_eq!(longest_seconds(None, Some(1e12), SERVED_MS), 0.0);
        assert_eq!(longest_seconds(None, Some(f64::NAN), SERVED_MS), 0.0);
    }

    #[test]
    fn data_before_the_group_key_is_folded_once_the_key_is_read() {
        let body = r#"{"results":[
            {"data":[{"metric":"oWaiting","stats":{"count":2}},{"metric":"oAlerting","stats":{"count":1}}],
             "extra":[1],"group":{"mediaType":"voice","queueId":"118fd762-9005-45cf-9fad-a87f37eacbc3"}},
            {"data":[{"metric":"oMemberUsers","stats":{"count":4}}],
             "group":{"queueId":"118fd762-9005-45cf-9fad-a87f37eacbc3"}},
            {"data":[{"metric":"oWaiting","stats":{"count":50}}],
             "group":{"mediaType":"VOICE","queueId":"118fd762-9005-45cf-9fad-a87f37eacbc3"}},
            {"data":[{"metric":"oWaiting","stats":{"count":9}}]},
            {"data":[{"metric":"oMemberUsers","stats":{"count":9}}],"group":{"queueId":"unasked"}},
            {"group":{"mediaType":"chat","queueId":"118fd762-9005-45cf-9fad-a87f37eacbc3"}}
        ]}"#;
        let result = parse(body, &chunk(), SERVED_MS).unwrap();
        assert_eq!(result.observations.len(), 1);
        let support = &result.observations[0];
        assert_eq!(support.agents[agent::MEMBERS], 4.0);
        assert_eq!(media(support, "voice"), &[2.0, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(media(support, "chat"), &[0.0; 5]);
        assert_eq!(support.media.len(), 2);
        assert_eq!(result.missing.len(), 2);
        // As for any derived struct, a key twice in one object is not the expected JSON.
        let twice = r#"{"results":[{"data":[],"group":{},"data":[]}]}"#;
        assert!(parse(twice, &chunk(), SERVED_MS).is_err());
    }

    /// The parser as it was before answers were folded while read: the whole answer into
    /// a list of groups, each with its list of data, then folded. The streaming parser
    /// must give exactly its results.
    mod oracle {
        use super::*;
        use crate::genesys::filter::ResultGroup;

        #[derive(Debug, Default, Deserialize)]
        struct Response<'a> {
            #[serde(default, borrow, deserialize_with = "lenient::list")]
            results: Vec<ResultGroup<'a, Datum<'a>>>,
        }

        pub fn parse(body: &str, chunk: &[Arc<Queue>], now_ms: u64) -> Option<ChunkResult> {
            let response: Response = lenient::answer(body).ok()?;
            Some(to_observations(response, chunk, now_ms))
        }

        fn to_observations(response: Response, chunk: &[Arc<Queue>], now_ms: u64) -> ChunkResult {
            let positions: HashMap<&str, usize> = chunk
                .iter()
                .enumerate()
                .rev()
                .map(|(i, q)| (q.id.as_str(), i))
                .collect();
            let mut found: Vec<Option<QueueObservation>> = vec![None; chunk.len()];
            let mut agents_seen = vec![false; chunk.len()];
            for group in response.results {
                let Some(id) = group.group.queue_id.as_deref() else {
                    continue;
                };
                let position = positions
                    .get(id)
                    .or_else(|| positions.get(id.to_ascii_lowercase().as_str()));
                let Some(&position) = position else {
                    continue;
                };
                let observation = found[position].get_or_insert_with(|| QueueObservation {
                    queue: Arc::clone(&chunk[position]),
                    agents: [0.0; 8],
                    media: Vec::with_capacity(5),
                });
                let media_type = group.group.media_type.as_deref();
                let seen = match media_type {
                    None => std::mem::replace(&mut agents_seen[position], true),
                    Some(media_type) => observation
                        .media
                        .iter()
                        .any(|m| m.media_type.eq_ignore_ascii_case(media_type)),
                };
                if seen {
                    continue;
                }
                match media_type {
                    None => group
                        .data
                        .iter()
                        .for_each(|d| add_agent_metric(&mut observation.agents, d)),
                    Some(media_type) => {
                        let mut values = [0.0; 5];
                        for datum in &group.data {
                            add_media_metric(&mut values, datum, now_ms);
                        }
                        observation.media.push(MediaObservation {
                            media_type: intern(media_type),
                            values,
                        });
                    }
                }
            }
            let mut result = ChunkResult {
                observations: Vec::with_capacity(chunk.len()),
                missing: Vec::new(),
            };
            for (position, queue) in chunk.iter().enumerate() {
                if positions.get(queue.id.as_str()) != Some(&position) {
                    continue;
                }
                match found[position].take() {
                    Some(observation) => result.observations.push(observation),
                    None => result.missing.push(Arc::clone(queue)),
                }
            }
            result
        }
    }

    mod mutated {
        use super::*;
        use crate::genesys::lenient::mutation;
        use proptest::prelude::*;

        const BODY: &str = include_str!("../../tests/fixtures/genesys/observations-response.json");

        /// `value` as JSON text, each object's keys rotated (and maybe reversed) by the
        /// next of `order`.
        fn render<'a>(
            value: &serde_json::Value,
            order: &mut impl Iterator<Item = &'a u8>,
            out: &mut String,
        ) {
            match value {
                serde_json::Value::Object(map) => {
                    let mut entries: Vec<_> = map.iter().collect();
                    let turn = usize::from(*order.next().unwrap_or(&0));
                    let n = entries.len().max(1);
                    entries.rotate_left(turn % n);
                    if turn & 0x80 != 0 {
                        entries.reverse();
                    }
                    out.push('{');
                    for (i, (key, child)) in entries.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&serde_json::Value::from(key.as_str()).to_string());
                        out.push(':');
                        render(child, order, out);
                    }
                    out.push('}');
                }
                serde_json::Value::Array(items) => {
                    out.push('[');
                    for (i, child) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        render(child, order, out);
                    }
                    out.push(']');
                }
                scalar => out.push_str(&scalar.to_string()),
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Damaged answers, with groups repeated, ids in upper case and every object's
            /// keys in a random order (`data` before `group` too), parse exactly as the
            /// parser that kept every group and datum until the end of the answer did.
            #[test]
            fn streaming_gives_exactly_what_the_list_based_parser_gave(
                mutations in mutation::mutations(),
                repeats in proptest::collection::vec(any::<usize>(), 0..3),
                upper in proptest::option::of(any::<usize>()),
                order in proptest::collection::vec(any::<u8>(), 1..64),
            ) {
                let mut doc: serde_json::Value = serde_json::from_str(BODY).unwrap();
                if let Some(results) = doc["results"].as_array_mut() {
                    for i in repeats {
                        let copy = results[i % results.len()].clone();
                        results.push(copy);
                    }
                    if let Some(i) = upper {
                        let n = results.len();
                        let id = &mut results[i % n]["group"]["queueId"];
                        if let Some(upper) = id.as_str().map(str::to_ascii_uppercase) {
                            *id = upper.into();
                        }
                    }
                }
                mutation::apply(&mut doc, &mutations);
                let mut body = String::new();
                render(&doc, &mut order.iter().cycle(), &mut body);
                let mut asked = chunk();
                asked.push(queue(SUPPORT, "again"));
                asked.push(queue(WEEKEND, "Weekend Overflow"));
                let streamed = parse(&body, &asked, SERVED_MS).ok();
                prop_assert_eq!(streamed, oracle::parse(&body, &asked, SERVED_MS));
            }

            /// Whatever is damaged, nothing panics, and every queue none of whose result
            /// groups was touched keeps exactly the readings of the intact answer.
            #[test]
            fn answers_never_panic_and_untouched_queues_keep_their_readings(
                mutations in mutation::mutations()
            ) {
                let original: serde_json::Value = serde_json::from_str(BODY).unwrap();
                let expected = parse(BODY, &chunk(), SERVED_MS).unwrap();
                let mut doc = original.clone();
                let touched = mutation::apply(&mut doc, &mutations);
                let result = parse(&doc.to_string(), &chunk(), SERVED_MS);
                let hit: Option<Vec<&str>> = touched
                    .iter()
                    .map(|p| {
                        mutation::entry_of(p, "results")
                            .map(|i| original["results"][i]["group"]["queueId"].as_str().unwrap_or(""))
                    })
                    .collect();
                let Some(hit) = hit else { return Ok(()) };
                let result = result.unwrap();
                for kept in expected.observations.iter().filter(|o| !hit.contains(&o.queue.id.as_str())) {
                    let found = result.observations.iter().find(|o| o.queue.id == kept.queue.id);
                    prop_assert_eq!(found, Some(kept));
                }
            }
        }
    }
}

/// Ages against a simulated Genesys Cloud whose clock is off from this host's: the
/// `Date` headers of its answers correct them.
#[cfg(test)]
mod skewed_clocks {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::observe;
    use crate::genesys::client::tests::recording_client;
    use crate::model::{media, Queue};
    use crate::sim::{Endpoint, Sim, SimOptions};

    /// Polls every queue of a Sim whose clock is `offset_ms` ahead once and compares each
    /// `longest_waiting_seconds` with what the Sim says it served.
    fn waits_are_right_with_the_sim_clock_off_by(offset_ms: i64) {
        let sim = Sim::start(SimOptions {
            queue_count: 30,
            value_period: Duration::from_secs(3600),
            clock_offset_ms: offset_ms,
            ..SimOptions::default()
        })
        .unwrap();
        let (client, _, _) = recording_client(&crate::testing::sim_genesys(&sim));
        let queues: Vec<Arc<Queue>> = sim
            .queues()
            .into_iter()
            .map(|(id, name)| Arc::new(Queue { id, name }))
            .collect();
        client.login().unwrap();
        let result = observe(
            &client,
            &super::Chunk::new(&queues),
            Instant::now() + Duration::from_secs(30),
        )
        .unwrap();
        let asked = sim
            .requests()
            .into_iter()
            .find(|r| r.endpoint == Some(Endpoint::Observations))
            .unwrap();
        let slot = sim.slot_at(asked.time_ms);
        let mut compared = 0;
        for observation in &result.observations {
            let expected = sim.observation_at(&observation.queue.id, slot);
            for got in &observation.media {
                let served = expected.media(&got.media_type).unwrap().longest_waiting_ms;
                let value = got.values[media::LONGEST_WAITING_SECONDS];
                if served > 0 {
                    compared += 1;
                    assert!(
                        (value - served as f64 / 1000.0).abs() < 1.5,
                        "clock off by {offset_ms} ms: {value} s stored, {served} ms served"
                    );
                }
            }
        }
        assert!(compared > 10, "only {compared} waits compared");
    }

    #[test]
    fn waits_are_right_when_the_host_clock_is_300_s_slow() {
        waits_are_right_with_the_sim_clock_off_by(300_000);
    }

    #[test]
    fn waits_are_right_when_the_host_clock_is_300_s_fast() {
        waits_are_right_with_the_sim_clock_off_by(-300_000);
    }

    #[test]
    fn waits_are_right_when_the_clocks_agree() {
        waits_are_right_with_the_sim_clock_off_by(0);
    }
}
