//! `GET /api/v2/routing/queues`: paging, sorting, the `id` and `name` filters
//! (docs/genesys-api.md#queues-paging, docs/genesys-api.md#queue-fields).

use serde_json::{json, Map, Value};

use super::errors::error;
use super::query::{parse_query, percent_encode};
use super::{period_ms, values, Shared};
use crate::genesys::paths;
use crate::loopback_http::{Request, Response};

/// Default `pageSize` of the queue listing (docs/genesys-api.md#queues-paging).
const DEFAULT_PAGE_SIZE: usize = 25;
/// The parameters of a queue listing request that matter (docs/genesys-api.md#queues-paging).
#[derive(Debug)]
struct Listing {
    page_size: usize,
    page_number: usize,
    descending: bool,
    ids: Vec<String>,
    name: Option<String>,
    /// Filter parameters, re-encoded, to repeat in the paging URIs.
    repeat: String,
}

pub(super) fn list_queues(
    shared: &Shared,
    req: &Request,
    now: u64,
    context: &str,
) -> Result<Response, Response> {
    let (max_page, seed, period) = {
        let state = shared.lock();
        let o = &state.options;
        (o.max_page_size.max(1), o.seed, period_ms(o))
    };
    let listing = parse_listing(&parse_query(&req.query), max_page, context)?;
    let mut matching: Vec<super::SimQueue> = shared
        .lock()
        .queues
        .iter()
        .filter(|q| listing.ids.is_empty() || listing.ids.contains(&q.id))
        .filter(|q| {
            listing
                .name
                .as_deref()
                .is_none_or(|n| name_matches(n, &q.name))
        })
        .cloned()
        .collect();
    matching.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    if listing.descending {
        matching.reverse();
    }
    let entities: Vec<Value> = matching
        .iter()
        .skip((listing.page_number - 1).saturating_mul(listing.page_size))
        .take(listing.page_size)
        .map(|q| queue_entity(q, seed, now / period))
        .collect();
    Ok(Response::json(
        200,
        &listing_body(&listing, entities, matching.len()),
    ))
}

fn parse_listing(
    params: &[(String, String)],
    max_page: usize,
    context: &str,
) -> Result<Listing, Response> {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let number = |key: &str, default: usize| -> Result<usize, Response> {
        match get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid_value(v, key, context)),
        }
    };
    let descending = match get("sortOrder") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(error(
                400,
                "invalid.value",
                &format!("Value [{other}] is not valid for field type [SortOrder]. Allowable values are: asc, desc"),
                context,
            ))
        }
    };
    let ids = params
        .iter()
        .filter(|(k, _)| k == "id")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
        .collect();
    Ok(Listing {
        page_size: number("pageSize", DEFAULT_PAGE_SIZE)?.min(max_page),
        page_number: number("pageNumber", 1)?,
        descending,
        ids,
        name: get("name").map(str::to_string),
        repeat: listing_filter_params(params),
    })
}

/// `QueueEntityListing` (docs/genesys-api.md#queues-answer): relative URIs, `nextUri` only when another page
/// exists, `previousUri` only after the first.
fn listing_body(listing: &Listing, entities: Vec<Value>, total: usize) -> Value {
    let (size, number) = (listing.page_size, listing.page_number);
    let page_count = total.div_ceil(size);
    let uri = |n: usize| {
        format!(
            "{}?pageSize={size}&pageNumber={n}{}",
            paths::QUEUES,
            listing.repeat
        )
    };
    let mut body = Map::new();
    body.insert("entities".into(), Value::Array(entities));
    body.insert("pageSize".into(), json!(size));
    body.insert("pageNumber".into(), json!(number));
    body.insert("total".into(), json!(total));
    body.insert("firstUri".into(), json!(uri(1)));
    body.insert("selfUri".into(), json!(uri(number)));
    if number < page_count {
        body.insert("nextUri".into(), json!(uri(number + 1)));
    }
    if number > 1 {
        body.insert("previousUri".into(), json!(uri(number - 1)));
    }
    body.insert("lastUri".into(), json!(uri(page_count.max(1))));
    body.insert("pageCount".into(), json!(page_count));
    Value::Object(body)
}

fn invalid_value(value: &str, field: &str, context: &str) -> Response {
    error(
        400,
        "invalid.value",
        &format!("Value [{value}] is not valid for field type [{field}]."),
        context,
    )
}

/// The filter parameters repeated in the paging URIs, re-encoded.
fn listing_filter_params(params: &[(String, String)]) -> String {
    params
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "name" | "id" | "sortOrder"))
        .map(|(k, v)| format!("&{k}={}", percent_encode(v)))
        .collect()
}

/// `name` filter: exact, or with a leading and/or trailing `*` wildcard; case-insensitive.
fn name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_lowercase();
    let name = name.to_lowercase();
    let (leading, trailing) = (
        pattern.starts_with('*'),
        pattern.len() > 1 && pattern.ends_with('*'),
    );
    let core = pattern.trim_start_matches('*').trim_end_matches('*');
    match (leading, trailing) {
        (true, true) => name.contains(core),
        (true, false) => name.ends_with(core),
        (false, true) => name.starts_with(core),
        (false, false) => name == pattern,
    }
}

/// A Queue object with the fields docs/genesys-api.md#queue-fields names, plus a realistic selection of others.
fn queue_entity(q: &super::SimQueue, seed: u64, slot: u64) -> Value {
    let members = values::observation(seed, q.index, slot, &[]).members;
    let mut media = Map::new();
    for name in ["call", "callback", "chat", "email", "message"] {
        let (percentage, duration_ms) = values::service_level(q.index, name);
        media.insert(
            name.into(),
            json!({
                "enableAutoAnswer": false,
                "alertingTimeoutSeconds": if name == "call" { 8 } else { 30 },
                "serviceLevel": {"percentage": percentage, "durationMs": duration_ms},
                "autoAnswerAlertToneSeconds": 0.0,
                "manualAnswerAlertToneSeconds": 0.0,
            }),
        );
    }
    json!({
        "id": q.id,
        "name": q.name,
        "division": {
            "id": "4f1a7c2e-9b3d-4e8f-a6c5-2d7e9f1b3a80",
            "name": "Home",
            "selfUri": "/api/v2/authorization/divisions/4f1a7c2e-9b3d-4e8f-a6c5-2d7e9f1b3a80",
        },
        "dateCreated": "2024-01-15T08:00:00.000Z",
        "dateModified": crate::time::format_utc_ms(q.modified_ms),
        "memberCount": members,
        "userMemberCount": members,
        "joinedMemberCount": members,
        "mediaSettings": media,
        "routingRules": [],
        "acwSettings": {"wrapupPrompt": "OPTIONAL", "timeoutMs": 60000},
        "skillEvaluationMethod": "ALL",
        "autoAnswerOnly": false,
        "enableTranscription": false,
        "scoringMethod": "TimestampAndPriority",
        "selfUri": format!("{}/{}", paths::QUEUES, q.id),
    })
}
