//! The one integration-test crate (one link step instead of one per file).
//!
//! `util` holds the shared harness (temp dirs, a private `influxd`); each other module is
//! one area of black-box tests.

// Test code slices known-ASCII fixtures and outputs by byte index; a panic only fails a test.
#![allow(clippy::string_slice)]

mod util;

mod check_command;
mod core_pipeline;
mod dashboard;
mod demo_command;
mod docs_references;
mod genesys_resilience;
mod kpis;
mod line_protocol_roundtrip;
mod live_updates;
mod no_window_lost;
mod notifications;
mod observability;
mod sharding;
mod systemd_notify;
mod terminal_view;
mod writer_influxd;
