//! The project stands alone: every `docs/….md#anchor` a comment, test or doc cites exists
//! in this repository, and nothing points at material outside it (the API notes and
//! line-protocol findings the code relies on are restated in `docs/`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Where references are looked for.
const SCANNED: [&str; 6] = ["src", "tests", "benches", "docs", "packaging", "README.md"];
/// Names of files that live outside the repository; citing them breaks the stand-alone rule.
const OUTSIDE: [&str; 4] = [
    "API.md",
    "LINE_PROTOCOL_FINDINGS",
    "TOOLCHAIN.md",
    "shared/",
];

#[test]
fn every_docs_reference_resolves_inside_the_repository() {
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in text_files() {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let shown = file
            .strip_prefix(ROOT)
            .unwrap_or(&file)
            .display()
            .to_string();
        if shown.ends_with("docs_references.rs") {
            continue;
        }
        for (number, line) in text.lines().enumerate() {
            for outside in OUTSIDE {
                if line.contains(outside) && !is_docs_file(&shown) {
                    problems.push(format!("{shown}:{}: cites {outside}", number + 1));
                }
            }
            for (doc, anchor) in references(line) {
                checked += 1;
                if let Err(why) = resolve(&doc, anchor.as_deref()) {
                    problems.push(format!("{shown}:{}: {why}", number + 1));
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} references found: is the scan broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The restated docs may name the originals they were written from.
fn is_docs_file(shown: &str) -> bool {
    shown == "docs/genesys-api.md" || shown == "docs/line-protocol.md"
}

fn text_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending: Vec<PathBuf> = SCANNED.iter().map(|p| Path::new(ROOT).join(p)).collect();
    while let Some(path) = pending.pop() {
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        } else if path.extension().is_some_and(|e| {
            ["rs", "md", "json", "sh", "service", "env"].contains(&e.to_str().unwrap_or(""))
        }) {
            files.push(path);
        }
    }
    files
}

/// `docs/name.md#anchor` (or `docs/name.md`) mentions in one line.
fn references(line: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("docs/") {
        let tail = &rest[at + "docs/".len()..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_.#".contains(c)))
            .unwrap_or(tail.len());
        let reference = tail[..end].trim_end_matches('.');
        if let Some((doc, anchor)) = reference.split_once(".md") {
            let anchor = anchor.strip_prefix('#').map(str::to_string);
            found.push((format!("{doc}.md"), anchor.filter(|a| !a.is_empty())));
        }
        rest = &tail[end..];
    }
    found
}

fn resolve(doc: &str, anchor: Option<&str>) -> Result<(), String> {
    let path = Path::new(ROOT).join("docs").join(doc);
    let text = std::fs::read_to_string(&path).map_err(|_| format!("docs/{doc} does not exist"))?;
    let Some(anchor) = anchor else { return Ok(()) };
    let anchors: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|h| slug(h.trim_start_matches('#')))
        .collect();
    if anchors.contains(anchor) {
        Ok(())
    } else {
        Err(format!("docs/{doc} has no heading for #{anchor}"))
    }
}

/// GitHub's heading anchors: lower case, spaces to `-`, punctuation other than `-`/`_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}
