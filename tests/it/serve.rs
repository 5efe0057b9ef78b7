//! `facegate serve` end to end: a real server on a loopback port, frames on its MJPEG input,
//! the API driven over HTTP: enroll, recognise, events on SSE and in the SQLite history,
//! snapshots, corrections, gallery edits; and the defences (token, rate limit, size limits).

use std::io::Read;

use crate::common::server::{blank, call, frame_with, multipart, wait_for, Server};
use crate::common::{photo, scratch};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(photo(name)).unwrap()
}

/// Someone in view for `n` frames, then `gone` empty frames (they leave after 15).
fn visit(name: &str, n: usize, gone: usize) -> Vec<image::RgbImage> {
    // Close to the camera, as at a door: the face is large enough to enroll from a snapshot.
    let mut frames: Vec<_> = (0..n)
        .map(|i| frame_with(&photo(name), 560, 20 + 2 * i as i64, 0))
        .collect();
    frames.extend((0..gone).map(|_| blank()));
    frames
}

#[test]
fn the_api_enrolls_recognizes_records_and_corrects() {
    let dir = scratch("serve", "api");
    let mut s = Server::start(
        &dir.join("state"),
        &dir.join("gallery"),
        &["--camera-name", "Front door"],
    );
    assert_eq!(
        s.token.len(),
        32,
        "a 128-bit token is generated: {}",
        s.log()
    );
    assert!(s.log().contains(&s.token), "the new token is printed once");
    let live = s.events();

    // The access rules once bound "Obama" to a person since removed.
    std::fs::create_dir_all(dir.join("gallery")).unwrap();
    std::fs::write(
        dir.join("gallery/access-bindings.json"),
        r#"{"format_version":1,"names":{"Obama":{"id":"p000099","since_unix":1}}}"#,
    )
    .unwrap();

    // Who is who: enroll through the API from two photos. The answer says that the rules do not
    // grant this new Obama.
    let (kind, body) = multipart(&[
        ("name", None, b"Obama"),
        ("photo", Some("obama.jpg"), &read("obama.jpg")),
        ("photo", Some("obama2.jpg"), &read("obama2.jpg")),
    ]);
    let r = s.send("POST", "/api/v1/people", &kind, &body);
    assert_eq!(r.status, 201, "{}", r.text());
    let obama = r.json();
    assert_eq!(obama["name"], "Obama");
    assert_eq!(obama["shots"], 2);
    assert!(
        obama["warnings"][0]
            .as_str()
            .unwrap_or("")
            .contains("bound to another person (p000099)"),
        "{obama}"
    );
    let id = obama["id"].as_str().unwrap().to_string();
    let shot = s.get(obama["shot_urls"][0].as_str().unwrap());
    assert_eq!((shot.status, shot.kind.as_str()), (200, "image/png"));
    assert_eq!(
        s.get("/api/v1/people").json()["people"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A photo with a face that is not one shot: the reason names the photo.
    let (kind, body) = multipart(&[
        ("name", None, b"Nobody"),
        ("photo", Some("blank.png"), &png(&blank())),
    ]);
    let r = s.send("POST", "/api/v1/people", &kind, &body);
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("photo 1 (blank.png): no face found"),
        "{}",
        r.text()
    );
    let (kind, body) = multipart(&[
        ("name", None, b"Obama"),
        ("photo", Some("a.jpg"), &read("obama.jpg")),
    ]);
    assert_eq!(s.send("POST", "/api/v1/people", &kind, &body).status, 409);

    // Still photos.
    let r = s.send(
        "POST",
        "/api/v1/recognize",
        "image/jpeg",
        &read("obama2.jpg"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let face = &r.json()["faces"][0];
    assert_eq!(face["name"], "Obama");
    assert_eq!(face["known"], true);
    assert!(face["score"].as_f64().unwrap() >= 0.363);
    assert_eq!(face["landmarks"].as_array().unwrap().len(), 5);
    let r = s.send(
        "POST",
        "/api/v1/recognize",
        "image/jpeg",
        &read("biden.jpg"),
    );
    assert_eq!(r.json()["faces"][0]["name"], serde_json::Value::Null);
    assert_eq!(r.json()["faces"][0]["known"], false);
    let r = s.send(
        "POST",
        "/api/v1/detect",
        "image/png",
        &png(&frame_with(&photo("obama.jpg"), 320, 10, 10)),
    );
    assert_eq!(
        r.json()["faces"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );
    let (kind, body) = multipart(&[
        ("a", Some("a.jpg"), &read("obama.jpg")),
        ("b", Some("b.jpg"), &read("obama2.jpg")),
    ]);
    assert_eq!(
        s.send("POST", "/api/v1/verify", &kind, &body).json()["same"],
        true
    );
    let (kind, body) = multipart(&[
        ("a", Some("a.jpg"), &read("obama.jpg")),
        ("b", Some("b.jpg"), &read("biden.jpg")),
    ]);
    assert_eq!(
        s.send("POST", "/api/v1/verify", &kind, &body).json()["same"],
        false
    );

    // The live pipeline saw the enrollment without a restart: Obama walks past the camera.
    s.feed(&visit("obama2.jpg", 8, 20));
    let seen = wait_for(&live, "identified", |e| e["event"] == "identified");
    assert_eq!(seen["name"], "Obama");
    wait_for(&live, "left", |e| e["event"] == "left");
    let snapshot = seen["snapshot"]
        .as_str()
        .expect("identified events have a snapshot");
    let jpeg = s.get(snapshot);
    assert_eq!((jpeg.status, jpeg.kind.as_str()), (200, "image/jpeg"));
    let face = facegate::imaging::photo::decode(&jpeg.body).unwrap();
    assert!(face.width() as i64 >= seen["box"]["w"].as_i64().unwrap());
    let frame = s.get("/api/v1/snapshot.jpg");
    assert_eq!(
        facegate::imaging::photo::decode(&frame.body)
            .unwrap()
            .width(),
        640
    );

    // The same events, in the history, filtered.
    let history = s.get("/api/v1/events?person=Obama").json();
    let stored: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(stored, ["left", "identified"]);
    assert_eq!(history["events"][0]["camera"], "Front door", "{history}");
    // However the name is typed.
    let typed = s.get("/api/v1/events?person=obama").json();
    assert_eq!(typed["events"], history["events"], "{typed}");
    assert_eq!(
        s.get("/api/v1/events?unknown=true").json()["events"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let page = s.get("/api/v1/events?limit=1").json();
    assert_eq!(page["events"].as_array().unwrap().len(), 1);
    assert!(page["next_before"].is_i64());

    // "That is not Obama" is stored and shown.
    let eid = seen["id"].as_i64().unwrap();
    let r = s.json(
        "POST",
        &format!("/api/v1/events/{eid}/correction"),
        serde_json::json!({"same": false}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["event"]["correction"]["name"], "Obama");
    assert_eq!(
        r.json()["person"]["negatives"],
        1,
        "the face is now a negative of Obama"
    );
    // Obama's shots look like this face: the answer says which, most alike first, since while
    // such a shot stays a negative alone may not keep the name off faces like it.
    let suspects = r.json()["person"]["suspects"].clone();
    let cosines: Vec<f64> = suspects
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["cosine"].as_f64().unwrap())
        .collect();
    assert!(
        !cosines.is_empty() && cosines.windows(2).all(|w| w[0] >= w[1]) && cosines[0] >= 0.363,
        "{suspects}"
    );
    let first = suspects[0]["shot"].as_u64().unwrap();
    assert!(
        r.json()["person"]["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with(&format!("shot {} (cosine", first + 1)),
        "{}",
        r.text()
    );
    assert_eq!(
        s.get(&format!("/api/v1/events/{eid}")).json()["correction"]["same"],
        false
    );

    // A stranger stays: unknown; "this is Biden" enrolls him from the snapshot.
    s.feed(&visit("biden.jpg", 8, 0));
    let stranger = wait_for(&live, "unknown", |e| e["event"] == "unknown");
    let r = s.json(
        "POST",
        &format!("/api/v1/events/{}/correction", stranger["id"]),
        serde_json::json!({"name": "Biden", "same": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let biden = r.json()["person"].clone();
    assert_eq!(
        (biden["name"].as_str(), biden["shots"].as_i64()),
        (Some("Biden"), Some(1))
    );
    // "This is Biden" on Obama's event: the consistency check of "Add shot" refuses a face that is
    // not Biden's, as it refuses an uploaded photo (it used to be added without a word).
    let r = s.json(
        "POST",
        &format!("/api/v1/events/{eid}/correction"),
        serde_json::json!({"name": "Biden", "same": true}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains(&format!(
            "the snapshot of event {eid} cannot be a shot of Biden"
        )),
        "{}",
        r.text()
    );
    // Within a second the pipeline knows him: the same track is now identified.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    s.feed(&visit("biden.jpg", 4, 0));
    let known = wait_for(&live, "identified Biden", |e| e["event"] == "identified");
    assert_eq!(known["name"], "Biden");

    // Edits: rename, add a shot, drop it, remove.
    let bid = biden["id"].as_str().unwrap();
    let r = s.json(
        "PATCH",
        &format!("/api/v1/people/{bid}"),
        serde_json::json!({"name": "Joe"}),
    );
    assert_eq!(r.json()["name"], "Joe");
    let r = s.json(
        "PATCH",
        &format!("/api/v1/people/{bid}"),
        serde_json::json!({"name": "Obama"}),
    );
    assert_eq!(r.status, 409);
    let r = s.send(
        "POST",
        &format!("/api/v1/people/{bid}/shots"),
        "image/jpeg",
        &read("biden.jpg"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["shots"], 2);
    let r = s.send(
        "POST",
        &format!("/api/v1/people/{id}/shots"),
        "image/jpeg",
        &read("biden.jpg"),
    );
    assert_eq!(r.status, 400, "a shot of someone else is refused");
    assert!(r.text().contains("does not look like"), "{}", r.text());
    let r = s.delete(&format!("/api/v1/people/{bid}/shots/0"));
    assert_eq!(r.json()["shots"], 1);
    assert_eq!(
        s.delete(&format!("/api/v1/people/{bid}/shots/0")).status,
        400,
        "the last shot stays"
    );
    assert_eq!(s.delete(&format!("/api/v1/people/{bid}")).status, 204);
    assert_eq!(s.get(&format!("/api/v1/people/{bid}")).status, 404);

    let status = s.get("/api/v1/status").json();
    assert_eq!(status["gallery"]["people"], 1, "{status}");
    assert!(
        status["model"]["name"]
            .as_str()
            .unwrap()
            .starts_with("sface"),
        "{status}"
    );
    assert_eq!(
        status["live"]["frames"], 40,
        "every frame fed was recognised"
    );
    let metrics = s.get("/metrics");
    assert!(
        metrics
            .text()
            .contains("facegate_events_total{event=\"identified\"} 2"),
        "{}",
        metrics.text()
    );
    assert!(s
        .get("/api/v1/openapi.yaml")
        .text()
        .contains("openapi: 3.0"));

    // The history outlives the process.
    let log = s.stop();
    assert!(!log.contains("panicked"), "{log}");
    let s = Server::start(&dir.join("state"), &dir.join("gallery"), &[]);
    let again = s.get("/api/v1/events?limit=500").json();
    assert!(again["events"].as_array().unwrap().len() >= 5, "{again}");
    assert_eq!(s.get(snapshot).status, 200);
}

fn png(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn without_the_token_nothing_but_health_answers_and_guessing_is_limited() {
    let dir = scratch("serve", "auth");
    let s = Server::start(&dir.join("state"), &dir.join("gallery"), &[]);
    let health = call("GET", &s.url("/health"), None, None);
    assert_eq!(
        (health.status, health.json()["status"].as_str()),
        (200, Some("ok"))
    );
    for path in [
        "/api/v1/status",
        "/api/v1/people",
        "/api/v1/events",
        "/api/v1/access",
        "/api/v1/events/stream",
        "/api/v1/stream.mjpeg",
        "/api/v1/snapshot.jpg",
        "/metrics",
        "/api/v1/openapi.yaml",
        "/api/v1/events/1/snapshot.jpg",
        "/api/v1/people/p000001/shots/0.png",
    ] {
        let r = call("GET", &s.url(path), None, None);
        assert_eq!(r.status, 401, "{path} without a token");
        assert!(r.json()["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"));
    }
    let r = call(
        "POST",
        &s.url("/api/v1/recognize"),
        None,
        Some(("image/jpeg", b"\xff\xd8\xff")),
    );
    assert_eq!(r.status, 401);
    // The web UI's files hold no data and load without it.
    assert_eq!(call("GET", &s.url("/"), None, None).status, 200);
    assert_eq!(call("GET", &s.url("/ui/app.js"), None, None).status, 200);
    // Stored gzipped: sent as stored to a client that takes gzip, inflated for one that does not.
    for (path, auth, source) in [
        ("/ui/app.js", None, "src/serve/ui/app.js"),
        (
            "/api/v1/openapi.yaml",
            Some(s.bearer()),
            "docs/openapi.yaml",
        ),
    ] {
        let source = std::fs::read(source).unwrap();
        assert_eq!(
            call("GET", &s.url(path), auth.as_deref(), None).body,
            source
        );
        let mut req = ureq::get(&s.url(path)).set("Accept-Encoding", "gzip, br");
        if let Some(a) = &auth {
            req = req.set("Authorization", a);
        }
        let res = req.call().unwrap();
        assert_eq!(res.header("content-encoding"), Some("gzip"), "{path}");
        let mut gz = Vec::new();
        res.into_reader().read_to_end(&mut gz).unwrap();
        assert_eq!(gz[..3], [0x1f, 0x8b, 8], "{path}: a gzip member");
        let inflated = miniz_oxide::inflate::decompress_to_vec(&gz[10..gz.len() - 8]).unwrap();
        assert_eq!(inflated, source, "{path}");
    }

    // The login sets the cookie the UI's images use.
    let r = call(
        "POST",
        &s.url("/api/v1/login"),
        None,
        Some(("application/json", br#"{"token":"nope"}"#)),
    );
    assert_eq!(r.status, 401);
    let body = serde_json::json!({"token": s.token}).to_string();
    let r = call(
        "POST",
        &s.url("/api/v1/login"),
        None,
        Some(("application/json", body.as_bytes())),
    );
    assert_eq!(r.status, 204);
    let cookie = r.cookie.unwrap();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_string();
    let res = ureq::get(&s.url("/api/v1/status"))
        .set("Cookie", &session)
        .call()
        .unwrap();
    assert_eq!(res.status(), 200);
    // Forgery from another origin of the same site (a page on another port of the board's
    // address) with the owner's cookie is refused; the board's own pages, and scripts with the
    // bearer token, are not. (A correction of an event that does not exist: 404 when let through.)
    let post = |origin: Option<&str>, site: Option<&str>, bearer: bool| {
        let mut r = ureq::post(&s.url("/api/v1/events/999999/correction"))
            .set("Content-Type", "application/json");
        r = if bearer {
            r.set("Authorization", &format!("Bearer {}", s.token))
        } else {
            r.set("Cookie", &session)
        };
        if let Some(o) = origin {
            r = r.set("Origin", o);
        }
        if let Some(site) = site {
            r = r.set("Sec-Fetch-Site", site);
        }
        match r.send_string("{\"same\": false}") {
            Ok(res) => res.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        }
    };
    let other_port = "http://127.0.0.1:1";
    assert_eq!(post(Some(other_port), None, false), 403);
    assert_eq!(post(Some(other_port), Some("same-site"), false), 403);
    assert_eq!(post(None, Some("cross-site"), false), 403);
    assert_eq!(post(Some(&s.base), Some("same-origin"), false), 404);
    assert_eq!(post(Some(&s.base), None, false), 404);
    assert_eq!(post(Some(other_port), Some("cross-site"), true), 404);
    let out = call("POST", &s.url("/api/v1/logout"), None, None);
    assert_eq!(out.status, 204, "a stale cookie can always be dropped");
    assert!(out.cookie.unwrap().contains("Max-Age=0"));

    // Guessing: ten wrong tokens a minute, then wrong ones are refused from there without being
    // checked, while the right token still works (the owner is not locked out by a guesser at the
    // same address, such as everyone behind one reverse proxy).
    let mut statuses = Vec::new();
    for i in 0..12 {
        let r = call(
            "GET",
            &s.url("/api/v1/status"),
            Some(&format!("Bearer wrong{i}")),
            None,
        );
        statuses.push(r.status);
    }
    assert_eq!(&statuses[..9], &[401; 9]);
    assert_eq!(statuses[11], 429);
    assert_eq!(s.get("/api/v1/status").status, 200);
    assert_eq!(
        call(
            "GET",
            &s.url("/api/v1/status"),
            Some("Bearer wrong-again"),
            None
        )
        .status,
        429
    );
    let login = |token: &str| {
        let body = format!("{{\"token\":\"{token}\"}}");
        let body = Some(("application/json", body.as_bytes()));
        call("POST", &s.url("/api/v1/login"), None, body).status
    };
    assert_eq!(login("wrong-again"), 429);
    assert_eq!(login(&s.token), 204);

    // A login needs no token, so its body is bounded on its own: a few KB, not --max-body, and a
    // body that never arrives is given up on after 5 s (held-open logins once took a board to a
    // gigabyte).
    let big = vec![b' '; 16 << 10];
    let body = Some(("application/json", big.as_slice()));
    assert_eq!(
        call("POST", &s.url("/api/v1/login"), None, body).status,
        413
    );
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
        c.write_all(
            b"POST /api/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"tok",
        )
        .unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        // Without the deadline the server would wait for the rest, and the read time out empty.
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert_eq!(call("GET", &s.url("/health"), None, None).status, 200);
    assert!(
        s.log().contains("wrong API token from 127.0.0.1"),
        "{}",
        s.log()
    );
}

#[test]
fn oversized_and_hostile_requests_are_refused_with_reasons() {
    let dir = scratch("serve", "hostile");
    let token_file = dir.join("my-token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef-given\n").unwrap();
    let args = [
        "--max-body",
        "100000",
        "--token-file",
        token_file.to_str().unwrap(),
    ];
    let mut s = Server::start(&dir.join("state"), &dir.join("gallery"), &args);
    s.token = "0123456789abcdef0123456789abcdef-given".into();
    assert!(
        !dir.join("state/token").exists(),
        "a given token file is used, none generated"
    );
    assert_eq!(s.get("/api/v1/status").status, 200);

    // Oversized bodies get their 413 and its reason on the first try, even when the body is
    // far larger than the sockets' buffers (the server reads it away before answering).
    for size in [150_000, 8 << 20] {
        let big = vec![0u8; size];
        let r = s.send_once("POST", "/api/v1/recognize", "image/jpeg", &big);
        assert_eq!(r.status, 413, "{}", r.text());
        assert!(r.text().contains("--max-body"), "{}", r.text());
        let (kind, body) = multipart(&[("name", None, b"X"), ("photo", Some("big.jpg"), &big)]);
        let r = s.send_once("POST", "/api/v1/people", &kind, &body);
        assert_eq!(r.status, 413, "{}", r.text());
    }

    // A decompression bomb: a small file that would decode to 400 MP.
    let bomb = png_bomb(20_000, 20_000);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let r = s.send("POST", "/api/v1/recognize", "image/png", &bomb);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("20000x20000"), "{}", r.text());

    let mut corrupt = read("obama.jpg");
    corrupt.truncate(corrupt.len() / 3);
    corrupt.truncate(90_000);
    let r = s.send("POST", "/api/v1/recognize", "image/jpeg", &corrupt);
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"].as_str().unwrap().starts_with("image: "),
        "{}",
        r.text()
    );
    let r = s.send("POST", "/api/v1/recognize", "text/plain", b"hello");
    assert_eq!(r.status, 415);
    let r = s.send(
        "POST",
        "/api/v1/recognize",
        "image/jpeg",
        b"GIF89a not a jpeg",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("not a JPEG or PNG"), "{}", r.text());

    // Garbage in the other inputs: JSON bodies, form fields, query strings.
    for (method, path, body) in [
        ("PATCH", "/api/v1/people/p000001", &b"{not json"[..]),
        ("POST", "/api/v1/events/1/correction", &b"\xff\xfe"[..]),
        ("POST", "/api/v1/camera/shot", &b"{\"previous\": 5}"[..]),
        ("POST", "/api/v1/login", &b"[]"[..]),
    ] {
        let r = s.send(method, path, "application/json", body);
        assert!(
            matches!(r.status, 400 | 404 | 422),
            "{method} {path}: {} {}",
            r.status,
            r.text()
        );
    }
    let many: Vec<(&str, Option<&str>, &[u8])> =
        (0..40).map(|_| ("name", None, &b"x"[..])).collect();
    let (kind, body) = multipart(&many);
    let r = s.send("POST", "/api/v1/people", &kind, &body);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("too many form fields"), "{}", r.text());
    let long = vec![b'a'; 2000];
    let (kind, body) = multipart(&[("name", None, &long)]);
    assert!(s
        .send("POST", "/api/v1/people", &kind, &body)
        .text()
        .contains("longer than"));
    let r = s.send(
        "POST",
        "/api/v1/people",
        "multipart/form-data; boundary=x",
        b"--x\r\ngarbage",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    for query in [
        "limit=0",
        "limit=501",
        "limit=-1",
        "event=nonsense",
        "before=abc",
    ] {
        let r = s.get(&format!("/api/v1/events?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
    }

    // Names are data, never paths; routes never leave their folders.
    let small = crate::common::server::jpeg(&frame_with(&photo("obama.jpg"), 400, 100, 20));
    let (kind, body) = multipart(&[
        ("name", None, b"../../token"),
        ("photo", Some("../../x.jpg"), &small),
    ]);
    let r = s.send("POST", "/api/v1/people", &kind, &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["name"], "../../token");
    assert!(r.json()["id"].as_str().unwrap().starts_with('p'));
    for path in [
        "/api/v1/events/..%2F..%2Ftoken/snapshot.jpg",
        "/api/v1/people/..%2F..%2Fstate%2Ftoken/shots/0.png",
        "/ui/..%2F..%2FCargo.toml",
        "/api/v1/camera/shots/..%2Ftoken.png",
    ] {
        let r = s.get(path);
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        assert!(!r.text().contains("0123456789abcdef"), "{path}");
    }
    s.feed(&[blank()]);
    let log = s.stop();
    assert!(!log.contains("panicked"), "{log}");
}

/// A PNG header claiming `w`x`h` with almost no data: what a decompression bomb looks like to
/// the header check (the decoder never gets to inflate it).
fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut enc = Vec::new();
    {
        let mut e = png::Encoder::new(&mut enc, w, h);
        e.set_color(png::ColorType::Grayscale);
        let mut writer = e.write_header().unwrap();
        let mut stream = writer.stream_writer().unwrap();
        let row = vec![0u8; w as usize];
        for _ in 0..50 {
            std::io::Write::write_all(&mut stream, &row).unwrap();
        }
        drop(stream);
    }
    enc
}

#[test]
fn a_bad_token_file_is_refused_by_name() {
    let dir = scratch("serve", "token");
    for (text, why) in [
        ("short\n", "at least 32"),
        ("0123456789abcdef0123456789abcdef;x\n", "other than ;"),
        ("0123456789abcdef 0123456789abcdef\n", "one word"),
    ] {
        let file = dir.join("token");
        std::fs::write(&file, text).unwrap();
        let out = crate::common::facegate()
            .args(["serve", "--listen", "127.0.0.1:0", "--frames"])
            .arg(&dir)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--token-file")
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains("token file") && err.contains(why),
            "{text:?}: {err}"
        );
    }
    let huge = dir.join("huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let out = crate::common::facegate()
        .args(["serve", "--listen", "127.0.0.1:0", "--frames"])
        .arg(&dir)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--token-file")
        .arg(&huge)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("too large"));
}

#[test]
fn a_corrupt_history_is_refused_and_kept_and_a_busy_state_dir_is_refused() {
    let dir = scratch("serve", "corrupt");
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("events.db"), vec![0x42u8; 8192]).unwrap();
    let out = crate::common::facegate()
        .args(["serve", "--listen", "127.0.0.1:0", "--frames"])
        .arg(&dir)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("events.db")
            && err.contains("not a SQLite database")
            && err.contains("left as it is"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(state.join("events.db")).unwrap(),
        vec![0x42u8; 8192]
    );

    let fresh = dir.join("fresh");
    let s = Server::start(&fresh, &dir.join("gallery"), &[]);
    let out = crate::common::facegate()
        .args(["serve", "--listen", "127.0.0.1:0", "--frames"])
        .arg(&dir)
        .arg("--state-dir")
        .arg(&fresh)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another facegate serve is using"));
    drop(s);
}

#[test]
fn retention_keeps_the_newest_events_and_cli_enrollments_are_seen_live() {
    let dir = scratch("serve", "retention");
    let gallery = dir.join("gallery");
    let mut s = Server::start(&dir.join("state"), &gallery, &["--keep-events", "2"]);
    let live = s.events();
    // Another process enrolls while the server runs.
    let out = crate::common::facegate()
        .args(["enroll", "--name", "Obama", "--gallery"])
        .arg(&gallery)
        .arg(photo("obama.jpg"))
        .output()
        .unwrap();
    crate::common::ok(&out);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    s.feed(&visit("obama2.jpg", 8, 20));
    let seen = wait_for(&live, "identified", |e| e["event"] == "identified");
    assert_eq!(seen["name"], "Obama");
    wait_for(&live, "left", |e| e["event"] == "left");
    s.feed(&visit("biden.jpg", 8, 20));
    wait_for(&live, "unknown", |e| e["event"] == "unknown");
    let left = wait_for(&live, "left", |e| e["event"] == "left");
    let events = s.get("/api/v1/events").json();
    let ids: Vec<i64> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{events}");
    assert_eq!(ids[0], left["id"].as_i64().unwrap());
    // The first event's snapshot went with it.
    assert_eq!(s.get(seen["snapshot"].as_str().unwrap()).status, 404);
    assert!(!s
        .state
        .join(format!("snapshots/{}.jpg", seen["id"]))
        .exists());
}

#[test]
fn three_guided_camera_shots_enroll_a_person() {
    let dir = scratch("serve", "camera");
    let mut s = Server::start(&dir.join("state"), &dir.join("gallery"), &[]);
    let before = s.json(
        "POST",
        "/api/v1/camera/shot",
        serde_json::json!({ "previous": [] }),
    );
    assert_eq!(before.status, 503, "no frame yet: {}", before.text());

    s.feed(&[blank()]);
    let wait_frames = |s: &Server, n: u64| {
        let started = std::time::Instant::now();
        while s.get("/api/v1/status").json()["live"]["frames"].as_u64() < Some(n) {
            assert!(
                started.elapsed() < crate::common::server::PATIENCE,
                "frames not recognised"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_frames(&s, 1);
    let nobody = s.json("POST", "/api/v1/camera/shot", serde_json::json!({}));
    assert_eq!(nobody.json()["ok"], false);
    assert_eq!(nobody.json()["verdict"], "no face found");

    // Obama steps in, turning a little between shots (the frame shifts).
    let mut ids: Vec<String> = Vec::new();
    for k in 0..3 {
        s.feed(&[frame_with(&photo("obama2.jpg"), 560, 20 + 10 * k, 0)]);
        wait_frames(&s, 2 + k as u64);
        let previous: Vec<&str> = ids.iter().map(String::as_str).collect();
        let r = s.json(
            "POST",
            "/api/v1/camera/shot",
            serde_json::json!({ "previous": previous }),
        );
        let v = r.json();
        assert_eq!(v["ok"], true, "{v}");
        // This photo shows the head turned about 21 degrees: taken, with that said.
        let verdict = v["verdict"].as_str().unwrap();
        assert!(
            verdict.starts_with("good: one sharp face") || verdict.contains("the head is turned"),
            "{v}"
        );
        let image = s.get(v["image"].as_str().unwrap());
        assert_eq!((image.status, image.kind.as_str()), (200, "image/png"));
        ids.push(v["shot"].as_str().unwrap().to_string());
    }
    // Someone else is not taken as a fourth shot of the same person.
    s.feed(&[frame_with(&photo("biden.jpg"), 560, 20, 0)]);
    wait_frames(&s, 5);
    let previous: Vec<&str> = ids.iter().map(String::as_str).collect();
    let other = s
        .json(
            "POST",
            "/api/v1/camera/shot",
            serde_json::json!({ "previous": previous }),
        )
        .json();
    assert_eq!(other["ok"], false);
    assert!(
        other["verdict"]
            .as_str()
            .unwrap()
            .contains("does not look like the earlier shots"),
        "{other}"
    );

    let mut parts: Vec<(&str, Option<&str>, &[u8])> = vec![("name", None, b"Barack")];
    parts.extend(ids.iter().map(|id| ("shot", None, id.as_bytes())));
    let (kind, body) = multipart(&parts);
    let r = s.send("POST", "/api/v1/people", &kind, &body);
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["shots"], 3);
    assert_eq!(r.json()["shot_urls"].as_array().unwrap().len(), 3);
    // Saved shots are spent.
    let (kind, body) = multipart(&[("name", None, b"Again"), ("shot", None, ids[0].as_bytes())]);
    let r = s.send("POST", "/api/v1/people", &kind, &body);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("unknown or expired"), "{}", r.text());
}

#[test]
fn access_decisions_are_kept_in_the_history() {
    let dir = scratch("serve", "access");
    let gallery = dir.join("gallery");
    crate::common::ok(
        &crate::common::facegate()
            .args(["enroll", "--name", "Obama", "--gallery"])
            .arg(&gallery)
            .arg(photo("obama.jpg"))
            .output()
            .unwrap(),
    );
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rules]]\nname = \"anyone I know\"\nwho = [\"Obama\"]\ndo = []\n\n\
         [[rules]]\nname = \"strangers\"\nwho = [\"unknown\"]\nuntil = \"2001-01-01\"\ndo = []\n",
    )
    .unwrap();
    let mut s = Server::start(
        &dir.join("state"),
        &gallery,
        &["--rules", rules.to_str().unwrap(), "--no-unknowns"],
    );
    let live = s.events();
    s.feed(&visit("obama2.jpg", 8, 20));
    wait_for(&live, "identified", |e| e["event"] == "identified");
    s.feed(&visit("biden.jpg", 8, 20));
    wait_for(&live, "unknown", |e| e["event"] == "unknown");
    // Decisions are stored after their events, by the same recorder.
    let started = std::time::Instant::now();
    let decisions = loop {
        let d = s.get("/api/v1/access").json()["decisions"].clone();
        if d.as_array().unwrap().len() == 2 || started.elapsed() > crate::common::server::PATIENCE {
            break d;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let d = decisions.as_array().unwrap();
    assert_eq!(d.len(), 2, "{decisions}");
    assert_eq!(
        (d[1]["name"].as_str(), d[1]["granted"].as_bool()),
        (Some("Obama"), Some(true))
    );
    assert_eq!(d[1]["rule"], "anyone I know");
    assert_eq!(d[0]["name"], serde_json::Value::Null);
    assert_eq!(d[0]["granted"], false);
    assert_eq!(
        d[0]["reason"], "expired (valid until 2001-01-01)",
        "{decisions}"
    );
    assert_eq!(
        s.get("/api/v1/access?limit=1").json()["decisions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.get("/api/v1/access?limit=0").status, 400);
    drop(s);
}

/// Whether the server has closed `c` (end of stream or a reset), waiting up to `within`.
fn closed_by_server(c: &mut std::net::TcpStream, within: std::time::Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
                )
            }
        }
    }
}

/// Slow or hostile clients cannot exhaust the server: request headers must arrive within 10 s
/// (slowloris connections are closed), connections past the cap are closed as they come, and an
/// upload whose body stops is given up after 10 s without data, freeing its upload slot.
#[test]
fn slow_clients_are_cut_off_and_connections_are_capped() {
    use std::io::Write;
    use std::net::TcpStream;
    let dir = scratch("serve", "slow");
    let s = Server::start(&dir.join("state"), &dir.join("gallery"), &[]);
    let addr = s.base.trim_start_matches("http://").to_string();
    // Headers that never end.
    let mut loris: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // Then more idle connections than the server keeps (256 in all): the excess is closed.
    let mut idle: Vec<TcpStream> = (0..260)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    let quick = std::time::Duration::from_millis(300);
    let refused = idle
        .iter_mut()
        .map(|c| closed_by_server(c, quick))
        .filter(|closed| *closed)
        .count();
    assert!(refused >= 20 + 260 - 256, "only {refused} closed");
    drop(idle);
    // Four uploads (every upload slot) whose bodies stop after a few bytes.
    let stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = TcpStream::connect(&addr).unwrap();
            let head = format!(
                "POST /api/v1/recognize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n",
                s.token
            );
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&[0xFF, 0xD8, 0xFF]).unwrap();
            c
        })
        .collect();
    let patience = std::time::Duration::from_secs(40);
    for c in &mut loris {
        assert!(
            closed_by_server(c, patience),
            "a slowloris connection stayed open"
        );
    }
    for mut c in stalled {
        c.set_read_timeout(Some(patience)).unwrap();
        let mut answer = [0u8; 12];
        c.read_exact(&mut answer).unwrap();
        let status = String::from_utf8_lossy(&answer).into_owned();
        assert!(status.starts_with("HTTP/1.1 4"), "{status}");
    }
    // The owner gets in, and an upload slot is free again.
    assert_eq!(s.get("/api/v1/status").status, 200);
    let r = s.send("POST", "/api/v1/detect", "image/png", &png(&blank()));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `/health` and the status until the health answer satisfies `wanted`; panics after a while.
fn health_until(
    s: &Server,
    what: &str,
    wanted: impl Fn(u16, &serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let h = call("GET", &s.url("/health"), None, None);
        let v = h.json();
        if wanted(h.status, &v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health never became {what}: {} {v}\n{}",
            h.status,
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A camera that is not there at start, then delivers, then dies and comes back (a live MJPEG
/// stream through a named pipe): `serve` stays up throughout, and `/health`, the status and
/// `/metrics` say the truth at each step, 503 with the reason while the source is down.
#[test]
fn a_source_that_is_missing_or_dies_turns_health_to_503_and_back() {
    use std::io::Write;
    let dir = scratch("serve", "health");
    let pipe = dir.join("camera.mjpeg");
    let s = Server::start_with_source(
        &dir.join("state"),
        &dir.join("gallery"),
        &["--mjpeg", pipe.to_str().unwrap(), "--live"],
        &[],
    );
    let down = health_until(&s, "503 for the missing source", |code, v| {
        code == 503
            && v["reason"]
                .as_str()
                .unwrap_or("")
                .contains("cannot open MJPEG stream")
    });
    assert_eq!(down["status"], "unavailable", "{down}");
    let status = s.get("/api/v1/status").json();
    assert_eq!(status["live"]["source_state"], "retrying", "{status}");
    assert_eq!(status["live"]["fps"], 0.0);
    assert!(s.log().contains("the frame source is down"), "{}", s.log());

    // The camera appears (serve opens the pipe at its next try) and delivers.
    let made = std::process::Command::new("mkfifo")
        .arg(&pipe)
        .status()
        .unwrap();
    assert!(made.success());
    let frame = crate::common::server::jpeg(&frame_with(&photo("obama2.jpg"), 400, 40, 20));
    let deliver = |pipe: std::path::PathBuf, frame: Vec<u8>, seconds: u64| {
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(&pipe).unwrap();
            let end = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
            while std::time::Instant::now() < end {
                if w.write_all(&frame).is_err() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let camera = deliver(pipe.clone(), frame.clone(), 6);
    health_until(&s, "200 while frames come", |code, _| code == 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.get("/api/v1/status").json()["live"]["frames"] == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no frame: {}",
            s.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let status = s.get("/api/v1/status").json();
    assert_eq!(status["live"]["source_state"], "up", "{status}");
    let metrics = s.get("/metrics").text();
    assert!(metrics.contains("facegate_source_up 1"), "{metrics}");
    assert!(
        metrics.contains("facegate_last_frame_age_seconds"),
        "{metrics}"
    );
    // Per-stage latency histograms: every frame lands in a bucket up to +Inf.
    let count = |stage: &str| -> u64 {
        let key = format!("facegate_stage_seconds_count{{stage=\"{stage}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    };
    assert!(
        count("detect") >= 1 && count("frame") == count("detect"),
        "{metrics}"
    );
    assert!(
        metrics.contains("facegate_stage_seconds_bucket{stage=\"frame\",le=\"+Inf\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("facegate_access_decisions_total{decision=\"granted\"} 0"),
        "{metrics}"
    );

    // It dies: the stream breaks off. 503 with the reason, fps 0, and serve keeps serving.
    camera.join().unwrap();
    let down = health_until(&s, "503 after the stream ended", |code, v| {
        code == 503
            && v["reason"]
                .as_str()
                .unwrap_or("")
                .contains("the stream ended")
    });
    assert_eq!(down["status"], "unavailable");
    let status = s.get("/api/v1/status").json();
    assert_eq!(status["live"]["fps"], 0.0, "{status}");
    assert!(s.get("/metrics").text().contains("facegate_source_up 0"));

    // And comes back.
    let camera = deliver(pipe.clone(), frame, 4);
    health_until(&s, "200 when it is back", |code, _| code == 200);
    camera.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The HTTP API's description is valid OpenAPI 3.0, by the validator from PyPI that
/// tools/setup.sh installs (it once had an unquoted comma that made it invalid), and names every
/// route the server answers under /api/v1.
#[test]
fn the_openapi_description_is_valid() {
    let home = std::env::var("HOME").unwrap_or_default();
    let python = format!("{home}/.cache/facegate-pytools/bin/python3");
    assert!(
        std::path::Path::new(&python).exists(),
        "the OpenAPI validator is missing: run tools/setup.sh (it installs openapi-spec-validator \
         into {python})"
    );
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             validate(read_from_filename(sys.argv[1])[0])\n\
             print('valid')",
            spec,
        ])
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.contains("valid"), "{said}");
    let text = std::fs::read_to_string(spec).unwrap();
    let routes =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/serve/api/mod.rs"))
            .unwrap();
    for line in routes
        .lines()
        .filter(|l| l.trim_start().starts_with(".route(\""))
    {
        let path = line.split('"').nth(1).unwrap();
        let documented = if path.starts_with("/api/") || path == "/health" || path == "/metrics" {
            path.to_string()
        } else {
            format!("/api/v1{path}")
        };
        assert!(
            text.contains(&format!("\n  {documented}:")),
            "route {documented} is not in docs/openapi.yaml"
        );
    }
}
