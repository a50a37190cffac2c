//! The wallboard table as plain lines: pure, so the exact layout is unit-tested.
//!
//! Everything that reaches the terminal passes through [`clean`]: queue names and log
//! messages come from outside (Genesys, the network), and a name holding ESC must not be
//! able to move the cursor or recolour the screen. Widths are counted in terminal cells
//! ([`cells`]: CJK and emoji take two), never fewer than the `char`s; a line never takes
//! more than the terminal's width, long texts end in `…`.

/// One queue as the wallboard shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    /// Callers waiting, all media types.
    pub waiting: f64,
    /// Longest current wait in seconds, any media type.
    pub longest_wait_s: f64,
    pub idle: f64,
    pub interacting: f64,
    pub on_queue: f64,
    /// Today's service level in percent, all media types; NaN when nothing was offered.
    pub service_level_pct: f64,
    /// Abandoned today, all media types.
    pub abandoned: f64,
}

/// What one frame shows: a title, the queues (already in order), the self-metrics
/// line and the latest warning.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub title: String,
    pub rows: Vec<Row>,
    pub status: String,
    pub footer: Option<String>,
    /// Whether the KPI columns (service level, abandons) are shown.
    pub kpis: bool,
}

/// Numeric columns: heading and width (a leading space included); the last two only
/// when KPIs are on.
const COLUMNS: [(&str, usize); 7] = [
    ("WAITING", 8),
    ("LONGEST", 8),
    ("IDLE", 6),
    ("BUSY", 6),
    ("ON Q", 6),
    ("SL %", 6),
    ("ABAND", 6),
];
const KPI_COLUMNS: usize = 2;
/// The KPI columns are left out when the queue names would get fewer cells than this.
const MIN_NAME_WIDTH: usize = 12;
/// Lines around the queue rows: title, heading, status, footer.
const FRAME_LINES: usize = 4;

/// The frame as lines of at most `width` chars, at most `height` lines (never fewer than
/// the title, heading, one row, status and footer): queues that do not fit are summed up
/// in a last `… N more queues` row.
pub fn render(frame: &Frame, width: usize, height: usize) -> Vec<String> {
    let columns = columns(frame.kpis, width);
    let name_width = width.saturating_sub(columns_width(columns));
    let mut lines = vec![fit(&frame.title, width), heading(columns, name_width)];
    let room = height.saturating_sub(FRAME_LINES).max(1);
    let shown = if frame.rows.len() > room {
        room - 1
    } else {
        frame.rows.len()
    };
    lines.extend(
        frame.rows[..shown]
            .iter()
            .map(|row| row_line(row, columns, name_width)),
    );
    if shown < frame.rows.len() {
        lines.push(format!("… {} more queues", frame.rows.len() - shown));
    }
    lines.push(frame.status.clone());
    lines.push(frame.footer.clone().unwrap_or_default());
    lines.iter().map(|line| fit(line, width)).collect()
}

/// The numeric columns shown: the KPI ones only when asked for and when they leave the
/// names [`MIN_NAME_WIDTH`].
fn columns(kpis: bool, width: usize) -> &'static [(&'static str, usize)] {
    if kpis && width >= columns_width(&COLUMNS) + MIN_NAME_WIDTH {
        &COLUMNS
    } else {
        &COLUMNS[..COLUMNS.len() - KPI_COLUMNS]
    }
}

fn columns_width(columns: &[(&str, usize)]) -> usize {
    columns.iter().map(|(_, w)| w).sum()
}

fn heading(columns: &[(&str, usize)], name_width: usize) -> String {
    let mut line = pad(&fit("QUEUE", name_width), name_width);
    for (title, width) in columns {
        line.push_str(&format!("{title:>width$}"));
    }
    line
}

/// The row in `columns` (a prefix of [`COLUMNS`]).
fn row_line(row: &Row, columns: &[(&str, usize)], name_width: usize) -> String {
    let values = [
        row.waiting,
        row.longest_wait_s,
        row.idle,
        row.interacting,
        row.on_queue,
        row.service_level_pct,
        row.abandoned,
    ];
    let mut line = pad(&fit(&row.name, name_width), name_width);
    for (i, ((_, width), value)) in columns.iter().zip(values).enumerate() {
        let cell = if i == 1 {
            wait_time(value)
        } else {
            count(value, width - 1)
        };
        line.push_str(&format!("{cell:>width$}"));
    }
    line
}

/// `text` cleaned of control characters and cut to `width` cells, ending in `…` when cut.
pub fn fit(text: &str, width: usize) -> String {
    let cleaned = clean(text);
    if cells(&cleaned) <= width {
        return cleaned;
    }
    let mut cut = String::new();
    let mut used = 0;
    for c in cleaned.chars() {
        used += char_cells(c);
        if used >= width {
            break;
        }
        cut.push(c);
    }
    if width > 0 {
        cut.push('…');
    }
    cut
}

fn pad(text: &str, width: usize) -> String {
    let missing = width.saturating_sub(cells(text));
    format!("{text}{}", " ".repeat(missing))
}

/// Terminal cells `text` takes, erring on the wide side: 2 for East Asian wide
/// characters and emoji, 1 for anything else (combining marks included, which take
/// none), so a line may come out narrower than counted but never wider.
pub fn cells(text: &str) -> usize {
    text.chars().map(char_cells).sum()
}

fn char_cells(c: char) -> usize {
    match u32::from(c) {
        0x1100..=0x115F
        | 0x2E80..=0x303E
        | 0x3041..=0x33FF
        | 0x3400..=0x4DBF
        | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF
        | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF
        | 0xFE30..=0xFE4F
        | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F
        | 0x1F680..=0x1F6FF
        | 0x1F900..=0x1F9FF
        | 0x20000..=0x3FFFD => 2,
        _ => 1,
    }
}

/// Replaces what a terminal would act on rather than print (C0/C1 controls such as ESC,
/// line and paragraph separators, bidirectional overrides) with `?`.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if is_unprintable(c) { '?' } else { c })
        .collect()
}

fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// A count in at most `max_chars`: `1234`, or `12k`, `3M`, … when it would not fit.
/// Anything not a finite non-negative number shows as `-`.
fn count(value: f64, max_chars: usize) -> String {
    if !value.is_finite() || value < 0.0 {
        return "-".into();
    }
    let mut n = value.round().min(u64::MAX as f64) as u64;
    let text = n.to_string();
    if text.len() <= max_chars {
        return text;
    }
    for suffix in ["k", "M", "G", "T", "P", "E"] {
        n /= 1000;
        let text = format!("{n}{suffix}");
        if text.len() <= max_chars {
            return text;
        }
    }
    "+".into()
}

/// A wait as `m:ss` under an hour, `5h07m` under 100 hours, else `>99h`.
fn wait_time(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "-".into();
    }
    let s = seconds.round().min(u64::MAX as f64) as u64;
    match s {
        0..=3599 => format!("{}:{:02}", s / 60, s % 60),
        3600..=359_999 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => ">99h".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row(name: &str, waiting: f64, longest: f64) -> Row {
        Row {
            name: name.into(),
            waiting,
            longest_wait_s: longest,
            idle: 3.0,
            interacting: 12.0,
            on_queue: 15.0,
            service_level_pct: 87.5,
            abandoned: 4.0,
        }
    }

    fn frame() -> Frame {
        Frame {
            title: "genesys2influx demo: 3 queues of simulated Genesys Cloud, poll 1s".into(),
            rows: vec![
                row("Sales", 7.0, 95.0),
                row(
                    "Customer Service – Premium Accounts and Very Long Names Department",
                    2.0,
                    4000.0,
                ),
                row("Support\u{1b}[2J", 0.0, 0.0),
            ],
            status: "polls 5 · API requests 10 · errors 0 · points 60 · written 0".into(),
            footer: Some("20:31:02 WARN queue list: 1 queue renamed".into()),
            kpis: false,
        }
    }

    #[test]
    fn a_fixed_frame_renders_exactly_at_80_columns() {
        let lines = render(&frame(), 80, 24);
        assert_eq!(
            lines,
            [
                "genesys2influx demo: 3 queues of simulated Genesys Cloud, poll 1s",
                "QUEUE                                          WAITING LONGEST  IDLE  BUSY  ON Q",
                "Sales                                                7    1:35     3    12    15",
                "Customer Service – Premium Accounts and Very …       2   1h06m     3    12    15",
                "Support?[2J                                          0    0:00     3    12    15",
                "polls 5 · API requests 10 · errors 0 · points 60 · written 0",
                "20:31:02 WARN queue list: 1 queue renamed",
            ]
        );
    }

    #[test]
    fn with_kpis_on_service_level_and_abandons_are_shown() {
        let mut frame = frame();
        frame.kpis = true;
        frame.rows[1].service_level_pct = f64::NAN;
        let lines = render(&frame, 80, 24);
        assert_eq!(
            lines[1..5],
            [
                "QUEUE                              WAITING LONGEST  IDLE  BUSY  ON Q  SL % ABAND",
                "Sales                                    7    1:35     3    12    15    88     4",
                "Customer Service – Premium Accoun…       2   1h06m     3    12    15     -     4",
                "Support?[2J                              0    0:00     3    12    15    88     4",
            ]
        );
        let narrow = render(&frame, 50, 24);
        assert_eq!(
            narrow[1],
            "QUEUE            WAITING LONGEST  IDLE  BUSY  ON Q"
        );
    }

    #[test]
    fn rows_that_do_not_fit_the_height_are_counted() {
        let lines = render(&frame(), 80, 6);
        assert_eq!(lines.len(), 6);
        assert!(lines[2].starts_with("Sales "));
        assert_eq!(lines[3], "… 2 more queues");
    }

    #[test]
    fn numbers_that_do_not_fit_are_shortened() {
        assert_eq!(count(1234.0, 5), "1234");
        assert_eq!(count(123_456.0, 5), "123k");
        assert_eq!(count(u64::MAX as f64, 5), "18E");
        assert_eq!(count(f64::NAN, 5), "-");
        assert_eq!(count(-1.0, 5), "-");
        assert_eq!(wait_time(59.4), "0:59");
        assert_eq!(wait_time(3600.0), "1h00m");
        assert_eq!(wait_time(1e12), ">99h");
        assert_eq!(wait_time(f64::INFINITY), "-");
    }

    fn any_number() -> impl Strategy<Value = f64> {
        prop_oneof![
            0.0..1e4f64,
            any::<f64>(),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(u64::MAX as f64)
        ]
    }

    fn any_row() -> impl Strategy<Value = Row> {
        (
            prop_oneof![
                ".*",
                "[\\x00-\\x1f\\x7f-\\x9f\u{1b}\u{202e}a-z]{0,30}",
                "[一-龥😀-🙏]{0,60}"
            ],
            any_number(),
            any_number(),
            any_number(),
            any_number(),
            any_number(),
            (any_number(), any_number()),
        )
            .prop_map(
                |(name, waiting, longest_wait_s, idle, interacting, on_queue, kpi)| Row {
                    name,
                    waiting,
                    longest_wait_s,
                    idle,
                    interacting,
                    on_queue,
                    service_level_pct: kpi.0,
                    abandoned: kpi.1,
                },
            )
    }

    /// The first `width` cells of `line`.
    fn name_cell(line: &str, width: usize) -> String {
        let mut used = 0;
        line.chars()
            .take_while(|c| {
                used += char_cells(*c);
                used <= width
            })
            .collect()
    }

    #[test]
    fn wide_characters_take_two_cells() {
        assert_eq!(cells("🎧 VIP Line 📞"), 14);
        assert_eq!(fit("東京サポート窓口", 9), "東京サポ…");
        assert_eq!(fit("東京サポート窓口", 10), "東京サポ…");
        assert_eq!(pad("📞", 4), "📞  ");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever the names and numbers: no line wider than the terminal, nothing a
        /// terminal would act on, every queue shown or counted, cut names end in `…`.
        #[test]
        fn any_frame_fits_and_is_inert(
            rows in proptest::collection::vec(any_row(), 0..40),
            title in ".*",
            footer in proptest::option::of(".*"),
            width in 40usize..=200,
            height in 5usize..60,
            kpis in any::<bool>(),
        ) {
            let frame = Frame { title, rows, status: "polls 1".into(), footer, kpis };
            let lines = render(&frame, width, height);
            prop_assert!(lines.len() <= height.max(FRAME_LINES + 1));
            for line in &lines {
                prop_assert!(cells(line) <= width, "{line:?} wider than {width}");
                prop_assert!(line.chars().count() <= cells(line));
                prop_assert!(!line.chars().any(is_unprintable), "{line:?} holds a control character");
            }
            let name_width = width - columns_width(columns(kpis, width));
            let body = &lines[2..lines.len() - 2];
            let more = body.last().and_then(|l| l.strip_prefix("… ")).and_then(|l| l.strip_suffix(" more queues"));
            let listed = body.len() - usize::from(more.is_some());
            let counted: usize = more.map_or(0, |n| n.parse().unwrap_or(0));
            prop_assert_eq!(listed + counted, frame.rows.len());
            for (line, row) in body[..listed].iter().zip(&frame.rows) {
                let name = name_cell(line, name_width);
                let cleaned = clean(&row.name);
                if cells(&cleaned) > name_width {
                    prop_assert!(name.trim_end().ends_with('…'), "{name:?} cut without …");
                } else {
                    prop_assert_eq!(name.trim_end(), cleaned.trim_end());
                }
            }
        }
    }
}
