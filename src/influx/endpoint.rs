//! Where and how the writer reaches InfluxDB: the write URL of v1 (`/write`) or v2
//! (`/api/v2/write`) with its query, the credentials (in headers only, never in the URL
//! or a log line), the one way a write request is built (never following a redirect),
//! and the `check` probe that uses the same request to prove InfluxDB is writable.

use std::io::Read as _;
use std::time::Duration;

use crate::config::{InfluxTarget, V1Auth};
use crate::exit::Exit;
use crate::http::url_encode;
use crate::influx::policy::{error_message, redirect_message};

/// InfluxDB's answers are small; a huge or endless body is read only this far.
pub(crate) const ANSWER_BODY_MAX_BYTES: u64 = 64 * 1024;

/// Why `genesys2influx check` could not confirm InfluxDB is writable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// No answer (connection refused, DNS, TLS, timeout).
    Unreachable(String),
    /// 401/403: the credentials do not allow writing.
    Refused(String),
    /// 404: the database or bucket does not exist (or the URL is not an InfluxDB).
    NotFound(String),
    /// Any other answer to the probe.
    Rejected(String),
}

impl CheckError {
    /// The process exit code of the contract.
    pub fn exit_code(&self) -> Exit {
        match self {
            CheckError::Unreachable(_) => Exit::Unavailable,
            CheckError::Refused(_) => Exit::Credentials,
            CheckError::NotFound(_) | CheckError::Rejected(_) => Exit::Config,
        }
    }
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::Unreachable(m) => write!(f, "InfluxDB unreachable: {m}"),
            CheckError::Refused(m) => write!(f, "InfluxDB refused the credentials: {m}"),
            CheckError::NotFound(m) => write!(
                f,
                "InfluxDB answered 404: {m}; check INFLUXDB_DATABASE/INFLUXDB_BUCKET and INFLUXDB_URL"
            ),
            CheckError::Rejected(m) => write!(f, "InfluxDB rejected the write probe: {m}"),
        }
    }
}

impl std::error::Error for CheckError {}

/// `GET /ping`, then an empty POST to the write endpoint (204 when authorised: docs/line-protocol.md#cases,
/// H05), so no data point is written.
pub fn check(target: &InfluxTarget, agent: &ureq::Agent) -> Result<String, CheckError> {
    let Some(endpoint) = Endpoint::new(target) else {
        return Ok("line protocol goes to stdout".to_string());
    };
    let version = ping_version(agent, &endpoint)
        .map_err(CheckError::Unreachable)?
        .map(|v| format!("InfluxDB {v}"))
        .unwrap_or_else(|| "InfluxDB".to_string());
    let mut response = write_request(agent, &endpoint, None)
        .send_empty()
        .map_err(|e| CheckError::Unreachable(crate::http::describe_error(&e)))?;
    let status = response.status().as_u16();
    let location = header(&response, "location");
    let message = error_message(&read_bounded(response.body_mut()));
    match status {
        200..=299 => Ok(format!(
            "{version} at {}, {} writable",
            endpoint.base, endpoint.destination
        )),
        // Authorisation and the database are checked before the body: a 400 about the
        // empty body still proves both (InfluxDB 2.x may answer so).
        400 if !message.contains("database is required") => Ok(format!(
            "{version} at {}, {} writable (empty probe answered: {message})",
            endpoint.base, endpoint.destination
        )),
        300..=399 => Err(CheckError::Rejected(redirect_message(
            status,
            location.as_deref(),
        ))),
        401 | 403 => Err(CheckError::Refused(format!(
            "{status} {message}; check {}",
            credentials_hint(target)
        ))),
        404 => Err(CheckError::NotFound(format!(
            "{} ({message})",
            endpoint.destination
        ))),
        _ => Err(CheckError::Rejected(format!("{status} {message}"))),
    }
}

/// The variables that hold the credentials of `target`, for a hint after a 401/403: a
/// v2 target (a bucket) authenticates with a token only.
pub(crate) fn credentials_hint(target: &InfluxTarget) -> &'static str {
    match target {
        InfluxTarget::V2 { .. } => "INFLUXDB_TOKEN (a token allowed to write to the bucket)",
        InfluxTarget::V1 { .. } | InfluxTarget::Stdout => {
            "INFLUXDB_USERNAME/INFLUXDB_PASSWORD or INFLUXDB_TOKEN"
        }
    }
}

/// `GET /ping`: the `X-Influxdb-Version` it answers with, if any. InfluxDB 1.x, 2.x and
/// 3.x send it; VictoriaMetrics does not (though its `/write` answers do), so the ping
/// is what tells them apart. A redirect is not followed: what answers at the configured
/// URL is what is identified. `Err` names the URL and why it did not answer.
pub(crate) fn ping_version(
    agent: &ureq::Agent,
    endpoint: &Endpoint,
) -> Result<Option<String>, String> {
    let ping = agent
        .get(format!("{}/ping", endpoint.base))
        .config()
        .max_redirects(0)
        .build()
        .call()
        .map_err(|e| {
            format!(
                "{}/ping: {}",
                endpoint.base,
                crate::http::describe_error(&e)
            )
        })?;
    Ok(header(&ping, "x-influxdb-version"))
}

/// Where requests go, built once from the target.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) base: String,
    pub(crate) write_url: String,
    /// `Basic …` or `Token …`: a secret, never logged.
    pub(crate) authorization: Option<String>,
    /// `database "x"` / `bucket "x"`, for log lines.
    pub(crate) destination: String,
    /// `InfluxDB v1 at http://…, database "x"`, for log lines.
    pub(crate) description: String,
}

impl Endpoint {
    pub(crate) fn new(target: &InfluxTarget) -> Option<Endpoint> {
        let (base, write_url, authorization, destination) = match target {
            InfluxTarget::Stdout => return None,
            InfluxTarget::V1 {
                url,
                database,
                retention_policy,
                auth,
            } => {
                let mut write_url = format!("{url}/write?db={}", url_encode(database));
                if let Some(rp) = retention_policy {
                    write_url.push_str("&rp=");
                    write_url.push_str(&url_encode(rp));
                }
                write_url.push_str("&precision=s");
                let authorization = match auth {
                    V1Auth::None => None,
                    V1Auth::Basic { username, password } => {
                        Some(crate::http::basic_auth(username, password.expose()))
                    }
                    V1Auth::Token(token) => Some(format!("Token {}", token.expose())),
                };
                (
                    url,
                    write_url,
                    authorization,
                    format!("database \"{database}\""),
                )
            }
            InfluxTarget::V2 {
                url,
                org,
                bucket,
                token,
            } => {
                let mut write_url = format!("{url}/api/v2/write?");
                if let Some(org) = org {
                    write_url.push_str("org=");
                    write_url.push_str(&url_encode(org));
                    write_url.push('&');
                }
                write_url.push_str("bucket=");
                write_url.push_str(&url_encode(bucket));
                write_url.push_str("&precision=s");
                (
                    url,
                    write_url,
                    Some(format!("Token {}", token.expose())),
                    format!("bucket \"{bucket}\""),
                )
            }
        };
        Some(Endpoint {
            description: format!("InfluxDB {} at {base}, {destination}", target.mode_name()),
            base: base.clone(),
            write_url,
            authorization,
            destination,
        })
    }
}

/// A POST to the write endpoint, with its credentials, that never follows a redirect:
/// a client follows 301/302 with a GET without the body, so the data would be gone.
pub(crate) fn write_request(
    agent: &ureq::Agent,
    endpoint: &Endpoint,
    timeout: Option<Duration>,
) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
    let mut config = agent.post(&endpoint.write_url).config().max_redirects(0);
    if timeout.is_some() {
        config = config.timeout_global(timeout);
    }
    let request = config.build();
    match &endpoint.authorization {
        Some(auth) => request.header("Authorization", auth),
        None => request,
    }
}

pub(crate) fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The answer's body, at most [`ANSWER_BODY_MAX_BYTES`]; a body cut short (timeout,
/// reset) still says what it said so far.
pub(crate) fn read_bounded(body: &mut ureq::Body) -> String {
    let mut bytes = Vec::new();
    let _ = body
        .as_reader()
        .take(ANSWER_BODY_MAX_BYTES)
        .read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// `check` against a loopback InfluxDB that answers the ping and refuses every write.
    fn check_refused(target_of: impl Fn(String) -> InfluxTarget) -> String {
        use crate::loopback_http::{Options, Reply, Response, Server, Stop};
        let options = Options {
            name: "refusing",
            max_connections: 4,
            max_body_bytes: 1 << 20,
            keep_alive: true,
        };
        let server = Server::start(options, Stop::default(), |request| {
            Reply::Send(if request.path == "/ping" {
                Response::new(204, "text/plain", "").with_header("X-Influxdb-Version", "v2.7.11")
            } else {
                Response::new(
                    401,
                    "application/json",
                    r#"{"code":"unauthorized","message":"unauthorized access"}"#,
                )
            })
        })
        .unwrap();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let error = check(&target_of(server.url()), &agent).unwrap_err();
        assert_eq!(error.exit_code(), Exit::Credentials);
        error.to_string()
    }

    #[test]
    fn refused_credentials_name_the_variables_of_the_api_in_use() {
        let v2 = check_refused(|url| InfluxTarget::V2 {
            url,
            org: Some("acme".into()),
            bucket: "genesys".into(),
            token: Secret::new("tok"),
        });
        assert!(
            v2.contains("401 unauthorized access; check INFLUXDB_TOKEN")
                && !v2.contains("INFLUXDB_USERNAME")
                && !v2.contains("tok)"),
            "{v2}"
        );
        let v1 = check_refused(|url| InfluxTarget::V1 {
            url,
            database: "genesys".into(),
            retention_policy: None,
            auth: V1Auth::None,
        });
        assert!(
            v1.ends_with("check INFLUXDB_USERNAME/INFLUXDB_PASSWORD or INFLUXDB_TOKEN"),
            "{v1}"
        );
    }

    #[test]
    fn endpoints_put_secrets_in_headers_only() {
        let v1 = Endpoint::new(&InfluxTarget::V1 {
            url: "http://127.0.0.1:8086".into(),
            database: "gen esys&x=1".into(),
            retention_policy: Some("one week".into()),
            auth: V1Auth::Basic {
                username: "writer".into(),
                password: Secret::new("p@ss:wörd"),
            },
        })
        .unwrap();
        assert_eq!(
            v1.write_url,
            "http://127.0.0.1:8086/write?db=gen%20esys%26x%3D1&rp=one%20week&precision=s"
        );
        assert_eq!(
            v1.authorization.as_deref(),
            Some(crate::http::basic_auth("writer", "p@ss:wörd").as_str())
        );
        let token = Endpoint::new(&InfluxTarget::V1 {
            url: "http://h".into(),
            database: "db".into(),
            retention_policy: None,
            auth: V1Auth::Token(Secret::new("tok")),
        })
        .unwrap();
        assert_eq!(token.write_url, "http://h/write?db=db&precision=s");
        assert_eq!(token.authorization.as_deref(), Some("Token tok"));
        let v2 = Endpoint::new(&InfluxTarget::V2 {
            url: "https://eu.example".into(),
            org: Some("my org".into()),
            bucket: "b/1".into(),
            token: Secret::new("secret-token"),
        })
        .unwrap();
        assert_eq!(
            v2.write_url,
            "https://eu.example/api/v2/write?org=my%20org&bucket=b%2F1&precision=s"
        );
        assert_eq!(v2.authorization.as_deref(), Some("Token secret-token"));
        assert!(!v2.description.contains("secret-token"));
        assert!(Endpoint::new(&InfluxTarget::Stdout).is_none());
    }
}
