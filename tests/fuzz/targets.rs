// The fuzz targets' bodies, shared by the libFuzzer binaries (fuzz_targets/) and by the corpus
// replay in `cargo test` (tests/it/fuzz_replay.rs), so every stored input and every past crash runs
// through exactly the code that was fuzzed. Each returns nothing: the property checked is that
// no input panics, aborts, hangs or allocates without bound.

use facegate::detect::cascade::{Cascade, DetectParams, Detector};
use facegate::embed::model_card::{sha256_hex, ModelCard};
use facegate::imaging::grey::GreyView;
use facegate::imaging::photo;
use facegate::live::frames::mjpeg::{MjpegSplitter, SplitError};
use facegate::store::gallery::{Gallery, ModelInfo};

/// Small enough that a fuzzer spends its time on structure, not on decoding big pictures.
const FUZZ_MAX_PIXELS: u64 = 1 << 20;

pub fn image_decode(data: &[u8]) {
    if let Ok(photo) = photo::decode_within(data, FUZZ_MAX_PIXELS) {
        assert_eq!(photo.grey.len(), photo.width() * photo.height());
    }
}

pub fn mjpeg_split(data: &[u8]) {
    let mut splitter = MjpegSplitter::new(data);
    for _ in 0..10_000 {
        match splitter.next_jpeg() {
            Ok(Some(frame)) => {
                let _ = photo::decode_within(&frame, FUZZ_MAX_PIXELS);
            }
            Ok(None) | Err(SplitError::Io(_)) => return,
            Err(_) => {}
        }
    }
}

pub fn cascade_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cascade) = Cascade::from_xml(text, "fuzz") else {
        return;
    };
    // A cascade that loads must also run: every index it holds was checked at load.
    let (w, h) = (40, 32);
    let grey: Vec<u8> = (0..w * h).map(|i| (i * 37 % 251) as u8).collect();
    let view = GreyView {
        data: &grey,
        width: w,
        height: h,
        stride: w,
    };
    let params = DetectParams {
        min_neighbors: 0,
        scale_factor: 1.5,
        ..DetectParams::default()
    };
    let _ = Detector::new(cascade).detect(view, &params);
}

/// A card's JSON, a zero byte, then ONNX bytes.
pub fn model_card(data: &[u8]) {
    let (card, onnx) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    if let Ok(text) = std::str::from_utf8(card) {
        let _ = ModelCard::parse(text);
    }
    let _ = facegate::embed::onnx_prep::read_and_rewrite(onnx, true);
}

/// An index (where `@SHA@` stands for the sha256 of what follows, so the embeddings decoder is
/// reachable), a zero byte, then the embeddings file.
pub fn gallery_reader(data: &[u8]) {
    let (index, embeddings) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(index) = std::str::from_utf8(index) else {
        return;
    };
    let index = index.replace("@SHA@", &sha256_hex(embeddings));
    let dir = std::env::temp_dir().join(format!("facegate-fuzz-gallery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("crops")).expect("temporary gallery");
    std::fs::write(dir.join("gallery.json"), index).expect("temporary gallery");
    std::fs::write(dir.join("embeddings-00000001.bin"), embeddings).expect("temporary gallery");
    std::fs::write(dir.join("crops/p000001-0.png"), b"png").expect("temporary gallery");
    let model = ModelInfo {
        name: "fuzz".into(),
        fingerprint: "00".into(),
        embedding_dim: 4,
    };
    if let Ok(g) = Gallery::open_any(&dir, &model) {
        for p in g.people() {
            assert_eq!(p.centroid.len(), g.model().embedding_dim);
            for c in &p.entry.crops {
                assert!(g.crop_path(c).starts_with(&dir));
            }
        }
    }
    let _ = Gallery::check(&dir);
    let _ = std::fs::remove_dir_all(&dir);
}

pub fn settings_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = facegate::support::settings::parse(text);
    }
}

/// A photo index's data file (the bytes `facegate search` reads after index.json).
pub fn photo_index_data(data: &[u8]) {
    let _ = facegate::photo_index::store::decode(data, data.len() as u64);
}

/// The fleet's key in the fuzzer (any key of the right length: the body checks are the target).
const SYNC_KEY: &[u8] = b"fuzzing-key-0123456789";
const SYNC_ID: &str = "p000001-00000000000000aa";

/// A sync message: a first byte of 0 sends the rest as it arrived from the broker (envelope,
/// signature and all); any other first byte signs the rest as the body, so that the fuzzer
/// reaches the checks behind the signature. A message that opens seals again to the same state.
pub fn sync_message(data: &[u8]) {
    let Some(payload) = signed_payload(data) else {
        return;
    };
    if let Ok(state) = facegate::sync::open(&payload, SYNC_KEY, SYNC_ID) {
        let again =
            facegate::sync::open(&facegate::sync::seal(&state, SYNC_KEY), SYNC_KEY, SYNC_ID)
                .expect("a state that opened seals to a message that opens");
        assert_eq!(again, state);
    }
}

/// A manifest chunk as the broker hands it (first byte 0) or a body the target signs (any other
/// first byte), on the topic of chunk 0 of one board: a chunk that opens is sealed and opened
/// again to the same chunk.
pub fn sync_manifest(data: &[u8]) {
    let Some(payload) = signed_payload(data) else {
        return;
    };
    let topic = facegate::sync::manifest::topic("00000000000000aa", 0);
    if let Ok(chunk) = facegate::sync::manifest::open(&payload, SYNC_KEY, &topic) {
        let again = facegate::sync::manifest::open(
            &facegate::sync::manifest::seal(&chunk, SYNC_KEY),
            SYNC_KEY,
            &topic,
        )
        .expect("a chunk that opened seals to a message that opens");
        assert_eq!(again, chunk);
    }
}

/// A message as the broker hands it (first byte 0), or a body signed with the fuzzer's key (any
/// other first byte: the checks behind the signature are reached); `None` for a body that is
/// not text.
fn signed_payload(data: &[u8]) -> Option<Vec<u8>> {
    let (&mode, rest) = data.split_first()?;
    if mode == 0 {
        return Some(rest.to_vec());
    }
    let body = std::str::from_utf8(rest).ok()?;
    Some(facegate::sync::message::sign_body(body, SYNC_KEY))
}
