//! End to end: the built binary polls an in-process simulated Genesys Cloud with N
//! queues (poll 1 s, window 5 s) and writes through a counting gate to a private real
//! influxd. Prints one `RESULT e2e …` line per size with the child's peak RSS (VmHWM),
//! CPU time (utime+stime from /proc/<pid>/stat) per poll, bytes per window on the wire
//! (gzip) and uncompressed, and window latency (last poll tick of a window → InfluxDB's
//! acknowledgement of that window's body, as the gate saw it).
//!
//! `BENCH_E2E_QUEUES` (default `100,1000,5000`) and `BENCH_E2E_SECONDS` (default 30)
//! choose the sizes and the length of each run. The CPU per poll is measured over the
//! steady state only: from the first acknowledged window to the end.

#[path = "../tests/util/mod.rs"]
#[allow(unused_imports)]
mod util;

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use genesys2influx::sim::{Endpoint, Sim, SimOptions};
use util::gate::{now_ms, Gate};
use util::influxd::Influxd;
use util::process::Service;

const POLL_MS: u64 = 1000;
const WINDOW_MS: u64 = 5000;

fn main() {
    // `cargo bench --no-run` compiles; `cargo test --benches` would run it: skip then.
    if std::env::args().any(|a| a == "--test") || std::env::var_os("BENCH_E2E_SKIP").is_some() {
        return;
    }
    let sizes: Vec<usize> = std::env::var("BENCH_E2E_QUEUES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1_000, 5_000]);
    let seconds: u64 = std::env::var("BENCH_E2E_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    for queues in sizes {
        run(queues, Duration::from_secs(seconds));
    }
}

fn run(queue_count: usize, length: Duration) {
    let sim = Sim::start(SimOptions {
        queue_count,
        value_period: Duration::from_millis(POLL_MS),
        rate_limit_per_minute: Some(1_000_000),
        max_connections: 64,
        ..SimOptions::default()
    })
    .expect("sim starts");
    let influx = Influxd::start_default();
    influx.create_database("genesys");
    let gate = Gate::start(&influx.url());
    let options = SimOptions::default();
    let env = vec![
        ("GENESYS_CLIENT_ID", options.client_id.clone()),
        ("GENESYS_CLIENT_SECRET", options.client_secret.clone()),
        ("GENESYS_API_URL", sim.base_url()),
        ("GENESYS_LOGIN_URL", sim.base_url()),
        ("GENESYS_REQUESTS_PER_MINUTE", "1000000".to_string()),
        ("POLL_INTERVAL", "1s".to_string()),
        ("WINDOW", "5s".to_string()),
        ("KPIS", "off".to_string()),
        ("INFLUXDB_URL", gate.url()),
        ("INFLUXDB_DATABASE", "genesys".to_string()),
        ("INSTANCE", "bench".to_string()),
    ];
    let mut service = Service::start(&["run"], &env);
    let pid = service.pid();

    // Steady state starts once the first window is acknowledged.
    let started = Instant::now();
    while !gate.exchanges().iter().any(|e| e.acknowledged()) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no window written within 60 s:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (cpu0, t0) = (common::cpu_seconds(&format!("/proc/{pid}/stat")), now_ms());
    std::thread::sleep(length);
    let (cpu1, t1) = (common::cpu_seconds(&format!("/proc/{pid}/stat")), now_ms());
    let hwm_kb = status_kb(pid, "VmHWM:");
    let rss_kb = status_kb(pid, "VmRSS:");
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));

    let requests = sim.requests();
    let ticks: BTreeSet<u64> = requests
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::Observations) && (t0..t1).contains(&r.time_ms))
        .map(|r| r.time_ms / POLL_MS)
        .collect();
    let exchanges: Vec<_> = gate
        .exchanges()
        .into_iter()
        .filter(|e| e.acknowledged() && (t0..t1).contains(&e.answered_ms))
        .collect();
    let mut windows = BTreeSet::new();
    let mut latencies = Vec::new();
    for e in &exchanges {
        for line in e.lines.iter().filter(|l| l.starts_with("genesys2influx,")) {
            if let Some(w) = line.rsplit(' ').next().and_then(|t| t.parse::<u64>().ok()) {
                windows.insert(w);
                let last_poll = w * 1000 + WINDOW_MS - POLL_MS;
                latencies.push(e.answered_ms as i64 - last_poll as i64);
            }
        }
    }
    latencies.sort_unstable();
    let n_windows = windows.len().max(1) as f64;
    let wire: usize = exchanges.iter().map(|e| e.wire_bytes).sum();
    let raw: usize = exchanges.iter().map(|e| e.raw_bytes()).sum();
    let lines: usize = exchanges.iter().map(|e| e.lines.len()).sum();
    let cpu = cpu1 - cpu0;
    let polls = ticks.len().max(1) as f64;
    let cpu_ms_per_poll = cpu * 1000.0 / polls;
    let percentile = |p: f64| -> i64 {
        if latencies.is_empty() {
            return -1;
        }
        latencies[((latencies.len() - 1) as f64 * p).round() as usize]
    };
    println!(
        "RESULT e2e queues={queue_count} seconds={} exit={} polls={} windows={} peak_rss_kb={hwm_kb} rss_kb={rss_kb} \
         cpu_s={cpu:.2} cpu_ms_per_poll={cpu_ms_per_poll:.2} cpu_ms_per_poll_per_1000_queues={:.2} \
         lines_per_window={:.0} wire_bytes_per_window={:.0} raw_bytes_per_window={:.0} gzip_ratio={:.1} \
         latency_ms_p50={} latency_ms_max={}",
        length.as_secs(),
        status.code().unwrap_or(-1),
        ticks.len(),
        windows.len(),
        cpu_ms_per_poll * 1000.0 / queue_count as f64,
        lines as f64 / n_windows,
        wire as f64 / n_windows,
        raw as f64 / n_windows,
        raw as f64 / wire.max(1) as f64,
        percentile(0.5),
        percentile(1.0),
    );
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
