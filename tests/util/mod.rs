//! Shared test harness: temporary directories, free loopback ports and a private
//! `influxd` (see [`influxd`]).

#![allow(dead_code)]

pub mod gate;
pub mod influxd;
pub mod process;
pub mod proxy;
pub mod victoria;
pub mod wall;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use genesys2influx::sim::{Sim, SimOptions};

/// A directory under the system temp dir, removed with everything in it on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a fresh, unique directory whose name starts with `g2i-<label>-`.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "g2i-{label}-{}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loopback port nobody listens on right now (the OS picks it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

/// An HTTP agent for talking to test servers: no proxy, statuses returned as values.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// The variables that point the service at the simulated org `sim`, with the
/// simulator's (default) credentials. Notifications off: these tests predict every
/// reading from the poll ticks alone; `notifications.rs` turns them on (a later entry
/// of the same variable wins).
pub fn sim_env(sim: &Sim) -> Vec<(&'static str, String)> {
    let options = SimOptions::default();
    vec![
        ("GENESYS_CLIENT_ID", options.client_id),
        ("GENESYS_CLIENT_SECRET", options.client_secret),
        ("GENESYS_API_URL", sim.base_url()),
        ("GENESYS_LOGIN_URL", sim.base_url()),
        ("NOTIFICATIONS", "off".to_string()),
    ]
}
