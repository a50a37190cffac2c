//! A line-protocol reader that follows influxd 1.6's rules as measured
//! (docs/line-protocol.md), for tests only: the other half of the
//! encoder's round trip, so a property test can check every generated line without a
//! server.
//!
//! The rules it models, and nothing more lenient:
//! - A separator (space, comma, `=`) belongs to a name when the byte just before it is a
//!   backslash, whatever precedes that backslash: so a name ending in `\` (or `\\`) swallows
//!   the separator after it (T12-T15), and `\\\ ` is backslash, backslash, space (T27).
//! - Only `\ `, `\,` and `\=` are unescaped; every other backslash stays (T09-T11, T28).
//! - A raw `=` in a tag value (T07), an empty tag value (T24), a raw newline (T19) and a
//!   line starting with `#` (M06) are refused; so is a number influxd would not take
//!   (N04, N10-N14).
//! - influxd's line splitter and field scanner see it differently: they pair every
//!   backslash with the byte after it, from the left (`\\ ` is a pair, then a bare space).
//!   A line is refused unless both readings find the same separators, and unless the
//!   splitter, which toggles a quoted string at a `"` in the fields, ends it where it ends.
//! - Only the canonical layout is read: one space between the sections, a timestamp.
//!
//! Not modelled, because `LineBuilder::new` rules such names out: influxd skipping a tab
//! or NUL at the start of a line or of the fields, cutting a measurement at a NUL, and
//! unescaping a measurement twice.
//!
//! Works on bytes (every separator is ASCII), so no string is ever cut inside a character.

/// A field value as influxd would type it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Integer(i64),
    Float(f64),
}

/// One line as influxd would store it: names unescaped, values typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub measurement: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
    pub timestamp: i64,
}

/// Reads one line (without its final `\n`), or says why influxd 1.6 would refuse it.
pub fn read_line(line: &str) -> Result<Point, String> {
    let mut reader = Reader {
        bytes: line.as_bytes(),
        at: 0,
    };
    if reader.bytes.contains(&b'\n') {
        return Err("a raw newline ends the line early".into());
    }
    if reader.bytes.first() == Some(&b'#') {
        return Err("a line starting with # is a comment".into());
    }
    if separators(reader.bytes, Pairing::Greedy) != separators(reader.bytes, Pairing::ByteBefore) {
        return Err("influxd's scanners disagree on where the separators are".into());
    }
    if !splitter_ends_the_line(reader.bytes) {
        return Err("influxd's line splitter runs past the end of the line".into());
    }
    let (measurement, mut separator) = reader.name(b" ,", b"", TAG_ESCAPES)?;
    if measurement.is_empty() {
        return Err("no measurement".into());
    }
    let mut tags = Vec::new();
    while separator == b',' {
        let (key, _) = reader.name(b"=", b" ,", TAG_ESCAPES)?;
        let (value, next) = reader.name(b" ,", b"=", TAG_ESCAPES)?;
        separator = next;
        if key.is_empty() || value.is_empty() {
            return Err(format!("missing tag key or value: {key:?}={value:?}"));
        }
        tags.push((key, value));
    }
    let mut fields = Vec::new();
    loop {
        let (key, _) = reader.name(b"=", b" ,", FIELD_KEY_ESCAPES)?;
        if key.is_empty() {
            return Err("empty field key".into());
        }
        let (raw, separator) = reader.token(b" ,")?;
        fields.push((key, field_value(raw)?));
        if separator == b' ' {
            break;
        }
    }
    let timestamp = reader.rest();
    let timestamp = integer(timestamp).ok_or_else(|| format!("bad timestamp {timestamp:?}"))?;
    Ok(Point {
        measurement,
        tags,
        fields,
        timestamp,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// An escaped name up to the first unescaped byte of `ends` (returned, and skipped);
    /// an unescaped byte of `refused` before it is an error.
    fn name(
        &mut self,
        ends: &[u8],
        refused: &[u8],
        escapes: &[u8],
    ) -> Result<(String, u8), String> {
        let (raw, end) = self.token_refusing(ends, refused)?;
        let text = String::from_utf8(unescape(raw, escapes)).map_err(|e| e.to_string())?;
        Ok((text, end))
    }

    /// The bytes up to the first unescaped byte of `ends` (returned, and skipped).
    fn token(&mut self, ends: &[u8]) -> Result<(&'a [u8], u8), String> {
        self.token_refusing(ends, b"")
    }

    fn token_refusing(&mut self, ends: &[u8], refused: &[u8]) -> Result<(&'a [u8], u8), String> {
        let bytes = self.bytes;
        let start = self.at;
        for i in start..bytes.len() {
            let escaped = i > 0 && bytes[i - 1] == b'\\';
            if escaped {
                continue;
            }
            if refused.contains(&bytes[i]) {
                return Err(format!("unescaped {:?} at byte {i}", char::from(bytes[i])));
            }
            if ends.contains(&bytes[i]) {
                self.at = i + 1;
                return Ok((&bytes[start..i], bytes[i]));
            }
        }
        Err(format!("line ends before one of {ends:?}"))
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.at..];
        self.at = self.bytes.len();
        rest
    }
}

/// How a scanner decides that a separator byte is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pairing {
    /// The tag and key scanners: the byte just before it is a backslash.
    ByteBefore,
    /// The line splitter and the field scanner: a backslash takes the next byte with it,
    /// reading from the left.
    Greedy,
}

/// The positions of the unescaped spaces, commas and `=` of `bytes` under `pairing`.
fn separators(bytes: &[u8], pairing: Pairing) -> Vec<usize> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match (pairing, bytes[i]) {
            (Pairing::Greedy, b'\\') => i += 1,
            (Pairing::ByteBefore, b' ' | b',' | b'=') if i > 0 && bytes[i - 1] == b'\\' => {}
            (_, b' ' | b',' | b'=') => found.push(i),
            _ => {}
        }
        i += 1;
    }
    found
}

/// influxd's `scanLine`: greedy pairs; after the first bare space, a `"` opens or closes a
/// quoted string when more `=` than `,` have been seen, and a newline inside it does not
/// end the line. True when it ends the line right after `bytes`.
fn splitter_ends_the_line(bytes: &[u8]) -> bool {
    let (mut fields, mut quoted, mut equals, mut commas) = (false, false, 0, 0);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b' ' => fields = true,
            b'=' if fields && !quoted => equals += 1,
            b',' if fields && !quoted => commas += 1,
            b'"' if fields && equals > commas => quoted = !quoted,
            _ => {}
        }
        i += 1;
    }
    i == bytes.len() && !quoted
}

/// The characters a backslash escapes in a measurement, tag key and tag value (T09: `\"`
/// stays as it is there).
const TAG_ESCAPES: &[u8] = b" ,=";
/// In a field key influxd (`escape.Unescape`) also reads `\"` as `"`.
const FIELD_KEY_ESCAPES: &[u8] = b" ,=\"";

/// A backslash before a byte of `escapes` is dropped, read from the left; every other byte
/// stays as it is.
fn unescape(raw: &[u8], escapes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match (raw[i], raw.get(i + 1)) {
            (b'\\', Some(&next)) if escapes.contains(&next) => {
                out.push(next);
                i += 2;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

/// `123i` is an integer; a decimal float (optional `-`, digits, `.`, exponent) is a float.
fn field_value(raw: &[u8]) -> Result<FieldValue, String> {
    if let Some(digits) = raw.strip_suffix(b"i") {
        return integer(digits)
            .map(FieldValue::Integer)
            .ok_or_else(|| format!("invalid integer {raw:?}"));
    }
    float(raw)
        .map(FieldValue::Float)
        .ok_or_else(|| format!("invalid float {raw:?}"))
}

fn integer(raw: &[u8]) -> Option<i64> {
    let digits = raw.strip_prefix(b"-").unwrap_or(raw);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(raw).ok()?.parse().ok()
}

fn float(raw: &[u8]) -> Option<f64> {
    let unsigned = raw.strip_prefix(b"-").unwrap_or(raw);
    let mantissa_end = unsigned
        .iter()
        .position(|b| matches!(b, b'e' | b'E'))
        .unwrap_or(unsigned.len());
    let (mantissa, exponent) = unsigned.split_at(mantissa_end);
    let mantissa_ok = mantissa.iter().any(u8::is_ascii_digit)
        && mantissa.iter().filter(|&&b| b == b'.').count() <= 1
        && mantissa.iter().all(|&b| b == b'.' || b.is_ascii_digit());
    let exponent_ok = match exponent.get(1..) {
        None => true,
        Some(e) => {
            let digits = e.strip_prefix(b"-").or(e.strip_prefix(b"+")).unwrap_or(e);
            !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        }
    };
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    let value: f64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_findings_canonical_lines_as_influxd_stored_them() {
        let p = read_line(r#"m,k=say"hi",z=a\\\ b f=1i,g=-1.5E-3 1600000000"#).unwrap();
        assert_eq!(p.measurement, "m");
        assert_eq!(
            p.tags,
            [
                ("k".to_string(), r#"say"hi""#.to_string()), // T08
                ("z".to_string(), r"a\\ b".to_string()),     // T27
            ]
        );
        assert_eq!(
            p.fields,
            [
                ("f".to_string(), FieldValue::Integer(1)),
                ("g".to_string(), FieldValue::Float(-0.0015)), // N08
            ]
        );
        assert_eq!(p.timestamp, 1_600_000_000);
        let p = read_line(r"my\ meas,my\,key=a\=b my\=field=1 -1").unwrap();
        assert_eq!(p.measurement, "my meas");
        assert_eq!(p.tags, [("my,key".to_string(), "a=b".to_string())]);
        assert_eq!(p.fields, [("my=field".to_string(), FieldValue::Float(1.0))]);
        let p = read_line(r#"m,k=a\"b a\"b=1i 1"#).unwrap();
        assert_eq!(p.tags, [("k".to_string(), r#"a\"b"#.to_string())]); // T09
        assert_eq!(p.fields, [("a\"b".to_string(), FieldValue::Integer(1))]);
    }

    #[test]
    fn refuses_what_influxd_refuses() {
        for line in [
            "m,k=a=b f=1i 1",       // T07
            r"m,k=ab\ f=1i 1",      // T12
            r"m,k=ab\\ f=1i 1",     // T13
            r"m,k=ab\,z=1 f=1i 1",  // T14
            r"m,k=ab\\,z=1 f=1i 1", // T15
            "m,k=a\nb f=1i 1",      // T19
            "m,k= f=1i 1",          // T24
            "#m f=1i 1",            // M06
            "m v=+1 1",             // N10
            "m v=NaN 1",            // N11
            "m v=Inf 1",            // N12
            "m v=1e309 1",          // N13
            "m v=1.0i 1",           // N14
            "m v=9223372036854775808i 1",
            "m,k=v 1", // L12
            "m f=1i 1.5",
            r#"m,k=a\\ b\\=c"d f=1i 1"#, // the splitter sees a bare space, `=`, then a quote
            r"m a\\=b=1i 1",             // the field scanner ends the key early
        ] {
            assert!(read_line(line).is_err(), "{line:?} was read");
        }
    }
}
