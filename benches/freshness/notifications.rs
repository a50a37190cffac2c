//! Freshness with notifications (issue 21): how long after a queue's agent counts change
//! in (simulated) Genesys Cloud the live point's `_last` in InfluxDB shows the new value,
//! with `NOTIFICATIONS` on and off, at production cadence (`POLL_INTERVAL=10s`,
//! `WINDOW=60s`, `LIVE_UPDATES=on`, the default request budget of 300 a minute), for an
//! org-wide rate of queue changes.
//!
//! The Sim changes each queue once per value period at a random moment of its own
//! (`SimOptions::changes_at_random_moments`), so a period of `queues / rate` seconds
//! gives `rate` changes a second spread over random queues; its value-change log
//! ([`Sim::value_changes`]) says when each change happened. This bench reads the newest
//! point of every queue every [`READ_EVERY`] (plus the query's own time) and notes when
//! each queue's `_last` values first showed each change, or a later one of the same queue
//! (a change overtaken before it could show counts as shown with its successor). Changes
//! that leave the agent counts as they were are not counted.
//!
//! Prints one `RESULT freshness_notifications …` line per (queues, rate, notifications):
//! p50/p95/max of change → readable in ms (`inf` when more than that share never showed
//! within the tail), requests per minute the service made (the Sim's request log, every
//! endpoint), the service's CPU ms per minute (/proc/<pid>/stat utime+stime), its
//! `early_polls`, `early_polls_skipped` and `notifications_received` over the run (its
//! self-metrics) and the load average before and after the row.
//!
//! `BENCH_FRESHNESS_QUEUES` (default `100,1000`), `BENCH_FRESHNESS_RATES` (changes per
//! second across the org, default `1,10,50`), `BENCH_FRESHNESS_NOTIFICATIONS` (default
//! `off,on`) and `BENCH_FRESHNESS_NOTIFY_SECONDS` (how long changes are collected per
//! row, default 60).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use genesys2influx::sim::{Sim, SimOptions};

use crate::common;
use crate::util::gate::now_ms;
use crate::util::influxd::Influxd;
use crate::util::process::Service;
use crate::util::sim_env;
use crate::util::wall::{read_into, Sightings};

const DB: &str = "genesys";
const POLL_MS: u64 = 10_000;
const WINDOW_MS: u64 = 60_000;
/// Pause between two reads of every queue's newest point.
const READ_EVERY: Duration = Duration::from_millis(100);
/// After the last counted change, reads go on this long: a poll interval, the poller's
/// spread of one poll's requests over it, and the write.
const TAIL_MS: u64 = 2 * POLL_MS + 2_000;

/// One measured row.
struct Row {
    queue_count: usize,
    rate: u64,
    notifications: String,
    length_ms: u64,
}

/// Runs every configured row.
pub fn run_all() {
    let rates = common::env_sizes("BENCH_FRESHNESS_RATES", &[1, 10, 50]);
    let modes =
        std::env::var("BENCH_FRESHNESS_NOTIFICATIONS").unwrap_or_else(|_| "off,on".to_string());
    let length_ms = common::env_number("BENCH_FRESHNESS_NOTIFY_SECONDS", 60) * 1000;
    for queue_count in common::env_sizes("BENCH_FRESHNESS_QUEUES", &[100, 1_000]) {
        for &rate in &rates {
            for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
                run(&Row {
                    queue_count,
                    rate: rate as u64,
                    notifications: mode.to_string(),
                    length_ms,
                });
            }
        }
    }
}

/// The Sim's value period that gives `rate` changes a second over `queue_count` queues.
fn value_period_ms(queue_count: usize, rate: u64) -> u64 {
    (queue_count as u64 * 1000 / rate.max(1)).max(1)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

fn run(row: &Row) {
    let load_before = load_average();
    let sim = Sim::start(SimOptions {
        queue_count: row.queue_count,
        value_period: Duration::from_millis(value_period_ms(row.queue_count, row.rate)),
        changes_at_random_moments: true,
        max_connections: 64,
        ..SimOptions::default()
    })
    .expect("sim starts");
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let mut env = sim_env(&sim);
    env.extend([
        ("NOTIFICATIONS", row.notifications.clone()),
        ("POLL_INTERVAL", "10s".to_string()),
        ("WINDOW", "60s".to_string()),
        ("LIVE_UPDATES", "on".to_string()),
        ("KPIS", "off".to_string()),
        ("INFLUXDB_URL", influx.url()),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("INSTANCE", "bench".to_string()),
    ]);
    let mut service = Service::start(&["run"], &env);
    let stat = format!("/proc/{}/stat", service.pid());

    // Changes count from the first read that shows every queue on, for `length_ms`.
    let started = Instant::now();
    let mut seen: Sightings = HashMap::new();
    while seen.len() < row.queue_count {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not every queue had a point within 120 s:\n{}",
            service.stderr()
        );
        read_into(&influx, DB, WINDOW_MS, &mut seen);
        std::thread::sleep(READ_EVERY);
    }
    let (t0, cpu0) = (now_ms(), common::cpu_seconds(&stat));
    let t1 = t0 + row.length_ms;
    while now_ms() < t1 {
        read_into(&influx, DB, WINDOW_MS, &mut seen);
        std::thread::sleep(READ_EVERY);
    }
    let cpu1 = common::cpu_seconds(&stat);
    let requests = sim
        .requests()
        .iter()
        .filter(|r| (t0..t1).contains(&r.time_ms))
        .count();
    while now_ms() < t1 + TAIL_MS {
        read_into(&influx, DB, WINDOW_MS, &mut seen);
        std::thread::sleep(READ_EVERY);
    }
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));
    let stats = self_metrics(&influx);

    let mut delays: Vec<u64> = sim
        .queues()
        .iter()
        .flat_map(|(id, _)| queue_delays(&sim, id, seen.get(id), t0, t1))
        .collect();
    delays.sort_unstable();
    let minutes = (t1 - t0) as f64 / 60_000.0;
    let unresolved = delays.iter().filter(|&&d| d == u64::MAX).count();
    let percentile =
        |p: f64| match delays.get(((delays.len() as f64 * p).ceil() as usize).max(1) - 1) {
            None => "none".to_string(),
            Some(&u64::MAX) => "inf".to_string(),
            Some(d) => d.to_string(),
        };
    println!(
        "RESULT freshness_notifications queues={} changes_per_s={} notifications={} \
         seconds={} exit={} changes={} unresolved={unresolved} freshness_ms_p50={} \
         freshness_ms_p95={} freshness_ms_max={} requests_per_min={:.0} \
         cpu_ms_per_min={:.0} {stats} load1_before={load_before} load1_after={}",
        row.queue_count,
        row.rate,
        row.notifications,
        row.length_ms / 1000,
        status.code().unwrap_or(-1),
        delays.len(),
        percentile(0.5),
        percentile(0.95),
        percentile(1.0),
        requests as f64 / minutes,
        (cpu1 - cpu0) * 1000.0 / minutes,
        load_average(),
    );
}

/// Change → first read showing it (or a later change of the queue), in ms, for each
/// change of `queue_id`'s agent counts in `[t0, t1)`; `u64::MAX` for one never shown.
fn queue_delays(
    sim: &Sim,
    queue_id: &str,
    seen: Option<&Vec<(u64, [f64; 8])>>,
    t0: u64,
    t1: u64,
) -> Vec<u64> {
    let log: Vec<(u64, [f64; 8])> = sim
        .value_changes(queue_id, t0 - WINDOW_MS, t1 + TAIL_MS)
        .into_iter()
        .map(|(at, observation)| (at, observation.agents()))
        .collect();
    let seen = seen.map_or(&[][..], |s| &s[..]);
    (1..log.len())
        .filter(|&i| (t0..t1).contains(&log[i].0) && log[i].1 != log[i - 1].1)
        .map(|i| {
            let at = log[i].0;
            seen.iter()
                .find(|(stamp, values)| {
                    *stamp >= at
                        && log[i..]
                            .iter()
                            .any(|(later, agents)| later <= stamp && agents == values)
                })
                .map_or(u64::MAX, |(stamp, _)| stamp - at)
        })
        .collect()
}

/// The service's `early_polls`, `early_polls_skipped` and `notifications_received` over
/// the whole run (start-up and tail included), from its self-metrics points.
fn self_metrics(influx: &Influxd) -> String {
    let names = [
        "early_polls",
        "early_polls_skipped",
        "notifications_received",
    ];
    let query = format!(
        "SELECT {} FROM genesys2influx",
        names.map(|n| format!("sum(\"{n}\")")).join(", ")
    );
    let row = influx.rows(DB, &query).into_iter().next();
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let value = row.as_ref().and_then(|r| r[i + 1].as_i64()).unwrap_or(0);
            format!("{n}={value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}
