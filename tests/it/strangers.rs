//! Recurring strangers: `watch` groups unknown faces across visits (one `unknown_id` per
//! stranger), `facegate unknowns` lists them and enrolls one from their shots, after which the
//! same face is identified by name.

use std::path::Path;

use crate::common::server::{blank, frame_with};
use crate::common::{ok, photo, run_facegate, scratch};

/// One visit: the photo in front of the camera for 6 frames, then 20 empty frames (gone).
fn visit(name: &str) -> Vec<image::RgbImage> {
    let mut frames: Vec<_> = (0..6)
        .map(|i| frame_with(&photo(name), 400, 40 + 3 * i, 20))
        .collect();
    frames.extend((0..20).map(|_| blank()));
    frames
}

fn frames(dir: &Path, visits: &[&str]) -> std::path::PathBuf {
    let d = dir.join("frames");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let all: Vec<_> = visits.iter().flat_map(|v| visit(v)).collect();
    for (i, f) in all.iter().enumerate() {
        f.save(d.join(format!("{i:05}.png"))).unwrap();
    }
    d
}

/// `(event, name, unknown_id)` of each event line.
fn events(stdout: &str) -> Vec<(String, Option<String>, Option<String>)> {
    stdout
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().map(str::to_string);
            (s("event").unwrap(), s("name"), s("unknown_id"))
        })
        .collect()
}

#[test]
fn the_same_stranger_keeps_one_id_and_can_be_enrolled_from_the_visits() {
    let dir = scratch("strangers", "enroll");
    let g = dir.join("gallery");
    std::fs::create_dir_all(&g).unwrap();
    let f = frames(&dir, &["obama.jpg", "biden.jpg", "obama2.jpg"]);
    let watch = |f: &Path, extra: &[&str]| {
        let mut args = vec![
            "watch",
            "--frames",
            f.to_str().unwrap(),
            "--gallery",
            g.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        events(&ok(&run_facegate(&args, &[])))
    };
    let seen = watch(&f, &[]);
    let unknown: Vec<String> = seen
        .iter()
        .filter(|e| e.0 == "unknown")
        .map(|e| e.2.clone().expect("every unknown event has an unknown_id"))
        .collect();
    assert_eq!(unknown.len(), 3, "{seen:?}");
    assert_eq!(unknown[0], unknown[2], "Obama twice: one stranger");
    assert_ne!(unknown[0], unknown[1], "Biden is another");
    assert!(
        seen.iter().all(|e| e.0 == "unknown" || e.2.is_none()),
        "{seen:?}"
    );

    let gallery = g.to_str().unwrap();
    let list = ok(&run_facegate(
        &["unknowns", "list", "--json", "--gallery", gallery],
        &[],
    ));
    let listed: Vec<serde_json::Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{list}");
    let obama = listed
        .iter()
        .find(|c| c["id"] == unknown[0].as_str())
        .unwrap();
    assert_eq!(obama["visits"], 2);
    assert_eq!(obama["shots"].as_array().unwrap().len(), 2);
    let show = ok(&run_facegate(
        &["unknowns", "show", &unknown[0], "--gallery", gallery],
        &[],
    ));
    assert!(show.contains("2 visits"), "{show}");

    let said = ok(&run_facegate(
        &[
            "unknowns",
            "enroll",
            &unknown[0],
            "--name",
            "Barack",
            "--gallery",
            gallery,
        ],
        &[],
    ));
    assert!(
        said.contains("enrolled Barack") && said.contains("2 shots"),
        "{said}"
    );
    let list = ok(&run_facegate(
        &["unknowns", "list", "--json", "--gallery", gallery],
        &[],
    ));
    assert_eq!(
        list.lines().count(),
        1,
        "the enrolled stranger is no longer a stranger: {list}"
    );
    let gallery_list = ok(&run_facegate(
        &["gallery", "list", "--gallery", gallery],
        &[],
    ));
    assert!(gallery_list.contains("Barack"), "{gallery_list}");
    let check = run_facegate(&["gallery", "check", "--gallery", gallery], &[]);
    assert!(check.status.success(), "{}", crate::common::stderr(&check));

    // Now he is known; Biden is still the same stranger.
    let f = frames(&dir, &["obama2.jpg", "biden.jpg"]);
    let seen = watch(&f, &[]);
    assert_eq!(seen[0].0, "identified");
    assert_eq!(seen[0].1.as_deref(), Some("Barack"));
    let biden = seen.iter().find(|e| e.0 == "unknown").unwrap();
    assert_eq!(biden.2.as_deref(), Some(unknown[1].as_str()));

    // Forgotten, and with --no-unknowns nothing is kept.
    ok(&run_facegate(
        &["unknowns", "forget", &unknown[1], "--gallery", gallery],
        &[],
    ));
    let bad = run_facegate(
        &[
            "unknowns",
            "enroll",
            &unknown[1],
            "--name",
            "Joe",
            "--gallery",
            gallery,
        ],
        &[],
    );
    assert!(!bad.status.success());
    assert!(
        crate::common::stderr(&bad).contains("unknowns list"),
        "{}",
        crate::common::stderr(&bad)
    );
    let seen = watch(&f, &["--no-unknowns"]);
    assert!(seen.iter().all(|e| e.2.is_none()), "{seen:?}");
    let list = ok(&run_facegate(
        &["unknowns", "list", "--json", "--gallery", gallery],
        &[],
    ));
    assert!(list.is_empty(), "{list}");
    let _ = std::fs::remove_dir_all(&dir);
}
