//! Everything that talks to Genesys Cloud (the simulated one is `crate::sim`).

pub mod answer_buffers;
pub mod auth;
pub mod budget;
pub mod client;
pub mod conversation_aggregates;
pub mod early;
pub mod early_poller;
pub mod error;
pub mod filter;
pub mod lenient;
pub mod observations;
pub mod paths;
pub mod poller;
pub mod poller_start;
pub mod queues;
pub mod region;
pub mod retry;
pub mod ticks;
