//! Environment (and `--env-file`) → one validated [`Config`].
//!
//! Every variable of the contract is read here and nowhere else, checked once, and turned
//! into types that cannot hold an invalid value. A bad value is a [`ConfigError`] naming
//! the variable and what would be accepted; `main` turns it into exit code 78. Every
//! number and duration has a range (the `*_RANGE` constants, also in `--help` and the
//! README), and settings that would have no effect are reported in [`Config::warnings`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::duration;
use crate::genesys::region;
use crate::influx::live::LiveUpdates;

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

// Accepted values, bounds inclusive.
/// Whole seconds; a poll longer than an hour is no longer real time.
pub const POLL_INTERVAL_RANGE: (Duration, Duration) = (SECOND, HOUR);
/// Windows are stamped with their start; a longer one would not be a wallboard value.
pub const MAX_WINDOW: Duration = DAY;
/// Upper bound of `QUEUE_REFRESH`. Its lower bound is `POLL_INTERVAL`: refreshing the
/// list more often than polling it only spends the request budget (and widens the poll).
pub const MAX_QUEUE_REFRESH: Duration = DAY;
pub const HTTP_TIMEOUT_RANGE: (Duration, Duration) = (SECOND, Duration::from_secs(300));
/// At least a second, so a clean stop can deliver the final window.
pub const SHUTDOWN_TIMEOUT_RANGE: (Duration, Duration) = (SECOND, Duration::from_secs(600));
/// From one spool segment of the smallest size (64 KiB) to 1 TiB.
pub const SPOOL_MAX_BYTES_RANGE: (u64, u64) = (65_536, 1 << 40);
pub const REQUESTS_PER_MINUTE_RANGE: (u64, u64) = (1, 1_000_000);
pub const KPI_POLL_RANGE: (Duration, Duration) = (SECOND, HOUR);
pub const KPI_LOOKBACK_RANGE: (Duration, Duration) = (Duration::ZERO, DAY);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);
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
    Top,
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
    /// `LIVE_UPDATES`: whether the window in progress is also written after every poll.
    pub live_updates: LiveUpdates,
    /// `None` when `KPIS=off`.
    pub kpi: Option<KpiConfig>,
    /// Value of the `instance` tag of the self-metrics.
    pub instance: String,
    /// Settings that are set but have no effect with the others (logged, or printed by
    /// `check`).
    pub warnings: Vec<String>,
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
    let genesys = genesys_config(&vars)?;
    let influx = influx_target(&vars, mode)?;
    let kpi = kpi_config(&vars)?;
    Ok(Config {
        warnings: ineffective_settings(&vars, &influx, kpi.is_some(), mode),
        genesys,
        queues: queue_selectors(&vars)?,
        shard: vars
            .optional("QUEUE_SHARD")
            .map(|v| parse_shard(&v))
            .transpose()?,
        queue_refresh: vars.duration_within(
            "QUEUE_REFRESH",
            DEFAULT_QUEUE_REFRESH,
            (poll_interval, MAX_QUEUE_REFRESH),
        )?,
        poll_interval,
        window,
        influx,
        static_tags: vars
            .optional("INFLUXDB_TAGS")
            .map(|v| parse_tags(&v))
            .transpose()?
            .unwrap_or_default(),
        http: HttpConfig {
            timeout: vars.duration_within(
                "HTTP_TIMEOUT",
                DEFAULT_HTTP_TIMEOUT,
                HTTP_TIMEOUT_RANGE,
            )?,
            tls_ca_file: vars.optional("TLS_CA_FILE").map(PathBuf::from),
        },
        spool: SpoolConfig {
            dir: vars.optional("SPOOL_DIR").map(PathBuf::from),
            max_bytes: vars.number_within(
                "SPOOL_MAX_BYTES",
                DEFAULT_SPOOL_MAX_BYTES,
                SPOOL_MAX_BYTES_RANGE,
            )?,
        },
        shutdown_timeout: vars.duration_within(
            "SHUTDOWN_TIMEOUT",
            DEFAULT_SHUTDOWN_TIMEOUT,
            SHUTDOWN_TIMEOUT_RANGE,
        )?,
        live_updates: vars
            .optional("LIVE_UPDATES")
            .map(|v| parse_live_updates(&v))
            .transpose()?
            .unwrap_or(LiveUpdates::Auto),
        kpi,
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

    fn is_set(&self, name: &str) -> bool {
        self.optional(name).is_some()
    }

    fn duration_within(
        &self,
        name: &str,
        default: Duration,
        (min, max): (Duration, Duration),
    ) -> Result<Duration> {
        let value = self.duration(name, default)?;
        if value < min || value > max {
            return Err(ConfigError::new(
                name,
                format!(
                    "{} is out of range; use {} to {}",
                    duration::format(value),
                    duration::format(min),
                    duration::format(max)
                ),
            ));
        }
        Ok(value)
    }

    fn number_within(&self, name: &str, default: u64, (min, max): (u64, u64)) -> Result<u64> {
        let Some(text) = self.optional(name) else {
            return Ok(default);
        };
        text.parse()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                ConfigError::new(
                    name,
                    format!("'{text}' is not a whole number from {min} to {max}"),
                )
            })
    }

    /// The value of `name`, else the contents of the file `name_FILE`, else of the systemd
    /// credential `credential` when `$CREDENTIALS_DIRECTORY` holds it.
    fn secret(&self, name: &str, credential: &str) -> Result<Option<Secret>> {
        if let Some(value) = (self.0)(name).filter(|v| !v.is_empty()) {
            return checked_secret(name, value).map(Some);
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
        if text.trim().is_empty() {
            return Err(ConfigError::new(
                &variable,
                format!("secret file {} is empty", path.display()),
            ));
        }
        checked_secret(&variable, text).map(Some)
    }
}

/// A secret made only of blanks, or holding a line break or another control character,
/// is a copy-and-paste accident; it is refused without being echoed.
fn checked_secret(name: &str, value: String) -> Result<Secret> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(
            name,
            "is blank (only spaces); set the real value",
        ));
    }
    if value.contains(char::is_control) {
        return Err(ConfigError::new(
            name,
            "contains a line break or another control character; copy the value again",
        ));
    }
    Ok(Secret::new(value))
}

fn check_timing(poll_interval: Duration, window: Duration) -> Result<()> {
    let (min, max) = POLL_INTERVAL_RANGE;
    if poll_interval < min || poll_interval > max || poll_interval.subsec_nanos() != 0 {
        return Err(ConfigError::new(
            "POLL_INTERVAL",
            format!(
                "{} must be a whole number of seconds from {} to {}",
                duration::format(poll_interval),
                duration::format(min),
                duration::format(max)
            ),
        ));
    }
    if window > MAX_WINDOW {
        return Err(ConfigError::new(
            "WINDOW",
            format!(
                "{} is out of range; use a multiple of POLL_INTERVAL up to {}",
                duration::format(window),
                duration::format(MAX_WINDOW)
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
    let requests_per_minute = vars.number_within(
        "GENESYS_REQUESTS_PER_MINUTE",
        DEFAULT_REQUESTS_PER_MINUTE.into(),
        REQUESTS_PER_MINUTE_RANGE,
    )?;
    let requests_per_minute = u32::try_from(requests_per_minute).unwrap_or(u32::MAX);
    Ok(GenesysConfig {
        region_label,
        api_url,
        login_url,
        client_id,
        client_secret,
        requests_per_minute,
    })
}

/// Checks an `http(s)://host[:port][/path]` base URL and drops a trailing slash. User
/// info (`user:password@`) is refused, and never echoed: credentials have their own
/// variables, and a URL is printed in logs and by `check`.
fn base_url(variable: &str, value: &str) -> Result<String> {
    let shown = without_userinfo(value);
    let invalid = |why: &str| ConfigError::new(variable, format!("'{shown}' {why}"));
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
        .ok_or_else(|| invalid("must start with http:// or https://"))?;
    let (authority, path) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(invalid(&format!(
            "holds user info (user:password@), which is never sent; {}",
            credentials_hint(variable)
        )));
    }
    if value.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains a space or a control character"));
    }
    if path.contains(['?', '#']) {
        return Err(invalid(
            "has a query or fragment; give only scheme, host, port and path",
        ));
    }
    let (host, port) = split_host_port(authority);
    if host.is_empty() {
        return Err(invalid("has no host"));
    }
    if !is_host(host) {
        return Err(invalid(&format!("has an invalid host '{host}'")));
    }
    if let Some(port) = port {
        if port.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
            return Err(invalid(&format!(
                "has port '{port}'; a port is a number from 1 to 65535"
            )));
        }
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn credentials_hint(variable: &str) -> &'static str {
    if variable.starts_with("INFLUXDB") {
        "set INFLUXDB_USERNAME and INFLUXDB_PASSWORD (or INFLUXDB_TOKEN) instead"
    } else {
        "the OAuth client goes in GENESYS_CLIENT_ID and GENESYS_CLIENT_SECRET"
    }
}

/// `value` with anything before an `@` in its authority replaced by `***`.
fn without_userinfo(value: &str) -> String {
    let (scheme, rest) = match value.split_once("://") {
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), value),
    };
    // `find` gives a char boundary, so the split cannot panic.
    let (authority, after) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}***@{host}{after}"),
        None => value.to_string(),
    }
}

/// `host:port`, `[v6]:port`, or either without a port.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        // The host keeps its `]`.
        return match authority
            .find(']')
            .and_then(|end| authority.split_at_checked(end + 1))
        {
            Some((host, "")) => (host, None),
            Some((host, rest)) => (host, Some(rest.strip_prefix(':').unwrap_or(rest))),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// A DNS name or IPv4 address, or a bracketed IPv6 address.
fn is_host(host: &str) -> bool {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => {
            !v6.is_empty()
                && v6
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        }
        None => host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')),
    }
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

/// `LIVE_UPDATES`: `on`, `off` or `auto`.
pub fn parse_live_updates(text: &str) -> Result<LiveUpdates> {
    LiveUpdates::parse(text).ok_or_else(|| {
        ConfigError::new("LIVE_UPDATES", format!("\"{text}\" is not on, off or auto"))
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
    let bucket = vars.duration("KPI_BUCKET", DEFAULT_KPI_BUCKET)?;
    if bucket.as_secs() % 60 != 0
        || bucket.subsec_nanos() != 0
        || bucket.is_zero()
        || DAY.as_secs() % bucket.as_secs() != 0
    {
        return Err(ConfigError::new(
            "KPI_BUCKET",
            format!(
                "{} must be whole minutes that divide a day, e.g. 15m, 30m or 1h",
                duration::format(bucket)
            ),
        ));
    }
    let poll = vars.duration_within("KPI_POLL", DEFAULT_KPI_POLL, KPI_POLL_RANGE)?;
    let lookback =
        vars.duration_within("KPI_LOOKBACK", DEFAULT_KPI_LOOKBACK, KPI_LOOKBACK_RANGE)?;
    Ok(Some(KpiConfig {
        bucket,
        poll,
        lookback,
    }))
}

/// Variables that are set but that nothing reads with the rest of the configuration.
fn ineffective_settings(vars: &Vars, influx: &InfluxTarget, kpis: bool, mode: Mode) -> Vec<String> {
    const V1_ONLY: [&str; 4] = [
        "INFLUXDB_RETENTION_POLICY",
        "INFLUXDB_USERNAME",
        "INFLUXDB_PASSWORD",
        "INFLUXDB_PASSWORD_FILE",
    ];
    let mut unused: Vec<(&str, &str)> = Vec::new();
    match influx {
        InfluxTarget::V2 { .. } => unused.extend(V1_ONLY.map(|name| {
            (
                name,
                "with INFLUXDB_BUCKET (v2 write API); it belongs to the v1 API (INFLUXDB_DATABASE)",
            )
        })),
        InfluxTarget::V1 { .. } => unused.push((
            "INFLUXDB_ORG",
            "with INFLUXDB_DATABASE (v1 write API); it belongs to the v2 API (INFLUXDB_BUCKET)",
        )),
        // `top` writes nothing: the InfluxDB settings of a shared env file are not its business.
        InfluxTarget::Stdout if mode == Mode::Top => {}
        InfluxTarget::Stdout if mode != (Mode::Run { dry_run: true }) => unused.extend(
            [
                "INFLUXDB_TOKEN",
                "INFLUXDB_ORG",
                "INFLUXDB_BUCKET",
                "INFLUXDB_DATABASE",
            ]
            .into_iter()
            .chain(V1_ONLY)
            .map(|name| {
                (
                    name,
                    "while line protocol goes to stdout (INFLUXDB_URL is - or unset)",
                )
            }),
        ),
        InfluxTarget::Stdout => {}
    }
    if !vars.is_set("SPOOL_DIR") {
        unused.push(("SPOOL_MAX_BYTES", "without SPOOL_DIR"));
    }
    if !kpis {
        unused
            .extend(["KPI_BUCKET", "KPI_POLL", "KPI_LOOKBACK"].map(|name| (name, "with KPIS=off")));
    }
    if vars.is_set("GENESYS_API_URL") && vars.is_set("GENESYS_LOGIN_URL") {
        unused.push((
            "GENESYS_REGION",
            "when GENESYS_API_URL and GENESYS_LOGIN_URL are both set",
        ));
    }
    for (file, value) in [
        ("GENESYS_CLIENT_SECRET_FILE", "GENESYS_CLIENT_SECRET"),
        ("INFLUXDB_PASSWORD_FILE", "INFLUXDB_PASSWORD"),
        ("INFLUXDB_TOKEN_FILE", "INFLUXDB_TOKEN"),
    ] {
        if vars.is_set(value) {
            unused.push((
                file,
                "while the variable it stands for is set too (that one wins)",
            ));
        }
    }
    let mut warnings: Vec<String> = unused
        .into_iter()
        .filter(|(name, _)| vars.is_set(name))
        .map(|(name, why)| format!("{name} has no effect {why}"))
        .collect();
    warnings.dedup();
    warnings
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
        assert_eq!(
            error(&[("HTTP_TIMEOUT", "0s")]),
            "HTTP_TIMEOUT: 0s is out of range; use 1s to 5m"
        );
        assert!(error(&[("QUEUE_REFRESH", "5")]).starts_with("QUEUE_REFRESH: '5' has no unit"));
        assert_eq!(
            error(&[("QUEUE_REFRESH", "99999999999999999999h")]),
            "QUEUE_REFRESH: '99999999999999999999h' is too large"
        );
    }

    #[test]
    fn every_number_and_duration_has_a_range() {
        for (variable, value, message) in [
            (
                "POLL_INTERVAL",
                "2h",
                "2h must be a whole number of seconds from 1s to 1h",
            ),
            (
                "POLL_INTERVAL",
                "1000000h",
                "1000000h must be a whole number of seconds from 1s to 1h",
            ),
            (
                "WINDOW",
                "1000000h",
                "1000000h is out of range; use a multiple of POLL_INTERVAL up to 24h",
            ),
            (
                "QUEUE_REFRESH",
                "1ms",
                "1ms is out of range; use 10s to 24h",
            ),
            (
                "QUEUE_REFRESH",
                "25h",
                "25h is out of range; use 10s to 24h",
            ),
            ("HTTP_TIMEOUT", "6m", "6m is out of range; use 1s to 5m"),
            (
                "SHUTDOWN_TIMEOUT",
                "0s",
                "0s is out of range; use 1s to 10m",
            ),
            (
                "SPOOL_MAX_BYTES",
                "0",
                "'0' is not a whole number from 65536 to 1099511627776",
            ),
            (
                "GENESYS_REQUESTS_PER_MINUTE",
                "0",
                "'0' is not a whole number from 1 to 1000000",
            ),
            ("KPI_POLL", "2h", "2h is out of range; use 1s to 1h"),
            (
                "KPI_LOOKBACK",
                "2d",
                "'2d' has unknown unit 'd'; use ms, s, m or h",
            ),
            ("KPI_LOOKBACK", "25h", "25h is out of range; use 0s to 24h"),
            (
                "KPI_BUCKET",
                "0m",
                "0s must be whole minutes that divide a day, e.g. 15m, 30m or 1h",
            ),
        ] {
            assert_eq!(
                error(&[(variable, value)]),
                format!("{variable}: {message}"),
                "{variable}={value}"
            );
        }
        let edges = run(&[
            ("POLL_INTERVAL", "1h"),
            ("WINDOW", "24h"),
            ("QUEUE_REFRESH", "1h"),
            ("SHUTDOWN_TIMEOUT", "1s"),
            ("SPOOL_MAX_BYTES", "65536"),
            ("GENESYS_REQUESTS_PER_MINUTE", "1000000"),
            ("KPI_LOOKBACK", "0s"),
        ])
        .unwrap();
        assert_eq!(edges.window, Duration::from_secs(86_400));
        assert_eq!(edges.spool.max_bytes, 65_536);
    }

    #[test]
    fn urls_need_a_host_and_a_valid_port_and_no_user_info() {
        for (value, message) in [
            ("http://127.0.0.1:99999", "'http://127.0.0.1:99999' has port '99999'; a port is a number from 1 to 65535"),
            ("http://127.0.0.1:0", "'http://127.0.0.1:0' has port '0'; a port is a number from 1 to 65535"),
            ("http://host:", "'http://host:' has port ''; a port is a number from 1 to 65535"),
            ("http://:8086", "'http://:8086' has no host"),
            ("http://ho st", "'http://ho st' contains a space or a control character"),
            ("http://host/x?db=a", "'http://host/x?db=a' has a query or fragment; give only scheme, host, port and path"),
            ("http://user:PW@host:8086", "'http://***@host:8086' holds user info (user:password@), which is never sent; set INFLUXDB_USERNAME and INFLUXDB_PASSWORD (or INFLUXDB_TOKEN) instead"),
            ("user:PW@host:8086", "'***@host:8086' must start with http:// or https://"),
        ] {
            assert_eq!(error(&[("INFLUXDB_URL", value)]), format!("INFLUXDB_URL: {message}"));
        }
        let err = error(&[("GENESYS_API_URL", "https://id:secret@api.example.com")]);
        assert!(
            err.starts_with("GENESYS_API_URL: 'https://***@api.example.com' holds user info"),
            "{err}"
        );
        assert!(!err.contains("secret@"), "{err}");
        for good in [
            "http://[::1]:8086",
            "https://influx.example.com/prefix/",
            "http://h_1.local:1",
        ] {
            run(&[("INFLUXDB_URL", good)]).unwrap();
        }
        assert_eq!(
            run(&[("INFLUXDB_URL", "http://[::1]:8086/")])
                .unwrap()
                .influx,
            InfluxTarget::V1 {
                url: "http://[::1]:8086".into(),
                database: "genesys".into(),
                retention_policy: None,
                auth: V1Auth::None
            }
        );
    }

    #[test]
    fn blank_secrets_are_refused_without_echoing_them() {
        for variable in ["GENESYS_CLIENT_SECRET", "INFLUXDB_TOKEN"] {
            assert_eq!(
                error(&[(variable, "   ")]),
                format!("{variable}: is blank (only spaces); set the real value")
            );
            let err = error(&[(variable, "abc\ndef")]);
            assert!(
                err.starts_with(&format!("{variable}: contains a line break")),
                "{err}"
            );
            assert!(!err.contains("abc"), "{err}");
        }
    }

    #[test]
    fn settings_without_effect_are_reported() {
        let v2 = run(&[
            ("INFLUXDB_DATABASE", ""),
            ("INFLUXDB_BUCKET", "b"),
            ("INFLUXDB_TOKEN", "t0ken"),
            ("INFLUXDB_RETENTION_POLICY", "rp"),
            ("INFLUXDB_USERNAME", "u"),
            ("SPOOL_MAX_BYTES", "1048576"),
            ("KPIS", "off"),
            ("KPI_POLL", "30s"),
        ])
        .unwrap();
        assert_eq!(
            v2.warnings,
            vec![
                "INFLUXDB_RETENTION_POLICY has no effect with INFLUXDB_BUCKET (v2 write API); it belongs to the v1 API (INFLUXDB_DATABASE)",
                "INFLUXDB_USERNAME has no effect with INFLUXDB_BUCKET (v2 write API); it belongs to the v1 API (INFLUXDB_DATABASE)",
                "SPOOL_MAX_BYTES has no effect without SPOOL_DIR",
                "KPI_POLL has no effect with KPIS=off",
            ]
        );
        let v1 = run(&[
            ("INFLUXDB_ORG", "o"),
            ("GENESYS_API_URL", "http://127.0.0.1:1"),
            ("GENESYS_LOGIN_URL", "http://127.0.0.1:2"),
            ("GENESYS_REGION", "eu-west-1"),
            ("GENESYS_CLIENT_SECRET_FILE", "/nonexistent"),
        ])
        .unwrap();
        assert_eq!(
            v1.warnings,
            vec![
                "INFLUXDB_ORG has no effect with INFLUXDB_DATABASE (v1 write API); it belongs to the v2 API (INFLUXDB_BUCKET)",
                "GENESYS_REGION has no effect when GENESYS_API_URL and GENESYS_LOGIN_URL are both set",
                "GENESYS_CLIENT_SECRET_FILE has no effect while the variable it stands for is set too (that one wins)",
            ]
        );
        let stdout = run(&[("INFLUXDB_URL", "-")]).unwrap();
        assert_eq!(
            stdout.warnings,
            vec!["INFLUXDB_DATABASE has no effect while line protocol goes to stdout (INFLUXDB_URL is - or unset)"]
        );
        assert!(config(&[], Mode::Run { dry_run: true })
            .unwrap()
            .warnings
            .is_empty());
        assert!(run(&[]).unwrap().warnings.is_empty());
    }

    #[test]
    fn top_needs_no_influxdb_and_does_not_warn_about_its_settings() {
        let env: HashMap<&str, &str> = [
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "s3cret"),
            ("INFLUXDB_BUCKET", "shared env file"),
            (
                "INFLUXDB_DATABASE",
                "both set: an error for run, unread by top",
            ),
        ]
        .into();
        let top = from_lookup(&|name| env.get(name).map(|v| v.to_string()), Mode::Top).unwrap();
        assert_eq!(top.influx, InfluxTarget::Stdout);
        assert!(top.warnings.is_empty(), "{:?}", top.warnings);
        let without_id = from_lookup(&|_| None, Mode::Top).unwrap_err();
        assert!(without_id.to_string().contains("GENESYS_CLIENT_ID"));
    }

    /// Every variable `from_lookup` reads, with the `_FILE` forms.
    const VARIABLES: [&str; 38] = [
        "GENESYS_CLIENT_ID",
        "GENESYS_CLIENT_SECRET",
        "GENESYS_CLIENT_SECRET_FILE",
        "CREDENTIALS_DIRECTORY",
        "GENESYS_REGION",
        "GENESYS_API_URL",
        "GENESYS_LOGIN_URL",
        "GENESYS_QUEUES",
        "GENESYS_QUEUES_FILE",
        "GENESYS_REQUESTS_PER_MINUTE",
        "QUEUE_SHARD",
        "QUEUE_REFRESH",
        "POLL_INTERVAL",
        "WINDOW",
        "INFLUXDB_URL",
        "INFLUXDB_TOKEN",
        "INFLUXDB_TOKEN_FILE",
        "INFLUXDB_ORG",
        "INFLUXDB_BUCKET",
        "INFLUXDB_DATABASE",
        "INFLUXDB_RETENTION_POLICY",
        "INFLUXDB_USERNAME",
        "INFLUXDB_PASSWORD",
        "INFLUXDB_PASSWORD_FILE",
        "INFLUXDB_TAGS",
        "INSTANCE",
        "TLS_CA_FILE",
        "HTTP_TIMEOUT",
        "SPOOL_DIR",
        "SPOOL_MAX_BYTES",
        "SHUTDOWN_TIMEOUT",
        "KPIS",
        "KPI_BUCKET",
        "KPI_POLL",
        "KPI_LOOKBACK",
        "HTTPS_PROXY",
        "NO_PROXY",
        "RUST_LOG",
    ];

    /// Any text, and texts shaped like what the variables expect: numbers of any size
    /// with or without a unit, URLs with odd ports and user info, blanks, BOMs, controls.
    fn value() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        prop_oneof![
            any::<String>(),
            "[0-9]{0,25}(ms|s|m|h|d|µs|)",
            "[ \t\r\n\u{feff}\u{0}\u{7f}]{0,4}[0-9]{0,12}[a-z]{0,3}[ \t]{0,2}",
            "(https?://)?([a-z]{1,5}(:[a-zA-Z0-9%]{0,8})?@)?[a-z0-9.\\[\\]:_-]{0,12}(:[0-9]{0,7})?(/[^ ]{0,8})?",
            "[0-9]{1,6}/[0-9]{0,6}",
            "([a-z_ ]{0,6}=[^,]{0,6},?){0,4}",
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever one variable holds, the result is a configuration or an error that
        /// names it, never a panic.
        #[test]
        fn any_value_of_any_variable_is_accepted_or_named(
            index in 0..VARIABLES.len(),
            text in value(),
        ) {
            let variable = VARIABLES[index];
            match run(&[(variable, text.as_str())]) {
                Ok(_) => {}
                Err(error) => {
                    let shown = error.to_string();
                    let named = variable.trim_end_matches("_FILE");
                    proptest::prop_assert!(shown.contains(named), "{variable}={text:?}: {shown}");
                }
            }
        }

        /// A secret, or a password inside INFLUXDB_URL, never shows in an error.
        #[test]
        fn secrets_never_appear_in_errors(
            secret in "zq[ -~]{2,20}",
            password in "zq[A-Za-z0-9%!$&'()*+,;=~._-]{2,16}",
            index in 0..3usize,
            other in 0..VARIABLES.len(),
            text in value(),
        ) {
            let variable = ["GENESYS_CLIENT_SECRET", "INFLUXDB_TOKEN", "INFLUXDB_PASSWORD"][index];
            let url = format!("http://admin:{password}@127.0.0.1:8086");
            let mut pairs = vec![(variable, secret.as_str()), (VARIABLES[other], text.as_str())];
            if variable == "INFLUXDB_PASSWORD" {
                pairs.push(("INFLUXDB_USERNAME", "admin"));
            }
            if let Err(error) = run(&pairs) {
                proptest::prop_assert!(!error.to_string().contains(&secret), "{error}");
            }
            let error = run(&[("INFLUXDB_URL", url.as_str())]).unwrap_err();
            proptest::prop_assert!(!error.to_string().contains(&password), "{error}");
        }
    }
}
