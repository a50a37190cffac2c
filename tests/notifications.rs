//! Notifications, black-box: the built binary, a real influxd and the simulated Genesys
//! Cloud speaking the Notifications API (channels, subscriptions, a websocket on
//! loopback), at production cadence (`POLL_INTERVAL=10s`, `WINDOW=60s`), with each
//! queue's values changing once a minute at a random moment of its own.
//!
//! Freshness: every change of a queue's agent counts is in InfluxDB (the live point's
//! `_last`) within 2 s of the moment the simulator changed it. Exactness: every final
//! window holds exactly the readings the simulator's request log implies (regular polls
//! placed at their tick, early re-polls at their moment), with the time-weighted mean.
//! The same while the socket is dropped, goes silent, is announced closing and its
//! channel expires; the request budget is never exceeded. Without the permission to
//! create channels, `auto` polls as before with one warning. 2,500 queues take three
//! channels, every queue subscribed.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use genesys2influx::aggregate::mean::time_weighted_mean;
use genesys2influx::model::AGENT_METRICS;
use genesys2influx::sim::{Endpoint, Fault, Sim, SimOptions, SocketFault};

use crate::util::gate::now_ms;
use crate::util::influxd::Influxd;
use crate::util::process::Service;
use crate::util::sim_env;
use crate::util::wall::{read_into, Sightings};

const DB: &str = "genesys";
const POLL_MS: u64 = 10_000;
const WINDOW_MS: u64 = 60_000;
const QUEUES: usize = 100;
/// The goal: a change readable in InfluxDB within this long.
const FRESH_MS: u64 = 2_000;
/// The simulator's heartbeat: the watchdog learns it and gives up after twice as long.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// The default budget: no minute may see more requests.
const BUDGET: usize = 300;

/// `queues` queues, each changing once a minute at a moment of its own.
fn sim(queues: usize) -> Sim {
    Sim::start(SimOptions {
        queue_count: queues,
        value_period: Duration::from_millis(WINDOW_MS),
        changes_at_random_moments: true,
        heartbeat_period: HEARTBEAT,
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts")
}

fn env(sim: &Sim, influx: &Influxd, notifications: &str) -> Vec<(&'static str, String)> {
    let mut env = sim_env(sim);
    env.extend([
        ("NOTIFICATIONS", notifications.to_string()),
        ("POLL_INTERVAL", "10s".to_string()),
        ("WINDOW", "60s".to_string()),
        ("LIVE_UPDATES", "on".to_string()),
        ("KPIS", "off".to_string()),
        ("INFLUXDB_URL", influx.url()),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("INSTANCE", "notifications-test".to_string()),
    ]);
    env
}

/// Reads the newest point of every queue every 150 ms until `until_ms`, running
/// `at(ms)` between reads (fault injection).
fn watch(influx: &Influxd, until_ms: u64, mut at: impl FnMut(u64)) -> Sightings {
    let mut seen: Sightings = HashMap::new();
    // Bounded by `until_ms` (a few minutes at most).
    while now_ms() < until_ms {
        let stamp = read_into(influx, DB, WINDOW_MS, &mut seen);
        at(stamp);
        std::thread::sleep(Duration::from_millis(150));
    }
    seen
}

/// How long each change of agent counts in `[from_ms, to_ms)` took to show: `(change
/// time, queue, delay ms)`; a change followed by another within 3 s is left out (the
/// wall may skip it), and one never seen is `u64::MAX`.
fn delays(sim: &Sim, seen: &Sightings, from_ms: u64, to_ms: u64) -> Vec<(u64, String, u64)> {
    let mut out = Vec::new();
    for (id, _) in sim.queues() {
        let log = sim.value_changes(&id, from_ms - WINDOW_MS, to_ms);
        for pair in log.windows(2) {
            let ((_, before), (at, after)) = (&pair[0], &pair[1]);
            if *at < from_ms || before.agents() == after.agents() {
                continue;
            }
            let next = log
                .iter()
                .find(|(t, _)| t > at)
                .map_or(u64::MAX, |(t, _)| *t);
            if next < at + 3_000 {
                continue;
            }
            let shown = seen
                .get(&id)
                .into_iter()
                .flatten()
                .find(|(stamp, values)| stamp >= at && *values == after.agents())
                .map_or(u64::MAX, |(stamp, _)| stamp - at);
            out.push((*at, id.clone(), shown));
        }
    }
    out
}

fn percentile(delays: &[(u64, String, u64)], p: f64) -> u64 {
    let mut d: Vec<u64> = delays.iter().map(|(_, _, d)| *d).collect();
    d.sort_unstable();
    d[((d.len() as f64 * p).ceil() as usize).clamp(1, d.len()) - 1]
}

/// One reading the simulator's log implies: placed at (tick or moment), agent counts, and
/// whether the log cannot tell it belongs to this window.
type Reading = (u64, [f64; 8], Place);

/// Which window an early re-poll answered after a window's last tick belongs to depends on
/// whether its answer reached the service before the last tick's (the log shows neither):
/// within [`AMBIGUOUS_MS`] of that tick's request it may be either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Sure,
    /// At the end of its own window, if it was answered before the last tick was done.
    MaybeTail,
    /// Else at the start of the next window.
    MaybeHead,
}

const AMBIGUOUS_MS: u64 = 1_000;

/// The readings of every queue per final window, from the simulator's request log:
/// regular polls (a request for all queues) placed at their tick, early re-polls at
/// their moment, an early one after its window's last regular poll counted in the next
/// (placed at its start).
fn readings(sim: &Sim) -> BTreeMap<(u64, String), Vec<Reading>> {
    let requests: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == Some(Endpoint::Observations) && r.status == 200)
        .collect();
    let mut last_regular: HashMap<u64, u64> = HashMap::new();
    for r in requests.iter().filter(|r| r.queue_ids.len() == QUEUES) {
        let window = r.time_ms - r.time_ms % WINDOW_MS;
        let last = last_regular.entry(window).or_insert(0);
        *last = (*last).max(r.time_ms);
    }
    let mut out: BTreeMap<(u64, String), Vec<Reading>> = BTreeMap::new();
    for r in &requests {
        let regular = r.queue_ids.len() == QUEUES;
        let at = if regular {
            r.time_ms - r.time_ms % POLL_MS
        } else {
            r.time_ms
        };
        let window = at - at % WINDOW_MS;
        let after_last = last_regular
            .get(&window)
            .filter(|last| !regular && r.time_ms > **last)
            .copied();
        for id in &r.queue_ids {
            let slot = sim.queue_slot_at(id, r.time_ms).unwrap();
            let agents = sim.observation_at(id, slot).agents();
            let next = window + WINDOW_MS;
            match after_last {
                None => {
                    out.entry((window, id.clone()))
                        .or_default()
                        .push((at, agents, Place::Sure))
                }
                Some(last) if r.time_ms < last + AMBIGUOUS_MS => {
                    out.entry((window, id.clone())).or_default().push((
                        at,
                        agents,
                        Place::MaybeTail,
                    ));
                    out.entry((next, id.clone())).or_default().push((
                        next,
                        agents,
                        Place::MaybeHead,
                    ));
                }
                Some(_) => {
                    out.entry((next, id.clone()))
                        .or_default()
                        .push((next, agents, Place::Sure))
                }
            }
        }
    }
    for readings in out.values_mut() {
        readings.sort_by_key(|(at, _, _)| *at);
    }
    out
}

/// Window `start` of every queue is what the readings imply: samples, min, max and last
/// exactly; the time-weighted mean within what the milliseconds between the simulator's
/// receipt and the service's answer can move it. Where the log cannot tell which window
/// an early re-poll went to, either must match.
fn assert_exact(sim: &Sim, influx: &Influxd, start: u64, log: &str) {
    let readings = readings(sim);
    for (id, _) in sim.queues() {
        let json = influx.query(
            DB,
            &format!(
                "SELECT * FROM genesys_queue WHERE \"queue_id\" = '{id}' AND time = {start}ms"
            ),
        );
        let series = &json["results"][0]["series"][0];
        let columns: Vec<String> = series["columns"]
            .as_array()
            .unwrap_or_else(|| panic!("no point for {id} at {start}\n{log}"))
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        let row = &series["values"][0];
        let field = |name: &str| -> f64 {
            let pos = columns.iter().position(|c| c == name).unwrap();
            row[pos].as_f64().unwrap()
        };
        let all = &readings[&(start, id.clone())];
        let candidates: Vec<Vec<(u64, [f64; 8])>> =
            [(true, false), (true, true), (false, false), (false, true)]
                .iter()
                .map(|&(tail, head)| {
                    all.iter()
                        .filter(|(_, _, place)| match place {
                            Place::Sure => true,
                            Place::MaybeTail => tail,
                            Place::MaybeHead => head,
                        })
                        .map(|(at, v, _)| (*at, *v))
                        .collect()
                })
                .collect();
        let mismatches: Vec<String> = candidates
            .iter()
            .flat_map(|got| [got.clone(), overtaken(got)])
            .flat_map(|got| with_one_early_abandoned(&got))
            .map(|got| mismatch(&got, start, &field))
            .collect();
        assert!(
            mismatches.iter().any(String::is_empty),
            "queue {id} window {start}: {mismatches:?}; readings {all:?}\n{log}"
        );
    }
}

/// `got`, and `got` without each one of its early readings: the service gives up on an
/// early re-poll whose answer is not back within `EARLY_REQUEST_DEADLINE` (the regular
/// poll reads the queue anyway), while the simulator's log shows the request answered.
/// At most one per window is allowed for; regular readings are never left out.
fn with_one_early_abandoned(got: &[(u64, [f64; 8])]) -> Vec<Vec<(u64, [f64; 8])>> {
    let mut variants = vec![got.to_vec()];
    for (i, (at, _)) in got.iter().enumerate() {
        if at % POLL_MS != 0 {
            let mut without = got.to_vec();
            without.remove(i);
            variants.push(without);
        }
    }
    variants
}

/// The readings in the order the service may have received them: a regular answer (100
/// queues) can reach it after an early one (1 queue) sent within a second after it; the
/// older reading then counts in `samples`, `_min` and `_max` but weighs nothing and is not
/// `_last`. Unchanged when no such pair.
fn overtaken(got: &[(u64, [f64; 8])]) -> Vec<(u64, [f64; 8])> {
    let mut order = got.to_vec();
    for i in 1..order.len() {
        let (regular, early) = (order[i - 1].0, order[i].0);
        if regular % POLL_MS == 0 && early % POLL_MS != 0 && early - regular < 1_000 {
            order.swap(i - 1, i);
        }
    }
    order
}

/// What in the point differs from `got`'s readings ("" when nothing).
fn mismatch(got: &[(u64, [f64; 8])], start: u64, field: &dyn Fn(&str) -> f64) -> String {
    if got.is_empty() || field("samples") as usize != got.len() {
        return format!("samples {} vs {} readings", field("samples"), got.len());
    }
    for (i, metric) in AGENT_METRICS.iter().enumerate() {
        let values: Vec<f64> = got.iter().map(|(_, v)| v[i]).collect();
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // An answer older than the reading before it (an overtaken tick) is not `_last`.
        let mut newest = 0;
        let mut last = values[0];
        for (at, v) in got {
            if *at >= newest {
                newest = *at;
                last = v[i];
            }
        }
        let written = |suffix: &str| field(&format!("{metric}_{suffix}"));
        if (written("min"), written("max"), written("last")) != (min, max, last) {
            return format!("{metric} min/max/last {min}/{max}/{last}");
        }
        let placed: Vec<(u64, f64)> = got.iter().map(|(at, v)| (*at, v[i])).collect();
        let mean = time_weighted_mean(start, &placed, POLL_MS).unwrap();
        if (written("mean") - mean).abs() > 0.002 * (max - min) + 1e-9 {
            return format!("{metric} mean {} vs {mean}", written("mean"));
        }
    }
    String::new()
}

/// No UTC minute saw more API requests (token requests aside) than the budget.
fn assert_within_budget(sim: &Sim) {
    let mut per_minute: BTreeMap<u64, usize> = BTreeMap::new();
    for r in sim.requests() {
        if r.endpoint.is_some_and(|e| e != Endpoint::Token) {
            *per_minute.entry(r.time_ms / 60_000).or_default() += 1;
        }
    }
    assert!(
        per_minute.values().all(|n| *n <= BUDGET),
        "requests per minute: {per_minute:?}"
    );
}

/// A self-metric summed over every `genesys2influx` point.
fn self_metric(influx: &Influxd, field: &str) -> i64 {
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
    assert_eq!(status.code(), Some(0), "{log}");
    log
}

/// Starts the service; returns it with the first window it covers whole.
fn start(sim: &Sim, influx: &Influxd, notifications: &str) -> (Service, u64) {
    let service = Service::start(&["run"], &env(sim, influx, notifications));
    let first_whole = now_ms() - now_ms() % WINDOW_MS + WINDOW_MS;
    (service, first_whole)
}

fn sleep_until(ms: u64) {
    let wait = ms.saturating_sub(now_ms());
    std::thread::sleep(Duration::from_millis(wait));
}

#[test]
fn every_change_is_in_influxdb_within_two_seconds_and_every_window_is_exact() {
    let sim = sim(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let (service, window) = start(&sim, &influx, "on");
    sleep_until(window);
    let seen = watch(&influx, window + WINDOW_MS, |_| {});
    sleep_until(window + WINDOW_MS + 3_000);
    let log = stop(service);
    let delays = delays(&sim, &seen, window, window + WINDOW_MS - FRESH_MS);
    assert!(
        delays.len() >= QUEUES / 2,
        "changes measured: {}",
        delays.len()
    );
    let late: Vec<_> = delays.iter().filter(|(_, _, d)| *d > FRESH_MS).collect();
    eprintln!(
        "freshness of {} changes: p50 {} ms, p95 {} ms, max {} ms",
        delays.len(),
        percentile(&delays, 0.5),
        percentile(&delays, 0.95),
        percentile(&delays, 1.0)
    );
    eprintln!(
        "later than {FRESH_MS} ms: {late:?}; early_polls_skipped {}",
        self_metric(&influx, "early_polls_skipped")
    );
    assert!(
        late.is_empty(),
        "changes shown later than {FRESH_MS} ms: {late:?}\n{log}"
    );
    assert_exact(&sim, &influx, window, &log);
    assert_within_budget(&sim);
    assert_at_most_once_a_second(&sim);
    assert!(!log.contains("WARN"), "{log}");
}

/// A channel that lives 8 s is replaced every 6 s by a new one, subscribed and connected
/// before the old socket closes: freshness holds throughout and no warning is said.
#[test]
fn channels_are_renewed_before_they_expire_without_a_gap() {
    let sim = Sim::start(SimOptions {
        queue_count: QUEUES,
        value_period: Duration::from_secs(20),
        changes_at_random_moments: true,
        heartbeat_period: HEARTBEAT,
        channel_lifetime: Duration::from_secs(8),
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts");
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let mut env = env(&sim, &influx, "on");
    env.push((
        "RUST_LOG",
        "info,genesys2influx::notifications=debug".to_string(),
    ));
    let service = Service::start(&["run"], &env);
    let from = now_ms() + 3_000;
    let seen = watch(&influx, from + 25_000, |_| {});
    let log = stop(service);
    let delays = delays(&sim, &seen, from, from + 25_000 - FRESH_MS);
    assert!(delays.len() >= 50, "changes measured: {}", delays.len());
    let late: Vec<_> = delays.iter().filter(|(_, _, d)| *d > FRESH_MS).collect();
    assert!(percentile(&delays, 0.95) <= FRESH_MS, "{late:?}\n{log}");
    let created = sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::NotificationChannels))
        .count();
    assert!(created >= 4, "channels created: {created}\n{log}");
    assert_eq!(self_metric(&influx, "notification_reconnects"), 0, "{log}");
    assert!(!log.contains("WARN"), "{log}");
}

/// The simulator kept the topic's promise: at most one message per queue per second.
fn assert_at_most_once_a_second(sim: &Sim) {
    let mut last: HashMap<String, u64> = HashMap::new();
    for (at, id) in sim.published() {
        if let Some(previous) = last.insert(id.clone(), at) {
            assert!(
                at >= previous + 1_000,
                "{id} published at {previous} and {at}"
            );
        }
    }
}

#[test]
fn freshness_returns_within_seconds_of_every_socket_fault_and_no_window_is_lost() {
    let sim = sim(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let (service, window) = start(&sim, &influx, "on");
    sleep_until(window);
    // A fault every 10-12 s; each may cost freshness until the socket is back (the silent
    // one: twice the heartbeat period, then a reconnect).
    let faults: [(u64, &str); 5] = [
        (4_000, "drop"),
        (14_000, "silence"),
        (26_000, "closing"),
        (36_000, "expiry"),
        (47_000, "oversized"),
    ];
    let recovery = 2 * HEARTBEAT.as_millis() as u64 + 3_000;
    let mut next = 0;
    let seen = watch(&influx, window + WINDOW_MS, |now| {
        if let Some((offset, fault)) = faults.get(next) {
            if now >= window + offset {
                next += 1;
                match *fault {
                    "drop" => sim.socket_fault(SocketFault::Drop),
                    "silence" => sim.socket_fault(SocketFault::StopHeartbeats),
                    "closing" => sim.socket_fault(SocketFault::SocketClosing),
                    "oversized" => sim.socket_fault(SocketFault::Oversized),
                    _ => sim.expire_channels(),
                }
                sim.socket_fault(SocketFault::Garbage);
            }
        }
    });
    sleep_until(window + WINDOW_MS + 3_000);
    let log = stop(service);
    let delays = delays(&sim, &seen, window, window + WINDOW_MS - FRESH_MS);
    let hit = |at: u64| {
        faults
            .iter()
            .any(|(offset, _)| (window + offset..window + offset + recovery).contains(&at))
    };
    let late: Vec<_> = delays
        .iter()
        .filter(|(at, _, d)| *d > FRESH_MS && !hit(*at))
        .collect();
    assert!(
        late.is_empty(),
        "changes shown later than {FRESH_MS} ms outside the faults: {late:?}\n{log}"
    );
    // During a fault the regular poll still reads every queue.
    let stale: Vec<_> = delays
        .iter()
        .filter(|(_, _, d)| *d > POLL_MS + FRESH_MS)
        .collect();
    assert!(
        stale.is_empty(),
        "changes not even polled: {stale:?}\n{log}"
    );
    assert_exact(&sim, &influx, window, &log);
    assert_within_budget(&sim);
    let reconnects = self_metric(&influx, "notification_reconnects");
    assert!(
        reconnects >= 5,
        "notification_reconnects {reconnects}\n{log}"
    );
    assert!(log.contains("over the limit"), "{log}");
    assert!(log.contains("said nothing for"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
    assert!(log.contains("is gone (expired or evicted)"), "{log}");
}

#[test]
fn without_the_permission_auto_polls_as_before_with_one_warning() {
    let sim = sim(20);
    sim.forbid(Endpoint::NotificationChannels);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let mut env = env(&sim, &influx, "auto");
    env.extend([
        ("POLL_INTERVAL", "1s".to_string()),
        ("WINDOW", "2s".to_string()),
    ]);
    let service = Service::start(&["run"], &env);
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded: until three windows are written.
    while influx
        .rows(
            DB,
            "SELECT count(\"samples\") FROM genesys_queue GROUP BY time(2s)",
        )
        .iter()
        .filter(|row| row[1].as_u64() == Some(20))
        .count()
        < 3
    {
        assert!(Instant::now() < deadline, "{}", service.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = stop(service);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("notifications unavailable"), "{log}");
    assert!(
        warnings[0].contains("missing.permissions") || warnings[0].contains("permission"),
        "{log}"
    );
    let creations = sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::NotificationChannels))
        .count();
    assert_eq!(creations, 1, "retried only every few minutes");
    let samples = influx.rows(DB, "SELECT \"samples\" FROM genesys_queue");
    assert!(
        samples
            .iter()
            .all(|row| row[1].as_u64().is_some_and(|s| s <= 2)),
        "no early re-polls: {samples:?}"
    );
}

#[test]
fn twenty_five_hundred_queues_take_three_channels_with_every_queue_subscribed() {
    let sim = sim(2_500);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let service = Service::start(&["run"], &env(&sim, &influx, "on"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let all: std::collections::BTreeSet<String> =
        sim.queues().into_iter().map(|(id, _)| id).collect();
    // Bounded: until three channels hold every queue between them.
    loop {
        let channels = sim.subscriptions();
        let mut sizes: Vec<usize> = channels.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        let covered: std::collections::BTreeSet<String> = channels.into_iter().flatten().collect();
        if sizes == [500, 1_000, 1_000] && covered == all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "channels {sizes:?}\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Changes of queues on every channel arrive.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let published: std::collections::BTreeSet<String> =
            sim.published().into_iter().map(|(_, id)| id).collect();
        let mut sorted: Vec<&String> = all.iter().collect();
        sorted.sort();
        if [0, 1_000, 2_000].iter().all(|start| {
            sorted[*start..*start + 1_000.min(2_500 - start)]
                .iter()
                .any(|id| published.contains(*id))
        }) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", service.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = stop(service);
    assert!(!log.contains("WARN"), "{log}");
}

/// The subscriptions follow the queue list: a queue added and resolved (SIGHUP) is
/// subscribed, a deleted one leaves the channel.
#[test]
fn the_subscriptions_follow_the_queue_list() {
    let sim = sim(20);
    // The first subscription fails whole (every retry of the client dropped): the channel
    // is subscribed again, not replaced.
    sim.inject(Endpoint::Subscriptions, Fault::DropConnection, 6);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let mut env = env(&sim, &influx, "on");
    env.push(("HTTP_TIMEOUT", "20s".to_string()));
    let service = Service::start(&["run"], &env);
    let wait_for = |what: &str, done: &dyn Fn(&[Vec<String>]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        // Bounded by the deadline.
        while !done(&sim.subscriptions()) {
            assert!(
                Instant::now() < deadline,
                "{what}: {:?}\n{}",
                sim.subscriptions(),
                service.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("20 queues subscribed", &|c| {
        c.len() == 1 && c[0].len() == 20
    });
    let added = sim.add_queue("Added later");
    let (deleted, _) = sim.queues()[3].clone();
    sim.delete_queue(&deleted);
    service.signal("HUP");
    wait_for("the new list subscribed", &|c| {
        c.len() == 1 && c[0].contains(&added) && !c[0].contains(&deleted)
    });
    let log = stop(service);
    assert!(!log.contains("WARN"), "{log}");
    let created = sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::NotificationChannels))
        .count();
    assert_eq!(created, 1, "{log}");
}

/// With `NOTIFICATIONS=on` a refusal is said loudly, and the service keeps polling and
/// writing; it never exits for it.
#[test]
fn with_notifications_on_a_refusal_warns_and_polling_goes_on() {
    let sim = sim(5);
    sim.forbid(Endpoint::NotificationChannels);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let mut env = env(&sim, &influx, "on");
    env.extend([
        ("POLL_INTERVAL", "1s".to_string()),
        ("WINDOW", "2s".to_string()),
    ]);
    let service = Service::start(&["run"], &env);
    service.wait_for_log(
        "notifications cannot be used (NOTIFICATIONS=on)",
        Duration::from_secs(20),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    // Bounded: until two windows are written.
    while influx
        .rows(
            DB,
            "SELECT count(\"samples\") FROM genesys_queue GROUP BY time(2s)",
        )
        .iter()
        .filter(|row| row[1].as_u64() == Some(5))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "{}", service.stderr());
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = stop(service);
    let warning = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("NOTIFICATIONS=on"))
        .unwrap_or_default();
    assert!(
        warning.contains("(HTTP 403") && warning.contains("polling alone, next attempt in 5m"),
        "{log}"
    );
}
