//! genesys2influx: Genesys Cloud queue observations and KPIs → InfluxDB line protocol.
//!
//! The binary (`main.rs`) is a thin shell over this library so that the integration tests
//! can reuse the simulated Genesys Cloud (`sim`) and the pure building blocks.
//! The shape of the running service is in [`pipeline`]: poller thread → aggregator thread
//! → writer thread, joined by bounded crossbeam channels.
#![forbid(unsafe_code)]

pub mod aggregate;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod duration;
pub mod envfile;
pub mod exit;
pub mod genesys;
pub mod http;
pub mod influx;
mod jitter;
pub mod kpi;
pub mod logging;
pub mod loopback_http;
pub mod model;
pub mod notify;
pub mod pipeline;
pub mod sim;
pub mod state_file;
pub mod stats;
pub mod time;
pub mod top;
pub mod wallboard;
