//! Contact-center KPIs, black-box: the built binary polls the simulated conversation
//! aggregates (late data growing for `kpi_settle` after each event) and a real influxd
//! ends up holding exactly the Sim's final numbers, one point per queue, media type and
//! bucket; a stop longer than the look-back is backfilled from `kpi-state.json`; a 403
//! disables KPIs but not observations; `KPIS=off` sends no aggregate query; and the
//! dashboard's KPI queries compute ratios of sums over the written data.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys2influx::genesys::sim::{Endpoint, KpiValues, Sim, SimOptions};
use serde_json::Value;

use crate::core_pipeline::service_env;
use crate::util::influxd::Influxd;
use crate::util::process::Service;
use crate::util::TempDir;

const DB: &str = "genesys";
const MEASUREMENT: &str = "genesys_queue_interval";
const BUCKET_MS: u64 = 60_000;
const LOOKBACK_MS: u64 = 120_000;
/// Late data keeps arriving this long after an event (Sim), well inside the look-back.
const SETTLE: Duration = Duration::from_secs(20);
const MEDIA: [&str; 3] = ["voice", "chat", "email"];
/// Generous bound for anything the service should do within a few polls.
const SOON: Duration = Duration::from_secs(60);

/// The contract's fields of `genesys_queue_interval` and their InfluxDB types.
const FIELD_TYPES: [(&str, &str); 16] = [
    ("offered", "integer"),
    ("answered", "integer"),
    ("answer_seconds_sum", "float"),
    ("abandoned", "integer"),
    ("abandon_seconds_sum", "float"),
    ("short_abandoned", "integer"),
    ("flowed_out", "integer"),
    ("handled", "integer"),
    ("handle_seconds_sum", "float"),
    ("waited", "integer"),
    ("wait_seconds_sum", "float"),
    ("transferred", "integer"),
    ("over_sla", "integer"),
    ("service_level_numerator", "integer"),
    ("service_level_denominator", "integer"),
    ("service_level_target", "float"),
];

fn kpi_sim(queue_count: usize) -> Sim {
    Sim::start(SimOptions {
        queue_count,
        value_period: Duration::from_secs(1),
        media_types: MEDIA.iter().map(|m| m.to_string()).collect(),
        kpi_settle: SETTLE,
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts")
}

/// `run` with 1-minute KPI buckets re-queried every `poll` for 2 minutes, state in `spool`.
fn kpi_env(
    sim: &Sim,
    influx: &Influxd,
    spool: &TempDir,
    db: &str,
    poll: &str,
) -> Vec<(&'static str, String)> {
    let mut env = service_env(sim, influx, false);
    env.retain(|(key, _)| !matches!(*key, "KPIS" | "INFLUXDB_DATABASE"));
    env.extend([
        ("KPIS", "on".to_string()),
        ("KPI_BUCKET", "1m".to_string()),
        ("KPI_POLL", poll.to_string()),
        ("KPI_LOOKBACK", "2m".to_string()),
        ("SPOOL_DIR", spool.path().display().to_string()),
        ("INFLUXDB_DATABASE", db.to_string()),
    ]);
    env
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn floor(ms: u64, step: u64) -> u64 {
    ms - ms % step
}

/// (queue id, media type, bucket start in s).
type Key = (String, String, u64);
type Fields = BTreeMap<String, f64>;

/// What a `genesys_queue_interval` point must hold for these Sim numbers, or `None` when
/// the Sim answers nothing for the bucket (no point).
fn expected_fields(v: &KpiValues) -> Option<Fields> {
    if v.is_empty() {
        return None;
    }
    let secs = |ms: u64| ms as f64 / 1000.0;
    let mut fields: Fields = [
        ("offered", v.offered as f64),
        ("answered", v.answered.count as f64),
        ("answer_seconds_sum", secs(v.answered.sum)),
        ("abandoned", v.abandoned.count as f64),
        ("abandon_seconds_sum", secs(v.abandoned.sum)),
        ("short_abandoned", v.short_abandoned.count as f64),
        ("flowed_out", v.flowed_out.count as f64),
        ("handled", v.handled.count as f64),
        ("handle_seconds_sum", secs(v.handled.sum)),
        ("waited", v.waited.count as f64),
        ("wait_seconds_sum", secs(v.waited.sum)),
        ("transferred", v.transferred as f64),
        ("over_sla", v.over_sla as f64),
        ("service_level_numerator", v.sl_numerator as f64),
        ("service_level_denominator", v.sl_denominator as f64),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if v.sl_denominator > 0 && v.sl_target.is_finite() {
        fields.insert("service_level_target".into(), v.sl_target);
    }
    Some(fields)
}

/// The final points of every queue and media type for the bucket starting at `start_s`.
fn expected_bucket(sim: &Sim, start_s: u64) -> BTreeMap<Key, Fields> {
    let mut points = BTreeMap::new();
    for (id, _) in sim.queues() {
        for media in MEDIA {
            let v = sim.expected_kpis(&id, media, start_s * 1000, BUCKET_MS);
            if let Some(fields) = expected_fields(&v) {
                points.insert((id.clone(), media.to_string(), start_s), fields);
            }
        }
    }
    points
}

/// One point read back: its fields and its `queue_name` tag.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    fields: Fields,
    queue_name: String,
}

/// Every `genesys_queue_interval` point in `db`, keyed by (queue, media, bucket).
fn stored_points(influx: &Influxd, db: &str) -> BTreeMap<Key, Stored> {
    let json = influx.query(
        db,
        &format!("SELECT * FROM {MEASUREMENT} GROUP BY \"queue_id\", \"media_type\""),
    );
    let mut points = BTreeMap::new();
    let Some(series) = json["results"][0]["series"].as_array() else {
        return points;
    };
    for s in series {
        let id = s["tags"]["queue_id"].as_str().unwrap().to_string();
        let media = s["tags"]["media_type"].as_str().unwrap().to_string();
        let columns: Vec<&str> = s["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for row in s["values"].as_array().unwrap() {
            let row = row.as_array().unwrap();
            let time = row[0].as_u64().unwrap();
            let mut stored = Stored {
                fields: Fields::new(),
                queue_name: String::new(),
            };
            for (column, value) in columns.iter().zip(row).skip(1) {
                match (*column, value) {
                    (_, Value::Null) => {}
                    ("queue_name", v) => stored.queue_name = v.as_str().unwrap().to_string(),
                    (c, v) => {
                        let number = v
                            .as_f64()
                            .unwrap_or_else(|| panic!("{c} = {v} is not a number"));
                        stored.fields.insert(c.to_string(), number);
                    }
                }
            }
            points.insert((id.clone(), media.clone(), time), stored);
        }
    }
    points
}

/// The stored points of one bucket, fields only.
fn bucket_of(points: &BTreeMap<Key, Stored>, start_s: u64) -> BTreeMap<Key, Fields> {
    points
        .iter()
        .filter(|((_, _, t), _)| *t == start_s)
        .map(|(k, p)| (k.clone(), p.fields.clone()))
        .collect()
}

/// Sum of every count and sum in a bucket: grows while late data arrives.
fn bucket_total(bucket: &BTreeMap<Key, Fields>) -> f64 {
    bucket
        .values()
        .flat_map(|f| f.iter())
        .filter(|(k, _)| !k.starts_with("service_level_target"))
        .map(|(_, v)| v)
        .sum()
}

/// What InfluxDB can store of a Genesys queue name (CONTRACT.md).
fn stored_name(name: &str) -> String {
    let name = name.replace(['\n', '\r'], " ");
    match name.strip_suffix('\\') {
        Some(stem) => format!("{stem} "),
        None => name,
    }
}

fn field_types(influx: &Influxd, db: &str) -> BTreeMap<String, String> {
    influx
        .rows(db, &format!("SHOW FIELD KEYS FROM {MEASUREMENT}"))
        .into_iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn assert_contract_types(influx: &Influxd, db: &str) {
    let expected: BTreeMap<String, String> = FIELD_TYPES
        .iter()
        .map(|(k, t)| (k.to_string(), t.to_string()))
        .collect();
    assert_eq!(field_types(influx, db), expected, "SHOW FIELD KEYS");
}

/// Asserts that every point carries the Sim's queue name, as InfluxDB can store it.
fn assert_queue_names(sim: &Sim, points: &BTreeMap<Key, Stored>) {
    let names: BTreeMap<String, String> = sim.queues().into_iter().collect();
    for ((id, media, t), point) in points {
        assert_eq!(
            point.queue_name,
            stored_name(&names[id]),
            "queue_name of {id} {media} at {t}"
        );
    }
}

/// `count("offered")` per queue, media type and minute: at most one point each, ever.
fn assert_one_point_per_bucket(influx: &Influxd, db: &str) -> usize {
    let json = influx.query(
        db,
        &format!(
            "SELECT count(\"offered\") FROM {MEASUREMENT} WHERE time > now() - 30m \
             GROUP BY \"queue_id\", \"media_type\", time(1m) fill(none)"
        ),
    );
    let mut buckets = 0;
    for series in json["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for row in series["values"].as_array().unwrap() {
            let count = row[1].as_u64().unwrap();
            assert_eq!(count, 1, "{} points in one bucket: {series}", count);
            assert_eq!(row[0].as_u64().unwrap() % 60, 0, "bucket start on a minute");
            buckets += 1;
        }
    }
    buckets
}

fn aggregate_requests(sim: &Sim) -> Vec<genesys2influx::genesys::sim::RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.endpoint == Some(Endpoint::Aggregates))
        .collect()
}

/// Waits (bounded) until `genesys_queue` holds at least `count` points.
fn wait_for_observations(influx: &Influxd, db: &str, service: &Service, count: u64) {
    let deadline = Instant::now() + SOON;
    loop {
        let rows = influx.rows(db, "SELECT count(\"samples\") FROM genesys_queue");
        let have = rows.first().and_then(|r| r[1].as_u64()).unwrap_or_default();
        if have >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {count} genesys_queue points within {SOON:?} ({have}); log:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits (bounded) until `count` successful aggregate requests arrived after `after_ms`.
fn wait_for_kpi_polls_after(sim: &Sim, service: &Service, after_ms: u64, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while aggregate_requests(sim)
        .iter()
        .filter(|r| r.time_ms > after_ms && r.status == 200)
        .count()
        < count
    {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} KPI polls after {after_ms}; log:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---- 1 + 2: exact final numbers, the open bucket overwritten while it grows ------------

#[test]
fn buckets_grow_in_place_and_end_with_the_final_numbers() {
    let sim = kpi_sim(12);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let spool = TempDir::new("kpi-e2e");
    let service = Service::start(&["run"], &kpi_env(&sim, &influx, &spool, DB, "2s"));

    // The earliest bucket seen in InfluxDB with numbers other than its final ones, and the
    // totals it had each time we looked (it must grow, in place, until it is final).
    let mut growing: Option<u64> = None;
    let mut totals: Vec<f64> = Vec::new();
    // A bucket open at start-up settles at most 60 s + SETTLE later; room for a slow CI.
    let deadline = Instant::now() + Duration::from_secs(240);
    let (first, last) = loop {
        assert!(
            Instant::now() < deadline,
            "no KPI bucket was seen growing and then final (growing: {growing:?}, totals \
             {totals:?}); log:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(400));
        let points = stored_points(&influx, DB);
        if points.is_empty() {
            continue;
        }
        assert_one_point_per_bucket(&influx, DB);
        let starts: BTreeSet<u64> = points.keys().map(|(_, _, t)| *t).collect();
        for &start in &starts {
            if growing.is_none() && bucket_of(&points, start) != expected_bucket(&sim, start) {
                growing = Some(start);
            }
        }
        let Some(target) = growing else { continue };
        let current = bucket_of(&points, target);
        let total = bucket_total(&current);
        if totals.last() != Some(&total) {
            totals.push(total);
        }
        // Done once the growing bucket and every bucket before it are final.
        let first = *starts.first().unwrap();
        let all_final = starts
            .range(..=target)
            .all(|&s| bucket_of(&points, s) == expected_bucket(&sim, s));
        if all_final {
            break (first, target);
        }
    };

    // The look-back re-queried buckets from before start-up too.
    assert!(first < last, "only one bucket {first} was written");
    assert!(
        totals.len() >= 2 && totals.windows(2).all(|w| w[0] < w[1]),
        "bucket {last} should have grown in place until final: totals seen {totals:?}"
    );
    let points = stored_points(&influx, DB);
    for start in (first..=last).step_by(60) {
        let expected = expected_bucket(&sim, start);
        assert!(
            !expected.is_empty(),
            "the Sim has traffic in bucket {start}"
        );
        assert_eq!(bucket_of(&points, start), expected, "bucket {start}");
    }
    assert_queue_names(&sim, &points);
    assert_contract_types(&influx, DB);
    assert_one_point_per_bucket(&influx, DB);
    // A bucket may reach its final numbers before the Sim's longest lag has passed; the
    // polls after that keep them (the re-query of a settled bucket changes nothing).
    let settled_at = (last + 60) * 1000 + SETTLE.as_millis() as u64;
    wait_for_kpi_polls_after(&sim, &service, settled_at, 2);
    std::thread::sleep(Duration::from_secs(2));
    let points = stored_points(&influx, DB);
    for start in (first..=last).step_by(60) {
        assert_eq!(
            bucket_of(&points, start),
            expected_bucket(&sim, start),
            "bucket {start} after it settled and was re-queried"
        );
    }
    assert!(
        !service.stderr().contains("ERROR"),
        "errors logged:\n{}",
        service.stderr()
    );
}
