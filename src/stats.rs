//! Counters behind the `genesys2influx` self-metrics measurement.
//!
//! Every thread bumps the same [`Stats`] (lock-free atomics); the aggregator takes a
//! [`StatsSnapshot`] at each window end, which resets the per-window counters, and writes
//! it as one point through the normal writer path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::influx::line_protocol::LineBuilder;

#[derive(Debug, Default)]
pub struct Stats {
    pub polls: AtomicU64,
    pub poll_errors: AtomicU64,
    pub api_requests: AtomicU64,
    pub api_rate_limited: AtomicU64,
    pub token_refreshes: AtomicU64,
    /// Gauge: queues selected now.
    pub queues: AtomicU64,
    pub points_written: AtomicU64,
    pub write_errors: AtomicU64,
    pub lines_spooled: AtomicU64,
    pub lines_dropped: AtomicU64,
    /// Gauge: bytes in the spool now.
    pub spool_bytes: AtomicU64,
    pub poll_ms_max: AtomicU64,
    pub write_ms_max: AtomicU64,
    /// Points of the windows in progress written by live updates.
    pub live_points_written: AtomicU64,
    /// Live updates dropped: the writer was behind, or InfluxDB was failing.
    pub live_updates_skipped: AtomicU64,
    /// Websocket messages for selected queues (Notifications API).
    pub notifications_received: AtomicU64,
    /// Observation requests re-polled early because a queue changed.
    pub early_polls: AtomicU64,
    /// Changes left to the regular poll because the request budget was used up.
    pub early_polls_skipped: AtomicU64,
    /// Notification websocket (re)connections after the first.
    pub notification_reconnects: AtomicU64,
}

/// The self-metrics fields in the order they are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub polls: u64,
    pub poll_errors: u64,
    pub api_requests: u64,
    pub api_rate_limited: u64,
    pub token_refreshes: u64,
    pub queues: u64,
    pub points_written: u64,
    pub write_errors: u64,
    pub lines_spooled: u64,
    pub lines_dropped: u64,
    pub spool_bytes: u64,
    pub poll_ms_max: u64,
    pub write_ms_max: u64,
    pub live_points_written: u64,
    pub live_updates_skipped: u64,
    pub notifications_received: u64,
    pub early_polls: u64,
    pub early_polls_skipped: u64,
    pub notification_reconnects: u64,
}

impl StatsSnapshot {
    /// `(field name, value)` pairs in contract order.
    pub fn fields(&self) -> [(&'static str, u64); 19] {
        [
            ("polls", self.polls),
            ("poll_errors", self.poll_errors),
            ("api_requests", self.api_requests),
            ("api_rate_limited", self.api_rate_limited),
            ("token_refreshes", self.token_refreshes),
            ("queues", self.queues),
            ("points_written", self.points_written),
            ("write_errors", self.write_errors),
            ("lines_spooled", self.lines_spooled),
            ("lines_dropped", self.lines_dropped),
            ("spool_bytes", self.spool_bytes),
            ("poll_ms_max", self.poll_ms_max),
            ("write_ms_max", self.write_ms_max),
            ("live_points_written", self.live_points_written),
            ("live_updates_skipped", self.live_updates_skipped),
            ("notifications_received", self.notifications_received),
            ("early_polls", self.early_polls),
            ("early_polls_skipped", self.early_polls_skipped),
            ("notification_reconnects", self.notification_reconnects),
        ]
    }
}

/// Measurement of the service's own health.
pub const SELF_MEASUREMENT: &str = "genesys2influx";

impl StatsSnapshot {
    /// Appends the `genesys2influx` point: tag `instance` plus the static tags, all fields integers.
    pub fn encode(
        &self,
        out: &mut String,
        instance: &str,
        static_tags: &[(String, String)],
        timestamp_s: i64,
    ) {
        let mut tags: Vec<(&str, &str)> = static_tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        tags.push(("instance", instance));
        tags.sort_unstable_by_key(|(k, _)| *k);
        let line = tags
            .into_iter()
            .fold(LineBuilder::new(out, SELF_MEASUREMENT), |l, (k, v)| {
                l.tag(k, v)
            });
        let line = self.fields().into_iter().fold(line, |l, (k, v)| {
            l.field_i64(k, i64::try_from(v).unwrap_or(i64::MAX))
        });
        line.finish(timestamp_s);
    }
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Relaxed);
    }

    pub fn raise_to(max: &AtomicU64, value: u64) {
        max.fetch_max(value, Relaxed);
    }

    /// Reads every field and resets the per-window counters (not the gauges).
    pub fn take_window(&self) -> StatsSnapshot {
        let take = |c: &AtomicU64| c.swap(0, Relaxed);
        StatsSnapshot {
            polls: take(&self.polls),
            poll_errors: take(&self.poll_errors),
            api_requests: take(&self.api_requests),
            api_rate_limited: take(&self.api_rate_limited),
            token_refreshes: take(&self.token_refreshes),
            queues: self.queues.load(Relaxed),
            points_written: take(&self.points_written),
            write_errors: take(&self.write_errors),
            lines_spooled: take(&self.lines_spooled),
            lines_dropped: take(&self.lines_dropped),
            spool_bytes: self.spool_bytes.load(Relaxed),
            poll_ms_max: take(&self.poll_ms_max),
            write_ms_max: take(&self.write_ms_max),
            live_points_written: take(&self.live_points_written),
            live_updates_skipped: take(&self.live_updates_skipped),
            notifications_received: take(&self.notifications_received),
            early_polls: take(&self.early_polls),
            early_polls_skipped: take(&self.early_polls_skipped),
            notification_reconnects: take(&self.notification_reconnects),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_snapshot_resets_counters_but_not_gauges() {
        let stats = Stats::default();
        Stats::incr(&stats.polls);
        Stats::add(&stats.api_requests, 3);
        Stats::set(&stats.queues, 250);
        Stats::raise_to(&stats.poll_ms_max, 12);
        Stats::raise_to(&stats.poll_ms_max, 7);
        let first = stats.take_window();
        assert_eq!(
            (
                first.polls,
                first.api_requests,
                first.queues,
                first.poll_ms_max
            ),
            (1, 3, 250, 12)
        );
        let second = stats.take_window();
        assert_eq!(
            (
                second.polls,
                second.api_requests,
                second.queues,
                second.poll_ms_max
            ),
            (0, 0, 250, 0)
        );
    }

    #[test]
    fn the_self_metrics_point_has_every_contract_field_as_an_integer() {
        let snapshot = StatsSnapshot {
            polls: 6,
            queues: 250,
            spool_bytes: 1024,
            ..StatsSnapshot::default()
        };
        let mut out = String::new();
        snapshot.encode(
            &mut out,
            "edge1",
            &[("site".into(), "hq".into())],
            1_748_874_600,
        );
        assert_eq!(
            out,
            "genesys2influx,instance=edge1,site=hq polls=6i,poll_errors=0i,api_requests=0i,api_rate_limited=0i,\
token_refreshes=0i,queues=250i,points_written=0i,write_errors=0i,lines_spooled=0i,lines_dropped=0i,\
spool_bytes=1024i,poll_ms_max=0i,write_ms_max=0i,live_points_written=0i,live_updates_skipped=0i,\
notifications_received=0i,early_polls=0i,early_polls_skipped=0i,notification_reconnects=0i 1748874600\n"
        );
    }
}
