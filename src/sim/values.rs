//! The simulated numbers: pure functions of (seed, queue index, metric, time), so a test
//! can recompute exactly what the Sim answered at any request without talking to it.
//!
//! Observations depend on the `slot` (request time / value period). Conversation KPIs are
//! built from deterministic per-minute "events" (offers, answers, abandons, handle ends),
//! each visible from its emission instant plus a random processing lag of at most
//! `settle`, so an open or recently closed bucket grows and then stops changing, and the
//! consistency rules of docs/genesys-api.md#aggregates-consistency hold at every moment.

/// The contract's agent metrics, in `model::agent` order, plus per-media conversation
/// counts: everything one observation request reports about one queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpectedObservation {
    pub on_queue: u64,
    pub idle: u64,
    pub interacting: u64,
    pub communicating: u64,
    pub not_responding: u64,
    pub off_queue: u64,
    pub active: u64,
    pub members: u64,
    /// Presence breakdown of the active members: `(system presence, org presence id, count)`.
    pub presences: Vec<(&'static str, &'static str, u64)>,
    /// One entry per configured media type, in configuration order.
    pub media: Vec<ExpectedMedia>,
}

impl ExpectedObservation {
    /// Agent counts indexed like `model::QueueObservation::agents`.
    pub fn agents(&self) -> [f64; 8] {
        [
            self.on_queue as f64,
            self.idle as f64,
            self.interacting as f64,
            self.communicating as f64,
            self.not_responding as f64,
            self.off_queue as f64,
            self.active as f64,
            self.members as f64,
        ]
    }

    /// The media entry for `media_type`, if that media type is simulated.
    pub fn media(&self, media_type: &str) -> Option<&ExpectedMedia> {
        self.media.iter().find(|m| m.media_type == media_type)
    }
}

/// Conversation counts of one queue and media type at one slot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExpectedMedia {
    pub media_type: String,
    pub waiting: u64,
    pub interacting: u64,
    pub alerting: u64,
    /// How long the oldest waiting interaction has waited at request time (0 when none):
    /// the Sim answers `calculatedMetricValue = request_time_ms - longest_waiting_ms`.
    pub longest_waiting_ms: u64,
    /// Likewise for the longest-running interaction.
    pub longest_interacting_ms: u64,
}

/// Count, sum, min and max of one timer metric, in milliseconds (docs/genesys-api.md#aggregates-answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timer {
    pub count: u64,
    pub sum: u64,
    pub min: u64,
    pub max: u64,
}

impl Timer {
    fn add(&mut self, ms: u64) {
        self.min = if self.count == 0 {
            ms
        } else {
            self.min.min(ms)
        };
        self.max = self.max.max(ms);
        self.count += 1;
        self.sum += ms;
    }

    fn merge(&mut self, other: &Timer) {
        if other.count == 0 {
            return;
        }
        self.min = if self.count == 0 {
            other.min
        } else {
            self.min.min(other.min)
        };
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// The interval KPIs of one (queue, media type, bucket), as the aggregates endpoint
/// reports them (absent metric = zero here).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KpiValues {
    pub offered: u64,
    pub answered: Timer,
    pub abandoned: Timer,
    pub short_abandoned: Timer,
    pub flowed_out: Timer,
    pub waited: Timer,
    pub handled: Timer,
    pub over_sla: u64,
    pub transferred: u64,
    pub sl_numerator: u64,
    pub sl_denominator: u64,
    /// The queue's service-level target for this media type (0–1).
    pub sl_target: f64,
}

impl KpiValues {
    /// True when no metric has an event: the bucket is left out of the response.
    pub fn is_empty(&self) -> bool {
        self.offered == 0
            && self.answered.count == 0
            && self.abandoned.count == 0
            && self.flowed_out.count == 0
            && self.handled.count == 0
            && self.transferred == 0
    }

    /// Adds `other` (another media type, queue or bucket) the way Genesys combines them.
    pub fn merge(&mut self, other: &KpiValues) {
        self.offered += other.offered;
        self.answered.merge(&other.answered);
        self.abandoned.merge(&other.abandoned);
        self.short_abandoned.merge(&other.short_abandoned);
        self.flowed_out.merge(&other.flowed_out);
        self.waited.merge(&other.waited);
        self.handled.merge(&other.handled);
        self.over_sla += other.over_sla;
        self.transferred += other.transferred;
        self.sl_numerator += other.sl_numerator;
        self.sl_denominator += other.sl_denominator;
    }
}

/// Abandons shorter than this are also short abandons (the fixtures' threshold).
pub const SHORT_ABANDON_MS: u64 = 10_000;
/// KPI events are generated per minute of wall-clock time.
pub const CELL_MS: u64 = 60_000;

/// splitmix64 finaliser: the one source of pseudo-randomness (no `rand` crate).
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a seed and a few words, order-sensitive.
pub fn hash(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(mix(seed), |h, p| mix(h ^ p))
}

/// A tiny splitmix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform-ish in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        let r = self.next_u64();
        if n == 0 {
            0
        } else {
            r % n
        }
    }
}

const TAG_SIZE: u64 = 1;
const TAG_OBS: u64 = 2;
const TAG_KPI: u64 = 3;
const TAG_KPI_ACTIVE: u64 = 4;
const TAG_ID: u64 = 5;
const TAG_MOMENT: u64 = 6;

/// The value slot of queue `index` at `time_ms`. Periodic: every queue changes at each
/// multiple of the period (`time / period`). At random moments: each queue changes once
/// in every period, at an instant drawn from (seed, queue, period number), so changes
/// are spread over the whole period and the queues do not change together.
pub fn slot(seed: u64, index: u64, time_ms: u64, period_ms: u64, random_moments: bool) -> u64 {
    let period_ms = period_ms.max(1);
    let cell = time_ms / period_ms;
    if !random_moments {
        return cell;
    }
    if time_ms % period_ms >= change_offset(seed, index, cell, period_ms) {
        cell
    } else {
        cell.saturating_sub(1)
    }
}

/// Where in period `cell` queue `index` changes (ms after the period's start).
fn change_offset(seed: u64, index: u64, cell: u64, period_ms: u64) -> u64 {
    hash(seed, &[TAG_MOMENT, index, cell]) % period_ms
}

/// Every change of queue `index` in `[from_ms, to_ms)` with random moments: `(instant,
/// new slot)`, in time order. The test log of when each value was true.
pub fn changes(seed: u64, index: u64, from_ms: u64, to_ms: u64, period_ms: u64) -> Vec<(u64, u64)> {
    let period_ms = period_ms.max(1);
    (from_ms / period_ms..=to_ms / period_ms)
        .map(|cell| {
            (
                cell * period_ms + change_offset(seed, index, cell, period_ms),
                cell,
            )
        })
        .filter(|&(at, _)| at >= from_ms && at < to_ms)
        .collect()
}

/// Presence-definition ids of the fixtures' `systemToOrganizationMappings`.
pub const PRESENCE_ON_QUEUE: &str = "e08eaf1b-ee47-4fa9-a231-1200e284798f";
pub const PRESENCE_AVAILABLE: &str = "6a3af858-942f-489d-9700-5f9bcdcdae9b";
pub const PRESENCE_BUSY: &str = "31fe3bac-dea6-44b7-bed7-47f91660a1a0";
/// The custom "Lunch" presence mapped to `MEAL`.
pub const PRESENCE_LUNCH: &str = "8e3f5a1c-2b7d-4c9e-a4f6-0d2b8c6e4a19";
pub const PRESENCE_OFFLINE: &str = "ccf3c10a-aa2c-4845-8e8d-f59fa48c58e5";

/// The fixtures' odd names first (docs/genesys-api.md#queue-fields), then the edge cases of the contract.
pub const ODD_NAMES: [&str; 9] = [
    "Billing\\Escalations",
    "Sales, EMEA = \"Tier 1\"",
    "Support – Ünïcode",
    "🎧 VIP Line 📞",
    "Retention & Win-back / Außendienst (Ω)",
    "Very long queue name for the customer care overflow team handling premium business accounts across the Northern European region during extended weekend opening hours including public holidays and special promotional campaign peaks 2025",
    "C:\\Support\\",
    "a=b \"quoted\"",
    "  Padded Queue  ",
];

/// Index of `Support – Ünïcode`, whose voice service level is 90 % in 30 s (fixtures).
const SUPPORT_INDEX: u64 = 2;

/// Name of the queue created with `index` at start-up.
pub fn queue_name(index: u64) -> String {
    match ODD_NAMES.get(index as usize) {
        Some(name) => (*name).to_string(),
        None => format!("Queue {index:04}"),
    }
}

/// A lower-case UUID-shaped id, stable for (seed, index).
pub fn queue_id(seed: u64, index: u64) -> String {
    let h = hash(seed, &[TAG_ID, index]);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 12) & 0xfff,
        index
    )
}

/// Service-level `(target fraction, threshold ms)` of a queue's media type, as in the
/// fixture queues: 80 % in 20 s, email 24 h, message 30 s, Support – Ünïcode voice 90 % in 30 s.
pub fn service_level(index: u64, media: &str) -> (f64, u64) {
    match media {
        "voice" | "call" if index == SUPPORT_INDEX => (0.9, 30_000),
        "email" => (0.8, 86_400_000),
        "message" => (0.8, 30_000),
        _ => (0.8, 20_000),
    }
}

/// How busy a media type is, and the longest plausible wait/interaction for it, in ms.
fn media_profile(media: &str) -> (u64, u64, u64) {
    match media {
        "voice" => (6, 600_000, 1_800_000),
        "email" => (12, 172_800_000, 3_600_000),
        "chat" | "message" => (3, 300_000, 1_200_000),
        "callback" => (3, 1_800_000, 900_000),
        _ => (2, 300_000, 600_000),
    }
}

/// The observation of the queue with `index` at `slot`, for the given media types.
pub fn observation(
    seed: u64,
    index: u64,
    slot: u64,
    media_types: &[String],
) -> ExpectedObservation {
    let size = 4 + hash(seed, &[TAG_SIZE, index]) % 30;
    let mut rng = Rng::new(hash(seed, &[TAG_OBS, index, slot]));
    let members = size + rng.below(3);
    let active = members - rng.below(members / 4 + 1);
    let off_queue = rng.below(active / 3 + 1);
    let on_queue = active - off_queue;
    let not_responding = rng.below(on_queue.min(1) + 1);
    let mut rest = on_queue - not_responding;
    let communicating = rng.below(rest / 5 + 1);
    rest -= communicating;
    let interacting = rng.below(rest + 1);
    let idle = rest - interacting;
    let presences = presences(&mut rng, on_queue, off_queue);
    let media = media_types
        .iter()
        .map(|m| media_observation(&mut rng, m))
        .collect();
    ExpectedObservation {
        on_queue,
        idle,
        interacting,
        communicating,
        not_responding,
        off_queue,
        active,
        members,
        presences,
        media,
    }
}

/// Splits the active members over presences so that they sum to `active` (§4.7).
fn presences(
    rng: &mut Rng,
    on_queue: u64,
    off_queue: u64,
) -> Vec<(&'static str, &'static str, u64)> {
    let available = rng.below(off_queue + 1);
    let mut rest = off_queue - available;
    let busy = rng.below(rest + 1);
    rest -= busy;
    let lunch = rng.below(rest + 1);
    let offline = rest - lunch;
    vec![
        ("ON_QUEUE", PRESENCE_ON_QUEUE, on_queue),
        ("AVAILABLE", PRESENCE_AVAILABLE, available),
        ("BUSY", PRESENCE_BUSY, busy),
        ("MEAL", PRESENCE_LUNCH, lunch),
        ("OFFLINE", PRESENCE_OFFLINE, offline),
    ]
}

fn media_observation(rng: &mut Rng, media: &str) -> ExpectedMedia {
    let (busy, max_wait, max_talk) = media_profile(media);
    let waiting = rng.below(busy + 1);
    let interacting = rng.below(busy / 2 + 2);
    let alerting = rng.below(2);
    let wait_age = 1_000 + rng.below(max_wait);
    let talk_age = 1_000 + rng.below(max_talk);
    ExpectedMedia {
        media_type: media.to_string(),
        waiting,
        interacting,
        alerting,
        longest_waiting_ms: if waiting > 0 { wait_age } else { 0 },
        longest_interacting_ms: if interacting > 0 { talk_age } else { 0 },
    }
}

impl ExpectedMedia {
    /// Nothing waiting, interacting or alerting.
    pub fn is_empty(&self) -> bool {
        self.waiting + self.interacting + self.alerting == 0
    }
}

/// An observation of an unknown or empty queue: all zero.
pub fn empty_observation(media_types: &[String]) -> ExpectedObservation {
    ExpectedObservation {
        media: media_types
            .iter()
            .map(|m| ExpectedMedia {
                media_type: m.clone(),
                ..ExpectedMedia::default()
            })
            .collect(),
        ..ExpectedObservation::default()
    }
}

/// What happened to one interaction, as the aggregates API emits it (§9.4).
#[derive(Debug, Clone, Copy)]
enum Event {
    Offered,
    Answered(u64),
    Abandoned(u64),
    FlowedOut(u64),
    Handled { ms: u64, transferred: bool },
}

/// Parameters of a KPI computation that do not change per cell.
#[derive(Debug, Clone, Copy)]
pub struct KpiScope<'a> {
    pub seed: u64,
    pub index: u64,
    pub media: &'a str,
    /// Longest processing lag of an event, in ms.
    pub settle_ms: u64,
}

/// Whether this queue has any traffic on `media`: voice always, other media types on
/// about three queues in four (so groups are missing as in the fixtures).
fn media_active(scope: &KpiScope) -> bool {
    scope.media == "voice"
        || hash(
            scope.seed,
            &[TAG_KPI_ACTIVE, scope.index, media_key(scope.media)],
        ) % 4
            != 0
}

fn media_key(media: &str) -> u64 {
    media.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// The KPIs of `[start_ms, end_ms)` as visible at `now_ms` (`u64::MAX` = final values).
pub fn kpis(scope: &KpiScope, start_ms: u64, end_ms: u64, now_ms: u64) -> KpiValues {
    let (target, threshold) = service_level(scope.index, scope.media);
    let mut values = KpiValues {
        sl_target: target,
        ..KpiValues::default()
    };
    if !media_active(scope) || end_ms <= start_ms {
        return values;
    }
    let last_cell = end_ms.div_ceil(CELL_MS);
    for cell in start_ms / CELL_MS..last_cell {
        if cell * CELL_MS > now_ms {
            break;
        }
        for_each_event(scope, cell, |at, visible, event| {
            if at >= start_ms && at < end_ms && visible <= now_ms {
                apply(&mut values, event, threshold);
            }
        });
    }
    values
}

/// Generates the events of one minute: `f(emitted_at, visible_at, event)`.
fn for_each_event(scope: &KpiScope, cell: u64, mut f: impl FnMut(u64, u64, Event)) {
    let mut rng = Rng::new(hash(
        scope.seed,
        &[TAG_KPI, scope.index, media_key(scope.media), cell],
    ));
    let rate = if scope.media == "voice" { 2 } else { 1 };
    let (_, max_wait, max_talk) = media_profile(scope.media);
    let offers = rng.below(rate + 1);
    let outcomes = rng.below(rate + 1);
    let ends = rng.below(rate + 1);
    let mut timed = |rng: &mut Rng, event: Event| {
        let at = cell * CELL_MS + rng.below(CELL_MS);
        let visible = at + rng.below(scope.settle_ms + 1);
        f(at, visible, event);
    };
    for _ in 0..offers {
        timed(&mut rng, Event::Offered);
    }
    for _ in 0..outcomes {
        let event = match rng.below(10) {
            // The shorter of two draws: most answers come quickly, a few very late.
            0..=6 => Event::Answered(300 + rng.below(max_wait / 6).min(rng.below(max_wait / 6))),
            7 | 8 => Event::Abandoned(1_000 + rng.below(60_000)),
            _ => Event::FlowedOut(60_000 + rng.below(120_000)),
        };
        timed(&mut rng, event);
    }
    for _ in 0..ends {
        let ms = 20_000 + rng.below(max_talk / 2);
        let transferred = rng.below(8) == 0;
        timed(&mut rng, Event::Handled { ms, transferred });
    }
}

fn apply(values: &mut KpiValues, event: Event, threshold: u64) {
    match event {
        Event::Offered => values.offered += 1,
        Event::Answered(ms) => {
            values.answered.add(ms);
            values.waited.add(ms);
            values.sl_denominator += 1;
            if ms <= threshold {
                values.sl_numerator += 1;
            } else {
                values.over_sla += 1;
            }
        }
        Event::Abandoned(ms) => {
            values.abandoned.add(ms);
            values.waited.add(ms);
            values.sl_denominator += 1;
            if ms < SHORT_ABANDON_MS {
                values.short_abandoned.add(ms);
            }
        }
        Event::FlowedOut(ms) => {
            values.flowed_out.add(ms);
            values.waited.add(ms);
        }
        Event::Handled { ms, transferred } => {
            values.handled.add(ms);
            if transferred {
                values.transferred += 1;
            }
        }
    }
}
