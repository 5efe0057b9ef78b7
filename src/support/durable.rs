//! Durable, atomic file writes: every file facegate keeps (gallery, photo index, strangers,
//! history snapshots, the API token, exported models, drawn photos) is written here, so that a
//! reader, or a board that loses power mid-write, sees the old content or the new, never a mix.
//!
//! The recipe: write a temporary file in the same directory, fsync it, rename it over the target,
//! then fsync the directory so the rename itself survives a power cut. `FACEGATE_CRASH_AT` names a
//! crash point at which the process aborts, for the crash trials in the tests.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::support::terminal;

/// Every fsync made here, for `facegate bench sync` (which reports them per batch).
static FSYNCS: AtomicU64 = AtomicU64::new(0);

/// How many fsyncs (of files and directories) this process has made through this module.
pub fn fsyncs() -> u64 {
    FSYNCS.load(Ordering::Relaxed)
}

fn sync(f: &File) -> io::Result<()> {
    FSYNCS.fetch_add(1, Ordering::Relaxed);
    f.sync_all()
}

/// Aborts the process when `FACEGATE_CRASH_AT` names `point`: how the tests cut power at each
/// step of a commit.
pub fn crash_point(point: &str) {
    if std::env::var_os("FACEGATE_CRASH_AT").is_some_and(|v| v == point) {
        std::process::abort();
    }
}

/// Who may read the file written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Access {
    /// The umask's default.
    Default,
    /// Its owner only (mode 0600): secrets.
    Private,
}

/// Writes `bytes` to `path` atomically and durably (crash point `mid-write` between its halves).
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_as(path, bytes, Access::Default)
}

/// As [`write`], for a file only its owner may read (created so, never readable by others).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_as(path, bytes, Access::Private)
}

/// As [`write`], with the error as a sentence naming the file.
pub fn write_or_say(path: &Path, bytes: &[u8]) -> Result<(), String> {
    write(path, bytes).map_err(|e| format!("cannot write {}: {e}", terminal::path(path)))
}

fn write_as(path: &Path, bytes: &[u8], access: Access) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = temporary(dir, &name);
    let result = (|| {
        let f = write_temporary(&tmp, bytes, access)?;
        sync(&f)?;
        fs::rename(&tmp, path)?;
        sync(&File::open(dir)?)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Where a file named `name` in `dir` is written before it is renamed into place.
fn temporary(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Writes `bytes` to the temporary `tmp`, not yet flushed. A half-written temporary file is what
/// a crash during this write leaves behind (crash point `mid-write`).
fn write_temporary(tmp: &Path, bytes: &[u8], access: Access) -> io::Result<File> {
    let mut options = File::options();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if access == Access::Private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let mut f = options.open(tmp)?;
    let half = bytes.len() / 2;
    f.write_all(&bytes[..half])?;
    crash_point("mid-write");
    f.write_all(&bytes[half..])?;
    Ok(f)
}

/// Files [`write_batch`] holds open at once before flushing them (well under any descriptor limit).
const BATCH_OPEN: usize = 256;

/// Writes many new files of one directory durably, with one directory sync in all rather than
/// one per file: each goes to a temporary (crash point `mid-write` between its halves), the
/// temporaries are flushed after all were written (the device merges the writes), renamed to
/// their names, and the directory synced once. A crash leaves each name absent or whole; the
/// caller commits what names them (the gallery's index) only after this returns. Applying a
/// fleet's people to an SD card is dominated by these syncs.
pub fn write_batch(dir: &Path, files: &[(String, &[u8])]) -> io::Result<()> {
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(files.len());
    let result = (|| {
        for chunk in files.chunks(BATCH_OPEN) {
            let mut open = Vec::with_capacity(chunk.len());
            for (name, bytes) in chunk {
                let tmp = temporary(dir, name);
                written.push((tmp.clone(), dir.join(name)));
                open.push(write_temporary(&tmp, bytes, Access::Default)?);
            }
            for f in open {
                sync(&f)?;
            }
        }
        for (tmp, path) in &written {
            fs::rename(tmp, path)?;
        }
        sync(&File::open(dir)?)
    })();
    if result.is_err() {
        for (tmp, _) in &written {
            let _ = fs::remove_file(tmp);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("facegate-durable-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        write(&path, b"old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let secret = dir.join("token");
            write_private(&secret, b"s").unwrap();
            assert_eq!(
                fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        write_batch(&dir, &[("b.png".into(), b"bb"), ("c.png".into(), b"cc")]).unwrap();
        assert_eq!(fs::read(dir.join("c.png")).unwrap(), b"cc");
        let missing = dir.join("no/such/dir/file");
        let message = write_or_say(&missing, b"x").unwrap_err();
        assert!(
            message.contains("cannot write") && message.contains("file"),
            "{message}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
