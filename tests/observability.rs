//! Seeing the service from outside: the `genesys2influx` self-metrics point checked
//! against what the simulated Genesys and a recording gate in front of a real influxd
//! saw; journald-shaped log lines; and no secret in any log line, even at trace level
//! through failures that echo URLs and bodies.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::process::Stdio;
use std::time::{Duration, Instant};

use genesys2influx::sim::{Endpoint, Fault, RequestRecord, Sim, SimOptions};
use serde_json::Value;
use std::os::unix::fs::MetadataExt;

use crate::core_pipeline::{service_env, sim_with};
use crate::util::gate::{now_ms, Exchange, Gate};
use crate::util::influxd::{self, Influxd, Options};
use crate::util::process::{command, Service};
use crate::util::TempDir;

const DB: &str = "genesys";
const POLL_MS: u64 = 1000;
const WINDOW_MS: u64 = 5000;
const QUEUES: u64 = 20;

/// Sleeps (bounded: at most one window) until the clock is `phase_ms` into a window.
fn wait_for_phase(phase_ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(WINDOW_MS + 100);
    while now_ms() % WINDOW_MS / 100 != phase_ms / 100 {
        assert!(Instant::now() < deadline, "clock phase not reached");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded by `limit`) until `done(exchanges)` holds.
fn wait_for_gate(
    gate: &Gate,
    service: &Service,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Exchange]) -> bool,
) {
    let deadline = Instant::now() + limit;
    while !done(&gate.exchanges()) {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; service log:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Window start (s) of every self-metrics point an exchange carried.
fn self_windows(exchange: &Exchange) -> Vec<u64> {
    exchange
        .lines
        .iter()
        .filter(|l| l.starts_with("genesys2influx,"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

fn acked_self_windows(exchanges: &[Exchange]) -> BTreeSet<u64> {
    exchanges
        .iter()
        .filter(|e| e.acknowledged())
        .flat_map(self_windows)
        .collect()
}

/// Every `genesys2influx` point in influxd: window start (s) → field → value.
fn self_points(influx: &Influxd) -> BTreeMap<u64, BTreeMap<String, i64>> {
    let json = influx.query(DB, "SELECT * FROM genesys2influx");
    let series = &json["results"][0]["series"][0];
    let columns: Vec<String> = series["columns"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect();
    let mut points = BTreeMap::new();
    for row in series["values"].as_array().cloned().unwrap_or_default() {
        let row = row.as_array().cloned().unwrap_or_default();
        let fields = columns
            .iter()
            .zip(&row)
            .filter_map(|(c, v): (&String, &Value)| Some((c.clone(), v.as_i64()?)))
            .collect();
        points.insert(row[0].as_u64().expect("epoch seconds"), fields);
    }
    points
}

/// The part of the Sim's request log each self-metrics point must account for: from the
/// end of the previous point's window (everything before the first) to the end of its
/// own (everything after, for the last point, which shutdown closed).
fn requests_in<'a>(
    log: &'a [RequestRecord],
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) -> impl Iterator<Item = &'a RequestRecord> + 'a {
    log.iter().filter(move |r| {
        from_ms.is_none_or(|from| r.time_ms >= from) && to_ms.is_none_or(|to| r.time_ms < to)
    })
}

/// Lines of each window (by timestamp) as the gate saw them acknowledged.
fn window_lines(exchanges: &[Exchange]) -> BTreeMap<u64, BTreeSet<String>> {
    let mut windows: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for exchange in exchanges.iter().filter(|e| e.acknowledged()) {
        for line in &exchange.lines {
            if let Some(ts) = line.rsplit(' ').next().and_then(|t| t.parse().ok()) {
                windows.entry(ts).or_default().insert(line.clone());
            }
        }
    }
    windows
}

/// Periods in which the writer was failing, as the gate saw them: from the first failed
/// request to the first acknowledged one after it.
fn failing_periods(exchanges: &[Exchange]) -> Vec<(u64, u64)> {
    let mut sorted: Vec<&Exchange> = exchanges.iter().collect();
    sorted.sort_by_key(|e| e.received_ms);
    let mut periods = Vec::new();
    let mut start = None;
    for e in sorted {
        match (e.acknowledged(), start) {
            (false, None) => start = Some(e.received_ms),
            (true, Some(s)) => {
                periods.push((s, e.received_ms));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        periods.push((s, u64::MAX));
    }
    periods
}

#[test]
fn self_metrics_match_what_genesys_and_influxdb_saw() {
    let sim = sim_with(QUEUES as usize);
    // The first observation request: 429 (Retry-After 1 s does not fit a 1 s tick, so
    // the poll fails); the second answers 60 ms late (poll_ms_max).
    sim.inject(
        Endpoint::Observations,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
        1,
    );
    sim.inject(
        Endpoint::Observations,
        Fault::Delay(Duration::from_millis(60)),
        1,
    );
    let influx = Influxd::start_with(Options::default());
    influx.create_database(DB);
    let gate = Gate::start(&influx.url());
    gate.fail_with_500(1);
    let spool = TempDir::new("observe-spool");
    let mut env = service_env(&sim, &influx, false);
    env.retain(|(k, _)| *k != "INFLUXDB_URL");
    env.push(("INFLUXDB_URL", gate.url()));
    env.push(("SPOOL_DIR", spool.path().display().to_string()));
    let mut service = Service::start(&["run"], &env);

    // The 500, then two windows acknowledged.
    wait_for_gate(
        &gate,
        &service,
        Duration::from_secs(30),
        "two windows after a 500",
        |x| x.iter().any(|e| e.status == 500) && acked_self_windows(x).len() >= 2,
    );
    gate.delay_next(Duration::from_millis(300));
    sim.revoke_tokens();
    let seen = acked_self_windows(&gate.exchanges()).len();
    wait_for_gate(
        &gate,
        &service,
        Duration::from_secs(15),
        "a delayed write",
        |x| acked_self_windows(x).len() > seen,
    );

    // InfluxDB unreachable for about 2 windows, so at least one window closes (and
    // takes its self-metrics snapshot) while an earlier one waits in the spool.
    wait_for_phase(2500);
    gate.set_dropping(true);
    std::thread::sleep(Duration::from_millis(2 * WINDOW_MS));
    wait_for_phase(2500);
    gate.set_dropping(false);
    let recovered_ms = now_ms();
    wait_for_gate(
        &gate,
        &service,
        Duration::from_secs(60),
        "the spool replayed",
        |x| {
            let acked = acked_self_windows(x);
            let failed: BTreeSet<u64> = x
                .iter()
                .filter(|e| !e.acknowledged())
                .flat_map(self_windows)
                .collect();
            failed.is_subset(&acked)
                && acked
                    .iter()
                    .filter(|w| **w * 1000 > recovered_ms + 1000)
                    .count()
                    >= 1
        },
    );

    wait_for_phase(2500);
    let sigterm_ms = now_ms();
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "log:\n{}", service.stderr());
    let log = service.stderr();

    let points = self_points(&influx);
    let exchanges = gate.exchanges();
    let requests: Vec<RequestRecord> = sim.requests();
    assert!(points.len() >= 5, "self-metrics points: {points:?}\n{log}");

    let starts: Vec<u64> = points.keys().copied().collect();
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, (&start, fields)) in points.iter().enumerate() {
        let context = format!("self-metrics of window {start}: {fields:?}");
        let from = (i > 0).then(|| starts[i - 1] * 1000 + WINDOW_MS);
        let to = (i + 1 < starts.len()).then(|| start * 1000 + WINDOW_MS);
        let range: Vec<&RequestRecord> = requests_in(&requests, from, to).collect();
        let api: Vec<&&RequestRecord> = range
            .iter()
            .filter(|r| r.endpoint != Some(Endpoint::Token))
            .collect();
        let observations: Vec<&&RequestRecord> = range
            .iter()
            .filter(|r| r.endpoint == Some(Endpoint::Observations))
            .collect();
        let ticks: BTreeSet<u64> = observations.iter().map(|r| r.time_ms / POLL_MS).collect();
        let tokens = range
            .iter()
            .filter(|r| r.endpoint == Some(Endpoint::Token) && r.status == 200)
            .count() as i64;
        let rate_limited = range.iter().filter(|r| r.status == 429).count() as i64;
        let delayed = observations
            .iter()
            .any(|r| matches!(r.fault, Some(Fault::Delay(_))));

        assert_eq!(fields["polls"], ticks.len() as i64, "polls, {context}");
        assert_eq!(
            fields["api_requests"],
            api.len() as i64,
            "api_requests, {context}"
        );
        assert_eq!(
            fields["api_rate_limited"], rate_limited,
            "api_rate_limited, {context}"
        );
        assert_eq!(
            fields["poll_errors"], rate_limited,
            "poll_errors, {context}"
        );
        assert_eq!(
            fields["token_refreshes"],
            tokens - i64::from(i == 0),
            "token_refreshes (the first login is no refresh), {context}"
        );
        assert_eq!(fields["queues"], QUEUES as i64, "queues, {context}");
        if delayed {
            assert!(fields["poll_ms_max"] >= 60, "poll_ms_max, {context}");
        }
        for (name, value) in fields {
            if name != "queues" && name != "spool_bytes" {
                *totals.entry(name.as_str()).or_default() += value;
            }
        }
    }
    assert_eq!(totals["api_rate_limited"], 1, "one 429 in all");
    assert_eq!(
        totals["token_refreshes"], 1,
        "one renewal after the revocation"
    );
    assert!(totals["poll_ms_max"] >= 60);

    // The writer's counters, against what the gate acknowledged before SIGTERM (the
    // batch of the last window is written after the last snapshot).
    let before_stop: Vec<&Exchange> = exchanges
        .iter()
        .filter(|e| e.answered_ms < sigterm_ms)
        .collect();
    let acked_lines: usize = before_stop
        .iter()
        .filter(|e| e.acknowledged())
        .map(|e| e.lines.len())
        .sum();
    let failed = before_stop.iter().filter(|e| !e.acknowledged()).count();
    assert_eq!(
        totals["points_written"], acked_lines as i64,
        "points_written\n{log}"
    );
    assert!(failed >= 2, "the 500 and at least one dropped connection");
    assert_eq!(totals["write_errors"], failed as i64, "write_errors\n{log}");
    assert_eq!(totals["lines_dropped"], 0, "lines_dropped");
    assert!(
        points.values().any(|p| p["write_ms_max"] >= 300),
        "the 300 ms write shows in write_ms_max: {points:?}"
    );

    // Spooled: every window whose batch met a failing InfluxDB; a window produced right at
    // the edge of a failing period may go either way.
    let lines_of = window_lines(&exchanges);
    let in_failed: BTreeSet<u64> = exchanges
        .iter()
        .filter(|e| !e.acknowledged())
        .flat_map(self_windows)
        .collect();
    let periods = failing_periods(&exchanges);
    let mut certain = 0i64;
    let mut uncertain = Vec::new();
    for (&window, lines) in &lines_of {
        let produced = window * 1000 + WINDOW_MS - POLL_MS;
        let inside = |t: u64| periods.iter().any(|(a, b)| (*a..*b).contains(&t));
        if in_failed.contains(&window) || (inside(produced) && inside(produced + 300)) {
            certain += lines.len() as i64;
        } else if inside(produced) || inside(produced + 300) {
            uncertain.push(lines.len() as i64);
        }
    }
    let possible: Vec<i64> = (0..1u32 << uncertain.len())
        .map(|mask| {
            certain
                + uncertain
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, n)| n)
                    .sum::<i64>()
        })
        .collect();
    assert!(certain > 0, "some windows were spooled");
    assert!(
        possible.contains(&totals["lines_spooled"]),
        "lines_spooled {} not one of {possible:?}\n{log}",
        totals["lines_spooled"]
    );
    let spool_bytes: Vec<i64> = points.values().map(|p| p["spool_bytes"]).collect();
    assert!(
        spool_bytes.iter().any(|b| *b > 0),
        "spool_bytes shows the outage: {spool_bytes:?}"
    );
    assert_eq!(spool_bytes.last(), Some(&0), "the spool is empty again");
}

/// Runs `demo` with stderr going to a file, and `JOURNAL_STREAM` naming that file (as
/// systemd names the journal socket) or not; returns the stderr lines.
fn demo_log(journal_stream: impl Fn(&File) -> String) -> Vec<String> {
    let dir = TempDir::new("observe-journal");
    let path = dir.join("stderr");
    let file = File::create(&path).expect("stderr file");
    let stream = journal_stream(&file);
    let status = command()
        .args(["demo", "--queues", "3", "--seconds", "3"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "debug")
        .env("JOURNAL_STREAM", stream)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(file))
        .status()
        .expect("demo runs");
    let text = std::fs::read_to_string(&path).expect("stderr readable");
    assert!(status.success(), "demo failed:\n{text}");
    text.lines().map(str::to_string).collect()
}

fn identity(file: &File) -> String {
    let meta = file.metadata().expect("stderr file metadata");
    format!("{}:{}", meta.dev(), meta.ino())
}

fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'Z'
}

#[test]
fn under_journald_lines_carry_a_priority_and_no_timestamp() {
    let lines = demo_log(identity);
    assert!(lines.len() >= 3, "demo logged: {lines:?}");
    let mut priorities = BTreeSet::new();
    for line in &lines {
        let priority = line
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .and_then(|(n, _)| n.parse::<u8>().ok());
        assert!(
            matches!(priority, Some(3..=7)),
            "no <3>…<7> prefix: {line:?}"
        );
        priorities.extend(priority);
        let after = line.split_once('>').map_or("", |(_, rest)| rest);
        assert!(
            !starts_with_timestamp(after),
            "journald adds the time itself: {line:?}"
        );
    }
    assert!(
        priorities.contains(&6) && priorities.contains(&7),
        "info and debug: {priorities:?}"
    );

    // JOURNAL_STREAM inherited from a parent whose stderr went elsewhere: terminal shape.
    let lines = demo_log(|file| {
        let id = identity(file);
        let (dev, ino) = id.split_once(':').expect("dev:ino");
        format!("{dev}:{}", ino.parse::<u64>().expect("inode") + 1)
    });
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            starts_with_timestamp(line),
            "timestamped outside journald: {line:?}"
        );
    }
}

const CLIENT_SECRET: &str = "cs-LEAKCHECK-7f1e9a2b";
const WRONG_CLIENT_SECRET: &str = "cs-WRONGLEAK-4d2c8e01";
const INFLUX_PASSWORD: &str = "pw-LEAKCHECK-93ab17";
const INFLUX_TOKEN: &str = "tok-LEAKCHECK-55c0de";

/// Every secret as it could show up: raw, and inside HTTP Basic credentials.
fn forbidden_strings(client_id: &str) -> Vec<String> {
    let mut forbidden = Vec::new();
    for secret in [
        CLIENT_SECRET,
        WRONG_CLIENT_SECRET,
        INFLUX_PASSWORD,
        INFLUX_TOKEN,
    ] {
        forbidden.push(secret.to_string());
        forbidden.push(genesys2influx::http::base64(secret.as_bytes()));
    }
    for (user, secret) in [
        (client_id, CLIENT_SECRET),
        (client_id, WRONG_CLIENT_SECRET),
        (influxd::ADMIN_USER, INFLUX_PASSWORD),
    ] {
        forbidden.push(genesys2influx::http::base64(
            format!("{user}:{secret}").as_bytes(),
        ));
    }
    forbidden
}

/// The Sim's access tokens are 86 characters of the base64url alphabet; nothing else
/// the service logs (queue ids are 36) comes near that.
fn longest_token_like_run(text: &str) -> usize {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .map(str::len)
        .max()
        .unwrap_or(0)
}

/// A hex dump logs 16 bytes a line (`0a1b 2c3d … ascii`): its ASCII columns joined
/// again, so a secret split across dump lines is found too.
fn rejoined_dumps(output: &str) -> String {
    output
        .lines()
        .filter_map(|line| {
            let (_, dump) = line.split_once(": ")?;
            let ascii = dump.rsplit(' ').next()?;
            let hex: Vec<&str> = dump.split(' ').filter(|g| !g.is_empty()).collect();
            (hex.len() == 9 && hex[..8].iter().all(|g| g.len() == 4)).then_some(ascii)
        })
        .collect()
}

fn assert_no_secret(what: &str, output: &str, client_id: &str) {
    let rejoined = rejoined_dumps(output);
    for secret in forbidden_strings(client_id) {
        assert!(
            !output.contains(&secret),
            "{what} leaks {secret:?}:\n{output}"
        );
        assert!(
            !rejoined.contains(&secret),
            "{what} leaks {secret:?} in a hex dump split over lines"
        );
    }
    assert!(
        longest_token_like_run(output) < 40,
        "{what} contains something shaped like an access token:\n{output}"
    );
}

#[test]
fn no_secret_reaches_the_log_even_at_trace_level() {
    let options = SimOptions {
        queue_count: 5,
        client_secret: CLIENT_SECRET.to_string(),
        value_period: Duration::from_secs(1),
        ..SimOptions::default()
    };
    let client_id = options.client_id.clone();
    let sim = Sim::start(options).expect("sim starts");
    let influx = Influxd::start_with(Options {
        auth: true,
        ..Options::default()
    });
    influx.create_database(DB);
    let gate = Gate::start(&influx.url());
    let base = |secret: &str| {
        let mut env = service_env(&sim, &influx, false);
        env.retain(|(k, _)| !matches!(*k, "GENESYS_CLIENT_SECRET" | "INFLUXDB_URL"));
        env.push(("GENESYS_CLIENT_SECRET", secret.to_string()));
        env.push(("INFLUXDB_URL", gate.url()));
        env.push(("RUST_LOG", "trace".to_string()));
        env
    };
    let mut outputs = Vec::new();

    // 1. Genesys refuses the client secret at login: check exits 77.
    let (code, stdout, stderr) = crate::util::process::run_to_end(
        &["check"],
        &base(WRONG_CLIENT_SECRET),
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(77), "check with a wrong secret:\n{stderr}");
    outputs.push(("check, login refused", stdout + &stderr));

    // 2. run: API 401s (token renewal), 5xx from Genesys, InfluxDB 500s, then InfluxDB
    //    refusing the password.
    sim.inject(Endpoint::Observations, Fault::Status(401), 2);
    sim.inject(Endpoint::Observations, Fault::GatewayHtml(502), 1);
    sim.inject(Endpoint::Observations, Fault::Status(500), 1);
    gate.fail_with_500(2);
    let mut env = base(CLIENT_SECRET);
    env.push(("INFLUXDB_USERNAME", influxd::ADMIN_USER.to_string()));
    env.push(("INFLUXDB_PASSWORD", INFLUX_PASSWORD.to_string()));
    let before = gate.exchanges().len();
    let mut service = Service::start(&["run"], &env);
    let deadline = Instant::now() + Duration::from_secs(40);
    while !gate.exchanges()[before..].iter().any(|e| e.status == 401) {
        assert!(
            Instant::now() < deadline,
            "no InfluxDB 401:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    service.wait_for_log("401", Duration::from_secs(10));
    service.signal("TERM");
    service.wait(Duration::from_secs(20));
    let seen_401 = sim.requests().iter().filter(|r| r.status == 401).count();
    assert!(seen_401 >= 2, "the Sim answered 401 to API calls");
    outputs.push(("run with password", service.stdout() + &service.stderr()));

    // 3. run and check with a token InfluxDB 1.6 refuses.
    let mut env = base(CLIENT_SECRET);
    env.push(("INFLUXDB_TOKEN", INFLUX_TOKEN.to_string()));
    let (code, stdout, stderr) =
        crate::util::process::run_to_end(&["check"], &env, Duration::from_secs(30));
    assert_eq!(code, Some(77), "InfluxDB 1.6 refuses the token:\n{stderr}");
    outputs.push(("check with token", stdout + &stderr));
    let mut service = Service::start(&["run"], &env);
    let before = gate.exchanges().len();
    let deadline = Instant::now() + Duration::from_secs(40);
    while !gate.exchanges()[before..].iter().any(|e| e.status == 401) {
        assert!(
            Instant::now() < deadline,
            "no InfluxDB 401:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    service.signal("TERM");
    service.wait(Duration::from_secs(20));
    outputs.push(("run with token", service.stdout() + &service.stderr()));

    // The secrets did travel (so the check below is not vacuous).
    let authorizations: Vec<String> = gate
        .exchanges()
        .iter()
        .flat_map(|e| e.headers.clone())
        .filter(|(k, _)| k == "authorization")
        .map(|(_, v)| v)
        .collect();
    assert!(authorizations.iter().any(|a| a.contains(INFLUX_TOKEN)));
    assert!(authorizations
        .iter()
        .any(|a| a.contains(&genesys2influx::http::base64(
            format!("admin:{INFLUX_PASSWORD}").as_bytes()
        ))));

    for (what, output) in &outputs {
        assert!(
            output.contains("TRACE") || output.contains("DEBUG"),
            "{what} ran at trace level"
        );
        assert_no_secret(what, output, &client_id);
    }
}

/// A server that answers every request with `status` and a JSON error body echoing the
/// request it received, headers and body, in every field an error is read from: what a
/// misbehaving proxy in front of Genesys or InfluxDB may do.
struct Echo {
    url: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(status: u16) -> Echo {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => echo_once(stream, status),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Echo {
            url,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn echo_once(stream: std::net::TcpStream, status: u16) {
    use std::io::{BufRead, BufReader, Read, Write};
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&stream);
    let mut head = String::new();
    let mut content_length = 0usize;
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            content_length = value.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; content_length.min(1 << 20)];
    let _ = reader.read_exact(&mut body);
    let echo = format!("{head}{}", String::from_utf8_lossy(&body));
    let json = serde_json::json!({
        "message": echo,
        "error": echo,
        "error_description": echo,
        "code": "echo",
    })
    .to_string();
    let answer = format!(
        "HTTP/1.1 {status} Echo\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    let _ = (&stream).write_all(answer.as_bytes());
}

/// Secrets with characters that percent-encoding, JSON and base64 all write differently.
const ECHO_CLIENT_SECRET: &str = "cs/ECHO+LEAK=7f 1e\"9a";
const ECHO_PASSWORD: &str = "pw ECHO/LEAK+93&ab=c";
const ECHO_TOKEN: &str = "tok-ECHOLEAK-55c0de";

fn percent_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every form of every secret of the echo test, the Basic credentials included.
fn echo_forbidden(client_id: &str) -> Vec<String> {
    let mut forbidden = Vec::new();
    for secret in [ECHO_CLIENT_SECRET, ECHO_PASSWORD, ECHO_TOKEN] {
        forbidden.push(secret.to_string());
        forbidden.push(percent_encoded(secret));
        forbidden.push(percent_encoded(secret).replace("%20", "+"));
        forbidden.push(
            serde_json::to_string(secret)
                .unwrap()
                .trim_matches('"')
                .to_string(),
        );
        forbidden.push(genesys2influx::http::base64(secret.as_bytes()));
    }
    for (user, secret) in [(client_id, ECHO_CLIENT_SECRET), ("admin", ECHO_PASSWORD)] {
        forbidden.push(genesys2influx::http::base64(
            format!("{user}:{secret}").as_bytes(),
        ));
    }
    forbidden
}

fn assert_nothing_echoed(what: &str, output: &str, client_id: &str) {
    for secret in echo_forbidden(client_id) {
        assert!(
            !output.contains(&secret),
            "{what} leaks {secret:?}:\n{output}"
        );
    }
    assert!(
        longest_token_like_run(output) < 40,
        "{what} contains something shaped like an access token:\n{output}"
    );
    assert!(
        output.contains("***"),
        "{what}: the echo reached the output, redacted:\n{output}"
    );
}

/// Genesys and InfluxDB error bodies that echo the request (Basic credentials, the
/// bearer token, InfluxDB's token) are printed by `check` and logged by `run` at trace
/// level with every form of every secret blanked out.
#[test]
fn secrets_echoed_in_error_bodies_are_redacted() {
    let options = SimOptions {
        queue_count: 5,
        client_secret: ECHO_CLIENT_SECRET.to_string(),
        value_period: Duration::from_secs(1),
        ..SimOptions::default()
    };
    let client_id = options.client_id.clone();
    let sim = Sim::start(options).expect("sim starts");
    let refusing = Echo::start(401);
    let rejecting = Echo::start(400);
    let base = |login: &str, api: &str| {
        vec![
            ("GENESYS_CLIENT_ID", client_id.clone()),
            ("GENESYS_CLIENT_SECRET", ECHO_CLIENT_SECRET.to_string()),
            ("GENESYS_LOGIN_URL", login.to_string()),
            ("GENESYS_API_URL", api.to_string()),
            ("POLL_INTERVAL", "1s".to_string()),
            ("WINDOW", "2s".to_string()),
            ("KPIS", "off".to_string()),
            ("INFLUXDB_URL", refusing.url.clone()),
            ("INFLUXDB_DATABASE", DB.to_string()),
            ("HTTP_TIMEOUT", "5s".to_string()),
            ("RUST_LOG", "trace".to_string()),
        ]
    };
    let with_password = |mut env: Vec<(&'static str, String)>| {
        env.push(("INFLUXDB_USERNAME", "admin".to_string()));
        env.push(("INFLUXDB_PASSWORD", ECHO_PASSWORD.to_string()));
        env
    };
    let mut outputs = Vec::new();

    // 1. check: the login and InfluxDB both refuse, echoing the Basic credentials.
    let env = with_password(base(&refusing.url, &refusing.url));
    let (code, stdout, stderr) =
        crate::util::process::run_to_end(&["check"], &env, Duration::from_secs(60));
    assert_eq!(code, Some(77), "{stdout}{stderr}");
    outputs.push(("check, login and InfluxDB refuse", stdout + &stderr));

    // 2. check: a real token, then the queue listing rejected with the bearer token
    //    echoed; InfluxDB echoes its token.
    let mut env = base(&sim.base_url(), &rejecting.url);
    env.push(("INFLUXDB_TOKEN", ECHO_TOKEN.to_string()));
    let (code, stdout, stderr) =
        crate::util::process::run_to_end(&["check"], &env, Duration::from_secs(60));
    assert_ne!(code, Some(0), "{stdout}{stderr}");
    outputs.push(("check, API rejects", stdout + &stderr));

    // 3. run: Genesys works, InfluxDB refuses every write echoing the password.
    let env = with_password(base(&sim.base_url(), &sim.base_url()));
    let mut service = Service::start(&["run"], &env);
    service.wait_for_log("refusing the credentials", Duration::from_secs(30));
    service.signal("TERM");
    service.wait(Duration::from_secs(30));
    outputs.push((
        "run, InfluxDB refuses",
        service.stdout() + &service.stderr(),
    ));

    for (what, output) in &outputs {
        eprintln!("===== {what}\n{output}=====");
        assert!(output.contains("TRACE"), "{what} ran at trace level");
        assert_nothing_echoed(what, output, &client_id);
    }
}
