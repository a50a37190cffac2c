//! Live updates, black-box: the built binary, a real influxd (or VictoriaMetrics) and the
//! simulated Genesys Cloud. The window in progress is in InfluxDB within one poll of
//! each poll with the values so far; its final point replaces it at close; outages,
//! SIGTERM and SIGKILL never leave a stale partial over a complete window; and `auto`
//! keeps VictoriaMetrics, which stores every sample, free of them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use genesys2influx::influx::spool;
use serde_json::Value;

use crate::core_pipeline::sim_with;
use crate::no_window_lost::{
    assert_every_window, assert_interrupted_window_complete, assert_values, assert_values_so_far,
    env, first_complete_window, now_s, point, samples_by_window, segments, self_metric_sum, stop,
    wait_drained, wait_for_phase, wait_until, Timing, DB, QUEUES,
};
use crate::util::gate::Gate;
use crate::util::influxd::Influxd;
use crate::util::process::Service;
use crate::util::victoria::Victoria;
use crate::util::TempDir;

/// The timing: five polls a window, so four live updates before each close.
const LIVE: Timing = Timing { poll: 1, window: 5 };
/// Query latency and scheduling allowed on top of "within one poll".
const SLACK_S: f64 = 0.3;

fn live_env(
    sim: &genesys2influx::sim::Sim,
    url: &str,
    timing: Timing,
    spool_dir: Option<&std::path::Path>,
    live: &str,
) -> Vec<(&'static str, String)> {
    let mut env = env(sim, url, timing, spool_dir, None);
    env.push(("LIVE_UPDATES", live.to_string()));
    env
}

#[test]
fn the_window_in_progress_is_in_influxdb_within_one_poll_with_the_values_so_far() {
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    // No LIVE_UPDATES: `auto` must recognise influxd.
    let service = Service::start(&["run"], &env(&sim, &influx.url(), LIVE, None, None));
    first_complete_window(&influx, &service, LIVE);
    let (id, _) = sim.queues()[2].clone();
    let window = LIVE.window_of(now_s() as u64) + LIVE.window;

    // Watch the window from before its first poll until after its close.
    let mut first_seen: BTreeMap<u64, f64> = BTreeMap::new();
    let until = (window + LIVE.window) as f64 + 1.5;
    // Bounded: about 8 s of 100 ms rounds.
    while now_s() < until {
        let got = point(&influx, &id, window);
        let seen_at = now_s();
        // influxd stores each field of a point apart, so a read racing a write can see some
        // fields of the new point and some of the old: only a point read the same twice
        // in a row is judged (seen with `samples=2` and `on_queue_last` of the third poll).
        if point(&influx, &id, window) != got {
            continue;
        }
        if let Some(samples) = got.get("samples").and_then(Value::as_u64) {
            assert_values_so_far(&sim, &got, LIVE, &id, window, samples);
            first_seen.entry(samples).or_insert(seen_at);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = stop(service);
    for polls in 1..LIVE.samples() {
        // Poll `polls` ticked at window + polls - 1: its update is due one poll later.
        let due = (window + polls * LIVE.poll) as f64 + SLACK_S;
        let seen = first_seen
            .range(polls..)
            .map(|(_, at)| *at)
            .fold(f64::INFINITY, f64::min);
        assert!(
            seen <= due,
            "samples={polls} of window {window} seen at {seen:.2}, due by {due:.2}: {first_seen:?}\n{log}"
        );
    }
    assert!(first_seen.contains_key(&LIVE.samples()), "{first_seen:?}");
    let windows = samples_by_window(&influx, "genesys_queue");
    assert_eq!(windows[&window].len(), QUEUES, "one point per queue");
    assert!(windows[&window].values().all(|s| *s == LIVE.samples()));
    for (id, _) in sim.queues().iter().take(3) {
        assert_values(&sim, &influx, LIVE, id, window);
    }
    assert!(
        log.contains("live updates on (LIVE_UPDATES=auto): InfluxDB 1."),
        "the decision is logged:\n{log}"
    );
    assert!(self_metric_sum(&influx, "live_points_written") > 0);
}

/// A live update held by something between the service and InfluxDB (a proxy, a stalled
/// influxd) past `HTTP_TIMEOUT`, then applied after the window's final point: the final
/// point is written again once the late update can no longer land, so the window read
/// back is exactly what the simulator served.
#[test]
fn a_live_update_applied_after_the_final_point_is_overwritten_by_it_again() {
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let gate = Gate::start(&influx.url());
    let spool_dir = TempDir::new("spool");
    let mut run_env = live_env(&sim, &gate.url(), LIVE, Some(spool_dir.path()), "on");
    run_env.push(("HTTP_TIMEOUT", "1s".to_string()));
    let service = Service::start(&["run"], &run_env);
    first_complete_window(&influx, &service, LIVE);
    // The live update after the second poll of the next window but one is held 4 s (four
    // times HTTP_TIMEOUT): it lands about 3 s after that window's final point.
    let window = LIVE.window_of(now_s() as u64) + 2 * LIVE.window;
    gate.hold_write_with_line_ending(&format!("samples=2i {window}"), Duration::from_secs(4));
    wait_until(
        "the held live update applied",
        Duration::from_secs(40),
        &service,
        || {
            gate.exchanges().iter().any(|e| {
                e.acknowledged()
                    && e.answered_ms > (window + LIVE.window) * 1000
                    && e.lines
                        .iter()
                        .any(|l| l.ends_with(&format!("samples=2i {window}")))
            })
        },
    );
    // Long enough for the re-write the late update calls for (8 × HTTP_TIMEOUT after it).
    std::thread::sleep(Duration::from_secs(6));
    let log = stop(service);
    let windows = samples_by_window(&influx, "genesys_queue");
    assert_eq!(
        windows
            .get(&window)
            .map(|q| (q.len(), q.values().min().copied())),
        Some((QUEUES, Some(LIVE.samples()))),
        "window {window} after the late live update; log:\n{log}"
    );
    for (id, _) in sim.queues() {
        assert_values(&sim, &influx, LIVE, &id, window);
    }
    // What landed last for that window, as InfluxDB applied the writes: a final point.
    let mut landed: Vec<_> = gate
        .exchanges()
        .into_iter()
        .filter(|e| e.acknowledged())
        .filter(|e| e.lines.iter().any(|l| l.ends_with(&format!(" {window}"))))
        .collect();
    landed.sort_by_key(|e| e.answered_ms);
    let finals = format!("samples={}i {window}", LIVE.samples());
    let last = landed.last().expect("writes of the window");
    assert!(
        last.lines.iter().any(|l| l.ends_with(&finals)),
        "the last write of window {window} is not its final point: {:?}",
        last.lines.first()
    );
    assert!(
        landed
            .iter()
            .filter(|e| e.lines.iter().any(|l| l.ends_with(&finals)))
            .count()
            >= 2,
        "written again after the late update"
    );
    assert!(
        log.contains("outcome unknown"),
        "the doubtful live update is logged:\n{log}"
    );
}

/// Every `genesys_queue` line in the spool, as (window, samples).
fn spooled_samples(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    for file in segments(dir) {
        let (records, _) = spool::decode_records(&std::fs::read(&file).unwrap_or_default());
        for record in records {
            for line in record.lines.lines() {
                if !line.starts_with("genesys_queue,") {
                    continue;
                }
                let time: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                let samples = line
                    .split("samples=")
                    .nth(1)
                    .and_then(|rest| rest.split('i').next())
                    .and_then(|n| n.parse().ok())
                    .expect("a samples field");
                found.push((time, samples));
            }
        }
    }
    found
}

#[test]
fn an_outage_with_live_updates_spools_nothing_live_and_every_final_lands_once() {
    let timing = Timing { poll: 1, window: 3 };
    let sim = sim_with(QUEUES);
    let mut influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let run_env = live_env(&sim, &influx.url(), timing, Some(spool_dir.path()), "on");
    let service = Service::start(&["run"], &run_env);
    let first = first_complete_window(&influx, &service, timing);

    influx.stop();
    let mut spooled = Vec::new();
    let outage_end = Instant::now() + Duration::from_secs(4 * timing.window);
    // Bounded by the outage's end.
    while Instant::now() < outage_end {
        spooled.extend(spooled_samples(spool_dir.path()));
        std::thread::sleep(Duration::from_millis(300));
    }
    influx.start();
    let back = now_s() as u64;
    wait_drained(&influx, &service, spool_dir.path(), back + timing.window);
    let log = stop(service);

    assert!(!spooled.is_empty(), "windows were spooled; log:\n{log}");
    let partial: Vec<_> = spooled
        .iter()
        .filter(|(_, samples)| *samples != timing.samples())
        .collect();
    assert!(
        partial.is_empty(),
        "live points spooled: {partial:?}\n{log}"
    );
    let windows = samples_by_window(&influx, "genesys_queue");
    let checked = assert_every_window(&windows, &sim.queues(), timing, &BTreeSet::new(), &log);
    assert!(
        checked.iter().filter(|w| **w > first && **w < back).count() >= 3,
        "windows of the outage checked: {checked:?}"
    );
    for (id, _) in sim.queues().iter().take(3) {
        for window in &checked {
            assert_values(&sim, &influx, timing, id, *window);
        }
    }
    assert_eq!(self_metric_sum(&influx, "lines_dropped"), 0);
}

#[test]
fn sigterm_during_live_updates_then_a_restart_in_the_same_window_ends_complete() {
    let timing = Timing { poll: 2, window: 8 };
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let run_env = live_env(&sim, &influx.url(), timing, Some(spool_dir.path()), "on");
    let service = Service::start(&["run"], &run_env);
    first_complete_window(&influx, &service, timing);
    // After the window's second poll: one live update written, the third poll not yet.
    let interrupted = wait_for_phase(timing, 2.4, 2.8);
    let first_log = stop(service);
    let service = Service::start(&["run"], &run_env);
    let closed_by = Instant::now() + Duration::from_secs(timing.window + 10);
    let mut complete_since: Option<Instant> = None;
    // Watch the window until it has stayed complete for 3 s past its close (bounded).
    while complete_since.is_none_or(|at| at.elapsed() < Duration::from_secs(3)) {
        assert!(
            Instant::now() < closed_by,
            "window {interrupted} never completed; log:\n{}",
            service.stderr()
        );
        let samples = samples_by_window(&influx, "genesys_queue")
            .get(&interrupted)
            .map(|q| (q.len(), q.values().min().copied()));
        let complete = samples == Some((QUEUES, Some(timing.samples())));
        match (complete, complete_since) {
            (true, None) => complete_since = Some(Instant::now()),
            (false, Some(_)) => panic!(
                "window {interrupted} went back to {samples:?} after it was complete; log:\n{}",
                service.stderr()
            ),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = stop(service);
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    assert!(
        log.contains("continuing the window saved at the last shutdown"),
        "resumed; log:\n{logs}"
    );
    assert_interrupted_window_complete(&sim, &influx, timing, interrupted, &logs);
}

#[test]
fn sigkill_during_live_updates_leaves_at_most_that_window_incomplete() {
    let timing = Timing { poll: 1, window: 3 };
    let sim = sim_with(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let spool_dir = TempDir::new("spool");
    let run_env = live_env(&sim, &influx.url(), timing, Some(spool_dir.path()), "on");
    let mut service = Service::start(&["run"], &run_env);
    first_complete_window(&influx, &service, timing);
    let killed = wait_for_phase(timing, 1.4, 1.7);
    service.signal("KILL");
    service.wait(Duration::from_secs(10));
    let first_log = service.stderr();
    let service = Service::start(&["run"], &run_env);
    wait_until(
        "three windows after the kill",
        Duration::from_secs(40),
        &service,
        || {
            samples_by_window(&influx, "genesys_queue")
                .keys()
                .any(|w| *w > killed + 3 * timing.window)
        },
    );
    let log = stop(service);
    let logs = format!("{first_log}\n--- restart ---\n{log}");
    let windows = samples_by_window(&influx, "genesys_queue");
    let checked = assert_every_window(
        &windows,
        &sim.queues(),
        timing,
        &BTreeSet::from([killed]),
        &logs,
    );
    let later: Vec<_> = checked.iter().filter(|w| **w > killed).collect();
    assert!(later.len() >= 2, "windows after the kill: {checked:?}");
    for (id, _) in sim.queues().iter().take(3) {
        for window in &later {
            assert_values(&sim, &influx, timing, id, **window);
        }
    }
}

#[test]
fn auto_leaves_live_updates_off_for_victoriametrics_and_says_so() {
    let Some(victoria) = Victoria::start() else {
        return;
    };
    let sim = sim_with(QUEUES);
    let service = Service::start(&["run"], &env(&sim, &victoria.url(), LIVE, None, None));
    let (id, _) = sim.queues()[3].clone();
    let selector = format!("{{__name__=\"genesys_queue_samples\",queue_id=\"{id}\"}}");
    let mut samples: Vec<(u64, f64)> = Vec::new();
    wait_until(
        "two complete windows in VictoriaMetrics",
        Duration::from_secs(40),
        &service,
        || {
            samples = victoria
                .export(&selector)
                .iter()
                .flat_map(|series| {
                    let times = series["timestamps"].as_array().cloned().unwrap_or_default();
                    let values = series["values"].as_array().cloned().unwrap_or_default();
                    times
                        .iter()
                        .zip(values)
                        .map(|(t, v)| (t.as_u64().unwrap_or(0) / 1000, v.as_f64().unwrap_or(0.0)))
                        .collect::<Vec<_>>()
                })
                .collect();
            samples
                .iter()
                .filter(|(_, v)| *v == LIVE.samples() as f64)
                .count()
                >= 2
        },
    );
    let log = stop(service);
    let times: Vec<u64> = samples.iter().map(|(t, _)| *t).collect();
    let distinct: BTreeSet<u64> = times.iter().copied().collect();
    assert_eq!(
        times.len(),
        distinct.len(),
        "one sample per window: {samples:?}"
    );
    assert!(
        log.contains("live updates off (LIVE_UPDATES=auto)") && log.contains("VictoriaMetrics"),
        "the decision and its reason are logged:\n{log}"
    );
    let complete: Vec<u64> = samples
        .iter()
        .filter(|(_, v)| *v == LIVE.samples() as f64)
        .map(|(t, _)| *t)
        .collect();
    let index = genesys2influx::model::AGENT_METRICS
        .iter()
        .position(|m| *m == "idle")
        .unwrap();
    let selector = format!("{{__name__=\"genesys_queue_idle_max\",queue_id=\"{id}\"}}");
    let series = victoria.export(&selector);
    let values = series[0]["values"].as_array().unwrap();
    let times = series[0]["timestamps"].as_array().unwrap();
    for start in &complete {
        let at = times
            .iter()
            .position(|t| t.as_u64() == Some(start * 1000))
            .unwrap_or_else(|| panic!("{selector} has no value at {start}"));
        let expected = (*start..start + LIVE.window)
            .map(|slot| sim.observation_at(&id, slot).agents()[index])
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(values[at].as_f64(), Some(expected), "{selector} at {start}");
    }
}
