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
//!
//! Whatever else lies in the directory under a segment's name (a FIFO, a link, a
//! directory, a file larger than a segment can grow) is skipped and named in one warning
//! per kind of problem; the readable segments are still replayed.
//!
//! One file on purpose: about 500 lines of code (the rest are its tests) for one concept,
//! the on-disk queue, whose record framing, segment rotation and ack files are kept
//! consistent by the same few functions.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::state_file::{self, FileError};
use crate::stats::Stats;

const MAGIC: [u8; 4] = *b"G2i\x01";
const HEADER_LEN: usize = 16;
/// A record longer than this is treated as corruption (a batch is at most a few MB).
const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;
/// Segments are sized so that dropping the oldest one frees about 1/16 of the cap.
pub(crate) const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
const SEGMENT_SUFFIX: &str = ".seg";
const ACK_SUFFIX: &str = ".ack";
/// An ack holds one decimal offset.
const MAX_ACK_BYTES: u64 = 32;
/// Bytes of CRC checks allowed per byte of a segment: the valid records need one, random
/// damage a tiny fraction more. Only a segment crafted with a record header at nearly every
/// offset needs more, and would otherwise cost time quadratic in its size; the scan stops
/// there and skips the rest.
const CRC_WORK_PER_BYTE: usize = 3;
/// How many names one warning about skipped directory entries lists.
const NAMES_PER_WARNING: usize = 10;

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

/// What [`Spool::read_segment`] found in a segment file.
struct SegmentRead {
    /// Valid records not acknowledged yet.
    records: Vec<Record>,
    /// Size of the file.
    bytes: u64,
    corrupt_bytes: usize,
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
    /// Entries that cannot be read are skipped and logged, never opened again.
    pub fn open(dir: &Path, max_bytes: u64, stats: Arc<Stats>) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let mut skipped = Skipped::default();
        let mut seqs: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir)? {
            match entry {
                Ok(entry) => seqs.extend(segment_seq(&entry.file_name().to_string_lossy())),
                Err(e) => skipped.add(e.to_string(), "(an entry)".to_string()),
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
            spool.check_ack(seq, &mut skipped);
            match spool.read_segment(seq) {
                Ok(read) => {
                    if read.corrupt_bytes > 0 {
                        log::warn!(
                            "spool: skipped {} corrupt or incomplete bytes in {}",
                            read.corrupt_bytes,
                            spool.path(seq, SEGMENT_SUFFIX).display()
                        );
                    }
                    spool.keep_or_remove(seq, read);
                }
                Err(e) => skipped.add(e.to_string(), spool.file_name(seq, SEGMENT_SUFFIX)),
            }
        }
        skipped.log(dir);
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
            match self.read_segment(seq) {
                Ok(read) => {
                    self.head = Some(Head {
                        seq,
                        records: read.records.into(),
                    })
                }
                Err(e) => self.abandon_unreadable(e),
            }
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
        } else if let Err(e) = state_file::overwrite(
            &self.path(seq, ACK_SUFFIX),
            record.end.to_string().as_bytes(),
        ) {
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

    /// The oldest segment became unreadable after the start-up scan: its lines are lost.
    fn abandon_unreadable(&mut self, error: FileError) {
        let Some(segment) = self.segments.pop_front() else {
            return;
        };
        Stats::add(&self.stats.lines_dropped, segment.lines);
        log::warn!(
            "spool: skipping {} ({error}); its {} lines are lost",
            self.path(segment.seq, SEGMENT_SUFFIX).display(),
            segment.lines
        );
        self.update_gauge();
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

    /// A segment found at start-up is listed, or deleted when nothing in it is left to send.
    fn keep_or_remove(&mut self, seq: u64, read: SegmentRead) {
        if read.records.is_empty() {
            self.remove_files(seq);
        } else {
            let lines = read.records.iter().map(|r| r.line_count as u64).sum();
            self.segments.push_back(Segment {
                seq,
                bytes: read.bytes,
                lines,
            });
        }
    }

    /// Reads a segment's valid records past its acknowledged offset (the damage is
    /// counted, logged only by the start-up scan so that it is logged once).
    fn read_segment(&self, seq: u64) -> Result<SegmentRead, FileError> {
        let path = self.path(seq, SEGMENT_SUFFIX);
        // A segment grows to `segment_bytes` plus one record, and no record is larger
        // than the cap.
        let buf = state_file::read(&path, self.segment_bytes + self.max_bytes)?;
        let acked: u64 = state_file::read(&self.path(seq, ACK_SUFFIX), MAX_ACK_BYTES)
            .ok()
            .and_then(|bytes| std::str::from_utf8(&bytes).ok()?.trim().parse().ok())
            .unwrap_or(0);
        let (records, corrupt_bytes) = decode_records(&buf);
        Ok(SegmentRead {
            records: records.into_iter().filter(|r| r.end > acked).collect(),
            bytes: buf.len() as u64,
            corrupt_bytes,
        })
    }

    /// A progress mark that is not a small regular file is named and removed (its segment
    /// is then replayed from the start).
    fn check_ack(&self, seq: u64, skipped: &mut Skipped) {
        let path = self.path(seq, ACK_SUFFIX);
        match state_file::read(&path, MAX_ACK_BYTES) {
            Err(e) if !e.is_not_found() => {
                skipped.add(e.to_string(), self.file_name(seq, ACK_SUFFIX));
                let _ = fs::remove_file(&path);
            }
            _ => {}
        }
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
        self.dir.join(self.file_name(seq, suffix))
    }

    fn file_name(&self, seq: u64, suffix: &str) -> String {
        format!("{seq:020}{suffix}")
    }

    fn update_gauge(&self) {
        Stats::set(&self.stats.spool_bytes, self.bytes());
    }
}

/// The sequence number of a segment's file name (`<seq>.seg`, as [`Spool::file_name`]
/// spells it: `1.seg` or `+1.seg` are not segments, else two entries would be one).
fn segment_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    let seq: u64 = digits.parse().ok()?;
    (format!("{seq:020}") == digits).then_some(seq)
}

/// Directory entries skipped at start-up, by what is wrong with them.
#[derive(Default)]
struct Skipped(BTreeMap<String, Vec<String>>);

impl Skipped {
    fn add(&mut self, problem: String, name: String) {
        self.0.entry(problem).or_default().push(name);
    }

    /// One warning per kind of problem, naming the entries.
    fn log(&self, dir: &Path) {
        for (problem, names) in &self.0 {
            let listed = names[..names.len().min(NAMES_PER_WARNING)].join(", ");
            let more = match names.len().saturating_sub(NAMES_PER_WARNING) {
                0 => String::new(),
                more => format!(" and {more} more"),
            };
            log::warn!(
                "spool {}: skipping {listed}{more} ({problem}); the other segments are kept",
                dir.display()
            );
        }
    }
}

/// Frames `lines` as one record.
pub fn encode_record(lines: &str, line_count: usize) -> Vec<u8> {
    let payload = lines.as_bytes();
    let mut record = Vec::with_capacity(HEADER_LEN + payload.len());
    record.extend_from_slice(&MAGIC);
    record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    record.extend_from_slice(&(line_count.min(u32::MAX as usize) as u32).to_le_bytes());
    record.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    record.extend_from_slice(payload);
    record
}

/// Every valid record in `buf`, and how many bytes were skipped as corrupt: after a bad
/// record the scan resumes at the next offset where a whole valid record starts. Linear
/// in `buf.len()`: past [`CRC_WORK_PER_BYTE`] the rest is skipped.
pub fn decode_records(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut skipped = 0;
    let mut at = 0;
    let mut crc_budget = buf.len().saturating_mul(CRC_WORK_PER_BYTE);
    while at < buf.len() {
        match record_at(buf, at, &mut crc_budget) {
            Scan::Record(record) => {
                at = record.end as usize;
                records.push(record);
            }
            Scan::NoRecord => {
                skipped += 1;
                at += 1;
            }
            Scan::OutOfBudget => {
                skipped += buf.len() - at;
                break;
            }
        }
    }
    (records, skipped)
}

enum Scan {
    Record(Record),
    NoRecord,
    OutOfBudget,
}

fn record_at(buf: &[u8], at: usize, crc_budget: &mut usize) -> Scan {
    let Some(header) = buf.get(at..at + HEADER_LEN) else {
        return Scan::NoRecord;
    };
    if header[0..4] != MAGIC {
        return Scan::NoRecord;
    }
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let len = word(4) as usize;
    if len > MAX_RECORD_BYTES {
        return Scan::NoRecord;
    }
    let Some(payload) = buf.get(at + HEADER_LEN..at + HEADER_LEN + len) else {
        return Scan::NoRecord;
    };
    let Some(left) = crc_budget.checked_sub(len) else {
        return Scan::OutOfBudget;
    };
    *crc_budget = left;
    if crc32fast::hash(payload) != word(12) {
        return Scan::NoRecord;
    }
    let Ok(lines) = std::str::from_utf8(payload) else {
        return Scan::NoRecord;
    };
    Scan::Record(Record {
        lines: lines.to_string(),
        line_count: word(8) as usize,
        end: (at + HEADER_LEN + len) as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mkfifo, TempDir};
    use std::sync::atomic::Ordering::Relaxed;

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

    /// Two records exactly as the spool wrote them before it used `crc32fast` (the
    /// hand-written table): the on-disk format must not change.
    const SEGMENT_OF_THE_OLD_CODE: &str = "47326901090000000100000054fc7b266d20663d316920310a\
        473269011a0000000200000019f8c064712c743d6120763d322e3520320a712c743d6220763d3320320a";

    fn unhex(hex: &str) -> Vec<u8> {
        let digits: Vec<u8> = hex.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn segments_written_by_the_old_crc_code_read_and_encode_the_same() {
        let old = unhex(SEGMENT_OF_THE_OLD_CODE);
        let first = "m f=1i 1\n";
        let second = "q,t=a v=2.5 2\nq,t=b v=3 2\n";
        let (records, skipped) = decode_records(&old);
        assert_eq!(skipped, 0);
        let lines: Vec<(&str, usize)> = records
            .iter()
            .map(|r| (r.lines.as_str(), r.line_count))
            .collect();
        assert_eq!(lines, [(first, 1), (second, 2)]);
        let mut encoded = encode_record(first, 1);
        encoded.extend(encode_record(second, 2));
        assert_eq!(encoded, old);
    }

    #[test]
    fn write_replay_ack() {
        let dir = TempDir::new("spool-basic");
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
        let dir = TempDir::new("spool-restart");
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
        let dir = TempDir::new("spool-cap");
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
        let dir = TempDir::new("spool-corrupt");
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
        let dir = TempDir::new("spool-seal");
        let mut spool = Spool::open(&dir.0, 1 << 20, Arc::new(Stats::default())).unwrap();
        spool.push(&batch(1), 1).unwrap();
        assert_eq!(spool.front().unwrap().map(|f| f.1), Some(1));
        spool.push(&batch(2), 1).unwrap(); // goes to a new segment
        spool.ack_front();
        assert_eq!(drain(&mut spool), vec![batch(2)]);
    }

    #[test]
    fn unreadable_entries_are_skipped_and_the_good_segments_kept() {
        use std::os::unix::fs::symlink;
        let dir = TempDir::new("spool-bad-entries");
        let name = |seq: u64| dir.0.join(format!("{seq:020}.seg"));
        mkfifo(&name(1));
        symlink(dir.0.join("absent"), name(2)).unwrap();
        fs::create_dir(name(3)).unwrap();
        symlink("/dev/zero", name(4)).unwrap();
        fs::write(name(5), encode_record(&batch(5), 1)).unwrap();
        fs::write(name(6), b"garbage, not a record").unwrap();
        // Not in the spool's spelling: would read segment 5 twice.
        fs::write(dir.0.join("5.seg"), encode_record(&batch(50), 1)).unwrap();
        // A progress mark that is a FIFO must not block either.
        mkfifo(&dir.0.join(format!("{:020}.ack", 5)));
        let mut spool = Spool::open(&dir.0, 1 << 20, Arc::new(Stats::default())).unwrap();
        assert_eq!(spool.lines(), 1);
        spool.push(&batch(7), 1).unwrap();
        assert_eq!(drain(&mut spool), vec![batch(5), batch(7)]);
        for seq in 1..=4 {
            assert!(
                fs::symlink_metadata(name(seq)).is_ok(),
                "entry {seq} left alone"
            );
        }
    }

    #[test]
    fn a_segment_larger_than_it_can_grow_is_skipped() {
        let dir = TempDir::new("spool-too-large");
        let record = encode_record(&"x".repeat(2000), 1);
        let big: Vec<u8> = record
            .iter()
            .copied()
            .cycle()
            .take(200 * record.len())
            .collect();
        fs::write(dir.0.join(format!("{:020}.seg", 1)), big).unwrap();
        fs::write(
            dir.0.join(format!("{:020}.seg", 2)),
            encode_record(&batch(2), 1),
        )
        .unwrap();
        // Cap 64 KiB: segments of 64 KiB plus at most one record of 64 KiB.
        let mut spool = Spool::open(&dir.0, 64 * 1024, Arc::new(Stats::default())).unwrap();
        assert_eq!(drain(&mut spool), vec![batch(2)]);
    }

    #[test]
    fn a_segment_replaced_after_the_start_up_scan_is_skipped_not_fatal() {
        let dir = TempDir::new("spool-replaced");
        let stats = Arc::new(Stats::default());
        let mut spool = Spool::open(&dir.0, 1 << 20, stats.clone()).unwrap();
        spool.push(&batch(1), 1).unwrap();
        spool.push(&batch(2), 1).unwrap();
        let mut spool = Spool::open(&dir.0, 1 << 20, stats.clone()).unwrap();
        let first = dir.0.join(format!("{:020}.seg", 1));
        fs::remove_file(&first).unwrap();
        mkfifo(&first);
        spool.push(&batch(3), 1).unwrap();
        assert_eq!(drain(&mut spool), vec![batch(3)]);
        assert_eq!(stats.lines_dropped.load(Relaxed), 2);
    }

    /// A record header at every 16th byte, each claiming the rest of the segment: the old
    /// scan checked each claim's CRC in full (quadratic, 22 s for 512 KB).
    #[test]
    fn a_crafted_segment_is_scanned_in_linear_time() {
        let mut buf = encode_record(&batch(1), 1);
        let start = buf.len();
        let size = 512 * 1024;
        while buf.len() < start + size {
            let rest = (start + size - buf.len() - HEADER_LEN) as u32;
            buf.extend_from_slice(&MAGIC);
            buf.extend_from_slice(&rest.to_le_bytes());
            buf.extend_from_slice(&1u32.to_le_bytes());
            buf.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        }
        let began = std::time::Instant::now();
        let (records, skipped) = decode_records(&buf);
        let took = began.elapsed();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].lines, batch(1));
        assert_eq!(skipped, buf.len() - start);
        assert!(took < std::time::Duration::from_secs(2), "took {took:?}");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// `lines` for record `i`, `len` bytes long at least: unique, so recovery is exact.
        fn payload(i: usize, len: usize) -> String {
            format!("m,i={i} f={}i {i}\n", "9".repeat(len))
        }

        #[derive(Debug, Clone)]
        enum Damage {
            /// Cut the file at this fraction (per mille) of its length.
            Truncate(u16),
            /// Overwrite bytes at this fraction (per mille) of its length.
            Overwrite(u16, Vec<u8>),
        }

        fn damage() -> impl Strategy<Value = Damage> {
            prop_oneof![
                (0u16..=1000).prop_map(Damage::Truncate),
                (0u16..=1000, proptest::collection::vec(any::<u8>(), 1..64))
                    .prop_map(|(at, bytes)| Damage::Overwrite(at, bytes)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Cut anywhere: every record wholly before the cut comes back, in order,
            /// and nothing else.
            #[test]
            fn truncation_keeps_every_whole_record(
                sizes in proptest::collection::vec(0usize..200, 1..12),
                cut_per_mille in 0usize..=1000,
            ) {
                let mut buf = Vec::new();
                let mut ends = Vec::new();
                for (i, len) in sizes.iter().enumerate() {
                    buf.extend(encode_record(&payload(i, *len), 1));
                    ends.push(buf.len());
                }
                let cut = buf.len() * cut_per_mille / 1000;
                let (records, skipped) = decode_records(&buf[..cut]);
                let expected: Vec<String> = ends
                    .iter()
                    .enumerate()
                    .filter(|(_, end)| **end <= cut)
                    .map(|(i, _)| payload(i, sizes[i]))
                    .collect();
                let got: Vec<String> = records.into_iter().map(|r| r.lines).collect();
                prop_assert_eq!(&got, &expected);
                let kept = ends.iter().rev().find(|e| **e <= cut).copied().unwrap_or(0);
                prop_assert_eq!(skipped, cut - kept);
            }

            /// Arbitrary bytes never panic, and whatever is decoded is a whole record.
            #[test]
            fn arbitrary_bytes_decode_without_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                record_at in 0usize..2048,
            ) {
                let at = record_at.min(bytes.len());
                let mut buf = bytes[..at].to_vec();
                buf.extend(encode_record(&payload(0, 10), 1));
                buf.extend_from_slice(&bytes[at..]);
                let (records, skipped) = decode_records(&buf);
                prop_assert!(records.iter().any(|r| r.lines == payload(0, 10)));
                let decoded: usize = records.iter().map(|r| r.lines.len() + HEADER_LEN).sum();
                prop_assert_eq!(decoded + skipped, buf.len());
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(32))]

            /// Records spooled by a real spool, then the segment files damaged (cut,
            /// overwritten, swapped): a reopened spool replays every record the damage did
            /// not touch exactly once, and nothing that was not spooled.
            #[test]
            fn damaged_segments_keep_every_untouched_record(
                sizes in proptest::collection::vec(1usize..12_000, 1..24),
                damages in proptest::collection::vec((0usize..8, damage()), 0..4),
                swap in proptest::option::of((0usize..8, 0usize..8)),
            ) {
                let dir = TempDir::new("spool-prop");
                let stats = Arc::new(Stats::default());
                {
                    // 64 KiB segments: several of them.
                    let mut spool = Spool::open(&dir.0, 1 << 20, stats.clone()).unwrap();
                    for (i, len) in sizes.iter().enumerate() {
                        spool.push(&payload(i, *len), 1).unwrap();
                    }
                }
                let files: Vec<PathBuf> = {
                    let mut files: Vec<PathBuf> = fs::read_dir(&dir.0)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .collect();
                    files.sort();
                    files
                };
                // Which file and byte range each record lies in.
                let mut where_is: Vec<(usize, usize, usize)> = Vec::new();
                for (f, file) in files.iter().enumerate() {
                    let (records, _) = decode_records(&fs::read(file).unwrap());
                    where_is.extend(records.iter().map(|r| {
                        let end = r.end as usize;
                        (f, end - r.lines.len() - HEADER_LEN, end)
                    }));
                }
                prop_assert_eq!(where_is.len(), sizes.len());
                let mut touched = vec![false; sizes.len()];
                for (f, damage) in &damages {
                    let f = f % files.len();
                    let mut bytes = fs::read(&files[f]).unwrap();
                    let (from, to) = match damage {
                        Damage::Truncate(pm) => {
                            let cut = bytes.len() * *pm as usize / 1000;
                            bytes.truncate(cut);
                            (cut, usize::MAX)
                        }
                        Damage::Overwrite(pm, new) => {
                            let at = bytes.len() * *pm as usize / 1000;
                            let end = (at + new.len()).min(bytes.len());
                            bytes[at..end].copy_from_slice(&new[..end - at]);
                            (at, end)
                        }
                    };
                    for (r, (rf, start, end)) in where_is.iter().enumerate() {
                        if *rf == f && *start < to && from < *end {
                            touched[r] = true;
                        }
                    }
                    fs::write(&files[f], bytes).unwrap();
                }
                if let Some((a, b)) = swap {
                    let (a, b) = (&files[a % files.len()], &files[b % files.len()]);
                    let (bytes_a, bytes_b) = (fs::read(a).unwrap(), fs::read(b).unwrap());
                    fs::write(a, bytes_b).unwrap();
                    fs::write(b, bytes_a).unwrap();
                }

                let mut spool = Spool::open(&dir.0, 1 << 20, stats).unwrap();
                let mut replayed = drain(&mut spool);
                replayed.sort();
                let mut unique = replayed.clone();
                unique.dedup();
                prop_assert_eq!(unique.len(), replayed.len(), "a record replayed twice");
                let all: Vec<String> = sizes.iter().enumerate().map(|(i, len)| payload(i, *len)).collect();
                for lines in &replayed {
                    prop_assert!(all.contains(lines), "replayed something never spooled");
                }
                for (i, lines) in all.iter().enumerate() {
                    if !touched[i] {
                        prop_assert!(replayed.contains(lines), "untouched record {} lost", i);
                    }
                }
            }
        }
    }
}
