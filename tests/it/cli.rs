//! The `facegate detect` command line as other tools see it: output shapes, exit codes, messages.

use crate::common::{photo, run, scratch};
use std::path::Path;

#[test]
fn json_is_one_line_per_image_in_the_contract_shape() {
    let a = photo("messi5.jpg");
    let b = photo("astronaut.png");
    let out = run(&["detect", "--json", &a, &b]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2);
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    // Key order is part of the contract: image, width, height, faces; each face x, y, w, h.
    assert!(lines[0].starts_with(&format!(
        "{{\"image\":\"{a}\",\"width\":548,\"height\":342,\"faces\":["
    )));
    assert_eq!(first["faces"].as_array().unwrap().len(), 2);
    assert!(
        lines[1].contains("\"faces\":[{\"x\":177,\"y\":66,\"w\":95,\"h\":95}]"),
        "{}",
        lines[1]
    );
}

#[test]
fn parameters_change_the_search() {
    let a = photo("astronaut.png");
    let raw = run(&["detect", "--json", "--min-neighbors", "0", &a]);
    let raw: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    // OpenCV 4.6 finds 47 raw windows here (tests/fixtures/opencv_reference.json).
    assert_eq!(raw["faces"].as_array().unwrap().len(), 47);
    let big_only = run(&["detect", "--json", "--min-size", "120", &a]);
    let big_only: serde_json::Value = serde_json::from_slice(&big_only.stdout).unwrap();
    assert!(big_only["faces"].as_array().unwrap().is_empty());
}

#[test]
fn bad_images_are_named_and_the_rest_still_processed() {
    let dir = scratch("cli", "bad");
    let truncated = dir.join("truncated.jpg");
    let full = std::fs::read(photo("messi5.jpg")).unwrap();
    std::fs::write(&truncated, &full[..full.len() / 2]).unwrap();
    let text = dir.join("notes.jpg");
    std::fs::write(&text, "not a picture").unwrap();
    let missing = dir.join("missing.png");
    let good = photo("messi5.jpg");
    let args = [
        "detect",
        "--json",
        truncated.to_str().unwrap(),
        &good,
        text.to_str().unwrap(),
        missing.to_str().unwrap(),
    ];
    let out = run(&args);
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        1,
        "only the good image is reported: {stdout}"
    );
    assert!(stdout.contains("messi5.jpg"));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for (file, why) in [
        (&truncated, "truncated or corrupt JPEG"),
        (&text, "not a JPEG or PNG file"),
        (&missing, "No such file"),
    ] {
        let line = stderr
            .lines()
            .find(|l| l.contains(file.to_str().unwrap()))
            .unwrap_or_else(|| panic!("no message names {}: {stderr}", file.display()));
        assert!(line.contains(why), "{line}");
    }
}

#[test]
fn draw_writes_annotated_pngs() {
    let dir = scratch("cli", "draw");
    let out = run(&[
        "detect",
        "--draw",
        dir.to_str().unwrap(),
        &photo("messi5.jpg"),
    ]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 faces"));
    let png = image::open(dir.join("messi5.png")).unwrap().to_rgb8();
    assert_eq!(png.dimensions(), (548, 342));
    // The box outline is drawn in pure green on the first face's top edge.
    assert_eq!(png.get_pixel(230, 94).0, [0, 255, 0]);
}

#[test]
fn broken_cascade_and_bad_parameters_are_clear_errors() {
    let dir = scratch("cli", "cascade");
    let cascade = dir.join("broken.xml");
    std::fs::write(&cascade, "<opencv_storage><cascade>").unwrap();
    let out = run(&[
        "detect",
        "--cascade",
        cascade.to_str().unwrap(),
        &photo("messi5.jpg"),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot load cascade {}", cascade.display())),
        "{stderr}"
    );

    let out = run(&["detect", "--scale-factor", "1.0", &photo("messi5.jpg")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--scale-factor") && stderr.contains("out of range"),
        "{stderr}"
    );
}

#[test]
fn shipped_cascades_load() {
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for name in [
        "haarcascade_frontalface_default.xml",
        "haarcascade_frontalface_alt2.xml",
        "lbpcascade_frontalface_improved.xml",
    ] {
        let out = run(&[
            "detect",
            "--cascade",
            models.join(name).to_str().unwrap(),
            &photo("messi5.jpg"),
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn help_lists_what_a_user_does_and_one_bench_command() {
    let out = run(&["--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for command in [
        "detect", "enroll", "identify", "verify", "gallery", "watch", "serve", "bench",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} missing from:\n{help}"
        );
    }
    assert!(!help.contains("bench-"), "{help}");
    let bench = run(&["bench", "--help"]);
    let bench = String::from_utf8(bench.stdout).unwrap();
    for what in ["board", "detect", "embed", "match", "watch"] {
        assert!(
            bench.lines().any(|l| l.trim_start().starts_with(what)),
            "{bench}"
        );
    }
}

/// `bench latency` on a short stream: every visit gets its decision, the enrolled visitor's open
/// the door and the stranger's do not, and both runs (gate off and on) say what they cost.
#[test]
fn bench_latency_times_every_visit_with_and_without_the_gate() {
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos");
    let out = run(&[
        "bench",
        "latency",
        "--photos",
        photos.to_str().unwrap(),
        "--fps",
        "10",
        "--visits",
        "3",
        "--hallway",
        "6",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (run, gate) in lines[..2].iter().zip([false, true]) {
        assert_eq!(run["motion_gate"], gate, "{run}");
        assert_eq!(run["decided"], 3, "every visit decided: {run}");
        assert_eq!(
            run["door_actions"], 2,
            "the two visits of the enrolled: {run}"
        );
        assert!(
            run["first_face_to_decision"]["p95_s"].as_f64().unwrap() > 0.0,
            "{run}"
        );
        assert!(
            run["cpu_s_per_min_empty_hallway"].as_f64().is_some(),
            "{run}"
        );
    }
    let (off, on) = (&lines[0]["frames_detected"], &lines[1]["frames_detected"]);
    assert!(on.as_u64().unwrap() < off.as_u64().unwrap(), "{off} {on}");
    assert!(
        lines[2]["gate_on_vs_off"]["cpu_empty_hallway"].is_number(),
        "{text}"
    );
}

/// `bench board` on a few frames: every row of the table is there with a number, f16 agrees
/// with f32, and `watch`'s memory comes from a real child process (tens of MiB, not this test's).
#[test]
fn bench_board_prints_one_table_of_this_machine() {
    let photos = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/photos");
    let out = run(&[
        "bench",
        "board",
        "--photos",
        photos.to_str().unwrap(),
        "--frames",
        "3",
        "--repeat",
        "1",
    ]);
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: std::collections::BTreeMap<String, String> = table
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().trim_matches('|').split('|').collect();
            (cells.len() == 2).then(|| (cells[0].trim().into(), cells[1].trim().into()))
        })
        .collect();
    let number = |key: &str| -> f64 {
        let value = rows
            .iter()
            .find(|(k, _)| k.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} row in:\n{table}"))
            .1;
        value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key}: {value}"))
    };
    for key in [
        "embed, f32",
        "embed, f16",
        "match one face",
        "detect, Haar",
        "landmarks",
        "decode a 640x480 MJPEG frame",
    ] {
        assert!(number(key) > 0.0, "{key}");
    }
    assert!(number("watch, one face, 1 core") > 0.0);
    let f16 = &rows["embed, f16 (ms per face, 1 thread)"];
    let cos: f64 = f16.split("cosine to f32: ").nth(1).unwrap()[..7]
        .parse()
        .unwrap();
    assert!(cos >= 0.999, "{f16}");
    let mib = number("watch peak resident memory");
    assert!((20.0..200.0).contains(&mib), "watch peak {mib} MiB");
}

/// A board without the test photos is told what to copy.
#[test]
fn bench_board_without_photos_says_what_to_copy() {
    let out = run(&["bench", "board", "--photos", "/nonexistent-photos"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tests/fixtures/photos"), "{err}");
}
