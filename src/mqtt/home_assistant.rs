//! Home Assistant MQTT discovery: the board is one device (device-based discovery, retained)
//! with a "present" binary sensor per enrolled person (on at `identified`, off when they leave),
//! a "last person" sensor, an event entity (`identified`, `unknown`, `left`), an image entity
//! holding the latest face, and availability through the connection's last will.
//!
//! Home Assistant announces itself with `online` on `<prefix>/status` after a restart; the
//! discovery config is sent again then, and on every reconnection. A person removed from the
//! gallery keeps a platform-only entry in the config (Home Assistant's way to delete one
//! component of a device), and their retained presence is cleared.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::{check_topic, Message, Publisher, Session};
use crate::events::Event;
use crate::events::EventKind;
use crate::store::gallery::Person;

const ORIGIN_URL: &str = "https://github.com/facegate/facegate";

/// The largest packet the Home Assistant connection sends: the device config grows by about
/// 280 bytes a person, so 16 MiB holds some 50 000 (1 MiB, the default, stopped at about 3 800).
/// Brokers accept up to 256 MiB by default.
pub const MAX_PACKET: usize = 16 << 20;
/// The device config must fit in one packet with its topic and headers.
const MAX_CONFIG_BYTES: usize = MAX_PACKET - 4096;
const ON: &str = "ON";
const OFF: &str = "OFF";

/// The board's names and topics.
#[derive(Debug, Clone)]
pub struct Board {
    prefix: String,
    camera: String,
    node: String,
}

/// A topic-safe id from a camera name: lowercase letters, digits and single underscores.
pub fn node_id(camera: &str) -> String {
    let mut id = String::new();
    for c in camera.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_lowercase());
        } else if !id.ends_with('_') {
            id.push('_');
        }
    }
    let id = id.trim_matches('_').to_string();
    if id.is_empty() {
        "camera".into()
    } else {
        id
    }
}

impl Board {
    pub fn new(prefix: &str, camera: &str) -> Result<Board, String> {
        check_topic(prefix)
            .map_err(|_| format!("bad --ha-prefix {prefix:?}: a topic without + or #"))?;
        if prefix.starts_with('/') || prefix.ends_with('/') {
            return Err(format!(
                "bad --ha-prefix {prefix:?}: no leading or trailing /"
            ));
        }
        crate::store::gallery::validate_name(camera)
            .map_err(|e| format!("bad --camera-name: {e}"))?;
        Ok(Board {
            prefix: prefix.to_string(),
            camera: camera.to_string(),
            node: node_id(camera),
        })
    }

    pub fn camera(&self) -> &str {
        &self.camera
    }

    fn topic(&self, what: &str) -> String {
        format!("facegate/{}/{what}", self.node)
    }

    pub fn availability_topic(&self) -> String {
        self.topic("availability")
    }
    pub fn config_topic(&self) -> String {
        format!("{}/device/facegate_{}/config", self.prefix, self.node)
    }
    pub fn birth_topic(&self) -> String {
        format!("{}/status", self.prefix)
    }
    pub fn presence_topic(&self, person_id: &str) -> String {
        self.topic(&format!("present/{person_id}"))
    }
    pub fn last_person_topic(&self) -> String {
        self.topic("last_person")
    }
    pub fn event_topic(&self) -> String {
        self.topic("event")
    }
    /// Whether the camera (the frame source) delivers: `ON`, or `OFF` while it is down.
    pub fn camera_topic(&self) -> String {
        self.topic("camera")
    }

    pub fn snapshot_topic(&self) -> String {
        self.topic("snapshot")
    }

    fn unique(&self, what: &str) -> String {
        format!("facegate_{}_{what}", self.node)
    }

    /// The device's discovery config: its people (id, name) and the ids of people removed while
    /// running (platform-only entries, which delete their entities).
    pub fn discovery(&self, people: &[(String, String)], removed: &[String]) -> Value {
        let version = env!("CARGO_PKG_VERSION");
        let mut components = Map::new();
        for (id, name) in people {
            components.insert(
                format!("present_{id}"),
                json!({
                    "p": "binary_sensor",
                    "name": format!("{name} present"),
                    "unique_id": self.unique(&format!("present_{id}")),
                    "device_class": "presence",
                    "state_topic": self.presence_topic(id),
                    "payload_on": ON,
                    "payload_off": OFF,
                    "qos": 1,
                }),
            );
        }
        for id in removed {
            components.insert(format!("present_{id}"), json!({ "p": "binary_sensor" }));
        }
        components.insert(
            "last_person".into(),
            json!({
                "p": "sensor",
                "name": "Last person",
                "unique_id": self.unique("last_person"),
                "state_topic": self.last_person_topic(),
                "value_template": "{{ value_json.name }}",
                "json_attributes_topic": self.last_person_topic(),
                "icon": "mdi:account-eye",
                "qos": 1,
            }),
        );
        components.insert(
            "face".into(),
            json!({
                "p": "event",
                "name": "Face",
                "unique_id": self.unique("face"),
                "state_topic": self.event_topic(),
                "event_types": ["identified", "unknown", "left"],
                "icon": "mdi:face-recognition",
                "qos": 1,
            }),
        );
        components.insert(
            "camera".into(),
            json!({
                "p": "binary_sensor",
                "name": "Camera",
                "unique_id": self.unique("camera"),
                "device_class": "connectivity",
                "entity_category": "diagnostic",
                "state_topic": self.camera_topic(),
                "payload_on": ON,
                "payload_off": OFF,
                "qos": 1,
            }),
        );
        components.insert(
            "snapshot".into(),
            json!({
                "p": "image",
                "name": "Last face",
                "unique_id": self.unique("snapshot"),
                "image_topic": self.snapshot_topic(),
                "content_type": "image/jpeg",
                "qos": 1,
            }),
        );
        json!({
            "dev": {
                "ids": [format!("facegate_{}", self.node)],
                "name": format!("facegate {}", self.camera),
                "mf": "facegate",
                "mdl": "facegate",
                "sw": version,
            },
            "o": { "name": "facegate", "sw": version, "url": ORIGIN_URL },
            "avty": [{ "t": self.availability_topic() }],
            // Home Assistant 2025.4 reads `qos` per component (set above) and ignores this one;
            // kept for versions that read it here.
            "qos": 1,
            "cmps": Value::Object(components),
        })
    }

    fn announcements(&self, people: &[(String, String)], removed: &[String]) -> Vec<Message> {
        let config = self.discovery(people, removed).to_string();
        let online = Message::retained(self.availability_topic(), "online");
        if config.len() > MAX_CONFIG_BYTES {
            // Sent anyway, a packet over the connection's limit is a connection error, and the
            // link would reconnect (and fail again) every second.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                eprintln!(
                    "facegate: warning: the Home Assistant device config for {} people is {} \
                     bytes, more than the {} an MQTT message may carry here; the entities are \
                     not announced (events still are)",
                    people.len(),
                    config.len(),
                    MAX_CONFIG_BYTES
                )
            });
            return vec![online];
        }
        vec![Message::retained(self.config_topic(), config), online]
    }

    /// The MQTT session for this board: the will says "offline", the announcements are the
    /// config and "online", sent again when Home Assistant says it is online. Before them, once,
    /// everyone's retained presence is reset to off: after a crash a retained "on" would
    /// otherwise turn true again the moment the device comes online, and fire automations for
    /// someone who is not there.
    ///
    /// `removed`: ids announced before (see [`Board::gone`]) that are no longer enrolled: the
    /// config deletes their entities, and their retained presence is cleared.
    pub fn session(&self, people: &[Person], removed: &[String]) -> Session {
        let resets = people
            .iter()
            .map(|p| Message::retained(self.presence_topic(&p.entry.id), OFF))
            .chain(
                removed
                    .iter()
                    .map(|id| Message::retained(self.presence_topic(id), Vec::new())),
            )
            .collect();
        Session {
            first: resets,
            max_packet: Some(MAX_PACKET),
            will: Some(Message::retained(self.availability_topic(), "offline")),
            announcements: self.announcements(&ids_and_names(people), removed),
            resend_on: Some((self.birth_topic(), b"online".to_vec())),
            ..Session::default()
        }
    }
}

impl Board {
    /// The people a previous run announced that are not in `people` now: removed while
    /// facegate was stopped, or renamed by joining a fleet. Home Assistant keeps an entity that
    /// is merely left out of the config, so each gets a removal marker. Two witnesses: the
    /// device config the broker retains (only its full entries: markers of a run before are not
    /// carried on for ever) and the ids this board remembers ([`remembered`]), for a broker that
    /// lost its retained messages.
    pub fn gone(
        &self,
        previous_config: Option<&[u8]>,
        remembered: &[String],
        people: &[Person],
    ) -> Vec<String> {
        let config = previous_config.and_then(|c| serde_json::from_slice::<Value>(c).ok());
        let announced = config
            .as_ref()
            .and_then(|c| c.get("cmps"))
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(_, c)| c.get("name").is_some())
            .filter_map(|(key, _)| key.strip_prefix("present_"));
        let mut gone: Vec<String> = Vec::new();
        // The config is whatever the broker retains (anyone may publish it), the file whatever
        // is on disk: only ids of the gallery's form, and not more than a gallery holds.
        for id in announced.chain(remembered.iter().map(String::as_str)) {
            if gone.len() == MAX_GONE {
                break;
            }
            if is_person_id(id)
                && !people.iter().any(|p| p.entry.id == id)
                && !gone.iter().any(|g| g == id)
            {
                gone.push(id.to_string());
            }
        }
        gone
    }
}

/// Removal markers sent at most, whatever a retained config claims.
const MAX_GONE: usize = 10_000;

/// The ids this board announced last, as remembered on its own disk (see
/// [`HomeAssistant::remember_at`]): what [`Board::gone`] finds when the broker no longer holds
/// the previous config (a restart without persistence). Anything unreadable is nothing.
pub fn remembered(path: &std::path::Path) -> Vec<String> {
    let Ok(bytes) = crate::support::limits::read_file(path, 4 << 20, "announced ids") else {
        return Vec::new();
    };
    serde_json::from_slice(&bytes).unwrap_or_default()
}

/// `p<digits>` (a board's own id) or `p<digits>-<16 hex digits>` (a fleet id).
fn is_person_id(id: &str) -> bool {
    let (number, board) = id.split_once('-').unwrap_or((id, ""));
    let digits = number.strip_prefix('p').unwrap_or("");
    !digits.is_empty()
        && digits.len() <= 12
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (board.is_empty() || (board.len() == 16 && board.bytes().all(|b| b.is_ascii_hexdigit())))
}

fn ids_and_names(people: &[Person]) -> Vec<(String, String)> {
    people
        .iter()
        .map(|p| (p.entry.id.clone(), p.entry.name.clone()))
        .collect()
}

/// The device's state: who is present (by track), what was announced.
pub struct HomeAssistant {
    board: Board,
    people: Vec<(String, String)>,
    removed: Vec<String>,
    /// Tracks in view decided for each person id.
    present: HashMap<String, usize>,
    /// The person id each identified track was decided for.
    tracks: HashMap<u64, String>,
    /// Whose name and face the retained last person and snapshot show.
    last: Option<String>,
    /// Where the announced ids are remembered, and what was written there last.
    remember: Option<(std::path::PathBuf, Vec<String>)>,
}

impl HomeAssistant {
    /// Starts with nobody present (the session's first messages set each person's retained
    /// state to off, before "online").
    pub fn start(
        _publisher: &Publisher,
        board: Board,
        people: &[Person],
        removed: Vec<String>,
    ) -> HomeAssistant {
        HomeAssistant {
            board,
            people: ids_and_names(people),
            removed,
            present: HashMap::new(),
            tracks: HashMap::new(),
            last: None,
            remember: None,
        }
    }

    /// Remembers the announced ids in `path` (board-local, written atomically) from now on, so
    /// that the next start deletes the entities of people gone meanwhile even if the broker
    /// lost its retained config.
    pub fn remember_at(&mut self, path: std::path::PathBuf) {
        self.remember = Some((path, Vec::new()));
        self.write_remembered();
    }

    fn write_remembered(&mut self) {
        let Some((path, written)) = &mut self.remember else {
            return;
        };
        let ids: Vec<String> = self.people.iter().map(|(id, _)| id.clone()).collect();
        if *written == ids && path.exists() {
            return;
        }
        let text = serde_json::to_vec(&ids).unwrap_or_default();
        match crate::support::durable::write(path, &text) {
            Ok(()) => *written = ids,
            Err(e) => eprintln!(
                "facegate: warning: cannot remember the ids announced to Home Assistant in {}: {e}",
                crate::support::terminal::path(path)
            ),
        }
    }

    /// The frame source came up (`true`) or went down or ended: the camera entity, retained, so
    /// that an automation can tell a dead camera from an empty hallway.
    pub fn camera(&self, publisher: &Publisher, up: bool) {
        publisher.send(&Message::retained(
            self.board.camera_topic(),
            if up { ON } else { OFF },
        ));
    }

    fn id_of(&self, name: &str) -> Option<String> {
        self.people
            .iter()
            .find(|(_, n)| n == name)
            .map(|(id, _)| id.clone())
    }

    fn leave(&mut self, publisher: &Publisher, track: u64) {
        let Some(id) = self.tracks.remove(&track) else {
            return;
        };
        if let Some(n) = self.present.get_mut(&id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.present.remove(&id);
                publisher.send(&Message::retained(self.board.presence_topic(&id), OFF));
            }
        }
    }

    /// An event: the event entity, presence, the last person and the latest face.
    pub fn event(&mut self, publisher: &Publisher, e: &Event) {
        let kind = crate::events::kind_name(e.kind);
        let payload = json!({
            "event_type": kind,
            "name": e.name,
            // Rounded as a decimal: an f32 rounded, then widened, showed as 0.8662999868392944.
            "score": (f64::from(e.score) * 1e4).round() / 1e4,
            "camera": self.board.camera,
            "track": e.track,
            "ts": (e.ts * 1e3).round() / 1e3,
            "unknown_id": e.unknown_id,
        });
        publisher.send(&Message {
            topic: self.board.event_topic(),
            payload: payload.to_string().into_bytes(),
            retain: false,
        });
        match e.kind {
            EventKind::Identified => {
                // A track decided anew (a flip) stops counting for whom it counted before.
                self.leave(publisher, e.track);
                if let Some(id) = e.name.as_deref().and_then(|n| self.id_of(n)) {
                    let n = self.present.entry(id.clone()).or_insert(0);
                    *n += 1;
                    if *n == 1 {
                        publisher.send(&Message::retained(self.board.presence_topic(&id), ON));
                    }
                    self.tracks.insert(e.track, id.clone());
                    self.last = Some(id);
                }
                publisher.send(&Message::retained(
                    self.board.last_person_topic(),
                    payload.to_string(),
                ));
            }
            EventKind::Unknown | EventKind::Left => self.leave(publisher, e.track),
        }
        if let Some(face) = &e.face {
            match crate::imaging::jpeg::encode(face, 85.0) {
                Ok(jpeg) => publisher.send(&Message::retained(self.board.snapshot_topic(), jpeg)),
                Err(err) => eprintln!("facegate: warning: face not sent to Home Assistant: {err}"),
            }
        }
    }

    /// The gallery changed: announce the new people, delete the removed ones' entities.
    pub fn gallery(&mut self, publisher: &Publisher, people: &[Person]) {
        let now = ids_and_names(people);
        for (id, _) in &self.people {
            if !now.iter().any(|(i, _)| i == id) && !self.removed.contains(id) {
                self.removed.push(id.clone());
                self.present.remove(id);
                self.tracks.retain(|_, p| p != id);
                if self.last.as_ref() == Some(id) {
                    // Their name and face leave the broker with them.
                    self.last = None;
                    for topic in [self.board.last_person_topic(), self.board.snapshot_topic()] {
                        publisher.send(&Message::retained(topic, Vec::new()));
                    }
                }
                // An empty retained message deletes the retained state.
                publisher.send(&Message::retained(
                    self.board.presence_topic(id),
                    Vec::new(),
                ));
            }
        }
        for (id, _) in &now {
            if !self.people.iter().any(|(i, _)| i == id) {
                publisher.send(&Message::retained(self.board.presence_topic(id), OFF));
            }
            self.removed.retain(|r| r != id);
        }
        self.people = now;
        publisher.announce(self.board.announcements(&self.people, &self.removed));
        self.write_remembered();
    }

    /// A clean stop: the will is not sent for a goodbye, so say "offline" here.
    pub fn stop(&self, publisher: &Publisher) {
        publisher.send(&Message::retained(
            self.board.availability_topic(),
            "offline",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_announced_before_and_gone_now_are_found_in_the_old_config() {
        let b = Board::new("homeassistant", "Front door").unwrap();
        let old = b.discovery(
            &[
                ("p000001".to_string(), "Ada".to_string()),
                ("p000002".to_string(), "Bob".to_string()),
            ],
            &["p000003".to_string()],
        );
        let old = old.to_string();
        assert_eq!(
            b.gone(Some(old.as_bytes()), &[], &[]),
            ["p000001", "p000002"]
        );
        assert!(b.gone(Some(b"not json"), &[], &[]).is_empty());
        let hostile = r#"{"cmps":{"present_../x":{"name":"x"},"present_p1/+":{"name":"y"},"present_p7":{"name":"z"}}}"#;
        assert_eq!(b.gone(Some(hostile.as_bytes()), &[], &[]), ["p7"]);
        // What the board remembers counts too, checked the same way and said once.
        let remembered = ["p000002", "p000009", "../etc"].map(String::from);
        assert_eq!(
            b.gone(Some(old.as_bytes()), &remembered, &[]),
            ["p000001", "p000002", "p000009"]
        );
        assert_eq!(b.gone(None, &remembered, &[]), ["p000002", "p000009"]);
    }

    #[test]
    fn a_remembered_file_that_is_not_a_list_of_ids_is_nothing() {
        let dir = std::env::temp_dir().join(format!("facegate-ha-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("home-assistant-door.json");
        assert!(remembered(&path).is_empty(), "no file");
        for garbage in [&b"\xff\xfe"[..], b"{\"ids\":1}", b"[1, 2]", b"[\"p1\""] {
            std::fs::write(&path, garbage).unwrap();
            assert!(remembered(&path).is_empty(), "{garbage:?}");
        }
        std::fs::write(&path, vec![b' '; 5 << 20]).unwrap();
        assert!(remembered(&path).is_empty(), "over the size limit");
        std::fs::write(&path, br#"["p000001","p000002-00000000000000aa"]"#).unwrap();
        assert_eq!(remembered(&path), ["p000001", "p000002-00000000000000aa"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_config_too_large_for_a_packet_is_not_sent() {
        let b = Board::new("homeassistant", "Front door").unwrap();
        let many: Vec<(String, String)> = (0..5000)
            .map(|i| (format!("p{i:06}"), format!("Person {i}")))
            .collect();
        let sent = b.announcements(&many, &[]);
        assert_eq!(sent.len(), 2, "5000 people fit in the larger packet");
        assert!(sent[0].payload.len() > 1 << 20);
        let names = "x".repeat(99);
        let too_many: Vec<(String, String)> = (0..100_000)
            .map(|i| (format!("p{i:06}"), format!("{names}{i}")))
            .collect();
        let sent = b.announcements(&too_many, &[]);
        assert_eq!(sent.len(), 1, "only online: the config does not fit");
        assert_eq!(sent[0].topic, b.availability_topic());
    }

    #[test]
    fn node_ids_are_topic_safe() {
        assert_eq!(node_id("Front door"), "front_door");
        assert_eq!(node_id("  Küche / back #2 "), "k_che_back_2");
        assert_eq!(node_id("///"), "camera");
    }

    #[test]
    fn the_discovery_config_has_one_device_and_its_entities() {
        let b = Board::new("homeassistant", "Front door").unwrap();
        assert_eq!(
            b.config_topic(),
            "homeassistant/device/facegate_front_door/config"
        );
        let people = vec![("p000001".to_string(), "Ada".to_string())];
        let c = b.discovery(&people, &["p000002".to_string()]);
        assert_eq!(c["dev"]["ids"][0], "facegate_front_door");
        assert_eq!(c["o"]["name"], "facegate");
        assert_eq!(c["avty"][0]["t"], "facegate/front_door/availability");
        let present = &c["cmps"]["present_p000001"];
        assert_eq!(present["p"], "binary_sensor");
        assert_eq!(present["device_class"], "presence");
        assert_eq!(
            present["state_topic"],
            "facegate/front_door/present/p000001"
        );
        assert_eq!(c["cmps"]["present_p000002"], json!({"p": "binary_sensor"}));
        assert_eq!(c["cmps"]["face"]["event_types"][1], "unknown");
        assert_eq!(c["cmps"]["snapshot"]["p"], "image");
        assert!(Board::new("home+assistant", "x").is_err());
        assert!(Board::new("ha/", "x").is_err());
        assert!(Board::new("ha", "").is_err());
    }
}
