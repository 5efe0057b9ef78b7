//! Faces the cascade cannot reach: cut by the photo's edge (someone stepping into the view) or
//! filling a tight crop. The recognition commands find them through the edge pass (YuNet where
//! the cascade's window does not fit); `--no-edge-pass` shows they were missed before.

use std::path::Path;

use crate::common::{ok, photo, run, scratch};

/// The faces `identify --json` reports for `image`: (x, y, w, h, name).
fn identify(
    gallery: &Path,
    image: &Path,
    extra: &[&str],
) -> Vec<(i64, i64, i64, i64, Option<String>)> {
    let mut args = vec!["identify", "--json", "--gallery", gallery.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(image.to_str().unwrap());
    let out = ok(&run(&args));
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    v["faces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let n = |k: &str| f[k].as_i64().unwrap();
            (
                n("x"),
                n("y"),
                n("w"),
                n("h"),
                f["name"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// A gallery in `dir` with Obama enrolled from obama.jpg.
fn obama_gallery(dir: &Path) -> std::path::PathBuf {
    let g = dir.join("gallery");
    ok(&run(&[
        "enroll",
        "--name",
        "Obama",
        "--gallery",
        g.to_str().unwrap(),
        &photo("obama.jpg"),
    ]));
    g
}

#[test]
fn faces_cut_by_the_edge_or_filling_the_photo_are_found_and_named() {
    let dir = scratch("edge", "crops");
    let g = obama_gallery(&dir);
    let original = Path::new(&photo("obama2.jpg")).to_path_buf();
    let (x, y, w, h, name) = identify(&g, &original, &[]).remove(0);
    assert_eq!(name.as_deref(), Some("Obama"));
    let img = facegate::imaging::photo::load(&original).unwrap().rgb;
    let (iw, ih) = (img.width() as i64, img.height() as i64);
    // A quarter of the face outside the photo, on each side; and the face filling the photo.
    let cut = |x0: i64, y0: i64, x1: i64, y1: i64| {
        image::imageops::crop_imm(
            &img,
            x0 as u32,
            y0 as u32,
            (x1 - x0) as u32,
            (y1 - y0) as u32,
        )
        .to_image()
    };
    let crops = [
        ("left", cut(x + w / 4, 0, iw, ih)),
        ("right", cut(0, 0, x + 3 * w / 4, ih)),
        ("top", cut(0, y + h / 4, iw, ih)),
        ("fill", cut(x, y, x + w, y + h)),
    ];
    for (side, crop) in crops {
        let path = dir.join(format!("{side}.png"));
        crop.save(&path).unwrap();
        let found = identify(&g, &path, &[]);
        assert_eq!(found.len(), 1, "{side}: {found:?}");
        let (fx, fy, fw, fh, name) = &found[0];
        assert_eq!(name.as_deref(), Some("Obama"), "{side}: {found:?}");
        assert!(
            *fx >= 0 && *fy >= 0,
            "{side}: the box is clipped to the photo"
        );
        assert!(
            fx + fw <= crop.width() as i64 && fy + fh <= crop.height() as i64,
            "{side}"
        );
        if side != "fill" {
            assert!(
                identify(&g, &path, &["--no-edge-pass"]).is_empty(),
                "{side}: the cascade alone misses it"
            );
        }
    }
}

#[test]
fn someone_half_in_the_doorway_is_identified_live() {
    let dir = scratch("edge", "live");
    let g = obama_gallery(&dir);
    // Obama at the left edge of a 640x480 frame, a good part of his face outside it.
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..15 {
        crate::common::server::frame_with(&photo("obama2.jpg"), 560, -118 + (i % 3), 0)
            .save(frames.join(format!("f{i:02}.png")))
            .unwrap();
    }
    let watch = |extra: &[&str]| {
        let mut args = vec![
            "watch",
            "--gallery",
            g.to_str().unwrap(),
            "--frames",
            frames.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        ok(&run(&args))
    };
    let events = watch(&[]);
    let first: serde_json::Value =
        serde_json::from_str(events.lines().next().expect("an event")).unwrap();
    assert_eq!(
        (first["event"].as_str(), first["name"].as_str()),
        (Some("identified"), Some("Obama")),
        "{events}"
    );
    assert_eq!(
        first["box"]["x"], 0,
        "the box starts at the frame's edge: {events}"
    );
    assert!(
        watch(&["--no-edge-pass"]).trim().is_empty(),
        "the cascade alone sees nobody"
    );
}
