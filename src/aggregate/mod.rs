//! Readings → UTC-aligned windows → line protocol. Pure: no I/O and no clock reads.
//!
//! Every poll belongs to the window in which its *tick* fell, whenever its answer
//! arrives. A window is closed as soon as the poller reports its last tick done (or a
//! tick of a later window shows up, when the last one was skipped), so points reach
//! InfluxDB within moments of the window's last poll. Per metric the window keeps
//! min, max, weighted sum and last, so memory per queue is fixed whatever the window
//! length; `_mean` is time-weighted ([`mean`]).
//!
//! An early re-poll's readings ([`PollEvent::EarlyObservations`]) belong to the window in
//! which they were answered, and never close or reopen one: answered after its window's
//! last tick was done (the window is written), they go to the next window, placed at its
//! start (where the next regular reading, at that tick, takes over from them); answered
//! in a later window than the open one, which is still waiting for its last tick, they
//! are dropped.
//!
//! One file on purpose: about 430 lines of code for one concept (windows), the rest are
//! its tests, which need its private state.

pub mod job;
pub mod mean;

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::buffer_pool::BufferPool;
use crate::influx::line_protocol::{FieldKey, LineBuilder};
use crate::model::{MetricKind, PollEvent, Queue, QueueObservation, AGENT_METRICS, MEDIA_METRICS};

pub const QUEUE_MEASUREMENT: &str = "genesys_queue";
pub const MEDIA_MEASUREMENT: &str = "genesys_queue_media";

/// Running min/max/sum/last of one metric within one window. `sum` is weighted (in poll
/// intervals, [`mean::weight`]), with the last reading counted as a whole interval until
/// the next reading or the window's end tells its weight: without early re-polls every
/// weight is one, and `sum` is the plain sum, as saved by earlier versions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Stat {
    min: f64,
    max: f64,
    sum: f64,
    last: f64,
}

impl Stat {
    fn first(value: f64) -> Self {
        Stat {
            min: value,
            max: value,
            sum: value,
            last: value,
        }
    }

    fn add(&mut self, value: f64) {
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        self.sum += value;
        self.last = value;
    }

    /// A value of a reading that weighs nothing and is not the last: `_min`/`_max` only.
    fn see(&mut self, value: f64) {
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// The statistics of a value seen only in such a reading.
    fn seen_only(value: f64) -> Self {
        Stat {
            min: value,
            max: value,
            sum: 0.0,
            last: 0.0,
        }
    }

    /// The last reading turned out to weigh `weight` intervals, not one.
    fn reweigh_last(&mut self, weight: f64) {
        if weight < 1.0 {
            self.sum += (weight - 1.0) * self.last;
        }
    }
}

/// One media type of one queue. `polls` counts the polls it appeared in; the polls of
/// its queue it was absent from count as zeros (contract: absent metric = 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct MediaWindow {
    /// Shared with the readings (one interned `Arc` per media type), not copied.
    media_type: Arc<str>,
    stats: [Stat; 5],
    polls: u32,
    /// Sequence number (within the queue's window) of the last reading it appeared in,
    /// not counting readings older than the one before ([`mean::is_older`]).
    last_poll: u32,
}

/// The queue is the readings' `Arc`, not a copy of its id and name: at 5,000 queues the
/// open window is most of the resident memory (`benches/aggregate.rs` prints its bytes
/// per queue). Saved as `id` and `name` fields, as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct QueueWindow {
    /// As at the latest poll: a queue renamed mid-window is written with its new name.
    #[serde(flatten)]
    queue: Arc<Queue>,
    samples: u32,
    /// Sequence number of the latest reading (`samples` unless a reading older than the
    /// one before came after it, [`mean::is_older`]); 0 in a window saved by an earlier
    /// version: `samples` then.
    #[serde(default)]
    latest: u32,
    /// Total weight of the readings in poll intervals, the last counted as one (see
    /// [`Stat`]). 0 in a window saved by an earlier version: `samples` then.
    #[serde(default)]
    weight: f64,
    /// Where the latest reading was placed; 0 (not an `Option`: 8 bytes
    /// a queue) in a window saved by an earlier version, whose last reading weighs one
    /// interval.
    #[serde(default)]
    last_at_ms: u64,
    agents: [Stat; 8],
    media: Vec<MediaWindow>,
}

impl QueueWindow {
    fn new(observation: &QueueObservation, at_ms: u64) -> Self {
        let mut window = QueueWindow {
            queue: Arc::clone(&observation.queue),
            samples: 1,
            latest: 1,
            weight: 1.0,
            last_at_ms: at_ms,
            agents: observation.agents.map(Stat::first),
            // Exactly the media types seen (five in most orgs): a Vec grown by pushing
            // would hold eight, 576 KB of spare room at 1,000 queues (measured with dhat).
            media: Vec::with_capacity(observation.media.len()),
        };
        window.add_media(observation);
        window
    }

    /// Folds in a reading meant for `at_ms` ([`mean`]).
    fn add(&mut self, observation: &QueueObservation, at_ms: u64, poll_ms: u64) {
        if !Arc::ptr_eq(&self.queue, &observation.queue) {
            self.queue = Arc::clone(&observation.queue);
        }
        if mean::is_older(at_ms, self.last_at()) {
            self.add_older(observation);
            return;
        }
        let previous = self
            .last_at()
            .map_or(1.0, |last| mean::weight(last, at_ms, poll_ms));
        self.reweigh_last(previous);
        self.weight += 1.0;
        self.last_at_ms = at_ms;
        self.samples += 1;
        self.latest = self.samples;
        for (stat, value) in self.agents.iter_mut().zip(observation.agents) {
            stat.add(value);
        }
        self.add_media(observation);
    }

    /// A reading older than the latest: a sample for `samples`, `_min` and `_max` only.
    fn add_older(&mut self, observation: &QueueObservation) {
        self.samples += 1;
        for (stat, value) in self.agents.iter_mut().zip(observation.agents) {
            stat.see(value);
        }
        for reading in &observation.media {
            match self.media_window(&reading.media_type) {
                Some(window) => {
                    for (stat, value) in window.stats.iter_mut().zip(reading.values) {
                        stat.see(value);
                    }
                    window.polls += 1;
                }
                None => self.media.push(MediaWindow {
                    media_type: Arc::clone(&reading.media_type),
                    stats: reading.values.map(Stat::seen_only),
                    polls: 1,
                    last_poll: 0,
                }),
            }
        }
    }

    fn media_window(&mut self, media_type: &Arc<str>) -> Option<&mut MediaWindow> {
        self.media
            .iter_mut()
            .find(|m| Arc::ptr_eq(&m.media_type, media_type) || m.media_type == *media_type)
    }

    /// The last reading weighs `weight` intervals: its values' share of the sums, and of
    /// the total weight, shrinks to that (nothing changes when it is one).
    fn reweigh_last(&mut self, weight: f64) {
        if weight >= 1.0 {
            return;
        }
        for stat in &mut self.agents {
            stat.reweigh_last(weight);
        }
        for media in &mut self.media {
            if media.last_poll == self.latest {
                for stat in &mut media.stats {
                    stat.reweigh_last(weight);
                }
            }
        }
        self.weight += weight - 1.0;
    }

    /// Where the last reading was placed, when known.
    fn last_at(&self) -> Option<u64> {
        (self.last_at_ms > 0).then_some(self.last_at_ms)
    }

    /// A window saved by an earlier version weighed every reading one interval.
    fn upgrade(&mut self) {
        if self.weight <= 0.0 {
            self.weight = f64::from(self.samples);
        }
        if self.latest == 0 {
            self.latest = self.samples;
        }
    }

    fn add_media(&mut self, observation: &QueueObservation) {
        let poll = self.samples;
        for reading in &observation.media {
            match self.media_window(&reading.media_type) {
                Some(window) => {
                    for (stat, value) in window.stats.iter_mut().zip(reading.values) {
                        stat.add(value);
                    }
                    window.polls += 1;
                    window.last_poll = poll;
                }
                None => self.media.push(MediaWindow {
                    media_type: Arc::clone(&reading.media_type),
                    stats: reading.values.map(Stat::first),
                    polls: 1,
                    last_poll: poll,
                }),
            }
        }
    }
}

/// The window being filled. Serializable so a restart inside the same window can
/// continue it instead of overwriting the first half with the second.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenWindow {
    pub start_ms: u64,
    /// Boxed: a map node has room for eleven entries and is about two thirds full, so
    /// ~300-byte windows held in the nodes left a third of that room empty (1,570 → 1,345
    /// bytes per queue with five media types, `benches/aggregate.rs`).
    queues: BTreeMap<String, Box<QueueWindow>>,
}

/// A finished window, not yet encoded: [`Aggregator::encode`] turns it into line
/// protocol in parts of bounded size, so 5,000 queues never need their whole window
/// (17 MB of text) in memory at once.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedWindow {
    pub start_ms: u64,
    queues: Vec<QueueWindow>,
}

impl ClosedWindow {
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }
}

/// One part of a closed window's line protocol: whole queues, about `PART_BYTES` long.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub lines: String,
    pub points: usize,
}

/// Size a part of a window's text grows to before the next part starts.
pub const PART_BYTES: usize = 128 * 1024;
/// Room beyond [`PART_BYTES`]: the last queue added, and the self-metrics point.
const SPARE_BYTES: usize = 16 * 1024;
/// The room a part's buffer is given.
pub const PART_CAPACITY: usize = PART_BYTES + SPARE_BYTES;
/// Part buffers kept between windows: enough for the writer to hand one back while the
/// aggregator fills the next (31 parts a window at 1,000 queues, more with live updates,
/// each above musl's mmap threshold).
const PART_BUFFERS_KEPT: usize = 2;

/// The buffers of window parts: the aggregator takes them, the writer gives them back once
/// their lines are sent. At most [`PART_BUFFERS_KEPT`] of a part's size are kept.
pub type PartBuffers = BufferPool<String>;

/// A pool of part buffers, shared by the aggregator and the writer.
pub fn part_buffers() -> Arc<PartBuffers> {
    Arc::new(BufferPool::new(
        PART_BUFFERS_KEPT,
        PART_CAPACITY,
        2 * PART_CAPACITY,
    ))
}

pub struct Aggregator {
    window_ms: u64,
    poll_ms: u64,
    agent_fields: Vec<FieldNames>,
    media_fields: Vec<FieldNames>,
    /// `INFLUXDB_TAGS`, sorted by key.
    static_tags: Vec<(String, String)>,
    tag_order: Vec<Tag>,
    open: Option<OpenWindow>,
    /// End of the newest window closed: early readings never go to a window before it.
    closed_until_ms: u64,
    /// Where part buffers come from: kept ones handed back by the writer, when set.
    part_buffers: Option<Arc<PartBuffers>>,
}

impl Aggregator {
    /// `poll_ms` is the poll interval in use: normally a divisor of the window, but the
    /// poller may widen it to stay within the Genesys request budget.
    pub fn new(window_ms: u64, poll_ms: u64, static_tags: Vec<(String, String)>) -> Self {
        Aggregator {
            window_ms,
            poll_ms,
            agent_fields: AGENT_METRICS
                .iter()
                .map(|name| FieldNames::new(name, MetricKind::Count))
                .collect(),
            media_fields: MEDIA_METRICS
                .iter()
                .map(|(name, kind)| FieldNames::new(name, *kind))
                .collect(),
            tag_order: tag_order(&static_tags),
            static_tags,
            open: None,
            closed_until_ms: 0,
            part_buffers: None,
        }
    }

    /// Fills the part buffers the writer hands back instead of new ones.
    pub(crate) fn with_part_buffers(mut self, part_buffers: Arc<PartBuffers>) -> Self {
        self.part_buffers = Some(part_buffers);
        self
    }

    fn part_buffer(&self) -> String {
        self.part_buffers
            .as_ref()
            .map_or_else(|| String::with_capacity(PART_CAPACITY), |pool| pool.take())
    }

    pub fn window_start(&self, tick_ms: u64) -> u64 {
        tick_ms - tick_ms % self.window_ms
    }

    /// Folds one poller event in; returns the windows it closed (at most two: the open
    /// one, when a tick of a later window arrives, and the one this event finished).
    pub fn handle(&mut self, event: &PollEvent) -> Vec<ClosedWindow> {
        match event {
            PollEvent::Observations {
                tick_ms,
                observations,
            } => {
                let closed = self.roll_to(*tick_ms);
                let start_ms = self.window_start(*tick_ms);
                let poll_ms = self.poll_ms;
                if let Some(open) = self.open.as_mut().filter(|w| w.start_ms == start_ms) {
                    for observation in observations {
                        open.add(observation, *tick_ms, poll_ms);
                    }
                } else {
                    log::debug!(
                        "dropping {} late observations of tick {tick_ms}",
                        observations.len()
                    );
                }
                closed.into_iter().collect()
            }
            PollEvent::TickDone { tick_ms } => {
                let mut closed: Vec<ClosedWindow> = self.roll_to(*tick_ms).into_iter().collect();
                let window_end = self.window_start(*tick_ms) + self.window_ms;
                let was_last_tick = tick_ms + self.poll_ms >= window_end;
                if was_last_tick
                    && self
                        .open
                        .as_ref()
                        .is_some_and(|w| w.start_ms + self.window_ms == window_end)
                {
                    closed.extend(self.close());
                }
                closed
            }
            PollEvent::EarlyObservations {
                answered_ms,
                observations,
            } => {
                self.add_early(*answered_ms, observations);
                Vec::new()
            }
        }
    }

    /// Early readings answered at `answered_ms` (see the module documentation for the
    /// window they go to); returns the start of that window, `None` when dropped.
    fn add_early(&mut self, answered_ms: u64, observations: &[QueueObservation]) -> Option<u64> {
        let target = self.window_start(answered_ms).max(self.closed_until_ms);
        let open = self.open.get_or_insert_with(|| OpenWindow {
            start_ms: target,
            queues: BTreeMap::new(),
        });
        if open.start_ms < target {
            log::debug!(
                "dropping {} early observations answered after the end of the window still waiting for its last tick",
                observations.len()
            );
            return None;
        }
        let at_ms = answered_ms.max(open.start_ms);
        for observation in observations {
            open.add(observation, at_ms, self.poll_ms);
        }
        Some(open.start_ms)
    }

    /// Makes the window of `tick_ms` the open one, closing an older open window first.
    /// A tick older than the open window changes nothing (its window was already written).
    fn roll_to(&mut self, tick_ms: u64) -> Option<ClosedWindow> {
        let start_ms = self.window_start(tick_ms);
        match &self.open {
            Some(open) if open.start_ms >= start_ms => None,
            Some(_) => {
                let closed = self.close();
                self.open = Some(OpenWindow {
                    start_ms,
                    queues: BTreeMap::new(),
                });
                closed
            }
            None => {
                self.open = Some(OpenWindow {
                    start_ms,
                    queues: BTreeMap::new(),
                });
                None
            }
        }
    }

    /// Closes the open window now, with whatever samples it has (shutdown).
    pub fn close(&mut self) -> Option<ClosedWindow> {
        let open = self.open.take()?;
        self.closed_until_ms = self.closed_until_ms.max(open.start_ms + self.window_ms);
        if open.queues.is_empty() {
            return None;
        }
        Some(ClosedWindow {
            start_ms: open.start_ms,
            queues: open.queues.into_values().map(|w| *w).collect(),
        })
    }

    /// The open window's state, to be saved at shutdown.
    pub fn open_window(&self) -> Option<&OpenWindow> {
        self.open.as_ref()
    }

    /// Continues a window saved by an earlier run, if it is the window of `tick_ms`.
    pub fn resume(&mut self, mut saved: OpenWindow, tick_ms: u64) -> bool {
        if saved.start_ms != self.window_start(tick_ms) || self.open.is_some() {
            return false;
        }
        for queue in saved.queues.values_mut() {
            queue.upgrade();
        }
        self.open = Some(saved);
        true
    }

    /// The line protocol of `window`, in parts of about [`PART_BYTES`], queue by queue
    /// (each queue's lines stay in one part).
    pub fn encode<'a>(&'a self, window: &'a ClosedWindow) -> impl Iterator<Item = Part> + 'a {
        self.encode_queues(window.start_ms, window.queues.iter())
    }

    /// The open window so far, when `tick_ms` is one of its ticks and it has samples:
    /// its start and the very lines its final point would have now (a live update).
    pub fn encode_open(&self, tick_ms: u64) -> Option<(u64, impl Iterator<Item = Part> + '_)> {
        let start_ms = self.window_start(tick_ms);
        let open = self
            .open
            .as_ref()
            .filter(|w| w.start_ms == start_ms && !w.queues.is_empty())?;
        Some((
            start_ms,
            self.encode_queues(start_ms, open.queues.values().map(|w| &**w)),
        ))
    }

    /// The lines of just the queues `ids` in the open window so far (a live update after
    /// an early re-poll), and the window's start; `None` when none of them is in it.
    pub fn encode_open_queues<'a>(
        &'a self,
        ids: &'a BTreeSet<String>,
    ) -> Option<(u64, impl Iterator<Item = Part> + 'a)> {
        let open = self.open.as_ref()?;
        let mut queues = ids
            .iter()
            .filter_map(|id| open.queues.get(id).map(|w| &**w))
            .peekable();
        queues.peek()?;
        Some((open.start_ms, self.encode_queues(open.start_ms, queues)))
    }

    fn encode_queues<'a>(
        &'a self,
        start_ms: u64,
        queues: impl Iterator<Item = &'a QueueWindow> + 'a,
    ) -> impl Iterator<Item = Part> + 'a {
        let timestamp_s = (start_ms / 1000) as i64;
        let mut queues = queues.peekable();
        std::iter::from_fn(move || {
            queues.peek()?;
            let mut part = Part {
                lines: self.part_buffer(),
                points: 0,
            };
            while part.lines.len() < PART_BYTES {
                let Some(queue) = queues.next() else { break };
                part.points += usize::from(self.encode_queue(&mut part.lines, queue, timestamp_s));
                for media in &queue.media {
                    part.points +=
                        usize::from(self.encode_media(&mut part.lines, queue, media, timestamp_s));
                }
            }
            Some(part)
        })
    }

    fn encode_queue(&self, out: &mut String, queue: &QueueWindow, timestamp_s: i64) -> bool {
        let weights = Weights::of(queue, self.poll_ms);
        let mut line = self.tagged(out, QUEUE_MEASUREMENT, queue, None);
        for (fields, stat) in self.agent_fields.iter().zip(&queue.agents) {
            line = fields.write(line, stat, weights.mean(stat, true));
        }
        line.field_i64("samples", queue.samples.into())
            .finish(timestamp_s)
    }

    fn encode_media(
        &self,
        out: &mut String,
        queue: &QueueWindow,
        media: &MediaWindow,
        timestamp_s: i64,
    ) -> bool {
        let weights = Weights::of(queue, self.poll_ms);
        let mut line = self.tagged(out, MEDIA_MEASUREMENT, queue, Some(&media.media_type));
        let absent_polls = queue.samples - media.polls;
        let in_last_reading = media.last_poll == queue.latest;
        for (fields, stat) in self.media_fields.iter().zip(&media.stats) {
            let mean = weights.mean(stat, in_last_reading);
            let mut stat = *stat;
            if absent_polls > 0 {
                stat.min = stat.min.min(0.0);
                stat.max = stat.max.max(0.0);
            }
            if !in_last_reading {
                stat.last = 0.0;
            }
            line = fields.write(line, &stat, mean);
        }
        line.field_i64("samples", queue.samples.into())
            .finish(timestamp_s)
    }

    /// Starts a line with the measurement and every tag, sorted by key as InfluxDB prefers
    /// (the order is worked out once, in [`tag_order`]).
    fn tagged<'a>(
        &self,
        out: &'a mut String,
        measurement: &str,
        queue: &QueueWindow,
        media_type: Option<&str>,
    ) -> LineBuilder<'a> {
        let mut line = LineBuilder::new(out, measurement);
        for tag in &self.tag_order {
            line = match *tag {
                Tag::Static(i) => line.tag(&self.static_tags[i].0, &self.static_tags[i].1),
                Tag::QueueId => line.tag("queue_id", &queue.queue.id),
                Tag::QueueName => line.tag("queue_name", &queue.queue.name),
                Tag::MediaType => match media_type {
                    Some(media_type) => line.tag("media_type", media_type),
                    None => line,
                },
            };
        }
        line
    }
}

/// One tag of a window's lines: a configured one (`INFLUXDB_TAGS`, by index) or one the
/// queue or media type supplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Static(usize),
    QueueId,
    QueueName,
    MediaType,
}

/// Every tag in InfluxDB's order (sorted by key), so no line sorts its tags again.
fn tag_order(static_tags: &[(String, String)]) -> Vec<Tag> {
    let mut order: Vec<(&str, Tag)> = static_tags
        .iter()
        .enumerate()
        .map(|(i, (key, _))| (key.as_str(), Tag::Static(i)))
        .collect();
    order.extend([
        ("queue_id", Tag::QueueId),
        ("queue_name", Tag::QueueName),
        ("media_type", Tag::MediaType),
    ]);
    order.sort_by_key(|(key, _)| *key);
    order.into_iter().map(|(_, tag)| tag).collect()
}

/// The four field keys of one metric, built once instead of at every point.
struct FieldNames {
    kind: MetricKind,
    min: FieldKey,
    max: FieldKey,
    last: FieldKey,
    mean: FieldKey,
}

impl FieldNames {
    fn new(metric: &str, kind: MetricKind) -> Self {
        FieldNames {
            kind,
            min: FieldKey::new(&format!("{metric}_min")),
            max: FieldKey::new(&format!("{metric}_max")),
            last: FieldKey::new(&format!("{metric}_last")),
            mean: FieldKey::new(&format!("{metric}_mean")),
        }
    }

    /// `m_min`, `m_max`, `m_last` (integers for counts, floats for seconds) and `m_mean` (float).
    fn write<'a>(&self, line: LineBuilder<'a>, stat: &Stat, mean: f64) -> LineBuilder<'a> {
        let line = match self.kind {
            MetricKind::Count => line
                .field_i64(&self.min, stat.min as i64)
                .field_i64(&self.max, stat.max as i64)
                .field_i64(&self.last, stat.last as i64),
            MetricKind::Seconds => line
                .field_f64(&self.min, stat.min)
                .field_f64(&self.max, stat.max)
                .field_f64(&self.last, stat.last),
        };
        line.field_f64(&self.mean, mean)
    }
}

/// A queue's weights as its window stands: the last reading's own (until the next tick
/// after it, [`mean::last_weight`]) and the total.
struct Weights {
    last: f64,
    total: f64,
}

impl Weights {
    fn of(queue: &QueueWindow, poll_ms: u64) -> Weights {
        let last = queue
            .last_at()
            .map_or(1.0, |at| mean::last_weight(at, poll_ms));
        let total = if last < 1.0 {
            queue.weight + (last - 1.0)
        } else {
            queue.weight
        };
        Weights { last, total }
    }

    /// The time-weighted mean of `stat`, whose last value is the last reading's when
    /// `in_last_reading` (else that reading lacked it: a 0 that adds nothing).
    fn mean(&self, stat: &Stat, in_last_reading: bool) -> f64 {
        let mut stat = *stat;
        if in_last_reading {
            stat.reweigh_last(self.last);
        }
        if self.total > 0.0 {
            stat.sum / self.total
        } else {
            stat.last
        }
    }
}

impl OpenWindow {
    fn add(&mut self, observation: &QueueObservation, at_ms: u64, poll_ms: u64) {
        match self.queues.get_mut(&observation.queue.id) {
            Some(window) => window.add(observation, at_ms, poll_ms),
            None => {
                self.queues.insert(
                    observation.queue.id.clone(),
                    Box::new(QueueWindow::new(observation, at_ms)),
                );
            }
        }
    }

    /// Number of queues with at least one sample.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{MediaObservation, Queue};
    use std::sync::Arc;

    const POLL: u64 = 10_000;
    const WINDOW: u64 = 60_000;
    /// 2025-06-02T14:30:00Z, a window boundary.
    const T0: u64 = 1_748_874_600_000;

    fn queue(id: &str, name: &str) -> Arc<Queue> {
        Arc::new(Queue {
            id: id.into(),
            name: name.into(),
        })
    }

    fn observation(queue: &Arc<Queue>, idle: f64, media: &[(&str, f64, f64)]) -> QueueObservation {
        let mut agents = [0.0; 8];
        agents[crate::model::agent::IDLE] = idle;
        agents[crate::model::agent::MEMBERS] = 10.0;
        QueueObservation {
            queue: queue.clone(),
            agents,
            media: media
                .iter()
                .map(|(media_type, waiting, longest)| MediaObservation {
                    media_type: Arc::from(*media_type),
                    values: [*waiting, 0.0, 0.0, *longest, 0.0],
                })
                .collect(),
        }
    }

    /// A closed window's parts joined again.
    struct Encoded {
        start_ms: u64,
        lines: String,
        points: usize,
    }

    fn encode_all(aggregator: &Aggregator, window: ClosedWindow) -> Encoded {
        let mut encoded = Encoded {
            start_ms: window.start_ms,
            lines: String::new(),
            points: 0,
        };
        for part in aggregator.encode(&window) {
            encoded.lines.push_str(&part.lines);
            encoded.points += part.points;
        }
        encoded
    }

    fn handle(aggregator: &mut Aggregator, event: &PollEvent) -> Vec<Encoded> {
        let closed = aggregator.handle(event);
        closed
            .into_iter()
            .map(|w| encode_all(aggregator, w))
            .collect()
    }

    fn poll(
        aggregator: &mut Aggregator,
        tick_ms: u64,
        observations: Vec<QueueObservation>,
    ) -> Vec<Encoded> {
        let mut closed = handle(
            aggregator,
            &PollEvent::Observations {
                tick_ms,
                observations,
            },
        );
        closed.extend(handle(aggregator, &PollEvent::TickDone { tick_ms }));
        closed
    }

    /// Parses the fields of the line whose measurement and tags start with `prefix`.
    fn fields<'a>(lines: &'a str, prefix: &str) -> Vec<(&'a str, &'a str)> {
        let line = lines
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no line {prefix} in\n{lines}"));
        let field_part = line.split(' ').rev().nth(1).unwrap();
        field_part
            .split(',')
            .map(|kv| kv.split_once('=').unwrap())
            .collect()
    }

    fn field<'a>(lines: &'a str, prefix: &str, key: &str) -> &'a str {
        fields(lines, prefix)
            .into_iter()
            .find(|(k, _)| *k == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .1
    }

    #[test]
    fn windows_are_utc_aligned() {
        let aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        assert_eq!(aggregator.window_start(T0), T0);
        assert_eq!(aggregator.window_start(T0 + 59_999), T0);
        assert_eq!(aggregator.window_start(T0 + 60_000), T0 + 60_000);
    }

    #[test]
    fn a_window_closes_when_its_last_tick_is_done_with_min_max_mean_last_samples() {
        let q = queue("q1", "Support");
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        let idle = [3.0, 7.0, 1.0, 4.0, 4.0, 5.0];
        for (i, value) in idle.iter().enumerate() {
            let closed = poll(
                &mut aggregator,
                T0 + i as u64 * POLL,
                vec![observation(&q, *value, &[("voice", *value * 2.0, 1.5)])],
            );
            assert_eq!(closed.is_empty(), i < 5, "closed only after the 6th tick");
        }
        assert!(aggregator.open_window().is_none());
    }

    #[test]
    fn the_open_window_so_far_is_encoded_as_its_final_point_would_be_now() {
        let q = queue("q1", "Support");
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        assert!(aggregator.encode_open(T0).is_none(), "nothing polled yet");
        poll(
            &mut aggregator,
            T0,
            vec![observation(&q, 3.0, &[("voice", 1.0, 2.0)])],
        );
        poll(&mut aggregator, T0 + POLL, vec![observation(&q, 7.0, &[])]);
        let (start_ms, parts) = aggregator.encode_open(T0 + POLL).expect("open window");
        let live: String = parts.map(|part| part.lines).collect();
        assert_eq!(start_ms, T0);
        assert!(
            aggregator.encode_open(T0 + WINDOW).is_none(),
            "another window"
        );
        let early = aggregator.close().expect("samples");
        let closed = encode_all(&aggregator, early);
        assert_eq!(
            live, closed.lines,
            "the same lines the final point would have now"
        );
        assert_eq!(field(&live, "genesys_queue,", "samples"), "2i");
        assert_eq!(field(&live, "genesys_queue,", "idle_max"), "7i");
        assert_eq!(field(&live, "genesys_queue_media,", "waiting_last"), "0i");
    }

    #[test]
    fn encodes_the_contract_fields_and_types() {
        let q = queue("q1", "Sales, EMEA");
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![("env".into(), "prod".into())]);
        let mut closed: Vec<Encoded> = Vec::new();
        for (i, value) in [3.0, 7.0, 1.0, 4.0, 4.0, 5.0].iter().enumerate() {
            closed = poll(
                &mut aggregator,
                T0 + i as u64 * POLL,
                vec![observation(
                    &q,
                    *value,
                    &[("voice", *value * 2.0, *value + 0.25)],
                )],
            );
        }
        let window = &closed[0];
        assert_eq!(window.start_ms, T0);
        assert_eq!(window.points, 2);
        let ts = " 1748874600\n";
        assert!(
            window.lines.starts_with(
                "genesys_queue,env=prod,queue_id=q1,queue_name=Sales\\,\\ EMEA on_queue_min=0i,"
            ),
            "{}",
            window.lines
        );
        assert!(window.lines.ends_with(ts));
        let agent_line = "genesys_queue,";
        assert_eq!(field(&window.lines, agent_line, "idle_min"), "1i");
        assert_eq!(field(&window.lines, agent_line, "idle_max"), "7i");
        assert_eq!(field(&window.lines, agent_line, "idle_last"), "5i");
        assert_eq!(field(&window.lines, agent_line, "idle_mean"), "4");
        assert_eq!(field(&window.lines, agent_line, "members_mean"), "10");
        assert_eq!(field(&window.lines, agent_line, "samples"), "6i");
        assert_eq!(fields(&window.lines, agent_line).len(), 8 * 4 + 1);
        let media_line = "genesys_queue_media,env=prod,media_type=voice,queue_id=q1,";
        assert_eq!(field(&window.lines, media_line, "waiting_min"), "2i");
        assert_eq!(field(&window.lines, media_line, "waiting_max"), "14i");
        assert_eq!(field(&window.lines, media_line, "waiting_mean"), "8");
        assert_eq!(
            field(&window.lines, media_line, "longest_waiting_seconds_min"),
            "1.25"
        );
        assert_eq!(
            field(&window.lines, media_line, "longest_waiting_seconds_last"),
            "5.25"
        );
        assert_eq!(field(&window.lines, media_line, "samples"), "6i");
        assert_eq!(fields(&window.lines, media_line).len(), 5 * 4 + 1);
    }

    #[test]
    fn missing_polls_lower_samples_and_no_sample_means_no_point() {
        let (a, b) = (queue("a", "A"), queue("b", "B"));
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        let mut closed: Vec<Encoded> = Vec::new();
        for i in 0..6 {
            // Queue a answers only at even ticks; queue b never.
            let observations = if i % 2 == 0 {
                vec![observation(&a, i as f64, &[])]
            } else {
                vec![]
            };
            closed = poll(&mut aggregator, T0 + i * POLL, observations);
        }
        let lines = &closed[0].lines;
        assert_eq!(field(lines, "genesys_queue,queue_id=a", "samples"), "3i");
        assert_eq!(field(lines, "genesys_queue,queue_id=a", "idle_mean"), "2");
        assert!(
            !lines.contains("queue_id=b"),
            "b had no sample: a gap, not zeros"
        );
        let _ = b;
    }

    #[test]
    fn a_media_type_absent_from_some_polls_counts_as_zero_there() {
        let q = queue("q", "Q");
        let mut aggregator = Aggregator::new(20_000, POLL, vec![]);
        poll(
            &mut aggregator,
            T0,
            vec![observation(&q, 1.0, &[("chat", 4.0, 0.0)])],
        );
        let closed = poll(&mut aggregator, T0 + POLL, vec![observation(&q, 1.0, &[])]);
        let chat = "genesys_queue_media,media_type=chat";
        assert_eq!(field(&closed[0].lines, chat, "waiting_min"), "0i");
        assert_eq!(field(&closed[0].lines, chat, "waiting_max"), "4i");
        assert_eq!(field(&closed[0].lines, chat, "waiting_last"), "0i");
        assert_eq!(field(&closed[0].lines, chat, "waiting_mean"), "2");
        assert_eq!(field(&closed[0].lines, chat, "samples"), "2i");
    }

    #[test]
    fn a_skipped_last_tick_closes_the_window_at_the_next_windows_first_poll() {
        let q = queue("q", "Q");
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        for i in 0..5 {
            assert!(poll(
                &mut aggregator,
                T0 + i * POLL,
                vec![observation(&q, 1.0, &[])]
            )
            .is_empty());
        }
        let closed = handle(
            &mut aggregator,
            &PollEvent::Observations {
                tick_ms: T0 + WINDOW,
                observations: vec![observation(&q, 9.0, &[])],
            },
        );
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].start_ms, T0);
        assert_eq!(field(&closed[0].lines, "genesys_queue,", "samples"), "5i");
        assert_eq!(
            aggregator.open_window().map(|w| w.start_ms),
            Some(T0 + WINDOW)
        );
    }

    #[test]
    fn late_answers_for_a_closed_window_are_dropped() {
        let q = queue("q", "Q");
        let mut aggregator = Aggregator::new(20_000, POLL, vec![]);
        poll(&mut aggregator, T0, vec![observation(&q, 1.0, &[])]);
        assert_eq!(
            poll(&mut aggregator, T0 + POLL, vec![observation(&q, 1.0, &[])]).len(),
            1
        );
        poll(
            &mut aggregator,
            T0 + 2 * POLL,
            vec![observation(&q, 1.0, &[])],
        );
        let late = handle(
            &mut aggregator,
            &PollEvent::Observations {
                tick_ms: T0 + POLL,
                observations: vec![observation(&q, 99.0, &[])],
            },
        );
        assert!(late.is_empty());
        let closed = poll(
            &mut aggregator,
            T0 + 3 * POLL,
            vec![observation(&q, 2.0, &[])],
        );
        assert_eq!(field(&closed[0].lines, "genesys_queue,", "idle_max"), "2i");
    }

    #[test]
    fn a_renamed_queue_is_written_with_its_new_name() {
        let mut aggregator = Aggregator::new(20_000, POLL, vec![]);
        poll(
            &mut aggregator,
            T0,
            vec![observation(&queue("q", "Old"), 1.0, &[])],
        );
        let closed = poll(
            &mut aggregator,
            T0 + POLL,
            vec![observation(&queue("q", "New"), 1.0, &[])],
        );
        assert!(closed[0]
            .lines
            .starts_with("genesys_queue,queue_id=q,queue_name=New "));
        assert_eq!(field(&closed[0].lines, "genesys_queue,", "samples"), "2i");
    }

    /// `open-window.json` as the versions that copied ids and names into the window wrote
    /// it: still read, so an upgrade inside a window keeps its first half.
    #[test]
    fn a_window_saved_by_an_earlier_version_is_resumed() {
        let saved = r#"{"start_ms":1748874600000,"queues":{"q":{"id":"q","name":"Q – Ünï",
            "samples":2,"agents":[{"min":1.0,"max":3.0,"sum":4.0,"last":3.0},
            {"min":0.0,"max":0.0,"sum":0.0,"last":0.0},{"min":0.0,"max":0.0,"sum":0.0,"last":0.0},
            {"min":0.0,"max":0.0,"sum":0.0,"last":0.0},{"min":0.0,"max":0.0,"sum":0.0,"last":0.0},
            {"min":0.0,"max":0.0,"sum":0.0,"last":0.0},{"min":0.0,"max":0.0,"sum":0.0,"last":0.0},
            {"min":0.0,"max":0.0,"sum":0.0,"last":0.0}],
            "media":[{"media_type":"voice","stats":[{"min":2.0,"max":2.0,"sum":4.0,"last":2.0},
            {"min":0.0,"max":0.0,"sum":0.0,"last":0.0},{"min":0.0,"max":0.0,"sum":0.0,"last":0.0},
            {"min":0.0,"max":0.0,"sum":0.0,"last":0.0},{"min":0.0,"max":0.0,"sum":0.0,"last":0.0}],
            "polls":2,"last_poll":2}]}}}"#;
        let open: OpenWindow = serde_json::from_str(saved).unwrap();
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        assert!(aggregator.resume(open.clone(), T0 + 2 * POLL));
        assert_eq!(
            serde_json::from_str::<OpenWindow>(&serde_json::to_string(&open).unwrap()).unwrap(),
            open
        );
        let window = aggregator.close().unwrap();
        let closed = encode_all(&aggregator, window);
        assert!(closed
            .lines
            .starts_with("genesys_queue,queue_id=q,queue_name=Q\\ –\\ Ünï "));
        assert_eq!(field(&closed.lines, "genesys_queue,", "samples"), "2i");
    }

    #[test]
    fn shutdown_closes_the_open_window_with_what_it_has_and_state_can_resume() {
        let q = queue("q", "Q");
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        poll(&mut aggregator, T0, vec![observation(&q, 2.0, &[])]);
        poll(&mut aggregator, T0 + POLL, vec![observation(&q, 4.0, &[])]);
        let saved = aggregator.open_window().cloned().unwrap();
        let json = serde_json::to_string(&saved).unwrap();
        let closed = aggregator.close().unwrap();
        let partial = encode_all(&aggregator, closed);
        assert_eq!(field(&partial.lines, "genesys_queue,", "samples"), "2i");
        assert!(aggregator.close().is_none());

        // A restart inside the same window carries on from the saved state.
        let mut restarted = Aggregator::new(WINDOW, POLL, vec![]);
        assert!(!restarted.resume(serde_json::from_str(&json).unwrap(), T0 + WINDOW));
        assert!(restarted.resume(serde_json::from_str(&json).unwrap(), T0 + 3 * POLL));
        let mut closed: Vec<Encoded> = Vec::new();
        for i in 3..6 {
            closed = poll(
                &mut restarted,
                T0 + i * POLL,
                vec![observation(&q, 6.0, &[])],
            );
        }
        assert_eq!(field(&closed[0].lines, "genesys_queue,", "samples"), "5i");
        assert_eq!(field(&closed[0].lines, "genesys_queue,", "idle_min"), "2i");
        assert_eq!(
            field(&closed[0].lines, "genesys_queue,", "idle_mean"),
            "4.8"
        );
    }

    #[test]
    fn an_empty_window_writes_nothing() {
        let mut aggregator = Aggregator::new(20_000, POLL, vec![]);
        poll(&mut aggregator, T0, vec![]);
        assert!(poll(&mut aggregator, T0 + POLL, vec![]).is_empty());
    }

    #[test]
    fn a_big_window_is_encoded_in_parts_of_whole_queues() {
        let queues: Vec<Arc<Queue>> = (0..400)
            .map(|i| queue(&format!("q{i:04}"), "Some queue"))
            .collect();
        let mut aggregator = Aggregator::new(20_000, POLL, vec![]);
        let mut closed = Vec::new();
        for tick in [T0, T0 + POLL] {
            let observations = queues
                .iter()
                .map(|q| observation(q, 1.0, &[("voice", 2.0, 3.0), ("chat", 0.0, 0.0)]))
                .collect();
            closed = aggregator.handle(&PollEvent::Observations {
                tick_ms: tick,
                observations,
            });
            closed.extend(aggregator.handle(&PollEvent::TickDone { tick_ms: tick }));
        }
        let parts: Vec<Part> = aggregator.encode(&closed[0]).collect();
        assert!(parts.len() > 1, "400 queues × 3 lines do not fit one part");
        assert!(parts
            .iter()
            .all(|p| p.lines.len() < PART_BYTES + SPARE_BYTES
                && p.lines.capacity() == PART_BYTES + SPARE_BYTES));
        assert_eq!(parts.iter().map(|p| p.points).sum::<usize>(), 400 * 3);
        for part in &parts {
            assert!(
                part.lines.starts_with("genesys_queue,"),
                "a part starts with a queue's first line"
            );
            assert_eq!(part.lines.lines().count(), part.points);
        }
    }

    fn early(aggregator: &mut Aggregator, answered_ms: u64, observations: Vec<QueueObservation>) {
        assert!(aggregator
            .handle(&PollEvent::EarlyObservations {
                answered_ms,
                observations,
            })
            .is_empty());
    }

    fn mean_of(lines: &str, prefix: &str, key: &str) -> f64 {
        field(lines, prefix, key).parse().unwrap()
    }

    /// An early reading is a sample: `_min`, `_max`, `_last` and `samples` see it, and the
    /// mean weighs it by the time it stood (the oracle's formula).
    #[test]
    fn early_readings_are_samples_weighted_by_the_time_they_stood() {
        let q = queue("q", "Q");
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        let mut closed = Vec::new();
        for i in 0..6 {
            let tick = T0 + i * POLL;
            aggregator.handle(&PollEvent::Observations {
                tick_ms: tick,
                observations: vec![observation(&q, 2.0, &[("voice", 1.0, 0.0)])],
            });
            if i == 2 {
                // 20 s + 4 s: 9 agents idle for 2.5 s, then 0 until the next tick.
                early(
                    &mut aggregator,
                    tick + 4_000,
                    vec![observation(&q, 9.0, &[])],
                );
                early(
                    &mut aggregator,
                    tick + 6_500,
                    vec![observation(&q, 0.0, &[])],
                );
            }
            closed = handle(&mut aggregator, &PollEvent::TickDone { tick_ms: tick });
        }
        let lines = &closed[0].lines;
        let agents = "genesys_queue,";
        assert_eq!(field(lines, agents, "samples"), "8i");
        assert_eq!(field(lines, agents, "idle_max"), "9i");
        assert_eq!(field(lines, agents, "idle_min"), "0i");
        assert_eq!(field(lines, agents, "idle_last"), "2i");
        // 2 for 5 × 10 s + 4 s, 9 for 2.5 s, 0 for 3.5 s: (108 + 22.5) / 60.
        let expected = (2.0 * 54.0 + 9.0 * 2.5) / 60.0;
        assert!((mean_of(lines, agents, "idle_mean") - expected).abs() < 1e-12);
        let readings: Vec<(u64, f64)> = [
            (0, 2.0),
            (10_000, 2.0),
            (20_000, 2.0),
            (24_000, 9.0),
            (26_500, 0.0),
            (30_000, 2.0),
            (40_000, 2.0),
            (50_000, 2.0),
        ]
        .iter()
        .map(|(t, v)| (T0 + t, *v))
        .collect();
        let oracle = mean::time_weighted_mean(T0, &readings, POLL).unwrap();
        assert!((mean_of(lines, agents, "idle_mean") - oracle).abs() < 1e-12);
        // voice was absent from the two early readings: 0 there (6 s of 60).
        let voice = "genesys_queue_media,media_type=voice";
        assert_eq!(field(lines, voice, "waiting_min"), "0i");
        assert!((mean_of(lines, voice, "waiting_mean") - 54.0 / 60.0).abs() < 1e-12);
        assert_eq!(field(lines, voice, "samples"), "8i");
    }

    /// Answered after the window's last tick was done, an early reading does not reopen
    /// the written window: it goes to the next one, at its start, where the next tick's
    /// reading takes over (it weighs nothing then, but `_max` sees it).
    #[test]
    fn an_early_reading_after_the_last_tick_goes_to_the_next_window() {
        let q = queue("q", "Q");
        let mut aggregator = Aggregator::new(20_000, POLL, vec![]);
        poll(&mut aggregator, T0, vec![observation(&q, 1.0, &[])]);
        let closed = poll(&mut aggregator, T0 + POLL, vec![observation(&q, 1.0, &[])]);
        assert_eq!(closed.len(), 1);
        early(
            &mut aggregator,
            T0 + 19_500,
            vec![observation(&q, 7.0, &[])],
        );
        assert_eq!(
            aggregator.open_window().map(|w| w.start_ms),
            Some(T0 + 20_000)
        );
        poll(
            &mut aggregator,
            T0 + 20_000,
            vec![observation(&q, 3.0, &[])],
        );
        let next = poll(
            &mut aggregator,
            T0 + 30_000,
            vec![observation(&q, 5.0, &[])],
        );
        let lines = &next[0].lines;
        assert_eq!(next[0].start_ms, T0 + 20_000);
        assert_eq!(field(lines, "genesys_queue,", "samples"), "3i");
        assert_eq!(field(lines, "genesys_queue,", "idle_max"), "7i");
        assert_eq!(mean_of(lines, "genesys_queue,", "idle_mean"), 4.0);
        let carried = [(T0 + 19_500, 7.0), (T0 + 20_000, 3.0), (T0 + 30_000, 5.0)];
        assert_eq!(
            mean::time_weighted_mean(T0 + 20_000, &carried, POLL),
            Some(4.0)
        );
    }

    /// A restart in the middle of a window with early readings: the resumed window ends
    /// exactly as the uninterrupted one (their weights and moments are saved).
    #[test]
    fn a_window_with_early_readings_resumes_exactly() {
        let q = queue("q", "Q");
        let mut first = Aggregator::new(WINDOW, POLL, vec![]);
        poll(
            &mut first,
            T0,
            vec![observation(&q, 3.0, &[("voice", 2.0, 1.5)])],
        );
        early(&mut first, T0 + 3_300, vec![observation(&q, 8.0, &[])]);
        early(
            &mut first,
            T0 + 14_100,
            vec![observation(&q, 1.0, &[("voice", 5.0, 0.5)])],
        );
        let json = serde_json::to_string(first.open_window().unwrap()).unwrap();
        let mut resumed = Aggregator::new(WINDOW, POLL, vec![]);
        assert!(resumed.resume(serde_json::from_str(&json).unwrap(), T0 + 2 * POLL));
        let finish = |aggregator: &mut Aggregator| {
            let mut closed = Vec::new();
            for i in 2..6 {
                closed = poll(
                    aggregator,
                    T0 + i * POLL,
                    vec![observation(&q, i as f64, &[("voice", 1.0, 2.0)])],
                );
            }
            closed.remove(0).lines
        };
        assert_eq!(finish(&mut first), finish(&mut resumed));
    }

    /// An early reading answered in a later window than the open one, which still waits
    /// for its last tick, neither closes that window nor lands in it.
    #[test]
    fn an_early_reading_never_closes_a_window() {
        let q = queue("q", "Q");
        let mut aggregator = Aggregator::new(20_000, POLL, vec![]);
        poll(&mut aggregator, T0, vec![observation(&q, 1.0, &[])]);
        early(
            &mut aggregator,
            T0 + 20_100,
            vec![observation(&q, 9.0, &[])],
        );
        assert_eq!(aggregator.open_window().map(|w| w.start_ms), Some(T0));
        let closed = poll(&mut aggregator, T0 + POLL, vec![observation(&q, 1.0, &[])]);
        assert_eq!(field(&closed[0].lines, "genesys_queue,", "idle_max"), "1i");
        assert_eq!(field(&closed[0].lines, "genesys_queue,", "samples"), "2i");
    }

    /// The race a notification can start: the tick's request is sent, the queue changes,
    /// the early re-poll (one queue) is answered before the tick's (all queues), whose
    /// reading is older than the early one. It is a sample (`samples`, `_min`, `_max`),
    /// weighs nothing and does not become `_last`: the change stays on the wall.
    #[test]
    fn a_tick_answered_after_a_later_early_re_poll_does_not_hide_it() {
        let q = queue("q", "Q");
        let mut aggregator = Aggregator::new(20_000, POLL, vec![]);
        poll(
            &mut aggregator,
            T0,
            vec![observation(&q, 0.0, &[("chat", 1.0, 0.0)])],
        );
        early(
            &mut aggregator,
            T0 + POLL + 200,
            vec![observation(&q, 10.0, &[("voice", 2.0, 0.0)])],
        );
        let (_, parts) = aggregator.encode_open(T0).unwrap();
        let live: String = parts.map(|p| p.lines).collect();
        assert_eq!(field(&live, "genesys_queue,", "idle_last"), "10i");
        let closed = poll(
            &mut aggregator,
            T0 + POLL,
            vec![observation(&q, 4.0, &[("email", 3.0, 0.0)])],
        );
        let lines = &closed[0].lines;
        let agents = "genesys_queue,";
        assert_eq!(field(lines, agents, "idle_last"), "10i");
        assert_eq!(field(lines, agents, "samples"), "3i");
        assert_eq!(field(lines, agents, "idle_max"), "10i");
        assert_eq!(field(lines, agents, "idle_min"), "0i");
        // 0 for 10 s (capped), 10 from 10.2 s to the next tick (9.8 s), 4 for nothing.
        let expected = 10.0 * 9.8 / 19.8;
        assert!((mean_of(lines, agents, "idle_mean") - expected).abs() < 1e-12);
        let readings = [(T0, 0.0), (T0 + POLL + 200, 10.0), (T0 + POLL, 4.0)];
        let oracle = mean::time_weighted_mean(T0, &readings, POLL).unwrap();
        assert!((oracle - expected).abs() < 1e-12);
        // voice came with the latest reading, email only with the older one.
        let voice = "genesys_queue_media,media_type=voice";
        assert_eq!(field(lines, voice, "waiting_last"), "2i");
        assert!((mean_of(lines, voice, "waiting_mean") - 2.0 * 9.8 / 19.8).abs() < 1e-12);
        let email = "genesys_queue_media,media_type=email";
        assert_eq!(field(lines, email, "waiting_last"), "0i");
        assert_eq!(field(lines, email, "waiting_max"), "3i");
        assert_eq!(field(lines, email, "waiting_min"), "0i");
        assert_eq!(mean_of(lines, email, "waiting_mean"), 0.0);
        let chat = "genesys_queue_media,media_type=chat";
        assert_eq!(field(lines, chat, "waiting_last"), "0i");
        assert!((mean_of(lines, chat, "waiting_mean") - 10.0 / 19.8).abs() < 1e-12);
    }

    /// A live update after an early re-poll: just the queues asked for, with the very
    /// lines the update of the whole window would have for them.
    #[test]
    fn the_open_window_of_some_queues_is_their_part_of_the_whole() {
        let (a, b) = (queue("a", "A"), queue("b", "B"));
        let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
        let both = |value| {
            vec![
                observation(&a, value, &[("voice", 1.0, 0.0)]),
                observation(&b, value, &[]),
            ]
        };
        poll(&mut aggregator, T0, both(1.0));
        early(&mut aggregator, T0 + 3_000, vec![observation(&b, 5.0, &[])]);
        let ids: BTreeSet<String> = ["b".to_string(), "gone".to_string()].into();
        let (start, parts) = aggregator.encode_open_queues(&ids).unwrap();
        let some: String = parts.map(|p| p.lines).collect();
        let (_, parts) = aggregator.encode_open(T0).unwrap();
        let whole: String = parts.map(|p| p.lines).collect();
        assert_eq!(start, T0);
        assert_eq!(some.lines().count(), 1);
        assert!(some.starts_with("genesys_queue,queue_id=b,"), "{some}");
        assert!(whole.contains(&some), "{whole}\n{some}");
        assert_eq!(field(&some, "genesys_queue,", "idle_last"), "5i");
        assert!(aggregator
            .encode_open_queues(&["gone".to_string()].into())
            .is_none());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Regular polls with early readings anywhere in their slots, some answered after
        /// the next tick but before its poll's answer: the written mean is the oracle's, and lies between the readings' min and max; without early
        /// readings it is the plain mean, bit for bit.
        #[test]
        fn the_written_mean_is_the_oracles(
            ticks in proptest::collection::vec(0u32..60, 6),
            earlies in proptest::collection::vec(
                proptest::collection::vec((1u64..13_000, 0u32..60), 0..4), 6),
            with_early in proptest::bool::ANY,
        ) {
            let q = queue("q", "Q");
            let mut aggregator = Aggregator::new(WINDOW, POLL, vec![]);
            let mut readings = Vec::new();
            let mut closed = Vec::new();
            for (i, (value, mut slot)) in ticks.iter().zip(earlies).enumerate() {
                let tick = T0 + i as u64 * POLL;
                aggregator.handle(&PollEvent::Observations {
                    tick_ms: tick,
                    observations: vec![observation(&q, f64::from(*value), &[])],
                });
                readings.push((tick, f64::from(*value)));
                slot.sort_unstable();
                // Some answered after the next tick, before its poll's answer (the race of
                // `a_tick_answered_after_a_later_early_re_poll_does_not_hide_it`); none
                // after the window's end.
                let last_slot = i == 5;
                for (offset, value) in slot
                    .into_iter()
                    .filter(|(offset, _)| with_early && !(last_slot && *offset >= POLL))
                {
                    early(&mut aggregator, tick + offset, vec![observation(&q, f64::from(value), &[])]);
                    readings.push((tick + offset, f64::from(value)));
                }
                closed = handle(&mut aggregator, &PollEvent::TickDone { tick_ms: tick });
            }
            let written = mean_of(&closed[0].lines, "genesys_queue,", "idle_mean");
            let oracle = mean::time_weighted_mean(T0, &readings, POLL).unwrap();
            proptest::prop_assert!((written - oracle).abs() <= 1e-9 * oracle.abs().max(1.0), "{written} != {oracle}");
            let min = readings.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
            let max = readings.iter().map(|r| r.1).fold(f64::NEG_INFINITY, f64::max);
            proptest::prop_assert!(written >= min - 1e-9 && written <= max + 1e-9);
            if !with_early {
                let plain = ticks.iter().map(|v| f64::from(*v)).sum::<f64>() / 6.0;
                proptest::prop_assert_eq!(written, plain);
            }
        }
    }
}
