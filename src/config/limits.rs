//! The default and the accepted range of every number and duration, named once.
//!
//! `from_lookup` checks each variable against these; `--help` and the README show the
//! same figures. A range keeps a value where the service still does what its name says
//! (a poll longer than an hour is not real time; a spool smaller than one segment
//! cannot hold one).

use std::time::Duration;

use crate::influx::spool::MIN_SEGMENT_BYTES;

pub(super) const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_QUEUE_REFRESH: Duration = Duration::from_secs(300);
pub(super) const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
pub(super) const DEFAULT_SPOOL_MAX_BYTES: u64 = 104_857_600;
pub(super) const DEFAULT_KPI_BUCKET: Duration = Duration::from_secs(15 * 60);
pub(super) const DEFAULT_KPI_POLL: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_KPI_LOOKBACK: Duration = Duration::from_secs(10 * 60);
/// Genesys allows 300 requests per minute per client-credentials token (docs/genesys-api.md#rate-limits).
pub(super) const DEFAULT_REQUESTS_PER_MINUTE: u32 = 300;

// Accepted values, bounds inclusive.
/// Whole seconds; a poll longer than an hour is no longer real time.
pub(super) const POLL_INTERVAL_RANGE: (Duration, Duration) = (SECOND, HOUR);
/// Windows are stamped with their start; a longer one would not be a wallboard value.
pub(super) const MAX_WINDOW: Duration = DAY;
/// Upper bound of `QUEUE_REFRESH`. Its lower bound is `POLL_INTERVAL`: refreshing the
/// list more often than polling it only spends the request budget (and widens the poll).
pub(super) const MAX_QUEUE_REFRESH: Duration = DAY;
pub(super) const HTTP_TIMEOUT_RANGE: (Duration, Duration) = (SECOND, Duration::from_secs(300));
/// At least a second, so a clean stop can deliver the final window.
pub(super) const SHUTDOWN_TIMEOUT_RANGE: (Duration, Duration) = (SECOND, Duration::from_secs(600));
/// From one spool segment of the smallest size (64 KiB) to 1 TiB.
pub(super) const SPOOL_MAX_BYTES_RANGE: (u64, u64) = (MIN_SEGMENT_BYTES, 1 << 40);
pub(super) const REQUESTS_PER_MINUTE_RANGE: (u64, u64) = (1, 1_000_000);
pub(super) const KPI_POLL_RANGE: (Duration, Duration) = (SECOND, HOUR);
pub(super) const KPI_LOOKBACK_RANGE: (Duration, Duration) = (Duration::ZERO, DAY);
const SECOND: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
pub(super) const DAY: Duration = Duration::from_secs(86_400);
