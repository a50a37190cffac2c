//! The systemd notification protocol (`sd_notify(3)`), written by hand over std's
//! `UnixDatagram` so that no C library and no `unsafe` is needed.
//!
//! The unit runs with `Type=notify` and `WatchdogSec=`: the service says `READY=1` once
//! it polls, pings `WATCHDOG=1` at half of [`Notifier::watchdog_interval`] and says
//! `STOPPING=1` on SIGTERM. Outside systemd (`NOTIFY_SOCKET` unset) every call is a no-op,
//! so callers never need to ask where they run. Notifications are best effort, as in
//! libsystemd: a failed send is logged, never fatal.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends state changes to the service manager, or nothing when there is none.
#[derive(Debug)]
pub struct Notifier {
    target: Option<Target>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    address: SocketAddr,
    /// `NOTIFY_SOCKET` as given, for log lines.
    label: String,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the process
    /// environment.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok();
        Self::from_env_values(
            var("NOTIFY_SOCKET").as_deref(),
            var("WATCHDOG_USEC").as_deref(),
            var("WATCHDOG_PID").as_deref(),
            std::process::id(),
        )
    }

    /// Builds a notifier from the values systemd passes in the environment.
    ///
    /// `notify_socket` is an absolute path or `@name` for an abstract socket; anything
    /// else (or a socket that cannot be created) gives a no-op notifier and a warning.
    /// The watchdog is enabled when `watchdog_usec` is a positive number of microseconds
    /// and `watchdog_pid`, when present, is `my_pid` (systemd sets it so that children
    /// which inherit the environment do not ping for their parent).
    pub fn from_env_values(
        notify_socket: Option<&str>,
        watchdog_usec: Option<&str>,
        watchdog_pid: Option<&str>,
        my_pid: u32,
    ) -> Self {
        let target = notify_socket
            .filter(|s| !s.is_empty())
            .and_then(|s| match open(s) {
                Ok(target) => Some(target),
                Err(e) => {
                    log::warn!("NOTIFY_SOCKET={s} is unusable, not notifying systemd: {e}");
                    None
                }
            });
        Notifier {
            target,
            watchdog: watchdog_interval(watchdog_usec, watchdog_pid, my_pid),
        }
    }

    /// Whether notifications go anywhere.
    #[cfg(test)]
    pub fn is_enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog timeout systemd enforces (`WatchdogSec=`), if it asked for pings.
    /// Ping with [`Notifier::watchdog`] at half this interval, as `sd_watchdog_enabled(3)`
    /// recommends.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Start-up finished: systemd marks the unit active.
    pub fn ready(&self) {
        self.send_logged("READY=1");
    }

    /// A free-form status line shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send_logged(&format!("STATUS={}", one_line(status)));
    }

    /// Keep-alive ping for `WatchdogSec=`.
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    /// Shutdown has begun; systemd waits up to `TimeoutStopSec=` for the exit.
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1");
    }

    /// Sends one datagram of `KEY=VALUE` lines. `Ok` without sending when disabled.
    pub fn send(&self, state: &str) -> io::Result<()> {
        let Some(target) = &self.target else {
            return Ok(());
        };
        let sent = target
            .socket
            .send_to_addr(state.as_bytes(), &target.address)?;
        if sent != state.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {sent} of {} bytes", state.len()),
            ));
        }
        Ok(())
    }

    fn send_logged(&self, state: &str) {
        if let Err(e) = self.send(state) {
            let label = self.target.as_ref().map_or("", |t| t.label.as_str());
            let first = state.lines().next().unwrap_or_default();
            log::warn!("cannot notify systemd ({first}) via {label}: {e}");
        }
    }
}

fn open(notify_socket: &str) -> io::Result<Target> {
    let address = if let Some(name) = notify_socket.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())?
    } else if notify_socket.starts_with('/') {
        SocketAddr::from_pathname(notify_socket)?
    } else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "expected an absolute path or @abstract-name",
        ));
    };
    Ok(Target {
        socket: UnixDatagram::unbound()?,
        address,
        label: notify_socket.to_string(),
    })
}

fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, my_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|n| *n > 0)?;
    match pid.map(str::trim).filter(|p| !p.is_empty()) {
        Some(pid) if pid.parse::<u32>().ok() != Some(my_pid) => None,
        _ => Some(Duration::from_micros(usec)),
    }
}

/// A newline would start a new `KEY=VALUE` assignment.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    /// A listening socket in a fresh directory, standing in for systemd.
    struct FakeSystemd {
        dir: TempDir,
        socket: UnixDatagram,
    }

    impl FakeSystemd {
        fn new(name: &str) -> Self {
            let dir = TempDir::new(&format!("notify-{name}"));
            let socket = UnixDatagram::bind(dir.0.join("notify")).unwrap();
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            FakeSystemd { dir, socket }
        }

        fn path(&self) -> String {
            self.dir.0.join("notify").to_str().unwrap().to_string()
        }

        fn receive(&self) -> String {
            let mut buf = [0u8; 4096];
            let n = self.socket.recv(&mut buf).unwrap();
            String::from_utf8(buf[..n].to_vec()).unwrap()
        }
    }

    #[test]
    fn sends_the_exact_datagrams_systemd_expects() {
        let systemd = FakeSystemd::new("path");
        let notifier = Notifier::from_env_values(Some(&systemd.path()), None, None, 1);
        assert!(notifier.is_enabled());

        notifier.ready();
        assert_eq!(systemd.receive(), "READY=1");
        notifier.status("spooling:\n3 lines");
        assert_eq!(systemd.receive(), "STATUS=spooling: 3 lines");
        notifier.watchdog();
        assert_eq!(systemd.receive(), "WATCHDOG=1");
        notifier.stopping();
        assert_eq!(systemd.receive(), "STOPPING=1");
    }

    #[test]
    fn abstract_socket_names_start_with_at() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("genesys2influx-test-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&address).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();

        let notifier = Notifier::from_env_values(Some(&format!("@{name}")), None, None, 1);
        notifier.watchdog();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }

    #[test]
    fn without_a_socket_everything_is_a_no_op() {
        let notifier = Notifier::from_env_values(None, None, None, 1);
        assert!(!notifier.is_enabled());
        notifier.ready();
        notifier.stopping();
        assert!(notifier.send("READY=1").is_ok());
        assert!(!Notifier::from_env_values(Some(""), None, None, 1).is_enabled());
        assert!(!Notifier::from_env_values(Some("relative/path"), None, None, 1).is_enabled());
    }

    #[test]
    fn a_vanished_socket_is_an_error_not_a_panic() {
        let notifier =
            Notifier::from_env_values(Some("/nonexistent/genesys2influx/notify"), None, None, 1);
        assert!(notifier.is_enabled());
        assert!(notifier.send("WATCHDOG=1").is_err());
        notifier.watchdog();
    }

    #[test]
    fn watchdog_interval_comes_from_watchdog_usec_for_this_pid_only() {
        let interval = |usec, pid| Notifier::from_env_values(None, usec, pid, 4242).watchdog;
        assert_eq!(
            interval(Some("60000000"), None),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            interval(Some("60000000"), Some("4242")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(interval(Some("60000000"), Some("1")), None);
        assert_eq!(interval(Some("60000000"), Some("junk")), None);
        assert_eq!(interval(Some("0"), None), None);
        assert_eq!(interval(Some("sixty"), None), None);
        assert_eq!(interval(None, Some("4242")), None);
    }
}
