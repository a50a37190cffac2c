//! The error answers of the simulated API, shaped as the real ones: the platform's
//! `ErrorBody` (docs/genesys-api.md#error-body) and the login host's OAuth error
//! (docs/genesys-api.md#token-errors). Every endpoint module builds its failures here.

use serde_json::json;

use super::Endpoint;
use crate::loopback_http::Response;

/// An `ErrorBody` (docs/genesys-api.md#error-body) whose `contextId` is the correlation id.
pub(crate) fn error(status: u16, code: &str, message: &str, context: &str) -> Response {
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

pub(crate) fn bad_request(context: &str) -> Response {
    error(
        400,
        "bad.request",
        "The request could not be understood by the server due to malformed syntax.",
        context,
    )
}

pub(crate) fn too_many(retry_after: u64, context: &str) -> Response {
    error(
        429,
        "too.many.requests.retry.after",
        &format!("Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds"),
        context,
    )
    .with_header("Retry-After", retry_after.to_string())
}

pub(crate) fn forbidden(endpoint: Endpoint, context: &str) -> Response {
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

pub(crate) fn bad_credentials(context: &str) -> Response {
    error(
        401,
        "bad.credentials",
        "Invalid login credentials.",
        context,
    )
}

/// The OAuth error shape of the login host (docs/genesys-api.md#token-errors).
pub(crate) fn oauth_error(status: u16, code: &str, description: &str) -> Response {
    Response::json(
        status,
        &json!({"error": code, "description": description, "error_description": description}),
    )
}
