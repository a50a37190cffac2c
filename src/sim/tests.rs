//! The Sim over real HTTP with a plain ureq agent: what a client sees, checked against
//! the fixtures' shapes and against the Sim's own predictions.
//!
//! Long because it is only tests: one per behaviour of the simulated API that a test
//! elsewhere relies on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::aggregates::KPI_METRICS;
use super::*;
use crate::genesys::paths::{AGGREGATES, OBSERVATIONS};

const ALL_METRICS: [&str; 11] = [
    "oWaiting",
    "oInteracting",
    "oAlerting",
    "oLongestWaiting",
    "oLongestInteracting",
    "oOnQueueUsers",
    "oOffQueueUsers",
    "oActiveUsers",
    "oMemberUsers",
    "oUserPresences",
    "oUserRoutingStatuses",
];

fn sim(queue_count: usize) -> Sim {
    Sim::start(SimOptions {
        queue_count,
        ..SimOptions::default()
    })
    .expect("sim starts")
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .new_agent()
}

/// Status, parsed JSON body (Null when not JSON) and the response headers.
struct Answer {
    status: u16,
    body: Value,
    headers: ureq::http::HeaderMap,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn read(result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Answer {
    let mut response = result.expect("HTTP exchange");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    }
}

fn login(sim: &Sim, agent: &ureq::Agent, id: &str, secret: &str) -> Answer {
    read(
        agent
            .post(format!("{}/oauth/token", sim.base_url()))
            .header("Authorization", crate::http::basic_auth(id, secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .send("grant_type=client_credentials"),
    )
}

fn token(sim: &Sim, agent: &ureq::Agent) -> String {
    let answer = login(sim, agent, "sim-client-id", "sim-client-secret");
    assert_eq!(answer.status, 200);
    answer.body["access_token"]
        .as_str()
        .expect("token")
        .to_string()
}

fn post(sim: &Sim, agent: &ureq::Agent, token: &str, path: &str, body: &Value) -> Answer {
    read(
        agent
            .post(format!("{}{path}", sim.base_url()))
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(body.to_string()),
    )
}

fn get(sim: &Sim, agent: &ureq::Agent, token: &str, path_and_query: &str) -> Answer {
    read(
        agent
            .get(format!("{}{path_and_query}", sim.base_url()))
            .header("Authorization", format!("Bearer {token}"))
            .call(),
    )
}

fn observation_query(ids: &[String], metrics: &[&str]) -> Value {
    let predicates: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "dimension", "dimension": "queueId", "operator": "matches", "value": id}))
        .collect();
    json!({"filter": {"type": "or", "predicates": predicates}, "metrics": metrics})
}

fn ids(sim: &Sim, n: usize) -> Vec<String> {
    sim.queues().into_iter().take(n).map(|(id, _)| id).collect()
}

fn fixture(name: &str) -> Value {
    let text = match name {
        "observations-response.json" => {
            include_str!("../../tests/fixtures/genesys/observations-response.json")
        }
        "aggregates-response.json" => {
            include_str!("../../tests/fixtures/genesys/aggregates-response.json")
        }
        "error-403-aggregates.json" => {
            include_str!("../../tests/fixtures/genesys/error-403-aggregates.json")
        }
        "error-401.json" => include_str!("../../tests/fixtures/genesys/error-401.json"),
        "error-401-no-token.json" => {
            include_str!("../../tests/fixtures/genesys/error-401-no-token.json")
        }
        "token-error-invalid-client.json" => {
            include_str!("../../tests/fixtures/genesys/token-error-invalid-client.json")
        }
        _ => panic!("unknown fixture {name}"),
    };
    serde_json::from_str(text).expect("fixture parses")
}

/// Keys of an error body are the fixture's keys, and `contextId` is the correlation id.
fn assert_error_like(answer: &Answer, fixture_name: &str) {
    let expected = fixture(fixture_name);
    assert_eq!(answer.status as u64, expected["status"].as_u64().unwrap());
    assert_eq!(answer.body["code"], expected["code"]);
    assert_eq!(answer.body["message"], expected["message"]);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&answer.body), keys(&expected));
    assert_eq!(
        answer.header("ININ-Correlation-Id"),
        answer.body["contextId"].as_str()
    );
}

#[test]
fn token_flow_accepts_the_configured_client_only() {
    let sim = sim(3);
    let agent = agent();
    let ok = login(&sim, &agent, "sim-client-id", "sim-client-secret");
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("Content-Type"), Some("application/json"));
    assert_eq!(ok.body["token_type"], "bearer");
    assert_eq!(ok.body["expires_in"], 86399);
    let first = ok.body["access_token"].as_str().unwrap().to_string();
    assert!(first.len() >= 40);
    assert_ne!(token(&sim, &agent), first, "every token is fresh");

    let wrong = login(&sim, &agent, "sim-client-id", "nope");
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body, fixture("token-error-invalid-client.json"));

    sim.set_credentials("other", "s3cret:with:colons");
    assert_eq!(
        login(&sim, &agent, "sim-client-id", "sim-client-secret").status,
        401
    );
    assert_eq!(
        login(&sim, &agent, "other", "s3cret:with:colons").status,
        200
    );
}

#[test]
fn api_calls_need_a_current_token() {
    let sim = Sim::start(SimOptions {
        queue_count: 2,
        token_lifetime: Duration::from_millis(300),
        ..SimOptions::default()
    })
    .unwrap();
    let agent = agent();
    let missing = read(
        agent
            .get(format!("{}/api/v2/routing/queues", sim.base_url()))
            .call(),
    );
    assert_error_like(&missing, "error-401-no-token.json");
    assert_error_like(
        &get(&sim, &agent, "made-up", "/api/v2/routing/queues"),
        "error-401.json",
    );

    let t = token(&sim, &agent);
    assert_eq!(get(&sim, &agent, &t, "/api/v2/routing/queues").status, 200);
    std::thread::sleep(Duration::from_millis(350));
    assert_error_like(
        &get(&sim, &agent, &t, "/api/v2/routing/queues"),
        "error-401.json",
    );

    let t = token(&sim, &agent);
    sim.revoke_tokens();
    assert_eq!(get(&sim, &agent, &t, "/api/v2/routing/queues").status, 401);
}

#[test]
fn paging_reproduces_every_queue_sorted_by_name() {
    let sim = sim(11);
    let agent = agent();
    let t = token(&sim, &agent);
    let mut names = Vec::new();
    for page in 1..=3 {
        let answer = get(
            &sim,
            &agent,
            &t,
            &format!("/api/v2/routing/queues?pageSize=4&pageNumber={page}"),
        );
        assert_eq!(answer.status, 200);
        assert_eq!(answer.header("inin-ratelimit-allowed"), Some("300"));
        assert!(answer.header("ININ-Correlation-Id").is_some());
        let b = &answer.body;
        assert_eq!(
            (b["pageSize"].as_u64(), b["pageNumber"].as_u64()),
            (Some(4), Some(page))
        );
        assert_eq!(
            (b["total"].as_u64(), b["pageCount"].as_u64()),
            (Some(11), Some(3))
        );
        assert_eq!(
            b["selfUri"],
            format!("/api/v2/routing/queues?pageSize=4&pageNumber={page}")
        );
        assert_eq!(
            b["firstUri"],
            "/api/v2/routing/queues?pageSize=4&pageNumber=1"
        );
        assert_eq!(
            b["lastUri"],
            "/api/v2/routing/queues?pageSize=4&pageNumber=3"
        );
        assert_eq!(b.get("nextUri").is_some(), page < 3);
        assert_eq!(b.get("previousUri").is_some(), page > 1);
        for e in b["entities"].as_array().unwrap() {
            assert!(
                e["division"]["id"].is_string()
                    && e["mediaSettings"]["call"]["serviceLevel"].is_object()
            );
            names.push(e["name"].as_str().unwrap().to_string());
        }
    }
    let mut expected: Vec<String> = sim.queues().into_iter().map(|(_, n)| n).collect();
    expected.sort();
    assert_eq!(names, expected);
    assert!(
        names.contains(&"C:\\Support\\".to_string())
            && names.contains(&"  Padded Queue  ".to_string())
    );

    let capped = get(&sim, &agent, &t, "/api/v2/routing/queues?pageSize=500");
    assert_eq!(capped.body["pageSize"], 100);
    assert_eq!(capped.body["entities"].as_array().unwrap().len(), 11);
}

#[test]
fn queue_filters_by_name_wildcards_and_ids() {
    let sim = sim(12);
    let agent = agent();
    let t = token(&sim, &agent);
    let names = |a: &Answer| -> Vec<String> {
        a.body["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    let exact = get(
        &sim,
        &agent,
        &t,
        "/api/v2/routing/queues?name=Sales%2C%20EMEA%20%3D%20%22Tier%201%22",
    );
    assert_eq!(names(&exact), ["Sales, EMEA = \"Tier 1\""]);
    let prefix = get(
        &sim,
        &agent,
        &t,
        "/api/v2/routing/queues?name=Queue*&pageSize=2",
    );
    assert_eq!(names(&prefix), ["Queue 0009", "Queue 0010"]);
    assert_eq!(
        prefix.body["nextUri"],
        "/api/v2/routing/queues?pageSize=2&pageNumber=2&name=Queue*"
    );
    let contains = get(&sim, &agent, &t, "/api/v2/routing/queues?name=*support*");
    assert_eq!(names(&contains), ["C:\\Support\\", "Support – Ünïcode"]);
    let all = ids(&sim, 3);
    let by_id = get(
        &sim,
        &agent,
        &t,
        &format!(
            "/api/v2/routing/queues?id={}&id={},{}",
            all[0], all[1], all[2]
        ),
    );
    assert_eq!(by_id.body["total"], 3);
    let bad = get(
        &sim,
        &agent,
        &t,
        "/api/v2/routing/queues?sortOrder=sideways",
    );
    assert_eq!(
        (bad.status, bad.body["code"].as_str()),
        (400, Some("invalid.value"))
    );
}

#[test]
fn queue_control_methods_change_the_listing() {
    let sim = sim(3);
    let agent = agent();
    let t = token(&sim, &agent);
    let (first, _) = sim.queues()[0].clone();
    assert!(sim.rename_queue(&first, "Renamed"));
    let added = sim.add_queue("Zebra");
    assert!(sim.delete_queue(&sim.queues()[1].0.clone()));
    assert!(!sim.delete_queue("no-such-id"));
    let listing = get(&sim, &agent, &t, "/api/v2/routing/queues");
    let got: Vec<(String, String)> = listing.body["entities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected = sim.queues();
    expected.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got, expected);
    assert!(got.iter().any(|(id, n)| id == &added && n == "Zebra"));
    assert!(got.iter().any(|(id, n)| id == &first && n == "Renamed"));
}

#[test]
fn observations_have_the_fixture_shape_and_the_predicted_values() {
    let sim = sim(4);
    let agent = agent();
    let t = token(&sim, &agent);
    let queue_ids = ids(&sim, 3);
    let answer = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&queue_ids, &ALL_METRICS),
    );
    assert_eq!(answer.status, 200);
    let record = sim
        .requests()
        .into_iter()
        .find(|r| r.endpoint == Some(Endpoint::Observations))
        .unwrap();
    assert_eq!(record.queue_ids, queue_ids);
    assert_eq!(record.status, 200);
    let slot = sim.slot_at(record.time_ms);

    let reference = fixture("observations-response.json");
    assert_eq!(
        answer.body["systemToOrganizationMappings"],
        reference["systemToOrganizationMappings"]
    );
    let results = answer.body["results"].as_array().unwrap();
    let groups_of = |id: &str| {
        let observation = sim.observation_at(id, slot);
        let omitted = observation
            .media
            .iter()
            .enumerate()
            .filter(|(i, m)| {
                observations::sparse_shape(id)
                    && observations::omits_empty_media(*i, slot)
                    && m.is_empty()
            })
            .count();
        6 - omitted
    };
    assert_eq!(
        results.len(),
        queue_ids.iter().map(|id| groups_of(id)).sum::<usize>(),
        "a user group and five media groups per queue; sparse ones without empty media"
    );
    assert!(
        queue_ids.iter().any(|id| observations::sparse_shape(id))
            && queue_ids.iter().any(|id| !observations::sparse_shape(id)),
        "both shapes are served"
    );
    let group_shape = |g: &Value| {
        let mut keys: Vec<String> = g["group"].as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    let reference_shapes: Vec<_> = reference["results"].as_array().unwrap()[..6]
        .iter()
        .map(group_shape)
        .collect();
    let full = results
        .iter()
        .position(|g| !observations::sparse_shape(g["group"]["queueId"].as_str().unwrap()))
        .unwrap();
    let shapes: Vec<_> = results[full..full + 6].iter().map(group_shape).collect();
    assert_eq!(shapes, reference_shapes);

    for id in &queue_ids {
        let expected = sim.observation_at(id, slot);
        let entries = |media: Option<&str>| -> Vec<Value> {
            results
                .iter()
                .find(|g| {
                    g["group"]["queueId"] == *id.as_str()
                        && g["group"]["mediaType"].as_str() == media
                })
                .map(|g| g["data"].as_array().unwrap().clone())
                .unwrap_or_default()
        };
        let sum = |data: &[Value], metric: &str, qualifier: Option<&str>| -> u64 {
            data.iter()
                .filter(|e| e["metric"] == metric && qualifier.is_none_or(|q| e["qualifier"] == q))
                .map(|e| e["stats"]["count"].as_u64().unwrap_or(0))
                .sum()
        };
        let user = entries(None);
        assert_eq!(sum(&user, "oOnQueueUsers", None), expected.on_queue);
        assert_eq!(sum(&user, "oOnQueueUsers", Some("IDLE")), expected.idle);
        assert_eq!(
            sum(&user, "oOnQueueUsers", Some("INTERACTING")),
            expected.interacting
        );
        assert_eq!(
            sum(&user, "oOnQueueUsers", Some("COMMUNICATING")),
            expected.communicating
        );
        assert_eq!(
            sum(&user, "oOnQueueUsers", Some("NOT_RESPONDING")),
            expected.not_responding
        );
        assert_eq!(sum(&user, "oOffQueueUsers", None), expected.off_queue);
        assert_eq!(sum(&user, "oActiveUsers", None), expected.active);
        assert_eq!(sum(&user, "oMemberUsers", None), expected.members);
        // docs/genesys-api.md#observation-consistency consistency.
        assert_eq!(expected.on_queue + expected.off_queue, expected.active);
        assert!(expected.active <= expected.members);
        assert_eq!(sum(&user, "oUserPresences", None), expected.active);
        assert_eq!(sum(&user, "oUserRoutingStatuses", None), expected.active);
        assert!(user
            .iter()
            .all(|e| e["stats"]["count"].as_u64() != Some(0) || e.get("qualifier").is_none()));
        for media in &expected.media {
            let data = entries(Some(&media.media_type));
            assert_eq!(sum(&data, "oWaiting", None), media.waiting);
            assert_eq!(sum(&data, "oInteracting", None), media.interacting);
            assert_eq!(sum(&data, "oAlerting", None), media.alerting);
            let sparse = observations::sparse_shape(id);
            if sparse {
                // oLongest* without a count, as the official SDKs allow.
                assert!(data.iter().all(|e| !e["metric"]
                    .as_str()
                    .unwrap()
                    .starts_with("oLongest")
                    || e["stats"].get("count").is_none()));
            } else {
                assert_eq!(sum(&data, "oLongestWaiting", None), media.waiting);
                assert_eq!(sum(&data, "oLongestInteracting", None), media.interacting);
            }
            let calculated = |metric: &str| {
                data.iter()
                    .find(|e| e["metric"] == metric)
                    .and_then(|e| e["stats"].get("calculatedMetricValue"))
                    .and_then(Value::as_u64)
            };
            let start = |age: u64, count: u64| (count > 0).then(|| record.time_ms - age);
            assert_eq!(
                calculated("oLongestWaiting"),
                start(media.longest_waiting_ms, media.waiting)
            );
            assert_eq!(
                calculated("oLongestInteracting"),
                start(media.longest_interacting_ms, media.interacting)
            );
        }
    }
}

#[test]
fn observations_answer_only_the_requested_metrics_and_media() {
    let sim = sim(2);
    let agent = agent();
    let t = token(&sim, &agent);
    let id = &ids(&sim, 1)[0];
    let body = json!({
        "filter": {"type": "and",
                   "clauses": [{"type": "or", "predicates": [{"type": "dimension", "dimension": "queueId", "operator": "matches", "value": id}]}],
                   "predicates": [{"type": "dimension", "dimension": "mediaType", "operator": "matches", "value": "voice"}]},
        "metrics": ["oWaiting", "oInteracting"],
    });
    let answer = post(&sim, &agent, &t, OBSERVATIONS, &body);
    assert_eq!(answer.status, 200);
    assert!(answer.body.get("systemToOrganizationMappings").is_none());
    let results = answer.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["group"]["mediaType"], "voice");
    let metrics: Vec<&str> = results[0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["metric"].as_str().unwrap())
        .collect();
    assert_eq!(metrics, ["oWaiting", "oInteracting"]);

    let unknown_metric = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&ids(&sim, 1), &["oBogus"]),
    );
    assert_eq!(
        (unknown_metric.status, unknown_metric.body["code"].as_str()),
        (400, Some("bad.request"))
    );
}

#[test]
fn more_than_100_predicates_are_rejected() {
    let sim = sim(2);
    let agent = agent();
    let t = token(&sim, &agent);
    let many: Vec<String> = (0..101)
        .map(|i| format!("00000000-0000-4000-8000-{i:012x}"))
        .collect();
    let rejected = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&many, &ALL_METRICS),
    );
    assert_eq!(
        (rejected.status, rejected.body["code"].as_str()),
        (400, Some("bad.request"))
    );
    let accepted = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&many[..100], &["oWaiting"]),
    );
    assert_eq!(accepted.status, 200);
    // Five media groups per queue; sparse-shaped queues leave out the empty ones.
    let results = accepted.body["results"].as_array().unwrap();
    for id in &many[..100] {
        let groups = results
            .iter()
            .filter(|g| g["group"]["queueId"] == *id.as_str())
            .count();
        if observations::sparse_shape(id) {
            assert!(groups <= 5, "{id}: {groups}");
        } else {
            assert_eq!(groups, 5, "{id}");
        }
    }
}

#[test]
fn unknown_queue_ids_follow_the_configured_behaviour() {
    let sim = sim(2);
    let agent = agent();
    let t = token(&sim, &agent);
    let query = observation_query(
        &[
            ids(&sim, 1)[0].clone(),
            "deadbeef-0000-4000-8000-000000000000".into(),
        ],
        &ALL_METRICS,
    );
    let groups_for_unknown = |a: &Answer| {
        a.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["group"]["queueId"] == "deadbeef-0000-4000-8000-000000000000")
            .count()
    };
    let empty = post(&sim, &agent, &t, OBSERVATIONS, &query);
    assert_eq!(groups_for_unknown(&empty), 6);
    let zero_user_group = empty.body["results"].as_array().unwrap().iter().find(|g| {
        g["group"]["queueId"] == "deadbeef-0000-4000-8000-000000000000"
            && g["group"].get("mediaType").is_none()
    });
    let metrics: Vec<&str> = zero_user_group.unwrap()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["metric"].as_str().unwrap())
        .collect();
    assert_eq!(
        metrics,
        ["oOffQueueUsers", "oActiveUsers", "oMemberUsers"],
        "as the empty-queue fixture"
    );
    sim.set_unknown_queues(UnknownQueues::Omit);
    assert_eq!(
        groups_for_unknown(&post(&sim, &agent, &t, OBSERVATIONS, &query)),
        0
    );
    sim.set_unknown_queues(UnknownQueues::Reject);
    assert_eq!(post(&sim, &agent, &t, OBSERVATIONS, &query).status, 400);
}

#[test]
fn injected_faults_fire_the_configured_number_of_times() {
    let sim = sim(2);
    let agent = agent();
    let t = token(&sim, &agent);
    let query = observation_query(&ids(&sim, 2), &ALL_METRICS);
    sim.inject(Endpoint::Observations, Fault::Status(503), 2);
    sim.inject(
        Endpoint::Observations,
        Fault::RateLimited {
            retry_after_secs: 3,
        },
        1,
    );
    let statuses: Vec<u16> = (0..4)
        .map(|_| post(&sim, &agent, &t, OBSERVATIONS, &query).status)
        .collect();
    assert_eq!(statuses, [503, 503, 429, 200]);
    sim.clear_requests();

    sim.inject(
        Endpoint::Observations,
        Fault::RateLimited {
            retry_after_secs: 3,
        },
        1,
    );
    let limited = post(&sim, &agent, &t, OBSERVATIONS, &query);
    assert_eq!(limited.header("Retry-After"), Some("3"));
    assert_eq!(limited.body["code"], "too.many.requests.retry.after");
    assert_eq!(
        limited.body["message"],
        "Rate limit exceeded the maximum. Retry the request in [3] seconds"
    );

    sim.inject(Endpoint::Any, Fault::MalformedJson, 1);
    let malformed = post(&sim, &agent, &t, OBSERVATIONS, &query);
    assert_eq!(
        (malformed.status, malformed.body.clone()),
        (200, Value::Null)
    );

    sim.inject(Endpoint::Observations, Fault::DropConnection, 1);
    let dropped = agent
        .post(format!("{}{OBSERVATIONS}", sim.base_url()))
        .header("Authorization", format!("Bearer {t}"))
        .header("Content-Type", "application/json")
        .send(query.to_string());
    assert!(
        dropped.is_err(),
        "a dropped connection is a transport error"
    );

    sim.inject(Endpoint::Queues, Fault::GatewayHtml(502), 1);
    let html = get(&sim, &agent, &t, "/api/v2/routing/queues");
    assert_eq!(
        (html.status, html.header("Content-Type")),
        (502, Some("text/html"))
    );

    sim.inject(
        Endpoint::Observations,
        Fault::Delay(Duration::from_millis(150)),
        1,
    );
    let started = Instant::now();
    assert_eq!(post(&sim, &agent, &t, OBSERVATIONS, &query).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));

    let log = sim.requests();
    let statuses: Vec<(u16, bool)> = log.iter().map(|r| (r.status, r.retryable_fault)).collect();
    assert_eq!(
        statuses,
        [
            (429, true),
            (200, false),
            (0, true),
            (502, true),
            (200, false)
        ]
    );
    assert_eq!(log[4].fault, Some(Fault::Delay(Duration::from_millis(150))));
}

#[test]
fn every_nth_and_forbid() {
    let sim = sim(2);
    let agent = agent();
    let t = token(&sim, &agent);
    sim.every_nth(Endpoint::Queues, 3, Fault::Status(429));
    let statuses: Vec<u16> = (0..6)
        .map(|_| get(&sim, &agent, &t, "/api/v2/routing/queues").status)
        .collect();
    assert_eq!(statuses, [200, 200, 429, 200, 200, 429]);
    let limited = get(&sim, &agent, &t, "/api/v2/routing/queues?x=1");
    assert_eq!(limited.status, 200);
    sim.clear_faults();

    sim.forbid(Endpoint::Aggregates);
    let body = aggregate_query(
        "2025-06-02T14:00:00.000Z/2025-06-02T14:15:00.000Z",
        Some("PT15M"),
        &ids(&sim, 1),
    );
    let denied = post(&sim, &agent, &t, AGGREGATES, &body);
    assert_error_like(&denied, "error-403-aggregates.json");
    let observations = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&ids(&sim, 1), &ALL_METRICS),
    );
    assert_eq!(
        observations.status, 200,
        "only the forbidden endpoint is denied"
    );
    sim.allow(Endpoint::Aggregates);
    assert_eq!(post(&sim, &agent, &t, AGGREGATES, &body).status, 200);
}

#[test]
fn an_enforced_rate_limit_answers_429_with_headers() {
    let sim = Sim::start(SimOptions {
        queue_count: 1,
        rate_limit_per_minute: Some(2),
        ..SimOptions::default()
    })
    .unwrap();
    let agent = agent();
    let t = token(&sim, &agent);
    let answers: Vec<Answer> = (0..3)
        .map(|_| get(&sim, &agent, &t, "/api/v2/routing/queues"))
        .collect();
    // A UTC minute may roll over between the calls; then the third one passes.
    if answers[2].header("inin-ratelimit-count") == Some("3") {
        assert_eq!(answers[2].status, 429);
        assert!(answers[2].header("Retry-After").is_some());
    }
    assert_eq!(answers[0].header("inin-ratelimit-allowed"), Some("2"));
}

fn aggregate_query(interval: &str, granularity: Option<&str>, ids: &[String]) -> Value {
    let predicates: Vec<Value> = ids
        .iter()
        .map(|id| json!({"type": "dimension", "dimension": "queueId", "operator": "matches", "value": id}))
        .collect();
    let mut body = json!({
        "interval": interval,
        "groupBy": ["queueId", "mediaType"],
        "filter": {"type": "or", "predicates": predicates},
        "metrics": KPI_METRICS,
    });
    if let Some(g) = granularity {
        body["granularity"] = json!(g);
    }
    body
}

/// The fixture's value for a KPI of our `KpiValues`, to compare a response entry with it.
fn entry_of(values: &KpiValues, metric: &str) -> Option<Value> {
    let timer = |t: &Timer| {
        (t.count > 0).then(|| json!({"max": t.max, "min": t.min, "count": t.count, "sum": t.sum}))
    };
    let count = |n: u64| (n > 0).then(|| json!({ "count": n }));
    match metric {
        "nOffered" => count(values.offered),
        "tAnswered" => timer(&values.answered),
        "tAbandon" => timer(&values.abandoned),
        "tShortAbandon" => timer(&values.short_abandoned),
        "tFlowOut" => timer(&values.flowed_out),
        "tWait" => timer(&values.waited),
        "tHandle" => timer(&values.handled),
        "nOverSla" => count(values.over_sla),
        "nTransferred" => count(values.transferred),
        _ => (values.sl_denominator > 0).then(|| {
            json!({"ratio": values.sl_numerator as f64 / values.sl_denominator as f64,
                   "numerator": values.sl_numerator, "denominator": values.sl_denominator, "target": values.sl_target})
        }),
    }
}

/// Drops `ratio` after checking it against numerator / denominator (JSON floats are not
/// bit-exact through serde_json's default parser).
fn without_ratio(stats: Option<Value>) -> Option<Value> {
    let mut stats = stats?;
    if let Some(ratio) = stats.as_object_mut().and_then(|o| o.remove("ratio")) {
        let expected =
            stats["numerator"].as_f64().unwrap() / stats["denominator"].as_f64().unwrap();
        assert!((ratio.as_f64().unwrap() - expected).abs() < 1e-12);
    }
    Some(stats)
}

#[test]
fn settled_aggregates_match_expected_kpis_and_the_fixture_shape() {
    let sim = sim(4);
    let agent = agent();
    let t = token(&sim, &agent);
    let queue_ids = ids(&sim, 4);
    let start = (now_ms() / 3_600_000 - 3) * 3_600_000;
    let interval = format!(
        "{}/{}",
        crate::time::format_utc_ms(start),
        crate::time::format_utc_ms(start + 3_600_000)
    );
    let answer = post(
        &sim,
        &agent,
        &t,
        AGGREGATES,
        &aggregate_query(&interval, Some("PT15M"), &queue_ids),
    );
    assert_eq!(answer.status, 200);
    let results = answer.body["results"].as_array().expect("results");
    let reference = fixture("aggregates-response.json");
    let first_ref = &reference["results"][0];
    assert_eq!(
        results[0]["group"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        first_ref["group"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()
    );
    let mut checked = 0;
    for id in &queue_ids {
        for media in DEFAULT_MEDIA_TYPES {
            let group = results
                .iter()
                .find(|g| g["group"]["queueId"] == id.as_str() && g["group"]["mediaType"] == media);
            for k in 0..4u64 {
                let bucket_start = start + k * 900_000;
                let expected = sim.expected_kpis(id, media, bucket_start, 900_000);
                let label = format!(
                    "{}/{}",
                    crate::time::format_utc_ms(bucket_start),
                    crate::time::format_utc_ms(bucket_start + 900_000)
                );
                let bucket = group.and_then(|g| {
                    g["data"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|d| d["interval"] == label.as_str())
                });
                let Some(bucket) = bucket else {
                    assert!(expected.is_empty(), "{id} {media} {label} missing");
                    continue;
                };
                // docs/genesys-api.md#aggregates-consistency consistency.
                assert_eq!(
                    expected.sl_numerator + expected.over_sla,
                    expected.answered.count
                );
                assert_eq!(
                    expected.sl_denominator,
                    expected.answered.count + expected.abandoned.count
                );
                assert_eq!(
                    expected.waited.count,
                    expected.answered.count + expected.abandoned.count + expected.flowed_out.count
                );
                assert!(expected.short_abandoned.count <= expected.abandoned.count);
                for metric in KPI_METRICS {
                    let got = bucket["metrics"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|m| m["metric"] == metric)
                        .map(|m| m["stats"].clone());
                    let (got, want) = (
                        without_ratio(got),
                        without_ratio(entry_of(&expected, metric)),
                    );
                    assert_eq!(got, want, "{id} {media} {label} {metric}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 16, "enough buckets with data ({checked})");
}

#[test]
fn open_buckets_grow_until_they_settle() {
    let sim = sim(1);
    let id = &ids(&sim, 1)[0];
    let start = 1_748_872_800_000; // 2025-06-02T14:00Z
    let bucket = 900_000;
    let settle = 120_000;
    let final_values = sim.expected_kpis(id, "voice", start, bucket);
    let mut previous = 0;
    for at in [
        start + 60_000,
        start + 450_000,
        start + bucket,
        start + bucket + 60_000,
        start + bucket + settle,
    ] {
        let now = sim.kpis_at(id, "voice", start, bucket, at);
        assert!(now.offered >= previous);
        previous = now.offered;
        assert_eq!(now.sl_numerator + now.over_sla, now.answered.count);
    }
    assert_eq!(
        sim.kpis_at(id, "voice", start, bucket, start + bucket + settle),
        final_values
    );
    assert!(
        sim.kpis_at(id, "voice", start, bucket, start + 60_000)
            .offered
            < final_values.offered
    );
    assert!(final_values.offered > 10);
}

#[test]
fn aggregates_empty_answers_and_errors() {
    let sim = sim(2);
    let agent = agent();
    let t = token(&sim, &agent);
    let future = now_ms() + 86_400_000;
    let interval = format!(
        "{}/{}",
        crate::time::format_utc_ms(future),
        crate::time::format_utc_ms(future + 900_000)
    );
    let in_future = post(
        &sim,
        &agent,
        &t,
        AGGREGATES,
        &aggregate_query(&interval, Some("PT15M"), &ids(&sim, 2)),
    );
    assert_eq!((in_future.status, in_future.body.clone()), (200, json!({})));
    let unknown = aggregate_query(
        "2025-06-02T14:00:00.000Z/2025-06-02T14:45:00.000Z",
        Some("PT15M"),
        &["deadbeef".into()],
    );
    assert_eq!(post(&sim, &agent, &t, AGGREGATES, &unknown).body, json!({}));

    let bad_date = post(
        &sim,
        &agent,
        &t,
        AGGREGATES,
        &aggregate_query("yesterday", Some("PT15M"), &ids(&sim, 1)),
    );
    assert_eq!(
        (bad_date.status, bad_date.body["code"].as_str()),
        (400, Some("invalid.date"))
    );
    let bad_granularity = aggregate_query(
        "2025-06-02T14:00:00.000Z/2025-06-02T14:45:00.000Z",
        Some("PT15X"),
        &ids(&sim, 1),
    );
    assert_eq!(
        post(&sim, &agent, &t, AGGREGATES, &bad_granularity).status,
        400
    );
    let too_long = aggregate_query(
        "2025-06-01T00:00:00Z/2025-06-09T00:00:00Z",
        Some("P1D"),
        &ids(&sim, 1),
    );
    assert_eq!(post(&sim, &agent, &t, AGGREGATES, &too_long).status, 400);
}

#[test]
fn aggregates_group_by_queue_only_sums_media_and_drops_the_target() {
    let sim = sim(1);
    let agent = agent();
    let t = token(&sim, &agent);
    let id = &ids(&sim, 1)[0];
    let start = (now_ms() / 3_600_000 - 2) * 3_600_000;
    let interval = format!(
        "{}/{}",
        crate::time::format_utc_ms(start),
        crate::time::format_utc_ms(start + 3_600_000)
    );
    let mut body = aggregate_query(&interval, None, std::slice::from_ref(id));
    body["groupBy"] = json!(["queueId"]);
    let answer = post(&sim, &agent, &t, AGGREGATES, &body);
    let results = answer.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["group"], json!({"queueId": id}));
    let data = results[0]["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "no granularity: one bucket");
    let offered: u64 = DEFAULT_MEDIA_TYPES
        .iter()
        .map(|m| sim.expected_kpis(id, m, start, 3_600_000).offered)
        .sum();
    let entry = |name: &str| {
        data[0]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["metric"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(entry("nOffered")["stats"]["count"], offered);
    assert!(entry("oServiceLevel")["stats"].get("target").is_none());
}

#[test]
fn default_names_ids_and_values_are_stable() {
    let a = sim(12);
    let b = sim(12);
    assert_eq!(a.queues(), b.queues());
    let names: Vec<String> = a.queues().into_iter().map(|(_, n)| n).collect();
    assert_eq!(&names[..9], &ODD_NAMES[..]);
    assert_eq!(names[9], "Queue 0009");
    assert_eq!(names[5].chars().count(), 235);
    for (id, _) in a.queues() {
        assert_eq!(id.len(), 36);
        assert_eq!(id, id.to_lowercase());
        assert_eq!(a.observation_at(&id, 42), b.observation_at(&id, 42));
    }
    let id = &a.queues()[0].0;
    let changes = (0..20)
        .filter(|s| a.observation_at(id, *s) != a.observation_at(id, s + 1))
        .count();
    assert!(changes > 15, "values change from slot to slot");
}

#[test]
fn keep_alive_and_connection_close_over_a_raw_socket() {
    let sim = sim(1);
    let mut stream = TcpStream::connect(sim.base_url().trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = "GET /api/v2/routing/queues HTTP/1.1\r\nHost: x\r\n\r\n";
    let closing = "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream
        .write_all(format!("{request}{request}{closing}").as_bytes())
        .unwrap();
    let mut all = String::new();
    stream
        .read_to_string(&mut all)
        .expect("server closes after Connection: close");
    assert_eq!(all.matches("HTTP/1.1 401").count(), 2);
    assert_eq!(all.matches("HTTP/1.1 404").count(), 1);
    assert!(all.contains("Connection: close"));
}

#[test]
fn shutdown_is_prompt_with_idle_and_delayed_connections() {
    let sim = sim(1);
    let agent = agent();
    let t = token(&sim, &agent); // leaves a pooled keep-alive connection open
    sim.inject(Endpoint::Queues, Fault::Delay(Duration::from_secs(30)), 1);
    let url = format!("{}/api/v2/routing/queues", sim.base_url());
    let waiting = std::thread::spawn(move || {
        let _ = agent
            .get(url)
            .header("Authorization", format!("Bearer {t}"))
            .call();
    });
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    drop(sim);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    waiting.join().unwrap();
}

#[test]
fn posts_need_json_and_paths_must_exist() {
    let sim = sim(1);
    let agent = agent();
    let t = token(&sim, &agent);
    let not_json = read(
        agent
            .post(format!("{}{OBSERVATIONS}", sim.base_url()))
            .header("Authorization", format!("Bearer {t}"))
            .header("Content-Type", "text/plain")
            .send("{}"),
    );
    assert_eq!(
        (not_json.status, not_json.body["code"].as_str()),
        (415, Some("unsupported.media.type"))
    );
    let nowhere = get(&sim, &agent, &t, "/api/v2/nowhere");
    assert_eq!(
        (nowhere.status, nowhere.body["code"].as_str()),
        (404, Some("not.found"))
    );
    assert_eq!(sim.requests().last().unwrap().endpoint, None);
}

#[test]
fn the_sim_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sim>();
}

/// The sparse shapes (no `count` on `oLongest*`, empty media groups left out) and the full
/// ones read as the same values.
#[test]
fn sparse_and_full_shapes_read_the_same() {
    let media = |media_type: &str, waiting, interacting| values::ExpectedMedia {
        media_type: media_type.into(),
        waiting,
        interacting,
        alerting: 0,
        longest_waiting_ms: if waiting > 0 { 42_000 } else { 0 },
        longest_interacting_ms: if interacting > 0 { 7_000 } else { 0 },
    };
    let observation = values::ExpectedObservation {
        media: vec![
            media("voice", 0, 0),
            media("chat", 0, 0),
            media("email", 3, 0),
        ],
        ..values::empty_observation(&[])
    };
    let metrics: Vec<&str> = crate::genesys::observations::METRICS.to_vec();
    let now = 1_748_874_610_000;
    let read = |id: &str, slot: u64| {
        let groups = observations::observation_groups(id, &observation, &metrics, &[], now, slot);
        let queue = std::sync::Arc::new(crate::model::Queue {
            id: id.into(),
            name: "q".into(),
        });
        let body = json!({ "results": groups }).to_string();
        let parsed = crate::genesys::observations::parse(&body, &[queue], now).unwrap();
        let mut media: Vec<_> = parsed.observations[0]
            .media
            .iter()
            .filter(|m| m.values != [0.0; 5])
            .map(|m| (m.media_type.to_string(), m.values))
            .collect();
        media.sort_by(|a, b| a.0.cmp(&b.0));
        (groups.len(), media)
    };
    let (sparse, full) = ("0000000000000001", "0000000000000002");
    assert!(observations::sparse_shape(sparse) && !observations::sparse_shape(full));
    let (full_groups, full_values) = read(full, 2);
    let (sparse_groups, sparse_values) = read(sparse, 2);
    assert_eq!(
        (full_groups, sparse_groups),
        (4, 3),
        "chat left out on an even slot"
    );
    assert_eq!(read(sparse, 3).0, 4, "kept on an odd slot");
    assert_eq!(sparse_values, full_values);
    assert_eq!(full_values[0].1[3], 42.0, "email longest waiting");
}

#[test]
fn prerendered_answers_repeat_within_a_period_and_answer_each_query_for_itself() {
    let sim = Sim::start(SimOptions {
        queue_count: 4,
        value_period: Duration::from_secs(3600),
        prerendered_answers: true,
        ..SimOptions::default()
    })
    .expect("sim starts");
    let agent = agent();
    let t = token(&sim, &agent);
    let all = ids(&sim, 4);
    let queue_ids = |answer: &Answer| -> Vec<String> {
        let results = answer.body["results"].as_array().expect("results");
        let mut ids: Vec<String> = results
            .iter()
            .map(|r| r["group"]["queueId"].as_str().unwrap().to_string())
            .collect();
        ids.dedup();
        ids
    };
    let first = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&all[..2], &ALL_METRICS),
    );
    let again = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&all[..2], &ALL_METRICS),
    );
    let other = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&all[2..], &ALL_METRICS),
    );
    assert_eq!((first.status, again.status, other.status), (200, 200, 200));
    assert_eq!(first.body, again.body);
    assert_eq!(queue_ids(&first), all[..2]);
    assert_eq!(queue_ids(&other), all[2..]);
    let refused = post(
        &sim,
        &agent,
        &t,
        OBSERVATIONS,
        &observation_query(&all[..2], &["oBogus"]),
    );
    assert_eq!(refused.status, 400);
}

#[test]
fn the_answer_cache_forgets_a_period_once_the_next_begins() {
    let mut cache = super::observations::AnswerCache::default();
    cache.put(7, b"query", b"answer");
    assert_eq!(cache.get(7, b"query"), Some(&b"answer"[..]));
    assert_eq!(cache.get(7, b"other"), None);
    assert_eq!(cache.get(8, b"query"), None);
    cache.put(8, b"other", b"later");
    assert_eq!(cache.get(8, b"query"), None);
    assert_eq!(cache.get(8, b"other"), Some(&b"later"[..]));
}

/// With changes at random moments, each queue changes once per period, at the instants
/// `values::changes` lists and nowhere else, and the queues do not change together.
#[test]
fn random_moments_change_each_queue_once_per_period_at_the_logged_instants() {
    let period = 10_000;
    let from = 1_796_613_000_000;
    let to = from + 6 * period;
    let mut instants = Vec::new();
    for index in 0..5 {
        let changes = values::changes(7, index, from, to, period);
        assert!((5..=7).contains(&changes.len()), "{changes:?}");
        let mut previous = values::slot(7, index, from, period, true);
        for t in (from..to).step_by(37) {
            let slot = values::slot(7, index, t, period, true);
            if slot != previous {
                let logged = changes.iter().find(|(at, _)| *at <= t && t < at + 37);
                assert_eq!(logged.map(|(_, s)| *s), Some(slot), "queue {index} at {t}");
                previous = slot;
            }
        }
        instants.extend(changes.into_iter().map(|(at, _)| at));
    }
    instants.sort_unstable();
    instants.dedup();
    assert!(instants.len() > 25, "queues change at moments of their own");
    assert_eq!(values::slot(7, 0, from + 5, period, false), from / period);
}

/// The notification endpoints: a channel answers `connectUri`/`id`/`expires`, its
/// subscriptions list the topics, and its websocket publishes a heartbeat.
#[test]
fn a_channel_is_created_subscribed_and_its_websocket_beats() {
    let sim = Sim::start(SimOptions {
        queue_count: 3,
        heartbeat_period: Duration::from_millis(200),
        ..SimOptions::default()
    })
    .unwrap();
    let agent = agent();
    let token = login(&sim, &agent, "sim-client-id", "sim-client-secret").body["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let created = read(
        agent
            .post(&format!(
                "{}{}",
                sim.base_url(),
                paths::NOTIFICATION_CHANNELS
            ))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send("{}"),
    );
    assert_eq!(created.status, 200);
    let id = created.body["id"].as_str().unwrap();
    let uri = created.body["connectUri"].as_str().unwrap();
    assert!(
        uri.starts_with("ws://127.0.0.1:") && uri.ends_with(id),
        "{uri}"
    );
    assert!(crate::time::parse_utc(created.body["expires"].as_str().unwrap()).is_some());
    let queue = sim.queues()[1].0.clone();
    let topics = json!([{ "id": paths::observations_topic(&queue) }]);
    let subscribed = read(
        agent
            .put(&format!("{}{}", sim.base_url(), paths::subscriptions(id)))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .send(topics.to_string()),
    );
    assert_eq!(subscribed.status, 200);
    assert_eq!(sim.subscriptions(), vec![vec![queue]]);
    let tls = crate::websocket::dial::tls_config(None).unwrap();
    let mut socket =
        crate::websocket::dial::connect(uri, &tls, &Default::default(), Duration::from_secs(5))
            .unwrap();
    let text = socket.read_text().unwrap().unwrap();
    assert!(text.contains("WebSocket Heartbeat"), "{text}");
    sim.expire_channels();
    assert!(matches!(
        crate::websocket::dial::connect(uri, &tls, &Default::default(), Duration::from_secs(5)),
        Err(crate::websocket::WsError::Refused(_))
    ));
}
