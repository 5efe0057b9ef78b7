//! Files a live run follows while it runs: the gallery (enrollments made by the CLI or the web UI
//! in another process) and the access rules (edited by the owner). Each is re-read when it
//! changes; a change that cannot be read keeps what was in force, with a warning.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::access::rules::{Action, Rules};
use crate::access::Access;
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
        let stamp = Gallery::index_stamp(&self.dir);
        if stamp == self.stamp {
            return None;
        }
        match Gallery::open(&self.dir, &self.model) {
            Ok(g) => {
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

/// The access rules in force, and the file they came from: re-read when it changes (checked
/// against the people enrolled then); a file that no longer checks keeps the old rules.
pub struct RulesFollower {
    pub access: Access,
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
    people: Vec<String>,
}

impl RulesFollower {
    /// Reads and checks the rules, and starts their actions (GPIO lines are opened here).
    /// `can_publish`: whether an MQTT broker is there for the rules' MQTT actions.
    pub fn start(
        path: &Path,
        people: &[Person],
        threshold: f32,
        can_publish: bool,
    ) -> Result<RulesFollower, String> {
        let people = names(people);
        let rules = Rules::read(path, &people)?;
        // What grants nothing is said; the door runs on without it.
        rules.warn(path);
        let publishes = rules
            .actions
            .iter()
            .any(|(_, a)| matches!(a, Action::Mqtt(_)));
        if publishes && !can_publish {
            return Err(format!(
                "rules {}: an action publishes to MQTT, but no --mqtt broker is given",
                terminal::path(path)
            ));
        }
        let access = Access::start(rules, &crate::access::actions::Chardev, threshold)
            .map_err(|e| format!("rules {}: {e}", terminal::path(path)))?;
        Ok(RulesFollower {
            access,
            path: path.to_path_buf(),
            stamp: file_stamp(path),
            checked: Instant::now(),
            people,
        })
    }

    /// The people the rules are checked against from now on.
    pub fn set_people(&mut self, people: &[Person]) {
        self.people = names(people);
    }

    /// Re-reads the rules when their file changed.
    pub fn poll(&mut self) {
        if self.checked.elapsed() < RULES_POLL {
            return;
        }
        self.checked = Instant::now();
        let stamp = file_stamp(&self.path);
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        let read = Rules::read(&self.path, &self.people).inspect(|r| r.warn(&self.path));
        match read.and_then(|r| self.access.replace(r)) {
            Ok(()) => eprintln!(
                "facegate: rules {} re-read: {} rules",
                terminal::path(&self.path),
                self.access.rules().rules.len()
            ),
            Err(e) => eprintln!(
                "facegate: warning: rules {} not re-read, the old rules stay: {}",
                terminal::path(&self.path),
                terminal::escape_message(&e)
            ),
        }
    }
}

fn names(people: &[Person]) -> Vec<String> {
    people.iter().map(|p| p.entry.name.clone()).collect()
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}
