//! Log output: env_logger to stderr, in one of two shapes.
//!
//! Under systemd (`JOURNAL_STREAM` names our stderr) journald adds the timestamp itself,
//! so each line carries only a `<N>` syslog priority prefix, which journald turns into
//! the entry's priority and `journalctl -p warning` can filter on. Anywhere else a line
//! starts with a UTC timestamp: `2026-11-25T11:45:00Z WARN genesys2influx::x: message`.
//! [`format_line`] is pure so both shapes are unit-tested.
//!
//! Whatever `RUST_LOG` says, the HTTP library's wire dumps are never written: at trace
//! level `ureq_proto` logs every byte sent and received, 16 to a line, which includes
//! `Authorization` headers and the OAuth token answer (see [`is_wire_dump`]). Every other
//! record has the registered secrets blanked out ([`redact`]) before it is written.

use std::io::Write;
use std::time::SystemTime;

use log::Level;

pub mod redact;

/// The filter used when `RUST_LOG` is unset.
pub const DEFAULT_FILTER: &str = "info";

/// Registers every secret of `config` for redaction, as start-up does before anything
/// can log it; the Genesys client and the InfluxDB writer only ever see these values.
pub fn register_secrets(config: &crate::config::Config) {
    use crate::config::{InfluxTarget, V1Auth};
    let genesys = &config.genesys;
    redact::register_credentials(&genesys.client_id, genesys.client_secret.expose());
    match &config.influx {
        InfluxTarget::V1 {
            auth: V1Auth::Basic { username, password },
            ..
        } => redact::register_credentials(username, password.expose()),
        InfluxTarget::V1 {
            auth: V1Auth::Token(token),
            ..
        }
        | InfluxTarget::V2 { token, .. } => redact::register(token.expose()),
        InfluxTarget::V1 { .. } | InfluxTarget::Stdout => {}
    }
    let proxies = &config.http.proxy;
    for proxy in proxies.https.iter().chain(&proxies.http) {
        if let Some(password) = &proxy.password {
            let user = proxy.username.as_deref().unwrap_or_default();
            redact::register_credentials(user, password.expose());
        }
    }
}

/// Logs the settings that have no effect (`check` prints them instead), and the KPI
/// settings that may not work as meant.
pub fn log_warnings(config: &crate::config::Config) {
    log_warnings_except(config, &|_| false);
}

/// [`log_warnings`] without the KPI warnings that come only from variables `defaulted`
/// says were not set by the user (`demo` sets them itself).
pub fn log_warnings_except(config: &crate::config::Config, defaulted: &dyn Fn(&str) -> bool) {
    for warning in &config.warnings {
        log::warn!("configuration: {warning}");
    }
    let kpi_warnings = config.kpi.as_ref().map(crate::kpi::setting_warnings);
    for (variables, warning) in kpi_warnings.into_iter().flatten() {
        if !variables.iter().all(|name| defaulted(name)) {
            log::warn!("{warning}");
        }
    }
}

/// Installs the global logger. The filter comes from `RUST_LOG` (default `info`). A
/// second call is harmless (the first logger stays), which keeps tests simple.
pub fn init() {
    let journald = journald_owns_stderr(
        std::env::var("JOURNAL_STREAM").ok().as_deref(),
        stderr_identity(),
    );
    let _ = env_logger::Builder::new()
        .parse_env(env_logger::Env::new().filter_or("RUST_LOG", DEFAULT_FILTER))
        .target(env_logger::Target::Stderr)
        .format(move |out, record| {
            if is_wire_dump(record.target(), record.level()) {
                return Ok(());
            }
            let message = redact::apply(&record.args().to_string());
            if crate::wallboard::capture_log(record.level(), &message) {
                return Ok(());
            }
            let line = format_line(
                journald,
                record.level(),
                record.target(),
                &message,
                SystemTime::now(),
            );
            out.write_all(line.as_bytes())
        })
        .try_init();
}

/// One log record as written to stderr, with the trailing newline.
///
/// For journald every line of a multi-line message gets the priority prefix, because
/// journald makes each line its own entry.
pub fn format_line(
    journald: bool,
    level: Level,
    target: &str,
    message: &str,
    now: SystemTime,
) -> String {
    if journald {
        let priority = syslog_priority(level);
        let mut line = String::with_capacity(message.len() + target.len() + 8);
        for (i, part) in message.split('\n').enumerate() {
            if i == 0 {
                line.push_str(&format!("<{priority}>{target}: {part}\n"));
            } else {
                line.push_str(&format!("<{priority}>{part}\n"));
            }
        }
        line
    } else {
        format!(
            "{} {level} {target}: {message}\n",
            crate::time::format_utc_s(now)
        )
    }
}

/// Trace records of the HTTP protocol crate: hex dumps of raw requests and responses,
/// credentials included. No filter directive may let them through.
pub fn is_wire_dump(target: &str, level: Level) -> bool {
    level == Level::Trace && (target == "ureq_proto" || target.starts_with("ureq_proto::"))
}

/// syslog(3) priorities as journald reads them from a `<N>` prefix.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// `JOURNAL_STREAM` is `device:inode` of the stream systemd connected to stdout/stderr.
/// It is inherited by children whose stderr may be redirected elsewhere, so it counts
/// only when it matches what our stderr really is (as `sd_journal_stream_fd(3)` advises).
/// When stderr cannot be inspected, the variable alone decides.
fn journald_owns_stderr(journal_stream: Option<&str>, stderr: Option<(u64, u64)>) -> bool {
    let Some(value) = journal_stream.filter(|v| !v.is_empty()) else {
        return false;
    };
    let parsed = value
        .split_once(':')
        .and_then(|(dev, ino)| Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?)));
    match (parsed, stderr) {
        (Some(expected), Some(actual)) => expected == actual,
        _ => true,
    }
}

/// Device and inode of file descriptor 2, through procfs (no `unsafe` `fstat` needed).
fn stderr_identity() -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// 2026-11-25T11:45:00Z
    const NOW: u64 = 1_795_607_100;

    #[test]
    fn terminal_lines_start_with_a_utc_timestamp() {
        assert_eq!(
            format_line(false, Level::Warn, "genesys2influx::x", "message", at(NOW)),
            "2026-11-25T11:45:00Z WARN genesys2influx::x: message\n"
        );
        assert_eq!(
            format_line(false, Level::Error, "t", "boom", at(NOW + 59)),
            "2026-11-25T11:45:59Z ERROR t: boom\n"
        );
    }

    #[test]
    fn journald_lines_carry_the_syslog_priority_and_no_timestamp() {
        let line = |level| format_line(true, level, "genesys2influx::x", "message", at(NOW));
        assert_eq!(line(Level::Error), "<3>genesys2influx::x: message\n");
        assert_eq!(line(Level::Warn), "<4>genesys2influx::x: message\n");
        assert_eq!(line(Level::Info), "<6>genesys2influx::x: message\n");
        assert_eq!(line(Level::Debug), "<7>genesys2influx::x: message\n");
        assert_eq!(line(Level::Trace), "<7>genesys2influx::x: message\n");
    }

    #[test]
    fn every_journald_line_of_a_multi_line_message_keeps_its_priority() {
        assert_eq!(
            format_line(true, Level::Warn, "t", "first\nsecond", at(NOW)),
            "<4>t: first\n<4>second\n"
        );
    }

    #[test]
    fn the_http_wire_dumps_are_never_logged() {
        assert!(is_wire_dump("ureq_proto::util", Level::Trace));
        assert!(is_wire_dump("ureq_proto", Level::Trace));
        assert!(!is_wire_dump("ureq_proto::util", Level::Debug));
        assert!(!is_wire_dump("ureq::run", Level::Trace));
        assert!(!is_wire_dump("ureq_protocol", Level::Trace));
        assert!(!is_wire_dump(
            "genesys2influx::genesys::client",
            Level::Trace
        ));
    }

    #[test]
    fn journal_stream_counts_only_when_it_is_our_stderr() {
        assert!(!journald_owns_stderr(None, Some((1, 2))));
        assert!(!journald_owns_stderr(Some(""), Some((1, 2))));
        assert!(journald_owns_stderr(Some("1:2"), Some((1, 2))));
        assert!(!journald_owns_stderr(Some("1:3"), Some((1, 2))));
        assert!(journald_owns_stderr(Some("1:2"), None));
        assert!(journald_owns_stderr(Some("garbage"), Some((1, 2))));
    }
}
