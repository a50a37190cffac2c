//! What a wallboard reading InfluxDB shows: each queue's newest agent `_last` values, and
//! when each new set was first seen. Shared by the notifications tests and the freshness
//! bench, which both time a change in the simulator to the moment it is readable.

use std::collections::HashMap;

use genesys2influx::model::AGENT_METRICS;

use super::gate::now_ms;
use super::influxd::Influxd;

/// Per queue id, each new set of agent `_last` values (in [`AGENT_METRICS`] order) and
/// when it was first seen (ms since the epoch).
pub type Sightings = HashMap<String, Vec<(u64, [f64; 8])>>;

/// Reads every queue's newest `genesys_queue` point of this and the last window (of
/// `window_ms`) from `db` into `seen`; returns when the read was answered.
pub fn read_into(influx: &Influxd, db: &str, window_ms: u64, seen: &mut Sightings) -> u64 {
    let now = now_ms();
    let since = now - now % window_ms - window_ms;
    let fields = AGENT_METRICS
        .iter()
        .map(|m| format!("\"{m}_last\""))
        .collect::<Vec<_>>()
        .join(", ");
    let query = format!(
        "SELECT {fields} FROM genesys_queue WHERE time >= {since}ms \
         GROUP BY \"queue_id\" ORDER BY time DESC LIMIT 1"
    );
    let json = influx.query(db, &query);
    let stamp = now_ms();
    for series in json["results"][0]["series"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(id) = series["tags"]["queue_id"].as_str() else {
            continue;
        };
        let row = &series["values"][0];
        let mut values = [f64::NAN; 8];
        for (i, value) in values.iter_mut().enumerate() {
            // Column 0 is the time.
            *value = row[i + 1].as_f64().unwrap_or(f64::NAN);
        }
        let history = seen.entry(id.to_string()).or_default();
        if history.last().is_none_or(|(_, last)| *last != values) {
            history.push((stamp, values));
        }
    }
    stamp
}
