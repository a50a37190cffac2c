//! Everything that talks to Genesys Cloud (the simulated one is `crate::sim`).

pub mod aggregates;
pub mod auth;
pub mod budget;
pub mod client;
pub mod filter;
pub mod lenient;
pub mod observations;
pub mod paths;
pub mod poller;
pub mod queues;
pub mod region;
