//! Files a live run follows while it runs: the gallery (enrollments made by the CLI or the web UI
//! in another process) and the access rules (edited by the owner). Each is re-read when it
//! changes; a change that cannot be read keeps what was in force, with a warning.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::access::bindings::Bindings;
use crate::access::factors::Evidence;
use crate::access::rules::{Action, Enrolled, Rules};
use crate::access::Access;
use crate::live::run::Broker;
use crate::store::gallery::{Gallery, IndexStamp, ModelInfo, Person};
use crate::support::{terminal, warnings};

/// How often the live loop looks for a gallery changed by another process: cheap, one `stat` of
/// the index.
const GALLERY_POLL: Duration = Duration::from_millis(500);

/// How often the rules file is looked at.
const RULES_POLL: Duration = Duration::from_secs(1);

/// Notices when another process commits a change to the gallery, and re-reads it.
pub struct GalleryFollower {
    dir: PathBuf,
    model: ModelInfo,
    stamp: Option<IndexStamp>,
    checked: Instant,
    warnings: warnings::Throttle,
}

impl GalleryFollower {
    pub fn new(dir: &Path, model: ModelInfo) -> GalleryFollower {
        GalleryFollower {
            dir: dir.to_path_buf(),
            model,
            stamp: Gallery::index_stamp(dir),
            checked: Instant::now(),
            warnings: warnings::Throttle::per_minute(),
        }
    }

    /// The gallery's people when it changed since the last look.
    pub fn poll(&mut self) -> Option<Vec<Person>> {
        if self.checked.elapsed() < GALLERY_POLL {
            return None;
        }
        self.checked = Instant::now();
        if Gallery::index_stamp(&self.dir) == self.stamp {
            return None;
        }
        // Shared with the fleet sync thread, which reads the same change.
        match Gallery::open_shared(&self.dir, &self.model) {
            Ok((g, stamp)) => {
                self.stamp = stamp;
                Some(g.people().to_vec())
            }
            Err(e) => {
                // Keep matching against the gallery as it was; say why, and try again later.
                self.warnings
                    .warn(&format!("the changed gallery could not be read: {e}"));
                None
            }
        }
    }
}

/// The access rules in force, and the file they came from: re-read when it changes, when the
/// gallery changes (names resolve to the people enrolled then) and when the bindings change
/// (`facegate rules bind`); a file that no longer checks keeps the old rules.
pub struct RulesFollower {
    pub access: Access,
    /// Watches the MQTT topics of the rules' factors, while there are any.
    factors: Factors,
    path: PathBuf,
    gallery: PathBuf,
    stamp: Stamps,
    checked: Instant,
    people: Vec<Enrolled>,
    /// Set when the gallery changed: re-resolve at the next poll.
    stale: bool,
    /// Warnings already said, so that each is said once and not at every enrollment.
    said: std::collections::HashSet<String>,
}

type Stamps = [Option<(SystemTime, u64)>; 2];

impl RulesFollower {
    /// Reads and checks the rules, and starts their actions and factors (GPIO lines are opened
    /// here). `broker`: the MQTT broker for the rules' MQTT actions and factors. `pins`: whether
    /// PINs can be entered (`serve`'s API).
    pub fn start(
        path: &Path,
        gallery: &Path,
        people: &[Person],
        threshold: f32,
        broker: Option<&Broker>,
        evidence: Evidence,
        pins: bool,
    ) -> Result<RulesFollower, String> {
        let people = Enrolled::of(people);
        let stamp = stamps(path, gallery);
        let rules = read(path, gallery, &people)?;
        let here = |e: String| format!("rules {}: {e}", terminal::path(path));
        let publishes = rules
            .actions
            .iter()
            .any(|(_, a)| matches!(a, Action::Mqtt(_)));
        if publishes && broker.is_none() {
            return Err(here(
                "an action publishes to MQTT, but no --mqtt broker is given".into(),
            ));
        }
        if rules.takes_pins() && !pins {
            eprintln!(
                "facegate: warning: {}",
                here(
                    "a factor takes a PIN, which is entered through `facegate serve`'s API; here \
                     it never holds"
                        .into()
                )
            );
        }
        let mut said = std::collections::HashSet::new();
        // What grants nothing is said; the door runs on without it.
        say_new(&rules, path, &mut said);
        let mut factors = Factors {
            broker: broker.cloned(),
            evidence: evidence.clone(),
            filters: Vec::new(),
            watcher: None,
        };
        factors.watch(&rules).map_err(here)?;
        let access = Access::start(rules, &crate::access::actions::Chardev, threshold, evidence)
            .map_err(here)?;
        Ok(RulesFollower {
            access,
            factors,
            path: path.to_path_buf(),
            gallery: gallery.to_path_buf(),
            stamp,
            checked: Instant::now(),
            people,
            stale: false,
            said,
        })
    }

    /// The gallery changed: the rules are resolved against `people` at the next poll.
    pub fn set_people(&mut self, people: &[Person]) {
        self.people = Enrolled::of(people);
        self.stale = true;
    }

    /// Re-reads the rules when their file, the bindings or the gallery changed.
    pub fn poll(&mut self) {
        if self.checked.elapsed() < RULES_POLL && !self.stale {
            return;
        }
        self.checked = Instant::now();
        let stamp = stamps(&self.path, &self.gallery);
        if stamp == self.stamp && !self.stale {
            return;
        }
        let edited = stamp[0] != self.stamp[0];
        self.stamp = stamp;
        self.stale = false;
        let read = read(&self.path, &self.gallery, &self.people);
        if let Ok(r) = &read {
            say_new(r, &self.path, &mut self.said);
        }
        // Checked before the rules are replaced, watched after: a file the old rules stay for
        // must not have changed what is watched.
        let read = read.and_then(|r| {
            self.factors.check(&r)?;
            Ok(r)
        });
        let replaced = read.and_then(|r| self.access.replace(r, edited));
        if replaced.is_ok() {
            if let Err(e) = self.factors.watch(self.access.rules()) {
                eprintln!(
                    "facegate: warning: rules {}: {}",
                    terminal::path(&self.path),
                    terminal::escape_message(&e)
                );
            }
        }
        match replaced {
            Ok(()) if edited => eprintln!(
                "facegate: rules {} re-read: {} rules",
                terminal::path(&self.path),
                self.access.rules().rules.len()
            ),
            Ok(()) => {}
            Err(e) => eprintln!(
                "facegate: warning: rules {} not re-read, the old rules stay: {}",
                terminal::path(&self.path),
                terminal::escape_message(&e)
            ),
        }
    }
}

/// The MQTT subscription of the factors in force.
struct Factors {
    broker: Option<Broker>,
    evidence: Evidence,
    filters: Vec<String>,
    watcher: Option<MqttWatcher>,
}

#[cfg(feature = "mqtt")]
type MqttWatcher = crate::mqtt::Watcher;
#[cfg(not(feature = "mqtt"))]
type MqttWatcher = ();

impl Factors {
    /// Watches the topics `rules` need, when they are not the ones watched already.
    /// Whether the factors of `rules` can be watched: an MQTT one needs a broker.
    fn check(&self, rules: &Rules) -> Result<(), String> {
        if self.broker.is_none() && !rules.mqtt_filters().is_empty() {
            return Err("a factor watches an MQTT topic, but no --mqtt broker is given".into());
        }
        Ok(())
    }

    fn watch(&mut self, rules: &Rules) -> Result<(), String> {
        self.check(rules)?;
        let filters = rules.mqtt_filters();
        if filters == self.filters {
            return Ok(());
        }
        self.watcher = None;
        self.filters.clear();
        let Some(broker) = self.broker.as_ref().filter(|_| !filters.is_empty()) else {
            return Ok(());
        };
        self.watcher = Some(start_watcher(
            broker,
            filters.clone(),
            self.evidence.clone(),
        )?);
        self.filters = filters;
        Ok(())
    }
}

#[cfg(feature = "mqtt")]
fn start_watcher(
    broker: &Broker,
    filters: Vec<String>,
    evidence: Evidence,
) -> Result<MqttWatcher, String> {
    let mut warnings = warnings::Throttle::per_minute();
    crate::mqtt::Watcher::start(
        &broker.url,
        broker.credentials.clone(),
        filters,
        move |topic, payload| {
            if !evidence.mqtt(topic, payload, crate::access::factors::wall_now()) {
                warnings.warn(&format!(
                    "an MQTT message on {} was not taken as a factor: at most 128 bytes of text",
                    terminal::escape(topic)
                ));
            }
        },
    )
}

#[cfg(not(feature = "mqtt"))]
fn start_watcher(_: &Broker, _: Vec<String>, _: Evidence) -> Result<MqttWatcher, String> {
    Err("this facegate was built without MQTT support (the `mqtt` feature), which an MQTT factor needs".into())
}

/// Reads the rules against `people` and the gallery's bindings, and records the names bound for
/// the first time. Failing to record them is said and costs nothing now: the names resolve the
/// same way until the gallery changes.
fn read(path: &Path, gallery: &Path, people: &[Enrolled]) -> Result<Rules, String> {
    let mut bindings = Bindings::load(gallery)?;
    let rules = Rules::read(path, people, &bindings)?;
    let mut changed = false;
    for (name, id) in &rules.new_bindings {
        changed |= bindings.bind(name, id);
    }
    if changed {
        if let Err(e) = bindings.save(gallery) {
            eprintln!("facegate: warning: {}", terminal::escape_message(&e));
        }
    }
    Ok(rules)
}

fn say_new(rules: &Rules, path: &Path, said: &mut std::collections::HashSet<String>) {
    for w in &rules.warnings {
        if said.insert(w.clone()) {
            eprintln!(
                "facegate: warning: rules {}: {}",
                terminal::path(path),
                terminal::escape_message(w)
            );
        }
    }
}

fn stamps(path: &Path, gallery: &Path) -> Stamps {
    [file_stamp(path), file_stamp(&Bindings::path(gallery))]
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}
