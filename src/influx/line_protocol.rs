//! InfluxDB line protocol encoding, appended to a caller's `String` without allocating.
//!
//! The escaping follows what a real influxd 1.6 accepts, byte by byte
//! (docs/line-protocol.md#tag-values): only `\ `, `\,` and `\=` exist as escapes,
//! every other character (quotes, inner backslashes, tabs, unicode, emoji) is written raw
//! and comes back unchanged. What line protocol cannot carry at all is replaced by a space,
//! as the contract says: a newline, a carriage return, a backslash at the very end of a
//! name (InfluxDB would read it as escaping the separator that follows), and the last of
//! an odd run of backslashes right before an escaped character (influxd's scanners
//! disagree about it: see [`push_escaped`]).
//!
//! ```
//! use genesys2influx::influx::line_protocol::LineBuilder;
//! let mut out = String::new();
//! let written = LineBuilder::new(&mut out, "genesys_queue")
//!     .tag("queue_name", "Sales, EMEA")
//!     .field_i64("waiting_max", 3)
//!     .field_f64("waiting_mean", 1.5)
//!     .finish(1_600_000_000);
//! assert!(written);
//! assert_eq!(out, "genesys_queue,queue_name=Sales\\,\\ EMEA waiting_max=3i,waiting_mean=1.5 1600000000\n");
//! ```

use std::fmt::Write as _;

#[cfg(test)]
mod influxd_reader;

/// Where the builder is in the line: tags may only come before the first field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Tags,
    Fields,
}

/// Appends one line (`measurement,tags fields timestamp\n`) to `out`.
///
/// Nothing is allocated beyond the growth of `out`. A line that ends up with no field is
/// removed again by [`LineBuilder::finish`], so `out` only ever holds complete lines.
#[derive(Debug)]
pub struct LineBuilder<'a> {
    out: &'a mut String,
    /// Length of `out` before this line, for rolling back a line without fields.
    start: usize,
    section: Section,
    fields: usize,
    /// Byte range in `out` of the previous escaped tag key (debug check of the order).
    last_tag_key: (usize, usize),
}

impl<'a> LineBuilder<'a> {
    /// Starts a line with `measurement` (space, comma and `=` escaped).
    ///
    /// Measurements and field keys are the service's own constants, and influxd 1.6 does
    /// not keep everything in them: it skips a tab or NUL at the start of a line or of the
    /// fields, cuts a measurement at a NUL and unescapes a measurement twice. So they
    /// must not be empty, start with `#` or a tab or NUL, and a measurement holds no
    /// backslash or NUL.
    pub fn new(out: &'a mut String, measurement: &str) -> Self {
        debug_assert!(!measurement.is_empty(), "empty measurement");
        debug_assert!(
            !measurement.starts_with(['#', '\t', '\0']),
            "a line starting with # is a comment; influxd skips a leading tab or NUL"
        );
        debug_assert!(
            !measurement.contains(['\\', '\0']),
            "influxd 1.6 keeps no backslash or NUL in a measurement"
        );
        let start = out.len();
        push_escaped(out, measurement, Name::Tag);
        LineBuilder {
            out,
            start,
            section: Section::Tags,
            fields: 0,
            last_tag_key: (start, start),
        }
    }

    /// Adds a tag. Keys must come sorted (InfluxDB's order); an empty value (or key) leaves
    /// the tag out, since InfluxDB rejects an empty tag value.
    pub fn tag(self, key: &str, value: &str) -> Self {
        debug_assert!(
            self.section == Section::Tags,
            "tag {key:?} added after a field"
        );
        if key.is_empty() || value.is_empty() {
            return self;
        }
        self.out.push(',');
        let key_start = self.out.len();
        push_escaped(self.out, key, Name::Tag);
        let key_end = self.out.len();
        debug_assert!(
            self.last_tag_key.0 == self.last_tag_key.1
                || self.out.get(self.last_tag_key.0..self.last_tag_key.1)
                    < self.out.get(key_start..key_end),
            "tag keys not sorted: {:?} after {:?}",
            self.out.get(key_start..key_end),
            self.out.get(self.last_tag_key.0..self.last_tag_key.1)
        );
        self.out.push('=');
        push_escaped(self.out, value, Name::Tag);
        LineBuilder {
            last_tag_key: (key_start, key_end),
            ..self
        }
    }

    /// Adds an integer field: `key=123i`.
    pub fn field_i64<K: FieldName + ?Sized>(mut self, key: &K, value: i64) -> Self {
        self.field_key(key);
        push_i64(self.out, value);
        self.out.push('i');
        self
    }

    /// Adds a float field in its shortest round-trip form. A whole number is written
    /// without a decimal point (`1`), which InfluxDB stores as a float
    /// (docs/line-protocol.md#field-types, case N07); very large or small values may use
    /// an exponent (`1e-7`, case N08).
    /// NaN and infinities cannot be written (N11-N13): the field is left out.
    pub fn field_f64<K: FieldName + ?Sized>(mut self, key: &K, value: f64) -> Self {
        if !value.is_finite() {
            return self;
        }
        self.field_key(key);
        push_f64(self.out, value);
        self
    }

    /// Ends the line with ` <timestamp_s>\n`. Returns false, and leaves `out` as it was
    /// before [`LineBuilder::new`], when no field was added (a line needs one).
    pub fn finish(self, timestamp_s: i64) -> bool {
        if self.fields == 0 {
            self.out.truncate(self.start);
            return false;
        }
        self.out.push(' ');
        push_i64(self.out, timestamp_s);
        self.out.push('\n');
        true
    }

    fn field_key<K: FieldName + ?Sized>(&mut self, key: &K) {
        self.out.push(if self.fields == 0 { ' ' } else { ',' });
        self.section = Section::Fields;
        self.fields += 1;
        key.push_to(self.out);
        self.out.push('=');
    }
}

/// A field key as the builder takes it: any `&str` (escaped as it is written) or a
/// [`FieldKey`] escaped once, for the keys a window repeats on thousands of lines.
pub trait FieldName {
    fn push_to(&self, out: &mut String);
}

impl FieldName for str {
    fn push_to(&self, out: &mut String) {
        debug_assert!(
            !self.is_empty() && !self.starts_with(['\t', '\0']),
            "empty field key, or one influxd would cut (leading tab or NUL): {self:?}"
        );
        push_escaped(out, self, Name::FieldKey);
    }
}

/// A field key escaped in advance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldKey(String);

impl FieldKey {
    pub fn new(key: &str) -> FieldKey {
        let mut escaped = String::with_capacity(key.len());
        key.push_to(&mut escaped);
        FieldKey(escaped)
    }
}

impl FieldName for FieldKey {
    fn push_to(&self, out: &mut String) {
        out.push_str(&self.0);
    }
}

/// Appends a measurement, tag key, tag value or field key.
///
/// Space, comma and `=` get a backslash. Newline and carriage return become an escaped
/// space: no encoding of them round-trips (docs/line-protocol.md#newlines,
/// cases T19-T21). A final backslash would
/// escape the separator after it (T12-T15), so it becomes a space as well. Everything
/// else is copied raw.
///
/// Backslashes right before an escape need one more rule. influxd's tag scanner takes a
/// separator as escaped when the byte before it is a backslash, but its line splitter and
/// field scanner pair each backslash with the byte after it, from the left. They agree
/// only when an even number of raw backslashes precedes an escape; after an odd number,
/// the splitter sees a bare separator, which with a `"` later in the line merges the next
/// line into this one and influxd refuses both. So the last backslash of an odd run
/// right before an escape becomes a space too (`a\,b` is stored as `a ,b`).
///
/// A field key is unescaped differently: there `\"` also stands for `"`, so backslashes
/// right before a `"` get one more.
fn push_escaped(out: &mut String, text: &str, name: Name) {
    let mut backslashes = 0;
    let mut rest = text;
    loop {
        // Runs without a special byte are copied whole (every special is ASCII, so the
        // cut is at a character boundary).
        let at = rest
            .bytes()
            .position(|b| SPECIAL[usize::from(b)])
            .unwrap_or(rest.len());
        let (plain, tail) = rest.split_at_checked(at).unwrap_or((rest, ""));
        if !plain.is_empty() {
            push_backslashes(out, backslashes);
            backslashes = 0;
            out.push_str(plain);
        }
        let mut chars = tail.chars();
        let Some(c) = chars.next() else { break };
        rest = chars.as_str();
        match c {
            '\\' => backslashes += 1,
            '"' if name == Name::FieldKey && backslashes > 0 => {
                push_backslashes(out, backslashes + 1);
                backslashes = 0;
                out.push(c);
            }
            ' ' | ',' | '=' | '\n' | '\r' => {
                push_backslashes_before_escape(out, backslashes);
                backslashes = 0;
                out.push('\\');
                out.push(if matches!(c, '\n' | '\r') { ' ' } else { c });
            }
            _ => {
                push_backslashes(out, backslashes);
                backslashes = 0;
                out.push(c);
            }
        }
    }
    if backslashes > 0 {
        push_backslashes_before_escape(out, backslashes - 1);
        out.push_str("\\ ");
    }
}

/// The bytes [`push_escaped`] looks at: the escapes, what becomes a space, the backslash
/// and the quote (a field key's `\"`).
const SPECIAL: [bool; 256] = {
    let mut table = [false; 256];
    let specials = b" ,=\n\r\\\"";
    let mut i = 0;
    while i < specials.len() {
        table[specials[i] as usize] = true;
        i += 1;
    }
    table
};

/// What [`push_escaped`] writes: influxd unescapes a field key in its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    /// A measurement, tag key or tag value.
    Tag,
    FieldKey,
}

/// Writes `count` raw backslashes that come right before an escape: an even number of
/// them, the last of an odd run written as an escaped space.
fn push_backslashes_before_escape(out: &mut String, count: usize) {
    push_backslashes(out, count - count % 2);
    if count % 2 == 1 {
        out.push_str("\\ ");
    }
}

fn push_backslashes(out: &mut String, count: usize) {
    for _ in 0..count {
        out.push('\\');
    }
}

/// Appends the decimal digits of `value` (itoa: no allocation, no formatting machinery).
fn push_i64(out: &mut String, value: i64) {
    out.push_str(itoa::Buffer::new().format(value));
}

/// Below this (2^53) a whole float is an exact integer whose shortest round-trip digits
/// are all of its digits: written as that integer, as `Display` writes it (`3`, not
/// zmij's `3.0`).
const WHOLE_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Appends a finite float as `Display` writes it (shortest round-trip digits, never an
/// exponent), without going through `core::fmt` for the values a window holds: a whole
/// number as an integer, any other through zmij (the formatter serde_json uses). Only a
/// value zmij writes with an exponent (beyond 1e16 or below 1e-5) takes `Display`.
fn push_f64(out: &mut String, value: f64) {
    if value.fract() == 0.0 && value.abs() < WHOLE_FLOAT_LIMIT {
        if value == 0.0 && value.is_sign_negative() {
            out.push('-');
        }
        push_i64(out, value as i64);
        return;
    }
    let mut buffer = zmij::Buffer::new();
    let text = buffer.format_finite(value);
    if text.contains('e') {
        let _ = write!(out, "{value}");
    } else {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tag value as it appears in a line `m,k=<here> f=1i 1`.
    fn tag_value(value: &str) -> String {
        let mut out = String::new();
        assert!(LineBuilder::new(&mut out, "m")
            .tag("k", value)
            .field_i64("f", 1)
            .finish(1));
        out.strip_prefix("m,k=")
            .and_then(|s| s.strip_suffix(" f=1i 1\n"))
            .unwrap_or_else(|| panic!("unexpected line {out:?}"))
            .to_string()
    }

    fn line(build: impl FnOnce(&mut String) -> bool) -> String {
        let mut out = String::new();
        assert!(build(&mut out));
        out
    }

    #[test]
    fn the_three_escapes() {
        assert_eq!(tag_value("Sales EU"), r"Sales\ EU"); // T02
        assert_eq!(tag_value("a,b"), r"a\,b"); // T04
        assert_eq!(tag_value("a=b"), r"a\=b"); // T06
        assert_eq!(tag_value("ab "), r"ab\ "); // T25
        assert_eq!(tag_value(" ab"), r"\ ab"); // T26
    }

    #[test]
    fn raw_characters_stay_raw() {
        assert_eq!(tag_value("abc"), "abc"); // T01
        assert_eq!(tag_value(r#"say"hi""#), r#"say"hi""#); // T08
        assert_eq!(tag_value(r"a\b"), r"a\b"); // T10
        assert_eq!(tag_value(r"a\xb"), r"a\xb"); // T28
        assert_eq!(tag_value("it's"), "it's"); // T29
        assert_eq!(tag_value("#1"), "#1"); // T30
        assert_eq!(tag_value("a\tb"), "a\tb"); // T23
        assert_eq!(tag_value("a\0b"), "a\0b"); // T32
        assert_eq!(tag_value("Zürich–Köln_東京"), "Zürich–Köln_東京"); // T16
        assert_eq!(tag_value("📞Support🇪🇺"), "📞Support🇪🇺"); // T17
        assert_eq!(tag_value("📞 Support"), r"📞\ Support"); // T18
    }

    #[test]
    fn what_line_protocol_cannot_carry_becomes_a_space() {
        assert_eq!(tag_value("a\nb"), r"a\ b");
        assert_eq!(tag_value("a\rb"), r"a\ b");
        assert_eq!(tag_value("a\r\n"), r"a\ \ ");
        assert_eq!(tag_value(r"C:\Support\"), r"C:\Support\ ");
        assert_eq!(tag_value(r"\"), r"\ ");
        // The final backslash goes, and then the one before it is alone before an escape.
        assert_eq!(tag_value(r"ab\\"), r"ab\ \ ");
        assert_eq!(tag_value(r"ab\\\"), r"ab\\\ ");
    }

    #[test]
    fn an_odd_backslash_run_before_an_escape_loses_its_last_backslash() {
        // influxd's line splitter would read `a\\,b` as `a`, a pair, a bare comma.
        assert_eq!(tag_value(r"a\,b"), r"a\ \,b");
        assert_eq!(tag_value(r"a\ b"), r"a\ \ b");
        assert_eq!(tag_value(r"a\=b"), r"a\ \=b");
        assert_eq!(tag_value("a\\\n"), r"a\ \ ");
        assert_eq!(tag_value(r"a\\\,b"), r"a\\\ \,b");
        // An even run pairs up the same way in every influxd scanner: kept.
        assert_eq!(tag_value(r"a\\,b"), r"a\\\,b");
        assert_eq!(tag_value(r"a\\\\ b"), r"a\\\\\ b");
        // Not before an escape: raw, whatever the count.
        assert_eq!(tag_value(r"a\\\b"), r"a\\\b");
        assert_eq!(tag_value(r#"a\"b"#), r#"a\"b"#);
    }

    #[test]
    fn contract_examples() {
        assert_eq!(
            tag_value(r#"Sales, EMEA = "Tier 1""#),
            r#"Sales\,\ EMEA\ \=\ "Tier\ 1""#
        );
        assert_eq!(tag_value(r#"a=b "quoted""#), r#"a\=b\ "quoted""#);
        assert_eq!(
            tag_value("Support – Ünïcode 📞"),
            r"Support\ –\ Ünïcode\ 📞"
        );
        assert_eq!(tag_value(r"Billing\Escalations"), r"Billing\Escalations");
        assert_eq!(tag_value("  padded  "), r"\ \ padded\ \ ");
        let long = "x".repeat(199) + "é";
        assert_eq!(tag_value(&long), long);
    }

    #[test]
    fn keys_and_measurement_are_escaped_like_tags() {
        assert_eq!(
            line(|o| LineBuilder::new(o, "my meas")
                .tag("k", "v")
                .field_i64("f", 1)
                .finish(1600000000)),
            "my\\ meas,k=v f=1i 1600000000\n" // M01
        );
        assert_eq!(
            line(|o| LineBuilder::new(o, "my,meas").field_i64("f", 1).finish(1)),
            "my\\,meas f=1i 1\n" // M02
        );
        assert_eq!(
            line(|o| LineBuilder::new(o, "a=b").field_i64("f", 1).finish(1)),
            "a\\=b f=1i 1\n" // M04
        );
        assert_eq!(
            line(|o| LineBuilder::new(o, "mesure_é📞")
                .field_i64("f", 1)
                .finish(1)),
            "mesure_é📞 f=1i 1\n" // M07
        );
        assert_eq!(
            line(|o| LineBuilder::new(o, "m")
                .tag("my key", "v")
                .tag("my,key", "v")
                .tag("my=key", "v")
                .field_i64("f", 1)
                .finish(1)),
            "m,my\\ key=v,my\\,key=v,my\\=key=v f=1i 1\n" // K01-K03
        );
        assert_eq!(
            line(|o| LineBuilder::new(o, "m")
                .field_i64("my field", 1)
                .field_i64("my,field", 2)
                .field_i64("my=field", 3)
                .finish(1)),
            "m my\\ field=1i,my\\,field=2i,my\\=field=3i 1\n" // F01-F03
        );
    }

    #[test]
    fn a_backslash_before_a_quote_in_a_field_key_gets_one_more() {
        // influxd reads `\"` in a field key as `"` (in a tag it stays, T09).
        assert_eq!(
            line(|o| LineBuilder::new(o, "m")
                .tag(r#"k\""#, r#"v\""#)
                .field_i64(r#"say\"hi\\""#, 1)
                .field_i64(r#""q""#, 2)
                .finish(1)),
            r#"m,k\"=v\" say\\"hi\\\"=1i,"q"=2i 1"#.to_string() + "\n"
        );
    }

    #[test]
    fn numbers() {
        let out = line(|o| {
            LineBuilder::new(o, "m")
                .field_i64("a", 1)
                .field_i64("b", i64::MIN)
                .field_i64("c", i64::MAX)
                .field_i64("d", 0)
                .field_i64("e", -42)
                .finish(1600000000)
        });
        assert_eq!(
            out,
            "m a=1i,b=-9223372036854775808i,c=9223372036854775807i,d=0i,e=-42i 1600000000\n"
        );
        let out = line(|o| {
            LineBuilder::new(o, "m")
                .field_f64("a", 1.0)
                .field_f64("b", 1.5)
                .field_f64("c", -0.0015)
                .field_f64("d", 0.1 + 0.2)
                .field_f64("e", 0.0)
                .finish(-1)
        });
        assert_eq!(
            out,
            "m a=1,b=1.5,c=-0.0015,d=0.30000000000000004,e=0 -1\n" // N06 N07, L15
        );
        for v in [1e300, 1e-300, f64::MAX, f64::MIN_POSITIVE, 123456.789] {
            let out = line(|o| LineBuilder::new(o, "m").field_f64("v", v).finish(0));
            let text = out
                .strip_prefix("m v=")
                .and_then(|rest| rest.strip_suffix(" 0\n"))
                .unwrap();
            assert!(!text.contains(['e', 'E', 'i']), "{text}");
            assert_eq!(text.parse::<f64>().unwrap(), v);
        }
    }

    #[test]
    fn non_finite_floats_are_left_out() {
        let out = line(|o| {
            LineBuilder::new(o, "m")
                .field_f64("nan", f64::NAN)
                .field_i64("a", 1)
                .field_f64("inf", f64::INFINITY)
                .field_f64("b", 2.0)
                .field_f64("ninf", f64::NEG_INFINITY)
                .finish(5)
        });
        assert_eq!(out, "m a=1i,b=2 5\n");
    }

    #[test]
    fn a_line_without_fields_is_rolled_back() {
        let mut out = String::from("before 1i 1\n");
        assert!(!LineBuilder::new(&mut out, "m")
            .tag("k", "v")
            .field_f64("x", f64::NAN)
            .finish(1));
        assert_eq!(out, "before 1i 1\n");
    }

    #[test]
    fn empty_tag_values_are_left_out() {
        assert_eq!(
            line(|o| LineBuilder::new(o, "m")
                .tag("a", "")
                .tag("b", "x")
                .tag("c", "")
                .field_i64("f", 1)
                .finish(1)),
            "m,b=x f=1i 1\n"
        );
    }

    #[test]
    fn lines_append() {
        let mut out = String::new();
        assert!(LineBuilder::new(&mut out, "m").field_i64("f", 1).finish(1));
        assert!(LineBuilder::new(&mut out, "m").field_i64("f", 2).finish(2));
        assert_eq!(out, "m f=1i 1\nm f=2i 2\n");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "tag keys not sorted")]
    fn unsorted_tags_are_a_bug() {
        let mut out = String::new();
        LineBuilder::new(&mut out, "m")
            .tag("z", "1")
            .tag("a", "2")
            .field_i64("f", 1)
            .finish(1);
    }

    #[test]
    fn no_reallocation_when_capacity_suffices() {
        let mut out = String::with_capacity(256);
        let ptr = out.as_ptr();
        LineBuilder::new(&mut out, "genesys_queue")
            .tag("queue_id", "118fd762-9005-45cf-9fad-a87f37eacbc3")
            .tag("queue_name", "Support – Ünïcode 📞")
            .field_i64("idle_max", 12)
            .field_f64("idle_mean", 10.25)
            .finish(1_600_000_000);
        assert_eq!(out.as_ptr(), ptr);
    }

    /// The fast number paths write exactly what `Display` and the escaping rules write.
    mod fast_paths {
        use proptest::prelude::*;

        use super::super::{push_escaped, push_f64, FieldKey, LineBuilder, Name};

        /// The escaping as it was written first, one character at a time: the oracle
        /// for the run-copying [`push_escaped`].
        fn escaped_char_by_char(text: &str, name: Name) -> String {
            let mut out = String::new();
            let mut backslashes = 0;
            let backslashes_before_escape = |out: &mut String, count: usize| {
                out.push_str(&"\\".repeat(count - count % 2));
                if count % 2 == 1 {
                    out.push_str("\\ ");
                }
            };
            for c in text.chars() {
                match c {
                    '\\' => backslashes += 1,
                    '"' if name == Name::FieldKey && backslashes > 0 => {
                        out.push_str(&"\\".repeat(backslashes + 1));
                        backslashes = 0;
                        out.push(c);
                    }
                    ' ' | ',' | '=' | '\n' | '\r' => {
                        backslashes_before_escape(&mut out, backslashes);
                        backslashes = 0;
                        out.push('\\');
                        out.push(if matches!(c, '\n' | '\r') { ' ' } else { c });
                    }
                    _ => {
                        out.push_str(&"\\".repeat(backslashes));
                        backslashes = 0;
                        out.push(c);
                    }
                }
            }
            if backslashes > 0 {
                backslashes_before_escape(&mut out, backslashes - 1);
                out.push_str("\\ ");
            }
            out
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Any finite float reads back exactly, without an exponent (influxd 1.6 and
            /// VictoriaMetrics both take one, but the contract's examples have none); the
            /// values a window holds (counts, seconds, their means) are written exactly
            /// as `Display` writes them. (Far out, zmij may pick another of two shortest
            /// digit strings: 1197493786429496.2 for `Display`'s …496.3, the same f64.)
            #[test]
            fn floats_read_back_exactly_and_as_display_writes_them(bits in any::<u64>(), small in -1e9f64..1e9) {
                let value = f64::from_bits(bits);
                if value.is_finite() {
                    let mut out = String::new();
                    push_f64(&mut out, value);
                    prop_assert!(!out.contains(['e', 'E']), "{}", out);
                    prop_assert_eq!(out.parse::<f64>(), Ok(value));
                }
                for value in [small, small.round(), small / 1e3, small / 1e6, (small / 7.0).abs()] {
                    let mut out = String::new();
                    push_f64(&mut out, value);
                    prop_assert_eq!(out, format!("{value}"));
                }
            }

            #[test]
            fn names_are_escaped_as_one_character_at_a_time_would(
                text in r#"([\\ ,="\n\r]|[a-zé📞]{1,3}){0,24}"#,
                field_key in any::<bool>(),
            ) {
                let name = if field_key { Name::FieldKey } else { Name::Tag };
                let mut out = String::from("before ");
                push_escaped(&mut out, &text, name);
                let expected = escaped_char_by_char(&text, name);
                prop_assert_eq!(out.strip_prefix("before "), Some(expected.as_str()));
            }

            #[test]
            fn a_field_key_escaped_in_advance_writes_what_the_text_would(
                key in r#"[a-z]([\\ ,="\n\r]|[a-zé📞_]{1,3}){0,12}"#,
            ) {
                let line = |build: &dyn Fn(LineBuilder) -> LineBuilder| {
                    let mut out = String::new();
                    build(LineBuilder::new(&mut out, "m")).finish(1);
                    out
                };
                let ahead = FieldKey::new(&key);
                prop_assert_eq!(
                    line(&|l| l.field_i64(&ahead, 1).field_f64(&ahead, 0.5)),
                    line(&|l| l.field_i64(key.as_str(), 1).field_f64(key.as_str(), 0.5))
                );
            }
        }
    }

    /// Generated points: encoded, then read back the way influxd 1.6 reads them.
    mod round_trip {
        use proptest::prelude::*;

        use super::super::influxd_reader::{read_line, FieldValue, Point};
        use super::super::{push_escaped, LineBuilder, Name};

        /// Characters that stress the escaping, plus any Unicode scalar value.
        fn text_char() -> impl Strategy<Value = char> {
            prop_oneof![
                3 => Just('\\'),
                4 => prop::sample::select(vec![
                    ' ', ',', '=', '"', '\'', '\n', '\r', '\t', '\0', '#', '\u{7f}'
                ]),
                1 => prop::char::range('\u{1}', '\u{1f}'),
                3 => prop::char::range('a', 'z'),
                1 => prop::char::range('\u{e0}', '\u{ff}'),
                2 => prop::char::range('\u{4e00}', '\u{9fff}'),
                2 => prop::char::range('\u{1f300}', '\u{1faff}'),
                2 => any::<char>(),
            ]
        }

        /// Mostly short strings; now and then one over 64 KiB (a short pattern repeated,
        /// then a short tail, so its end varies too).
        fn text() -> impl Strategy<Value = String> {
            let short = || prop::collection::vec(text_char(), 0..24).prop_map(String::from_iter);
            prop_oneof![
                40 => short(),
                1 => (short(), short()).prop_map(|(pattern, tail)| {
                    let unit = if pattern.is_empty() { "\\".to_string() } else { pattern };
                    unit.repeat(64 * 1024 / unit.len() + 1) + &tail
                }),
            ]
        }

        fn value() -> impl Strategy<Value = FieldValue> {
            prop_oneof![
                any::<i64>().prop_map(FieldValue::Integer),
                // Includes NaN and the infinities, which must be left out.
                any::<f64>().prop_map(FieldValue::Float),
            ]
        }

        /// A point as the caller hands it over, within `LineBuilder::new`'s preconditions
        /// for measurements and field keys.
        fn point() -> impl Strategy<Value = Point> {
            (
                text().prop_filter("measurement", |m| {
                    !m.is_empty() && !m.starts_with(['#', '\t', '\0']) && !m.contains(['\\', '\0'])
                }),
                prop::collection::vec((text(), text()), 0..5),
                prop::collection::vec(
                    (
                        text().prop_filter("field key", |k| {
                            !k.is_empty() && !k.starts_with(['\t', '\0'])
                        }),
                        value(),
                    ),
                    1..5,
                ),
                any::<i64>(),
            )
                .prop_map(|(measurement, tags, fields, timestamp)| Point {
                    measurement,
                    tags: sorted_by_escaped_key(tags),
                    fields,
                    timestamp,
                })
        }

        fn escaped(text: &str) -> String {
            let mut out = String::new();
            push_escaped(&mut out, text, Name::Tag);
            out
        }

        /// The order `LineBuilder::tag` wants: by escaped key, one tag per escaped key.
        fn sorted_by_escaped_key(mut tags: Vec<(String, String)>) -> Vec<(String, String)> {
            tags.sort_by_cached_key(|(key, _)| escaped(key));
            tags.dedup_by_key(|(key, _)| escaped(key));
            tags
        }

        fn encode(point: &Point, out: &mut String) -> bool {
            let mut line = LineBuilder::new(out, &point.measurement);
            for (key, value) in &point.tags {
                line = line.tag(key, value);
            }
            for (key, value) in &point.fields {
                line = match *value {
                    FieldValue::Integer(v) => line.field_i64(key.as_str(), v),
                    FieldValue::Float(v) => line.field_f64(key.as_str(), v),
                };
            }
            line.finish(point.timestamp)
        }

        /// What line protocol carries of `text`: newline and carriage return become a
        /// space, and so does a final backslash; then in a run of an odd number of
        /// backslashes right before a space, comma or `=`, the last one does.
        fn carried(text: &str) -> String {
            let mut chars: Vec<char> = text
                .chars()
                .map(|c| if matches!(c, '\n' | '\r') { ' ' } else { c })
                .collect();
            if let Some(last @ '\\') = chars.last_mut() {
                *last = ' ';
            }
            for i in 0..chars.len() {
                if matches!(chars[i], ' ' | ',' | '=') {
                    let run = chars[..i].iter().rev().take_while(|&&c| c == '\\').count();
                    if run % 2 == 1 {
                        chars[i - 1] = ' ';
                    }
                }
            }
            chars.into_iter().collect()
        }

        /// What influxd must store for `point`: empty tags and non-finite floats left
        /// out, every name carried.
        fn stored(point: &Point) -> Point {
            Point {
                measurement: carried(&point.measurement),
                tags: point
                    .tags
                    .iter()
                    .filter(|(key, value)| !key.is_empty() && !value.is_empty())
                    .map(|(key, value)| (carried(key), carried(value)))
                    .collect(),
                fields: point
                    .fields
                    .iter()
                    .filter(|(_, value)| !matches!(value, FieldValue::Float(v) if !v.is_finite()))
                    .map(|(key, value)| (carried(key), value.clone()))
                    .collect(),
                timestamp: point.timestamp,
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            /// Any point encodes without panicking into exactly one line (or none, when no
            /// field is left) that influxd's rules read back as the contract promises.
            #[test]
            fn any_point_reads_back_as_the_contract_promises(point in point()) {
                const BEFORE: &str = "earlier f=1i 1\n";
                let mut out = String::from(BEFORE);
                let written = encode(&point, &mut out);
                let expected = stored(&point);
                let line = out.strip_prefix(BEFORE).expect("earlier lines untouched");
                if expected.fields.is_empty() {
                    prop_assert!(!written);
                    prop_assert_eq!(line, "");
                } else {
                    prop_assert!(written);
                    let line = line.strip_suffix('\n').expect("the line ends with a newline");
                    prop_assert_eq!(read_line(line), Ok(expected), "line {:?}", line);
                }
            }
        }
    }
}
