//! The numbers the client's modules share: how many queues one observations request may
//! name (an API fact, docs/genesys-api.md#observations-request) and how many of a poll's
//! requests run at once. They live here, below `budget`, `client`, `observations` and
//! `poller`, so that those modules depend on this one and not on each other.

/// Queue ids per observations request (docs/genesys-api.md#observations-request).
pub const MAX_QUEUES_PER_REQUEST: usize = 100;
/// Observation requests of one poll under way at once: up to three chunks may be waiting
/// out a retry while the next one is sent on schedule. The client keeps one answer
/// buffer per request in flight.
pub const REQUESTS_IN_FLIGHT: usize = 4;
