//! The event history: every identified/unknown/left event in a SQLite file in the state
//! directory, the face snapshot of each beside it as `snapshots/<id>.jpg`, corrections people
//! made ("this is not Ada"), and retention by age and count.
//!
//! Event ids are never reused (AUTOINCREMENT), so a snapshot file always belongs to the event
//! its name says, even after retention deleted older ones.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::Serialize;

use crate::events::BoxJson;
use crate::events::Event;

pub const DATABASE: &str = "events.db";
pub const SNAPSHOTS: &str = "snapshots";

/// Marks the file as facegate's ("FGEV"), so a foreign database is refused, not altered.
const APPLICATION_ID: i32 = 0x4647_4556;
/// Version 2 adds the access decisions (`--rules`); version 3 their person id, the factors
/// besides the face and whether the face was waiting for them, and each event's person id,
/// recurring stranger and liveness.
const SCHEMA_VERSION: i32 = 4;
/// How long a statement waits for another connection's lock before the database is "locked".
const BUSY_TIMEOUT_MS: u64 = 3000;

const SCHEMA: &str = "
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    event TEXT NOT NULL,
    name TEXT,
    score REAL NOT NULL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, w INTEGER NOT NULL, h INTEGER NOT NULL,
    track INTEGER NOT NULL,
    frame INTEGER NOT NULL,
    snapshot INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX events_ts ON events(ts);
CREATE INDEX events_name ON events(name);
CREATE TABLE corrections (
    event_id INTEGER PRIMARY KEY REFERENCES events(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    same INTEGER NOT NULL,
    ts REAL NOT NULL
);
";

/// The access rules' decisions (the audit): granted or denied, by which rule, and why.
const ACCESS_SCHEMA: &str = "
CREATE TABLE access (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    name TEXT,
    unknown_id TEXT,
    camera TEXT,
    track INTEGER NOT NULL,
    score REAL NOT NULL,
    granted INTEGER NOT NULL,
    rule TEXT,
    reason TEXT NOT NULL,
    actions TEXT NOT NULL
);
CREATE INDEX access_ts ON access(ts);
";

/// Version 3's columns of the access decisions and the events (`liveness` NULL: not measured;
/// `live` NULL with a `liveness`: not decided yet).
const ACCESS_V3: &str = "
ALTER TABLE access ADD COLUMN person_id TEXT;
ALTER TABLE access ADD COLUMN factors TEXT NOT NULL DEFAULT '[]';
ALTER TABLE access ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN person_id TEXT;
ALTER TABLE events ADD COLUMN unknown_id TEXT;
ALTER TABLE events ADD COLUMN live INTEGER;
ALTER TABLE events ADD COLUMN liveness REAL;
";

/// Version 4: the camera an event was seen by (`--camera-name`), as its line names it.
const EVENTS_V4: &str = "
ALTER TABLE events ADD COLUMN camera TEXT;
";

/// How long events are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub days: f64,
    pub events: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Correction {
    pub name: String,
    pub same: bool,
    pub ts: f64,
}

/// A stored event, as the API shows it (the fields of `watch`'s JSON lines, plus `id`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub ts: f64,
    pub event: String,
    pub name: Option<String>,
    pub score: f32,
    #[serde(rename = "box")]
    pub rect: BoxJson,
    pub track: u64,
    pub frame: u64,
    pub snapshot: Option<String>,
    pub correction: Option<Correction>,
    /// The gallery id of the person named (a name can change hands; an id never does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_id: Option<String>,
    /// Unknown events: the recurring stranger.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unknown_id: Option<String>,
    /// Where liveness was measured: true, false or null (not decided), and its score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<Option<bool>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<f32>,
    /// The camera that saw it, when the board's camera is named (`--camera-name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<String>,
}

/// Which events a listing wants (all optional), newest first.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub person: Option<String>,
    pub unknown: bool,
    pub event: Option<String>,
    pub since: Option<f64>,
    pub until: Option<f64>,
    pub before: Option<i64>,
    pub limit: u32,
}

pub struct History {
    db: Connection,
    path: PathBuf,
    snapshots: PathBuf,
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl History {
    /// Opens (or creates) the history in `state_dir`. A file that is not facegate's event
    /// database, a corrupt one or one locked by another program is an error that says so; it is
    /// never reset.
    pub fn open(state_dir: &Path) -> Result<History, String> {
        let path = state_dir.join(DATABASE);
        let snapshots = state_dir.join(SNAPSHOTS);
        std::fs::create_dir_all(&snapshots).map_err(|e| {
            format!(
                "cannot create the snapshot folder {}: {e}",
                crate::support::terminal::path(&snapshots)
            )
        })?;
        let shown = crate::support::terminal::path(&path);
        let fail = |problem: String| {
            format!(
                "event history {shown}: {problem}; it was left as it is: move it away to start a \
                 new history, or restore a backup"
            )
        };
        let db = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| fail(describe(&e)))?;
        db.busy_timeout(std::time::Duration::from_millis(BUSY_TIMEOUT_MS))
            .map_err(|e| fail(describe(&e)))?;
        let check: String = db
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| fail(describe(&e)))?;
        if check != "ok" {
            return Err(fail(format!("the database is corrupt ({check})")));
        }
        let app: i32 = pragma(&db, "application_id").map_err(|e| fail(describe(&e)))?;
        let version: i32 = pragma(&db, "user_version").map_err(|e| fail(describe(&e)))?;
        let tables: i64 = db
            .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
            .map_err(|e| fail(describe(&e)))?;
        if app == 0 && version == 0 && tables == 0 {
            let init = format!(
                "BEGIN; {SCHEMA} {ACCESS_SCHEMA} {ACCESS_V3} {EVENTS_V4} PRAGMA application_id = \
                 {APPLICATION_ID}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            );
            db.execute_batch(&init).map_err(|e| fail(describe(&e)))?;
        } else if app == APPLICATION_ID && (1..SCHEMA_VERSION).contains(&version) {
            // A history from before access rules, their factors, or events' cameras: add what
            // is new, keep every event and decision.
            let table = if version == 1 { ACCESS_SCHEMA } else { "" };
            let v3 = if version < 3 { ACCESS_V3 } else { "" };
            let upgrade = format!(
                "BEGIN; {table} {v3} {EVENTS_V4} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            );
            db.execute_batch(&upgrade).map_err(|e| fail(describe(&e)))?;
        } else if app != APPLICATION_ID {
            return Err(fail(
                "it is a SQLite database, but not facegate's event history".into(),
            ));
        } else if version != SCHEMA_VERSION {
            return Err(fail(format!(
                "it has schema version {version}, and this facegate reads version {SCHEMA_VERSION}"
            )));
        }
        // WAL: readers (the API) never block the writer (the pipeline's recorder).
        db.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .map_err(|e| fail(describe(&e)))?;
        db.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(|e| fail(describe(&e)))?;
        Ok(History {
            db,
            path,
            snapshots,
        })
    }

    fn fail(&self, e: rusqlite::Error) -> String {
        format!(
            "event history {}: {}",
            crate::support::terminal::path(&self.path),
            describe(&e)
        )
    }

    /// Stores an event and its snapshot (JPEG bytes), returning it as stored.
    pub fn insert(
        &mut self,
        e: &Event,
        snapshot: Option<&[u8]>,
        camera: Option<&str>,
    ) -> Result<StoredEvent, String> {
        self.db
            .execute(
                "INSERT INTO events (ts, event, name, score, x, y, w, h, track, frame, person_id, \
                 unknown_id, live, liveness, camera) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
                 ?10, ?11, ?12, ?13, ?14, ?15)",
                params![
                    (e.ts * 1e3).round() / 1e3,
                    crate::events::kind_name(e.kind),
                    e.name,
                    ((e.score * 1e4).round() / 1e4) as f64,
                    e.rect.x,
                    e.rect.y,
                    e.rect.w,
                    e.rect.h,
                    e.track as i64,
                    e.frame as i64,
                    e.person_id,
                    e.unknown_id,
                    e.liveness.and_then(|v| v.live),
                    e.liveness.map(|v| f64::from((v.score * 1e3).round() / 1e3)),
                    camera,
                ],
            )
            .map_err(|err| self.fail(err))?;
        let id = self.db.last_insert_rowid();
        if let Some(jpeg) = snapshot {
            // The row first, then the file: a crash in between leaves an event without a
            // picture, never a picture that a later event's id would claim.
            crate::support::durable::write_or_say(&self.snapshot_path(id), jpeg)?;
            self.db
                .execute("UPDATE events SET snapshot = 1 WHERE id = ?1", [id])
                .map_err(|err| self.fail(err))?;
        }
        self.get(id)?
            .ok_or_else(|| format!("event {id} vanished right after it was stored"))
    }

    /// The snapshot file of event `id` (built from the number alone, never from stored text).
    pub fn snapshot_path(&self, id: i64) -> PathBuf {
        self.snapshots.join(format!("{id}.jpg"))
    }

    pub fn get(&self, id: i64) -> Result<Option<StoredEvent>, String> {
        self.db
            .query_row(&format!("{SELECT} WHERE e.id = ?1"), [id], row_to_event)
            .optional()
            .map_err(|e| self.fail(e))
    }

    pub fn list(&self, f: &Filter) -> Result<Vec<StoredEvent>, String> {
        let mut sql = format!("{SELECT} WHERE 1 = 1");
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut bind = |sql: &mut String, clause: &str, v: rusqlite::types::Value| {
            values.push(v);
            sql.push_str(&format!(" AND {clause} ?{}", values.len()));
        };
        if let Some(p) = &f.person {
            // Names are compared without case (SQLite folds ASCII letters only).
            bind(
                &mut sql,
                "e.name COLLATE NOCASE =",
                p.split_whitespace().collect::<Vec<_>>().join(" ").into(),
            );
        }
        if f.unknown {
            sql.push_str(" AND e.event = 'unknown'");
        }
        if let Some(k) = &f.event {
            bind(&mut sql, "e.event =", k.clone().into());
        }
        if let Some(t) = f.since {
            bind(&mut sql, "e.ts >=", t.into());
        }
        if let Some(t) = f.until {
            bind(&mut sql, "e.ts <=", t.into());
        }
        if let Some(b) = f.before {
            bind(&mut sql, "e.id <", b.into());
        }
        sql.push_str(&format!(
            " ORDER BY e.id DESC LIMIT {}",
            f.limit.clamp(1, 500)
        ));
        let mut stmt = self.db.prepare(&sql).map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(values), row_to_event)
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.fail(e))
    }

    pub fn count(&self) -> Result<u64, String> {
        self.db
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.fail(e))
    }

    /// Records a correction of event `id`: `same` says the face is `name` ("this is Ada") or is
    /// not ("this is not Ada"). A later correction replaces an earlier one.
    pub fn correct(&mut self, id: i64, name: &str, same: bool) -> Result<(), String> {
        self.db
            .execute(
                "INSERT INTO corrections (event_id, name, same, ts) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(event_id) DO UPDATE SET name = excluded.name, same = excluded.same, \
                 ts = excluded.ts",
                params![id, name, same, (now_unix() * 1e3).round() / 1e3],
            )
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    /// Records an access decision.
    pub fn insert_decision(&mut self, d: &crate::access::Decision) -> Result<i64, String> {
        let actions = serde_json::to_string(&d.actions).unwrap_or_else(|_| "[]".into());
        let factors = serde_json::to_string(&d.factors).unwrap_or_else(|_| "[]".into());
        self.db
            .execute(
                "INSERT INTO access (ts, name, unknown_id, camera, track, score, granted, rule, \
                 reason, actions, person_id, factors, waiting) VALUES (?1, ?2, ?3, ?4, ?5, ?6, \
                 ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    d.ts,
                    d.name,
                    d.unknown_id,
                    d.camera,
                    d.track as i64,
                    f64::from(d.score),
                    d.granted,
                    d.rule,
                    d.reason,
                    actions,
                    d.person_id,
                    factors,
                    d.waiting
                ],
            )
            .map_err(|e| self.fail(e))?;
        Ok(self.db.last_insert_rowid())
    }

    /// The newest access decisions (before id `before`, when given), newest first, as JSON.
    pub fn decisions(
        &self,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<serde_json::Value>, String> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT id, ts, name, unknown_id, camera, track, score, granted, rule, reason, \
                 actions, person_id, factors, waiting FROM access WHERE id < ?1 ORDER BY id \
                 DESC LIMIT ?2",
            )
            .map_err(|e| self.fail(e))?;
        let rows = stmt
            .query_map(params![before.unwrap_or(i64::MAX), limit], |r| {
                let actions: String = r.get(10)?;
                let factors: String = r.get(12)?;
                Ok(serde_json::json!({
                    "person_id": r.get::<_, Option<String>>(11)?,
                    "factors": serde_json::from_str::<serde_json::Value>(&factors)
                        .unwrap_or_default(),
                    "waiting": r.get::<_, bool>(13)?,
                    "id": r.get::<_, i64>(0)?, "ts": r.get::<_, f64>(1)?,
                    "name": r.get::<_, Option<String>>(2)?,
                    "unknown_id": r.get::<_, Option<String>>(3)?,
                    "camera": r.get::<_, Option<String>>(4)?,
                    "track": r.get::<_, i64>(5)?, "score": r.get::<_, f64>(6)?,
                    "granted": r.get::<_, bool>(7)?, "rule": r.get::<_, Option<String>>(8)?,
                    "reason": r.get::<_, String>(9)?,
                    "actions": serde_json::from_str::<serde_json::Value>(&actions)
                        .unwrap_or_default(),
                }))
            })
            .map_err(|e| self.fail(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))
    }

    /// Deletes events older than the retention's days and beyond its count (oldest first), with
    /// their snapshots, and access decisions by the same limits. Returns how many events went.
    pub fn enforce(&mut self, keep: Retention) -> Result<usize, String> {
        let cutoff = now_unix() - keep.days * 86_400.0;
        self.db
            .execute(
                "DELETE FROM access WHERE ts < ?1 OR id NOT IN \
                 (SELECT id FROM access ORDER BY id DESC LIMIT ?2)",
                params![cutoff, keep.events as i64],
            )
            .map_err(|e| self.fail(e))?;
        let doomed: Vec<(i64, bool)> = {
            let mut stmt = self
                .db
                .prepare(
                    "SELECT id, snapshot FROM events WHERE ts < ?1 OR id NOT IN \
                     (SELECT id FROM events ORDER BY id DESC LIMIT ?2)",
                )
                .map_err(|e| self.fail(e))?;
            let rows = stmt
                .query_map(params![cutoff, keep.events as i64], |r| {
                    Ok((r.get(0)?, r.get::<_, i64>(1)? != 0))
                })
                .map_err(|e| self.fail(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.fail(e))?
        };
        if doomed.is_empty() {
            return Ok(0);
        }
        let tx = self.db.transaction().map_err(|e| {
            format!(
                "event history {}: {}",
                crate::support::terminal::path(&self.path),
                describe(&e)
            )
        })?;
        for (id, _) in &doomed {
            tx.execute("DELETE FROM events WHERE id = ?1", [id])
                .map_err(|e| describe(&e))?;
        }
        tx.commit().map_err(|e| describe(&e))?;
        for (id, had_snapshot) in &doomed {
            if *had_snapshot {
                let _ = std::fs::remove_file(self.snapshot_path(*id));
            }
        }
        Ok(doomed.len())
    }
}

const SELECT: &str = "SELECT e.id, e.ts, e.event, e.name, e.score, e.x, e.y, e.w, e.h, e.track, \
     e.frame, e.snapshot, c.name, c.same, c.ts, e.person_id, e.unknown_id, e.live, e.liveness, \
     e.camera FROM events e LEFT JOIN corrections c ON c.event_id = e.id";

fn row_to_event(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    let id: i64 = r.get(0)?;
    let correction = match r.get::<_, Option<String>>(12)? {
        Some(name) => Some(Correction {
            name,
            same: r.get(13)?,
            ts: r.get(14)?,
        }),
        None => None,
    };
    Ok(StoredEvent {
        id,
        ts: r.get(1)?,
        event: r.get(2)?,
        name: r.get(3)?,
        score: r.get::<_, f64>(4)? as f32,
        rect: BoxJson {
            x: r.get(5)?,
            y: r.get(6)?,
            w: r.get(7)?,
            h: r.get(8)?,
        },
        track: r.get::<_, i64>(9)? as u64,
        frame: r.get::<_, i64>(10)? as u64,
        snapshot: (r.get::<_, i64>(11)? != 0).then(|| format!("/api/v1/events/{id}/snapshot.jpg")),
        correction,
        person_id: r.get(15)?,
        unknown_id: r.get(16)?,
        liveness: r.get::<_, Option<f64>>(18)?.map(|score| score as f32),
        live: match r.get::<_, Option<f64>>(18)? {
            Some(_) => Some(r.get::<_, Option<bool>>(17)?),
            None => None,
        },
        camera: r.get(19)?,
    })
}

fn pragma(db: &Connection, name: &str) -> rusqlite::Result<i32> {
    db.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
}

/// SQLite's errors in words a user can act on.
fn describe(e: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => "the file is not a SQLite database".into(),
        Some(ErrorCode::DatabaseCorrupt) => format!("the database is corrupt ({e})"),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            "the database is locked by another program".into()
        }
        Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
            format!("the database cannot be written ({e})")
        }
        Some(ErrorCode::DiskFull) => "the disk is full".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventKind;
    use crate::imaging::rect::Rect;

    fn event(ts: f64, kind: EventKind, name: Option<&str>) -> Event {
        Event {
            ts,
            kind,
            name: name.map(str::to_string),
            person_id: None,
            score: 0.61234,
            rect: Rect {
                x: 1,
                y: 2,
                w: 30,
                h: 30,
            },
            track: 7,
            frame: 9,
            face: None,
            unknown_id: None,
            liveness: None,
        }
    }

    #[test]
    fn events_keep_their_person_stranger_and_liveness() {
        let dir = scratch("fields");
        let mut h = History::open(&dir).unwrap();
        let plain = h
            .insert(&event(1.0, EventKind::Left, Some("Ada")), None, None)
            .unwrap();
        let v = serde_json::to_value(&plain).unwrap();
        assert!(
            v.get("live").is_none() && v.get("unknown_id").is_none(),
            "{v}"
        );
        let stranger = Event {
            unknown_id: Some("u000004".into()),
            liveness: Some(crate::live::liveness::Verdict {
                live: None,
                score: 0.0412,
                frames: 6,
                cuts: 0,
            }),
            ..event(2.0, EventKind::Unknown, None)
        };
        let stored = h.insert(&stranger, None, None).unwrap();
        let v = serde_json::to_value(&stored).unwrap();
        assert_eq!(v["unknown_id"], "u000004");
        assert!(
            v["live"].is_null() && v.as_object().unwrap().contains_key("live"),
            "{v}"
        );
        assert!(
            (v["liveness"].as_f64().unwrap() - 0.041).abs() < 1e-6,
            "{v}"
        );
        let ada = Event {
            person_id: Some("p000001".into()),
            liveness: Some(crate::live::liveness::Verdict {
                live: Some(true),
                score: 0.15,
                frames: 9,
                cuts: 0,
            }),
            ..event(3.0, EventKind::Identified, Some("Ada"))
        };
        let v = serde_json::to_value(h.insert(&ada, None, Some("Door")).unwrap()).unwrap();
        assert_eq!(
            (v["person_id"].as_str(), v["live"].as_bool()),
            (Some("p000001"), Some(true))
        );
        assert_eq!(v["camera"], "Door");
        let listed = h
            .list(&Filter {
                limit: 10,
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(
            listed[0].camera.as_deref(),
            Some("Door"),
            "kept in the history"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_older_history_gains_the_access_columns_and_keeps_its_events() {
        let dir = scratch("upgrade");
        {
            let db = Connection::open(dir.join(DATABASE)).unwrap();
            db.execute_batch(&format!(
                "{SCHEMA} PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = 1;"
            ))
            .unwrap();
            db.execute(
                "INSERT INTO events (ts, event, name, score, x, y, w, h, track, frame) \
                 VALUES (1.0, 'left', 'Ada', 0.5, 0, 0, 9, 9, 1, 1)",
                [],
            )
            .unwrap();
        }
        let mut h = History::open(&dir).unwrap();
        assert_eq!(h.count().unwrap(), 1);
        let d = crate::access::Decision {
            event: "access",
            ts: now_unix(),
            name: Some("Ada".into()),
            person_id: None,
            unknown_id: None,
            camera: None,
            track: 1,
            score: 0.5,
            granted: true,
            rule: Some("r".into()),
            reason: "granted".into(),
            actions: vec!["door".into()],
            factors: vec![crate::access::factors::Check {
                factor: "pin".into(),
                held: true,
                detail: "their PIN entered 2.0 s after the face".into(),
            }],
            waiting: false,
        };
        h.insert_decision(&d).unwrap();
        let camera = h.insert(&event(2.0, EventKind::Left, None), None, Some("Door"));
        assert_eq!(
            camera.unwrap().camera.as_deref(),
            Some("Door"),
            "the v4 column"
        );
        let listed = h.decisions(10, None).unwrap();
        assert_eq!(listed[0]["actions"], serde_json::json!(["door"]));
        assert_eq!(listed[0]["factors"][0]["factor"], "pin");
        drop(h);
        assert!(
            History::open(&dir).is_ok(),
            "the upgraded version opens again"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("facegate-history-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn events_persist_filter_page_and_expire() {
        let dir = scratch("persist");
        let now = now_unix();
        {
            let mut h = History::open(&dir).unwrap();
            h.insert(
                &event(now - 10.0 * 86_400.0, EventKind::Unknown, None),
                Some(b"old"),
                Some("Door"),
            )
            .unwrap();
            for i in 0..5 {
                let kind = if i % 2 == 0 {
                    EventKind::Identified
                } else {
                    EventKind::Unknown
                };
                let name = (i % 2 == 0).then_some("Ada");
                h.insert(
                    &event(now - 5.0 + i as f64, kind, name),
                    Some(b"jpeg"),
                    None,
                )
                .unwrap();
            }
        }
        let mut h = History::open(&dir).unwrap();
        assert_eq!(h.count().unwrap(), 6);
        let ada = h
            .list(&Filter {
                person: Some("Ada".into()),
                limit: 50,
                ..Filter::default()
            })
            .unwrap();
        assert_eq!(ada.len(), 3);
        assert!(ada.windows(2).all(|w| w[0].id > w[1].id), "newest first");
        let page = h
            .list(&Filter {
                limit: 2,
                ..Filter::default()
            })
            .unwrap();
        let next = h
            .list(&Filter {
                limit: 2,
                before: Some(page[1].id),
                ..Filter::default()
            })
            .unwrap();
        assert!(next[0].id < page[1].id);
        let unknown = h
            .list(&Filter {
                unknown: true,
                limit: 50,
                ..Filter::default()
            })
            .unwrap();
        assert!(unknown
            .iter()
            .all(|e| e.event == "unknown" && e.name.is_none()));

        h.correct(ada[0].id, "Ada", false).unwrap();
        let got = h.get(ada[0].id).unwrap().unwrap();
        assert_eq!(
            got.correction.as_ref().map(|c| (c.name.as_str(), c.same)),
            Some(("Ada", false))
        );

        // Age: the ten-day-old event goes; count: then only the newest three stay.
        let oldest = h
            .list(&Filter {
                limit: 500,
                ..Filter::default()
            })
            .unwrap()
            .pop()
            .unwrap();
        assert!(h.snapshot_path(oldest.id).exists());
        assert_eq!(
            h.enforce(Retention {
                days: 7.0,
                events: 100
            })
            .unwrap(),
            1
        );
        assert!(!h.snapshot_path(oldest.id).exists());
        assert_eq!(
            h.enforce(Retention {
                days: 7.0,
                events: 3
            })
            .unwrap(),
            2
        );
        assert_eq!(h.count().unwrap(), 3);
        // Ids are never reused.
        let newest = h
            .list(&Filter {
                limit: 1,
                ..Filter::default()
            })
            .unwrap()[0]
            .id;
        h.enforce(Retention {
            days: 7.0,
            events: 0,
        })
        .unwrap();
        let again = h
            .insert(&event(now, EventKind::Left, Some("Ada")), None, None)
            .unwrap();
        assert!(again.id > newest);
        assert_eq!(again.snapshot, None);
    }

    #[test]
    fn foreign_or_corrupt_databases_are_refused_and_kept() {
        let dir = scratch("foreign");
        let path = dir.join(DATABASE);
        std::fs::write(
            &path,
            b"this is not a database, it is a diary entry of some length....",
        )
        .unwrap();
        let e = History::open(&dir).err().unwrap();
        assert!(
            e.contains("not a SQLite database") && e.contains("left as it is"),
            "{e}"
        );
        assert!(std::fs::read(&path).unwrap().starts_with(b"this is not"));

        std::fs::remove_file(&path).unwrap();
        let other = Connection::open(&path).unwrap();
        other
            .execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
        drop(other);
        let e = History::open(&dir).err().unwrap();
        assert!(e.contains("not facegate's event history"), "{e}");
    }
}
