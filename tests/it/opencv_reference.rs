//! facegate's detector against OpenCV 4.6's `CascadeClassifier::detectMultiScale`.
//!
//! `tests/fixtures/opencv_reference.json` was written by `tools/opencv_reference.py` with Debian's
//! python3-opencv 4.6. For every photo, cascade and grouping setting the rectangles must be the same
//! set, exactly: no tolerance. Besides the three shipped cascades, a synthetic cascade
//! (`tests/fixtures/tilted_test_cascade.xml`) covers 45-degree Haar features, which none of them uses. The grey image hash is checked first, so a failure says whether
//! decoding/grey conversion or detection went astray.

use std::collections::BTreeSet;
use std::path::Path;

use facegate::detect::cascade::{Cascade, DetectParams, Detector};
use facegate::imaging::photo;
use facegate::imaging::rect::Rect;
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
struct Reference {
    opencv: String,
    scale_factor: f64,
    photos: std::collections::BTreeMap<String, PhotoInfo>,
    results: Vec<Case>,
}

#[derive(Deserialize)]
struct PhotoInfo {
    width: usize,
    height: usize,
    grey_sha256: String,
}

#[derive(Deserialize)]
struct Case {
    cascade: String,
    photo: String,
    min_neighbors: u32,
    faces: Vec<[i32; 4]>,
}

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"))
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(fixtures().join("opencv_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn grey_images_match_opencv_imread_and_cvtcolor() {
    let r = reference();
    assert!(r.opencv.starts_with("4.6"));
    for (name, info) in &r.photos {
        let photo = photo::load(&fixtures().join("photos").join(name)).unwrap();
        assert_eq!(
            (photo.width(), photo.height()),
            (info.width, info.height),
            "{name}"
        );
        let hash = format!("{:x}", Sha256::digest(&photo.grey));
        assert_eq!(
            hash, info.grey_sha256,
            "{name}: grey pixels differ from OpenCV's"
        );
    }
}

fn set(rects: impl IntoIterator<Item = [i32; 4]>) -> BTreeSet<[i32; 4]> {
    rects.into_iter().collect()
}

#[test]
fn detections_equal_opencv_for_every_photo_cascade_and_grouping() {
    let r = reference();
    let mut failures = Vec::new();
    let mut compared = 0;
    let cascades: BTreeSet<&str> = r.results.iter().map(|c| c.cascade.as_str()).collect();
    let cascades_seen = cascades.len();
    for cascade_name in cascades {
        let cascade =
            Cascade::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join(cascade_name)).unwrap();
        let mut detector = Detector::new(cascade);
        for case in r.results.iter().filter(|c| c.cascade == cascade_name) {
            let photo = photo::load(&fixtures().join("photos").join(&case.photo)).unwrap();
            let params = DetectParams {
                scale_factor: r.scale_factor,
                min_neighbors: case.min_neighbors,
                ..DetectParams::default()
            };
            let ours = detector.detect(photo.grey_view(), &params).unwrap();
            let ours = set(ours.iter().map(|r: &Rect| [r.x, r.y, r.w, r.h]));
            let theirs = set(case.faces.iter().copied());
            compared += theirs.len();
            if ours != theirs {
                failures.push(format!(
                    "{} on {} (min_neighbors {}): only facegate {:?}, only OpenCV {:?}",
                    cascade_name,
                    case.photo,
                    case.min_neighbors,
                    ours.difference(&theirs).collect::<Vec<_>>(),
                    theirs.difference(&ours).collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(
        cascades_seen >= 4,
        "expected the shipped cascades and the tilted test cascade"
    );
    assert!(
        compared > 20_000,
        "the reference should hold many rectangles, found {compared}"
    );
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn thread_count_does_not_change_the_output() {
    let photo = photo::load(&fixtures().join("photos/faceapi-sample2.jpg")).unwrap();
    let cascade = facegate::recognize::models::default_cascade();
    let mut detector = Detector::new(cascade);
    let raw = DetectParams {
        min_neighbors: 0,
        ..DetectParams::default()
    };
    let one = detector.detect(photo.grey_view(), &raw).unwrap();
    for threads in [2, 3, 7] {
        let many = detector
            .detect(
                photo.grey_view(),
                &DetectParams {
                    threads,
                    ..raw.clone()
                },
            )
            .unwrap();
        // Same rectangles in the same order, not just the same set.
        assert_eq!(one, many, "{threads} threads");
    }
}
