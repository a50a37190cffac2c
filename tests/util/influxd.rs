//! A private InfluxDB 1.6 (`/usr/bin/influxd`, Debian's package) for one test.
//!
//! Each [`Influxd`] gets its own temp dir (meta, data, wal, config, log), an HTTP port and
//! an RPC port on 127.0.0.1, so tests run in parallel and never touch a system service.
//! [`Influxd::stop`] and [`Influxd::start`] restart it on the same port and data (outage
//! tests); dropping it kills the process and removes the directory.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{agent, free_port, TempDir};

pub const INFLUXD: &str = "/usr/bin/influxd";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin pw, with = odd chars";
/// Measured start-up is well under a second; this bounds a slow, shared CI machine.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Fresh port pairs tried when another test took a port first.
const PORT_ATTEMPTS: u32 = 5;

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `[http] auth-enabled = true`, with an admin user [`ADMIN_USER`]/[`ADMIN_PASSWORD`].
    pub auth: bool,
    /// `[http] max-body-size` in bytes (InfluxDB's default, 25000000, when `None`).
    pub max_body_size: Option<u64>,
}

pub struct Influxd {
    dir: TempDir,
    http_port: u16,
    options: Options,
    child: Option<Child>,
    agent: ureq::Agent,
}

impl Influxd {
    /// Starts a server without auth and with the default body limit.
    pub fn start_default() -> Influxd {
        Influxd::start_with(Options::default())
    }

    /// Starts a server; panics (the test fails, never skips) when influxd is missing or
    /// does not answer `/ping` in time.
    pub fn start_with(options: Options) -> Influxd {
        assert!(
            Path::new(INFLUXD).exists(),
            "{INFLUXD} is missing: install Debian's `influxdb` package (apt-get install influxdb); \
             these tests need a real InfluxDB 1.x"
        );
        let dir = TempDir::new("influxd");
        let mut server = Influxd {
            dir,
            http_port: 0,
            options,
            child: None,
            agent: agent(),
        };
        // A port found free can be taken by another test before influxd binds it: then
        // influxd exits at once, and we try again on other ports.
        for attempt in 1..=PORT_ATTEMPTS {
            server.http_port = free_port();
            let config = config_toml(
                server.dir.path(),
                server.http_port,
                free_port(),
                &server.options,
            );
            std::fs::write(server.dir.join("influxdb.conf"), config).expect("write influxd config");
            match server.try_start() {
                Ok(()) => break,
                Err(why) if attempt < PORT_ATTEMPTS && why.contains("address already in use") => {
                    continue
                }
                Err(why) => panic!("{why}"),
            }
        }
        if server.options.auth {
            let q = format!(
                "CREATE USER {ADMIN_USER} WITH PASSWORD '{}' WITH ALL PRIVILEGES",
                ADMIN_PASSWORD.replace('\'', "\\'")
            );
            server.post_query(&q, false);
        }
        server
    }

    /// (Re)starts the process on the same port and data; waits for `/ping` → 204.
    pub fn start(&mut self) {
        if let Err(why) = self.try_start() {
            panic!("{why}");
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "influxd already running");
        let log = File::create(self.dir.join("influxd.log")).expect("create influxd log");
        let child = Command::new(INFLUXD)
            .arg("-config")
            .arg(self.dir.join("influxdb.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {INFLUXD}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "influxd exited with {status} during start-up:\n{}",
                    self.log()
                ));
            }
            let ping = self.agent.get(format!("{}/ping", self.url())).call();
            if matches!(&ping, Ok(r) if r.status().as_u16() == 204) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "influxd did not answer /ping within {START_TIMEOUT:?}:\n{}",
                    self.log()
                ));
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process (SIGKILL) and waits for it; the data dir and port are kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn port(&self) -> u16 {
        self.http_port
    }

    pub fn create_database(&self, name: &str) {
        self.post_query(&format!("CREATE DATABASE {}", quote_ident(name)), true);
    }

    /// Runs InfluxQL through `GET /query?db=&q=&epoch=s` and returns the JSON answer;
    /// panics on a non-200 status or an `"error"` in a statement result.
    pub fn query(&self, db: &str, influxql: &str) -> serde_json::Value {
        let request = self
            .agent
            .get(format!("{}/query", self.url()))
            .query("db", db)
            .query("q", influxql)
            .query("epoch", "s");
        let request = if self.options.auth {
            request.header("Authorization", basic(ADMIN_USER, ADMIN_PASSWORD))
        } else {
            request
        };
        let json = answer_json(request.call(), influxql);
        if let Some(error) = json["results"][0].get("error") {
            panic!("influxd query {influxql:?} failed: {error}");
        }
        json
    }

    /// The rows of the first series of a `SELECT`/`SHOW`, as JSON arrays (empty when none).
    pub fn rows(&self, db: &str, influxql: &str) -> Vec<serde_json::Value> {
        let json = self.query(db, influxql);
        json["results"][0]["series"][0]["values"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Posts raw bytes to `/write?db=&precision=s` and returns (status, body).
    pub fn write_raw(&self, db: &str, body: &[u8]) -> (u16, String) {
        let mut request = self
            .agent
            .post(format!("{}/write", self.url()))
            .query("db", db)
            .query("precision", "s");
        if self.options.auth {
            request = request.header("Authorization", basic(ADMIN_USER, ADMIN_PASSWORD));
        }
        let mut response = request.send(body).expect("POST /write");
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    }

    /// influxd's own output so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("influxd.log")).unwrap_or_default()
    }

    fn post_query(&self, influxql: &str, authenticated: bool) {
        let mut request = self
            .agent
            .post(format!("{}/query", self.url()))
            .query("q", influxql);
        if authenticated && self.options.auth {
            request = request.header("Authorization", basic(ADMIN_USER, ADMIN_PASSWORD));
        }
        let json = answer_json(request.send_empty(), influxql);
        if let Some(error) = json["results"][0].get("error") {
            panic!("influxd query {influxql:?} failed: {error}");
        }
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer_json(
    answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    influxql: &str,
) -> serde_json::Value {
    let mut response = answer.unwrap_or_else(|e| panic!("influxd query {influxql:?}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(status, 200, "influxd query {influxql:?} → {status}: {text}");
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("influxd answered non-JSON ({e}): {text}"))
}

/// An `Authorization: Basic …` header value.
pub fn basic(user: &str, password: &str) -> String {
    genesys2influx::http::basic_auth(user, password)
}

/// An InfluxQL identifier in double quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

fn config_toml(dir: &Path, http_port: u16, rpc_port: u16, options: &Options) -> String {
    let path = |name: &str| dir.join(name).display().to_string();
    let max_body = options
        .max_body_size
        .map(|n| format!("  max-body-size = {n}\n"))
        .unwrap_or_default();
    format!(
        r#"reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{meta}"
  logging-enabled = false

[data]
  dir = "{data}"
  wal-dir = "{wal}"
  query-log-enabled = false
  trace-logging-enabled = false

[retention]
  enabled = false

[shard-precreation]
  enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false

[logging]
  level = "error"
  suppress-logo = true

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = {auth}
  log-enabled = false
  write-tracing = false
  pprof-enabled = false
{max_body}"#,
        meta = path("meta"),
        data = path("data"),
        wal = path("wal"),
        auth = options.auth,
    )
}
