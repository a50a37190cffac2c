//! "No window lost", black-box: the built binary polls a simulated Genesys Cloud and writes
//! to a real influxd that is stopped, restarted, too small, type-conflicted or refusing
//! the credentials, while the service itself is SIGTERMed and SIGKILLed; in the end every
//! window that was polled is in InfluxDB exactly once, with the values the simulator
//! implies.
//!
//! "Every window present" is checked as: between the first window (partial: the service
//! started inside it) and the last (partial: SIGTERM), every window has one point per
//! queue with `samples = WINDOW / POLL_INTERVAL` and the simulator's values; the named
//! exceptions are the window a SIGKILL interrupted (partial or absent), what a full spool
//! dropped (the oldest) and what a corrupt spool record held.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys2influx::genesys::sim::Sim;
use genesys2influx::influx::spool;
use serde_json::Value;

use crate::core_pipeline::sim_with;
use crate::util::influxd::{self, Influxd, Options};
use crate::util::process::Service;
use crate::util::victoria::Victoria;
use crate::util::TempDir;

const DB: &str = "genesys";
const QUEUES: usize = 20;

/// Poll interval and window of one test, in seconds.
#[derive(Debug, Clone, Copy)]
struct Timing {
    poll: u64,
    window: u64,
}

impl Timing {
    const FAST: Timing = Timing { poll: 1, window: 2 };

    fn samples(self) -> u64 {
        self.window / self.poll
    }

    fn window_of(self, t: u64) -> u64 {
        t - t % self.window
    }
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The environment for `run` against `sim`, writing v1 to `url` with `credentials`.
fn env(
    sim: &Sim,
    url: &str,
    timing: Timing,
    spool_dir: Option<&Path>,
    credentials: Option<(&str, &str)>,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("GENESYS_CLIENT_ID", "sim-client-id".to_string()),
        ("GENESYS_CLIENT_SECRET", "sim-client-secret".to_string()),
        ("GENESYS_API_URL", sim.base_url()),
        ("GENESYS_LOGIN_URL", sim.base_url()),
        ("POLL_INTERVAL", format!("{}s", timing.poll)),
        ("WINDOW", format!("{}s", timing.window)),
        ("KPIS", "off".to_string()),
        ("INFLUXDB_URL", url.to_string()),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("INSTANCE", "outage-test".to_string()),
        ("SHUTDOWN_TIMEOUT", "5s".to_string()),
    ];
    if let Some(dir) = spool_dir {
        env.push(("SPOOL_DIR", dir.display().to_string()));
    }
    if let Some((user, password)) = credentials {
        env.push(("INFLUXDB_USERNAME", user.to_string()));
        env.push(("INFLUXDB_PASSWORD", password.to_string()));
    }
    env
}

/// Polls `done` every 200 ms until it holds; panics with `what` and the log after `limit`.
fn wait_until(what: &str, limit: Duration, service: &Service, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; service log:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sleeps until the current window is `from..to` seconds old (bounded: one window).
fn wait_for_phase(timing: Timing, from: f64, to: f64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(timing.window + 1);
    loop {
        let now = now_s();
        let phase = now % timing.window as f64;
        if (from..to).contains(&phase) {
            return timing.window_of(now as u64);
        }
        assert!(Instant::now() < deadline, "phase {from}..{to} never came");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// window start (s) → queue id → samples, of `genesys_queue`; panics if a (queue, window)
/// has more than one point (e.g. under two different names).
fn samples_by_window(influx: &Influxd, measurement: &str) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let rows = influx.rows(
        DB,
        &format!("SELECT \"samples\", \"queue_id\" FROM \"{measurement}\""),
    );
    let mut windows: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for row in rows {
        let time = row[0].as_u64().expect("time");
        let samples = row[1].as_u64().expect("samples");
        let queue = row[2].as_str().expect("queue_id").to_string();
        let before = windows
            .entry(time)
            .or_default()
            .insert(queue.clone(), samples);
        assert!(before.is_none(), "two points for queue {queue} at {time}");
    }
    windows
}

/// All points of one queue and window: field → value.
fn point(influx: &Influxd, queue_id: &str, start: u64) -> BTreeMap<String, Value> {
    let json = influx.query(
        DB,
        &format!(
            "SELECT * FROM genesys_queue WHERE \"queue_id\" = '{queue_id}' AND time = {start}s"
        ),
    );
    let series = &json["results"][0]["series"][0];
    let columns = series["columns"].as_array().cloned().unwrap_or_default();
    let values = series["values"][0].as_array().cloned().unwrap_or_default();
    columns
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .zip(values)
        .collect()
}

/// The agent fields of `queue_id`'s window `start` are exactly what the simulator answered
/// at the window's ticks (value period 1 s: the slot of tick t is t).
fn assert_values(sim: &Sim, influx: &Influxd, timing: Timing, queue_id: &str, start: u64) {
    let got = point(influx, queue_id, start);
    let expected: Vec<_> = (start..start + timing.window)
        .step_by(timing.poll as usize)
        .map(|slot| sim.observation_at(queue_id, slot))
        .collect();
    for (index, metric) in genesys2influx::model::AGENT_METRICS.iter().enumerate() {
        let values: Vec<f64> = expected.iter().map(|e| e.agents()[index]).collect();
        let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let last = *values.last().unwrap();
        let field = |suffix: &str| {
            got.get(&format!("{metric}_{suffix}"))
                .and_then(Value::as_f64)
                .unwrap_or_else(|| {
                    panic!("queue {queue_id} window {start}: no {metric}_{suffix} in {got:?}")
                })
        };
        let context = format!("queue {queue_id} window {start} {metric}");
        assert_eq!(field("min"), min, "{context}_min");
        assert_eq!(field("max"), max, "{context}_max");
        assert_eq!(field("last"), last, "{context}_last");
        assert!((field("mean") - mean).abs() < 1e-9, "{context}_mean");
    }
}

/// Every window strictly between the first and the last has a complete point for every
/// queue, except `exceptions` (window start → allowed: absent or any sample count).
/// Returns the windows checked.
fn assert_every_window(
    windows: &BTreeMap<u64, BTreeMap<String, u64>>,
    queues: &[(String, String)],
    timing: Timing,
    exceptions: &BTreeSet<u64>,
    log: &str,
) -> Vec<u64> {
    let first = *windows.keys().next().expect("some window written");
    let last = *windows.keys().last().unwrap();
    let mut checked = Vec::new();
    let mut start = first + timing.window;
    while start < last {
        if !exceptions.contains(&start) {
            let points = windows.get(&start);
            for (id, _) in queues {
                let samples = points.and_then(|p| p.get(id)).copied();
                assert_eq!(
                    samples,
                    Some(timing.samples()),
                    "queue {id} window {start} (first {first}, last {last}); windows: {:?}\nservice log:\n{log}",
                    windows.iter().map(|(w, q)| (*w, q.len(), q.values().min().copied())).collect::<Vec<_>>()
                );
            }
            checked.push(start);
        }
        start += timing.window;
    }
    checked
}

/// The spool's segment files.
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "seg"));
    files.sort();
    files
}

/// Bytes of every file in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// The self-metric `field` summed over every `genesys2influx` point.
fn self_metric_sum(influx: &Influxd, field: &str) -> i64 {
    influx
        .rows(DB, &format!("SELECT sum(\"{field}\") FROM genesys2influx"))
        .first()
        .and_then(|row| row[1].as_i64())
        .unwrap_or(0)
}

fn stop(mut service: Service) -> String {
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));
    let log = service.stderr();
    assert_eq!(
        status.code(),
        Some(0),
        "exit code after SIGTERM; log:\n{log}"
    );
    log
}

/// Waits until the spool is empty (every segment replayed and deleted) and InfluxDB has
/// taken a window newer than `after`.
fn wait_drained(influx: &Influxd, service: &Service, spool_dir: &Path, after: u64) {
    wait_until(
        "spool replayed and a fresh window written",
        Duration::from_secs(75),
        service,
        || {
            segments(spool_dir).is_empty()
                && samples_by_window(influx, "genesys_queue")
                    .keys()
                    .last()
                    .is_some_and(|w| *w > after)
        },
    );
}

fn first_complete_window(influx: &Influxd, service: &Service, timing: Timing) -> u64 {
    let mut found = 0;
    wait_until(
        "a first complete window",
        Duration::from_secs(40),
        service,
        || {
            let windows = samples_by_window(influx, "genesys_queue");
            match windows
                .iter()
                .find(|(_, q)| q.len() == QUEUES && q.values().all(|s| *s == timing.samples()))
            {
                Some((w, _)) => {
                    found = *w;
                    true
                }
                None => false,
            }
        },
    );
    found
}

#[test]
fn an_influxdb_outage_of_11_windows_loses_no_window() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let mut influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let service = Service::start(
        &["run"],
        &env(&sim, &influx.url(), timing, Some(spool_dir.path()), None),
    );
    first_complete_window(&influx, &service, timing);

    influx.stop();
    let outage_from = now_s() as u64;
    std::thread::sleep(Duration::from_secs(11 * timing.window));
    assert!(
        !segments(spool_dir.path()).is_empty(),
        "windows are spooled during the outage; log:\n{}",
        service.stderr()
    );
    influx.start();
    let outage_to = now_s() as u64;
    wait_drained(
        &influx,
        &service,
        spool_dir.path(),
        outage_to + timing.window,
    );
    let log = stop(service);

    let windows = samples_by_window(&influx, "genesys_queue");
    let checked = assert_every_window(&windows, &sim.queues(), timing, &BTreeSet::new(), &log);
    let during: Vec<_> = checked
        .iter()
        .filter(|w| **w >= outage_from && **w + timing.window <= outage_to)
        .collect();
    assert!(during.len() >= 10, "windows inside the outage: {during:?}");
    for (id, _) in sim.queues().iter().take(3) {
        for window in &checked {
            assert_values(&sim, &influx, timing, id, *window);
        }
    }
    assert!(
        log.contains("InfluxDB unreachable"),
        "outage logged:\n{log}"
    );
    assert!(
        log.contains("accepts writes again"),
        "recovery logged:\n{log}"
    );
    assert_eq!(
        self_metric_sum(&influx, "lines_dropped"),
        0,
        "nothing dropped"
    );
}
