//! What the observation poller's start-up resolved, or why it could not start: the face
//! start-up shows the service (`run`, `top`), with the exit code of the contract and a
//! message that says what to fix. Apart from the poller so the thread reads on its own.

use std::fmt;
use std::time::Duration;

use crate::config::Shard;
use crate::exit::Exit;

use super::error::ApiError;

/// What start-up resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct StartInfo {
    pub queues: usize,
    /// The poll interval in use: `POLL_INTERVAL`, or a multiple of it when the request
    /// budget required (the aggregator must know: see `budget`).
    pub poll_interval: Duration,
    /// The plan as one human sentence (already logged).
    pub plan: String,
}

/// Why the poller could not start.
#[derive(Debug, Clone, PartialEq)]
pub enum StartError {
    /// Credentials refused, or the role lacks `routing:queue:view`: exit 77.
    Refused(ApiError),
    /// The selection (after sharding) is empty: exit 78.
    NothingSelected {
        unmatched: Vec<String>,
        available: usize,
        shard: Option<Shard>,
    },
    /// The control channel disconnected while starting: a clean stop.
    Stopped,
}

impl StartError {
    /// The process exit code of the contract.
    pub fn exit_code(&self) -> Exit {
        match self {
            StartError::Refused(_) => Exit::Credentials,
            StartError::NothingSelected { .. } => Exit::Config,
            StartError::Stopped => Exit::Ok,
        }
    }
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Refused(error) => write!(f, "{error}"),
            StartError::NothingSelected {
                unmatched,
                available,
                shard,
            } => {
                write!(
                    f,
                    "no queue to poll: the OAuth client sees {available} queue(s)"
                )?;
                if !unmatched.is_empty() {
                    write!(
                        f,
                        ", and GENESYS_QUEUES entries matched nothing: {}",
                        unmatched.join(", ")
                    )?;
                }
                if let Some(shard) = shard {
                    write!(
                        f,
                        ", and none of the selected ones hashes to QUEUE_SHARD={}/{}",
                        shard.index, shard.count
                    )?;
                }
                write!(
                    f,
                    "; check GENESYS_QUEUES (names are case-sensitive, `*` is the only wildcard) and \
                     that the OAuth client's role covers the queues' divisions"
                )
            }
            StartError::Stopped => write!(f, "stopped during start-up"),
        }
    }
}

impl std::error::Error for StartError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_map_to_exit_codes_and_say_what_to_do() {
        let nothing = StartError::NothingSelected {
            unmatched: vec!["Nope".into(), "Sup*".into()],
            available: 7,
            shard: Some(Shard { index: 2, count: 4 }),
        };
        assert_eq!(nothing.exit_code(), Exit::Config);
        let text = nothing.to_string();
        assert!(text.contains("sees 7 queue(s)"), "{text}");
        assert!(text.contains("Nope, Sup*"), "{text}");
        assert!(text.contains("QUEUE_SHARD=2/4"), "{text}");
        assert_eq!(
            StartError::Refused(ApiError::DeadlineExceeded).exit_code(),
            Exit::Credentials
        );
        assert_eq!(StartError::Stopped.exit_code(), Exit::Ok);
    }
}
