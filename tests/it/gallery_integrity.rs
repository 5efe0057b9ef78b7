//! The gallery against a hostile or damaged index and against writers killed at random moments:
//! nothing outside the gallery is touched, nothing committed is lost, and `gallery check` says
//! what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{ok, photo, scratch, stderr};
use facegate::store::gallery::Gallery;

fn command(args: &[&str], gallery: &Path) -> Command {
    let mut cmd = crate::common::facegate();
    cmd.args(args).arg("--gallery").arg(gallery);
    cmd
}

fn run(args: &[&str], gallery: &Path) -> Output {
    command(args, gallery).output().expect("run facegate")
}

/// A gallery with Obama (one shot, crop kept) and Biden.
fn two_people(name: &str) -> PathBuf {
    let g = scratch("gi", name).join("gallery");
    ok(&run(
        &["enroll", "--name", "Obama", &photo("obama.jpg")],
        &g,
    ));
    ok(&run(
        &["enroll", "--name", "Biden", &photo("biden.jpg")],
        &g,
    ));
    g
}

fn index(g: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(g.join("gallery.json")).unwrap()).unwrap()
}

fn write_index(g: &Path, index: &serde_json::Value) {
    std::fs::write(
        g.join("gallery.json"),
        serde_json::to_string_pretty(index).unwrap(),
    )
    .unwrap();
}

fn names(g: &Path) -> Vec<String> {
    let mut n: Vec<String> = index(g)["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect();
    n.sort();
    n
}

#[test]
fn index_paths_cannot_reach_outside_the_gallery() {
    let g = two_people("paths");
    let outside = g.parent().unwrap().join("precious.txt");
    let original = index(&g);
    for hostile in [
        outside.to_str().unwrap().to_string(),
        "../precious.txt".to_string(),
        "crops/../../precious.txt".to_string(),
        "crops/p000002-0.png".to_string(), // another person's crop
    ] {
        std::fs::write(&outside, "keep me").unwrap();
        let mut i = original.clone();
        i["people"][0]["crops"][0] = hostile.clone().into();
        write_index(&g, &i);
        for args in [
            &["gallery", "remove", "Obama"][..],
            &["gallery", "reembed"][..],
        ] {
            let out = run(args, &g);
            assert!(
                !out.status.success(),
                "{args:?} accepted crop path {hostile}"
            );
            assert!(
                stderr(&out).contains("not the gallery's own file name"),
                "{}",
                stderr(&out)
            );
        }
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
        assert!(g.join("crops/p000002-0.png").exists());
        let check = run(&["gallery", "check"], &g);
        assert_eq!(check.status.code(), Some(1), "{}", ok(&check));
    }
    write_index(&g, &original);
    ok(&run(&["gallery", "check"], &g));
    // A crop that is missing or no longer a PNG is damage.
    let crop = g.join("crops/p000002-0.png");
    let png = std::fs::read(&crop).unwrap();
    std::fs::write(&crop, b"GIF89a, not a PNG at all").unwrap();
    let check = run(&["gallery", "check"], &g);
    assert_eq!(check.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&check.stdout).contains("is not a PNG file"));
    std::fs::remove_file(&crop).unwrap();
    assert!(!Gallery::check(&g).is_consistent());
    std::fs::write(&crop, png).unwrap();
    assert!(Gallery::check(&g).is_consistent());
}

#[test]
fn a_lost_index_is_refused_never_taken_for_an_empty_gallery() {
    let g = two_people("lost");
    std::fs::remove_file(g.join("gallery.json")).unwrap();
    let before: Vec<_> = std::fs::read_dir(g.join("crops"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let out = run(&["enroll", "--name", "Someone", &photo("obama2.jpg")], &g);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no gallery.json"), "{}", stderr(&out));
    let out = run(&["identify", &photo("obama2.jpg")], &g);
    assert!(stderr(&out).contains("index was deleted or lost"));
    let check = run(&["gallery", "check"], &g);
    assert_eq!(check.status.code(), Some(1));
    for crop in before {
        assert!(crop.exists(), "{} was removed", crop.display());
    }
}

#[test]
fn ids_names_and_next_id_are_validated_on_load() {
    let g = two_people("ids");
    let original = index(&g);
    let mut stale = original.clone();
    stale["next_id"] = 2.into();
    let mut duplicate_id = original.clone();
    duplicate_id["people"][1]["id"] = "p000001".into();
    let mut duplicate_name = original.clone();
    duplicate_name["people"][1]["name"] = "Obama".into();
    let mut bad_id = original.clone();
    bad_id["people"][0]["id"] = "../x".into();
    let mut control = original.clone();
    control["people"][0]["name"] = "A\u{1b}[2J".into();
    let mut huge_dim = original.clone();
    huge_dim["model"]["embedding_dim"] = 4_000_000_000u64.into();
    for (case, i, expected) in [
        ("stale next_id", stale, "not below next_id"),
        ("duplicate id", duplicate_id, "appears twice"),
        ("duplicate name", duplicate_name, "appears twice"),
        ("bad id", bad_id, "not a person id"),
        ("control name", control, "control characters"),
        ("huge dimension", huge_dim, "out of range"),
    ] {
        write_index(&g, &i);
        let out = run(&["enroll", "--name", "Carol", &photo("obama2.jpg")], &g);
        assert!(!out.status.success(), "{case} accepted");
        let err = stderr(&out);
        assert!(err.contains(expected), "{case}: {err}");
        assert!(!err.contains('\x1b'), "{case}: {err:?}");
        assert!(g.join("crops/p000001-0.png").exists());
    }
    write_index(&g, &original);
    assert_eq!(names(&g), ["Biden", "Obama"]);
}

#[test]
fn leftovers_are_reported_then_swept_and_foreign_files_left_alone() {
    let g = two_people("sweep");
    std::fs::write(g.join(".gallery.json.tmp-99999"), "half").unwrap();
    std::fs::write(g.join("crops/p000007-0.png"), "orphan").unwrap();
    std::fs::write(g.join("embeddings-00000099.bin"), "old").unwrap();
    std::fs::write(g.join("notes.txt"), "mine").unwrap();
    std::fs::write(g.join(".notes.txt.tmp-1"), "mine too").unwrap();
    let report = Gallery::check(&g);
    assert!(report.is_consistent(), "{report:?}");
    assert_eq!(report.leftovers.len(), 3, "{report:?}");
    assert_eq!(report.foreign.len(), 2, "{report:?}");
    let out = ok(&run(&["gallery", "check"], &g));
    assert!(
        out.contains("leftover") && out.contains("consistent, 2 people"),
        "{out}"
    );

    ok(&run(&["gallery", "rename", "Biden", "Joe"], &g));
    let report = Gallery::check(&g);
    assert!(report.leftovers.is_empty(), "{report:?}");
    assert_eq!(
        std::fs::read_to_string(g.join("notes.txt")).unwrap(),
        "mine"
    );
    assert!(g.join(".notes.txt.tmp-1").exists());
    assert_eq!(names(&g), ["Joe", "Obama"]);
}

#[test]
fn a_first_enrollment_killed_midway_leaves_a_usable_folder() {
    for point in [
        "mid-write",
        "after-embeddings",
        "after-crops",
        "after-index",
    ] {
        let g = scratch("gi", &format!("first-{point}")).join("gallery");
        let out = command(&["enroll", "--name", "Obama", &photo("obama.jpg")], &g)
            .env("FACEGATE_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point}: did not crash");
        assert!(Gallery::check(&g).is_consistent(), "{point}");
        ok(&run(
            &["enroll", "--name", "Obama", &photo("obama.jpg")],
            &g,
        ));
        assert_eq!(names(&g), ["Obama"], "{point}");
        let report = Gallery::check(&g);
        assert!(
            report.is_consistent() && report.leftovers.is_empty(),
            "{point}: {report:?}"
        );
    }
}

#[test]
fn a_linked_crops_folder_is_never_written_or_swept_through() {
    let g = two_people("link");
    let elsewhere = g.parent().unwrap().join("elsewhere");
    std::fs::rename(g.join("crops"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, g.join("crops")).unwrap();
    std::fs::write(elsewhere.join("p000009-0.png"), "not the gallery's").unwrap();
    for args in [
        &["gallery", "remove", "Obama"][..],
        &["enroll", "--name", "Carol", &photo("obama2.jpg")][..],
    ] {
        let out = run(args, &g);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr(&out).contains("symbolic link"), "{}", stderr(&out));
    }
    assert!(elsewhere.join("p000001-0.png").exists());
    assert!(elsewhere.join("p000009-0.png").exists());
}

#[test]
fn a_missing_gallery_is_an_error_except_for_enroll() {
    let g = scratch("gi", "missing").join("typo");
    for args in [
        &["gallery", "list"][..],
        &["gallery", "check"][..],
        &["identify", &photo("obama.jpg")][..],
    ] {
        let out = run(args, &g);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stderr(&out).contains("no gallery at"), "{}", stderr(&out));
    }
    assert!(!g.exists(), "a read-only command created the gallery");
    ok(&run(
        &["enroll", "--name", "Obama", &photo("obama.jpg")],
        &g,
    ));
    ok(&run(&["gallery", "check"], &g));
}

/// A reproducible pseudo-random sequence (xorshift), so a failing trial can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Where the gallery code can be made to die (`FACEGATE_CRASH_AT`): inside an atomic write, after
/// the crops, after the embeddings file, after the index (before old files are removed).
const CRASH_POINTS: [&str; 4] = [
    "mid-write",
    "after-crops",
    "after-embeddings",
    "after-index",
];

/// Runs `args`, dying at `crash_at` if given, and killed (SIGKILL) after `kill_after` unless it
/// finished first; whether it finished, and successfully.
fn run_and_kill(
    args: &[&str],
    g: &Path,
    crash_at: Option<&str>,
    kill_after: Duration,
) -> Option<bool> {
    let mut cmd = command(args, g);
    if let Some(point) = crash_at {
        cmd.env("FACEGATE_CRASH_AT", point);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status.success());
        }
        if start.elapsed() >= kill_after {
            child.kill().unwrap();
            child.wait().unwrap();
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long `args` takes when left alone.
fn duration_of(args: &[&str], g: &Path) -> Duration {
    let start = Instant::now();
    ok(&run(args, g));
    start.elapsed()
}

/// Kills enroll, remove, rename and reembed `trials` times, half of them at a random moment
/// (SIGKILL) and half at a random one of the gallery's crash points (where the writes happen, which
/// random moments rarely hit): after each, the gallery is consistent, the change happened entirely
/// or not at all, and Obama (committed before the trials) is never lost.
fn crash_trials(name: &str, seed: u64, trials: usize) {
    let g = scratch("gi", name).join("gallery");
    ok(&run(
        &["enroll", "--name", "Obama", &photo("obama.jpg")],
        &g,
    ));
    // Each operation's duration without a kill, to spread kills over its whole run, the writing
    // at its end included.
    let enroll = ["enroll", "--name", "Temp", &photo("biden.jpg")];
    let d_enroll = duration_of(&enroll, &g);
    let d_rename = duration_of(&["gallery", "rename", "Temp", "Temp2"], &g);
    let d_reembed = duration_of(&["gallery", "reembed"], &g);
    let d_remove = duration_of(&["gallery", "remove", "Temp2"], &g);
    let mut rng = Rng(seed);
    let mut died = 0;
    for trial in 0..trials {
        let before = names(&g);
        let has_temp = before.iter().any(|n| n.starts_with("Temp"));
        let temp = if before.contains(&"Temp2".to_string()) {
            "Temp2"
        } else {
            "Temp"
        };
        let other = if temp == "Temp" { "Temp2" } else { "Temp" };
        let (args, took, after): (Vec<&str>, Duration, Vec<String>) = if !has_temp {
            let mut after = before.clone();
            after.push("Temp".into());
            (enroll.to_vec(), d_enroll, after)
        } else {
            match rng.below(3) {
                0 => (
                    vec!["gallery", "rename", temp, other],
                    d_rename,
                    before
                        .iter()
                        .map(|n| {
                            if n == temp {
                                other.to_string()
                            } else {
                                n.clone()
                            }
                        })
                        .collect(),
                ),
                1 => (vec!["gallery", "reembed"], d_reembed, before.clone()),
                _ => (
                    vec!["gallery", "remove", temp],
                    d_remove,
                    before.iter().filter(|n| *n != temp).cloned().collect(),
                ),
            }
        };
        let mut after = after;
        after.sort();
        let (crash_at, kill_after) = if rng.below(2) == 0 {
            (
                Some(CRASH_POINTS[rng.below(4) as usize]),
                Duration::from_secs(120),
            )
        } else {
            (None, took.mul_f64(rng.below(1100) as f64 / 1000.0))
        };
        let finished = run_and_kill(&args, &g, crash_at, kill_after);
        if finished != Some(true) {
            died += 1;
        }
        let report = Gallery::check(&g);
        assert!(
            report.is_consistent(),
            "trial {trial} ({args:?}, crash at {crash_at:?} or killed after {kill_after:?}): {report:?}"
        );
        let now = names(&g);
        match finished {
            Some(true) => assert_eq!(now, after, "trial {trial}: {args:?} succeeded"),
            Some(false) if crash_at.is_none() => {
                panic!("trial {trial}: {args:?} failed without a kill")
            }
            Some(false) | None => assert!(
                now == before || now == after,
                "trial {trial}: {args:?} (crash at {crash_at:?} or killed after {kill_after:?}) left {now:?}, neither {before:?} nor {after:?}"
            ),
        }
        assert!(now.contains(&"Obama".to_string()));
    }
    // Crash points are reached by most operations, whatever the machine's speed.
    assert!(died >= trials / 4, "only {died} of {trials} runs died");
    // The next write sweeps whatever the killed writers left.
    ok(&run(
        &["enroll", "--name", "Final", &photo("obama2.jpg")],
        &g,
    ));
    let report = Gallery::check(&g);
    assert!(
        report.is_consistent() && report.leftovers.is_empty(),
        "{report:?}"
    );
}

#[test]
fn writers_killed_at_random_moments_lose_nothing_committed_a() {
    crash_trials("trials-a", 0x9E37_79B9_7F4A_7C15, 60);
}

#[test]
fn writers_killed_at_random_moments_lose_nothing_committed_b() {
    crash_trials("trials-b", 0xD1B5_4A32_D192_ED03, 60);
}
