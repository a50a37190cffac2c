//! `POST /api/v2/analytics/queues/observations/query`: the metrics, groups and
//! qualifiers of docs/genesys-api.md#observations-answer, with the sparse shapes and
//! unknown-queue behaviours of docs/genesys-api.md#missing-and-unknown.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::errors::bad_request;
use super::query::{filter_values, snapshot};
use super::values;
use super::{period_ms, Shared, UnknownQueues};
use crate::loopback_http::{Request, Response};

/// The eleven observation metrics (docs/genesys-api.md#observation-metrics): user metrics, then conversation metrics.
const USER_METRICS: [&str; 6] = [
    "oOnQueueUsers",
    "oOffQueueUsers",
    "oActiveUsers",
    "oMemberUsers",
    "oUserPresences",
    "oUserRoutingStatuses",
];
const CONVERSATION_METRICS: [&str; 5] = [
    "oWaiting",
    "oInteracting",
    "oAlerting",
    "oLongestWaiting",
    "oLongestInteracting",
];
/// Answers rendered in the current value period, by request body (only with
/// `SimOptions::prerendered_answers`). Emptied when the period changes, so it holds one
/// period's chunks at most.
#[derive(Debug, Default)]
pub(super) struct AnswerCache {
    slot: u64,
    answers: HashMap<Vec<u8>, Vec<u8>>,
}

impl AnswerCache {
    pub(super) fn get(&self, slot: u64, query: &[u8]) -> Option<&[u8]> {
        if self.slot != slot {
            return None;
        }
        self.answers.get(query).map(Vec::as_slice)
    }

    pub(super) fn put(&mut self, slot: u64, query: &[u8], answer: &[u8]) {
        if self.slot != slot {
            self.slot = slot;
            self.answers.clear();
        }
        self.answers.insert(query.to_vec(), answer.to_vec());
    }
}

pub(super) fn observations(
    shared: &Shared,
    req: &Request,
    now: u64,
    context: &str,
) -> Result<Response, Response> {
    let cache_slot = {
        let state = shared.lock();
        let slot = now / period_ms(&state.options);
        if let Some(answer) = state.answers.get(slot, &req.body) {
            return Ok(Response::new(200, "application/json", answer));
        }
        (state.options.prerendered_answers && !state.options.changes_at_random_moments)
            .then_some(slot)
    };
    let response = render(shared, req, now, context)?;
    if let Some(slot) = cache_slot {
        shared.lock().answers.put(slot, &req.body, &response.body);
    }
    Ok(response)
}

fn render(shared: &Shared, req: &Request, now: u64, context: &str) -> Result<Response, Response> {
    let body: Value = serde_json::from_slice(&req.body).map_err(|_| bad_request(context))?;
    let metrics: Vec<&str> = body
        .get("metrics")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request(context))?
        .iter()
        .map(|m| m.as_str().ok_or_else(|| bad_request(context)))
        .collect::<Result<_, _>>()?;
    if metrics.is_empty()
        || metrics
            .iter()
            .any(|m| !USER_METRICS.contains(m) && !CONVERSATION_METRICS.contains(m))
    {
        return Err(bad_request(context));
    }
    let filter = filter_values(body.get("filter").ok_or_else(|| bad_request(context))?)
        .map_err(|_| bad_request(context))?;
    let snap = snapshot(shared);
    if filter.queue_ids.is_empty() || filter.queue_predicates > snap.max_predicates {
        return Err(bad_request(context));
    }
    let mut results = Vec::new();
    for id in &filter.queue_ids {
        let index = snap.index_of(id);
        let slot = index.map_or(now / snap.period_ms, |index| snap.slot(index, now));
        let observation = match (index, snap.unknown) {
            (Some(index), _) => values::observation(snap.seed, index, slot, &snap.media_types),
            (None, UnknownQueues::Empty) => values::empty_observation(&snap.media_types),
            (None, UnknownQueues::Omit) => continue,
            (None, UnknownQueues::Reject) => return Err(bad_request(context)),
        };
        results.extend(observation_groups(
            id,
            &observation,
            &metrics,
            &filter.media_types,
            now,
            slot,
        ));
    }
    let mut out = Map::new();
    if metrics.contains(&"oUserPresences") {
        out.insert("systemToOrganizationMappings".into(), presence_mappings());
    }
    out.insert("results".into(), Value::Array(results));
    Ok(Response::json(200, &Value::Object(out)))
}

/// The user group and one group per media type of one queue (docs/genesys-api.md#observations and docs/genesys-api.md#missing-and-unknown).
pub(super) fn observation_groups(
    id: &str,
    o: &values::ExpectedObservation,
    metrics: &[&str],
    media_filter: &[String],
    now: u64,
    slot: u64,
) -> Vec<Value> {
    let wants = |m: &str| metrics.contains(&m);
    let sparse = sparse_shape(id);
    let mut groups = Vec::new();
    let mut data = Vec::new();
    let routing = [
        ("IDLE", o.idle),
        ("INTERACTING", o.interacting),
        ("NOT_RESPONDING", o.not_responding),
        ("COMMUNICATING", o.communicating),
    ];
    if wants("oOnQueueUsers") {
        data.extend(qualified(
            "oOnQueueUsers",
            routing.iter().map(|&(q, c)| (q, c)),
        ));
    }
    for (metric, count) in [
        ("oOffQueueUsers", o.off_queue),
        ("oActiveUsers", o.active),
        ("oMemberUsers", o.members),
    ] {
        if wants(metric) {
            data.push(json!({"metric": metric, "stats": {"count": count}}));
        }
    }
    if wants("oUserPresences") {
        data.extend(qualified(
            "oUserPresences",
            o.presences.iter().map(|&(_, id, c)| (id, c)),
        ));
    }
    if wants("oUserRoutingStatuses") {
        let statuses = routing.iter().copied().chain([("OFF_QUEUE", o.off_queue)]);
        data.extend(qualified("oUserRoutingStatuses", statuses));
    }
    if USER_METRICS.iter().any(|m| wants(m)) {
        groups.push(json!({"group": {"queueId": id}, "data": data}));
    }
    if !CONVERSATION_METRICS.iter().any(|m| wants(m)) {
        return groups;
    }
    for (index, media) in o.media.iter().enumerate() {
        if !media_filter.is_empty() && !media_filter.contains(&media.media_type) {
            continue;
        }
        if sparse && omits_empty_media(index, slot) && media.is_empty() {
            continue;
        }
        let data: Vec<Value> = CONVERSATION_METRICS
            .iter()
            .filter(|m| wants(m))
            .map(|&m| media_entry(m, media, now, sparse))
            .collect();
        groups.push(json!({"group": {"mediaType": media.media_type, "queueId": id}, "data": data}));
    }
    groups
}

/// Entries of a qualified metric; zero counts are not listed (docs/genesys-api.md#qualifiers).
fn qualified<'a>(
    metric: &'a str,
    counts: impl Iterator<Item = (&'a str, u64)> + 'a,
) -> impl Iterator<Item = Value> + 'a {
    counts
        .filter(|&(_, c)| c > 0)
        .map(move |(q, c)| json!({"metric": metric, "qualifier": q, "stats": {"count": c}}))
}

/// Half the queues (id ending in an odd digit) are answered in the sparser shapes Genesys
/// also uses: `oLongest*` without a `count` (optional in the official SDKs'
/// `StatisticalSummary`) and no group for a media type with nothing in it. The values
/// read from either shape are the same.
pub fn sparse_shape(id: &str) -> bool {
    id.bytes().last().is_some_and(|b| b % 2 == 1)
}

/// Whether a sparse queue leaves out an empty media group: on even value slots only, and
/// never the first media type, so every window of two polls or more still sees every
/// media type (the contract writes a media point only for media seen in the window, and
/// the exact-value tests expect one per media type).
pub fn omits_empty_media(media_index: usize, slot: u64) -> bool {
    media_index > 0 && slot % 2 == 0
}

fn media_entry(metric: &str, m: &values::ExpectedMedia, now: u64, sparse: bool) -> Value {
    let (count, age) = match metric {
        "oWaiting" => (m.waiting, None),
        "oInteracting" => (m.interacting, None),
        "oAlerting" => (m.alerting, None),
        "oLongestWaiting" => (m.waiting, Some(m.longest_waiting_ms)),
        _ => (m.interacting, Some(m.longest_interacting_ms)),
    };
    match age {
        Some(_) if sparse && count == 0 => json!({"metric": metric, "stats": {}}),
        Some(age) if sparse => json!({
            "metric": metric,
            "stats": {"calculatedMetricValue": now.saturating_sub(age)},
        }),
        Some(age) if count > 0 => json!({
            "metric": metric,
            "stats": {"count": count, "calculatedMetricValue": now.saturating_sub(age)},
        }),
        _ => json!({"metric": metric, "stats": {"count": count}}),
    }
}

/// The fixtures' `systemToOrganizationMappings`, incl. the custom "Lunch" under `MEAL`.
fn presence_mappings() -> Value {
    json!({
        "OFFLINE": [values::PRESENCE_OFFLINE],
        "AVAILABLE": [values::PRESENCE_AVAILABLE],
        "BUSY": [values::PRESENCE_BUSY],
        "AWAY": ["5e5c5c66-ea97-4e7f-ac41-6424784829f2"],
        "BREAK": ["f2c8a4e6-9b1d-4f3a-8e7c-2a6d4b9f1e35"],
        "MEAL": ["3fd96123-badb-4f69-bc03-1b1ccc6d8014", values::PRESENCE_LUNCH],
        "MEETING": ["d1b7c3e9-4a2f-4e6b-8c1d-3f5a7b9e2c60"],
        "TRAINING": ["7a4e2c9b-1d3f-4b8a-9e6c-5f2d8a1b3c47"],
        "ON_QUEUE": [values::PRESENCE_ON_QUEUE],
        "IDLE": ["5b9d1f3a-7e2c-4a8b-b6d4-1c3e5f7a9b28"],
    })
}
