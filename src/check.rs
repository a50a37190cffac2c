//! `genesys2influx check`: walks through everything the service needs, one line per step
//! with ✓ or ✗ and the reason, then shows current values of a few queues, so an operator
//! can tell in seconds whether a configuration will work. Writes no data points.
//!
//! Every line goes through [`redact`], so a secret echoed in an error body is never
//! printed.
//!
//! Exit codes ([`Exit`]): 0 all good, 69 a service unreachable, 77 credentials or
//! permissions refused, 78 configuration (nothing selected, unusable TLS file).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{Config, InfluxTarget, KpiConfig, Notifications};
use crate::exit::Exit;
use crate::genesys::budget_fit::{self, BudgetSettings, Org};
use crate::genesys::client::GenesysClient;
use crate::genesys::conversation_aggregates::{self, Interval};
use crate::genesys::error::ApiError;
use crate::genesys::limits::MAX_QUEUES_PER_REQUEST;
use crate::genesys::observations;
use crate::genesys::queues;
use crate::logging::redact;
use crate::model::{agent, media, Queue, QueueObservation};
use crate::notifications::probe::ProbeError;
use crate::stats::Stats;

/// Queues shown in the snapshot table.
pub const TABLE_ROWS: usize = 10;
/// Longest time any one Genesys step may take, retries included.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// Runs the checks, printing to stdout; returns the exit code.
pub fn run(config: &Config) -> Exit {
    let mut out = std::io::stdout().lock();
    run_to(config, &mut out)
}

/// [`run`] writing to any sink (tests).
pub fn run_to(config: &Config, out: &mut dyn std::io::Write) -> Exit {
    let mut report = Report {
        out,
        code: Exit::Ok,
    };
    report.ok(&format!(
        "config: Genesys {}, {} queue selector(s){}, poll every {}s",
        if config
            .genesys
            .region_label
            .contains(&config.genesys.api_url)
        {
            config.genesys.region_label.clone()
        } else {
            format!(
                "{} ({})",
                config.genesys.region_label, config.genesys.api_url
            )
        },
        config.queues.len(),
        config
            .shard
            .map(|s| format!(", shard {}/{}", s.index, s.count))
            .unwrap_or_default(),
        config.poll_interval.as_secs()
    ));
    for warning in &config.warnings {
        report.warn(&format!("config: {warning}"));
    }
    report_routes(config, &mut report);
    let agent = match crate::http::agent(&config.http) {
        Ok(agent) => agent,
        Err(why) => {
            report.fail(Exit::Config, &format!("HTTP client: {why}"));
            return report.code;
        }
    };
    let observations = check_genesys(config, agent.clone(), &mut report);
    check_influx(config, &agent, &mut report);
    if let Some(observations) = observations {
        report.table(&observations);
    }
    report.code
}

/// One line per destination: directly or through which proxy (credentials hidden).
fn report_routes(config: &Config, report: &mut Report) {
    let proxies = &config.http.proxy;
    if proxies.https.is_none() && proxies.http.is_none() {
        report.ok("proxy: none set (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY): every destination is reached directly");
        return;
    }
    let influx = match &config.influx {
        InfluxTarget::Stdout => None,
        InfluxTarget::V1 { url, .. } | InfluxTarget::V2 { url, .. } => Some(url),
    };
    let destinations = [
        ("Genesys login", Some(&config.genesys.login_url)),
        ("Genesys API", Some(&config.genesys.api_url)),
        ("InfluxDB", influx),
    ];
    for (name, url) in destinations {
        if let Some(url) = url {
            let route = crate::http::route::describe(proxies, url);
            report.ok(&format!("proxy: {name} {url}: {route}"));
        }
    }
}

struct Report<'a> {
    out: &'a mut dyn std::io::Write,
    code: Exit,
}

impl Report<'_> {
    /// Writes one line, secrets blanked out.
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{}", redact::apply(text));
    }

    fn ok(&mut self, text: &str) {
        self.line(&format!("✓ {text}"));
    }

    fn warn(&mut self, text: &str) {
        self.line(&format!("! {text}"));
    }

    /// Records a failed step; the first failure decides the exit code.
    fn fail(&mut self, code: Exit, text: &str) {
        self.line(&format!("✗ {text}"));
        if self.code == Exit::Ok {
            self.code = code;
        }
    }

    fn table(&mut self, observations: &[QueueObservation]) {
        self.line("");
        self.line(&format!(
            "{:<40} {:>8} {:>12} {:>9} {:>6}",
            "queue", "waiting", "longest wait", "on queue", "idle"
        ));
        for o in observations.iter().take(TABLE_ROWS) {
            let waiting: f64 = o.media.iter().map(|m| m.values[media::WAITING]).sum();
            let longest = o
                .media
                .iter()
                .map(|m| m.values[media::LONGEST_WAITING_SECONDS])
                .fold(0.0, f64::max);
            self.line(&format!(
                "{} {:>8} {:>11.0}s {:>9} {:>6}",
                fit(&o.queue.name, 40),
                waiting,
                longest,
                o.agents[agent::ON_QUEUE],
                o.agents[agent::IDLE]
            ));
        }
    }
}

/// `name` cut or padded to exactly `width` characters.
fn fit(name: &str, width: usize) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let count = clean.chars().count();
    if count > width {
        let mut cut: String = clean.chars().take(width - 1).collect();
        cut.push('…');
        cut
    } else {
        format!("{clean}{}", " ".repeat(width - count))
    }
}

/// The exit code for a failed Genesys call.
pub fn exit_code_for(error: &ApiError) -> Exit {
    if error.is_refusal() {
        Exit::Credentials
    } else if error.is_transient() {
        Exit::Unavailable
    } else {
        Exit::Failure
    }
}

/// Token, queue resolution and one observations request; the observations on success.
fn check_genesys(
    config: &Config,
    agent: ureq::Agent,
    report: &mut Report,
) -> Option<Vec<QueueObservation>> {
    let genesys = &config.genesys;
    let client = GenesysClient::new(genesys, agent, Arc::new(Stats::default()));
    if let Err(error) = client.login() {
        report.fail(exit_code_for(&error), &format!("token: {error}"));
        return None;
    }
    report.ok(&format!(
        "token: obtained from {}/oauth/token (region {})",
        genesys.login_url, genesys.region_label
    ));
    let all = match queues::list_all(&client, Instant::now() + STEP_DEADLINE) {
        Ok(all) => all,
        Err(error) => {
            report.fail(exit_code_for(&error), &format!("queues: {error}"));
            return None;
        }
    };
    let selection = queues::select(&all, &config.queues);
    if !selection.unmatched.is_empty() {
        report.warn(&format!(
            "queues: GENESYS_QUEUES entries matching nothing (names are case-sensitive): {}",
            selection.unmatched.join(", ")
        ));
    }
    let selected_count = selection.queues.len();
    let polled = queues::in_shard(selection.queues, config.shard);
    if polled.is_empty() {
        report.fail(
            Exit::Config,
            &format!(
                "queues: nothing to poll ({} visible to the OAuth client, {selected_count} selected{}); check GENESYS_QUEUES, QUEUE_SHARD and the role's divisions",
                all.len(),
                if config.shard.is_some() { ", none in this shard" } else { "" }
            ),
        );
        return None;
    }
    report.ok(&format!(
        "queues: {} resolved ({} visible to the OAuth client{})",
        polled.len(),
        all.len(),
        config
            .shard
            .map(|s| format!(
                ", {selected_count} selected before shard {}/{}",
                s.index, s.count
            ))
            .unwrap_or_default()
    ));
    check_budget(
        config,
        Org {
            polled: polled.len(),
            selected: selected_count,
            listed: all.len(),
        },
        report,
    );
    let chunk = &polled[..polled.len().min(MAX_QUEUES_PER_REQUEST)];
    let observed = check_observations(&client, chunk, report);
    if let Some(kpi) = config.kpi {
        check_kpis(&client, chunk, kpi, report);
    }
    check_notifications(config, &client, &chunk[0], report);
    observed
}

/// The request plan the service would start with, and what to change when the budget is
/// too small (the same lines `run` logs).
fn check_budget(config: &Config, org: Org, report: &mut Report) {
    let plan = budget_fit::plan_for(org, &BudgetSettings::of(config));
    match &plan.advice {
        None => report.ok(&format!("budget: {}", plan.summary())),
        Some(advice) => {
            report.warn(&format!("budget: {}", plan.summary()));
            report.warn(&format!("budget: {advice}"));
        }
    }
}

/// Unless `NOTIFICATIONS=off`: a channel, one queue's topic and the websocket. A failure
/// fails `check` only with `NOTIFICATIONS=on`; with `auto` the service polls alone, so it
/// is a warning.
fn check_notifications(
    config: &Config,
    client: &GenesysClient,
    queue: &Queue,
    report: &mut Report,
) {
    if config.notifications == Notifications::Off {
        return;
    }
    match crate::notifications::probe::probe(client, &config.http, &queue.id) {
        Ok(done) => report.ok(&format!("notifications: {done}")),
        Err(error) if config.notifications == Notifications::On => {
            let code = match &error {
                ProbeError::Api(_, e) => exit_code_for(e),
                ProbeError::Socket(_) => Exit::Unavailable,
            };
            report.fail(code, &format!("notifications (NOTIFICATIONS=on): {error}"));
        }
        Err(error) => report.warn(&format!(
            "notifications: {error}; the service will poll alone (NOTIFICATIONS=auto)"
        )),
    }
}

/// One observations request for the first chunk of queues.
fn check_observations(
    client: &GenesysClient,
    chunk: &[Arc<Queue>],
    report: &mut Report,
) -> Option<Vec<QueueObservation>> {
    let asked = observations::Chunk::new(chunk);
    match observations::observe(client, &asked, Instant::now() + STEP_DEADLINE) {
        Ok(result) => {
            report.ok(&format!(
                "observations: answered for {} of {} queue(s) asked",
                result.observations.len(),
                chunk.len()
            ));
            if !result.missing.is_empty() {
                let names: Vec<&str> = result.missing.iter().map(|q| q.name.as_str()).collect();
                report.warn(&format!("observations: no answer for {}", names.join(", ")));
            }
            Some(result.observations)
        }
        Err(error) => {
            report.fail(exit_code_for(&error), &format!("observations: {error}"));
            None
        }
    }
}

/// One conversation-aggregates query (the current KPI bucket) for the first chunk: the
/// KPI permission is separate from the observation one and easily forgotten.
fn check_kpis(client: &GenesysClient, chunk: &[Arc<Queue>], kpi: KpiConfig, report: &mut Report) {
    let bucket_ms = u64::try_from(kpi.bucket.as_millis()).unwrap_or(u64::MAX);
    let interval = Interval::recent(crate::time::now_ms(), bucket_ms, 0);
    match conversation_aggregates::query(client, chunk, interval, kpi.bucket, Instant::now() + STEP_DEADLINE) {
        Ok(parsed) => report.ok(&format!(
            "KPIs: conversation aggregates answered ({} queue/media buckets in {})",
            parsed.buckets.len(),
            interval.to_iso()
        )),
        Err(error @ ApiError::Forbidden { .. }) => report.fail(
            Exit::Credentials,
            &format!("KPIs: {error}; or set KPIS=off to run without the interval KPIs"),
        ),
        Err(error @ ApiError::BadRequest { .. }) => report.fail(
            Exit::Config,
            &format!("KPIs: {error}; KPI_BUCKET={} may be a granularity Genesys Cloud does not accept (15m, 30m, 1h are)", crate::duration::format(kpi.bucket)),
        ),
        Err(error) => report.fail(exit_code_for(&error), &format!("KPIs: {error}")),
    }
}

/// InfluxDB reachable and write-authorised: `/ping`, then an empty write (no point is
/// written). 69 when unreachable, 77 when the credentials are refused, 78 when the
/// database/bucket is missing or the probe is rejected.
fn check_influx(config: &Config, agent: &ureq::Agent, report: &mut Report) {
    let mode = config.influx.mode_name();
    match crate::influx::endpoint::check(&config.influx, agent) {
        Ok(verified) => report.ok(&format!("InfluxDB ({mode}): {verified}")),
        Err(error) => report.fail(error.exit_code(), &format!("InfluxDB ({mode}): {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MediaObservation, Queue};

    #[test]
    fn names_are_fitted_to_the_column() {
        assert_eq!(fit("abc", 5), "abc  ");
        assert_eq!(fit("🎧 VIP", 7), "🎧 VIP  ");
        assert_eq!(fit("abcdefgh", 5), "abcd…");
        assert_eq!(fit("a\nb", 3), "a b");
    }

    #[test]
    fn exit_codes_per_failure() {
        let refused = ApiError::CredentialsRefused {
            status: 401,
            error: "invalid_client".into(),
            description: String::new(),
            login_url: "x".into(),
            region: "y".into(),
        };
        assert_eq!(exit_code_for(&refused), Exit::Credentials);
        let forbidden = ApiError::Forbidden {
            request: "POST x".into(),
            message: "m".into(),
            context_id: None,
            permission: Some("analytics:queueObservation:view"),
        };
        assert_eq!(exit_code_for(&forbidden), Exit::Credentials);
        assert_eq!(
            exit_code_for(&ApiError::Network("x".into())),
            Exit::Unavailable
        );
        assert_eq!(
            exit_code_for(&ApiError::Server {
                status: 503,
                message: String::new(),
                context_id: None
            }),
            Exit::Unavailable
        );
    }

    #[test]
    fn the_table_sums_media_and_takes_the_longest_wait() {
        let mut sink = Vec::new();
        let mut report = Report {
            out: &mut sink,
            code: Exit::Ok,
        };
        let observation = QueueObservation {
            queue: Arc::new(Queue {
                id: "q".into(),
                name: "Support".into(),
            }),
            agents: [10.0, 3.0, 5.0, 1.0, 1.0, 8.0, 18.0, 22.0],
            media: vec![
                MediaObservation {
                    media_type: "voice".into(),
                    values: [7.0, 5.0, 1.0, 312.412, 1004.1],
                },
                MediaObservation {
                    media_type: "chat".into(),
                    values: [2.0, 0.0, 0.0, 20.0, 0.0],
                },
            ],
        };
        report.table(&[observation]);
        let text = String::from_utf8(sink).unwrap();
        let row = text.lines().last().unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells, vec!["Support", "9", "312s", "10", "3"]);
    }

    fn config_for(url: &str, extra: &[(&str, &str)]) -> Config {
        let mut env: std::collections::HashMap<String, String> = [
            ("GENESYS_CLIENT_ID", "id"),
            ("GENESYS_CLIENT_SECRET", "s3cret-value"),
            ("GENESYS_API_URL", url),
            ("GENESYS_LOGIN_URL", url),
            ("INFLUXDB_URL", "-"),
            ("HTTP_TIMEOUT", "2s"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        crate::config::from_lookup(&|n| env.get(n).cloned(), crate::config::Mode::Check).unwrap()
    }

    #[test]
    fn a_working_setup_passes_every_step_and_shows_the_table() {
        use crate::genesys::client::test_server::{fixture, reply, token, Server};
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &fixture("queues-page-1.json")),
            reply(200, &fixture("queues-page-2.json")),
            reply(200, &fixture("observations-response.json")),
            reply(200, &fixture("aggregates-response.json")),
        ]);
        let config = config_for(
            &server.url,
            &[("GENESYS_QUEUES", "Support*,*VIP*,Sales*,Nope")],
        );
        let mut out = Vec::new();
        let code = run_to(&config, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(code, Exit::Ok, "{text}");
        assert!(text.contains("✓ token: obtained from"), "{text}");
        assert!(text.contains("! queues: GENESYS_QUEUES entries matching nothing (names are case-sensitive): Nope"), "{text}");
        assert!(text.contains("✓ queues: 3 resolved (7 visible"), "{text}");
        assert!(
            text.contains("✓ observations: answered for 3 of 3"),
            "{text}"
        );
        assert!(
            text.contains("✓ KPIs: conversation aggregates answered"),
            "{text}"
        );
        assert!(text.contains("Support – Ünïcode"), "{text}");
        assert!(!text.contains("s3cret-value"));
    }

    #[test]
    fn a_missing_kpi_permission_is_its_own_step_and_exits_77() {
        use crate::genesys::client::test_server::{fixture, reply, token, Server};
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &fixture("queues-page-1.json")),
            reply(200, &fixture("queues-page-2.json")),
            reply(200, &fixture("observations-response.json")),
            reply(403, &fixture("error-403-aggregates.json")),
        ]);
        let config = config_for(&server.url, &[("GENESYS_QUEUES", "Support*")]);
        let mut out = Vec::new();
        let code = run_to(&config, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(code, Exit::Credentials, "{text}");
        assert!(text.contains("✓ observations: answered"), "{text}");
        let kpi_line = text
            .lines()
            .find(|l| l.starts_with("✗ KPIs:"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            kpi_line.contains("analytics:conversationAggregate:view")
                && kpi_line.contains("KPIS=off"),
            "{kpi_line}"
        );

        // With KPIs off the step is not taken.
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &fixture("queues-page-1.json")),
            reply(200, &fixture("queues-page-2.json")),
            reply(200, &fixture("observations-response.json")),
        ]);
        let config = config_for(
            &server.url,
            &[
                ("GENESYS_QUEUES", "Support*"),
                ("KPIS", "off"),
                ("KPI_POLL", "30s"),
            ],
        );
        let mut out = Vec::new();
        assert_eq!(run_to(&config, &mut out), Exit::Ok);
        let text = String::from_utf8(out).unwrap();
        assert!(!text.contains("KPIs:"), "{text}");
        assert!(
            text.contains("! config: KPI_POLL has no effect with KPIS=off"),
            "{text}"
        );
    }

    #[test]
    fn refused_credentials_exit_77_naming_the_login_url() {
        use crate::genesys::client::test_server::{fixture, reply, Server};
        let server = Server::start(vec![reply(
            401,
            &fixture("token-error-invalid-client.json"),
        )]);
        let config = config_for(&server.url, &[]);
        let mut out = Vec::new();
        let code = run_to(&config, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(code, Exit::Credentials, "{text}");
        assert!(
            text.contains(&format!(
                "✗ token: Genesys Cloud refused the client credentials at {}/oauth/token",
                server.url
            )),
            "{text}"
        );
    }

    #[test]
    fn a_missing_observation_permission_exits_77_naming_it() {
        use crate::genesys::client::test_server::{fixture, reply, token, Server};
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &fixture("queues-page-1.json")),
            reply(200, &fixture("queues-page-2.json")),
            reply(403, &fixture("error-403.json")),
        ]);
        let config = config_for(&server.url, &[]);
        let mut out = Vec::new();
        let code = run_to(&config, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(code, Exit::Credentials, "{text}");
        assert!(text.contains("✓ queues: 7 resolved"), "{text}");
        assert!(
            text.contains("✗ observations:") && text.contains("analytics:queueObservation:view"),
            "{text}"
        );
    }

    #[test]
    fn an_unreachable_genesys_exits_69_and_nothing_selected_78() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let mut out = Vec::new();
        assert_eq!(run_to(&config_for(&url, &[]), &mut out), Exit::Unavailable);

        use crate::genesys::client::test_server::{fixture, reply, token, Server};
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &fixture("queues-page-1.json")),
            reply(200, &fixture("queues-page-2.json")),
        ]);
        let config = config_for(&server.url, &[("GENESYS_QUEUES", "weekend overflow")]);
        let mut out = Vec::new();
        let code = run_to(&config, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(code, Exit::Config, "{text}");
        assert!(
            text.contains("✗ queues: nothing to poll (7 visible"),
            "{text}"
        );
    }
}
