//! `facegate bench sync`: what fleet sync costs on the wire and how long a new board takes to
//! catch up with a fleet of N people from one broker, next to a reference run in the same
//! process: a plain subscriber receiving the same retained messages without applying them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use facegate::mqtt::{Inbox, Incoming, Message, Publisher, Session};
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
            })
            .collect();
        let started = Instant::now();
        let bytes = publish(
            &args.mqtt,
            states
                .iter()
                .map(|s| (facegate::sync::topic(&s.id), facegate::sync::seal(s, KEY))),
        )?;
        let published = started.elapsed();

        let started = Instant::now();
        let received = receive_all(&args.mqtt, n)?;
        let reference = started.elapsed();

        let dir = args
            .scratch
            .join(format!("facegate-bench-sync-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
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
        sync.stop();
        let disk = folder_bytes(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        // Leave the broker as it was: an empty retained message clears a topic.
        publish(
            &args.mqtt,
            states
                .iter()
                .map(|s| (facegate::sync::topic(&s.id), Vec::new())),
        )?;
        println!(
            "{}",
            serde_json::json!({
                "people": n,
                "shots_per_person": template.shots.len(),
                "bytes_per_person": bytes / n as u64,
                "publish_s": round(published.as_secs_f64()),
                "receive_only_s": round(reference.as_secs_f64()),
                "receive_only_got": received,
                "new_board_got": held,
                "new_board_sync_s": round(synced.as_secs_f64()),
                "people_per_s": round(held as f64 / synced.as_secs_f64()),
                "vs_receive_only": round(synced.as_secs_f64() / reference.as_secs_f64()),
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
        loop {
            match p.try_send(m) {
                Ok(()) => break,
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

/// The reference: a plain subscriber receiving the `n` retained people, applying nothing (how
/// many it got before nothing came for 5 s).
fn receive_all(url: &str, n: usize) -> Result<usize, String> {
    let (to, inbox) = mpsc::sync_channel(64);
    let session = Session {
        inbox: Some(Inbox {
            filter: FILTER.into(),
            to,
            fell_behind: Default::default(),
        }),
        client_id: Some(format!("facegate-bench-reader-{}", std::process::id())),
        max_packet: Some(facegate::sync::MAX_MESSAGE_BYTES + 4096),
        ..Session::default()
    };
    let p = Publisher::connect_with(url, "facegate/bench", None, session)?;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < n {
        match inbox.recv_timeout(Duration::from_secs(5)) {
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
