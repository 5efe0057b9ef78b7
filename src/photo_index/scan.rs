//! Finding the photos of a collection: JPEG and PNG files under the given folders, recursively,
//! with the size and modification time that tell a changed photo from an indexed one.

use std::fs;
use std::path::{Path, PathBuf};

use super::{PhotoEntry, Record, MAX_PHOTOS};

/// Folders deeper than this below a root are not entered (a guard against pathological trees;
/// symbolic links to folders are never followed, so there are no cycles).
const MAX_DEPTH: usize = 64;

/// A photo file found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub path: PathBuf,
    pub size: u64,
    pub modified_secs: i64,
    pub modified_nanos: u32,
}

impl Found {
    /// Whether `photo` was indexed from this very file content (same size and time).
    pub fn is_unchanged(&self, photo: &PhotoEntry) -> bool {
        photo.size == self.size
            && photo.modified_secs == self.modified_secs
            && photo.modified_nanos == self.modified_nanos
    }
}

/// What a scan found, and what it could not read.
#[derive(Debug, Default)]
pub struct Scan {
    /// Sorted by path.
    pub photos: Vec<Found>,
    /// Folders or files that could not be listed or read, with the reason.
    pub problems: Vec<String>,
    /// The roots, absolute and without symbolic links.
    pub roots: Vec<PathBuf>,
}

pub fn is_photo_name(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

/// Lists the photos under every root. `skip` is a folder never entered (the index itself).
pub fn scan(roots: &[PathBuf], skip: Option<&Path>) -> Result<Scan, String> {
    let mut scan = Scan::default();
    let skip = skip.and_then(|s| fs::canonicalize(s).ok());
    for root in roots {
        let root = fs::canonicalize(root).map_err(|e| {
            format!(
                "{}: cannot open the folder: {e}",
                crate::support::terminal::path(root)
            )
        })?;
        if !root.is_dir() {
            return Err(format!(
                "{}: is not a folder (give the folders that hold the photos)",
                crate::support::terminal::path(&root)
            ));
        }
        walk(&root, 0, skip.as_deref(), &mut scan)?;
        scan.roots.push(root);
    }
    scan.photos.sort_by(|a, b| a.path.cmp(&b.path));
    scan.photos.dedup_by(|a, b| a.path == b.path);
    Ok(scan)
}

fn walk(dir: &Path, depth: usize, skip: Option<&Path>, scan: &mut Scan) -> Result<(), String> {
    if Some(dir) == skip {
        return Ok(());
    }
    if depth > MAX_DEPTH {
        scan.problems.push(format!(
            "{}: more than {MAX_DEPTH} folders deep, not entered",
            crate::support::terminal::path(dir)
        ));
        return Ok(());
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            scan.problems.push(format!(
                "{}: cannot list: {e}",
                crate::support::terminal::path(dir)
            ));
            return Ok(());
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(&path, depth + 1, skip, scan)?;
            continue;
        }
        if !is_photo_name(&path) {
            continue;
        }
        match fs::metadata(&path) {
            Ok(meta) => scan.photos.extend(found(path, &meta)),
            Err(e) => scan
                .problems
                .push(format!("{}: {e}", crate::support::terminal::path(&path))),
        }
        if scan.photos.len() > MAX_PHOTOS {
            return Err(format!(
                "more than {MAX_PHOTOS} photos: more than one index holds; index the \
                 collection's folders into several indexes"
            ));
        }
    }
    Ok(())
}

/// The file at `path` as a scan would find it (`None` when it is not a regular file).
pub fn stat(path: &Path) -> Option<Found> {
    found(path.to_path_buf(), &fs::metadata(path).ok()?)
}

/// A link to a photo is followed, to a regular file only: never a pipe or a device.
fn found(path: PathBuf, meta: &fs::Metadata) -> Option<Found> {
    if !meta.is_file() {
        return None;
    }
    let (modified_secs, modified_nanos) = modified(meta);
    Some(Found {
        path,
        size: meta.len(),
        modified_secs,
        modified_nanos,
    })
}

fn modified(meta: &fs::Metadata) -> (i64, u32) {
    let Ok(time) = meta.modified() else {
        return (0, 0);
    };
    match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
        Err(e) => {
            let d = e.duration();
            (-(d.as_secs() as i64), d.subsec_nanos())
        }
    }
}

/// Whether `path` lies under one of `roots` (which a scan lists completely, so an indexed photo
/// under a root that the scan did not find has been removed).
pub fn is_under(path: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// What indexing must do to bring `records` up to date with `scan`.
#[derive(Debug, Default)]
pub struct Plan {
    /// Photos to read and embed: new, changed since indexed, or unreadable last time.
    pub todo: Vec<Found>,
    /// Indexed photos whose file is gone.
    pub removed: Vec<PathBuf>,
    pub unchanged: usize,
}

pub fn plan(
    records: &std::collections::BTreeMap<PathBuf, Record>,
    scan: &Scan,
    rebuild: bool,
) -> Plan {
    let mut plan = Plan::default();
    for found in &scan.photos {
        match records.get(&found.path) {
            Some(r) if !rebuild && !r.photo.unreadable && found.is_unchanged(&r.photo) => {
                plan.unchanged += 1
            }
            _ => plan.todo.push(found.clone()),
        }
    }
    let found: std::collections::HashSet<&Path> =
        scan.photos.iter().map(|f| f.path.as_path()).collect();
    plan.removed = records
        .keys()
        .filter(|p| is_under(p, &scan.roots) && !found.contains(p.as_path()))
        .cloned()
        .collect();
    plan
}
