//! The backlog: data InfluxDB has not accepted yet, kept oldest first in the spool
//! (`SPOOL_DIR`) or, without one or while it cannot be written, in a byte-capped queue in
//! memory whose overflow drops the oldest lines in logged episodes.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::SpoolConfig;
use crate::influx::spool::Spool;
use crate::influx::unreported;
use crate::model::Batch;
use crate::state_file::io_hint;
use crate::stats::Stats;

/// Cap of the in-memory backlog used when no `SPOOL_DIR` is set.
pub(crate) const MEMORY_BACKLOG_MAX_BYTES: usize = 32 * 1024 * 1024;

/// Data InfluxDB has not accepted yet: the spool when `SPOOL_DIR` is set, else a
/// byte-capped queue in memory. While the spool cannot be opened or written (read-only,
/// full, removed) batches wait in memory and every later batch tries the spool again;
/// once it works, what waited in memory moves there first, so the order is kept.
pub(crate) struct Backlog {
    spool_config: SpoolConfig,
    spool: Option<Spool>,
    /// The spool's last error while it fails; its start and end are logged once.
    spool_error: Option<String>,
    memory: VecDeque<Batch>,
    memory_bytes: usize,
    memory_max_bytes: usize,
    /// Lines the memory cap dropped since it started dropping; logged when the episode
    /// starts and, with the total, when the memory backlog is empty again.
    dropping: Option<u64>,
    stats: Arc<Stats>,
}

impl Backlog {
    pub(crate) fn new(config: &SpoolConfig, memory_max_bytes: usize, stats: Arc<Stats>) -> Backlog {
        let mut backlog = Backlog {
            spool_config: config.clone(),
            spool: None,
            spool_error: None,
            memory: VecDeque::new(),
            memory_bytes: 0,
            memory_max_bytes,
            dropping: None,
            stats,
        };
        if backlog.open_spool() {
            backlog.count_earlier_unreported_drops();
        }
        backlog
    }

    /// Lines an earlier run dropped after its last self-metrics point join this run's
    /// `lines_dropped`.
    fn count_earlier_unreported_drops(&self) {
        let Some(dir) = &self.spool_config.dir else {
            return;
        };
        let carried = unreported::take(dir);
        if carried > 0 {
            Stats::add(&self.stats.lines_dropped, carried);
            log::warn!(
                "the last run dropped {carried} lines after its last self-metrics point (see its \
                 log); they are counted in this run's first lines_dropped"
            );
        }
    }

    /// At exit, after the last self-metrics point was made: the dropped lines counted
    /// since (the ones lost at exit among them) are kept in the spool directory for the
    /// next start to count. Without a spool they are in the log only.
    pub(crate) fn keep_unreported_drops(&self) {
        let Some(dir) = self.spool_config.dir.as_deref() else {
            return;
        };
        let count = self.stats.lines_dropped.swap(0, Ordering::Relaxed);
        if count == 0 {
            return;
        }
        match unreported::keep(dir, count) {
            Ok(()) => log::info!(
                "{count} dropped lines are kept in {} for the next start to count in lines_dropped",
                unreported::path(dir).display()
            ),
            Err(e) => {
                Stats::add(&self.stats.lines_dropped, count);
                log::error!(
                    "cannot keep the count of {count} dropped lines in {} ({e}): lines_dropped \
                     in InfluxDB will not show them",
                    unreported::path(dir).display()
                );
            }
        }
    }

    /// Opens the spool if `SPOOL_DIR` is set and it is not open yet; false when there is
    /// no usable spool.
    fn open_spool(&mut self) -> bool {
        if self.spool.is_some() {
            return true;
        }
        let Some(dir) = &self.spool_config.dir else {
            return false;
        };
        match Spool::open(dir, self.spool_config.max_bytes, self.stats.clone()) {
            Ok(spool) => {
                self.spool = Some(spool);
                true
            }
            Err(e) => {
                self.spool_failed(format!("cannot be opened ({e}; {})", io_hint(&e)));
                false
            }
        }
    }

    fn spool_failed(&mut self, error: String) {
        if self.spool_error.is_none() {
            log::error!(
                "spool {}: {error}; unsent data waits in memory (up to {} bytes) and the spool is tried again with every batch",
                self.spool_dir_shown(),
                self.memory_max_bytes
            );
        }
        self.spool_error = Some(error);
    }

    fn spool_dir_shown(&self) -> String {
        self.spool_config
            .dir
            .as_deref()
            .map_or_else(String::new, |d| d.display().to_string())
    }

    pub(crate) fn spool_configured(&self) -> bool {
        self.spool_config.dir.is_some()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.memory.is_empty() && self.spool.as_ref().is_none_or(Spool::is_empty)
    }

    /// Nothing waits in memory: everything not delivered is on disk.
    pub(crate) fn memory_is_empty(&self) -> bool {
        self.memory.is_empty()
    }

    pub(crate) fn lines(&self) -> u64 {
        self.memory.iter().map(|b| b.line_count as u64).sum::<u64>()
            + self.spool.as_ref().map_or(0, Spool::lines)
    }

    pub(crate) fn summary(&self) -> String {
        match (&self.spool, &self.spool_error) {
            (Some(spool), None) => spool.summary(),
            (_, Some(error)) => format!(
                "spool {}: {error}, {} lines wait in memory",
                self.spool_dir_shown(),
                self.memory.iter().map(|b| b.line_count).sum::<usize>()
            ),
            (None, None) => format!(
                "no SPOOL_DIR: up to {} bytes kept in memory while InfluxDB is down",
                self.memory_max_bytes
            ),
        }
    }

    pub(crate) fn push(&mut self, batch: Batch) {
        if batch.line_count == 0 {
            return;
        }
        if self.spool_configured() && self.move_to_spool(Some(&batch)) {
            return;
        }
        self.push_memory(batch);
    }

    /// Moves what waits in memory to the spool (oldest first), then `batch`; true when
    /// all of it is spooled.
    fn move_to_spool(&mut self, batch: Option<&Batch>) -> bool {
        if !self.open_spool() {
            return false;
        }
        let Some(spool) = self.spool.as_mut() else {
            return false;
        };
        let mut moved = 0;
        let mut result = Ok(());
        while let Some(old) = self.memory.front() {
            result = spool.push(&old.lines, old.line_count);
            if result.is_err() {
                break;
            }
            moved += old.line_count;
            self.memory_bytes -= old.lines.len();
            self.memory.pop_front();
        }
        if let (Ok(()), Some(batch)) = (&result, batch) {
            result = spool.push(&batch.lines, batch.line_count);
        }
        if let Err(e) = result {
            self.spool_failed(format!("cannot be written ({e}; {})", io_hint(&e)));
            return false;
        }
        if self.spool_error.take().is_some() {
            log::info!(
                "spool {}: writable again; {moved} lines that waited in memory are spooled",
                self.spool_dir_shown()
            );
        }
        self.memory_drained();
        true
    }

    fn push_memory(&mut self, batch: Batch) {
        self.memory_bytes += batch.lines.len();
        self.memory.push_back(batch);
        let mut dropped = 0;
        while self.memory_bytes > self.memory_max_bytes && self.memory.len() > 1 {
            if let Some(old) = self.memory.pop_front() {
                self.memory_bytes -= old.lines.len();
                dropped += old.line_count as u64;
            }
        }
        if dropped == 0 {
            return;
        }
        Stats::add(&self.stats.lines_dropped, dropped);
        match &mut self.dropping {
            Some(total) => *total += dropped,
            None => {
                let why = if self.spool_configured() {
                    "the spool cannot be written"
                } else {
                    "set SPOOL_DIR to keep more"
                };
                log::warn!(
                    "backlog in memory over {} bytes ({why}): dropping the oldest lines, {dropped} so far; the total follows when the backlog has drained",
                    self.memory_max_bytes
                );
                self.dropping = Some(dropped);
            }
        }
    }

    /// Ends a dropping episode once memory is empty, with its total.
    fn memory_drained(&mut self) {
        if !self.memory.is_empty() {
            return;
        }
        if let Some(total) = self.dropping.take() {
            log::warn!(
                "backlog in memory: {total} lines in all were dropped while it was over {} bytes",
                self.memory_max_bytes
            );
        }
    }

    /// The oldest batch: spool first (older), then memory.
    pub(crate) fn front(&mut self) -> Option<(&str, usize)> {
        if let Some(spool) = &mut self.spool {
            match spool.front() {
                Ok(Some(_)) => return spool.front().ok().flatten(),
                Ok(None) => {}
                Err(e) => log::error!("spool: cannot read ({e})"),
            }
        }
        self.memory
            .front()
            .map(|b| (b.lines.as_str(), b.line_count))
    }

    pub(crate) fn ack_front(&mut self) {
        if let Some(spool) = &mut self.spool {
            if !spool.is_empty() {
                spool.ack_front();
                return;
            }
        }
        if let Some(batch) = self.memory.pop_front() {
            self.memory_bytes -= batch.lines.len();
            self.memory_drained();
        }
    }

    /// After the front batch was delivered in part: only `rest` (its suffix) is unsent.
    /// A spool record stays whole on disk, so a crash cannot lose the rest; the part
    /// InfluxDB already has is overwritten, not duplicated, when it comes again.
    pub(crate) fn front_partly_delivered(&mut self, rest: Batch) {
        if self.spool.as_ref().is_some_and(|spool| !spool.is_empty()) {
            return;
        }
        if let Some(front) = self.memory.front_mut() {
            self.memory_bytes -= front.lines.len().saturating_sub(rest.lines.len());
            *front = rest;
        }
    }

    /// At exit: what waits in memory goes to the spool if it can; the rest is counted as
    /// dropped. Returns those lost lines.
    pub(crate) fn abandon_memory(&mut self) -> u64 {
        if self.spool_configured() {
            self.move_to_spool(None);
        }
        let lost: u64 = self.memory.drain(..).map(|b| b.line_count as u64).sum();
        self.memory_bytes = 0;
        Stats::add(&self.stats.lines_dropped, lost);
        self.memory_drained();
        lost
    }

    /// Why data is in memory rather than in the spool, for the loss message at exit.
    pub(crate) fn why_not_spooled(&self) -> String {
        match &self.spool_error {
            Some(error) => format!("spool {}: {error}", self.spool_dir_shown()),
            None => "no SPOOL_DIR is set".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::influx::testing::{batch, lines, no_spool};
    use crate::testing::TempDir;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn memory_backlog_drops_the_oldest_past_its_cap() {
        let stats = Arc::new(Stats::default());
        let mut backlog = Backlog::new(&no_spool(), 100, stats.clone());
        for i in 0..10 {
            backlog.push(batch(i * 2..i * 2 + 2));
        }
        assert!(backlog.memory_bytes <= 100);
        let dropped = stats.lines_dropped.load(Relaxed);
        assert!(dropped > 0);
        assert_eq!(backlog.lines() + dropped, 20);
        assert_eq!(backlog.front().map(|f| f.1), Some(2));
        // One episode (logged at its start and end), not one message per batch.
        assert_eq!(backlog.dropping, Some(dropped));
        while !backlog.is_empty() {
            backlog.ack_front();
        }
        assert_eq!(backlog.dropping, None, "the episode ended with the backlog");
    }

    /// Makes `dir` unusable for the spool even for root: a plain file in its place.
    fn block_dir(dir: &std::path::Path) {
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::write(dir, "not a directory").unwrap();
    }

    fn unblock_dir(dir: &std::path::Path) {
        std::fs::remove_file(dir).unwrap();
        std::fs::create_dir(dir).unwrap();
    }

    #[test]
    fn an_unwritable_spool_is_tried_again_and_what_waited_in_memory_moves_there_in_order() {
        let temp = TempDir::new("writer-spool");
        let dir = temp.0.join("spool");
        let config = SpoolConfig {
            dir: Some(dir.clone()),
            max_bytes: 1 << 20,
        };
        let stats = Arc::new(Stats::default());
        let mut backlog = Backlog::new(&config, 1 << 20, stats.clone());
        block_dir(&dir);
        backlog.push(batch(0..2));
        backlog.push(batch(2..3));
        assert!(!backlog.memory_is_empty());
        assert_eq!(backlog.lines(), 3);
        unblock_dir(&dir);
        backlog.push(batch(3..4));
        assert!(backlog.memory_is_empty(), "memory moved to the spool");
        assert_eq!(stats.lines_spooled.load(Relaxed), 4);
        for expected in [lines(0..2), lines(2..3), lines(3..4)] {
            assert_eq!(backlog.front().map(|f| f.0.to_string()), Some(expected));
            backlog.ack_front();
        }
        // Broken again at exit: what cannot be spooled is counted as lost, exactly.
        block_dir(&dir);
        backlog.push(batch(4..6));
        assert_eq!(backlog.abandon_memory(), 2);
        assert_eq!(stats.lines_dropped.load(Relaxed), 2);
        assert!(backlog.why_not_spooled().contains("cannot be written"));
        assert_eq!(backlog.lines(), 0);
    }
}
