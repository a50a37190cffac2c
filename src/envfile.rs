//! `--env-file`: `KEY=VALUE` lines as systemd's `EnvironmentFile=` reads them.
//!
//! Supported: `#` and `;` comment lines, blank lines, an optional `export ` prefix,
//! whitespace around the key, and values in single or double quotes (double quotes
//! understand `\"`, `\\` and `\n`). Unquoted values keep inner spaces, lose outer ones.
//! A UTF-8 byte order mark, which some Windows editors write, is skipped.

use std::collections::HashMap;

/// Parses the text of an env file. `Err` names the 1-based line that is not `KEY=VALUE`.
pub fn parse(text: &str) -> Result<HashMap<String, String>, String> {
    let mut vars = HashMap::new();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| format!("line {} is not KEY=VALUE", index + 1))?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "line {}: '{key}' is not a valid variable name",
                index + 1
            ));
        }
        let value = unquote(value.trim()).map_err(|why| format!("line {}: {why}", index + 1))?;
        vars.insert(key.to_string(), value);
    }
    Ok(vars)
}

fn unquote(value: &str) -> Result<String, String> {
    let quote = match value.chars().next() {
        Some(q @ ('"' | '\'')) => q,
        _ => return Ok(value.to_string()),
    };
    let Some(inner) = value
        .strip_prefix(quote)
        .and_then(|rest| rest.strip_suffix(quote))
    else {
        return Err(format!("unterminated {quote} quote"));
    };
    if quote == '\'' {
        return Ok(inner.to_string());
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_forms_systemd_accepts() {
        let vars = parse(
            "# comment\n; also comment\n\nA=1\n  B = two words  \nexport C=3\nD=\"quoted # not a comment\"\nE='single \\n raw'\nF=\"esc \\\" \\\\ \\n\"\nG=\n",
        )
        .unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "3");
        assert_eq!(vars["D"], "quoted # not a comment");
        assert_eq!(vars["E"], "single \\n raw");
        assert_eq!(vars["F"], "esc \" \\ \n");
        assert_eq!(vars["G"], "");
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let vars = parse("\u{feff}GENESYS_CLIENT_ID=abc\n").unwrap();
        assert_eq!(vars["GENESYS_CLIENT_ID"], "abc");
    }

    #[test]
    fn names_the_bad_line() {
        assert_eq!(
            parse("A=1\nnot a pair\n").unwrap_err(),
            "line 2 is not KEY=VALUE"
        );
        assert!(parse("A=\"open\n")
            .unwrap_err()
            .starts_with("line 1: unterminated"));
        assert!(parse("BAD KEY=1")
            .unwrap_err()
            .contains("not a valid variable name"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Arbitrary text never panics; an error names a line the text has.
        #[test]
        fn any_text_parses_or_names_its_line(text in proptest::prelude::any::<String>()) {
            if let Err(why) = parse(&text) {
                let line: usize = why
                    .strip_prefix("line ")
                    .and_then(|rest| rest.split([' ', ':']).next())
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                proptest::prop_assert!(line >= 1 && line <= text.lines().count().max(1), "{why}");
            }
        }

        /// Well-formed lines between comments, blank lines and a BOM all come back.
        #[test]
        fn every_well_formed_line_is_read(
            pairs in proptest::collection::btree_map("[A-Z_][A-Z0-9_]{0,8}", "[a-z0-9/:.,=]{0,10}", 0..8),
            bom in proptest::prelude::any::<bool>(),
        ) {
            let mut text = String::from(if bom { "\u{feff}" } else { "" });
            for (i, (key, value)) in pairs.iter().enumerate() {
                match i % 3 {
                    0 => text.push_str(&format!("# note\n{key}={value}\n")),
                    1 => text.push_str(&format!("\nexport {key} = \"{value}\"\r\n")),
                    _ => text.push_str(&format!("  {key}='{value}'\n")),
                }
            }
            let parsed = parse(&text).unwrap();
            proptest::prop_assert_eq!(parsed.len(), pairs.len());
            for (key, value) in &pairs {
                proptest::prop_assert_eq!(&parsed[key], value);
            }
        }
    }
}
