//! Everything that encodes and delivers InfluxDB line protocol.

pub mod line_protocol;
pub mod spool;
pub mod writer;
