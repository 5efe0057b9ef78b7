//! "This is not NAME": `facegate gallery reject NAME IMAGE` keeps the face as a negative example
//! of NAME, and matching then refuses NAME for faces closer to a negative than to NAME's shots.
//! A lowered threshold makes a stranger (Biden) match Obama, as happens with lookalikes.

use crate::common::{ok, photo, scratch, stderr};

fn facegate(args: &[&str], gallery: &std::path::Path) -> std::process::Output {
    crate::common::facegate()
        .args(args)
        .arg("--gallery")
        .arg(gallery)
        .output()
        .unwrap()
}

/// The name `identify --json` gives the largest face of `image`, at a threshold low enough
/// that Biden passes for Obama.
fn named(gallery: &std::path::Path, image: &str) -> Option<String> {
    let out = ok(&facegate(
        &["identify", "--json", "--threshold", "0.05", &photo(image)],
        gallery,
    ));
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    v["faces"][0]["name"].as_str().map(str::to_string)
}

#[test]
fn a_rejected_face_is_never_taken_for_that_person_again() {
    let dir = scratch("reject", "basic");
    let g = dir.join("gallery");
    ok(&facegate(
        &["enroll", "--name", "Obama", &photo("obama.jpg")],
        &g,
    ));
    assert_eq!(
        named(&g, "biden.jpg").as_deref(),
        Some("Obama"),
        "the lookalike is accepted"
    );

    let out = facegate(&["gallery", "reject", "Obama", &photo("biden.jpg")], &g);
    let said = ok(&out);
    assert!(
        said.contains("not Obama") && said.contains("1 negative"),
        "{said}"
    );
    assert_eq!(named(&g, "biden.jpg"), None, "refused once rejected");
    assert_eq!(
        named(&g, "obama2.jpg").as_deref(),
        Some("Obama"),
        "Obama himself still is"
    );

    let list = ok(&facegate(&["gallery", "list"], &g));
    assert!(list.contains("1 negative"), "{list}");

    // Negatives follow the person through a rename and a re-embedding.
    ok(&facegate(&["gallery", "rename", "Obama", "Barack"], &g));
    assert_eq!(named(&g, "biden.jpg"), None);
    ok(&facegate(&["gallery", "reembed"], &g));
    assert_eq!(named(&g, "biden.jpg"), None);
    assert_eq!(named(&g, "obama2.jpg").as_deref(), Some("Barack"));
    let check = facegate(&["gallery", "check"], &g);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    // Refused inputs are clear errors and change nothing.
    let out = facegate(&["gallery", "reject", "Nobody", &photo("biden.jpg")], &g);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nobody named 'Nobody'"),
        "{}",
        stderr(&out)
    );
    let out = facegate(
        &["gallery", "reject", "Barack", &photo("../../../Cargo.toml")],
        &g,
    );
    assert!(!out.status.success());
    assert_eq!(named(&g, "biden.jpg"), None);

    // Removing the person removes the negative's crop with the rest.
    ok(&facegate(&["gallery", "remove", "Barack"], &g));
    let left: Vec<_> = std::fs::read_dir(g.join("crops")).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
}
