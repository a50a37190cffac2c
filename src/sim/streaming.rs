//! The notification websocket of the simulated Genesys Cloud: a second listener on
//! 127.0.0.1 (`ws://`, the channel's `connectUri`), one thread per socket. Each socket
//! publishes, for every queue its channel is subscribed to, a message in the topic's
//! real shape when the queue's values change (only the metrics that changed, an instant
//! interval), at most once a second per queue; a heartbeat every `heartbeat_period`;
//! `pong` to a client's `ping`. One socket per channel: a newer one ends the older.
//! [`SocketFault`]s act on the sockets open when they are injected.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::json;

use super::values::{self, ExpectedObservation};
use super::{Shared, SocketFault};
use crate::genesys::paths;
use crate::time::{format_utc_ms, now_ms};
use crate::websocket::dial::Stream;
use crate::websocket::frame::{self, Opcode};
use crate::websocket::{WebSocket, MAX_MESSAGE_BYTES};

/// How often a socket looks at its queues, its faults and the client.
const TICK: Duration = Duration::from_millis(25);
/// A queue's topic publishes at most once per this long.
const MIN_GAP_MS: u64 = 1_000;
const HEARTBEAT: &str =
    r#"{"topicName":"channel.metadata","eventBody":{"message":"WebSocket Heartbeat"}}"#;
const PONG: &str = r#"{"topicName":"channel.metadata","eventBody":{"message":"pong"}}"#;
const CLOSING: &str = r#"{"topicName":"v2.system.socket_closing","version":"2","eventBody":{}}"#;
/// Sockets served at once.
const MAX_SOCKETS: usize = 64;

/// Binds the listener; returns its `ws://127.0.0.1:PORT` and the accept thread.
pub(super) fn start(shared: Arc<Shared>) -> std::io::Result<(String, JoinHandle<()>)> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    listener.set_nonblocking(true)?;
    let url = format!("ws://{}", listener.local_addr()?);
    let accept = thread::Builder::new()
        .name("sim-ws-accept".into())
        .spawn(move || accept_loop(listener, shared))?;
    Ok((url, accept))
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut sockets: Vec<JoinHandle<()>> = Vec::new();
    while !shared.stop.is_set() {
        match listener.accept() {
            Ok((stream, _)) => {
                sockets.retain(|s| !s.is_finished());
                if sockets.len() >= MAX_SOCKETS {
                    continue;
                }
                let shared = Arc::clone(&shared);
                if let Ok(handle) = thread::Builder::new()
                    .name("sim-ws".into())
                    .spawn(move || serve(stream, &shared))
                {
                    sockets.push(handle);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(TICK),
            Err(_) => thread::sleep(TICK),
        }
    }
    for socket in sockets {
        let _ = socket.join();
    }
}

/// What one socket knows about the queues it publishes.
#[derive(Debug, Default)]
struct Published {
    /// queue id → (slot last published, when).
    queues: HashMap<String, (u64, u64)>,
}

fn serve(stream: TcpStream, shared: &Shared) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(TICK)).is_err()
        || stream
            .set_write_timeout(Some(Duration::from_secs(5)))
            .is_err()
    {
        return;
    }
    // The client's stream type, so the websocket code is compiled once for both sides.
    let accepted = WebSocket::server(Stream::Plain(stream), |path| {
        let id = path.strip_prefix("/channels/").ok_or(404u16)?;
        let state = shared.lock();
        match state.channels.get(id) {
            Some(channel) if channel.expires_ms > now_ms() => Ok(()),
            _ => Err(404),
        }
    });
    let Ok((mut ws, path)) = accepted else {
        return;
    };
    let channel_id = path.trim_start_matches("/channels/").to_string();
    let (me, mut faults_seen) = {
        let mut state = shared.lock();
        state.connection_seq += 1;
        let me = state.connection_seq;
        if let Some(channel) = state.channels.get_mut(&channel_id) {
            channel.connection = me;
        }
        (me, state.socket_faults.len())
    };
    let mut published = Published::default();
    let mut stalled = false;
    let mut last_heartbeat = now_ms();
    while !shared.stop.is_set() {
        let now = now_ms();
        let (topics, faults, heartbeat_ms, seed, period_ms, random, media) = {
            let state = shared.lock();
            let Some(channel) = state
                .channels
                .get(&channel_id)
                .filter(|c| c.connection == me && c.expires_ms > now)
            else {
                break;
            };
            let o = &state.options;
            (
                Arc::clone(&channel.topics),
                state.socket_faults[faults_seen..].to_vec(),
                o.heartbeat_period.as_millis() as u64,
                o.seed,
                super::period_ms(o),
                o.changes_at_random_moments,
                o.media_types.clone(),
            )
        };
        faults_seen += faults.len();
        for fault in faults {
            match fault {
                SocketFault::Drop => return,
                SocketFault::StopHeartbeats => stalled = true,
                SocketFault::SocketClosing => {
                    let _ = ws.send_text(CLOSING);
                    thread::sleep(Duration::from_millis(100));
                    ws.close();
                    return;
                }
                SocketFault::Garbage => send_garbage(&mut ws),
                SocketFault::Oversized => {
                    let mut big = Vec::new();
                    frame::encode(
                        &mut big,
                        Opcode::Text,
                        &vec![b' '; MAX_MESSAGE_BYTES + 1],
                        None,
                    );
                    let _ = ws.send_raw(&big);
                }
            }
        }
        match ws.read_text() {
            Ok(Some(text)) if !stalled && text.contains("ping") => {
                if ws.send_text(PONG).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
        if stalled {
            continue;
        }
        if now.saturating_sub(last_heartbeat) >= heartbeat_ms {
            last_heartbeat = now;
            if ws.send_text(HEARTBEAT).is_err() {
                break;
            }
        }
        for (queue_id, index) in topics.iter() {
            let slot = values::slot(seed, *index, now, period_ms, random);
            let entry = published
                .queues
                .entry(queue_id.clone())
                .or_insert((slot, 0));
            if entry.0 == slot || now.saturating_sub(entry.1) < MIN_GAP_MS {
                continue;
            }
            let before = values::observation(seed, *index, entry.0, &media);
            let after = values::observation(seed, *index, slot, &media);
            *entry = (slot, now);
            let Some(message) = change_message(queue_id, &before, &after, now) else {
                continue;
            };
            if ws.send_text(&message).is_err() {
                return;
            }
            shared.lock().note_published(now, queue_id);
        }
    }
    ws.close();
}

/// The observations message for a change from `before` to `after`: the instant interval
/// with only the metrics that changed (the agent counts and the first media type that
/// changed, which names the group); `None` when nothing the topic carries changed.
/// Written as text: it is the simulator's hottest path under thousands of queues.
fn change_message(
    queue_id: &str,
    before: &ExpectedObservation,
    after: &ExpectedObservation,
    now: u64,
) -> Option<String> {
    let mut metrics = String::new();
    let mut push = |metric: &str, qualifier: &str, old: u64, new: u64| {
        if old != new {
            if !metrics.is_empty() {
                metrics.push(',');
            }
            metrics.push_str(&format!(r#"{{"metric":"{metric}""#));
            if !qualifier.is_empty() {
                metrics.push_str(&format!(r#","qualifier":"{qualifier}""#));
            }
            metrics.push_str(&format!(r#","stats":{{"count":{new}}}}}"#));
        }
    };
    let agents = [
        ("oOnQueueUsers", "IDLE", before.idle, after.idle),
        (
            "oOnQueueUsers",
            "INTERACTING",
            before.interacting,
            after.interacting,
        ),
        (
            "oOnQueueUsers",
            "COMMUNICATING",
            before.communicating,
            after.communicating,
        ),
        (
            "oOnQueueUsers",
            "NOT_RESPONDING",
            before.not_responding,
            after.not_responding,
        ),
        ("oOffQueueUsers", "", before.off_queue, after.off_queue),
        ("oActiveUsers", "", before.active, after.active),
        ("oMemberUsers", "", before.members, after.members),
    ];
    for (metric, qualifier, old, new) in agents {
        push(metric, qualifier, old, new);
    }
    let mut media_type = String::new();
    if let Some((old, new)) = before.media.iter().zip(&after.media).find(|(old, new)| {
        (old.waiting, old.interacting, old.alerting) != (new.waiting, new.interacting, new.alerting)
    }) {
        media_type = format!(r#","mediaType":{}"#, json_string(&new.media_type));
        push("oWaiting", "", old.waiting, new.waiting);
        push("oInteracting", "", old.interacting, new.interacting);
        push("oAlerting", "", old.alerting, new.alerting);
    }
    if metrics.is_empty() {
        return None;
    }
    let instant = format_utc_ms(now);
    Some(format!(
        r#"{{"topicName":{},"version":"2","eventBody":{{"group":{{"queueId":{}{media_type}}},"data":[{{"interval":"{instant}/{instant}","metrics":[{metrics}]}}]}},"metadata":{{"CorrelationId":"{now:x}"}}}}"#,
        json_string(&paths::observations_topic(queue_id)),
        json_string(queue_id),
    ))
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// Text that is not JSON, a topic nobody subscribed, a queue not on this channel, a
/// binary frame: a client must survive all of them.
fn send_garbage(ws: &mut WebSocket<Stream>) {
    let texts = [
        "{\"topicName\": \"v2.analytics.queues.".to_string(),
        json!({"topicName": "v2.users.9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f.presence", "version": "2",
               "eventBody": {"source": "PURECLOUD", "primary": true}}).to_string(),
        json!({"topicName": paths::observations_topic("not-a-queue-of-this-channel"), "version": "2",
               "eventBody": {"group": {"queueId": "not-a-queue-of-this-channel"}, "data": null}}).to_string(),
        "[]".to_string(),
    ];
    for text in texts {
        let _ = ws.send_text(&text);
    }
    let mut binary = Vec::new();
    frame::encode(&mut binary, Opcode::Binary, &[0, 159, 146, 150], None);
    let _ = ws.send_raw(&binary);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_message_has_the_topic_shape_with_only_what_changed() {
        let media = vec!["voice".to_string(), "chat".to_string()];
        let (before, after) = (0..50)
            .map(|slot| {
                (
                    values::observation(3, 4, slot, &media),
                    values::observation(3, 4, slot + 1, &media),
                )
            })
            .find(|(b, a)| b.idle != a.idle && b.media != a.media)
            .expect("some slot changes both");
        let text = change_message("q-1", &before, &after, 1_796_613_000_123).unwrap();
        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(message["topicName"], "v2.analytics.queues.q-1.observations");
        assert_eq!(message["version"], "2");
        assert_eq!(message["eventBody"]["group"]["queueId"], "q-1");
        let data = &message["eventBody"]["data"][0];
        assert_eq!(
            data["interval"],
            "2026-12-07T03:10:00.123Z/2026-12-07T03:10:00.123Z"
        );
        let metrics = data["metrics"].as_array().unwrap();
        let idle = metrics
            .iter()
            .find(|m| m["qualifier"] == "IDLE")
            .expect("the changed idle count");
        assert_eq!(idle["stats"]["count"], after.idle);
        assert!(metrics.len() < 10, "only what changed: {metrics:?}");
        assert_eq!(change_message("q-1", &after, &after, 0), None);
    }
}
