//! The thread that keeps one gallery in step with the fleet (see the module above).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;

use super::message::{self, PersonState, SyncShot};
use crate::mqtt::{Inbox, Incoming, Message, Publisher, Session};
use crate::store::gallery::{
    is_fleet_id, wins, Arrival, Gallery, IndexStamp, ModelInfo, Remote, Tombstone,
};
use crate::support::warnings::Throttle;

/// What every board subscribes to.
pub const FILTER: &str = "facegate/gallery/+";
const PREFIX: &str = "facegate/gallery/";
/// The broker's retained messages have all arrived when nothing came for this long after them;
/// only then does this board publish its own (so that it never overwrites a newer retained
/// version with an older one it has not seen yet).
const SETTLE: Duration = Duration::from_secs(1);
/// Changes applied in one commit (each commit rewrites the gallery's index and embeddings).
const BATCH_PEOPLE: usize = 500;
const BATCH_BYTES: usize = 32 << 20;
/// Messages waiting between the MQTT thread and this one.
const INBOX: usize = 64;
/// People held back (a name taken here by someone else) and tried again after each change.
const MAX_DEFERRED: usize = 10_000;

/// Where and how to sync.
#[derive(Clone)]
pub struct SyncConfig {
    /// `mqtt://host[:port]`.
    pub url: String,
    pub credentials: Option<(String, String)>,
    /// The fleet's shared secret (`FACEGATE_SYNC_KEY`), see [`message::key`].
    pub key: Vec<u8>,
    pub gallery: PathBuf,
    /// The model this board embeds with.
    pub model: ModelInfo,
}

/// Embeds aligned crops with this board's model (for people another model embedded).
pub type Reembed = Box<dyn FnMut(&[RgbImage]) -> Result<Vec<Vec<f32>>, String> + Send>;

/// A running sync; [`Sync::stop`] ends it after publishing what is left.
pub struct Sync {
    board: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sync {
    /// Joins the gallery to the fleet ([`Gallery::join_fleet`]) and starts syncing it.
    pub fn start(config: SyncConfig, reembed: Reembed) -> Result<Sync, String> {
        let held;
        let board = {
            let lock = Gallery::lock(&config.gallery).map_err(|e| e.to_string())?;
            let mut g = Gallery::open(&config.gallery, &config.model).map_err(|e| e.to_string())?;
            let renamed = g.join_fleet(&lock).map_err(|e| e.to_string())?;
            let board = g.board().unwrap_or_default().to_string();
            held = versions(&g);
            if renamed > 0 {
                eprintln!(
                    "facegate: sync: the gallery joined the fleet as board {board}: {renamed} \
                     {} fleet-wide ids",
                    if renamed == 1 {
                        "person got"
                    } else {
                        "people got"
                    }
                );
            }
            board
        };
        let (to, inbox) = mpsc::sync_channel(INBOX);
        let fell_behind = Arc::new(AtomicBool::new(false));
        let session = Session {
            inbox: Some(Inbox {
                filter: FILTER.into(),
                to,
                fell_behind: fell_behind.clone(),
            }),
            client_id: Some(format!("facegate-sync-{board}")),
            max_packet: Some(MAX_RECEIVED),
            ..Session::default()
        };
        let publisher = Publisher::connect_with(
            &config.url,
            "facegate/gallery",
            config.credentials.clone(),
            session,
        )?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut member = Member {
            board: board.clone(),
            heal: HashSet::new(),
            complete: false,
            config,
            publisher: Some(publisher),
            inbox,
            reembed,
            broker: HashMap::new(),
            held,
            fell_behind,
            round: None,
            warned_dropping: false,
            stamp: None,
            look_again: true,
            healed: HashMap::new(),
            heal_due: None,
            deferred: HashMap::new(),
            outgoing: VecDeque::new(),
            warnings: Throttle::per_minute(),
        };
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("facegate-sync".into())
            .spawn(move || member.run(&flag))
            .map_err(|e| format!("cannot start the sync thread: {e}"))?;
        Ok(Sync {
            board,
            stop,
            thread: Some(thread),
        })
    }

    /// This board's id in the fleet.
    pub fn board(&self) -> &str {
        &self.board
    }

    /// Publishes what changed last, then disconnects.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Sync {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The largest message the sync connection reads. A message over the client's limit is a
/// connection error, and every reconnection is sent the same retained message again: one
/// oversized message on a person topic stopped sync for every board. So the limit is well above
/// a person message ([`message::MAX_MESSAGE_BYTES`]); what is larger than that is read, refused
/// and repaired like any bad message. (A broker's own `message_size_limit` at or below this
/// closes the rest of the hole.)
const MAX_RECEIVED: usize = 32 << 20;

/// The first wait before the same person is repaired again, and the longest.
const HEAL_FIRST: Duration = Duration::from_secs(1);
const HEAL_LONGEST: Duration = Duration::from_secs(600);
/// A person not repaired for this long starts again at [`HEAL_FIRST`].
const HEAL_FORGET: Duration = Duration::from_secs(600);
/// People whose repairs are remembered at most (older ones are forgotten first).
const MAX_HEALED: usize = 100_000;
/// How long a board that did not make a version waits before repairing it: at least this, plus
/// up to the spread (different on every board, so that one goes first and the others see it).
const HEAL_STAGGER_MIN: Duration = Duration::from_secs(2);
const HEAL_STAGGER_SPREAD: u64 = 8_000;

/// A delay below `spread` milliseconds that differs from board to board and person to person,
/// and stays the same for them (no randomness to seed).
fn jitter_ms(id: &str, board: &str, spread: u64) -> u64 {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{board}/{id}").as_bytes());
    u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]) % spread.max(1)
}

struct Member {
    /// This board's id: what it publishes unasked is what changed here.
    board: String,
    /// People whose retained copy the broker lost or holds older (or forged): this board
    /// publishes its own.
    heal: HashSet<String>,
    /// Whether the last round of retained messages arrived whole (this board never fell
    /// behind), so that `broker` lists everything the broker holds.
    complete: bool,
    config: SyncConfig,
    /// Taken when the thread ends, to close the connection.
    publisher: Option<Publisher>,
    inbox: Receiver<Incoming>,
    reembed: Reembed,
    /// The newest version of each person the broker was seen to hold (or was sent by us).
    broker: HashMap<String, (u64, String)>,
    /// The version of each person (or removal) the gallery holds, as last read: what arrives
    /// no newer than this is not news and never waits for the gallery.
    held: HashMap<String, (u64, String)>,
    /// Set by the connection when this thread fell behind its messages.
    fell_behind: Arc<AtomicBool>,
    /// While the broker's retained messages arrive: when the last came, and how many changed
    /// the gallery. `None` once they have all come: then this board may publish.
    round: Option<Round>,
    /// Said once: the broker seems to drop retained messages.
    warned_dropping: bool,
    /// The gallery's index as last compared with `broker`.
    stamp: Option<IndexStamp>,
    /// Compare again even if the gallery did not change (the broker's side did).
    look_again: bool,
    /// Repairs per person: when the next may go out, and how many came before (back-off).
    healed: HashMap<String, (Instant, u32)>,
    /// The soonest a held-back repair may go out (then the gallery is compared again).
    heal_due: Option<Instant>,
    deferred: HashMap<String, PersonState>,
    outgoing: VecDeque<Message>,
    warnings: Throttle,
}

impl Member {
    fn run(&mut self, stop: &AtomicBool) {
        let mut batch = Vec::new();
        let mut bytes = 0;
        while !stop.load(Ordering::Relaxed) {
            let wait = if self.outgoing.is_empty() { 200 } else { 20 };
            match self.inbox.recv_timeout(Duration::from_millis(wait)) {
                Ok(i) => bytes += self.take(i, &mut batch),
                Err(RecvTimeoutError::Timeout) => {}
                // The connection's thread ended: nothing more will arrive.
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(200))
                }
            }
            while batch.len() < BATCH_PEOPLE && bytes < BATCH_BYTES {
                match self.inbox.try_recv() {
                    Ok(i) => bytes += self.take(i, &mut batch),
                    Err(_) => break,
                }
            }
            if self.heal_due.is_some_and(|due| Instant::now() >= due) {
                self.heal_due = None;
                self.look_again = true;
            }
            let changed_here = self.publish_changes();
            if !batch.is_empty() || (changed_here && !self.deferred.is_empty()) {
                self.apply(std::mem::take(&mut batch));
                bytes = 0;
                // Messages kept coming while the batch was applied.
                if let Some(round) = &mut self.round {
                    round.last = Instant::now();
                }
            }
            self.end_round();
            self.flush();
        }
        // A change committed just before the stop still goes out.
        self.publish_changes();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.outgoing.is_empty() && Instant::now() < deadline {
            self.flush();
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Some(p) = self.publisher.take() {
            p.close();
        }
    }

    /// Takes one delivery; returns its size.
    fn take(&mut self, incoming: Incoming, batch: &mut Vec<PersonState>) -> usize {
        match incoming {
            Incoming::Subscribed => {
                // A new connection: the broker may have lost its retained messages (a restart
                // without persistence); they are about to arrive again if not.
                self.broker.clear();
                self.round = Some(Round::new());
                self.fell_behind.store(false, Ordering::Relaxed);
                self.look_again = true;
                0
            }
            Incoming::Message { topic, payload } => {
                if let Some(round) = &mut self.round {
                    round.last = Instant::now();
                    round.received += 1;
                }
                let size = payload.len();
                let Some(id) = topic.strip_prefix(PREFIX) else {
                    return 0;
                };
                if payload.is_empty() {
                    // Someone cleared the retained message: the broker holds nothing for them.
                    self.broker.remove(id);
                    self.heal.insert(id.to_string());
                    self.look_again = true;
                    return 0;
                }
                match message::open(&payload, &self.config.key, id) {
                    Ok(state) => {
                        let v = (state.version, state.origin.as_str());
                        // What the broker retains is the last message on the topic, older or
                        // not: a replayed old message replaces a newer one there. Recording
                        // only the newest ever seen hid a replay, and a board joining later
                        // got the old state back (a removed person, an old name).
                        self.broker
                            .insert(id.to_string(), (state.version, state.origin.clone()));
                        match self.held.get(id) {
                            Some((n, o)) if !wins(v, (*n, o)) => {
                                // Older than ours: ours goes out again.
                                if wins((*n, o), v) {
                                    self.heal.insert(id.to_string());
                                    self.look_again = true;
                                }
                                return 0;
                            }
                            _ => batch.push(state),
                        }
                    }
                    Err(e) => {
                        self.warnings
                            .warn(&format!("sync: ignored the message on {topic}: {e}"));
                        // It replaced whatever the broker retained there: if that was one of
                        // ours, publish it again so that a board joining later gets it.
                        self.broker.remove(id);
                        self.heal.insert(id.to_string());
                        self.look_again = true;
                    }
                }
                size
            }
        }
    }

    /// Applies what other boards published, in one commit.
    fn apply(&mut self, batch: Vec<PersonState>) {
        let mut newest: HashMap<String, PersonState> = std::mem::take(&mut self.deferred);
        for s in batch {
            let replace = newest
                .get(&s.id)
                .is_none_or(|held| wins((s.version, &s.origin), (held.version, &held.origin)));
            if replace {
                newest.insert(s.id.clone(), s);
            }
        }
        let dir = self.config.gallery.clone();
        let result = Gallery::lock(&dir).and_then(|lock| {
            let mut g = Gallery::open(&dir, &self.config.model)?;
            let mut changes = Vec::new();
            let mut held_back = HashMap::new();
            for (id, s) in newest {
                let news = g
                    .version_of(&id)
                    .is_none_or(|held| wins((s.version, &s.origin), held));
                if !news {
                    continue;
                }
                match self.remote(&s, g.model()) {
                    Ok(change) => changes.push(change),
                    Err(why) => {
                        self.warnings.warn(&format!(
                            "sync: {} ('{}') from board {} was not applied: {why}",
                            id, s.name, s.origin
                        ));
                    }
                }
                held_back.insert(id, s);
            }
            let applied = g.apply_remote(&lock, changes)?;
            self.held = versions(&g);
            Ok((applied, held_back))
        });
        match result {
            Ok((applied, mut held_back)) => {
                if let Some(round) = &mut self.round {
                    round.changes += applied.updated.len() + applied.removed.len();
                }
                if !applied.updated.is_empty() {
                    eprintln!(
                        "facegate: sync: {} from the fleet: {}",
                        count(applied.updated.len(), "person updated", "people updated"),
                        names(&applied.updated)
                    );
                }
                if !applied.removed.is_empty() {
                    eprintln!(
                        "facegate: sync: {} by the fleet: {}",
                        count(applied.removed.len(), "person removed", "people removed"),
                        names(&applied.removed)
                    );
                }
                for (id, why) in applied.deferred {
                    if let Some(s) = held_back.remove(&id) {
                        let first = !self.deferred.contains_key(&id);
                        if first {
                            self.warnings
                                .warn(&format!("sync: {id} from board {} waits: {why}", s.origin));
                        }
                        if self.deferred.len() < MAX_DEFERRED {
                            self.deferred.insert(id, s);
                        }
                    }
                }
            }
            Err(e) => self
                .warnings
                .warn(&format!("sync: changes from the fleet not applied: {e}")),
        }
    }

    /// A verified message as a change to this gallery, re-embedded when another model made it.
    fn remote(&mut self, s: &PersonState, model: &ModelInfo) -> Result<Remote, String> {
        if s.deleted {
            return Ok(Remote::Removed(Tombstone {
                id: s.id.clone(),
                version: s.version,
                origin: s.origin.clone(),
            }));
        }
        let crops: Vec<Vec<u8>> = s
            .shots
            .iter()
            .filter(|shot| !shot.crop_png.is_empty())
            .map(|shot| shot.crop_png.clone())
            .collect();
        let shots = if s.model == model.fingerprint {
            s.shots.iter().map(|shot| shot.embedding.clone()).collect()
        } else if crops.is_empty() {
            return Err(format!(
                "made with another model ({}) and without crops to re-embed",
                short(&s.model)
            ));
        } else {
            let images = crops
                .iter()
                .map(|png| {
                    crate::imaging::photo::decode_within(png, 1 << 20)
                        .map(|p| p.rgb)
                        .map_err(|e| format!("a crop does not decode: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (self.reembed)(&images).map_err(|e| format!("re-embedding failed: {e}"))?
        };
        Ok(Remote::Person(Arrival {
            id: s.id.clone(),
            version: s.version,
            origin: s.origin.clone(),
            name: s.name.clone(),
            enrolled_unix: s.enrolled_unix,
            shots,
            crops,
        }))
    }

    /// Queues every person (and removal) this gallery holds newer than the broker does. Returns
    /// whether the gallery changed since the last look.
    fn publish_changes(&mut self) -> bool {
        let stamp = Gallery::index_stamp(&self.config.gallery);
        let changed = stamp != self.stamp;
        // Not before the broker's retained messages have come. Held-back people are retried
        // with each batch meanwhile, and once more when the round ends (the stamp still differs).
        if self.round.is_some() {
            return false;
        }
        if !(changed || self.look_again) {
            return false;
        }
        let g = match Gallery::open(&self.config.gallery, &self.config.model) {
            Ok(g) => g,
            Err(e) => {
                self.warnings
                    .warn(&format!("sync: the gallery could not be read: {e}"));
                return false;
            }
        };
        self.stamp = stamp;
        self.look_again = false;
        self.held = versions(&g);
        let key = self.config.key.clone();
        for p in g.people() {
            let v = (p.entry.version, p.entry.origin.as_str());
            if !is_fleet_id(&p.entry.id) || !self.newer_than_broker(&p.entry.id, v) {
                continue;
            }
            if self.heal.contains(&p.entry.id) && !self.may_heal(&p.entry.id, &p.entry.origin) {
                continue;
            }
            let crops: Vec<Vec<u8>> = if p.entry.crops.len() == p.shots.len() {
                p.entry
                    .crops
                    .iter()
                    .map(|c| {
                        crate::support::limits::read_file(
                            &g.crop_path(c),
                            message::MAX_CROP_BYTES as u64,
                            "crop",
                        )
                        .unwrap_or_default()
                    })
                    .collect()
            } else {
                vec![Vec::new(); p.shots.len()]
            };
            let state = PersonState {
                id: p.entry.id.clone(),
                version: p.entry.version,
                origin: p.entry.origin.clone(),
                name: p.entry.name.clone(),
                enrolled_unix: p.entry.enrolled_unix,
                model: g.model().fingerprint.clone(),
                deleted: false,
                shots: p
                    .shots
                    .iter()
                    .zip(crops)
                    .map(|(e, c)| SyncShot {
                        embedding: e.clone(),
                        crop_png: if crate::imaging::photo::is_png(&c) {
                            c
                        } else {
                            Vec::new()
                        },
                    })
                    .collect(),
            };
            self.queue(state, &key);
        }
        for t in g.tombstones() {
            let held_back = self.heal.contains(&t.id) && !self.may_heal(&t.id, &t.origin);
            if !held_back && self.newer_than_broker(&t.id, (t.version, &t.origin)) {
                let state = PersonState {
                    id: t.id.clone(),
                    version: t.version,
                    origin: t.origin.clone(),
                    name: String::new(),
                    enrolled_unix: 0,
                    model: g.model().fingerprint.clone(),
                    deleted: true,
                    shots: Vec::new(),
                };
                self.queue(state, &key);
            }
        }
        changed
    }

    /// Ends a round of retained messages once they stopped coming. A broker queues only so many
    /// messages for one connection and drops the rest (mosquitto: 1000 beyond 20 in flight,
    /// `max_queued_messages`), which bites a board catching up with thousands of people: while a
    /// round fell behind and still brought news, the board asks for everything again; when a
    /// large round fell behind and brought nothing new, it says that the broker's limit may be
    /// hiding people.
    fn end_round(&mut self) {
        let Some(round) = self.round else {
            return;
        };
        if round.last.elapsed() < SETTLE {
            return;
        }
        let fell_behind = self.fell_behind.swap(false, Ordering::Relaxed);
        self.complete = !fell_behind;
        self.round = None;
        if fell_behind && round.changes > 0 {
            eprintln!(
                "facegate: sync: {} from the broker so far; asking for the rest again (a broker \
                 drops what it cannot queue for a board catching up)",
                count(round.changes, "change", "changes")
            );
            self.round = Some(Round::new());
            if let Some(p) = &self.publisher {
                p.resubscribe(FILTER);
            }
        } else if fell_behind && round.received >= 1000 && !self.warned_dropping {
            self.warned_dropping = true;
            self.warnings.warn(&format!(
                "sync: the broker sent {} people at once and may have dropped more; for fleets \
                 of over about 1000 people set `max_queued_messages 0` in mosquitto.conf (or \
                 your broker's per-client queue above the fleet's size)",
                round.received
            ));
        }
    }

    /// Whether this board should publish its version `v` of person `id`: when it is newer than
    /// what the broker was seen to hold, and it is this board's own change, or the broker's copy
    /// is known to be lost, older or forged, or the broker's whole state was seen (after a round
    /// that fell behind, an unseen person may just have been dropped on the way here).
    fn newer_than_broker(&self, id: &str, v: (u64, &str)) -> bool {
        let newer = self
            .broker
            .get(id)
            .is_none_or(|(n, o)| wins(v, (*n, o.as_str())));
        newer && (v.1 == self.board || self.complete || self.heal.contains(id))
    }

    /// Whether person `id`, whose broker copy went missing, old or bad, may be published again
    /// now. Each repair of the same person waits twice as long as the one before (1 s up to 10
    /// min; forgotten after 10 quiet minutes), so that someone publishing junk or replays on
    /// person topics cannot make the fleet publish megabytes back (100 one-byte messages once
    /// drew 11.5 MB): a copy is always repaired, a storm only slowly.
    ///
    /// The board that made the version repairs it at once; the others first wait a few seconds
    /// (a different time on each board), and see the repair arrive instead of sending their own:
    /// one copy goes out, not one per board.
    fn may_heal(&mut self, id: &str, origin: &str) -> bool {
        let now = Instant::now();
        let next = match self.healed.get(id) {
            Some(&(next, _)) => next,
            None if origin == self.board => return true,
            None => {
                let stagger = HEAL_STAGGER_MIN
                    + Duration::from_millis(jitter_ms(id, &self.board, HEAL_STAGGER_SPREAD));
                let next = now + stagger;
                self.healed.insert(id.to_string(), (next, 0));
                next
            }
        };
        if now < next {
            self.heal_due = Some(self.heal_due.map_or(next, |due| due.min(next)));
            return false;
        }
        true
    }

    /// Counts a repair of `id` (see [`Member::may_heal`]).
    fn healed_now(&mut self, id: &str) {
        let now = Instant::now();
        let repairs = match self.healed.get(id) {
            Some(&(next, n)) if now.duration_since(next) < HEAL_FORGET => n.saturating_add(1),
            _ => 0,
        };
        let wait = HEAL_FIRST
            .saturating_mul(1u32 << repairs.min(16))
            .min(HEAL_LONGEST);
        self.healed.insert(id.to_string(), (now + wait, repairs));
        if self.healed.len() > MAX_HEALED {
            self.healed
                .retain(|_, (next, _)| now.duration_since(*next) < HEAL_FORGET);
        }
    }

    fn queue(&mut self, state: PersonState, key: &[u8]) {
        let sealed = message::seal(&state, key);
        if sealed.len() > message::MAX_MESSAGE_BYTES {
            self.warnings.warn(&format!(
                "sync: {} ('{}') is {} bytes, more than a message carries; not published",
                state.id,
                state.name,
                sealed.len()
            ));
            return;
        }
        if self.heal.remove(&state.id) {
            self.healed_now(&state.id);
        }
        self.broker
            .insert(state.id.clone(), (state.version, state.origin.clone()));
        self.outgoing
            .push_back(Message::retained(message::topic(&state.id), sealed));
    }

    /// Hands queued messages to the connection until its queue is full.
    fn flush(&mut self) {
        let Some(publisher) = &self.publisher else {
            return;
        };
        while let Some(m) = self.outgoing.pop_front() {
            if let Err(m) = publisher.try_send(m) {
                self.outgoing.push_front(m);
                break;
            }
        }
    }
}

/// One delivery of the broker's retained messages: when the last came, how many, and how many
/// changed the gallery.
#[derive(Clone, Copy)]
struct Round {
    last: Instant,
    received: usize,
    changes: usize,
}

impl Round {
    fn new() -> Round {
        Round {
            last: Instant::now(),
            received: 0,
            changes: 0,
        }
    }
}

/// The version of everyone in the gallery, and of every removal.
fn versions(g: &Gallery) -> HashMap<String, (u64, String)> {
    g.people()
        .iter()
        .map(|p| {
            (
                p.entry.id.clone(),
                (p.entry.version, p.entry.origin.clone()),
            )
        })
        .chain(
            g.tombstones()
                .iter()
                .map(|t| (t.id.clone(), (t.version, t.origin.clone()))),
        )
        .collect()
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Up to five names, then how many more.
fn names(list: &[String]) -> String {
    let shown: Vec<String> = list
        .iter()
        .take(5)
        .map(|n| format!("'{}'", crate::support::terminal::escape(n)))
        .collect();
    match list.len() {
        n if n > 5 => format!("{} and {} more", shown.join(", "), n - 5),
        _ => shown.join(", "),
    }
}

fn short(fingerprint: &str) -> &str {
    fingerprint.get(..8).unwrap_or(fingerprint)
}
