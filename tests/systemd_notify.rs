//! The `sd_notify` conversation with systemd, black-box: the built binary runs with
//! `NOTIFY_SOCKET` pointing at a datagram socket this test binds (standing in for
//! systemd), against a simulated Genesys Cloud and `INFLUXDB_URL=-`.
//!
//! `Type=notify` makes `systemctl start` wait for `READY=1`, so READY must mean "polling":
//! it may only come once the token and the queue list are in. `WatchdogSec=` restarts
//! the service when `WATCHDOG=1` stops, so pings must follow the polls, also while
//! Genesys fails. `WATCHDOG_PID` is left unset, which `sd_watchdog_enabled(3)` reads as
//! "the watchdog is for this process" (systemd sets it to the main pid, which a test
//! cannot know before the spawn).

use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use genesys2influx::sim::{Endpoint, Fault, Sim, SimOptions};

use crate::util::process::Service;
use crate::util::{sim_env, TempDir};

/// The queue list is answered this late, so a READY sent before it is in shows.
const QUEUE_LIST_DELAY: Duration = Duration::from_millis(1500);

/// One datagram: arrival time (ms since the epoch) and text.
type Datagram = (u64, String);

/// A bound notify socket and a thread that records what arrives.
struct FakeSystemd {
    path: String,
    received: Arc<Mutex<Vec<Datagram>>>,
    stop: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
    _dir: TempDir,
}

impl FakeSystemd {
    fn bind() -> FakeSystemd {
        let dir = TempDir::new("notify");
        let path = dir.join("notify");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, done) = (received.clone(), stop.clone());
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !done.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    sink.lock().unwrap().push((now_ms(), text));
                }
            }
        });
        FakeSystemd {
            path: path.to_str().unwrap().to_string(),
            received,
            stop,
            reader: Some(reader),
            _dir: dir,
        }
    }

    fn datagrams(&self) -> Vec<Datagram> {
        self.received.lock().unwrap().clone()
    }

    /// Waits (bounded) until `count` datagrams equal to `text` arrived after `since_ms`.
    fn wait_for(&self, text: &str, count: usize, since_ms: u64, service: &Service) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = self
                .datagrams()
                .iter()
                .filter(|(t, d)| *t >= since_ms && d == text)
                .count();
            if seen >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{seen} of {count} {text:?} datagrams within 30 s; got {:?}\nstderr:\n{}",
                self.datagrams(),
                service.stderr()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FakeSystemd {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn ready_after_token_and_queue_list_watchdog_while_polling_stopping_on_sigterm() {
    let sim = Sim::start(SimOptions {
        queue_count: 20,
        value_period: Duration::from_secs(1),
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts");
    sim.inject(Endpoint::Queues, Fault::Delay(QUEUE_LIST_DELAY), 1);
    let systemd = FakeSystemd::bind();
    let mut env = sim_env(&sim);
    env.extend([
        ("POLL_INTERVAL", "1s".into()),
        ("WINDOW", "5s".into()),
        ("KPIS", "off".into()),
        ("INFLUXDB_URL", "-".into()),
        ("NOTIFY_SOCKET", systemd.path.clone()),
        ("WATCHDOG_USEC", "4000000".into()),
    ]);
    let started_ms = now_ms();
    let mut service = Service::start(&["run"], &env);

    // READY=1 comes first, and only after the token and the (slow) queue list are in.
    systemd.wait_for("READY=1", 1, started_ms, &service);
    let datagrams = systemd.datagrams();
    assert_eq!(
        datagrams[0].1, "READY=1",
        "something before READY: {datagrams:?}"
    );
    let ready_ms = datagrams[0].0;
    let requests = sim.requests();
    let token = requests
        .iter()
        .find(|r| r.endpoint == Some(Endpoint::Token) && r.status == 200)
        .expect("a token request");
    let queue_list = requests
        .iter()
        .find(|r| r.endpoint == Some(Endpoint::Queues))
        .expect("a queue list request");
    assert!(
        token.time_ms <= queue_list.time_ms,
        "queue list before the token"
    );
    let queue_list_answered = queue_list.time_ms + QUEUE_LIST_DELAY.as_millis() as u64;
    assert!(
        ready_ms >= queue_list_answered,
        "READY=1 at {ready_ms}, before the queue list was answered at {queue_list_answered}"
    );
    assert!(
        requests
            .iter()
            .filter(|r| r.endpoint == Some(Endpoint::Observations))
            .all(|r| r.time_ms + 50 >= queue_list_answered),
        "observations polled before the queue list was in"
    );

    // A status line for `systemctl status`, then pings while polls run.
    systemd.wait_for("STATUS=polling 20 queues", 1, ready_ms, &service);
    systemd.wait_for("WATCHDOG=1", 3, ready_ms, &service);
    let polls_before = sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::Observations))
        .count();
    assert!(polls_before >= 2, "only {polls_before} polls so far");

    // Genesys failing is no hang: polls are still made (and fail), so pings go on and
    // the watchdog does not restart a service that is merely waiting for Genesys.
    sim.every_nth(Endpoint::Observations, 1, Fault::Status(503));
    let failing_since = now_ms();
    thread::sleep(Duration::from_millis(500));
    systemd.wait_for("WATCHDOG=1", 3, failing_since + 500, &service);
    let failed = sim
        .requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::Observations) && r.status == 503)
        .count();
    assert!(failed >= 2, "only {failed} failed polls");
    sim.clear_faults();

    // SIGTERM: STOPPING=1, then a clean exit.
    let term_ms = now_ms();
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "exit after SIGTERM; stderr:\n{}",
        service.stderr()
    );
    systemd.wait_for("STOPPING=1", 1, term_ms, &service);
    let datagrams = systemd.datagrams();
    let known =
        |d: &str| matches!(d, "READY=1" | "WATCHDOG=1" | "STOPPING=1") || d.starts_with("STATUS=");
    assert!(
        datagrams.iter().all(|(_, d)| known(d)),
        "unexpected datagrams: {datagrams:?}"
    );
    assert_eq!(
        datagrams.iter().filter(|(_, d)| d == "READY=1").count(),
        1,
        "READY=1 more than once: {datagrams:?}"
    );
    let stopping = datagrams
        .iter()
        .position(|(_, d)| d == "STOPPING=1")
        .unwrap();
    assert!(
        datagrams[stopping + 1..]
            .iter()
            .all(|(_, d)| d != "WATCHDOG=1" && d != "READY=1"),
        "pings or READY after STOPPING=1: {datagrams:?}"
    );
    println!(
        "READY=1 {} ms after start ({} ms after the queue list request); {} datagrams in all",
        ready_ms - started_ms,
        ready_ms - queue_list.time_ms,
        datagrams.len()
    );
}

/// libfaketime (Debian `faketime`): its preload library fakes the wall clock of a glibc
/// program from a file read at every clock call, and leaves the monotonic clock alone.
fn libfaketime() -> String {
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    format!("/usr/lib/{triplet}/faketime/libfaketimeMT.so.1")
}

/// Timestamps (s) of the self-metrics points on stdout, one per window written.
fn self_metric_windows(stdout: &str) -> Vec<u64> {
    stdout
        .lines()
        .filter(|l| l.starts_with("genesys2influx,"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect()
}

fn observation_requests_since(sim: &Sim, since_ms: u64) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.endpoint == Some(Endpoint::Observations) && r.time_ms >= since_ms)
        .count()
}

/// The wall clock stepped back by 5 minutes (as an NTP correction or an operator's
/// `date -s` does) and then forward to an hour ahead, the monotonic clock untouched: polling
/// goes on at the re-aligned tick within a second or two, each step is logged once as
/// what it is, the watchdog keeps being pinged, and no window is written twice.
#[test]
fn wall_clock_steps_neither_freeze_polling_nor_the_watchdog() {
    let library = libfaketime();
    assert!(
        std::path::Path::new(&library).exists(),
        "{library} is missing: apt-get install faketime (tests/run.sh does)"
    );
    let sim = Sim::start(SimOptions {
        queue_count: 20,
        value_period: Duration::from_secs(1),
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts");
    let systemd = FakeSystemd::bind();
    let dir = TempDir::new("faketime");
    let offset_file = dir.join("offset");
    std::fs::write(&offset_file, "+0\n").unwrap();
    let mut env = sim_env(&sim);
    env.extend([
        ("POLL_INTERVAL", "1s".into()),
        ("WINDOW", "5s".into()),
        ("KPIS", "off".into()),
        ("INFLUXDB_URL", "-".into()),
        ("NOTIFY_SOCKET", systemd.path.clone()),
        ("WATCHDOG_USEC", "4000000".into()),
        ("LD_PRELOAD", library),
        (
            "FAKETIME_TIMESTAMP_FILE",
            offset_file.to_str().unwrap().into(),
        ),
        ("FAKETIME_NO_CACHE", "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
    ]);
    let started_ms = now_ms();
    let mut service = Service::start(&["run"], &env);
    systemd.wait_for("READY=1", 1, started_ms, &service);
    systemd.wait_for("WATCHDOG=1", 2, started_ms, &service);
    // Let a window or two be written before the step.
    thread::sleep(Duration::from_secs(6));

    std::fs::write(&offset_file, "-300\n").unwrap();
    let back_ms = now_ms();
    thread::sleep(Duration::from_secs(8));
    let pings = systemd
        .datagrams()
        .iter()
        .filter(|(t, d)| *t >= back_ms + 1000 && d == "WATCHDOG=1")
        .count();
    let polled = observation_requests_since(&sim, back_ms + 2000);
    assert!(
        pings >= 3 && polled >= 4,
        "after the step back: {pings} watchdog pings and {polled} polls in 6 s\nstderr:\n{}",
        service.stderr()
    );

    std::fs::write(&offset_file, "+3600\n").unwrap();
    let forward_ms = now_ms();
    thread::sleep(Duration::from_secs(5));
    let polled = observation_requests_since(&sim, forward_ms + 2000);
    assert!(
        polled >= 2,
        "after the step forward: {polled} polls in 3 s\nstderr:\n{}",
        service.stderr()
    );

    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));
    let stderr = service.stderr();
    assert_eq!(status.code(), Some(0), "stderr:\n{stderr}");
    let lines = |needle: &str| stderr.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(
        lines("wall clock stepped back by 300 s"),
        1,
        "the step back is logged once:\n{stderr}"
    );
    assert_eq!(
        // from 300 s behind to 3,600 s ahead
        lines("wall clock stepped forward by 3900 s"),
        1,
        "the step forward is logged once:\n{stderr}"
    );
    // Genesys's Date headers show the host 300 s behind: said once.
    assert_eq!(
        lines("this host's clock is 300 s behind Genesys Cloud's"),
        1,
        "the skew is logged once:\n{stderr}"
    );
    assert_eq!(
        lines("fewer queues"),
        0,
        "a clock step is not a budget problem:\n{stderr}"
    );
    let windows = self_metric_windows(&service.stdout());
    let mut unique = windows.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        windows.len(),
        "a window was written twice: {windows:?}"
    );
    assert!(windows.len() >= 3, "windows written: {windows:?}");
}
