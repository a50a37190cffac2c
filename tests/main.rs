//! The one integration-test crate (one link step instead of one per file).
//!
//! `util` holds the shared harness (temp dirs, a private `influxd`); each other module is
//! one area of black-box tests.

mod util;

mod core_pipeline;
mod line_protocol_roundtrip;
mod no_window_lost;
mod writer_influxd;
