//! The recognition stages against OpenCV 4.6's own SFace pipeline
//! (`tools/opencv_face_reference.py` recorded YuNet landmarks, `alignCrop` crops and fp32 features).

use crate::common::root;
use std::path::PathBuf;

use facegate::align;
use facegate::detect::yunet::YuNet;
use facegate::embed::{cosine, normalized, Embedder, Float, Precision};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    photos: std::collections::BTreeMap<String, PhotoRef>,
}

#[derive(Deserialize)]
struct PhotoRef {
    faces: Vec<FaceRef>,
    feature: Option<Vec<f32>>,
}

#[derive(Deserialize)]
struct FaceRef {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    landmarks: [f32; 10],
    score: f32,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(root().join("tests/fixtures/opencv_faces.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn aligned_crop(photo: &str) -> image::RgbImage {
    let stem = photo.rsplit_once('.').unwrap().0;
    image::open(root().join(format!("tests/fixtures/aligned/{stem}.png")))
        .unwrap()
        .to_rgb8()
}

fn shipped_embedder() -> Embedder {
    Embedder::load(&root().join("models/sface_int8w.json")).unwrap()
}

/// A card (the shipped one's, with this file, fingerprint and form) for an SFace model in
/// ../shared/anchors, when that folder is there.
fn shared_card(file: &str, form: &str) -> Option<PathBuf> {
    let onnx = root().join("../shared/anchors").join(file);
    let bytes = std::fs::read(&onnx).ok()?;
    let card_text = std::fs::read_to_string(root().join("models/sface_int8w.json")).unwrap();
    let mut card: serde_json::Value = serde_json::from_str(&card_text).unwrap();
    card["file"] = onnx.to_str().unwrap().into();
    card["sha256"] = facegate::embed::model_card::sha256_hex(&bytes).into();
    card["form"] = form.into();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("facegate-{form}card-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{file}.json"));
    std::fs::write(&path, card.to_string()).unwrap();
    Some(path)
}

/// The fp32 SFace in ../shared, when that folder is there.
fn f32_embedder() -> Option<Embedder> {
    let card = shared_card("sface_2021dec_fp32_from_int8bq.onnx", "f32")?;
    Some(Embedder::load(&card).unwrap())
}

#[test]
fn embeddings_of_opencv_crops_match_opencv_features() {
    let r = reference();
    let mut int8 = shipped_embedder();
    let mut f32_model = f32_embedder();
    let mut worst = (1.0f32, 1.0f32);
    for (name, photo) in &r.photos {
        let Some(feature) = &photo.feature else {
            continue;
        };
        let theirs = normalized(feature);
        let crop = aligned_crop(name);
        let ours = int8.embed(std::slice::from_ref(&crop)).unwrap().remove(0);
        worst.0 = worst.0.min(cosine(&ours, &theirs));
        if let Some(m) = &mut f32_model {
            let ours = m.embed(std::slice::from_ref(&crop)).unwrap().remove(0);
            worst.1 = worst.1.min(cosine(&ours, &theirs));
        }
    }
    assert!(
        worst.0 >= 0.99,
        "int8-weight model vs OpenCV fp32: worst cosine {}",
        worst.0
    );
    assert!(
        worst.1 >= 0.9999,
        "fp32 model in tract vs OpenCV: worst cosine {}",
        worst.1
    );
}

/// OpenCV Zoo's block-quantised SFace (opset 21 DequantizeLinear with block_size, which tract
/// 0.23 refuses) loads once its convolution weights are folded, and embeds like its fp32 copy and
/// OpenCV.
#[test]
fn the_block_quantised_sface_embeds_like_its_fp32_copy() {
    let need = |file| {
        shared_card(file, "qdq").unwrap_or_else(|| panic!("../shared/anchors/{file} is needed"))
    };
    let int8bq = need("face_recognition_sface_2021dec_int8bq.onnx");
    let fp32 = need("sface_2021dec_fp32_from_int8bq.onnx");
    let mut blocked = Embedder::load_with(&int8bq, 1, Precision::F32).unwrap();
    // Its 128 x 50176 head (blocks of 64 with zero points) runs as int8 in facegate's own dense
    // layer rather than as 26 MB of f32 weights in tract.
    assert!(blocked.has_int8_head());
    let mut fp32_net = Embedder::load_with(&fp32, 1, Precision::F32).unwrap();
    let r = reference();
    let mut worst = (1.0f32, 1.0f32);
    let mut faces = 0;
    for (name, photo) in &r.photos {
        let crop = aligned_crop(name);
        let ours = blocked
            .embed(std::slice::from_ref(&crop))
            .unwrap()
            .remove(0);
        let theirs = fp32_net
            .embed(std::slice::from_ref(&crop))
            .unwrap()
            .remove(0);
        assert_eq!(ours.len(), 128);
        worst.0 = worst.0.min(cosine(&ours, &theirs));
        if let Some(feature) = &photo.feature {
            worst.1 = worst.1.min(cosine(&ours, &normalized(feature)));
        }
        faces += 1;
    }
    eprintln!(
        "int8bq against the fp32 copy: worst cosine {:.7}, against OpenCV: {:.7} ({faces} faces)",
        worst.0, worst.1
    );
    assert!(faces >= 9);
    assert!(
        worst.0 >= 0.9999,
        "int8bq vs fp32 copy: worst cosine {}",
        worst.0
    );
    assert!(
        worst.1 >= 0.9999,
        "int8bq vs OpenCV: worst cosine {}",
        worst.1
    );
    // Different photos still give different embeddings (a constant output would pass the above
    // only if the reference were broken the same way).
    let a = blocked
        .embed(&[aligned_crop("obama.jpg")])
        .unwrap()
        .remove(0);
    let b = blocked
        .embed(&[aligned_crop("biden.jpg")])
        .unwrap()
        .remove(0);
    assert!(cosine(&a, &b) < 0.5, "obama vs biden: {}", cosine(&a, &b));
}

#[test]
fn a_batch_embeds_like_single_faces() {
    let mut e = shipped_embedder();
    let mut batched =
        Embedder::load_with(&root().join("models/sface_int8w.json"), 3, Precision::F32).unwrap();
    assert_eq!(batched.batch_size(), 3);
    let crops: Vec<_> = ["obama.jpg", "biden.jpg", "messi5.jpg"]
        .iter()
        .map(|n| aligned_crop(n))
        .collect();
    let batch = batched.embed(&crops).unwrap();
    // Two faces in a plan for three: the padding must not leak into the results.
    let short = batched.embed(&crops[..2]).unwrap();
    assert_eq!(short.len(), 2);
    assert!(cosine(&short[1], &batch[1]) > 0.99999);
    for (crop, b) in crops.iter().zip(&batch) {
        let single = e.embed(std::slice::from_ref(crop)).unwrap().remove(0);
        assert!(cosine(&single, b) > 0.99999);
    }
}

#[test]
fn yunet_landmarks_match_opencv() {
    let r = reference();
    let mut yunet = YuNet::load(&root().join("models/yunet_2023mar.onnx")).unwrap();
    for name in [
        "messi5.jpg",
        "astronaut.png",
        "basketball1.png",
        "obama2.jpg",
    ] {
        let photo =
            facegate::imaging::photo::load(&root().join("tests/fixtures/photos").join(name))
                .unwrap();
        let ours = yunet.detect(&photo.rgb).unwrap();
        let theirs = &r.photos[name].faces;
        assert_eq!(ours.len(), theirs.len(), "{name}");
        for (o, t) in ours.iter().zip(theirs) {
            assert!(
                (o.score - t.score).abs() < 0.01,
                "{name}: score {} vs {}",
                o.score,
                t.score
            );
            for k in 0..4 {
                assert!(
                    (o.bbox[k] - t.bbox[k]).abs() < 1.0,
                    "{name}: box {:?} vs {:?}",
                    o.bbox,
                    t.bbox
                );
            }
            for n in 0..5 {
                for d in 0..2 {
                    let diff = (o.landmarks[n][d] - t.landmarks[2 * n + d]).abs();
                    assert!(diff < 1.0, "{name}: landmark {n} off by {diff}");
                }
            }
        }
    }
}

#[test]
fn alignment_reproduces_opencv_crops() {
    let r = reference();
    let template = match &shipped_embedder().card().alignment {
        facegate::embed::model_card::Alignment::FivePoint { template } => *template,
        other => panic!("SFace's card should ask for five-point alignment, not {other:?}"),
    };
    for (name, photo) in &r.photos {
        let Some(face) = photo.faces.first() else {
            continue;
        };
        let img = facegate::imaging::photo::load(&root().join("tests/fixtures/photos").join(name))
            .unwrap();
        let marks: [[f32; 2]; 5] =
            std::array::from_fn(|n| [face.landmarks[2 * n], face.landmarks[2 * n + 1]]);
        let map = align::crop_to_photo(&marks, &template).unwrap();
        let ours = align::warp(&img.rgb, &map, 112, 112);
        let theirs = aligned_crop(name);
        let total: u64 = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| (*a as i64 - *b as i64).unsigned_abs())
            .sum();
        let mean = total as f64 / ours.as_raw().len() as f64;
        // OpenCV's warpAffine quantises coordinates to 1/32 pixel and weights to 15 bits.
        assert!(
            mean < 0.5,
            "{name}: mean absolute difference {mean:.2} from OpenCV's crop"
        );
    }
}

#[test]
fn the_int8_dense_head_embeds_like_tract_in_f32() {
    let card = root().join("models/sface_int8w.json");
    let mut split = Embedder::load(&card).unwrap();
    let mut whole = Embedder::load_all_in_tract(&card).unwrap();
    assert!(split.has_int8_head() && !whole.has_int8_head());
    for name in ["obama.jpg", "biden.jpg", "messi5.jpg"] {
        let crop = aligned_crop(name);
        let a = split.embed(std::slice::from_ref(&crop)).unwrap().remove(0);
        let b = whole.embed(std::slice::from_ref(&crop)).unwrap().remove(0);
        assert_eq!(a.len(), 128);
        assert!(cosine(&a, &b) > 0.99999, "{name}: {}", cosine(&a, &b));
    }
}

/// `--precision f16` (for boards with half-precision arithmetic) against f32, on this machine's
/// software f16; `cross/emulated_check.py` repeats it on an emulated Cortex-A76 with tract's
/// native f16 kernels.
#[test]
fn f16_embeds_like_f32() {
    let card = root().join("models/sface_int8w.json");
    let mut f32_net = Embedder::load_with(&card, 1, Precision::F32).unwrap();
    let mut f16_net = Embedder::load_with(&card, 2, Precision::F16).unwrap();
    assert_eq!((f32_net.float(), f16_net.float()), (Float::F32, Float::F16));
    let crops: Vec<_> = ["obama.jpg", "biden.jpg", "messi5.jpg"]
        .iter()
        .map(|n| aligned_crop(n))
        .collect();
    let half = f16_net.embed(&crops).unwrap();
    for (crop, h) in crops.iter().zip(&half) {
        let full = f32_net.embed(std::slice::from_ref(crop)).unwrap().remove(0);
        let c = cosine(&full, h);
        assert!(c >= 0.999, "f16 against f32: cosine {c}");
        assert!(
            c < 1.0 - 1e-7,
            "f16 gave exactly the f32 embedding ({c}): not run in f16"
        );
    }
}
