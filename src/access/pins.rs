//! People's PINs, for the rules' `pin` factor: kept in the gallery directory
//! (`access-pins.json`), each as a salted SHA-256, set with `facegate rules pin NAME` and checked
//! when `serve`'s API is given one (`POST /api/v1/access/pin`).
//!
//! A PIN is 4 to 12 digits; a hash of so few digits can be searched offline by anyone who reads
//! the file, so the file is the owner's only (mode 0600) and the real defence is the API's
//! limit on wrong guesses (see `serve`). A PIN is a second factor: it opens nothing without the
//! face of the person it belongs to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::support::{durable, limits, terminal};

pub const FILE: &str = "access-pins.json";

const FORMAT_VERSION: u32 = 1;
const MAX_PEOPLE: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    salt: String,
    sha256: String,
}

/// The PINs of a gallery, by person id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pins {
    format_version: u32,
    people: BTreeMap<String, Stored>,
}

/// Whether `pin` has the form of a PIN; the error says what is wrong without repeating it.
pub fn check_form(pin: &str) -> Result<(), String> {
    if (4..=12).contains(&pin.len()) && pin.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err("a PIN is 4 to 12 digits (0-9)".into())
    }
}

fn digest(salt: &str, pin: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b"\0");
    h.update(pin.as_bytes());
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Pins {
    pub fn path(gallery_dir: &Path) -> PathBuf {
        gallery_dir.join(FILE)
    }

    /// The gallery's PINs; none yet is an empty set, a damaged file an error naming it.
    pub fn load(gallery_dir: &Path) -> Result<Pins, String> {
        let path = Pins::path(gallery_dir);
        if !path.exists() {
            return Ok(Pins {
                format_version: FORMAT_VERSION,
                people: BTreeMap::new(),
            });
        }
        let say = |e: String| format!("access PINs {}: {e}", terminal::path(&path));
        let text =
            limits::read_text(&path, limits::MAX_CONFIG_BYTES, "access PIN file").map_err(say)?;
        let pins: Pins = serde_json::from_str(&text).map_err(|e| {
            say(format!(
                "not a PIN file ({e}); move it away and set the PINs again"
            ))
        })?;
        if pins.format_version != FORMAT_VERSION {
            return Err(say(format!(
                "format version {} is not {FORMAT_VERSION}, made by another facegate",
                pins.format_version
            )));
        }
        if pins.people.len() > MAX_PEOPLE {
            return Err(say(format!("more than {MAX_PEOPLE} people")));
        }
        Ok(pins)
    }

    /// Writes the PINs atomically, readable by this user only.
    pub fn save(&self, gallery_dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        // Created private: a chmod after the write left the hashes readable for a moment.
        durable::write_private(&Pins::path(gallery_dir), text.as_bytes())
            .map_err(|e| format!("cannot save the access PINs: {e}"))
    }

    /// Sets person `id`'s PIN.
    pub fn set(&mut self, id: &str, pin: &str) -> Result<(), String> {
        check_form(pin)?;
        let mut salt = [0u8; 16];
        getrandom::fill(&mut salt).map_err(|e| format!("no randomness for the PIN's salt: {e}"))?;
        let salt = hex(&salt);
        let sha256 = digest(&salt, pin);
        self.people.insert(id.to_string(), Stored { salt, sha256 });
        Ok(())
    }

    /// Removes person `id`'s PIN; whether they had one.
    pub fn remove(&mut self, id: &str) -> bool {
        self.people.remove(id).is_some()
    }

    pub fn has(&self, id: &str) -> bool {
        self.people.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.people.len()
    }

    pub fn is_empty(&self) -> bool {
        self.people.is_empty()
    }

    /// The people whose PIN `pin` is (two people may choose the same one).
    pub fn matching(&self, pin: &str) -> Vec<String> {
        if check_form(pin).is_err() {
            return Vec::new();
        }
        self.people
            .iter()
            .filter(|(_, s)| digest(&s.salt, pin) == s.sha256)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_salted_checked_and_survive_a_save() {
        let dir = std::env::temp_dir().join(format!("facegate-pins-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut pins = Pins::load(&dir).unwrap();
        pins.set("p1", "4711").unwrap();
        pins.set("p2", "4711").unwrap();
        pins.set("p3", "123456").unwrap();
        for bad in ["123", "12a4", "1234567890123", "", " 1234", "١٢٣٤"] {
            assert!(pins.set("p4", bad).is_err(), "{bad:?}");
        }
        pins.save(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(Pins::path(&dir))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(Pins::path(&dir)).unwrap();
        assert!(!text.contains("4711"), "{text}");
        let again = Pins::load(&dir).unwrap();
        assert_eq!(again.matching("4711"), vec!["p1", "p2"]);
        assert_eq!(again.matching("123456"), vec!["p3"]);
        assert!(again.matching("0000").is_empty());
        assert!(again.matching("garbage").is_empty());
        std::fs::write(
            Pins::path(&dir),
            b"{\"format_version\":1,\"people\":{\"p1\":",
        )
        .unwrap();
        let e = Pins::load(&dir).unwrap_err();
        assert!(e.contains(FILE) && e.contains("not a PIN file"), "{e}");
    }
}
