//! The rules file (TOML): who may pass which camera when, how sure the match must be, and what
//! happens. Everything it names is checked when it is read, so a typo is an error at start, not
//! a door that silently never opens.
//!
//! ```toml
//! timezone = "Europe/Berlin"          # optional: the board's zone by default
//! cameras = ["front", "garage"]        # the camera names rules may use (--camera-name)
//!
//! [groups]
//! family = ["Ada", "Bob"]
//!
//! [actions.front_door]
//! gpio = { chip = "gpiochip0", line = 17, pulse_ms = 1500 }   # active_low = true for some relays
//! [actions.notify]
//! mqtt = "home/door/front"
//! [actions.hook]
//! webhook = "http://192.168.1.10:8123/api/webhook/front-door"
//! [actions.chime]
//! command = ["/usr/local/bin/chime", "--loud"]
//!
//! [[rules]]
//! name = "family"
//! who = ["@family"]                    # people, @groups, or "unknown" (faces nobody knows)
//! cameras = ["front"]                  # default: every camera
//! when = ["mon-fri 06:30-22:00", "sat,sun 08:00-23:00"]   # default: always
//! from = "2026-12-01"                  # optional validity, for guests (until includes its day)
//! until = "2026-12-24"
//! min_score = 0.45                     # default: the match threshold
//! cooldown = 30                        # seconds between two grants per person and camera (10)
//! do = ["front_door", "notify"]
//! ```
//!
//! Factors besides the face (`[factors.NAME]`, `require = [...]`, `wait = 30`) are described in
//! [`super::factors`].
//!
//! People are named as `facegate gallery list` shows them, or by id (`"id:p000003"`). A name is bound
//! to the person enrolled under it the first time a live run finds them ([`super::bindings`]):
//! a rename keeps the grant, and someone enrolled later under a removed person's name is not
//! granted by it.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::TimeZone;
use serde::Deserialize;

use super::bindings::Bindings;
use super::factors::{Factor, FactorSpec, Liveness};
use super::schedule::{day_bound, Window};

/// An enrolled person, as the rules see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub id: String,
    pub name: String,
}

impl Enrolled {
    pub fn of(people: &[crate::store::gallery::Person]) -> Vec<Enrolled> {
        people
            .iter()
            .map(|p| Enrolled {
                id: p.entry.id.clone(),
                name: p.entry.name.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    timezone: Option<String>,
    /// The rules' default liveness policy.
    #[serde(default)]
    liveness: Liveness,
    #[serde(default)]
    cameras: Vec<String>,
    #[serde(default)]
    groups: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    actions: BTreeMap<String, ActionSpec>,
    #[serde(default)]
    factors: BTreeMap<String, FactorSpec>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionSpec {
    gpio: Option<GpioSpec>,
    mqtt: Option<String>,
    webhook: Option<String>,
    command: Option<Vec<String>>,
    /// Webhook timeout.
    timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpioSpec {
    pub chip: String,
    pub line: u32,
    #[serde(default)]
    pub active_low: bool,
    #[serde(default = "default_pulse")]
    pub pulse_ms: u64,
}

fn default_pulse() -> u64 {
    1000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    who: Vec<String>,
    #[serde(default)]
    cameras: Vec<String>,
    #[serde(default)]
    when: Vec<String>,
    from: Option<String>,
    until: Option<String>,
    min_score: Option<f32>,
    cooldown: Option<f64>,
    /// Factors besides the face ("face" may be written; it is always required).
    #[serde(default)]
    require: Vec<String>,
    /// Seconds an otherwise granted face waits for the factors.
    wait: Option<f64>,
    liveness: Option<Liveness>,
    #[serde(rename = "do")]
    actions: Vec<String>,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Gpio(GpioSpec),
    Mqtt(String),
    Webhook { url: String, timeout_ms: u64 },
    Command(Vec<String>),
}

/// A rule, checked and compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The gallery ids of the people it grants.
    pub people: HashSet<String>,
    /// The names it gives (groups expanded), as written: what the audit explains a refusal by
    /// when a face carries one of these names but is not the person it was bound to.
    pub names: Vec<String>,
    pub unknown: bool,
    /// Empty: every camera.
    pub cameras: Vec<String>,
    pub windows: Vec<Window>,
    pub valid_from: Option<(f64, String)>,
    pub valid_until: Option<(f64, String)>,
    pub min_score: Option<f32>,
    pub cooldown: f64,
    /// Indices into [`Rules::factors`]: what must hold besides the face.
    pub require: Vec<usize>,
    /// Seconds a face that the rule would grant waits for its factors.
    pub wait: f64,
    pub liveness: Liveness,
    /// Indices into [`Rules::actions`].
    pub actions: Vec<usize>,
}

/// A checked rules file.
#[derive(Debug, Clone)]
pub struct Rules {
    pub tz: TimeZone,
    pub tz_name: String,
    pub cameras: Vec<String>,
    pub actions: Vec<(String, Action)>,
    pub factors: Vec<(String, Factor)>,
    pub rules: Vec<Rule>,
    /// Names the file gives that are not enrolled: each is left out of its group or rule (so it
    /// grants nothing) and said at start, instead of stopping the door. A person removed from the
    /// gallery must not take the door down with them.
    pub warnings: Vec<String>,
    /// Every name the file gives that has a person bound to it (name, id), enrolled or not.
    pub bound: HashMap<String, String>,
    /// Names found enrolled for the first time, to record in the bindings (name, id).
    pub new_bindings: Vec<(String, String)>,
}

const MAX_RULES: usize = 1000;
const MAX_FACTORS: usize = 64;

/// Turns the names and ids a rules file gives into gallery ids.
struct Resolver<'a> {
    by_name: HashMap<&'a str, &'a str>,
    ids: HashSet<&'a str>,
    bindings: &'a Bindings,
    bound: HashMap<String, String>,
    new_bindings: Vec<(String, String)>,
}

impl<'a> Resolver<'a> {
    fn new(people: &'a [Enrolled], bindings: &'a Bindings) -> Resolver<'a> {
        Resolver {
            by_name: people
                .iter()
                .map(|p| (p.name.as_str(), p.id.as_str()))
                .collect(),
            ids: people.iter().map(|p| p.id.as_str()).collect(),
            bindings,
            bound: HashMap::new(),
            new_bindings: Vec::new(),
        }
    }

    /// The id an entry grants, or why it grants nobody.
    fn resolve(&mut self, entry: &str) -> Result<String, String> {
        let esc = |s: &str| crate::support::terminal::escape(s).into_owned();
        if let Some(id) = entry.strip_prefix("id:") {
            return if self.ids.contains(id) {
                Ok(id.to_string())
            } else {
                Err(format!("person id '{}' is not enrolled", esc(id)))
            };
        }
        let bound = self
            .bindings
            .get(entry)
            .map(str::to_string)
            .or_else(|| self.bound.get(entry).cloned());
        if let Some(bound) = bound {
            self.bound.insert(entry.to_string(), bound.clone());
            if self.ids.contains(bound.as_str()) {
                return Ok(bound);
            }
            return Err(match self.by_name.get(entry) {
                Some(now) => format!(
                    "'{}' was bound to person {bound}, who is no longer enrolled; the '{}' \
                     enrolled now ({now}) is another person and is not granted (`facegate rules \
                     bind '{}'` grants them)",
                    esc(entry),
                    esc(entry),
                    esc(entry)
                ),
                None => format!("'{}' (person {bound}) is no longer enrolled", esc(entry)),
            });
        }
        match self.by_name.get(entry) {
            Some(id) => {
                self.bound.insert(entry.to_string(), id.to_string());
                self.new_bindings.push((entry.to_string(), id.to_string()));
                Ok(id.to_string())
            }
            None => Err(format!("'{}' is not enrolled", esc(entry))),
        }
    }
}

impl Rules {
    /// Reads and checks a rules file against the people enrolled and the names bound earlier.
    pub fn read(
        path: &std::path::Path,
        people: &[Enrolled],
        bindings: &Bindings,
    ) -> Result<Rules, String> {
        use crate::support::{limits, terminal};
        let text = limits::read_text(path, limits::MAX_CONFIG_BYTES, "rules file")
            .map_err(|e| format!("rules {}: {e}", terminal::path(path)))?;
        Rules::parse(&text, people, bindings)
            .map_err(|e| format!("rules {}: {e}", terminal::path(path)))
    }

    /// Says on stderr what in the rules (read from `path`) grants nothing: names not enrolled.
    pub fn warn(&self, path: &std::path::Path) {
        use crate::support::terminal;
        for w in &self.warnings {
            eprintln!(
                "facegate: warning: rules {}: {}",
                terminal::path(path),
                terminal::escape_message(w)
            );
        }
    }

    /// Parses and checks a rules file against the enrolled `people` and the names bound earlier.
    pub fn parse(text: &str, people: &[Enrolled], bindings: &Bindings) -> Result<Rules, String> {
        let file: File =
            toml::from_str(text).map_err(|e| format!("not a valid rules file: {e}"))?;
        let (tz, tz_name) = match &file.timezone {
            Some(name) => (
                TimeZone::get(name).map_err(|e| {
                    format!("timezone '{}': {e}", crate::support::terminal::escape(name))
                })?,
                name.clone(),
            ),
            None => (TimeZone::system(), "the board's".to_string()),
        };
        if file.rules.len() > MAX_RULES {
            return Err(format!("more than {MAX_RULES} rules"));
        }
        let mut resolver = Resolver::new(people, bindings);
        let esc = |s: &str| crate::support::terminal::escape(s).into_owned();
        let mut warnings = Vec::new();
        let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (group, members) in &file.groups {
            let ids = groups.entry(group).or_default();
            for m in members {
                match resolver.resolve(m) {
                    Ok(id) => ids.push(id),
                    Err(why) => warnings.push(format!(
                        "group '{}': {why}, so that entry grants nothing",
                        esc(group)
                    )),
                }
            }
        }
        let mut actions = Vec::new();
        for (name, spec) in &file.actions {
            let kinds = [
                spec.gpio.is_some(),
                spec.mqtt.is_some(),
                spec.webhook.is_some(),
                spec.command.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(format!(
                    "action '{}' needs exactly one of gpio, mqtt, webhook, command",
                    esc(name)
                ));
            }
            let action = if let Some(g) = &spec.gpio {
                if g.pulse_ms == 0 || g.pulse_ms > 60_000 {
                    return Err(format!(
                        "action '{}': pulse_ms must be 1 to 60000",
                        esc(name)
                    ));
                }
                Action::Gpio(g.clone())
            } else if let Some(topic) = &spec.mqtt {
                if topic.is_empty() || topic.contains(['+', '#']) {
                    return Err(format!(
                        "action '{}': '{}' is not an MQTT topic to publish to",
                        esc(name),
                        esc(topic)
                    ));
                }
                Action::Mqtt(topic.clone())
            } else if let Some(url) = &spec.webhook {
                if !url.starts_with("http://") {
                    return Err(format!(
                        "action '{}': webhook '{}' must be an http:// URL (the edge binary has no \
                         TLS; use a local relay for https)",
                        esc(name),
                        esc(url)
                    ));
                }
                // This build reads ASCII host names only (idna_adapter 1.0 in Cargo.toml), so an
                // international name is refused here rather than failing at the door.
                let host = url["http://".len()..].split(['/', '?', '#']).next();
                if !host.is_some_and(|h| !h.is_empty() && h.is_ascii()) {
                    return Err(format!(
                        "action '{}': webhook '{}' needs an ASCII host (an IP address or a plain \
                         host name; write an international name in its xn-- form)",
                        esc(name),
                        esc(url)
                    ));
                }
                Action::Webhook {
                    url: url.clone(),
                    timeout_ms: spec.timeout_ms.unwrap_or(3000).clamp(100, 60_000),
                }
            } else {
                let argv = spec.command.clone().unwrap_or_default();
                if argv.first().is_none_or(|p| p.is_empty()) {
                    return Err(format!("action '{}': the command is empty", esc(name)));
                }
                Action::Command(argv)
            };
            actions.push((name.clone(), action));
        }
        if file.factors.len() > MAX_FACTORS {
            return Err(format!("more than {MAX_FACTORS} factors"));
        }
        let mut factors = Vec::new();
        for (name, spec) in &file.factors {
            if name == "face" || name == "live" {
                return Err(format!(
                    "a factor may not be called '{name}' (the face is always required; its \
                     liveness is the rules' `liveness`)"
                ));
            }
            factors.push((name.clone(), spec.check(name)?));
        }
        let mut rules = Vec::new();
        for spec in file.rules {
            let here = |what: String| format!("rule '{}': {what}", esc(&spec.name));
            let mut people = HashSet::new();
            let mut names = Vec::new();
            let mut unknown = false;
            if spec.who.is_empty() {
                return Err(here("`who` is empty".into()));
            }
            for w in &spec.who {
                if w == "unknown" {
                    unknown = true;
                } else if let Some(group) = w.strip_prefix('@') {
                    let ids = groups
                        .get(group)
                        .ok_or_else(|| here(format!("no group '{}'", esc(group))))?;
                    people.extend(ids.iter().cloned());
                    names.extend(file.groups.get(group).into_iter().flatten().cloned());
                } else {
                    names.push(w.clone());
                    match resolver.resolve(w) {
                        Ok(id) => {
                            people.insert(id);
                        }
                        Err(why) => warnings.push(here(format!(
                            "{why}, so this entry grants nothing (names are as `facegate \
                             gallery list` shows them; groups start with @)"
                        ))),
                    }
                }
            }
            for c in &spec.cameras {
                if !file.cameras.contains(c) {
                    return Err(here(format!(
                        "camera '{}' is not in the file's `cameras` list",
                        esc(c)
                    )));
                }
            }
            let windows = spec
                .when
                .iter()
                .map(|w| Window::parse(w))
                .collect::<Result<Vec<_>, _>>()
                .map_err(here)?;
            let bound = |t: &Option<String>, end| -> Result<Option<(f64, String)>, String> {
                t.as_ref()
                    .map(|t| day_bound(t, &tz, end).map(|b| (b, t.clone())))
                    .transpose()
                    .map_err(here)
            };
            let valid_from = bound(&spec.from, false)?;
            let valid_until = bound(&spec.until, true)?;
            if let Some(s) = spec.min_score {
                if !(-1.0..=1.0).contains(&s) {
                    return Err(here("min_score must be a cosine from -1 to 1".into()));
                }
            }
            let cooldown = spec.cooldown.unwrap_or(10.0);
            if !(0.0..=86_400.0).contains(&cooldown) {
                return Err(here("cooldown must be 0 to 86400 seconds".into()));
            }
            let mut require = Vec::new();
            for f in spec.require.iter().filter(|f| *f != "face") {
                let i = factors
                    .iter()
                    .position(|(n, _)| n == f)
                    .ok_or_else(|| here(format!("requires '{}', which is not a factor", esc(f))))?;
                if !require.contains(&i) {
                    require.push(i);
                }
            }
            let wait = spec.wait.unwrap_or(30.0);
            if !(0.0..=super::factors::MAX_WAIT).contains(&wait) {
                return Err(here(format!(
                    "wait must be 0 to {} seconds",
                    super::factors::MAX_WAIT
                )));
            }
            let mut indices = Vec::new();
            for a in &spec.actions {
                let i = actions
                    .iter()
                    .position(|(n, _)| n == a)
                    .ok_or_else(|| here(format!("no action '{}'", esc(a))))?;
                indices.push(i);
            }
            rules.push(Rule {
                name: spec.name.clone(),
                people,
                names,
                unknown,
                cameras: spec.cameras.clone(),
                windows,
                valid_from,
                valid_until,
                min_score: spec.min_score,
                cooldown,
                require,
                wait,
                liveness: spec.liveness.unwrap_or(file.liveness),
                actions: indices,
            });
        }
        Ok(Rules {
            tz,
            tz_name,
            cameras: file.cameras,
            actions,
            factors,
            rules,
            warnings,
            bound: resolver.bound,
            new_bindings: resolver.new_bindings,
        })
    }

    /// The GPIO lines the actions use, in action order (what must be opened at start).
    pub fn gpio_lines(&self) -> Vec<(usize, GpioSpec)> {
        self.actions
            .iter()
            .enumerate()
            .filter_map(|(i, (_, a))| match a {
                Action::Gpio(g) => Some((i, g.clone())),
                _ => None,
            })
            .collect()
    }

    /// The GPIO input lines the factors watch (opened at start).
    pub fn input_lines(&self) -> Vec<super::factors::GpioInputSpec> {
        self.factors
            .iter()
            .filter_map(|(_, f)| match f {
                Factor::Gpio(g) => Some(g.clone()),
                _ => None,
            })
            .collect()
    }

    /// The MQTT topic filters the factors watch.
    pub fn mqtt_filters(&self) -> Vec<String> {
        let mut filters: Vec<String> = self
            .factors
            .iter()
            .filter_map(|(_, f)| f.mqtt_filter())
            .collect();
        filters.sort();
        filters.dedup();
        filters
    }

    /// Whether a rule asks whether faces are live (so the run must measure it).
    pub fn needs_liveness(&self) -> bool {
        self.rules.iter().any(|r| r.liveness != Liveness::Off)
    }

    /// Whether a factor takes PINs (entered through `serve`'s API).
    pub fn takes_pins(&self) -> bool {
        self.factors
            .iter()
            .any(|(_, f)| matches!(f, Factor::Pin { .. }))
    }

    /// What the file grants, person by person (and to unknown faces), in words.
    pub fn explain(&self, people: &[Enrolled]) -> String {
        let mut out = format!("time zone: {}\n", self.tz_name);
        let describe = |r: &Rule| {
            let mut parts = vec![format!("rule '{}'", r.name)];
            parts.push(if r.cameras.is_empty() {
                "at every camera".into()
            } else {
                format!("at {}", r.cameras.join(", "))
            });
            parts.push(if r.windows.is_empty() {
                "at any time".into()
            } else {
                r.windows
                    .iter()
                    .map(|w| w.text.clone())
                    .collect::<Vec<_>>()
                    .join(" or ")
            });
            if let Some((_, f)) = &r.valid_from {
                parts.push(format!("from {f}"));
            }
            if let Some((_, u)) = &r.valid_until {
                parts.push(format!("until {u} (inclusive)"));
            }
            parts.push(match r.min_score {
                Some(s) => format!("score at least {s}"),
                None => "at the match threshold".into(),
            });
            for &f in &r.require {
                let (name, factor) = &self.factors[f];
                parts.push(format!("with {name} ({})", factor.describe()));
            }
            match r.liveness {
                Liveness::Off => {}
                Liveness::Prefer => parts.push("noting whether the face is live".into()),
                Liveness::Require => parts.push("only for a live face".into()),
            }
            if !r.require.is_empty() || r.liveness == Liveness::Require {
                parts.push(format!("waiting up to {} s for them", r.wait));
            }
            let actions: Vec<String> = r
                .actions
                .iter()
                .map(|&i| {
                    let (name, a) = &self.actions[i];
                    match a {
                        Action::Gpio(g) => format!(
                            "{name} (pulse {} line {} for {} ms)",
                            g.chip, g.line, g.pulse_ms
                        ),
                        Action::Mqtt(t) => format!("{name} (MQTT {t})"),
                        Action::Webhook { url, .. } => format!("{name} (POST {url})"),
                        Action::Command(argv) => format!("{name} (run {})", argv.join(" ")),
                    }
                })
                .collect();
            format!(
                "{} -> {}",
                parts.join(", "),
                if actions.is_empty() {
                    "nothing but the audit".into()
                } else {
                    actions.join(", ")
                }
            )
        };
        for p in people {
            let mine: Vec<String> = self
                .rules
                .iter()
                .filter(|r| r.people.contains(&p.id))
                .map(describe)
                .collect();
            out.push_str(&format!(
                "{} ({}):\n",
                crate::support::terminal::escape(&p.name),
                p.id
            ));
            if mine.is_empty() {
                out.push_str("  nothing: no rule names them\n");
            }
            for m in mine {
                out.push_str(&format!("  {m}\n"));
            }
        }
        let unknown: Vec<String> = self
            .rules
            .iter()
            .filter(|r| r.unknown)
            .map(describe)
            .collect();
        out.push_str("unknown faces:\n");
        if unknown.is_empty() {
            out.push_str("  nothing: no rule names them\n");
        }
        for u in unknown {
            out.push_str(&format!("  {u}\n"));
        }
        out
    }
}
