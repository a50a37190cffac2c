//! The request paths of the Genesys Cloud API, defined once: the client sends them and
//! the simulator ([`crate::sim`]) routes them. A leaf of plain constants, so the
//! simulator depends on this and on nothing else of the client (it speaks JSON over
//! HTTP), and no module of the client depends on the simulator.

/// Client-credentials login on the login host (docs/genesys-api.md#token-request).
pub const TOKEN: &str = "/oauth/token";
/// The paged queue listing (docs/genesys-api.md#queues-paging).
pub const QUEUES: &str = "/api/v2/routing/queues";
/// The observations query (docs/genesys-api.md#observations-request).
pub const OBSERVATIONS: &str = "/api/v2/analytics/queues/observations/query";
/// The conversation-aggregates query (docs/genesys-api.md#aggregates-request).
pub const AGGREGATES: &str = "/api/v2/analytics/conversations/aggregates/query";
