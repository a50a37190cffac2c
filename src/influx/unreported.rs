//! The `lines_dropped` a run counted but could not report, carried to the next start.
//!
//! Self-metrics travel as a point of each window. Lines lost at the very end of a run
//! (neither delivered nor spooled at SIGTERM, typically because the disk is full) are
//! counted after the last window's point was made, so without this they would show in
//! the log only, and `lines_dropped` in InfluxDB would say nothing was lost. The writer
//! keeps that count in `SPOOL_DIR/unreported-drops` at exit; the next start adds it to
//! the first window's `lines_dropped` and sets the file back to 0.
//!
//! The file has one fixed size and is created at start-up, so the count is written over
//! it in place at exit, which needs no new disk block: it works on a full disk. A file
//! that is not a record this service wrote (damaged, replaced) is ignored, named in a
//! warning, and reset.

use std::path::{Path, PathBuf};

use crate::state_file::{self, FileError};

const FILE_NAME: &str = "unreported-drops";
/// Every record is this long: `genesys2influx lines_dropped <count> <crc32>`, padded.
const RECORD_LEN: usize = 64;
const MAGIC: &str = "genesys2influx lines_dropped";

/// Where the count is kept in `dir` (the spool directory).
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// The record of `count`: magic, count, CRC-32 of the count's digits, spaces, `\n`.
pub(crate) fn encode(count: u64) -> [u8; RECORD_LEN] {
    let digits = count.to_string();
    let text = format!(
        "{MAGIC} {digits} {:08x}",
        crc32fast::hash(digits.as_bytes())
    );
    let mut record = [b' '; RECORD_LEN];
    record[..text.len()].copy_from_slice(text.as_bytes());
    record[RECORD_LEN - 1] = b'\n';
    record
}

/// The count in `bytes`, if they are exactly a record [`encode`] wrote (its CRC-32
/// checked with it).
pub(crate) fn decode(bytes: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text
        .strip_prefix(MAGIC)?
        .strip_prefix(' ')?
        .split(' ')
        .next()?;
    let count = digits.parse::<u64>().ok()?;
    (encode(count)[..] == *bytes).then_some(count)
}

/// At start-up: the count an earlier run left (0 when none), the file set back to 0 so
/// it is reported once and has its room for the next exit. A file that cannot be read
/// or is not a record counts 0 and is named in a warning.
pub(crate) fn take(dir: &Path) -> u64 {
    let path = path(dir);
    let count = match state_file::read_if_present(&path, RECORD_LEN as u64) {
        Ok(None) => 0,
        Ok(Some(bytes)) => decode(&bytes).unwrap_or_else(|| {
            log::warn!(
                "ignoring {}: not a count of dropped lines this service wrote; it is reset",
                path.display()
            );
            0
        }),
        Err(e) => {
            log::warn!("ignoring {} ({e}); it is reset", path.display());
            0
        }
    };
    if let Err(e) = write(&path, 0) {
        log::warn!(
            "cannot prepare {} ({e}): lines lost at the next exit will be logged but not counted in lines_dropped",
            path.display()
        );
    }
    count
}

/// At exit: keeps `count` unreported dropped lines for the next start.
pub(crate) fn keep(dir: &Path, count: u64) -> Result<(), FileError> {
    write(&path(dir), count)
}

fn write(path: &Path, count: u64) -> Result<(), FileError> {
    state_file::write_in_place(path, &encode(count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use proptest::prelude::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_count_kept_at_exit_is_taken_once_at_the_next_start() {
        let dir = TempDir::new("unreported");
        assert_eq!(take(&dir.0), 0, "none yet");
        let before = std::fs::metadata(path(&dir.0)).unwrap();
        keep(&dir.0, 1822).unwrap();
        let after = std::fs::metadata(path(&dir.0)).unwrap();
        assert_eq!(
            (after.ino(), after.len()),
            (before.ino(), before.len()),
            "written in place, same size"
        );
        assert_eq!(take(&dir.0), 1822);
        assert_eq!(take(&dir.0), 0, "reported once");
    }

    #[test]
    fn a_damaged_or_foreign_file_counts_nothing_and_is_reset() {
        let dir = TempDir::new("unreported-damaged");
        let mut record = encode(1822);
        record[30] = b'9';
        std::fs::write(path(&dir.0), record).unwrap();
        assert_eq!(take(&dir.0), 0);
        assert_eq!(std::fs::read(path(&dir.0)).unwrap(), encode(0));
        std::fs::remove_file(path(&dir.0)).unwrap();
        std::fs::create_dir(path(&dir.0)).unwrap();
        assert_eq!(take(&dir.0), 0, "a directory in its place");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_count_round_trips(count in any::<u64>()) {
            prop_assert_eq!(decode(&encode(count)), Some(count));
        }

        /// Any bytes: no panic, and nothing but an intact record yields a count.
        #[test]
        fn any_bytes_decode_to_nothing_or_to_their_own_record(
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            if let Some(count) = decode(&bytes) {
                prop_assert_eq!(&bytes[..], &encode(count)[..]);
            }
        }

        /// A record with any one byte changed is refused.
        #[test]
        fn one_damaged_byte_never_yields_another_count(
            count in any::<u64>(),
            at in 0usize..RECORD_LEN,
            byte in any::<u8>(),
        ) {
            let mut record = encode(count);
            let changed = record[at] != byte;
            record[at] = byte;
            prop_assert!(!changed || decode(&record).is_none());
        }
    }
}
