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

use genesys2influx::influx::spool;
use genesys2influx::sim::{Sim, SimOptions};
use serde_json::Value;

use crate::core_pipeline::sim_with;
use crate::util::gate::{Gate, Silent};
use crate::util::influxd::{self, Influxd, Options};
use crate::util::process::{patience, Service};
use crate::util::victoria::Victoria;
use crate::util::{sim_env, TempDir};

pub(crate) const DB: &str = "genesys";
pub(crate) const QUEUES: usize = 20;

/// Poll interval and window of one test, in seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) poll: u64,
    pub(crate) window: u64,
}

impl Timing {
    pub(crate) const FAST: Timing = Timing { poll: 1, window: 2 };

    pub(crate) fn samples(self) -> u64 {
        self.window / self.poll
    }

    pub(crate) fn window_of(self, t: u64) -> u64 {
        t - t % self.window
    }
}

pub(crate) fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The environment for `run` against `sim`, writing v1 to `url` with `credentials`.
pub(crate) fn env(
    sim: &Sim,
    url: &str,
    timing: Timing,
    spool_dir: Option<&Path>,
    credentials: Option<(&str, &str)>,
) -> Vec<(&'static str, String)> {
    let mut env = sim_env(sim);
    env.extend([
        ("POLL_INTERVAL", format!("{}s", timing.poll)),
        ("WINDOW", format!("{}s", timing.window)),
        ("KPIS", "off".to_string()),
        ("INFLUXDB_URL", url.to_string()),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("INSTANCE", "outage-test".to_string()),
        ("SHUTDOWN_TIMEOUT", "5s".to_string()),
    ]);
    if let Some(dir) = spool_dir {
        env.push(("SPOOL_DIR", dir.display().to_string()));
    }
    if let Some((user, password)) = credentials {
        env.push(("INFLUXDB_USERNAME", user.to_string()));
        env.push(("INFLUXDB_PASSWORD", password.to_string()));
    }
    env
}

/// Polls `done` every 200 ms until it holds; panics with `what` and the log after `limit`
/// ([`patience`]).
pub(crate) fn wait_until(
    what: &str,
    limit: Duration,
    service: &Service,
    mut done: impl FnMut() -> bool,
) {
    let limit = patience(limit);
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
pub(crate) fn wait_for_phase(timing: Timing, from: f64, to: f64) -> u64 {
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
pub(crate) fn samples_by_window(
    influx: &Influxd,
    measurement: &str,
) -> BTreeMap<u64, BTreeMap<String, u64>> {
    samples_where(influx, measurement, "")
}

const VOICE: &str = "WHERE \"media_type\" = 'voice'";

/// Like [`samples_by_window`], with an InfluxQL `WHERE …` clause (or "").
fn samples_where(
    influx: &Influxd,
    measurement: &str,
    where_clause: &str,
) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let rows = influx.rows(
        DB,
        &format!("SELECT \"samples\", \"queue_id\" FROM \"{measurement}\" {where_clause}"),
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
pub(crate) fn point(influx: &Influxd, queue_id: &str, start: u64) -> BTreeMap<String, Value> {
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
pub(crate) fn assert_values(
    sim: &Sim,
    influx: &Influxd,
    timing: Timing,
    queue_id: &str,
    start: u64,
) {
    let got = point(influx, queue_id, start);
    assert_values_so_far(sim, &got, timing, queue_id, start, timing.samples());
}

/// The agent fields of `got`, queue `queue_id`'s point of window `start`, are exactly what
/// the simulator answered at the window's first `polls` ticks.
pub(crate) fn assert_values_so_far(
    sim: &Sim,
    got: &BTreeMap<String, Value>,
    timing: Timing,
    queue_id: &str,
    start: u64,
    polls: u64,
) {
    let expected: Vec<_> = (start..start + polls * timing.poll)
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
pub(crate) fn assert_every_window(
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
pub(crate) fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
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
pub(crate) fn self_metric_sum(influx: &Influxd, field: &str) -> i64 {
    influx
        .rows(DB, &format!("SELECT sum(\"{field}\") FROM genesys2influx"))
        .first()
        .and_then(|row| row[1].as_i64())
        .unwrap_or(0)
}

pub(crate) fn stop(mut service: Service) -> String {
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
pub(crate) fn wait_drained(influx: &Influxd, service: &Service, spool_dir: &Path, after: u64) {
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

pub(crate) fn first_complete_window(influx: &Influxd, service: &Service, timing: Timing) -> u64 {
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

/// SIGTERM during an outage, a fresh start inside the same window with a backlog that
/// takes longer to replay than the rest of that window, InfluxDB back at the restart: the
/// interrupted window ends complete (its first half came from `open-window.json`), not
/// overwritten by the partial point the first run spooled at shutdown.
#[test]
fn sigterm_during_an_outage_then_a_restart_in_the_same_window_loses_nothing() {
    // Ticks at 0 and 3 s of each 6 s window: SIGTERM just after the first tick leaves
    // 2.5 s for the shutdown, influxd's start and the new process's first poll.
    let timing = Timing { poll: 3, window: 6 };
    let sim = sim_with(QUEUES);
    let mut influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let run_env = env(&sim, &influx.url(), timing, Some(spool_dir.path()), None);
    let service = Service::start(&["run"], &run_env);
    first_complete_window(&influx, &service, timing);
    influx.stop();
    std::thread::sleep(Duration::from_secs(2 * timing.window));

    let interrupted = wait_for_phase(timing, 0.3, 0.6);
    let first_log = stop(service);
    assert!(
        first_log.contains("saved the open window"),
        "open window saved; log:\n{first_log}"
    );
    // A backlog older than everything spooled: 100 records replayed at ≥ 100 ms each.
    let mut filler = Vec::new();
    for i in 0..100u64 {
        let line = format!("backlog_filler,k=v f={i}i {}\n", 1_600_000_000 + i);
        filler.extend(spool::encode_record(&line, 1));
    }
    std::fs::write(spool_dir.join(&format!("{:020}.seg", 0)), filler).unwrap();
    influx.start();
    let service = Service::start(&["run"], &run_env);
    assert!(
        (now_s() as u64) < interrupted + timing.poll,
        "restarted too late to test the resume (CI too slow?)"
    );
    wait_drained(
        &influx,
        &service,
        spool_dir.path(),
        interrupted + timing.window,
    );
    let log = stop(service);
    assert!(
        log.contains("continuing the window saved at the last shutdown"),
        "resumed; log:\n{log}"
    );

    let windows = samples_by_window(&influx, "genesys_queue");
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    let checked = assert_every_window(&windows, &sim.queues(), timing, &BTreeSet::new(), &logs);
    assert!(
        checked.contains(&interrupted),
        "window {interrupted} checked"
    );
    for (id, _) in sim.queues().iter().take(3) {
        for window in &checked {
            assert_values(&sim, &influx, timing, id, *window);
        }
    }
    let filler = influx.rows(DB, "SELECT count(f) FROM backlog_filler");
    assert_eq!(filler[0][1].as_u64(), Some(100), "the old backlog replayed");
}

/// The open-window resume with InfluxDB up: SIGTERM mid-window writes the partial point,
/// the restart in the same window overwrites it with the complete one.
#[test]
fn a_restart_in_the_same_window_completes_the_window() {
    let timing = Timing { poll: 3, window: 6 };
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let run_env = env(&sim, &influx.url(), timing, Some(spool_dir.path()), None);
    let service = Service::start(&["run"], &run_env);
    first_complete_window(&influx, &service, timing);
    let interrupted = wait_for_phase(timing, 0.3, 0.6);
    let first_log = stop(service);
    let partial = samples_by_window(&influx, "genesys_queue");
    assert_eq!(
        partial[&interrupted].values().max(),
        Some(&1),
        "the shutdown wrote the partial window; log:\n{first_log}"
    );
    let service = Service::start(&["run"], &run_env);
    wait_until(
        "the resumed window",
        Duration::from_secs(30),
        &service,
        || {
            samples_by_window(&influx, "genesys_queue")
                .keys()
                .any(|w| *w > interrupted)
        },
    );
    let log = stop(service);
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    assert_interrupted_window_complete(&sim, &influx, timing, interrupted, &logs);
}

/// After a restart within the window `interrupted`: every window, that one included, is
/// complete, and the first queues' values in it are the simulator's.
pub(crate) fn assert_interrupted_window_complete(
    sim: &Sim,
    influx: &Influxd,
    timing: Timing,
    interrupted: u64,
    logs: &str,
) {
    let windows = samples_by_window(influx, "genesys_queue");
    let checked = assert_every_window(&windows, &sim.queues(), timing, &BTreeSet::new(), logs);
    assert!(
        checked.contains(&interrupted),
        "window {interrupted} checked"
    );
    for (id, _) in sim.queues().iter().take(3) {
        assert_values(sim, influx, timing, id, interrupted);
    }
}

/// SIGKILL during an outage: what was spooled survives; after the restart at most the
/// window in progress at the kill is missing or partial.
#[test]
fn sigkill_loses_at_most_the_window_in_progress() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let mut influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let run_env = env(&sim, &influx.url(), timing, Some(spool_dir.path()), None);
    let mut service = Service::start(&["run"], &run_env);
    first_complete_window(&influx, &service, timing);
    influx.stop();
    let outage_from = now_s() as u64;
    std::thread::sleep(Duration::from_secs(3 * timing.window));
    let killed = wait_for_phase(timing, 0.4, 0.7);
    service.signal("KILL");
    service.wait(Duration::from_secs(10));
    let first_log = service.stderr();
    assert!(
        !segments(spool_dir.path()).is_empty(),
        "spooled before the kill"
    );
    let service = Service::start(&["run"], &run_env);
    std::thread::sleep(Duration::from_secs(2 * timing.window));
    influx.start();
    let back = now_s() as u64;
    wait_drained(&influx, &service, spool_dir.path(), back + timing.window);
    let log = stop(service);

    let windows = samples_by_window(&influx, "genesys_queue");
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    let exceptions = BTreeSet::from([killed]);
    let checked = assert_every_window(&windows, &sim.queues(), timing, &exceptions, &logs);
    assert!(
        checked
            .iter()
            .filter(|w| (outage_from..killed).contains(w))
            .count()
            >= 2,
        "the windows spooled before the kill are there: {checked:?}"
    );
    for (id, _) in sim.queues().iter().take(2) {
        for window in &checked {
            assert_values(&sim, &influx, timing, id, *window);
        }
    }
}

/// A spool cap the outage overflows: the oldest spooled windows go (counted in
/// `lines_dropped` and logged), the newest are kept, and the directory never grows past
/// the cap plus one segment.
#[test]
fn a_full_spool_drops_the_oldest_and_stays_under_its_cap() {
    let timing = Timing { poll: 1, window: 1 };
    const CAP: u64 = 256 * 1024;
    const SEGMENT: u64 = 64 * 1024;
    let sim = sim_with(QUEUES);
    let mut influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let mut run_env = env(&sim, &influx.url(), timing, Some(spool_dir.path()), None);
    run_env.push(("SPOOL_MAX_BYTES", CAP.to_string()));
    let service = Service::start(&["run"], &run_env);
    first_complete_window(&influx, &service, timing);
    influx.stop();
    let outage_from = now_s() as u64 + 1;
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until {
        peak = peak.max(dir_bytes(spool_dir.path()));
        std::thread::sleep(Duration::from_millis(20));
    }
    let outage_to = now_s() as u64;
    influx.start();
    assert!(
        peak <= CAP + SEGMENT,
        "spool reached {peak} bytes, cap {CAP} + one segment {SEGMENT}"
    );
    assert!(peak > CAP / 2, "the outage filled the spool ({peak} bytes)");
    wait_drained(&influx, &service, spool_dir.path(), outage_to + 2);
    let log = stop(service);
    println!("spool peak {peak} bytes (cap {CAP})");

    assert!(
        log.contains("SPOOL_MAX_BYTES=262144 reached; dropped the oldest"),
        "the drop is logged:\n{log}"
    );
    let dropped = self_metric_sum(&influx, "lines_dropped");
    assert!(dropped > 0, "lines_dropped reported: {dropped}");
    // The oldest go: the missing windows are one run that starts in the outage (the
    // spool holds the newest ones until InfluxDB takes them again); every other is complete.
    let windows = samples_by_window(&influx, "genesys_queue");
    let first = *windows.keys().next().unwrap();
    let last = *windows.keys().last().unwrap();
    let missing: Vec<u64> = (first..last).filter(|w| !windows.contains_key(w)).collect();
    assert!(!missing.is_empty(), "something was dropped");
    assert!(
        missing[0] >= outage_from - 1 && missing[0] <= outage_from + 4,
        "the oldest of the outage went first: {missing:?}, outage {outage_from}..{outage_to}"
    );
    assert_eq!(
        missing.last().unwrap() - missing[0] + 1,
        missing.len() as u64,
        "one contiguous run of the oldest: {missing:?}"
    );
    let exceptions: BTreeSet<u64> = missing.iter().copied().collect();
    let checked = assert_every_window(&windows, &sim.queues(), timing, &exceptions, &log);
    let kept: Vec<_> = checked
        .iter()
        .filter(|w| **w > *missing.last().unwrap() && **w < outage_to)
        .collect();
    assert!(
        !kept.is_empty() || missing.last().unwrap() + 1 >= outage_to,
        "the newest windows are kept: {kept:?}, missing {missing:?}"
    );
    println!(
        "dropped {dropped} lines: windows {missing:?} of the outage {outage_from}..{outage_to}"
    );
}

/// Damaged segments (a torn tail, random bytes in the middle of another): the bad records
/// are skipped with a warning and every intact record is replayed.
#[test]
fn corrupt_spool_segments_are_skipped_and_the_rest_replayed() {
    let timing = Timing { poll: 1, window: 1 };
    let sim = sim_with(QUEUES);
    let mut influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let mut run_env = env(&sim, &influx.url(), timing, Some(spool_dir.path()), None);
    // 64 KiB segments: one or two windows each.
    run_env.push(("SPOOL_MAX_BYTES", (1024 * 1024).to_string()));
    let service = Service::start(&["run"], &run_env);
    first_complete_window(&influx, &service, timing);
    influx.stop();
    std::thread::sleep(Duration::from_secs(10));
    let first_log = stop(service);

    let files = segments(spool_dir.path());
    assert!(files.len() >= 4, "several segments: {files:?}");
    let records_before: usize = files
        .iter()
        .map(|f| spool::decode_records(&std::fs::read(f).unwrap()).0.len())
        .sum();
    // A torn tail: the segment cut in the middle of its last record.
    let torn = &files[1];
    let bytes = std::fs::read(torn).unwrap();
    std::fs::write(torn, &bytes[..bytes.len() - 300]).unwrap();
    // Random bytes over the middle of another.
    let garbled = &files[3];
    let mut bytes = std::fs::read(garbled).unwrap();
    let mid = bytes.len() / 2;
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for b in &mut bytes[mid..mid + 512] {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    std::fs::write(garbled, &bytes).unwrap();

    // What must arrive: every genesys_queue line of every intact record.
    let mut expected: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    let mut records_after = 0;
    for file in &files {
        let (records, _) = spool::decode_records(&std::fs::read(file).unwrap());
        records_after += records.len();
        for record in records {
            for line in record.lines.lines() {
                if let Some(rest) = line.strip_prefix("genesys_queue,queue_id=") {
                    let id = rest.split(',').next().unwrap().to_string();
                    let time: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                    expected.entry(time).or_default().insert(id);
                }
            }
        }
    }
    assert!(
        records_after < records_before,
        "the damage destroyed records ({records_before} → {records_after})"
    );

    influx.start();
    let service = Service::start(&["run"], &run_env);
    let restarted = now_s() as u64;
    wait_drained(&influx, &service, spool_dir.path(), restarted + 1);
    let log = stop(service);
    assert!(
        log.contains("corrupt or incomplete bytes"),
        "the damage is logged:\n{log}"
    );
    let windows = samples_by_window(&influx, "genesys_queue");
    for (time, ids) in &expected {
        for id in ids {
            assert!(
                windows.get(time).is_some_and(|q| q.contains_key(id)),
                "queue {id} window {time} from an intact record is missing; logs:\n{first_log}\n{log}"
            );
        }
    }
    println!(
        "{records_before} records, {records_after} intact, {} windows replayed",
        expected.len()
    );
}

/// 413 from a small `max-body-size`: bodies are split until they fit; nothing dropped.
#[test]
fn too_large_bodies_are_split_and_all_land() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_with(Options {
        max_body_size: Some(3000),
        ..Options::default()
    });
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let service = Service::start(
        &["run"],
        &env(&sim, &influx.url(), timing, Some(spool_dir.path()), None),
    );
    wait_for_three_windows(&influx, &service, timing);
    let log = stop(service);
    let windows = samples_by_window(&influx, "genesys_queue");
    let checked = assert_every_window(&windows, &sim.queues(), timing, &BTreeSet::new(), &log);
    assert!(checked.len() >= 2, "{checked:?}");
    for window in &checked {
        assert_values(&sim, &influx, timing, &sim.queues()[0].0, *window);
    }
    assert!(
        self_metric_sum(&influx, "write_errors") > 0,
        "the 413s happened"
    );
    assert_eq!(self_metric_sum(&influx, "lines_dropped"), 0);
}

/// Lets `service`, whose writes all fail, run `windows` more windows, stops it, and
/// checks that nothing reached InfluxDB and the spool kept it; returns the log.
fn stop_after_spooling(
    service: Service,
    influx: &Influxd,
    spool_dir: &Path,
    timing: Timing,
    windows: u64,
) -> String {
    let started = now_s() as u64;
    wait_until(
        &format!("{windows} windows spooled"),
        Duration::from_secs(30),
        &service,
        || now_s() as u64 >= started + windows * timing.window,
    );
    let log = stop(service);
    assert!(samples_by_window(influx, "genesys_queue").is_empty());
    assert!(!segments(spool_dir).is_empty(), "kept in the spool");
    log
}

/// Waits (bounded) until the third window after the first complete one is stored.
fn wait_for_three_windows(influx: &Influxd, service: &Service, timing: Timing) {
    let first = first_complete_window(influx, service, timing);
    wait_until("three windows", Duration::from_secs(30), service, || {
        samples_by_window(influx, "genesys_queue")
            .keys()
            .any(|w| *w >= first + 3 * timing.window)
    });
}

/// A field type conflict with stored data → 400 partial write: the good lines (media,
/// self-metrics) are stored, the conflicting `genesys_queue` lines counted as dropped and
/// not resent.
#[test]
fn a_partial_write_keeps_the_good_lines_and_counts_the_rest() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let (id, name) = sim.queues()[0].clone();
    let conflict = format!(
        "genesys_queue,queue_id={id},queue_name=x idle_min=\"text\" {}\n",
        now_s() as u64
    );
    let (status, body) = influx.write_raw(DB, conflict.as_bytes());
    assert_eq!(status, 204, "{body} ({name})");
    let spool_dir = TempDir::new("spool");
    let service = Service::start(
        &["run"],
        &env(&sim, &influx.url(), timing, Some(spool_dir.path()), None),
    );
    let mut first = None;
    wait_until(
        "three media windows",
        Duration::from_secs(40),
        &service,
        || {
            let windows = samples_where(&influx, "genesys_queue_media", VOICE);
            first = first.or_else(|| windows.keys().next().copied());
            first.is_some_and(|f| windows.keys().any(|w| *w >= f + 3 * timing.window))
        },
    );
    std::thread::sleep(Duration::from_secs(timing.window));
    let log = stop(service);
    let media = samples_where(&influx, "genesys_queue_media", VOICE);
    let checked = assert_every_window(&media, &sim.queues(), timing, &BTreeSet::new(), &log);
    assert!(checked.len() >= 2, "{checked:?}");
    let agent = samples_by_window(&influx, "genesys_queue");
    assert!(
        agent.is_empty(),
        "the conflicting lines were not stored: {agent:?}"
    );
    let dropped = self_metric_sum(&influx, "lines_dropped");
    assert!(
        dropped >= (QUEUES * checked.len()) as i64,
        "lines_dropped {dropped} counts {QUEUES} lines per window"
    );
    assert!(log.contains("partial write"), "logged:\n{log}");
    assert!(
        segments(spool_dir.path()).is_empty(),
        "not kept for a resend"
    );
}

/// 401 with a wrong password: everything is kept in the spool; a restart with the right
/// password delivers it all.
#[test]
fn refused_credentials_keep_the_data_until_a_restart_fixes_them() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_with(Options {
        auth: true,
        ..Options::default()
    });
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let wrong = env(
        &sim,
        &influx.url(),
        timing,
        Some(spool_dir.path()),
        Some((influxd::ADMIN_USER, "wrong password")),
    );
    let service = Service::start(&["run"], &wrong);
    service.wait_for_log("refusing the credentials", Duration::from_secs(30));
    let first_log = stop_after_spooling(service, &influx, spool_dir.path(), timing, 4);

    let right = env(
        &sim,
        &influx.url(),
        timing,
        Some(spool_dir.path()),
        Some((influxd::ADMIN_USER, influxd::ADMIN_PASSWORD)),
    );
    let service = Service::start(&["run"], &right);
    let restarted = now_s() as u64;
    wait_drained(
        &influx,
        &service,
        spool_dir.path(),
        restarted + timing.window,
    );
    let log = stop(service);
    assert!(
        !log.contains(influxd::ADMIN_PASSWORD),
        "no secret in the log"
    );
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    assert_first_run_delivered(&sim, &influx, timing, restarted, &logs);
}

/// The windows of a first run that wrote nothing itself, as delivered from the spool by
/// the run started at `restarted`: first (partial) .. the one SIGTERM cut (partial), all
/// complete in between, with the simulator's values.
fn assert_first_run_delivered(
    sim: &Sim,
    influx: &Influxd,
    timing: Timing,
    restarted: u64,
    logs: &str,
) {
    let windows = samples_by_window(influx, "genesys_queue");
    let first_run: BTreeMap<_, _> = windows
        .iter()
        .filter(|(w, _)| **w < restarted - restarted % timing.window)
        .map(|(w, q)| (*w, q.clone()))
        .collect();
    let checked = assert_every_window(&first_run, &sim.queues(), timing, &BTreeSet::new(), logs);
    assert!(
        checked.len() >= 2,
        "first-run windows delivered: {checked:?}\n{logs}"
    );
    for window in &checked {
        assert_values(sim, influx, timing, &sim.queues()[0].0, *window);
    }
}

/// Restarts against `url` on the same spool, waits until the spool is replayed, stops;
/// returns when the restart happened and its log.
fn restart_and_drain(
    sim: &Sim,
    influx: &Influxd,
    url: &str,
    timing: Timing,
    spool_dir: &Path,
) -> (u64, String) {
    let service = Service::start(&["run"], &env(sim, url, timing, Some(spool_dir), None));
    let restarted = now_s() as u64;
    wait_drained(influx, &service, spool_dir, restarted + timing.window);
    (restarted, stop(service))
}

const TOKYO: &str = "東京センター東京センター東京センター";

/// 413 to every body of more than one line, and a static tag in Japanese on every line:
/// the writer splits down to single lines, never inside a character, and every window
/// lands (before: "byte index … is not a char boundary", abort, exit 134).
#[test]
fn a_non_ascii_tag_with_413_for_every_multi_line_body_loses_nothing() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let gate = Gate::start(&influx.url());
    gate.set_single_lines_only(true);
    let mut env = env(&sim, &gate.url(), timing, None, None);
    env.push(("INFLUXDB_TAGS", format!("site={TOKYO}")));
    let service = Service::start(&["run"], &env);
    wait_for_three_windows(&influx, &service, timing);
    let log = stop(service);
    let windows = samples_where(
        &influx,
        "genesys_queue",
        &format!("WHERE \"site\" = '{TOKYO}'"),
    );
    let checked = assert_every_window(&windows, &sim.queues(), timing, &BTreeSet::new(), &log);
    assert!(checked.len() >= 2, "{checked:?}");
    assert!(
        gate.exchanges().iter().any(|e| e.status == 413),
        "the 413s happened"
    );
    assert_eq!(self_metric_sum(&influx, "lines_dropped"), 0);
}

/// 301 (to the real write URL) and 302 (to a URL answering GET with 204) for every write:
/// no write follows a redirect, so nothing is lost or dropped: the windows wait in the
/// spool, the log names the Location and the INFLUXDB_URL to set (once), and a restart
/// with the right INFLUXDB_URL delivers all of them.
#[test]
fn redirected_writes_wait_in_the_spool_until_influxdb_url_is_right() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let gate = Gate::start(&influx.url());
    gate.set_redirects(vec![
        (301, format!("{}/write?db={DB}&precision=s", influx.url())),
        (302, format!("{}/ping", influx.url())),
    ]);
    let spool_dir = TempDir::new("spool");
    let service = Service::start(
        &["run"],
        &env(&sim, &gate.url(), timing, Some(spool_dir.path()), None),
    );
    // Five windows: started in an odd second, the last one shares its window with the
    // restart (excluded from the check), and at least two complete ones must remain.
    let first_log = stop_after_spooling(service, &influx, spool_dir.path(), timing, 5);
    assert_eq!(
        first_log.matches("redirecting the writes").count(),
        1,
        "logged once:\n{first_log}"
    );
    assert!(
        first_log.contains(&format!("set INFLUXDB_URL={}", influx.url())),
        "{first_log}"
    );
    assert!(!first_log.contains("they are lost"), "{first_log}");
    let (restarted, log) =
        restart_and_drain(&sim, &influx, &influx.url(), timing, spool_dir.path());
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    assert_first_run_delivered(&sim, &influx, timing, restarted, &logs);
    assert_eq!(self_metric_sum(&influx, "lines_dropped"), 0, "{logs}");
}

/// InfluxDB accepts the connection and never answers, HTTP_TIMEOUT=60s,
/// SHUTDOWN_TIMEOUT=3s: SIGTERM ends the process within the shutdown timeout plus a
/// small margin, exit 0, with the windows in the spool; a restart against a real influxd
/// delivers them.
#[test]
fn sigterm_ends_within_shutdown_timeout_when_influxdb_never_answers() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let silent = Silent::start();
    let spool_dir = TempDir::new("spool");
    let mut env = env(&sim, &silent.url(), timing, Some(spool_dir.path()), None);
    env.push(("HTTP_TIMEOUT", "60s".to_string()));
    env.push(("SHUTDOWN_TIMEOUT", "3s".to_string()));
    let mut service = Service::start(&["run"], &env);
    service.wait_for_log("writer: sending to", Duration::from_secs(30));
    let started = now_s() as u64;
    wait_until(
        "five windows polled",
        Duration::from_secs(30),
        &service,
        || now_s() as u64 >= started + 5 * timing.window,
    );
    let signalled = Instant::now();
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(20));
    let took = signalled.elapsed();
    let first_log = service.stderr();
    assert_eq!(status.code(), Some(0), "{first_log}");
    assert!(
        took < Duration::from_millis(4500),
        "SIGTERM took {took:?} with SHUTDOWN_TIMEOUT=3s:\n{first_log}"
    );
    assert!(
        !segments(spool_dir.path()).is_empty(),
        "spooled:\n{first_log}"
    );
    assert!(!first_log.contains("they are lost"), "{first_log}");
    let (restarted, log) =
        restart_and_drain(&sim, &influx, &influx.url(), timing, spool_dir.path());
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    assert_first_run_delivered(&sim, &influx, timing, restarted, &logs);
}

/// SPOOL_DIR unusable (a file in its place) while InfluxDB is unreachable: the windows
/// wait in memory; once the directory is back they move to the spool and a restart
/// delivers every one. Unusable again at SIGTERM: the exit log counts the lost lines
/// instead of saying they wait in the spool.
#[test]
fn a_spool_that_comes_back_is_used_again_and_loss_at_exit_is_counted() {
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let gate = Gate::start(&influx.url());
    gate.set_dropping(true);
    let spool_root = TempDir::new("spool");
    let spool_dir = spool_root.join("spool");
    let block = || {
        std::fs::remove_dir_all(&spool_dir).unwrap();
        std::fs::write(&spool_dir, "not a directory").unwrap();
    };
    let unblock = || {
        std::fs::remove_file(&spool_dir).unwrap();
        std::fs::create_dir(&spool_dir).unwrap();
    };
    let service = Service::start(
        &["run"],
        &env(&sim, &gate.url(), timing, Some(&spool_dir), None),
    );
    service.wait_for_log("writer: sending to", Duration::from_secs(30));
    block();
    service.wait_for_log("cannot be written", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2 * timing.window));
    unblock();
    service.wait_for_log("writable again", Duration::from_secs(30));
    // Two windows more: the first run then holds at least two complete windows before
    // the restart's, whatever the phase it started at (with one, a start late in a window
    // and a quick run left one, and the check below failed about half the time).
    std::thread::sleep(Duration::from_secs(2 * timing.window));
    let first_log = stop(service);
    assert!(!first_log.contains("they are lost"), "{first_log}");
    gate.set_dropping(false);
    let (restarted, log) = restart_and_drain(&sim, &influx, &gate.url(), timing, &spool_dir);
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    assert_first_run_delivered(&sim, &influx, timing, restarted, &logs);

    gate.set_dropping(true);
    let service = Service::start(
        &["run"],
        &env(&sim, &gate.url(), timing, Some(&spool_dir), None),
    );
    service.wait_for_log("writer: sending to", Duration::from_secs(30));
    block();
    service.wait_for_log("cannot be written", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(timing.window));
    let log = stop(service);
    let lost = log
        .lines()
        .find_map(|l| {
            let (_, after) = l.split_once("shutdown: ")?;
            after.split(' ').next()?.parse::<u64>().ok()
        })
        .unwrap_or_else(|| panic!("no loss counted at exit:\n{log}"));
    assert!(lost > 0, "{log}");
    assert!(!log.contains("wait in the spool"), "{log}");
    std::fs::remove_file(&spool_dir).unwrap();
}

/// The spool cannot take a segment (as on a full disk) while InfluxDB is unreachable: at
/// SIGTERM the windows in memory are lost, and the log says how many. The next start
/// counts them in its first `lines_dropped`, so the self-metrics InfluxDB stores say
/// what the log said.
#[test]
fn lines_lost_at_exit_are_counted_in_lines_dropped_after_the_restart() {
    let timing = Timing { poll: 1, window: 4 };
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let gate = Gate::start(&influx.url());
    gate.set_dropping(true);
    let spool_dir = TempDir::new("spool");
    let run_env = env(&sim, &gate.url(), timing, Some(spool_dir.path()), None);
    // Early in a window, so the spool's first segment is blocked before a window closes.
    wait_for_phase(timing, 0.1, 0.6);
    let service = Service::start(&["run"], &run_env);
    service.wait_for_log("writer: sending to", Duration::from_secs(3));
    std::fs::create_dir(spool_dir.path().join(format!("{:020}.seg", 1))).unwrap();
    service.wait_for_log("cannot be written", Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(timing.window));
    let first_log = stop(service);
    let lost = first_log
        .lines()
        .find_map(|l| {
            let (_, after) = l.split_once("shutdown: ")?;
            after.split(' ').next()?.parse::<i64>().ok()
        })
        .unwrap_or_else(|| panic!("no loss counted at exit:\n{first_log}"));
    assert!(lost > 0, "{first_log}");

    gate.set_dropping(false);
    let service = Service::start(&["run"], &run_env);
    wait_until(
        "the lines lost at the last exit in lines_dropped",
        Duration::from_secs(30),
        &service,
        || self_metric_sum(&influx, "lines_dropped") >= lost,
    );
    let log = stop(service);
    assert_eq!(
        self_metric_sum(&influx, "lines_dropped"),
        lost,
        "{first_log}\n--- restart ---\n{log}"
    );
}

/// VictoriaMetrics' v1 `/write`: the same windows, read back through `/api/v1/export`.
#[test]
fn victoriametrics_takes_the_v1_writes() {
    let Some(victoria) = Victoria::start() else {
        return;
    };
    let timing = Timing::FAST;
    let sim = sim_with(QUEUES);
    let service = Service::start(&["run"], &env(&sim, &victoria.url(), timing, None, None));
    let (id, _) = sim.queues()[3].clone();
    let selector = format!("{{__name__=\"genesys_queue_samples\",queue_id=\"{id}\"}}");
    let mut complete = Vec::new();
    wait_until(
        "three complete windows in VictoriaMetrics",
        Duration::from_secs(40),
        &service,
        || {
            complete.clear();
            for series in victoria.export(&selector) {
                let values = series["values"].as_array().unwrap();
                let times = series["timestamps"].as_array().unwrap();
                for (v, t) in values.iter().zip(times) {
                    if v.as_f64() == Some(timing.samples() as f64) {
                        complete.push(t.as_u64().unwrap() / 1000);
                    }
                }
            }
            complete.len() >= 3
        },
    );
    let log = stop(service);
    for metric in ["idle", "on_queue", "members"] {
        let index = genesys2influx::model::AGENT_METRICS
            .iter()
            .position(|m| *m == metric)
            .unwrap();
        for (suffix, pick) in [("min", 0usize), ("max", 1), ("last", 2)] {
            let selector =
                format!("{{__name__=\"genesys_queue_{metric}_{suffix}\",queue_id=\"{id}\"}}");
            let series = victoria.export(&selector);
            assert_eq!(series.len(), 1, "{selector}: {series:?}\n{log}");
            assert_eq!(series[0]["metric"]["db"], DB, "db becomes a label");
            let values = series[0]["values"].as_array().unwrap();
            let times = series[0]["timestamps"].as_array().unwrap();
            for start in &complete {
                let at = times
                    .iter()
                    .position(|t| t.as_u64() == Some(start * 1000))
                    .unwrap_or_else(|| panic!("{selector} has no value at {start}"));
                let slots: Vec<f64> = (*start..start + timing.window)
                    .map(|slot| sim.observation_at(&id, slot).agents()[index])
                    .collect();
                let expected = [
                    slots.iter().cloned().fold(f64::INFINITY, f64::min),
                    slots.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                    *slots.last().unwrap(),
                ][pick];
                assert_eq!(values[at].as_f64(), Some(expected), "{selector} at {start}");
            }
        }
    }
}

/// `kB` value of `field` (e.g. `VmHWM`) in `/proc/<pid>/status`.
fn proc_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The figures of docs/influxdb-outages.md: 1,000 queues, POLL_INTERVAL = WINDOW = 1 s,
/// influxd down for 110 s. Run with a release build:
/// `cargo test --release --test main measure_ -- --ignored --nocapture`.
#[test]
#[ignore = "a 3-minute measurement; run it on purpose with --release"]
fn measure_an_outage_of_110_windows_at_1000_queues() {
    const N: usize = 1000;
    let timing = Timing { poll: 1, window: 1 };
    // 1,000 queues every second are 600 requests a minute: the Sim must report a budget
    // that allows them, or the client rightly pauses for the rest of each minute.
    let sim = Sim::start(SimOptions {
        queue_count: N,
        value_period: Duration::from_secs(1),
        rate_limit_per_minute: Some(1_000_000),
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts");
    let mut influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let mut run_env = env(&sim, &influx.url(), timing, Some(spool_dir.path()), None);
    run_env.push(("GENESYS_REQUESTS_PER_MINUTE", "6000".to_string()));
    // 110 windows of 1,000 queues are ~420 MB of line protocol: above the 100 MB default.
    run_env.push(("SPOOL_MAX_BYTES", (1u64 << 30).to_string()));
    let service = Service::start(&["run"], &run_env);
    let pid = service.pid();
    wait_until(
        "a complete window",
        Duration::from_secs(60),
        &service,
        || {
            samples_by_window(&influx, "genesys_queue")
                .values()
                .any(|q| q.len() == N)
        },
    );
    std::thread::sleep(Duration::from_secs(10));
    let rss_before = proc_kb(pid, "VmRSS");
    let hwm_before = proc_kb(pid, "VmHWM");

    influx.stop();
    let outage = Instant::now();
    let mut spool_peak = 0;
    while outage.elapsed() < Duration::from_secs(110) {
        spool_peak = spool_peak.max(dir_bytes(spool_dir.path()));
        std::thread::sleep(Duration::from_millis(250));
    }
    let hwm_outage = proc_kb(pid, "VmHWM");
    influx.start();
    let back = Instant::now();
    let mut spool_peak_after = 0;
    // Reported, not asserted: the drain rate is the machine's (influxd shares its cores).
    while !segments(spool_dir.path()).is_empty() && back.elapsed() < Duration::from_secs(300) {
        spool_peak_after = spool_peak_after.max(dir_bytes(spool_dir.path()));
        std::thread::sleep(Duration::from_millis(250));
    }
    let drained = segments(spool_dir.path()).is_empty();
    let drain = back.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    let hwm_end = proc_kb(pid, "VmHWM");
    let rss_end = proc_kb(pid, "VmRSS");
    let log = stop(service);
    println!(
        "MEASURE queues={N} outage=110s rss_before_kb={rss_before} \
         hwm_before_kb={hwm_before} hwm_after_outage_kb={hwm_outage} hwm_end_kb={hwm_end} \
         rss_end_kb={rss_end} spool_peak_bytes={spool_peak} spool_peak_during_drain={spool_peak_after} \
         drained={drained} drain_s={:.1} lines_spooled={} lines_dropped={}",
        drain.as_secs_f64(),
        self_metric_sum(&influx, "lines_spooled"),
        self_metric_sum(&influx, "lines_dropped"),
    );
    println!(
        "{}",
        log.lines()
            .filter(|l| l.contains("writer") || l.contains("InfluxDB") || l.contains("late"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(drained, "the spool drained within 300 s");
    let windows = samples_by_window(&influx, "genesys_queue");
    let checked = assert_every_window(&windows, &sim.queues(), timing, &BTreeSet::new(), &log);
    println!("MEASURE windows_checked={}", checked.len());
}

// ---- A hostile SPOOL_DIR (issue 12: spool and state files) ------------------------------

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// window start (s) → queue ids of every `genesys_queue` line in the records of `files`.
fn spooled_windows(files: &[std::path::PathBuf]) -> BTreeMap<u64, BTreeSet<String>> {
    let mut windows: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let (records, _) = spool::decode_records(&std::fs::read(file).unwrap());
        for record in records {
            for line in record.lines.lines() {
                if let Some(rest) = line.strip_prefix("genesys_queue,queue_id=") {
                    let id = rest.split(',').next().unwrap().to_string();
                    let time: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                    windows.entry(time).or_default().insert(id);
                }
            }
        }
    }
    windows
}

/// A FIFO, a dangling link and a directory named like segments, and `open-window.json`
/// linked to /dev/zero, beside the good segments of an earlier run: the service starts,
/// stays small, replays the good segments, names every bad entry, and exits 0 promptly on
/// SIGTERM. (It used to block on the FIFO, ignore SIGTERM and grow to gigabytes reading
/// /dev/zero.)
#[test]
fn a_hostile_spool_dir_is_skipped_named_and_the_good_segments_replayed() {
    const MAX_RSS_KB: u64 = 50 * 1024;
    let timing = Timing { poll: 1, window: 1 };
    let sim = sim_with(QUEUES);
    let mut influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let dir = spool_dir.path();
    let run_env = env(&sim, &influx.url(), timing, Some(dir), None);
    let service = Service::start(&["run"], &run_env);
    let before_outage = first_complete_window(&influx, &service, timing);
    influx.stop();
    std::thread::sleep(Duration::from_secs(4));
    stop(service);
    let good = segments(dir);
    let expected = spooled_windows(&good);
    assert!(
        expected.keys().any(|w| *w > before_outage),
        "the outage was spooled: {good:?}"
    );

    let fifo = "00000000000000000000.seg";
    let dangling = "00000000000000009991.seg";
    let directory = "00000000000000009992.seg";
    mkfifo(&dir.join(fifo));
    std::os::unix::fs::symlink(dir.join("absent"), dir.join(dangling)).unwrap();
    std::fs::create_dir(dir.join(directory)).unwrap();
    let open_window = dir.join("open-window.json");
    let _ = std::fs::remove_file(&open_window);
    std::os::unix::fs::symlink("/dev/zero", &open_window).unwrap();

    influx.start();
    let service = Service::start(&["run"], &run_env);
    let mut max_rss_kb = 0;
    wait_until(
        "the good segments replayed",
        Duration::from_secs(75),
        &service,
        || {
            max_rss_kb = max_rss_kb.max(proc_kb(service.pid(), "VmRSS"));
            let windows = samples_by_window(&influx, "genesys_queue");
            good.iter().all(|f| !f.exists())
                && expected.iter().all(|(w, ids)| {
                    windows
                        .get(w)
                        .is_some_and(|q| ids.iter().all(|id| q.contains_key(id)))
                })
        },
    );
    max_rss_kb = max_rss_kb.max(proc_kb(service.pid(), "VmRSS"));
    let stopping = Instant::now();
    let log = stop(service);
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
    assert!(
        max_rss_kb > 0 && max_rss_kb < MAX_RSS_KB,
        "VmRSS {max_rss_kb} kB; log:\n{log}"
    );
    for name in [fifo, dangling, directory, "open-window.json"] {
        assert!(log.contains(name), "{name} not named in the log:\n{log}");
    }
    println!(
        "{} windows replayed past the bad entries; VmRSS at most {max_rss_kb} kB; SIGTERM took {took:?}",
        expected.len()
    );
}
