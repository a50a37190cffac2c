//! genesys2influx: Genesys Cloud queue observations and KPIs → InfluxDB line protocol.
//!
//! The binary (`main.rs`) is a thin shell over this library so that the integration tests
//! can reuse the simulated Genesys Cloud (`sim`) and the pure building blocks.
//! The shape of the running service is in [`pipeline`]: poller thread → aggregator thread
//! → writer thread, joined by bounded crossbeam channels.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod app;
pub mod buffer_pool;
mod check;
mod cli;
pub mod config;
mod demo;
mod duration;
mod envfile;
pub mod exit;
mod genesys;
pub mod http;
pub mod influx;
mod jitter;
mod kpi;
mod liveness;
mod logging;
pub mod loopback_http;
pub mod model;
mod notifications;
mod notify;
mod pipeline;
pub mod sim;
mod state_file;
pub mod stats;
#[cfg(test)]
mod testing;
mod time;
mod top;
mod wallboard;
mod websocket;
