//! What the wallboard knows: the latest reading of every queue, fed by the same
//! [`PollEvent`]s the aggregator folds into windows; today's service level and abandons
//! from the KPI buckets the KPI thread parses; and the self-metrics.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::genesys::conversation_aggregates::KpiBucket;
use crate::model::{agent, media, PollEvent, Queue, QueueObservation};
use crate::stats::StatsSnapshot;

use super::table::{Frame, Row};

/// The status line until the first window (or poll) has closed.
const NO_STATUS_YET: &str = "self-metrics: after the first window";

/// The latest poll of each queue, keyed by queue id (a rename replaces the row).
#[derive(Debug, Default)]
pub struct Board {
    latest: HashMap<String, Reading>,
    /// The last [`KEEP_POLLS`] completed poll ticks, oldest first.
    recent_ticks: VecDeque<u64>,
    /// By queue id; only when KPIs are on.
    today: HashMap<String, DayKpis>,
    kpis: bool,
    status: String,
}

const DAY_MS: u64 = 86_400_000;
/// A queue that none of this many polls answered for leaves the table (it was
/// deselected, or its requests keep failing).
const KEEP_POLLS: usize = 3;

/// The KPI buckets of one queue for the newest UTC day seen: (bucket start, media type)
/// → (service level numerator, denominator, abandoned). A bucket is re-queried until
/// it settles; each answer has its full numbers, so the latest one replaces the others.
#[derive(Debug, Default)]
struct DayKpis {
    day_start_ms: u64,
    buckets: HashMap<(u64, String), [u64; 3]>,
}

impl DayKpis {
    fn record(&mut self, bucket: &KpiBucket) {
        let day = bucket.bucket_start_ms - bucket.bucket_start_ms % DAY_MS;
        if day > self.day_start_ms {
            *self = DayKpis {
                day_start_ms: day,
                buckets: HashMap::new(),
            };
        } else if day < self.day_start_ms {
            return;
        }
        self.buckets.insert(
            (bucket.bucket_start_ms, bucket.media_type.clone()),
            [
                bucket.service_level_numerator,
                bucket.service_level_denominator,
                bucket.abandoned,
            ],
        );
    }

    /// Service level in percent (NaN when nothing counted) and abandons, all media.
    fn totals(&self) -> (f64, f64) {
        let [numerator, denominator, abandoned] =
            self.buckets.values().fold([0u64; 3], |sum, b| {
                [0, 1, 2].map(|i| sum[i].saturating_add(b[i]))
            });
        let service_level = if denominator == 0 {
            f64::NAN
        } else {
            100.0 * numerator as f64 / denominator as f64
        };
        (service_level, abandoned as f64)
    }
}

#[derive(Debug)]
struct Reading {
    queue: Arc<Queue>,
    tick_ms: u64,
    row: Row,
}

impl Board {
    /// An empty board; `kpis` shows the service level and abandon columns.
    pub fn new(kpis: bool) -> Board {
        Board {
            kpis,
            ..Board::default()
        }
    }

    /// Takes one KPI bucket as parsed (ignored with KPIs off).
    pub fn observe_kpi(&mut self, bucket: &KpiBucket) {
        if self.kpis {
            self.today
                .entry(bucket.queue_id.clone())
                .or_default()
                .record(bucket);
        }
    }

    /// Takes the observations of a poll; at the end of a poll, forgets the queues the
    /// last [`KEEP_POLLS`] polls did not answer for.
    pub fn observe(&mut self, event: &PollEvent) {
        match event {
            PollEvent::Observations {
                tick_ms,
                observations,
            }
            | PollEvent::EarlyObservations {
                answered_ms: tick_ms,
                observations,
            } => {
                for observation in observations {
                    self.latest.insert(
                        observation.queue.id.clone(),
                        Reading {
                            queue: observation.queue.clone(),
                            tick_ms: *tick_ms,
                            row: row_of(observation),
                        },
                    );
                }
            }
            PollEvent::TickDone { tick_ms } => {
                self.recent_ticks.push_back(*tick_ms);
                if self.recent_ticks.len() > KEEP_POLLS {
                    self.recent_ticks.pop_front();
                }
                if let (KEEP_POLLS, Some(&oldest)) =
                    (self.recent_ticks.len(), self.recent_ticks.front())
                {
                    self.latest.retain(|_, reading| reading.tick_ms >= oldest);
                    self.today.retain(|id, _| self.latest.contains_key(id));
                }
            }
        }
    }

    /// The self-metrics line from the counters of the last window (or poll). `points`
    /// is what the window made and whether it goes to InfluxDB; `None` when nothing is
    /// written at all (`top`).
    pub fn set_status(&mut self, snapshot: &StatsSnapshot, points: Option<(u64, bool)>) {
        let output = match points {
            Some((points, true)) => format!(
                " · points {points} · written {} ({} errors)",
                snapshot.points_written, snapshot.write_errors
            ),
            Some((points, false)) => format!(" · points {points} (not written)"),
            None => String::new(),
        };
        self.status = format!(
            "polls {} · requests {} · 429s {} · errors {}{output}",
            snapshot.polls, snapshot.api_requests, snapshot.api_rate_limited, snapshot.poll_errors,
        );
    }

    /// The frame to draw: busiest queue first (most waiting, then longest wait, then
    /// name, so equal queues keep their place between frames).
    pub fn frame(&self, title: String, footer: Option<String>) -> Frame {
        let mut readings: Vec<&Reading> = self.latest.values().collect();
        readings.sort_by(|a, b| {
            b.row
                .waiting
                .total_cmp(&a.row.waiting)
                .then(b.row.longest_wait_s.total_cmp(&a.row.longest_wait_s))
                .then_with(|| a.queue.cmp(&b.queue))
        });
        Frame {
            title,
            rows: readings.into_iter().map(|r| self.with_kpis(r)).collect(),
            status: if self.status.is_empty() {
                NO_STATUS_YET.into()
            } else {
                self.status.clone()
            },
            footer,
            kpis: self.kpis,
        }
    }

    fn with_kpis(&self, reading: &Reading) -> Row {
        let (service_level_pct, abandoned) = self
            .today
            .get(&reading.queue.id)
            .map_or((f64::NAN, f64::NAN), DayKpis::totals);
        Row {
            service_level_pct,
            abandoned,
            ..reading.row.clone()
        }
    }
}

/// Callers waiting summed over media types, the longest wait of any, and the agents.
fn row_of(observation: &QueueObservation) -> Row {
    let media = &observation.media;
    Row {
        name: observation.queue.name.clone(),
        waiting: media.iter().map(|m| m.values[media::WAITING]).sum(),
        longest_wait_s: media
            .iter()
            .map(|m| m.values[media::LONGEST_WAITING_SECONDS])
            .fold(0.0, f64::max),
        idle: observation.agents[agent::IDLE],
        interacting: observation.agents[agent::INTERACTING],
        on_queue: observation.agents[agent::ON_QUEUE],
        service_level_pct: f64::NAN,
        abandoned: f64::NAN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MediaObservation;

    fn observation(id: &str, name: &str, waiting: [f64; 2], longest: [f64; 2]) -> QueueObservation {
        let media = |kind: &str, i: usize| MediaObservation {
            media_type: Arc::from(kind),
            values: [waiting[i], 0.0, 0.0, longest[i], 0.0],
        };
        QueueObservation {
            queue: Arc::new(Queue {
                id: id.into(),
                name: name.into(),
            }),
            agents: [4.0, 1.0, 3.0, 0.0, 0.0, 2.0, 0.0, 6.0],
            media: vec![media("voice", 0), media("chat", 1)],
        }
    }

    fn event(observations: Vec<QueueObservation>) -> PollEvent {
        polled(0, observations)
    }

    fn polled(tick_ms: u64, observations: Vec<QueueObservation>) -> PollEvent {
        PollEvent::Observations {
            tick_ms,
            observations,
        }
    }

    fn names(board: &Board) -> Vec<String> {
        board
            .frame(String::new(), None)
            .rows
            .into_iter()
            .map(|r| r.name)
            .collect()
    }

    #[test]
    fn the_busiest_queue_comes_first_and_media_types_add_up() {
        let mut board = Board::default();
        board.observe(&event(vec![
            observation("a", "Quiet", [0.0, 0.0], [0.0, 0.0]),
            observation("b", "Long wait", [1.0, 1.0], [10.0, 300.0]),
            observation("c", "Busy", [3.0, 0.0], [20.0, 0.0]),
        ]));
        assert_eq!(names(&board), ["Busy", "Long wait", "Quiet"]);
        let rows = board.frame(String::new(), None).rows;
        assert_eq!((rows[1].waiting, rows[1].longest_wait_s), (2.0, 300.0));
        assert_eq!(
            (rows[0].idle, rows[0].interacting, rows[0].on_queue),
            (1.0, 3.0, 4.0)
        );
    }

    #[test]
    fn the_status_line_says_where_the_points_went() {
        let snapshot = StatsSnapshot {
            polls: 5,
            api_requests: 10,
            api_rate_limited: 1,
            poll_errors: 2,
            points_written: 58,
            write_errors: 3,
            ..StatsSnapshot::default()
        };
        let status = |points| {
            let mut board = Board::default();
            board.set_status(&snapshot, points);
            board.frame(String::new(), None).status
        };
        assert_eq!(
            status(Some((60, true))),
            "polls 5 · requests 10 · 429s 1 · errors 2 · points 60 · written 58 (3 errors)"
        );
        assert_eq!(
            status(Some((60, false))),
            "polls 5 · requests 10 · 429s 1 · errors 2 · points 60 (not written)"
        );
        assert_eq!(status(None), "polls 5 · requests 10 · 429s 1 · errors 2");
    }

    fn bucket(start_ms: u64, media: &str, sl: [u64; 2], abandoned: u64) -> KpiBucket {
        KpiBucket {
            queue_id: "a".into(),
            media_type: media.into(),
            bucket_start_ms: start_ms,
            abandoned,
            service_level_numerator: sl[0],
            service_level_denominator: sl[1],
            ..KpiBucket::default()
        }
    }

    fn kpis(board: &Board) -> (f64, f64) {
        let row = &board.frame(String::new(), None).rows[0];
        (row.service_level_pct, row.abandoned)
    }

    #[test]
    fn today_adds_up_the_latest_answer_of_each_bucket_of_the_newest_day() {
        let mut board = Board::new(true);
        board.observe(&event(vec![observation("a", "A", [0.0; 2], [0.0; 2])]));
        assert!(kpis(&board).0.is_nan(), "nothing offered yet");
        let day = 20 * DAY_MS;
        board.observe_kpi(&bucket(day - 900_000, "voice", [0, 10], 9));
        board.observe_kpi(&bucket(day, "voice", [1, 2], 1));
        board.observe_kpi(&bucket(day, "voice", [3, 4], 1));
        board.observe_kpi(&bucket(day, "chat", [1, 4], 2));
        board.observe_kpi(&bucket(day + 900_000, "voice", [2, 2], 0));
        board.observe_kpi(&bucket(day - 900_000, "voice", [0, 10], 9));
        assert_eq!(kpis(&board), (60.0, 3.0));
        let frame = board.frame(String::new(), None);
        assert!(frame.kpis);
        assert!(!Board::new(false).frame(String::new(), None).kpis);
    }

    #[test]
    fn a_queue_no_poll_answered_for_three_polls_leaves() {
        let mut board = Board::new(true);
        let a = || observation("a", "A", [0.0; 2], [0.0; 2]);
        let b = || observation("b", "B", [0.0; 2], [0.0; 2]);
        board.observe(&polled(10, vec![a(), b()]));
        board.observe_kpi(&bucket(0, "voice", [1, 1], 0));
        for tick in [10, 20, 30] {
            if tick > 10 {
                board.observe(&polled(tick, vec![b()]));
            }
            board.observe(&PollEvent::TickDone { tick_ms: tick });
            assert_eq!(names(&board), ["A", "B"], "tick {tick}");
        }
        board.observe(&polled(40, vec![b()]));
        board.observe(&PollEvent::TickDone { tick_ms: 40 });
        assert_eq!(names(&board), ["B"]);
        assert!(board.today.is_empty());
    }

    #[test]
    fn the_latest_reading_wins() {
        let mut board = Board::default();
        board.observe(&event(vec![
            observation("a", "A", [5.0, 0.0], [0.0, 0.0]),
            observation("b", "B", [1.0, 0.0], [0.0, 0.0]),
        ]));
        board.observe(&event(vec![observation(
            "a",
            "A renamed",
            [0.0, 0.0],
            [0.0, 0.0],
        )]));
        assert_eq!(names(&board), ["B", "A renamed"]);
    }
}
