//! Queue discovery and selection: which queues this instance polls.
//!
//! The whole queue list is read page by page (docs/genesys-api.md#queues), then narrowed by
//! `GENESYS_QUEUES` (ids, exact names, `*` patterns) and by `QUEUE_SHARD`. Selection is
//! done locally rather than with the API's `name` filter so one listing serves every
//! selector and the result is the same however Genesys treats case in its filter.
//!
//! Name matching is **case-sensitive** (`Support*` does not match `support desk`); ids
//! are compared case-insensitively.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;

use crate::config::{QueueSelector, Shard};
use crate::model::Queue;

use super::client::GenesysClient;
use super::error::ApiError;
use super::lenient;
use super::paths;

/// Queues per page; the largest page size known to be honoured
/// (docs/genesys-api.md#queues-paging).
pub const PAGE_SIZE: u32 = 100;
/// Upper bound of pages read in one listing (100,000 queues): keeps the loop finite even
/// if the API kept announcing a next page.
pub const MAX_PAGES: u32 = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listing {
    #[serde(default, deserialize_with = "lenient::list")]
    entities: Vec<Entity>,
    #[serde(default, deserialize_with = "lenient::text")]
    next_uri: Option<String>,
    #[serde(default, deserialize_with = "lenient::number")]
    page_count: Option<f64>,
}

/// A queue without an id cannot be polled and is left out.
#[derive(Debug, Deserialize)]
struct Entity {
    #[serde(default, deserialize_with = "lenient::text")]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    name: Option<String>,
}

/// Every queue the OAuth client can see, in listing order, each id once.
pub fn list_all(client: &GenesysClient, deadline: Instant) -> Result<Vec<Queue>, ApiError> {
    let mut queues = Vec::new();
    let mut seen = HashSet::new();
    for page in 1..=MAX_PAGES {
        let path = format!("{}?pageSize={PAGE_SIZE}&pageNumber={page}", paths::QUEUES);
        let listing: Listing = client.get(&path, deadline)?;
        let more = has_more(&listing, page);
        for entity in listing.entities {
            let Some(id) = entity.id.filter(|id| !id.is_empty()) else {
                lenient::note_once(
                    "queue without id",
                    format_args!("a queue without an id in the queue listing; left out"),
                );
                continue;
            };
            let id = id.to_ascii_lowercase();
            if seen.insert(id.clone()) {
                queues.push(Queue {
                    id,
                    name: entity.name.unwrap_or_default(),
                });
            }
        }
        if !more {
            return Ok(queues);
        }
    }
    log::warn!(
        "the queue listing still announced more pages after {MAX_PAGES} pages; using the first {} queues",
        queues.len()
    );
    Ok(queues)
}

/// Another page follows when this one was not empty and either a `nextUri` or the page
/// count says so (docs/genesys-api.md#queues-answer: neither alone is to be trusted).
fn has_more(listing: &Listing, page: u32) -> bool {
    !listing.entities.is_empty()
        && (listing.next_uri.is_some() || listing.page_count.is_some_and(|n| f64::from(page) < n))
}

/// The queues a set of selectors picks, and the selectors that picked nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// Sorted by id, so chunks and shards stay the same from one refresh to the next.
    pub queues: Vec<Arc<Queue>>,
    /// Selectors (as the user wrote them) that matched no queue.
    pub unmatched: Vec<String>,
}

/// Applies `selectors` to `all`; no selectors selects every queue.
pub fn select(all: &[Queue], selectors: &[QueueSelector]) -> Selection {
    let mut picked: Vec<Arc<Queue>> = Vec::new();
    let mut ids = HashSet::new();
    let mut unmatched = Vec::new();
    if selectors.is_empty() {
        picked.extend(
            all.iter()
                .filter(|q| ids.insert(q.id.clone()))
                .cloned()
                .map(Arc::new),
        );
    }
    for selector in selectors {
        let mut matched = false;
        for queue in all.iter().filter(|q| selector_matches(selector, q)) {
            matched = true;
            if ids.insert(queue.id.clone()) {
                picked.push(Arc::new(queue.clone()));
            }
        }
        if !matched {
            unmatched.push(selector_text(selector).to_string());
        }
    }
    picked.sort_by(|a, b| a.id.cmp(&b.id));
    Selection {
        queues: picked,
        unmatched,
    }
}

fn selector_matches(selector: &QueueSelector, queue: &Queue) -> bool {
    match selector {
        QueueSelector::Id(id) => queue.id.eq_ignore_ascii_case(id),
        QueueSelector::Name(name) => queue.name == *name,
        QueueSelector::Pattern(pattern) => wildcard_match(pattern, &queue.name),
    }
}

fn selector_text(selector: &QueueSelector) -> &str {
    match selector {
        QueueSelector::Id(s) | QueueSelector::Name(s) | QueueSelector::Pattern(s) => s,
    }
}

/// `*` matches any run of characters (also none), anywhere and any number of times;
/// every other character matches itself, case-sensitively.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    // Where the last `*` was and how much of the name it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((star_pi, star_ni)) = star {
            pi = star_pi + 1;
            ni = star_ni + 1;
            star = Some((star_pi, star_ni + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The shard (1..=count) a queue belongs to: FNV-1a 64 of the lower-cased id's bytes,
/// modulo `count`, plus one. Stable across versions and machines: changing it would move
/// queues between running instances.
pub fn shard_of(queue_id: &str, count: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = queue_id
        .bytes()
        .map(|b| b.to_ascii_lowercase())
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    (hash % u64::from(count.max(1))) as u32 + 1
}

/// Keeps the queues of `shard` (all of them without sharding).
pub fn in_shard(queues: Vec<Arc<Queue>>, shard: Option<Shard>) -> Vec<Arc<Queue>> {
    match shard {
        None => queues,
        Some(shard) => queues
            .into_iter()
            .filter(|q| shard_of(&q.id, shard.count) == shard.index)
            .collect(),
    }
}

/// What changed between two queue lists.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct QueueChanges {
    pub added: usize,
    pub removed: usize,
    pub renamed: usize,
}

/// Compares lists and keeps the old `Arc` of every unchanged queue, so the aggregator
/// sees the same allocation for the same (id, name).
pub fn merge_queue_lists(
    old: &[Arc<Queue>],
    new: Vec<Arc<Queue>>,
) -> (Vec<Arc<Queue>>, QueueChanges) {
    let before: HashMap<&str, &Arc<Queue>> = old.iter().map(|q| (q.id.as_str(), q)).collect();
    let mut changes = QueueChanges::default();
    let merged: Vec<Arc<Queue>> = new
        .into_iter()
        .map(|queue| match before.get(queue.id.as_str()) {
            Some(previous) if previous.name == queue.name => Arc::clone(previous),
            Some(_) => {
                changes.renamed += 1;
                queue
            }
            None => {
                changes.added += 1;
                queue
            }
        })
        .collect();
    let now: HashSet<&str> = merged.iter().map(|q| q.id.as_str()).collect();
    changes.removed = old.iter().filter(|q| !now.contains(q.id.as_str())).count();
    (merged, changes)
}

#[cfg(test)]
mod tests {
    use super::super::client::test_server::{reply, token, Server};
    use super::super::client::tests::client_for;
    use super::*;
    use std::time::Duration;

    fn fixture_queues() -> Vec<Queue> {
        let mut all = Vec::new();
        for page in [
            include_str!("../../tests/fixtures/genesys/queues-page-1.json"),
            include_str!("../../tests/fixtures/genesys/queues-page-2.json"),
        ] {
            let listing: Listing = serde_json::from_str(page).unwrap();
            all.extend(listing.entities.into_iter().map(|e| Queue {
                id: e.id.unwrap(),
                name: e.name.unwrap(),
            }));
        }
        all
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("Support*", "Support – Ünïcode"));
        assert!(wildcard_match("*EMEA*", "Sales, EMEA = \"Tier 1\""));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(wildcard_match("a*b*c", "abc"));
        assert!(wildcard_match("*🎧*📞", "🎧 VIP Line 📞"));
        assert!(wildcard_match("a**c", "abbbc"));
        assert!(wildcard_match("*aab", "aaab"));
        assert!(!wildcard_match("a*b*c", "aXXbYY"));
        assert!(!wildcard_match("support*", "Support desk"));
        assert!(!wildcard_match("Sales", "Sales EMEA"));
        assert!(!wildcard_match("", "x"));
    }

    #[test]
    fn selects_ids_names_and_patterns_and_reports_what_matched_nothing() {
        let all = fixture_queues();
        assert_eq!(all.len(), 7);
        let selection = select(
            &all,
            &[
                QueueSelector::Id("DA689914-F8D0-4A56-AA1C-425D83163D12".into()),
                QueueSelector::Name("Sales, EMEA = \"Tier 1\"".into()),
                QueueSelector::Pattern("Support*".into()),
                QueueSelector::Pattern("*VIP*".into()),
                QueueSelector::Name("Nope".into()),
                QueueSelector::Id("00000000-0000-0000-0000-000000000000".into()),
            ],
        );
        let names: Vec<&str> = selection.queues.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "Support – Ünïcode",
                "Sales, EMEA = \"Tier 1\"",
                "🎧 VIP Line 📞"
            ]
        );
        assert_eq!(
            selection.queues[0].id,
            "118fd762-9005-45cf-9fad-a87f37eacbc3"
        );
        assert_eq!(
            selection.unmatched,
            vec!["Nope", "00000000-0000-0000-0000-000000000000"]
        );
    }

    #[test]
    fn no_selector_means_every_queue_sorted_by_id() {
        let selection = select(&fixture_queues(), &[]);
        assert_eq!(selection.queues.len(), 7);
        assert!(selection.queues.windows(2).all(|w| w[0].id < w[1].id));
        assert!(selection.unmatched.is_empty());
        assert_eq!(select(&[], &[]).queues.len(), 0);
    }

    #[test]
    fn shard_assignment_is_fixed() {
        // These values are part of the contract: changing the hash moves queues.
        assert_eq!(
            shard_of("118fd762-9005-45cf-9fad-a87f37eacbc3", 4),
            shard_of("118FD762-9005-45CF-9FAD-A87F37EACBC3", 4)
        );
        let assigned: Vec<u32> = fixture_queues()
            .iter()
            .map(|q| shard_of(&q.id, 4))
            .collect();
        assert_eq!(assigned, EXPECTED_SHARDS_OF_4);
        assert_eq!(shard_of("", 3), (0xcbf2_9ce4_8422_2325u64 % 3) as u32 + 1);
        assert_eq!(shard_of("anything", 1), 1);
    }

    const EXPECTED_SHARDS_OF_4: [u32; 7] = [2, 3, 3, 2, 1, 2, 3];

    /// Random-looking version-4 UUIDs from a fixed seed (splitmix64), like Genesys ids.
    fn uuids(n: usize) -> Vec<String> {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        (0..n)
            .map(|_| {
                let (a, b) = (next(), next());
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xfff,
                    0x8000 | (b >> 48) & 0x3fff,
                    b & 0xffff_ffff_ffff
                )
            })
            .collect()
    }

    #[test]
    fn shards_are_balanced_within_five_percent() {
        let ids = uuids(10_000);
        assert_eq!(ids[0].len(), 36);
        for count in [2u32, 4, 8] {
            let mut per_shard = vec![0u32; count as usize];
            for id in &ids {
                per_shard[shard_of(id, count) as usize - 1] += 1;
            }
            let expected = 10_000 / count;
            for n in &per_shard {
                let off = (i64::from(*n) - i64::from(expected)).unsigned_abs();
                assert!(off * 20 <= u64::from(expected), "{count}: {per_shard:?}");
            }
        }
    }

    #[test]
    fn shard_filter_keeps_only_its_queues() {
        let queues: Vec<Arc<Queue>> = fixture_queues().into_iter().map(Arc::new).collect();
        let mut total = 0;
        for index in 1..=4 {
            let part = in_shard(queues.clone(), Some(Shard { index, count: 4 }));
            assert!(part.iter().all(|q| shard_of(&q.id, 4) == index));
            total += part.len();
        }
        assert_eq!(total, 7);
        assert_eq!(in_shard(queues, None).len(), 7);
    }

    fn page(ids: &[&str], next: bool, page_count: Option<u32>) -> String {
        let entities: Vec<String> = ids
            .iter()
            .map(|id| format!(r#"{{"id":"{id}","name":"Q {id}","memberCount":1}}"#))
            .collect();
        let mut body = format!(r#"{{"entities":[{}],"pageSize":100"#, entities.join(","));
        if next {
            body.push_str(r#","nextUri":"/api/v2/routing/queues?pageNumber=9&pageSize=100""#);
        }
        if let Some(n) = page_count {
            body.push_str(&format!(r#","pageCount":{n}"#));
        }
        body.push('}');
        body
    }

    #[test]
    fn lists_every_page_until_there_is_no_next_one() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, &page(&["a1", "a2"], true, Some(3))),
            reply(200, &page(&["B3", "a1"], true, Some(3))),
            reply(200, &page(&["c4"], false, Some(3))),
        ]);
        let (client, _, _) = client_for(&server.url);
        let queues = list_all(&client, Instant::now() + Duration::from_secs(30)).unwrap();
        let ids: Vec<&str> = queues.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, vec!["a1", "a2", "b3", "c4"]);
        let paths: Vec<String> = server
            .requests()
            .iter()
            .skip(1)
            .map(|r| r.path.clone())
            .collect();
        assert_eq!(
            paths,
            vec![
                "/api/v2/routing/queues?pageSize=100&pageNumber=1",
                "/api/v2/routing/queues?pageSize=100&pageNumber=2",
                "/api/v2/routing/queues?pageSize=100&pageNumber=3",
            ]
        );
    }

    #[test]
    fn an_empty_org_is_one_request() {
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, r#"{"entities":[],"total":0,"pageCount":0}"#),
        ]);
        let (client, _, _) = client_for(&server.url);
        let queues = list_all(&client, Instant::now() + Duration::from_secs(30)).unwrap();
        assert!(queues.is_empty());
        assert_eq!(server.requests().len(), 2);
    }

    #[test]
    fn paging_stops_on_an_empty_page_even_if_next_is_announced() {
        let listing: Listing = serde_json::from_str(&page(&[], true, Some(5))).unwrap();
        assert!(!has_more(&listing, 1));
        let listing: Listing = serde_json::from_str(&page(&["x"], false, Some(5))).unwrap();
        assert!(has_more(&listing, 1));
        assert!(!has_more(&listing, 5));
        let listing: Listing = serde_json::from_str(&page(&["x"], false, None)).unwrap();
        assert!(!has_more(&listing, 1));
    }

    #[test]
    fn an_entity_without_an_id_or_null_fields_loses_only_itself() {
        let body = r#"{"entities":[null,{"id":null,"name":"x"},{"id":"A1","name":null},
            {"id":"b2","name":"B"},7],"nextUri":null,"pageCount":"3"}"#;
        let listing: Listing = serde_json::from_str(body).unwrap();
        let ids: Vec<_> = listing.entities.iter().map(|e| e.id.as_deref()).collect();
        assert_eq!(ids, [None, Some("A1"), Some("b2")]);
        assert!(has_more(&listing, 2));
        let server = Server::start(vec![
            token(86_399, "t"),
            reply(200, body.replace("\"3\"", "1").as_str()),
        ]);
        let (client, _, _) = client_for(&server.url);
        let queues = list_all(&client, Instant::now() + Duration::from_secs(30)).unwrap();
        let ids: Vec<&str> = queues.iter().map(|q| q.id.as_str()).collect();
        assert_eq!(ids, ["a1", "b2"]);
    }

    mod mutated {
        use super::*;
        use crate::genesys::lenient::mutation;
        use proptest::prelude::*;

        const BODY: &str = include_str!("../../tests/fixtures/genesys/queues-page-1.json");

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever is damaged, nothing panics, and every queue entity not touched is
            /// still listed.
            #[test]
            fn pages_never_panic_and_untouched_queues_are_still_listed(
                mutations in mutation::mutations()
            ) {
                let original: serde_json::Value = serde_json::from_str(BODY).unwrap();
                let mut doc = original.clone();
                let touched = mutation::apply(&mut doc, &mutations);
                let listing = lenient::answer::<Listing>(&doc.to_string());
                let hit: Option<Vec<usize>> =
                    touched.iter().map(|p| mutation::entry_of(p, "entities")).collect();
                let Some(hit) = hit else { return Ok(()) };
                let listing = listing.unwrap();
                let ids: Vec<_> = listing.entities.iter().filter_map(|e| e.id.as_deref()).collect();
                for (i, entity) in original["entities"].as_array().unwrap().iter().enumerate() {
                    if !hit.contains(&i) {
                        prop_assert!(ids.contains(&entity["id"].as_str().unwrap()));
                    }
                }
            }
        }
    }

    fn q(id: &str, name: &str) -> Arc<Queue> {
        Arc::new(Queue {
            id: id.into(),
            name: name.into(),
        })
    }

    #[test]
    fn refresh_adds_drops_and_renames_and_keeps_unchanged_arcs() {
        let old = vec![q("a", "A"), q("b", "B"), q("c", "C")];
        let new = vec![q("a", "A"), q("c", "C renamed"), q("d", "D")];
        let (merged, changes) = merge_queue_lists(&old, new);
        assert_eq!(
            changes,
            QueueChanges {
                added: 1,
                removed: 1,
                renamed: 1
            }
        );
        assert!(Arc::ptr_eq(&merged[0], &old[0]));
        assert_eq!(merged[1].name, "C renamed");
        assert_eq!(
            merged.iter().map(|q| q.id.as_str()).collect::<Vec<_>>(),
            vec!["a", "c", "d"]
        );
    }
}
