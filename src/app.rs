//! The program behind the thin `main.rs`: arguments → configuration → the chosen
//! command → exit code. It lives in the library so that `main.rs` stays one call and
//! every other module can stay private to the crate (and the compiler can report what
//! nothing uses).

use std::collections::HashMap;

use crate::cli::{self, Command};
use crate::config::{self, Mode};
use crate::exit::Exit;
use crate::{check, demo, envfile, logging, pipeline, top};

/// Runs the command named by `args` (without the program name); returns its exit code.
pub fn run(args: impl Iterator<Item = String>) -> Exit {
    let cli = match cli::parse(args) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("genesys2influx: {message}\n\n{}", cli::USAGE);
            return Exit::Usage;
        }
    };
    let mode = match cli.command {
        Command::Help => {
            println!("{}\n\n{}", cli::USAGE, cli::HELP);
            return Exit::Ok;
        }
        Command::Version => {
            println!("{}", cli::VERSION);
            return Exit::Ok;
        }
        Command::Run { dry_run } => Mode::Run { dry_run },
        Command::Check => Mode::Check,
        Command::Demo { .. } => Mode::Demo,
        Command::Top => Mode::Top,
    };
    logging::init();
    let file_vars = match load_env_file(cli.env_file.as_deref()) {
        Ok(vars) => vars,
        Err(message) => {
            log::error!("{message}");
            return Exit::Config;
        }
    };
    let lookup = move |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| file_vars.get(name).cloned())
    };
    if let Command::Demo {
        queues,
        seconds,
        output,
    } = cli.command
    {
        return demo::run(&lookup, queues, seconds, output);
    }
    let config = match config::from_lookup(&lookup, mode) {
        Ok(config) => config,
        Err(error) => {
            log::error!("configuration error: {error}");
            return Exit::Config;
        }
    };
    logging::register_secrets(&config);
    match mode {
        Mode::Check => check::run(&config),
        Mode::Top => {
            // Every KPI setting is moot: top polls no KPIs.
            logging::log_warnings_except(&config, &|_| true);
            top::run(&config)
        }
        _ => {
            logging::log_warnings(&config);
            pipeline::run(&config, None, None)
        }
    }
}

fn load_env_file(path: Option<&std::path::Path>) -> Result<HashMap<String, String>, String> {
    let Some(path) = path else {
        return Ok(HashMap::new());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--env-file {}: {e}", path.display()))?;
    envfile::parse(&text).map_err(|why| format!("--env-file {}: {why}", path.display()))
}
