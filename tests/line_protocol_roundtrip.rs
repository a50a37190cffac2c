//! Points encoded by `LineBuilder` go to a real influxd 1.6 and come back byte for byte:
//! odd queue names as tag values, odd characters in measurement and field keys, integer
//! versus float field types.

use std::collections::BTreeMap;

use genesys2influx::influx::line_protocol::LineBuilder;
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
        same(r"a\,b and a\ b and x\=y"),
        same(r"\leading backslash"),
        same("=starts with equals"),
        same(",starts with comma"),
        (r"two trailing\\".into(), r"two trailing\ ".into()),
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
    let types = field_types(&influxd, "genesys_queue");
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
    let types = field_types(&influxd, "odd meas,ure=x");
    assert_eq!(types["field with space"], "integer");
    assert_eq!(types["field,comma=eq"], "float");
    assert_eq!(types["whole"], "float");
}

/// `SHOW FIELD KEYS` as field name → `integer` / `float` / ...
fn field_types(influxd: &Influxd, measurement: &str) -> BTreeMap<String, String> {
    influxd
        .rows(
            "rt",
            &format!("SHOW FIELD KEYS FROM {}", quote_ident(measurement)),
        )
        .iter()
        .map(|row| {
            (
                row[0].as_str().unwrap().to_string(),
                row[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}
