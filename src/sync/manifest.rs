//! The manifest: what one board's gallery holds (every person id with its version, and every
//! removal), published retained and signed like the person messages, in chunks
//! (`facegate/manifest/<board>/<chunk>`).
//!
//! A board catching up reads the manifests (a handful of small messages), then asks the broker
//! for exactly the people it lacks, a bounded window of topics at a time. So it never depends
//! on how many retained messages a broker will queue for one client (mosquitto drops what is
//! beyond 1 000 by default, and a wildcard subscription to 10 000 people hit that).
//!
//! Ids go into chunks by a hash of the id, so one person's change rewrites one chunk, not all.

use serde::{Deserialize, Serialize};

use crate::store::gallery::{is_board_id, is_fleet_id, MAX_VERSION};

/// Where the manifests live: `facegate/manifest/<board>/<chunk>`.
pub const FILTER: &str = "facegate/manifest/+/+";
const PREFIX: &str = "facegate/manifest/";
/// About this many entries a chunk (the count of chunks is a power of two).
pub const CHUNK_ENTRIES: usize = 1000;
/// The most chunks one board publishes: 4096 x 1000 people is far beyond any gallery.
pub const MAX_CHUNKS: usize = 4096;
/// The most entries one chunk may carry (hashing is uneven; this is a bound, not a goal).
const MAX_ENTRIES: usize = 20 * CHUNK_ENTRIES;

/// One person (or removal) as a board holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub version: u64,
    pub origin: String,
    pub deleted: bool,
}

/// One chunk of one board's manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub board: String,
    pub chunk: usize,
    pub chunks: usize,
    pub entries: Vec<Entry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    board: String,
    chunk: usize,
    chunks: usize,
    /// `[id, version, origin, deleted]` each: a tenth of the bytes of named fields.
    entries: Vec<(String, u64, String, bool)>,
}

/// The topic of chunk `chunk` of `board`'s manifest.
pub fn topic(board: &str, chunk: usize) -> String {
    format!("{PREFIX}{board}/{chunk}")
}

/// `(board, chunk)` of a manifest topic.
pub fn parse_topic(topic: &str) -> Option<(&str, usize)> {
    let (board, chunk) = topic.strip_prefix(PREFIX)?.split_once('/')?;
    let chunk = chunk.parse().ok().filter(|_| !chunk.starts_with('+'))?;
    Some((board, chunk))
}

/// How many chunks `entries` entries take: a power of two, so that growing a gallery re-sorts
/// ids into new chunks only when it doubles.
pub fn chunks_for(entries: usize) -> usize {
    entries
        .div_ceil(CHUNK_ENTRIES)
        .max(1)
        .next_power_of_two()
        .min(MAX_CHUNKS)
}

/// The chunk an id belongs in, of `chunks`.
pub fn chunk_of(id: &str, chunks: usize) -> usize {
    // FNV-1a: stable across builds and boards, which every board must agree on.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (h % chunks.max(1) as u64) as usize
}

/// A board's whole manifest, split into its chunks (entries sorted by id in each).
pub fn split(board: &str, mut entries: Vec<Entry>) -> Vec<Chunk> {
    let chunks = chunks_for(entries.len());
    entries.sort();
    let mut out: Vec<Chunk> = (0..chunks)
        .map(|chunk| Chunk {
            board: board.to_string(),
            chunk,
            chunks,
            entries: Vec::new(),
        })
        .collect();
    for e in entries {
        let k = chunk_of(&e.id, chunks);
        out[k].entries.push(e);
    }
    out
}

/// The signed message of one chunk.
pub fn seal(chunk: &Chunk, key: &[u8]) -> Vec<u8> {
    let body = Body {
        board: chunk.board.clone(),
        chunk: chunk.chunk,
        chunks: chunk.chunks,
        entries: chunk
            .entries
            .iter()
            .map(|e| (e.id.clone(), e.version, e.origin.clone(), e.deleted))
            .collect(),
    };
    super::message::sign_body(&serde_json::to_string(&body).unwrap_or_default(), key)
}

/// Verifies and reads a chunk received on `topic`. Anything unsigned, forged, on another
/// board's topic, or out of bounds is an error that says which.
pub fn open(payload: &[u8], key: &[u8], topic: &str) -> Result<Chunk, String> {
    let (board, chunk) = parse_topic(topic).ok_or("not a manifest topic")?;
    let body = super::message::verified_body(payload, key)?;
    let body: Body =
        serde_json::from_str(&body).map_err(|e| format!("signed, but not a manifest: {e}"))?;
    if body.board != board || body.chunk != chunk {
        return Err(format!(
            "carries chunk {} of board '{}' on the topic of chunk {chunk} of '{}'",
            body.chunk,
            crate::support::terminal::escape(&body.board),
            crate::support::terminal::escape(board)
        ));
    }
    if !is_board_id(&body.board) {
        return Err("its board id is not 16 hex digits".into());
    }
    if body.chunks == 0 || body.chunks > MAX_CHUNKS || body.chunk >= body.chunks {
        return Err(format!(
            "chunk {} of {} is out of range (at most {MAX_CHUNKS} chunks)",
            body.chunk, body.chunks
        ));
    }
    if body.entries.len() > MAX_ENTRIES {
        return Err(format!(
            "{} entries, more than a chunk holds ({MAX_ENTRIES})",
            body.entries.len()
        ));
    }
    let mut entries = Vec::with_capacity(body.entries.len());
    for (id, version, origin, deleted) in body.entries {
        if !is_fleet_id(&id) {
            return Err("an entry's id is not a fleet id (p<number>-<board>)".into());
        }
        if version == 0 || version > MAX_VERSION || origin.is_empty() || origin.len() > 64 {
            return Err(format!("the entry of {id} has no valid version or origin"));
        }
        entries.push(Entry {
            id,
            version,
            origin,
            deleted,
        });
    }
    Ok(Chunk {
        board: body.board,
        chunk: body.chunk,
        chunks: body.chunks,
        entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a shared secret of 32 bytes.....";
    const BOARD: &str = "b1c2d3e4f5a6b7c8";

    fn entries(n: usize) -> Vec<Entry> {
        (1..=n)
            .map(|i| Entry {
                id: format!("p{i:06}-{BOARD}"),
                version: i as u64,
                origin: BOARD.into(),
                deleted: i % 7 == 0,
            })
            .collect()
    }

    #[test]
    fn a_manifest_splits_by_id_and_opens_with_the_key_only() {
        let chunks = split(BOARD, entries(2500));
        assert_eq!(
            chunks.len(),
            4,
            "2 500 entries take four chunks of about 1 000"
        );
        assert_eq!(chunks.iter().map(|c| c.entries.len()).sum::<usize>(), 2500);
        for c in &chunks {
            assert!(c.entries.iter().all(|e| chunk_of(&e.id, 4) == c.chunk));
            let t = topic(BOARD, c.chunk);
            assert_eq!(open(&seal(c, KEY), KEY, &t).unwrap(), *c);
            let e = open(&seal(c, KEY), b"another key of at least 16 bytes", &t).unwrap_err();
            assert!(e.contains("bad signature"), "{e}");
        }
        // On another chunk's or board's topic, it is refused.
        let c = &chunks[1];
        let e = open(&seal(c, KEY), KEY, &topic(BOARD, 2)).unwrap_err();
        assert!(e.contains("on the topic of chunk 2"), "{e}");
        let other = "0000000000000001";
        assert!(open(&seal(c, KEY), KEY, &topic(other, 1)).is_err());
        // An empty gallery still publishes one (empty) chunk: "this board holds nothing".
        assert_eq!(split(BOARD, Vec::new()).len(), 1);
        assert_eq!(chunks_for(1000), 1);
        assert_eq!(chunks_for(1001), 2);
        assert_eq!(chunks_for(10_000), 16);
    }

    #[test]
    fn bad_entries_and_bounds_are_refused_even_when_signed() {
        let t = topic(BOARD, 0);
        let sign = |body: &str| super::super::message::sign_body(body, KEY);
        let body = |entries: &str, chunk: usize, chunks: usize| {
            format!(
                r#"{{"board":"{BOARD}","chunk":{chunk},"chunks":{chunks},"entries":[{entries}]}}"#
            )
        };
        let ok = format!(r#"["p000001-{BOARD}",1,"{BOARD}",false]"#);
        assert!(open(&sign(&body(&ok, 0, 1)), KEY, &t).is_ok());
        for (bad, why) in [
            (body(r#"["../x",1,"a",false]"#, 0, 1), "not a fleet id"),
            (
                body(&format!(r#"["p000001-{BOARD}",0,"a",false]"#), 0, 1),
                "no valid version",
            ),
            (
                body(
                    &format!(r#"["p000001-{BOARD}",9007199254740993,"a",false]"#),
                    0,
                    1,
                ),
                "no valid version",
            ),
            (body(&ok, 0, 0), "out of range"),
            (body(&ok, 0, MAX_CHUNKS + 1), "out of range"),
        ] {
            let e = open(&sign(&bad), KEY, &t).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = open(&sign(&body(&ok, 1, 2)), KEY, &t).unwrap_err();
        assert!(e.contains("on the topic of"), "{e}");
        assert!(open(b"junk", KEY, &t).is_err());
        assert!(parse_topic("facegate/manifest/x").is_none());
        assert_eq!(parse_topic(&t), Some((BOARD, 0)));
    }
}
