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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
pub struct WriteLock {
    _file: File,
}

/// Checks a person's name: it is data shown to people, never used as a path.
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
        entry.version += 1;
        entry.origin = self.board.clone().unwrap_or_default();
    }

    /// Takes the gallery's write lock, waiting for another writer to finish.
    pub fn lock(dir: &Path) -> Result<WriteLock, GalleryError> {
        let path = dir.join(LOCK);
        let file = lock_file(dir, LOCK).map_err(|e| err(&path, e))?;
        file.lock()
            .map_err(|e| err(&path, format!("cannot lock: {e}")))?;
        Ok(WriteLock { _file: file })
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
        if self.people.iter().any(|p| p.entry.name == name) {
            return Err(err(
                &self.dir,
                format!(
                    "'{}' is already enrolled; remove or rename them first",
                    crate::support::terminal::escape(name)
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
                version: gone.entry.version + 1,
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
        if self.people.iter().any(|p| p.entry.name == new) {
            return Err(err(
                &self.dir,
                format!(
                    "'{}' is already enrolled",
                    crate::support::terminal::escape(new)
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

    fn find(&self, name: &str) -> Result<usize, GalleryError> {
        self.people
            .iter()
            .position(|p| p.entry.name == name)
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

/// Fault injection for the crash-safety tests: with `FACEGATE_CRASH_AT=<point>` in the
/// environment the process dies at that point, as a power cut or `kill -9` would leave it.
fn crash_point(point: &str) {
    if std::env::var_os("FACEGATE_CRASH_AT").is_some_and(|v| v == point) {
        std::process::abort();
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

fn encode_embeddings(people: &[Person], dim: usize) -> Vec<u8> {
    let with_negatives = people.iter().any(|p| !p.negatives.is_empty());
    let mut out = Vec::new();
    out.extend_from_slice(if with_negatives { MAGIC_2 } else { MAGIC });
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    out.extend_from_slice(&(people.len() as u32).to_le_bytes());
    for p in people {
        out.extend_from_slice(&(p.shots.len() as u32).to_le_bytes());
        if with_negatives {
            out.extend_from_slice(&(p.negatives.len() as u32).to_le_bytes());
        }
        let vectors = p
            .shots
            .iter()
            .chain(std::iter::once(&p.centroid))
            .chain(&p.negatives);
        for v in vectors {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    out
}

fn decode_embeddings(bytes: &[u8], index: &Index) -> Result<Vec<Person>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = at
            .checked_add(n)
            .ok_or("the embeddings file is truncated")?;
        let s = bytes
            .get(at..end)
            .ok_or("the embeddings file is truncated")?;
        at = end;
        Ok(s)
    };
    let with_negatives = match take(8)? {
        m if m == MAGIC => false,
        m if m == MAGIC_2 => true,
        _ => return Err("not a facegate embeddings file (bad magic)".into()),
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let dim = u32_of(take(4)?);
    let count = u32_of(take(4)?);
    if dim != index.model.embedding_dim || count != index.people.len() {
        return Err("the embeddings file does not match the index".into());
    }
    let mut people = Vec::with_capacity(count);
    for entry in &index.people {
        let shots = u32_of(take(4)?);
        if shots != entry.shots {
            return Err(format!(
                "'{}' has {shots} shots in the embeddings file, {} in the index",
                crate::support::terminal::escape(&entry.name),
                entry.shots
            ));
        }
        let negatives = if with_negatives { u32_of(take(4)?) } else { 0 };
        if negatives != entry.negatives {
            return Err(format!(
                "'{}' has {negatives} negatives in the embeddings file, {} in the index",
                crate::support::terminal::escape(&entry.name),
                entry.negatives
            ));
        }
        let mut vectors = Vec::with_capacity(shots + 1 + negatives);
        for _ in 0..(shots + 1 + negatives) {
            let raw = take(4 * dim)?;
            let v: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!(
                    "'{}' has an embedding that is not finite",
                    crate::support::terminal::escape(&entry.name)
                ));
            }
            vectors.push(v);
        }
        let negative_vectors = vectors.split_off(shots + 1);
        let centroid = vectors.pop().unwrap_or_default();
        people.push(Person {
            entry: entry.clone(),
            shots: vectors,
            centroid,
            negatives: negative_vectors,
        });
    }
    if at != bytes.len() {
        return Err("the embeddings file has trailing data".into());
    }
    Ok(people)
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

/// The index, checked, or `None` when there is none.
fn read_index(dir: &Path) -> Result<Option<Index>, GalleryError> {
    let index_path = dir.join(INDEX);
    match fs::symlink_metadata(&index_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(&index_path, e.to_string())),
        Ok(_) => {}
    }
    let text = limits::read_text(&index_path, limits::MAX_INDEX_BYTES, "gallery index")
        .map_err(|e| err(&index_path, format!("{e}; it was left untouched")))?;
    let index: Index = serde_json::from_str(&text).map_err(|e| {
        err(
            &index_path,
            format!("corrupt or truncated index ({e}); it was left untouched"),
        )
    })?;
    validate_index(&index).map_err(|p| {
        err(
            &index_path,
            format!("invalid index: {p}; it was left untouched"),
        )
    })?;
    Ok(Some(index))
}

/// A change about to be committed passes every check a reader will make.
fn validate_written(
    index: &Index,
    people: &[Person],
    index_bytes: usize,
    embeddings_bytes: usize,
) -> Result<(), String> {
    validate_index(index)?;
    if index_bytes as u64 > limits::MAX_INDEX_BYTES
        || embeddings_bytes as u64 > limits::MAX_EMBEDDINGS_BYTES
    {
        return Err("the gallery would outgrow its size limits".into());
    }
    let dim = index.model.embedding_dim;
    for p in people {
        if p.shots.len() != p.entry.shots
            || p.shots
                .iter()
                .chain([&p.centroid])
                .any(|v| v.len() != dim || v.iter().any(|x| !x.is_finite()))
        {
            return Err(format!(
                "the embeddings of '{}' are not {dim} finite numbers a shot",
                crate::support::terminal::escape(&p.entry.name)
            ));
        }
    }
    Ok(())
}

/// Whether the index on disk no longer names `embeddings_file` (a writer committed meanwhile).
fn index_changed(dir: &Path, embeddings_file: &str) -> bool {
    matches!(read_index(dir), Ok(Some(i)) if i.embeddings_file != embeddings_file)
}

/// Everything an index must satisfy before any of it is used.
fn validate_index(index: &Index) -> Result<(), String> {
    if index.format_version != FORMAT_VERSION {
        return Err(format!(
            "format version {} is not supported (this facegate reads version {FORMAT_VERSION})",
            index.format_version
        ));
    }
    if generation_of(&index.embeddings_file).is_none() {
        return Err("it names an invalid embeddings file".into());
    }
    if index.embeddings_sha256.len() != 64
        || !index
            .embeddings_sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    {
        return Err("the embeddings sha256 is not 64 hex digits".into());
    }
    let m = &index.model;
    if !(1..=MAX_EMBEDDING_DIM).contains(&m.embedding_dim) {
        return Err(format!(
            "embedding dimension {} is out of range (1 to {MAX_EMBEDDING_DIM})",
            m.embedding_dim
        ));
    }
    if m.name.chars().count() > 200 || m.name.chars().any(char::is_control) {
        return Err("the model name is too long or holds control characters".into());
    }
    if m.fingerprint.len() > 128 || !m.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the model fingerprint is not a hex digest".into());
    }
    if index.people.len() > MAX_PEOPLE {
        return Err(format!("more than {MAX_PEOPLE} people"));
    }
    if index.next_id == 0 || index.next_id > MAX_ID + 1 {
        return Err(format!("next_id {} is out of range", index.next_id));
    }
    if index.board.as_deref().is_some_and(|b| !is_board_id(b)) {
        return Err("the board id is not 16 hex digits".into());
    }
    if index.removed.len() > MAX_PEOPLE {
        return Err(format!("more than {MAX_PEOPLE} removed people"));
    }
    let mut ids = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for p in &index.people {
        let (number, board) = parse_id(&p.id).ok_or_else(|| {
            format!(
                "'{}' is not a person id",
                crate::support::terminal::escape(&p.id)
            )
        })?;
        // Ids this board gave out count up; those from other boards count on their own boards.
        if (board.is_none() || board == index.board.as_deref()) && number >= index.next_id {
            return Err(format!(
                "person {} is not below next_id {} (a stale index would reuse its files)",
                p.id, index.next_id
            ));
        }
        if !ids.insert(p.id.as_str()) {
            return Err(format!("person id {} appears twice", p.id));
        }
        validate_name(&p.name).map_err(|e| format!("person {}: {e}", p.id))?;
        if p.origin.chars().count() > 64 {
            return Err(format!("person {}: the origin is too long", p.id));
        }
        if !names.insert(p.name.as_str()) {
            return Err(format!(
                "the name '{}' appears twice",
                crate::support::terminal::escape(&p.name)
            ));
        }
        if !(1..=MAX_SHOTS).contains(&p.shots) {
            return Err(format!(
                "person {} has {} shots (1 to {MAX_SHOTS})",
                p.id, p.shots
            ));
        }
        if p.crops.len() > p.shots {
            return Err(format!("person {} has more crops than shots", p.id));
        }
        check_crop_names(&p.id, &p.crops, "")?;
        if p.negatives > MAX_SHOTS || p.negative_crops.len() != p.negatives {
            return Err(format!(
                "person {} has {} negatives and {} negative crops (one each, at most {MAX_SHOTS})",
                p.id,
                p.negatives,
                p.negative_crops.len()
            ));
        }
        check_crop_names(&p.id, &p.negative_crops, NEGATIVE)?;
    }
    for t in &index.removed {
        if !is_fleet_id(&t.id) || !ids.insert(t.id.as_str()) {
            return Err(format!(
                "removed person '{}' is not a fleet id, or appears twice",
                crate::support::terminal::escape(&t.id)
            ));
        }
        if t.origin.chars().count() > 64 {
            return Err("a removal's origin is too long".into());
        }
    }
    Ok(())
}

/// Crops are numbered in the order taken (`crops/<id>-<kind><k>.png`); a dropped shot leaves a
/// gap, never a reuse, so a crop file is never overwritten while an index names it.
fn check_crop_names(id: &str, crops: &[String], kind: &str) -> Result<(), String> {
    let mut previous = None;
    for c in crops {
        let number = numbered_crop(id, c, kind).filter(|&k| previous.is_none_or(|p| k > p));
        let Some(k) = number else {
            return Err(format!(
                "person {id}: crop '{}' is not the gallery's own file name ({}, numbered upwards)",
                crate::support::terminal::escape(c),
                numbered_crop_name(id, kind, previous.map_or(0, |p| p + 1))
            ));
        };
        previous = Some(k);
    }
    Ok(())
}

/// What sets a negative's crop name apart from a shot's: `crops/<id>-n<k>.png`.
const NEGATIVE: &str = "n";

fn numbered_crop_name(id: &str, kind: &str, k: usize) -> String {
    format!("{CROPS}/{id}-{kind}{k}.png")
}

fn crop_name(id: &str, shot: usize) -> String {
    numbered_crop_name(id, "", shot)
}

/// Largest crop number: far above any real count of shots, small enough to print as it was read.
const MAX_CROP_NUMBER: usize = 999_999;

/// The number `k` of a crop named exactly `crops/<id>-<kind><k>.png` (no leading zeros).
fn numbered_crop(id: &str, crop: &str, kind: &str) -> Option<usize> {
    let digits = crop
        .strip_prefix(CROPS)?
        .strip_prefix('/')?
        .strip_prefix(id)?
        .strip_prefix('-')?
        .strip_prefix(kind)?
        .strip_suffix(".png")?;
    let k: usize = digits.parse().ok().filter(|&k| k <= MAX_CROP_NUMBER)?;
    (numbered_crop_name(id, kind, k) == crop).then_some(k)
}

/// The name of a person's next crop of `kind` after `crops`: numbers only go up.
fn next_crop_name(id: &str, crops: &[String], kind: &str) -> Result<String, String> {
    let last = crops.last().and_then(|c| numbered_crop(id, c, kind));
    let k = last.map_or(0, |k| k + 1);
    if k > MAX_CROP_NUMBER {
        return Err(format!("{id} has run out of crop numbers"));
    }
    Ok(numbered_crop_name(id, kind, k))
}

/// The number and board of a person id: `p000042` (a gallery that never joined a fleet) or
/// `p000042-<board>` (`p`, six to twelve digits, and the 16 hex digits of the board that
/// enrolled them).
fn parse_id(id: &str) -> Option<(u64, Option<&str>)> {
    let rest = id.strip_prefix('p')?;
    let (digits, board) = match rest.split_once('-') {
        Some((d, b)) if is_board_id(b) => (d, Some(b)),
        Some(_) => return None,
        None => (rest, None),
    };
    if digits.len() < 6 || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, board))
}

fn id_number(id: &str) -> Option<u64> {
    parse_id(id).map(|(n, _)| n)
}

/// Whether `id` is a person id unique across boards (`p000042-<board>`).
pub fn is_fleet_id(id: &str) -> bool {
    parse_id(id).is_some_and(|(_, board)| board.is_some())
}

/// A board id: 16 lowercase hex digits.
fn is_board_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

/// The generation of `embeddings-<digits>.bin`.
fn generation_of(file: &str) -> Option<u64> {
    let digits = file.strip_prefix("embeddings-")?.strip_suffix(".bin")?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

enum Entry {
    /// Named as the gallery names its files (a crop or an embeddings file).
    Ours,
    /// A temporary file of [`write_atomic`].
    Temporary,
    /// Anything else; never touched.
    Foreign,
}

/// The files of a gallery folder and of its crops folder (not the index or the lock).
fn folder_entries(dir: &Path) -> Vec<(PathBuf, Entry)> {
    let mut out = Vec::new();
    for (folder, is_crops) in [(dir.to_path_buf(), false), (dir.join(CROPS), true)] {
        // A crops link may point anywhere: never list (and so never sweep) through it.
        if is_crops && crops_is_link(dir) {
            continue;
        }
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            // `unknowns/` holds the recurring strangers `watch` keeps beside the gallery.
            if !is_crops && (name == INDEX || name == LOCK || name == CROPS || name == "unknowns") {
                continue;
            }
            let kind = if !is_file {
                Entry::Foreign
            } else if is_temporary_of_ours(&name, is_crops) {
                Entry::Temporary
            } else if is_crops && is_crop_file(&name) || !is_crops && generation_of(&name).is_some()
            {
                Entry::Ours
            } else {
                Entry::Foreign
            };
            out.push((e.path(), kind));
        }
    }
    out
}

/// `.<file>.tmp-<pid>`, where `<file>` is one the gallery writes in that folder.
fn is_temporary_of_ours(name: &str, in_crops: bool) -> bool {
    let Some((file, pid)) = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".tmp-"))
    else {
        return false;
    };
    let ours = if in_crops {
        is_crop_file(file)
    } else {
        file == INDEX || generation_of(file).is_some()
    };
    ours && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
}

fn is_crop_file(name: &str) -> bool {
    name.strip_suffix(".png")
        .and_then(|stem| stem.rsplit_once('-'))
        .is_some_and(|(id, shot)| {
            // Shots are `<id>-<k>`, negatives `<id>-n<k>`.
            let shot = shot.strip_prefix('n').unwrap_or(shot);
            id_number(id).is_some() && !shot.is_empty() && shot.bytes().all(|b| b.is_ascii_digit())
        })
}

/// What in `dir` shows it once held a gallery: an embeddings file, or a crop.
fn gallery_data(dir: &Path) -> Option<String> {
    let found: Vec<String> = folder_entries(dir)
        .into_iter()
        .filter(|(_, kind)| matches!(kind, Entry::Ours))
        // The empty first commit, killed before its index was written, holds nobody.
        .filter(|(path, _)| !holds_nobody(path))
        .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let first = found.first()?;
    Some(if found.len() == 1 {
        crate::support::terminal::escape(first).into_owned()
    } else {
        format!(
            "{} and {} more files",
            crate::support::terminal::escape(first),
            found.len() - 1
        )
    })
}

/// Whether `path` is an embeddings file whose header says it holds no people.
fn holds_nobody(path: &Path) -> bool {
    let mut header = [0u8; 16];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .is_ok_and(|()| header[..8] == MAGIC[..] && header[12..16] == [0, 0, 0, 0])
}

/// A crop is a regular file that starts like a PNG (decoding every crop is `reembed`'s job).
fn looks_like_png(path: &Path) -> Result<(), String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot be read ({e})"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mut head = [0u8; 8];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .map_err(|_| "is empty or truncated".to_string())?;
    if !crate::imaging::photo::is_png(&head) {
        return Err("is not a PNG file".into());
    }
    Ok(())
}

fn crops_is_link(dir: &Path) -> bool {
    fs::symlink_metadata(dir.join(CROPS)).is_ok_and(|m| m.file_type().is_symlink())
}

/// Opens (creating it and its folder) the lock file `name` in `dir`, not yet locked. The gallery,
/// the photo index and the strangers' folder each guard their writes with one.
pub fn lock_file(dir: &Path, name: &str) -> Result<File, String> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create the folder: {e}"))?;
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))
        .map_err(|e| e.to_string())
}

/// Writes `bytes` to `path` so that readers see the old or the new content, never a mix: temporary
/// file, flushed, renamed over, then the directory flushed so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GalleryError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        // A half-written temporary file is what a crash during this write leaves behind.
        let half = bytes.len() / 2;
        f.write_all(&bytes[..half])?;
        crash_point("mid-write");
        f.write_all(&bytes[half..])?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        err(path, format!("cannot write: {e}"))
    })
}
