//! The on-disk gallery of enrolled people.
//!
//! Layout of a gallery directory:
//! - `gallery.json`: the human-readable index (format version, model fingerprint, people with their
//!   id, name, enrollment time, shot count and crop files), naming the embeddings file and its sha256;
//! - `embeddings-<generation>.bin`: every person's shot embeddings then centroid, little-endian f32,
//!   after a small header;
//! - `crops/<id>-<shot>.png`: the aligned crops, so the gallery can be re-embedded by a new model;
//! - `.lock`: held (advisory lock) by the process writing the gallery.
//!
//! Every change writes a new embeddings file and then a new index, each to a temporary file that is
//! flushed to disk and renamed over, followed by a flush of the directory. The index is the commit
//! point: a crash at any moment leaves the previous index and the embeddings file it names intact.
//! What a killed writer leaves behind (temporary files, crops and embeddings no index names) is
//! swept under the lock by the next write. The first write of a new gallery commits an empty index
//! before anything else, so gallery data without an index means the index was lost: such a folder
//! is refused, never taken for an empty gallery.
//!
//! The index is input like any other file: every path in it must be the name this module itself
//! would have written (`crops/<id>-<k>.png`, `embeddings-<n>.bin`), so a hostile index cannot make
//! `remove` delete, or `reembed` read, anything outside the gallery.

mod fleet;
mod folder;
mod format;
mod names;
mod shared;

use crate::support::durable::crash_point;
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use folder::*;
use format::*;
use names::*;
pub use names::{is_board_id, is_fleet_id};

use crate::embed::model_card::sha256_hex;
use crate::embed::normalized;
use crate::support::limits;

pub const FORMAT_VERSION: u32 = 1;
const INDEX: &str = "gallery.json";
const LOCK: &str = ".lock";
const MAGIC: &[u8; 8] = b"FGEMB\x00\x01\x00";
/// Version 2 adds each person's negatives; it is written only when someone has one, so galleries
/// without negatives stay readable by older facegate.
const MAGIC_2: &[u8; 8] = b"FGEMB\x00\x02\x00";
const CROPS: &str = "crops";

/// Bounds on what an index may declare, far above any real gallery, so that a hostile or damaged
/// index is refused before it sizes an allocation.
const MAX_EMBEDDING_DIM: usize = 4096;
const MAX_SHOTS: usize = 1000;
/// What a 64 MiB index holds (about 250 bytes a person).
const MAX_PEOPLE: usize = 200_000;
const MAX_ID: u64 = 999_999_999_999;
/// The highest version a person's record may carry: far beyond any real count of edits (a
/// million a second for 280 years), small enough that adding one never overflows and that JSON
/// readers holding numbers as doubles read it exactly. A signed message claiming more is refused,
/// so a leaked key cannot pin a person at the top of the order.
pub const MAX_VERSION: u64 = 1 << 53;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub fingerprint: String,
    pub embedding_dim: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonEntry {
    pub id: String,
    pub name: String,
    /// Enrollment time, seconds since the Unix epoch.
    pub enrolled_unix: u64,
    pub shots: usize,
    /// Aligned crops, relative to the gallery directory (empty when not kept).
    pub crops: Vec<String>,
    /// Faces that are not this person ("this is not NAME"), kept as negative examples.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub negatives: usize,
    /// The negatives' aligned crops (`crops/<id>-n<k>.png`), one per negative.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub negative_crops: Vec<String>,
    /// How many changes this person has been through (enrolled, renamed, a shot added or
    /// dropped), counted across a fleet of boards: with `origin`, what decides between two boards'
    /// versions (see the `sync` module). Negatives are this board's own and do not count.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
    /// The board (gallery) that made the latest change; empty before the gallery joined a fleet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
}

fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

/// A person removed from a fleet gallery: kept so that an older version of them, still retained
/// by the broker or held by a board that was off, cannot bring them back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    pub id: String,
    pub version: u64,
    pub origin: String,
}

/// A change to one person made on another board, to apply here (see [`Gallery::apply_remote`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Remote {
    Person(Arrival),
    Removed(Tombstone),
}

/// A person as another board last wrote them, with embeddings made by this gallery's model.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    pub id: String,
    pub version: u64,
    pub origin: String,
    pub name: String,
    pub enrolled_unix: u64,
    pub shots: Vec<Vec<f32>>,
    /// PNG aligned crops, one per shot, or none.
    pub crops: Vec<Vec<u8>>,
    /// Faces recorded as not this person, and their crops (one each, or none). None at all
    /// keeps this board's own (a board of an older facegate sends none).
    pub negatives: Vec<Vec<f32>>,
    pub negative_crops: Vec<Vec<u8>>,
}

impl Remote {
    pub fn id(&self) -> &str {
        match self {
            Remote::Person(a) => &a.id,
            Remote::Removed(t) => &t.id,
        }
    }

    pub fn version(&self) -> (u64, &str) {
        match self {
            Remote::Person(a) => (a.version, &a.origin),
            Remote::Removed(t) => (t.version, &t.origin),
        }
    }
}

/// What [`Gallery::apply_remote`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Applied {
    /// People added or updated (their names).
    pub updated: Vec<String>,
    /// People removed (their ids).
    pub removed: Vec<String>,
    /// Changes this gallery already had, or had newer.
    pub stale: usize,
    /// Changes that could not be applied now (id and why), to try again after the next change.
    pub deferred: Vec<(String, String)>,
}

/// Whether version `a` (count, origin board) wins over `b`: the higher count, and between equal
/// counts written on two boards at once, the greater board id. Every board orders the same way,
/// so all converge on one winner.
pub fn wins(a: (u64, &str), b: (u64, &str)) -> bool {
    a.0 > b.0 || (a.0 == b.0 && a.1 > b.1)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Index {
    format_version: u32,
    model: ModelInfo,
    embeddings_file: String,
    embeddings_sha256: String,
    next_id: u64,
    /// This gallery's board id (16 hex digits) once it joined a fleet (`watch --sync`): person ids
    /// are then `p<number>-<board>`, unique across boards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    board: Option<String>,
    people: Vec<PersonEntry>,
    /// People removed since the gallery joined a fleet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<Tombstone>,
}

/// One enrolled person, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub entry: PersonEntry,
    pub shots: Vec<Vec<f32>>,
    /// Unit-length mean of the shots.
    pub centroid: Vec<f32>,
    /// Embeddings of faces rejected as this person.
    pub negatives: Vec<Vec<f32>>,
}

#[derive(Debug)]
pub struct GalleryError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for GalleryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "gallery {}: {}",
            crate::support::terminal::path(&self.path),
            self.problem
        )
    }
}

impl std::error::Error for GalleryError {}

fn err(path: &Path, problem: impl Into<String>) -> GalleryError {
    GalleryError {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// An opened gallery. Reading needs no lock; [`Gallery::lock`] is taken before any change.
#[derive(Debug)]
pub struct Gallery {
    dir: PathBuf,
    model: ModelInfo,
    people: Vec<Person>,
    next_id: u64,
    generation: Option<String>,
    board: Option<String>,
    removed: Vec<Tombstone>,
}

/// See [`Gallery::index_stamp`]. Commits replace the index by renaming a new file over it, so
/// every commit changes the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

/// Held while a process changes a gallery; released on drop.
pub use crate::store::lock::WriteLock;

/// Checks a person's name: it is data shown to people, never used as a path.
/// A name as names are compared: "joe  Biden" is "Joe Biden" (case and runs of spaces do not
/// count), so that a person is not enrolled twice by a different spelling and a filter finds
/// them however it is typed.
pub fn name_key(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether two names are the same person's ([`name_key`]).
pub fn same_name(a: &str, b: &str) -> bool {
    a == b || name_key(a) == name_key(b)
}

pub fn validate_name(name: &str) -> Result<(), String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if trimmed != name {
        return Err(format!("the name '{name}' starts or ends with spaces"));
    }
    if name.chars().count() > 100 {
        return Err("a name can have at most 100 characters".into());
    }
    if name.chars().any(|c| c.is_control()) {
        return Err("a name cannot contain control characters".into());
    }
    Ok(())
}

/// " (as 'Joe Biden')" when the enrolled spelling is not the one asked for.
fn spelled(enrolled: &str, asked: &str) -> String {
    if enrolled == asked {
        String::new()
    } else {
        format!(" as '{}'", crate::support::terminal::escape(enrolled))
    }
}

impl Gallery {
    /// Opens the gallery in `dir`, or an empty one for `model` if the directory has no index yet.
    /// A gallery made with another model is refused (re-embed it with `facegate gallery reembed`).
    pub fn open(dir: &Path, model: &ModelInfo) -> Result<Gallery, GalleryError> {
        let g = Gallery::open_any(dir, model)?;
        if g.model.fingerprint != model.fingerprint {
            return Err(err(
                dir,
                format!(
                    "it was made with model {} ({}), but the current model is {} ({}); \
                     run `facegate gallery reembed --gallery {}` to re-embed its crops",
                    g.model.name,
                    short(&g.model.fingerprint),
                    model.name,
                    short(&model.fingerprint),
                    dir.display()
                ),
            ));
        }
        Ok(g)
    }

    /// Opens the gallery whatever model made it (for listing and re-embedding).
    pub fn open_any(dir: &Path, model: &ModelInfo) -> Result<Gallery, GalleryError> {
        // A writer may commit between reading the index and reading the embeddings file it names,
        // and then delete that file: read the new index instead.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match Gallery::read(dir, model) {
                Err(Retry::Raced) if attempts < 5 => continue,
                Err(Retry::Raced) => {
                    return Err(err(
                        dir,
                        "the gallery kept changing while it was read; try again",
                    ))
                }
                Err(Retry::Failed(e)) => return Err(e),
                Ok(g) => return Ok(g),
            }
        }
    }

    fn read(dir: &Path, model: &ModelInfo) -> Result<Gallery, Retry> {
        let Some(index) = read_index(dir)? else {
            if let Some(what) = gallery_data(dir) {
                // A new gallery's first writer may have committed its index since we looked.
                if fs::symlink_metadata(dir.join(INDEX)).is_ok() {
                    return Err(Retry::Raced);
                }
                return Err(Retry::Failed(err(
                    dir,
                    format!(
                        "the folder holds gallery data ({what}) but no {INDEX}: the index was \
                         deleted or lost. Nothing was changed. Restore {INDEX} from a backup, or \
                         move the folder aside to start a new gallery; `facegate gallery check` \
                         lists what is there"
                    ),
                )));
            }
            return Ok(Gallery {
                dir: dir.to_path_buf(),
                model: model.clone(),
                people: Vec::new(),
                next_id: 1,
                generation: None,
                board: None,
                removed: Vec::new(),
            });
        };
        if crops_is_link(dir) {
            return Err(Retry::Failed(err(
                &dir.join(CROPS),
                "the crops folder is a symbolic link; a gallery keeps its crops inside itself, \
                 so it was left alone (replace the link with the folder it points to)",
            )));
        }
        let emb_path = dir.join(&index.embeddings_file);
        let bytes = match limits::read_file(
            &emb_path,
            limits::MAX_EMBEDDINGS_BYTES,
            "gallery embeddings file",
        ) {
            Ok(b) => b,
            Err(_) if !emb_path.exists() && index_changed(dir, &index.embeddings_file) => {
                return Err(Retry::Raced)
            }
            Err(e) => return Err(Retry::Failed(err(&emb_path, e))),
        };
        if sha256_hex(&bytes) != index.embeddings_sha256 {
            return Err(Retry::Failed(err(
                &emb_path,
                "corrupt or truncated embeddings file (its sha256 does not match the index); it was left untouched",
            )));
        }
        let people =
            decode_embeddings(&bytes, &index).map_err(|p| Retry::Failed(err(&emb_path, p)))?;
        Ok(Gallery {
            dir: dir.to_path_buf(),
            model: index.model,
            people,
            next_id: index.next_id,
            generation: Some(index.embeddings_file),
            board: index.board,
            removed: index.removed,
        })
    }

    /// Checks the gallery in `dir` without changing it: the index, the embeddings it names, every
    /// crop, and what lies in the folder that no index names.
    pub fn check(dir: &Path) -> CheckReport {
        let mut report = CheckReport::default();
        if !dir.is_dir() {
            report.problems.push(format!(
                "{}: no such gallery folder",
                crate::support::terminal::path(dir)
            ));
            return report;
        }
        let any_model = ModelInfo {
            name: String::new(),
            fingerprint: String::new(),
            embedding_dim: 0,
        };
        let gallery = match Gallery::open_any(dir, &any_model) {
            Ok(g) => Some(g),
            Err(e) => {
                report.problems.push(e.to_string());
                None
            }
        };
        if let Some(g) = &gallery {
            report.people = g.people.len();
            for p in &g.people {
                for c in p.entry.crops.iter().chain(&p.entry.negative_crops) {
                    let path = dir.join(c);
                    if let Err(why) = looks_like_png(&path) {
                        report.problems.push(format!(
                            "{}: the crop of '{}' {why}",
                            crate::support::terminal::path(&path),
                            crate::support::terminal::escape(&p.entry.name)
                        ));
                    }
                }
            }
        }
        let referenced = gallery.as_ref().map(|g| g.referenced());
        for (path, kind) in folder_entries(dir) {
            let known = referenced.as_ref().is_some_and(|r| r.contains(&path));
            let shown = crate::support::terminal::path(&path);
            match kind {
                Entry::Ours if known => {}
                Entry::Ours | Entry::Temporary => report.leftovers.push(format!(
                    "{shown}: left by an interrupted write (removed by the next change)"
                )),
                Entry::Foreign => report
                    .foreign
                    .push(format!("{shown}: not a gallery file (left alone)")),
            }
        }
        report
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    /// What the index file looks like on disk now (size, time, inode): a cheap way for a long-
    /// running reader to notice that another process committed a change. `None` when absent.
    pub fn index_stamp(dir: &Path) -> Option<IndexStamp> {
        let m = fs::metadata(dir.join(INDEX)).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&m);
        #[cfg(not(unix))]
        let inode = 0;
        Some(IndexStamp {
            len: m.len(),
            modified: m.modified().ok(),
            inode,
        })
    }

    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// This gallery's board id, once it joined a fleet ([`Gallery::join_fleet`]).
    pub fn board(&self) -> Option<&str> {
        self.board.as_deref()
    }

    /// The people removed since the gallery joined a fleet.
    pub fn tombstones(&self) -> &[Tombstone] {
        &self.removed
    }

    /// The version this gallery holds of person `id`: the person's, or their tombstone's.
    pub fn version_of(&self, id: &str) -> Option<(u64, &str)> {
        version_in(&self.people, &self.removed, id)
    }

    /// A local change to a person: one more version, made on this board.
    fn bump(&self, entry: &mut PersonEntry) {
        // Versions stay at most MAX_VERSION (checked on every message and index read), so this
        // cannot overflow; saturating keeps it so even for a hand-edited index.
        entry.version = entry.version.saturating_add(1).min(MAX_VERSION);
        entry.origin = self.board.clone().unwrap_or_default();
    }

    /// Takes the gallery's write lock, waiting for another writer to finish.
    pub fn lock(dir: &Path) -> Result<WriteLock, GalleryError> {
        let path = dir.join(LOCK);
        WriteLock::wait(dir, LOCK).map_err(|e| err(&path, e))
    }

    /// Adds a person; `crops` are PNG-encoded aligned crops (may be empty).
    pub fn add(
        &mut self,
        _lock: &WriteLock,
        name: &str,
        shots: Vec<Vec<f32>>,
        crops: &[Vec<u8>],
    ) -> Result<&Person, GalleryError> {
        validate_name(name).map_err(|p| err(&self.dir, p))?;
        if let Some(p) = self.people.iter().find(|p| same_name(&p.entry.name, name)) {
            return Err(err(
                &self.dir,
                format!(
                    "'{}' is already enrolled{}; remove or rename them first",
                    crate::support::terminal::escape(name),
                    spelled(&p.entry.name, name)
                ),
            ));
        }
        if shots.is_empty() || shots.iter().any(|s| s.len() != self.model.embedding_dim) {
            return Err(err(
                &self.dir,
                "every shot needs one embedding of the model's size",
            ));
        }
        if self.next_id > MAX_ID {
            return Err(err(&self.dir, "the gallery has run out of person ids"));
        }
        self.begin_write()?;
        self.commit_first()?;
        let id = match &self.board {
            Some(board) => format!("p{:06}-{board}", self.next_id),
            None => format!("p{:06}", self.next_id),
        };
        let mut crop_names = Vec::new();
        if !crops.is_empty() {
            let crop_dir = self.dir.join(CROPS);
            fs::create_dir_all(&crop_dir).map_err(|e| err(&crop_dir, e.to_string()))?;
            for (k, png) in crops.iter().enumerate() {
                let rel = crop_name(&id, k);
                write_atomic(&self.dir.join(&rel), png)?;
                crop_names.push(rel);
            }
            crash_point("after-crops");
        }
        let centroid = centroid(&shots);
        let entry = PersonEntry {
            id,
            name: name.to_string(),
            enrolled_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            shots: shots.len(),
            crops: crop_names,
            negatives: 0,
            negative_crops: Vec::new(),
            version: 1,
            origin: self.board.clone().unwrap_or_default(),
        };
        let mut next = self.people.clone();
        next.push(Person {
            entry,
            shots,
            centroid,
            negatives: Vec::new(),
        });
        self.commit(next, self.next_id + 1)?;
        Ok(self
            .people
            .last()
            .unwrap_or_else(|| unreachable!("just added")))
    }

    pub fn remove(&mut self, _lock: &WriteLock, name: &str) -> Result<PersonEntry, GalleryError> {
        let i = self.find(name)?;
        self.begin_write()?;
        let mut next = self.people.clone();
        let gone = next.remove(i);
        let mut removed = self.removed.clone();
        if let Some(board) = &self.board {
            removed.push(Tombstone {
                id: gone.entry.id.clone(),
                version: gone.entry.version.saturating_add(1).min(MAX_VERSION),
                origin: board.clone(),
            });
        }
        self.commit_with(next, self.next_id, removed)?;
        for c in gone.entry.crops.iter().chain(&gone.entry.negative_crops) {
            let _ = fs::remove_file(self.dir.join(c));
        }
        Ok(gone.entry)
    }

    pub fn rename(&mut self, _lock: &WriteLock, old: &str, new: &str) -> Result<(), GalleryError> {
        validate_name(new).map_err(|p| err(&self.dir, p))?;
        let i = self.find(old)?;
        // Another person under the same name is a conflict; the person's own name in another
        // spelling ("joe biden" to "Joe Biden") is a rename.
        if let Some(p) = self
            .people
            .iter()
            .enumerate()
            .find(|(j, p)| *j != i && same_name(&p.entry.name, new))
            .map(|(_, p)| p)
        {
            return Err(err(
                &self.dir,
                format!(
                    "'{}' is already enrolled{}",
                    crate::support::terminal::escape(new),
                    spelled(&p.entry.name, new)
                ),
            ));
        }
        self.begin_write()?;
        let mut next = self.people.clone();
        next[i].entry.name = new.to_string();
        self.bump(&mut next[i].entry);
        self.commit(next, self.next_id)
    }

    /// Replaces every person's embeddings (after re-embedding their crops with a new model):
    /// their shots, and their negatives (one set each, in the order of `negative_crops`).
    pub fn replace_model(
        &mut self,
        _lock: &WriteLock,
        model: ModelInfo,
        shots: Vec<Vec<Vec<f32>>>,
        negatives: Vec<Vec<Vec<f32>>>,
    ) -> Result<(), GalleryError> {
        if shots.len() != self.people.len() || negatives.len() != self.people.len() {
            return Err(err(
                &self.dir,
                "one set of shots and negatives per person is needed",
            ));
        }
        if self
            .people
            .iter()
            .zip(&negatives)
            .any(|(p, n)| n.len() != p.entry.negatives)
        {
            return Err(err(&self.dir, "every negative needs its new embedding"));
        }
        self.begin_write()?;
        let mut next = self.people.clone();
        for ((p, s), n) in next.iter_mut().zip(shots).zip(negatives) {
            p.entry.shots = s.len();
            p.centroid = centroid(&s);
            p.shots = s;
            p.negatives = n;
        }
        let old = std::mem::replace(&mut self.model, model);
        self.commit(next, self.next_id)
            .inspect_err(|_| self.model = old.clone())
    }

    /// Adds one shot to the person with this id. Its crop is kept when every earlier shot has
    /// one (a person enrolled without crops stays without).
    pub fn add_shot(
        &mut self,
        _lock: &WriteLock,
        id: &str,
        embedding: Vec<f32>,
        crop: &[u8],
    ) -> Result<&Person, GalleryError> {
        let i = self.find_id(id)?;
        let person = &self.people[i];
        if embedding.len() != self.model.embedding_dim {
            return Err(err(
                &self.dir,
                "the shot's embedding is not of the model's size",
            ));
        }
        if person.shots.len() >= MAX_SHOTS {
            return Err(err(
                &self.dir,
                format!("{id} already has {MAX_SHOTS} shots"),
            ));
        }
        let keep_crop = !person.entry.crops.is_empty();
        self.editable_crops(person)?;
        self.begin_write()?;
        let mut next = self.people.clone();
        let p = &mut next[i];
        if keep_crop {
            let rel = next_crop_name(id, &p.entry.crops, "").map_err(|e| err(&self.dir, e))?;
            write_atomic(&self.dir.join(&rel), crop)?;
            p.entry.crops.push(rel);
        }
        p.shots.push(embedding);
        p.entry.shots = p.shots.len();
        p.centroid = centroid(&p.shots);
        self.bump(&mut next[i].entry);
        self.commit(next, self.next_id)?;
        Ok(&self.people[i])
    }

    /// Drops shot `index` (0-based) of the person with this id, with its crop; the last shot
    /// cannot be dropped (remove the person instead).
    pub fn remove_shot(
        &mut self,
        _lock: &WriteLock,
        id: &str,
        index: usize,
    ) -> Result<&Person, GalleryError> {
        let i = self.find_id(id)?;
        let person = &self.people[i];
        if index >= person.shots.len() {
            return Err(err(
                &self.dir,
                format!("{id} has no shot {index} (it has {})", person.shots.len()),
            ));
        }
        if person.shots.len() == 1 {
            return Err(err(
                &self.dir,
                format!("{id}'s only shot cannot be dropped; remove the person instead"),
            ));
        }
        self.editable_crops(person)?;
        self.begin_write()?;
        let mut next = self.people.clone();
        let p = &mut next[i];
        p.shots.remove(index);
        let gone = (!p.entry.crops.is_empty()).then(|| p.entry.crops.remove(index));
        p.entry.shots = p.shots.len();
        p.centroid = centroid(&p.shots);
        self.bump(&mut next[i].entry);
        self.commit(next, self.next_id)?;
        if let Some(c) = gone {
            let _ = fs::remove_file(self.dir.join(c));
        }
        Ok(&self.people[i])
    }

    /// Keeps a face as not being the person named `name` (a negative example), with its aligned
    /// crop, so that a new model can re-embed it.
    pub fn reject(
        &mut self,
        _lock: &WriteLock,
        name: &str,
        embedding: Vec<f32>,
        crop: &[u8],
    ) -> Result<&Person, GalleryError> {
        let i = self.find(name)?;
        if embedding.len() != self.model.embedding_dim {
            return Err(err(
                &self.dir,
                "the face's embedding is not of the model's size",
            ));
        }
        let person = &self.people[i];
        if person.negatives.len() >= MAX_SHOTS {
            return Err(err(
                &self.dir,
                format!("{} already has {MAX_SHOTS} negatives", person.entry.id),
            ));
        }
        let id = person.entry.id.clone();
        let rel = next_crop_name(&id, &person.entry.negative_crops, NEGATIVE)
            .map_err(|e| err(&self.dir, e))?;
        self.begin_write()?;
        let crop_dir = self.dir.join(CROPS);
        fs::create_dir_all(&crop_dir).map_err(|e| err(&crop_dir, e.to_string()))?;
        write_atomic(&self.dir.join(&rel), crop)?;
        let mut next = self.people.clone();
        let p = &mut next[i];
        p.negatives.push(embedding);
        p.entry.negatives = p.negatives.len();
        p.entry.negative_crops.push(rel);
        // A correction is a change like a rename: it travels to the fleet.
        self.bump(&mut next[i].entry);
        self.commit(next, self.next_id)?;
        Ok(&self.people[i])
    }

    /// Shots can be edited one by one only when crops and shots pair up (all or none kept).
    fn editable_crops(&self, person: &Person) -> Result<(), GalleryError> {
        let crops = person.entry.crops.len();
        if crops != 0 && crops != person.shots.len() {
            return Err(err(
                &self.dir,
                format!(
                    "{} has {crops} crops for {} shots, so its shots cannot be edited one by one",
                    person.entry.id,
                    person.shots.len()
                ),
            ));
        }
        Ok(())
    }

    /// The person with this id (`p000001`).
    pub fn person(&self, id: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.entry.id == id)
    }

    fn find_id(&self, id: &str) -> Result<usize, GalleryError> {
        self.people
            .iter()
            .position(|p| p.entry.id == id)
            .ok_or_else(|| {
                err(
                    &self.dir,
                    format!(
                        "nobody with id '{}' is enrolled",
                        crate::support::terminal::escape(id)
                    ),
                )
            })
    }

    /// The person named `name` exactly, or else the one person whose name differs from it only
    /// in case and spaces.
    fn find(&self, name: &str) -> Result<usize, GalleryError> {
        self.people
            .iter()
            .position(|p| p.entry.name == name)
            .or_else(|| {
                let mut alike = self
                    .people
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| same_name(&p.entry.name, name));
                match (alike.next(), alike.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            })
            .ok_or_else(|| {
                err(
                    &self.dir,
                    format!(
                        "nobody named '{}' is enrolled",
                        crate::support::terminal::escape(name)
                    ),
                )
            })
    }

    /// The crop file of one of this gallery's people (its name was checked when the index was
    /// read, so it lies inside the gallery).
    pub fn crop_path(&self, crop: &str) -> PathBuf {
        self.dir.join(crop)
    }

    /// Every file the current index refers to.
    fn referenced(&self) -> std::collections::HashSet<PathBuf> {
        let mut files: std::collections::HashSet<PathBuf> = self
            .people
            .iter()
            .flat_map(|p| {
                p.entry
                    .crops
                    .iter()
                    .chain(&p.entry.negative_crops)
                    .map(|c| self.dir.join(c))
            })
            .collect();
        if let Some(g) = &self.generation {
            files.insert(self.dir.join(g));
        }
        files
    }

    /// Removes what interrupted writers left: temporary files, and crops and embeddings files no
    /// index names. Called under the lock, after making sure this gallery is the committed one.
    fn sweep(&self) {
        let referenced = self.referenced();
        for (path, kind) in folder_entries(&self.dir) {
            if matches!(kind, Entry::Temporary)
                || (matches!(kind, Entry::Ours) && !referenced.contains(&path))
            {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Starts a change, under the lock: makes sure this gallery is still the committed one, then
    /// sweeps what interrupted writers left (before this change writes files of its own).
    fn begin_write(&self) -> Result<(), GalleryError> {
        // Another process may have committed since this gallery was read (it should have been
        // read under the lock): writing now would lose that change, and sweeping would delete
        // the files it added.
        let on_disk = read_index(&self.dir)?.map(|index| index.embeddings_file);
        if on_disk != self.generation {
            return Err(err(
                &self.dir,
                "the gallery was changed by another process since it was read; nothing was written, run the command again",
            ));
        }
        if crops_is_link(&self.dir) {
            return Err(err(
                &self.dir.join(CROPS),
                "the crops folder is a symbolic link; nothing was written",
            ));
        }
        self.sweep();
        Ok(())
    }

    /// A new gallery's empty index comes first: from then on, crops or embeddings without an
    /// index can only mean a lost index.
    fn commit_first(&mut self) -> Result<(), GalleryError> {
        if self.generation.is_none() {
            self.commit(Vec::new(), self.next_id)?;
        }
        Ok(())
    }

    fn commit(&mut self, people: Vec<Person>, next_id: u64) -> Result<(), GalleryError> {
        let removed = self.removed.clone();
        self.commit_with(people, next_id, removed)
    }

    fn commit_with(
        &mut self,
        people: Vec<Person>,
        next_id: u64,
        removed: Vec<Tombstone>,
    ) -> Result<(), GalleryError> {
        let generation = match &self.generation {
            Some(g) => generation_of(g).unwrap_or(0) + 1,
            None => 1,
        };
        let emb_name = format!("embeddings-{generation:08}.bin");
        let bytes = encode_embeddings(&people, self.model.embedding_dim);
        let index = Index {
            format_version: FORMAT_VERSION,
            model: self.model.clone(),
            embeddings_file: emb_name.clone(),
            embeddings_sha256: sha256_hex(&bytes),
            next_id,
            board: self.board.clone(),
            people: people.iter().map(|p| p.entry.clone()).collect(),
            removed,
        };
        let text =
            serde_json::to_string_pretty(&index).map_err(|e| err(&self.dir, e.to_string()))?;
        // What is written must be readable: the reader's checks, applied before writing anything.
        validate_written(&index, &people, text.len(), bytes.len())
            .map_err(|p| err(&self.dir, format!("{p}; nothing was written")))?;
        write_atomic(&self.dir.join(&emb_name), &bytes)?;
        crash_point("after-embeddings");
        write_atomic(&self.dir.join(INDEX), text.as_bytes())?;
        crash_point("after-index");
        if let Some(old) = self.generation.replace(emb_name) {
            let _ = fs::remove_file(self.dir.join(old));
        }
        self.people = people;
        self.next_id = next_id;
        self.removed = index.removed;
        Ok(())
    }
}

fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(12)]
}

fn centroid(shots: &[Vec<f32>]) -> Vec<f32> {
    let dim = shots.first().map_or(0, |s| s.len());
    let mut sum = vec![0f32; dim];
    for s in shots {
        for (a, b) in sum.iter_mut().zip(s) {
            *a += b;
        }
    }
    normalized(&sum)
}

/// What [`Gallery::check`] found. Problems are damage (data the index promises is missing or wrong);
/// leftovers are what interrupted writes left, harmless and swept by the next change; foreign
/// files are not facegate's and are never touched.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CheckReport {
    pub people: usize,
    pub problems: Vec<String>,
    pub leftovers: Vec<String>,
    pub foreign: Vec<String>,
}

impl CheckReport {
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }
}

enum Retry {
    /// The index changed while it was being read.
    Raced,
    Failed(GalleryError),
}

impl From<GalleryError> for Retry {
    fn from(e: GalleryError) -> Self {
        Retry::Failed(e)
    }
}

/// The version of person `id` among `people`, or in the tombstones.
fn version_in<'a>(
    people: &'a [Person],
    removed: &'a [Tombstone],
    id: &str,
) -> Option<(u64, &'a str)> {
    people
        .iter()
        .find(|p| p.entry.id == id)
        .map(|p| (p.entry.version, p.entry.origin.as_str()))
        .or_else(|| {
            removed
                .iter()
                .find(|t| t.id == id)
                .map(|t| (t.version, t.origin.as_str()))
        })
}

/// Writes `bytes` to `path` atomically and durably ([`crate::support::durable`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GalleryError> {
    crate::support::durable::write(path, bytes).map_err(|e| err(path, format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differing_in_case_or_spaces_are_one_person() {
        assert!(same_name("Joe Biden", "joe  biden"));
        assert!(same_name("Ærøskøbing Ådne", "ærøskøbing ådne"));
        assert!(!same_name("Joe Biden", "Joe Bidden"));
        assert_eq!(name_key(" Ada\tLovelace "), "ada lovelace");
    }
}
