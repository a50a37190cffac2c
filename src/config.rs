//! Environment (and `--env-file`) → one validated [`Config`].
//!
//! Every variable of the contract is read here and nowhere else, checked once, and turned
//! into types that cannot hold an invalid value. A bad value is a [`ConfigError`] naming
//! the variable and what would be accepted; `main` turns it into exit code 78.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration;
use crate::genesys::region;

pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
pub const DEFAULT_QUEUE_REFRESH: Duration = Duration::from_secs(300);
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 104_857_600;
pub const DEFAULT_KPI_BUCKET: Duration = Duration::from_secs(15 * 60);
pub const DEFAULT_KPI_POLL: Duration = Duration::from_secs(60);
pub const DEFAULT_KPI_LOOKBACK: Duration = Duration::from_secs(10 * 60);
/// Genesys allows 300 requests per minute per client-credentials token (API.md §7).
pub const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;
/// Name of the systemd credential (`LoadCredential=`) holding the client secret.
pub const SECRET_CREDENTIAL_NAME: &str = "genesys_client_secret";
/// Tag keys the service writes itself; `INFLUXDB_TAGS` may not reuse them.
pub const RESERVED_TAG_KEYS: [&str; 4] = ["queue_id", "queue_name", "media_type", "instance"];

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Which command the configuration is for: they need different variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run { dry_run: bool },
    Check,
    Demo,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub genesys: GenesysConfig,
    pub queues: Vec<QueueSelector>,
    pub shard: Option<Shard>,
    pub queue_refresh: Duration,
    pub poll_interval: Duration,
    pub window: Duration,
    pub influx: InfluxTarget,
    /// `INFLUXDB_TAGS`, sorted by key.
    pub static_tags: Vec<(String, String)>,
    pub http: HttpConfig,
    pub spool: SpoolConfig,
    pub shutdown_timeout: Duration,
    /// `None` when `KPIS=off`.
    pub kpi: Option<KpiConfig>,
    /// Value of the `instance` tag of the self-metrics.
    pub instance: String,
}

#[derive(Debug, Clone)]
pub struct GenesysConfig {
    /// What the user set (`eu-west-1`, a domain, or "custom URLs"), for log lines.
    pub region_label: String,
    pub api_url: String,
    pub login_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Request budget per minute for this OAuth client (`GENESYS_REQUESTS_PER_MINUTE`).
    pub requests_per_minute: u32,
}

/// One entry of `GENESYS_QUEUES` / `GENESYS_QUEUES_FILE`. An empty selection means all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueSelector {
    Id(String),
    Name(String),
    /// A name with `*` wildcards.
    Pattern(String),
}

/// `QUEUE_SHARD=i/n`, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

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

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub timeout: Duration,
    pub tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: Option<PathBuf>,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KpiConfig {
    pub bucket: Duration,
    pub poll: Duration,
    pub lookback: Duration,
}

/// A configuration problem: which variable, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    fn new(variable: &str, message: impl Into<String>) -> Self {
        ConfigError {
            variable: variable.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.message)
    }
}

impl std::error::Error for ConfigError {}

type Result<T> = std::result::Result<T, ConfigError>;

/// Reads the whole configuration through `get` (the process environment merged with the
/// env file), reading the secret, queue and CA files it names.
pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>, mode: Mode) -> Result<Config> {
    let vars = Vars(get);
    let poll_interval = vars.duration("POLL_INTERVAL", DEFAULT_POLL_INTERVAL)?;
    let window = vars.duration("WINDOW", DEFAULT_WINDOW)?;
    check_timing(poll_interval, window)?;
    Ok(Config {
        genesys: genesys_config(&vars)?,
        queues: queue_selectors(&vars)?,
        shard: vars
            .optional("QUEUE_SHARD")
            .map(|v| parse_shard(&v))
            .transpose()?,
        queue_refresh: vars.positive_duration("QUEUE_REFRESH", DEFAULT_QUEUE_REFRESH)?,
        poll_interval,
        window,
        influx: influx_target(&vars, mode)?,
        static_tags: vars
            .optional("INFLUXDB_TAGS")
            .map(|v| parse_tags(&v))
            .transpose()?
            .unwrap_or_default(),
        http: HttpConfig {
            timeout: vars.positive_duration("HTTP_TIMEOUT", DEFAULT_HTTP_TIMEOUT)?,
            tls_ca_file: vars.optional("TLS_CA_FILE").map(PathBuf::from),
        },
        spool: SpoolConfig {
            dir: vars.optional("SPOOL_DIR").map(PathBuf::from),
            max_bytes: vars.number("SPOOL_MAX_BYTES", DEFAULT_SPOOL_MAX_BYTES)?,
        },
        shutdown_timeout: vars.duration("SHUTDOWN_TIMEOUT", DEFAULT_SHUTDOWN_TIMEOUT)?,
        kpi: kpi_config(&vars)?,
        instance: vars.optional("INSTANCE").unwrap_or_else(hostname),
    })
}

/// Typed access to the variables, each error naming its variable.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    /// The value, or `None` when unset or blank.
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str, hint: &str) -> Result<String> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, format!("is required; {hint}")))
    }

    fn duration(&self, name: &str, default: Duration) -> Result<Duration> {
        match self.optional(name) {
            None => Ok(default),
            Some(text) => duration::parse(&text).map_err(|why| ConfigError::new(name, why)),
        }
    }

    fn positive_duration(&self, name: &str, default: Duration) -> Result<Duration> {
        let value = self.duration(name, default)?;
        if value.is_zero() {
            return Err(ConfigError::new(name, "must be longer than 0s"));
        }
        Ok(value)
    }

    fn number(&self, name: &str, default: u64) -> Result<u64> {
        match self.optional(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| {
                ConfigError::new(name, format!("'{text}' is not a whole number of bytes"))
            }),
        }
    }

    /// The value of `name`, else the contents of the file `name_FILE`, else of the systemd
    /// credential `credential` when `$CREDENTIALS_DIRECTORY` holds it.
    fn secret(&self, name: &str, credential: &str) -> Result<Option<Secret>> {
        if let Some(value) = (self.0)(name).filter(|v| !v.is_empty()) {
            return Ok(Some(Secret::new(value)));
        }
        let file_var = format!("{name}_FILE");
        let path = match self.optional(&file_var) {
            Some(path) => (file_var, PathBuf::from(path)),
            None => match self.optional("CREDENTIALS_DIRECTORY") {
                Some(dir) if PathBuf::from(&dir).join(credential).exists() => (
                    "CREDENTIALS_DIRECTORY".to_string(),
                    PathBuf::from(dir).join(credential),
                ),
                _ => return Ok(None),
            },
        };
        let (variable, path) = path;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(
                &variable,
                format!("cannot read secret file {}: {e}", path.display()),
            )
        })?;
        let text = text.trim_end_matches(['\n', '\r']).to_string();
        if text.is_empty() {
            return Err(ConfigError::new(
                &variable,
                format!("secret file {} is empty", path.display()),
            ));
        }
        Ok(Some(Secret::new(text)))
    }
}

fn check_timing(poll_interval: Duration, window: Duration) -> Result<()> {
    if poll_interval < Duration::from_secs(1) || poll_interval.as_millis() % 1000 != 0 {
        return Err(ConfigError::new(
            "POLL_INTERVAL",
            format!(
                "{} must be a whole number of seconds, at least 1s",
                duration::format(poll_interval)
            ),
        ));
    }
    if window.as_millis() % poll_interval.as_millis() != 0 || window < poll_interval {
        return Err(ConfigError::new(
            "WINDOW",
            format!(
                "WINDOW={} is not a multiple of POLL_INTERVAL={}",
                duration::format(window),
                duration::format(poll_interval)
            ),
        ));
    }
    Ok(())
}

fn genesys_config(vars: &Vars) -> Result<GenesysConfig> {
    let client_id = vars.required(
        "GENESYS_CLIENT_ID",
        "set it to the OAuth client id (client credentials grant)",
    )?;
    let client_secret = vars.secret("GENESYS_CLIENT_SECRET", SECRET_CREDENTIAL_NAME)?.ok_or_else(|| {
        ConfigError::new(
            "GENESYS_CLIENT_SECRET",
            "is required; set it, or GENESYS_CLIENT_SECRET_FILE, or a systemd credential named genesys_client_secret",
        )
    })?;
    let region_value = vars.optional("GENESYS_REGION");
    let region = region::resolve(region_value.as_deref().unwrap_or(region::DEFAULT_REGION))
        .map_err(|why| ConfigError::new("GENESYS_REGION", why));
    let api_override = vars
        .optional("GENESYS_API_URL")
        .map(|u| base_url("GENESYS_API_URL", &u))
        .transpose()?;
    let login_override = vars
        .optional("GENESYS_LOGIN_URL")
        .map(|u| base_url("GENESYS_LOGIN_URL", &u))
        .transpose()?
        .or_else(|| api_override.as_deref().and_then(region::login_url_for));
    let (region_label, api_url, login_url) = match (api_override, login_override) {
        (Some(api), Some(login)) => (format!("custom ({api})"), api, login),
        (api, login) => {
            let region = region?;
            let label = format!("{} ({})", region.name, region.domain);
            (
                label,
                api.unwrap_or_else(|| region.api_url()),
                login.unwrap_or_else(|| region.login_url()),
            )
        }
    };
    let requests_per_minute = vars.number(
        "GENESYS_REQUESTS_PER_MINUTE",
        DEFAULT_REQUESTS_PER_MINUTE.into(),
    )?;
    let requests_per_minute = u32::try_from(requests_per_minute)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            ConfigError::new(
                "GENESYS_REQUESTS_PER_MINUTE",
                "must be between 1 and 4294967295",
            )
        })?;
    Ok(GenesysConfig {
        region_label,
        api_url,
        login_url,
        client_id,
        client_secret,
        requests_per_minute,
    })
}

/// Checks an `http(s)://host[:port][/path]` base URL and drops a trailing slash.
fn base_url(variable: &str, value: &str) -> Result<String> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| {
            ConfigError::new(
                variable,
                format!("'{value}' must start with http:// or https://"),
            )
        })?;
    if rest.trim_end_matches('/').is_empty() || rest.contains(char::is_whitespace) {
        return Err(ConfigError::new(variable, format!("'{value}' has no host")));
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn queue_selectors(vars: &Vars) -> Result<Vec<QueueSelector>> {
    let mut selectors: Vec<QueueSelector> = Vec::new();
    if let Some(list) = vars.optional("GENESYS_QUEUES") {
        selectors.extend(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(parse_selector),
        );
    }
    if let Some(path) = vars.optional("GENESYS_QUEUES_FILE") {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new("GENESYS_QUEUES_FILE", format!("cannot read {path}: {e}"))
        })?;
        selectors.extend(
            text.lines()
                .map(|l| l.trim_end_matches('\r'))
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .map(parse_selector),
        );
    }
    let mut unique = Vec::with_capacity(selectors.len());
    for selector in selectors {
        if !unique.contains(&selector) {
            unique.push(selector);
        }
    }
    Ok(unique)
}

/// A UUID is a queue id, a value with `*` a pattern, anything else an exact name.
pub fn parse_selector(text: &str) -> QueueSelector {
    if is_uuid(text.trim()) {
        QueueSelector::Id(text.trim().to_ascii_lowercase())
    } else if text.contains('*') {
        QueueSelector::Pattern(text.to_string())
    } else {
        QueueSelector::Name(text.to_string())
    }
}

fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

pub fn parse_shard(text: &str) -> Result<Shard> {
    let invalid = || {
        ConfigError::new(
            "QUEUE_SHARD",
            format!("'{text}' is not a shard; use i/n with 1 ≤ i ≤ n, e.g. 2/4"),
        )
    };
    let (index, count) = text.split_once('/').ok_or_else(invalid)?;
    let index: u32 = index.trim().parse().map_err(|_| invalid())?;
    let count: u32 = count.trim().parse().map_err(|_| invalid())?;
    if index == 0 || count == 0 || index > count {
        return Err(invalid());
    }
    Ok(Shard { index, count })
}

fn influx_target(vars: &Vars, mode: Mode) -> Result<InfluxTarget> {
    let url =
        match (mode, vars.optional("INFLUXDB_URL")) {
            (Mode::Run { dry_run: true }, _) => return Ok(InfluxTarget::Stdout),
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
pub fn parse_tags(text: &str) -> Result<Vec<(String, String)>> {
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

fn kpi_config(vars: &Vars) -> Result<Option<KpiConfig>> {
    match vars
        .optional("KPIS")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("on") | Some("true") | Some("1") => {}
        Some("off") | Some("false") | Some("0") => return Ok(None),
        Some(other) => {
            return Err(ConfigError::new(
                "KPIS",
                format!("'{other}' is neither on nor off"),
            ))
        }
    }
    let bucket = vars.positive_duration("KPI_BUCKET", DEFAULT_KPI_BUCKET)?;
    if bucket.as_secs() % 60 != 0 || bucket.subsec_nanos() != 0 || 86_400 % bucket.as_secs() != 0 {
        return Err(ConfigError::new(
            "KPI_BUCKET",
            format!(
                "{} must be whole minutes that divide a day, e.g. 15m, 30m or 1h",
                duration::format(bucket)
            ),
        ));
    }
    let poll = vars.positive_duration("KPI_POLL", DEFAULT_KPI_POLL)?;
    if poll < Duration::from_secs(1) {
        return Err(ConfigError::new("KPI_POLL", "must be at least 1s"));
    }
    let lookback = vars.duration("KPI_LOOKBACK", DEFAULT_KPI_LOOKBACK)?;
    Ok(Some(KpiConfig {
        bucket,
        poll,
        lookback,
    }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)], mode: Mode) -> Result<Config> {
        let mut env: HashMap<String, String> = [
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "s3cret"),
            ("INFLUXDB_URL", "http://127.0.0.1:8086"),
            ("INFLUXDB_DATABASE", "genesys"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            env.insert(k.to_string(), v.to_string());
        }
        from_lookup(&|name| env.get(name).cloned(), mode)
    }

    fn run(pairs: &[(&str, &str)]) -> Result<Config> {
        config(pairs, Mode::Run { dry_run: false })
    }

    fn error(pairs: &[(&str, &str)]) -> String {
        run(pairs).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = run(&[]).unwrap();
        assert_eq!(c.poll_interval, Duration::from_secs(10));
        assert_eq!(c.window, Duration::from_secs(60));
        assert_eq!(c.queue_refresh, Duration::from_secs(300));
        assert_eq!(c.http.timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(c.spool.max_bytes, 104_857_600);
        assert_eq!(c.genesys.api_url, "https://api.mypurecloud.com");
        assert_eq!(c.genesys.login_url, "https://login.mypurecloud.com");
        assert_eq!(c.genesys.requests_per_minute, 300);
        assert!(c.queues.is_empty());
        assert_eq!(
            c.kpi,
            Some(KpiConfig {
                bucket: Duration::from_secs(900),
                poll: Duration::from_secs(60),
                lookback: Duration::from_secs(600),
            })
        );
        assert_eq!(
            c.influx,
            InfluxTarget::V1 {
                url: "http://127.0.0.1:8086".into(),
                database: "genesys".into(),
                retention_policy: None,
                auth: V1Auth::None
            }
        );
    }

    #[test]
    fn window_must_be_a_multiple_of_the_poll_interval() {
        assert_eq!(
            error(&[("WINDOW", "45s")]),
            "WINDOW: WINDOW=45s is not a multiple of POLL_INTERVAL=10s"
        );
        assert!(error(&[("POLL_INTERVAL", "1500ms")])
            .starts_with("POLL_INTERVAL: 1500ms must be a whole number"));
        assert!(error(&[("POLL_INTERVAL", "ten")]).starts_with("POLL_INTERVAL: 'ten'"));
    }

    #[test]
    fn missing_credentials_name_the_variable() {
        let mut env = HashMap::new();
        env.insert("INFLUXDB_URL".to_string(), "-".to_string());
        let err = from_lookup(&|n| env.get(n).cloned(), Mode::Check).unwrap_err();
        assert_eq!(err.variable, "GENESYS_CLIENT_ID");
        let err = run(&[("GENESYS_CLIENT_SECRET", "")]).unwrap_err();
        assert_eq!(err.variable, "GENESYS_CLIENT_SECRET");
        assert!(err.message.contains("GENESYS_CLIENT_SECRET_FILE"));
    }

    #[test]
    fn secret_comes_from_a_file_or_a_systemd_credential() {
        let dir = std::env::temp_dir().join(format!("g2i-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("secret"), "from-file\n").unwrap();
        std::fs::write(dir.join(SECRET_CREDENTIAL_NAME), "from-credential").unwrap();
        let file = dir.join("secret").display().to_string();
        let c = run(&[
            ("GENESYS_CLIENT_SECRET", ""),
            ("GENESYS_CLIENT_SECRET_FILE", &file),
        ])
        .unwrap();
        assert_eq!(c.genesys.client_secret.expose(), "from-file");
        let creds = dir.display().to_string();
        let c = run(&[
            ("GENESYS_CLIENT_SECRET", ""),
            ("CREDENTIALS_DIRECTORY", &creds),
        ])
        .unwrap();
        assert_eq!(c.genesys.client_secret.expose(), "from-credential");
        let err = run(&[
            ("GENESYS_CLIENT_SECRET", ""),
            ("GENESYS_CLIENT_SECRET_FILE", "/nonexistent/x"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, "GENESYS_CLIENT_SECRET_FILE");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = run(&[
            ("INFLUXDB_USERNAME", "u"),
            ("INFLUXDB_PASSWORD", "pw-value"),
        ])
        .unwrap();
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("pw-value"),
            "{debug}"
        );
    }

    #[test]
    fn region_by_name_domain_or_override() {
        assert_eq!(
            run(&[("GENESYS_REGION", "eu-west-1")])
                .unwrap()
                .genesys
                .api_url,
            "https://api.mypurecloud.ie"
        );
        assert_eq!(
            run(&[("GENESYS_REGION", "mypurecloud.de")])
                .unwrap()
                .genesys
                .login_url,
            "https://login.mypurecloud.de"
        );
        let err = error(&[("GENESYS_REGION", "nowhere")]);
        assert!(
            err.starts_with("GENESYS_REGION: 'nowhere' is not a known"),
            "{err}"
        );
        let c = run(&[
            ("GENESYS_REGION", "nowhere"),
            ("GENESYS_API_URL", "http://127.0.0.1:9000/"),
            ("GENESYS_LOGIN_URL", "http://127.0.0.1:9001"),
        ])
        .unwrap();
        assert_eq!(c.genesys.api_url, "http://127.0.0.1:9000");
        assert_eq!(c.genesys.login_url, "http://127.0.0.1:9001");
        assert!(error(&[("GENESYS_API_URL", "ftp://x")]).starts_with("GENESYS_API_URL:"));
    }

    #[test]
    fn queue_selectors_mix_ids_names_and_patterns() {
        let c = run(&[(
            "GENESYS_QUEUES",
            "118FD762-9005-45cf-9fad-a87f37eacbc3, Support*, Sales EMEA,,Sales EMEA",
        )])
        .unwrap();
        assert_eq!(
            c.queues,
            vec![
                QueueSelector::Id("118fd762-9005-45cf-9fad-a87f37eacbc3".into()),
                QueueSelector::Pattern("Support*".into()),
                QueueSelector::Name("Sales EMEA".into()),
            ]
        );
    }

    #[test]
    fn queue_file_keeps_commas_in_names() {
        let path = std::env::temp_dir().join(format!("g2i-queues-{}", std::process::id()));
        std::fs::write(&path, "# comment\nSales, EMEA = \"Tier 1\"\n\n*VIP*\r\n").unwrap();
        let c = run(&[("GENESYS_QUEUES_FILE", &path.display().to_string())]).unwrap();
        assert_eq!(
            c.queues,
            vec![
                QueueSelector::Name("Sales, EMEA = \"Tier 1\"".into()),
                QueueSelector::Pattern("*VIP*".into())
            ]
        );
        std::fs::remove_file(path).unwrap();
        assert_eq!(
            error(&[("GENESYS_QUEUES_FILE", "/nonexistent")])
                .split(':')
                .next(),
            Some("GENESYS_QUEUES_FILE")
        );
    }

    #[test]
    fn shard_accepts_only_i_of_n() {
        assert_eq!(parse_shard("2/4"), Ok(Shard { index: 2, count: 4 }));
        assert_eq!(parse_shard("1/1"), Ok(Shard { index: 1, count: 1 }));
        for bad in ["3/2", "0/0", "0/3", "x", "1/", "/2", "1/2/3", "-1/2"] {
            let err = parse_shard(bad).unwrap_err();
            assert_eq!(err.variable, "QUEUE_SHARD");
            assert!(
                err.message.contains("use i/n with 1 ≤ i ≤ n"),
                "{bad}: {err}"
            );
        }
    }

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

    #[test]
    fn kpi_settings() {
        assert_eq!(run(&[("KPIS", "off")]).unwrap().kpi, None);
        assert!(error(&[("KPIS", "maybe")]).starts_with("KPIS:"));
        assert!(error(&[("KPI_BUCKET", "7m")]).starts_with("KPI_BUCKET: 7m must be whole minutes"));
        assert_eq!(
            run(&[("KPI_BUCKET", "1m")]).unwrap().kpi.unwrap().bucket,
            Duration::from_secs(60)
        );
    }

    #[test]
    fn numbers_and_durations_name_their_variable() {
        assert!(error(&[("SPOOL_MAX_BYTES", "100MB")])
            .starts_with("SPOOL_MAX_BYTES: '100MB' is not a whole number"));
        assert!(error(&[("HTTP_TIMEOUT", "0s")]).starts_with("HTTP_TIMEOUT: must be longer"));
        assert!(error(&[("QUEUE_REFRESH", "5")]).starts_with("QUEUE_REFRESH: '5' has no unit"));
    }
}
