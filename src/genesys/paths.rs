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
/// Notification channels: `POST` creates one (docs/genesys-api.md#notifications).
pub const NOTIFICATION_CHANNELS: &str = "/api/v2/notifications/channels";
/// What follows a channel's id in the path of its topic list (`PUT` replaces the list).
pub const SUBSCRIPTIONS_SUFFIX: &str = "/subscriptions";

/// `PUT` path of a channel's topic list. The id is the one Genesys gave; anything outside
/// the characters such ids use is percent-encoded, so it cannot change the path.
pub fn subscriptions(channel_id: &str) -> String {
    let mut path = String::from(NOTIFICATION_CHANNELS);
    path.push('/');
    for b in channel_id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path.push_str(SUBSCRIPTIONS_SUFFIX);
    path
}

const TOPIC_PREFIX: &str = "v2.analytics.queues.";
const TOPIC_SUFFIX: &str = ".observations";

/// The notification topic of a queue's observations (docs/genesys-api.md#notifications).
pub fn observations_topic(queue_id: &str) -> String {
    format!("{TOPIC_PREFIX}{queue_id}{TOPIC_SUFFIX}")
}

/// The queue id of an observations topic; `None` for any other topic or an empty id.
pub fn queue_of_topic(topic: &str) -> Option<&str> {
    let id = topic
        .strip_prefix(TOPIC_PREFIX)?
        .strip_suffix(TOPIC_SUFFIX)?;
    (!id.is_empty() && !id.contains('.')).then_some(id)
}
