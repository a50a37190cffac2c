//! A private VictoriaMetrics (`/usr/bin/victoria-metrics`, Debian's package) for one test.
//!
//! Own temp dir and loopback port; `-retentionPeriod=100y` so any test timestamp is kept
//! (docs/line-protocol.md#victoriametrics). Read back with [`Victoria::export`] (or [`Victoria::series`]), which
//! force-flushes first. Killed on
//! drop. [`Victoria::start`] returns `None` when the binary is not installed: the only
//! allowed skip, and the caller prints the reason.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{agent, free_port, TempDir};

pub const VICTORIA: &str = "/usr/bin/victoria-metrics";
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Victoria {
    dir: TempDir,
    port: u16,
    child: Child,
    agent: ureq::Agent,
}

impl Victoria {
    /// Starts a server, or `None` (saying the test is skipped) when [`VICTORIA`] is not
    /// installed.
    pub fn start() -> Option<Victoria> {
        if !Path::new(VICTORIA).exists() {
            println!("SKIPPED: {VICTORIA} is not installed (apt-get install victoria-metrics)");
            return None;
        }
        let dir = TempDir::new("victoria");
        let port = free_port();
        let log = File::create(dir.join("victoria.log")).expect("create victoria log");
        let child = Command::new(VICTORIA)
            .arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-retentionPeriod=100y")
            .arg("-loggerLevel=ERROR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {VICTORIA}: {e}"));
        let mut server = Victoria {
            dir,
            port,
            child,
            agent: agent(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("victoria-metrics exited with {status}:\n{}", server.log());
            }
            let health = server.agent.get(format!("{}/health", server.url())).call();
            if matches!(&health, Ok(r) if r.status().as_u16() == 200) {
                return Some(server);
            }
            assert!(
                Instant::now() < deadline,
                "victoria-metrics did not answer /health within {START_TIMEOUT:?}:\n{}",
                server.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every series matching `selector` (e.g. `{__name__="genesys_queue_idle_min"}`), as
    /// the JSON lines of `/api/v1/export`, after `/internal/force_flush`.
    pub fn export(&self, selector: &str) -> Vec<serde_json::Value> {
        let flush = self
            .agent
            .get(format!("{}/internal/force_flush", self.url()))
            .call()
            .expect("force_flush");
        assert_eq!(flush.status().as_u16(), 200, "force_flush status");
        let mut response = self
            .agent
            .get(format!("{}/api/v1/export", self.url()))
            .query("match[]", selector)
            .call()
            .expect("export");
        let text = response.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(response.status().as_u16(), 200, "export: {text}");
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("export line is JSON"))
            .collect()
    }

    /// The series matching `selector`, if any (more than one is a test failure): its
    /// labels, and its values by timestamp in seconds (VictoriaMetrics keeps ms).
    pub fn series(&self, selector: &str) -> Option<(serde_json::Value, BTreeMap<u64, f64>)> {
        let found = self.export(selector);
        assert!(found.len() <= 1, "one series for {selector}: {found:?}");
        let series = found.first()?;
        let values = series["values"].as_array().cloned().unwrap_or_default();
        let times = series["timestamps"].as_array().cloned().unwrap_or_default();
        let by_second = times
            .iter()
            .zip(&values)
            .filter_map(|(t, v)| Some((t.as_u64()? / 1000, v.as_f64()?)))
            .collect();
        Some((series["metric"].clone(), by_second))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("victoria.log")).unwrap_or_default()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
