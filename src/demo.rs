//! `genesys2influx demo`: the real client, aggregator and writer against a simulated
//! Genesys Cloud on 127.0.0.1, with a compressed clock, so a newcomer sees the queues
//! move (the wallboard table in a terminal, line protocol otherwise) within seconds and
//! without credentials.

use std::sync::Arc;
use std::time::Duration;

use crate::cli::Output;
use crate::config::{self, Config, InfluxTarget, Mode};
use crate::exit::Exit;
use crate::pipeline;
use crate::sim::{Sim, SimOptions};
use crate::wallboard::{self, Wallboard};

/// Compressed clock of the demo, each unless the variable is set: poll, window, and
/// one-minute KPI buckets re-queried every 5 s so KPI points show up within seconds.
const DEMO_DEFAULTS: [(&str, &str); 5] = [
    ("POLL_INTERVAL", "1s"),
    ("WINDOW", "5s"),
    ("KPI_BUCKET", "1m"),
    ("KPI_POLL", "5s"),
    ("KPI_LOOKBACK", "2m"),
];

/// Starts the simulator, points the configuration at it and runs the pipeline, showing
/// `output` (by default the table when stdout is a terminal).
pub fn run(
    lookup: &dyn Fn(&str) -> Option<String>,
    queues: usize,
    seconds: Option<u64>,
    output: Option<Output>,
) -> Exit {
    let options = SimOptions {
        queue_count: queues,
        value_period: Duration::from_secs(1),
        changes_at_random_moments: true,
        heartbeat_period: Duration::from_secs(5),
        ..SimOptions::default()
    };
    let sim = match Sim::start(options.clone()) {
        Ok(sim) => sim,
        Err(e) => {
            log::error!("cannot start the simulated Genesys Cloud on 127.0.0.1: {e}");
            return Exit::Failure;
        }
    };
    let base_url = sim.base_url();
    let demo_lookup = |name: &str| -> Option<String> {
        match name {
            "GENESYS_CLIENT_ID" => Some(options.client_id.clone()),
            "GENESYS_CLIENT_SECRET" => Some(options.client_secret.clone()),
            "GENESYS_API_URL" | "GENESYS_LOGIN_URL" => Some(base_url.clone()),
            // The simulator is reached directly whatever proxy the shell sets (the
            // lower-case form is read first); InfluxDB keeps the user's proxy settings.
            "no_proxy" => Some(format!(
                "{},{}",
                base_url.trim_start_matches("http://"),
                lookup("no_proxy")
                    .or_else(|| lookup("NO_PROXY"))
                    .unwrap_or_default()
            )),
            "GENESYS_QUEUES"
            | "GENESYS_QUEUES_FILE"
            | "GENESYS_CLIENT_SECRET_FILE"
            | "QUEUE_SHARD" => None,
            _ => lookup(name).or_else(|| {
                DEMO_DEFAULTS
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, value)| value.to_string())
            }),
        }
    };
    let config = match config::from_lookup(&demo_lookup, Mode::Demo) {
        Ok(config) => config,
        Err(error) => {
            log::error!("configuration error: {error}");
            return Exit::Config;
        }
    };
    crate::logging::register_secrets(&config);
    // The compressed clock is ours: only what the user set is worth a warning.
    crate::logging::log_warnings_except(&config, &|name| lookup(name).is_none());
    log::info!("demo: simulated Genesys Cloud with {queues} queues at {base_url}");
    let table = output.unwrap_or(if wallboard::stdout_is_terminal() {
        Output::Table
    } else {
        Output::LineProtocol
    }) == Output::Table;
    let view = table.then(|| start_view(&config, queues));
    let code = pipeline::run(&config, seconds.map(Duration::from_secs), view.clone());
    if let Some(view) = view {
        view.finish();
    }
    drop(sim);
    code
}

fn start_view(config: &Config, queues: usize) -> Arc<Wallboard> {
    let title = format!(
        "genesys2influx demo: {queues} simulated queues, poll {}, window {}, Ctrl-C ends",
        crate::duration::format(config.poll_interval),
        crate::duration::format(config.window),
    );
    Wallboard::start(
        title,
        Some(config.influx != InfluxTarget::Stdout),
        config.kpi.is_some(),
    )
}
