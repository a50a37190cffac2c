//! The shipped Grafana dashboard, black-box: every panel query and every template-variable
//! query of `packaging/grafana/genesys-queues.json` is taken from the JSON, its Grafana
//! variables are filled in the way Grafana's InfluxDB data source does it, and it is run
//! against a real influxd holding data the binary itself wrote (`genesys2influx demo`).
//!
//! No Grafana server package is available to the tests, so this is the closest check that a
//! user who imports the dashboard sees data: the same InfluxQL, the same regex forms
//! (`/^(a|b)$/` for a selection, `/^.*$/` for All), and data with and without the
//! optional `org` tag (`INFLUXDB_TAGS=org=…`), because "All" must also match series that
//! have no `org` tag at all.
//!
//! Everything runs twice, with `LIVE_UPDATES=on` and `off` in the demo's environment: the
//! same assertions on what the demo left behind, and, while it is still running, the
//! panels that show *now* (a panel-level relative time, `timeFrom`) must show the values
//! of the newest point, which with live updates on is the window still in progress.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use genesys2influx::sim::ODD_NAMES;
use serde_json::Value;

use crate::util::gate::now_ms;
use crate::util::influxd::Influxd;
use crate::util::process::Service;

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/packaging/grafana/genesys-queues.json"
);
const DB: &str = "genesys";
/// What `$timeFilter` becomes: Grafana's default range is the last 6 h; 1 h covers the
/// demo's data and keeps the `GROUP BY time()` buckets few.
const TIME_FILTER: &str = "time > now() - 1h";
/// How long each demo runs.
const DEMO_SECONDS: u64 = 14;
/// The demo's cadence in these tests (its compressed-clock defaults, set explicitly).
const POLL_S: u64 = 1;
const WINDOW_S: u64 = 5;
/// The queue and media type whose newest points the now-panels are compared with.
const NOW_QUEUE: &str = "Queue 0010";
const NOW_MEDIA: &str = "voice";
/// `$__interval` when a panel sets no `interval` of its own.
const DEFAULT_INTERVAL: &str = "10s";
/// The measurement another engineer's KPI work adds; its panels may have no data yet.
const KPI_MEASUREMENT: &str = "genesys_queue_interval";

/// The org tagged demo run and the untagged one; the untagged one has more queues, so
/// "All" must show queues that exist only without an `org` tag.
const TAGGED_QUEUES: usize = 20;
const UNTAGGED_QUEUES: usize = 24;
const ORG: &str = "acme";
const TAGGED_INSTANCE: &str = "demo-acme";
const UNTAGGED_INSTANCE: &str = "demo-untagged";

// Measurements, fields and tags the contract defines (CONTRACT.md, "Data written").
const AGENT: [&str; 8] = [
    "on_queue",
    "idle",
    "interacting",
    "communicating",
    "not_responding",
    "off_queue",
    "active",
    "members",
];
const MEDIA: [&str; 5] = [
    "waiting",
    "interacting",
    "alerting",
    "longest_waiting_seconds",
    "longest_interacting_seconds",
];
const INTERVAL: [&str; 16] = [
    "offered",
    "answered",
    "answer_seconds_sum",
    "abandoned",
    "abandon_seconds_sum",
    "short_abandoned",
    "flowed_out",
    "handled",
    "handle_seconds_sum",
    "waited",
    "wait_seconds_sum",
    "transferred",
    "over_sla",
    "service_level_numerator",
    "service_level_denominator",
    "service_level_target",
];
const HEALTH: [&str; 13] = [
    "polls",
    "poll_errors",
    "api_requests",
    "api_rate_limited",
    "token_refreshes",
    "queues",
    "points_written",
    "write_errors",
    "lines_spooled",
    "lines_dropped",
    "spool_bytes",
    "poll_ms_max",
    "write_ms_max",
];
const TAGS: [&str; 5] = ["queue_id", "queue_name", "media_type", "instance", "org"];
const VARIABLES: [&str; 4] = ["org", "queue", "media_type", "instance"];

/// One InfluxQL query of the dashboard and where it sits.
#[derive(Debug, Clone)]
struct DashboardQuery {
    /// `panel 'Title' A` or `variable queue`, for messages.
    place: String,
    /// The raw text, with Grafana variables.
    text: String,
    /// `$__interval` for this query.
    interval: String,
    /// What `$timeFilter` becomes: the panel's own relative time (`timeFrom`) when it has
    /// one, as Grafana does, else the dashboard's.
    time_filter: String,
    /// A panel that shows *now*: it reads the newest points of a recent range of its own
    /// (`timeFrom` a duration such as `15m`, not a calendar range such as `now/d`).
    reads_now: bool,
    is_panel: bool,
}

/// `$timeFilter` under a panel's `timeFrom`, as Grafana sends it: a duration is the last
/// that long, `now/d` is today so far (UTC, the test's dashboard time zone); and whether
/// the panel shows *now*.
fn panel_time_filter(time_from: Option<&str>) -> (String, bool) {
    match time_from {
        None => (TIME_FILTER.to_string(), false),
        Some("now/d") => {
            let now_s = now_ms() / 1000;
            (format!("time >= {}000ms", now_s - now_s % 86_400), false)
        }
        Some(duration) => (format!("time > now() - {duration}"), true),
    }
}

/// A variable's value: everything (`allValue`, `.*`) or a selection.
#[derive(Debug, Clone)]
enum Pick {
    All,
    Values(Vec<String>),
}

/// Values for the dashboard's variables.
#[derive(Debug, Clone)]
struct Selection(BTreeMap<&'static str, Pick>);

impl Selection {
    fn all() -> Selection {
        Selection(VARIABLES.iter().map(|v| (*v, Pick::All)).collect())
    }

    fn with(mut self, variable: &'static str, values: &[&str]) -> Selection {
        self.0.insert(
            variable,
            Pick::Values(values.iter().map(|v| v.to_string()).collect()),
        );
        self
    }
}

/// Grafana's regex escaping of a variable value (`kbn.regexEscape`): the characters that
/// mean something in a regex, and `/`, which would end an InfluxQL regex literal.
fn regex_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if "\\^$*+?.()|[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A multi-value / include-All variable as Grafana's InfluxDB data source interpolates it
/// into a regex: All → `allValue` (`.*`), one value → escaped, several → `(a|b)`.
fn interpolate(pick: &Pick) -> String {
    match pick {
        Pick::All => ".*".to_string(),
        Pick::Values(values) if values.len() == 1 => regex_escape(&values[0]),
        Pick::Values(values) => {
            let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
            format!("({})", escaped.join("|"))
        }
    }
}

/// The query as Grafana would send it; `Err` when a `$variable` is left unfilled.
fn substitute(query: &DashboardQuery, selection: &Selection) -> Result<String, String> {
    let mut text = query
        .text
        .replace("$timeFilter", &query.time_filter)
        .replace("$__interval", &query.interval);
    // Longest names first, so `$queue` never eats the start of a `$queue_x`.
    let mut names: Vec<&&str> = selection.0.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        let value = interpolate(&selection.0[*name]);
        text = text
            .replace(&format!("${{{name}}}"), &value)
            .replace(&format!("${name}"), &value);
    }
    // What is left of `$` must be a regex anchor (`$/`, `$)`), not a variable.
    let bytes = text.as_bytes();
    for (i, _) in text.match_indices('$') {
        if let Some(&next) = bytes.get(i + 1) {
            if next == b'{' || next == b'_' || next.is_ascii_alphabetic() {
                return Err(format!(
                    "{}: unknown variable at {:?}",
                    query.place,
                    &text[i..]
                ));
            }
        }
    }
    Ok(text)
}

/// Every panel target (rows' nested panels included) and every query variable.
fn extract_queries(dashboard: &Value) -> Result<Vec<DashboardQuery>, String> {
    let panels = dashboard["panels"]
        .as_array()
        .ok_or("the dashboard has no `panels` array")?;
    let mut queries = Vec::new();
    let mut stack: Vec<&Value> = panels.iter().rev().collect();
    while let Some(panel) = stack.pop() {
        let title = panel["title"]
            .as_str()
            .ok_or_else(|| format!("a panel without a title: {panel}"))?;
        if let Some(nested) = panel.get("panels") {
            let nested = nested
                .as_array()
                .ok_or_else(|| format!("panel '{title}': `panels` is not an array"))?;
            stack.extend(nested.iter().rev());
        }
        let Some(targets) = panel.get("targets") else {
            if panel["type"] != "row" && panel["type"] != "text" {
                return Err(format!("panel '{title}' has no targets"));
            }
            continue;
        };
        let targets = targets
            .as_array()
            .ok_or_else(|| format!("panel '{title}': `targets` is not an array"))?;
        for target in targets {
            let ref_id = target["refId"].as_str().unwrap_or("?");
            let text = target["query"]
                .as_str()
                .ok_or_else(|| format!("panel '{title}' {ref_id}: no InfluxQL `query`"))?;
            if target["rawQuery"] != true {
                return Err(format!(
                    "panel '{title}' {ref_id}: rawQuery is not true, Grafana would ignore `query`"
                ));
            }
            let (time_filter, reads_now) = panel_time_filter(panel["timeFrom"].as_str());
            queries.push(DashboardQuery {
                place: format!("panel '{title}' {ref_id}"),
                text: text.to_string(),
                interval: panel["interval"]
                    .as_str()
                    .unwrap_or(DEFAULT_INTERVAL)
                    .to_string(),
                time_filter,
                reads_now,
                is_panel: true,
            });
        }
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .ok_or("the dashboard has no `templating.list`")?;
    for variable in variables {
        let name = variable["name"]
            .as_str()
            .ok_or_else(|| format!("a template variable without a name: {variable}"))?;
        if variable["type"] != "query" {
            continue;
        }
        let text = variable["query"]
            .as_str()
            .ok_or_else(|| format!("variable {name}: no query"))?;
        queries.push(DashboardQuery {
            place: format!("variable {name}"),
            text: text.to_string(),
            interval: DEFAULT_INTERVAL.to_string(),
            time_filter: TIME_FILTER.to_string(),
            reads_now: false,
            is_panel: false,
        });
    }
    if !queries.iter().any(|q| q.is_panel) {
        return Err("no panel queries found".into());
    }
    Ok(queries)
}

/// Measurements named in `FROM "…"`.
fn measurements(query: &str) -> Vec<String> {
    query
        .match_indices("FROM \"")
        .filter_map(|(i, m)| {
            let rest = &query[i + m.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .collect()
}

/// Identifiers used as function arguments: `max("waiting_max")` → `waiting_max`.
fn function_arguments(query: &str) -> Vec<String> {
    query
        .match_indices("(\"")
        .filter_map(|(i, m)| {
            let rest = &query[i + m.len()..];
            rest.find("\")").map(|end| rest[..end].to_string())
        })
        .collect()
}

/// Whether the answer has one series per queue name (a subquery's `GROUP BY` groups only
/// what the outer query then sums up).
fn groups_by_queue_name(query: &str) -> bool {
    !query.contains("FROM (")
        && query
            .rfind("GROUP BY")
            .is_some_and(|i| query[i..].contains("\"queue_name\""))
}

fn contract_fields(measurement: &str) -> Option<BTreeSet<String>> {
    let with_suffixes = |metrics: &[&str]| -> BTreeSet<String> {
        let mut fields: BTreeSet<String> = metrics
            .iter()
            .flat_map(|m| ["min", "max", "last", "mean"].map(|s| format!("{m}_{s}")))
            .collect();
        fields.insert("samples".into());
        fields
    };
    let plain = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
    match measurement {
        "genesys_queue" => Some(with_suffixes(&AGENT)),
        "genesys_queue_media" => Some(with_suffixes(&MEDIA)),
        "genesys_queue_interval" => Some(plain(&INTERVAL)),
        "genesys2influx" => Some(plain(&HEALTH)),
        _ => None,
    }
}

/// What the dashboard promises beyond its queries: the import input, the variables with
/// an All that also matches a missing tag, unique ids, contract fields only.
fn structure_problems(dashboard: &Value, queries: &[DashboardQuery]) -> Vec<String> {
    let mut problems = Vec::new();
    if dashboard["schemaVersion"].as_u64().unwrap_or(0) < 39 {
        problems.push(format!("schemaVersion {} < 39", dashboard["schemaVersion"]));
    }
    let has_input = dashboard["__inputs"].as_array().is_some_and(|inputs| {
        inputs
            .iter()
            .any(|i| i["name"] == "DS_INFLUXDB" && i["pluginId"] == "influxdb")
    });
    if !has_input {
        problems.push("no __inputs entry DS_INFLUXDB for an influxdb data source".into());
    }
    if !dashboard["templating"]
        .to_string()
        .contains("${DS_INFLUXDB}")
    {
        problems.push("the DS_INFLUXDB input is not used by the templating".into());
    }
    let variables: BTreeMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| Some((v["name"].as_str()?, v)))
        .collect();
    for name in VARIABLES {
        match variables.get(name) {
            None => problems.push(format!("template variable {name} missing")),
            Some(v) => {
                if v["includeAll"] != true || v["allValue"] != ".*" || v["multi"] != true {
                    problems.push(format!(
                        "variable {name} needs multi, includeAll and allValue .* (All must match a missing tag)"
                    ));
                }
            }
        }
    }
    let mut ids = BTreeSet::new();
    let mut stack: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = stack.pop() {
        stack.extend(panel["panels"].as_array().into_iter().flatten());
        if !ids.insert(panel["id"].to_string()) {
            problems.push(format!("panel id {} is used twice", panel["id"]));
        }
        if panel.get("targets").is_some() && panel["datasource"]["uid"] != "${datasource}" {
            problems.push(format!(
                "panel '{}' is not on the dashboard's data source variable",
                panel["title"]
            ));
        }
        if panel["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("Longest wait"))
        {
            let steps: Vec<f64> = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["value"].as_f64())
                .collect();
            if steps != [60.0, 180.0] {
                problems.push(format!(
                    "Longest wait thresholds are {steps:?}, want 60 and 180 s"
                ));
            }
        }
    }
    for query in queries {
        let from = measurements(&query.text);
        if query.is_panel && from.is_empty() {
            problems.push(format!("{}: no FROM \"measurement\"", query.place));
        }
        if query.is_panel && !query.text.contains("$timeFilter") {
            problems.push(format!("{}: no $timeFilter", query.place));
        }
        let known: Vec<BTreeSet<String>> = from.iter().filter_map(|m| contract_fields(m)).collect();
        if known.len() != from.len() {
            problems.push(format!(
                "{}: a measurement of {from:?} is not in the contract",
                query.place
            ));
        }
        for argument in function_arguments(&query.text) {
            if !TAGS.contains(&argument.as_str()) && !known.iter().any(|f| f.contains(&argument)) {
                problems.push(format!(
                    "{}: {argument} is no field of {from:?} in the contract",
                    query.place
                ));
            }
        }
    }
    problems
}

/// Each series of the answer: (tags, row count).
fn series(influx: &Influxd, query: &str) -> Vec<(BTreeMap<String, String>, usize)> {
    let json = influx.query(DB, query);
    json["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let tags = s["tags"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let rows = s["values"].as_array().map_or(0, |v| v.len());
            (tags, rows)
        })
        .filter(|(_, rows)| *rows > 0)
        .collect()
}

/// The first column of every row, as strings (the values of a `SHOW TAG VALUES`: the
/// second column).
fn tag_values(influx: &Influxd, query: &str) -> BTreeSet<String> {
    let json = influx.query(DB, query);
    json["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["values"].as_array().cloned().unwrap_or_default())
        .filter_map(|row| row[1].as_str().map(str::to_string))
        .collect()
}

fn demo(
    influx: &Influxd,
    queues: usize,
    instance: &str,
    tags: Option<&str>,
    live: &str,
) -> Service {
    let mut env = vec![
        ("INFLUXDB_URL", influx.url()),
        ("INFLUXDB_DATABASE", DB.to_string()),
        ("INSTANCE", instance.to_string()),
        ("LIVE_UPDATES", live.to_string()),
        ("POLL_INTERVAL", format!("{POLL_S}s")),
        ("WINDOW", format!("{WINDOW_S}s")),
    ];
    if let Some(tags) = tags {
        env.push(("INFLUXDB_TAGS", tags.to_string()));
    }
    Service::start(
        &[
            "demo",
            "--queues",
            &queues.to_string(),
            "--seconds",
            &DEMO_SECONDS.to_string(),
        ],
        &env,
    )
}

fn load_dashboard() -> Value {
    let text = std::fs::read_to_string(DASHBOARD)
        .unwrap_or_else(|e| panic!("cannot read {DASHBOARD}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not valid JSON: {e}"))
}

#[test]
fn every_dashboard_query_returns_rows_with_live_updates_on() {
    every_dashboard_query_returns_rows_from_data_the_binary_wrote("on");
}

#[test]
fn every_dashboard_query_returns_rows_with_live_updates_off() {
    every_dashboard_query_returns_rows_from_data_the_binary_wrote("off");
}

/// The newest point of `measurement` for the now-panels' queue (and media type), as
/// column → value, `time` included; empty when there is none yet.
fn newest_point(influx: &Influxd, measurement: &str) -> BTreeMap<String, Value> {
    let media = if measurement == "genesys_queue_media" {
        format!(" AND \"media_type\" = '{NOW_MEDIA}'")
    } else {
        String::new()
    };
    let query = format!(
        "SELECT * FROM \"{measurement}\" WHERE \"queue_name\" = '{NOW_QUEUE}' AND \"org\" = '{ORG}'{media} \
         ORDER BY time DESC LIMIT 1"
    );
    let json = influx.query(DB, &query);
    let series = &json["results"][0]["series"][0];
    let columns = series["columns"].as_array().cloned().unwrap_or_default();
    let row = series["values"][0].as_array().cloned().unwrap_or_default();
    columns
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .zip(row)
        .collect()
}

/// The newest points the now-panels read, by measurement.
fn newest_points(influx: &Influxd) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    ["genesys_queue", "genesys_queue_media"]
        .into_iter()
        .map(|m| (m, newest_point(influx, m)))
        .collect()
}

/// `("field") AS "alias"` pairs of a query: which contract field each answer column shows.
fn aliased_fields(query: &str) -> Vec<(String, String)> {
    query
        .match_indices("(\"")
        .filter_map(|(i, m)| {
            let rest = &query[i + m.len()..];
            let (field, after) = rest.split_once("\")")?;
            let alias = after.strip_prefix(" AS \"")?.split('"').next()?;
            Some((field.to_string(), alias.to_string()))
        })
        .collect()
}

/// What a now-panel shows that differs from the newest point of its measurement: every
/// aliased column must hold that point's field (one queue and media type are selected,
/// so a sum or max over queues is that one value), and a single `last()` (not in a
/// subquery) its time.
fn now_panel_mismatches(
    influx: &Influxd,
    query: &DashboardQuery,
    text: &str,
    newest: &BTreeMap<String, Value>,
) -> Vec<String> {
    let json = influx.query(DB, text);
    let series = &json["results"][0]["series"][0];
    let columns: Vec<&str> = series["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let row = &series["values"][0];
    let mut mismatches = Vec::new();
    for (field, alias) in aliased_fields(text) {
        if let Some(i) = columns.iter().position(|c| *c == alias) {
            if row[i].as_f64() != newest.get(&field).and_then(Value::as_f64) {
                mismatches.push(format!(
                    "{}: {alias} = {} but the newest point has {field} = {:?}",
                    query.place,
                    row[i],
                    newest.get(&field)
                ));
            }
        }
    }
    let single_selector = text.matches("last(").count() == 1 && !text.contains("FROM (");
    if single_selector && row[0] != newest["time"] {
        mismatches.push(format!(
            "{}: time {} but the newest point is at {}",
            query.place, row[0], newest["time"]
        ));
    }
    mismatches
}

/// While the demo runs: the now-panels, for one queue and media type, show exactly the
/// newest point; with live updates on, at least once that point is the window in
/// progress (its start is the current window's, read before that window's last poll, so
/// it cannot be the final point); with them off, never.
fn check_now_panels_while_running(influx: &Influxd, queries: &[DashboardQuery], live: &str) {
    let selection = Selection::all()
        .with("org", &[ORG])
        .with("queue", &[NOW_QUEUE])
        .with("media_type", &[NOW_MEDIA])
        .with("instance", &[TAGGED_INSTANCE]);
    let now_panels: Vec<(&DashboardQuery, String)> = queries
        .iter()
        .filter(|q| q.reads_now)
        .map(|q| {
            (
                q,
                substitute(q, &selection).unwrap_or_else(|e| panic!("{e}")),
            )
        })
        .collect();
    assert!(
        now_panels.len() >= 6,
        "too few now-panels: {}",
        now_panels.len()
    );
    // Until shortly before the demo stops: its shutdown closes the window early.
    let deadline = Instant::now() + Duration::from_secs(DEMO_SECONDS - 3);
    let (mut compared, mut in_progress_seen) = (0, 0);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        let before = newest_points(influx);
        if before.values().any(BTreeMap::is_empty) {
            continue;
        }
        let mismatches: Vec<String> = now_panels
            .iter()
            .flat_map(|(query, text)| {
                let newest = &before[measurements(text)[0].as_str()];
                now_panel_mismatches(influx, query, text, newest)
            })
            .collect();
        let checked_at_s = now_ms() / 1000;
        if newest_points(influx) != before {
            continue; // a poll landed in between: compare again
        }
        assert!(
            mismatches.is_empty(),
            "LIVE_UPDATES={live}: now-panels do not show the newest point:\n{}",
            mismatches.join("\n")
        );
        compared += 1;
        let window_start = checked_at_s - checked_at_s % WINDOW_S;
        let before_last_poll = checked_at_s - window_start < WINDOW_S - POLL_S;
        if before_last_poll && before["genesys_queue"]["time"].as_u64() == Some(window_start) {
            in_progress_seen += 1;
        }
    }
    assert!(
        compared > 0,
        "LIVE_UPDATES={live}: no stable moment to compare the now-panels"
    );
    match live {
        "on" => assert!(
            in_progress_seen > 0,
            "LIVE_UPDATES=on: in {compared} comparisons the newest point was never the window in progress"
        ),
        _ => assert_eq!(
            in_progress_seen, 0,
            "LIVE_UPDATES={live}: a window in progress was written"
        ),
    }
}

fn every_dashboard_query_returns_rows_from_data_the_binary_wrote(live: &str) {
    let dashboard = load_dashboard();
    let queries = extract_queries(&dashboard).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"));
    let problems = structure_problems(&dashboard, &queries);
    assert!(problems.is_empty(), "{DASHBOARD}:\n{}", problems.join("\n"));

    let influx = Influxd::start_default();
    influx.create_database(DB);
    // Both runs at once, DEMO_SECONDS each, one with the org tag and one without.
    let mut tagged = demo(
        &influx,
        TAGGED_QUEUES,
        TAGGED_INSTANCE,
        Some(&format!("org={ORG}")),
        live,
    );
    let mut untagged = demo(&influx, UNTAGGED_QUEUES, UNTAGGED_INSTANCE, None, live);
    check_now_panels_while_running(&influx, &queries, live);
    for (name, service) in [("tagged", &mut tagged), ("untagged", &mut untagged)] {
        let status = service.wait(Duration::from_secs(90));
        assert_eq!(
            status.code(),
            Some(0),
            "{name} demo failed; stderr:\n{}",
            service.stderr()
        );
    }

    let measurements_present: BTreeSet<String> = influx
        .rows(DB, "SHOW MEASUREMENTS")
        .iter()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .collect();
    let kpis_present = measurements_present.contains(KPI_MEASUREMENT);
    let all_queue_names: BTreeSet<String> = tag_values(
        &influx,
        "SHOW TAG VALUES FROM \"genesys_queue\" WITH KEY = \"queue_name\"",
    );
    assert_eq!(
        all_queue_names.len(),
        UNTAGGED_QUEUES,
        "the demo runs wrote {} queue names: {all_queue_names:?}",
        all_queue_names.len()
    );

    let mut ran = 0;
    let mut skipped = Vec::new();
    // 1. Everything on All, as the dashboard opens.
    let all = Selection::all();
    for query in &queries {
        let text = substitute(query, &all).unwrap_or_else(|e| panic!("{e}"));
        let answer = series(&influx, &text);
        ran += 1;
        let reads_kpis = measurements(&query.text)
            .iter()
            .any(|m| m == KPI_MEASUREMENT);
        if answer.is_empty() && reads_kpis && !kpis_present {
            skipped.push(format!(
                "{}: no rows required, measurement {KPI_MEASUREMENT} does not exist (no KPIs written by this build's demo)",
                query.place
            ));
            continue;
        }
        assert!(
            !answer.is_empty(),
            "{} returned no rows with every variable on All:\n    {text}",
            query.place
        );
        if !query.is_panel {
            let values = tag_values(&influx, &text);
            match query.place.as_str() {
                "variable org" => assert_eq!(values, BTreeSet::from([ORG.to_string()])),
                "variable queue" => assert_eq!(values, all_queue_names),
                "variable instance" => assert_eq!(
                    values,
                    BTreeSet::from([TAGGED_INSTANCE.to_string(), UNTAGGED_INSTANCE.to_string()])
                ),
                _ => {}
            }
        } else if measurements(&query.text) == ["genesys_queue"] && groups_by_queue_name(&text) {
            // org "All" must also match the untagged run's queues.
            let names: BTreeSet<String> = answer
                .iter()
                .filter_map(|(tags, _)| tags.get("queue_name").cloned())
                .collect();
            assert_eq!(
                names, all_queue_names,
                "{} on All does not show every queue (a missing org tag must match):\n    {text}",
                query.place
            );
        }
    }

    // 2. A selection with the names regex escaping matters for, as Grafana sends it.
    let picked = [ODD_NAMES[0], ODD_NAMES[1], ODD_NAMES[4], "Queue 0010"];
    for name in picked {
        assert!(all_queue_names.contains(name), "{name:?} was not written");
    }
    let selection = Selection::all()
        .with("org", &[ORG])
        .with("queue", &picked)
        .with("media_type", &["voice", "chat"])
        .with("instance", &[TAGGED_INSTANCE]);
    for query in queries.iter().filter(|q| q.is_panel) {
        let text = substitute(query, &selection).unwrap_or_else(|e| panic!("{e}"));
        let answer = series(&influx, &text);
        ran += 1;
        let reads_kpis = measurements(&query.text)
            .iter()
            .any(|m| m == KPI_MEASUREMENT);
        if answer.is_empty() && reads_kpis && !kpis_present {
            skipped.push(format!("{} (selection): likewise", query.place));
            continue;
        }
        assert!(
            !answer.is_empty(),
            "{} returned no rows for a selection:\n    {text}",
            query.place
        );
        for (tags, _) in &answer {
            if let Some(name) = tags.get("queue_name") {
                assert!(
                    picked.contains(&name.as_str()),
                    "{} shows {name:?}, which is not selected:\n    {text}",
                    query.place
                );
            }
            if let Some(media) = tags.get("media_type") {
                assert!(
                    ["voice", "chat"].contains(&media.as_str()),
                    "{}",
                    query.place
                );
            }
            if let Some(instance) = tags.get("instance") {
                assert_eq!(instance, TAGGED_INSTANCE, "{}", query.place);
            }
        }
        if measurements(&query.text) == ["genesys_queue"] && groups_by_queue_name(&text) {
            let names: BTreeSet<&str> = answer
                .iter()
                .filter_map(|(tags, _)| tags.get("queue_name").map(String::as_str))
                .collect();
            assert_eq!(
                names,
                BTreeSet::from(picked),
                "{}:\n    {text}",
                query.place
            );
        }
    }

    // 3. org=acme hides a queue that only the untagged run has.
    let only_untagged = format!("Queue {:04}", UNTAGGED_QUEUES - 1);
    let hidden = Selection::all()
        .with("org", &[ORG])
        .with("queue", &[only_untagged.as_str()]);
    for query in queries
        .iter()
        .filter(|q| q.is_panel && q.text.contains("FROM \"genesys_queue\""))
    {
        let text = substitute(query, &hidden).unwrap_or_else(|e| panic!("{e}"));
        ran += 1;
        assert!(
            series(&influx, &text).is_empty(),
            "{} shows {only_untagged}, which has no org={ORG} data:\n    {text}",
            query.place
        );
    }

    println!("ran {ran} dashboard queries against influxd");
    for line in &skipped {
        println!("skipped: {line}");
    }
    assert!(ran > queries.len(), "too few queries ran: {ran}");
}

#[test]
fn a_malformed_dashboard_is_rejected() {
    let broken = "{\"panels\": [ {\"title\": \"x\", ";
    assert!(serde_json::from_str::<Value>(broken).is_err());
    let no_query = serde_json::json!({
        "panels": [{"title": "Row", "type": "row", "panels": [
            {"title": "Nested", "type": "timeseries", "targets": [{"refId": "A", "rawQuery": true}]}
        ]}],
        "templating": {"list": []}
    });
    let error = extract_queries(&no_query).unwrap_err();
    assert!(error.contains("'Nested' A: no InfluxQL"), "{error}");
    let not_raw = serde_json::json!({
        "panels": [{"title": "P", "type": "table", "targets": [{"refId": "B", "query": "SELECT 1"}]}],
        "templating": {"list": []}
    });
    assert!(extract_queries(&not_raw).unwrap_err().contains("rawQuery"));
    let no_panels = serde_json::json!({"templating": {"list": []}});
    assert!(extract_queries(&no_panels).is_err());
    // The shipped one passes, and its rows' nested panels are walked.
    let queries = extract_queries(&load_dashboard()).unwrap();
    assert!(queries.iter().filter(|q| q.is_panel).count() >= 10);
    assert!(queries.iter().any(|q| q.place == "variable org"));
}

#[test]
fn variables_are_filled_in_as_grafana_does() {
    let query = DashboardQuery {
        place: "test".into(),
        text: "SELECT x FROM \"m\" WHERE \"queue_name\" =~ /^$queue$/ AND \"org\" =~ /^${org}$/ AND $timeFilter GROUP BY time($__interval)".into(),
        interval: "10s".into(),
        time_filter: TIME_FILTER.into(),
        reads_now: false,
        is_panel: true,
    };
    let selection = Selection::all().with("queue", &["a/b (c)", "d\\e"]);
    assert_eq!(
        substitute(&query, &selection).unwrap(),
        "SELECT x FROM \"m\" WHERE \"queue_name\" =~ /^(a\\/b \\(c\\)|d\\\\e)$/ AND \"org\" =~ /^.*$/ AND time > now() - 1h GROUP BY time(10s)"
    );
    let unknown = DashboardQuery {
        text: "SELECT x WHERE a =~ /^$site$/".into(),
        ..query
    };
    assert!(substitute(&unknown, &Selection::all()).is_err());
}
