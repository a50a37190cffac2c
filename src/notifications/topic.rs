//! The queue-observations topic (`v2.analytics.queues.{id}.observations`) and how the
//! selected queues are spread over channels: at most 1,000 topics per channel, at most 20
//! channels per OAuth client (docs/genesys-api.md#notifications).

use std::collections::HashSet;
use std::sync::Arc;

use crate::model::Queue;

/// Topics one channel may carry.
pub const TOPICS_PER_CHANNEL: usize = 1_000;
/// Channels one OAuth client may hold; creating one more evicts one of them.
pub const MAX_CHANNELS: usize = 20;

pub use crate::genesys::paths::{observations_topic as topic, queue_of_topic as queue_of};

/// The queue ids one channel follows: the `index`th slice of 1,000 of the selected ids,
/// sorted so the slices only move when the list changes.
pub fn slice(queues: &[Arc<Queue>], index: usize) -> HashSet<Arc<str>> {
    let mut ids: Vec<&str> = queues.iter().map(|q| q.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter()
        .skip(index * TOPICS_PER_CHANNEL)
        .take(TOPICS_PER_CHANNEL)
        .map(Arc::from)
        .collect()
}

/// Channels needed for `queues` queues: ⌈queues / 1,000⌉, at most [`MAX_CHANNELS`].
pub fn channels_for(queues: usize) -> usize {
    queues.div_ceil(TOPICS_PER_CHANNEL).min(MAX_CHANNELS)
}

/// The JSON body of a subscription `PUT`: `[{"id": topic}, …]`, sorted.
pub fn subscription_body(ids: &HashSet<Arc<str>>) -> String {
    let mut topics: Vec<String> = ids.iter().map(|id| topic(id)).collect();
    topics.sort_unstable();
    let entries: Vec<serde_json::Value> = topics
        .into_iter()
        .map(|t| serde_json::json!({ "id": t }))
        .collect();
    serde_json::Value::Array(entries).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: usize) -> Vec<Arc<Queue>> {
        (0..n)
            .map(|i| {
                Arc::new(Queue {
                    id: format!("q{i:05}"),
                    name: format!("Queue {i}"),
                })
            })
            .collect()
    }

    #[test]
    fn topics_round_trip_and_other_topics_are_not_queues() {
        let id = "9ed7d9f6-0c59-4360-ac54-40dd35eb9c2f";
        assert_eq!(queue_of(&topic(id)), Some(id));
        for other in [
            "v2.users.9ed7d9f6.presence",
            "v2.analytics.queues..observations",
            "v2.analytics.queues.a.b.observations",
            "channel.metadata",
            "",
        ] {
            assert_eq!(queue_of(other), None, "{other}");
        }
    }

    #[test]
    fn twenty_five_hundred_queues_need_three_channels_of_at_most_a_thousand() {
        let all = queues(2_500);
        assert_eq!(channels_for(all.len()), 3);
        let slices: Vec<_> = (0..3).map(|i| slice(&all, i)).collect();
        assert_eq!(
            slices.iter().map(HashSet::len).collect::<Vec<_>>(),
            [1_000, 1_000, 500]
        );
        let union: HashSet<_> = slices.into_iter().flatten().collect();
        assert_eq!(union.len(), 2_500);
        assert!(slice(&all, 3).is_empty());
        assert_eq!(channels_for(0), 0);
        assert_eq!(channels_for(1), 1);
        assert_eq!(channels_for(25_000), MAX_CHANNELS);
    }

    #[test]
    fn the_subscription_body_lists_every_topic() {
        let ids = slice(&queues(2), 0);
        assert_eq!(
            subscription_body(&ids),
            r#"[{"id":"v2.analytics.queues.q00000.observations"},{"id":"v2.analytics.queues.q00001.observations"}]"#
        );
    }
}
