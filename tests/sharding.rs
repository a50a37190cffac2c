//! `QUEUE_SHARD=i/n`, black-box: three instances of the built binary split one large
//! simulated org between them and, written into one real influxd, cover every queue
//! exactly once per window; bad values are configuration errors (exit 78).
//!
//! A queue written by two instances would be the same series at the same timestamp and
//! silently overwrite itself, so each instance adds its own static tag
//! (`INFLUXDB_TAGS=shard=i`): a queue polled twice then shows up as two series.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use genesys2influx::sim::{Endpoint, Sim, SimOptions};

use crate::core_pipeline::service_env;
use crate::util::influxd::Influxd;
use crate::util::process::{run_to_end, Service};

const DB: &str = "genesys";
const QUEUES: usize = 300;
const SHARDS: u32 = 3;

/// The documented shard of a queue id (CONTRACT.md, `QUEUE_SHARD`; README): FNV-1a 64
/// over the lower-cased id, modulo n, plus one. Written out here so that a change of the
/// hash, which would move queues between running instances, fails this test.
fn documented_shard(queue_id: &str, count: u32) -> u32 {
    let hash = queue_id
        .bytes()
        .map(|b| b.to_ascii_lowercase())
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    (hash % u64::from(count)) as u32 + 1
}

fn sim(queue_count: usize) -> Sim {
    Sim::start(SimOptions {
        queue_count,
        value_period: Duration::from_secs(1),
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts")
}

/// `self-metric instance → queues` for each window all instances reported on.
fn self_metrics(influx: &Influxd) -> BTreeMap<u64, BTreeMap<String, i64>> {
    let json = influx.query(
        DB,
        "SELECT \"queues\" FROM \"genesys2influx\" GROUP BY \"instance\"",
    );
    let mut windows: BTreeMap<u64, BTreeMap<String, i64>> = BTreeMap::new();
    for series in json["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let instance = series["tags"]["instance"].as_str().unwrap_or_default();
        for row in series["values"].as_array().into_iter().flatten() {
            if let (Some(time), Some(queues)) = (row[0].as_u64(), row[1].as_i64()) {
                windows
                    .entry(time)
                    .or_default()
                    .insert(instance.to_string(), queues);
            }
        }
    }
    windows
}

#[test]
fn three_shards_write_every_queue_exactly_once_per_window() {
    let sim = sim(QUEUES);
    let influx = Influxd::start_default();
    influx.create_database(DB);
    let mut services: Vec<Service> = (1..=SHARDS)
        .map(|i| {
            let mut env = service_env(&sim, &influx, false);
            env.retain(|(k, _)| *k != "INSTANCE");
            env.push(("INSTANCE", format!("shard-{i}")));
            env.push(("QUEUE_SHARD", format!("{i}/{SHARDS}")));
            env.push(("INFLUXDB_TAGS", format!("shard={i}")));
            Service::start(&["run"], &env)
        })
        .collect();

    // Each start-up log says how many queues this shard polls; together: all of them.
    let mut polled = 0;
    for (i, service) in services.iter().enumerate() {
        let prefix = format!("QUEUE_SHARD={}/{SHARDS}: this instance polls ", i + 1);
        service.wait_for_log(&prefix, Duration::from_secs(30));
        let log = service.stderr();
        let line = log.lines().find(|l| l.contains(&prefix)).unwrap();
        let count: usize = line[line.find(&prefix).unwrap() + prefix.len()..]
            .split(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {line:?}"));
        assert!(
            line.contains(&format!("of the {QUEUES} selected queues")),
            "{line}"
        );
        assert!(count > 0 && count < QUEUES, "{line}");
        polled += count;
    }
    assert_eq!(polled, QUEUES, "the shards' start-up counts do not add up");

    // Wait (bounded) for three windows every instance reported on.
    let deadline = Instant::now() + Duration::from_secs(60);
    let shared_windows = loop {
        let shared: Vec<u64> = self_metrics(&influx)
            .into_iter()
            .filter(|(_, by_instance)| by_instance.len() == SHARDS as usize)
            .map(|(time, _)| time)
            .collect();
        if shared.len() >= 3 {
            break shared;
        }
        assert!(
            Instant::now() < deadline,
            "fewer than 3 windows from all {SHARDS} instances within 60 s; logs:\n{}",
            services
                .iter()
                .map(|s| s.stderr())
                .collect::<Vec<_>>()
                .join("\n---\n")
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    for service in &services {
        service.signal("TERM");
    }
    for service in &mut services {
        let status = service.wait(Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "stderr:\n{}", service.stderr());
    }

    let all_ids: BTreeSet<String> = sim.queues().into_iter().map(|(id, _)| id).collect();
    assert_eq!(all_ids.len(), QUEUES);
    let metrics = self_metrics(&influx);
    for time in &shared_windows {
        let by_instance = &metrics[time];
        assert_eq!(
            by_instance.values().sum::<i64>(),
            QUEUES as i64,
            "window {time}: self-metrics queues {by_instance:?}"
        );
        let json = influx.query(
            DB,
            &format!(
                "SELECT count(\"samples\") FROM \"genesys_queue\" WHERE time = {time}s GROUP BY \"queue_id\", \"shard\""
            ),
        );
        let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        for series in json["results"][0]["series"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let id = series["tags"]["queue_id"].as_str().unwrap().to_string();
            let shard: u32 = series["tags"]["shard"].as_str().unwrap().parse().unwrap();
            assert_eq!(series["values"][0][1], 1, "window {time}, queue {id}");
            seen.entry(id).or_default().push(shard);
        }
        let twice: Vec<_> = seen.iter().filter(|(_, s)| s.len() > 1).collect();
        assert!(twice.is_empty(), "window {time}: written twice: {twice:?}");
        let written: BTreeSet<String> = seen.keys().cloned().collect();
        let missing: Vec<_> = all_ids.difference(&written).collect();
        assert!(
            missing.is_empty(),
            "window {time}: never written: {missing:?}"
        );
        for (id, shards) in &seen {
            assert_eq!(
                shards[0],
                documented_shard(id, SHARDS),
                "window {time}: queue {id} written by the wrong shard"
            );
        }
    }

    // No observations request mixes shards, and together they asked for every queue.
    let mut asked = BTreeSet::new();
    for request in sim.requests() {
        if request.endpoint != Some(Endpoint::Observations) {
            continue;
        }
        let shards: BTreeSet<u32> = request
            .queue_ids
            .iter()
            .map(|id| documented_shard(id, SHARDS))
            .collect();
        assert_eq!(shards.len(), 1, "one request spans shards {shards:?}");
        asked.extend(request.queue_ids.iter().cloned());
    }
    assert_eq!(asked, all_ids);
    println!(
        "{} windows checked: {QUEUES} queues, each written once, by its documented shard",
        shared_windows.len()
    );
}

#[test]
fn invalid_shards_are_configuration_errors() {
    let sim = sim(5);
    let influx = Influxd::start_default();
    for bad in ["3/2", "0/0", "x", "1/0", "2", "-1/3"] {
        let mut env = service_env(&sim, &influx, false);
        env.push(("QUEUE_SHARD", bad.to_string()));
        let (code, _, stderr) = run_to_end(&["run"], &env, Duration::from_secs(30));
        assert_eq!(code, Some(78), "QUEUE_SHARD={bad}: stderr:\n{stderr}");
        assert!(
            stderr.contains("QUEUE_SHARD") && stderr.contains("i/n"),
            "QUEUE_SHARD={bad}: the message does not name the variable and the accepted form:\n{stderr}"
        );
    }
    assert!(
        sim.requests()
            .iter()
            .all(|r| r.endpoint != Some(Endpoint::Observations)),
        "a misconfigured instance polled"
    );
}

/// Measures rows of the scaling table of README.md and docs/scaling.md (which a unit
/// test computes from the planner): the real binary at the default settings
/// (`POLL_INTERVAL=10s WINDOW=60s`, 300 requests per minute, KPIs on) against Sims of
/// 10,000 and 20,000 queues, counting every request in the Sims' logs. Slow (about
/// 6 minutes), so run on demand:
/// `cargo test --test main request_budget -- --ignored --nocapture`.
#[test]
#[ignore]
fn request_budget_at_scale() {
    const SPAN: Duration = Duration::from_secs(330);
    let mut started = Vec::new();
    for queues in [10_000, 20_000] {
        let sim = Sim::start(SimOptions {
            queue_count: queues,
            value_period: Duration::from_secs(10),
            prerendered_answers: true,
            ..SimOptions::default()
        })
        .expect("simulated Genesys starts");
        let mut env = crate::util::sim_env(&sim);
        env.extend([
            ("INFLUXDB_URL", "-".to_string()),
            ("INSTANCE", format!("scale-{queues}")),
        ]);
        let began_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let service = Service::start(&["run"], &env);
        started.push((queues, sim, service, began_s));
    }
    std::thread::sleep(SPAN);
    println!(
        "| queues | plan (log) | budget warning | poll starts (s after start) | requests/min between the first and the last poll start: observations + queue list + KPIs = total | first self-metrics window (s after start) |"
    );
    for (queues, sim, mut service, began_s) in started {
        service.signal("TERM");
        service.wait(Duration::from_secs(60));
        let requests = sim.requests();
        // A poll's requests are at most a few seconds apart; polls, at least 10 s.
        let mut poll_starts: Vec<u64> = Vec::new();
        let mut previous = 0;
        for r in requests
            .iter()
            .filter(|r| r.endpoint == Some(Endpoint::Observations))
        {
            if r.time_ms > previous + 8_000 {
                poll_starts.push(r.time_ms);
            }
            previous = r.time_ms;
        }
        let (first, last) = (poll_starts[0], poll_starts[poll_starts.len() - 1]);
        let minutes = (last - first) as f64 / 60_000.0;
        let rate = |endpoint: Endpoint| {
            requests
                .iter()
                .filter(|r| r.endpoint == Some(endpoint) && (first..last).contains(&r.time_ms))
                .count() as f64
                / minutes
        };
        let (observations, listing, kpis) = (
            rate(Endpoint::Observations),
            rate(Endpoint::Queues),
            rate(Endpoint::Aggregates),
        );
        let starts: Vec<u64> = poll_starts.iter().map(|t| t / 1000 - began_s).collect();
        let log = service.stderr();
        let plan = log
            .lines()
            .find(|l| l.contains("polling ") && l.contains(" request"))
            .map(|l| l[l.find("polling ").unwrap()..].to_string())
            .unwrap_or_default();
        let warned = log
            .lines()
            .any(|l| l.contains("request budget is too small"));
        let first_window = service
            .stdout()
            .lines()
            .filter(|l| l.starts_with("genesys2influx,"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .min()
            .map(|t| t as i64 - began_s as i64);
        println!(
            "| {queues} | {plan} | {warned} | {starts:?} | {observations:.0} + {listing:.0} + {kpis:.0} = {:.0} | {first_window:?} |",
            observations + listing + kpis,
        );
    }
}

/// An org too large for its request budget: 300 queues need 3 requests a poll, and a
/// budget of 30 requests per minute (24 planned) cannot take even one poll per 5 s
/// window (36/min).
/// The service polls once per window anyway (never wider: it once widened to 360×, an
/// hour, and wrote nothing), warns with the fixes in numbers, writes the self-metrics
/// of every window from the first one, and `check` says the same.
#[test]
fn an_org_too_large_for_its_budget_polls_once_per_window_and_names_the_fix() {
    let sim = sim(QUEUES);
    let mut env = crate::util::sim_env(&sim);
    env.extend([
        ("POLL_INTERVAL", "1s".to_string()),
        ("WINDOW", "5s".to_string()),
        ("KPIS", "off".to_string()),
        ("GENESYS_REQUESTS_PER_MINUTE", "30".to_string()),
        ("INFLUXDB_URL", "-".to_string()),
        ("INSTANCE", "small-budget".to_string()),
    ]);
    let mut service = Service::start(&["run"], &env);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    let windows = |service: &Service| -> Vec<u64> {
        service
            .stdout()
            .lines()
            .filter(|l| l.starts_with("genesys2influx,"))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect()
    };
    while windows(&service).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no two windows of self-metrics within 30 s:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let first_window_after = started.elapsed();
    service.signal("TERM");
    service.wait(Duration::from_secs(30));
    let stderr = service.stderr();
    assert!(
        stderr.contains("polling 300 queues in 3 requests every 5s"),
        "{stderr}"
    );
    let advice = stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("request budget is too small"))
        .unwrap_or_else(|| panic!("no budget warning:\n{stderr}"));
    for fix in [
        "QUEUE_SHARD=1/",
        "each with its own OAuth client",
        "GENESYS_REQUESTS_PER_MINUTE=",
    ] {
        assert!(advice.contains(fix), "{fix} missing from: {advice}");
    }
    let polls: Vec<u64> = sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::Observations))
        .map(|r| r.time_ms / 5000)
        .collect();
    let mut per_window = BTreeMap::new();
    for window in polls {
        *per_window.entry(window).or_insert(0) += 1;
    }
    assert!(
        per_window.values().all(|&n| n <= 3),
        "more than one poll per 5 s window: {per_window:?}"
    );

    let (code, stdout, _) = run_to_end(&["check"], &env, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("! budget: polling 300 queues in 3 requests every 5s")
            && stdout.contains(
                advice
                    .split("WARN")
                    .nth(1)
                    .unwrap_or_default()
                    .split(": ")
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(": ")
                    .trim()
            ),
        "check does not print the service's budget lines:\n{stdout}"
    );
    println!("two windows of self-metrics after {first_window_after:?}\ncheck:\n{stdout}");
}
