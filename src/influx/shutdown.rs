//! The shutdown deadline, in one place because two parties keep it: the writer loop
//! (which stops sending and spools) and the HTTP transport (which stops waiting for an
//! answer), so a request in flight at SIGTERM is waited for no longer than
//! `SHUTDOWN_TIMEOUT`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, TryRecvError};

/// When the shutdown flush must end: `SHUTDOWN_TIMEOUT` after `stop` disconnects
/// (SIGTERM) or the input closes, whichever comes first. Shared by the writer loop and
/// the transport, so a request in flight at SIGTERM is waited for only that long.
#[derive(Debug, Clone)]
pub(crate) struct ShutdownClock {
    pub(crate) stop: Receiver<()>,
    timeout: Duration,
    started: Arc<OnceLock<Instant>>,
}

impl ShutdownClock {
    pub(crate) fn new(stop: Receiver<()>, timeout: Duration) -> ShutdownClock {
        ShutdownClock {
            stop,
            timeout,
            started: Arc::default(),
        }
    }

    /// Starts the shutdown now, unless it already started.
    pub(crate) fn start(&self) {
        self.started.get_or_init(Instant::now);
    }

    /// The deadline, once the shutdown has started.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        if self.started.get().is_none()
            && matches!(self.stop.try_recv(), Err(TryRecvError::Disconnected))
        {
            self.start();
        }
        self.started.get().map(|at| *at + self.timeout)
    }

    /// Waits for `answer`; once the shutdown has started, no later than its deadline.
    pub(crate) fn wait_for<T>(&self, answer: &Receiver<T>) -> Option<T> {
        if self.deadline().is_none() {
            select! {
                recv(answer) -> got => return got.ok(),
                recv(self.stop) -> _ => {}
            }
        }
        // `stop` is never sent on: its arm fired because it disconnected.
        match self.deadline() {
            Some(deadline) => answer.recv_deadline(deadline).ok(),
            None => answer.recv().ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influx::policy::Answer;

    #[test]
    fn the_shutdown_clock_starts_when_stop_disconnects() {
        let (stop_tx, stop) = crossbeam_channel::bounded::<()>(0);
        let clock = ShutdownClock::new(stop, Duration::ZERO);
        assert_eq!(clock.deadline(), None);
        drop(stop_tx);
        let deadline = clock.deadline().expect("started");
        assert_eq!(clock.deadline(), Some(deadline), "started once");
        let (_answer_tx, answer) = crossbeam_channel::bounded::<Answer>(1);
        assert_eq!(
            clock.wait_for(&answer),
            None,
            "no waiting past the deadline"
        );
    }
}
