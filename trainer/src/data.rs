//! Labelled images and their split by identity.
//!
//! Two layouts are read: an image folder with one sub-folder per identity (LFW, CASIA-WebFace,
//! VGGFace2 and the 5-celebrity set use it) and the digit tables in `../shared/data` (one row per
//! image: pixel values, then the label; gzip allowed). Every image is brought to the network's
//! square input size once, at load time, as RGB bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use facegate::support::rng::Rng;
use image::imageops::FilterType;
use image::{GrayImage, RgbImage};

#[derive(Clone)]
pub struct Dataset {
    pub side: usize,
    /// RGB, row-major, `side * side * 3` bytes each.
    pub images: Vec<Vec<u8>>,
    pub labels: Vec<usize>,
    pub classes: Vec<String>,
}

/// How faces in photos become network inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FaceCrop {
    /// Resize the whole image (digits, or photos already cropped and aligned).
    None,
    /// Find the largest face with YuNet and align its five landmarks to the ArcFace template,
    /// as facegate does at run time.
    Align,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    pub fn class_count(&self) -> usize {
        self.classes.len()
    }

    /// Indices of each class's images.
    pub fn by_class(&self) -> Vec<Vec<usize>> {
        group_by_label(&self.labels, self.classes.len())
    }

    /// The images of `classes`, relabelled 0.. in the order given.
    pub fn subset(&self, classes: &[usize]) -> Dataset {
        let mut out = Dataset {
            side: self.side,
            images: Vec::new(),
            labels: Vec::new(),
            classes: classes.iter().map(|&c| self.classes[c].clone()).collect(),
        };
        for (new, &c) in classes.iter().enumerate() {
            for (i, &l) in self.labels.iter().enumerate() {
                if l == c {
                    out.images.push(self.images[i].clone());
                    out.labels.push(new);
                }
            }
        }
        out
    }

    /// This set plus, for every identity, a new identity made of its images turned a quarter
    /// turn clockwise (named "<name> turned"). A turned digit is no digit, so it is a class of
    /// its own: more classes to tell apart teach a metric that carries to unseen ones (Omniglot's
    /// rotations as new classes, Santoro et al. 2016). A half turn would not do: it maps 0, 1 and
    /// 8 onto themselves and 6 onto 9.
    pub fn with_turned_classes(&self) -> Dataset {
        let n = self.classes.len();
        let mut out = self.clone();
        out.classes
            .extend(self.classes.iter().map(|c| format!("{c} turned")));
        for (img, &label) in self.images.iter().zip(&self.labels) {
            out.images.push(quarter_turn(img, self.side));
            out.labels.push(label + n);
        }
        out
    }
}

/// An RGB `side` x `side` image turned a quarter turn clockwise.
fn quarter_turn(img: &[u8], side: usize) -> Vec<u8> {
    let side = side as u32;
    let rgb = RgbImage::from_raw(side, side, img.to_vec())
        .expect("a Dataset holds side x side RGB images");
    image::imageops::rotate90(&rgb).into_raw()
}

/// Indices of each label's items, for labels below `classes`.
pub fn group_by_label(labels: &[usize], classes: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        out[l].push(i);
    }
    out
}

/// Loads `path`: a directory of identity folders, or a `.csv`/`.csv.gz` digit table.
pub fn load(path: &Path, side: usize, crop: FaceCrop) -> Result<Dataset, String> {
    if path.is_dir() {
        load_folder(path, side, crop)
    } else {
        load_table(path, side)
    }
}

fn load_table(path: &Path, side: usize) -> Result<Dataset, String> {
    let fail = |what: String| format!("{}: {what}", path.display());
    let bytes = std::fs::read(path).map_err(|e| fail(format!("cannot read: {e}")))?;
    let text = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut s)
            .map_err(|e| fail(format!("not valid gzip text: {e}")))?;
        s
    } else {
        String::from_utf8(bytes).map_err(|_| fail("not text".into()))?
    };
    let mut rows: Vec<(Vec<f32>, usize)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Result<Vec<f32>, _> =
            line.split(',').map(|f| f.trim().parse::<f32>()).collect();
        let Ok(mut fields) = fields else {
            if n == 0 {
                continue; // a header row
            }
            return Err(fail(format!("line {}: not a row of numbers", n + 1)));
        };
        let label = fields
            .pop()
            .ok_or_else(|| fail(format!("line {}: empty", n + 1)))?;
        if label < 0.0 || label.fract() != 0.0 {
            return Err(fail(format!(
                "line {}: label {label} is not a class number",
                n + 1
            )));
        }
        rows.push((fields, label as usize));
    }
    let pixels = rows
        .first()
        .map(|r| r.0.len())
        .ok_or_else(|| fail("no rows".into()))?;
    let native = (pixels as f64).sqrt() as usize;
    if native * native != pixels {
        return Err(fail(format!(
            "rows have {pixels} pixels, not a square image"
        )));
    }
    // Digits store 0..16, MNIST 0..255.
    let max = rows
        .iter()
        .flat_map(|r| r.0.iter())
        .fold(0f32, |m, &v| m.max(v));
    let scale = if max <= 16.0 { 255.0 / 16.0 } else { 1.0 };
    let classes = rows.iter().map(|r| r.1).max().unwrap_or(0) + 1;
    let mut ds = Dataset {
        side,
        images: Vec::with_capacity(rows.len()),
        labels: Vec::with_capacity(rows.len()),
        classes: (0..classes).map(|c| c.to_string()).collect(),
    };
    for (n, (px, label)) in rows.into_iter().enumerate() {
        if px.len() != pixels {
            return Err(fail(format!(
                "row {} has {} pixels, the first has {pixels}",
                n + 1,
                px.len()
            )));
        }
        let grey = GrayImage::from_fn(native as u32, native as u32, |x, y| {
            image::Luma([(px[y as usize * native + x as usize] * scale)
                .round()
                .clamp(0.0, 255.0) as u8])
        });
        let resized =
            image::imageops::resize(&grey, side as u32, side as u32, FilterType::Triangle);
        ds.images
            .push(resized.pixels().flat_map(|p| [p.0[0]; 3]).collect());
        ds.labels.push(label);
    }
    Ok(ds)
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: cannot list: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    out.sort();
    Ok(out)
}

fn load_folder(dir: &Path, side: usize, crop: FaceCrop) -> Result<Dataset, String> {
    let mut aligner = match crop {
        FaceCrop::Align => Some(Aligner::new(side)?),
        FaceCrop::None => None,
    };
    let mut ds = Dataset {
        side,
        images: Vec::new(),
        labels: Vec::new(),
        classes: Vec::new(),
    };
    let mut skipped = Vec::new();
    for class_dir in sorted_entries(dir)?.into_iter().filter(|p| p.is_dir()) {
        let label = ds.classes.len();
        let mut count = 0;
        for file in sorted_entries(&class_dir)?
            .into_iter()
            .filter(|p| p.is_file())
        {
            let photo = facegate::imaging::photo::load(&file).map_err(|e| e.to_string())?;
            let input = match aligner.as_mut() {
                Some(a) => a
                    .align(&photo.rgb)
                    .map_err(|e| format!("{}: {e}", file.display()))?,
                None => Some(image::imageops::resize(
                    &photo.rgb,
                    side as u32,
                    side as u32,
                    FilterType::Triangle,
                )),
            };
            match input {
                Some(img) => {
                    ds.images.push(img.into_raw());
                    ds.labels.push(label);
                    count += 1;
                }
                None => skipped.push(file),
            }
        }
        if count > 0 {
            let name = class_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            ds.classes.push(name);
        }
    }
    if !skipped.is_empty() {
        eprintln!(
            "note: no face found in {} photo(s), skipped: {}",
            skipped.len(),
            skipped[0].display()
        );
    }
    if ds.is_empty() {
        return Err(format!(
            "{}: no images in identity sub-folders",
            dir.display()
        ));
    }
    Ok(ds)
}

/// ArcFace's 112x112 five-point template, scaled to the input side.
pub fn template(side: usize) -> [[f32; 2]; 5] {
    const ARCFACE: [[f32; 2]; 5] = [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ];
    let s = side as f32 / 112.0;
    ARCFACE.map(|[x, y]| [x * s, y * s])
}

struct Aligner {
    yunet: facegate::detect::yunet::YuNet,
    side: usize,
}

impl Aligner {
    fn new(side: usize) -> Result<Aligner, String> {
        Ok(Aligner {
            yunet: facegate::recognize::models::default_yunet()?,
            side,
        })
    }

    fn align(&mut self, photo: &RgbImage) -> Result<Option<RgbImage>, String> {
        let faces = self.yunet.detect(photo)?;
        let largest = faces.iter().max_by(|a, b| {
            (a.bbox[2] * a.bbox[3])
                .partial_cmp(&(b.bbox[2] * b.bbox[3]))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let Some(face) = largest else { return Ok(None) };
        let Some(map) = facegate::align::crop_to_photo(&face.landmarks, &template(self.side))
        else {
            return Ok(None);
        };
        Ok(Some(facegate::align::warp(
            photo,
            &map,
            self.side as u32,
            self.side as u32,
        )))
    }
}

/// Identity-disjoint parts of one data set.
pub struct Split {
    pub train: Dataset,
    pub val: Dataset,
    pub test: Dataset,
}

/// Splits by identity, never by image: `test` identities never appear in training. Named
/// identities go to the test part first; the rest are drawn with `seed`.
pub fn split_by_identity(
    ds: &Dataset,
    val_identities: usize,
    test_identities: usize,
    held_out: &[String],
    seed: u64,
) -> Result<Split, String> {
    let n = ds.class_count();
    let mut test: Vec<usize> = Vec::new();
    for name in held_out {
        let c = ds.classes.iter().position(|c| c == name).ok_or_else(|| {
            format!(
                "held-out identity {name:?} is not in the data (it has {})",
                ds.classes.join(", ")
            )
        })?;
        test.push(c);
    }
    let mut rest: Vec<usize> = (0..n).filter(|c| !test.contains(c)).collect();
    let order = Rng::new(seed).pick(rest.len(), rest.len());
    rest = order.into_iter().map(|i| rest[i]).collect();
    while test.len() < test_identities && !rest.is_empty() {
        test.push(rest.remove(0));
    }
    let val: Vec<usize> = rest.drain(..val_identities.min(rest.len())).collect();
    if rest.len() < 2 {
        return Err(format!(
            "{n} identities leave {} for training after {} test and {} validation; triplets need 2",
            rest.len(),
            test.len(),
            val.len()
        ));
    }
    rest.sort();
    test.sort();
    Ok(Split {
        train: ds.subset(&rest),
        val: ds.subset(&val),
        test: ds.subset(&test),
    })
}

/// `k` splits whose test parts are disjoint groups of `test_identities` classes, in an order drawn
/// with `seed` (every class is held out at most once). Each split is exactly what
/// `split_by_identity` gives with its group named as `--hold-out`, so any one split can be rerun
/// on its own. `k = 1` with named classes is the plain split.
pub fn rotating_splits(
    ds: &Dataset,
    k: usize,
    val_identities: usize,
    test_identities: usize,
    held_out: &[String],
    seed: u64,
) -> Result<Vec<Split>, String> {
    if k <= 1 {
        return Ok(vec![split_by_identity(
            ds,
            val_identities,
            test_identities,
            held_out,
            seed,
        )?]);
    }
    if !held_out.is_empty() {
        return Err(format!(
            "--hold-out names the test classes of one split; --splits {k} rotates them itself (drop one of the two)"
        ));
    }
    let n = ds.class_count();
    if test_identities == 0 || k.saturating_mul(test_identities) > n {
        return Err(format!(
            "--splits {k} with --test-identities {test_identities} needs {} disjoint test classes; the data has {n}",
            k.saturating_mul(test_identities).max(k)
        ));
    }
    let order = Rng::new(seed ^ 0x5b1175).pick(n, n);
    order
        .chunks(test_identities)
        .take(k)
        .map(|group| {
            let names: Vec<String> = group.iter().map(|&c| ds.classes[c].clone()).collect();
            split_by_identity(ds, val_identities, test_identities, &names, seed)
        })
        .collect()
}

/// The classes dealt into `k` disjoint groups in an order drawn with `seed`; every group needs two.
pub fn identity_groups(ds: &Dataset, k: usize, seed: u64) -> Result<Vec<Vec<usize>>, String> {
    let n = ds.class_count();
    if k.saturating_mul(2) > n {
        return Err(format!(
            "--splits {k} needs at least two identities a group ({}); the data has {n}",
            2 * k
        ));
    }
    let order = Rng::new(seed ^ 0x5b1175).pick(n, n);
    let mut groups = vec![Vec::new(); k];
    for (i, c) in order.into_iter().enumerate() {
        groups[i % k].push(c);
    }
    for g in &mut groups {
        g.sort();
    }
    Ok(groups)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data")
            .join(path)
    }

    #[test]
    fn turned_classes_are_new_identities_of_turned_images() {
        // A 2x2 RGB image: pixels a b / c d, each a different grey.
        let img: Vec<u8> = [10u8, 20, 30, 40].iter().flat_map(|&v| [v, v, v]).collect();
        assert_eq!(
            quarter_turn(&img, 2),
            [30u8, 10, 40, 20]
                .iter()
                .flat_map(|&v| [v, v, v])
                .collect::<Vec<u8>>(),
            "clockwise: c a / d b"
        );
        // Four quarter turns are the identity, on an image with no symmetry.
        let side = 5;
        let img: Vec<u8> = (0..side * side * 3).map(|i| i as u8).collect();
        let back = (0..4).fold(img.clone(), |im, _| quarter_turn(&im, side));
        assert_eq!(back, img);

        let ds = Dataset {
            side,
            images: vec![img.clone(), img.clone(), img],
            labels: vec![1, 0, 1],
            classes: vec!["7".into(), "9".into()],
        };
        let turned = ds.with_turned_classes();
        assert_eq!(turned.classes, ["7", "9", "7 turned", "9 turned"]);
        assert_eq!(turned.labels, [1, 0, 1, 3, 2, 3]);
        assert_eq!(turned.images[..3], ds.images[..]);
        assert_eq!(turned.images[3], quarter_turn(&ds.images[0], side));
        assert_eq!(
            turned.by_class().iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 2, 1, 2]
        );
    }

    #[test]
    fn digits_table_loads_and_splits_by_identity() {
        let ds = load(&shared("digits.csv.gz"), 16, FaceCrop::None).unwrap();
        assert_eq!(ds.len(), 1797);
        assert_eq!(ds.class_count(), 10);
        assert_eq!(ds.images[0].len(), 16 * 16 * 3);
        let split = split_by_identity(&ds, 1, 3, &["9".to_string()], 7).unwrap();
        assert_eq!(split.test.class_count(), 3);
        assert!(split.test.classes.contains(&"9".to_string()));
        assert_eq!(split.val.class_count(), 1);
        assert_eq!(split.train.class_count(), 6);
        for name in &split.train.classes {
            assert!(!split.test.classes.contains(name) && !split.val.classes.contains(name));
        }
        assert_eq!(split.train.len() + split.val.len() + split.test.len(), 1797);
    }

    #[test]
    fn rotating_splits_hold_out_disjoint_groups_reproducibly() {
        let ds = load(&shared("digits.csv.gz"), 8, FaceCrop::None).unwrap();
        let splits = rotating_splits(&ds, 3, 0, 3, &[], 5).unwrap();
        assert_eq!(splits.len(), 3);
        let mut seen: Vec<String> = Vec::new();
        for s in &splits {
            assert_eq!(s.test.class_count(), 3);
            assert_eq!(s.train.class_count(), 7);
            for c in &s.test.classes {
                assert!(!seen.contains(c), "{c} held out twice");
                assert!(!s.train.classes.contains(c));
                seen.push(c.clone());
            }
        }
        let again = rotating_splits(&ds, 3, 0, 3, &[], 5).unwrap();
        assert!(splits
            .iter()
            .zip(&again)
            .all(|(a, b)| a.test.classes == b.test.classes));
        // One split rerun on its own with --hold-out is the same split.
        let alone = split_by_identity(&ds, 0, 3, &splits[1].test.classes, 5).unwrap();
        assert_eq!(alone.train.classes, splits[1].train.classes);
        assert!(rotating_splits(&ds, 4, 0, 3, &[], 5).is_err());
        assert!(rotating_splits(&ds, 2, 0, 3, &["1".into()], 5).is_err());
    }

    #[test]
    fn bad_tables_are_named_errors() {
        let dir = std::env::temp_dir().join(format!("facegate-train-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.csv");
        std::fs::write(&bad, "1,2,3,0\n1,x,3,1\n").unwrap();
        let err = load(&bad, 8, FaceCrop::None).err().unwrap();
        assert!(err.contains("bad.csv") && err.contains("line 2"), "{err}");
        let missing = load(&dir.join("missing.csv"), 8, FaceCrop::None)
            .err()
            .unwrap();
        assert!(missing.contains("missing.csv"), "{missing}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
