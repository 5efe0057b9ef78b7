//! The signed, versioned message that carries one person's state between boards through the MQTT
//! broker (`facegate/gallery/<id>`, retained).
//!
//! On the wire: `{"body":"<JSON>","mac":"<hex HMAC-SHA256 of body with FACEGATE_SYNC_KEY>"}`.
//! The body is kept as the exact string that was signed, so verification never depends on how a
//! JSON library re-serialises it.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Largest message accepted: a person with a few dozen 112x112 crops fits easily.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
const MAX_SHOTS: usize = 1000;
const MAX_DIM: usize = 4096;
/// Largest crop a message carries (a 112x112 PNG is about 25 kB).
pub const MAX_CROP_BYTES: usize = 1 << 20;
/// Shorter keys are refused: the key is all that stands between the broker and the gallery.
pub const MIN_KEY_BYTES: usize = 16;

/// One shot: the embedding the sending board computed, and the aligned crop (PNG; empty when the
/// person was enrolled without crops) a board with another model re-embeds.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncShot {
    pub embedding: Vec<f32>,
    pub crop_png: Vec<u8>,
}

/// A person as one board last wrote them (or their removal, a tombstone).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonState {
    /// Global id, unique across boards.
    pub id: String,
    pub version: u64,
    /// The board that wrote this version.
    pub origin: String,
    pub name: String,
    /// When they were first enrolled (Unix seconds).
    pub enrolled_unix: u64,
    /// Fingerprint of the model that made the embeddings.
    pub model: String,
    pub deleted: bool,
    pub shots: Vec<SyncShot>,
    /// Faces recorded as not this person ("Not NAME"), so the correction holds on every board.
    pub negatives: Vec<SyncShot>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    body: String,
    mac: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    id: String,
    version: u64,
    origin: String,
    name: String,
    #[serde(default)]
    enrolled_unix: u64,
    model: String,
    deleted: bool,
    shots: Vec<ShotBody>,
    /// Absent when there are none, so a person without negatives is sent byte for byte as
    /// before (and boards of an older facegate still read it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    negatives: Vec<ShotBody>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShotBody {
    embedding: Vec<f32>,
    crop: String,
}

/// The MQTT topic of a person.
pub fn topic(id: &str) -> String {
    format!("facegate/gallery/{id}")
}

/// The key from `FACEGATE_SYNC_KEY`'s value, refused when too short to be a secret.
pub fn key(value: &str) -> Result<Vec<u8>, String> {
    if value.len() < MIN_KEY_BYTES {
        return Err(format!(
            "FACEGATE_SYNC_KEY must be at least {MIN_KEY_BYTES} bytes (use the same random \
             secret on every board, e.g. from `head -c 24 /dev/urandom | base64`)"
        ));
    }
    Ok(value.as_bytes().to_vec())
}

fn mac(key: &[u8], body: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; this cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(body);
    m
}

/// The signed message for `state`.
pub fn seal(state: &PersonState, key: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = Body {
        id: state.id.clone(),
        version: state.version,
        origin: state.origin.clone(),
        name: state.name.clone(),
        enrolled_unix: state.enrolled_unix,
        model: state.model.clone(),
        deleted: state.deleted,
        shots: state.shots.iter().map(|s| shot_body(s, &b64)).collect(),
        negatives: state.negatives.iter().map(|s| shot_body(s, &b64)).collect(),
    };
    sign_body(&serde_json::to_string(&body).unwrap_or_default(), key)
}

fn shot_body(s: &SyncShot, b64: &base64::engine::GeneralPurpose) -> ShotBody {
    ShotBody {
        embedding: s.embedding.clone(),
        crop: b64.encode(&s.crop_png),
    }
}

/// A message whose body is `body` as given, signed with `key`: what a board holding the key
/// could send, whatever the body says (for tests and the fuzzer, which reach the body's checks
/// through it).
pub fn sign_body(body: &str, key: &[u8]) -> Vec<u8> {
    let tag = mac(key, body.as_bytes()).finalize().into_bytes();
    let envelope = Envelope {
        mac: crate::embed::model_card::hex(&tag),
        body: body.to_string(),
    };
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Verifies and reads a message received on the topic of person `topic_id`. Anything unsigned,
/// signed with another key, altered, oversized or malformed is an error that says which.
pub fn open(payload: &[u8], key: &[u8], topic_id: &str) -> Result<PersonState, String> {
    let body = verified_body(payload, key)?;
    let body: Body = serde_json::from_str(&body)
        .map_err(|e| format!("signed, but not a person message: {e}"))?;
    if body.id != topic_id {
        return Err(format!(
            "carries person '{}' on the topic of '{}'",
            crate::support::terminal::escape(&body.id),
            crate::support::terminal::escape(topic_id)
        ));
    }
    if !crate::store::gallery::is_fleet_id(&body.id) {
        return Err("its person id is not a fleet id (p<number>-<board>)".into());
    }
    if body.origin.is_empty() || body.origin.len() > 64 || body.version == 0 {
        return Err("no version or origin".into());
    }
    if body.version > crate::store::gallery::MAX_VERSION {
        return Err(format!(
            "version {} is beyond any real count of edits (at most {})",
            body.version,
            crate::store::gallery::MAX_VERSION
        ));
    }
    if !body.deleted {
        crate::store::gallery::validate_name(&body.name)?;
    }
    let dim = body.shots.first().map_or(0, |s| s.embedding.len());
    let shots = shots_of(body.shots, dim, "shots")?;
    let negatives = shots_of(body.negatives, dim, "negatives")?;
    if !body.deleted && shots.is_empty() {
        return Err("a person without shots".into());
    }
    Ok(PersonState {
        id: body.id,
        version: body.version,
        origin: body.origin,
        name: body.name,
        enrolled_unix: body.enrolled_unix,
        model: body.model,
        deleted: body.deleted,
        shots,
        negatives,
    })
}

/// Shots (or negatives) as sent: at most [`MAX_SHOTS`], embeddings of `dim` finite numbers,
/// crops PNG and all present or all absent.
fn shots_of(list: Vec<ShotBody>, dim: usize, what: &str) -> Result<Vec<SyncShot>, String> {
    if list.len() > MAX_SHOTS {
        return Err(format!("{} {what}, more than {MAX_SHOTS}", list.len()));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut shots = Vec::with_capacity(list.len());
    for s in list {
        if s.embedding.len() != dim || dim == 0 || dim > MAX_DIM {
            return Err(format!("its {what}' embeddings differ in size"));
        }
        if s.embedding.iter().any(|v| !v.is_finite()) {
            return Err("an embedding is not finite".into());
        }
        if s.crop.len() > MAX_CROP_BYTES * 4 / 3 + 4 {
            return Err("a crop is too large".into());
        }
        let crop_png = b64
            .decode(s.crop.as_bytes())
            .map_err(|_| "a crop is not base64".to_string())?;
        if !crop_png.is_empty() && !crate::imaging::photo::is_png(&crop_png) {
            return Err("a crop is not a PNG".into());
        }
        shots.push(SyncShot {
            embedding: s.embedding,
            crop_png,
        });
    }
    let with_crops = shots.iter().filter(|s| !s.crop_png.is_empty()).count();
    if with_crops != 0 && with_crops != shots.len() {
        return Err(format!("some {what} have crops and some do not"));
    }
    Ok(shots)
}

/// The body of a signed message (a person or a manifest chunk), once its size, envelope and
/// signature are checked.
pub(crate) fn verified_body(payload: &[u8], key: &[u8]) -> Result<String, String> {
    if payload.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "{} bytes, more than a facegate message holds",
            payload.len()
        ));
    }
    let envelope: Envelope =
        serde_json::from_slice(payload).map_err(|_| "not a signed facegate message".to_string())?;
    let tag = hex(&envelope.mac).ok_or("the signature is not hex")?;
    mac(key, envelope.body.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| "bad signature (another key, or the message was altered)".to_string())?;
    Ok(envelope.body)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a shared secret of 32 bytes.....";
    const ADA: &str = "p000001-b1c2d3e4f5a6b7c8";

    fn ada() -> PersonState {
        let mut png = Vec::new();
        image::RgbImage::new(4, 4)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        PersonState {
            id: ADA.into(),
            version: 3,
            origin: "b1c2d3e4f5a6b7c8".into(),
            name: "Ada".into(),
            enrolled_unix: 1_700_000_000,
            model: "d3523dbc".into(),
            deleted: false,
            shots: vec![SyncShot {
                embedding: vec![0.6, 0.8],
                crop_png: png.clone(),
            }],
            negatives: vec![SyncShot {
                embedding: vec![0.8, 0.6],
                crop_png: png,
            }],
        }
    }

    #[test]
    fn a_version_beyond_the_bound_is_refused_even_when_signed() {
        let mut state = ada();
        state.version = u64::MAX;
        let err = open(&seal(&state, KEY), KEY, ADA).unwrap_err();
        assert!(err.contains("beyond any real count of edits"), "{err}");
        state.version = crate::store::gallery::MAX_VERSION;
        assert_eq!(open(&seal(&state, KEY), KEY, ADA).unwrap(), state);
    }

    #[test]
    fn a_sealed_person_opens_with_the_key_and_nothing_else() {
        let sealed = seal(&ada(), KEY);
        assert_eq!(open(&sealed, KEY, ADA).unwrap(), ada());
        let e = open(&sealed, b"another key of at least 16 bytes", ADA).unwrap_err();
        assert!(e.contains("bad signature"), "{e}");
        // Altering the body (a new name) breaks the signature.
        let text = String::from_utf8(sealed.clone())
            .unwrap()
            .replace("Ada", "Eve");
        assert!(open(text.as_bytes(), KEY, ADA)
            .unwrap_err()
            .contains("bad signature"));
        // Unsigned, on the wrong topic, oversized, garbage.
        let unsigned = br#"{"body":"{}","mac":""}"#;
        assert!(open(unsigned, KEY, "x").unwrap_err().contains("not hex"));
        assert!(open(&sealed, KEY, "p000002-b1c2d3e4f5a6b7c8")
            .unwrap_err()
            .contains("on the topic of"));
        assert!(open(&vec![b' '; MAX_MESSAGE_BYTES + 1], KEY, "x").is_err());
        assert!(open(b"\xff\x00", KEY, "x")
            .unwrap_err()
            .contains("not a signed"));
        // A tombstone needs no shots; a person does.
        let gone = PersonState {
            deleted: true,
            shots: Vec::new(),
            negatives: Vec::new(),
            ..ada()
        };
        assert_eq!(open(&seal(&gone, KEY), KEY, &gone.id).unwrap(), gone);
        let empty = PersonState {
            shots: Vec::new(),
            ..ada()
        };
        assert!(open(&seal(&empty, KEY), KEY, &empty.id).is_err());
        // Negatives are checked like shots; a person without them is sent as before.
        let mut odd = ada();
        odd.negatives[0].embedding = vec![1.0];
        let e = open(&seal(&odd, KEY), KEY, ADA).unwrap_err();
        assert!(e.contains("negatives' embeddings differ"), "{e}");
        let plain = PersonState {
            negatives: Vec::new(),
            ..ada()
        };
        let text = String::from_utf8(seal(&plain, KEY)).unwrap();
        assert!(!text.contains("negatives"), "{text}");
        assert_eq!(open(text.as_bytes(), KEY, ADA).unwrap(), plain);
    }

    #[test]
    fn versions_order_the_same_everywhere() {
        use crate::store::gallery::wins;
        assert!(wins((4, "a"), (3, "z")));
        assert!(wins((3, "b"), (3, "a")));
        assert!(!wins((3, "a"), (3, "b")));
        assert!(!wins((3, "a"), (3, "a")), "the same version is not news");
        assert!(key("short").is_err());
        assert!(key("sixteen bytes ok").is_ok());
    }
}
