//! Human durations as the contract writes them: `500ms`, `10s`, `5m`, `1h`.
//!
//! Hand-written because the grammar is four suffixes on a whole number; a crate would
//! accept forms (`1h 30m`, `1.5s`) the contract does not promise.

use std::time::Duration;

/// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`. Returns a description of the
/// accepted form on failure so callers can name the variable around it.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{text}' has no unit; use e.g. 500ms, 10s, 5m or 1h"))?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{text}' does not start with a whole number; use e.g. 500ms, 10s, 5m or 1h"
        ));
    }
    let too_large = || format!("'{text}' is too large");
    let amount: u64 = digits.parse().map_err(|_| too_large())?;
    let millis_per_unit = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => {
            return Err(format!(
                "'{text}' has unknown unit '{unit}'; use ms, s, m or h"
            ))
        }
    };
    amount
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(too_large)
}

/// Formats a duration the way `parse` reads it, choosing the largest exact unit.
pub fn format(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse(" 2s "), Ok(Duration::from_secs(2)));
    }

    #[test]
    fn rejects_what_the_contract_does_not_promise() {
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10 s",
            "1d",
            "1h30m",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse("10").unwrap_err().contains("no unit"));
        assert!(parse("3d").unwrap_err().contains("unknown unit 'd'"));
    }

    #[test]
    fn formats_back_to_the_same_duration() {
        for text in ["500ms", "10s", "5m", "1h", "90s", "0s"] {
            assert_eq!(format(parse(text).unwrap()), text);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// No text panics or overflows; what parses formats back to the same duration.
        #[test]
        fn any_text_parses_or_is_explained(
            text in proptest::prop_oneof![
                proptest::prelude::any::<String>(),
                "[ ]?[0-9]{0,30}(ms|s|m|h|d|)[ ]?",
            ]
        ) {
            match parse(&text) {
                Ok(duration) => proptest::prop_assert_eq!(parse(&format(duration)), Ok(duration)),
                Err(why) => proptest::prop_assert!(why.starts_with('\''), "{why}"),
            }
        }
    }
}
