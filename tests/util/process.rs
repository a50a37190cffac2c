//! The built binary as a child process: environment in, stderr captured, real signals.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_genesys2influx");

/// The binary to run: the one cargo built, or `GENESYS2INFLUX_BINARY` (the benchmarks
/// use it to measure the static musl release that is actually shipped, tests/run.sh to
/// test the ARM releases).
pub fn binary() -> String {
    std::env::var("GENESYS2INFLUX_BINARY").unwrap_or_else(|_| BINARY.to_string())
}

/// The command line that runs the binary under test: `GENESYS2INFLUX_RUNNER`'s words (an
/// emulator such as `qemu-aarch64-static`, so the same tests serve every target), then
/// [`binary`]. The process started is the runner: qemu-user forwards signals to the
/// program it runs and exits with its exit status, so signals and exit codes keep their
/// meaning.
pub fn command_line() -> Vec<String> {
    let runner = std::env::var("GENESYS2INFLUX_RUNNER").unwrap_or_default();
    let mut words: Vec<String> = runner.split_whitespace().map(str::to_string).collect();
    words.push(binary());
    words
}

/// A [`Command`] for the binary under test ([`command_line`]), nothing else set yet.
pub fn command() -> Command {
    let mut words = command_line().into_iter();
    let mut command = Command::new(words.next().expect("the command line names the binary"));
    command.args(words);
    command
}

/// How many times longer than natively the binary under test may take:
/// `GENESYS2INFLUX_TEST_SLOWNESS` (a number, default 1), set when it runs under an
/// emulator. Time limits are multiplied by it; what the tests assert stays the same.
pub fn slowness() -> f64 {
    std::env::var("GENESYS2INFLUX_TEST_SLOWNESS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|f| f.is_finite() && *f >= 1.0)
        .unwrap_or(1.0)
}

/// `limit` with room for a slow binary under test ([`slowness`]).
pub fn patience(limit: Duration) -> Duration {
    limit.mul_f64(slowness())
}

/// A running `genesys2influx` whose stdout and stderr are collected in the background.
pub struct Service {
    child: Child,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Service {
    /// Starts the binary with `args` and exactly the given environment (plus PATH), so
    /// nothing from the developer's shell leaks in.
    pub fn start(args: &[&str], env: &[(&str, String)]) -> Service {
        let mut command = command();
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        command
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("RUST_LOG", "info");
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the genesys2influx binary starts");
        let stdout = collect(child.stdout.take().expect("stdout piped"));
        let stderr = collect(child.stderr.take().expect("stderr piped"));
        Service {
            child,
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits at most `limit` ([`patience`]) for the process to exit; kills it and panics
    /// otherwise.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let limit = patience(limit);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads drain the pipes.
                thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "genesys2influx did not exit within {limit:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// Waits until stderr contains `needle` (bounded by `limit`, [`patience`]).
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        let limit = patience(limit);
        let deadline = Instant::now() + limit;
        while !self.stderr().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no log line containing {needle:?} within {limit:?}; stderr:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = buffer.clone();
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buffer
}

/// Runs the binary to completion with a time limit: (exit code, stdout, stderr).
pub fn run_to_end(
    args: &[&str],
    env: &[(&str, String)],
    limit: Duration,
) -> (Option<i32>, String, String) {
    let mut service = Service::start(args, env);
    let status = service.wait(limit);
    (status.code(), service.stdout(), service.stderr())
}
