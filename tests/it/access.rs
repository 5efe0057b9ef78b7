//! Access rules end to end: `watch --rules` on frames with scripted times (`--frame-clock`), a
//! command action that records what it was told, the audit lines, a bad rules file refused at
//! start, a bad edit that keeps the old rules, and `facegate rules check`.

use std::path::Path;

use crate::common::http::{response, serve};
use crate::common::server::{blank, frame_with};
use crate::common::{ok, photo, run_facegate, scratch, stderr};

/// Obama in front of the camera for 6 frames, then gone for 20.
fn frames(dir: &Path) -> std::path::PathBuf {
    let d = dir.join("frames");
    std::fs::create_dir_all(&d).unwrap();
    let mut all: Vec<_> = (0..6)
        .map(|i| frame_with(&photo("obama2.jpg"), 400, 40 + 3 * i, 20))
        .collect();
    all.extend((0..20).map(|_| blank()));
    for (i, f) in all.iter().enumerate() {
        f.save(d.join(format!("{i:05}.png"))).unwrap();
    }
    d
}

fn rules(dir: &Path, marker: &Path) -> std::path::PathBuf {
    let path = dir.join("rules.toml");
    let text = format!(
        r#"
timezone = "UTC"
cameras = ["front"]
[groups]
family = ["Obama"]
[actions.mark]
command = ["/bin/sh", "-c", "printf '%s %s' \"$FACEGATE_NAME\" \"$FACEGATE_RULE\" > {}"]
[[rules]]
name = "weekdays"
who = ["@family"]
cameras = ["front"]
when = ["mon-fri 07:00-19:00"]
do = ["mark"]
"#,
        marker.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn access_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["event"] == "access")
        .collect()
}

#[test]
fn rules_grant_in_their_window_deny_outside_and_run_the_action() {
    let dir = scratch("access", "window");
    let g = dir.join("gallery");
    let gallery = g.to_str().unwrap();
    ok(&run_facegate(
        &[
            "enroll",
            "--gallery",
            gallery,
            "--name",
            "Obama",
            &photo("obama.jpg"),
        ],
        &[],
    ));
    let f = frames(&dir);
    let marker = dir.join("marker");
    let r = rules(&dir, &marker);
    let watch = |clock: &str| {
        let args = [
            "watch",
            "--frames",
            f.to_str().unwrap(),
            "--gallery",
            gallery,
            "--no-unknowns",
            "--camera-name",
            "front",
            "--rules",
            r.to_str().unwrap(),
            "--frame-clock",
            clock,
        ];
        ok(&run_facegate(&args, &[]))
    };
    // Tuesday 07:30 UTC: inside the window.
    let out = watch("2026-12-01T07:30:00Z");
    let decisions = access_lines(&out);
    assert_eq!(decisions.len(), 1, "{out}");
    let d = &decisions[0];
    assert_eq!(d["granted"], true, "{d}");
    assert_eq!(d["rule"], "weekdays");
    assert_eq!(d["name"], "Obama");
    assert_eq!(d["camera"], "front");
    assert_eq!(d["actions"], serde_json::json!(["mark"]));
    assert!(d["ts"].as_f64().unwrap() >= 1_796_110_200.0);
    // The action ran on its own thread; watch waited for it before exiting.
    let started = std::time::Instant::now();
    while !marker.exists() && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "Obama weekdays");

    // Saturday: denied, with the reason, and nothing run.
    std::fs::remove_file(&marker).unwrap();
    let out = watch("2026-12-05T10:00:00Z");
    let d = &access_lines(&out)[0];
    assert_eq!(d["granted"], false, "{d}");
    assert_eq!(d["reason"], "outside mon-fri 07:00-19:00");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!marker.exists());

    // `rules check` explains; a file naming someone not enrolled starts with a warning (the door
    // keeps running, and the name grants nothing), and `rules check` says so and fails.
    let said = ok(&run_facegate(
        &["rules", "check", r.to_str().unwrap(), "--gallery", gallery],
        &[],
    ));
    assert!(
        said.contains("Obama (p000001):\n  rule 'weekdays', at front, mon-fri 07:00-19:00"),
        "{said}"
    );
    let text = std::fs::read_to_string(&r).unwrap();
    std::fs::write(
        &r,
        text.replace("family = [\"Obama\"]", "family = [\"Obama\", \"Michelle\"]"),
    )
    .unwrap();
    let out = run_facegate(
        &[
            "watch",
            "--frames",
            f.to_str().unwrap(),
            "--gallery",
            gallery,
            "--camera-name",
            "front",
            "--rules",
            r.to_str().unwrap(),
            "--frame-clock",
            "2026-12-01T07:30:00Z",
        ],
        &[],
    );
    let stdout = ok(&out);
    assert!(
        stderr(&out)
            .contains("group 'family': 'Michelle' is not enrolled, so that entry grants nothing"),
        "{}",
        stderr(&out)
    );
    assert_eq!(access_lines(&stdout)[0]["granted"], true, "{stdout}");
    let out = run_facegate(
        &["rules", "check", r.to_str().unwrap(), "--gallery", gallery],
        &[],
    );
    assert!(
        !out.status.success()
            && stderr(&out).contains("rules.toml")
            && String::from_utf8_lossy(&out.stdout).contains("Obama (p000001):"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rules bind a name to the person enrolled under it when a live run first finds them. Obama is
/// removed and the name enrolled again: enrolling says the rules do not grant the new person,
/// the door refuses them with the reason in the audit line, and `rules bind` grants them.
#[test]
fn a_name_enrolled_again_is_not_granted_until_bound() {
    let dir = scratch("access", "bound");
    let g = dir.join("gallery");
    let gallery = g.to_str().unwrap();
    let enroll = || {
        run_facegate(
            &[
                "enroll",
                "--gallery",
                gallery,
                "--name",
                "Obama",
                &photo("obama.jpg"),
            ],
            &[],
        )
    };
    ok(&enroll());
    let f = frames(&dir);
    let marker = dir.join("marker");
    let r = rules(&dir, &marker);
    let watch = || {
        let out = run_facegate(
            &[
                "watch",
                "--frames",
                f.to_str().unwrap(),
                "--gallery",
                gallery,
                "--no-unknowns",
                "--camera-name",
                "front",
                "--rules",
                r.to_str().unwrap(),
                "--frame-clock",
                "2026-12-01T07:30:00Z",
            ],
            &[],
        );
        let stdout = ok(&out);
        (access_lines(&stdout), stderr(&out))
    };
    let (first, _) = watch();
    assert_eq!(first[0]["granted"], true, "{first:?}");
    assert_eq!(first[0]["person_id"], "p000001");
    // watch waits for its actions before it exits.
    std::fs::remove_file(&marker).unwrap();
    let bindings = std::fs::read_to_string(g.join("access-bindings.json")).unwrap();
    assert!(
        bindings.contains("\"Obama\"") && bindings.contains("\"p000001\""),
        "{bindings}"
    );

    ok(&run_facegate(
        &["gallery", "remove", "--gallery", gallery, "Obama"],
        &[],
    ));
    let again = enroll();
    ok(&again);
    assert!(
        stderr(&again).contains(
            "the access rules name 'Obama', which they bound to another person (p000001)"
        ),
        "{}",
        stderr(&again)
    );
    let (refused, said) = watch();
    let d = &refused[0];
    assert_eq!(d["granted"], false, "{d}");
    assert_eq!(d["name"], "Obama");
    assert_eq!(d["person_id"], "p000002");
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("rule 'weekdays' names 'Obama', which it binds to person p000001; this face is person p000002"),
        "{reason}"
    );
    assert!(
        said.contains("`facegate rules bind 'Obama'` grants them"),
        "{said}"
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        !marker.exists(),
        "the action ran for a person the rules do not grant"
    );

    let bound = ok(&run_facegate(
        &["rules", "bind", "--gallery", gallery, "Obama"],
        &[],
    ));
    assert!(
        bound.contains("'Obama' in the rules now means p000002 (it meant p000001)"),
        "{bound}"
    );
    let (granted, _) = watch();
    assert_eq!(granted[0]["granted"], true, "{granted:?}");
    // Naming someone nobody enrolled is an error that says so, and garbage bindings name the file.
    let out = run_facegate(&["rules", "bind", "--gallery", gallery, "Nobody"], &[]);
    assert!(!out.status.success() && stderr(&out).contains("nobody named 'Nobody'"));
    std::fs::write(g.join("access-bindings.json"), "\u{0}garbage").unwrap();
    let out = run_facegate(
        &["rules", "check", r.to_str().unwrap(), "--gallery", gallery],
        &[],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("access-bindings.json"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stranger steps into the place of an identified person (same box, same size): the person
/// leaves within 3 frames (0.3 s at 10 fps; it took 26-31 frames), the stranger is decided on
/// their own looks (unknown, never the person's name), and the door opens only for the person.
#[test]
fn a_stranger_who_replaces_an_identified_person_does_not_inherit_the_name() {
    let dir = scratch("access", "swap");
    let g = dir.join("gallery");
    let gallery = g.to_str().unwrap();
    crate::common::enroll(&g, "Obama", "obama.jpg");
    // Obama's face lands at about (86, 101), 114 px; Biden's photo is scaled and placed so that
    // his face lands in the same box.
    let d = dir.join("frames");
    std::fs::create_dir_all(&d).unwrap();
    let mut all: Vec<_> = (0..8)
        .map(|i| frame_with(&photo("obama2.jpg"), 400, 40 + (i % 2), 20))
        .collect();
    // Frames count from 1.
    let first_stranger = all.len() as u64 + 1;
    all.extend((0..12).map(|i| frame_with(&photo("biden.jpg"), 800, -71 + (i % 2), 24)));
    all.extend((0..20).map(|_| blank()));
    for (i, f) in all.iter().enumerate() {
        f.save(d.join(format!("{i:05}.png"))).unwrap();
    }
    let marker = dir.join("marker");
    let r = rules(&dir, &marker);
    let out = run_facegate(
        &[
            "watch",
            "--frames",
            d.to_str().unwrap(),
            "--gallery",
            gallery,
            "--no-unknowns",
            "--camera-name",
            "front",
            "--rules",
            r.to_str().unwrap(),
            "--frame-clock",
            "2026-12-01T07:30:00Z",
        ],
        &[],
    );
    let stdout = ok(&out);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<String> = lines
        .iter()
        .map(|v| format!("{} {} {} {}", v["event"], v["name"], v["track"], v["frame"]))
        .collect();
    let find = |event: &str, name: serde_json::Value| {
        lines
            .iter()
            .find(|v| v["event"] == event && v["name"] == name)
            .unwrap_or_else(|| panic!("no {event} {name}: {events:#?}"))
    };
    let identified = find("identified", "Obama".into());
    let left = find("left", "Obama".into());
    assert_eq!(left["track"], identified["track"], "{events:#?}");
    let left_after = left["frame"].as_u64().unwrap() - first_stranger;
    assert!(
        left_after <= 3,
        "the name stayed {left_after} frames: {events:#?}"
    );
    let unknown = find("unknown", serde_json::Value::Null);
    assert_ne!(unknown["track"], identified["track"], "{events:#?}");
    let identified_count = lines.iter().filter(|v| v["event"] == "identified").count();
    assert_eq!(identified_count, 1, "{events:#?}");
    let decisions: Vec<&serde_json::Value> =
        lines.iter().filter(|v| v["event"] == "access").collect();
    let granted: Vec<_> = decisions.iter().filter(|v| v["granted"] == true).collect();
    assert_eq!(granted.len(), 1, "{decisions:#?}");
    assert_eq!(granted[0]["name"], "Obama");
    eprintln!("the name left {left_after} frames after the stranger appeared: {events:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The audit and an MQTT action reach a real broker.
#[cfg(feature = "mqtt")]
#[test]
fn decisions_and_mqtt_actions_are_published() {
    use crate::common::broker::{free_port, Broker, Listener};
    let dir = scratch("access", "mqtt");
    let g = dir.join("gallery");
    let gallery = g.to_str().unwrap();
    ok(&run_facegate(
        &[
            "enroll",
            "--gallery",
            gallery,
            "--name",
            "Obama",
            &photo("obama.jpg"),
        ],
        &[],
    ));
    let f = frames(&dir);
    let r = dir.join("rules.toml");
    std::fs::write(
        &r,
        "[actions.tell]\nmqtt = \"home/door\"\n[[rules]]\nname = \"all\"\nwho = [\"Obama\"]\ndo = [\"tell\"]\n",
    )
    .unwrap();
    // Without a broker, an MQTT action is refused at start.
    let out = run_facegate(
        &[
            "watch",
            "--frames",
            f.to_str().unwrap(),
            "--gallery",
            gallery,
            "--rules",
            r.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        stderr(&out).contains("no --mqtt broker"),
        "{}",
        stderr(&out)
    );
    let port = free_port();
    let _broker = Broker::start(port);
    let mut listener = Listener::subscribe(port, "access-test", &["facegate/access", "home/door"]);
    let url = format!("mqtt://127.0.0.1:{port}");
    ok(&run_facegate(
        &[
            "watch",
            "--frames",
            f.to_str().unwrap(),
            "--gallery",
            gallery,
            "--rules",
            r.to_str().unwrap(),
            "--mqtt",
            &url,
            "--no-ha",
            "--no-unknowns",
        ],
        &[],
    ));
    let audit = listener.wait("facegate/access", "an access decision", |_| true);
    let v: serde_json::Value = serde_json::from_slice(&audit.payload).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["granted"].as_bool()),
        (Some("Obama"), Some(true)),
        "{v}"
    );
    let told = listener.wait("home/door", "the rule's message", |_| true);
    assert_eq!(told.payload, audit.payload);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Enrolls Obama in a new gallery under `dir` and runs `watch` on the frames of [`frames`] with
/// `rules` (a rules file's text) at a granted time, with `env` added to facegate's environment.
fn watch_with_rules(dir: &Path, rules: &str, env: &[(&str, &str)]) -> std::process::Output {
    let g = dir.join("gallery");
    let gallery = g.to_str().unwrap();
    ok(&run_facegate(
        &[
            "enroll",
            "--gallery",
            gallery,
            "--name",
            "Obama",
            &photo("obama.jpg"),
        ],
        &[],
    ));
    let f = frames(dir);
    let r = dir.join("rules.toml");
    std::fs::write(&r, rules).unwrap();
    run_facegate(
        &[
            "watch",
            "--frames",
            f.to_str().unwrap(),
            "--gallery",
            gallery,
            "--no-unknowns",
            "--rules",
            r.to_str().unwrap(),
        ],
        env,
    )
}

/// A command action sees PATH and the decision, never facegate's secrets or the rest of its
/// environment, and what it prints goes to stderr, not into the JSON event stream.
#[test]
fn command_actions_get_no_secrets_and_print_to_stderr() {
    let dir = scratch("access", "cmdenv");
    let marker = dir.join("env.txt");
    let rules = format!(
        "[actions.mark]\ncommand = [\"/bin/sh\", \"-c\", \"env > {} && echo printed-by-the-action\"]\n\
         [[rules]]\nname = \"all\"\nwho = [\"Obama\"]\ndo = [\"mark\"]\n",
        marker.display()
    );
    let out = watch_with_rules(
        &dir,
        &rules,
        &[
            ("FACEGATE_SYNC_KEY", "sync-secret-value"),
            ("FACEGATE_MQTT_PASSWORD", "mqtt-secret-value"),
            ("SOME_OTHER_VARIABLE", "other-value"),
        ],
    );
    let stdout = ok(&out);
    // watch waits for its actions before it exits.
    let env = std::fs::read_to_string(&marker).unwrap();
    assert!(env.contains("FACEGATE_NAME=Obama"), "{env}");
    assert!(env.contains("FACEGATE_RULE=all"), "{env}");
    assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
    for leaked in ["sync-secret-value", "mqtt-secret-value", "other-value"] {
        assert!(
            !env.contains(leaked),
            "{leaked} reached the command:\n{env}"
        );
    }
    for line in stdout.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON line on stdout: {line}"
        );
    }
    assert!(
        stderr(&out).contains("printed-by-the-action"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A webhook that redirects is a failure, and the redirect is not followed; a webhook that hangs
/// does not hold back the command of the same decision (webhooks have their own thread).
#[test]
fn webhooks_follow_no_redirect_and_never_delay_a_command() {
    let dir = scratch("access", "webhooks");
    let marker = dir.join("door-opened");
    let (target, target_hits) = serve(|_| response("200 OK", "text/plain", b""));
    let (redirector, _) = serve(move |_| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{target}/\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    });
    // Holds its request until the door's command has run (or 6 s), then says whether it had.
    let saw_door = std::sync::Arc::new(std::sync::Mutex::new(None));
    let (slow, _) = {
        let (marker, saw_door) = (marker.clone(), saw_door.clone());
        serve(move |_| {
            let start = std::time::Instant::now();
            while !marker.exists() && start.elapsed() < std::time::Duration::from_secs(6) {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            *saw_door.lock().unwrap() = Some(marker.exists());
            response("200 OK", "text/plain", b"")
        })
    };
    let rules = format!(
        "[actions.slow]\nwebhook = \"http://127.0.0.1:{slow}/hook\"\ntimeout_ms = 8000\n\
         [actions.moved]\nwebhook = \"http://127.0.0.1:{redirector}/hook\"\n\
         [actions.door]\ncommand = [\"/bin/sh\", \"-c\", \"touch {}\"]\n\
         [[rules]]\nname = \"all\"\nwho = [\"Obama\"]\ndo = [\"slow\", \"moved\", \"door\"]\n",
        marker.display()
    );
    let out = watch_with_rules(&dir, &rules, &[]);
    ok(&out);
    assert_eq!(
        *saw_door.lock().unwrap(),
        Some(true),
        "the command waited for the hanging webhook"
    );
    assert_eq!(
        target_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    let err = stderr(&out);
    assert!(err.contains("answered 302"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A rule that asks for a phone at home (an MQTT topic Home Assistant could fill) and the
/// person's PIN (entered through `serve`'s API) keeps the door shut on the face alone: the
/// decision waits, says which factor is missing, and grants when both hold. Garbage on the
/// factor topic and at the PIN route changes nothing, and wrong PINs lock the route.
#[test]
fn a_second_factor_gates_the_door() {
    use crate::common::broker::{free_port, publish, Broker, Listener};
    use crate::common::server::{call, Server};
    let dir = scratch("access", "factors");
    let g = dir.join("gallery");
    crate::common::enroll(&g, "Obama", "obama.jpg");
    let set_pin = |pin: &str| {
        let mut child = crate::common::facegate()
            .args(["rules", "pin", "Obama", "--gallery", g.to_str().unwrap()])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pin}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let refused = set_pin("12ab");
    assert!(
        stderr(&refused).contains("4 to 12 digits"),
        "{}",
        stderr(&refused)
    );
    ok(&set_pin("4711"));
    let pins = std::fs::read_to_string(g.join("access-pins.json")).unwrap();
    assert!(!pins.contains("4711"), "the PIN is kept hashed: {pins}");

    let marker = dir.join("opened");
    let r = dir.join("rules.toml");
    std::fs::write(
        &r,
        format!(
            r#"
[actions.mark]
command = ["/bin/sh", "-c", "echo \"$FACEGATE_NAME\" >> {}"]
[factors.phone]
mqtt = {{ topic = "home/{{name}}/phone", values = ["home"] }}
[factors.pin]
pin = {{ within = 120 }}
[[rules]]
name = "door"
who = ["Obama"]
require = ["face", "phone", "pin"]
wait = 120
do = ["mark"]
"#,
            marker.display()
        ),
    )
    .unwrap();
    let port = free_port();
    let _broker = Broker::start(port);
    publish(port, &[("home/Obama/phone".into(), b"not_home".to_vec())]);
    let mut audit = Listener::subscribe(port, "audit", &["facegate/access"]);
    let url = format!("mqtt://127.0.0.1:{port}");
    let mut s = Server::start(
        &dir.join("state"),
        &g,
        &[
            "--mqtt",
            &url,
            "--no-ha",
            "--no-unknowns",
            "--rules",
            r.to_str().unwrap(),
        ],
    );
    let decision = |m: &crate::common::broker::Received| {
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()
    };
    let mut frames: Vec<_> = (0..6)
        .map(|i| frame_with(&photo("obama2.jpg"), 400, 40 + 3 * i, 20))
        .collect();
    frames.extend((0..3).map(|_| blank()));
    s.feed(&frames);
    let waiting = decision(&audit.wait("facegate/access", "a waiting decision", |_| true));
    assert_eq!(
        (waiting["granted"].as_bool(), waiting["waiting"].as_bool()),
        (Some(false), Some(true)),
        "{waiting}"
    );
    let reason = waiting["reason"].as_str().unwrap();
    assert!(
        reason.contains("phone (home/Obama/phone is 'not_home', not home)")
            && reason.contains("pin (their PIN not entered within 120 s)"),
        "{reason}"
    );

    // The PIN route: a token, a PIN's form and a small body, or nothing is counted.
    let pin = |body: &[u8], auth: bool| {
        let bearer = s.bearer();
        call(
            "POST",
            &s.url("/api/v1/access/pin"),
            auth.then_some(bearer.as_str()),
            Some(("application/json", body)),
        )
    };
    assert_eq!(pin(br#"{"pin":"4711"}"#, false).status, 401);
    assert_eq!(pin(br#"{"pin":"47x1"}"#, true).status, 400);
    assert_eq!(pin(br#"{"pin":4711}"#, true).status, 400);
    assert_eq!(pin(&[0xff; 40], true).status, 400);
    let huge = format!(r#"{{"pin":"{}"}}"#, "1".repeat(100_000));
    assert_eq!(pin(huge.as_bytes(), true).status, 413);
    assert_eq!(pin(br#"{"pin":"4711"}"#, true).status, 200);
    // Garbage on the phone's topic is not taken; an oversized message never arrives.
    publish(
        port,
        &[
            ("home/Obama/phone".into(), vec![0xff, 0xfe, 0x00]),
            ("home/Obama/phone".into(), vec![b'h'; 100_000]),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !s.log().contains("was not taken as a factor") {
        assert!(std::time::Instant::now() < deadline, "{}", s.log());
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!marker.exists(), "the door stays shut without the phone");
    publish(port, &[("home/Obama/phone".into(), b"home".to_vec())]);
    let granted = decision(&audit.wait("facegate/access", "the grant", |m| {
        decision(m)["granted"] == true
    }));
    let factors = granted["factors"].as_array().unwrap();
    assert!(
        factors.iter().all(|f| f["held"] == true) && factors.len() == 2,
        "{granted}"
    );
    assert!(
        factors[1]["detail"]
            .as_str()
            .unwrap()
            .contains("after the face"),
        "{granted}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "the action never ran");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The history keeps the factors (the Access page and `GET /api/v1/access` read it).
    // The history is written beside the audit publish, so it may lag it by a moment.
    let started = std::time::Instant::now();
    let listed = loop {
        let listed = s.get("/api/v1/access").json();
        let rows = listed["decisions"].as_array().map_or(0, Vec::len);
        if rows >= 2 || started.elapsed() > crate::common::server::PATIENCE {
            break listed;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        listed["decisions"][0]["factors"], granted["factors"],
        "{listed}"
    );
    assert_eq!(listed["decisions"][1]["waiting"], true, "{listed}");

    // Five wrong PINs in a minute lock the route, even for the right one.
    for _ in 0..5 {
        assert_eq!(pin(br#"{"pin":"0000"}"#, true).status, 403);
    }
    let locked = pin(br#"{"pin":"4711"}"#, true);
    assert_eq!(locked.status, 429, "{}", locked.text());
    let log = s.stop();
    assert!(
        log.contains("a wrong PIN was entered (5 in the last minute)"),
        "{log}"
    );
    assert!(
        !log.contains("4711"),
        "the PIN never reaches the journal: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A photo of an enrolled person, tilted and turned in front of the camera (rendered through a
/// pinhole camera from a real photo), is identified, but a rule with `liveness = "require"`
/// opens nothing for it: the face waits, the audit line says it moved like a picture or not
/// enough, and the events say `"live"` is not true.
#[test]
fn a_photo_held_up_to_the_camera_opens_nothing_under_liveness_require() {
    use facegate::live::liveness::presentations::{render, Camera, Medium, Motion};
    use facegate::support::rng::Rng;
    let dir = scratch("access", "liveness");
    let g = dir.join("gallery");
    crate::common::enroll(&g, "Obama", "obama.jpg");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let picture = facegate::imaging::photo::load(std::path::Path::new(&photo("obama2.jpg")))
        .unwrap()
        .rgb;
    let picture =
        image::imageops::resize(&picture, 240, 300, image::imageops::FilterType::Triangle);
    let shown = Medium::Photo.show(&picture);
    let camera = Camera::default();
    let mut rng = Rng::new(3);
    for i in 0..40 {
        let motion = if i < 20 { Motion::Tilt } else { Motion::Pan };
        let pose = motion.pose(i as f32 / 10.0, &mut rng);
        render(&shown, 160.0, pose, &camera, false, &mut rng)
            .save(frames.join(format!("{i:05}.png")))
            .unwrap();
    }
    let marker = dir.join("opened");
    let r = dir.join("rules.toml");
    std::fs::write(
        &r,
        format!(
            r#"
liveness = "require"
[actions.mark]
command = ["/bin/sh", "-c", "touch {}"]
[[rules]]
name = "door"
who = ["Obama"]
wait = 60
do = ["mark"]
"#,
            marker.display()
        ),
    )
    .unwrap();
    let out = run_facegate(
        &[
            "watch",
            "--frames",
            frames.to_str().unwrap(),
            "--gallery",
            g.to_str().unwrap(),
            "--no-unknowns",
            "--rules",
            r.to_str().unwrap(),
        ],
        &[],
    );
    let stdout = ok(&out);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let identified: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["event"] == "identified")
        .collect();
    assert!(!identified.is_empty(), "the photo is identified: {stdout}");
    for v in lines.iter().filter(|v| v["event"] != "access") {
        assert!(v.get("live").is_some(), "liveness is measured: {v}");
        assert_ne!(v["live"], true, "a photo is not live: {v}");
    }
    let decisions = access_lines(&stdout);
    assert!(!decisions.is_empty(), "{stdout}");
    assert!(
        decisions.iter().all(|d| d["granted"] == false),
        "{decisions:?}"
    );
    let live = &decisions[0]["factors"][0];
    assert_eq!(live["factor"], "live", "{decisions:?}");
    assert_eq!(live["held"], false, "{decisions:?}");
    assert!(decisions[0]["waiting"] == true, "{decisions:?}");
    assert!(
        decisions.last().unwrap()["reason"]
            .as_str()
            .unwrap()
            .contains("run ended"),
        "{decisions:?}"
    );
    assert!(!marker.exists(), "the door stayed shut");
    let _ = std::fs::remove_dir_all(&dir);
}
