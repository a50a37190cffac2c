//! The analytics query filter both queries send: the chunk's queue ids `or`-ed, each id
//! once (docs/genesys-api.md#observations-request and
//! docs/genesys-api.md#aggregates-request share the shape); and the group key both
//! answers carry back for each result, by the same dimensions.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::Queue;

use super::lenient;

/// The `group` of one result: which queue, and which media type (absent for the
/// observations' agent counts). Read leniently, borrowing from the answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupKey<'a> {
    #[serde(default, borrow, deserialize_with = "lenient::text")]
    pub queue_id: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "lenient::text")]
    pub media_type: Option<Cow<'a, str>>,
}

/// One entry of an analytics answer's `results`: its group key and its `data`, each
/// datum read as `D` (whose fields must be lenient too).
#[derive(Debug, Deserialize)]
#[serde(bound(deserialize = "D: Deserialize<'de>"))]
pub struct ResultGroup<'a, D> {
    #[serde(default, borrow, deserialize_with = "lenient::object")]
    pub group: GroupKey<'a>,
    #[serde(default, deserialize_with = "lenient::list")]
    pub data: Vec<D>,
}

#[derive(Debug, Serialize)]
pub struct QueueFilter<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    predicates: Vec<Predicate<'a>>,
}

#[derive(Debug, Serialize)]
struct Predicate<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    dimension: &'static str,
    operator: &'static str,
    value: &'a str,
}

/// `{"type": "or", "predicates": [{"type": "dimension", "dimension": "queueId", ...}]}`
/// with every queue id of `chunk` once, in order.
pub fn queue_ids(chunk: &[Arc<Queue>]) -> QueueFilter<'_> {
    let mut seen = HashSet::new();
    let predicates = chunk
        .iter()
        .filter(|q| seen.insert(q.id.as_str()))
        .map(|q| Predicate {
            kind: "dimension",
            dimension: "queueId",
            operator: "matches",
            value: &q.id,
        })
        .collect();
    QueueFilter {
        kind: "or",
        predicates,
    }
}
