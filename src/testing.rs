//! Helpers shared by the unit tests of several modules: a scratch directory that is
//! removed when dropped, a named pipe (the file type a state file or spool segment must
//! refuse to read), and the Genesys settings of the simulator. Writer-specific doubles
//! live in `influx::testing`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// A fresh, empty directory under the system's temp dir, unique per process and call,
/// removed with everything in it when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "g2i-{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates a named pipe at `path`: opening it for reading would block forever.
pub(crate) fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// The Genesys settings that point a client at the simulator `sim`, with its default
/// credentials and the default request budget.
pub(crate) fn sim_genesys(sim: &crate::sim::Sim) -> crate::config::GenesysConfig {
    let options = crate::sim::SimOptions::default();
    crate::config::GenesysConfig {
        region_label: "sim".into(),
        api_url: sim.base_url(),
        login_url: sim.base_url(),
        client_id: options.client_id,
        client_secret: crate::config::Secret::new(options.client_secret),
        requests_per_minute: 300,
    }
}
