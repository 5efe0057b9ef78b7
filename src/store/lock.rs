//! The one lock type of every store: an advisory file lock on a lock file inside the store's
//! folder, held while a process changes the store and released on drop (or when the process
//! dies, so a crash never leaves a store locked).

use std::fs::{self, File, OpenOptions};
use std::path::Path;

/// Held while a process changes a store; released on drop.
pub struct WriteLock {
    _file: File,
}

/// Opens (creating it and its folder) the lock file `name` in `dir`, not yet locked.
fn lock_file(dir: &Path, name: &str) -> Result<File, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create the folder: {e}"))?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))
        .map_err(|e| e.to_string())
}

impl WriteLock {
    /// Takes the lock `name` in `dir`, waiting for another writer to finish.
    pub fn wait(dir: &Path, name: &str) -> Result<WriteLock, String> {
        let file = lock_file(dir, name)?;
        file.lock().map_err(|e| format!("cannot lock: {e}"))?;
        Ok(WriteLock { _file: file })
    }

    /// Takes the lock `name` in `dir` if no other process holds it (`None` when one does).
    pub fn try_take(dir: &Path, name: &str) -> Result<Option<WriteLock>, String> {
        let file = lock_file(dir, name)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(WriteLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(format!("cannot lock: {e}")),
        }
    }
}
