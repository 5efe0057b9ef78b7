//! Hostile and unlucky input through the command line: every way in has a limit, and hitting it is
//! a message naming the input and the problem, never a panic, an abort, a hang or a flood.
//! (The gallery's own defences are in tests/it/gallery_integrity.rs.)

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{photo, run, scratch, stderr};

/// Fails with a message holding every one of `needles`, and no panic.
fn refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "not a clean failure: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
}

/// obama.jpg with the frame size in its SOF header replaced: a file whose header claims
/// `w` x `h` pixels (what a 10 MB JPEG of 30000x30000 does, without the 10 MB).
fn jpeg_claiming(w: u16, h: u16) -> Vec<u8> {
    let mut jpeg = std::fs::read(photo("obama.jpg")).unwrap();
    // Walk the segments: an EXIF thumbnail inside APP1 has a SOF marker of its own.
    let mut sof = 2;
    while !matches!(jpeg[sof + 1], 0xC0..=0xC2) {
        sof += 2 + u16::from_be_bytes([jpeg[sof + 2], jpeg[sof + 3]]) as usize;
    }
    jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    jpeg
}

#[test]
fn oversized_images_are_refused_from_their_header() {
    let dir = scratch("hard", "pixels");
    let huge = dir.join("huge.jpg");
    std::fs::write(&huge, jpeg_claiming(30000, 30000)).unwrap();
    let huge_s = huge.to_str().unwrap();
    let out = run(&["detect", huge_s, &photo("obama.jpg")]);
    refused(&out, &[huge_s, "30000x30000", "--max-pixels"]);
    // The other photo is still processed.
    assert!(String::from_utf8_lossy(&out.stdout).contains("obama.jpg"));

    // PNG: a real image over a lowered limit, then under a raised one.
    let out = run(&["detect", "--max-pixels", "1000", &photo("astronaut.png")]);
    refused(&out, &["astronaut.png", "more than the limit of 1000"]);
    let out = run(&["detect", "--max-pixels", "300000", &photo("astronaut.png")]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Recognition commands go through the same decoder.
    let out = run(&["verify", huge_s, &photo("obama.jpg")]);
    refused(&out, &[huge_s, "30000x30000"]);
}

#[test]
fn an_mjpeg_stream_of_broken_frames_stays_quiet_and_small() {
    // 20 MB of bare start-of-image markers: once 631 MB of memory and a warning line per frame.
    let markers: Vec<u8> = [0xFF, 0xD8].repeat(10 << 20);
    let gallery = scratch("hard", "mjpeg").join("gallery");
    std::fs::create_dir_all(&gallery).unwrap();
    let mut child = crate::common::facegate()
        .args(["watch", "--mjpeg", "-", "--gallery"])
        .arg(&gallery)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&markers);
        // A huge frame claim last: refused from the header, not decoded.
        let _ = stdin.write_all(&jpeg_claiming(30000, 30000));
    });
    // Peak resident memory, read while it runs (the kernel's high-water mark, VmHWM).
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    let stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut { stderr_pipe }, &mut s).unwrap();
        s
    });
    while child.try_wait().unwrap().is_none() {
        if let Ok(text) = std::fs::read_to_string(&status) {
            if let Some(kb) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                peak_kb = peak_kb.max(kb);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let err = reader.join().unwrap();
    assert!(out.status.success(), "{err}");
    // The models take about 100 MB; reasons for 10 million broken frames kept in memory took 631.
    assert!(peak_kb > 0 && peak_kb < 300_000, "peak {peak_kb} kB");
    let lines = err.lines().count();
    assert!(lines < 40, "{lines} lines of warnings:\n{err}");
    assert!(err.contains("unreadable"), "{err}");
}

#[test]
fn hostile_cascades_are_refused_by_name() {
    let dir = scratch("hard", "cascade");
    let tiny = std::fs::read_to_string(format!(
        "{}/tests/fixtures/tilted_test_cascade.xml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("deep.xml", "<a>".repeat(2_000_000), "nest more than"),
        (
            "wide.xml",
            format!(
                "<opencv_storage {}/>",
                (0..200_000)
                    .map(|i| format!("a{i}=\"\" "))
                    .collect::<String>()
            ),
            "attributes",
        ),
        (
            "entities.xml",
            format!("<!DOCTYPE x [<!ENTITY a \"aaaa\">]>{tiny}"),
            "not allowed",
        ),
        ("binary.xml", "\u{0}\u{1}".repeat(10), "not valid XML"),
    ];
    for (name, text, expected) in cases {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let p = path.to_str().unwrap();
        let out = run(&["detect", "--cascade", p, &photo("obama.jpg")]);
        refused(&out, &[p, expected]);
    }
    let big = dir.join("big.xml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(17 << 20).unwrap();
    let out = run(&[
        "detect",
        "--cascade",
        big.to_str().unwrap(),
        &photo("obama.jpg"),
    ]);
    refused(&out, &["big.xml", "too large for a cascade XML"]);
}

#[test]
fn model_cards_are_checked_value_by_value() {
    let dir = scratch("hard", "card");
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let card = std::fs::read_to_string(models.join("sface_int8w.json")).unwrap();
    std::fs::copy(
        models.join("sface_int8w.onnx"),
        dir.join("sface_int8w.onnx"),
    )
    .unwrap();
    let cases = [
        ("\"cosine\": 0.363", "\"cosine\": 7.5", "not a cosine"),
        ("\"width\": 112", "\"width\": 4000000000", "out of range"),
        (
            "\"embedding_dim\": 128",
            "\"embedding_dim\": 0",
            "out of range",
        ),
        (
            "\"std\": [1.0, 1.0, 1.0]",
            "\"std\": [1.0, 0.0, 1.0]",
            "std",
        ),
        ("[38.2946, 51.6963]", "[-3800.0, 51.6963]", "outside"),
        ("\"form\": \"qdq\"", "\"form\": \"\\u001b[2J\"", "\\x1b[2J"),
    ];
    for (from, to, expected) in cases {
        assert!(card.contains(from), "{from}");
        let path = dir.join("card.json");
        std::fs::write(&path, card.replace(from, to)).unwrap();
        let p = path.to_str().unwrap();
        let out = run(&[
            "verify",
            "--model",
            p,
            &photo("obama.jpg"),
            &photo("obama2.jpg"),
        ]);
        refused(&out, &["card.json", expected]);
        assert!(!stderr(&out).contains('\x1b'), "{}", stderr(&out));
    }
    let big = dir.join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let out = run(&["verify", "--model", big.to_str().unwrap(), "a.jpg", "b.jpg"]);
    refused(&out, &["big.json", "too large for a model card"]);
}

/// facegate links a trimmed tract-onnx (vendor/): a model made with an operator it
/// left out is refused by the operator's name, before tract builds anything.
#[test]
fn a_model_using_an_operator_this_build_lacks_is_refused_by_name() {
    let dir = scratch("hard", "operator");
    // The shipped model with its one Flatten node renamed to another real ONNX operator of the
    // same length (so the protobuf stays well formed), with a card whose sha256 matches the new
    // bytes; `verify` with it.
    let verify_with = |op: &[u8; 7]| {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let mut onnx = std::fs::read(models.join("sface_int8w.onnx")).unwrap();
        let original = facegate::embed::model_card::sha256_hex(&onnx);
        let at = onnx.windows(7).position(|w| w == b"Flatten").unwrap();
        onnx[at..at + 7].copy_from_slice(op);
        std::fs::write(dir.join("sface_int8w.onnx"), &onnx).unwrap();
        let card = std::fs::read_to_string(models.join("sface_int8w.json")).unwrap();
        let card = card.replace(&original, &facegate::embed::model_card::sha256_hex(&onnx));
        let path = dir.join("card.json");
        std::fs::write(&path, card).unwrap();
        run(&[
            "verify",
            "--model",
            path.to_str().unwrap(),
            &photo("obama.jpg"),
            &photo("obama2.jpg"),
        ])
    };
    refused(
        &verify_with(b"Hardmax"),
        &[
            "sface_int8w.onnx",
            "does not include: Hardmax (1 node)",
            "Conv",
            "vendor/README.md",
        ],
    );
    // An operator of common CNN exports that a default build leaves out: the error names the
    // feature that adds it.
    if !cfg!(feature = "onnx-extra-ops") {
        refused(
            &verify_with(b"Softmax"),
            &[
                "sface_int8w.onnx",
                "does not include: Softmax (1 node)",
                "--features onnx-extra-ops",
            ],
        );
    }
}

#[test]
fn numeric_flags_and_settings_are_range_checked() {
    let a = photo("obama.jpg");
    for (flag, value) in [
        ("--scale-factor", "1.000001"),
        ("--scale-factor", "NaN"),
        ("--min-neighbors", "4294967295"),
        ("--threads", "100000"),
        ("--max-pixels", "0"),
    ] {
        let out = run(&["detect", flag, value, &a]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{flag} {value}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("out of range") || stderr(&out).contains("not a"));
    }
    let out = run(&["identify", "--threshold", "2", &a]);
    assert!(stderr(&out).contains("out of range"), "{}", stderr(&out));
    let out = run(&["watch", "--frames", ".", "--window", "1000000"]);
    assert!(stderr(&out).contains("out of range"), "{}", stderr(&out));

    // A config file's values go through the same checks, and its size is bounded.
    let dir = scratch("hard", "config");
    let config = dir.join("watch.toml");
    std::fs::write(&config, "confirm = 0\nframes = \".\"\n").unwrap();
    let out = run(&["watch", "--config", config.to_str().unwrap()]);
    assert!(stderr(&out).contains("out of range"), "{}", stderr(&out));
    std::fs::File::create(&config)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let out = run(&["watch", "--config", config.to_str().unwrap()]);
    refused(&out, &["watch.toml", "too large"]);
}

#[test]
fn a_named_pipe_is_refused_instead_of_waited_on() {
    let dir = scratch("hard", "fifo");
    let fifo = dir.join("photo.jpg");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mkfifo is not available");
        return;
    }
    let out = run(&["detect", fifo.to_str().unwrap()]);
    refused(&out, &["photo.jpg", "not a regular file"]);
}

#[test]
fn control_characters_in_names_and_paths_are_escaped() {
    let dir = scratch("hard", "terminal");
    let sneaky = dir.join("\x1b]0;owned\x07\x1b[2J.jpg");
    std::fs::write(&sneaky, b"not an image").unwrap();
    let out = run(&["detect", sneaky.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!err.contains('\x1b') && !err.contains('\x07'), "{err:?}");
    assert!(err.contains("\\x1b]0;owned\\x07\\x1b[2J.jpg"), "{err}");
}
