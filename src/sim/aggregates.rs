//! `POST /api/v2/analytics/conversations/aggregates/query` (docs/genesys-api.md#aggregates): interval buckets
//! of contact-center KPIs per queue and media type, with late data still arriving for
//! `kpi_settle` after a bucket ends. Also the ISO-8601 times and periods it needs.

use serde_json::{json, Map, Value};

use super::errors::{bad_request, error};
use super::query::{filter_values, Snapshot};
use super::values::{self, KpiScope, KpiValues, Timer};
use crate::loopback_http::Response;
use crate::time;

/// The ten KPI metrics of docs/genesys-api.md#aggregates-request.
pub(super) const KPI_METRICS: [&str; 10] = [
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
/// Real metrics the Sim knows but never has data for.
const OTHER_METRICS: [&str; 12] = [
    "nConnected",
    "nError",
    "nBlindTransferred",
    "nConsultTransferred",
    "oServiceTarget",
    "tAcd",
    "tAcw",
    "tAlert",
    "tTalk",
    "tTalkComplete",
    "tHeld",
    "tIvr",
];
const DAY_MS: u64 = 86_400_000;
/// Longest accepted interval and most buckets per query (docs/genesys-api.md#granularity, test-server limits).
const MAX_INTERVAL_MS: u64 = 7 * DAY_MS;
const MAX_BUCKETS: u64 = 1440;

/// One result group: which dimensions it carries and its values per bucket.
struct Group {
    queue_id: Option<String>,
    media: Option<String>,
    buckets: Vec<KpiValues>,
}

/// Answers one aggregate query at `now` (ms since the epoch).
pub fn query(snap: &Snapshot, body: &[u8], now: u64, context: &str) -> Result<Response, Response> {
    let body: Value = serde_json::from_slice(body).map_err(|_| bad_request(context))?;
    let invalid_date = || {
        error(
            400,
            "invalid.date",
            "Dates must be specified as ISO-8601 strings. For example: yyyy-MM-ddTHH:mm:ss.SSSZ",
            context,
        )
    };
    let (start, end) = body
        .get("interval")
        .and_then(Value::as_str)
        .and_then(parse_interval)
        .ok_or_else(invalid_date)?;
    if end - start > MAX_INTERVAL_MS {
        return Err(bad_request(context));
    }
    let bucket_ms = match body.get("granularity") {
        None | Some(Value::Null) => end - start,
        Some(g) => g
            .as_str()
            .and_then(parse_period)
            .filter(|&ms| ms >= snap.min_granularity_ms)
            .ok_or_else(|| bad_request(context))?,
    };
    if (end - start).div_ceil(bucket_ms) > MAX_BUCKETS {
        return Err(bad_request(context));
    }
    let metrics = requested_metrics(&body).ok_or_else(|| bad_request(context))?;
    let group_by: Vec<&str> = body
        .get("groupBy")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let filter = match body.get("filter") {
        None | Some(Value::Null) => Default::default(),
        Some(f) => filter_values(f).map_err(|_| bad_request(context))?,
    };
    if filter.queue_predicates > snap.max_predicates {
        return Err(bad_request(context));
    }
    let buckets = bucket_bounds(start, end, bucket_ms);
    let groups = compute_groups(snap, &filter, &group_by, &buckets, now);
    Ok(Response::json(200, &render(&groups, &buckets, &metrics)))
}

fn requested_metrics(body: &Value) -> Option<Vec<&str>> {
    let metrics: Vec<&str> = body
        .get("metrics")?
        .as_array()?
        .iter()
        .map(Value::as_str)
        .collect::<Option<_>>()?;
    let known = |m: &&str| KPI_METRICS.contains(m) || OTHER_METRICS.contains(m);
    (!metrics.is_empty() && metrics.iter().all(known)).then_some(metrics)
}

/// Buckets cut from the interval start; the last one is truncated at the interval end.
fn bucket_bounds(start: u64, end: u64, bucket_ms: u64) -> Vec<(u64, u64)> {
    (0..(end - start).div_ceil(bucket_ms))
        .map(|k| {
            (
                start + k * bucket_ms,
                (start + (k + 1) * bucket_ms).min(end),
            )
        })
        .collect()
}

fn compute_groups(
    snap: &Snapshot,
    filter: &super::query::FilterValues,
    group_by: &[&str],
    buckets: &[(u64, u64)],
    now: u64,
) -> Vec<Group> {
    let by_queue = group_by.contains(&"queueId");
    let by_media = group_by.contains(&"mediaType");
    let queues: Vec<(String, u64)> = if filter.queue_ids.is_empty() {
        snap.queues.clone()
    } else {
        filter
            .queue_ids
            .iter()
            .filter_map(|id| snap.index_of(id).map(|i| (id.clone(), i)))
            .collect()
    };
    let mut groups: Vec<Group> = Vec::new();
    for (id, index) in &queues {
        for media in &snap.media_types {
            if !filter.media_types.is_empty() && !filter.media_types.contains(media) {
                continue;
            }
            let scope = KpiScope {
                seed: snap.seed,
                index: *index,
                media,
                settle_ms: snap.settle_ms,
            };
            let values: Vec<KpiValues> = buckets
                .iter()
                .map(|&(s, e)| values::kpis(&scope, s, e, now))
                .collect();
            let queue_id = by_queue.then(|| id.clone());
            let media = by_media.then(|| media.clone());
            add_to_group(&mut groups, queue_id, media, values, by_queue && by_media);
        }
    }
    groups
}

/// Sums a (queue, media) series into its group; the service-level target survives only
/// when the group is exactly one queue and media type (docs/genesys-api.md#aggregates-answer).
fn add_to_group(
    groups: &mut Vec<Group>,
    queue_id: Option<String>,
    media: Option<String>,
    values: Vec<KpiValues>,
    single: bool,
) {
    match groups
        .iter_mut()
        .find(|g| g.queue_id == queue_id && g.media == media)
    {
        Some(group) => {
            for (sum, v) in group.buckets.iter_mut().zip(&values) {
                sum.merge(v);
                sum.sl_target = f64::NAN;
            }
        }
        None => {
            let buckets = values
                .into_iter()
                .map(|mut v| {
                    if !single {
                        v.sl_target = f64::NAN;
                    }
                    v
                })
                .collect();
            groups.push(Group {
                queue_id,
                media,
                buckets,
            });
        }
    }
}

/// `{"results": [...]}`, or `{}` when nothing has data (docs/genesys-api.md#aggregates-answer).
fn render(groups: &[Group], buckets: &[(u64, u64)], metrics: &[&str]) -> Value {
    let mut results = Vec::new();
    for group in groups {
        let data: Vec<Value> = group
            .buckets
            .iter()
            .zip(buckets)
            .filter_map(|(v, &(s, e))| {
                let entries: Vec<Value> = metrics.iter().filter_map(|m| metric_entry(m, v)).collect();
                (!entries.is_empty()).then(|| {
                    json!({"interval": format!("{}/{}", time::format_utc_ms(s), time::format_utc_ms(e)), "metrics": entries})
                })
            })
            .collect();
        if data.is_empty() {
            continue;
        }
        let mut key = Map::new();
        if let Some(media) = &group.media {
            key.insert("mediaType".into(), json!(media));
        }
        if let Some(id) = &group.queue_id {
            key.insert("queueId".into(), json!(id));
        }
        results.push(json!({"group": key, "data": data}));
    }
    if results.is_empty() {
        json!({})
    } else {
        json!({ "results": results })
    }
}

/// One `metrics[]` entry, or `None` when the metric has no event (absent means zero).
fn metric_entry(metric: &str, v: &KpiValues) -> Option<Value> {
    let count =
        |name: &str, n: u64| (n > 0).then(|| json!({"metric": name, "stats": {"count": n}}));
    let timer = |name: &str, t: &Timer| {
        (t.count > 0).then(|| json!({"metric": name, "stats": {"max": t.max, "min": t.min, "count": t.count, "sum": t.sum}}))
    };
    match metric {
        "nOffered" => count(metric, v.offered),
        "tAnswered" => timer(metric, &v.answered),
        "tAbandon" => timer(metric, &v.abandoned),
        "tShortAbandon" => timer(metric, &v.short_abandoned),
        "tFlowOut" => timer(metric, &v.flowed_out),
        "tWait" => timer(metric, &v.waited),
        "tHandle" => timer(metric, &v.handled),
        "nOverSla" => count(metric, v.over_sla),
        "nTransferred" => count(metric, v.transferred),
        "oServiceLevel" if v.sl_denominator > 0 => {
            let mut stats = Map::new();
            stats.insert(
                "ratio".into(),
                json!(v.sl_numerator as f64 / v.sl_denominator as f64),
            );
            stats.insert("numerator".into(), json!(v.sl_numerator));
            stats.insert("denominator".into(), json!(v.sl_denominator));
            if v.sl_target.is_finite() {
                stats.insert("target".into(), json!(v.sl_target));
            }
            Some(json!({"metric": metric, "stats": stats}))
        }
        _ => None,
    }
}

// ---- ISO-8601 -----------------------------------------------------------------------

/// `start/end` → epoch ms, end after start.
fn parse_interval(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once('/')?;
    let (start, end) = (time::parse_utc(a.trim())?, time::parse_utc(b.trim())?);
    (end > start).then_some((start, end))
}

/// `PT15M`, `PT1H`, `PT30S`, `P1D`, `P1W` → ms (no months or years: not fixed lengths).
pub fn parse_period(s: &str) -> Option<u64> {
    let rest = s.strip_prefix('P')?;
    let (date, time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut total = 0u64;
    for (part, units) in [
        (date, &[('W', 7 * DAY_MS), ('D', DAY_MS)][..]),
        (time, &[('H', 3_600_000), ('M', 60_000), ('S', 1_000)][..]),
    ] {
        let mut number = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() {
                number.push(c);
                continue;
            }
            let &(_, unit) = units.iter().find(|(u, _)| *u == c)?;
            total += number.parse::<u64>().ok()? * unit;
            number.clear();
        }
        if !number.is_empty() {
            return None;
        }
    }
    (total > 0).then_some(total)
}
