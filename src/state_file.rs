//! Reading and writing the service's own files inside `SPOOL_DIR` (spool segments, their
//! progress marks, `open-window.json`, `kpi-state.json`) without trusting what is there.
//!
//! Anyone who can write to the directory could leave a FIFO (an open would block forever),
//! a link to `/dev/zero` (a read would never end) or a huge file in place of one of ours.
//! So a file is opened without following links and without blocking, used only when the
//! opened descriptor is a regular file, and read only up to the size it can legitimately
//! have. Writes replace files atomically (temporary file, fsync, rename), so a crash leaves
//! the old version or the new one, never half of one.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file was not read or written.
#[derive(Debug)]
pub enum FileError {
    /// A symbolic link, directory, FIFO, socket or device where a regular file belongs.
    NotRegular(&'static str),
    /// Larger than the most the file can legitimately hold.
    TooLarge {
        len: u64,
        max: u64,
    },
    Io(io::Error),
}

impl FileError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }

    /// What to do about it, by its cause (see [`io_hint`]).
    pub fn hint(&self) -> &'static str {
        match self {
            FileError::NotRegular(_) => {
                "remove what is at that path; the service creates its own file there"
            }
            FileError::TooLarge { .. } => "remove the file; the service writes it anew",
            FileError::Io(e) => io_hint(e),
        }
    }
}

/// What to do about a failed read or write in `SPOOL_DIR`, by its errno: the spool and
/// the state files (`kpi-state.json`, `open-window.json`) say the same for the same cause.
pub fn io_hint(error: &io::Error) -> &'static str {
    match error.raw_os_error() {
        Some(libc::ENOSPC) => "the disk holding SPOOL_DIR is full: free space on it",
        Some(libc::EDQUOT) => "the disk quota of the service's user is used up: raise or free it",
        Some(libc::EACCES | libc::EPERM) => {
            "the service's user may not write there: check the owner and permissions of SPOOL_DIR"
        }
        Some(libc::EROFS) => {
            "SPOOL_DIR is on a read-only file system: remount it or move SPOOL_DIR"
        }
        Some(libc::ENOENT | libc::ENOTDIR) => "SPOOL_DIR does not exist (any more): create it",
        Some(libc::EISDIR) => "a directory is in the way: remove it",
        Some(libc::EIO) => "the disk reports I/O errors: check it (dmesg)",
        Some(libc::EMFILE | libc::ENFILE) => "too many open files: raise the limit (LimitNOFILE=)",
        _ => "check SPOOL_DIR and the disk it is on",
    }
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::NotRegular(kind) => write!(f, "{kind}, not a regular file"),
            FileError::TooLarge { len, max } => {
                write!(f, "{len} bytes, more than the {max} it can hold")
            }
            FileError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FileError {}

impl From<io::Error> for FileError {
    fn from(e: io::Error) -> FileError {
        if e.raw_os_error() == Some(libc::ELOOP) {
            // O_NOFOLLOW refused the last component.
            FileError::NotRegular("a symbolic link")
        } else {
            FileError::Io(e)
        }
    }
}

/// The whole of the regular file at `path`, at most `max` bytes.
pub fn read(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    let file = open_regular(OpenOptions::new().read(true), path)?;
    let len = file.metadata()?.len();
    if len > max {
        return Err(FileError::TooLarge { len, max });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte more than allowed tells a file that grew since its size was read.
    file.take(max + 1).read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    if read > max {
        return Err(FileError::TooLarge { len: read, max });
    }
    Ok(bytes)
}

/// Like [`read`], but `Ok(None)` when there is no file.
pub fn read_if_present(path: &Path, max: u64) -> Result<Option<Vec<u8>>, FileError> {
    match read(path, max) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the contents of the regular file at `path` (creating it), without fsync:
/// for marks whose loss is harmless.
pub fn overwrite(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let mut file = open_regular(OpenOptions::new().write(true).create(true), path)?;
    file.set_len(0)?;
    file.write_all(bytes)?;
    Ok(())
}

/// Writes `bytes` over the start of the regular file at `path` (creating it if absent),
/// without truncating it first, and fsyncs. A file kept at one size and rewritten so
/// needs no new disk block: this still works when the disk is full.
pub fn write_in_place(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    use std::os::unix::fs::FileExt;
    let file = open_regular(OpenOptions::new().write(true).create(true), path)?;
    file.write_all_at(bytes, 0)?;
    file.sync_data()?;
    Ok(())
}

/// Replaces `path` with `bytes` atomically: `<name>.tmp` is written, fsynced and renamed
/// over it (a link at `path` is replaced, not followed).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let temporary = temporary_path(path);
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let mut file = open_regular(OpenOptions::new().write(true).create_new(true), &temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Opens `path` without following a link or blocking on a FIFO, and keeps it only if the
/// opened descriptor is a regular file.
fn open_regular(options: &mut OpenOptions, path: &Path) -> Result<File, FileError> {
    let file = options
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        Ok(file)
    } else {
        Err(FileError::NotRegular(describe(kind)))
    }
}

fn describe(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{mkfifo, TempDir};
    use std::os::unix::fs::symlink;

    #[test]
    fn each_cause_gets_its_own_hint() {
        let hint = |errno| io_hint(&io::Error::from_raw_os_error(errno));
        assert!(
            hint(libc::ENOSPC).contains("full"),
            "{}",
            hint(libc::ENOSPC)
        );
        assert!(!hint(libc::ENOSPC).contains("permissions"));
        assert!(hint(libc::EDQUOT).contains("quota"));
        for errno in [libc::EACCES, libc::EPERM] {
            assert!(hint(errno).contains("permissions"), "{}", hint(errno));
        }
        assert!(hint(libc::EROFS).contains("read-only"));
        assert!(hint(libc::ENOENT).contains("does not exist"));
        assert!(hint(libc::EIO).contains("I/O errors"));
        assert!(io_hint(&io::Error::other("x")).contains("check SPOOL_DIR"));
        assert!(FileError::NotRegular("a FIFO").hint().contains("remove"));
    }

    #[test]
    fn regular_files_round_trip_and_absence_is_not_an_error() {
        let dir = TempDir::new("state-file-round-trip");
        let path = dir.0.join("state.json");
        assert!(read_if_present(&path, 100).unwrap().is_none());
        write_atomically(&path, b"{\"a\":1}").unwrap();
        assert_eq!(read(&path, 100).unwrap(), b"{\"a\":1}");
        overwrite(&path, b"{}").unwrap();
        assert_eq!(read_if_present(&path, 2).unwrap().unwrap(), b"{}");
        let names: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"], "no temporary file left");
    }

    #[test]
    fn links_fifos_directories_and_devices_are_refused_without_blocking() {
        let dir = TempDir::new("state-file-refused");
        let fifo = dir.0.join("fifo");
        mkfifo(&fifo);
        let zero = dir.0.join("zero");
        symlink("/dev/zero", &zero).unwrap();
        let dangling = dir.0.join("dangling");
        symlink(dir.0.join("absent"), &dangling).unwrap();
        let regular = dir.0.join("regular");
        std::fs::write(&regular, b"x").unwrap();
        let link_to_regular = dir.0.join("link");
        symlink(&regular, &link_to_regular).unwrap();
        let cases = [
            (fifo.as_path(), "a FIFO"),
            (&zero, "a symbolic link"),
            (&dangling, "a symbolic link"),
            (&link_to_regular, "a symbolic link"),
            (&dir.0, "a directory"),
            (Path::new("/dev/zero"), "a device"),
        ];
        for (path, kind) in cases {
            let error = read(path, 1 << 20).unwrap_err();
            assert!(
                matches!(error, FileError::NotRegular(_)) && error.to_string().contains(kind),
                "{}: {error}",
                path.display()
            );
            assert!(overwrite(path, b"y").is_err(), "{}", path.display());
        }
        assert_eq!(
            std::fs::read(&regular).unwrap(),
            b"x",
            "the link target untouched"
        );
    }

    #[test]
    fn a_file_larger_than_its_bound_is_refused() {
        let dir = TempDir::new("state-file-large");
        let path = dir.0.join("big");
        std::fs::write(&path, vec![b'a'; 1000]).unwrap();
        let error = read(&path, 999).unwrap_err();
        assert!(matches!(
            error,
            FileError::TooLarge {
                len: 1000,
                max: 999
            }
        ));
        assert_eq!(read(&path, 1000).unwrap().len(), 1000);
    }

    #[test]
    fn an_atomic_write_replaces_a_link_instead_of_following_it() {
        let dir = TempDir::new("state-file-replace-link");
        let target = dir.0.join("target");
        std::fs::write(&target, b"keep").unwrap();
        let path = dir.0.join("state.json");
        symlink(&target, &path).unwrap();
        // A FIFO left where the temporary file goes is removed, not opened.
        mkfifo(&temporary_path(&path));
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert_eq!(read(&path, 10).unwrap(), b"new");
    }

    mod properties {
        use super::*;
        use crate::aggregate::OpenWindow;
        use crate::kpi::state::{load_state, StateError, STATE_FILE};
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Whatever bytes lie in either state file, it is read without panic and is
            /// either used or ignored with a reason.
            #[test]
            fn arbitrary_state_files_fall_back_cleanly(
                bytes in proptest::collection::vec(any::<u8>(), 0..512),
                json_prefix in any::<bool>(),
            ) {
                let dir = TempDir::new("state-file-prop");
                let mut bytes = bytes;
                if json_prefix {
                    bytes.splice(0..0, b"{\"resume_from_ms\":".iter().copied());
                }
                let kpi_state = dir.0.join(STATE_FILE);
                std::fs::write(&kpi_state, &bytes).unwrap();
                match load_state(&kpi_state) {
                    Ok(Some(_)) => {}
                    Err(StateError::Unreadable(..)) => {}
                    other => prop_assert!(false, "{other:?}"),
                }
                let open_window = dir.0.join("open-window.json");
                std::fs::write(&open_window, &bytes).unwrap();
                let read = read(&open_window, 1024).unwrap();
                let _ = serde_json::from_slice::<OpenWindow>(&read);
            }
        }
    }
}
