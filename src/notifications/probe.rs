//! `check`'s notifications line: can a channel be created, a queue's observations topic
//! subscribed and the channel's websocket opened? The same requests the service makes,
//! once; the channel is left to expire (Genesys has no request to delete one).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel;
use crate::config::HttpConfig;
use crate::genesys::client::GenesysClient;
use crate::genesys::error::ApiError;

/// What failed.
#[derive(Debug)]
pub enum ProbeError {
    /// A request: which step, and the API's error.
    Api(&'static str, ApiError),
    /// The websocket (or its TLS settings).
    Socket(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Api(step, error) => write!(f, "{step}: {error}"),
            ProbeError::Socket(why) => f.write_str(why),
        }
    }
}

/// Creates a channel, subscribes `queue_id`'s topic and opens the websocket; `Ok` says
/// what worked.
pub fn probe(
    client: &GenesysClient,
    http: &HttpConfig,
    queue_id: &str,
) -> Result<String, ProbeError> {
    let deadline = || Instant::now() + http.timeout;
    let created = channel::create(client, deadline())
        .map_err(|e| ProbeError::Api("cannot create a notification channel", e))?;
    let one: HashSet<Arc<str>> = [Arc::from(queue_id)].into_iter().collect();
    channel::subscribe(client, &created, &one, deadline()).map_err(|e| {
        ProbeError::Api(
            "channel created, but subscribing a queue's observations topic failed",
            e,
        )
    })?;
    let tls = crate::websocket::dial::tls_config(http.tls_ca_file.as_deref())
        .map_err(ProbeError::Socket)?;
    let mut socket =
        crate::websocket::dial::connect(&created.connect_uri, &tls, &http.proxy, http.timeout)
            .map_err(|e| {
                ProbeError::Socket(format!(
            "channel created and topic subscribed, but its websocket at {} cannot be opened: {e}",
            created.server()
        ))
            })?;
    socket.close();
    let lifetime = created.expires_ms.saturating_sub(created.created_ms) / 1000;
    Ok(format!(
        "channel created (expires in {}), a queue's observations topic subscribed, websocket opened",
        crate::duration::format(Duration::from_secs(lifetime))
    ))
}
