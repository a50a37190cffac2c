//! Points encoded by `LineBuilder` go to a real influxd 1.6 and come back byte for byte:
//! odd queue names as tag values, odd characters in measurement and field keys, integer
//! versus float field types; then generated batches of points with arbitrary Unicode
//! names come back as the contract promises.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};

use genesys2influx::influx::line_protocol::LineBuilder;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::Value;

use crate::util::influxd::{quote_ident, Influxd};

const TS: i64 = 1_600_000_000;

/// (queue name as Genesys spells it, what InfluxDB must store per the contract).
fn odd_names() -> Vec<(String, String)> {
    let same = |s: &str| (s.to_string(), s.to_string());
    vec![
        same(r#"Sales, EMEA = "Tier 1""#),
        same(r#"a=b "quoted""#),
        (r"C:\Support\".into(), r"C:\Support ".into()),
        same("Support – Ünïcode 📞"),
        same(&("Q".repeat(150) + &"é".repeat(50))),
        same("  leading and trailing  "),
        same(r"Billing\Escalations"),
        same("Zürich–Köln_東京"),
        same("📞Support🇪🇺"),
        same("it's #1"),
        same("#first"),
        same("tab\there"),
        same(r#"say\"hi\""#),
        (
            r"a\,b and a\ b and x\=y".into(),
            r"a ,b and a  b and x =y".into(),
        ),
        // Kept raw, `\ ` and `\=` make influxd's line splitter see a bare space and `=`,
        // then open a string at the quote and merge the next line into this one.
        (r#"x\ y\=z"q"#.into(), r#"x  y =z"q"#.into()),
        same(r"even\\, kept"),
        same(r"\leading backslash"),
        same("=starts with equals"),
        same(",starts with comma"),
        (r"two trailing\\".into(), "two trailing  ".into()),
        (r"\".into(), " ".into()),
        ("multi\nline".into(), "multi line".into()),
        ("carriage\rreturn\r\n".into(), "carriage return  ".into()),
        same("plain"),
    ]
}

#[test]
fn odd_tag_values_keys_and_types_round_trip_through_influxd() {
    let influxd = Influxd::start_default();
    influxd.create_database("rt");

    let names = odd_names();
    let mut body = String::new();
    for (i, (name, _)) in names.iter().enumerate() {
        let id = format!("q{i:02}");
        assert!(LineBuilder::new(&mut body, "genesys_queue")
            .tag("queue_id", &id)
            .tag("queue_name", name)
            .field_i64("idle_max", i as i64 - 5)
            .field_f64("idle_mean", 3.0)
            .field_f64("wait_seconds", i as f64 + 0.25)
            .finish(TS));
    }
    // Odd characters where the service itself never puts them: measurement, tag key and
    // field keys.
    assert!(LineBuilder::new(&mut body, "odd meas,ure=x")
        .tag("key with space", "v1")
        .tag("key,comma=eq", "v2")
        .field_i64("field with space", i64::MAX)
        .field_f64("field,comma=eq", -0.0015)
        .field_f64("whole", 42.0)
        .field_f64("skipped", f64::NAN)
        .finish(TS));

    let (status, text) = influxd.write_raw("rt", body.as_bytes());
    assert_eq!(
        status, 204,
        "write answered {status}: {text}\nbody:\n{body}"
    );

    // Tag values, byte for byte.
    let stored: Vec<String> = influxd
        .rows(
            "rt",
            r#"SHOW TAG VALUES FROM "genesys_queue" WITH KEY = "queue_name""#,
        )
        .iter()
        .map(|row| row[1].as_str().expect("tag value").to_string())
        .collect();
    let mut expected: Vec<String> = names.iter().map(|(_, s)| s.clone()).collect();
    expected.sort();
    let mut stored_sorted = stored.clone();
    stored_sorted.sort();
    assert_eq!(stored_sorted, expected);

    // Every series, with its tags and values.
    let json = influxd.query("rt", r#"SELECT * FROM "genesys_queue" GROUP BY *"#);
    let series = json["results"][0]["series"].as_array().expect("series");
    assert_eq!(series.len(), names.len());
    let mut by_id: BTreeMap<String, (String, Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for s in series {
        let id = s["tags"]["queue_id"].as_str().unwrap().to_string();
        let name = s["tags"]["queue_name"].as_str().unwrap().to_string();
        let columns = s["columns"].as_array().unwrap().clone();
        let values = s["values"][0].as_array().unwrap().clone();
        by_id.insert(id, (name, columns, values));
    }
    for (i, (_, stored_name)) in names.iter().enumerate() {
        let (name, columns, values) = &by_id[&format!("q{i:02}")];
        assert_eq!(name, stored_name);
        let get = |c: &str| &values[columns.iter().position(|x| x == c).unwrap()];
        assert_eq!(get("time"), &Value::from(TS));
        assert_eq!(get("idle_max"), &Value::from(i as i64 - 5));
        assert_eq!(get("idle_mean").as_f64(), Some(3.0));
        assert_eq!(get("wait_seconds").as_f64(), Some(i as f64 + 0.25));
    }

    // Integer versus float, as InfluxDB typed them.
    let types = field_types(&influxd, "rt", &quote_ident("genesys_queue"));
    assert_eq!(types["idle_max"], "integer");
    assert_eq!(
        types["idle_mean"], "float",
        "a whole float written bare is a float"
    );
    assert_eq!(types["wait_seconds"], "float");

    // The odd measurement, tag keys and field keys.
    let measurements: Vec<Value> = influxd
        .rows("rt", "SHOW MEASUREMENTS")
        .into_iter()
        .map(|row| row[0].clone())
        .collect();
    assert_eq!(
        measurements,
        vec![Value::from("genesys_queue"), Value::from("odd meas,ure=x")]
    );
    let odd = quote_ident("odd meas,ure=x");
    let json = influxd.query("rt", &format!("SELECT * FROM {odd} GROUP BY *"));
    let s = &json["results"][0]["series"][0];
    assert_eq!(s["tags"]["key with space"], "v1");
    assert_eq!(s["tags"]["key,comma=eq"], "v2");
    let columns: Vec<&str> = s["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["time", "field with space", "field,comma=eq", "whole"]
    );
    assert_eq!(s["values"][0][1], Value::from(i64::MAX));
    assert_eq!(s["values"][0][2].as_f64(), Some(-0.0015));
    assert_eq!(s["values"][0][3].as_f64(), Some(42.0));
    let types = field_types(&influxd, "rt", &odd);
    assert_eq!(types["field with space"], "integer");
    assert_eq!(types["field,comma=eq"], "float");
    assert_eq!(types["whole"], "float");
}

/// `SHOW FIELD KEYS` as field name → `integer` / `float` / ...; `measurement` quoted.
fn field_types(influxd: &Influxd, db: &str, measurement: &str) -> BTreeMap<String, String> {
    influxd
        .rows(db, &format!("SHOW FIELD KEYS FROM {measurement}"))
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A field value as generated: integers of any size, floats that JSON carries exactly
/// (serde_json's default float parsing is not guaranteed exact), and now and then a
/// non-finite float, which must be left out.
#[derive(Debug, Clone, Copy, PartialEq)]
enum FieldValue {
    Integer(i64),
    Float(f64),
}

#[derive(Debug, Clone)]
struct GeneratedPoint {
    measurement: String,
    tags: Vec<(String, String)>,
    fields: Vec<(String, FieldValue)>,
}

/// Characters that stress the escaping, plus any Unicode scalar value.
fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => Just('\\'),
        4 => prop::sample::select(vec![' ', ',', '=', '"', '\'', '\n', '\r', '\t', '\0', '#']),
        1 => prop::char::range('\u{1}', '\u{1f}'),
        3 => prop::char::range('a', 'z'),
        2 => prop::char::range('\u{4e00}', '\u{9fff}'),
        2 => prop::char::range('\u{1f300}', '\u{1faff}'),
        2 => any::<char>(),
    ]
}

/// Short names, and now and then one of a few KiB (influxd refuses series keys over 64 KiB).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => prop::collection::vec(text_char(), 1..16),
        1 => prop::collection::vec(text_char(), 1000..1500),
    ]
    .prop_map(String::from_iter)
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        4 => any::<i64>().prop_map(FieldValue::Integer),
        // At most 14 significant digits: serde_json reads those exactly.
        4 => any::<i32>().prop_map(|n| FieldValue::Float(f64::from(n) / 64.0)),
        1 => prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
            .prop_map(FieldValue::Float),
    ]
}

/// A point influxd can store at all: measurement not a `#` comment, no key `time`, one
/// tag per key in the order `LineBuilder` wants, field keys distinct from each other and
/// from the tag keys (as InfluxDB stores them); measurements and field keys within
/// `LineBuilder::new`'s preconditions (what influxd 1.6 cuts, found by this test).
fn point() -> impl Strategy<Value = GeneratedPoint> {
    let starts_clean = |s: &String| !s.starts_with(['#', '\t', '\0']);
    (
        text().prop_filter("a measurement influxd 1.6 keeps", move |m| {
            starts_clean(m) && !m.contains(['\\', '\0'])
        }),
        prop::collection::vec(
            (text(), prop_oneof![9 => text(), 1 => Just(String::new())]),
            0..4,
        ),
        prop::collection::vec(
            (
                text().prop_filter("a field key influxd 1.6 keeps", starts_clean),
                field_value(),
            ),
            1..4,
        ),
    )
        .prop_map(|(measurement, mut tags, mut fields)| {
            tags.retain(|(key, _)| carried(key) != "time");
            tags.sort_by_cached_key(|(key, _)| escaped_key(key));
            tags.dedup_by_key(|(key, _)| escaped_key(key));
            let mut taken: BTreeSet<String> = tags.iter().map(|(key, _)| carried(key)).collect();
            taken.insert("time".into());
            fields.retain(|(key, _)| taken.insert(carried(key)));
            GeneratedPoint {
                measurement,
                tags,
                fields,
            }
        })
}

/// About 20 points, each in a measurement of its own and with keys no other point uses
/// (as InfluxDB stores them), so that one query over all measurements reads them apart.
fn batch() -> impl Strategy<Value = Vec<GeneratedPoint>> {
    prop::collection::vec(point(), 18..22).prop_map(|mut points| {
        let mut measurements = BTreeSet::new();
        points.retain(|p| measurements.insert(carried(&p.measurement)));
        let mut keys = BTreeSet::new();
        for point in &mut points {
            let own: BTreeSet<String> = point
                .tags
                .iter()
                .map(|(key, _)| carried(key))
                .chain(point.fields.iter().map(|(key, _)| carried(key)))
                .collect();
            let free = |key: &String| !keys.contains(&carried(key));
            point.tags.retain(|(key, _)| free(key));
            point.fields.retain(|(key, _)| free(key));
            keys.extend(own);
        }
        points
    })
}

/// How `LineBuilder` writes `key` as a tag key (its order for tags is by this form).
fn escaped_key(key: &str) -> String {
    let mut out = String::new();
    LineBuilder::new(&mut out, "m")
        .tag(key, "v")
        .field_i64("f", 1)
        .finish(0);
    out.strip_prefix("m,")
        .and_then(|rest| rest.strip_suffix("=v f=1i 0\n"))
        .unwrap_or_else(|| panic!("unexpected line {out:?}"))
        .to_string()
}

/// What line protocol carries of `text`: newline and carriage return become a space, and
/// so does a final backslash; then in a run of an odd number of backslashes right before
/// a space, comma or `=`, the last one does.
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

/// Generated batches of points with arbitrary Unicode measurements, tag keys and values
/// and field keys are written to a real influxd and come back as the contract promises:
/// every name carried, empty tags and non-finite fields left out, a point without a
/// finite field not written, integers and floats typed and valued exactly.
#[test]
fn generated_points_round_trip_through_influxd() {
    let influxd = Influxd::start_default();
    let case = Cell::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 16,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&batch(), |points| {
        case.set(case.get() + 1);
        let db = format!("generated{}", case.get());
        influxd.create_database(&db);
        let mut body = String::new();
        let written: Vec<bool> = points
            .iter()
            .zip(TS..)
            .map(|(point, ts)| encode(point, &mut body, ts))
            .collect();
        let (status, text) = influxd.write_raw(&db, body.as_bytes());
        prop_assert_eq!(status, 204, "write answered {}\nbody:\n{:?}", text, body);
        let mut expected = BTreeMap::new();
        for ((point, ts), written) in points.iter().zip(TS..).zip(written) {
            let stored = stored(point, ts);
            prop_assert_eq!(
                written,
                !stored.fields.is_empty(),
                "written iff a finite field: {:?}",
                point
            );
            if written {
                expected.insert(carried(&point.measurement), stored);
            }
        }
        let stored = read_back(&influxd, &db);
        for name in expected.keys().chain(stored.keys()) {
            prop_assert_eq!(
                stored.get(name),
                expected.get(name),
                "measurement {:?}; line:\n{:?}",
                name,
                body.lines().find(|l| l.contains(name.as_str()))
            );
        }
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}\ninfluxd log:\n{}", influxd.log());
    }
}

fn encode(point: &GeneratedPoint, out: &mut String, ts: i64) -> bool {
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
    line.finish(ts)
}

/// One point as InfluxDB keeps it: tags, then per field its value (integers as `i64`,
/// floats as `f64` bits, so that `3.0` and `3` compare apart) and type; and its time.
#[derive(Debug, PartialEq)]
struct Stored {
    tags: BTreeMap<String, String>,
    fields: BTreeMap<String, (String, Option<i64>, Option<u64>)>,
    time: Option<i64>,
}

/// What the contract promises InfluxDB keeps of `point`.
fn stored(point: &GeneratedPoint, ts: i64) -> Stored {
    Stored {
        tags: point
            .tags
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(key, value)| (carried(key), carried(value)))
            .collect(),
        fields: point
            .fields
            .iter()
            .filter_map(|(key, value)| {
                let kept = match *value {
                    FieldValue::Integer(v) => ("integer".to_string(), Some(v), None),
                    FieldValue::Float(v) if v.is_finite() => {
                        ("float".to_string(), None, Some((v + 0.0).to_bits()))
                    }
                    FieldValue::Float(_) => return None,
                };
                Some((carried(key), kept))
            })
            .collect(),
        time: Some(ts),
    }
}

/// Every point of `db` by measurement, read with one `SELECT` and one `SHOW FIELD KEYS`
/// over all measurements (a measurement with a NUL in its name cannot be named in
/// InfluxQL).
fn read_back(influxd: &Influxd, db: &str) -> BTreeMap<String, Stored> {
    let series = |influxql: &str| {
        influxd.query(db, influxql)["results"][0]["series"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let mut types: BTreeMap<(String, String), String> = BTreeMap::new();
    for s in series("SHOW FIELD KEYS FROM /.*/") {
        let name = s["name"].as_str().unwrap_or_default().to_string();
        for row in s["values"].as_array().into_iter().flatten() {
            let key = row[0].as_str().unwrap_or_default().to_string();
            let kind = row[1].as_str().unwrap_or_default().to_string();
            types.insert((name.clone(), key), kind);
        }
    }
    let mut points = BTreeMap::new();
    for s in series("SELECT * FROM /.*/ GROUP BY *") {
        let name = s["name"].as_str().unwrap_or_default().to_string();
        // Tags of other measurements come back empty: InfluxDB has no empty tag value.
        let tags = s["tags"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .filter(|(_, v)| !v.is_empty())
            .collect();
        let columns = s["columns"].as_array().cloned().unwrap_or_default();
        let values = s["values"][0].as_array().cloned().unwrap_or_default();
        let mut time = None;
        let mut fields = BTreeMap::new();
        for (column, value) in columns.iter().zip(values) {
            let column = column.as_str().unwrap_or_default().to_string();
            if column == "time" {
                time = value.as_i64();
            } else if !value.is_null() {
                let kind = types
                    .get(&(name.clone(), column.clone()))
                    .cloned()
                    .unwrap_or_default();
                let float = (kind == "float").then(|| value.as_f64().map(f64::to_bits));
                let integer = (kind == "integer").then(|| value.as_i64());
                fields.insert(column, (kind, integer.flatten(), float.flatten()));
            }
        }
        points.insert(name, Stored { tags, fields, time });
    }
    points
}
