//! Everything that encodes and delivers InfluxDB line protocol.

mod backlog;
mod delivery;
pub mod endpoint;
mod gzip;
pub mod line_protocol;
pub mod live;
mod policy;
mod rewrite;
mod shutdown;
pub mod spool;
#[cfg(test)]
mod testing;
mod transport;
mod unreported;
pub mod writer;
