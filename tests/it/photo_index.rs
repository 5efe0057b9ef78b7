//! `facegate index` and `facegate search` on a small collection made of the fixture photos:
//! the same person is found and strangers are not, a second run reads only what changed, and a
//! damaged, foreign, locked or half-written index is an error that names it, with nothing lost.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::{ok, photo, run, run_facegate, scratch, stderr};

/// `photos/` with Obama twice (one in a subfolder), Biden, Messi, a corrupt JPEG and a text file.
fn collection(dir: &Path) -> PathBuf {
    let photos = dir.join("photos");
    fs::create_dir_all(photos.join("2024/summer")).unwrap();
    for (name, to) in [
        ("obama.jpg", "obama.jpg"),
        ("obama2.jpg", "2024/summer/obama2.jpg"),
        ("biden.jpg", "biden.jpg"),
        ("messi5.jpg", "2024/messi5.JPG"),
    ] {
        fs::copy(photo(name), photos.join(to)).unwrap();
    }
    fs::write(
        photos.join("broken.jpg"),
        b"\xff\xd8\xff\xe0 not really a jpeg",
    )
    .unwrap();
    fs::write(photos.join("notes.txt"), "not a photo").unwrap();
    fs::canonicalize(photos).unwrap()
}

fn index(index: &Path, photos: &Path) -> String {
    ok(&run(&[
        "index",
        "--index",
        index.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]))
}

/// `search --json` for one query: the result images and scores.
fn search(index: &Path, extra: &[&str]) -> Vec<(String, f64)> {
    let mut args = vec!["search", "--index", index.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = ok(&run(&args));
    let line: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    line["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["w"].as_i64().unwrap() > 0 && r["x"].is_i64(), "{r}");
            (
                r["image"].as_str().unwrap().to_string(),
                r["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn names(results: &[(String, f64)]) -> Vec<String> {
    results
        .iter()
        .map(|(p, _)| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn search_finds_the_person_and_not_the_strangers() {
    let dir = scratch("photo-index", "search");
    let photos = collection(&dir);
    let idx = dir.join("index");
    let out = run(&[
        "index",
        "--index",
        idx.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    let said = ok(&out);
    assert!(said.contains("indexed 5 photos"), "{said}");
    assert!(said.contains("1 unreadable"), "{said}");
    assert!(stderr(&out).contains("broken.jpg"), "{}", stderr(&out));

    // A photo of the collection: its own face is left out, the other Obama photo is found, the
    // strangers are below the threshold.
    let obama = photos.join("obama.jpg");
    let found = search(&idx, &[obama.to_str().unwrap()]);
    assert_eq!(names(&found), ["obama2.jpg"], "{found:?}");
    assert!(found[0].1 >= 0.363);

    // The same photo from outside the collection is embedded afresh and finds its copy first.
    let found = search(&idx, &[&photo("obama.jpg")]);
    assert_eq!(names(&found), ["obama.jpg", "obama2.jpg"], "{found:?}");
    assert!(found[0].1 > 0.99, "{found:?}");

    // With no threshold every face is listed, best first, at most --top.
    let found = search(
        &idx,
        &["--threshold", "-1", "--top", "3", obama.to_str().unwrap()],
    );
    assert_eq!(found.len(), 3);
    assert!(found.windows(2).all(|w| w[0].1 >= w[1].1), "{found:?}");

    // An enrolled person, by name.
    let g = dir.join("gallery");
    ok(&run(&[
        "enroll",
        "--gallery",
        g.to_str().unwrap(),
        "--name",
        "Barack",
        &photo("obama2.jpg"),
    ]));
    let found = search(&idx, &["--gallery", g.to_str().unwrap(), "Barack"]);
    assert_eq!(names(&found), ["obama2.jpg", "obama.jpg"], "{found:?}");

    // Every face of a photo with --all-faces: one line per face, each with its box.
    let out = ok(&run(&[
        "search",
        "--index",
        idx.to_str().unwrap(),
        "--json",
        "--all-faces",
        &photo("faceapi-sample3.jpg"),
    ]));
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines.iter().all(|l| l["face"]["w"].as_i64().unwrap() > 0),
        "{out}"
    );

    // A contact sheet: the query and its result, inlined.
    let html = dir.join("sheet.html");
    ok(&run(&[
        "search",
        "--index",
        idx.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
        obama.to_str().unwrap(),
    ]));
    let page = fs::read_to_string(&html).unwrap();
    assert_eq!(
        page.matches("data:image/jpeg;base64,").count(),
        2,
        "query and one result"
    );
    assert!(page.contains("obama2.jpg"));

    // Queries that are neither a photo nor a name, or have no face, are errors naming them.
    let out = run(&["search", "--index", idx.to_str().unwrap(), "Nobody"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("Nobody") && stderr(&out).contains("--gallery"),
        "{}",
        stderr(&out)
    );
    let out = run(&[
        "search",
        "--index",
        idx.to_str().unwrap(),
        photos.join("broken.jpg").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("broken.jpg"), "{}", stderr(&out));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_second_run_reads_only_new_and_changed_photos_and_drops_removed_ones() {
    let dir = scratch("photo-index", "incremental");
    let photos = collection(&dir);
    let idx = dir.join("index");
    index(&idx, &photos);
    // Nothing changed; the corrupt photo is tried again (a larger --max-pixels may fix such).
    let said = index(&idx, &photos);
    assert!(
        said.contains("indexed 1 photos") && said.contains("1 unreadable"),
        "{said}"
    );
    let data = |idx: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(idx)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    fs::remove_file(photos.join("broken.jpg")).unwrap();
    let out = run(&[
        "index",
        "--index",
        idx.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("4 photos found: 4 already indexed, 0 to index, 1 removed"),
        "{}",
        stderr(&out)
    );
    let settled = data(&idx);
    let said = index(&idx, &photos);
    assert!(
        said.contains("nothing new to index; the index holds 4 photos"),
        "{said}"
    );
    assert_eq!(
        data(&idx),
        settled,
        "an unchanged collection writes nothing"
    );

    // obama2.jpg now holds Biden: re-read, and no longer found for Obama. messi5 is removed.
    let obama = photos.join("obama.jpg");
    assert_eq!(
        names(&search(&idx, &[obama.to_str().unwrap()])),
        ["obama2.jpg"]
    );
    fs::copy(photo("biden.jpg"), photos.join("2024/summer/obama2.jpg")).unwrap();
    fs::remove_file(photos.join("2024/messi5.JPG")).unwrap();
    let out = run(&[
        "index",
        "--index",
        idx.to_str().unwrap(),
        photos.to_str().unwrap(),
    ]);
    assert!(
        stderr(&out).contains("3 photos found: 2 already indexed, 1 to index, 1 removed"),
        "{}",
        stderr(&out)
    );
    assert!(search(&idx, &[obama.to_str().unwrap()]).is_empty());

    // Another folder adds to the index; the first folder's photos stay.
    let more = dir.join("more");
    fs::create_dir_all(&more).unwrap();
    fs::copy(photo("obama2.jpg"), more.join("again.png.jpg")).unwrap();
    let said = index(&idx, &more);
    assert!(said.contains("the index holds 4 photos"), "{said}");
    assert_eq!(
        names(&search(&idx, &[obama.to_str().unwrap()])),
        ["again.png.jpg"]
    );
    // Only one generation of data is left, and no temporary files.
    let files = data(&idx);
    assert_eq!(
        files.iter().filter(|f| f.starts_with("faces-")).count(),
        1,
        "{files:?}"
    );
    assert!(!files.iter().any(|f| f.contains(".tmp-")), "{files:?}");
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn damaged_foreign_or_locked_indexes_are_errors_and_nothing_is_lost() {
    let dir = scratch("photo-index", "hostile");
    let photos = collection(&dir);
    let idx = dir.join("index");
    index(&idx, &photos);
    let obama = photos.join("obama.jpg");
    let query = [
        "search",
        "--index",
        idx.to_str().unwrap(),
        obama.to_str().unwrap(),
    ];
    let index_json = idx.join("index.json");
    let text = fs::read_to_string(&index_json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let data = idx.join(v["data_file"].as_str().unwrap());
    let bytes = fs::read(&data).unwrap();

    let fails = |args: &[&str], words: &[&str]| {
        let out = run(args);
        assert!(!out.status.success());
        let e = stderr(&out);
        assert!(!e.contains("panicked"), "{e}");
        for w in words {
            assert!(e.contains(w), "expected '{w}' in: {e}");
        }
    };
    // A flipped byte, a truncated file.
    let mut flipped = bytes.clone();
    let at = flipped.len() - 7;
    flipped[at] ^= 0x40;
    fs::write(&data, &flipped).unwrap();
    fails(&query, &["faces-", "sha256"]);
    fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    fails(&query, &["faces-", "bytes, the index says"]);
    // `index` refuses to build on a damaged index rather than replace it.
    fails(
        &[
            "index",
            "--index",
            idx.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
        &["faces-"],
    );
    fs::write(&data, &bytes).unwrap();

    // An index.json naming a file outside the folder, or not JSON at all.
    fs::write(
        &index_json,
        text.replace(v["data_file"].as_str().unwrap(), "../../etc/passwd"),
    )
    .unwrap();
    fails(&query, &["index.json", "not one facegate writes"]);
    fs::write(&index_json, "{ not json").unwrap();
    fails(&query, &["index.json", "not a facegate photo index"]);
    // Another model's index: neither extended with this model nor searched with a new photo.
    fs::write(
        &index_json,
        text.replace("sface-2021dec-int8w", "other-model")
            .replace("\"d3523d", "\"aaaaaa"),
    )
    .unwrap();
    fails(
        &[
            "index",
            "--index",
            idx.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
        &["other-model", "--rebuild"],
    );
    fails(
        &[
            "search",
            "--index",
            idx.to_str().unwrap(),
            &photo("obama.jpg"),
        ],
        &["other-model"],
    );
    fs::write(&index_json, &text).unwrap();
    assert_eq!(
        names(&search(&idx, &[obama.to_str().unwrap()])),
        ["obama2.jpg"],
        "intact again"
    );

    // A folder with data but no index.json is not taken for an empty index.
    fs::remove_file(&index_json).unwrap();
    fails(
        &[
            "index",
            "--index",
            idx.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
        &["index.json", "is missing"],
    );
    fs::write(&index_json, &text).unwrap();

    // A second writer is refused while the first holds the lock.
    let lock = fs::OpenOptions::new()
        .write(true)
        .open(idx.join(".lock"))
        .unwrap();
    lock.lock().unwrap();
    fails(
        &[
            "index",
            "--index",
            idx.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
        &["another facegate is writing"],
    );
    drop(lock);

    // A writer killed half-way through its write leaves the previous index whole.
    fs::copy(photo("biden.jpg"), photos.join("obama.jpg.copy.jpg")).unwrap();
    let out = run_facegate(
        &[
            "index",
            "--index",
            idx.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
        &[("FACEGATE_CRASH_AT", "mid-write")],
    );
    assert!(!out.status.success());
    assert_eq!(fs::read_to_string(&index_json).unwrap(), text);
    assert_eq!(
        names(&search(&idx, &[obama.to_str().unwrap()])),
        ["obama2.jpg"]
    );
    let said = index(&idx, &photos);
    assert!(said.contains("indexed 2 photos"), "{said}");
    assert!(!fs::read_dir(&idx).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp-")));
    let _ = fs::remove_dir_all(&dir);
}
