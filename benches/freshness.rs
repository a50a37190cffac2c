//! Freshness: how long after a value changes in (simulated) Genesys Cloud it can be read
//! back from InfluxDB, with live updates on and off. The built binary polls an in-process
//! Sim with N queues and writes through a counting gate to a private real influxd; this
//! bench reads the newest point of one probe queue from influxd every
//! [`READ_EVERY`] and notes when each value change first became readable.
//!
//! The Sim's values change every [`value_period`] (about 0.73 × `POLL_INTERVAL`, not a
//! divisor of it), so changes fall at every phase of the poll cycle, as real ones do. A
//! change at `c` counts as readable at the first read whose point reflects a poll at or
//! after `c`: the point's poll is its timestamp (window start) plus `(samples - 1)`
//! polls, confirmed by its `_last` values being exactly what the Sim answered then (a
//! point whose values match no slot of that poll interval is counted as `mismatched`). So with
//! live updates off a change is readable when its window closes (up to about `WINDOW`
//! later), with live updates on after the next poll (up to about `POLL_INTERVAL` later).
//!
//! Prints one `RESULT freshness …` line per (queues, live) pair: p50, p95 and max of the
//! freshness in ms, and the cost side over the same span: the child's CPU time per minute
//! per 1,000 queues and the lines and gzip bytes written per minute per 1,000 queues.
//!
//! `BENCH_FRESHNESS_QUEUES` (default `100,1000`), `BENCH_FRESHNESS_LIVE` (default
//! `off,on`: the service's `LIVE_UPDATES`), `BENCH_FRESHNESS_SECONDS` (default 180: how
//! long value changes are collected), `BENCH_FRESHNESS_POLL` and
//! `BENCH_FRESHNESS_WINDOW` (whole seconds, default 10 and 60: production).
//! `BENCH_FRESHNESS_SKIP` skips it.
//!
//! `BENCH_FRESHNESS_ROWS` (default `live,notifications`) picks the row sets: `live` the
//! rows above, `notifications` those of [`notifications`] (issue 21: notifications on
//! and off at an org-wide rate of queue changes).

#[path = "../tests/util/mod.rs"]
#[allow(unused_imports)]
mod util;

mod common;
#[path = "freshness/notifications.rs"]
mod notifications;

use std::time::{Duration, Instant};

use genesys2influx::sim::{Sim, SimOptions};
use util::gate::{now_ms, Gate};
use util::influxd::Influxd;
use util::process::Service;
use util::sim_env;

const DB: &str = "genesys";
/// How often the probe's newest point is read from influxd.
const READ_EVERY: Duration = Duration::from_millis(50);
/// The agent `_last` fields, in [`genesys2influx::sim::ExpectedObservation::agents`] order.
const AGENT_LAST: [&str; 8] = [
    "on_queue_last",
    "idle_last",
    "interacting_last",
    "communicating_last",
    "not_responding_last",
    "off_queue_last",
    "active_last",
    "members_last",
];

/// One measured configuration.
struct Setup {
    queue_count: usize,
    live: String,
    length: Duration,
    poll_ms: u64,
    window_ms: u64,
}

/// One read of the probe's newest point: when it was read and the Sim slot it shows
/// (`None` when its values match no candidate poll).
struct Reading {
    at_ms: u64,
    slot: Option<u64>,
}

fn main() {
    // `cargo bench --no-run` compiles; `cargo test --benches` would run it: skip then.
    if std::env::args().any(|a| a == "--test") || std::env::var_os("BENCH_FRESHNESS_SKIP").is_some()
    {
        return;
    }
    let rows =
        std::env::var("BENCH_FRESHNESS_ROWS").unwrap_or_else(|_| "live,notifications".to_string());
    if rows.split(',').any(|r| r.trim() == "live") {
        live_rows();
    }
    if rows.split(',').any(|r| r.trim() == "notifications") {
        notifications::run_all();
    }
}

/// The rows with live updates off and on, values changing for all queues at once.
fn live_rows() {
    let lives = std::env::var("BENCH_FRESHNESS_LIVE").unwrap_or_else(|_| "off,on".to_string());
    for queue_count in common::env_sizes("BENCH_FRESHNESS_QUEUES", &[100, 1_000]) {
        for live in lives.split(',').map(str::trim).filter(|l| !l.is_empty()) {
            run(&Setup {
                queue_count,
                live: live.to_string(),
                length: Duration::from_secs(common::env_number("BENCH_FRESHNESS_SECONDS", 180)),
                poll_ms: common::env_number("BENCH_FRESHNESS_POLL", 10) * 1000,
                window_ms: common::env_number("BENCH_FRESHNESS_WINDOW", 60) * 1000,
            });
        }
    }
}

/// How often the Sim's values change: 0.733 × the poll interval, which shares no factor
/// with it, so a change lands exactly on a poll tick only once in 1,000 changes.
fn value_period(poll_ms: u64) -> u64 {
    (poll_ms * 733 / 1000).max(1)
}

fn run(setup: &Setup) {
    let (poll_ms, window_ms) = (setup.poll_ms, setup.window_ms);
    let period_ms = value_period(poll_ms);
    let sim = Sim::start(SimOptions {
        queue_count: setup.queue_count,
        value_period: Duration::from_millis(period_ms),
        rate_limit_per_minute: Some(1_000_000),
        max_connections: 64,
        ..SimOptions::default()
    })
    .expect("sim starts");
    let (probe, _) = sim.queues().pop().expect("the sim has queues");
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let gate = Gate::start(&influx.url());
    let mut env = sim_env(&sim);
    env.extend([
        ("GENESYS_REQUESTS_PER_MINUTE", "1000000".to_string()),
        ("POLL_INTERVAL", format!("{}s", poll_ms / 1000)),
        ("WINDOW", format!("{}s", window_ms / 1000)),
        ("KPIS", "off".to_string()),
        ("LIVE_UPDATES", setup.live.clone()),
        ("INFLUXDB_URL", gate.url()),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("INSTANCE", "bench".to_string()),
    ]);
    let mut service = Service::start(&["run"], &env);
    let stat = format!("/proc/{}/stat", service.pid());
    let newest = format!(
        "SELECT \"samples\", {} FROM \"genesys_queue\" WHERE \"queue_id\" = '{probe}' \
         ORDER BY time DESC LIMIT 1",
        AGENT_LAST.map(|f| format!("\"{f}\"")).join(", ")
    );
    let read = || Reading {
        at_ms: now_ms(),
        slot: influx
            .rows(DB, &newest)
            .first()
            .and_then(|row| shown_slot(&sim, &probe, row, poll_ms)),
    };

    // Changes are collected from the first readable point on, for `length`; then reads
    // go on until the last of them has had time to close its window.
    let started = Instant::now();
    let first_limit = Duration::from_millis(2 * window_ms + 60_000);
    let mut readings = Vec::new();
    while readings.is_empty() {
        assert!(
            started.elapsed() < first_limit,
            "no point of the probe queue within {} s:\n{}",
            first_limit.as_secs(),
            service.stderr()
        );
        std::thread::sleep(READ_EVERY);
        let reading = read();
        if reading.slot.is_some() {
            readings.push(reading);
        }
    }
    let (t0, cpu0) = (now_ms(), common::cpu_seconds(&stat));
    let t1 = t0 + setup.length.as_millis() as u64;
    while now_ms() < t1 {
        std::thread::sleep(READ_EVERY);
        readings.push(read());
    }
    let cpu1 = common::cpu_seconds(&stat);
    let resolve_until = t1 + window_ms + 3 * poll_ms;
    while now_ms() < resolve_until {
        std::thread::sleep(READ_EVERY);
        readings.push(read());
    }
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));

    // Value changes in [t0, t1), and when each first became readable.
    let changes: Vec<u64> = (t0.div_ceil(period_ms)..t1.div_ceil(period_ms))
        .map(|slot| slot * period_ms)
        .collect();
    let mut freshness: Vec<u64> = changes
        .iter()
        .filter_map(|&change| {
            let slot = change / period_ms;
            readings
                .iter()
                .find(|r| r.slot.is_some_and(|s| s >= slot))
                .map(|r| r.at_ms.saturating_sub(change))
        })
        .collect();
    freshness.sort_unstable();
    let unresolved = changes.len() - freshness.len();
    let mismatched = readings.iter().filter(|r| r.slot.is_none()).count();

    let written: Vec<_> = gate
        .exchanges()
        .into_iter()
        .filter(|e| e.acknowledged() && (t0..t1).contains(&e.answered_ms))
        .collect();
    let minutes = (t1 - t0) as f64 / 60_000.0;
    let per_1000_queues_per_min = |x: f64| x / minutes * 1000.0 / setup.queue_count as f64;
    let lines: usize = written.iter().map(|e| e.lines.len()).sum();
    let wire: usize = written.iter().map(|e| e.wire_bytes).sum();
    let percentile = |p: f64| -> i64 {
        if freshness.is_empty() {
            return -1;
        }
        freshness[((freshness.len() - 1) as f64 * p).round() as usize] as i64
    };
    println!(
        "RESULT freshness queues={} live={} poll_s={} window_s={} seconds={} exit={} \
         changes={} unresolved={unresolved} mismatched_reads={mismatched} \
         freshness_ms_p50={} freshness_ms_p95={} freshness_ms_max={} \
         cpu_ms_per_min_per_1000_queues={:.0} lines_per_min_per_1000_queues={:.0} \
         wire_bytes_per_min_per_1000_queues={:.0}",
        setup.queue_count,
        setup.live,
        poll_ms / 1000,
        window_ms / 1000,
        setup.length.as_secs(),
        status.code().unwrap_or(-1),
        changes.len(),
        percentile(0.5),
        percentile(0.95),
        percentile(1.0),
        per_1000_queues_per_min((cpu1 - cpu0) * 1000.0),
        per_1000_queues_per_min(lines as f64),
        per_1000_queues_per_min(wire as f64),
    );
}

/// The Sim slot whose values the probe's point `row` (`[time, samples, agent _last…]`)
/// shows: that of its last poll, at `time + (samples - 1) × poll`, or of a change that
/// fell between that tick and the request (the earliest that matches, so freshness is
/// never flattered); `None` when the values match none.
fn shown_slot(sim: &Sim, probe: &str, row: &serde_json::Value, poll_ms: u64) -> Option<u64> {
    let window_start_ms = row[0].as_u64()? * 1000;
    let samples = row[1].as_u64()?.max(1);
    let tick_ms = window_start_ms + (samples - 1) * poll_ms;
    let values: Vec<f64> = (2..2 + AGENT_LAST.len())
        .map(|i| row[i].as_f64())
        .collect::<Option<_>>()?;
    let first = sim.slot_at(tick_ms);
    // The poller spreads a poll's requests over the interval: the probe's may go late.
    let last = sim.slot_at(tick_ms + poll_ms - 1);
    (first..=last).find(|&slot| sim.observation_at(probe, slot).agents()[..] == values[..])
}
