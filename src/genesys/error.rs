//! Why a call to Genesys Cloud failed, in words that say what to do. Its own file so that
//! the client (which retries) and the authenticator (which the client calls for tokens)
//! can both use it without importing each other.

use std::fmt;
use std::time::Duration;

/// Why a call to Genesys Cloud failed, and what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The login service answered 4xx: wrong id/secret, wrong region, wrong grant type.
    CredentialsRefused {
        status: u16,
        /// The OAuth `error` code (`invalid_client`), possibly empty.
        error: String,
        description: String,
        login_url: String,
        region: String,
    },
    /// The API answered 401 even with a freshly obtained token.
    Unauthorized {
        message: String,
        context_id: Option<String>,
    },
    /// 403: the OAuth client's role lacks a permission.
    Forbidden {
        request: String,
        message: String,
        context_id: Option<String>,
        /// The permission docs/genesys-api.md#permissions lists for the endpoint.
        permission: Option<&'static str>,
    },
    /// 400, 404, 413, 415 and other 4xx that retrying cannot fix.
    BadRequest {
        request: String,
        status: u16,
        code: String,
        message: String,
        context_id: Option<String>,
    },
    /// 429 whose wait does not fit before the deadline (or is longer than 3 minutes).
    RateLimited {
        retry_after: Option<Duration>,
        message: String,
        context_id: Option<String>,
    },
    /// Held back by the client itself, no 429 received: the server's rate-limit headers
    /// say its minute is nearly used up, and its reset is past the deadline.
    Paced {
        /// `inin-ratelimit-allowed` of the last answer.
        allowed: u32,
        /// `GENESYS_REQUESTS_PER_MINUTE`.
        configured: u32,
        wait: Duration,
    },
    /// 5xx (and 429 from the login service) still failing when the retries ran out.
    Server {
        status: u16,
        message: String,
        context_id: Option<String>,
    },
    /// Connection refused/reset, DNS, TLS, timeout.
    Network(String),
    /// A 2xx answer whose body is not the JSON expected.
    Malformed(String),
    /// The deadline passed before an answer could be obtained.
    DeadlineExceeded,
}

impl ApiError {
    /// True for failures that may go away by themselves (worth retrying later).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Paced { .. }
                | ApiError::Server { .. }
                | ApiError::Network(_)
                | ApiError::Malformed(_)
                | ApiError::DeadlineExceeded
        )
    }

    /// True when the credentials or the role are the problem (exit code 77).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            ApiError::CredentialsRefused { .. }
                | ApiError::Unauthorized { .. }
                | ApiError::Forbidden { .. }
        )
    }

    /// Short name of the failure class, for log lines and self-diagnosis.
    pub fn class(&self) -> &'static str {
        match self {
            ApiError::CredentialsRefused { .. } => "credentials refused",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::BadRequest { .. } => "bad request",
            ApiError::RateLimited { .. } => "rate limited",
            ApiError::Paced { .. } => "held back",
            ApiError::Server { .. } => "server error",
            ApiError::Network(_) => "network error",
            ApiError::Malformed(_) => "malformed answer",
            ApiError::DeadlineExceeded => "deadline exceeded",
        }
    }
}

fn context(context_id: &Option<String>) -> String {
    context_id
        .as_deref()
        .map(|id| format!(", contextId {id}"))
        .unwrap_or_default()
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::CredentialsRefused { status, error, description, login_url, region } => {
                let reason = match (error.is_empty(), description.is_empty()) {
                    (false, false) => format!("{error}: {description}"),
                    (false, true) => error.clone(),
                    (true, false) => description.clone(),
                    (true, true) => "no reason given".to_string(),
                };
                write!(
                    f,
                    "Genesys Cloud refused the client credentials at {login_url}/oauth/token \
                     (region {region}, HTTP {status}, {reason}); "
                )?;
                if *status == 401 || error == "invalid_client" {
                    // Genesys's answer to an unknown client id, a wrong or a revoked secret.
                    write!(
                        f,
                        "the client id is unknown, or its secret is wrong or was revoked: check \
                         GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET against the OAuth client in Genesys Cloud (Admin > \
                         OAuth; a new secret after a rotation?), and that the client belongs to \
                         the organisation of region {region} (GENESYS_REGION)"
                    )
                } else {
                    write!(
                        f,
                        "check that GENESYS_REGION is the organisation's region, that \
                         GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET belong to an OAuth client \
                         with the Client Credentials grant"
                    )
                }
            }
            ApiError::Unauthorized { message, context_id } => write!(
                f,
                "Genesys Cloud rejected a freshly obtained token (HTTP 401, {message}{}); the OAuth \
                 client may have been deleted or disabled, or an IP allow-list of the \
                 organisation blocks this host",
                context(context_id)
            ),
            ApiError::Forbidden { request, message, context_id, permission } => {
                write!(f, "Genesys Cloud denied {request} (HTTP 403, {message}{})", context(context_id))?;
                match permission {
                    Some(p) => write!(f, "; give the OAuth client's role the permission {p} (for the divisions of the queues)"),
                    None => write!(f, "; check the roles of the OAuth client"),
                }
            }
            ApiError::BadRequest { request, status, code, message, context_id } => write!(
                f,
                "Genesys Cloud rejected {request} (HTTP {status} {code}: {message}{}); not retried: \
                 if it persists, report it with the contextId",
                context(context_id)
            ),
            ApiError::RateLimited { retry_after, message, context_id } => {
                write!(f, "Genesys Cloud rate limit exceeded ({message}{})", context(context_id))?;
                if let Some(wait) = retry_after {
                    write!(f, ", retry in {}s is past this poll", wait.as_secs())?;
                }
                write!(
                    f,
                    "; poll fewer queues, raise POLL_INTERVAL, check other users of the same OAuth \
                     client, or ask Genesys for a higher limit and set GENESYS_REQUESTS_PER_MINUTE"
                )
            }
            ApiError::Paced { allowed, configured, wait } if allowed < configured => write!(
                f,
                "request held back (no 429 yet): Genesys Cloud allows this OAuth client {allowed} \
                 requests per minute (inin-ratelimit-allowed), fewer than \
                 GENESYS_REQUESTS_PER_MINUTE={configured}, and its minute resets in {}s, past \
                 this poll; set GENESYS_REQUESTS_PER_MINUTE={allowed} so polls are planned \
                 within the server's limit",
                wait.as_secs()
            ),
            ApiError::Paced { allowed, configured, wait } => write!(
                f,
                "request held back (no 429 yet): the {allowed} requests per minute Genesys Cloud \
                 allows this OAuth client are nearly used up although this service plans for \
                 {configured}, and the minute resets in {}s, past this poll; another program \
                 using the same OAuth client?",
                wait.as_secs()
            ),
            ApiError::Server { status, message, context_id } => write!(
                f,
                "Genesys Cloud answered HTTP {status} ({message}{}); a problem on the Genesys side, \
                 retried on the next poll",
                context(context_id)
            ),
            ApiError::Network(what) => write!(
                f,
                "{what}; check network access, HTTPS_PROXY/NO_PROXY, TLS_CA_FILE and \
                 GENESYS_REGION (or GENESYS_API_URL/GENESYS_LOGIN_URL)"
            ),
            ApiError::Malformed(what) => write!(f, "{what}; retried, report it if it persists"),
            ApiError::DeadlineExceeded => write!(
                f,
                "no answer from Genesys Cloud before the poll deadline; the sample is skipped \
                 (slow network or API: a larger POLL_INTERVAL or HTTP_TIMEOUT may help)"
            ),
        }
    }
}

impl std::error::Error for ApiError {}
