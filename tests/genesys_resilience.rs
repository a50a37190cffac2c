//! The Genesys client must survive the real API, black-box: the built binary runs against
//! a simulated Genesys Cloud (`sim::Sim`) over loopback HTTP and a real influxd,
//! and each test injects one thing the real API does (paging, renames, expiring tokens,
//! 429, 5xx, dropped connections, bad JSON, unknown ids, 1,200 queues, refused
//! credentials) and then asserts on what landed in InfluxDB and on the Sim's request log.
//!
//! Exactness: with `value_period` equal to the poll interval, the value slot of a poll at
//! tick `t` is `t / poll`, also for a request retried within the tick, so every complete
//! window has exactly known min/max/mean/last values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys2influx::sim::{Endpoint, Fault, RequestRecord, Sim, SimOptions, UnknownQueues};
use serde_json::Value;

use crate::util::influxd::Influxd;
use crate::util::process::Service;
use crate::util::{sim_env, TempDir};

const DB: &str = "genesys";
/// Upper bound for anything the tests wait for (busy 2-core CI).
const PATIENCE: Duration = Duration::from_secs(30);

/// Poll interval and window of one test run, in seconds.
#[derive(Clone, Copy)]
struct Timing {
    poll: u64,
    window: u64,
}

impl Timing {
    fn samples(self) -> u64 {
        self.window / self.poll
    }

    fn window_of(self, time_s: u64) -> u64 {
        time_s / self.window * self.window
    }
}

fn sim(queue_count: usize, timing: Timing, max_page_size: usize) -> Sim {
    Sim::start(SimOptions {
        queue_count,
        value_period: Duration::from_secs(timing.poll),
        max_page_size,
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts")
}

fn influx() -> Influxd {
    let influx = Influxd::start_default();
    influx.create_database(DB);
    influx
}

/// `run` against `sim` and `influx` with `timing`, plus `extra` variables.
fn env(
    sim: &Sim,
    influx: Option<&Influxd>,
    timing: Timing,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = sim_env(sim);
    env.extend([
        ("POLL_INTERVAL", format!("{}s", timing.poll)),
        ("WINDOW", format!("{}s", timing.window)),
        ("KPIS", "off".to_string()),
        (
            "INFLUXDB_URL",
            influx.map_or_else(|| "-".to_string(), |i| i.url()),
        ),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("INSTANCE", "resilience".to_string()),
    ]);
    env.extend(extra.iter().cloned());
    env
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Rows of an InfluxQL query as column → value maps.
fn rows(influx: &Influxd, influxql: &str) -> Vec<BTreeMap<String, Value>> {
    let json = influx.query(DB, influxql);
    let mut out = Vec::new();
    let Some(all) = json["results"][0]["series"].as_array() else {
        return out;
    };
    for series in all {
        let columns: Vec<String> = series["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_string())
            .collect();
        for row in series["values"].as_array().expect("values") {
            let row = row.as_array().expect("row");
            out.push(columns.iter().cloned().zip(row.iter().cloned()).collect());
        }
    }
    out
}

/// `genesys_queue` points of one queue: window start → (samples, queue_name).
fn windows(influx: &Influxd, id: &str) -> BTreeMap<u64, (u64, String)> {
    rows(
        influx,
        &format!("SELECT samples, queue_name FROM genesys_queue WHERE queue_id = '{id}'"),
    )
    .into_iter()
    .map(|r| {
        (
            r["time"].as_u64().unwrap_or_default(),
            (
                r["samples"].as_u64().unwrap_or_default(),
                r["queue_name"].as_str().unwrap_or_default().to_string(),
            ),
        )
    })
    .collect()
}

/// The `queue_id` tag values stored in `genesys_queue`.
fn stored_ids(influx: &Influxd) -> BTreeSet<String> {
    influx
        .rows(
            DB,
            "SHOW TAG VALUES FROM genesys_queue WITH KEY = \"queue_id\"",
        )
        .into_iter()
        .filter_map(|row| row[1].as_str().map(str::to_string))
        .collect()
}

/// Waits (bounded) until `done` holds, re-checking every 250 ms.
fn wait_until(service: &Service, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}; service log:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until queue `id` has a complete window starting at or after `from_s`; returns
/// its start.
fn wait_for_complete_window(
    influx: &Influxd,
    service: &Service,
    timing: Timing,
    id: &str,
    from_s: u64,
) -> u64 {
    let mut found = 0;
    wait_until(
        service,
        &format!("a complete window from {from_s} for {id}"),
        || {
            found = windows(influx, id)
                .into_iter()
                .find(|(start, (samples, _))| *start >= from_s && *samples == timing.samples())
                .map_or(0, |(start, _)| start);
            found != 0
        },
    );
    found
}

/// Asserts that queue `id` has a complete window at every start in `first..=last` and
/// that its agent and conversation counts are exactly those of the Sim.
fn assert_complete_and_exact(
    sim: &Sim,
    influx: &Influxd,
    timing: Timing,
    id: &str,
    (first, last): (u64, u64),
    log: &str,
) {
    let stored = windows(influx, id);
    for start in (first..=last).step_by(timing.window as usize) {
        let samples = stored.get(&start).map(|(s, _)| *s);
        assert_eq!(
            samples,
            Some(timing.samples()),
            "queue {id}, window {start}: samples (a sample was lost); service log:\n{log}"
        );
        assert_window_exact(sim, influx, timing, id, start);
    }
}

/// The stored window of queue `id` at `start` equals what the Sim answered.
fn assert_window_exact(sim: &Sim, influx: &Influxd, timing: Timing, id: &str, start: u64) {
    let expected: Vec<_> = (start..start + timing.window)
        .step_by(timing.poll as usize)
        .map(|t| sim.observation_at(id, t / timing.poll))
        .collect();
    let clause = format!("queue_id = '{id}' AND time = {start}s");
    let agents = rows(
        influx,
        &format!("SELECT * FROM genesys_queue WHERE {clause}"),
    );
    let point = agents.first().expect("the window point");
    for (index, metric) in genesys2influx::model::AGENT_METRICS.iter().enumerate() {
        let values: Vec<f64> = expected.iter().map(|e| e.agents()[index]).collect();
        assert_summary(point, metric, &values, &format!("{id} {start}"));
    }
    for media in &SimOptions::default().media_types {
        let points = rows(
            influx,
            &format!("SELECT * FROM genesys_queue_media WHERE {clause} AND media_type = '{media}'"),
        );
        let point = points
            .first()
            .unwrap_or_else(|| panic!("no {media} point for {id} at {start}"));
        let waiting: Vec<f64> = expected
            .iter()
            .map(|e| e.media(media).map_or(-1.0, |m| m.waiting as f64))
            .collect();
        assert_summary(point, "waiting", &waiting, &format!("{id} {start} {media}"));
    }
}

fn assert_summary(point: &BTreeMap<String, Value>, metric: &str, values: &[f64], context: &str) {
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = values.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let last = values.last().copied().unwrap_or(f64::NAN);
    let field = |suffix: &str| {
        point
            .get(&format!("{metric}_{suffix}"))
            .and_then(Value::as_f64)
    };
    assert_eq!(field("min"), Some(min), "{context} {metric}_min");
    assert_eq!(field("max"), Some(max), "{context} {metric}_max");
    assert_eq!(field("last"), Some(last), "{context} {metric}_last");
    let got = field("mean").unwrap_or(f64::NAN);
    assert!(
        (got - mean).abs() < 1e-9,
        "{context} {metric}_mean {got} != {mean}"
    );
}

fn observation_requests(sim: &Sim) -> Vec<RequestRecord> {
    sim.requests()
        .into_iter()
        .filter(|r| r.endpoint == Some(Endpoint::Observations))
        .collect()
}

fn stop(mut service: Service) -> String {
    service.signal("TERM");
    let status = service.wait(PATIENCE);
    let log = service.stderr();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; log:\n{log}");
    log
}

/// Ids, an exact name with a comma (only possible in GENESYS_QUEUES_FILE), a `*` pattern
/// and an unknown id, resolved over 8 listing pages of 4 (the Sim caps `pageSize=100`):
/// exactly the selected queues reach InfluxDB and the unknown id is named in a warning.
#[test]
fn selection_by_id_name_and_wildcard_across_pages_ignores_an_unknown_id() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(30, timing, 4);
    let influx = influx();
    let queues = sim.queues();
    let by_name = |name: &str| {
        queues
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| id.clone())
            .expect("a Sim queue")
    };
    let unknown = "0badc0de-0000-4000-8000-000000000001";
    let dir = TempDir::new("selection");
    let file = dir.join("queues.txt");
    std::fs::write(
        &file,
        "# odd names need the file: they contain commas\nSales, EMEA = \"Tier 1\"\n",
    )
    .expect("write the queue file");
    let id_upper = by_name("Queue 0012").to_ascii_uppercase();
    let extra = [
        (
            "GENESYS_QUEUES",
            format!("{id_upper}, Queue 002*, {unknown}"),
        ),
        ("GENESYS_QUEUES_FILE", file.display().to_string()),
    ];
    let service = Service::start(&["run"], &env(&sim, Some(&influx), timing, &extra));

    let mut expected: BTreeSet<String> = queues
        .iter()
        .filter(|(_, name)| name.starts_with("Queue 002"))
        .map(|(id, _)| id.clone())
        .collect();
    expected.insert(by_name("Queue 0012"));
    expected.insert(by_name("Sales, EMEA = \"Tier 1\""));
    assert_eq!(expected.len(), 12);
    wait_until(&service, "every selected queue in InfluxDB", || {
        stored_ids(&influx).len() >= expected.len()
    });
    let odd = by_name("Sales, EMEA = \"Tier 1\"");
    let start = wait_for_complete_window(&influx, &service, timing, &odd, 0);
    let log = stop(service);

    assert_eq!(stored_ids(&influx), expected, "log:\n{log}");
    assert_window_exact(&sim, &influx, timing, &odd, start);
    assert!(
        log.contains("GENESYS_QUEUES entries that match no queue") && log.contains(unknown),
        "the unknown id is named in a warning; log:\n{log}"
    );
    let listing: Vec<String> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Some(Endpoint::Queues))
        .map(|r| r.query)
        .collect();
    for page in 1..=8 {
        assert!(
            listing.contains(&format!("pageSize=100&pageNumber={page}")),
            "page {page} of 8 was read: {listing:?}"
        );
    }
    assert!(observation_requests(&sim)
        .iter()
        .all(|r| !r.queue_ids.iter().any(|id| id == unknown)));
}

/// Between two refreshes (QUEUE_REFRESH=2s) one queue is renamed, one deleted and one
/// added: later points carry the new name, the deleted queue gets no later window and
/// the new queue is polled.
#[test]
fn renamed_deleted_and_added_queues_are_followed_at_the_next_refresh() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(12, timing, 100);
    let influx = influx();
    let queues = sim.queues();
    let (renamed, deleted, kept) = (&queues[9].0, &queues[10].0, &queues[11].0);
    let extra = [("QUEUE_REFRESH", "2s".to_string())];
    let service = Service::start(&["run"], &env(&sim, Some(&influx), timing, &extra));
    wait_for_complete_window(&influx, &service, timing, deleted, 0);

    assert!(sim.rename_queue(renamed, "Renamed – Queue Ω"));
    assert!(sim.delete_queue(deleted));
    let added = sim.add_queue("Added, Late");
    let first_added = {
        let mut first = 0;
        wait_until(&service, "a point of the added queue", || {
            first = windows(&influx, &added).keys().next().copied().unwrap_or(0);
            first != 0
        });
        first
    };
    let later = wait_for_complete_window(
        &influx,
        &service,
        timing,
        &added,
        first_added + timing.window,
    );
    wait_for_complete_window(&influx, &service, timing, renamed, later);
    wait_for_complete_window(&influx, &service, timing, kept, later);
    let log = stop(service);

    let after: Vec<(u64, String)> = windows(&influx, renamed)
        .into_iter()
        .filter(|(start, _)| *start > first_added)
        .map(|(start, (_, name))| (start, name))
        .collect();
    assert!(!after.is_empty());
    assert!(
        after.iter().all(|(_, name)| name == "Renamed – Queue Ω"),
        "points after the refresh carry the new name: {after:?}"
    );
    let gone_after: Vec<u64> = windows(&influx, deleted)
        .into_keys()
        .filter(|start| *start > first_added)
        .collect();
    assert!(
        gone_after.is_empty(),
        "the deleted queue got windows after the refresh: {gone_after:?}; log:\n{log}"
    );
    assert_window_exact(&sim, &influx, timing, &added, later);
    assert_window_exact(&sim, &influx, timing, renamed, later);
    assert!(log.contains("queue list refreshed"), "log:\n{log}");
}

/// A queue deleted mid-run can make Genesys refuse the whole observations query (400, the
/// strictest reading of the API, docs/genesys-api.md#missing-and-unknown). The chunk is
/// asked again at once without it, after a re-read of the queue list, although the last
/// refresh was only seconds ago: the other queues of the chunk lose no sample.
#[test]
fn a_queue_deleted_mid_run_costs_the_other_queues_of_its_chunk_no_sample() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = Sim::start(SimOptions {
        queue_count: 3,
        value_period: Duration::from_secs(timing.poll),
        unknown_queues: UnknownQueues::Reject,
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts");
    let influx = influx();
    let queues = sim.queues();
    let (first, deleted, last) = (&queues[0].0, &queues[1].0, &queues[2].0);
    let service = Service::start(&["run"], &env(&sim, Some(&influx), timing, &[]));
    wait_for_complete_window(&influx, &service, timing, first, 0);

    assert!(sim.delete_queue(deleted));
    let from = timing.window_of(now_s()) + timing.window;
    let to = from + 3 * timing.window;
    wait_for_complete_window(&influx, &service, timing, first, to);
    wait_for_complete_window(&influx, &service, timing, last, to);
    let log = stop(service);
    for id in [first, last] {
        assert_complete_and_exact(&sim, &influx, timing, id, (from, to), &log);
    }
    assert!(
        log.contains("retrying the rejected request without 1 queue(s) that no longer exist"),
        "log:\n{log}"
    );
}

/// SIGHUP re-resolves the queue list at once (QUEUE_REFRESH is left at 5 minutes): a
/// queue added afterwards is polled, and the listing was read again.
#[test]
fn sighup_re_resolves_the_queue_list_now() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(3, timing, 100);
    let influx = influx();
    let service = Service::start(&["run"], &env(&sim, Some(&influx), timing, &[]));
    let first = sim.queues()[0].0.clone();
    wait_for_complete_window(&influx, &service, timing, &first, 0);
    let listings = |sim: &Sim| {
        sim.requests()
            .iter()
            .filter(|r| r.endpoint == Some(Endpoint::Queues))
            .count()
    };
    assert_eq!(listings(&sim), 1, "one listing at start-up");
    let added = sim.add_queue("Added by SIGHUP");
    service.signal("HUP");
    let start = wait_for_complete_window(&influx, &service, timing, &added, 0);
    let log = stop(service);
    assert_eq!(
        listings(&sim),
        2,
        "one more listing after SIGHUP; log:\n{log}"
    );
    assert_window_exact(&sim, &influx, timing, &added, start);
    assert!(
        log.contains("SIGHUP: re-resolving the queue list"),
        "log:\n{log}"
    );
}

/// Runs the service on 4 queues, calls `disturb` once the first complete window is in,
/// then checks that every window from then on until two windows after `disturb` returned
/// is complete and exact. Returns the service log.
fn survives(timing: Timing, sim: &Sim, disturb: impl FnOnce()) -> String {
    let influx = influx();
    let service = Service::start(&["run"], &env(sim, Some(&influx), timing, &[]));
    let ids: Vec<String> = sim.queues().into_iter().map(|(id, _)| id).collect();
    let first_complete = wait_for_complete_window(&influx, &service, timing, &ids[0], 0);
    // The service polled through the first complete window, so every later one must be
    // complete too.
    let first = first_complete + timing.window;
    disturb();
    let last = timing.window_of(now_s()) + timing.window;
    for id in &ids {
        wait_for_complete_window(&influx, &service, timing, id, last);
    }
    let log = stop(service);
    for id in &ids {
        assert_complete_and_exact(sim, &influx, timing, id, (first, last), &log);
    }
    log
}

/// Tokens revoked three times mid-run: each time one 401, one renewal, the request
/// repeated, and no sample lost.
#[test]
fn a_token_revoked_mid_run_is_renewed_once_without_losing_a_sample() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(4, timing, 100);
    let log = survives(timing, &sim, || {
        for _ in 0..3 {
            sim.revoke_tokens();
            std::thread::sleep(Duration::from_millis(2300));
        }
    });
    let requests = sim.requests();
    let logins = requests
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::Token))
        .count();
    let refused = requests.iter().filter(|r| r.status == 401).count();
    assert_eq!(refused, 3, "one 401 per revocation; log:\n{log}");
    assert_eq!(
        logins, 4,
        "the start-up login and one renewal per revocation; log:\n{log}"
    );
    assert!(!log.contains(&SimOptions::default().client_secret));
}

/// Every 5th observation request gets 429 with `Retry-After: 1`. POLL_INTERVAL is 2 s:
/// a poll must end `min(1 s, poll/10)` before the next tick, so at 1 s a retry after
/// 1 s (+10 % jitter) could never fit and the sample would be dropped by design; at 2 s
/// it fits (deadline 1.8 s after the tick), and the Sim's 2 s value period keeps the
/// retried answer in the tick's value slot.
#[test]
fn rate_limited_requests_wait_retry_after_and_windows_stay_complete() {
    let timing = Timing { poll: 2, window: 4 };
    let sim = sim(4, timing, 100);
    sim.every_nth(
        Endpoint::Observations,
        5,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    let log = survives(timing, &sim, || {
        // Long enough for at least two 429s (one every fifth tick).
        std::thread::sleep(Duration::from_secs(10));
    });
    let requests = observation_requests(&sim);
    let limited: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].status == 429)
        .collect();
    assert!(limited.len() >= 2, "429s: {limited:?}; log:\n{log}");
    for &i in &limited {
        let retry = requests
            .get(i + 1)
            .expect("a retry after every 429 (the service ran on)");
        assert_eq!(retry.status, 200, "the retry after a 429 succeeds");
        assert!(
            retry.time_ms >= requests[i].time_ms + 1000,
            "Retry-After: 1 was honoured ({} ms)",
            retry.time_ms - requests[i].time_ms
        );
    }
}

/// Observation answers in a row with `null`s where objects and lists are expected.
const NULL_ANSWERS: u32 = 6;

/// A 500, a dropped connection and a truncated JSON answer, once each: each retried
/// within the tick, the service keeps running and every window is complete and exact.
/// Then answers with `null`s in them: read as absent, nothing lost.
#[test]
fn a_500_a_dropped_connection_malformed_json_and_nulls_are_survived() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(4, timing, 100);
    let log = survives(timing, &sim, || {
        for fault in [
            Fault::Status(500),
            Fault::DropConnection,
            Fault::MalformedJson,
        ] {
            sim.inject(Endpoint::Observations, fault, 1);
            std::thread::sleep(Duration::from_millis(2300));
        }
        // Not retried into a clean answer: six answers in a row (every attempt of a poll).
        sim.inject(Endpoint::Observations, Fault::Nulls, NULL_ANSWERS);
        std::thread::sleep(Duration::from_millis(8300));
    });
    let faults: Vec<Fault> = observation_requests(&sim)
        .into_iter()
        .filter_map(|r| r.fault)
        .collect();
    let mut expected = vec![
        Fault::Status(500),
        Fault::DropConnection,
        Fault::MalformedJson,
    ];
    expected.extend(std::iter::repeat_n(Fault::Nulls, NULL_ANSWERS as usize));
    assert_eq!(faults, expected, "log:\n{log}");
}

/// 1,200 queues at POLL_INTERVAL=5s: 12 requests of at most 100 ids per poll, together
/// covering every queue, spread over the interval less 0.5 s margin and 4 s of room for
/// retries (0.5 s / 12 = 41 ms apart), 144 requests/min within the default budget of
/// 300 × 80 %.
///
/// On a loaded machine a debug-built Sim may take ~0.5 s per 100-queue answer, and the
/// poller then rightly abandons the last request of a tick at its deadline; so every
/// finished tick must follow the plan, and at least one must be whole.
#[test]
fn twelve_hundred_queues_are_polled_in_twelve_spread_requests_within_the_budget() {
    let timing = Timing { poll: 5, window: 5 };
    let sim = sim(1200, timing, 100);
    let influx = influx();
    let service = Service::start(&["run"], &env(&sim, Some(&influx), timing, &[]));
    let all: BTreeSet<String> = sim.queues().into_iter().map(|(id, _)| id).collect();
    // Finished ticks: neither the first one seen (it may have started before the service
    // was ready) nor the one in progress.
    let finished = |sim: &Sim| -> Vec<(u64, Vec<RequestRecord>)> {
        let mut ticks: BTreeMap<u64, Vec<RequestRecord>> = BTreeMap::new();
        // The Sim logs a request once answered; requests run side by side, so the log
        // is sorted back into arrival order.
        let mut requests = observation_requests(sim);
        requests.sort_by_key(|r| r.time_ms);
        for r in requests {
            ticks.entry(r.time_ms / 5000 * 5000).or_default().push(r);
        }
        let count = ticks.len();
        ticks
            .into_iter()
            .skip(1)
            .take(count.saturating_sub(2))
            .collect()
    };
    let mut ticks = Vec::new();
    wait_until(&service, "a whole poll of 1,200 queues", || {
        ticks = finished(&sim);
        ticks.len() >= 2 && ticks.iter().any(|(_, requests)| requests.len() == 12)
    });
    wait_until(&service, "1,200 queues in InfluxDB", || {
        stored_ids(&influx).len() == all.len()
    });
    let log = stop(service);
    assert!(
        log.contains("polling 1,200 queues in 12 requests every 5s"),
        "log:\n{log}"
    );
    assert!(!log.contains("instead"), "not widened; log:\n{log}");
    for (tick, requests) in &ticks {
        let times: Vec<u64> = requests.iter().map(|r| r.time_ms - tick).collect();
        let context = format!("tick {tick}, requests at +ms {times:?}");
        assert!(requests.len() <= 12, "{context}");
        assert!(requests.iter().all(|r| r.status == 200), "{context}");
        assert!(
            requests.iter().all(|r| r.queue_ids.len() <= 100),
            "{context}"
        );
        let named: Vec<&String> = requests.iter().flat_map(|r| &r.queue_ids).collect();
        let distinct: BTreeSet<&String> = named.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            named.len(),
            "{context}: a queue asked twice"
        );
        if requests.len() == 12 {
            assert_eq!(named.len(), all.len(), "{context}");
            assert!(distinct.iter().all(|id| all.contains(*id)), "{context}");
        }
        assert!(
            requests.iter().all(|r| r.time_ms < tick + 5000),
            "{context}: within the poll interval"
        );
        // Request i is not sent before its slot, tick + i × 41 ms (the Sim logs arrival
        // times, so a slow request may delay the next one but never advance it).
        for (i, r) in requests.iter().enumerate() {
            let slot = tick + i as u64 * 500 / 12;
            assert!(
                r.time_ms + 5 >= slot,
                "{context}: request {i} before its slot"
            );
        }
    }
}

/// A refused secret at start-up: exit 77 naming the login URL and region, secret unsaid.
#[test]
fn refused_credentials_at_start_up_exit_77_naming_the_login_url() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(3, timing, 100);
    let secret = "wrong-secret-Zq8";
    let extra = [("GENESYS_CLIENT_SECRET", secret.to_string())];
    let mut service = Service::start(&["run"], &env(&sim, None, timing, &extra));
    let status = service.wait(PATIENCE);
    let log = service.stderr();
    assert_eq!(status.code(), Some(77), "log:\n{log}");
    assert!(
        log.contains(&format!(
            "refused the client credentials at {}/oauth/token",
            sim.base_url()
        )) && log.contains("region"),
        "log:\n{log}"
    );
    assert!(!log.contains(secret) && !service.stdout().contains(secret));
    // Said once, as the reason the service stops (not also by the login as a retry).
    let said = log.matches("refused the client credentials").count();
    assert_eq!(said, 1, "the refusal logged {said} times:\n{log}");
    assert!(!log.contains("next login attempt"), "log:\n{log}");
}

/// Nothing matched at all: exit 78, naming the selector that matched nothing.
#[test]
fn a_selection_matching_nothing_exits_78() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(3, timing, 100);
    let extra = [("GENESYS_QUEUES", "NoSuchQueue*".to_string())];
    let mut service = Service::start(&["run"], &env(&sim, None, timing, &extra));
    let status = service.wait(PATIENCE);
    let log = service.stderr();
    assert_eq!(status.code(), Some(78), "log:\n{log}");
    assert!(
        log.contains("no queue to poll") && log.contains("NoSuchQueue*"),
        "log:\n{log}"
    );
    assert!(observation_requests(&sim).is_empty());
}

// ---- Issue 12: retries that fit in the poll, coalesced SIGHUPs, a prompt stop during
// start-up.

/// The queue-windows of `[first, end)` whose `samples` equal the polls per window, and
/// how many there should be (every queue in every window).
fn complete_queue_windows(
    influx: &Influxd,
    timing: Timing,
    queues: u64,
    (first, end): (u64, u64),
) -> (u64, u64) {
    let complete = influx
        .rows(
            DB,
            &format!(
                "SELECT samples, queue_id FROM genesys_queue WHERE time >= {first}s AND time < {end}s"
            ),
        )
        .iter()
        .filter(|row| row[1].as_u64() == Some(timing.samples()))
        .count() as u64;
    (complete, queues * (end - first) / timing.window)
}

/// 1,200 queues at POLL_INTERVAL=5s while every 5th observation request gets 429
/// (`Retry-After: 1`) and every 23rd a 500: the retries fit in the poll, so at least 99 %
/// of the queue-windows are complete (before the poll kept room for them, ~4 % were not).
#[test]
fn with_429_and_500_faults_99_percent_of_1200_queue_windows_are_complete() {
    let timing = Timing { poll: 5, window: 5 };
    let sim = sim(1200, timing, 100);
    sim.every_nth(
        Endpoint::Observations,
        5,
        Fault::RateLimited {
            retry_after_secs: 1,
        },
    );
    sim.every_nth(Endpoint::Observations, 23, Fault::Status(500));
    let influx = influx();
    let service = Service::start(&["run"], &env(&sim, Some(&influx), timing, &[]));
    let mut first_poll_ms = 0;
    wait_until(&service, "the first observation request", || {
        first_poll_ms = observation_requests(&sim).first().map_or(0, |r| r.time_ms);
        first_poll_ms != 0
    });
    // The first window polled from its start, and eight more.
    let first = timing.window_of(first_poll_ms / 1000) + timing.window;
    let end = first + 9 * timing.window;
    // The last tick's poll (≤ 5 s) must be done before the stop closes its window.
    std::thread::sleep(Duration::from_secs((end + 6).saturating_sub(now_s())));
    let log = stop(service);
    let (complete, expected) = complete_queue_windows(&influx, timing, 1200, (first, end));
    let faults = observation_requests(&sim)
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert!(faults >= 20, "faults injected: {faults}");
    assert!(
        complete * 100 >= expected * 99,
        "{complete} of {expected} queue-windows complete ({:.2} %); log:\n{log}",
        complete as f64 * 100.0 / expected as f64
    );
}

/// A burst of 50 SIGHUPs is one queue-list refresh (two at most, when the burst spans the
/// budget's gap between refreshes) with one log line each, not one listing and one line
/// per signal: 300 queues polled every second leave 59 of the 240 planned requests per
/// minute, so refreshes of 3 pages come at most every ~3 s.
#[test]
fn a_burst_of_sighups_is_coalesced_into_refreshes_within_the_budget() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(300, timing, 100);
    let service = Service::start(&["run"], &env(&sim, None, timing, &[]));
    let listings = |sim: &Sim| {
        sim.requests()
            .iter()
            .filter(|r| r.endpoint == Some(Endpoint::Queues))
            .count()
    };
    wait_until(&service, "polling", || {
        !observation_requests(&sim).is_empty()
    });
    let at_start = listings(&sim);
    assert_eq!(at_start, 3, "three pages at start-up");
    for _ in 0..50 {
        service.signal("HUP");
    }
    // Long enough for the refresh after the next poll, and for a second one.
    std::thread::sleep(Duration::from_secs(5));
    let log = stop(service);
    let refreshes = log.matches("SIGHUP: re-resolving the queue list").count();
    let listed = listings(&sim) - at_start;
    assert!(
        (1..=2).contains(&refreshes),
        "{refreshes} refreshes; log:\n{log}"
    );
    assert_eq!(
        listed,
        3 * refreshes,
        "three pages per refresh; log:\n{log}"
    );
    assert!(
        log.lines().count() < 40,
        "{} log lines:\n{log}",
        log.lines().count()
    );
}

/// SIGTERM while the login hangs (the token answer comes after 20 s): the service exits 0
/// at once, not after the login request gives up.
#[test]
fn sigterm_during_a_slow_login_exits_0_at_once() {
    let timing = Timing { poll: 1, window: 2 };
    let sim = sim(3, timing, 100);
    sim.inject(Endpoint::Token, Fault::Delay(Duration::from_secs(20)), 5);
    let mut service = Service::start(&["run"], &env(&sim, None, timing, &[]));
    // The Sim logs a request once answered: give the login a second to be under way.
    std::thread::sleep(Duration::from_secs(1));
    let signalled = Instant::now();
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(5));
    let took = signalled.elapsed();
    let log = service.stderr();
    assert_eq!(status.code(), Some(0), "log:\n{log}");
    assert!(took < Duration::from_secs(2), "took {took:?}; log:\n{log}");
    assert!(log.contains("stopped during start-up"), "log:\n{log}");
}

/// A process stopped for 8 s (SIGSTOP, as a suspended VM would be) skips the ticks it
/// missed and says why: not a slow Genesys, not too small a budget.
#[test]
fn ticks_missed_while_the_process_was_stopped_are_blamed_on_the_pause() {
    let timing = Timing { poll: 1, window: 5 };
    let sim = sim(5, timing, 100);
    let service = Service::start(&["run"], &env(&sim, None, timing, &[]));
    wait_until(&service, "first polls", || {
        observation_requests(&sim).len() >= 2
    });
    service.signal("STOP");
    std::thread::sleep(Duration::from_secs(8));
    service.signal("CONT");
    service.wait_for_log("tick(s) late", PATIENCE);
    let log = stop(service);
    let late: Vec<&str> = log.lines().filter(|l| l.contains("tick(s) late")).collect();
    assert_eq!(late.len(), 1, "{log}");
    assert!(
        late[0].contains("the process did not run for") && !late[0].contains("POLL_INTERVAL"),
        "{}",
        late[0]
    );
}

/// Genesys failing every observation query from the start: no queue gets a point, but
/// every window still gets its self-metrics point, and it says why (`poll_errors`).
#[test]
fn self_metrics_are_written_every_window_while_every_poll_fails() {
    let timing = Timing { poll: 1, window: 5 };
    let sim = sim(5, timing, 100);
    sim.every_nth(Endpoint::Observations, 1, Fault::Status(503));
    let service = Service::start(&["run"], &env(&sim, None, timing, &[]));
    let self_metrics = |service: &Service| -> Vec<String> {
        service
            .stdout()
            .lines()
            .filter(|l| l.starts_with("genesys2influx,"))
            .map(str::to_string)
            .collect()
    };
    wait_until(&service, "two windows of self-metrics", || {
        self_metrics(&service).len() >= 2
    });
    let lines = self_metrics(&service);
    let stdout = service.stdout();
    stop(service);
    assert!(
        stdout.lines().all(|l| l.starts_with("genesys2influx,")),
        "a queue point without a successful poll:\n{stdout}"
    );
    assert!(
        lines.iter().all(|l| !l.contains(",poll_errors=0i")),
        "{lines:?}"
    );
}
