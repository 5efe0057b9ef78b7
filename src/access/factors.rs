//! Factors besides the face. A single RGB camera cannot prove that the face in front of it is
//! alive, or that its owner means to come in; access systems cover that with a second factor.
//! A rule may `require` any of these, each named in the rules file:
//!
//! ```toml
//! [factors.phone_home]                 # Home Assistant's person or phone state, bridged to MQTT
//! mqtt = { topic = "home/{name}/phone", values = ["home"], max_age = 3600 }
//! [factors.button]                     # a push button or a keypad's relay on an input line
//! gpio = { chip = "gpiochip0", line = 27, active_low = true, within = 10 }
//! [factors.pin]                        # the person's PIN, entered through the API
//! pin = { within = 30 }
//!
//! [[rules]]
//! name = "night"
//! who = ["@family"]
//! require = ["face", "phone_home"]     # "face" is always required; it may be written
//! wait = 30                            # seconds a face waits for the others (default 30)
//! do = ["front_door"]
//! ```
//!
//! What the factors saw is kept in [`Evidence`], which the MQTT watcher, the GPIO input threads
//! and the API's PIN route write and the access decisions read. Times are wall-clock seconds
//! (the frame clock of a replayed stream says nothing about when a button was pressed).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::live::liveness::Verdict;

/// A factor as the rules file writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FactorSpec {
    mqtt: Option<MqttSpec>,
    gpio: Option<GpioInputSpec>,
    pin: Option<PinSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MqttSpec {
    topic: String,
    values: Vec<String>,
    max_age: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioInputSpec {
    pub chip: String,
    pub line: u32,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default = "default_within")]
    pub within: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinSpec {
    #[serde(default = "default_within")]
    within: f64,
}

fn default_within() -> f64 {
    30.0
}

/// What a rule asks of the face's liveness (`liveness = "off" | "prefer" | "require"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Not asked: liveness is not measured for this rule.
    #[default]
    Off,
    /// Measured and written in the audit line, but a face that has not shown it is granted.
    Prefer,
    /// A face opens nothing until its track has moved like a head (within the rule's `wait`).
    Require,
}

/// A checked factor.
#[derive(Debug, Clone, PartialEq)]
pub enum Factor {
    /// The topic (with `{name}` or `{id}` standing for the person) holds one of `values`,
    /// received at most `max_age` seconds ago.
    Mqtt {
        topic: String,
        values: Vec<String>,
        max_age: Option<f64>,
    },
    /// The input line went active within `within` seconds of the face (before it, or after it
    /// while the face waits).
    Gpio(GpioInputSpec),
    /// The identified person's PIN was entered within `within` seconds of the face.
    Pin { within: f64 },
}

/// Longest MQTT topic, and value, a factor names or takes.
const MAX_TOPIC: usize = 256;
const MAX_VALUE: usize = 128;
const MAX_VALUES: usize = 16;
/// The longest a factor may count back, or a face wait: a second factor is about now.
pub const MAX_WITHIN: f64 = 600.0;
pub const MAX_WAIT: f64 = 300.0;
const MAX_AGE: f64 = 7.0 * 86_400.0;

impl FactorSpec {
    pub(super) fn check(&self, name: &str) -> Result<Factor, String> {
        let esc = |s: &str| crate::support::terminal::escape(s).into_owned();
        let here = |what: String| format!("factor '{}': {what}", esc(name));
        let kinds = [self.mqtt.is_some(), self.gpio.is_some(), self.pin.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            return Err(here("needs exactly one of mqtt, gpio, pin".into()));
        }
        let within = |w: f64| {
            if w > 0.0 && w <= MAX_WITHIN {
                Ok(w)
            } else {
                Err(here(format!(
                    "within must be above 0 and at most {MAX_WITHIN} seconds"
                )))
            }
        };
        if let Some(m) = &self.mqtt {
            if m.topic.len() > MAX_TOPIC || m.topic.is_empty() || m.topic.contains(['+', '#', '\0'])
            {
                return Err(here(format!(
                    "'{}' is not a topic to watch (1 to {MAX_TOPIC} bytes, no wildcards; write \
                     {{name}} or {{id}} for the person)",
                    esc(&m.topic)
                )));
            }
            for level in m.topic.split('/') {
                let placeholder = level.contains(['{', '}']);
                if placeholder && level != "{name}" && level != "{id}" {
                    return Err(here(format!(
                        "in '{}', {{name}} or {{id}} must be a whole topic level",
                        esc(&m.topic)
                    )));
                }
            }
            if m.values.is_empty()
                || m.values.len() > MAX_VALUES
                || m.values.iter().any(|v| v.is_empty() || v.len() > MAX_VALUE)
            {
                return Err(here(format!(
                    "values must be 1 to {MAX_VALUES} non-empty strings of at most {MAX_VALUE} \
                     bytes"
                )));
            }
            if let Some(age) = m.max_age {
                if !(age > 0.0 && age <= MAX_AGE) {
                    return Err(here(format!(
                        "max_age must be above 0 and at most {MAX_AGE} seconds"
                    )));
                }
            }
            return Ok(Factor::Mqtt {
                topic: m.topic.clone(),
                values: m.values.clone(),
                max_age: m.max_age,
            });
        }
        if let Some(g) = &self.gpio {
            within(g.within)?;
            return Ok(Factor::Gpio(g.clone()));
        }
        let p = self.pin.as_ref().ok_or_else(|| here("no kind".into()))?;
        Ok(Factor::Pin {
            within: within(p.within)?,
        })
    }
}

impl Factor {
    /// The MQTT subscription this factor needs: its topic with each person placeholder a `+`.
    pub fn mqtt_filter(&self) -> Option<String> {
        match self {
            Factor::Mqtt { topic, .. } => Some(
                topic
                    .split('/')
                    .map(|l| if l.starts_with('{') { "+" } else { l })
                    .collect::<Vec<_>>()
                    .join("/"),
            ),
            _ => None,
        }
    }

    /// How the factor reads in `facegate rules check`.
    pub fn describe(&self) -> String {
        match self {
            Factor::Mqtt {
                topic,
                values,
                max_age,
            } => format!(
                "MQTT {topic} is {}{}",
                values.join(" or "),
                max_age.map_or(String::new(), |a| format!(", at most {a} s old"))
            ),
            Factor::Gpio(g) => format!(
                "input {} line {} active within {} s",
                g.chip, g.line, g.within
            ),
            Factor::Pin { within } => format!("their PIN within {within} s"),
        }
    }
}

/// Who a face is, as a factor needs it.
pub struct Subject<'a> {
    pub person_id: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Whether a factor held for a face, and what was seen: for the audit line.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Check {
    pub factor: String,
    pub held: bool,
    pub detail: String,
}

/// Most topics the evidence keeps a value of; a flood of new topics on a watched wildcard
/// keeps the first ones (a household has tens).
const MAX_TOPICS: usize = 4096;
/// Most inputs and PIN entries kept (each kept for [`MAX_WITHIN`] at most).
const MAX_MOMENTS: usize = 256;

#[derive(Default)]
struct Seen {
    /// Topic -> (value, when received).
    mqtt: HashMap<String, (String, f64)>,
    /// (chip, line) -> when it went active, newest last.
    inputs: HashMap<(String, u32), VecDeque<f64>>,
    /// (person id, when entered), newest last.
    pins: VecDeque<(String, f64)>,
    /// MQTT messages refused (too long, not text).
    refused: u64,
    /// Track -> what its face showed of being a head, and when that was said.
    tracks: HashMap<u64, (Verdict, f64)>,
}

/// Tracks whose liveness is kept (the newest).
const MAX_TRACKS: usize = 1024;

/// What the factors saw, shared by the threads that watch them and the decisions that read it.
#[derive(Clone, Default)]
pub struct Evidence {
    seen: Arc<Mutex<Seen>>,
}

impl Evidence {
    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message on a watched topic. A payload that is not short text is refused (false): a
    /// factor compares words like "home", and a megabyte of noise must not be kept.
    pub fn mqtt(&self, topic: &str, payload: &[u8], at: f64) -> bool {
        let value = match std::str::from_utf8(payload) {
            Ok(v) if v.len() <= MAX_VALUE && topic.len() <= MAX_TOPIC => v.trim(),
            _ => {
                self.lock().refused += 1;
                return false;
            }
        };
        let mut seen = self.lock();
        if seen.mqtt.len() >= MAX_TOPICS && !seen.mqtt.contains_key(topic) {
            seen.refused += 1;
            return false;
        }
        seen.mqtt.insert(topic.to_string(), (value.to_string(), at));
        true
    }

    /// MQTT messages refused so far.
    pub fn refused(&self) -> u64 {
        self.lock().refused
    }

    /// An input line went active.
    pub fn input(&self, chip: &str, line: u32, at: f64) {
        let mut seen = self.lock();
        let times = seen.inputs.entry((chip.to_string(), line)).or_default();
        push_bounded(times, at);
    }

    /// What the face of `track` has shown so far of being a head (the live loop says it every
    /// frame while liveness is measured).
    pub fn track(&self, track: u64, verdict: Verdict, at: f64) {
        let mut seen = self.lock();
        if seen.tracks.len() >= MAX_TRACKS && !seen.tracks.contains_key(&track) {
            if let Some(oldest) = seen
                .tracks
                .iter()
                .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
                .map(|(t, _)| *t)
            {
                seen.tracks.remove(&oldest);
            }
        }
        seen.tracks.insert(track, (verdict, at));
    }

    /// Whether the face of `track` has shown it is a head, for the rules' `liveness`.
    pub fn live(&self, track: u64) -> Check {
        let seen = self.lock();
        let (held, detail) = match seen.tracks.get(&track) {
            None => (false, "liveness not measured for this face yet".to_string()),
            Some((v, _)) => match v.live {
                Some(true) => (
                    true,
                    format!(
                        "the face moved like a head (parallax travelled {:.2} eye distances)",
                        v.score
                    ),
                ),
                Some(false) if v.cuts >= 2 => (
                    false,
                    format!(
                        "the face changed from picture to picture ({} cuts), as a slideshow does",
                        v.cuts
                    ),
                ),
                Some(false) => (
                    false,
                    format!(
                        "the face moved like a flat picture (parallax {:.2} eye distances)",
                        v.score
                    ),
                ),
                None => (
                    false,
                    format!(
                        "the face has not moved enough to tell (parallax {:.2} eye distances in \
                         {} frames); a turn or a nod shows it",
                        v.score, v.frames
                    ),
                ),
            },
        };
        Check {
            factor: "live".into(),
            held,
            detail,
        }
    }

    /// A correct PIN of `person_id` was entered.
    pub fn pin(&self, person_id: &str, at: f64) {
        let mut seen = self.lock();
        seen.pins.push_back((person_id.to_string(), at));
        while seen.pins.len() > MAX_MOMENTS {
            seen.pins.pop_front();
        }
    }

    /// Whether `factor` holds for a face seen at `face_at`, checked at `now`.
    pub fn check(
        &self,
        name: &str,
        factor: &Factor,
        who: &Subject,
        face_at: f64,
        now: f64,
    ) -> Check {
        let (held, detail) = self.holds(factor, who, face_at, now);
        Check {
            factor: name.to_string(),
            held,
            detail,
        }
    }

    fn holds(&self, factor: &Factor, who: &Subject, face_at: f64, now: f64) -> (bool, String) {
        let seen = self.lock();
        let relative = |t: f64| {
            if t <= face_at {
                format!("{:.1} s before the face", face_at - t)
            } else {
                format!("{:.1} s after the face", t - face_at)
            }
        };
        match factor {
            Factor::Mqtt {
                topic,
                values,
                max_age,
            } => {
                let Some(topic) = fill(topic, who) else {
                    return (
                        false,
                        format!("{topic} names a person, and this face is nobody known"),
                    );
                };
                match seen.mqtt.get(&topic) {
                    None => (false, format!("nothing received on {topic}")),
                    Some((v, _)) if !values.iter().any(|w| w == v) => (
                        false,
                        format!(
                            "{topic} is '{}', not {}",
                            crate::support::terminal::escape(v),
                            values.join(" or ")
                        ),
                    ),
                    Some((v, at)) => match max_age {
                        Some(age) if now - at > *age => (
                            false,
                            format!("{topic} is '{v}' but {:.0} s old (at most {age})", now - at),
                        ),
                        _ => (
                            true,
                            format!("{topic} is '{v}' ({:.0} s old)", (now - at).max(0.0)),
                        ),
                    },
                }
            }
            Factor::Gpio(g) => {
                let hit = seen
                    .inputs
                    .get(&(g.chip.clone(), g.line))
                    .and_then(|times| latest_within(times.iter().copied(), face_at, g.within, now));
                match hit {
                    Some(t) => (
                        true,
                        format!("{} line {} active {}", g.chip, g.line, relative(t)),
                    ),
                    None => (
                        false,
                        format!(
                            "{} line {} not active within {} s",
                            g.chip, g.line, g.within
                        ),
                    ),
                }
            }
            Factor::Pin { within } => {
                let Some(id) = who.person_id else {
                    return (
                        false,
                        "a PIN belongs to an enrolled person, and this face is nobody known".into(),
                    );
                };
                let times = seen.pins.iter().filter(|(p, _)| p == id).map(|(_, t)| *t);
                match latest_within(times, face_at, *within, now) {
                    Some(t) => (true, format!("their PIN entered {}", relative(t))),
                    None => (false, format!("their PIN not entered within {within} s")),
                }
            }
        }
    }
}

fn push_bounded(times: &mut VecDeque<f64>, at: f64) {
    times.push_back(at);
    while times.len() > MAX_MOMENTS {
        times.pop_front();
    }
}

/// The latest moment from `within` seconds before the face up to now.
fn latest_within(
    times: impl Iterator<Item = f64>,
    face_at: f64,
    within: f64,
    now: f64,
) -> Option<f64> {
    times
        .filter(|t| *t >= face_at - within && *t <= now + 1e-6)
        .max_by(f64::total_cmp)
}

/// The topic with the person filled in; `None` when it names a person and there is none.
fn fill(topic: &str, who: &Subject) -> Option<String> {
    let mut levels = Vec::new();
    for level in topic.split('/') {
        levels.push(match level {
            "{name}" => who.name?,
            "{id}" => who.person_id?,
            l => l,
        });
    }
    Some(levels.join("/"))
}

/// Now, in seconds since the Unix epoch.
pub fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ada() -> Subject<'static> {
        Subject {
            person_id: Some("p1"),
            name: Some("Ada"),
        }
    }

    #[test]
    fn an_mqtt_factor_reads_the_persons_topic_and_its_age() {
        let f = Factor::Mqtt {
            topic: "home/{name}/phone".into(),
            values: vec!["home".into()],
            max_age: Some(60.0),
        };
        assert_eq!(f.mqtt_filter().as_deref(), Some("home/+/phone"));
        let ev = Evidence::default();
        let check = |now| ev.check("phone", &f, &ada(), 1000.0, now);
        assert!(!check(1000.0).held);
        assert!(ev.mqtt("home/Ada/phone", b"not_home", 990.0));
        let c = check(1000.0);
        assert!(
            !c.held && c.detail.contains("'not_home', not home"),
            "{c:?}"
        );
        assert!(ev.mqtt("home/Ada/phone", b" home\n", 995.0));
        assert!(check(1000.0).held);
        let old = check(1100.0);
        assert!(
            !old.held && old.detail.contains("old (at most 60)"),
            "{old:?}"
        );
        // Another person's phone is not Ada's.
        assert!(ev.mqtt("home/Bob/phone", b"home", 999.0));
        let nobody = Subject {
            person_id: None,
            name: None,
        };
        assert!(!ev.check("phone", &f, &nobody, 1000.0, 1000.0).held);
        // Garbage is refused and counted, never kept.
        assert!(!ev.mqtt("home/Ada/phone", &[0xff, 0xfe], 999.0));
        assert!(!ev.mqtt("home/Ada/phone", &vec![b'x'; 10_000], 999.0));
        assert_eq!(ev.refused(), 2);
        assert!(check(1000.0).held);
    }

    #[test]
    fn inputs_and_pins_count_within_their_window_of_the_face() {
        let button = Factor::Gpio(GpioInputSpec {
            chip: "gpiochip0".into(),
            line: 27,
            active_low: true,
            within: 10.0,
        });
        let pin = Factor::Pin { within: 30.0 };
        let ev = Evidence::default();
        ev.input("gpiochip0", 27, 980.0);
        ev.pin("p2", 1000.0);
        assert!(!ev.check("b", &button, &ada(), 1000.0, 1000.0).held);
        assert!(!ev.check("p", &pin, &ada(), 1000.0, 1000.0).held);
        ev.input("gpiochip0", 27, 1003.0);
        ev.pin("p1", 1020.0);
        let b = ev.check("b", &button, &ada(), 1000.0, 1005.0);
        assert!(b.held && b.detail.contains("3.0 s after the face"), "{b:?}");
        // Not yet entered at the time checked.
        assert!(!ev.check("p", &pin, &ada(), 1000.0, 1010.0).held);
        assert!(ev.check("p", &pin, &ada(), 1000.0, 1020.0).held);
        for i in 0..10 * MAX_MOMENTS {
            ev.pin("p9", 2000.0 + i as f64);
        }
        assert!(ev.lock().pins.len() <= MAX_MOMENTS);
    }

    #[test]
    fn factor_specs_with_bad_limits_are_refused() {
        let parse = |t: &str| -> Result<Factor, String> {
            let spec: FactorSpec = toml::from_str(t).map_err(|e| e.to_string())?;
            spec.check("f")
        };
        assert!(parse("pin = { within = 30 }").is_ok());
        for (text, expected) in [
            ("pin = { within = 0 }", "within must be"),
            ("pin = { within = 1e9 }", "within must be"),
            ("pin = {}\ngpio = { chip = \"c\", line = 1 }", "exactly one"),
            (
                "mqtt = { topic = \"a/#\", values = [\"x\"] }",
                "not a topic",
            ),
            (
                "mqtt = { topic = \"a/x{name}\", values = [\"x\"] }",
                "whole topic level",
            ),
            ("mqtt = { topic = \"a\", values = [] }", "values must be"),
            (
                "mqtt = { topic = \"a\", values = [\"x\"], max_age = -1 }",
                "max_age",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
