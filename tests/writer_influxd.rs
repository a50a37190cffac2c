//! The writer thread against a real influxd 1.6 (v1 path) and a byte-checking fake
//! (v2 path): plain writes, auth, 413 splitting, partial writes, an outage with the
//! spool, and `check`; and the built binary in v2 mode end to end against
//! VictoriaMetrics' `/api/v2/write`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use genesys2influx::config::LiveUpdates;
use genesys2influx::config::{InfluxTarget, Secret, SpoolConfig, V1Auth};
use genesys2influx::exit::Exit;
use genesys2influx::influx::endpoint::{self, CheckError};
use genesys2influx::influx::live::LiveSlot;
use genesys2influx::influx::spool::Spool;
use genesys2influx::influx::writer::{self, WriterSettings};
use genesys2influx::model::Batch;
use genesys2influx::stats::Stats;

use crate::core_pipeline::sim_with;
use crate::util::influxd::{Influxd, Options, ADMIN_PASSWORD, ADMIN_USER};
use crate::util::process::Service;
use crate::util::victoria::Victoria;
use crate::util::{agent, free_port, sim_env, TempDir};

const DB: &str = "genesys";

fn v1(server: &Influxd, auth: V1Auth) -> InfluxTarget {
    InfluxTarget::V1 {
        url: server.url(),
        database: DB.into(),
        retention_policy: None,
        auth,
    }
}

fn admin() -> V1Auth {
    V1Auth::Basic {
        username: ADMIN_USER.into(),
        password: Secret::new(ADMIN_PASSWORD),
    }
}

/// `count` lines `m,q=<i> v=<i>i <ts>` starting at `first`.
fn batch(first: usize, count: usize) -> Batch {
    let mut lines = String::new();
    for i in first..first + count {
        lines.push_str(&format!("m,q=q{i} v={i}i {}\n", 1_600_000_000 + i));
    }
    Batch {
        lines,
        line_count: count,
        window: None,
    }
}

struct Running {
    tx: Option<Sender<Batch>>,
    handle: Option<JoinHandle<()>>,
    stats: Arc<Stats>,
}

impl Running {
    fn start(target: InfluxTarget, spool_dir: Option<&Path>, shutdown: Duration) -> Running {
        let (tx, rx) = crossbeam_channel::bounded(64);
        let stats = Arc::new(Stats::default());
        let settings = WriterSettings {
            target,
            spool: SpoolConfig {
                dir: spool_dir.map(Path::to_path_buf),
                max_bytes: 10 << 20,
            },
            shutdown_timeout: shutdown,
            max_lines_per_request: writer::DEFAULT_MAX_LINES_PER_REQUEST,
            live_updates: LiveUpdates::Off,
        };
        let thread_stats = stats.clone();
        let live = LiveSlot::new(stats.clone());
        let handle = thread::spawn(move || {
            writer::run(
                settings,
                agent(),
                rx,
                live,
                crossbeam_channel::never(),
                thread_stats,
                // The writer hands sent buffers back as in the service; nobody takes them.
                genesys2influx::aggregate::part_buffers(),
            )
        });
        Running {
            tx: Some(tx),
            handle: Some(handle),
            stats,
        }
    }

    fn send(&self, batch: Batch) {
        self.tx.as_ref().unwrap().send(batch).unwrap();
    }

    /// Disconnects the input and waits for the writer to return (bounded).
    fn finish(mut self) -> Arc<Stats> {
        self.tx.take();
        let handle = self.handle.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !handle.is_finished() {
            assert!(Instant::now() < deadline, "writer did not stop");
            thread::sleep(Duration::from_millis(20));
        }
        handle.join().expect("writer panicked");
        self.stats.clone()
    }
}

fn count(server: &Influxd) -> i64 {
    let rows = server.rows(DB, "SELECT count(v) FROM m");
    rows.first().and_then(|r| r[1].as_i64()).unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn v1_writes_and_reads_back() {
    let server = Influxd::start_default();
    server.create_database(DB);
    let w = Running::start(v1(&server, V1Auth::None), None, Duration::from_secs(5));
    w.send(batch(0, 3));
    w.send(batch(3, 7000)); // over 5000 lines: two requests
    let stats = w.finish();
    assert_eq!(count(&server), 7003);
    assert_eq!(stats.points_written.load(Relaxed), 7003);
    assert_eq!(stats.write_errors.load(Relaxed), 0);
    let rows = server.rows(DB, "SELECT v FROM m WHERE q = 'q42'");
    assert_eq!(rows[0][0], 1_600_000_042);
    assert_eq!(rows[0][1], 42);
}

#[test]
fn auth_right_and_wrong_password() {
    let server = Influxd::start_with(Options {
        auth: true,
        ..Options::default()
    });
    server.create_database(DB);
    let good = v1(&server, admin());
    let message = endpoint::check(&good, &agent()).expect("check with the right password");
    assert!(message.contains("InfluxDB 1.6.7"), "{message}");
    assert!(
        message.contains("database \"genesys\" writable"),
        "{message}"
    );
    let w = Running::start(good, None, Duration::from_secs(5));
    w.send(batch(0, 10));
    w.finish();
    assert_eq!(count(&server), 10);

    let wrong = v1(
        &server,
        V1Auth::Basic {
            username: ADMIN_USER.into(),
            password: Secret::new("wrong"),
        },
    );
    let err = endpoint::check(&wrong, &agent()).unwrap_err();
    assert!(matches!(err, CheckError::Refused(_)), "{err:?}");
    assert_eq!(err.exit_code(), Exit::Credentials);
    assert!(!err.to_string().contains("wrong"), "no password in {err}");

    // Refused credentials keep the data: spooled, nothing stored.
    let spool = TempDir::new("spool-auth");
    let w = Running::start(wrong, Some(spool.path()), Duration::from_secs(2));
    w.send(batch(100, 5));
    let stats = w.finish();
    assert_eq!(count(&server), 10);
    assert_eq!(stats.lines_spooled.load(Relaxed), 5);
    assert!(stats.write_errors.load(Relaxed) >= 1);
    let kept = Spool::open(spool.path(), 10 << 20, Arc::new(Stats::default())).unwrap();
    assert_eq!(kept.lines(), 5);
}

#[test]
fn too_large_bodies_are_split() {
    let server = Influxd::start_with(Options {
        max_body_size: Some(4096),
        ..Options::default()
    });
    server.create_database(DB);
    // Hard-to-compress tag values, so the gzipped body exceeds the limit.
    let mut lines = String::new();
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for i in 0..800 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        lines.push_str(&format!("m,q={x:016x} v={i}i {}\n", 1_600_000_000 + i));
    }
    let w = Running::start(v1(&server, V1Auth::None), None, Duration::from_secs(5));
    w.send(Batch {
        lines,
        line_count: 800,
        window: None,
    });
    let stats = w.finish();
    assert_eq!(count(&server), 800);
    assert_eq!(stats.points_written.load(Relaxed), 800);
    assert!(stats.write_errors.load(Relaxed) >= 1, "a 413 was answered");
    assert_eq!(stats.lines_dropped.load(Relaxed), 0);
}

#[test]
fn partial_write_stores_the_good_lines_and_drops_the_bad() {
    let server = Influxd::start_default();
    server.create_database(DB);
    let (status, body) = server.write_raw(DB, b"m,q=old v=1i 1500000000\n");
    assert_eq!(status, 204, "{body}");
    let mut b = batch(0, 4);
    b.lines.push_str("m,q=bad v=2.5 1600000100\n");
    b.lines.push_str(&batch(4, 4).lines);
    b.line_count = 9;
    let w = Running::start(v1(&server, V1Auth::None), None, Duration::from_secs(5));
    w.send(b);
    let stats = w.finish();
    assert_eq!(count(&server), 1 + 8);
    assert_eq!(stats.points_written.load(Relaxed), 8);
    assert_eq!(stats.lines_dropped.load(Relaxed), 1);
    assert!(server
        .rows(DB, "SELECT v FROM m WHERE q = 'bad'")
        .is_empty());
}

#[test]
fn a_type_conflict_inside_one_body_is_isolated() {
    let server = Influxd::start_default();
    server.create_database(DB);
    let mut b = batch(0, 6);
    b.lines.push_str("m,q=bad v=2.5 1600000100\n");
    b.lines.push_str(&batch(6, 5).lines);
    b.line_count = 12;
    let w = Running::start(v1(&server, V1Auth::None), None, Duration::from_secs(5));
    w.send(b);
    let stats = w.finish();
    assert_eq!(count(&server), 11);
    assert_eq!(stats.lines_dropped.load(Relaxed), 1);
}

#[test]
fn an_outage_is_spooled_and_replayed() {
    let mut server = Influxd::start_default();
    server.create_database(DB);
    let spool = TempDir::new("spool-outage");
    let w = Running::start(
        v1(&server, V1Auth::None),
        Some(spool.path()),
        Duration::from_secs(5),
    );
    w.send(batch(0, 5));
    wait_for("first batch", Duration::from_secs(10), || {
        count(&server) == 5
    });
    server.stop();
    w.send(batch(5, 5));
    wait_for("spooling", Duration::from_secs(30), || {
        w.stats.lines_spooled.load(Relaxed) == 5
    });
    w.send(batch(10, 5));
    wait_for("second spooling", Duration::from_secs(30), || {
        w.stats.lines_spooled.load(Relaxed) == 10
    });
    assert!(w.stats.spool_bytes.load(Relaxed) > 0);
    server.start();
    // Backoff is at most 30 s (plus jitter), and CI machines are busy.
    wait_for("replay", Duration::from_secs(90), || count(&server) == 15);
    w.send(batch(15, 1));
    let stats = w.finish();
    assert_eq!(count(&server), 16);
    assert_eq!(stats.spool_bytes.load(Relaxed), 0);
    assert_eq!(stats.lines_dropped.load(Relaxed), 0);
    let left = Spool::open(spool.path(), 10 << 20, Arc::new(Stats::default())).unwrap();
    assert!(left.is_empty());
}

#[test]
fn check_reports_missing_database_and_unreachable_server() {
    let server = Influxd::start_default();
    let err = endpoint::check(&v1(&server, V1Auth::None), &agent()).unwrap_err();
    assert!(matches!(err, CheckError::NotFound(_)), "{err:?}");
    assert_eq!(err.exit_code(), Exit::Config);
    let closed = InfluxTarget::V1 {
        url: format!("http://127.0.0.1:{}", free_port()),
        database: DB.into(),
        retention_policy: None,
        auth: V1Auth::None,
    };
    let err = endpoint::check(&closed, &agent()).unwrap_err();
    assert!(matches!(err, CheckError::Unreachable(_)), "{err:?}");
    assert_eq!(err.exit_code(), Exit::Unavailable);
    server.create_database(DB);
    endpoint::check(&v1(&server, V1Auth::None), &agent()).expect("writable");
    assert_eq!(count(&server), 0, "check writes no points");
}

/// One HTTP/1.1 request as received: request line, lower-cased headers, raw body.
struct Captured {
    request_line: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Captured {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A loopback server answering `204` to `requests` requests and handing them over.
fn fake_influx(requests: usize) -> (String, JoinHandle<Vec<Captured>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let mut captured = Vec::new();
        let (stream, _) = listener.accept().unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        for _ in 0..requests {
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut headers = Vec::new();
            for _ in 0..100 {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            writer
                .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
            captured.push(Captured {
                request_line: request_line.trim_end().to_string(),
                headers,
                body,
            });
        }
        captured
    });
    (url, handle)
}

#[test]
fn v2_request_byte_for_byte() {
    let (url, server) = fake_influx(1);
    let target = InfluxTarget::V2 {
        url,
        org: Some("my org".into()),
        bucket: "genesys/raw".into(),
        token: Secret::new("s3cr3t-token=="),
    };
    let w = Running::start(target, None, Duration::from_secs(5));
    let b = batch(0, 3);
    let expected = b.lines.clone();
    w.send(b);
    let stats = w.finish();
    let requests = server.join().unwrap();
    let r = &requests[0];
    assert_eq!(
        r.request_line,
        "POST /api/v2/write?org=my%20org&bucket=genesys%2Fraw&precision=s HTTP/1.1"
    );
    assert_eq!(r.header("authorization"), Some("Token s3cr3t-token=="));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("content-encoding"), Some("gzip"));
    let mut body = String::new();
    flate2::read::GzDecoder::new(&r.body[..])
        .read_to_string(&mut body)
        .unwrap();
    assert_eq!(body, expected);
    assert_eq!(stats.points_written.load(Relaxed), 3);
}

// ---- v2 write API end to end: the built binary against VictoriaMetrics ----

/// `run` in v2 mode (`INFLUXDB_BUCKET`, `INFLUXDB_ORG`, `INFLUXDB_TOKEN`) writes through
/// VictoriaMetrics' `/api/v2/write`: the windows come back with exactly the values the
/// simulator implies, and without the `db` label a v1 write would have added.
#[test]
fn v2_mode_writes_the_windows_to_victoriametrics() {
    const POLL_S: u64 = 1;
    const WINDOW_S: u64 = 2;
    let Some(victoria) = Victoria::start() else {
        return;
    };
    let sim = sim_with(5);
    let mut env = sim_env(&sim);
    env.extend([
        ("POLL_INTERVAL", format!("{POLL_S}s")),
        ("WINDOW", format!("{WINDOW_S}s")),
        ("KPIS", "off".to_string()),
        ("INFLUXDB_URL", victoria.url()),
        ("INFLUXDB_BUCKET", "genesys/raw".to_string()),
        ("INFLUXDB_ORG", "my org".to_string()),
        ("INFLUXDB_TOKEN", "v2-token-never-logged".to_string()),
        ("INSTANCE", "v2-test".to_string()),
    ]);
    let mut service = Service::start(&["run"], &env);
    let (id, _) = sim.queues()[2].clone();
    let samples = format!("{{__name__=\"genesys_queue_samples\",queue_id=\"{id}\"}}");
    // Complete windows: every poll of the window aggregated.
    let mut complete = Vec::new();
    wait_for(
        "three complete windows in VictoriaMetrics",
        Duration::from_secs(40),
        || {
            complete = victoria
                .series(&samples)
                .map(|(_, values)| values)
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, n)| *n == (WINDOW_S / POLL_S) as f64)
                .map(|(start, _)| start)
                .collect();
            complete.len() >= 3
        },
    );
    service.signal("TERM");
    let status = service.wait(Duration::from_secs(30));
    let log = service.stderr();
    assert_eq!(status.code(), Some(0), "exit after SIGTERM; log:\n{log}");
    assert!(
        !log.contains("v2-token-never-logged"),
        "no token in the log"
    );

    for (index, metric) in genesys2influx::model::AGENT_METRICS.iter().enumerate() {
        for suffix in ["min", "max", "last", "mean"] {
            let selector =
                format!("{{__name__=\"genesys_queue_{metric}_{suffix}\",queue_id=\"{id}\"}}");
            let (labels, values) = victoria
                .series(&selector)
                .unwrap_or_else(|| panic!("no series {selector}; log:\n{log}"));
            assert!(
                labels.get("db").is_none(),
                "v2 writes carry no db: {labels}"
            );
            for start in &complete {
                let slots: Vec<f64> = (*start..start + WINDOW_S)
                    .step_by(POLL_S as usize)
                    .map(|slot| sim.observation_at(&id, slot).agents()[index])
                    .collect();
                let expected = match suffix {
                    "min" => slots.iter().copied().fold(f64::INFINITY, f64::min),
                    "max" => slots.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    "last" => slots[slots.len() - 1],
                    _ => slots.iter().sum::<f64>() / slots.len() as f64,
                };
                assert_eq!(
                    values.get(start),
                    Some(&expected),
                    "{selector} at {start}; log:\n{log}"
                );
            }
        }
    }
}

// ---- isolating a bad line in a body whose middle byte is inside a character ----

/// A whole-body rejection (a type conflict inside one body, docs/line-protocol.md#type-conflicts, case H03) makes the writer
/// halve the body until the bad line is alone. Here the byte in the middle of the body
/// falls inside a two-byte `é`: the halving must cut at a line, not panic (a panic
/// aborts the release binary).
#[test]
fn a_rejected_body_is_halved_even_when_its_middle_byte_is_inside_a_character() {
    let server = Influxd::start_default();
    server.create_database(DB);
    let mut lines = String::new();
    for i in 0..6 {
        lines.push_str(&format!(
            "m,q=q{i}{} v={i}i {}\n",
            "é".repeat(20),
            1_600_000_000 + i
        ));
    }
    lines.push_str("m,q=bad v=2.5 1600000100\n");
    // A byte more in the first tag value shifts the text against the middle: within two
    // tries the middle lands inside an `é`.
    let middle = |lines: &str| lines.strip_suffix('\n').unwrap_or(lines).len() / 2;
    for _ in 0..4 {
        if !lines.is_char_boundary(middle(&lines)) {
            break;
        }
        lines.insert(4, 'x');
    }
    assert!(
        !lines.is_char_boundary(middle(&lines)),
        "the middle is inside a character"
    );
    let w = Running::start(v1(&server, V1Auth::None), None, Duration::from_secs(5));
    w.send(Batch {
        lines,
        line_count: 7,
        window: None,
    });
    let stats = w.finish();
    assert_eq!(count(&server), 6);
    assert_eq!(stats.lines_dropped.load(Relaxed), 1);
}

/// (lines, answer status) of each request a test server saw.
type Seen = Arc<std::sync::Mutex<Vec<(usize, u16)>>>;

/// A loopback server answering each write with `answer(line protocol)`, recording what
/// it saw.
fn scripted_influx(
    answer: impl Fn(&str) -> genesys2influx::loopback_http::Response + Send + Sync + 'static,
) -> (genesys2influx::loopback_http::Server, Seen) {
    use genesys2influx::loopback_http::{Options, Reply, Server, Stop};
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let options = Options {
        name: "scripted-influx",
        max_connections: 16,
        max_body_bytes: 64 << 20,
        keep_alive: true,
    };
    let server = Server::start(options, Stop::default(), move |request| {
        let mut text = String::new();
        let _ = flate2::read::GzDecoder::new(&request.body[..]).read_to_string(&mut text);
        let response = answer(&text);
        log.lock()
            .unwrap()
            .push((text.lines().count(), response.status));
        Reply::Send(response)
    })
    .expect("scripted server starts");
    (server, seen)
}

/// Every body holding a `q=bad` line is answered 400 with a control character in
/// `X-Influxdb-Error` (ureq: `http parse fail: invalid header value`), the rest 204.
fn garbling(text: &str) -> genesys2influx::loopback_http::Response {
    use genesys2influx::loopback_http::Response;
    if text.contains("q=bad") {
        Response::new(400, "application/json", "")
            .with_header("X-Influxdb-Error", "unable to parse 'm,q=bad\u{1} v=1i'")
    } else {
        Response::new(204, "text/plain", "")
    }
}

/// An answer that arrived but cannot be read is not "unreachable", and cannot block the
/// queue for ever: after three tries the body is split like a refused one, the one line
/// it comes down to is dropped and counted, and everything else, later batches included,
/// is delivered.
#[test]
fn an_unreadable_answer_costs_one_line_not_the_queue() {
    let (server, seen) = scripted_influx(garbling);
    let target = InfluxTarget::V1 {
        url: server.url(),
        database: DB.into(),
        retention_policy: None,
        auth: V1Auth::None,
    };
    let writer = Running::start(target, None, Duration::from_secs(5));
    let mut first = batch(0, 6);
    first.lines.push_str("m,q=bad v=1i 1600000099\n");
    first.lines.push_str(&batch(6, 5).lines);
    first.line_count = 12;
    writer.send(first);
    writer.send(batch(20, 4));
    let stats = writer.stats.clone();
    wait_for("every good line delivered", Duration::from_secs(30), || {
        stats.points_written.load(Relaxed) >= 15
    });
    let stats = writer.finish();
    assert_eq!(stats.points_written.load(Relaxed), 15);
    assert_eq!(stats.lines_dropped.load(Relaxed), 1);
    let seen = seen.lock().unwrap().clone();
    let garbled: Vec<usize> = seen.iter().filter(|r| r.1 == 400).map(|r| r.0).collect();
    // Three tries of the whole body (the two batches joined or not), then one garbled
    // half per level down to the line.
    assert!(
        garbled[0] >= 12 && garbled[..3] == [garbled[0]; 3],
        "{seen:?}"
    );
    assert_eq!(garbled.last(), Some(&1), "{seen:?}");
    assert!(garbled.len() <= 3 + 4, "{seen:?}");
}

/// InfluxDB 2.x's 422 "partial write … dropped=N": the good lines were stored, so the
/// body is sent once, the dropped lines are counted, and nothing is resent.
#[test]
fn a_v2_partial_write_is_sent_once_and_its_dropped_lines_counted() {
    use genesys2influx::loopback_http::Response;
    let (server, seen) = scripted_influx(|_| {
        Response::new(
            422,
            "application/json",
            r#"{"code":"unprocessable entity","message":"failure writing points to database: partial write: field type conflict: input field \"v\" on measurement \"m\" is type float, already exists as type integer dropped=1"}"#,
        )
    });
    let target = InfluxTarget::V2 {
        url: server.url(),
        org: Some("acme".into()),
        bucket: "genesys".into(),
        token: Secret::new("token"),
    };
    let writer = Running::start(target, None, Duration::from_secs(5));
    writer.send(batch(0, 10));
    let stats = writer.stats.clone();
    wait_for("the body answered", Duration::from_secs(10), || {
        stats.lines_dropped.load(Relaxed) > 0
    });
    // Time enough for any resend to show.
    thread::sleep(Duration::from_secs(2));
    let stats = writer.finish();
    assert_eq!(seen.lock().unwrap().clone(), vec![(10, 422)], "one request");
    assert_eq!(stats.points_written.load(Relaxed), 9);
    assert_eq!(stats.lines_dropped.load(Relaxed), 1);
}
