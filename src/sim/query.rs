//! What the endpoints read out of a request: the queue and media filter of the two
//! analytics queries, a snapshot of the simulator's state taken under its lock, and the
//! query-string and form codecs.

use serde_json::Value;

use super::{period_ms, Shared, UnknownQueues};

/// `queueId` and `mediaType` values found in a query filter (docs/genesys-api.md#observation-metrics and docs/genesys-api.md#aggregates-request).
#[derive(Debug, Default)]
pub struct FilterValues {
    pub queue_ids: Vec<String>,
    pub media_types: Vec<String>,
    /// Number of `queueId` predicates, duplicates included.
    pub queue_predicates: usize,
}

/// Walks `filter.predicates` and nested `clauses` (bounded depth).
pub fn filter_values(filter: &Value) -> Result<FilterValues, ()> {
    let mut found = FilterValues::default();
    walk_filter(filter, 0, &mut found)?;
    Ok(found)
}

fn walk_filter(filter: &Value, depth: usize, found: &mut FilterValues) -> Result<(), ()> {
    if depth > 3 || !filter.is_object() {
        return Err(());
    }
    for predicate in filter
        .get("predicates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let dimension = predicate.get("dimension").and_then(Value::as_str);
        let value = predicate.get("value").and_then(Value::as_str);
        match (dimension, value) {
            (Some("queueId"), Some(v)) => {
                found.queue_predicates += 1;
                if !found.queue_ids.iter().any(|id| id == v) {
                    found.queue_ids.push(v.to_string());
                }
            }
            (Some("mediaType"), Some(v)) => found.media_types.push(v.to_lowercase()),
            (Some(_), _) => {}
            (None, _) => return Err(()),
        }
    }
    for clause in filter
        .get("clauses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        walk_filter(clause, depth + 1, found)?;
    }
    Ok(())
}

/// What the observation and aggregate handlers need, copied out of the lock.
#[derive(Debug)]
pub struct Snapshot {
    pub seed: u64,
    pub media_types: Vec<String>,
    pub unknown: UnknownQueues,
    pub max_predicates: usize,
    pub settle_ms: u64,
    pub min_granularity_ms: u64,
    pub period_ms: u64,
    pub random_moments: bool,
    /// `(id, index)` of the current queues.
    pub queues: Vec<(String, u64)>,
}

impl Snapshot {
    /// The value slot of queue `index` at `time_ms` (see [`values::slot`]).
    pub fn slot(&self, index: u64, time_ms: u64) -> u64 {
        super::values::slot(
            self.seed,
            index,
            time_ms,
            self.period_ms,
            self.random_moments,
        )
    }

    pub fn index_of(&self, id: &str) -> Option<u64> {
        self.queues.iter().find(|(q, _)| q == id).map(|(_, i)| *i)
    }
}

pub(crate) fn snapshot(shared: &Shared) -> Snapshot {
    let state = shared.lock();
    let o = &state.options;
    Snapshot {
        seed: o.seed,
        media_types: o.media_types.clone(),
        unknown: o.unknown_queues,
        max_predicates: o.max_predicates,
        settle_ms: o.kpi_settle.as_millis() as u64,
        min_granularity_ms: o.min_granularity.as_millis() as u64,
        period_ms: period_ms(o),
        random_moments: o.changes_at_random_moments,
        queues: state
            .queues
            .iter()
            .map(|q| (q.id.clone(), q.index))
            .collect(),
    }
}

/// `a=1&b=x%20y` → pairs, percent- and `+`-decoded.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

pub(crate) fn form_value(body: &[u8], key: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    parse_query(text.trim())
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

pub(crate) fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
