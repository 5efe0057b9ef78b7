//! The index's data file, `faces-<generation>.bin`: every photo (path, size, modification time,
//! dimensions, face count), every face (box, landmarks) and one row-major matrix of embeddings,
//! so that a search streams one contiguous block of memory.
//!
//! Layout (little-endian): magic, dimension, photo count, face count; per photo: path length and
//! bytes, size, modification seconds and nanoseconds, width, height, flags, face count; per face:
//! box, flags, ten landmark coordinates; then the embeddings, `faces x dimension` f32.
//!
//! The reader trusts nothing: every count is checked against the bytes left before anything is
//! allocated for it, so a damaged or hostile file is an error, never a large allocation or a panic.

use std::io::Read;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::{FaceEntry, PhotoEntry};
use crate::imaging::rect::Rect;

const MAGIC: &[u8; 8] = b"FGIDX\x00\x01\x00";
/// Longest stored path, in bytes (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
pub const MAX_DIM: usize = 4096;
const PHOTO_UNREADABLE: u8 = 1;
const FACE_HAS_LANDMARKS: u8 = 1;
/// Bytes a photo record takes besides its path; a face record's size.
const PHOTO_FIXED: usize = 4 + 8 + 8 + 4 + 4 + 4 + 1 + 4;
const FACE_FIXED: usize = 16 + 1 + 40;

/// What a data file holds, in memory.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Data {
    pub dim: usize,
    pub photos: Vec<PhotoEntry>,
    pub faces: Vec<FaceEntry>,
    /// `faces.len() x dim`, row-major.
    pub embeddings: Vec<f32>,
}

pub fn encode(data: &Data) -> Vec<u8> {
    let paths: usize = data.photos.iter().map(|p| path_bytes(&p.path).len()).sum();
    let mut out = Vec::with_capacity(
        20 + paths
            + data.photos.len() * PHOTO_FIXED
            + data.faces.len() * FACE_FIXED
            + data.embeddings.len() * 4,
    );
    out.extend_from_slice(MAGIC);
    for n in [data.dim, data.photos.len(), data.faces.len()] {
        out.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for p in &data.photos {
        let path = path_bytes(&p.path);
        out.extend_from_slice(&(path.len() as u32).to_le_bytes());
        out.extend_from_slice(&path);
        out.extend_from_slice(&p.size.to_le_bytes());
        out.extend_from_slice(&p.modified_secs.to_le_bytes());
        out.extend_from_slice(&p.modified_nanos.to_le_bytes());
        out.extend_from_slice(&p.width.to_le_bytes());
        out.extend_from_slice(&p.height.to_le_bytes());
        out.push(if p.unreadable { PHOTO_UNREADABLE } else { 0 });
        out.extend_from_slice(&p.faces.to_le_bytes());
    }
    for f in &data.faces {
        for v in [f.rect.x, f.rect.y, f.rect.w, f.rect.h] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(if f.landmarks.is_some() {
            FACE_HAS_LANDMARKS
        } else {
            0
        });
        for v in f.landmarks.unwrap_or_default().iter().flatten() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for v in &data.embeddings {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Reads a data file of exactly `len` bytes from `reader`, returning it with its sha256.
pub fn decode(reader: impl Read, len: u64) -> Result<(Data, String), String> {
    let mut r = Checked {
        inner: reader,
        left: len,
        hash: Sha256::new(),
    };
    let mut magic = [0u8; 8];
    r.fill(&mut magic)?;
    if &magic != MAGIC {
        return Err("not a facegate photo index data file (bad magic)".into());
    }
    let dim = r.u32()? as usize;
    let photos = r.u32()? as usize;
    let faces = r.u32()? as usize;
    if dim == 0 || dim > MAX_DIM {
        return Err(format!("declares {dim} dimensions"));
    }
    // The least each declared record takes: more records than bytes left means damage.
    let least = (photos as u64) * (PHOTO_FIXED as u64)
        + (faces as u64) * (FACE_FIXED as u64 + 4 * dim as u64);
    if least > r.left {
        return Err("is truncated (it declares more records than it holds)".into());
    }
    let mut photo_list = Vec::with_capacity(photos);
    let mut face_total = 0u64;
    for _ in 0..photos {
        let path_len = r.u32()? as usize;
        if path_len == 0 || path_len > MAX_PATH_BYTES {
            return Err(format!("names a photo path of {path_len} bytes"));
        }
        let mut path = vec![0u8; path_len];
        r.fill(&mut path)?;
        let photo = PhotoEntry {
            path: path_from_bytes(path)?,
            size: r.u64()?,
            modified_secs: r.u64()? as i64,
            modified_nanos: r.u32()?,
            width: r.u32()?,
            height: r.u32()?,
            unreadable: r.u8()? & PHOTO_UNREADABLE != 0,
            faces: r.u32()?,
        };
        face_total += u64::from(photo.faces);
        photo_list.push(photo);
    }
    if face_total != faces as u64 {
        return Err(format!(
            "its photos hold {face_total} faces, its header says {faces}"
        ));
    }
    let mut face_list = Vec::with_capacity(faces);
    for _ in 0..faces {
        let mut b = [0i32; 4];
        for v in &mut b {
            *v = r.u32()? as i32;
        }
        let has_landmarks = r.u8()? & FACE_HAS_LANDMARKS != 0;
        let mut points = [[0f32; 2]; 5];
        for p in points.iter_mut().flatten() {
            *p = r.f32()?;
        }
        let rect = Rect {
            x: b[0],
            y: b[1],
            w: b[2],
            h: b[3],
        };
        if rect.w <= 0 || rect.h <= 0 {
            return Err(format!("holds a face box of {}x{}", rect.w, rect.h));
        }
        face_list.push(FaceEntry {
            rect,
            landmarks: has_landmarks.then_some(points),
        });
    }
    let mut embeddings = vec![0f32; faces * dim];
    let mut chunk = vec![0u8; 4 * dim];
    for row in embeddings.chunks_exact_mut(dim) {
        r.fill(&mut chunk)?;
        for (v, b) in row.iter_mut().zip(chunk.chunks_exact(4)) {
            *v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        if row.iter().any(|v| !v.is_finite()) {
            return Err("holds an embedding that is not finite".into());
        }
    }
    if r.left != 0 {
        return Err("has trailing data".into());
    }
    let data = Data {
        dim,
        photos: photo_list,
        faces: face_list,
        embeddings,
    };
    Ok((data, crate::embed::model_card::hex(&r.hash.finalize())))
}

/// A reader that never reads past the declared length and hashes what it reads.
struct Checked<R> {
    inner: R,
    left: u64,
    hash: Sha256,
}

impl<R: Read> Checked<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), String> {
        if buf.len() as u64 > self.left {
            return Err("is truncated".into());
        }
        self.inner
            .read_exact(buf)
            .map_err(|e| format!("cannot be read: {e}"))?;
        self.left -= buf.len() as u64;
        self.hash.update(&*buf);
        Ok(())
    }

    fn u8(&mut self) -> Result<u8, String> {
        let mut b = [0u8; 1];
        self.fill(&mut b)?;
        Ok(b[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        let mut b = [0u8; 4];
        self.fill(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.fill(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn f32(&mut self) -> Result<f32, String> {
        let v = f32::from_bits(self.u32()?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err("holds a landmark that is not finite".into())
        }
    }
}

/// Paths are stored as the operating system's bytes, so a file name that is not UTF-8 is found
/// again on the next run instead of being re-indexed every time.
#[cfg(unix)]
fn path_bytes(path: &std::path::Path) -> Vec<u8> {
    std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec()
}

#[cfg(unix)]
fn path_from_bytes(bytes: Vec<u8>) -> Result<PathBuf, String> {
    Ok(PathBuf::from(
        <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes),
    ))
}

#[cfg(not(unix))]
fn path_bytes(path: &std::path::Path) -> Vec<u8> {
    path.to_string_lossy().into_owned().into_bytes()
}

#[cfg(not(unix))]
fn path_from_bytes(bytes: Vec<u8>) -> Result<PathBuf, String> {
    String::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| "names a photo path that is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Data {
        Data {
            dim: 3,
            photos: vec![
                PhotoEntry {
                    path: PathBuf::from("/photos/a.jpg"),
                    size: 1234,
                    modified_secs: 1_700_000_000,
                    modified_nanos: 5,
                    width: 640,
                    height: 480,
                    unreadable: false,
                    faces: 2,
                },
                PhotoEntry {
                    path: PathBuf::from("/photos/broken.png"),
                    size: 10,
                    modified_secs: -3,
                    modified_nanos: 0,
                    width: 0,
                    height: 0,
                    unreadable: true,
                    faces: 0,
                },
            ],
            faces: vec![
                FaceEntry {
                    rect: Rect {
                        x: 1,
                        y: 2,
                        w: 30,
                        h: 30,
                    },
                    landmarks: Some([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0], [9.0, 10.0]]),
                },
                FaceEntry {
                    rect: Rect {
                        x: -4,
                        y: 0,
                        w: 50,
                        h: 50,
                    },
                    landmarks: None,
                },
            ],
            embeddings: vec![0.6, 0.8, 0.0, 0.0, 0.0, 1.0],
        }
    }

    #[test]
    fn round_trip() {
        let data = sample();
        let bytes = encode(&data);
        let (back, hash) = decode(bytes.as_slice(), bytes.len() as u64).unwrap();
        assert_eq!(back, data);
        assert_eq!(hash, crate::embed::model_card::sha256_hex(&bytes));
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let bytes = encode(&sample());
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], cut as u64).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(longer.as_slice(), longer.len() as u64).is_err());
    }

    #[test]
    fn hostile_counts_are_refused_before_allocating() {
        let mut bytes = encode(&sample());
        // Four billion faces declared in a file of a hundred bytes.
        bytes[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = decode(bytes.as_slice(), bytes.len() as u64).unwrap_err();
        assert!(e.contains("truncated"), "{e}");
        let mut bytes = encode(&sample());
        bytes[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode(bytes.as_slice(), bytes.len() as u64).is_err());
    }

    #[test]
    fn a_non_finite_embedding_is_refused() {
        let mut data = sample();
        data.embeddings[4] = f32::NAN;
        let bytes = encode(&data);
        let e = decode(bytes.as_slice(), bytes.len() as u64).unwrap_err();
        assert!(e.contains("not finite"), "{e}");
    }
}
