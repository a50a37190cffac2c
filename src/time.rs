//! Wall-clock time in one place: the epoch-millisecond clock the threads read, and the
//! UTC calendar arithmetic behind every timestamp this program writes or reads (log
//! lines, the ISO-8601 intervals of the conversation-aggregates API, HTTP dates of the
//! simulator).
//!
//! Everything else takes time as a value (`now_ms: u64`), so windows, plans and retries
//! are tested without a clock. The calendar is H. Hinnant's `days_from_civil` /
//! `civil_from_days` (proleptic Gregorian): std has no calendar, and these few functions
//! do not justify a date crate.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const DAY_S: u64 = 86_400;

/// Milliseconds since the Unix epoch; 0 for a clock set before 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

/// Both clocks read at one moment: the wall clock, which ticks and timestamps follow and
/// which may be stepped (NTP, `date -s`), and the monotonic clock, which waits follow and
/// which never jumps. Comparing two readings tells a step from the passing of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    pub wall_ms: u64,
    pub mono: Instant,
}

impl Clocks {
    pub fn now() -> Clocks {
        Clocks {
            wall_ms: now_ms(),
            mono: Instant::now(),
        }
    }

    /// The monotonic moment at which the wall clock will show `wall_ms`, if it is not
    /// stepped meanwhile (a time already past gives a past moment, or this reading's).
    pub fn instant_of(&self, wall_ms: u64) -> Instant {
        if wall_ms >= self.wall_ms {
            self.mono + Duration::from_millis(wall_ms - self.wall_ms)
        } else {
            self.mono
                .checked_sub(Duration::from_millis(self.wall_ms - wall_ms))
                .unwrap_or(self.mono)
        }
    }
}

/// A duration in whole milliseconds, saturating (a duration beyond `u64` ms is ~585 million years).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Epoch ms → `2025-06-02T14:15:00.000Z` (the form Genesys intervals use).
pub fn format_utc_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (year, month, day) = date_of(secs);
    let rem = secs % DAY_S;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// `YYYY-MM-DDTHH:MM:SSZ`, whole seconds (the form of log lines). Times before 1970
/// print as the epoch.
pub fn format_utc_s(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (year, month, day) = date_of(secs);
    let rem = secs % DAY_S;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` (RFC 9110's IMF-fixdate, for `Date` headers).
pub fn format_http_date(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    let secs = ms / 1000;
    let (year, month, day) = date_of(secs);
    let rem = secs % DAY_S;
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(secs / DAY_S % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// An HTTP date (RFC 9110, section 5.6.7: `Date`, `Retry-After`) → epoch ms. Accepts the
/// IMF-fixdate `Sun, 06 Nov 1994 08:49:37 GMT` and, as recipients must, the obsolete
/// RFC 850 `Sunday, 06-Nov-94 08:49:37 GMT` and asctime `Sun Nov  6 08:49:37 1994`
/// forms. The weekday is not checked; a two-digit year is 19xx from 70 on, else 20xx.
/// `None` for anything else, or a time before 1970.
pub fn parse_http_date(text: &str) -> Option<u64> {
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    let (year, month, day, clock) = match words.as_slice() {
        [weekday, day, month, year, clock, "GMT"] if weekday.ends_with(',') => (
            parse_digits(year, 4)?,
            *month,
            parse_digits(day, 2)?,
            *clock,
        ),
        [weekday, date, clock, "GMT"] if weekday.ends_with(',') => {
            let mut parts = date.split('-');
            let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            let year = parse_digits(year, 2)?;
            let year = if year >= 70 { 1900 + year } else { 2000 + year };
            (year, month, parse_digits(day, 2)?, *clock)
        }
        [_weekday, month, day, clock, year] => {
            let day = if day.len() == 1 {
                parse_digits(day, 1)?
            } else {
                parse_digits(day, 2)?
            };
            (parse_digits(year, 4)?, *month, day, *clock)
        }
        _ => return None,
    };
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let mut parts = clock.split(':');
    let hour = parse_digits(parts.next()?, 2)?;
    let minute = parse_digits(parts.next()?, 2)?;
    let second = parse_digits(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60
    {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs).ok()?.checked_mul(1000)
}

/// `2025-06-02T14:15:00.000Z` (fraction optional, `Z` or `±HH:MM`) → epoch ms. `None`
/// for anything else, or a time before 1970.
pub fn parse_utc(text: &str) -> Option<u64> {
    let (date, time) = text.trim().split_once('T')?;
    let mut parts = date.split('-');
    let year: i64 = parse_digits(parts.next()?, 4)?;
    let month: i64 = parse_digits(parts.next()?, 2)?;
    let day: i64 = parse_digits(parts.next()?, 2)?;
    if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (clock, offset_s) = split_offset(time)?;
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.split(':');
    let hour: i64 = parse_digits(parts.next()?, 2)?;
    let minute: i64 = parse_digits(parts.next()?, 2)?;
    let second: i64 = parse_digits(parts.next()?, 2)?;
    if parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    if !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let millis: i64 = format!("{fraction:0<3}").get(..3)?.parse().ok()?;
    let secs =
        days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    u64::try_from(secs * 1000 + millis).ok()
}

fn parse_digits(text: &str, width: usize) -> Option<i64> {
    (text.len() == width && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Splits `HH:MM:SS(.fff)` from its `Z` / `±HH:MM` suffix; the offset in seconds.
fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix('Z') {
        return Some((clock, 0));
    }
    // `rfind` returns the index of an ASCII sign: a char boundary.
    let at = time.rfind(['+', '-'])?;
    let (clock, offset) = time.split_at(at);
    let (sign, hh_mm) = match offset.strip_prefix('-') {
        Some(hh_mm) => (-1, hh_mm),
        None => (1, offset.strip_prefix('+')?),
    };
    let (hours, minutes) = hh_mm.split_once(':')?;
    Some((
        clock,
        sign * (parse_digits(hours, 2)? * 3600 + parse_digits(minutes, 2)? * 60),
    ))
}

/// `(year, month, day)` of a second count since the epoch.
fn date_of(secs: u64) -> (i64, u32, u32) {
    civil_from_days(i64::try_from(secs / DAY_S).unwrap_or(i64::MAX / 2))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `(year, month, day)` of a count of days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn seconds_timestamps_across_calendar_edges() {
        assert_eq!(format_utc_s(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc_s(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc_s(at(1_709_251_199)), "2024-02-29T23:59:59Z");
        assert_eq!(format_utc_s(at(1_798_761_599)), "2026-12-31T23:59:59Z");
        assert_eq!(format_utc_s(at(4_102_444_800)), "2100-01-01T00:00:00Z");
        assert_eq!(
            format_utc_s(UNIX_EPOCH - Duration::from_secs(1)),
            "1970-01-01T00:00:00Z"
        );
    }

    /// 2025-06-02T14:15:00Z.
    const T1415: u64 = 1_748_873_700_000;

    #[test]
    fn utc_formatting_and_parsing_round_trip() {
        assert_eq!(format_utc_ms(T1415), "2025-06-02T14:15:00.000Z");
        assert_eq!(format_utc_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc_ms(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(format_utc_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        for ms in [
            0,
            T1415,
            951_782_400_123,
            4_107_542_399_999,
            1_709_164_800_000,
        ] {
            assert_eq!(parse_utc(&format_utc_ms(ms)), Some(ms));
        }
        assert_eq!(parse_utc("2025-06-02T16:15:00.000+02:00"), Some(T1415));
        assert_eq!(parse_utc("2025-06-02T14:15:00Z"), Some(T1415));
        assert_eq!(parse_utc("2025-06-02T14:15:00.5Z"), Some(T1415 + 500));
        for bad in [
            "",
            "2025-06-02",
            "2025-13-02T14:15:00Z",
            "2025-06-02T14:15Z",
            "1969-12-31T23:59:59Z",
            "2025-06-02T14:15:00.x1Z",
            "2025-06-02 14:15:00Z",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_wall_time_maps_to_the_monotonic_moment_it_will_be_shown() {
        let mono = Instant::now() + Duration::from_secs(100);
        let clocks = Clocks {
            wall_ms: 1_000_000,
            mono,
        };
        assert_eq!(
            clocks.instant_of(1_002_500),
            mono + Duration::from_millis(2500)
        );
        assert_eq!(clocks.instant_of(1_000_000), mono);
        assert_eq!(clocks.instant_of(999_000), mono - Duration::from_secs(1));
    }

    #[test]
    fn http_dates() {
        assert_eq!(
            format_http_date(784_111_777_000),
            "Sun, 06 Nov 1994 08:49:37 GMT"
        );
        assert_eq!(format_http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn http_dates_parse_in_all_three_forms_of_rfc_9110() {
        const SUNDAY: Option<u64> = Some(784_111_777_000);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), SUNDAY);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), SUNDAY);
        assert_eq!(parse_http_date("Sun Nov  6 08:49:37 1994"), SUNDAY);
        assert_eq!(parse_http_date(" Sun, 06 Nov 1994 08:49:37 GMT "), SUNDAY);
        assert_eq!(
            parse_http_date("Monday, 07-Dec-26 03:00:00 GMT"),
            Some(1_796_612_400_000)
        );
        for bad in [
            "",
            "20",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun 06 Nov 1994 08:49:37 GMT",
            "Sun, 06-Nov-1994 08:49:37 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sun Nov  6 08:49:37 94",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn formatted_times_parse_back(ms in 0u64..32_503_680_000_000) {
            prop_assert_eq!(parse_utc(&format_utc_ms(ms)), Some(ms));
        }

        #[test]
        fn any_text_parses_or_is_refused(text in "\\PC{0,40}") {
            let _ = parse_utc(&text);
            let _ = parse_http_date(&text);
        }

        /// Text shaped like an HTTP date, digits and names anywhere: never a panic.
        #[test]
        fn http_date_lookalikes_never_panic(
            text in "[A-Za-z]{0,9},? [0-9]{0,3}[ -][A-Z][a-z]{2}[ -][0-9]{0,5} [0-9:]{0,9} (GMT|[0-9]{4})?"
        ) {
            let _ = parse_http_date(&text);
        }

        #[test]
        fn formatted_http_dates_parse_back_to_the_second(ms in 0u64..253_402_300_800_000) {
            prop_assert_eq!(parse_http_date(&format_http_date(ms)), Some(ms / 1000 * 1000));
        }
    }
}
