//! The process exit codes of the contract, in one place.
//!
//! The values are those of `sysexits.h`, so a supervisor can tell a fault worth a
//! restart (1, 69) from one a restart cannot fix (64, 77, 78): the systemd units list
//! those in `RestartPreventExitStatus=`. Every function that decides how the process
//! ends returns an [`Exit`]; only `main` turns it into a [`std::process::ExitCode`].

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Success, or a clean shutdown (SIGTERM/SIGINT).
    Ok = 0,
    /// A runtime failure.
    Failure = 1,
    /// A bad command line.
    Usage = 64,
    /// A required service is unreachable (`check`).
    Unavailable = 69,
    /// Credentials refused (`check`, or at start-up of `run`).
    Credentials = 77,
    /// A configuration error.
    Config = 78,
}

impl From<Exit> for std::process::ExitCode {
    fn from(exit: Exit) -> Self {
        // Every discriminant is below 256, so the cast keeps the value.
        std::process::ExitCode::from(exit as u8)
    }
}
