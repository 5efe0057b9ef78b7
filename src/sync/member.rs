//! The thread that keeps one gallery in step with the fleet (see the module above).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use image::RgbImage;

use super::manifest::{self, Entry};
use super::message::{self, PersonState, SyncShot};
use crate::mqtt::{Inbox, Incoming, Message, Publisher, Session, Subscription};
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
/// People asked for at once when catching up: well under what any broker queues for one
/// client (mosquitto: 1 000 by default), so none is dropped on the way.
const WINDOW: usize = 400;
/// A window whose people stopped arriving for this long is over: what has not come, the broker
/// does not hold.
const WINDOW_QUIET: Duration = Duration::from_secs(1);
/// Embeddings, and their crops (PNG).
type Embedded = (Vec<Vec<f32>>, Vec<Vec<u8>>);
/// Window topics unsubscribed from a loop turn at most.
const FORGET_AT_ONCE: usize = 16;
/// The manifest goes out at most this often (it is rewritten after every change here).
const MANIFEST_EVERY: Duration = Duration::from_secs(2);
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
    commits: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sync {
    /// Joins the gallery to the fleet ([`Gallery::join_fleet`]) and starts syncing it.
    pub fn start(config: SyncConfig, reembed: Reembed) -> Result<Sync, String> {
        let (held, deleted);
        let board = {
            let lock = Gallery::lock(&config.gallery).map_err(|e| e.to_string())?;
            let mut g = Gallery::open(&config.gallery, &config.model).map_err(|e| e.to_string())?;
            let renamed = g.join_fleet(&lock).map_err(|e| e.to_string())?;
            let board = g.board().unwrap_or_default().to_string();
            (held, deleted) = (versions(&g), removals(&g));
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
                // Person messages as they are published, never the whole retained set at once
                // (what a new board lacks, it asks for by manifest); manifests in full.
                filters: vec![
                    Subscription::new(FILTER, false),
                    Subscription::new(manifest::FILTER, true),
                ],
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
        let commits = Arc::new(AtomicU64::new(0));
        let mut member = Member {
            commits: commits.clone(),
            board: board.clone(),
            heal: HashSet::new(),
            complete: false,
            config,
            publisher: Some(publisher),
            inbox,
            reembed,
            broker: HashMap::new(),
            deleted,
            held,
            fell_behind,
            fetch: VecDeque::new(),
            fetching: HashSet::new(),
            audit: HashSet::new(),
            window: None,
            forget: VecDeque::new(),
            missing: 0,
            others_seen: false,
            own_seen: HashMap::new(),
            published: HashMap::new(),
            manifest_sent: None,
            manifest_due: true,
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
            commits,
            stop,
            thread: Some(thread),
        })
    }

    /// This board's id in the fleet.
    pub fn board(&self) -> &str {
        &self.board
    }

    /// How many commits applied changes from the fleet so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
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
    commits: Arc<AtomicU64>,
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
    /// Which of `held` are removals.
    deleted: HashSet<String>,
    /// People to ask the broker for (see [`WINDOW`]), and those asked for or waiting.
    fetch: VecDeque<String>,
    fetching: HashSet<String>,
    /// Of those, the ones this board holds itself: if the broker lacks them, it lost them.
    audit: HashSet<String>,
    window: Option<Window>,
    /// Topics of closed windows still to unsubscribe from.
    forget: VecDeque<String>,
    /// People a manifest listed that the broker did not hold (said once per round).
    missing: usize,
    /// Since the connection: whether another board's manifest came, and which chunks of ours.
    others_seen: bool,
    own_seen: HashMap<usize, Vec<Entry>>,
    /// This board's manifest as the broker holds it (chunk -> entries), and when it was last sent.
    published: HashMap<usize, Vec<Entry>>,
    manifest_sent: Option<Instant>,
    /// The gallery (or what the broker holds of the manifest) changed since it was last sent.
    manifest_due: bool,
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
            // The next window is asked for before this batch is written, so that the broker
            // sends while this board writes.
            self.drive_fetch();
            if self.heal_due.is_some_and(|due| Instant::now() >= due) {
                self.heal_due = None;
                self.look_again = true;
            }
            let changed_here = self.publish_changes();
            // Every commit rewrites the whole index: while a window is still arriving, a batch
            // waits until it is full.
            let full = batch.len() >= BATCH_PEOPLE || bytes >= BATCH_BYTES;
            let arriving = self.window.as_ref().is_some_and(|w| {
                !w.pending.is_empty() && w.last.elapsed() < Duration::from_millis(200)
            });
            if (!batch.is_empty() && (full || !arriving))
                || (changed_here && !self.deferred.is_empty())
            {
                self.apply(std::mem::take(&mut batch));
                bytes = 0;
                // Messages kept coming while the batch was applied.
                if let Some(round) = &mut self.round {
                    round.last = Instant::now();
                }
                if let Some(w) = &mut self.window {
                    w.last = Instant::now();
                }
            }
            if self.round.is_some() {
                self.end_round();
                // What changed here goes out before the manifest that lists it.
                self.publish_changes();
            }
            self.publish_manifest(false);
            self.flush();
        }
        // A change committed just before the stop still goes out.
        self.publish_changes();
        self.publish_manifest(true);
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
            Incoming::Connected => {
                // A new connection: the broker may have lost its retained messages (a restart
                // without persistence), and subscriptions of the last one are gone.
                self.broker.clear();
                self.round = Some(Round::new(Phase::Manifests));
                self.fell_behind.store(false, Ordering::Relaxed);
                self.look_again = true;
                self.others_seen = false;
                self.own_seen.clear();
                // The last connection's subscriptions ended with it.
                self.forget.clear();
                if let Some(w) = self.window.take() {
                    for id in w.ids.into_iter().rev() {
                        if w.pending.contains(&id) {
                            self.fetch.push_front(id);
                        } else {
                            self.fetching.remove(&id);
                            self.audit.remove(&id);
                        }
                    }
                }
                0
            }
            Incoming::Subscribed => {
                // Retained messages follow.
                if let Some(round) = &mut self.round {
                    round.last = Instant::now();
                }
                if let Some(w) = &mut self.window {
                    w.last = Instant::now();
                }
                0
            }
            Incoming::Message { topic, payload } => {
                if let Some(round) = &mut self.round {
                    round.last = Instant::now();
                    round.received += 1;
                }
                if manifest::parse_topic(&topic).is_some() {
                    self.manifest(&topic, &payload);
                    return 0;
                }
                let size = payload.len();
                let Some(id) = topic.strip_prefix(PREFIX) else {
                    return 0;
                };
                if let Some(w) = &mut self.window {
                    if w.pending.remove(id) {
                        w.last = Instant::now();
                    }
                }
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

    /// Takes one chunk of a board's manifest: the people it lists in versions newer than this
    /// gallery's are asked for (see [`Member::drive_fetch`]).
    fn manifest(&mut self, topic: &str, payload: &[u8]) {
        let Some((board, k)) = manifest::parse_topic(topic) else {
            return;
        };
        let ours = board == self.board;
        let chunk = match manifest::open(payload, &self.config.key, topic) {
            Ok(c) => c,
            Err(e) => {
                if !payload.is_empty() {
                    self.warnings
                        .warn(&format!("sync: ignored the manifest on {topic}: {e}"));
                }
                if ours {
                    // Ours was cleared or replaced: it goes out again.
                    self.published.remove(&k);
                    self.manifest_due = true;
                }
                return;
            }
        };
        let settling = self.round.is_some_and(|r| r.phase == Phase::Manifests);
        if !ours {
            self.others_seen = true;
        } else if settling {
            self.own_seen.insert(k, chunk.entries.clone());
        } else if self.published.get(&k) != Some(&chunk.entries) {
            // Not what this board last sent (a replay, or a send still on its way): send again.
            self.published.remove(&k);
            self.manifest_due = true;
        }
        // What the broker holds, as far as the fleet knows (never over what was seen). This
        // board's own manifest says so only as the broker kept it, not as it comes back live.
        let tells_broker = !ours || settling;
        for e in chunk.entries {
            if tells_broker {
                self.broker
                    .entry(e.id.clone())
                    .or_insert((e.version, e.origin.clone()));
            }
            let news = self
                .held
                .get(&e.id)
                .is_none_or(|(n, o)| wins((e.version, &e.origin), (*n, o)));
            if news && self.fetching.insert(e.id.clone()) {
                self.fetch.push_back(e.id);
            }
        }
    }

    /// Closes the window of people asked for once they all came (or stopped coming), and asks
    /// for the next one.
    fn drive_fetch(&mut self) {
        // Ended a few at a time: each is a request of its own to the connection, whose queue
        // is short.
        if let Some(p) = &self.publisher {
            for _ in 0..FORGET_AT_ONCE {
                let Some(t) = self.forget.pop_front() else {
                    break;
                };
                if !p.forget(&t) {
                    self.forget.push_front(t);
                    break;
                }
            }
        }
        if let Some(w) = &self.window {
            if !w.pending.is_empty() && w.last.elapsed() < WINDOW_QUIET {
                return;
            }
        }
        if let Some(w) = self.window.take() {
            self.forget.extend(w.topics);
            for id in &w.ids {
                self.fetching.remove(id);
            }
            for id in w.pending {
                if self.audit.contains(&id) {
                    // The broker lost this board's copy: it goes out again.
                    self.broker.remove(&id);
                    self.heal.insert(id);
                    self.look_again = true;
                } else {
                    self.missing += 1;
                }
            }
            for id in &w.ids {
                self.audit.remove(id);
            }
        }
        let Some(publisher) = &self.publisher else {
            return;
        };
        if self.fetch.is_empty() {
            return;
        }
        let ids: Vec<String> = self.fetch.drain(..WINDOW.min(self.fetch.len())).collect();
        let topics: Vec<String> = ids.iter().map(|id| message::topic(id)).collect();
        if !publisher.fetch(&topics) {
            // The connection's queue is full: the next turn asks again.
            for id in ids.into_iter().rev() {
                self.fetch.push_front(id);
            }
            return;
        }
        self.window = Some(Window {
            pending: ids.iter().cloned().collect(),
            ids,
            topics,
            last: Instant::now(),
        });
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
            (self.held, self.deleted) = (versions(&g), removals(&g));
            self.manifest_due = true;
            Ok((applied, held_back))
        });
        match result {
            Ok((applied, mut held_back)) => {
                if !(applied.updated.is_empty() && applied.removed.is_empty()) {
                    self.commits.fetch_add(1, Ordering::Relaxed);
                }
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
        let (shots, crops) = self.embeddings_here(&s.shots, &s.model, model, "shots")?;
        let (negatives, negative_crops) =
            self.embeddings_here(&s.negatives, &s.model, model, "negatives")?;
        Ok(Remote::Person(Arrival {
            id: s.id.clone(),
            version: s.version,
            origin: s.origin.clone(),
            name: s.name.clone(),
            enrolled_unix: s.enrolled_unix,
            shots,
            crops,
            negatives,
            negative_crops,
        }))
    }

    /// Shots (or negatives) as this board's model embeds them, and their crops: as sent when
    /// the sender's model is this board's, else re-embedded from the crops.
    fn embeddings_here(
        &mut self,
        list: &[SyncShot],
        sent_by: &str,
        model: &ModelInfo,
        what: &str,
    ) -> Result<Embedded, String> {
        let crops: Vec<Vec<u8>> = list
            .iter()
            .filter(|shot| !shot.crop_png.is_empty())
            .map(|shot| shot.crop_png.clone())
            .collect();
        if sent_by == model.fingerprint || list.is_empty() {
            let embeddings = list.iter().map(|shot| shot.embedding.clone()).collect();
            return Ok((embeddings, crops));
        }
        if crops.is_empty() {
            return Err(format!(
                "made with another model ({}) and without crops of its {what} to re-embed",
                short(sent_by)
            ));
        }
        let images = crops
            .iter()
            .map(|png| {
                crate::imaging::photo::decode_within(png, 1 << 20)
                    .map(|p| p.rgb)
                    .map_err(|e| format!("a crop does not decode: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let embeddings =
            (self.reembed)(&images).map_err(|e| format!("re-embedding failed: {e}"))?;
        Ok((embeddings, crops))
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
        let (g, stamp) = match Gallery::open_shared(&self.config.gallery, &self.config.model) {
            Ok(read) => read,
            Err(e) => {
                self.warnings
                    .warn(&format!("sync: the gallery could not be read: {e}"));
                return false;
            }
        };
        self.stamp = stamp;
        self.look_again = false;
        (self.held, self.deleted) = (versions(&g), removals(&g));
        self.manifest_due = true;
        let key = self.config.key.clone();
        for p in g.people() {
            let v = (p.entry.version, p.entry.origin.as_str());
            if !is_fleet_id(&p.entry.id) || !self.newer_than_broker(&p.entry.id, v) {
                continue;
            }
            if self.heal.contains(&p.entry.id) && !self.may_heal(&p.entry.id, &p.entry.origin) {
                continue;
            }
            let state = PersonState {
                id: p.entry.id.clone(),
                version: p.entry.version,
                origin: p.entry.origin.clone(),
                name: p.entry.name.clone(),
                enrolled_unix: p.entry.enrolled_unix,
                model: g.model().fingerprint.clone(),
                deleted: false,
                shots: sync_shots(&g, &p.shots, &p.entry.crops),
                negatives: sync_shots(&g, &p.negatives, &p.entry.negative_crops),
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
                    negatives: Vec::new(),
                };
                self.queue(state, &key);
            }
        }
        changed
    }

    /// Moves a round of catching up on: once the manifests stopped coming, the people they list
    /// are asked for ([`Member::manifest`]), and the round ends when they have come.
    fn end_round(&mut self) {
        let Some(round) = self.round else {
            return;
        };
        match round.phase {
            Phase::Manifests if round.last.elapsed() >= SETTLE => {
                if !self.others_seen && self.own_seen.is_empty() {
                    // No board of the fleet publishes a manifest (a new fleet, or boards of an
                    // older facegate): everything the broker retains, as they do.
                    self.round = Some(Round::new(Phase::Everything));
                    if let Some(p) = &self.publisher {
                        p.resubscribe(FILTER);
                    }
                    return;
                }
                self.published = std::mem::take(&mut self.own_seen);
                self.manifest_due = true;
                if self.published.is_empty() {
                    // The broker lost this board's manifest (a restart without persistence):
                    // it may have lost the people too, so this board asks for everyone it
                    // holds, and publishes again whoever is missing.
                    let ids: Vec<String> = self
                        .held
                        .keys()
                        .filter(|id| is_fleet_id(id))
                        .cloned()
                        .collect();
                    for id in ids {
                        self.audit.insert(id.clone());
                        if self.fetching.insert(id.clone()) {
                            self.fetch.push_back(id);
                        }
                    }
                }
                self.complete = false;
                self.round = Some(Round::new(Phase::Fetching));
            }
            Phase::Manifests => {}
            Phase::Fetching => {
                if !self.fetch.is_empty() || self.window.is_some() {
                    return;
                }
                self.round = None;
                if self.missing > 0 {
                    self.warnings.warn(&format!(
                        "sync: {} listed by the fleet's manifests not on the broker (yet)",
                        count(self.missing, "person", "people")
                    ));
                    self.missing = 0;
                }
            }
            Phase::Everything => self.end_everything(round),
        }
    }

    /// Ends a round of all the broker's retained messages once they stopped coming. A broker
    /// queues only so many messages for one connection and drops the rest (mosquitto: 1000
    /// beyond 20 in flight, `max_queued_messages`): while a round fell behind and still brought
    /// news, the board asks for everything again; when a large round fell behind and brought
    /// nothing new, it says that the broker's limit may be hiding people. (Fleets whose boards
    /// publish manifests never take this way.)
    fn end_everything(&mut self, round: Round) {
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
            self.round = Some(Round::new(Phase::Everything));
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

    /// Publishes this board's manifest where it changed: the chunks that differ from what the
    /// broker holds, after the people they list (the outgoing queue keeps its order), at most
    /// every [`MANIFEST_EVERY`] unless `now`.
    fn publish_manifest(&mut self, now: bool) {
        if !self.manifest_due || self.round.is_some() || self.publisher.is_none() {
            return;
        }
        if !now
            && self
                .manifest_sent
                .is_some_and(|t| t.elapsed() < MANIFEST_EVERY)
        {
            return;
        }
        self.manifest_due = false;
        let entries: Vec<Entry> = self
            .held
            .iter()
            .filter(|(id, _)| is_fleet_id(id))
            .map(|(id, (version, origin))| Entry {
                id: id.clone(),
                version: *version,
                origin: origin.clone(),
                deleted: self.deleted.contains(id),
            })
            .collect();
        let chunks = manifest::split(&self.board, entries);
        let count = chunks.len();
        let mut sent = false;
        for c in chunks {
            if self.published.get(&c.chunk) != Some(&c.entries) {
                let m = Message::retained(
                    manifest::topic(&self.board, c.chunk),
                    manifest::seal(&c, &self.config.key),
                );
                self.outgoing.push_back(m);
                self.published.insert(c.chunk, c.entries);
                sent = true;
            }
        }
        // Chunks of a larger manifest of before are cleared.
        let stale: Vec<usize> = self
            .published
            .keys()
            .filter(|&&k| k >= count)
            .copied()
            .collect();
        for k in stale {
            self.published.remove(&k);
            self.outgoing.push_back(Message::retained(
                manifest::topic(&self.board, k),
                Vec::new(),
            ));
            sent = true;
        }
        if sent {
            self.manifest_sent = Some(Instant::now());
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

/// Catching up after a connection: what is awaited, since when, how many messages came, and how
/// many changed the gallery. This board publishes only once it is over.
#[derive(Clone, Copy)]
struct Round {
    phase: Phase,
    last: Instant,
    received: usize,
    changes: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// The boards' manifests (retained, a few messages).
    Manifests,
    /// The people they list that this board lacks, a window at a time.
    Fetching,
    /// Everything the broker retains (no board publishes manifests).
    Everything,
}

impl Round {
    fn new(phase: Phase) -> Round {
        Round {
            phase,
            last: Instant::now(),
            received: 0,
            changes: 0,
        }
    }
}

/// People asked for by their exact topics (see [`WINDOW`]).
struct Window {
    ids: Vec<String>,
    topics: Vec<String>,
    /// Not arrived yet.
    pending: HashSet<String>,
    /// When the last of them came (or the window was asked for).
    last: Instant,
}

/// Embeddings with their crops as sent: the crops only when each embedding has one that is a
/// PNG (crops are read within the size a message carries).
fn sync_shots(g: &Gallery, embeddings: &[Vec<f32>], crops: &[String]) -> Vec<SyncShot> {
    let pngs: Vec<Vec<u8>> = if crops.len() == embeddings.len() {
        crops
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
        vec![Vec::new(); embeddings.len()]
    };
    embeddings
        .iter()
        .zip(pngs)
        .map(|(e, c)| SyncShot {
            embedding: e.clone(),
            crop_png: if crate::imaging::photo::is_png(&c) {
                c
            } else {
                Vec::new()
            },
        })
        .collect()
}

/// The ids of the gallery's removals.
fn removals(g: &Gallery) -> HashSet<String> {
    g.tombstones().iter().map(|t| t.id.clone()).collect()
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
