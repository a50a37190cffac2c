//! End to end: the built binary polls an in-process simulated Genesys Cloud with N
//! queues (poll 1 s, window 5 s unless told otherwise) and writes through a counting gate
//! to a private real influxd. Prints one `RESULT e2e …` line per size with the child's
//! peak RSS (VmHWM), CPU time (utime+stime from /proc/<pid>/stat) and minor page faults
//! per poll, bytes per window on the wire (gzip) and uncompressed, and window latency
//! (last poll tick of a window → InfluxDB's acknowledgement of that window's body, as the
//! gate saw it).
//!
//! `BENCH_E2E_QUEUES` (default `100,1000,5000`) and `BENCH_E2E_SECONDS` (default 30)
//! choose the sizes and the length of each run; `BENCH_E2E_POLL` and `BENCH_E2E_WINDOW`
//! (whole seconds, default 1 and 5) the cadence, so that the production cadence (10 s,
//! 60 s) can be measured too; `BENCH_E2E_KPIS` (default `off`) the service's `KPIS` and
//! `BENCH_E2E_LIVE` (default `off`) its `LIVE_UPDATES` (`auto` would see no InfluxDB
//! version through the gate and mean off); `BENCH_E2E_STDERR=on` prints the service's own
//! log after each run, to see what it did while a figure was taken.
//! `GENESYS2INFLUX_BINARY` picks the binary and `GENESYS2INFLUX_RUNNER` an emulator for it
//! (`qemu-aarch64-static`): then peak_rss_kb and rss_kb are the whole qemu process and
//! `guest_rss_kb` / `guest_peak_rss_kb` (sampled every 250 ms) the emulated program's own
//! mappings (`common::guest_rss_kb`); CPU figures under emulation mean nothing. CPU
//! and faults per poll are measured over the steady state only: from the first
//! acknowledged window to the end.
//!
//! The Sim serves each chunk's answer rendered once per value period
//! (`SimOptions::prerendered_answers`): rendering 50 answers a second for 5,000 queues in
//! the bench process left the Sim behind the service (13 of 30 polls answered) and took
//! the CPU the service's own threads were measured on. Its answers are plain JSON; Genesys
//! Cloud gzips them, so a real poll also inflates about 2.4 MB per 1,000 queues.

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
use util::sim_env;

/// What one run measures: how many queues, at which cadence, for how long.
struct Setup {
    queue_count: usize,
    length: Duration,
    poll_s: u64,
    window_s: u64,
    kpis: String,
    live: String,
}

fn main() {
    // `cargo bench --no-run` compiles; `cargo test --benches` would run it: skip then.
    if std::env::args().any(|a| a == "--test") || std::env::var_os("BENCH_E2E_SKIP").is_some() {
        return;
    }
    for queue_count in common::env_sizes("BENCH_E2E_QUEUES", &[100, 1_000, 5_000]) {
        run(&Setup {
            queue_count,
            length: Duration::from_secs(common::env_number("BENCH_E2E_SECONDS", 30)),
            poll_s: common::env_number("BENCH_E2E_POLL", 1),
            window_s: common::env_number("BENCH_E2E_WINDOW", 5),
            kpis: std::env::var("BENCH_E2E_KPIS").unwrap_or_else(|_| "off".to_string()),
            live: std::env::var("BENCH_E2E_LIVE").unwrap_or_else(|_| "off".to_string()),
        });
    }
}

fn run(setup: &Setup) {
    let Setup {
        queue_count,
        length,
        poll_s,
        window_s,
        ..
    } = *setup;
    let (poll_ms, window_ms) = (poll_s * 1000, window_s * 1000);
    let sim = Sim::start(SimOptions {
        queue_count,
        value_period: Duration::from_millis(poll_ms),
        rate_limit_per_minute: Some(1_000_000),
        max_connections: 64,
        // Rendering 50 answers a second for 5,000 queues would make the Sim the bottleneck.
        prerendered_answers: true,
        ..SimOptions::default()
    })
    .expect("sim starts");
    let influx = Influxd::start_default();
    influx.create_database("genesys");
    let gate = Gate::start(&influx.url());
    let mut env = sim_env(&sim);
    env.extend([
        ("GENESYS_REQUESTS_PER_MINUTE", "1000000".to_string()),
        ("POLL_INTERVAL", format!("{poll_s}s")),
        ("WINDOW", format!("{window_s}s")),
        ("KPIS", setup.kpis.clone()),
        ("LIVE_UPDATES", setup.live.clone()),
        ("INFLUXDB_URL", gate.url()),
        ("INFLUXDB_DATABASE", "genesys".to_string()),
        ("INSTANCE", "bench".to_string()),
    ]);
    let mut service = Service::start(&["run"], &env);
    let pid = service.pid();

    // Steady state starts once the first window is acknowledged: at most two windows
    // and a minute for the first answers.
    let started = Instant::now();
    let first_window_limit = Duration::from_secs(2 * window_s + 60);
    while !gate.exchanges().iter().any(|e| e.acknowledged()) {
        assert!(
            started.elapsed() < first_window_limit,
            "no window written within {} s:\n{}",
            first_window_limit.as_secs(),
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stat = format!("/proc/{pid}/stat");
    let (cpu0, faults0, t0) = (
        common::cpu_seconds(&stat),
        common::minor_faults(&stat),
        now_ms(),
    );
    // Under an emulator the guest's own resident memory is sampled as the run goes (its
    // peak is not in /proc: VmHWM counts qemu's mappings too).
    let emulated = std::env::var_os("GENESYS2INFLUX_RUNNER").is_some();
    let mut guest_peak_kb = 0;
    let until = Instant::now() + length;
    while Instant::now() < until {
        if emulated {
            guest_peak_kb = guest_peak_kb.max(common::guest_rss_kb(pid));
        }
        std::thread::sleep(
            Duration::from_millis(250).min(until.saturating_duration_since(Instant::now())),
        );
    }
    let guest_kb = if emulated {
        common::guest_rss_kb(pid)
    } else {
        0
    };
    guest_peak_kb = guest_peak_kb.max(guest_kb);
    let (cpu1, faults1, t1) = (
        common::cpu_seconds(&stat),
        common::minor_faults(&stat),
        now_ms(),
    );
    let hwm_kb = status_kb(pid, "VmHWM:");
    let rss_kb = status_kb(pid, "VmRSS:");
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));

    if std::env::var("BENCH_E2E_STDERR").is_ok_and(|v| v == "on") {
        eprintln!(
            "--- service log ---\n{}--- end of service log ---",
            service.stderr()
        );
    }
    let requests = sim.requests();
    let ticks: BTreeSet<u64> = requests
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::Observations) && (t0..t1).contains(&r.time_ms))
        .map(|r| r.time_ms / poll_ms)
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
                let last_poll = w * 1000 + window_ms - poll_ms;
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
    let faults_per_poll = (faults1 - faults0) / polls;
    let percentile = |p: f64| -> i64 {
        if latencies.is_empty() {
            return -1;
        }
        latencies[((latencies.len() - 1) as f64 * p).round() as usize]
    };
    println!(
        "RESULT e2e queues={queue_count} seconds={} poll_s={poll_s} window_s={window_s} kpis={} live={} exit={} polls={} \
         windows={} peak_rss_kb={hwm_kb} rss_kb={rss_kb} \
         cpu_s={cpu:.2} cpu_ms_per_poll={cpu_ms_per_poll:.2} cpu_ms_per_poll_per_1000_queues={:.2} \
         minor_faults_per_poll={faults_per_poll:.0} \
         lines_per_window={:.0} wire_bytes_per_window={:.0} raw_bytes_per_window={:.0} gzip_ratio={:.1} \
         latency_ms_p50={} latency_ms_max={}{}",
        length.as_secs(),
        setup.kpis,
        setup.live,
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
        if emulated {
            format!(" guest_rss_kb={guest_kb} guest_peak_rss_kb={guest_peak_kb}")
        } else {
            String::new()
        },
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
