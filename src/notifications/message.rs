//! Reading one websocket message of a notification channel
//! (docs/genesys-api.md#notifications): which followed queue it says changed, or whether
//! it is a heartbeat, a pong, the server's announcement that it will close the socket, or
//! a refused subscription. Every field is optional and any text may arrive; nothing here
//! can panic, and a queue is named only when it is one the channel follows, so no message
//! can hint a queue that is not selected or an id that is malformed.
//!
//! The message is only a hint: which metrics it carries, for which interval, does not
//! matter (the poll re-reads the queue). A message for a followed queue whose
//! `eventBody.group.queueId` names another queue is ignored as inconsistent.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use super::topic;

/// What one message means to the notifications thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// The observations of a followed queue changed (the id is the channel's own copy).
    QueueChanged(&'a Arc<str>),
    /// `channel.metadata` "WebSocket Heartbeat".
    Heartbeat,
    /// The answer to the client's `ping`.
    Pong,
    /// `v2.system.socket_closing`: the server will close this socket soon.
    SocketClosing,
    /// `{"result": "400", "status": "error", "message": …}`: a subscription was refused.
    Error(String),
    /// Anything else: other topics, queues not followed, text that is not JSON.
    Ignored,
}

const HEARTBEAT_TOPIC: &str = "channel.metadata";
const CLOSING_TOPIC: &str = "v2.system.socket_closing";
/// Longest piece of a server's error text kept for the log.
const MAX_ERROR_TEXT: usize = 200;

/// Reads `text` against the queue ids the channel follows.
pub fn read<'a>(text: &str, followed: &'a HashSet<Arc<str>>) -> Message<'a> {
    let Ok(Value::Object(envelope)) = serde_json::from_str::<Value>(text) else {
        return Message::Ignored;
    };
    let body = envelope.get("eventBody");
    let body_message = body.and_then(|b| b.get("message")).and_then(Value::as_str);
    match envelope.get("topicName").and_then(Value::as_str) {
        Some(HEARTBEAT_TOPIC) => match body_message {
            Some(m) if m.eq_ignore_ascii_case("pong") => Message::Pong,
            Some(m) if m.to_ascii_lowercase().contains("heartbeat") => Message::Heartbeat,
            _ => Message::Ignored,
        },
        Some(CLOSING_TOPIC) => Message::SocketClosing,
        Some(name) => {
            changed_queue(name, body, followed).map_or(Message::Ignored, Message::QueueChanged)
        }
        None => untopical(&envelope),
    }
}

/// The followed queue of an observations message, unless its body names another queue.
fn changed_queue<'a>(
    topic_name: &str,
    body: Option<&Value>,
    followed: &'a HashSet<Arc<str>>,
) -> Option<&'a Arc<str>> {
    let id = followed.get(topic::queue_of(topic_name)?)?;
    match body
        .and_then(|b| b.get("group"))
        .and_then(|g| g.get("queueId"))
    {
        Some(Value::String(named)) if named.as_str() != &**id => None,
        _ => Some(id),
    }
}

/// A message without a topic: a pong or an error answer to a client frame.
fn untopical(envelope: &serde_json::Map<String, Value>) -> Message<'static> {
    let text = |key: &str| envelope.get(key).and_then(Value::as_str);
    if text("message").is_some_and(|m| m.eq_ignore_ascii_case("pong")) {
        return Message::Pong;
    }
    let failed = text("status").is_some_and(|s| s.eq_ignore_ascii_case("error"))
        || text("result").is_some_and(|r| !r.starts_with('2'));
    if !failed {
        return Message::Ignored;
    }
    let why: String = text("message")
        .unwrap_or("no message")
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ERROR_TEXT)
        .collect();
    Message::Error(format!(
        "result {}: {why}",
        text("result")
            .unwrap_or("?")
            .chars()
            .take(8)
            .collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const QUEUE: &str = "4f0c5d2e-8a1b-4c3d-9e7f-0a1b2c3d4e5f";

    /// A fixture copied from the shared real captures (tests/fixtures/genesys/notifications).
    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/genesys/notifications/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture")
    }

    fn followed() -> HashSet<Arc<str>> {
        [Arc::from(QUEUE), Arc::from("another-queue")]
            .into_iter()
            .collect()
    }

    /// A whole observations message around a captured `eventBody.data`.
    fn observations_message(queue: &str, group_queue: &str, data: &str) -> String {
        format!(
            r#"{{"topicName":"v2.analytics.queues.{queue}.observations","version":"2","eventBody":{{"group":{{"queueId":"{group_queue}","mediaType":"voice"}},"data":{data}}},"metadata":{{"CorrelationId":"290034f4-c3d7-46fd-8342-ee5bc859b7e9"}}}}"#
        )
    }

    #[test]
    fn the_real_captures_read_as_what_they_are() {
        let followed = followed();
        for data in [
            "queue-observations-eventbody-data-instant.json",
            "queue-observations-eventbody-data-half-hour.json",
        ] {
            let text = observations_message(QUEUE, QUEUE, &fixture(data));
            assert_eq!(
                read(&text, &followed),
                Message::QueueChanged(followed.get(QUEUE).unwrap())
            );
        }
        assert_eq!(
            read(&fixture("envelope-users-presence.json"), &followed),
            Message::Ignored
        );
        assert_eq!(
            read(&fixture("subscribe-error.json"), &followed),
            Message::Error("result 400: Required data missing from subscribe request.".into())
        );
        assert_eq!(
            read(&fixture("channel-create.json"), &followed),
            Message::Ignored
        );
    }

    #[test]
    fn control_messages() {
        let f = followed();
        assert_eq!(
            read(
                r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#,
                &f
            ),
            Message::Heartbeat
        );
        assert_eq!(
            read(
                r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#,
                &f
            ),
            Message::Pong
        );
        assert_eq!(read(r#"{"message":"pong"}"#, &f), Message::Pong);
        assert_eq!(
            read(
                r#"{"topicName":"v2.system.socket_closing","eventBody":{}}"#,
                &f
            ),
            Message::SocketClosing
        );
    }

    #[test]
    fn unfollowed_inconsistent_and_broken_messages_hint_nothing() {
        let f = followed();
        let data = fixture("queue-observations-eventbody-data-instant.json");
        for text in [
            observations_message("not-followed", "not-followed", &data),
            observations_message(QUEUE, "another-queue", &data),
            observations_message(&format!("{QUEUE}.x"), QUEUE, &data),
            "not json".to_string(),
            "[1,2]".to_string(),
            r#"{"topicName":7}"#.to_string(),
        ] {
            assert_eq!(read(&text, &f), Message::Ignored, "{text}");
        }
        // No body, or a body of another shape, still says the queue changed.
        let bare = format!(r#"{{"topicName":"v2.analytics.queues.{QUEUE}.observations"}}"#);
        assert!(matches!(read(&bare, &f), Message::QueueChanged(_)));
    }

    /// Any JSON at the places an envelope has: whatever is hinted is a followed queue,
    /// and only through its own topic.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z0-9 .\\-]{0,12}".prop_map(Value::String),
            Just(Value::String(QUEUE.into())),
            Just(Value::String(format!(
                "v2.analytics.queues.{QUEUE}.observations"
            ))),
            Just(Value::String("v2.analytics.queues.x.observations".into())),
            Just(Value::String("channel.metadata".into())),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("topicName".to_string()),
                        Just("eventBody".to_string()),
                        Just("group".to_string()),
                        Just("queueId".to_string()),
                        Just("message".to_string()),
                        Just("result".to_string()),
                        Just("status".to_string()),
                        "[a-z]{1,6}",
                    ],
                    inner,
                    0..5
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_never_panics(text in any::<String>()) {
            let f = followed();
            let _ = read(&text, &f);
        }

        #[test]
        fn any_envelope_hints_only_a_followed_queue_through_its_topic(envelope in any_json()) {
            let f = followed();
            if let Message::QueueChanged(id) = read(&envelope.to_string(), &f) {
                prop_assert!(f.contains(&**id));
                let topic_name = envelope["topicName"].as_str().unwrap_or_default();
                prop_assert_eq!(topic::queue_of(topic_name), Some(&**id));
            }
        }

        /// The real captures, damaged anywhere: no panic, and a hint only for the queue
        /// of the topic.
        #[test]
        fn mutated_real_captures_hint_only_their_queue(
            which in 0..2usize,
            mutations in crate::genesys::lenient::mutation::mutations()
        ) {
            let data = fixture([
                "queue-observations-eventbody-data-instant.json",
                "queue-observations-eventbody-data-half-hour.json",
            ][which]);
            let mut doc: Value =
                serde_json::from_str(&observations_message(QUEUE, QUEUE, &data)).unwrap();
            crate::genesys::lenient::mutation::apply(&mut doc, &mutations);
            let f = followed();
            if let Message::QueueChanged(id) = read(&doc.to_string(), &f) {
                prop_assert_eq!(&**id, QUEUE);
            }
        }
    }
}
