//! Thin entry point: the command line to [`genesys2influx::app::run`], its exit code to
//! the process.

use std::process::ExitCode;

fn main() -> ExitCode {
    genesys2influx::app::run(std::env::args().skip(1)).into()
}
