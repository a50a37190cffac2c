//! The terminal view: `demo` in a pseudo-terminal draws the wallboard table (and gives
//! the terminal back), piped it prints line protocol, and `top` shows the same table
//! for a (simulated) real org until SIGINT.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use genesys2influx::genesys::sim::{Sim, SimOptions, ODD_NAMES};

use crate::util::process::{binary, run_to_end, Service};

const WIDTH: usize = 80;

/// Runs `args` under `script(1)`, whose pseudo-terminal makes stdout (and stderr) a
/// terminal: (exit code, everything the terminal received).
fn in_terminal(args: &str, limit: Duration) -> (Option<i32>, String) {
    let command = format!("'{}' {args}", binary());
    let mut child = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("RUST_LOG", "info")
        .env("COLUMNS", WIDTH.to_string())
        .env("LINES", "40")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("script(1) from util-linux runs");
    let stdout = child.stdout.take().expect("stdout piped");
    let reader = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = std::io::Read::read_to_end(&mut { stdout }, &mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command under script did not end within {limit:?}");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = reader.join().expect("reader thread");
    (status.code(), String::from_utf8_lossy(&text).into_owned())
}

/// The text as the terminal shows it, line by line: CSI sequences removed.
fn visible_lines(raw: &str) -> Vec<String> {
    let mut text = String::new();
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            text.push(c);
        }
    }
    text.split('\n')
        .map(|line| line.trim_end_matches('\r').to_string())
        .collect()
}

#[test]
fn demo_in_a_terminal_draws_the_table_and_gives_the_terminal_back() {
    let (code, raw) = in_terminal("demo --seconds 4 --queues 12", Duration::from_secs(40));
    assert_eq!(code, Some(0), "{raw}");
    assert!(
        raw.trim_end().ends_with("\u{1b}[?25h"),
        "the cursor is shown again at the end:\n{raw:?}"
    );
    let lines = visible_lines(&raw);
    let heading =
        "QUEUE                              WAITING LONGEST  IDLE  BUSY  ON Q  SL % ABAND";
    assert!(lines.iter().any(|l| l == heading), "{lines:#?}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("genesys2influx demo: 12 simulated queues, poll 1s")));
    let long_name: String = ODD_NAMES[5].chars().take(33).chain(['…']).collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&long_name)),
        "the long queue name is cut with …: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("polls ")),
        "self-metrics line: {lines:#?}"
    );
    for line in lines
        .iter()
        .skip_while(|l| !l.contains("genesys2influx demo:"))
    {
        assert!(
            line.chars().count() <= WIDTH,
            "{line:?} is wider than {WIDTH}"
        );
        assert!(
            !line.contains("genesys_queue"),
            "line protocol in the table: {line}"
        );
    }
    assert!(
        !raw.contains("KPI_BUCKET"),
        "a warning about demo's own defaults: {raw}"
    );
    assert!(
        !raw.contains("--seconds elapsed"),
        "log lines written over the table: {raw}"
    );
}

#[test]
fn demo_piped_prints_line_protocol_and_warns_only_about_what_the_user_set() {
    let (code, stdout, stderr) = run_to_end(
        &["demo", "--seconds", "2", "--queues", "3"],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("genesys_queue,")),
        "{stdout}"
    );
    assert!(
        !stdout.contains('\u{1b}'),
        "escape sequences in piped output"
    );
    assert!(
        !stderr.contains("WARN"),
        "demo warns about its own settings:\n{stderr}"
    );

    let (code, _, stderr) = run_to_end(
        &["demo", "--seconds", "1", "--queues", "1"],
        &[("KPI_BUCKET", "1m".to_string())],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("KPI_BUCKET 1m is below 15m"), "{stderr}");
}

#[test]
fn top_shows_the_table_of_a_real_org_and_exits_0_on_sigint() {
    let sim = Sim::start(SimOptions {
        queue_count: 12,
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts");
    let options = SimOptions::default();
    let env = [
        ("GENESYS_CLIENT_ID", options.client_id.clone()),
        ("GENESYS_CLIENT_SECRET", options.client_secret.clone()),
        ("GENESYS_API_URL", sim.base_url()),
        ("GENESYS_LOGIN_URL", sim.base_url()),
        ("POLL_INTERVAL", "1s".to_string()),
    ];
    let mut top = Service::start(&["top"], &env);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !top.stdout().contains("\n\n") {
        assert!(
            Instant::now() < deadline,
            "no table within 20 s; stderr:\n{}",
            top.stderr()
        );
        thread::sleep(Duration::from_millis(100));
    }
    top.signal("INT");
    let status = top.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "stderr:\n{}", top.stderr());
    let stdout = top.stdout();
    let frame: Vec<&str> = stdout
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .lines()
        .collect();
    assert!(
        frame[0].starts_with("genesys2influx top: 12 queues of custom"),
        "{frame:#?}"
    );
    assert!(frame[1].starts_with("QUEUE "), "{frame:#?}");
    // The empty footer line is part of the blank line between frames.
    assert_eq!(frame.len(), 2 + 12 + 1, "title, heading, 12 queues, status");
    assert!(frame[14].starts_with("polls 1 · requests "), "{frame:#?}");
    assert!(
        !stdout.contains('\u{1b}'),
        "escape sequences in piped output"
    );
    assert!(!stderr_has_error(&top.stderr()), "{}", top.stderr());
}

fn stderr_has_error(stderr: &str) -> bool {
    stderr
        .lines()
        .any(|l| l.contains(" ERROR ") || l.contains(" WARN "))
}
