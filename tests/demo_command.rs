//! `genesys2influx demo`: no credentials, no network beyond loopback, line protocol on
//! stdout that a real InfluxDB accepts as a whole.

use std::time::Duration;

use crate::util::influxd::Influxd;
use crate::util::process::run_to_end;

#[test]
fn demo_prints_line_protocol_that_influxdb_accepts() {
    let (code, stdout, stderr) = run_to_end(
        &["demo", "--seconds", "8", "--queues", "12"],
        &[],
        Duration::from_secs(40),
    );
    assert_eq!(code, Some(0), "demo exit code; stderr:\n{stderr}");
    let measurements: std::collections::BTreeSet<&str> = stdout
        .lines()
        .map(|line| line.split([',', ' ']).next().unwrap_or_default())
        .collect();
    for wanted in ["genesys_queue", "genesys_queue_media", "genesys2influx"] {
        assert!(
            measurements.contains(wanted),
            "no {wanted} line in the demo output:\n{stdout}"
        );
    }

    let influx = Influxd::start_default();
    influx.create_database("demo");
    let (status, body) = influx.write_raw("demo", stdout.as_bytes());
    assert_eq!(status, 204, "influxd rejected the demo output: {body}");
    let queues = influx.rows(
        "demo",
        "SHOW TAG VALUES FROM genesys_queue WITH KEY = \"queue_id\"",
    );
    assert_eq!(queues.len(), 12, "every simulated queue has points");
    let media = influx.rows("demo", "SELECT count(samples) FROM genesys_queue_media");
    assert!(
        media[0][1].as_u64().unwrap_or(0) >= 12,
        "media points stored: {media:?}"
    );
}

#[test]
fn bad_command_lines_exit_64_and_bad_config_78() {
    let (code, _, stderr) = run_to_end(&["frobnicate"], &[], Duration::from_secs(10));
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("unexpected argument 'frobnicate'") && stderr.contains("Usage:"),
        "{stderr}"
    );

    let env = [
        ("GENESYS_CLIENT_ID", "id".to_string()),
        ("GENESYS_CLIENT_SECRET", "do-not-print-me".to_string()),
        ("INFLUXDB_URL", "-".to_string()),
        ("WINDOW", "45s".to_string()),
    ];
    let (code, _, stderr) = run_to_end(&["run"], &env, Duration::from_secs(10));
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("WINDOW=45s is not a multiple of POLL_INTERVAL=10s"),
        "{stderr}"
    );
    assert!(!stderr.contains("do-not-print-me"));

    let (code, stdout, _) = run_to_end(&["--help"], &[], Duration::from_secs(10));
    assert_eq!(code, Some(0));
    assert!(stdout.contains("GENESYS_CLIENT_SECRET_FILE") && stdout.contains("Exit codes"));
}

/// Five million simulated queues would take gigabytes and minutes before the first poll.
#[test]
fn demo_refuses_more_queues_than_it_simulates() {
    let (code, _, stderr) = run_to_end(
        &["demo", "--queues", "5000000", "--seconds", "1"],
        &[],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("--queues 5000000 is more than the demo simulates; use at most 10000"),
        "{stderr}"
    );
}

/// `demo` needs no network: a proxy set in the shell (nothing listens at this one, and
/// the harness's NO_PROXY is replaced) does not stand between it and its own simulator.
#[test]
fn demo_reaches_its_simulator_directly_whatever_proxy_is_set() {
    let proxy = format!("http://127.0.0.1:{}", crate::util::free_port());
    let env = [
        ("http_proxy", proxy.clone()),
        ("HTTPS_PROXY", proxy),
        ("NO_PROXY", "nothing.invalid".to_string()),
    ];
    let (code, stdout, stderr) = run_to_end(
        &["demo", "--seconds", "2", "--queues", "2", "--output", "lp"],
        &env,
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("genesys_queue,")),
        "no line protocol; stderr:\n{stderr}"
    );
}
