//! The values that travel between the threads of the pipeline.
//!
//! The poller turns Genesys responses into [`QueueObservation`]s, the aggregator folds
//! them into windows and the writer only ever sees finished line protocol. Keeping these
//! types small and free of I/O lets every stage be tested on its own.

use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// A queue selected for polling. Shared (`Arc`) between the poller, which sends it with
/// every observation, and the aggregator, which writes its id and name as tags; a queue
/// renamed in Genesys simply arrives as a new `Arc` carrying the new name. Serialisable
/// because the open window, saved across restarts, holds it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Queue {
    pub id: String,
    pub name: String,
}

/// How a metric's min/max/last fields are written: counts as integers, durations as floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Count,
    Seconds,
}

/// Agent-side metrics of the `genesys_queue` measurement, in the order of
/// [`QueueObservation::agents`].
pub const AGENT_METRICS: [&str; 8] = [
    "on_queue",
    "idle",
    "interacting",
    "communicating",
    "not_responding",
    "off_queue",
    "active",
    "members",
];

/// Index of each agent metric in [`QueueObservation::agents`].
pub mod agent {
    pub const ON_QUEUE: usize = 0;
    pub const IDLE: usize = 1;
    pub const INTERACTING: usize = 2;
    pub const COMMUNICATING: usize = 3;
    pub const NOT_RESPONDING: usize = 4;
    pub const OFF_QUEUE: usize = 5;
    pub const ACTIVE: usize = 6;
    pub const MEMBERS: usize = 7;
}

/// Conversation-side metrics of the `genesys_queue_media` measurement, in the order of
/// [`MediaObservation::values`], with how each is written.
pub const MEDIA_METRICS: [(&str, MetricKind); 5] = [
    ("waiting", MetricKind::Count),
    ("interacting", MetricKind::Count),
    ("alerting", MetricKind::Count),
    ("longest_waiting_seconds", MetricKind::Seconds),
    ("longest_interacting_seconds", MetricKind::Seconds),
];

/// Index of each media metric in [`MediaObservation::values`].
pub mod media {
    pub const WAITING: usize = 0;
    pub const INTERACTING: usize = 1;
    pub const ALERTING: usize = 2;
    pub const LONGEST_WAITING_SECONDS: usize = 3;
    pub const LONGEST_INTERACTING_SECONDS: usize = 4;
}

/// One media type's conversation metrics of one queue at one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaObservation {
    /// Lower-cased Genesys media type (`voice`, `chat`, ...). Interned by the parser so
    /// that thousands of queues share a handful of allocations.
    pub media_type: Arc<str>,
    /// Indexed by the `media::*` constants; a metric absent from the response is 0.
    pub values: [f64; 5],
}

/// Everything one successful poll said about one queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueObservation {
    pub queue: Arc<Queue>,
    /// Indexed by the `agent::*` constants; a metric absent from the response is 0.
    pub agents: [f64; 8],
    pub media: Vec<MediaObservation>,
}

/// What the poller tells the aggregator.
#[derive(Debug)]
pub enum PollEvent {
    /// Observations answered for the poll whose tick (UTC, ms since the epoch) is given.
    /// One tick may produce several of these (one per chunk of ≤ 100 queues).
    Observations {
        tick_ms: u64,
        observations: Vec<QueueObservation>,
    },
    /// Every request of this tick has been answered or has failed: the aggregator may
    /// close the window if this was its last tick.
    TickDone { tick_ms: u64 },
    /// Observations of queues that changed, re-polled early (between or during ticks) on
    /// a [`QueueChanged`] hint, answered at `answered_ms` (UTC ms). Readings like any
    /// other, placed at the moment they were answered; they never close a window.
    EarlyObservations {
        answered_ms: u64,
        observations: Vec<QueueObservation>,
    },
}

/// The selected queues as the poller last resolved them, for the other threads that
/// query per queue (the KPI poller). Replaced as a whole; readers take a cheap snapshot.
#[derive(Debug, Clone, Default)]
pub struct SharedQueues(Arc<RwLock<Arc<Vec<Arc<Queue>>>>>);

impl SharedQueues {
    /// Replaces the list (the poller, after each queue resolution).
    pub fn publish(&self, queues: Vec<Arc<Queue>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(queues);
    }

    /// The list as last published.
    pub fn snapshot(&self) -> Arc<Vec<Arc<Queue>>> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A hint from Genesys Cloud's Notifications API that a selected queue's observations
/// changed: the notifications thread sends it, the poller re-polls the queue early (within
/// the request budget, at most once a second per queue). Only a hint: every value written
/// still comes from an observations query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueChanged {
    /// The queue's id, as in [`Queue::id`].
    pub queue_id: Arc<str>,
    /// When the message arrived (`time::now_ms`, UTC milliseconds).
    pub at_ms: u64,
}

/// Finished line protocol on its way to the writer (from the aggregator and the KPI
/// poller): complete, `\n`-terminated lines, and how many.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    pub lines: String,
    pub line_count: usize,
}
