//! `facegate watch` end to end: frames built from the test photos, through the real pipeline, to
//! the exact sequence of events.

use crate::common::{facegate, ok, photo, root, scratch};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use image::{imageops, RgbImage};

#[cfg(feature = "mqtt")]
use crate::common::broker::{free_port, Broker};
use crate::common::server::jpeg;

/// A photo shrunk to fit `side` pixels, as a person further from the camera.
fn person(name: &str, side: u32) -> RgbImage {
    let rgb = facegate::imaging::photo::load(photo(name).as_ref())
        .unwrap()
        .rgb;
    let s = side as f32 / rgb.width().max(rgb.height()) as f32;
    imageops::resize(
        &rgb,
        (rgb.width() as f32 * s) as u32,
        (rgb.height() as f32 * s) as u32,
        imageops::FilterType::Triangle,
    )
}

/// The scene, 640x480 frames: Obama walks in and leaves; a stranger (Biden) comes and stays;
/// Obama comes back beside him.
fn scene() -> Vec<RgbImage> {
    let obama = person("obama2.jpg", 320);
    let biden = person("biden.jpg", 320);
    let blank = || RgbImage::from_pixel(640, 480, image::Rgb([96, 96, 96]));
    let mut frames = Vec::new();
    for i in 0..6 {
        let mut f = blank();
        imageops::overlay(&mut f, &obama, 40 + 4 * i, 60);
        frames.push(f);
    }
    frames.extend((0..20).map(|_| blank()));
    for i in 0..12 {
        let mut f = blank();
        imageops::overlay(&mut f, &biden, 310 - i % 3, 80);
        if i >= 6 {
            imageops::overlay(&mut f, &obama, 10, 60);
        }
        frames.push(f);
    }
    frames
}

/// The first `n` frames of the scene as PNG files in `dir/frames`.
fn scene_frames(dir: &Path, n: usize) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for (i, f) in scene().iter().take(n).enumerate() {
        f.save(frames.join(format!("frame{:04}.png", i + 1)))
            .unwrap();
    }
    frames
}

/// Events as "frame:event:name:track", and a check of every line's fields.
fn summarise(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert!(v["ts"].as_f64().unwrap() > 1.7e9, "{line}");
            let score = v["score"].as_f64().unwrap();
            let b = &v["box"];
            let (x, y, w, h) = (
                b["x"].as_i64().unwrap(),
                b["y"].as_i64().unwrap(),
                b["w"].as_i64().unwrap(),
                b["h"].as_i64().unwrap(),
            );
            assert!(
                x >= 0 && y >= 0 && w >= 40 && h >= 40 && x + w <= 640 && y + h <= 480,
                "{line}"
            );
            let name = v["name"].as_str().unwrap_or("-");
            match v["event"].as_str().unwrap() {
                "identified" => assert!(score >= 0.363, "{line}"),
                "unknown" => assert!(score < 0.363 && name == "-", "{line}"),
                _ => {}
            }
            format!(
                "{}:{}:{name}:{}",
                v["frame"],
                v["event"].as_str().unwrap(),
                v["track"]
            )
        })
        .collect()
}

/// The sequence the scene must produce (3 of 5 votes to decide, 15 frames to leave).
const EXPECTED: [&str; 6] = [
    "3:identified:Obama:1",
    "21:left:Obama:1",
    "29:unknown:-:2",
    "35:identified:Obama:3",
    "38:left:-:2",
    "38:left:Obama:3",
];

fn enrolled_gallery(dir: &Path) -> PathBuf {
    let gallery = dir.join("gallery");
    let out = facegate()
        .args(["enroll", "--name", "Obama", "--gallery"])
        .arg(&gallery)
        .arg(photo("obama.jpg"))
        .output()
        .unwrap();
    ok(&out);
    gallery
}

#[test]
fn a_directory_of_frames_gives_one_event_per_visit() {
    let dir = scratch("watch", "frames");
    let gallery = enrolled_gallery(&dir);
    let frames = scene_frames(&dir, usize::MAX);
    let snaps = dir.join("snaps");
    let out = facegate()
        .args(["watch", "--min-face", "40", "--stats", "--gallery"])
        .arg(&gallery)
        .arg("--frames")
        .arg(&frames)
        .arg("--snapshots")
        .arg(&snaps)
        .output()
        .unwrap();
    let stdout = ok(&out);
    assert_eq!(
        summarise(&stdout),
        EXPECTED,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("facegate: stats: ") && stderr.contains("38 frames, 0 dropped"),
        "{stderr}"
    );
    // The motion gate (on by default) changes no event: every frame of the scene either moves
    // or has someone in view, or is the hallway the last visitor just left.
    let ungated = facegate()
        .args(["watch", "--min-face", "40", "--no-motion-gate", "--gallery"])
        .arg(&gallery)
        .arg("--frames")
        .arg(&frames)
        .output()
        .unwrap();
    assert_eq!(summarise(&ok(&ungated)), EXPECTED);
    // One snapshot per identified/unknown event, named in its line, showing the face's box with
    // a margin of a quarter of its size on each side (less where the frame ends).
    let mut saved = 0;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(p) = v["snapshot"].as_str() {
            let img = image::open(p).unwrap();
            let w = v["box"]["w"].as_i64().unwrap();
            assert!(
                (w..=w + 2 * (w / 4)).contains(&(img.width() as i64)),
                "{line}"
            );
            saved += 1;
        }
    }
    assert_eq!(saved, 3);
    assert_eq!(std::fs::read_dir(&snaps).unwrap().count(), 3);
}

#[test]
fn an_mjpeg_stream_on_stdin_gives_the_same_events_and_survives_a_bad_frame() {
    let dir = scratch("watch", "mjpeg");
    let gallery = enrolled_gallery(&dir);
    let mut stream = Vec::new();
    for (i, f) in scene().iter().enumerate() {
        let mut data = jpeg(f);
        if i == 10 {
            // A frame cut short, then the stream goes on (an empty frame: no events lost).
            data.truncate(data.len() / 2);
            data.extend_from_slice(&[0xFF, 0xD9]);
        }
        stream.extend_from_slice(&data);
    }
    let mut child = facegate()
        .args(["watch", "--min-face", "40", "--mjpeg", "-", "--gallery"])
        .arg(&gallery)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&stream));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(summarise(&stdout), EXPECTED, "{stderr}");
    assert!(stderr.contains("skipped stdin: frame 11: "), "{stderr}");
    assert!(
        stderr.contains("37 frames, 0 dropped, 1 unreadable"),
        "{stderr}"
    );
}

/// Frames broken off by the start of the next image: that image is read whole, not the EXIF
/// thumbnail inside it. (The splitter used to scan on for a start marker, found the thumbnail's,
/// cut the thumbnail out as the frame and lost the image.)
#[test]
fn after_a_frame_broken_off_by_the_next_image_that_image_is_read_whole() {
    let dir = scratch("watch", "mjpeg-resync");
    let gallery = enrolled_gallery(&dir);
    // A small grey thumbnail in an EXIF APP1 segment, as cameras embed one.
    let thumbnail = jpeg(&RgbImage::from_pixel(64, 48, image::Rgb([90, 90, 90])));
    let with_thumbnail = |frame: &RgbImage| {
        let data = jpeg(frame);
        let mut v = data[..2].to_vec();
        v.extend_from_slice(&[0xFF, 0xE1]);
        v.extend_from_slice(&((2 + 6 + thumbnail.len()) as u16).to_be_bytes());
        v.extend_from_slice(b"Exif\0\0");
        v.extend_from_slice(&thumbnail);
        v.extend_from_slice(&data[2..]);
        v
    };
    let frames = scene();
    let mut stream = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        if i > 0 {
            // The start of an image and one segment, then the next image begins.
            stream.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00]);
        }
        stream.extend_from_slice(&with_thumbnail(f));
    }
    let file = dir.join("camera.mjpeg");
    std::fs::write(&file, &stream).unwrap();
    let out = facegate()
        .args(["watch", "--min-face", "40", "--mjpeg"])
        .arg(&file)
        .arg("--gallery")
        .arg(&gallery)
        .output()
        .unwrap();
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The same events in the same order (the broken frames count in the frame numbers, so those
    // differ from EXPECTED's).
    let without_frame = |events: Vec<String>| -> Vec<String> {
        events
            .iter()
            .map(|e| {
                e.split_once(':')
                    .map_or(e.clone(), |(_, rest)| rest.to_string())
            })
            .collect()
    };
    assert_eq!(
        without_frame(summarise(&stdout)),
        without_frame(EXPECTED.iter().map(|e| e.to_string()).collect()),
        "{stderr}"
    );
    let counts = format!(
        "{} frames, 0 dropped, {} unreadable",
        frames.len(),
        frames.len() - 1
    );
    assert!(stderr.contains(&counts), "{stderr}");
}

#[test]
fn missing_sources_are_clear_errors() {
    let dir = scratch("watch", "errors");
    let gallery = dir.join("gallery");
    // A mistyped gallery is an error too (watch cannot enroll anyone into a new one).
    let out = facegate()
        .arg("watch")
        .arg("--gallery")
        .arg(&gallery)
        .args(["--frames", "/nonexistent/frames"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no gallery at"));
    std::fs::create_dir_all(&gallery).unwrap();
    let models = root().join("models");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--frames", "/nonexistent/frames"],
            "cannot read frame directory /nonexistent/frames",
        ),
        (
            &["--mjpeg", "/nonexistent/cam.mjpeg"],
            "cannot open MJPEG stream /nonexistent/cam.mjpeg",
        ),
        (&["--camera", "250"], "cannot open camera 250"),
        (
            &["--frames", models.to_str().unwrap()],
            "holds no .jpg, .jpeg or .png files",
        ),
    ];
    for (args, message) in cases {
        let out = facegate()
            .arg("watch")
            .arg("--gallery")
            .arg(&gallery)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains(message) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }
}

#[cfg(feature = "mqtt")]
#[test]
fn events_are_published_to_an_mqtt_broker() {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let dir = scratch("watch", "mqtt");
    let gallery = enrolled_gallery(&dir);
    // Obama's visit only: identified, then left at the end of the stream.
    let frames = scene_frames(&dir, 8);
    let port = free_port();
    let _broker = Broker::start(port);
    let (client, mut connection) =
        Client::new(MqttOptions::new("facegate-test", "127.0.0.1", port), 10);
    client.subscribe("door/events", QoS::AtLeastOnce).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for n in connection.iter() {
            match n {
                Ok(Event::Incoming(Packet::SubAck(_))) => tx.send(None).unwrap(),
                Ok(Event::Incoming(Packet::Publish(p))) => tx
                    .send(Some(String::from_utf8(p.payload.to_vec()).unwrap()))
                    .unwrap(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    assert_eq!(
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
        None,
        "subscribed"
    );
    let out = facegate()
        .args([
            "watch",
            "--min-face",
            "40",
            "--mqtt-topic",
            "door/events",
            "--gallery",
        ])
        .arg(&gallery)
        .arg("--frames")
        .arg(&frames)
        .arg("--mqtt")
        .arg(format!("mqtt://127.0.0.1:{port}"))
        .output()
        .unwrap();
    let stdout = ok(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        summarise(&stdout),
        ["3:identified:Obama:1", "8:left:Obama:1"]
    );
    let received: Vec<String> = (0..lines.len())
        .map(|_| {
            rx.recv_timeout(std::time::Duration::from_secs(10))
                .unwrap()
                .unwrap()
        })
        .collect();
    assert_eq!(received, lines);
}

#[cfg(feature = "mqtt")]
#[test]
fn an_unreachable_broker_does_not_stop_watching() {
    let dir = scratch("watch", "nobroker");
    let gallery = enrolled_gallery(&dir);
    let frames = scene_frames(&dir, 4);
    let out = facegate()
        .args(["watch", "--min-face", "40", "--gallery"])
        .arg(&gallery)
        .arg("--frames")
        .arg(&frames)
        .arg("--mqtt")
        .arg(format!("mqtt://127.0.0.1:{}", free_port()))
        .output()
        .unwrap();
    let stdout = ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        summarise(&stdout),
        ["3:identified:Obama:1", "4:left:Obama:1"]
    );
    assert!(
        stderr.contains("warning: MQTT broker 127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("queued events were not delivered"),
        "{stderr}"
    );
}

#[test]
fn sigterm_finishes_the_frame_reports_who_left_and_exits_zero() {
    use std::io::{BufRead, BufReader};
    let dir = scratch("watch", "sigterm");
    let gallery = enrolled_gallery(&dir);
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let obama = &scene()[0];
    for i in 0..200 {
        obama
            .save(frames.join(format!("frame{:04}.png", i + 1)))
            .unwrap();
    }
    // Paced like a camera at 20 fps: 10 s of frames, interrupted after the first event.
    let mut child = facegate()
        .args(["watch", "--min-face", "40", "--fps", "20", "--gallery"])
        .arg(&gallery)
        .arg("--frames")
        .arg(&frames)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("\"event\":\"identified\""), "{first}");
    let killed = Command::new("sh")
        // The shell's own `kill`: /bin/kill is not on every minimal system.
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .unwrap();
    assert!(killed.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert!(
        rest[0].contains("\"event\":\"left\"") && rest[0].contains("\"name\":\"Obama\""),
        "{rest:?}"
    );
    let frame: u64 = serde_json::from_str::<serde_json::Value>(&rest[0]).unwrap()["frame"]
        .as_u64()
        .unwrap();
    assert!(frame < 150, "stopped at frame {frame}, long before the end");
}

#[test]
fn a_config_file_sets_defaults_and_flags_override_it() {
    let dir = scratch("watch", "config");
    let gallery = enrolled_gallery(&dir);
    let frames = scene_frames(&dir, 8);
    let config = dir.join("facegate.toml");
    std::fs::write(
        &config,
        format!(
            "# the door\ngallery = {:?}\nframes = {:?}\nmin_face = 40\nconfirm = 3\nstats = true\n",
            gallery.to_str().unwrap(),
            frames.to_str().unwrap()
        ),
    )
    .unwrap();
    let out = facegate()
        .arg("watch")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        summarise(&ok(&out)),
        ["3:identified:Obama:1", "8:left:Obama:1"]
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("facegate: stats: "));
    // A flag beats the file; a source on the command line replaces the file's source.
    let out = facegate()
        .args(["watch", "--confirm", "2", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        summarise(&ok(&out)),
        ["2:identified:Obama:1", "8:left:Obama:1"]
    );
    let out = facegate()
        .arg("watch")
        .arg("--config")
        .arg(&config)
        .args(["--mjpeg", "/nonexistent/s.mjpeg"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot open MJPEG stream /nonexistent/s.mjpeg"));

    for (text, message) in [
        ("galery = \"x\"\n", "unknown setting `galery`"),
        ("camera = [1]\n", "`camera` must be a string or a number"),
        ("camera = \n", "is not valid TOML"),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = facegate()
            .arg("watch")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("config file {}", config.display()))
                && stderr.contains(message),
            "{stderr}"
        );
    }
}

/// Zones: with one on the right of the frame only the stranger standing there is seen (Obama,
/// on the left, is never identified); a zone whose smallest face is larger than any face sees
/// nobody; a bad zone is an error naming it.
#[test]
fn faces_outside_every_zone_are_not_seen() {
    let dir = scratch("watch", "zones");
    let gallery = enrolled_gallery(&dir);
    let frames = scene_frames(&dir, usize::MAX);
    let watch = |zone: &str| {
        facegate()
            .args(["watch", "--min-face", "40", "--no-unknowns", "--gallery"])
            .arg(&gallery)
            .arg("--frames")
            .arg(&frames)
            .args(["--zone", zone])
            .output()
            .unwrap()
    };
    let right = summarise(&ok(&watch("right=0.5,0 1,0 1,1 0.5,1")));
    assert!(!right.iter().any(|e| e.contains("Obama")), "{right:?}");
    assert!(
        right.iter().any(|e| e.contains(":unknown:")),
        "the stranger on the right is seen: {right:?}"
    );
    // A small zone is scanned alone (the detector sees a crop of the frame): boxes come back in
    // the frame's coordinates, and Obama on the left is identified there.
    let left = summarise(&ok(&watch("0.1,0.2 0.3,0.2 0.3,0.6 0.1,0.6")));
    assert!(
        left.iter().any(|e| e.contains(":identified:Obama:")),
        "{left:?}"
    );
    assert!(!left.iter().any(|e| e.contains(":unknown:")), "{left:?}");
    let nobody = ok(&watch("0,0 1,0 1,1 0,1 min=600"));
    assert_eq!(nobody, "", "no face is 600 px wide");
    let bad = watch("0,0 1,0 2,2");
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains("fraction of the frame"), "{stderr}");
}

/// An empty hallway with sensor noise: after the first frames the detector looks only at the
/// safety net's frames (counted, not timed); without the gate it looks at every frame.
#[test]
fn a_still_hallway_is_not_detected_after_warm_up() {
    use facegate::support::rng::Rng;
    let dir = scratch("watch", "motion");
    let gallery = enrolled_gallery(&dir);
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let mut rng = Rng::new(9);
    for i in 0..120 {
        let f = RgbImage::from_fn(640, 480, |x, y| {
            let noise = (rng.next_u64() % 9) as i32 - 4;
            let v = (90 + (x / 8) as i32 / 2 + (y / 16) as i32 + noise).clamp(0, 255) as u8;
            image::Rgb([v, v, v])
        });
        f.save(frames.join(format!("frame{i:04}.png"))).unwrap();
    }
    let detected = |gate: &[&str]| {
        let out = facegate()
            .args(["watch", "--gallery"])
            .arg(&gallery)
            .arg("--frames")
            .arg(&frames)
            .args(gate)
            .output()
            .unwrap();
        assert_eq!(ok(&out), "", "nobody is there");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let n = stderr
            .split("unreadable, ")
            .nth(1)
            .and_then(|r| r.split(" detected").next())
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{stderr}"));
        n
    };
    // Three frames while the background forms, then one in 50.
    assert_eq!(detected(&[]), 5);
    assert_eq!(detected(&["--motion-every", "20"]), 3 + 5);
    assert_eq!(detected(&["--no-motion-gate"]), 120);
}
