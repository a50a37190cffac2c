//! The on-disk buffer (`SPOOL_DIR`) for line protocol InfluxDB has not accepted yet.
//!
//! Batches are appended as records to segment files (`<seq>.seg`, 20-digit sequence
//! number) and fsynced before they count as spooled, so a SIGKILL or power cut loses
//! nothing that was spooled. Every record is framed:
//!
//! ```text
//! magic "G2i\x01" | payload length u32 LE | line count u32 LE | CRC-32 of payload u32 LE | payload
//! ```
//!
//! so a torn tail or a corrupt region is detected, skipped with a warning and never
//! replayed as garbage. Records are replayed oldest first; a segment is deleted once all
//! its records are acknowledged (progress inside it is kept in `<seq>.ack`, so a restart
//! re-sends at most one record twice, which InfluxDB overwrites rather than duplicates).
//! Past `SPOOL_MAX_BYTES` the oldest segment is deleted and its lines are counted as
//! dropped.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::stats::Stats;

const MAGIC: [u8; 4] = *b"G2i\x01";
const HEADER_LEN: usize = 16;
/// A record longer than this is treated as corruption (a batch is at most a few MB).
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;
/// Segments are sized so that dropping the oldest one frees about 1/16 of the cap.
const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";
const ACK_SUFFIX: &str = ".ack";

/// One decoded record of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lines: String,
    pub line_count: usize,
    /// Offset just past the record in its segment file (what an ack stores).
    pub end: u64,
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    /// Size of the file on disk.
    bytes: u64,
    /// Lines not acknowledged yet.
    lines: u64,
}

/// The segment being replayed, read into memory once.
#[derive(Debug)]
struct Head {
    seq: u64,
    records: VecDeque<Record>,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first; the last one may be `active`.
    segments: VecDeque<Segment>,
    /// The segment appended to, with its open file.
    active: Option<(u64, File)>,
    head: Option<Head>,
    next_seq: u64,
    stats: Arc<Stats>,
}

impl Spool {
    /// Opens (creating it if needed) the spool in `dir` and reads what earlier runs left.
    /// Segments whose records are all acknowledged or unreadable are deleted.
    pub fn open(dir: &Path, max_bytes: u64, stats: Arc<Stats>) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut seqs: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir)? {
            let name = entry?.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = name
                .strip_suffix(SEGMENT_SUFFIX)
                .and_then(|s| s.parse::<u64>().ok())
            {
                seqs.push(seq);
            }
        }
        seqs.sort_unstable();
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes: (max_bytes / 16).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            segments: VecDeque::new(),
            active: None,
            head: None,
            next_seq: seqs.last().map_or(1, |s| s + 1),
            stats,
        };
        for seq in seqs {
            let (records, bytes) = spool.read_segment(seq)?;
            let lines: u64 = records.iter().map(|r| r.line_count as u64).sum();
            if records.is_empty() {
                spool.remove_files(seq);
            } else {
                spool.segments.push_back(Segment { seq, bytes, lines });
            }
        }
        spool.update_gauge();
        Ok(spool)
    }

    /// Appends one batch and fsyncs it. Oldest segments go first when the cap would be
    /// exceeded (their lines are counted as dropped).
    pub fn push(&mut self, lines: &str, line_count: usize) -> io::Result<()> {
        let record = encode_record(lines, line_count);
        let needed = record.len() as u64;
        while self.bytes() + needed > self.max_bytes && !self.segments.is_empty() {
            self.evict_oldest();
        }
        if needed > self.max_bytes {
            log::warn!(
                "spool: a batch of {line_count} lines ({needed} bytes) is larger than SPOOL_MAX_BYTES={}; dropped",
                self.max_bytes
            );
            Stats::add(&self.stats.lines_dropped, line_count as u64);
            return Ok(());
        }
        let rotate = match self.segments.back() {
            Some(last) => {
                self.active.as_ref().map(|(seq, _)| *seq) != Some(last.seq)
                    || last.bytes >= self.segment_bytes
            }
            None => true,
        };
        if rotate {
            self.start_segment()?;
        }
        let (_, file) = self.active.as_mut().expect("active segment just ensured");
        file.write_all(&record)?;
        file.sync_data()?;
        let segment = self.segments.back_mut().expect("active segment is listed");
        segment.bytes += needed;
        segment.lines += line_count as u64;
        Stats::add(&self.stats.lines_spooled, line_count as u64);
        self.update_gauge();
        Ok(())
    }

    /// The oldest record not acknowledged yet: (lines, line count).
    pub fn front(&mut self) -> io::Result<Option<(&str, usize)>> {
        loop {
            if self.head.as_ref().is_some_and(|h| !h.records.is_empty()) {
                break;
            }
            if let Some(head) = self.head.take() {
                // Every record of the head segment is acknowledged.
                self.remove_files(head.seq);
                self.segments.pop_front();
                self.update_gauge();
            }
            let Some(oldest) = self.segments.front() else {
                return Ok(None);
            };
            let seq = oldest.seq;
            if self.active.as_ref().is_some_and(|(s, _)| *s == seq) {
                // Replay caught up with the segment being written: seal it.
                self.active = None;
            }
            let (records, _) = self.read_segment(seq)?;
            self.head = Some(Head {
                seq,
                records: records.into(),
            });
        }
        let record = &self.head.as_ref().expect("head loaded").records[0];
        Ok(Some((record.lines.as_str(), record.line_count)))
    }

    /// Marks the record returned by [`Spool::front`] as delivered.
    pub fn ack_front(&mut self) {
        let Some(head) = self.head.as_mut() else {
            return;
        };
        let Some(record) = head.records.pop_front() else {
            return;
        };
        if let Some(segment) = self.segments.front_mut() {
            segment.lines = segment.lines.saturating_sub(record.line_count as u64);
        }
        let (seq, exhausted) = (head.seq, head.records.is_empty());
        if exhausted {
            self.head = None;
            self.remove_files(seq);
            self.segments.pop_front();
            self.update_gauge();
        } else if let Err(e) = fs::write(self.path(seq, ACK_SUFFIX), record.end.to_string()) {
            // Harmless: after a restart the acknowledged records are sent again.
            log::debug!("spool: cannot record progress: {e}");
        }
    }

    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.lines == 0)
    }

    /// Bytes of the segment files on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Lines waiting to be replayed.
    pub fn lines(&self) -> u64 {
        self.segments.iter().map(|s| s.lines).sum()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// E.g. `spool /var/lib/genesys2influx: 1234 lines in 2 segments (56789 bytes, cap 104857600)`.
    pub fn summary(&self) -> String {
        format!(
            "spool {}: {} lines in {} segments ({} bytes, cap {})",
            self.dir.display(),
            self.lines(),
            self.segments.len(),
            self.bytes(),
            self.max_bytes
        )
    }

    fn evict_oldest(&mut self) {
        let Some(segment) = self.segments.pop_front() else {
            return;
        };
        if self.active.as_ref().is_some_and(|(s, _)| *s == segment.seq) {
            self.active = None;
        }
        if self.head.as_ref().is_some_and(|h| h.seq == segment.seq) {
            self.head = None;
        }
        self.remove_files(segment.seq);
        Stats::add(&self.stats.lines_dropped, segment.lines);
        log::warn!(
            "spool: SPOOL_MAX_BYTES={} reached; dropped the oldest {} lines ({} bytes)",
            self.max_bytes,
            segment.lines,
            segment.bytes
        );
        self.update_gauge();
    }

    fn start_segment(&mut self) -> io::Result<()> {
        let seq = self.next_seq;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(self.path(seq, SEGMENT_SUFFIX))?;
        // The new directory entry must survive a crash too.
        File::open(&self.dir)?.sync_all()?;
        self.next_seq += 1;
        self.active = Some((seq, file));
        self.segments.push_back(Segment {
            seq,
            bytes: 0,
            lines: 0,
        });
        Ok(())
    }

    /// Reads a segment's valid records past its acknowledged offset, and its size.
    fn read_segment(&self, seq: u64) -> io::Result<(Vec<Record>, u64)> {
        let path = self.path(seq, SEGMENT_SUFFIX);
        let buf = fs::read(&path)?;
        let acked: u64 = fs::read_to_string(self.path(seq, ACK_SUFFIX))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let (records, skipped) = decode_records(&buf);
        if skipped > 0 {
            log::warn!(
                "spool: skipped {skipped} corrupt or incomplete bytes in {}",
                path.display()
            );
        }
        let records = records.into_iter().filter(|r| r.end > acked).collect();
        Ok((records, buf.len() as u64))
    }

    fn remove_files(&self, seq: u64) {
        let _ = fs::remove_file(self.path(seq, ACK_SUFFIX));
        if let Err(e) = fs::remove_file(self.path(seq, SEGMENT_SUFFIX)) {
            if e.kind() != io::ErrorKind::NotFound {
                log::warn!("spool: cannot delete segment {seq}: {e}");
            }
        }
    }

    fn path(&self, seq: u64, suffix: &str) -> PathBuf {
        self.dir.join(format!("{seq:020}{suffix}"))
    }

    fn update_gauge(&self) {
        Stats::set(&self.stats.spool_bytes, self.bytes());
    }
}

/// Frames `lines` as one record.
pub fn encode_record(lines: &str, line_count: usize) -> Vec<u8> {
    let payload = lines.as_bytes();
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.extend_from_slice(&MAGIC);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&(line_count.min(u32::MAX as usize) as u32).to_le_bytes());
    record.extend_from_slice(&crc32(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// Every valid record in `buf`, and how many bytes were skipped as corrupt: after a bad
/// record the scan resumes at the next offset where a whole valid record starts.
pub fn decode_records(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut skipped = 0;
    let mut at = 0;
    while at < buf.len() {
        match record_at(buf, at) {
            Some(record) => {
                at = record.end as usize;
                records.push(record);
            }
            None => {
                skipped += 1;
                at += 1;
            }
        }
    }
    (records, skipped)
}

fn record_at(buf: &[u8], at: usize) -> Option<Record> {
    let header = buf.get(at..at + HEADER_LEN)?;
    if header[0..4] != MAGIC {
        return None;
    }
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let len = word(4) as usize;
    if len > MAX_RECORD_BYTES {
        return None;
    }
    let payload = buf.get(at + HEADER_LEN..at + HEADER_LEN + len)?;
    if crc32(payload) != word(12) {
        return None;
    }
    let lines = std::str::from_utf8(payload).ok()?;
    Some(Record {
        lines: lines.to_string(),
        line_count: word(8) as usize,
        end: (at + HEADER_LEN + len) as u64,
    })
}

/// CRC-32 (IEEE 802.3, as in gzip and zlib).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(label: &str) -> TempDir {
            static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "g2i-spool-{label}-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn batch(n: usize) -> String {
        format!("m f={n}i {n}\n")
    }

    fn drain(spool: &mut Spool) -> Vec<String> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            let Some((lines, _)) = spool.front().unwrap() else {
                break;
            };
            out.push(lines.to_string());
            spool.ack_front();
        }
        out
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn write_replay_ack() {
        let dir = TempDir::new("basic");
        let stats = Arc::new(Stats::default());
        let mut spool = Spool::open(&dir.0, 1 << 20, stats.clone()).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.front().unwrap(), None);
        spool.push(&batch(1), 1).unwrap();
        spool.push(&batch(2), 1).unwrap();
        assert_eq!(spool.lines(), 2);
        assert_eq!(stats.lines_spooled.load(Relaxed), 2);
        assert_eq!(stats.spool_bytes.load(Relaxed), spool.bytes());
        assert_eq!(spool.front().unwrap(), Some((batch(1).as_str(), 1)));
        // Not acknowledged: the same record again.
        assert_eq!(spool.front().unwrap(), Some((batch(1).as_str(), 1)));
        spool.ack_front();
        spool.push(&batch(3), 1).unwrap();
        assert_eq!(drain(&mut spool), vec![batch(2), batch(3)]);
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        assert_eq!(stats.spool_bytes.load(Relaxed), 0);
        assert_eq!(fs::read_dir(&dir.0).unwrap().count(), 0, "segments deleted");
    }

    #[test]
    fn restart_reads_existing_segments_and_progress() {
        let dir = TempDir::new("restart");
        let stats = Arc::new(Stats::default());
        {
            let mut spool = Spool::open(&dir.0, 1 << 20, stats.clone()).unwrap();
            for n in 1..=4 {
                spool.push(&batch(n), 1).unwrap();
            }
            assert!(spool.front().unwrap().is_some());
            spool.ack_front();
        }
        let mut spool = Spool::open(&dir.0, 1 << 20, stats.clone()).unwrap();
        assert_eq!(spool.lines(), 3);
        assert!(spool.summary().contains("3 lines in 1 segments"));
        spool.push(&batch(5), 1).unwrap();
        assert_eq!(
            drain(&mut spool),
            vec![batch(2), batch(3), batch(4), batch(5)]
        );
        assert!(spool.is_empty());
    }

    #[test]
    fn cap_overflow_drops_the_oldest_segment() {
        let dir = TempDir::new("cap");
        let stats = Arc::new(Stats::default());
        // Segments are at least 64 KiB: 10 KiB records, cap 200 KiB.
        let line = "x".repeat(10 * 1024 - 1) + "\n";
        let mut spool = Spool::open(&dir.0, 200 * 1024, stats.clone()).unwrap();
        for _ in 0..40 {
            spool.push(&line, 1).unwrap();
            assert!(spool.bytes() <= 200 * 1024);
        }
        let dropped = stats.lines_dropped.load(Relaxed);
        assert!(dropped > 0);
        assert_eq!(spool.lines() + dropped, 40);
        assert_eq!(stats.spool_bytes.load(Relaxed), spool.bytes());
        assert_eq!(drain(&mut spool).len() as u64, 40 - dropped);
        // A single batch larger than the cap is dropped, counted.
        let huge = "y".repeat(300 * 1024);
        spool.push(&huge, 7).unwrap();
        assert_eq!(stats.lines_dropped.load(Relaxed), dropped + 7);
    }

    #[test]
    fn corrupt_tail_and_random_bytes_are_skipped() {
        let mut buf = encode_record(&batch(1), 1);
        buf.extend_from_slice(b"random garbage \x00\xff G2i");
        buf.extend(encode_record(&batch(2), 1));
        let mut flipped = encode_record(&batch(3), 1);
        let last = flipped.len() - 2;
        flipped[last] ^= 0x01;
        buf.extend(flipped);
        buf.extend(encode_record(&batch(4), 1));
        let torn = encode_record(&batch(5), 1);
        buf.extend_from_slice(&torn[..torn.len() - 3]);
        let (records, skipped) = decode_records(&buf);
        let lines: Vec<&str> = records.iter().map(|r| r.lines.as_str()).collect();
        assert_eq!(lines, vec![batch(1), batch(2), batch(4)]);
        assert!(skipped > 0);

        // The same through files: a segment of junk and a torn tail never crash.
        let dir = TempDir::new("corrupt");
        fs::create_dir_all(&dir.0).unwrap();
        fs::write(dir.0.join(format!("{:020}.seg", 3)), &buf).unwrap();
        fs::write(dir.0.join(format!("{:020}.seg", 4)), b"\xde\xad\xbe\xef").unwrap();
        let mut spool = Spool::open(&dir.0, 1 << 20, Arc::new(Stats::default())).unwrap();
        assert_eq!(spool.lines(), 3);
        spool.push(&batch(6), 1).unwrap();
        assert_eq!(
            drain(&mut spool),
            vec![batch(1), batch(2), batch(4), batch(6)]
        );
    }

    #[test]
    fn replay_seals_the_segment_being_written() {
        let dir = TempDir::new("seal");
        let mut spool = Spool::open(&dir.0, 1 << 20, Arc::new(Stats::default())).unwrap();
        spool.push(&batch(1), 1).unwrap();
        assert_eq!(spool.front().unwrap().map(|f| f.1), Some(1));
        spool.push(&batch(2), 1).unwrap(); // goes to a new segment
        spool.ack_front();
        assert_eq!(drain(&mut spool), vec![batch(2)]);
    }
}
