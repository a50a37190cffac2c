//! OAuth client-credentials login and the cached access token (docs/genesys-api.md#oauth).
//!
//! One token is shared by every request of the process. It is renewed before it runs out
//! (when less than max(60 s, 10 % of its lifetime) remains), and after an API 401 exactly
//! once even when several requests fail together: the lock is held while a new token is
//! fetched, and a caller whose stale token was already replaced just takes the new one.
//! Failed logins hold further attempts off for a while, so a wrong secret never turns into
//! a login storm. Tokens and the secret only ever live in [`Secret`]s.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::{GenesysConfig, Secret};
use crate::stats::Stats;

use super::error::ApiError;
use super::lenient;
use super::paths;
use crate::http::describe_error;

/// Renew when less than this remains, or 10 % of the lifetime if that is longer.
pub const MIN_RENEWAL_MARGIN: Duration = Duration::from_secs(60);
/// Lifetime assumed when the token answer has no `expires_in` (Genesys's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(86_399);
/// Shortest lifetime believed: a token is used for at least a minute before renewal, so
/// an `expires_in` of 0 or 1 does not mean a login before every call.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(2 * MIN_RENEWAL_MARGIN.as_secs());
/// Longest lifetime believed (a week; Genesys tokens last a day by default).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
/// How long to wait before trying again after the login service refused the credentials.
pub const REFUSED_HOLD_OFF: Duration = Duration::from_secs(30);
/// Longest wait between login attempts after repeated failures.
pub const MAX_HOLD_OFF: Duration = Duration::from_secs(60);
/// First wait after a login failed for a network or server reason; doubles per failure.
pub const TRANSIENT_HOLD_OFF: Duration = Duration::from_secs(1);

/// A token and when it was obtained.
#[derive(Debug, Clone)]
pub struct Token {
    pub access_token: Secret,
    pub obtained: Instant,
    pub lifetime: Duration,
}

impl Token {
    /// True when the token should be replaced at `now` (docs/genesys-api.md#token-renewal:
    /// less than max(60 s, 10 % of `expires_in`) left).
    pub fn needs_renewal(&self, now: Instant) -> bool {
        let margin = MIN_RENEWAL_MARGIN.max(self.lifetime / 10);
        let age = now.saturating_duration_since(self.obtained);
        self.lifetime.saturating_sub(age) < margin
    }
}

/// How long to wait before the next login after `failures` consecutive failures, the
/// last of which was a refusal of the credentials (`refused`) or a transient problem.
pub fn hold_off(failures: u32, refused: bool) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doubling = 1u32 << failures.saturating_sub(1).min(6);
    let base = if refused {
        REFUSED_HOLD_OFF
    } else {
        TRANSIENT_HOLD_OFF
    };
    (base * doubling).min(MAX_HOLD_OFF)
}

/// `expires_in` is read as an integer, a float (`86399.0`) or a numeric string.
#[derive(Debug, Deserialize)]
struct TokenResponse {
    #[serde(default, deserialize_with = "lenient::text")]
    access_token: Option<String>,
    #[serde(default, deserialize_with = "lenient::number")]
    expires_in: Option<f64>,
}

/// The OAuth error body of the login host (docs/genesys-api.md#token-errors).
#[derive(Debug, Default, Deserialize)]
struct OAuthError {
    #[serde(default, deserialize_with = "lenient::text")]
    error: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    error_description: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    description: Option<String>,
}

/// The lifetime to plan renewals with for an `expires_in` of `seconds`: absent → a day
/// (docs/genesys-api.md#token-answer); below [`MIN_TOKEN_LIFETIME`] or above
/// [`MAX_TOKEN_LIFETIME`] → clamped, logged once (a token that really dies sooner is
/// renewed by the 401 path).
pub fn token_lifetime(seconds: Option<f64>) -> Duration {
    let Some(seconds) = seconds else {
        return DEFAULT_TOKEN_LIFETIME;
    };
    let clamped = seconds.clamp(
        MIN_TOKEN_LIFETIME.as_secs_f64(),
        MAX_TOKEN_LIFETIME.as_secs_f64(),
    );
    if clamped != seconds {
        lenient::note_once(
            "token lifetime",
            format_args!(
                "a token with expires_in {seconds}; renewals are planned as if it were {clamped}s"
            ),
        );
    }
    Duration::from_secs_f64(clamped)
}

#[derive(Debug, Default)]
struct State {
    token: Option<Token>,
    /// Tokens obtained so far; every one after the first counts as a refresh.
    obtained: u64,
    failures: u32,
    not_before: Option<Instant>,
    last_error: Option<ApiError>,
}

/// Obtains and caches the access token.
pub struct Authenticator {
    login_url: String,
    region_label: String,
    client_id: String,
    client_secret: Secret,
    agent: ureq::Agent,
    stats: Arc<Stats>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("login_url", &self.login_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(config: &GenesysConfig, agent: ureq::Agent, stats: Arc<Stats>) -> Self {
        Authenticator {
            login_url: config.login_url.clone(),
            region_label: config.region_label.clone(),
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            agent,
            stats,
            state: Mutex::new(State::default()),
        }
    }

    /// A token valid for a while yet, fetching a new one if needed.
    pub fn token(&self) -> Result<Secret, ApiError> {
        let mut state = self.lock();
        match &state.token {
            Some(token) if !token.needs_renewal(Instant::now()) => Ok(token.access_token.clone()),
            _ => self.fetch(&mut state),
        }
    }

    /// Fetches a token now, ignoring any hold-off (start-up and `check`).
    pub fn login(&self) -> Result<(), ApiError> {
        let mut state = self.lock();
        state.not_before = None;
        self.fetch(&mut state).map(|_| ())
    }

    /// After an API 401 with `stale`: a new token, fetched only if nobody replaced the
    /// stale one meanwhile.
    pub fn renew_after_401(&self, stale: &Secret) -> Result<Secret, ApiError> {
        let mut state = self.lock();
        if let Some(token) = &state.token {
            if token.access_token != *stale && !token.needs_renewal(Instant::now()) {
                return Ok(token.access_token.clone());
            }
        }
        state.token = None;
        self.fetch(&mut state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves a usable state behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fetch(&self, state: &mut State) -> Result<Secret, ApiError> {
        let now = Instant::now();
        if let (Some(not_before), Some(error)) = (state.not_before, &state.last_error) {
            if now < not_before {
                return Err(error.clone());
            }
        }
        match self.request_token() {
            Ok(token) => {
                let secret = token.access_token.clone();
                if state.obtained > 0 {
                    Stats::incr(&self.stats.token_refreshes);
                }
                state.obtained += 1;
                state.failures = 0;
                state.not_before = None;
                state.last_error = None;
                log::debug!(
                    "obtained a Genesys access token valid for {}s",
                    token.lifetime.as_secs()
                );
                state.token = Some(token);
                Ok(secret)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let refused = matches!(error, ApiError::CredentialsRefused { .. });
                let wait = hold_off(state.failures, refused);
                state.not_before = Some(now + wait);
                state.last_error = Some(error.clone());
                // Before the first token, the caller (start-up, `check`, `top`) reports the
                // failure as its own, once; logging it here too said everything twice.
                if state.obtained > 0 {
                    log::warn!(
                        "{error} (next login attempt in {}s at the earliest)",
                        wait.as_secs()
                    );
                }
                Err(error)
            }
        }
    }

    fn request_token(&self) -> Result<Token, ApiError> {
        let url = format!("{}{}", self.login_url, paths::TOKEN);
        let response = self
            .agent
            .post(&url)
            .header(
                "Authorization",
                crate::http::basic_auth(&self.client_id, self.client_secret.expose()),
            )
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("Accept", "application/json")
            .send("grant_type=client_credentials".as_bytes());
        let mut response = response.map_err(|e| {
            ApiError::Network(format!(
                "cannot reach the Genesys login service {url}: {}",
                describe_error(&e)
            ))
        })?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ApiError::Network(format!("reading the answer of {url}: {e}")))?;
        self.interpret(status, &body, Instant::now())
    }

    fn interpret(&self, status: u16, body: &str, now: Instant) -> Result<Token, ApiError> {
        let url = format!("{}{}", self.login_url, paths::TOKEN);
        match status {
            200..=299 => {
                let parsed: TokenResponse = lenient::answer(body).map_err(|e| {
                    ApiError::Malformed(format!(
                        "the token answer of {url} is not the expected JSON: {e}"
                    ))
                })?;
                let Some(access_token) = parsed.access_token.filter(|t| !t.is_empty()) else {
                    return Err(ApiError::Malformed(format!(
                        "the token answer of {url} has no access_token"
                    )));
                };
                crate::logging::redact::register_token(&access_token);
                Ok(Token {
                    access_token: Secret::new(access_token),
                    obtained: now,
                    lifetime: token_lifetime(parsed.expires_in),
                })
            }
            429 | 500..=599 => Err(ApiError::Server {
                status,
                message: format!("the Genesys login service {url} answered HTTP {status}"),
                context_id: None,
            }),
            _ => {
                let oauth: OAuthError = lenient::answer(body).unwrap_or_default();
                let description = oauth
                    .error_description
                    .or(oauth.description)
                    .unwrap_or_default();
                Err(ApiError::CredentialsRefused {
                    status,
                    error: oauth.error.unwrap_or_default(),
                    description,
                    login_url: self.login_url.clone(),
                    region: self.region_label.clone(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(lifetime_s: u64, obtained: Instant) -> Token {
        Token {
            access_token: Secret::new("t"),
            obtained,
            lifetime: Duration::from_secs(lifetime_s),
        }
    }

    #[test]
    fn a_day_token_is_renewed_at_ninety_percent_of_its_life() {
        let t0 = Instant::now();
        let day = token(86_399, t0);
        // 10 % of 86399 s = 8639.9 s margin
        assert!(!day.needs_renewal(t0));
        assert!(!day.needs_renewal(t0 + Duration::from_secs(77_750)));
        assert!(day.needs_renewal(t0 + Duration::from_secs(77_760)));
    }

    #[test]
    fn a_short_token_keeps_at_least_a_minute_of_margin() {
        let t0 = Instant::now();
        let short = token(300, t0);
        assert!(!short.needs_renewal(t0 + Duration::from_secs(239)));
        assert!(short.needs_renewal(t0 + Duration::from_secs(241)));
        let tiny = token(30, t0);
        assert!(tiny.needs_renewal(t0));
    }

    #[test]
    fn failed_logins_back_off() {
        assert_eq!(hold_off(0, true), Duration::ZERO);
        assert_eq!(hold_off(1, true), Duration::from_secs(30));
        assert_eq!(hold_off(2, true), Duration::from_secs(60));
        assert_eq!(hold_off(9, true), Duration::from_secs(60));
        assert_eq!(hold_off(1, false), Duration::from_secs(1));
        assert_eq!(hold_off(3, false), Duration::from_secs(4));
        assert_eq!(hold_off(40, false), Duration::from_secs(60));
    }

    fn authenticator() -> Authenticator {
        let config = GenesysConfig {
            region_label: "eu-west-1 (mypurecloud.ie)".into(),
            api_url: "http://127.0.0.1:1".into(),
            login_url: "https://login.mypurecloud.ie".into(),
            client_id: "id".into(),
            client_secret: Secret::new("very-secret"),
            requests_per_minute: 300,
        };
        Authenticator::new(&config, ureq::Agent::new_with_defaults(), Arc::default())
    }

    #[test]
    fn token_answer_is_parsed() {
        let body = include_str!("../../tests/fixtures/genesys/token.json");
        let now = Instant::now();
        let token = authenticator().interpret(200, body, now).unwrap();
        assert_eq!(token.lifetime, Duration::from_secs(86_399));
        assert!(token.access_token.expose().starts_with("L1ao08Xn4Szl"));
        assert!(!format!("{token:?}").contains("L1ao08"));
    }

    #[test]
    fn expires_in_may_be_a_float_or_a_string_and_absurd_lifetimes_are_clamped() {
        let auth = authenticator();
        let lifetime = |expires_in: &str| {
            let body = format!(
                r#"{{"access_token":"a","token_type":"bearer","expires_in":{expires_in}}}"#
            );
            auth.interpret(200, &body, Instant::now())
                .map(|t| t.lifetime)
        };
        let day = Duration::from_secs(86_399);
        assert_eq!(lifetime("86399.0"), Ok(day));
        assert_eq!(lifetime(r#""86399""#), Ok(day));
        assert_eq!(lifetime("null"), Ok(day));
        assert_eq!(lifetime("0"), Ok(MIN_TOKEN_LIFETIME));
        assert_eq!(lifetime("1"), Ok(MIN_TOKEN_LIFETIME));
        assert_eq!(lifetime("-5"), Ok(MIN_TOKEN_LIFETIME));
        assert_eq!(lifetime("1e300"), Ok(MAX_TOKEN_LIFETIME));
        let t0 = Instant::now();
        let tiny = Token {
            lifetime: lifetime("1").unwrap(),
            ..token(0, t0)
        };
        assert!(!tiny.needs_renewal(t0 + Duration::from_secs(59)));
    }

    #[test]
    fn refused_credentials_name_the_region_and_login_url_but_not_the_secret() {
        let body = include_str!("../../tests/fixtures/genesys/token-error-invalid-client.json");
        let auth = authenticator();
        let err = auth.interpret(401, body, Instant::now()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("https://login.mypurecloud.ie"), "{text}");
        assert!(text.contains("eu-west-1"), "{text}");
        assert!(text.contains("invalid_client"), "{text}");
        assert!(text.contains("GENESYS_REGION"), "{text}");
        assert!(!text.contains("very-secret"));
        assert!(!format!("{auth:?}").contains("very-secret"));
        assert!(matches!(
            auth.interpret(400, "not json", Instant::now()),
            Err(ApiError::CredentialsRefused { status: 400, .. })
        ));
        assert!(matches!(
            auth.interpret(503, "", Instant::now()),
            Err(ApiError::Server { status: 503, .. })
        ));
    }

    /// A revoked secret or an unknown client (`invalid_client`, or any 401) is said to be
    /// that, naming the two variables, not blamed on the region first.
    #[test]
    fn a_revoked_secret_or_unknown_client_is_named_as_such() {
        let body = include_str!("../../tests/fixtures/genesys/token-error-invalid-client.json");
        let auth = authenticator();
        for (status, body) in [(400, body), (401, body), (401, "")] {
            let text = auth
                .interpret(status, body, Instant::now())
                .unwrap_err()
                .to_string();
            assert!(
                text.contains("); the client id is unknown, or its secret is wrong or was revoked: check GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET"),
                "{text}"
            );
            assert!(
                text.contains("GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET"),
                "{text}"
            );
            assert!(!text.contains("commonest cause"), "{text}");
        }
        let grant = r#"{"error":"unauthorized_client","description":"grant type not allowed"}"#;
        let text = auth
            .interpret(400, grant, Instant::now())
            .unwrap_err()
            .to_string();
        assert!(text.contains("Client Credentials grant"), "{text}");
    }

    mod mutated {
        use super::*;
        use crate::genesys::lenient::mutation::{self, Step};
        use proptest::prelude::*;

        const TOKEN: &str = include_str!("../../tests/fixtures/genesys/token.json");
        const REFUSAL: &str =
            include_str!("../../tests/fixtures/genesys/token-error-invalid-client.json");

        fn untouched(touched: &[Vec<Step>], key: &str) -> bool {
            touched
                .iter()
                .all(|p| matches!(p.first(), Some(Step::Key(k)) if k != key))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever is damaged, nothing panics; an untouched access_token still logs
            /// in, and an untouched OAuth error code is still reported.
            #[test]
            fn token_answers_never_panic_and_keep_what_is_intact(
                mutations in mutation::mutations()
            ) {
                let auth = authenticator();
                let mut doc: serde_json::Value = serde_json::from_str(TOKEN).unwrap();
                let touched = mutation::apply(&mut doc, &mutations);
                let result = auth.interpret(200, &doc.to_string(), Instant::now());
                if untouched(&touched, "access_token") {
                    prop_assert!(result.is_ok(), "{:?}", result);
                }
                let mut doc: serde_json::Value = serde_json::from_str(REFUSAL).unwrap();
                let touched = mutation::apply(&mut doc, &mutations);
                let result = auth.interpret(401, &doc.to_string(), Instant::now());
                if untouched(&touched, "error") {
                    let refused = matches!(&result, Err(ApiError::CredentialsRefused { error, .. }) if error == "invalid_client");
                    prop_assert!(refused, "{:?}", result);
                }
            }
        }
    }
}
