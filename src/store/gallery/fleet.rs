//! A gallery as one board of a fleet: joining (fleet-wide person ids) and applying the changes
//! other boards made. Publishing and receiving those changes is the `sync` module's job; here they
//! become one atomic commit, like any other change.

use std::fs;

use super::{
    err, is_fleet_id, numbered_crop, numbered_crop_name, parse_id, validate_name, version_in, wins,
    write_atomic, Applied, Gallery, GalleryError, Person, PersonEntry, Remote, WriteLock, CROPS,
    NEGATIVE,
};

impl Gallery {
    /// Makes this gallery a board of a fleet: gives it a board id (16 random hex digits) and its
    /// people ids unique across boards (`p000001` becomes `p000001-<board>`, crops renamed with
    /// them), in one commit. Returns how many people got a new id; nothing is lost, and a crash
    /// leaves the gallery as it was or joined.
    pub fn join_fleet(&mut self, _lock: &WriteLock) -> Result<usize, GalleryError> {
        let legacy = self
            .people
            .iter()
            .filter(|p| !is_fleet_id(&p.entry.id))
            .count();
        if self.board.is_some() && legacy == 0 {
            return Ok(0);
        }
        // No crop is written before the commit (they are linked), so even a new gallery needs
        // no empty first commit.
        self.begin_write()?;
        let board = match &self.board {
            Some(b) => b.clone(),
            None => new_board_id().map_err(|e| err(&self.dir, e))?,
        };
        let mut next = self.people.clone();
        let mut old_files = Vec::new();
        for p in next.iter_mut().filter(|p| !is_fleet_id(&p.entry.id)) {
            let id = format!("{}-{board}", p.entry.id);
            for (crops, kind) in [
                (&mut p.entry.crops, ""),
                (&mut p.entry.negative_crops, NEGATIVE),
            ] {
                for crop in crops.iter_mut() {
                    let k = numbered_crop(&p.entry.id, crop, kind)
                        .ok_or_else(|| err(&self.dir, format!("unexpected crop name {crop}")))?;
                    let renamed = numbered_crop_name(&id, kind, k);
                    link_or_copy(&self.dir.join(&*crop), &self.dir.join(&renamed))
                        .map_err(|e| err(&self.dir.join(&*crop), e))?;
                    old_files.push(std::mem::replace(crop, renamed));
                }
            }
            p.entry.id = id;
            p.entry.version = p.entry.version.max(1);
            if p.entry.origin.is_empty() {
                p.entry.origin = board.clone();
            }
        }
        let previous = self.board.replace(board);
        if let Err(e) = self.commit(next, self.next_id) {
            self.board = previous;
            return Err(e);
        }
        for f in old_files {
            let _ = fs::remove_file(self.dir.join(f));
        }
        Ok(legacy)
    }

    /// Applies changes made on other boards, in one commit: a person whose version wins over the
    /// one held here replaces it (this board's negatives of them stay), a winning removal removes
    /// them and is remembered. Older versions are counted as stale. A person whose name belongs
    /// to someone else here is deferred (with the reason), as is anything malformed. The
    /// embeddings must already be this gallery's model's.
    pub fn apply_remote(
        &mut self,
        _lock: &WriteLock,
        changes: Vec<Remote>,
    ) -> Result<Applied, GalleryError> {
        let mut applied = Applied::default();
        let Some(board) = self.board.clone() else {
            return Err(err(
                &self.dir,
                "the gallery has not joined a fleet (no board id)",
            ));
        };
        self.begin_write()?;
        let mut next = self.people.clone();
        let mut removed = self.removed.clone();
        let mut next_id = self.next_id;
        let mut old_files = Vec::new();
        // New crops, written together before the commit (one directory sync for the batch).
        let mut new_crops: Vec<(String, Vec<u8>)> = Vec::new();
        let dim = self.model.embedding_dim;
        for change in changes {
            let id = change.id().to_string();
            let Some((number, Some(from))) = parse_id(&id) else {
                applied
                    .deferred
                    .push((id, "not a fleet person id".to_string()));
                continue;
            };
            if version_in(&next, &removed, &id).is_some_and(|held| !wins(change.version(), held)) {
                applied.stale += 1;
                continue;
            }
            let at = next.iter().position(|p| p.entry.id == id);
            match change {
                Remote::Removed(t) => {
                    if let Some(i) = at {
                        let gone = next.remove(i);
                        old_files.extend(gone.entry.crops);
                        old_files.extend(gone.entry.negative_crops);
                    }
                    removed.retain(|r| r.id != t.id);
                    removed.push(t);
                    applied.removed.push(id);
                }
                Remote::Person(a) => {
                    if let Err(why) = check_arrival(&a, dim, &next) {
                        applied.deferred.push((id, why));
                        continue;
                    }
                    let held = at.map(|i| &next[i]);
                    let mut crops = Vec::new();
                    if !a.crops.is_empty() {
                        // Numbers go on from the crops the index names now, which stay until
                        // the commit.
                        let first = held
                            .and_then(|p| p.entry.crops.last())
                            .and_then(|c| numbered_crop(&id, c, ""))
                            .map_or(0, |k| k + 1);
                        for (k, png) in (first..).zip(a.crops) {
                            let rel = numbered_crop_name(&id, "", k);
                            let file = rel.rsplit('/').next().unwrap_or(&rel).to_string();
                            new_crops.push((file, png));
                            crops.push(rel);
                        }
                    }
                    // The negatives travel with the person ("Not NAME" on one door holds at
                    // all); a version that carries none keeps this board's.
                    let (negative_crops, negative_embeddings) = if a.negatives.is_empty() {
                        held.map_or((Vec::new(), Vec::new()), |p| {
                            (p.entry.negative_crops.clone(), p.negatives.clone())
                        })
                    } else {
                        let first = held
                            .and_then(|p| p.entry.negative_crops.last())
                            .and_then(|c| numbered_crop(&id, c, NEGATIVE))
                            .map_or(0, |k| k + 1);
                        let mut names = Vec::new();
                        for (k, png) in (first..).zip(a.negative_crops) {
                            let rel = numbered_crop_name(&id, NEGATIVE, k);
                            let file = rel.rsplit('/').next().unwrap_or(&rel).to_string();
                            new_crops.push((file, png));
                            names.push(rel);
                        }
                        if let Some(p) = held {
                            old_files.extend(p.entry.negative_crops.iter().cloned());
                        }
                        (names, a.negatives)
                    };
                    let negatives = negative_embeddings.len();
                    if let Some(p) = held {
                        old_files.extend(p.entry.crops.iter().cloned());
                    }
                    let person = Person {
                        centroid: super::centroid(&a.shots),
                        entry: PersonEntry {
                            id: id.clone(),
                            name: a.name.clone(),
                            enrolled_unix: a.enrolled_unix,
                            shots: a.shots.len(),
                            crops,
                            negatives,
                            negative_crops,
                            version: a.version,
                            origin: a.origin,
                        },
                        shots: a.shots,
                        negatives: negative_embeddings,
                    };
                    match at {
                        Some(i) => next[i] = person,
                        None => next.push(person),
                    }
                    removed.retain(|r| r.id != id);
                    // This board's own id coming back (a gallery restored from a backup):
                    // never hand out its number again.
                    if from == board && number >= next_id {
                        next_id = number + 1;
                    }
                    applied.updated.push(a.name);
                }
            }
        }
        if applied.updated.is_empty() && applied.removed.is_empty() {
            return Ok(applied);
        }
        if !new_crops.is_empty() {
            let dir = self.dir.join(CROPS);
            fs::create_dir_all(&dir).map_err(|e| err(&dir, e.to_string()))?;
            let files: Vec<(String, &[u8])> = new_crops
                .iter()
                .map(|(name, png)| (name.clone(), png.as_slice()))
                .collect();
            crate::support::durable::write_batch(&dir, &files)
                .map_err(|e| err(&dir, format!("cannot write the synced crops: {e}")))?;
        }
        self.commit_with(next, next_id, removed)?;
        for f in old_files {
            let _ = fs::remove_file(self.dir.join(f));
        }
        Ok(applied)
    }
}

/// The longest side of a crop another board may send: aligned crops are 112 pixels square (a
/// model may ask for more), and a crop that is not an image would make `gallery reembed` fail
/// for the whole gallery later.
const MAX_CROP_SIDE: usize = 1024;

/// A synced crop is decoded (within a bound) before it is stored: a PNG of at most
/// [`MAX_CROP_SIDE`] pixels a side.
fn check_crop(png: &[u8]) -> Result<(), String> {
    use image::{ImageFormat, ImageReader};
    if !crate::imaging::photo::is_png(png) {
        return Err("is not a PNG".into());
    }
    // The size from the header first, so that nothing large is ever decoded.
    let (w, h) = ImageReader::with_format(std::io::Cursor::new(png), ImageFormat::Png)
        .into_dimensions()
        .map_err(|e| format!("does not decode: {e}"))?;
    if w as usize > MAX_CROP_SIDE || h as usize > MAX_CROP_SIDE {
        return Err(format!(
            "is {w}x{h}, larger than a crop ({MAX_CROP_SIDE} a side at most)"
        ));
    }
    // Then every pixel, as `gallery reembed` will read them (only the decoder: no colour or
    // grey conversion, which re-embedding does itself).
    image::load_from_memory_with_format(png, ImageFormat::Png)
        .map(|_| ())
        .map_err(|e| format!("does not decode: {e}"))
}

/// What a person from another board must be before they are written here.
fn check_arrival(a: &super::Arrival, dim: usize, people: &[Person]) -> Result<(), String> {
    validate_name(&a.name)?;
    if a.origin.is_empty() || a.origin.chars().count() > 64 || a.version == 0 {
        return Err("no version or origin".into());
    }
    if a.version > super::MAX_VERSION {
        return Err(format!("version {} is out of range", a.version));
    }
    if a.shots.is_empty() || a.shots.len() > super::MAX_SHOTS {
        return Err(format!("{} shots", a.shots.len()));
    }
    if a.shots
        .iter()
        .any(|s| s.len() != dim || s.iter().any(|v| !v.is_finite()))
    {
        return Err(format!(
            "its embeddings are not {dim} finite numbers a shot"
        ));
    }
    if !a.crops.is_empty() && a.crops.len() != a.shots.len() {
        return Err("its crops and shots do not pair up".into());
    }
    for (i, crop) in a.crops.iter().enumerate() {
        check_crop(crop).map_err(|e| format!("crop {}: {e}", i + 1))?;
    }
    if a.negatives.len() > super::MAX_SHOTS
        || a.negatives
            .iter()
            .any(|s| s.len() != dim || s.iter().any(|v| !v.is_finite()))
    {
        return Err(format!(
            "its negatives are more than {} or not {dim} finite numbers each",
            super::MAX_SHOTS
        ));
    }
    if !a.negative_crops.is_empty() && a.negative_crops.len() != a.negatives.len() {
        return Err("its negatives and their crops do not pair up".into());
    }
    for (i, crop) in a.negative_crops.iter().enumerate() {
        check_crop(crop).map_err(|e| format!("negative crop {}: {e}", i + 1))?;
    }
    if let Some(other) = people
        .iter()
        .find(|p| p.entry.name == a.name && p.entry.id != a.id)
    {
        return Err(format!(
            "'{}' is already {} here, another person; rename one of them",
            crate::support::terminal::escape(&a.name),
            other.entry.id
        ));
    }
    Ok(())
}

/// A new board id: 16 random hex digits.
fn new_board_id() -> Result<String, String> {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).map_err(|e| format!("no random numbers for a board id: {e}"))?;
    Ok(crate::embed::model_card::hex(&bytes))
}

/// A second name for a crop: a hard link (no copy), or a copy where links are not allowed.
fn link_or_copy(from: &std::path::Path, to: &std::path::Path) -> Result<(), String> {
    let _ = fs::remove_file(to);
    if fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    let bytes = fs::read(from).map_err(|e| format!("cannot read: {e}"))?;
    write_atomic(to, &bytes).map_err(|e| e.problem)
}

#[cfg(test)]
mod tests {
    use super::super::{Arrival, Gallery, ModelInfo, Remote, Tombstone};
    use std::path::PathBuf;

    fn model() -> ModelInfo {
        ModelInfo {
            name: "m".into(),
            fingerprint: "ab".into(),
            embedding_dim: 2,
        }
    }

    fn folder(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("facegate-fleet-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn png(shade: u8) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_pixel(4, 4, image::Rgb([shade; 3]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn arrival(id: &str, version: u64, origin: &str, name: &str) -> Remote {
        Remote::Person(Arrival {
            id: id.into(),
            version,
            origin: origin.into(),
            name: name.into(),
            enrolled_unix: 7,
            shots: vec![vec![1.0, 0.0], vec![0.0, 1.0]],
            crops: vec![png(1), png(2)],
            negatives: Vec::new(),
            negative_crops: Vec::new(),
        })
    }

    const OTHER: &str = "00000000000000ff";

    #[test]
    fn joining_gives_fleet_ids_and_keeps_everything() {
        let dir = folder("join");
        let lock = Gallery::lock(&dir).unwrap();
        let mut g = Gallery::open(&dir, &model()).unwrap();
        g.add(&lock, "Ada", vec![vec![1.0, 0.0]], &[png(3)])
            .unwrap();
        let face = vec![0.0, 1.0];
        g.reject(&lock, "Ada", face.clone(), &png(4)).unwrap();
        assert_eq!(g.people()[0].entry.id, "p000001");
        assert_eq!(g.join_fleet(&lock).unwrap(), 1);
        let board = g.board().unwrap().to_string();
        assert_eq!(board.len(), 16);
        let g = Gallery::open(&dir, &model()).unwrap();
        let ada = &g.people()[0];
        let id = format!("p000001-{board}");
        assert_eq!(ada.entry.id, id);
        // Enrolled (version 1), then corrected (2): joining keeps the version.
        assert_eq!(
            (ada.entry.version, ada.entry.origin.as_str()),
            (2, board.as_str())
        );
        assert_eq!(ada.shots, vec![vec![1.0, 0.0]]);
        assert_eq!(ada.negatives, vec![face]);
        assert_eq!(
            std::fs::read(g.crop_path(&ada.entry.crops[0])).unwrap(),
            png(3)
        );
        assert_eq!(
            std::fs::read(g.crop_path(&ada.entry.negative_crops[0])).unwrap(),
            png(4)
        );
        assert!(!dir.join("crops/p000001-0.png").exists(), "old names gone");
        assert!(Gallery::check(&dir).is_consistent());
        // Joining again changes nothing; the next person gets a fleet id, a removal is kept.
        let mut g = g;
        assert_eq!(g.join_fleet(&lock).unwrap(), 0);
        let bob = g.add(&lock, "Bob", vec![vec![0.6, 0.8]], &[]).unwrap();
        assert_eq!(bob.entry.id, format!("p000002-{board}"));
        g.rename(&lock, "Bob", "Rob").unwrap();
        assert_eq!(
            g.version_of(&format!("p000002-{board}")),
            Some((2, board.as_str()))
        );
        g.remove(&lock, "Rob").unwrap();
        assert_eq!(
            g.tombstones(),
            [Tombstone {
                id: format!("p000002-{board}"),
                version: 3,
                origin: board.clone()
            }]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_hostile_board_id_or_removal_list_is_refused_and_left_alone() {
        let dir = folder("hostile");
        let lock = Gallery::lock(&dir).unwrap();
        let mut g = Gallery::open(&dir, &model()).unwrap();
        g.add(&lock, "Ada", vec![vec![1.0, 0.0]], &[]).unwrap();
        g.join_fleet(&lock).unwrap();
        g.remove(&lock, "Ada").unwrap();
        let index = dir.join("gallery.json");
        let good: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
        let removed = good["removed"][0].clone();
        let bad_ones = [
            ("board", serde_json::json!("../../etc")),
            (
                "removed",
                serde_json::json!([removed.clone(), removed.clone()]),
            ),
            (
                "removed",
                serde_json::json!([{"id": "p000001", "version": 1, "origin": "x"}]),
            ),
            (
                "removed",
                serde_json::json!([{"id": "p000009-0123456789abcdef", "version": 1,
                                             "origin": "x".repeat(65)}]),
            ),
        ];
        for (field, value) in bad_ones {
            let mut bad = good.clone();
            bad[field] = value;
            let text = bad.to_string();
            std::fs::write(&index, &text).unwrap();
            let e = Gallery::open(&dir, &model()).unwrap_err().to_string();
            assert!(e.contains("invalid index"), "{field}: {e}");
            assert_eq!(std::fs::read_to_string(&index).unwrap(), text, "left alone");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn remote_changes_apply_by_version_and_removals_stay_removed() {
        let dir = folder("apply");
        let lock = Gallery::lock(&dir).unwrap();
        let mut g = Gallery::open(&dir, &model()).unwrap();
        g.join_fleet(&lock).unwrap();
        let board = g.board().unwrap().to_string();
        let ada = format!("p000004-{OTHER}");

        let done = g
            .apply_remote(&lock, vec![arrival(&ada, 2, OTHER, "Ada")])
            .unwrap();
        assert_eq!(done.updated, ["Ada"]);
        let first_crops = g.people()[0].entry.crops.clone();
        assert_eq!(first_crops.len(), 2);
        // A negative recorded here is a new version of Ada, made here (it goes to the fleet).
        g.reject(&lock, "Ada", vec![1.0, 0.0], &png(9)).unwrap();
        let p = &g.people()[0];
        assert_eq!(
            (p.entry.version, p.entry.origin.as_str()),
            (3, board.as_str())
        );
        // An older or equal version is stale; a newer one replaces her, crops renumbered, and
        // one that carries no negatives (an older board's) keeps this board's.
        let done = g
            .apply_remote(
                &lock,
                vec![
                    arrival(&ada, 1, OTHER, "Old"),
                    arrival(&ada, 2, OTHER, "Same"),
                ],
            )
            .unwrap();
        assert_eq!((done.stale, done.updated.len()), (2, 0));
        g.apply_remote(&lock, vec![arrival(&ada, 4, OTHER, "Ada L.")])
            .unwrap();
        let p = &g.people()[0];
        assert_eq!((p.entry.name.as_str(), p.entry.version), ("Ada L.", 4));
        assert_eq!(p.negatives.len(), 1);
        assert!(p.entry.crops.iter().all(|c| !first_crops.contains(c)));
        assert!(first_crops.iter().all(|c| !dir.join(c).exists()));
        // Negatives that arrive replace this board's, crops and all.
        let old_negative = p.entry.negative_crops.clone();
        let Remote::Person(mut a) = arrival(&ada, 5, OTHER, "Ada L.") else {
            unreachable!()
        };
        a.negatives = vec![vec![0.6, 0.8], vec![0.8, 0.6]];
        a.negative_crops = vec![png(5), png(6)];
        g.apply_remote(&lock, vec![Remote::Person(a)]).unwrap();
        let p = &g.people()[0];
        assert_eq!(p.negatives, [vec![0.6, 0.8], vec![0.8, 0.6]]);
        assert_eq!((p.entry.negatives, p.entry.negative_crops.len()), (2, 2));
        assert!(p.entry.negative_crops.iter().all(|c| dir.join(c).exists()));
        assert!(old_negative.iter().all(|c| !dir.join(c).exists()));
        let g = Gallery::open(&dir, &model()).unwrap();
        assert_eq!(g.people()[0].negatives.len(), 2, "committed");
        let mut g = g;
        // A name someone else has here waits; a legacy id is refused.
        let other = format!("p000001-{board}");
        let bob = |name: &str| arrival(&other, 1, &board, name);
        let done = g
            .apply_remote(
                &lock,
                vec![bob("Ada L."), arrival("p000009", 1, OTHER, "X")],
            )
            .unwrap();
        assert_eq!(done.deferred.len(), 2, "{done:?}");
        // A crop that does not decode, or is no crop, is never stored: `gallery reembed` would
        // fail on it for the whole gallery.
        let with_crops = |crops: Vec<Vec<u8>>| {
            let Remote::Person(mut a) = arrival(&format!("p000007-{board}"), 1, &board, "Cy")
            else {
                unreachable!()
            };
            a.crops = crops;
            Remote::Person(a)
        };
        let mut huge = Vec::new();
        image::RgbImage::new(2000, 2)
            .write_to(
                &mut std::io::Cursor::new(&mut huge),
                image::ImageFormat::Png,
            )
            .unwrap();
        let mut cut = png(1);
        cut.truncate(cut.len() / 2);
        let done = g
            .apply_remote(
                &lock,
                vec![
                    with_crops(vec![png(1), b"not a png".to_vec()]),
                    with_crops(vec![png(1), huge]),
                    with_crops(vec![png(1), cut]),
                ],
            )
            .unwrap();
        let reasons: Vec<&str> = done.deferred.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{done:?}");
        assert!(reasons[0].contains("crop 2: is not a PNG"), "{reasons:?}");
        assert!(reasons[1].contains("crop 2: is 2000x2"), "{reasons:?}");
        assert!(reasons[2].starts_with("crop 2: "), "{reasons:?}");
        assert!(g.people().iter().all(|p| p.entry.name != "Cy"));
        // This board's own id coming back moves the counter past it.
        let back = format!("p000005-{board}");
        g.apply_remote(&lock, vec![arrival(&back, 1, &board, "Back")])
            .unwrap();
        let next = g.add(&lock, "New", vec![vec![1.0, 0.0]], &[]).unwrap();
        assert_eq!(next.entry.id, format!("p000006-{board}"));
        // A removal wins over older versions, and then stays.
        let gone = Remote::Removed(Tombstone {
            id: ada.clone(),
            version: 6,
            origin: OTHER.into(),
        });
        let done = g.apply_remote(&lock, vec![gone]).unwrap();
        assert_eq!(done.removed, std::slice::from_ref(&ada));
        let done = g
            .apply_remote(&lock, vec![arrival(&ada, 5, OTHER, "Ada")])
            .unwrap();
        assert_eq!(done.stale, 1);
        let g = Gallery::open(&dir, &model()).unwrap();
        assert!(g.people().iter().all(|p| p.entry.id != ada));
        assert_eq!(g.version_of(&ada), Some((6, OTHER)));
        assert!(Gallery::check(&dir).is_consistent());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
