//! A searchable index of the faces in a photo collection: `facegate index` fills it, `facegate
//! search` answers "which photos show this person?" from it.
//!
//! Layout of an index directory (the gallery's commit discipline, see [`crate::store::gallery`]):
//! - `index.json`: format version, the model that made the embeddings, and the data file it names
//!   with its length and sha256: the commit point;
//! - `faces-<generation>.bin`: photos, faces and embeddings ([`store`]);
//! - `.lock`: held by the process writing the index.
//!
//! A change writes a new data file, then a new `index.json` naming it, each atomically; a crash
//! leaves the previous index whole, and the next writer sweeps what the crash left.

pub mod build;
pub mod contact_sheet;
pub mod nearest;
pub mod scan;
pub mod store;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::embed::model_card::sha256_hex;
use crate::imaging::rect::Rect;
use crate::store::gallery::ModelInfo;
pub use crate::store::lock::WriteLock;
use crate::support::durable;
use crate::support::limits;

pub use store::Data;

pub const FORMAT_VERSION: u32 = 1;
const INDEX: &str = "index.json";
const LOCK: &str = ".lock";
/// The most faces one index holds: 4 GB of 128-dimension embeddings, and far more than a family
/// photo collection has.
pub const MAX_FACES: usize = 8_000_000;
pub const MAX_PHOTOS: usize = 8_000_000;

/// One photo of the collection as it was when indexed.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoEntry {
    pub path: PathBuf,
    pub size: u64,
    pub modified_secs: i64,
    pub modified_nanos: u32,
    pub width: u32,
    pub height: u32,
    /// The photo could not be decoded (corrupt, too large): kept to be counted and reported, and
    /// tried again by the next run.
    pub unreadable: bool,
    pub faces: u32,
}

/// One face found in a photo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceEntry {
    pub rect: Rect,
    pub landmarks: Option<[[f32; 2]; 5]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct IndexFile {
    format_version: u32,
    model: ModelInfo,
    /// The model card's match threshold when the index was built: `search`'s default.
    threshold: f32,
    data_file: String,
    data_bytes: u64,
    data_sha256: String,
    photos: usize,
    faces: usize,
}

/// An index read from disk: flat tables ready for search.
#[derive(Debug)]
pub struct PhotoIndex {
    dir: PathBuf,
    model: ModelInfo,
    threshold: f32,
    data: Data,
    /// Index into `data.faces` of each photo's first face.
    first_face: Vec<usize>,
    /// Which photo each face belongs to.
    face_photo: Vec<usize>,
    generation: Option<String>,
}

fn err(path: &Path, problem: impl std::fmt::Display) -> String {
    format!("index {}: {problem}", crate::support::terminal::path(path))
}

impl PhotoIndex {
    /// Opens the index in `dir`, or an empty one for `model` when `dir` holds none yet.
    pub fn open_or_new(
        dir: &Path,
        model: &ModelInfo,
        threshold: f32,
    ) -> Result<PhotoIndex, String> {
        match read_index_file(dir)? {
            Some(index) => PhotoIndex::load(dir, index),
            None => {
                if fs::read_dir(dir).is_ok_and(|mut d| {
                    d.any(|e| {
                        e.is_ok_and(|e| generation_of(&e.file_name().to_string_lossy()).is_some())
                    })
                }) {
                    return Err(err(
                        &dir.join(INDEX),
                        "is missing although the folder holds index data; it was not touched \
                         (restore index.json, or index into a new folder)",
                    ));
                }
                Ok(PhotoIndex::from_data(
                    dir,
                    (model.clone(), threshold),
                    Data {
                        dim: model.embedding_dim,
                        ..Data::default()
                    },
                    None,
                ))
            }
        }
    }

    /// Opens an existing index.
    pub fn open(dir: &Path) -> Result<PhotoIndex, String> {
        match read_index_file(dir)? {
            Some(index) => PhotoIndex::load(dir, index),
            None => Err(err(
                dir,
                "there is no index here (build one with `facegate index --index DIR PHOTO_DIR...`)",
            )),
        }
    }

    fn load(dir: &Path, index: IndexFile) -> Result<PhotoIndex, String> {
        let path = dir.join(&index.data_file);
        let file = File::open(&path).map_err(|e| err(&path, e))?;
        let len = file.metadata().map_err(|e| err(&path, e))?.len();
        if len != index.data_bytes {
            return Err(err(
                &path,
                format!(
                    "is {len} bytes, the index says {}: it is damaged (run `facegate index` \
                     into a new folder)",
                    index.data_bytes
                ),
            ));
        }
        let (data, sha) = store::decode(BufReader::with_capacity(1 << 20, file), len)
            .map_err(|e| err(&path, e))?;
        if sha != index.data_sha256 {
            return Err(err(
                &path,
                "does not match its sha256 in index.json: it is damaged",
            ));
        }
        if data.dim != index.model.embedding_dim
            || data.photos.len() != index.photos
            || data.faces.len() != index.faces
        {
            return Err(err(&path, "does not match index.json"));
        }
        Ok(PhotoIndex::from_data(
            dir,
            (index.model, index.threshold),
            data,
            Some(index.data_file),
        ))
    }

    fn from_data(
        dir: &Path,
        (model, threshold): (ModelInfo, f32),
        data: Data,
        generation: Option<String>,
    ) -> Self {
        let mut first_face = Vec::with_capacity(data.photos.len());
        let mut face_photo = Vec::with_capacity(data.faces.len());
        for (i, p) in data.photos.iter().enumerate() {
            first_face.push(face_photo.len());
            face_photo.extend(std::iter::repeat_n(i, p.faces as usize));
        }
        PhotoIndex {
            dir: dir.to_path_buf(),
            model,
            threshold,
            data,
            first_face,
            face_photo,
            generation,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn model(&self) -> &ModelInfo {
        &self.model
    }

    /// The match threshold of the model the index was built with.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    pub fn photos(&self) -> &[PhotoEntry] {
        &self.data.photos
    }

    pub fn faces(&self) -> &[FaceEntry] {
        &self.data.faces
    }

    pub fn dim(&self) -> usize {
        self.data.dim
    }

    /// Every embedding, `faces x dim`, row-major.
    pub fn embeddings(&self) -> &[f32] {
        &self.data.embeddings
    }

    pub fn embedding(&self, face: usize) -> &[f32] {
        &self.data.embeddings[face * self.data.dim..(face + 1) * self.data.dim]
    }

    /// The photo a face was found in.
    pub fn photo_of(&self, face: usize) -> &PhotoEntry {
        &self.data.photos[self.face_photo[face]]
    }

    /// The faces of one photo, as indices into [`PhotoIndex::faces`].
    pub fn faces_of(&self, photo: usize) -> std::ops::Range<usize> {
        let first = self.first_face[photo];
        first..first + self.data.photos[photo].faces as usize
    }

    /// The entry of a photo path, if indexed.
    pub fn find_photo(&self, path: &Path) -> Option<usize> {
        self.data
            .photos
            .binary_search_by(|p| p.path.as_path().cmp(path))
            .ok()
    }

    /// Takes the write lock, refusing when another process holds it.
    pub fn lock(dir: &Path) -> Result<WriteLock, String> {
        let path = dir.join(LOCK);
        // A second writer is refused rather than made to wait.
        match WriteLock::try_take(dir, LOCK).map_err(|e| err(&path, e))? {
            Some(lock) => Ok(lock),
            None => Err(err(
                dir,
                "another facegate is writing this index; wait for it to finish",
            )),
        }
    }

    /// The photos by path, each with its faces and their embeddings, for a writer to edit.
    pub fn into_records(self) -> (ModelInfo, BTreeMap<PathBuf, Record>) {
        let dim = self.data.dim;
        let mut records = BTreeMap::new();
        let mut faces = self.data.faces.into_iter();
        let mut rows = self.data.embeddings.chunks_exact(dim.max(1));
        for photo in self.data.photos {
            let n = photo.faces as usize;
            let record = Record {
                faces: faces
                    .by_ref()
                    .take(n)
                    .zip(rows.by_ref().take(n).map(|r| r.to_vec()))
                    .collect(),
                photo,
            };
            records.insert(record.photo.path.clone(), record);
        }
        (self.model, records)
    }

    /// Commits `records` as the new content of the index in `dir`, replacing the generation that
    /// `previous` (the index read under `_lock`) had; returns the committed index's file name.
    pub fn commit(
        dir: &Path,
        _lock: &WriteLock,
        (model, threshold): (&ModelInfo, f32),
        previous: Option<&str>,
        records: &BTreeMap<PathBuf, Record>,
    ) -> Result<String, String> {
        let on_disk = read_index_file(dir)?.map(|i| i.data_file);
        if on_disk.as_deref() != previous {
            return Err(err(
                dir,
                "was changed by another process since it was read; nothing was written",
            ));
        }
        sweep(dir, previous);
        let data = Data {
            dim: model.embedding_dim,
            photos: records.values().map(|r| r.photo.clone()).collect(),
            faces: records
                .values()
                .flat_map(|r| r.faces.iter().map(|(f, _)| *f))
                .collect(),
            embeddings: records
                .values()
                .flat_map(|r| r.faces.iter().flat_map(|(_, e)| e.iter().copied()))
                .collect(),
        };
        if data.photos.len() > MAX_PHOTOS || data.faces.len() > MAX_FACES {
            return Err(err(
                dir,
                format!(
                    "{} photos and {} faces are more than one index holds ({MAX_PHOTOS} and \
                     {MAX_FACES}); nothing was written, split the collection over several indexes",
                    data.photos.len(),
                    data.faces.len()
                ),
            ));
        }
        let generation = previous.and_then(generation_of).unwrap_or(0) + 1;
        let name = format!("faces-{generation:08}.bin");
        let bytes = store::encode(&data);
        let index = IndexFile {
            format_version: FORMAT_VERSION,
            model: model.clone(),
            threshold,
            data_file: name.clone(),
            data_bytes: bytes.len() as u64,
            data_sha256: sha256_hex(&bytes),
            photos: data.photos.len(),
            faces: data.faces.len(),
        };
        let text = serde_json::to_string_pretty(&index).map_err(|e| err(dir, e))?;
        durable::write_or_say(&dir.join(&name), &bytes)?;
        durable::write_or_say(&dir.join(INDEX), text.as_bytes())?;
        if let Some(old) = previous {
            let _ = fs::remove_file(dir.join(old));
        }
        Ok(name)
    }

    /// The committed data file's name (`None` for an index not yet written).
    pub fn generation(&self) -> Option<&str> {
        self.generation.as_deref()
    }
}

/// A photo with its faces and embeddings, as a writer holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub photo: PhotoEntry,
    pub faces: Vec<(FaceEntry, Vec<f32>)>,
}

fn read_index_file(dir: &Path) -> Result<Option<IndexFile>, String> {
    let path = dir.join(INDEX);
    if !path.exists() {
        return Ok(None);
    }
    let text = limits::read_text(&path, limits::MAX_INDEX_BYTES, "photo index")
        .map_err(|e| err(&path, e))?;
    let index: IndexFile = serde_json::from_str(&text)
        .map_err(|e| err(&path, format!("is not a facegate photo index: {e}")))?;
    if index.format_version != FORMAT_VERSION {
        return Err(err(
            &path,
            format!(
                "has format version {}, this facegate reads {FORMAT_VERSION}",
                index.format_version
            ),
        ));
    }
    // The index names the file to read: only a name this module writes, inside the folder.
    if generation_of(&index.data_file).is_none() {
        return Err(err(
            &path,
            format!(
                "names the data file '{}', which is not one facegate writes",
                crate::support::terminal::escape(&index.data_file)
            ),
        ));
    }
    if !(-1.0..=1.0).contains(&index.threshold) {
        return Err(err(&path, "declares a threshold outside -1..1"));
    }
    if index.model.embedding_dim == 0 || index.model.embedding_dim > store::MAX_DIM {
        return Err(err(&path, "declares an impossible embedding size"));
    }
    Ok(Some(index))
}

/// `faces-<digits>.bin`.
fn generation_of(file: &str) -> Option<u64> {
    let digits = file.strip_prefix("faces-")?.strip_suffix(".bin")?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Removes what interrupted writers left: temporary files and data files the index does not name.
fn sweep(dir: &Path, keep: Option<&str>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let temporary = name.starts_with('.')
            && name.rsplit_once(".tmp-").is_some_and(|(file, _)| {
                file == ".index.json" || generation_of(&file[1..]).is_some()
            });
        let stale = generation_of(&name).is_some() && Some(name.as_str()) != keep;
        if (temporary || stale) && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelInfo {
        ModelInfo {
            name: "test".into(),
            fingerprint: "abc".into(),
            embedding_dim: 2,
        }
    }

    fn record(path: &str, faces: usize) -> Record {
        Record {
            photo: PhotoEntry {
                path: PathBuf::from(path),
                size: 1,
                modified_secs: 2,
                modified_nanos: 3,
                width: 100,
                height: 100,
                unreadable: false,
                faces: faces as u32,
            },
            faces: (0..faces)
                .map(|i| {
                    let face = FaceEntry {
                        rect: Rect {
                            x: i as i32,
                            y: 0,
                            w: 10,
                            h: 10,
                        },
                        landmarks: None,
                    };
                    (face, vec![1.0, i as f32])
                })
                .collect(),
        }
    }

    #[test]
    fn commit_then_open_round_trips_and_sweeps_the_old_generation() {
        let dir = std::env::temp_dir().join(format!("facegate-photo-index-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let lock = PhotoIndex::lock(&dir).unwrap();
        let mut records = BTreeMap::new();
        for r in [
            record("/b.jpg", 2),
            record("/a.jpg", 0),
            record("/c.jpg", 1),
        ] {
            records.insert(r.photo.path.clone(), r);
        }
        let first = PhotoIndex::commit(&dir, &lock, (&model(), 0.3), None, &records).unwrap();
        let index = PhotoIndex::open(&dir).unwrap();
        assert_eq!(index.photos().len(), 3);
        assert_eq!(index.find_photo(Path::new("/b.jpg")), Some(1));
        assert_eq!(index.faces_of(1), 0..2);
        assert_eq!(index.photo_of(2).path, Path::new("/c.jpg"));
        assert_eq!(index.embedding(1), &[1.0, 1.0]);
        let (_, back) = index.into_records();
        assert_eq!(back, records);
        // A stale writer (one that read before this commit) is refused.
        let second =
            PhotoIndex::commit(&dir, &lock, (&model(), 0.3), Some(&first), &records).unwrap();
        assert!(PhotoIndex::commit(&dir, &lock, (&model(), 0.3), Some(&first), &records).is_err());
        assert!(!dir.join(&first).exists());
        assert!(dir.join(second).exists());
        // A second writer is refused, not queued.
        assert!(PhotoIndex::lock(&dir).is_err());
        drop(lock);
        assert!(PhotoIndex::lock(&dir).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }
}
