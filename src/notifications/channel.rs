//! A notification channel's two requests (docs/genesys-api.md#notifications): create one
//! (`POST /api/v2/notifications/channels`) and replace its topic list (`PUT
//! …/{id}/subscriptions`). Both go through the one Genesys client, so they renew the token,
//! retry like every request and count against `GENESYS_REQUESTS_PER_MINUTE`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::topic;
use crate::genesys::client::GenesysClient;
use crate::genesys::error::ApiError;
use crate::genesys::{lenient, paths};

/// Characters of a channel id shown in messages.
const LABEL_CHARS: usize = 16;
/// A channel's life when its answer says nothing usable about `expires`: Genesys's 24 h.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// A created channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub id: String,
    /// `wss://streaming.<region>/channels/<id>` (the simulator: `ws://127.0.0.1:…`).
    pub connect_uri: String,
    pub created_ms: u64,
    pub expires_ms: u64,
}

impl Channel {
    /// How messages name the channel: the id's first characters only, since whoever has
    /// the whole id (or `connectUri`) can connect to it and take the socket over.
    pub fn label(&self) -> String {
        let shown: String = self.id.chars().take(LABEL_CHARS).collect();
        if shown.len() < self.id.len() {
            format!("{shown}…")
        } else {
            shown
        }
    }

    /// The websocket's scheme and host, for messages.
    pub fn server(&self) -> &str {
        let rest = self
            .connect_uri
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        let host_len = rest.find('/').unwrap_or(rest.len());
        self.connect_uri
            .get(..self.connect_uri.len() - rest.len() + host_len)
            .unwrap_or("")
    }

    /// When to replace it with a new one: a quarter of its life before it expires, at
    /// most 10 minutes before, so the new channel is up before the old one goes.
    pub fn renew_at_ms(&self) -> u64 {
        let life = self.expires_ms.saturating_sub(self.created_ms);
        self.expires_ms - (life / 4).min(600_000)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChannelAnswer {
    #[serde(default, deserialize_with = "lenient::text")]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    connect_uri: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    expires: Option<String>,
}

/// Reads a channel-creation answer at `now_ms`; an answer without an id or a websocket
/// URL is malformed.
pub fn read_channel(body: &str, now_ms: u64) -> Result<Channel, String> {
    let answer: ChannelAnswer = lenient::answer(body).map_err(|e| e.to_string())?;
    let (Some(id), Some(connect_uri)) = (answer.id, answer.connect_uri) else {
        return Err("the channel has no id or connectUri".into());
    };
    let default_expiry = now_ms + DEFAULT_LIFETIME.as_millis() as u64;
    let expires_ms = answer
        .expires
        .as_deref()
        .and_then(crate::time::parse_utc)
        .filter(|&t| t > now_ms)
        .unwrap_or(default_expiry)
        .min(default_expiry);
    Ok(Channel {
        id,
        connect_uri,
        created_ms: now_ms,
        expires_ms,
    })
}

/// The answer's text: both requests take it as it is, so the client's retry loop is
/// compiled once for them.
fn text(body: &str) -> Result<String, String> {
    Ok(body.to_string())
}

/// Creates a channel.
pub fn create(client: &GenesysClient, deadline: Instant) -> Result<Channel, ApiError> {
    let now = crate::time::now_ms();
    let body = client.post_encoded(paths::NOTIFICATION_CHANNELS, "{}", deadline, &text)?;
    read_channel(&body, now).map_err(|e| {
        ApiError::Malformed(format!(
            "the answer of Genesys Cloud to POST {}: {e}",
            paths::NOTIFICATION_CHANNELS
        ))
    })
}

/// Replaces the channel's topics with the observations topics of `queue_ids`.
pub fn subscribe(
    client: &GenesysClient,
    channel: &Channel,
    queue_ids: &HashSet<Arc<str>>,
    deadline: Instant,
) -> Result<(), ApiError> {
    let body = topic::subscription_body(queue_ids);
    client
        .put_encoded(&paths::subscriptions(&channel.id), &body, deadline, &text)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture() -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/genesys/notifications/channel-create.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn the_real_answer_reads_with_its_expiry() {
        // 2021-02-03T17:59:07.650Z, read one day before.
        let expires = 1_612_375_147_650;
        let channel = read_channel(&fixture(), expires - 86_400_000).unwrap();
        assert_eq!(channel.id, "streaming-2-aa5h48uk0srhpugh2994klj918");
        assert!(channel
            .connect_uri
            .starts_with("wss://streaming.mypurecloud.com/channels/"));
        assert_eq!(channel.expires_ms, expires);
        assert_eq!(channel.renew_at_ms(), expires - 600_000);
        assert_eq!(channel.label(), "streaming-2-aa5h…");
        assert_eq!(channel.server(), "wss://streaming.mypurecloud.com");
    }

    #[test]
    fn a_past_missing_or_far_expiry_is_a_day_and_a_short_life_renews_early() {
        let now = 1_700_000_000_000;
        let day = now + 86_400_000;
        for expires in [
            "",
            r#","expires":"2001-01-01T00:00:00Z""#,
            r#","expires":"2999-01-01T00:00:00Z""#,
            r#","expires":7"#,
        ] {
            let body = format!(r#"{{"id":"c","connectUri":"ws://h/c"{expires}}}"#);
            assert_eq!(read_channel(&body, now).unwrap().expires_ms, day, "{body}");
        }
        let short = Channel {
            id: "c".into(),
            connect_uri: "ws://h/c".into(),
            created_ms: now,
            expires_ms: now + 20_000,
        };
        assert_eq!(short.renew_at_ms(), now + 15_000);
        assert!(read_channel(r#"{"id":"c"}"#, now).is_err());
        assert!(read_channel("[]", now).is_err());
    }
}
