//! What the wallboard knows: the latest reading of every queue, fed by the same
//! [`PollEvent`]s the aggregator folds into windows, and the self-metrics.

use std::collections::HashMap;
use std::sync::Arc;

use crate::model::{agent, media, PollEvent, Queue, QueueObservation};
use crate::stats::StatsSnapshot;

use super::table::{Frame, Row};

/// The status line until the first window (or poll) has closed.
const NO_STATUS_YET: &str = "self-metrics: after the first window";

/// The latest poll of each queue, keyed by queue id (a rename replaces the row).
#[derive(Debug, Default)]
pub struct Board {
    latest: HashMap<String, Reading>,
    status: String,
}

#[derive(Debug)]
struct Reading {
    queue: Arc<Queue>,
    row: Row,
}

impl Board {
    /// Takes the observations of a poll; other events change nothing.
    pub fn observe(&mut self, event: &PollEvent) {
        if let PollEvent::Observations { observations, .. } = event {
            for observation in observations {
                self.latest.insert(
                    observation.queue.id.clone(),
                    Reading {
                        queue: observation.queue.clone(),
                        row: row_of(observation),
                    },
                );
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
            rows: readings.into_iter().map(|r| r.row.clone()).collect(),
            status: if self.status.is_empty() {
                NO_STATUS_YET.into()
            } else {
                self.status.clone()
            },
            footer,
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
        PollEvent::Observations {
            tick_ms: 0,
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
