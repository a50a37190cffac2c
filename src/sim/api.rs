//! The endpoints: token, queue listing, observations (aggregates live in `aggregates`),
//! plus what every answer shares: fault injection, auth, rate-limit and correlation
//! headers, the request log and the fixtures' error bodies.
//!
//! The state lock is held only to decide and to snapshot; building a response and an
//! injected delay happen outside it, so one slow request never stalls the others.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::values::{self, Rng};
use super::{aggregates, period_ms, Endpoint, Fault, RequestRecord, Shared, State, UnknownQueues};
use crate::loopback_http::{Reply, Request, Response};
use crate::time::now_ms;

/// Basic credentials as clients send them; padding optional, as the old hand-written
/// decoder accepted.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The eleven observation metrics (API.md §4.3): user metrics, then conversation metrics.
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
/// Default `pageSize` of the queue listing (API.md §3.1).
const DEFAULT_PAGE_SIZE: usize = 25;
const RATE_WINDOW_MS: u64 = 60_000;

/// Answers one request and logs it.
pub fn handle(shared: &Shared, req: &Request) -> Reply {
    let now = now_ms();
    let endpoint = Endpoint::of(&req.method, &req.path);
    let queue_ids = logged_queue_ids(endpoint, req);
    let (fault, context, rate) = {
        let mut state = shared.lock();
        let fault = endpoint.and_then(|e| pick_fault(&mut state, e));
        let rate = count_rate(&mut state, endpoint, now);
        (fault, uuid(&mut state.rng), rate)
    };
    if let Some(Fault::Delay(d)) = &fault {
        shared.stop.sleep(*d);
    }
    let reply = match (&fault, endpoint) {
        (Some(f), Some(e)) => fault_reply(f, e, &context),
        _ => None,
    }
    .unwrap_or_else(|| answer(shared, endpoint, req, now, &context, rate));
    let reply = match reply {
        Reply::Send(response) if fault == Some(Fault::Nulls) => Reply::Send(decorate(
            with_nulls(response),
            endpoint,
            &context,
            rate,
            now,
        )),
        Reply::Send(response) => Reply::Send(decorate(response, endpoint, &context, rate, now)),
        other => other,
    };
    let status = match &reply {
        Reply::Send(r) => r.status,
        Reply::Drop | Reply::Hold => 0,
    };
    let record = RequestRecord {
        time_ms: now,
        endpoint,
        method: req.method.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        status,
        queue_ids,
        retryable_fault: fault.as_ref().is_some_and(Fault::is_retryable),
        fault,
    };
    let mut state = shared.lock();
    if state.log.len() >= super::MAX_LOG_RECORDS {
        state.log.pop_front();
    }
    state.log.push_back(record);
    reply
}

/// Rate-limit view of one request: `(allowed, count in window, seconds to reset, over)`.
#[derive(Debug, Clone, Copy)]
struct Rate {
    allowed: u32,
    count: u32,
    reset_secs: u64,
    over: bool,
}

fn count_rate(state: &mut State, endpoint: Option<Endpoint>, now: u64) -> Rate {
    let minute = now / RATE_WINDOW_MS;
    if state.rate_minute != minute {
        state.rate_minute = minute;
        state.rate_count = 0;
    }
    if !matches!(endpoint, None | Some(Endpoint::Token)) {
        state.rate_count = state.rate_count.saturating_add(1);
    }
    let limit = state.options.rate_limit_per_minute;
    Rate {
        allowed: limit.unwrap_or(super::DEFAULT_RATE_LIMIT),
        count: state.rate_count,
        reset_secs: ((minute + 1) * RATE_WINDOW_MS - now).div_ceil(1000),
        over: limit.is_some_and(|l| state.rate_count > l),
    }
}

/// Counts the request and returns the fault it should get: a queued one first, then a
/// periodic one.
fn pick_fault(state: &mut State, endpoint: Endpoint) -> Option<Fault> {
    let count = {
        let c = state.counts.entry(endpoint).or_insert(0);
        *c += 1;
        *c
    };
    let total = {
        let c = state.counts.entry(Endpoint::Any).or_insert(0);
        *c += 1;
        *c
    };
    if let Some(pos) = state
        .injected
        .iter()
        .position(|i| i.endpoint.covers(endpoint))
    {
        let injected = &mut state.injected[pos];
        let fault = injected.fault.clone();
        injected.remaining -= 1;
        if injected.remaining == 0 {
            state.injected.remove(pos);
        }
        return Some(fault);
    }
    state
        .every_nth
        .iter()
        .find(|e| {
            let seen = if e.endpoint == Endpoint::Any {
                total
            } else {
                count
            };
            e.endpoint.covers(endpoint) && seen % e.n == 0
        })
        .map(|e| e.fault.clone())
}

/// The answer of a healthy server.
fn answer(
    shared: &Shared,
    endpoint: Option<Endpoint>,
    req: &Request,
    now: u64,
    context: &str,
    rate: Rate,
) -> Reply {
    let Some(endpoint) = endpoint else {
        return Reply::Send(error(
            404,
            "not.found",
            "The requested resource was not found.",
            context,
        ));
    };
    if endpoint == Endpoint::Token {
        return Reply::Send(token(shared, req, now));
    }
    if let Err(response) = authorize(shared, req, now, context) {
        return Reply::Send(response);
    }
    if rate.over {
        return Reply::Send(too_many(rate.reset_secs.max(1), context));
    }
    if shared.lock().forbidden.contains(&endpoint) {
        return Reply::Send(forbidden(endpoint, context));
    }
    if req.method == "POST" && !is_json(req) {
        return Reply::Send(error(
            415,
            "unsupported.media.type",
            "Unsupported Media Type - Unsupported or incorrect media type, such as an incorrect Content-Type value in the header.",
            context,
        ));
    }
    let result = match endpoint {
        Endpoint::Queues => list_queues(shared, req, now, context),
        Endpoint::Observations => observations(shared, req, now, context),
        Endpoint::Aggregates => {
            let snapshot = snapshot(shared);
            aggregates::query(&snapshot, &req.body, now, context)
        }
        Endpoint::Token | Endpoint::Any => Err(error(404, "not.found", "not found", context)),
    };
    Reply::Send(result.unwrap_or_else(|e| e))
}

fn is_json(req: &Request) -> bool {
    req.header("Content-Type")
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("application/json"))
}

/// Adds the headers every response carries.
fn decorate(
    mut response: Response,
    endpoint: Option<Endpoint>,
    context: &str,
    rate: Rate,
    now: u64,
) -> Response {
    response
        .headers
        .push(("Date".into(), crate::time::format_http_date(now)));
    if endpoint != Some(Endpoint::Token) {
        response
            .headers
            .push(("ININ-Correlation-Id".into(), context.to_string()));
        response
            .headers
            .push(("inin-ratelimit-allowed".into(), rate.allowed.to_string()));
        response
            .headers
            .push(("inin-ratelimit-count".into(), rate.count.to_string()));
        response
            .headers
            .push(("inin-ratelimit-reset".into(), rate.reset_secs.to_string()));
    }
    response
}

// ---- errors -------------------------------------------------------------------------

/// An `ErrorBody` (API.md §6.1) whose `contextId` is the correlation id.
pub(super) fn error(status: u16, code: &str, message: &str, context: &str) -> Response {
    Response::json(
        status,
        &json!({
            "message": message,
            "code": code,
            "status": status,
            "messageParams": {},
            "contextId": context,
            "details": [],
            "errors": [],
        }),
    )
}

pub(super) fn bad_request(context: &str) -> Response {
    error(
        400,
        "bad.request",
        "The request could not be understood by the server due to malformed syntax.",
        context,
    )
}

fn too_many(retry_after: u64, context: &str) -> Response {
    error(
        429,
        "too.many.requests.retry.after",
        &format!("Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds"),
        context,
    )
    .with_header("Retry-After", retry_after.to_string())
}

fn forbidden(endpoint: Endpoint, context: &str) -> Response {
    let permission = match endpoint {
        Endpoint::Queues => "routing:queue:view",
        Endpoint::Aggregates => "analytics:conversationAggregate:view",
        _ => "analytics:queueObservation:view",
    };
    error(
        403,
        "missing.permissions",
        &format!("Unable to perform the requested action. You are missing the following permission(s): [{permission}]"),
        context,
    )
}

fn bad_credentials(context: &str) -> Response {
    error(
        401,
        "bad.credentials",
        "Invalid login credentials.",
        context,
    )
}

/// The OAuth error shape of the login host (API.md §2.3).
fn oauth_error(status: u16, code: &str, description: &str) -> Response {
    Response::json(
        status,
        &json!({"error": code, "description": description, "error_description": description}),
    )
}

/// The faulty answer, or `None` when the fault only delays a normal one.
fn fault_reply(fault: &Fault, endpoint: Endpoint, context: &str) -> Option<Reply> {
    let response = match fault {
        Fault::DropConnection => return Some(Reply::Drop),
        Fault::Delay(_) | Fault::Nulls => return None,
        Fault::MalformedJson => Response::new(
            200,
            "application/json",
            "{\"results\": [{\"group\": {\"queueId\": ",
        ),
        Fault::RateLimited { retry_after_secs } => too_many(*retry_after_secs, context),
        Fault::GatewayHtml(status) => Response::new(
            *status,
            "text/html",
            format!("<html><body><h1>{status} Gateway error</h1></body></html>"),
        ),
        Fault::Status(status @ (400 | 401)) if endpoint == Endpoint::Token => {
            oauth_error(*status, "invalid_client", "authentication failed")
        }
        Fault::Status(status) => status_error(*status, endpoint, context),
    };
    Some(Reply::Send(response))
}

/// [`Fault::Nulls`]: `null`s added to a 2xx answer with result groups; others unchanged.
fn with_nulls(mut response: Response) -> Response {
    let Ok(mut body) = serde_json::from_slice::<Value>(&response.body) else {
        return response;
    };
    let Some(results) = body.get_mut("results").and_then(Value::as_array_mut) else {
        return response;
    };
    let Some(first) = results.first_mut() else {
        return response;
    };
    let group = first["group"].clone();
    if let Some(data) = first.get_mut("data").and_then(Value::as_array_mut) {
        data.push(json!({"metric": "oWaiting", "stats": null}));
    }
    results.push(json!({"group": group, "data": null}));
    response.body = body.to_string().into_bytes();
    response
}

/// The fixtures' error body for a status.
fn status_error(status: u16, endpoint: Endpoint, context: &str) -> Response {
    match status {
        400 => bad_request(context),
        401 => bad_credentials(context),
        403 => forbidden(endpoint, context),
        404 => error(404, "not.found", "The requested resource was not found.", context),
        429 => too_many(1, context),
        500 => error(
            500,
            "internal.server.error",
            "The server encountered an unexpected condition which prevented it from fulfilling the request.",
            context,
        ),
        503 => error(
            503,
            "service.unavailable",
            "Service Unavailable - The server is currently unavailable (because it is overloaded or down for maintenance).",
            context,
        ),
        504 => error(504, "request.timeout", "The request timed out.", context),
        other => error(other, "error", "Simulated failure.", context),
    }
}

// ---- token --------------------------------------------------------------------------

fn token(shared: &Shared, req: &Request, now: u64) -> Response {
    let credentials = req
        .header("Authorization")
        .and_then(|h| {
            h.strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
        })
        .and_then(|b| BASE64.decode(b.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let grant = form_value(&req.body, "grant_type");
    let mut state = shared.lock();
    let expected = format!(
        "{}:{}",
        state.options.client_id, state.options.client_secret
    );
    if credentials.as_deref() != Some(expected.as_str()) {
        return oauth_error(401, "invalid_client", "authentication failed");
    }
    if grant.as_deref() != Some("client_credentials") {
        return oauth_error(400, "unsupported_grant_type", "grant type not supported");
    }
    let lifetime = state.options.token_lifetime;
    let access_token = random_token(&mut state.rng);
    state
        .tokens
        .insert(access_token.clone(), now + lifetime.as_millis() as u64);
    Response::json(
        200,
        &json!({"access_token": access_token, "token_type": "bearer", "expires_in": lifetime.as_secs()}),
    )
}

/// 401 unless the request carries a current bearer token (API.md §2.5).
fn authorize(shared: &Shared, req: &Request, now: u64, context: &str) -> Result<(), Response> {
    let Some(header) = req.header("Authorization") else {
        return Err(error(
            401,
            "authentication.required",
            "No authentication bearer token specified in authorization header.",
            context,
        ));
    };
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim);
    let state = shared.lock();
    match token.and_then(|t| state.tokens.get(t)) {
        Some(&expires) if now < expires => Ok(()),
        _ => Err(bad_credentials(context)),
    }
}

fn random_token(rng: &mut Rng) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..86)
        .map(|_| ALPHABET[rng.below(ALPHABET.len() as u64) as usize] as char)
        .collect()
}

fn uuid(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:x}{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        8 + (b >> 62),
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

// ---- queue listing ------------------------------------------------------------------

/// The parameters of a queue listing request that matter (API.md §3.1).
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

fn list_queues(
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

/// `QueueEntityListing` (API.md §3.2): relative URIs, `nextUri` only when another page
/// exists, `previousUri` only after the first.
fn listing_body(listing: &Listing, entities: Vec<Value>, total: usize) -> Value {
    let (size, number) = (listing.page_size, listing.page_number);
    let page_count = total.div_ceil(size);
    let uri = |n: usize| {
        format!(
            "/api/v2/routing/queues?pageSize={size}&pageNumber={n}{}",
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

/// A Queue object with the fields API.md §3.3 names, plus a realistic selection of others.
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
        "selfUri": format!("/api/v2/routing/queues/{}", q.id),
    })
}

// ---- observations -------------------------------------------------------------------

/// `queueId` and `mediaType` values found in a query filter (API.md §4.1, §9.1).
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
    /// `(id, index)` of the current queues.
    pub queues: Vec<(String, u64)>,
}

impl Snapshot {
    pub fn index_of(&self, id: &str) -> Option<u64> {
        self.queues.iter().find(|(q, _)| q == id).map(|(_, i)| *i)
    }
}

fn snapshot(shared: &Shared) -> Snapshot {
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
        queues: state
            .queues
            .iter()
            .map(|q| (q.id.clone(), q.index))
            .collect(),
    }
}

fn observations(
    shared: &Shared,
    req: &Request,
    now: u64,
    context: &str,
) -> Result<Response, Response> {
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
    let slot = now / snap.period_ms;
    let mut results = Vec::new();
    for id in &filter.queue_ids {
        let observation = match (snap.index_of(id), snap.unknown) {
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

/// The user group and one group per media type of one queue (API.md §4.2, §4.6).
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

/// Entries of a qualified metric; zero counts are not listed (API.md §4.4).
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

// ---- small codecs -------------------------------------------------------------------

/// Queue ids a request names, for the log: body predicates or `id=` parameters.
fn logged_queue_ids(endpoint: Option<Endpoint>, req: &Request) -> Vec<String> {
    match endpoint {
        Some(Endpoint::Observations | Endpoint::Aggregates) => {
            serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|b| b.get("filter").and_then(|f| filter_values(f).ok()))
                .map(|f| f.queue_ids)
                .unwrap_or_default()
        }
        Some(Endpoint::Queues) => parse_query(&req.query)
            .into_iter()
            .filter(|(k, _)| k == "id")
            .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .collect(),
        _ => Vec::new(),
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

fn form_value(body: &[u8], key: &str) -> Option<String> {
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

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
