//! The core promise, black-box: the built binary polls a simulated Genesys Cloud over
//! loopback HTTP and a real influxd ends up holding exactly the window aggregates the
//! simulator's values imply, odd queue names intact, field types as the contract says;
//! SIGTERM writes the partial window and exits 0.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys2influx::sim::{Sim, SimOptions};
use serde_json::Value;

use crate::util::influxd::{self, Influxd, Options};
use crate::util::process::{patience, Service};
use crate::util::sim_env;

const DB: &str = "genesys";
const POLL_S: u64 = 1;
const WINDOW_S: u64 = 5;

/// The environment for `run` against `sim` and `influx` (v1 API).
pub fn service_env(sim: &Sim, influx: &Influxd, auth: bool) -> Vec<(&'static str, String)> {
    let mut env = sim_env(sim);
    env.extend([
        ("POLL_INTERVAL", format!("{POLL_S}s")),
        ("WINDOW", format!("{WINDOW_S}s")),
        ("KPIS", "off".to_string()),
        ("INFLUXDB_URL", influx.url()),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("INSTANCE", "test-instance".to_string()),
    ]);
    if auth {
        env.push(("INFLUXDB_USERNAME", influxd::ADMIN_USER.to_string()));
        env.push(("INFLUXDB_PASSWORD", influxd::ADMIN_PASSWORD.to_string()));
    }
    env
}

pub fn sim_with(queue_count: usize) -> Sim {
    Sim::start(SimOptions {
        queue_count,
        value_period: Duration::from_secs(POLL_S),
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts")
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Every `genesys_queue` point of one queue: time → (field → value).
fn queue_points(
    influx: &Influxd,
    measurement: &str,
    where_clause: &str,
) -> BTreeMap<u64, BTreeMap<String, Value>> {
    let json = influx.query(
        DB,
        &format!("SELECT * FROM {measurement} WHERE {where_clause}"),
    );
    let mut points = BTreeMap::new();
    let Some(series) = json["results"][0]["series"][0].as_object() else {
        return points;
    };
    let columns: Vec<String> = series["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    for row in series["values"].as_array().unwrap() {
        let row = row.as_array().unwrap();
        let time = row[0].as_u64().unwrap();
        points.insert(
            time,
            columns.iter().cloned().zip(row.iter().cloned()).collect(),
        );
    }
    points
}

fn id_clause(id: &str) -> String {
    format!("\"queue_id\" = '{id}'")
}

/// Waits (bounded: 30 s, [`patience`]) until queue `id` has `count` complete windows in
/// InfluxDB.
fn wait_for_complete_windows(influx: &Influxd, service: &Service, id: &str, count: usize) {
    let limit = patience(Duration::from_secs(30));
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let complete = queue_points(influx, "genesys_queue", &id_clause(id))
            .values()
            .filter(|p| p["samples"] == WINDOW_S / POLL_S)
            .count();
        if complete >= count {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "fewer than {count} complete windows after {limit:?}; service log:\n{}",
        service.stderr()
    );
}

/// Min, max, mean and last of a series of values.
fn summary(values: &[f64]) -> (f64, f64, f64, f64) {
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (
        min,
        max,
        values.iter().sum::<f64>() / values.len() as f64,
        *values.last().unwrap(),
    )
}

fn assert_count_fields(
    point: &BTreeMap<String, Value>,
    metric: &str,
    values: &[f64],
    context: &str,
) {
    let (min, max, mean, last) = summary(values);
    assert_eq!(
        point[&format!("{metric}_min")].as_f64(),
        Some(min),
        "{context} {metric}_min"
    );
    assert_eq!(
        point[&format!("{metric}_max")].as_f64(),
        Some(max),
        "{context} {metric}_max"
    );
    assert_eq!(
        point[&format!("{metric}_last")].as_f64(),
        Some(last),
        "{context} {metric}_last"
    );
    let got = point[&format!("{metric}_mean")].as_f64().unwrap();
    assert!(
        (got - mean).abs() < 1e-9,
        "{context} {metric}_mean: {got} != {mean}"
    );
}

/// Checks every complete window of queue `id` against the simulator's values.
fn assert_windows_match_sim(sim: &Sim, influx: &Influxd, id: &str) -> usize {
    let agent_points = queue_points(influx, "genesys_queue", &id_clause(id));
    let mut checked = 0;
    for (start, point) in agent_points
        .iter()
        .filter(|(_, p)| p["samples"] == WINDOW_S / POLL_S)
    {
        let slots: Vec<u64> = (*start..start + WINDOW_S)
            .step_by(POLL_S as usize)
            .collect();
        let expected: Vec<_> = slots
            .iter()
            .map(|slot| sim.observation_at(id, *slot))
            .collect();
        let context = format!("queue {id} window {start}");
        for (index, metric) in genesys2influx::model::AGENT_METRICS.iter().enumerate() {
            let values: Vec<f64> = expected.iter().map(|e| e.agents()[index]).collect();
            assert_count_fields(point, metric, &values, &context);
        }
        checked += 1;
        for media in &SimOptions::default().media_types {
            let clause = format!(
                "{} AND \"media_type\" = '{media}' AND time = {start}s",
                id_clause(id)
            );
            let media_point = queue_points(influx, "genesys_queue_media", &clause);
            let point = media_point
                .get(start)
                .unwrap_or_else(|| panic!("no {media} point for {context}"));
            assert_eq!(
                point["samples"],
                WINDOW_S / POLL_S,
                "{context} {media} samples"
            );
            let media_values =
                |f: &dyn Fn(&genesys2influx::sim::ExpectedMedia) -> f64| -> Vec<f64> {
                    expected
                        .iter()
                        .map(|e| f(e.media(media).expect("simulated media")))
                        .collect()
                };
            assert_count_fields(
                point,
                "waiting",
                &media_values(&|m| m.waiting as f64),
                &format!("{context} {media}"),
            );
            assert_count_fields(
                point,
                "interacting",
                &media_values(&|m| m.interacting as f64),
                &format!("{context} {media}"),
            );
            assert_count_fields(
                point,
                "alerting",
                &media_values(&|m| m.alerting as f64),
                &format!("{context} {media}"),
            );
            // Seconds waited are measured when the answer arrives: never less than the
            // simulator's value, more by the request's latency (bounded generously for a
            // busy machine).
            let waited = media_values(&|m| m.longest_waiting_ms as f64 / 1000.0);
            let (_, max, _, last) = summary(&waited);
            for (field, expected) in [
                ("longest_waiting_seconds_max", max),
                ("longest_waiting_seconds_last", last),
            ] {
                let got = point[field].as_f64().unwrap();
                assert!(
                    (0.0..2.0).contains(&(got - expected)),
                    "{context} {media} {field}: {got} is not just above {expected}"
                );
            }
        }
    }
    checked
}

/// What InfluxDB can store of a Genesys queue name (contract: newline, CR and a trailing
/// backslash become a space).
fn stored_name(name: &str) -> String {
    let name = name.replace(['\n', '\r'], " ");
    match name.strip_suffix('\\') {
        Some(stem) => format!("{stem} "),
        None => name,
    }
}

fn field_types(influx: &Influxd, measurement: &str) -> BTreeMap<String, String> {
    influx
        .rows(DB, &format!("SHOW FIELD KEYS FROM {measurement}"))
        .into_iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn run_and_verify(auth: bool) {
    let sim = sim_with(250);
    let influx = Influxd::start_with(Options {
        auth,
        ..Options::default()
    });
    influx.create_database(DB);
    let mut service = Service::start(&["run"], &service_env(&sim, &influx, auth));
    let queues = sim.queues();
    let probes: Vec<&(String, String)> = queues
        .iter()
        .take(9)
        .chain(queues.iter().rev().take(2))
        .collect();
    for (id, _) in &probes {
        wait_for_complete_windows(&influx, &service, id, 2);
    }

    // Stop in the middle of a window so the partial window has 2 or 3 samples.
    while !(2.2..2.8).contains(&(now_s() % WINDOW_S as f64)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let open_window = (now_s() as u64) / WINDOW_S * WINDOW_S;
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(15));
    assert_eq!(
        status.code(),
        Some(0),
        "exit code after SIGTERM; log:\n{}",
        service.stderr()
    );

    for (id, _) in &probes {
        assert!(
            assert_windows_match_sim(&sim, &influx, id) >= 2,
            "two complete windows checked for {id}"
        );
    }
    let partial = queue_points(
        &influx,
        "genesys_queue",
        &format!("{} AND time = {open_window}s", id_clause(&probes[0].0)),
    );
    let samples = partial
        .get(&open_window)
        .map(|p| p["samples"].as_u64().unwrap());
    assert!(
        matches!(samples, Some(1..=4)),
        "the partial window {open_window} holds {samples:?} samples; log:\n{}",
        service.stderr()
    );

    let names: Vec<String> = influx
        .rows(
            DB,
            "SHOW TAG VALUES FROM genesys_queue WITH KEY = \"queue_name\"",
        )
        .into_iter()
        .map(|row| row[1].as_str().unwrap().to_string())
        .collect();
    for (_, name) in &queues {
        assert!(
            names.contains(&stored_name(name)),
            "queue name {name:?} not stored intact; stored: {names:?}"
        );
    }
    assert_eq!(names.len(), queues.len());

    let agent_types = field_types(&influx, "genesys_queue");
    assert_eq!(agent_types["idle_min"], "integer");
    assert_eq!(agent_types["idle_last"], "integer");
    assert_eq!(agent_types["idle_mean"], "float");
    assert_eq!(agent_types["samples"], "integer");
    assert_eq!(agent_types.len(), 8 * 4 + 1);
    let media_types = field_types(&influx, "genesys_queue_media");
    assert_eq!(media_types["waiting_max"], "integer");
    assert_eq!(media_types["longest_waiting_seconds_min"], "float");
    assert_eq!(media_types["longest_interacting_seconds_last"], "float");
    assert_eq!(media_types.len(), 5 * 4 + 1);

    // 250 queues: three observation requests of at most 100 ids per poll.
    let observation_requests: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("observations"))
        .collect();
    assert!(observation_requests
        .iter()
        .all(|r| r.queue_ids.len() <= 100));
    assert!(
        observation_requests.iter().any(|r| r.queue_ids.len() == 50),
        "the 250 queues are chunked 100+100+50"
    );
}

#[test]
fn writes_exact_window_aggregates_to_influxdb_v1() {
    run_and_verify(false);
}

#[test]
fn writes_exact_window_aggregates_to_influxdb_with_auth() {
    run_and_verify(true);
}
