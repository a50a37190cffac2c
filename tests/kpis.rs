//! Contact-center KPIs, black-box: the built binary polls the simulated conversation
//! aggregates (late data growing for `kpi_settle` after each event) and a real influxd
//! ends up holding exactly the Sim's final numbers, one point per queue, media type and
//! bucket; a stop longer than the look-back is backfilled from `kpi-state.json`; a 403
//! disables KPIs but not observations; `KPIS=off` sends no aggregate query; and the
//! dashboard's KPI queries compute ratios of sums over the written data.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys2influx::sim::{Endpoint, KpiValues, RequestRecord, Sim, SimOptions};
use serde_json::Value;

use crate::core_pipeline::service_env;
use crate::util::influxd::Influxd;
use crate::util::process::{patience, Service};
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

fn aggregate_requests(sim: &Sim) -> Vec<RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.endpoint == Some(Endpoint::Aggregates))
        .collect()
}

/// Waits (bounded) until `genesys_queue` holds at least `count` points.
fn wait_for_observations(influx: &Influxd, db: &str, service: &Service, count: u64) {
    let deadline = Instant::now() + patience(SOON);
    loop {
        let rows = influx.rows(db, "SELECT count(\"samples\") FROM genesys_queue");
        let have = rows.first().and_then(|r| r[1].as_u64()).unwrap_or_default();
        if have >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than {count} genesys_queue points within {:?} ({have}); log:\n{}",
            patience(SOON),
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits (bounded) until `count` successful aggregate requests arrived after `after_ms`.
fn wait_for_kpi_polls_after(sim: &Sim, service: &Service, after_ms: u64, count: usize) {
    let deadline = Instant::now() + patience(Duration::from_secs(120));
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
    let deadline = Instant::now() + patience(Duration::from_secs(240));
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

// ---- 3 + 6: backfill after a long stop; the dashboard's KPI queries ---------------------

#[test]
fn a_stop_longer_than_the_look_back_is_backfilled_and_the_dashboard_reads_it() {
    const AFTER: &str = "genesys_after_restart";
    let sim = kpi_sim(12);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    influx.create_database(AFTER);
    let spool = TempDir::new("kpi-backfill");
    let state_path = spool.join("kpi-state.json");

    // First run: the service saves where the KPI re-querying resumes.
    let mut first = Service::start(&["run"], &kpi_env(&sim, &influx, &spool, DB, "2s"));
    let deadline = Instant::now() + SOON;
    while !state_path.exists() {
        assert!(
            Instant::now() < deadline,
            "no {} within {SOON:?}; log:\n{}",
            state_path.display(),
            first.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    first.signal("TERM");
    let status = first.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "log:\n{}", first.stderr());
    let stopped_ms = now_ms();
    let mut state: Value =
        serde_json::from_slice(&std::fs::read(&state_path).unwrap()).expect("state is JSON");
    let resume = state["resume_from_ms"].as_u64().expect("resume_from_ms");
    assert!(
        resume % BUCKET_MS == 0 && resume + LOOKBACK_MS + BUCKET_MS >= stopped_ms,
        "the resume point {state} should be a bucket within the look-back of {stopped_ms}"
    );

    // Pretend the service stayed down for ten minutes: same file, resume point moved back.
    let missed_from = resume - 10 * BUCKET_MS;
    state["resume_from_ms"] = missed_from.into();
    std::fs::write(&state_path, serde_json::to_vec_pretty(&state).unwrap()).unwrap();
    let restart_ms = now_ms();
    let second = Service::start(&["run"], &kpi_env(&sim, &influx, &spool, AFTER, "2s"));
    // Buckets before this are older than any normal poll's look-back: only a backfill
    // (into a database the first run never wrote) can bring them.
    let missed_to = floor(restart_ms - LOOKBACK_MS, BUCKET_MS);
    let missed: Vec<u64> = (missed_from / 1000..missed_to / 1000).step_by(60).collect();
    assert!(missed.len() >= 8, "missed buckets {missed:?}");
    let deadline = Instant::now() + SOON;
    loop {
        let points = stored_points(&influx, AFTER);
        let wrong: Vec<u64> = missed
            .iter()
            .copied()
            .filter(|&s| bucket_of(&points, s) != expected_bucket(&sim, s))
            .collect();
        if wrong.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "missed buckets {wrong:?} not backfilled with their final numbers; log:\n{}",
            second.stderr()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    second.wait_for_log("KPI backfill of missed buckets", SOON);
    for &s in &missed {
        assert!(!expected_bucket(&sim, s).is_empty(), "traffic in {s}");
    }
    assert_queue_names(&sim, &stored_points(&influx, AFTER));
    assert_one_point_per_bucket(&influx, AFTER);
    // The resume point moved on past the backfilled buckets.
    let deadline = Instant::now() + SOON;
    loop {
        let state: Value = serde_json::from_slice(&std::fs::read(&state_path).unwrap()).unwrap();
        if state["resume_from_ms"].as_u64().unwrap() >= missed_to {
            break;
        }
        assert!(Instant::now() < deadline, "resume point stuck at {state}");
        std::thread::sleep(Duration::from_millis(200));
    }

    check_dashboard_kpis(&sim, &influx, AFTER, &missed);
}

/// Grafana's `$queue` and `$media_type` (regexes), `$__interval` (s), and which
/// (queue id, media type) series that selects.
type Selection<'a> = (&'a str, &'a str, u64, Box<dyn Fn(&str, &str) -> bool + 'a>);

/// One column of a dashboard KPI query and how to compute it from the Sim's final numbers.
fn expected_column(column: &str, unit: &str, sum: &KpiValues) -> Option<f64> {
    let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
    match column.to_ascii_lowercase().as_str() {
        "offered" => Some(sum.offered as f64),
        "answered" => Some(sum.answered.count as f64),
        "abandoned" => Some(sum.abandoned.count as f64),
        "handled" => Some(sum.handled.count as f64),
        c if c.starts_with("service level") => {
            // Grafana shows a fraction with unit `percentunit`, a percentage with `percent`.
            let scale = match unit {
                "percentunit" => 1.0,
                "percent" => 100.0,
                other => panic!("service level shown with unit {other:?}"),
            };
            ratio(sum.sl_numerator, sum.sl_denominator).map(|r| r * scale)
        }
        "asa" => ratio(sum.answered.sum, sum.answered.count).map(|r| r / 1000.0),
        "aht" => ratio(sum.handled.sum, sum.handled.count).map(|r| r / 1000.0),
        "abandon rate" => ratio(sum.abandoned.count, sum.offered),
        // The queue's target, written only with a service-level sample.
        "target" => (sum.sl_denominator > 0).then_some(sum.sl_target),
        other => panic!(
            "dashboard column {other:?} of {MEASUREMENT} has no expectation in tests/kpis.rs; \
             add one (ratios of sums, never averages of averages)"
        ),
    }
}

/// Runs every dashboard query on `genesys_queue_interval` with Grafana's variables
/// substituted, over the settled `buckets` (starts, s), for all queues and for one queue,
/// and compares each returned value with the ratio of sums of the Sim's final numbers.
fn check_dashboard_kpis(sim: &Sim, influx: &Influxd, db: &str, buckets: &[u64]) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/grafana/genesys-queues.json"
    );
    let dashboard: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut panels = Vec::new();
    let mut stack: Vec<&Value> = dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = stack.pop() {
        stack.extend(panel["panels"].as_array().into_iter().flatten());
        let targets: Vec<String> = panel["targets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["query"].as_str())
            .filter(|q| q.contains(MEASUREMENT))
            .map(str::to_string)
            .collect();
        if !targets.is_empty() {
            panels.push((panel, targets));
        }
    }
    let queues = sim.queues();
    let (plain_id, plain_name) = queues
        .iter()
        .find(|(_, name)| name.starts_with("Queue "))
        .expect("a queue with a plain name");
    let first = *buckets.first().unwrap();
    let end = *buckets.last().unwrap() + 60;
    let selections: [Selection; 3] = [
        (".*", ".*", 900, Box::new(|_, _| true)),
        (".*", "voice", 3600, Box::new(|_, m| m == "voice")),
        (
            plain_name.as_str(),
            ".*",
            60,
            Box::new(move |id, _| id == plain_id),
        ),
    ];
    let mut seen = BTreeSet::new();
    for (panel, targets) in &panels {
        let title = panel["title"].as_str().unwrap_or_default();
        let unit = panel["fieldConfig"]["defaults"]["unit"]
            .as_str()
            .unwrap_or_default();
        for query in targets {
            for (queue, media, interval, selected) in &selections {
                let influxql = query
                    .replace(
                        "$timeFilter",
                        &format!("time >= {first}s AND time < {end}s"),
                    )
                    .replace("$__interval", &format!("{interval}s"))
                    .replace("$queue", queue)
                    .replace("$media_type", media)
                    .replace("$org", ".*");
                let json = influx.query(db, &influxql);
                // Graphs group by time into one series; tables by queue and media type,
                // one series each, over the whole range.
                let by_time = influxql.contains("GROUP BY time(");
                let all_series = json["results"][0]["series"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| {
                        panic!("{title}: no data for {influxql}");
                    });
                let mut non_null = 0;
                for series in &all_series {
                    let tag = |key: &str| series["tags"][key].as_str().map(str::to_string);
                    let (queue_tag, media_tag) = (tag("queue_name"), tag("media_type"));
                    let in_series = |id: &str, m: &str| {
                        // As stored: a trailing backslash or a newline becomes a space.
                        let name = queues.iter().find(|(q, _)| q == id).map(|(_, n)| {
                            let n = n.replace(['\n', '\r'], " ");
                            match n.strip_suffix('\\') {
                                Some(stem) => format!("{stem} "),
                                None => n,
                            }
                        });
                        queue_tag
                            .as_deref()
                            .is_none_or(|t| Some(t) == name.as_deref())
                            && media_tag.as_deref().is_none_or(|t| t == m)
                    };
                    let columns = series["columns"].as_array().unwrap();
                    for row in series["values"].as_array().unwrap() {
                        let group = row[0].as_u64().unwrap();
                        let mut sum = KpiValues::default();
                        let in_group = |s: u64| !by_time || floor(s, *interval) == group;
                        for &s in buckets.iter().filter(|&&s| in_group(s)) {
                            for (id, _) in &queues {
                                for m in
                                    MEDIA.iter().filter(|m| selected(id, m) && in_series(id, m))
                                {
                                    let kpis = sim.expected_kpis(id, m, s * 1000, BUCKET_MS);
                                    if kpis.sl_denominator > 0 {
                                        sum.sl_target = kpis.sl_target;
                                    }
                                    sum.merge(&kpis);
                                }
                            }
                        }
                        for (column, value) in columns.iter().zip(row.as_array().unwrap()).skip(1) {
                            let column = column.as_str().unwrap();
                            seen.insert(column.to_ascii_lowercase());
                            let expected = expected_column(column, unit, &sum);
                            let got = value.as_f64();
                            let context = format!("{title} / {column} at {group} for {influxql}");
                            match (expected, got) {
                                (Some(e), Some(g)) => {
                                    non_null += 1;
                                    assert!(
                                        (e - g).abs() <= 1e-9 * e.abs().max(1.0),
                                        "{context}: {g}, expected {e}"
                                    );
                                }
                                // No answered interaction: no ASA value (or InfluxDB's 0).
                                (None, None) | (None, Some(0.0)) => {}
                                // Nothing happened in that bucket: no point, `fill(null)`.
                                (Some(0.0), None) => {}
                                (e, g) => panic!(
                                    "{context}: {g:?}, expected {e:?} (series {queue_tag:?} {media_tag:?})"
                                ),
                            }
                        }
                    }
                }
                assert!(non_null > 0, "{title}: only empty values for {influxql}");
            }
        }
    }
    for kpi in ["service level", "target", "abandon rate", "asa", "aht"] {
        assert!(
            seen.iter().any(|c| c.starts_with(kpi)),
            "the dashboard has no {kpi} query on {MEASUREMENT} (columns: {seen:?})"
        );
    }
}

// ---- 4: 403 ---------------------------------------------------------------------------

#[test]
fn a_403_on_aggregates_disables_kpis_and_observations_keep_flowing() {
    let sim = kpi_sim(5);
    sim.forbid(Endpoint::Aggregates);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let spool = TempDir::new("kpi-403");
    let mut service = Service::start(&["run"], &kpi_env(&sim, &influx, &spool, DB, "2s"));
    service.wait_for_log("analytics:conversationAggregate:view", SOON);
    let log = service.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("analytics:conversationAggregate:view"))
        .unwrap();
    assert!(line.contains("ERROR") && line.contains("403"), "{line}");
    // Observations keep arriving after the 403: three more windows of all five queues,
    // time for several more KPI polls that must not happen.
    let rows = influx.rows(DB, "SELECT count(\"samples\") FROM genesys_queue");
    let before = rows.first().and_then(|r| r[1].as_u64()).unwrap_or_default();
    wait_for_observations(&influx, DB, &service, before + 3 * 5);
    let requests = aggregate_requests(&sim);
    assert_eq!(
        requests.len(),
        1,
        "one refused query, then no more: {requests:?}"
    );
    assert_eq!(requests[0].status, 403);
    let measurements = influx.rows(DB, "SHOW MEASUREMENTS");
    assert!(
        measurements.iter().all(|m| m[0] != MEASUREMENT),
        "{MEASUREMENT} written despite the 403: {measurements:?}"
    );
    assert!(measurements.iter().any(|m| m[0] == "genesys_queue"));
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0), "log:\n{}", service.stderr());
}

// ---- 5: KPIS=off ----------------------------------------------------------------------

#[test]
fn kpis_off_sends_no_aggregate_query() {
    let sim = kpi_sim(5);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let spool = TempDir::new("kpi-off");
    let mut env = kpi_env(&sim, &influx, &spool, DB, "1s");
    env.retain(|(key, _)| *key != "KPIS");
    env.push(("KPIS", "off".into()));
    let service = Service::start(&["run"], &env);
    service.wait_for_log("interval KPIs are off", SOON);
    // Four windows of observations: a KPI poll every second would have happened by now.
    wait_for_observations(&influx, DB, &service, 4 * 5);
    assert_eq!(aggregate_requests(&sim), Vec::new());
    assert!(influx
        .rows(DB, "SHOW MEASUREMENTS")
        .iter()
        .all(|m| m[0] != MEASUREMENT));
    assert!(!spool.join("kpi-state.json").exists());
}

/// A resume point that cannot be saved is warned about once, not after every KPI poll,
/// with the hint that fits the cause (here a directory in the way, not "permissions").
#[test]
fn an_unsavable_resume_point_is_warned_about_once() {
    let sim = kpi_sim(3);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let spool = TempDir::new("kpi-state-blocked");
    std::fs::create_dir(spool.join("kpi-state.json")).expect("a directory in the way");
    let started = now_ms();
    let mut service = Service::start(&["run"], &kpi_env(&sim, &influx, &spool, DB, "1s"));
    wait_for_kpi_polls_after(&sim, &service, started, 4);
    service.signal("TERM");
    service.wait(Duration::from_secs(30));
    let log = service.stderr();
    let warnings = log.matches("cannot save the KPI resume point").count();
    assert_eq!(warnings, 1, "warned {warnings} times:\n{log}");
    assert!(log.contains("a directory is in the way"), "{log}");
    assert!(!log.contains("permissions"), "{log}");
}

// ---- request plan ----------------------------------------------------------------------

/// The aggregate requests of each KPI poll, the last (maybe unfinished) one left out. A
/// poll fires `TICK_DELAY` (5 s) after a multiple of `KPI_POLL` and ends within it.
fn requests_per_poll(sim: &Sim, poll_ms: u64) -> Vec<Vec<RequestRecord>> {
    let mut polls: BTreeMap<u64, Vec<RequestRecord>> = BTreeMap::new();
    for r in aggregate_requests(sim) {
        polls
            .entry((r.time_ms - 5_000) / poll_ms)
            .or_default()
            .push(r);
    }
    polls.pop_last();
    polls.into_values().collect()
}

/// Starts `run` with `queue_count` queues and `KPI_POLL=poll_s`, waits for `polls`
/// complete polls and returns the aggregate requests of each.
fn measure_polls(queue_count: usize, poll_s: u64, polls: usize) -> Vec<Vec<RequestRecord>> {
    let sim = kpi_sim(queue_count);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let spool = TempDir::new("kpi-rate");
    let mut env = kpi_env(&sim, &influx, &spool, DB, &format!("{poll_s}s"));
    // The defaults for observations, so the budget planner sees a realistic load.
    env.retain(|(key, _)| !matches!(*key, "POLL_INTERVAL" | "WINDOW"));
    let service = Service::start(&["run"], &env);
    let deadline = Instant::now() + Duration::from_secs(30 + 2 * poll_s * polls as u64);
    loop {
        let done = requests_per_poll(&sim, poll_s * 1000);
        if done.len() >= polls {
            let log = service.stderr();
            if let Some(plan) = log.lines().find(|l| l.contains("KPIs: ")) {
                println!("{plan}");
            }
            if let Some(plan) = log.lines().find(|l| l.contains("polling ")) {
                println!("{plan}");
            }
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {polls} KPI polls; log:\n{}",
            done.len(),
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn assert_each_poll_asks_every_queue_once(queue_count: usize, polls: &[Vec<RequestRecord>]) {
    let chunks = queue_count.div_ceil(100);
    for poll in polls {
        assert_eq!(poll.len(), chunks, "requests of one poll: {poll:?}");
        let mut ids = BTreeSet::new();
        for r in poll {
            assert_eq!(r.status, 200);
            assert!(r.queue_ids.len() <= 100);
            for id in &r.queue_ids {
                assert!(ids.insert(id.clone()), "{id} asked twice in one poll");
            }
        }
        assert_eq!(ids.len(), queue_count);
    }
}

#[test]
fn each_kpi_poll_asks_for_every_queue_once_in_chunks_of_100() {
    let polls = measure_polls(250, 5, 2);
    assert_each_poll_asks_every_queue_once(250, &polls);
}

/// The numbers of docs/kpis.md: `cargo test --test main kpi_request_rate -- --ignored
/// --nocapture`.
#[test]
#[ignore = "slow measurement for docs/kpis.md"]
fn kpi_request_rate_at_100_1000_and_3000_queues() {
    for (queues, poll_s) in [(100, 5), (1000, 5), (3000, 20)] {
        let polls = measure_polls(queues, poll_s, 3);
        assert_each_poll_asks_every_queue_once(queues, &polls);
        let per_poll = polls[0].len();
        let spans: Vec<u64> = polls
            .iter()
            .map(|p| p.last().unwrap().time_ms - p[0].time_ms)
            .collect();
        println!(
            "{queues} queues: {per_poll} aggregate requests per KPI poll (first to last request \
             {spans:?} ms) = {} per minute at KPI_POLL={poll_s}s, {per_poll} per minute at the \
             default KPI_POLL=60s",
            per_poll as u64 * 60 / poll_s
        );
    }
}
