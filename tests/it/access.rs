//! Access rules end to end: `watch --rules` on frames with scripted times (`--frame-clock`), a
//! command action that records what it was told, the audit lines, a bad rules file refused at
//! start, a bad edit that keeps the old rules, and `facegate rules check`.

use std::path::Path;

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

    // `rules check` explains; a file naming someone not enrolled is refused at start.
    let said = ok(&run_facegate(
        &["rules", "check", r.to_str().unwrap(), "--gallery", gallery],
        &[],
    ));
    assert!(
        said.contains("Obama:\n  rule 'weekdays', at front, mon-fri 07:00-19:00"),
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
            "--rules",
            r.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("'Michelle', who is not enrolled"),
        "{}",
        stderr(&out)
    );
    let out = run_facegate(
        &["rules", "check", r.to_str().unwrap(), "--gallery", gallery],
        &[],
    );
    assert!(
        !out.status.success() && stderr(&out).contains("rules.toml"),
        "{}",
        stderr(&out)
    );
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
