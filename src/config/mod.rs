//! Environment (and `--env-file`) → one validated [`Config`].
//!
//! Every variable of the contract is read here and nowhere else, checked once, and turned
//! into types that cannot hold an invalid value. A bad value is a [`ConfigError`] naming
//! the variable and what would be accepted; `main` turns it into exit code 78. Every
//! number and duration has a range (named once in `limits`, also in `--help` and the
//! README), and settings that would have no effect are reported in [`Config::warnings`].
//!
//! One file per concept: `limits` (defaults and ranges), `vars` (typed access),
//! `secrets`, `urls`, `genesys`, `influx` and `warnings` (settings without effect).

mod error;
mod genesys;
mod influx;
mod limits;
mod mode;
mod proxy;
mod secrets;
mod switch;
mod urls;
mod vars;
mod warnings;

use std::path::PathBuf;
use std::time::Duration;

use crate::duration;

pub use error::ConfigError;
use error::Result;
pub use genesys::{GenesysConfig, QueueSelector, Shard};
pub use influx::{InfluxTarget, V1Auth};
use limits::*;
pub use mode::Mode;
pub use proxy::{ProxyConfig, ProxyUrl};
pub use secrets::Secret;
pub use switch::{LiveUpdates, Notifications, Switch};
use vars::Vars;

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
    /// `NOTIFICATIONS`: whether queue changes pushed by Genesys Cloud wake the poller.
    pub notifications: Notifications,
    /// `None` when `KPIS=off`.
    pub kpi: Option<KpiConfig>,
    /// Value of the `instance` tag of the self-metrics.
    pub instance: String,
    /// Settings that are set but have no effect with the others (logged, or printed by
    /// `check`).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub timeout: Duration,
    pub tls_ca_file: Option<PathBuf>,
    /// `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY` (and their lower-case forms).
    pub proxy: ProxyConfig,
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

/// Reads the whole configuration through `get` (the process environment merged with the
/// env file), reading the secret, queue and CA files it names.
pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>, mode: Mode) -> Result<Config> {
    let vars = Vars(get);
    let poll_interval = vars.duration("POLL_INTERVAL", DEFAULT_POLL_INTERVAL)?;
    let window = vars.duration("WINDOW", DEFAULT_WINDOW)?;
    check_timing(poll_interval, window)?;
    let genesys = genesys::genesys_config(&vars)?;
    let influx = influx::influx_target(&vars, mode)?;
    let kpi = kpi_config(&vars)?;
    let proxy = proxy::proxy_config(&vars)?;
    let mut warnings = warnings::ineffective_settings(&vars, &influx, kpi.is_some(), mode);
    warnings.extend(proxy::warnings(&proxy));
    Ok(Config {
        warnings,
        genesys,
        queues: genesys::queue_selectors(&vars)?,
        shard: vars
            .optional("QUEUE_SHARD")
            .map(|v| genesys::parse_shard(&v))
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
            .map(|v| influx::parse_tags(&v))
            .transpose()?
            .unwrap_or_default(),
        http: HttpConfig {
            timeout: vars.duration_within(
                "HTTP_TIMEOUT",
                DEFAULT_HTTP_TIMEOUT,
                HTTP_TIMEOUT_RANGE,
            )?,
            tls_ca_file: vars.optional("TLS_CA_FILE").map(PathBuf::from),
            proxy,
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
        live_updates: switch(&vars, "LIVE_UPDATES")?,
        notifications: switch(&vars, "NOTIFICATIONS")?,
        kpi,
        instance: vars.optional("INSTANCE").unwrap_or_else(hostname),
    })
}

/// An `auto|on|off` variable; `auto` when unset.
fn switch(vars: &Vars, variable: &str) -> Result<Switch> {
    vars.optional(variable)
        .map(|v| switch::parse(variable, &v))
        .transpose()
        .map(Option::unwrap_or_default)
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

    pub(super) fn config(pairs: &[(&str, &str)], mode: Mode) -> Result<Config> {
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

    pub(super) fn run(pairs: &[(&str, &str)]) -> Result<Config> {
        config(pairs, Mode::Run { dry_run: false })
    }

    pub(super) fn error(pairs: &[(&str, &str)]) -> String {
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

    /// Every variable `from_lookup` reads, with the `_FILE` forms.
    const VARIABLES: [&str; 43] = [
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
        "LIVE_UPDATES",
        "NOTIFICATIONS",
        "KPIS",
        "KPI_BUCKET",
        "KPI_POLL",
        "KPI_LOOKBACK",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "ALL_PROXY",
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
            let proxy = format!("{}://user:{password}@proxy:{}", ["http", "socks5", "https"][index], &text);
            if let Err(error) = run(&[("HTTPS_PROXY", proxy.as_str())]) {
                proptest::prop_assert!(!error.to_string().contains(&password), "{error}");
            }
        }
    }
}
