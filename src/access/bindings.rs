//! Which person each name in the rules means. A rules file names people the way an owner writes
//! them ("Ada"), but a name can pass to someone else: Ada is removed, and a stranger is later
//! enrolled as "Ada" (by mistake, on another board of the fleet, by someone with the UI). So the
//! first time a live run finds a name enrolled, the name is bound to that person's gallery id,
//! and the binding is kept in the gallery directory (`access-bindings.json`). From then on the
//! rules grant that id: a rename keeps the grant, and a new person under the old name is not
//! granted until the owner says so (`facegate rules bind NAME`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::support::{durable, limits, terminal};

/// The file, in the gallery directory.
pub const FILE: &str = "access-bindings.json";

const FORMAT_VERSION: u32 = 1;

/// More than any rules file can name (1 000 rules, a config file's size).
const MAX_BINDINGS: usize = 100_000;

/// A name in the rules, and the person it was bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bound {
    pub id: String,
    /// When the binding was made, seconds since the Unix epoch.
    pub since_unix: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bindings {
    format_version: u32,
    names: BTreeMap<String, Bound>,
}

impl Bindings {
    pub fn path(gallery_dir: &Path) -> PathBuf {
        gallery_dir.join(FILE)
    }

    /// Reads the bindings of a gallery; none yet is an empty set. A damaged file is an error
    /// naming it: guessing would grant the wrong person.
    pub fn load(gallery_dir: &Path) -> Result<Bindings, String> {
        let path = Bindings::path(gallery_dir);
        if !path.exists() {
            return Ok(Bindings {
                format_version: FORMAT_VERSION,
                names: BTreeMap::new(),
            });
        }
        let say = |e: String| format!("access bindings {}: {e}", terminal::path(&path));
        let text = limits::read_text(&path, limits::MAX_CONFIG_BYTES, "access bindings file")
            .map_err(say)?;
        let b: Bindings = serde_json::from_str(&text).map_err(|e| {
            say(format!(
                "not a bindings file ({e}); move it away to bind anew"
            ))
        })?;
        if b.format_version != FORMAT_VERSION {
            return Err(say(format!(
                "format version {} is not {FORMAT_VERSION}, made by another facegate",
                b.format_version
            )));
        }
        if b.names.len() > MAX_BINDINGS {
            return Err(say(format!("more than {MAX_BINDINGS} names")));
        }
        Ok(b)
    }

    /// Writes the bindings atomically.
    pub fn save(&self, gallery_dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        durable::write(&Bindings::path(gallery_dir), text.as_bytes())
            .map_err(|e| format!("cannot save the access bindings: {e}"))
    }

    /// The person `name` was bound to.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.names.get(name).map(|b| b.id.as_str())
    }

    /// Binds `name` to `id` from now on; whether that changed anything.
    pub fn bind(&mut self, name: &str, id: &str) -> bool {
        if self.get(name) == Some(id) {
            return false;
        }
        let since_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.names.insert(
            name.to_string(),
            Bound {
                id: id.to_string(),
                since_unix,
            },
        );
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names.iter().map(|(n, b)| (n.as_str(), b.id.as_str()))
    }
}

/// What to tell whoever just enrolled person `id` as `name` when the rules bound that name to
/// someone else: the new person is not granted what the old one was.
pub fn enrollment_warning(gallery_dir: &Path, name: &str, id: &str) -> Option<String> {
    let bindings = Bindings::load(gallery_dir).ok()?;
    let bound = bindings.get(name)?;
    (bound != id).then(|| {
        format!(
            "the access rules name '{}', which they bound to another person ({bound}); this \
             {} ({id}) is not granted by them until the owner runs `facegate rules bind '{}'`",
            terminal::escape(name),
            terminal::escape(name),
            terminal::escape(name),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("facegate-bindings-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn bindings_survive_a_save_and_name_another_person_as_a_warning() {
        let dir = scratch("roundtrip");
        let mut b = Bindings::load(&dir).unwrap();
        assert!(b.bind("Ada", "p3"));
        assert!(!b.bind("Ada", "p3"));
        b.save(&dir).unwrap();
        let again = Bindings::load(&dir).unwrap();
        assert_eq!(again.get("Ada"), Some("p3"));
        assert!(enrollment_warning(&dir, "Ada", "p3").is_none());
        let w = enrollment_warning(&dir, "Ada", "p9").unwrap();
        assert!(w.contains("p3") && w.contains("rules bind"), "{w}");
        assert!(enrollment_warning(&dir, "Bob", "p4").is_none());
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = scratch("damaged");
        std::fs::write(dir.join(FILE), b"{\"format_version\":1,\"names\":{\"Ada\":").unwrap();
        let e = Bindings::load(&dir).unwrap_err();
        assert!(e.contains(FILE) && e.contains("not a bindings file"), "{e}");
    }
}
