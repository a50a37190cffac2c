//! Routing of every request to its endpoint (`oauth`, `queues`, `observations`,
//! `aggregates`), plus what every answer shares: fault injection, rate-limit and
//! correlation headers and the request log. The endpoints build their answers from
//! `errors` and `query`, never from this module, so routing depends on them and not the
//! other way round.
//!
//! The state lock is held only to decide and to snapshot; building a response and an
//! injected delay happen outside it, so one slow request never stalls the others.

use serde_json::{json, Value};

use super::errors::{bad_credentials, bad_request, error, forbidden, oauth_error, too_many};
use super::oauth::{authorize, token};
use super::observations::observations;
use super::query::{filter_values, parse_query, snapshot};
use super::queues::list_queues;
use super::values::Rng;
use super::{aggregates, Endpoint, Fault, RequestRecord, Shared, State};
use crate::loopback_http::{Reply, Request, Response};

const RATE_WINDOW_MS: u64 = 60_000;

/// Answers one request and logs it.
pub fn handle(shared: &Shared, req: &Request) -> Reply {
    let now = shared.now_ms();
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
        Endpoint::NotificationChannels => Ok(super::notifications::create(shared)),
        Endpoint::Subscriptions => Ok(super::notifications::subscribe(shared, req, context)),
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
        Some(Endpoint::Subscriptions) => {
            super::notifications::queue_ids(&req.body).unwrap_or_default()
        }
        Some(Endpoint::Queues) => parse_query(&req.query)
            .into_iter()
            .filter(|(k, _)| k == "id")
            .flat_map(|(_, v)| v.split(',').map(str::to_string).collect::<Vec<_>>())
            .collect(),
        _ => Vec::new(),
    }
}
