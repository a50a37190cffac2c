//! `genesys2influx demo`: the real client, aggregator and writer against a simulated
//! Genesys Cloud on 127.0.0.1, with a compressed clock, so a newcomer sees line protocol
//! within seconds and without credentials.

use std::time::Duration;

use crate::cli::exit;
use crate::config::{self, Mode};
use crate::pipeline;
use crate::sim::{Sim, SimOptions};

/// Compressed clock of the demo, each unless the variable is set: poll, window, and
/// one-minute KPI buckets re-queried every 5 s so KPI points show up within seconds.
const DEMO_DEFAULTS: [(&str, &str); 5] = [
    ("POLL_INTERVAL", "1s"),
    ("WINDOW", "5s"),
    ("KPI_BUCKET", "1m"),
    ("KPI_POLL", "5s"),
    ("KPI_LOOKBACK", "2m"),
];

/// Starts the simulator, points the configuration at it and runs the pipeline.
pub fn run(lookup: &dyn Fn(&str) -> Option<String>, queues: usize, seconds: Option<u64>) -> u8 {
    let options = SimOptions {
        queue_count: queues,
        value_period: Duration::from_secs(1),
        ..SimOptions::default()
    };
    let sim = match Sim::start(options.clone()) {
        Ok(sim) => sim,
        Err(e) => {
            log::error!("cannot start the simulated Genesys Cloud on 127.0.0.1: {e}");
            return exit::FAILURE;
        }
    };
    let base_url = sim.base_url();
    let demo_lookup = |name: &str| -> Option<String> {
        match name {
            "GENESYS_CLIENT_ID" => Some(options.client_id.clone()),
            "GENESYS_CLIENT_SECRET" => Some(options.client_secret.clone()),
            "GENESYS_API_URL" | "GENESYS_LOGIN_URL" => Some(base_url.clone()),
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
            return exit::CONFIG;
        }
    };
    crate::logging::register_secrets(&config);
    crate::logging::log_warnings(&config);
    log::info!("demo: simulated Genesys Cloud with {queues} queues at {base_url}");
    let code = pipeline::run(&config, seconds.map(Duration::from_secs));
    drop(sim);
    code
}
