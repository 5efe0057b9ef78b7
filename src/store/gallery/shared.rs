//! One reading of a gallery per change, for every part of a process that follows it: the live
//! loop (to match against the new people) and the fleet sync thread (to publish what changed
//! here) each noticed a commit and each read the whole index and embeddings again. With a
//! fleet of thousands that is megabytes read and parsed twice for one change.
//!
//! A reading is shared while the index's stamp ([`Gallery::index_stamp`]) is the one taken
//! before it was read: a commit during the read changes the stamp, so the next caller reads
//! again. Writers never use this: they read under the write lock ([`Gallery::lock`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::{Gallery, GalleryError, IndexStamp, ModelInfo};

struct Reading {
    stamp: IndexStamp,
    model: String,
    gallery: Arc<Gallery>,
}

fn readings() -> &'static Mutex<HashMap<PathBuf, Reading>> {
    static READINGS: OnceLock<Mutex<HashMap<PathBuf, Reading>>> = OnceLock::new();
    READINGS.get_or_init(Mutex::default)
}

impl Gallery {
    /// The gallery as [`Gallery::open`] reads it, shared with the rest of this process while
    /// the index is unchanged; and the stamp it was read at.
    pub fn open_shared(
        dir: &Path,
        model: &ModelInfo,
    ) -> Result<(Arc<Gallery>, Option<IndexStamp>), GalleryError> {
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let stamp = Gallery::index_stamp(dir);
        if let Some(stamp) = stamp {
            let held = readings().lock().unwrap_or_else(|e| e.into_inner());
            if let Some(r) = held
                .get(&key)
                .filter(|r| r.stamp == stamp && r.model == model.fingerprint)
            {
                return Ok((r.gallery.clone(), Some(stamp)));
            }
        }
        // Read outside the lock: another gallery's reader need not wait.
        let gallery = Arc::new(Gallery::open(dir, model)?);
        if let Some(stamp) = stamp {
            readings().lock().unwrap_or_else(|e| e.into_inner()).insert(
                key,
                Reading {
                    stamp,
                    model: model.fingerprint.clone(),
                    gallery: gallery.clone(),
                },
            );
        }
        Ok((gallery, stamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reading_is_shared_until_the_next_commit() {
        let dir = std::env::temp_dir().join(format!("facegate-shared-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let model = ModelInfo {
            name: "test".into(),
            fingerprint: "f".repeat(64),
            embedding_dim: 2,
        };
        let lock = Gallery::lock(&dir).unwrap();
        let mut g = Gallery::open(&dir, &model).unwrap();
        g.add(&lock, "Ada", vec![vec![1.0, 0.0]], &[]).unwrap();
        let (first, stamp) = Gallery::open_shared(&dir, &model).unwrap();
        let (again, _) = Gallery::open_shared(&dir, &model).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "read once");
        assert_eq!(stamp, Gallery::index_stamp(&dir));
        g.add(&lock, "Bob", vec![vec![0.0, 1.0]], &[]).unwrap();
        let (after, _) = Gallery::open_shared(&dir, &model).unwrap();
        assert!(!Arc::ptr_eq(&first, &after));
        assert_eq!(after.people().len(), 2);
        let other = ModelInfo {
            fingerprint: "0".repeat(64),
            ..model.clone()
        };
        assert!(Gallery::open_shared(&dir, &other).is_err(), "another model");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
