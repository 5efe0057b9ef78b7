//! What the live stage tells the world: an [`Event`] per decision of a track (identified,
//! unknown, left), as JSON lines (the format other tools parse) and face snapshots. Access rules,
//! MQTT, the history and every sink take events from here; nothing here knows where they go.
//!
//! One line per event:
//! `{"ts":1732300000.125,"event":"identified","name":"Ada","score":0.712,"box":{"x":10,"y":20,"w":96,"h":96},"track":1,"frame":42}`
//! `name` is null for unknown people; `snapshot` is added when a face picture was saved,
//! `camera` when the board's camera is named (`--camera-name`), and `unknown_id` to unknown
//! events when recurring strangers are kept (`u000001`: the same id for the same stranger).
//! Identified events and their `left` carry `person_id`, the gallery id of the person (`p000003`): a
//! name can be given to someone else later, an id never is. When liveness is measured (`watch
//! --liveness`, or rules that ask for it) events carry `"live"` (true, false, or null while the
//! face has not moved enough to tell) and `"liveness"`, the distance its parallax travelled.

use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::imaging::rect::Rect;

/// What a track decided: a person identified, a face unknown, a visit over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Identified,
    Unknown,
    Left,
}

/// Something worth telling the world about.
#[derive(Debug, Clone)]
pub struct Event {
    /// Capture time of the frame that completed the event, seconds since the Unix epoch.
    pub ts: f64,
    pub kind: EventKind,
    pub name: Option<String>,
    /// The gallery id of the person named (identified events, and their `left`).
    pub person_id: Option<String>,
    pub score: f32,
    pub rect: Rect,
    pub track: u64,
    pub frame: u64,
    /// The face's box, with a margin, cut from the frame (identified and unknown events), for
    /// snapshots.
    pub face: Option<RgbImage>,
    /// Unknown events: the recurring stranger the face was grouped with (`live::strangers`).
    pub unknown_id: Option<String>,
    /// What the track's face has shown of being a head rather than a picture, when the run
    /// measures it (`live::liveness`).
    pub liveness: Option<crate::live::liveness::Verdict>,
}

/// A face's box as every JSON output writes it: `{"x":..,"y":..,"w":..,"h":..}`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BoxJson {
    pub x: i32,
    pub y: i32,
    pub w: i32,
    pub h: i32,
}

impl From<&crate::imaging::rect::Rect> for BoxJson {
    fn from(r: &crate::imaging::rect::Rect) -> BoxJson {
        BoxJson {
            x: r.x,
            y: r.y,
            w: r.w,
            h: r.h,
        }
    }
}

#[derive(serde::Serialize)]
struct EventJson<'a> {
    ts: f64,
    event: &'static str,
    name: Option<&'a str>,
    score: f32,
    #[serde(rename = "box")]
    rect: BoxJson,
    track: u64,
    frame: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    snapshot: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    camera: Option<&'a str>,
    /// With liveness measured: true, false, or null (not enough motion yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<Option<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    liveness: Option<f32>,
    /// The recurring stranger an unknown face was grouped with.
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    person_id: Option<&'a str>,
}

pub fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Identified => "identified",
        EventKind::Unknown => "unknown",
        EventKind::Left => "left",
    }
}

/// The event as one JSON line (no newline); `snapshot` is the saved face picture, if any;
/// `camera` names the board's camera (`--camera-name`).
pub fn json_line(event: &Event, snapshot: Option<&Path>, camera: Option<&str>) -> String {
    let line = EventJson {
        // Millisecond resolution: enough for events, and stable to print.
        ts: (event.ts * 1e3).round() / 1e3,
        event: kind_name(event.kind),
        name: event.name.as_deref(),
        score: (event.score * 1e4).round() / 1e4,
        rect: BoxJson::from(&event.rect),
        track: event.track,
        frame: event.frame,
        snapshot: snapshot.map(|p| p.display().to_string()),
        camera,
        unknown_id: event.unknown_id.as_deref(),
        person_id: event.person_id.as_deref(),
        live: event.liveness.map(|v| v.live),
        liveness: event.liveness.map(|v| (v.score * 1e3).round() / 1e3),
    };
    serde_json::to_string(&line).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// Saves event faces as PNG files in a directory.
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    /// Creates the directory if needed and checks that it can be written.
    pub fn new(dir: &Path) -> Result<Snapshots, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create snapshot directory {}: {e}", dir.display()))?;
        let probe = dir.join(".facegate-write-test");
        std::fs::write(&probe, b"")
            .map_err(|e| format!("cannot write in snapshot directory {}: {e}", dir.display()))?;
        let _ = std::fs::remove_file(probe);
        Ok(Snapshots {
            dir: dir.to_path_buf(),
        })
    }

    /// Saves the event's face, if it has one; the file name holds the time, event and track.
    pub fn save(&self, event: &Event) -> Result<Option<PathBuf>, String> {
        let Some(face) = &event.face else {
            return Ok(None);
        };
        let millis = (event.ts * 1e3).round() as u64;
        let path = self.dir.join(format!(
            "{millis}-{}-track{}.png",
            kind_name(event.kind),
            event.track
        ));
        crate::imaging::draw::save_png(face, &path)?;
        Ok(Some(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::rect::Rect;

    #[test]
    fn lines_follow_the_contract() {
        let event = Event {
            ts: 1_732_300_000.125_49,
            kind: EventKind::Identified,
            name: Some("Ada \"the\" Lovelace".into()),
            person_id: Some("p3".into()),
            score: 0.712_34,
            rect: Rect {
                x: 10,
                y: 20,
                w: 96,
                h: 97,
            },
            track: 3,
            frame: 42,
            face: None,
            unknown_id: None,
            liveness: None,
        };
        let v: serde_json::Value = serde_json::from_str(&json_line(&event, None, None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ts": 1732300000.125, "event": "identified", "name": "Ada \"the\" Lovelace",
                "score": 0.7123, "box": {"x": 10, "y": 20, "w": 96, "h": 97}, "track": 3, "frame": 42,
                "person_id": "p3"})
        );
        let unknown = Event {
            kind: EventKind::Unknown,
            name: None,
            person_id: None,
            ..event
        };
        let v: serde_json::Value = serde_json::from_str(&json_line(
            &unknown,
            Some(Path::new("s/1.png")),
            Some("Door"),
        ))
        .unwrap();
        assert_eq!(v["name"], serde_json::Value::Null);
        assert_eq!(v["event"], "unknown");
        assert_eq!(v["snapshot"], "s/1.png");
        assert_eq!(v["camera"], "Door");
        assert!(v.get("live").is_none(), "liveness not measured: no field");
        // Measured but undecided: null, and the parallax travelled so far.
        let measured = Event {
            liveness: Some(crate::live::liveness::Verdict {
                live: None,
                score: 0.031_42,
                frames: 7,
                cuts: 0,
            }),
            ..unknown
        };
        let v: serde_json::Value = serde_json::from_str(&json_line(&measured, None, None)).unwrap();
        assert_eq!(v["live"], serde_json::Value::Null);
        assert!(v.as_object().unwrap().contains_key("live"));
        assert_eq!(v["liveness"], 0.031);
    }
}
