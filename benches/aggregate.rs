//! Aggregation + line-protocol encoding throughput on one thread (no criterion: a
//! hand-written loop that prints figures).
//!
//! A *reading* is one metric value folded into a window: per queue and poll, 8 agent
//! metrics plus 5 conversation metrics for each of the 3 media types = 23 readings
//! (`BENCH_MEDIA`, 1 to 5, sets how many; the simulator of the e2e bench has 5).
//! Each round folds `POLLS_PER_WINDOW` polls of every queue (in chunks of 100 queues, as
//! the poller sends them), closes the window and encodes it as line protocol; the time
//! of all of that is divided into the readings folded. CPU time (utime+stime of this
//! process, from /proc/self/stat) is reported beside wall time because the machine is
//! shared. `BENCH_SECONDS` (default 3) sets how long each size runs.
//!
//! Memory: the growth of the resident set measures the heap the open window holds once every queue
//! is in it (`open_window_bytes_per_queue`) and one poll's readings in flight between
//! poller and aggregator (`poll_event_bytes_per_queue`): at 5,000 queues these are most
//! of the service's resident memory.
//!
//! Output: one `RESULT aggregate queues=… readings_per_s=…` line per size, which
//! `benches/run-all.sh` collects.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use genesys2influx::aggregate::Aggregator;
use genesys2influx::model::{MediaObservation, PollEvent, Queue, QueueObservation};
use genesys2influx::sim::DEFAULT_MEDIA_TYPES;

const POLL_MS: u64 = 10_000;
const WINDOW_MS: u64 = 60_000;
const POLLS_PER_WINDOW: u64 = WINDOW_MS / POLL_MS;
const CHUNK: usize = 100;
/// 2025-06-02T14:30:00Z, a window boundary.
const T0: u64 = 1_748_874_600_000;

/// Resident bytes of this process now (/proc/self/statm). The heap grows into fresh
/// pages here, so the growth of the resident set across a step is what the step holds
/// (glibc's allocator, within a page or two; `unsafe_code` is forbidden, so no counting
/// allocator).
fn heap_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let seconds: f64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let sizes: Vec<usize> = std::env::var("BENCH_QUEUES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 10_000]);
    let media_count = std::env::var("BENCH_MEDIA")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3usize)
        .clamp(1, DEFAULT_MEDIA_TYPES.len());
    for queues in sizes {
        run(queues, media_count, Duration::from_secs_f64(seconds));
    }
}

fn run(queue_count: usize, media_count: usize, budget: Duration) {
    let media: Vec<Arc<str>> = DEFAULT_MEDIA_TYPES[..media_count]
        .iter()
        .map(|m| Arc::from(*m))
        .collect();
    let queues: Vec<Arc<Queue>> = (0..queue_count)
        .map(|i| {
            Arc::new(Queue {
                id: format!("{:08x}-4c1e-4b7a-9d3e-{:012x}", i * 7919, i),
                name: format!("Queue {i:05} Sales, EMEA"),
            })
        })
        .collect();
    // One window's events, built once; each round only moves their ticks forward.
    let before_events = heap_bytes();
    let mut events: Vec<PollEvent> = Vec::new();
    for poll in 0..POLLS_PER_WINDOW {
        let tick_ms = T0 + poll * POLL_MS;
        for chunk in queues.chunks(CHUNK) {
            let observations = chunk
                .iter()
                .enumerate()
                .map(|(i, queue)| observation(queue, &media, i as u64 + poll))
                .collect();
            events.push(PollEvent::Observations {
                tick_ms,
                observations,
            });
        }
        events.push(PollEvent::TickDone { tick_ms });
    }

    let poll_event_bytes = (heap_bytes().saturating_sub(before_events)) / POLLS_PER_WINDOW as usize;

    let mut aggregator = Aggregator::new(WINDOW_MS, POLL_MS, vec![("env".into(), "prod".into())]);
    let open_window_bytes = open_window_bytes(&mut aggregator, &events);
    let mut rounds = 0u64;
    let mut bytes = 0usize;
    let mut points = 0usize;
    let cpu_start = common::cpu_seconds("/proc/self/stat");
    let started = Instant::now();
    while started.elapsed() < budget || rounds == 0 {
        for event in &mut events {
            match event {
                PollEvent::Observations { tick_ms, .. }
                | PollEvent::TickDone { tick_ms }
                | PollEvent::EarlyObservations {
                    answered_ms: tick_ms,
                    ..
                } => *tick_ms += if rounds == 0 { 0 } else { WINDOW_MS },
            }
        }
        for event in &events {
            for window in aggregator.handle(event) {
                for part in aggregator.encode(&window) {
                    bytes += part.lines.len();
                    points += part.points;
                    std::hint::black_box(&part.lines);
                }
            }
        }
        rounds += 1;
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = common::cpu_seconds("/proc/self/stat") - cpu_start;
    let readings = rounds * POLLS_PER_WINDOW * queue_count as u64 * (8 + 5 * media_count as u64);
    let per_cpu = if cpu > 0.0 {
        readings as f64 / cpu
    } else {
        0.0
    };
    println!(
        "RESULT aggregate queues={queue_count} media={media_count} windows={rounds} readings={readings} \
         wall_s={wall:.3} cpu_s={cpu:.3} readings_per_s_wall={:.0} readings_per_s_cpu={per_cpu:.0} \
         cpu_ns_per_reading={:.1} points_per_window={} bytes_per_window={} \
         open_window_bytes_per_queue={} poll_event_bytes_per_queue={}",
        readings as f64 / wall,
        cpu * 1e9 / readings as f64,
        points / rounds as usize,
        bytes / rounds as usize,
        open_window_bytes / queue_count,
        poll_event_bytes / queue_count,
    );
}

/// The heap the open window holds after a whole window of polls (the aggregator is
/// reset to no window afterwards).
fn open_window_bytes(aggregator: &mut Aggregator, events: &[PollEvent]) -> usize {
    let before = heap_bytes();
    // All but the last tick's end, which would close the window.
    let Some((_, polls)) = events.split_last() else {
        return 0;
    };
    for event in polls {
        assert!(aggregator.handle(event).is_empty(), "one window only");
    }
    let held = heap_bytes().saturating_sub(before);
    drop(aggregator.close());
    held
}

fn observation(queue: &Arc<Queue>, media: &[Arc<str>], salt: u64) -> QueueObservation {
    let v = |k: u64| ((salt * 31 + k * 7) % 23) as f64;
    QueueObservation {
        queue: queue.clone(),
        agents: std::array::from_fn(|k| v(k as u64)),
        media: media
            .iter()
            .enumerate()
            .map(|(m, media_type)| MediaObservation {
                media_type: media_type.clone(),
                values: [
                    v(m as u64),
                    v(m as u64 + 1),
                    v(m as u64 + 2),
                    v(m as u64 + 3) * 1.25,
                    v(m as u64 + 4) * 10.5,
                ],
            })
            .collect(),
    }
}
