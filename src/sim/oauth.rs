//! `POST /oauth/token` (client credentials, docs/genesys-api.md#token-request) and the
//! bearer-token check every API endpoint makes (docs/genesys-api.md#token-errors).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde_json::json;

use super::errors::{bad_credentials, error, oauth_error};
use super::query::form_value;
use super::values::Rng;
use super::Shared;
use crate::loopback_http::{Request, Response};

/// Basic credentials as clients send them; padding optional, as the old hand-written
/// decoder accepted.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

pub(super) fn token(shared: &Shared, req: &Request, now: u64) -> Response {
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

/// 401 unless the request carries a current bearer token (docs/genesys-api.md#token-renewal).
pub(super) fn authorize(
    shared: &Shared,
    req: &Request,
    now: u64,
    context: &str,
) -> Result<(), Response> {
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
