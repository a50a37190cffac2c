//! The Notifications API's two requests (docs/genesys-api.md#notifications): creating a
//! channel and replacing its topic list. The channels live in the Sim's state; the
//! websocket that publishes on them is `streaming`.

use std::sync::Arc;

use serde_json::{json, Value};

use super::errors::{bad_request, error};
use super::{Shared, SimChannel};
use crate::genesys::paths;
use crate::loopback_http::{Request, Response};
use crate::time::{format_utc_ms, now_ms};

/// Topics one channel accepts (docs/genesys-api.md#notifications).
pub const MAX_TOPICS: usize = 1_000;
/// `POST /api/v2/notifications/channels`.
pub(super) fn create(shared: &Shared) -> Response {
    let now = now_ms();
    let mut state = shared.lock();
    let n = state.rng.next_u64();
    let id = format!("streaming-0-{n:016x}");
    let lifetime = state.options.channel_lifetime.as_millis() as u64;
    let connect_uri = format!("{}/channels/{id}", state.streaming_url);
    state.channels.insert(
        id.clone(),
        SimChannel {
            topics: Arc::new(Vec::new()),
            expires_ms: now + lifetime,
            connection: 0,
        },
    );
    Response::json(
        200,
        &json!({
            "connectUri": connect_uri,
            "id": id,
            "expires": format_utc_ms(now + lifetime),
        }),
    )
}

/// The channel id of a subscriptions path.
pub(super) fn channel_of(path: &str) -> Option<&str> {
    path.strip_prefix(paths::NOTIFICATION_CHANNELS)?
        .strip_prefix('/')?
        .strip_suffix(paths::SUBSCRIPTIONS_SUFFIX)
        .filter(|id| !id.is_empty() && !id.contains('/'))
}

/// Queue ids of a subscriptions body (`[{"id": topic}, …]`); topics of other kinds are
/// kept out.
pub(super) fn queue_ids(body: &[u8]) -> Option<Vec<String>> {
    let Value::Array(entries) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let mut ids = Vec::new();
    for entry in entries {
        let topic = entry.get("id")?.as_str()?;
        if let Some(id) = paths::queue_of_topic(topic) {
            ids.push(id.to_string());
        }
    }
    Some(ids)
}

/// `PUT /api/v2/notifications/channels/{id}/subscriptions`: replaces the topic list.
pub(super) fn subscribe(shared: &Shared, req: &Request, context: &str) -> Response {
    let Some(ids) = queue_ids(&req.body) else {
        return bad_request(context);
    };
    if ids.len() > MAX_TOPICS {
        return error(
            400,
            "notification.subscription.limit",
            &format!("A channel may have at most {MAX_TOPICS} topics."),
            context,
        );
    }
    let now = now_ms();
    let mut state = shared.lock();
    let resolved: Vec<(String, u64)> = ids
        .iter()
        .filter_map(|id| {
            let q = state.queues.iter().find(|q| &q.id == id)?;
            Some((q.id.clone(), q.index))
        })
        .collect();
    let Some(channel) = channel_of(&req.path)
        .and_then(|id| state.channels.get_mut(id))
        .filter(|c| c.expires_ms > now)
    else {
        return error(404, "not.found", "The channel was not found.", context);
    };
    channel.topics = Arc::new(resolved);
    let entities: Vec<Value> = ids
        .iter()
        .map(|id| json!({ "id": paths::observations_topic(id) }))
        .collect();
    Response::json(200, &json!({ "entities": entities }))
}
