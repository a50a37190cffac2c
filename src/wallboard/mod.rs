//! The live terminal view of `demo` and `top`: one row per queue, busiest first, as a
//! wallboard shows it, redrawn after every poll.
//!
//! Plain ANSI, no TUI crate: the cursor goes home and the frame is rewritten in place.
//! While the table is up, log records would tear it, so warnings and errors go to the
//! footer line instead of stderr ([`capture_log`], called by the logger) and the rest
//! is dropped. [`Wallboard::finish`] (also on drop) shows the cursor again, leaves the
//! last frame on the screen and gives stderr back to the logger. When stdout is not a
//! terminal each frame is printed as plain lines followed by a blank line.

pub mod state;
pub mod table;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use log::Level;

use crate::genesys::conversation_aggregates::KpiBucket;
use crate::model::PollEvent;
use crate::stats::StatsSnapshot;
use state::Board;

/// Used when `COLUMNS` / `LINES` are unset or unreadable.
const DEFAULT_SIZE: (usize, usize) = (80, 24);
/// Narrower than this and the queue names would vanish; a narrower terminal wraps the
/// lines instead.
const MIN_WIDTH: usize = 40;

const HIDE_CURSOR_AND_CLEAR: &str = "\x1b[?25l\x1b[2J";
const HOME: &str = "\x1b[H";
const CLEAR_TO_LINE_END: &str = "\x1b[K";
const CLEAR_BELOW: &str = "\x1b[J";
const RESET_AND_SHOW_CURSOR: &str = "\x1b[0m\x1b[?25h";

/// True while a wallboard owns the terminal: the logger hands records to it.
static DIVERTING: AtomicBool = AtomicBool::new(false);
/// The latest warning or error logged while the table is up.
static LATEST_WARNING: Mutex<Option<String>> = Mutex::new(None);

/// Called by the logger with each (already redacted) record: true when the wallboard
/// took it and it must not be written to stderr.
pub fn capture_log(level: Level, message: &str) -> bool {
    if !DIVERTING.load(Ordering::Relaxed) {
        return false;
    }
    if level <= Level::Warn {
        let now = crate::time::format_utc_s(std::time::SystemTime::now());
        let time = now.get(11..19).unwrap_or_default();
        *LATEST_WARNING.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{time} {level} {message}"));
    }
    true
}

/// Whether `--output table` is the default: stdout is a terminal.
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// The table on stdout, shared by the thread that feeds it and the one that ends it.
#[derive(Debug)]
pub struct Wallboard {
    title: String,
    /// `Some(true)` when windows go to InfluxDB, `Some(false)` when they are discarded,
    /// `None` when there are no windows (`top`).
    writes: Option<bool>,
    terminal: bool,
    board: Mutex<Board>,
    finished: AtomicBool,
}

impl Wallboard {
    /// Takes over stdout (clears it when it is a terminal) and the log output. `kpis`
    /// adds the columns of today's service level and abandons.
    pub fn start(title: String, writes: Option<bool>, kpis: bool) -> Wallboard {
        let terminal = stdout_is_terminal();
        if terminal {
            print_flushed(HIDE_CURSOR_AND_CLEAR);
            DIVERTING.store(true, Ordering::Relaxed);
        }
        Wallboard {
            title,
            writes,
            terminal,
            board: Mutex::new(Board::new(kpis)),
            finished: AtomicBool::new(false),
        }
    }

    /// Takes a poll event; redraws when the poll is complete or queues were re-polled
    /// early (a change shows at once).
    pub fn observe(&self, event: &PollEvent) {
        self.board().observe(event);
        if matches!(
            event,
            PollEvent::TickDone { .. } | PollEvent::EarlyObservations { .. }
        ) {
            self.draw();
        }
    }

    /// Takes one KPI bucket as the KPI thread parsed it.
    pub fn observe_kpi(&self, bucket: &KpiBucket) {
        self.board().observe_kpi(bucket);
    }

    /// The self-metrics of a closed window of `points` points (or of a poll, for `top`).
    pub fn status(&self, snapshot: &StatsSnapshot, points: u64) {
        self.board()
            .set_status(snapshot, self.writes.map(|writes| (points, writes)));
    }

    /// Draws the last frame (with the self-metrics of the window closed at shutdown)
    /// and gives the terminal and the log output back; the frame stays on screen. A
    /// warning shown only in the footer is repeated on stderr so that it outlives it.
    pub fn finish(&self) {
        if !self.terminal || self.finished.load(Ordering::Relaxed) {
            return;
        }
        self.draw();
        if self.finished.swap(true, Ordering::Relaxed) {
            return;
        }
        print_flushed(&format!("{RESET_AND_SHOW_CURSOR}\n"));
        DIVERTING.store(false, Ordering::Relaxed);
        if let Some(warning) = LATEST_WARNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            eprintln!("last warning: {warning}");
        }
    }

    fn draw(&self) {
        if self.finished.load(Ordering::Relaxed) {
            return;
        }
        let footer = LATEST_WARNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let frame = self.board().frame(self.title.clone(), footer);
        let (width, height) = terminal_size(|name| std::env::var(name).ok());
        let lines = table::render(&frame, width, height);
        let text = if self.terminal {
            let body: String = lines
                .iter()
                .map(|line| format!("{line}{CLEAR_TO_LINE_END}\n"))
                .collect();
            format!("{HOME}{body}{CLEAR_BELOW}")
        } else {
            format!("{}\n\n", lines.join("\n"))
        };
        print_flushed(&text);
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Wallboard {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Width and height from `COLUMNS` and `LINES` (shells set them for their children
/// when exported), else 80×24; never narrower than [`MIN_WIDTH`].
fn terminal_size(var: impl Fn(&str) -> Option<String>) -> (usize, usize) {
    let read = |name, default| {
        var(name)
            .and_then(|v| v.trim().parse::<usize>().ok())
            .filter(|n| *n > 0)
            .unwrap_or(default)
    };
    (
        read("COLUMNS", DEFAULT_SIZE.0).max(MIN_WIDTH),
        read("LINES", DEFAULT_SIZE.1),
    )
}

/// Writes to stdout; a closed stdout (the reader went away) is not worth a panic.
fn print_flushed(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn while_diverting_warnings_go_to_the_footer_and_the_rest_is_dropped() {
        assert!(!capture_log(Level::Warn, "to stderr"));
        DIVERTING.store(true, Ordering::Relaxed);
        let info = capture_log(Level::Info, "dropped");
        let warn = capture_log(Level::Warn, "queue list refresh failed");
        DIVERTING.store(false, Ordering::Relaxed);
        assert!(info && warn);
        let latest = LATEST_WARNING.lock().unwrap().take().unwrap();
        assert!(
            latest.ends_with(" WARN queue list refresh failed"),
            "{latest}"
        );
        assert_eq!(
            latest.len(),
            "12:34:56 WARN queue list refresh failed".len()
        );
    }

    #[test]
    fn the_size_comes_from_columns_and_lines_or_defaults() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(terminal_size(env(&[])), (80, 24));
        assert_eq!(
            terminal_size(env(&[("COLUMNS", "132"), ("LINES", "50")])),
            (132, 50)
        );
        assert_eq!(
            terminal_size(env(&[("COLUMNS", "10"), ("LINES", "x")])),
            (40, 24)
        );
        assert_eq!(terminal_size(env(&[("COLUMNS", "0")])), (80, 24));
    }
}
