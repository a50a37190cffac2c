//! The KPI resume point across restarts: `kpi-state.json` in the state directory, written
//! atomically through [`crate::state_file`], so a stop longer than the look-back is
//! backfilled on the next start.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state_file::{self, FileError};
use crate::time;

/// Where the resume point is kept, inside the state directory.
pub const STATE_FILE: &str = "kpi-state.json";
/// The most `kpi-state.json` is read of: it holds one instant, in well under 100 bytes.
const STATE_FILE_MAX_BYTES: u64 = 4096;

/// Why the resume point could not be read or saved.
#[derive(Debug)]
pub enum StateError {
    Read(PathBuf, FileError),
    Unreadable(PathBuf, String),
    Write(PathBuf, FileError),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Read(path, e) => write!(
                f,
                "cannot read {} ({e}); KPIs resume from the look-back only",
                path.display()
            ),
            StateError::Unreadable(path, e) => write!(
                f,
                "ignoring {} ({e}); KPIs resume from the look-back only",
                path.display()
            ),
            StateError::Write(path, e) => write!(
                f,
                "cannot save the KPI resume point to {} ({e}; {}); until it can, buckets \
                 older than KPI_LOOKBACK are not backfilled after a restart",
                path.display(),
                e.hint()
            ),
        }
    }
}

impl std::error::Error for StateError {}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    /// Start of the oldest bucket still to (re-)query.
    resume_from_ms: u64,
    /// The same instant for humans; not read back.
    #[serde(default)]
    resume_from: String,
}

/// Reads the resume point; `Ok(None)` when no file exists yet.
pub fn load_state(path: &Path) -> Result<Option<u64>, StateError> {
    let bytes = match state_file::read_if_present(path, STATE_FILE_MAX_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) => return Err(StateError::Read(path.to_path_buf(), e)),
    };
    serde_json::from_slice::<StateFile>(&bytes)
        .map(|s| Some(s.resume_from_ms))
        .map_err(|e| StateError::Unreadable(path.to_path_buf(), e.to_string()))
}

/// Saves the resume point after every KPI poll, warning once per episode of failures
/// (not once per poll) and saying when saving works again.
#[derive(Debug)]
pub struct StateSaver {
    path: PathBuf,
    failing: bool,
}

impl StateSaver {
    pub fn new(path: PathBuf) -> Self {
        StateSaver {
            path,
            failing: false,
        }
    }

    /// Saves; returns what to log, if anything: the first failure of an episode (warn)
    /// and the first success after one (info).
    pub fn save(&mut self, resume_from_ms: u64) -> Option<(log::Level, String)> {
        match save_state(&self.path, resume_from_ms) {
            Ok(()) if self.failing => {
                self.failing = false;
                Some((
                    log::Level::Info,
                    format!(
                        "the KPI resume point is saved to {} again",
                        self.path.display()
                    ),
                ))
            }
            Ok(()) => None,
            Err(e) if !self.failing => {
                self.failing = true;
                Some((log::Level::Warn, e.to_string()))
            }
            Err(_) => None,
        }
    }
}

/// Writes the resume point atomically (temporary file, fsync, rename).
pub fn save_state(path: &Path, resume_from_ms: u64) -> Result<(), StateError> {
    let state = StateFile {
        resume_from_ms,
        resume_from: time::format_utc_ms(resume_from_ms),
    };
    let json = serde_json::to_vec_pretty(&state)
        .map_err(|e| StateError::Write(path.to_path_buf(), FileError::Io(e.into())))?;
    state_file::write_atomically(path, &json).map_err(|e| StateError::Write(path.to_path_buf(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mkfifo, TempDir};

    /// 2025-06-02T14:31:05Z.
    const NOW: u64 = 1_748_874_665_000;

    /// A failing save warns once per episode: not again while it keeps failing, again
    /// after it worked in between.
    #[test]
    fn a_failing_save_is_one_episode_until_it_works_again() {
        let temp = TempDir::new("kpi-state-episode");
        let dir = temp.0.join("state");
        let mut saver = StateSaver::new(dir.join(STATE_FILE));
        let mut logged = Vec::new();
        let mut save = |saver: &mut StateSaver| logged.extend(saver.save(NOW));
        for _ in 0..3 {
            save(&mut saver);
        }
        std::fs::create_dir(&dir).unwrap();
        save(&mut saver);
        save(&mut saver);
        std::fs::remove_dir_all(&dir).unwrap();
        save(&mut saver);
        save(&mut saver);
        let levels: Vec<log::Level> = logged.iter().map(|(level, _)| *level).collect();
        assert_eq!(
            levels,
            [log::Level::Warn, log::Level::Info, log::Level::Warn],
            "{logged:?}"
        );
        assert!(
            logged[0].1.contains("SPOOL_DIR does not exist"),
            "{logged:?}"
        );
    }

    #[test]
    fn the_state_file_round_trips_atomically() {
        let temp = TempDir::new("kpi-state");
        let dir = &temp.0;
        let path = dir.join(STATE_FILE);
        assert_eq!(load_state(&path).unwrap(), None);
        save_state(&path, NOW).unwrap();
        assert_eq!(load_state(&path).unwrap(), Some(NOW));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("2025-06-02T14:31:05.000Z"), "{text}");
        save_state(&path, NOW + 1).unwrap();
        assert_eq!(load_state(&path).unwrap(), Some(NOW + 1));
        let names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [STATE_FILE]);
        std::fs::write(&path, "{not json").unwrap();
        let error = load_state(&path).unwrap_err();
        assert!(matches!(error, StateError::Unreadable(..)));
        assert!(error.to_string().contains("look-back only"));
        // A FIFO or a link to /dev/zero is refused without blocking or reading forever.
        std::fs::remove_file(&path).unwrap();
        mkfifo(&path);
        let error = load_state(&path).unwrap_err();
        assert!(error.to_string().contains("a FIFO"), "{error}");
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let error = load_state(&path).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
        save_state(&path, NOW).unwrap();
        assert_eq!(load_state(&path).unwrap(), Some(NOW), "the link replaced");
        let missing_dir = dir.join("absent").join(STATE_FILE);
        let error = save_state(&missing_dir, NOW).unwrap_err().to_string();
        assert!(error.contains("SPOOL_DIR does not exist"), "{error}");
        assert!(!error.contains("permissions"), "{error}");
        assert!(matches!(
            save_state(&missing_dir, NOW),
            Err(StateError::Write(..))
        ));
    }
}
