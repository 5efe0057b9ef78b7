//! `facegate bench sync`: what fleet sync costs on the wire and how long a new board takes to
//! catch up with a fleet of N people from one broker, next to a reference run in the same
//! process: a plain subscriber receiving the same retained messages without applying them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use facegate::mqtt::{Inbox, Incoming, Message, Publisher, Session, Subscription};
use facegate::store::gallery::Gallery;
use facegate::sync::member::{Sync, SyncConfig, FILTER};
use facegate::sync::{PersonState, SyncShot};

use crate::faces::ModelArgs;

#[derive(clap::Args)]
pub struct BenchSyncArgs {
    /// The broker (a test broker: the bench fills it with people and clears them afterwards)
    #[arg(long, value_name = "URL")]
    pub mqtt: String,
    /// A gallery whose first person with crops is copied N times (with new ids and names)
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
    /// Fleet sizes to time (people)
    #[arg(long, value_delimiter = ',', default_value = "1000,10000", value_parser = crate::ranges::int(1usize, 200_000))]
    pub people: Vec<usize>,
    /// Where the new boards' galleries are made (removed afterwards)
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    pub scratch: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// How long the bench waits for a broker that takes nothing before it gives up.
const STUCK: Duration = Duration::from_secs(60);
const KEY: &[u8] = b"bench key, not a secret (32 B)..";
/// The bench fleet's board id, so that its ids can never be a real board's.
const BENCH_BOARD: &str = "0000000000bec4ed";

pub fn run(args: BenchSyncArgs) -> Result<ExitCode, String> {
    let pipeline = args.model.load()?;
    let model = pipeline.model_info();
    let g = Gallery::open(&args.from, &model).map_err(|e| e.to_string())?;
    let template = g
        .people()
        .iter()
        .find(|p| !p.entry.crops.is_empty() && p.entry.crops.len() == p.shots.len())
        .ok_or("the --from gallery has nobody enrolled with crops")?;
    let crops = template
        .entry
        .crops
        .iter()
        .map(|c| std::fs::read(g.crop_path(c)).map_err(|e| format!("{c}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    for &n in &args.people {
        let states: Vec<PersonState> = (0..n)
            .map(|i| PersonState {
                id: format!("p{:06}-{BENCH_BOARD}", i + 1),
                version: 1,
                origin: BENCH_BOARD.into(),
                name: format!("Person {}", i + 1),
                enrolled_unix: 0,
                model: model.fingerprint.clone(),
                deleted: false,
                shots: template
                    .shots
                    .iter()
                    .zip(&crops)
                    .map(|(e, c)| SyncShot {
                        embedding: e.clone(),
                        crop_png: c.clone(),
                    })
                    .collect(),
                negatives: Vec::new(),
            })
            .collect();
        // The fleet as its boards publish it: every person, then the manifest listing them.
        let manifest = facegate::sync::manifest::split(
            BENCH_BOARD,
            states
                .iter()
                .map(|s| facegate::sync::manifest::Entry {
                    id: s.id.clone(),
                    version: s.version,
                    origin: s.origin.clone(),
                    deleted: false,
                })
                .collect(),
        );
        let started = Instant::now();
        let bytes = publish(
            &args.mqtt,
            states
                .iter()
                .map(|s| (facegate::sync::topic(&s.id), facegate::sync::seal(s, KEY)))
                .chain(manifest.iter().map(|c| {
                    (
                        facegate::sync::manifest::topic(BENCH_BOARD, c.chunk),
                        facegate::sync::manifest::seal(c, KEY),
                    )
                })),
        )?;
        let published = started.elapsed();

        let wildcard_got = receive_wildcard(&args.mqtt, n)?;
        let started = Instant::now();
        let received = receive_by_topic(&args.mqtt, &states)?;
        let reference = started.elapsed();

        let dir = args
            .scratch
            .join(format!("facegate-bench-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let writes = write_crops_alone(&dir, &states)?;

        let fsyncs_before = facegate::support::durable::fsyncs();
        let started = Instant::now();
        let mut embedder = pipeline.share()?.embedder;
        let sync = Sync::start(
            SyncConfig {
                url: args.mqtt.clone(),
                credentials: None,
                key: KEY.to_vec(),
                gallery: dir.clone(),
                model: model.clone(),
            },
            Box::new(move |c| embedder.embed(c)),
        )?;
        // Until it has everyone, or nothing came for a minute.
        let (mut held, mut progress) = (0, Instant::now());
        let mut synced = started.elapsed();
        while held < n && progress.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(20));
            let now = Gallery::open(&dir, &model).map_or(0, |g| g.people().len());
            if now > held {
                (held, progress, synced) = (now, Instant::now(), started.elapsed());
            }
        }
        let commits = sync.commits();
        let new_board = sync.board().to_string();
        let fsyncs = facegate::support::durable::fsyncs() - fsyncs_before;
        sync.stop();
        let disk = folder_bytes(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        // Leave the broker as it was: an empty retained message clears a topic (the new
        // board's manifest too).
        let board_manifests = [BENCH_BOARD, new_board.as_str()].into_iter().flat_map(|b| {
            (0..facegate::sync::manifest::chunks_for(n))
                .map(move |k| facegate::sync::manifest::topic(b, k))
        });
        publish(
            &args.mqtt,
            states
                .iter()
                .map(|s| (facegate::sync::topic(&s.id), Vec::new()))
                .chain(board_manifests.map(|t| (t, Vec::new()))),
        )?;
        let baseline = reference + writes;
        println!(
            "{}",
            serde_json::json!({
                "people": n,
                "shots_per_person": template.shots.len(),
                "bytes_per_person": bytes / n as u64,
                "publish_s": round(published.as_secs_f64()),
                "wildcard_subscriber_got": wildcard_got,
                "receive_only_s": round(reference.as_secs_f64()),
                "receive_only_got": received,
                "crop_writes_alone_s": round(writes.as_secs_f64()),
                "new_board_got": held,
                "new_board_sync_s": round(synced.as_secs_f64()),
                "people_per_s": round(held as f64 / synced.as_secs_f64()),
                "vs_receive_and_writes": round(synced.as_secs_f64() / baseline.as_secs_f64()),
                "commits": commits,
                "fsyncs": fsyncs,
                "fsyncs_per_commit": round(fsyncs as f64 / commits.max(1) as f64),
                "gallery_bytes_per_person": disk / n as u64,
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Publishes (topic, payload) pairs retained, at the pace the connection takes them; returns the
/// payload bytes sent.
fn publish(url: &str, messages: impl Iterator<Item = (String, Vec<u8>)>) -> Result<u64, String> {
    let session = Session {
        client_id: Some(format!("facegate-bench-{}", std::process::id())),
        max_packet: Some(facegate::sync::MAX_MESSAGE_BYTES + 4096),
        ..Session::default()
    };
    let p = Publisher::connect_with(url, "facegate/bench", None, session)?;
    let mut bytes = 0;
    for (topic, payload) in messages {
        bytes += payload.len() as u64;
        let mut m = Message::retained(topic, payload);
        let asked = Instant::now();
        loop {
            match p.try_send(m) {
                Ok(()) => break,
                Err(_) if asked.elapsed() > STUCK => {
                    return Err(format!("the broker at {url} took no message for a minute"));
                }
                Err(back) => {
                    m = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    p.close();
    Ok(bytes)
}

/// What a plain wildcard subscriber gets of the `n` retained people (a broker drops what it
/// cannot queue for one client: mosquitto's default hands over about 1 020).
fn receive_wildcard(url: &str, n: usize) -> Result<usize, String> {
    let (p, inbox) = reader(url, FILTER, true)?;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        match inbox.recv_timeout(Duration::from_secs(3)) {
            Ok(Incoming::Message { topic, payload }) if !payload.is_empty() => {
                seen.insert(topic);
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    p.close();
    Ok(seen.len())
}

/// The reference: a plain subscriber asking for the people by their exact topics, a window
/// of them at a time (what any client must do to get them all from a broker's default queue),
/// verifying and writing nothing.
fn receive_by_topic(url: &str, states: &[PersonState]) -> Result<usize, String> {
    let (p, inbox) = reader(url, FILTER, false)?;
    let mut got = 0;
    for window in states.chunks(400) {
        let topics: Vec<String> = window
            .iter()
            .map(|s| facegate::sync::topic(&s.id))
            .collect();
        let asked = Instant::now();
        while !p.fetch(&topics) {
            if asked.elapsed() > STUCK {
                return Err("the reference subscriber could not subscribe for a minute".into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut pending: std::collections::HashSet<&String> = topics.iter().collect();
        while !pending.is_empty() {
            match inbox.recv_timeout(Duration::from_secs(3)) {
                Ok(Incoming::Message { topic, .. }) => {
                    if pending.remove(&topic) {
                        got += 1;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    // Its subscriptions end with its connection.
    p.close();
    Ok(got)
}

fn reader(
    url: &str,
    filter: &str,
    retained: bool,
) -> Result<(Publisher, mpsc::Receiver<Incoming>), String> {
    let (to, inbox) = mpsc::sync_channel(64);
    let session = Session {
        inbox: Some(Inbox {
            filters: vec![Subscription::new(filter, retained)],
            to,
            fell_behind: Default::default(),
        }),
        client_id: Some(format!("facegate-bench-reader-{}", std::process::id())),
        max_packet: Some(facegate::sync::MAX_MESSAGE_BYTES + 4096),
        ..Session::default()
    };
    let p = Publisher::connect_with(url, "facegate/bench", None, session)?;
    Ok((p, inbox))
}

/// The crops alone, written as the sync writes them (a batch of about 300 people at a time, one
/// flush each and one directory sync a batch), in a folder removed afterwards.
fn write_crops_alone(dir: &std::path::Path, states: &[PersonState]) -> Result<Duration, String> {
    let crops = dir.join("crops-alone");
    std::fs::create_dir_all(&crops).map_err(|e| e.to_string())?;
    let started = Instant::now();
    for (b, batch) in states.chunks(300).enumerate() {
        let files: Vec<(String, &[u8])> = batch
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.shots
                    .iter()
                    .enumerate()
                    .map(move |(k, shot)| (format!("{b}-{i}-{k}.png"), shot.crop_png.as_slice()))
            })
            .collect();
        facegate::support::durable::write_batch(&crops, &files).map_err(|e| e.to_string())?;
    }
    let took = started.elapsed();
    let _ = std::fs::remove_dir_all(&crops);
    Ok(took)
}

fn folder_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => folder_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
