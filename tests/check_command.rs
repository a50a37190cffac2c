//! `genesys2influx check`, black-box: the built binary against a simulated Genesys Cloud
//! and a real influxd, one test per way a setup goes wrong. Each asserts the exit code of
//! the contract (0/69/77/78), the line that says what to do, and that the secret is never
//! printed. Every output is echoed to stderr (`--nocapture`) so docs/troubleshooting.md
//! can quote real output.

use std::time::Duration;

use genesys2influx::sim::{Endpoint, Sim, SimOptions};

use crate::util::free_port;
use crate::util::influxd::{self, Influxd, Options};
use crate::util::process::run_to_end;
use crate::util::proxy::ProxyStandIn;

const DB: &str = "genesys";
const SECRET: &str = "sim-client-secret";
const INFLUX_PASSWORD: &str = "not the admin password";
/// `check` ends on its own; this only bounds a hang.
const LIMIT: Duration = Duration::from_secs(60);

/// 15 queues whose values change once an hour, so a snapshot is predictable.
fn sim() -> Sim {
    Sim::start(SimOptions {
        queue_count: 15,
        value_period: Duration::from_secs(3600),
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts")
}

fn influx(auth: bool) -> Influxd {
    let influx = Influxd::start_with(Options {
        auth,
        ..Options::default()
    });
    influx.create_database(DB);
    influx
}

fn env(genesys_url: &str, influx_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("GENESYS_CLIENT_ID", SimOptions::default().client_id),
        ("GENESYS_CLIENT_SECRET", SECRET.to_string()),
        ("GENESYS_API_URL", genesys_url.to_string()),
        ("GENESYS_LOGIN_URL", genesys_url.to_string()),
        ("INFLUXDB_URL", influx_url.to_string()),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("HTTP_TIMEOUT", "5s".to_string()),
    ]
}

fn with(
    mut env: Vec<(&'static str, String)>,
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != key);
    env.push((key, value.to_string()));
    env
}

/// Runs `check`; returns (exit code, stdout + stderr), echoed for the docs.
fn check(case: &str, env: &[(&'static str, String)]) -> (Option<i32>, String) {
    let (code, stdout, stderr) = run_to_end(&["check"], env, LIMIT);
    let output = format!("{stdout}{stderr}");
    eprintln!("===== {case}: exit {code:?}\n{output}=====");
    for (key, value) in env {
        if key.contains("SECRET") || key.contains("PASSWORD") {
            assert!(!output.contains(value.as_str()), "{key} printed:\n{output}");
        }
    }
    (code, output)
}

fn unused_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

/// `GENESYS_API_URL` alone: the login host is derived from it (`api.` → `login.`) as the
/// official SDKs do, not taken from the default region; a base without `api.` (this
/// simulator on 127.0.0.1) keeps needing `GENESYS_LOGIN_URL`, else the region's.
#[test]
fn the_api_url_alone_points_the_login_at_its_own_region() {
    let config = |vars: &[(&str, &str)]| {
        let get = |key: &str| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        genesys2influx::config::from_lookup(&get, genesys2influx::config::Mode::Check).unwrap()
    };
    let base = [
        ("GENESYS_CLIENT_ID", "id"),
        ("GENESYS_CLIENT_SECRET", "secret"),
        ("INFLUXDB_URL", "http://127.0.0.1:1"),
        ("INFLUXDB_DATABASE", DB),
    ];
    let derived = config(
        &[
            &base[..],
            &[("GENESYS_API_URL", "https://api.mypurecloud.de")],
        ]
        .concat(),
    );
    assert_eq!(derived.genesys.login_url, "https://login.mypurecloud.de");
    let loopback = config(&[&base[..], &[("GENESYS_API_URL", "http://127.0.0.1:9000")]].concat());
    assert_eq!(loopback.genesys.login_url, "https://login.mypurecloud.com");
    let both = config(
        &[
            &base[..],
            &[
                ("GENESYS_API_URL", "https://api.mypurecloud.de"),
                ("GENESYS_LOGIN_URL", "https://sso.example"),
            ],
        ]
        .concat(),
    );
    assert_eq!(both.genesys.login_url, "https://sso.example");
}

#[test]
fn a_working_setup_exits_0_with_every_step_and_a_table_of_current_values() {
    let sim = sim();
    let influx = influx(false);
    let slot_before = sim.slot_at(now_ms());
    let (code, output) = check("all good", &env(&sim.base_url(), &influx.url()));
    let same_slot = sim.slot_at(now_ms()) == slot_before;
    assert_eq!(code, Some(0), "{output}");
    for step in [
        "✓ config: Genesys",
        &format!("✓ token: obtained from {}/oauth/token", sim.base_url()),
        "✓ queues: 15 resolved (15 visible to the OAuth client)",
        "✓ observations: answered for 15 of 15 queue(s) asked",
        "✓ InfluxDB (v1): InfluxDB 1.6",
        &format!("database \"{DB}\" writable"),
    ] {
        assert!(output.contains(step), "missing {step:?} in:\n{output}");
    }
    assert!(!output.contains('✗'), "{output}");
    let table: Vec<&str> = output
        .lines()
        .skip_while(|l| !l.starts_with("queue "))
        .collect();
    assert_eq!(table.len(), 1 + 10, "header and 10 rows:\n{output}");
    let rows: Vec<&str> = table[1..]
        .iter()
        .copied()
        .filter(|row| row.starts_with("Queue 00"))
        .collect();
    assert!(!rows.is_empty(), "{output}");
    for row in rows {
        let cells: Vec<&str> = row.split_whitespace().collect();
        let name = format!("{} {}", cells[0], cells[1]);
        let id = sim
            .queues()
            .into_iter()
            .find(|(_, n)| *n == name)
            .map(|(id, _)| id)
            .expect("a Sim queue");
        if same_slot {
            let expected = sim.observation_at(&id, slot_before);
            let waiting: u64 = expected.media.iter().map(|m| m.waiting).sum();
            assert_eq!(cells[2], waiting.to_string(), "waiting of {name}");
            assert_eq!(
                cells[4],
                expected.agents()[0].to_string(),
                "on queue of {name}"
            );
            assert_eq!(cells[5], expected.agents()[1].to_string(), "idle of {name}");
        }
    }
    // No data point was written by the probe.
    assert!(influx.rows(DB, "SHOW MEASUREMENTS").is_empty());
}

#[test]
fn a_wrong_secret_exits_77_naming_the_login_url_and_region() {
    let sim = sim();
    let influx = influx(false);
    let env = with(
        env(&sim.base_url(), &influx.url()),
        "GENESYS_CLIENT_SECRET",
        "wrong-secret-Zq8",
    );
    let (code, output) = check("wrong secret", &env);
    assert_eq!(code, Some(77), "{output}");
    assert!(
        output.contains(&format!(
            "✗ token: Genesys Cloud refused the client credentials at {}/oauth/token (region",
            sim.base_url()
        )),
        "{output}"
    );
    assert!(!output.contains("wrong-secret-Zq8") && !output.contains(SECRET));
}

#[test]
fn a_role_without_the_observation_permission_exits_77_naming_it() {
    let sim = sim();
    sim.forbid(Endpoint::Observations);
    let influx = influx(false);
    let (code, output) = check(
        "no observation permission",
        &env(&sim.base_url(), &influx.url()),
    );
    assert_eq!(code, Some(77), "{output}");
    assert!(output.contains("✓ queues: 15 resolved"), "{output}");
    assert!(
        output.contains("✗ observations: Genesys Cloud denied POST /api/v2/analytics/queues/observations/query (HTTP 403")
            && output.contains("analytics:queueObservation:view"),
        "{output}"
    );
}

#[test]
fn a_role_without_the_kpi_permission_exits_77_naming_it() {
    let sim = sim();
    sim.forbid(Endpoint::Aggregates);
    let influx = influx(false);
    let (code, output) = check("no KPI permission", &env(&sim.base_url(), &influx.url()));
    assert_eq!(code, Some(77), "{output}");
    assert!(output.contains("✓ observations: answered"), "{output}");
    assert!(
        output.contains("✗ KPIs: Genesys Cloud denied POST /api/v2/analytics/conversations/aggregates/query (HTTP 403")
            && output.contains("analytics:conversationAggregate:view")
            && output.contains("KPIS=off"),
        "{output}"
    );
}

/// Unless `NOTIFICATIONS=off`, one line says whether a notification channel can be created,
/// a queue's topic subscribed and its websocket opened; a failure fails `check` only with
/// `NOTIFICATIONS=on`, and is a warning with `auto`.
#[test]
fn the_notifications_line_fails_check_only_with_notifications_on() {
    let sim = sim();
    let influx = influx(false);
    let base = env(&sim.base_url(), &influx.url());
    let (code, output) = check("notifications work", &base);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("✓ notifications: channel created (expires in 24h), a queue's observations topic subscribed, websocket opened"),
        "{output}"
    );
    let subscribed: Vec<Vec<String>> = sim.subscriptions();
    assert_eq!(subscribed.len(), 1, "{subscribed:?}");
    assert!(sim
        .queues()
        .iter()
        .any(|(id, _)| subscribed[0] == [id.clone()]));

    sim.forbid(Endpoint::NotificationChannels);
    let (code, output) = check("notifications refused, auto", &base);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("! notifications: cannot create a notification channel: ")
            && output.contains("(HTTP 403")
            && output.contains("the service will poll alone (NOTIFICATIONS=auto)"),
        "{output}"
    );
    let (code, output) = check(
        "notifications refused, on",
        &with(base.clone(), "NOTIFICATIONS", "on"),
    );
    assert_eq!(code, Some(77), "{output}");
    assert!(
        output
            .contains("✗ notifications (NOTIFICATIONS=on): cannot create a notification channel: "),
        "{output}"
    );
    let (code, output) = check("notifications off", &with(base, "NOTIFICATIONS", "off"));
    assert_eq!(code, Some(0), "{output}");
    assert!(!output.contains("notifications"), "{output}");
}

#[test]
fn an_unreachable_genesys_exits_69() {
    let influx = influx(false);
    let genesys = unused_url();
    let (code, output) = check("Genesys unreachable", &env(&genesys, &influx.url()));
    assert_eq!(code, Some(69), "{output}");
    assert!(
        output.contains("✗ token:") && output.contains(&genesys),
        "{output}"
    );
    // The InfluxDB step still runs, so one check shows every problem.
    assert!(output.contains("✓ InfluxDB"), "{output}");
}

#[test]
fn an_unreachable_influxdb_exits_69() {
    let sim = sim();
    let url = unused_url();
    let (code, output) = check("InfluxDB unreachable", &env(&sim.base_url(), &url));
    assert_eq!(code, Some(69), "{output}");
    assert!(output.contains("✓ observations"), "{output}");
    assert!(
        output.contains(&format!(
            "✗ InfluxDB (v1): InfluxDB unreachable: {url}/ping"
        )),
        "{output}"
    );
}

#[test]
fn a_wrong_influxdb_password_exits_77() {
    let sim = sim();
    let influx = influx(true);
    let env = with(
        env(&sim.base_url(), &influx.url()),
        "INFLUXDB_USERNAME",
        influxd::ADMIN_USER,
    );
    let env = with(env, "INFLUXDB_PASSWORD", INFLUX_PASSWORD);
    let (code, output) = check("wrong InfluxDB password", &env);
    assert_eq!(code, Some(77), "{output}");
    assert!(
        output.contains("✗ InfluxDB (v1): InfluxDB refused the credentials: 401")
            && output.contains("INFLUXDB_PASSWORD"),
        "{output}"
    );
    // and the right password passes
    let env = with(env, "INFLUXDB_PASSWORD", influxd::ADMIN_PASSWORD);
    let (code, output) = check("right InfluxDB password", &env);
    assert_eq!(code, Some(0), "{output}");
}

#[test]
fn a_missing_database_exits_78() {
    let sim = sim();
    let influx = Influxd::start_default();
    let (code, output) = check("missing database", &env(&sim.base_url(), &influx.url()));
    assert_eq!(code, Some(78), "{output}");
    assert!(
        output.contains("✗ InfluxDB (v1): InfluxDB answered 404: database \"genesys\"")
            && output.contains("INFLUXDB_DATABASE"),
        "{output}"
    );
}

#[test]
fn a_bad_setting_exits_78_naming_the_variable() {
    let env = with(env(&unused_url(), &unused_url()), "WINDOW", "45s");
    let (code, output) = check("WINDOW=45s", &env);
    assert_eq!(code, Some(78), "{output}");
    assert!(
        output.contains("WINDOW") && output.contains("45s"),
        "{output}"
    );
}

/// Values that make no sense exit 78 before anything is contacted, naming the variable
/// and what would be accepted; a password in INFLUXDB_URL is never printed.
#[test]
fn values_out_of_range_exit_78_naming_the_variable() {
    for (variable, value, expected) in [
        (
            "GENESYS_API_URL",
            "http://127.0.0.1:99999",
            "a port is a number from 1 to 65535",
        ),
        (
            "WINDOW",
            "1000000h",
            "use a multiple of POLL_INTERVAL up to 24h",
        ),
        ("POLL_INTERVAL", "4000000h", "from 1s to 1h"),
        (
            "QUEUE_REFRESH",
            "1ms",
            "1ms is out of range; use 10s to 24h",
        ),
        (
            "SHUTDOWN_TIMEOUT",
            "0s",
            "0s is out of range; use 1s to 10m",
        ),
        ("SPOOL_MAX_BYTES", "0", "not a whole number from 65536"),
        ("GENESYS_CLIENT_SECRET", "   ", "is blank"),
        (
            "INFLUXDB_URL",
            "http://admin:pw-IN-URL-4711@127.0.0.1:8086",
            "'http://***@127.0.0.1:8086' holds user info",
        ),
        (
            "HTTPS_PROXY",
            "socks5://user:pw-IN-URL-4711@127.0.0.1:1080",
            "SOCKS proxies (socks5://) are not supported",
        ),
        (
            "http_proxy",
            "https://user:pw-IN-URL-4711@proxy.example:3128",
            "a TLS connection to the proxy itself (https://) is not supported",
        ),
        ("ALL_PROXY", "htpp://proxy:3128", "has an unknown scheme"),
    ] {
        let env = with(env(&unused_url(), &unused_url()), variable, value);
        for command in ["check", "run"] {
            let (code, stdout, stderr) = run_to_end(&[command], &env, LIMIT);
            let output = format!("{stdout}{stderr}");
            assert_eq!(
                code,
                Some(78),
                "{command} with {variable}={value:?}:\n{output}"
            );
            assert!(
                output.contains(&format!("{variable}: ")) && output.contains(expected),
                "{command} with {variable}={value:?}:\n{output}"
            );
            assert!(!output.contains("pw-IN-URL-4711"), "{output}");
        }
    }
}

/// An env file saved with a byte order mark reads like any other.
#[test]
fn an_env_file_with_a_byte_order_mark_is_read() {
    let dir = crate::util::TempDir::new("bom-env");
    let path = dir.join("g2i.env");
    std::fs::write(&path, "\u{feff}WINDOW=1000000h\nPOLL_INTERVAL=10s\n").expect("env file");
    let mut env = env(&unused_url(), &unused_url());
    env.retain(|(k, _)| *k != "WINDOW");
    let path = path.display().to_string();
    let (code, stdout, stderr) = run_to_end(&["check", "--env-file", &path], &env, LIMIT);
    assert_eq!(code, Some(78), "{stdout}{stderr}");
    assert!(
        stderr.contains("WINDOW: 1000000h is out of range"),
        "{stderr}"
    );
}

#[test]
fn nothing_selected_exits_78() {
    let sim = sim();
    let influx = influx(false);
    let env = with(
        env(&sim.base_url(), &influx.url()),
        "GENESYS_QUEUES",
        "NoSuchQueue*",
    );
    let (code, output) = check("nothing selected", &env);
    assert_eq!(code, Some(78), "{output}");
    assert!(output.contains("! queues: GENESYS_QUEUES entries matching nothing (names are case-sensitive): NoSuchQueue*"), "{output}");
    assert!(
        output.contains("✗ queues: nothing to poll (15 visible"),
        "{output}"
    );
}

fn port_of(url: &str) -> &str {
    url.rsplit(':').next().unwrap_or_default()
}

/// A plain-http InfluxDB goes through `HTTP_PROXY` as curl sends it: absolute-form
/// requests, never a `CONNECT` tunnel (which proxies allow to port 443 only), with the
/// proxy's credentials. `NO_PROXY` written with a space and a `host:port` entry keeps
/// the simulated Genesys direct. `check` names each destination's route, the proxy
/// password hidden.
#[test]
fn a_plain_http_influxdb_goes_through_http_proxy_in_absolute_form() {
    let sim = sim();
    let influx = influx(false);
    let proxy = ProxyStandIn::start(Some("user:pr0xy-pa55"));
    let proxy_url = format!(
        "http://user:pr0xy-pa55@{}",
        proxy.url().trim_start_matches("http://")
    );
    let mut env = env(&sim.base_url(), &influx.url());
    env.push(("HTTP_PROXY", proxy_url.clone()));
    env.push(("HTTPS_PROXY", proxy_url));
    env.push((
        "NO_PROXY",
        format!("localhost, 127.0.0.1:{}", port_of(&sim.base_url())),
    ));
    // The notifications websocket (on a port of its own) would go through the proxy as a
    // `CONNECT` tunnel, as an upgrade must: `websocket::dial`'s tests cover that route.
    env.push(("NOTIFICATIONS", "off".to_string()));
    let (code, output) = check("InfluxDB behind HTTP_PROXY", &env);
    assert_eq!(code, Some(0), "{output}");
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "nothing went through the proxy");
    for line in &seen {
        assert!(
            line.starts_with(&format!("GET {}/", influx.url()))
                || line.starts_with(&format!("POST {}/", influx.url())),
            "not an absolute-form request to InfluxDB: {line:?} (all: {seen:?})"
        );
    }
    let shown = format!("http://***@{}", proxy.url().trim_start_matches("http://"));
    for line in [
        format!("✓ proxy: Genesys login {}: direct (NO_PROXY lists it)", sim.base_url()),
        format!("✓ proxy: Genesys API {}: direct (NO_PROXY lists it)", sim.base_url()),
        format!(
            "✓ proxy: InfluxDB {}: via proxy {shown} from HTTP_PROXY (plain HTTP, absolute-form requests)",
            influx.url()
        ),
    ] {
        assert!(output.contains(&line), "missing {line:?} in:\n{output}");
    }
    assert!(!output.contains("pr0xy-pa55"), "{output}");
}

/// A proxy answering 407 is named with the variable the credentials go in: for the
/// `CONNECT` tunnel to an https Genesys (whose name the proxy alone resolves) and for
/// the absolute-form requests to a plain-http InfluxDB.
#[test]
fn a_proxy_wanting_credentials_says_where_to_put_them() {
    // Two proxies: each is reached directly, never through the other.
    let secure = ProxyStandIn::start(Some("user:pass"));
    let plain = ProxyStandIn::start(Some("user:pass"));
    let mut env = env("https://api.genesys.invalid", "http://influx.invalid:8086");
    env = with(env, "GENESYS_LOGIN_URL", "https://login.genesys.invalid");
    env.push(("HTTPS_PROXY", secure.url()));
    env.push(("http_proxy", plain.url()));
    // The harness lists 127.0.0.1 in NO_PROXY; here nothing is listed.
    env.push(("NO_PROXY", "nothing.invalid".to_string()));
    let (code, output) = check("proxy wants credentials", &env);
    assert_eq!(code, Some(69), "{output}");
    for hint in [
        "the proxy wants credentials: put them in HTTPS_PROXY as http://user:pass@host:port",
        "the proxy wants credentials: put them in http_proxy as http://user:pass@host:port",
    ] {
        assert!(output.contains(hint), "missing {hint:?} in:\n{output}");
    }
    let seen = secure.seen();
    assert!(
        seen.iter()
            .all(|line| line == "CONNECT login.genesys.invalid:443 HTTP/1.1"),
        "{seen:?}"
    );
    assert!(!seen.is_empty());
    assert_eq!(
        plain.seen(),
        ["GET http://influx.invalid:8086/ping HTTP/1.1"],
        "{seen:?}"
    );
}

/// A proxy that cannot be reached is named as the thing that failed, not the
/// destination behind it.
#[test]
fn an_unreachable_proxy_is_named_with_its_variable() {
    let proxy = unused_url();
    let mut env = env("https://api.genesys.invalid", "http://influx.invalid:8086");
    env = with(env, "GENESYS_LOGIN_URL", "https://login.genesys.invalid");
    env.push(("HTTPS_PROXY", proxy.clone()));
    env.push(("HTTP_PROXY", proxy.clone()));
    env.push(("NO_PROXY", "nothing.invalid".to_string()));
    let (code, output) = check("proxy unreachable", &env);
    assert_eq!(code, Some(69), "{output}");
    for variable in ["HTTPS_PROXY", "HTTP_PROXY"] {
        let named = format!("proxy {proxy} from {variable}: I/O error: Connection refused");
        assert!(output.contains(&named), "missing {named:?} in:\n{output}");
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
