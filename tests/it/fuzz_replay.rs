//! Every stored fuzzing input, run through the same target code the fuzzers ran (tests/fuzz/): the
//! seeds, the minimised corpus each fuzzer grew, and every input that once crashed facegate
//! (tests/fuzz/regressions/), so a fixed crash stays fixed. CI runs this; a real fuzzing run needs
//! cargo-fuzz (tests/fuzz/README.md).

#[path = "../fuzz/targets.rs"]
mod targets;

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut count = 0;
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(base.join(kind).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        for file in files {
            let data = std::fs::read(&file).unwrap();
            // A panic names the input that caused it.
            eprintln!("replaying {}", file.display());
            run(&data);
            count += 1;
        }
    }
    assert!(count > 0, "no stored inputs for {target}");
}

#[test]
fn image_decode() {
    replay("image_decode", targets::image_decode);
}

#[test]
fn mjpeg_split() {
    replay("mjpeg_split", targets::mjpeg_split);
}

#[test]
fn cascade_xml() {
    replay("cascade_xml", targets::cascade_xml);
}

#[test]
fn model_card() {
    replay("model_card", targets::model_card);
}

#[test]
fn gallery_reader() {
    replay("gallery_reader", targets::gallery_reader);
}

#[test]
fn settings_toml() {
    replay("settings_toml", targets::settings_toml);
}

#[test]
fn photo_index_data() {
    replay("photo_index_data", targets::photo_index_data);
}

#[test]
fn sync_message() {
    replay("sync_message", targets::sync_message);
}

#[test]
fn sync_manifest() {
    replay("sync_manifest", targets::sync_manifest);
}
