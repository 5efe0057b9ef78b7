//! Recurring strangers: unknown faces from the live pipeline grouped online into clusters, so the
//! same stranger seen on several visits keeps one id (`u000001`) and can later be enrolled from
//! the cluster's best shots (`facegate unknowns enroll`).
//!
//! A face joins the cluster whose running mean it is most similar to, when that cosine reaches
//! the join threshold (the model's match threshold: "would have been identified as them"), or
//! starts a new cluster. Each cluster keeps its visits' embedding sum and its three largest
//! faces (aligned crop and embedding). Clusters not seen for `keep_days` are dropped, and beyond
//! [`MAX_CLUSTERS`] the least recently seen go first.
//!
//! On disk (`<gallery>/unknowns/` by default): `unknowns.json` and `u<id>-<k>.png` crops, under a
//! lock; every change re-reads the file first, so `facegate unknowns enroll` run beside a live
//! `watch` loses nothing.

use std::fs;
use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::embed::{cosine, normalized};
use crate::store::gallery::ModelInfo;
use crate::store::lock::WriteLock;
use crate::support::durable;
use crate::support::limits;

const INDEX: &str = "unknowns.json";
const LOCK: &str = ".lock";
const FORMAT_VERSION: u32 = 1;
pub const MAX_CLUSTERS: usize = 500;
/// Shots kept per cluster: enough to enroll from.
pub const SHOTS: usize = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrangerShot {
    /// Crop file name in the unknowns folder (`u<id>-<k>.png`).
    pub crop: String,
    /// Face width in frame pixels.
    pub width: i32,
    pub ts: f64,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: String,
    pub first_seen: f64,
    pub last_seen: f64,
    pub visits: u64,
    /// Sum of the visits' embeddings (its direction is the cluster's mean).
    sum: Vec<f32>,
    /// The largest faces seen, largest first.
    pub shots: Vec<StrangerShot>,
}

impl Cluster {
    pub fn centroid(&self) -> Vec<f32> {
        normalized(&self.sum)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Index {
    format_version: u32,
    model: ModelInfo,
    next_id: u64,
    clusters: Vec<Cluster>,
}

/// The clusters of one unknowns folder.
pub struct Strangers {
    dir: PathBuf,
    model: ModelInfo,
    join: f32,
    keep_days: f64,
}

fn err(path: &Path, problem: impl std::fmt::Display) -> String {
    format!(
        "unknowns {}: {problem}",
        crate::support::terminal::path(path)
    )
}

impl Strangers {
    /// The unknowns folder `dir` for faces of `model`, joining clusters at cosine `join`. A folder
    /// written for another model is an error (its embeddings would not compare).
    pub fn open(dir: &Path, model: &ModelInfo, join: f32, keep_days: f64) -> Result<Self, String> {
        let s = Strangers {
            dir: dir.to_path_buf(),
            model: model.clone(),
            join,
            keep_days,
        };
        s.read()?;
        Ok(s)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every cluster, most recently seen first.
    pub fn clusters(&self) -> Result<Vec<Cluster>, String> {
        let mut c = self.read()?.clusters;
        c.sort_by(|a, b| b.last_seen.total_cmp(&a.last_seen));
        Ok(c)
    }

    pub fn crop_path(&self, shot: &StrangerShot) -> PathBuf {
        self.dir.join(&shot.crop)
    }

    /// Records an unknown face seen at `ts` (seconds since the epoch) and returns its cluster's id.
    pub fn observe(
        &self,
        embedding: &[f32],
        crop: &RgbImage,
        width: i32,
        ts: f64,
    ) -> Result<String, String> {
        let _lock = self.lock()?;
        let mut index = self.read()?;
        let cutoff = ts - self.keep_days * 86_400.0;
        // Crop files to delete once the new index no longer names them.
        let mut stale: Vec<String> = Vec::new();
        let crops_of = |c: &Cluster| c.shots.iter().map(|s| s.crop.clone()).collect::<Vec<_>>();
        let (kept, aged): (Vec<Cluster>, Vec<Cluster>) = index
            .clusters
            .into_iter()
            .partition(|c| c.last_seen >= cutoff);
        index.clusters = kept;
        stale.extend(aged.iter().flat_map(crops_of));
        let best = index
            .clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (i, cosine(embedding, &c.centroid())))
            .filter(|&(_, score)| score >= self.join)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let at = match best {
            Some((i, _)) => i,
            None => {
                if index.clusters.len() >= MAX_CLUSTERS {
                    let oldest = (0..index.clusters.len())
                        .min_by(|&a, &b| {
                            index.clusters[a]
                                .last_seen
                                .total_cmp(&index.clusters[b].last_seen)
                        })
                        .unwrap_or(0);
                    stale.extend(crops_of(&index.clusters.remove(oldest)));
                }
                index.next_id += 1;
                index.clusters.push(Cluster {
                    id: format!("u{:06}", index.next_id),
                    first_seen: ts,
                    last_seen: ts,
                    visits: 0,
                    sum: vec![0.0; embedding.len()],
                    shots: Vec::new(),
                });
                index.clusters.len() - 1
            }
        };
        let c = &mut index.clusters[at];
        c.visits += 1;
        c.last_seen = c.last_seen.max(ts);
        for (s, v) in c.sum.iter_mut().zip(embedding) {
            *s += v;
        }
        let worst = c.shots.last().map_or(i32::MIN, |s| s.width);
        if c.shots.len() < SHOTS || width > worst {
            let k = c
                .shots
                .iter()
                .filter_map(|s| crop_number(&s.crop, &c.id))
                .max()
                .map_or(0, |k| k + 1);
            let name = format!("{}-{k}.png", c.id);
            let png = crate::recognize::enrollment::png(crop)?;
            durable::write_or_say(&self.dir.join(&name), &png)?;
            c.shots.push(StrangerShot {
                crop: name,
                width,
                ts,
                embedding: embedding.to_vec(),
            });
            // Stable: the new, strictly larger face sorts before the old smallest, which goes.
            c.shots.sort_by_key(|s| std::cmp::Reverse(s.width));
            if c.shots.len() > SHOTS {
                stale.extend(c.shots.pop().map(|s| s.crop));
            }
        }
        let id = c.id.clone();
        self.write(&index)?;
        for crop in stale {
            let _ = fs::remove_file(self.dir.join(crop));
        }
        Ok(id)
    }

    /// Removes a cluster (after enrolling it, or to forget it), returning it; its crop files are
    /// deleted once `done` has used them.
    pub fn remove(
        &self,
        id: &str,
        done: impl FnOnce(&Cluster) -> Result<(), String>,
    ) -> Result<Cluster, String> {
        let _lock = self.lock()?;
        let mut index = self.read()?;
        let at = index
            .clusters
            .iter()
            .position(|c| c.id == id)
            .ok_or_else(|| {
                err(
                    &self.dir,
                    format!(
                        "no unknown face '{}' (see `facegate unknowns list`)",
                        crate::support::terminal::escape(id)
                    ),
                )
            })?;
        done(&index.clusters[at])?;
        let cluster = index.clusters.remove(at);
        self.write(&index)?;
        for s in &cluster.shots {
            let _ = fs::remove_file(self.dir.join(&s.crop));
        }
        Ok(cluster)
    }

    fn lock(&self) -> Result<WriteLock, String> {
        let path = self.dir.join(LOCK);
        WriteLock::wait(&self.dir, LOCK).map_err(|e| err(&path, e))
    }

    fn read(&self) -> Result<Index, String> {
        let path = self.dir.join(INDEX);
        if !path.exists() {
            return Ok(Index {
                format_version: FORMAT_VERSION,
                model: self.model.clone(),
                next_id: 0,
                clusters: Vec::new(),
            });
        }
        let text = limits::read_text(&path, limits::MAX_INDEX_BYTES, "unknowns file")
            .map_err(|e| err(&path, e))?;
        let index: Index = serde_json::from_str(&text)
            .map_err(|e| err(&path, format!("is not a facegate unknowns file: {e}")))?;
        if index.format_version != FORMAT_VERSION {
            return Err(err(
                &path,
                format!("has format version {}", index.format_version),
            ));
        }
        if index.model.fingerprint != self.model.fingerprint {
            return Err(err(
                &path,
                format!(
                    "holds faces of the model {}, not {}; move the folder away to start again",
                    crate::support::terminal::escape(&index.model.name),
                    crate::support::terminal::escape(&self.model.name)
                ),
            ));
        }
        let dim = self.model.embedding_dim;
        for c in &index.clusters {
            let named = c.id.len() == 7
                && c.id.starts_with('u')
                && c.id[1..].bytes().all(|b| b.is_ascii_digit());
            let shapes = c.sum.len() == dim
                && c.shots.len() <= SHOTS
                && c.shots
                    .iter()
                    .all(|s| s.embedding.len() == dim && crop_number(&s.crop, &c.id).is_some());
            let finite = c
                .sum
                .iter()
                .chain(c.shots.iter().flat_map(|s| &s.embedding))
                .all(|v| v.is_finite());
            if !named || !shapes || !finite || index.clusters.len() > MAX_CLUSTERS {
                return Err(err(
                    &path,
                    "is damaged (a cluster does not have the expected shape)",
                ));
            }
        }
        Ok(index)
    }

    fn write(&self, index: &Index) -> Result<(), String> {
        let text = serde_json::to_string(index).map_err(|e| err(&self.dir, e))?;
        durable::write_or_say(&self.dir.join(INDEX), text.as_bytes())
    }
}

/// `k` of a crop file `<id>-<k>.png` of cluster `id` (anything else is not a name this module
/// writes, and is refused, so a damaged file cannot point outside the folder).
fn crop_number(file: &str, id: &str) -> Option<u64> {
    let digits = file
        .strip_prefix(id)?
        .strip_prefix('-')?
        .strip_suffix(".png")?;
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> ModelInfo {
        ModelInfo {
            name: "t".into(),
            fingerprint: "f".into(),
            embedding_dim: 2,
        }
    }

    #[test]
    fn faces_join_the_nearest_cluster_and_keep_the_largest_shots() {
        let dir = std::env::temp_dir().join(format!("facegate-strangers-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = Strangers::open(&dir, &model(), 0.9, 30.0).unwrap();
        let crop = RgbImage::new(4, 4);
        let a = s.observe(&[1.0, 0.0], &crop, 40, 100.0).unwrap();
        let b = s.observe(&[0.0, 1.0], &crop, 40, 101.0).unwrap();
        assert_ne!(a, b);
        for (w, ts) in [(50, 102.0), (30, 103.0), (60, 104.0)] {
            assert_eq!(s.observe(&[0.99, 0.14], &crop, w, ts).unwrap(), a);
        }
        let clusters = s.clusters().unwrap();
        let first = clusters.iter().find(|c| c.id == a).unwrap();
        assert_eq!(first.visits, 4);
        assert_eq!(
            first.shots.iter().map(|s| s.width).collect::<Vec<_>>(),
            [60, 50, 40]
        );
        let pngs = fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "png")
            })
            .count();
        assert_eq!(pngs, 4, "three shots of one cluster, one of the other");
        // Forgetting a cluster deletes its crops; a stale cluster is dropped by age.
        s.remove(&b, |_| Ok(())).unwrap();
        assert!(s.remove(&b, |_| Ok(())).is_err());
        let c = s
            .observe(&[0.0, 1.0], &crop, 40, 100.0 + 31.0 * 86_400.0)
            .unwrap();
        assert_ne!(c, b, "ids are never reused");
        assert_eq!(s.clusters().unwrap().len(), 1, "the first cluster aged out");
        // Another model's folder is refused.
        let other = ModelInfo {
            fingerprint: "g".into(),
            ..model()
        };
        assert!(Strangers::open(&dir, &other, 0.9, 30.0).is_err());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_or_hostile_file_is_an_error_that_names_it() {
        let dir =
            std::env::temp_dir().join(format!("facegate-strangers-bad-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let s = Strangers::open(&dir, &model(), 0.9, 30.0).unwrap();
        let id = s
            .observe(&[1.0, 0.0], &RgbImage::new(4, 4), 40, 100.0)
            .unwrap();
        let good = fs::read_to_string(dir.join(INDEX)).unwrap();
        let crop = format!("{id}-0.png");
        for (bad, why) in [
            (
                "\u{0}\u{ff} not json".to_string(),
                "is not a facegate unknowns file",
            ),
            (good.replace(&crop, "../../etc/passwd"), "is damaged"),
            (good.replace("[1.0,0.0]", "[1.0,0.0,0.0]"), "is damaged"),
            (good.replace(&format!("\"{id}\""), "\"../x\""), "is damaged"),
        ] {
            fs::write(dir.join(INDEX), &bad).unwrap();
            let e = s.clusters().unwrap_err();
            assert!(e.contains(why) && e.contains("unknowns"), "{e}");
            assert!(s
                .observe(&[1.0, 0.0], &RgbImage::new(4, 4), 40, 101.0)
                .is_err());
            assert_eq!(
                fs::read_to_string(dir.join(INDEX)).unwrap(),
                bad,
                "left as it was"
            );
        }
        // Larger than any real file: refused before it is read.
        fs::write(
            dir.join(INDEX),
            vec![b' '; (limits::MAX_INDEX_BYTES + 1) as usize],
        )
        .unwrap();
        assert!(s.clusters().unwrap_err().contains("too large"));
        let _ = fs::remove_dir_all(&dir);
    }
}
