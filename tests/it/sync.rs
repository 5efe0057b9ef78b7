//! One gallery, many boards, against a real mosquitto: three `watch --sync mqtt` processes with
//! galleries of their own. Enrolled on A, identified on B and C; renamed on B, seen on A and C;
//! removed on C, gone everywhere; B dies in the middle of applying a change and is converged
//! after a restart; a new board with an empty gallery is complete after one sync; messages
//! signed with another key change nothing. Three boards editing through a partition and a
//! restart converge, corrections included.
#![cfg(feature = "mqtt")]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::broker::{free_port, publish, Broker};
use crate::common::server::{frame_with, jpeg};
use crate::common::{enroll, ok, photo, scratch};

const KEY: &str = "the fleet's secret, 32 bytes....";

fn facegate() -> Command {
    let mut c = crate::common::facegate();
    c.env("FACEGATE_SYNC_KEY", KEY);
    c
}

/// A board: `watch --sync mqtt` on frames written to its standard input.
struct Board {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(from: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let into = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
    lines
}

impl Board {
    fn start(name: &'static str, gallery: &Path, port: u16, env: &[(&str, &str)]) -> Board {
        Board::start_with(name, gallery, port, env, &[])
    }

    fn start_with(
        name: &'static str,
        gallery: &Path,
        port: u16,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Board {
        std::fs::create_dir_all(gallery).unwrap();
        let mut child = facegate()
            .args(["watch", "--mjpeg", "-", "--min-face", "40", "--no-ha"])
            .args(["--camera-name", name, "--sync", "mqtt", "--mqtt"])
            .arg(format!("mqtt://127.0.0.1:{port}"))
            .arg("--gallery")
            .arg(gallery)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let board = Board {
            name,
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
        };
        board.wait_log("sharing the gallery with the fleet");
        board
    }

    fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    fn wait_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "board {} never said {text:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Feeds frames of a person's photo and waits for the event naming them.
    fn sees(&mut self, image: &str, name: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        for i in 0..8 {
            stdin
                .write_all(&jpeg(&frame_with(&photo(image), 560, 20 + 2 * i, 0)))
                .unwrap();
        }
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let hit = self.stdout.lock().unwrap().iter().any(|l| {
                let e: serde_json::Value = serde_json::from_str(l).unwrap();
                e["event"] == "identified" && e["name"] == name
            });
            if hit {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "board {} did not identify {name}: {:?}\n{}",
                self.name,
                self.stdout.lock().unwrap(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A clean stop (end of the stream), returning the log.
    fn stop(mut self) -> String {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert!(status.success(), "{}", self.log());
        self.log()
    }
}

/// The people of a gallery as (id, name), and its removed ids.
fn people(gallery: &Path) -> (Vec<(String, String)>, Vec<String>) {
    let Ok(text) = std::fs::read_to_string(gallery.join("gallery.json")) else {
        return (Vec::new(), Vec::new());
    };
    let index: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut people: Vec<(String, String)> = index["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    people.sort();
    let removed = index["removed"].as_array().map_or(Vec::new(), |r| {
        r.iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    });
    (people, removed)
}

fn names(gallery: &Path) -> Vec<String> {
    let mut n: Vec<String> = people(gallery).0.into_iter().map(|(_, n)| n).collect();
    n.sort();
    n
}

/// Waits until every gallery holds exactly `expected` (names).
fn converge(galleries: &[&Path], expected: &[&str], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let all: Vec<Vec<String>> = galleries.iter().map(|g| names(g)).collect();
        if all.iter().all(|n| n == expected) {
            // Same ids everywhere, too.
            let ids: Vec<_> = galleries.iter().map(|g| people(g).0).collect();
            assert!(ids.windows(2).all(|w| w[0] == w[1]), "{what}: {ids:?}");
            return;
        }
        assert!(Instant::now() < deadline, "{what}: galleries hold {all:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn gallery_command(gallery: &Path, args: &[&str]) {
    ok(&facegate()
        .arg("gallery")
        .args(args)
        .arg("--gallery")
        .arg(gallery)
        .output()
        .unwrap());
}

#[test]
fn three_boards_share_one_gallery_through_the_broker() {
    let dir = scratch("sync", "three");
    let port = free_port();
    let _broker = Broker::start(port);
    let (ga, gb, gc) = (dir.join("a"), dir.join("b"), dir.join("c"));
    // A already has someone, enrolled before it joined a fleet (an old gallery): their id
    // becomes fleet-wide without loss.
    enroll(&ga, "Messi", "messi5.jpg");
    assert_eq!(people(&ga).0[0].0, "p000001");
    let a = Board::start("a", &ga, port, &[]);
    let mut b = Board::start("b", &gb, port, &[]);
    let mut c = Board::start("c", &gc, port, &[]);
    let all = [ga.as_path(), gb.as_path(), gc.as_path()];
    converge(&all, &["Messi"], "the old gallery's person");
    let messi = &people(&ga).0[0].0;
    assert!(
        messi.starts_with("p000001-") && messi.len() == 24,
        "{messi}"
    );
    assert!(ga.join("crops").join(format!("{messi}-0.png")).exists());

    // Enrolled on A (by the CLI, while A watches): identified on B and C.
    enroll(&ga, "Obama", "obama.jpg");
    converge(&all, &["Messi", "Obama"], "enrolled on A");
    b.sees("obama2.jpg", "Obama");
    c.sees("obama2.jpg", "Obama");

    // Renamed on B: seen on A and C. Removed on C: gone everywhere, remembered as removed.
    gallery_command(&gb, &["rename", "Obama", "Barack"]);
    converge(&all, &["Barack", "Messi"], "renamed on B");
    gallery_command(&gc, &["remove", "Barack"]);
    converge(&all, &["Messi"], "removed on C");
    for g in all {
        assert_eq!(people(g).1.len(), 1, "a tombstone in {}", g.display());
    }

    // B dies in the middle of applying a change (after writing the new embeddings, before the
    // index that commits them), as a power cut or kill -9 would leave it; restarted, it is
    // converged and its gallery is consistent.
    b.kill();
    let b = Board::start("b", &gb, port, &[("FACEGATE_CRASH_AT", "after-embeddings")]);
    enroll(&ga, "Biden", "biden.jpg");
    let mut b = b;
    let deadline = Instant::now() + Duration::from_secs(60);
    while b.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "B did not reach the crash point");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        names(&gb),
        ["Messi"],
        "the crash left the gallery as it was"
    );
    b.kill();
    let mut b = Board::start("b", &gb, port, &[]);
    converge(&all, &["Biden", "Messi"], "after B's restart");
    b.sees("biden.jpg", "Biden");
    let check = facegate()
        .args(["gallery", "check", "--gallery"])
        .arg(&gb)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", crate::common::stderr(&check));

    // A new board with an empty gallery is complete after one sync.
    let gd = dir.join("d");
    let d = Board::start("d", &gd, port, &[]);
    converge(
        &[ga.as_path(), gd.as_path()],
        &["Biden", "Messi"],
        "the new board",
    );
    assert_eq!(people(&gd).1, people(&ga).1, "the removal reached it too");

    // Forged messages (another key): a new person, and Biden renamed at a higher version.
    let biden = people(&ga)
        .0
        .into_iter()
        .find(|(_, n)| n == "Biden")
        .unwrap()
        .0;
    let wrong = b"not the fleet's key, 32 bytes...";
    let mut png = Vec::new();
    image::RgbImage::new(4, 4)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let forged = |id: &str, name: &str| facegate::sync::PersonState {
        id: id.into(),
        version: 99,
        origin: "ffffffffffffffff".into(),
        name: name.into(),
        enrolled_unix: 0,
        model: "00".into(),
        deleted: false,
        shots: vec![facegate::sync::SyncShot {
            embedding: vec![0.0; 128],
            crop_png: png.clone(),
        }],
        negatives: Vec::new(),
    };
    let mallory = "p000001-ffffffffffffffff";
    publish(
        port,
        &[
            (
                facegate::sync::topic(mallory),
                facegate::sync::seal(&forged(mallory, "Mallory"), wrong),
            ),
            (
                facegate::sync::topic(&biden),
                facegate::sync::seal(&forged(&biden, "Mallory"), wrong),
            ),
            (facegate::sync::topic(&biden), b"not even JSON".to_vec()),
        ],
    );
    // A real change after them is the barrier: once it arrived, so had they.
    enroll(&gc, "Obama", "obama2.jpg");
    let all = [ga.as_path(), gb.as_path(), gc.as_path(), gd.as_path()];
    converge(&all, &["Biden", "Messi", "Obama"], "after the forgeries");
    for board in [&a, &b, &c, &d] {
        board.wait_log("bad signature");
        board.wait_log("not a signed facegate message");
    }
    // The broker held the forgery of Biden last: the boards that saw it published theirs again
    // (the garbage after the forgery may still be there for the second repair's back-off).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let retained = read_retained(port, &facegate::sync::topic(&biden));
        match facegate::sync::open(&retained, KEY.as_bytes(), &biden) {
            Ok(state) if state.name == "Biden" => break,
            other => assert!(
                Instant::now() < deadline,
                "the broker still holds a forgery of Biden: {:?}",
                other.map(|s| s.name)
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let (mut a, mut d) = (a, d);
    a.sees("biden.jpg", "Biden");
    d.sees("obama2.jpg", "Obama");
    let logs: Vec<String> = [a, b, c, d].into_iter().map(Board::stop).collect();

    // A board with another model (the fp32 SFace of ../shared, when there) re-embeds everyone
    // from the crops that travel with them, and recognises them with its own embeddings.
    if let Some(card) = f32_card(&dir) {
        let ge = dir.join("e");
        let mut e = Board::start_with("e", &ge, port, &[], &["--model", card.to_str().unwrap()]);
        converge(
            &[ga.as_path(), ge.as_path()],
            &["Biden", "Messi", "Obama"],
            "the board with another model",
        );
        let fingerprint = |g: &Path| {
            let text = std::fs::read_to_string(g.join("gallery.json")).unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["model"]["fingerprint"]
                .clone()
        };
        assert_ne!(fingerprint(&ge), fingerprint(&ga));
        e.sees("biden.jpg", "Biden");
        e.stop();
    }
    assert!(logs[0].contains("joined the fleet as board"), "{}", logs[0]);
}

/// The retained message on `topic`.
fn read_retained(port: u16, topic: &str) -> Vec<u8> {
    let mut l = crate::common::broker::Listener::subscribe(port, "reader", &[topic]);
    l.wait(topic, "the retained message", |m| m.retain).payload
}

/// A model card for the fp32 SFace in ../shared (another model than the shipped one).
fn f32_card(dir: &Path) -> Option<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let onnx = root.join("../shared/anchors/sface_2021dec_fp32_from_int8bq.onnx");
    let bytes = std::fs::read(&onnx).ok()?;
    let text = std::fs::read_to_string(root.join("models/sface_int8w.json")).unwrap();
    let mut card: serde_json::Value = serde_json::from_str(&text).unwrap();
    card["file"] = onnx.to_str().unwrap().into();
    card["sha256"] = facegate::embed::model_card::sha256_hex(&bytes).into();
    card["form"] = "f32".into();
    let path = dir.join("sface_f32.json");
    std::fs::write(&path, card.to_string()).unwrap();
    Some(path)
}

/// The person a retained message on `topic` carries, opened with the fleet's key.
fn retained_person(port: u16, topic: &str) -> facegate::sync::PersonState {
    let id = topic.trim_start_matches("facegate/gallery/");
    let key = facegate::sync::key(KEY).unwrap();
    facegate::sync::open(&current(port, topic), &key, id).unwrap()
}

/// What the broker holds on `topic`: its retained copy, or what was published there as this
/// client subscribed (which the broker retains as well).
fn current(port: u16, topic: &str) -> Vec<u8> {
    let mut l = crate::common::broker::Listener::subscribe(port, "reader", &[topic]);
    l.wait(topic, "a message", |_| true).payload
}

/// Someone who can publish to the broker re-publishes an old, validly signed message (a
/// replay): the board that holds the newer version sees the broker's copy go back and
/// publishes its own again, so a board that joins afterwards gets the newer state, not the old.
#[test]
fn a_replayed_old_message_is_put_right_by_the_board_that_holds_the_newer_one() {
    let dir = scratch("sync", "replay");
    let port = free_port();
    let _broker = Broker::start(port);
    let ga = dir.join("a");
    enroll(&ga, "Obama", "obama.jpg");
    let a = Board::start("a", &ga, port, &[]);
    let id = people(&ga).0[0].0.clone();
    let topic = format!("facegate/gallery/{id}");
    let wait_for_name = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if retained_person(port, &topic).name == name {
                return;
            }
            assert!(Instant::now() < deadline, "the broker never held {name}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    wait_for_name("Obama");
    let old = current(port, &topic);
    gallery_command(&ga, &["rename", "Obama", "Barack"]);
    wait_for_name("Barack");
    // The replay: the broker now retains the old version.
    publish(port, &[(topic.clone(), old)]);
    wait_for_name("Barack");
    let gb = dir.join("b");
    let b = Board::start("b", &gb, port, &[]);
    converge(
        &[ga.as_path(), gb.as_path()],
        &["Barack"],
        "after the replay",
    );
    b.kill();
    a.kill();
}

/// Someone who can publish floods a person's topic with 100 one-byte messages (each replaces the
/// broker's retained copy). The boards repair the copy, but back off: a few person messages go
/// out, not one per junk message and board (which once drew 11.5 MB), and the broker ends up
/// holding the person again.
#[test]
fn junk_on_a_person_topic_is_repaired_without_a_flood() {
    let dir = scratch("sync", "junk");
    let port = free_port();
    let _broker = Broker::start(port);
    let ga = dir.join("a");
    enroll(&ga, "Obama", "obama.jpg");
    let a = Board::start("a", &ga, port, &[]);
    let gb = dir.join("b");
    let b = Board::start("b", &gb, port, &[]);
    converge(&[ga.as_path(), gb.as_path()], &["Obama"], "before the junk");
    let id = people(&ga).0[0].0.clone();
    let topic = format!("facegate/gallery/{id}");
    let size = current(port, &topic).len();
    let mut l = crate::common::broker::Listener::subscribe(port, "counter", &[topic.as_str()]);
    l.drain(Duration::from_millis(500));
    let junk: Vec<(String, Vec<u8>)> = (0..100).map(|_| (topic.clone(), vec![b'x'])).collect();
    publish(port, &junk);
    let seen = l.drain(Duration::from_secs(8));
    let repairs: Vec<usize> = seen
        .iter()
        .filter(|m| m.payload.len() > 1)
        .map(|m| m.payload.len())
        .collect();
    let bytes: usize = repairs.iter().sum();
    eprintln!(
        "100 junk messages drew {} repairs, {bytes} bytes (one person message: {size} bytes)",
        repairs.len()
    );
    assert!(!repairs.is_empty(), "the junk was never repaired");
    assert!(
        repairs.len() <= 10,
        "{} repairs ({bytes} bytes) for 100 junk messages",
        repairs.len()
    );
    assert_eq!(retained_person(port, &topic).name, "Obama");
    b.kill();
    a.kill();
}

/// A retained message larger than a person message on a person topic (anyone who can publish
/// can leave one) is read and refused: the board stays connected (it used to reconnect every
/// second, receiving it again each time) and still gets the fleet's people.
#[test]
fn an_oversized_retained_message_does_not_stop_sync() {
    let dir = scratch("sync", "oversized");
    let port = free_port();
    let _broker = Broker::start(port);
    let ga = dir.join("a");
    enroll(&ga, "Obama", "obama.jpg");
    let a = Board::start("a", &ga, port, &[]);
    // One over the 4 MiB of a person message (read and refused), one over the 32 MiB a board
    // reads at all (the broker drops it for the board, which told it its packet limit).
    publish(
        port,
        &[
            (
                "facegate/gallery/p000009-00000000000000aa".to_string(),
                vec![b'x'; 5 << 20],
            ),
            (
                "facegate/gallery/p000008-00000000000000aa".to_string(),
                vec![b'y'; 40 << 20],
            ),
        ],
    );
    let gb = dir.join("b");
    let b = Board::start("b", &gb, port, &[]);
    converge(
        &[ga.as_path(), gb.as_path()],
        &["Obama"],
        "with an oversized message",
    );
    std::thread::sleep(Duration::from_secs(3));
    let connections = b.log().matches("connected to MQTT broker").count();
    assert!(connections <= 2, "board b kept reconnecting:\n{}", b.log());
    b.kill();
    a.kill();
}

/// A TCP relay between a board and the broker that can be cut (every connection through it
/// closed, new ones refused) and restored: a network partition, with real sockets.
struct Partition {
    port: u16,
    cut: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Partition {
    fn start(upstream: u16) -> Partition {
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (is_cut, streams) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(down) = conn else { continue };
                if is_cut.load(Ordering::Relaxed) {
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut held = streams.lock().unwrap();
                held.push(down.try_clone().unwrap());
                held.push(up.try_clone().unwrap());
                let pairs = [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ];
                for (mut from, mut to) in pairs {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Partition { port, cut, open }
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::Relaxed);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn heal(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A gallery's shared state: per person id, name, version, origin, shots and negatives, and the
/// removals; everything but what is the board's own (its id, crop file names, next number).
fn fleet_state(gallery: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(gallery.join("gallery.json")).unwrap();
    let index: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut people: Vec<serde_json::Value> = index["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            serde_json::json!([
                p["id"],
                p["name"],
                p["version"],
                p["origin"],
                p["shots"],
                p["negatives"],
                p["enrolled_unix"]
            ])
        })
        .collect();
    people.sort_by_key(|p| p[0].as_str().unwrap_or("").to_string());
    let mut removed = index["removed"].as_array().cloned().unwrap_or_default();
    removed.sort_by_key(|t| t["id"].as_str().unwrap_or("").to_string());
    serde_json::json!({ "people": people, "removed": removed })
}

/// Three boards edit at once (enroll, rename, remove, "Not NAME") while one is cut off from the
/// broker by a partition and another is restarted; once the partition heals they hold the same
/// gallery, negatives included: a correction on one door holds at all of them.
#[test]
fn three_boards_editing_through_a_partition_and_a_restart_converge() {
    let dir = scratch("sync", "partition");
    let port = free_port();
    let _broker = Broker::start(port);
    let (ga, gb, gc) = (dir.join("a"), dir.join("b"), dir.join("c"));
    enroll(&ga, "Obama", "obama.jpg");
    enroll(&ga, "Messi", "messi5.jpg");
    let relay = Partition::start(port);
    let a = Board::start("a", &ga, port, &[]);
    let b = Board::start("b", &gb, port, &[]);
    let c = Board::start("c", &gc, relay.port, &[]);
    let all = [ga.as_path(), gb.as_path(), gc.as_path()];
    converge(&all, &["Messi", "Obama"], "before the partition");

    relay.cut();
    enroll(&ga, "Biden", "biden.jpg");
    gallery_command(&gb, &["reject", "Obama", &photo("biden.jpg")]);
    gallery_command(&gc, &["rename", "Messi", "Leo"]);
    converge(
        &[ga.as_path(), gb.as_path()],
        &["Biden", "Messi", "Obama"],
        "the connected side",
    );
    // B restarts while A changes more: it catches up by manifest.
    b.kill();
    gallery_command(&ga, &["remove", "Biden"]);
    enroll(&ga, "Eileen", "astronaut.png");
    let b = Board::start("b", &gb, port, &[]);
    assert_eq!(names(&gc), ["Leo", "Obama"], "C saw nothing while cut off");

    relay.heal();
    converge(&all, &["Eileen", "Leo", "Obama"], "after the partition");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states: Vec<_> = all.iter().map(|g| fleet_state(g)).collect();
        if states.windows(2).all(|w| w[0] == w[1]) {
            let obama = states[0]["people"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p[1] == "Obama")
                .unwrap()
                .clone();
            assert_eq!(obama[5], 1, "B's correction is on every board: {obama}");
            assert_eq!(states[0]["removed"].as_array().unwrap().len(), 1);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the galleries differ: {}",
            serde_json::to_string_pretty(&states).unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for board in [a, b, c] {
        board.kill();
    }
}

/// The same sync through rumqttd, a second MQTT 5 broker implementation (which ignores Retain
/// Handling, and hands a wildcard subscriber at most 100 retained messages): an old gallery's
/// people reach a new board, a rename comes back, and a board started later has everyone.
#[test]
fn a_fleet_syncs_through_a_second_broker_implementation() {
    let dir = scratch("sync", "rumqttd");
    let port = free_port();
    let _broker = Broker::start_rumqttd(port, &dir);
    let (ga, gb, gc) = (dir.join("a"), dir.join("b"), dir.join("c"));
    enroll(&ga, "Obama", "obama.jpg");
    enroll(&ga, "Messi", "messi5.jpg");
    let a = Board::start("a", &ga, port, &[]);
    let mut b = Board::start("b", &gb, port, &[]);
    converge(&[ga.as_path(), gb.as_path()], &["Messi", "Obama"], "on B");
    b.sees("obama2.jpg", "Obama");
    gallery_command(&gb, &["rename", "Messi", "Leo"]);
    converge(
        &[ga.as_path(), gb.as_path()],
        &["Leo", "Obama"],
        "renamed on B",
    );
    let c = Board::start("c", &gc, port, &[]);
    let all = [ga.as_path(), gb.as_path(), gc.as_path()];
    converge(&all, &["Leo", "Obama"], "the board started later");
    for board in [a, b, c] {
        board.kill();
    }
}

/// The broker restarts without persistence and forgets every retained message, manifests and
/// people alike: each board, finding its manifest gone, asks for the people it holds, publishes
/// those the broker lost, and a board that joins afterwards gets everyone.
#[test]
fn a_broker_that_forgot_everything_is_filled_again_by_the_boards() {
    let dir = scratch("sync", "forgot");
    let port = free_port();
    let broker = Broker::start(port);
    let (ga, gb, gc) = (dir.join("a"), dir.join("b"), dir.join("c"));
    enroll(&ga, "Obama", "obama.jpg");
    let a = Board::start("a", &ga, port, &[]);
    enroll(&gb, "Messi", "messi5.jpg");
    let b = Board::start("b", &gb, port, &[]);
    converge(&[ga.as_path(), gb.as_path()], &["Messi", "Obama"], "before");
    drop(broker);
    let _broker = Broker::start(port);
    // Both boards reconnect on their own, see their manifests gone and publish again.
    for (id, name) in people(&ga).0 {
        let state = retained_person(port, &facegate::sync::topic(&id));
        assert_eq!(state.name, name);
    }
    let c = Board::start("c", &gc, port, &[]);
    converge(
        &[ga.as_path(), gb.as_path(), gc.as_path()],
        &["Messi", "Obama"],
        "a board joining the refilled broker",
    );
    for board in [a, b, c] {
        board.kill();
    }
}
