//! The command line: which command, and the few flags the contract defines.
//!
//! Hand-written because there are four commands and six flags; everything else is
//! configured through the environment (see `config`).

use std::path::PathBuf;

pub const DEFAULT_DEMO_QUEUES: usize = 20;
/// The simulator keeps every queue in memory and the demo lists them all before the
/// first poll; beyond this the start-up alone takes minutes and gigabytes.
pub const MAX_DEMO_QUEUES: u64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Run {
        dry_run: bool,
    },
    Check,
    Demo {
        queues: usize,
        seconds: Option<u64>,
        /// `None`: the table when stdout is a terminal, else line protocol.
        output: Option<Output>,
    },
    Top,
    Help,
    Version,
}

/// What `demo` shows on stdout (`--output`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The live wallboard table.
    Table,
    /// Line protocol, as `run --dry-run` prints it.
    LineProtocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    pub command: Command,
    pub env_file: Option<PathBuf>,
}

pub const USAGE: &str = "\
Usage: genesys2influx [run] [--env-file PATH] [--dry-run]
       genesys2influx check [--env-file PATH]
       genesys2influx demo [--queues N] [--seconds S] [--output table|lp] [--env-file PATH]
       genesys2influx top [--env-file PATH]
       genesys2influx --help | --version";

pub const HELP: &str = "\
genesys2influx: Genesys Cloud queue observations and KPIs → InfluxDB

Commands:
  run      poll, aggregate and write until SIGTERM/SIGINT (the default)
             --dry-run        write line protocol to stdout instead of InfluxDB
  check    verify config, Genesys login, queue selection and InfluxDB; print a snapshot
  demo     the whole pipeline against a built-in simulated Genesys Cloud (no credentials)
             --queues N       simulated queues, 1 to 10000 (default 20)
             --seconds S      stop after S seconds (default: until Ctrl-C)
             --output table|lp
                              a live table of the queues (the default in a terminal), or
                              line protocol (the default otherwise); with INFLUXDB_URL set
                              the points go to InfluxDB either way
  top      the same live table for the selected queues of a real org, every POLL_INTERVAL,
           until Ctrl-C; needs the Genesys variables only and writes nothing
  --env-file PATH   read KEY=VALUE lines (systemd EnvironmentFile syntax); the process
                    environment wins over the file

Environment (defaults in brackets):
  GENESYS_CLIENT_ID             OAuth client-credentials client id [required]
  GENESYS_CLIENT_SECRET         its secret [required]; or GENESYS_CLIENT_SECRET_FILE=path,
                                or the systemd credential genesys_client_secret
  GENESYS_REGION                region domain or name [mypurecloud.com]
  GENESYS_API_URL, GENESYS_LOGIN_URL   override both base URLs
  GENESYS_QUEUES                comma-separated ids/names, * wildcards [all queues]
  GENESYS_QUEUES_FILE           one id or name per line
  GENESYS_REQUESTS_PER_MINUTE   request budget of the OAuth client, 1 to 1000000 [300]
  QUEUE_SHARD                   i/n: poll only shard i of n (stable hash of the queue id)
  QUEUE_REFRESH                 queue list re-resolution period, POLL_INTERVAL to 24h [5m]
  POLL_INTERVAL                 poll period, UTC-aligned, whole seconds 1s to 1h [10s]
  WINDOW                        aggregation window, multiple of POLL_INTERVAL, up to 24h [60s]
  INFLUXDB_URL                  e.g. http://127.0.0.1:8086, or - for stdout [required for run];
                                no user:password@ (use INFLUXDB_USERNAME/INFLUXDB_PASSWORD)
  INFLUXDB_TOKEN, INFLUXDB_ORG, INFLUXDB_BUCKET                      v2 write API
  INFLUXDB_DATABASE, INFLUXDB_RETENTION_POLICY,
  INFLUXDB_USERNAME, INFLUXDB_PASSWORD                               v1 write API
  INFLUXDB_TAGS                 static tags for every point, e.g. env=prod,site=edge1
  INSTANCE                      instance tag of the self-metrics [hostname]
  TLS_CA_FILE                   extra PEM roots for Genesys and InfluxDB
  HTTPS_PROXY, HTTP_PROXY       HTTP proxy (http://[user:pass@]host:port) for https://
                                and http:// destinations; ALL_PROXY for both
  NO_PROXY                      destinations reached directly: names (suffixes), IPs,
                                CIDR (10.0.0.0/8), host:port, *
  HTTP_TIMEOUT                  per request, 1s to 5m [10s]
  SPOOL_DIR                     on-disk buffer for unsent points [none]
  SPOOL_MAX_BYTES               spool cap, 65536 to 1099511627776 [104857600]
  SHUTDOWN_TIMEOUT              flush time allowed on SIGTERM, 1s to 10m [10s]
  LIVE_UPDATES                  on|off|auto: write the window in progress after every poll;
                                auto = on for InfluxDB, off for VictoriaMetrics/unknown [auto]
  NOTIFICATIONS                 auto|on|off: Genesys notifications (websocket) wake the
                                poller for queues that changed; auto = used when channels
                                can be created, on = also warn while they cannot [auto]
  KPIS                          on|off: interval KPIs from conversation aggregates [on]
  KPI_BUCKET, KPI_POLL, KPI_LOOKBACK   KPI bucket (whole minutes dividing a day), poll
                                period (1s to 1h), look-back (0s to 24h) [15m, 60s, 10m]
  RUST_LOG                      log filter [info]

Durations: 500ms, 10s, 5m, 1h. Every URL needs a host; a port is 1 to 65535.
Settings that have no effect with the others (v1 settings with a v2 target, KPI_* with
KPIS=off, SPOOL_MAX_BYTES without SPOOL_DIR, …) are warned about at start-up.
Secrets (client secret, password, token, the access token) are blanked out of every
log line and of check's output.

Exit codes: 0 ok, 1 runtime failure, 64 bad command line, 69 service unreachable (check),
77 credentials refused, 78 configuration error.
Signals: SIGTERM/SIGINT flush and exit 0; SIGHUP re-resolves the queue list now.";

/// What `--version` prints: the version and the target triple the binary was built for
/// (build.rs), so an operator can tell which release artefact is installed.
pub const VERSION: &str = concat!(
    "genesys2influx ",
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GENESYS2INFLUX_TARGET"),
    ")"
);

/// Parses the arguments after the program name.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, String> {
    let mut args = args.into_iter();
    let mut command: Option<Command> = None;
    let mut env_file = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" | "help" => {
                return Ok(Cli {
                    command: Command::Help,
                    env_file: None,
                })
            }
            "-V" | "--version" => {
                return Ok(Cli {
                    command: Command::Version,
                    env_file: None,
                })
            }
            "run" | "check" | "demo" | "top" if command.is_none() => {
                command = Some(new_command(&arg))
            }
            "--env-file" => env_file = Some(PathBuf::from(value(&mut args, "--env-file")?)),
            "--dry-run" => match &mut command {
                None => command = Some(Command::Run { dry_run: true }),
                Some(Command::Run { dry_run }) => *dry_run = true,
                Some(_) => return Err("--dry-run belongs to the run command".into()),
            },
            "--queues" | "--seconds" => {
                set_demo_flag(&mut command, &arg, &value(&mut args, &arg)?)?
            }
            "--output" => set_output(&mut command, &value(&mut args, &arg)?)?,
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    Ok(Cli {
        command: command.unwrap_or(Command::Run { dry_run: false }),
        env_file,
    })
}

fn new_command(name: &str) -> Command {
    match name {
        "check" => Command::Check,
        "top" => Command::Top,
        "demo" => Command::Demo {
            queues: DEFAULT_DEMO_QUEUES,
            seconds: None,
            output: None,
        },
        _ => Command::Run { dry_run: false },
    }
}

fn value(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<String, String> {
    args.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn set_demo_flag(command: &mut Option<Command>, flag: &str, text: &str) -> Result<(), String> {
    let Some(Command::Demo {
        queues, seconds, ..
    }) = command
    else {
        return Err(format!("{flag} belongs to the demo command"));
    };
    let number: u64 = text
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{flag} needs a positive whole number, not '{text}'"))?;
    if flag == "--queues" {
        *queues = usize::try_from(number)
            .ok()
            .filter(|_| number <= MAX_DEMO_QUEUES)
            .ok_or_else(|| {
                format!(
                    "{flag} {text} is more than the demo simulates; use at most {MAX_DEMO_QUEUES}"
                )
            })?;
    } else {
        *seconds = Some(number);
    }
    Ok(())
}

fn set_output(command: &mut Option<Command>, text: &str) -> Result<(), String> {
    let Some(Command::Demo { output, .. }) = command else {
        return Err("--output belongs to the demo command".into());
    };
    *output = Some(match text {
        "table" => Output::Table,
        "lp" => Output::LineProtocol,
        _ => return Err(format!("--output is table or lp, not '{text}'")),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Cli, String> {
        parse(line.split_whitespace().map(String::from))
    }

    #[test]
    fn run_is_the_default_command() {
        assert_eq!(
            parse_str("").unwrap().command,
            Command::Run { dry_run: false }
        );
        assert_eq!(
            parse_str("--dry-run").unwrap().command,
            Command::Run { dry_run: true }
        );
        let cli = parse_str("run --env-file /etc/x.env --dry-run").unwrap();
        assert_eq!(cli.command, Command::Run { dry_run: true });
        assert_eq!(cli.env_file, Some(PathBuf::from("/etc/x.env")));
    }

    #[test]
    fn demo_flags() {
        assert_eq!(
            parse_str("demo").unwrap().command,
            Command::Demo {
                queues: 20,
                seconds: None,
                output: None
            }
        );
        assert_eq!(
            parse_str("demo --queues 5 --seconds 8").unwrap().command,
            Command::Demo {
                queues: 5,
                seconds: Some(8),
                output: None
            }
        );
        assert!(parse_str("demo --queues 0")
            .unwrap_err()
            .contains("positive whole number"));
        assert_eq!(
            parse_str("demo --queues 10000").unwrap().command,
            Command::Demo {
                queues: 10_000,
                seconds: None,
                output: None
            }
        );
        assert_eq!(
            parse_str("demo --queues 5000000").unwrap_err(),
            "--queues 5000000 is more than the demo simulates; use at most 10000"
        );
        assert!(parse_str("demo --seconds")
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse_str("run --queues 3")
            .unwrap_err()
            .contains("belongs to the demo command"));
    }

    #[test]
    fn demo_output_and_top() {
        assert_eq!(
            parse_str("demo --output lp --queues 2").unwrap().command,
            Command::Demo {
                queues: 2,
                seconds: None,
                output: Some(Output::LineProtocol)
            }
        );
        assert!(matches!(
            parse_str("demo --output table").unwrap().command,
            Command::Demo {
                output: Some(Output::Table),
                ..
            }
        ));
        assert_eq!(
            parse_str("demo --output html").unwrap_err(),
            "--output is table or lp, not 'html'"
        );
        assert_eq!(
            parse_str("top --output lp").unwrap_err(),
            "--output belongs to the demo command"
        );
        let top = parse_str("top --env-file /etc/g.env").unwrap();
        assert_eq!(top.command, Command::Top);
        assert_eq!(top.env_file, Some(PathBuf::from("/etc/g.env")));
        assert!(parse_str("top --queues 3")
            .unwrap_err()
            .contains("belongs to the demo command"));
    }

    #[test]
    fn bad_command_lines_are_explained() {
        assert_eq!(
            parse_str("frobnicate").unwrap_err(),
            "unexpected argument 'frobnicate'"
        );
        assert_eq!(
            parse_str("check run").unwrap_err(),
            "unexpected argument 'run'"
        );
        assert!(parse_str("check --dry-run")
            .unwrap_err()
            .contains("belongs to the run command"));
        assert_eq!(parse_str("check --help").unwrap().command, Command::Help);
        assert_eq!(parse_str("--version").unwrap().command, Command::Version);
    }

    #[test]
    fn help_names_every_contract_variable() {
        for variable in [
            "GENESYS_CLIENT_ID",
            "GENESYS_CLIENT_SECRET",
            "GENESYS_CLIENT_SECRET_FILE",
            "GENESYS_REGION",
            "GENESYS_API_URL",
            "GENESYS_LOGIN_URL",
            "GENESYS_QUEUES",
            "GENESYS_QUEUES_FILE",
            "QUEUE_SHARD",
            "QUEUE_REFRESH",
            "POLL_INTERVAL",
            "WINDOW",
            "INFLUXDB_URL",
            "INFLUXDB_TOKEN",
            "INFLUXDB_ORG",
            "INFLUXDB_BUCKET",
            "INFLUXDB_DATABASE",
            "INFLUXDB_RETENTION_POLICY",
            "INFLUXDB_USERNAME",
            "INFLUXDB_PASSWORD",
            "INFLUXDB_TAGS",
            "TLS_CA_FILE",
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "ALL_PROXY",
            "NO_PROXY",
            "HTTP_TIMEOUT",
            "SPOOL_DIR",
            "SPOOL_MAX_BYTES",
            "SHUTDOWN_TIMEOUT",
            "LIVE_UPDATES",
            "NOTIFICATIONS",
            "KPIS",
            "KPI_BUCKET",
            "KPI_POLL",
            "KPI_LOOKBACK",
            "RUST_LOG",
        ] {
            assert!(HELP.contains(variable), "--help lacks {variable}");
        }
    }

    #[test]
    fn version_names_the_target_the_binary_was_built_for() {
        // build.rs passes cargo's TARGET: a test build runs on the machine it was built for.
        let target = VERSION
            .strip_prefix(concat!("genesys2influx ", env!("CARGO_PKG_VERSION"), " ("))
            .and_then(|rest| rest.strip_suffix(')'))
            .expect("genesys2influx VERSION (TARGET)");
        assert!(
            target.starts_with(std::env::consts::ARCH) && target.contains(std::env::consts::OS),
            "{target} is not this {}-{} machine",
            std::env::consts::ARCH,
            std::env::consts::OS
        );
    }
}
