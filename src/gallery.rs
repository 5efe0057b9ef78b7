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

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::embedder::normalized;
use crate::model_card::sha256_hex;

pub const FORMAT_VERSION: u32 = 1;
const INDEX: &str = "gallery.json";
const LOCK: &str = ".lock";
const MAGIC: &[u8; 8] = b"FGEMB\x00\x01\x00";

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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Index {
    format_version: u32,
    model: ModelInfo,
    embeddings_file: String,
    embeddings_sha256: String,
    next_id: u64,
    people: Vec<PersonEntry>,
}

/// One enrolled person, in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub entry: PersonEntry,
    pub shots: Vec<Vec<f32>>,
    /// Unit-length mean of the shots.
    pub centroid: Vec<f32>,
}

#[derive(Debug)]
pub struct GalleryError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for GalleryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gallery {}: {}", self.path.display(), self.problem)
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
        let index_path = dir.join(INDEX);
        let text = match fs::read_to_string(&index_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Gallery {
                    dir: dir.to_path_buf(),
                    model: model.clone(),
                    people: Vec::new(),
                    next_id: 1,
                    generation: None,
                })
            }
            Err(e) => return Err(err(&index_path, e.to_string())),
        };
        let index: Index = serde_json::from_str(&text).map_err(|e| {
            err(
                &index_path,
                format!("corrupt or truncated index ({e}); it was left untouched"),
            )
        })?;
        if index.format_version != FORMAT_VERSION {
            return Err(err(
                &index_path,
                format!(
                    "format version {} is not supported (this facegate reads version {FORMAT_VERSION})",
                    index.format_version
                ),
            ));
        }
        if index.embeddings_file.contains(['/', '\\'])
            || !index.embeddings_file.starts_with("embeddings-")
        {
            return Err(err(
                &index_path,
                "the index names an invalid embeddings file",
            ));
        }
        let emb_path = dir.join(&index.embeddings_file);
        let bytes = fs::read(&emb_path).map_err(|e| err(&emb_path, e.to_string()))?;
        if sha256_hex(&bytes) != index.embeddings_sha256 {
            return Err(err(
                &emb_path,
                "corrupt or truncated embeddings file (its sha256 does not match the index); it was left untouched",
            ));
        }
        let people = decode_embeddings(&bytes, &index).map_err(|p| err(&emb_path, p))?;
        Ok(Gallery {
            dir: dir.to_path_buf(),
            model: index.model,
            people,
            next_id: index.next_id,
            generation: Some(index.embeddings_file),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    pub fn people(&self) -> &[Person] {
        &self.people
    }

    /// Takes the gallery's write lock, waiting for another writer to finish.
    pub fn lock(dir: &Path) -> Result<WriteLock, GalleryError> {
        fs::create_dir_all(dir)
            .map_err(|e| err(dir, format!("cannot create the directory: {e}")))?;
        let path = dir.join(LOCK);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| err(&path, e.to_string()))?;
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
                format!("'{name}' is already enrolled; remove or rename them first"),
            ));
        }
        if shots.is_empty() || shots.iter().any(|s| s.len() != self.model.embedding_dim) {
            return Err(err(
                &self.dir,
                "every shot needs one embedding of the model's size",
            ));
        }
        let id = format!("p{:06}", self.next_id);
        let mut crop_names = Vec::new();
        if !crops.is_empty() {
            let crop_dir = self.dir.join("crops");
            fs::create_dir_all(&crop_dir).map_err(|e| err(&crop_dir, e.to_string()))?;
            for (k, png) in crops.iter().enumerate() {
                let rel = format!("crops/{id}-{k}.png");
                write_atomic(&self.dir.join(&rel), png)?;
                crop_names.push(rel);
            }
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
        };
        let mut next = self.people.clone();
        next.push(Person {
            entry,
            shots,
            centroid,
        });
        self.commit(next, self.next_id + 1)?;
        Ok(self
            .people
            .last()
            .unwrap_or_else(|| unreachable!("just added")))
    }

    pub fn remove(&mut self, _lock: &WriteLock, name: &str) -> Result<PersonEntry, GalleryError> {
        let i = self.find(name)?;
        let mut next = self.people.clone();
        let gone = next.remove(i);
        self.commit(next, self.next_id)?;
        for c in &gone.entry.crops {
            let _ = fs::remove_file(self.dir.join(c));
        }
        Ok(gone.entry)
    }

    pub fn rename(&mut self, _lock: &WriteLock, old: &str, new: &str) -> Result<(), GalleryError> {
        validate_name(new).map_err(|p| err(&self.dir, p))?;
        let i = self.find(old)?;
        if self.people.iter().any(|p| p.entry.name == new) {
            return Err(err(&self.dir, format!("'{new}' is already enrolled")));
        }
        let mut next = self.people.clone();
        next[i].entry.name = new.to_string();
        self.commit(next, self.next_id)
    }

    /// Replaces every person's embeddings (after re-embedding their crops with a new model).
    pub fn replace_model(
        &mut self,
        _lock: &WriteLock,
        model: ModelInfo,
        shots: Vec<Vec<Vec<f32>>>,
    ) -> Result<(), GalleryError> {
        if shots.len() != self.people.len() {
            return Err(err(&self.dir, "one set of shots per person is needed"));
        }
        let mut next = self.people.clone();
        for (p, s) in next.iter_mut().zip(shots) {
            p.entry.shots = s.len();
            p.centroid = centroid(&s);
            p.shots = s;
        }
        let old = std::mem::replace(&mut self.model, model);
        self.commit(next, self.next_id)
            .inspect_err(|_| self.model = old.clone())
    }

    fn find(&self, name: &str) -> Result<usize, GalleryError> {
        self.people
            .iter()
            .position(|p| p.entry.name == name)
            .ok_or_else(|| err(&self.dir, format!("nobody named '{name}' is enrolled")))
    }

    fn commit(&mut self, people: Vec<Person>, next_id: u64) -> Result<(), GalleryError> {
        let generation = match &self.generation {
            Some(g) => {
                g.trim_start_matches("embeddings-")
                    .trim_end_matches(".bin")
                    .parse::<u64>()
                    .unwrap_or(0)
                    + 1
            }
            None => 1,
        };
        let emb_name = format!("embeddings-{generation:08}.bin");
        let bytes = encode_embeddings(&people, self.model.embedding_dim);
        write_atomic(&self.dir.join(&emb_name), &bytes)?;
        crash_point("after-embeddings");
        let index = Index {
            format_version: FORMAT_VERSION,
            model: self.model.clone(),
            embeddings_file: emb_name.clone(),
            embeddings_sha256: sha256_hex(&bytes),
            next_id,
            people: people.iter().map(|p| p.entry.clone()).collect(),
        };
        let text =
            serde_json::to_string_pretty(&index).map_err(|e| err(&self.dir, e.to_string()))?;
        write_atomic(&self.dir.join(INDEX), text.as_bytes())?;
        if let Some(old) = self.generation.replace(emb_name) {
            let _ = fs::remove_file(self.dir.join(old));
        }
        self.people = people;
        self.next_id = next_id;
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
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    out.extend_from_slice(&(people.len() as u32).to_le_bytes());
    for p in people {
        out.extend_from_slice(&(p.shots.len() as u32).to_le_bytes());
        for v in p.shots.iter().chain(std::iter::once(&p.centroid)) {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    out
}

fn decode_embeddings(bytes: &[u8], index: &Index) -> Result<Vec<Person>, String> {
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let s = bytes
            .get(at..at + n)
            .ok_or("the embeddings file is truncated")?;
        at += n;
        Ok(s)
    };
    if take(8)? != MAGIC {
        return Err("not a facegate embeddings file (bad magic)".into());
    }
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
                entry.name, entry.shots
            ));
        }
        let mut vectors = Vec::with_capacity(shots + 1);
        for _ in 0..=shots {
            let raw = take(4 * dim)?;
            vectors.push(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect::<Vec<f32>>(),
            );
        }
        let centroid = vectors.pop().unwrap_or_default();
        people.push(Person {
            entry: entry.clone(),
            shots: vectors,
            centroid,
        });
    }
    if at != bytes.len() {
        return Err("the embeddings file has trailing data".into());
    }
    Ok(people)
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
