//! The terminal view: `demo` in a pseudo-terminal draws the wallboard table (and gives
//! the terminal back), piped it prints line protocol, and `top` shows the same table
//! for a (simulated) real org until SIGINT.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use genesys2influx::sim::{Sim, SimOptions, ODD_NAMES};

use crate::util::process::{command_line, run_to_end, Service};
use crate::util::{sim_env, TempDir};

const WIDTH: usize = 80;

/// The binary under `script(1)`, whose pseudo-terminal makes its stdout (and stderr) a
/// terminal of [`WIDTH`] columns; everything the terminal receives is collected.
struct Terminal {
    script: Child,
    output: Arc<Mutex<Vec<u8>>>,
    /// Where the shell that `exec`s the binary wrote its pid, for signals.
    pid_file: TempDir,
}

impl Terminal {
    fn start(args: &str, env: &[(&str, String)]) -> Terminal {
        Terminal::start_after("", args, env)
    }

    /// Like [`Terminal::start`], with the shell commands `setup` run first in the
    /// pseudo-terminal (`stty cols 150 rows 40;` sets its size).
    fn start_after(setup: &str, args: &str, env: &[(&str, String)]) -> Terminal {
        let pid_file = TempDir::new("terminal-view");
        let command = format!(
            "{setup} echo $$ > '{}'; exec '{}' {args}",
            pid_file.join("pid").display(),
            command_line().join("' '")
        );
        let mut script = Command::new("script");
        script
            .args(["-qec", &command, "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("RUST_LOG", "info")
            .env("COLUMNS", WIDTH.to_string())
            .env("LINES", "40")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for (key, value) in env {
            script.env(key, value);
        }
        let mut script = script.spawn().expect("script(1) from util-linux runs");
        let mut stdout = script.stdout.take().expect("stdout piped");
        let output = Arc::new(Mutex::new(Vec::new()));
        let sink = output.clone();
        thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stdout.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Terminal {
            script,
            output,
            pid_file,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) until the terminal shows `needle`.
    fn wait_for(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.text().contains(needle) {
            assert!(Instant::now() < deadline, "no {needle:?} within {limit:?}");
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn interrupt(&self) {
        let pid = std::fs::read_to_string(self.pid_file.join("pid")).expect("pid file");
        let status = Command::new("kill")
            .args(["-INT", pid.trim()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The exit code (script's -e passes the binary's on) and the whole output.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.script.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.script.kill();
                panic!("the command under script did not end within {limit:?}");
            }
            thread::sleep(Duration::from_millis(50));
        };
        // Let the reader thread drain the pipe.
        thread::sleep(Duration::from_millis(100));
        (status.code(), self.text())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.script.kill();
        let _ = self.script.wait();
    }
}

/// The simulated org `top` polls, and the variables that point it there.
fn sim_org(queues: usize) -> (Sim, Vec<(&'static str, String)>) {
    let sim = Sim::start(SimOptions {
        queue_count: queues,
        ..SimOptions::default()
    })
    .expect("simulated Genesys starts");
    let mut env = sim_env(&sim);
    env.push(("POLL_INTERVAL", "1s".to_string()));
    (sim, env)
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
    let (code, raw) =
        Terminal::start("demo --seconds 4 --queues 12", &[]).wait(Duration::from_secs(40));
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
    let (_sim, env) = sim_org(12);
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

/// Ctrl-C in a terminal: exit 0, the last frame stays, the cursor is shown again.
#[test]
fn top_in_a_terminal_gives_the_terminal_back_on_ctrl_c() {
    let (_sim, env) = sim_org(3);
    let top = Terminal::start("top", &env);
    top.wait_for("polls ", Duration::from_secs(20));
    top.interrupt();
    let (code, raw) = top.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{raw}");
    assert!(raw.trim_end().ends_with("\u{1b}[0m\u{1b}[?25h"), "{raw:?}");
    let lines = visible_lines(&raw);
    assert!(lines.iter().any(|l| l.starts_with("QUEUE ")), "{lines:#?}");
}

/// The lines of the table from its title on, as wide as they are drawn.
fn table_widths(lines: &[String], title: &str) -> Vec<usize> {
    lines
        .iter()
        .skip_while(|l| !l.starts_with(title))
        .filter(|l| l.starts_with("QUEUE "))
        .map(|l| l.chars().count())
        .collect()
}

/// Shells do not export `COLUMNS`: the width comes from the terminal itself (150
/// columns here, although the environment says 80), not the 80-column default.
#[test]
fn demo_takes_its_width_from_the_terminal() {
    let terminal = Terminal::start_after(
        "stty cols 150 rows 40;",
        "demo --seconds 3 --queues 12",
        &[],
    );
    let (code, raw) = terminal.wait(Duration::from_secs(40));
    assert_eq!(code, Some(0), "{raw}");
    let lines = visible_lines(&raw);
    let widths = table_widths(&lines, "genesys2influx demo:");
    assert!(!widths.is_empty(), "{lines:#?}");
    assert!(
        widths.iter().all(|w| *w > WIDTH && *w <= 150),
        "headings {widths:?} wide, not using the terminal's 150 columns: {lines:#?}"
    );
}

/// A resize (SIGWINCH) redraws the table at once at the new size: with an hour between
/// polls, no poll draws a frame, so every frame seen came from a resize.
#[test]
fn top_redraws_at_once_when_the_terminal_is_resized() {
    let (_sim, mut env) = sim_org(3);
    env.retain(|(key, _)| *key != "POLL_INTERVAL");
    env.push(("POLL_INTERVAL", "1h".to_string()));
    env.push(("WINDOW", "1h".to_string()));
    env.push(("QUEUE_REFRESH", "1h".to_string()));
    let top = Terminal::start_after(
        "stty cols 150 rows 40; (for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1; stty cols $((100 + i)) rows 30 < /dev/tty; done) &",
        "top",
        &env,
    );
    top.wait_for("QUEUE ", Duration::from_secs(15));
    top.interrupt();
    let (code, raw) = top.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{raw}");
    let lines = visible_lines(&raw);
    let widths = table_widths(&lines, "genesys2influx top:");
    assert!(
        !widths.is_empty() && widths.iter().all(|w| (101..=110).contains(w)),
        "headings {widths:?} wide, not the resized terminal's 101 to 110 columns: {lines:#?}"
    );
}

fn stderr_has_error(stderr: &str) -> bool {
    stderr
        .lines()
        .any(|l| l.contains(" ERROR ") || l.contains(" WARN "))
}
