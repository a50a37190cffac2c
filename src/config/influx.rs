//! Where line protocol goes: stdout, the v1 write API (database, optional basic or token
//! auth) or the v2 write API (bucket, org, token), plus the static tags of every point.

use super::error::{ConfigError, Result};
use super::mode::Mode;
use super::secrets::Secret;
use super::urls::base_url;
use super::vars::Vars;

/// Tag keys the service writes itself; `INFLUXDB_TAGS` may not reuse them.
pub(super) const RESERVED_TAG_KEYS: [&str; 4] =
    ["queue_id", "queue_name", "media_type", "instance"];

#[derive(Debug, Clone, PartialEq)]
pub enum InfluxTarget {
    /// `INFLUXDB_URL=-` or `--dry-run`: line protocol on stdout.
    Stdout,
    V1 {
        url: String,
        database: String,
        retention_policy: Option<String>,
        auth: V1Auth,
    },
    V2 {
        url: String,
        org: Option<String>,
        bucket: String,
        token: Secret,
    },
}

impl InfluxTarget {
    /// `stdout`, `v1` or `v2`, for the start-up line.
    pub fn mode_name(&self) -> &'static str {
        match self {
            InfluxTarget::Stdout => "stdout",
            InfluxTarget::V1 { .. } => "v1",
            InfluxTarget::V2 { .. } => "v2",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum V1Auth {
    None,
    Basic { username: String, password: Secret },
    Token(Secret),
}

/// The write target: stdout for `--dry-run`, `top`, `INFLUXDB_URL=-` and an unset URL in
/// `demo`; else v1 (`INFLUXDB_DATABASE`) or v2 (`INFLUXDB_BUCKET`), never both.
pub(super) fn influx_target(vars: &Vars, mode: Mode) -> Result<InfluxTarget> {
    let url =
        match (mode, vars.optional("INFLUXDB_URL")) {
            (Mode::Run { dry_run: true } | Mode::Top, _) => return Ok(InfluxTarget::Stdout),
            (_, Some(url)) if url == "-" => return Ok(InfluxTarget::Stdout),
            (Mode::Demo, None) => return Ok(InfluxTarget::Stdout),
            (_, None) => return Err(ConfigError::new(
                "INFLUXDB_URL",
                "is required; e.g. http://127.0.0.1:8086, or - to print line protocol on stdout",
            )),
            (_, Some(url)) => base_url("INFLUXDB_URL", &url)?,
        };
    let token = vars.secret("INFLUXDB_TOKEN", "influxdb_token")?;
    let bucket = vars.optional("INFLUXDB_BUCKET");
    let database = vars.optional("INFLUXDB_DATABASE");
    match (bucket, database) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            "INFLUXDB_BUCKET",
            "and INFLUXDB_DATABASE are both set; set INFLUXDB_BUCKET for the v2 API (InfluxDB 2.x/3.x) or INFLUXDB_DATABASE for the v1 API (1.x), not both",
        )),
        (Some(bucket), None) => Ok(InfluxTarget::V2 {
            url,
            org: vars.optional("INFLUXDB_ORG"),
            bucket,
            token: token.ok_or_else(|| {
                ConfigError::new("INFLUXDB_TOKEN", "is required with INFLUXDB_BUCKET (v2 write API)")
            })?,
        }),
        (None, Some(database)) => {
            let username = vars.optional("INFLUXDB_USERNAME");
            let password = vars.secret("INFLUXDB_PASSWORD", "influxdb_password")?;
            let auth = match (username, password, token) {
                (Some(username), Some(password), None) => V1Auth::Basic { username, password },
                (None, None, Some(token)) => V1Auth::Token(token),
                (None, None, None) => V1Auth::None,
                (Some(_), None, _) => {
                    return Err(ConfigError::new("INFLUXDB_PASSWORD", "is required with INFLUXDB_USERNAME"))
                }
                (None, Some(_), _) => {
                    return Err(ConfigError::new("INFLUXDB_USERNAME", "is required with INFLUXDB_PASSWORD"))
                }
                (Some(_), Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        "INFLUXDB_TOKEN",
                        "and INFLUXDB_USERNAME/INFLUXDB_PASSWORD are both set; use one or the other",
                    ))
                }
            };
            Ok(InfluxTarget::V1 { url, database, retention_policy: vars.optional("INFLUXDB_RETENTION_POLICY"), auth })
        }
        (None, None) => Err(ConfigError::new(
            "INFLUXDB_DATABASE",
            "or INFLUXDB_BUCKET is required; set INFLUXDB_DATABASE for InfluxDB 1.x (v1 API) or INFLUXDB_BUCKET, INFLUXDB_ORG and INFLUXDB_TOKEN for 2.x/3.x (v2 API)",
        )),
    }
}

/// `env=prod,site=edge1` → sorted `(key, value)` pairs.
pub(super) fn parse_tags(text: &str) -> Result<Vec<(String, String)>> {
    let mut tags: Vec<(String, String)> = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, v)| !k.is_empty() && !v.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    "INFLUXDB_TAGS",
                    format!("'{pair}' is not key=value; use e.g. env=prod,site=edge1"),
                )
            })?;
        if RESERVED_TAG_KEYS.contains(&key) || key == "time" {
            return Err(ConfigError::new(
                "INFLUXDB_TAGS",
                format!("tag key '{key}' is written by the service itself; choose another name"),
            ));
        }
        if tags.iter().any(|(k, _)| k == key) {
            return Err(ConfigError::new(
                "INFLUXDB_TAGS",
                format!("tag key '{key}' appears twice"),
            ));
        }
        tags.push((key.to_string(), value.to_string()));
    }
    tags.sort();
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{config, error, run};

    #[test]
    fn influx_modes() {
        let v2 = run(&[
            ("INFLUXDB_DATABASE", ""),
            ("INFLUXDB_BUCKET", "b"),
            ("INFLUXDB_ORG", "o"),
            ("INFLUXDB_TOKEN", "t"),
        ])
        .unwrap();
        assert_eq!(v2.influx.mode_name(), "v2");
        assert!(error(&[("INFLUXDB_BUCKET", "b"), ("INFLUXDB_TOKEN", "t")]).contains("not both"));
        assert!(
            error(&[("INFLUXDB_DATABASE", ""), ("INFLUXDB_BUCKET", "b")])
                .starts_with("INFLUXDB_TOKEN: is required")
        );
        assert!(error(&[("INFLUXDB_DATABASE", "")])
            .starts_with("INFLUXDB_DATABASE: or INFLUXDB_BUCKET is required"));
        assert!(error(&[("INFLUXDB_USERNAME", "u")]).starts_with("INFLUXDB_PASSWORD: is required"));
        let token = run(&[("INFLUXDB_TOKEN", "t")]).unwrap();
        assert!(matches!(
            token.influx,
            InfluxTarget::V1 {
                auth: V1Auth::Token(_),
                ..
            }
        ));
        assert_eq!(
            run(&[("INFLUXDB_URL", "-")]).unwrap().influx,
            InfluxTarget::Stdout
        );
        assert_eq!(
            config(&[], Mode::Run { dry_run: true }).unwrap().influx,
            InfluxTarget::Stdout
        );
        assert!(error(&[("INFLUXDB_URL", "")]).starts_with("INFLUXDB_URL: is required"));
        assert!(error(&[("INFLUXDB_URL", "localhost:8086")]).contains("must start with http://"));
    }

    #[test]
    fn static_tags_are_sorted_and_checked() {
        assert_eq!(
            parse_tags("site=edge1, env=prod").unwrap(),
            vec![
                ("env".to_string(), "prod".to_string()),
                ("site".to_string(), "edge1".to_string())
            ]
        );
        assert!(parse_tags("env")
            .unwrap_err()
            .message
            .contains("not key=value"));
        assert!(parse_tags("queue_id=x")
            .unwrap_err()
            .message
            .contains("written by the service"));
        assert!(parse_tags("a=1,a=2").unwrap_err().message.contains("twice"));
    }
}
