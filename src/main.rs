//! Thin entry point: arguments → configuration → the chosen command → exit code.

use std::collections::HashMap;
use std::process::ExitCode;

use genesys2influx::cli::{self, Command};
use genesys2influx::config::{self, Mode};
use genesys2influx::exit::Exit;
use genesys2influx::{check, demo, envfile, logging, pipeline, top};

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(cli) => cli,
        Err(message) => {
            eprintln!("genesys2influx: {message}\n\n{}", cli::USAGE);
            return Exit::Usage.into();
        }
    };
    let mode = match cli.command {
        Command::Help => {
            println!("{}\n\n{}", cli::USAGE, cli::HELP);
            return Exit::Ok.into();
        }
        Command::Version => {
            println!("genesys2influx {}", env!("CARGO_PKG_VERSION"));
            return Exit::Ok.into();
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
            return Exit::Config.into();
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
        return demo::run(&lookup, queues, seconds, output).into();
    }
    let config = match config::from_lookup(&lookup, mode) {
        Ok(config) => config,
        Err(error) => {
            log::error!("configuration error: {error}");
            return Exit::Config.into();
        }
    };
    logging::register_secrets(&config);
    let exit = match mode {
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
    };
    exit.into()
}

fn load_env_file(path: Option<&std::path::Path>) -> Result<HashMap<String, String>, String> {
    let Some(path) = path else {
        return Ok(HashMap::new());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--env-file {}: {e}", path.display()))?;
    envfile::parse(&text).map_err(|why| format!("--env-file {}: {why}", path.display()))
}
