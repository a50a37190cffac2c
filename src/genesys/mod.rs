//! Everything that talks to (or pretends to be) Genesys Cloud.

pub mod auth;
pub mod budget;
pub mod client;
pub mod conversation_aggregates;
pub mod error;
pub mod filter;
pub mod lenient;
pub mod observations;
pub mod poller;
pub mod poller_start;
pub mod queues;
pub mod region;
pub mod retry;
pub mod sim;
pub mod ticks;
