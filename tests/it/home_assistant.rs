//! Home Assistant's MQTT discovery against a real mosquitto: the device config and its
//! entities, presence on at `identified` and off when the person leaves, the event, last-person
//! and image entities, re-announcement on Home Assistant's birth message, a removed person's
//! entities deleted, and "offline" from the last will when the process is killed.
#![cfg(feature = "mqtt")]

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use crate::common::broker::{free_port, Broker, Listener};
use crate::common::server::{blank, frame_with, jpeg};
use crate::common::{enroll, facegate, ok, photo, scratch};

const CONFIG: &str = "homeassistant/device/facegate_front_door/config";
const AVAILABILITY: &str = "facegate/front_door/availability";
const OBAMA: &str = "facegate/front_door/present/p000001";
const BIDEN: &str = "facegate/front_door/present/p000002";

/// `watch` on an MJPEG stream from its standard input, as the camera "Front door", with Home
/// Assistant discovery through the broker on `port`; stdout is piped when `events` is set.
fn watch_front_door(gallery: &std::path::Path, port: u16, events: bool) -> std::process::Child {
    watch_front_door_with(gallery, port, events, facegate(), &[])
}

fn watch_front_door_with(
    gallery: &std::path::Path,
    port: u16,
    events: bool,
    mut facegate: std::process::Command,
    extra: &[&str],
) -> std::process::Child {
    facegate
        .args(["watch", "--mjpeg", "-", "--min-face", "40"])
        .args(["--camera-name", "Front door", "--gallery"])
        .arg(gallery)
        .arg("--mqtt")
        .arg(format!("mqtt://127.0.0.1:{port}"))
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(if events {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_board_is_a_home_assistant_device_with_presence_per_person() {
    let dir = scratch("ha", "presence");
    let gallery = dir.join("gallery");
    enroll(&gallery, "Obama", "obama.jpg");
    let port = free_port();
    let _broker = Broker::start(port);
    let mut ha = Listener::subscribe(port, "ha-test", &["homeassistant/#", "facegate/#"]);

    let mut watch = watch_front_door(&gallery, port, true);
    let mut stdin = watch.stdin.take().unwrap();
    let mut feed = |frames: &[image::RgbImage]| {
        for f in frames {
            stdin.write_all(&jpeg(f)).unwrap();
        }
        stdin.flush().unwrap();
    };

    // The device and its entities, then "online" and nobody present.
    let config = ha.wait(CONFIG, "discovery config", |_| true);
    let c: serde_json::Value = serde_json::from_slice(&config.payload).unwrap();
    assert_eq!(c["dev"]["name"], "facegate Front door");
    assert_eq!(c["o"]["name"], "facegate");
    assert_eq!(c["avty"][0]["t"], AVAILABILITY);
    let present = &c["cmps"]["present_p000001"];
    assert_eq!(
        (
            present["p"].as_str(),
            present["name"].as_str(),
            present["state_topic"].as_str()
        ),
        (Some("binary_sensor"), Some("Obama present"), Some(OBAMA))
    );
    for (component, platform) in [
        ("last_person", "sensor"),
        ("face", "event"),
        ("snapshot", "image"),
    ] {
        assert_eq!(c["cmps"][component]["p"], platform, "{c}");
        assert!(c["cmps"][component]["unique_id"]
            .as_str()
            .unwrap()
            .starts_with("facegate_front_door_"));
    }
    ha.wait(AVAILABILITY, "online", |m| m.payload == b"online");
    ha.wait(OBAMA, "presence off at start", |m| m.payload == b"OFF");

    // Obama comes and goes: on, off; the event entity and the last person follow.
    let obama: Vec<_> = (0..8)
        .map(|i| frame_with(&photo("obama2.jpg"), 560, 20 + 2 * i, 0))
        .collect();
    feed(&obama);
    ha.wait(OBAMA, "presence on", |m| m.payload == b"ON");
    let last = ha.wait("facegate/front_door/last_person", "last person", |_| true);
    let last: serde_json::Value = serde_json::from_slice(&last.payload).unwrap();
    assert_eq!(
        (last["name"].as_str(), last["camera"].as_str()),
        (Some("Obama"), Some("Front door"))
    );
    let face = ha.wait("facegate/front_door/snapshot", "the face", |_| true);
    assert!(face.payload.starts_with(&[0xFF, 0xD8, 0xFF]), "a JPEG");
    feed(&vec![blank(); 16]);
    ha.wait(OBAMA, "presence off after leaving", |m| m.payload == b"OFF");
    let events: Vec<String> = ha
        .history("facegate/front_door/event")
        .iter()
        .map(|t| {
            serde_json::from_str::<serde_json::Value>(t).unwrap()["event_type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(events, ["identified", "left"]);
    assert_eq!(ha.history(OBAMA), ["OFF", "ON", "OFF"]);

    // Home Assistant restarts and says so: the config comes again.
    let before = ha.history(CONFIG).len();
    let (announcer, mut connection) =
        rumqttc::Client::new(rumqttc::MqttOptions::new("ha-birth", "127.0.0.1", port), 10);
    announcer
        .publish(
            "homeassistant/status",
            rumqttc::QoS::AtLeastOnce,
            false,
            "online",
        )
        .unwrap();
    std::thread::spawn(move || for _ in connection.iter() {});
    ha.wait(CONFIG, "the config again", |_| true);
    assert_eq!(ha.history(CONFIG).len(), before + 1);

    // Biden is enrolled by another process, then removed: his entity comes, then goes.
    enroll(&gallery, "Biden", "biden.jpg");
    std::thread::sleep(Duration::from_millis(700));
    feed(&[blank()]);
    ha.wait(CONFIG, "a config with Biden", |m| {
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["cmps"]["present_p000002"]
            ["name"]
            == "Biden present"
    });
    ha.wait(BIDEN, "Biden not present", |m| m.payload == b"OFF");
    ok(&facegate()
        .args(["gallery", "remove", "Biden", "--gallery"])
        .arg(&gallery)
        .output()
        .unwrap());
    std::thread::sleep(Duration::from_millis(700));
    feed(&[blank()]);
    ha.wait(CONFIG, "Biden's entity deleted", |m| {
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["cmps"]["present_p000002"]
            == serde_json::json!({"p": "binary_sensor"})
    });
    ha.wait(BIDEN, "Biden's retained state cleared", |m| {
        m.payload.is_empty()
    });

    // Killed without a goodbye: the broker publishes the will.
    watch.kill().unwrap();
    watch.wait().unwrap();
    ha.wait(AVAILABILITY, "offline from the will", |m| {
        m.payload == b"offline"
    });

    // What a Home Assistant starting now finds retained.
    let mut late = Listener::subscribe(port, "ha-late", &[CONFIG, AVAILABILITY, OBAMA]);
    assert!(
        late.wait(CONFIG, "retained config", |m| m.retain)
            .payload
            .len()
            > 200
    );
    late.wait(AVAILABILITY, "retained offline", |m| {
        m.retain && m.payload == b"offline"
    });
    late.wait(OBAMA, "retained presence", |m| {
        m.retain && m.payload == b"OFF"
    });
}

#[test]
fn no_ha_publishes_events_only_and_a_clean_stop_says_offline() {
    let dir = scratch("ha", "clean");
    let gallery = dir.join("gallery");
    enroll(&gallery, "Obama", "obama.jpg");
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..8 {
        frame_with(&photo("obama2.jpg"), 560, 20 + 2 * i, 0)
            .save(frames.join(format!("f{i:02}.png")))
            .unwrap();
    }
    let port = free_port();
    let _broker = Broker::start(port);
    let mut ha = Listener::subscribe(port, "ha-clean", &["homeassistant/#", "facegate/#", "door"]);
    let run = |extra: &[&str]| {
        ok(&facegate()
            .args([
                "watch",
                "--min-face",
                "40",
                "--mqtt-topic",
                "door",
                "--camera-name",
                "Front door",
            ])
            .arg("--gallery")
            .arg(&gallery)
            .arg("--frames")
            .arg(&frames)
            .arg("--mqtt")
            .arg(format!("mqtt://127.0.0.1:{port}"))
            .args(extra)
            .output()
            .unwrap())
    };
    let stdout = run(&["--no-ha"]);
    assert!(
        stdout
            .lines()
            .all(|l| l.contains("\"camera\":\"Front door\"")),
        "{stdout}"
    );
    ha.wait("door", "the identified line", |m| {
        m.text().contains("\"identified\"")
    });
    ha.wait("door", "the left line", |m| m.text().contains("\"left\""));
    assert!(ha.history(CONFIG).is_empty(), "--no-ha announces nothing");
    run(&[]);
    ha.wait(AVAILABILITY, "online", |m| m.payload == b"online");
    ha.wait(OBAMA, "presence on", |m| m.payload == b"ON");
    ha.wait(OBAMA, "presence off at the end of the stream", |m| {
        m.payload == b"OFF"
    });
    ha.wait(AVAILABILITY, "offline on a clean stop", |m| {
        m.payload == b"offline"
    });
}

/// `serve` whose frame source ended keeps its MQTT connection and follows the gallery: a person
/// enrolled through the web API afterwards gets an entity (the source's end used to stop MQTT and
/// sync while the UI went on taking changes).
#[test]
fn after_the_source_ends_serve_still_announces_people_enrolled_through_the_api() {
    use crate::common::server::{multipart, Server};
    let dir = scratch("ha", "ended");
    let port = free_port();
    let _broker = Broker::start(port);
    let mut ha = Listener::subscribe(port, "ha-ended", &["homeassistant/#"]);
    let url = format!("mqtt://127.0.0.1:{port}");
    let mut s = Server::start(
        &dir.join("state"),
        &dir.join("gallery"),
        &["--mqtt", &url, "--camera-name", "Front door"],
    );
    let config = ha.wait(CONFIG, "the first announcement", |_| true);
    let config: serde_json::Value = serde_json::from_slice(&config.payload).unwrap();
    assert_eq!(
        config["cmps"]["camera"]["state_topic"], "facegate/front_door/camera",
        "{config}"
    );
    let mut states = Listener::subscribe(port, "ha-camera", &["facegate/front_door/camera"]);
    // A short recording (an empty stream is an error, not an end), then the stream closes.
    s.feed(&[blank(), blank()]);
    states.wait("facegate/front_door/camera", "the camera on", |m| {
        m.payload == b"ON"
    });
    s.stdin.take();
    // The camera entity turns off: Home Assistant can tell a dead camera from an empty hallway.
    states.wait("facegate/front_door/camera", "the camera off", |m| {
        m.payload == b"OFF"
    });
    let started = std::time::Instant::now();
    while !s.log().contains("the frame source ended")
        && started.elapsed() < crate::common::server::PATIENCE
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let photo_bytes = std::fs::read(photo("obama.jpg")).unwrap();
    let (kind, body) = multipart(&[
        ("name", None, b"Obama"),
        ("photo", Some("obama.jpg"), &photo_bytes),
    ]);
    let r = s.send("POST", "/api/v1/people", &kind, &body);
    assert_eq!(r.status, 201, "{}", r.text());
    ha.wait(CONFIG, "a config with Obama's entity", |m| {
        m.text().contains("Obama present")
    });
    let log = s.stop();
    assert!(log.contains("the frame source ended"), "{log}");
}

/// After a kill -9 with someone in view, the next start resets their retained presence to off
/// before the device says "online" (it went unavailable -> on -> off, firing automations for
/// someone not there). Every component carries `qos`, scores are decimals, the event says
/// `unknown_id`, and removing the person clears their retained name and face.
#[test]
fn a_restart_after_a_crash_never_shows_a_false_presence() {
    let dir = scratch("ha", "crash");
    let gallery = dir.join("gallery");
    enroll(&gallery, "Obama", "obama.jpg");
    let port = free_port();
    let _broker = Broker::start(port);
    let start = || watch_front_door(&gallery, port, false);
    let obama: Vec<_> = (0..8)
        .map(|i| jpeg(&frame_with(&photo("obama2.jpg"), 560, 20 + 2 * i, 0)))
        .collect();
    let mut ha = Listener::subscribe(port, "ha-crash", &["homeassistant/#", "facegate/#"]);
    let mut first = start();
    let mut stdin = first.stdin.take().unwrap();
    for f in &obama {
        stdin.write_all(f).unwrap();
    }
    stdin.flush().unwrap();
    ha.wait(OBAMA, "presence on", |m| m.payload == b"ON");
    let event = ha.wait("facegate/front_door/event", "identified", |_| true);
    let event: serde_json::Value = serde_json::from_slice(&event.payload).unwrap();
    let score = event["score"].as_f64().unwrap();
    assert_eq!(score, (score * 1e4).round() / 1e4, "{event}");
    assert!(score.to_string().len() <= 6, "{event}");
    assert!(
        event.as_object().unwrap().contains_key("unknown_id"),
        "{event}"
    );
    let config = ha.wait(CONFIG, "the config", |_| true);
    let config: serde_json::Value = serde_json::from_slice(&config.payload).unwrap();
    for (name, component) in config["cmps"].as_object().unwrap() {
        assert_eq!(component["qos"], 1, "{name}");
    }
    let _ = first.kill();
    let _ = first.wait();
    ha.wait(AVAILABILITY, "offline from the will", |m| {
        m.payload == b"offline"
    });

    let restart = ha.seen.len();
    let mut second = start();
    ha.wait(AVAILABILITY, "online again", |m| m.payload == b"online");
    let after: Vec<(String, String)> = ha.seen[restart..]
        .iter()
        .map(|m| (m.topic.clone(), m.text()))
        .collect();
    let online = after
        .iter()
        .position(|(t, p)| t == AVAILABILITY && p == "online")
        .unwrap();
    let off = after
        .iter()
        .position(|(t, p)| t == OBAMA && p == "OFF")
        .unwrap_or_else(|| panic!("no reset: {after:?}"));
    assert!(off < online, "presence reset after online: {after:?}");

    // Removing him clears the retained name and face he left on the broker.
    let mut stdin = second.stdin.take().unwrap();
    for f in &obama {
        stdin.write_all(f).unwrap();
    }
    stdin.flush().unwrap();
    ha.wait(OBAMA, "presence on again", |m| m.payload == b"ON");
    ok(&facegate()
        .args(["gallery", "remove", "Obama", "--gallery"])
        .arg(&gallery)
        .output()
        .unwrap());
    std::thread::sleep(Duration::from_millis(700));
    stdin.write_all(&jpeg(&blank())).unwrap();
    stdin.flush().unwrap();
    ha.wait(
        "facegate/front_door/last_person",
        "the last person cleared",
        |m| m.payload.is_empty(),
    );
    ha.wait("facegate/front_door/snapshot", "the face cleared", |m| {
        m.payload.is_empty()
    });
    drop(stdin);
    let _ = second.wait();
}

/// A person removed while facegate was stopped loses their entity at the next start (Home
/// Assistant keeps a component that is merely left out of the config): the previous config on
/// the broker says who was announced, and the new one carries a removal marker for them.
#[test]
fn a_person_removed_while_stopped_loses_the_entity_at_the_next_start() {
    let dir = scratch("ha", "orphans");
    let gallery = dir.join("gallery");
    enroll(&gallery, "Obama", "obama.jpg");
    enroll(&gallery, "Biden", "biden.jpg");
    let port = free_port();
    let _broker = Broker::start(port);
    let run = || {
        let mut watch = watch_front_door(&gallery, port, false);
        let mut stdin = watch.stdin.take().unwrap();
        stdin.write_all(&jpeg(&blank())).unwrap();
        (watch, stdin)
    };
    let mut ha = Listener::subscribe(port, "ha-orphans", &["homeassistant/#", "facegate/#"]);
    let (mut first, stdin) = run();
    ha.wait(CONFIG, "a config with Biden", |m| {
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["cmps"]["present_p000002"]
            ["name"]
            == "Biden present"
    });
    ha.wait(AVAILABILITY, "online", |m| m.payload == b"online");
    drop(stdin);
    let _ = first.wait();
    ok(&facegate()
        .args(["gallery", "remove", "Biden", "--gallery"])
        .arg(&gallery)
        .output()
        .unwrap());
    let (mut second, stdin) = run();
    let config = ha.wait(CONFIG, "a config that deletes Biden's entity", |m| {
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["cmps"]["present_p000002"]
            == serde_json::json!({"p": "binary_sensor"})
    });
    let config: serde_json::Value = serde_json::from_slice(&config.payload).unwrap();
    assert_eq!(config["cmps"]["present_p000001"]["name"], "Obama present");
    ha.wait(BIDEN, "Biden's retained presence cleared", |m| {
        m.payload.is_empty()
    });
    drop(stdin);
    let _ = second.wait();
}

/// A gallery that joins a fleet gives its people fleet-wide ids (`p000001` becomes
/// `p000001-<board>`): at that start the entities of the old ids are deleted, not left behind
/// beside the new ones.
#[test]
fn joining_a_fleet_moves_the_entities_to_the_fleet_ids() {
    let dir = scratch("ha", "join");
    let gallery = dir.join("gallery");
    enroll(&gallery, "Obama", "obama.jpg");
    let port = free_port();
    let _broker = Broker::start(port);
    let mut ha = Listener::subscribe(port, "ha-join", &["homeassistant/#"]);
    let config = |m: &crate::common::broker::Received| {
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["cmps"].clone()
    };
    let mut first = watch_front_door(&gallery, port, false);
    ha.wait(CONFIG, "Obama's entity", |m| {
        config(m)["present_p000001"]["name"] == "Obama present"
    });
    drop(first.stdin.take());
    let _ = first.wait();

    let mut fleet = facegate();
    fleet.env("FACEGATE_SYNC_KEY", "the fleet's secret, 32 bytes....");
    let mut second = watch_front_door_with(&gallery, port, false, fleet, &["--sync", "mqtt"]);
    let moved = ha.wait(CONFIG, "the entity moved to the fleet id", |m| {
        config(m)["present_p000001"] == serde_json::json!({"p": "binary_sensor"})
    });
    let cmps = config(&moved);
    let renamed: Vec<&String> = cmps
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("present_p000001-"))
        .collect();
    assert_eq!(renamed.len(), 1, "{cmps}");
    assert_eq!(cmps[renamed[0].as_str()]["name"], "Obama present", "{cmps}");
    drop(second.stdin.take());
    let _ = second.wait();
}

/// A person removed while facegate was stopped loses the entity at the next start even when the
/// broker lost its retained config meanwhile (restarted without persistence): the board
/// remembers what it announced beside its gallery.
#[test]
fn a_person_removed_while_the_broker_forgot_everything_still_loses_the_entity() {
    let dir = scratch("ha", "forgot");
    let gallery = dir.join("gallery");
    enroll(&gallery, "Obama", "obama.jpg");
    enroll(&gallery, "Biden", "biden.jpg");
    let port = free_port();
    let broker = Broker::start(port);
    let config = |m: &crate::common::broker::Received| {
        serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["cmps"].clone()
    };
    let mut ha = Listener::subscribe(port, "ha-forgot-1", &["homeassistant/#"]);
    let mut first = watch_front_door(&gallery, port, false);
    ha.wait(CONFIG, "Biden's entity", |m| {
        config(m)["present_p000002"]["name"] == "Biden present"
    });
    drop(first.stdin.take());
    let _ = first.wait();
    let remembered = std::fs::read_to_string(gallery.join("home-assistant-front_door.json"));
    assert_eq!(remembered.unwrap(), r#"["p000001","p000002"]"#);
    drop(ha);
    drop(broker);

    let _broker = Broker::start(port);
    ok(&facegate()
        .args(["gallery", "remove", "Biden", "--gallery"])
        .arg(&gallery)
        .output()
        .unwrap());
    let mut ha = Listener::subscribe(port, "ha-forgot-2", &["homeassistant/#"]);
    let mut second = watch_front_door(&gallery, port, false);
    let seen = ha.wait(CONFIG, "a config that deletes Biden's entity", |m| {
        config(m)["present_p000002"] == serde_json::json!({"p": "binary_sensor"})
    });
    assert_eq!(config(&seen)["present_p000001"]["name"], "Obama present");
    drop(second.stdin.take());
    let _ = second.wait();
}
