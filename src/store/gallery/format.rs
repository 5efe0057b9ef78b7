//! The on-disk format: the index (`gallery.json`) read and checked as the input it is, and the
//! embeddings file encoded and decoded.

use super::*;

pub(super) fn encode_embeddings(people: &[Person], dim: usize) -> Vec<u8> {
    let with_negatives = people.iter().any(|p| !p.negatives.is_empty());
    let mut out = Vec::new();
    out.extend_from_slice(if with_negatives { MAGIC_2 } else { MAGIC });
    out.extend_from_slice(&(dim as u32).to_le_bytes());
    out.extend_from_slice(&(people.len() as u32).to_le_bytes());
    for p in people {
        out.extend_from_slice(&(p.shots.len() as u32).to_le_bytes());
        if with_negatives {
            out.extend_from_slice(&(p.negatives.len() as u32).to_le_bytes());
        }
        let vectors = p
            .shots
            .iter()
            .chain(std::iter::once(&p.centroid))
            .chain(&p.negatives);
        for v in vectors {
            for x in v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }
    }
    out
}

pub(super) fn decode_embeddings(bytes: &[u8], index: &Index) -> Result<Vec<Person>, String> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], String> {
        let end = at
            .checked_add(n)
            .ok_or("the embeddings file is truncated")?;
        let s = bytes
            .get(at..end)
            .ok_or("the embeddings file is truncated")?;
        at = end;
        Ok(s)
    };
    let with_negatives = match take(8)? {
        m if m == MAGIC => false,
        m if m == MAGIC_2 => true,
        _ => return Err("not a facegate embeddings file (bad magic)".into()),
    };
    let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let dim = u32_of(take(4)?);
    let count = u32_of(take(4)?);
    if dim != index.model.embedding_dim || count != index.people.len() {
        return Err("the embeddings file does not match the index".into());
    }
    let mut people = Vec::with_capacity(count);
    for entry in &index.people {
        let shots = u32_of(take(4)?);
        if shots != entry.shots {
            return Err(format!(
                "'{}' has {shots} shots in the embeddings file, {} in the index",
                crate::support::terminal::escape(&entry.name),
                entry.shots
            ));
        }
        let negatives = if with_negatives { u32_of(take(4)?) } else { 0 };
        if negatives != entry.negatives {
            return Err(format!(
                "'{}' has {negatives} negatives in the embeddings file, {} in the index",
                crate::support::terminal::escape(&entry.name),
                entry.negatives
            ));
        }
        let mut vectors = Vec::with_capacity(shots + 1 + negatives);
        for _ in 0..(shots + 1 + negatives) {
            let raw = take(4 * dim)?;
            let v: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            if v.iter().any(|x| !x.is_finite()) {
                return Err(format!(
                    "'{}' has an embedding that is not finite",
                    crate::support::terminal::escape(&entry.name)
                ));
            }
            vectors.push(v);
        }
        let negative_vectors = vectors.split_off(shots + 1);
        let centroid = vectors.pop().unwrap_or_default();
        people.push(Person {
            entry: entry.clone(),
            shots: vectors,
            centroid,
            negatives: negative_vectors,
        });
    }
    if at != bytes.len() {
        return Err("the embeddings file has trailing data".into());
    }
    Ok(people)
}

/// The index, checked, or `None` when there is none.
pub(super) fn read_index(dir: &Path) -> Result<Option<Index>, GalleryError> {
    let index_path = dir.join(INDEX);
    match fs::symlink_metadata(&index_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(&index_path, e.to_string())),
        Ok(_) => {}
    }
    let text = limits::read_text(&index_path, limits::MAX_INDEX_BYTES, "gallery index")
        .map_err(|e| err(&index_path, format!("{e}; it was left untouched")))?;
    let index: Index = serde_json::from_str(&text).map_err(|e| {
        err(
            &index_path,
            format!("corrupt or truncated index ({e}); it was left untouched"),
        )
    })?;
    validate_index(&index).map_err(|p| {
        err(
            &index_path,
            format!("invalid index: {p}; it was left untouched"),
        )
    })?;
    Ok(Some(index))
}

/// A change about to be committed passes every check a reader will make.
pub(super) fn validate_written(
    index: &Index,
    people: &[Person],
    index_bytes: usize,
    embeddings_bytes: usize,
) -> Result<(), String> {
    validate_index(index)?;
    if index_bytes as u64 > limits::MAX_INDEX_BYTES
        || embeddings_bytes as u64 > limits::MAX_EMBEDDINGS_BYTES
    {
        return Err("the gallery would outgrow its size limits".into());
    }
    let dim = index.model.embedding_dim;
    for p in people {
        if p.shots.len() != p.entry.shots
            || p.shots
                .iter()
                .chain([&p.centroid])
                .any(|v| v.len() != dim || v.iter().any(|x| !x.is_finite()))
        {
            return Err(format!(
                "the embeddings of '{}' are not {dim} finite numbers a shot",
                crate::support::terminal::escape(&p.entry.name)
            ));
        }
    }
    Ok(())
}

/// Whether the index on disk no longer names `embeddings_file` (a writer committed meanwhile).
pub(super) fn index_changed(dir: &Path, embeddings_file: &str) -> bool {
    matches!(read_index(dir), Ok(Some(i)) if i.embeddings_file != embeddings_file)
}

/// Everything an index must satisfy before any of it is used.
pub(super) fn validate_index(index: &Index) -> Result<(), String> {
    if index.format_version != FORMAT_VERSION {
        return Err(format!(
            "format version {} is not supported (this facegate reads version {FORMAT_VERSION})",
            index.format_version
        ));
    }
    if generation_of(&index.embeddings_file).is_none() {
        return Err("it names an invalid embeddings file".into());
    }
    if index.embeddings_sha256.len() != 64
        || !index
            .embeddings_sha256
            .bytes()
            .all(|b| b.is_ascii_hexdigit())
    {
        return Err("the embeddings sha256 is not 64 hex digits".into());
    }
    let m = &index.model;
    if !(1..=MAX_EMBEDDING_DIM).contains(&m.embedding_dim) {
        return Err(format!(
            "embedding dimension {} is out of range (1 to {MAX_EMBEDDING_DIM})",
            m.embedding_dim
        ));
    }
    if m.name.chars().count() > 200 || m.name.chars().any(char::is_control) {
        return Err("the model name is too long or holds control characters".into());
    }
    if m.fingerprint.len() > 128 || !m.fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the model fingerprint is not a hex digest".into());
    }
    if index.people.len() > MAX_PEOPLE {
        return Err(format!("more than {MAX_PEOPLE} people"));
    }
    if index.next_id == 0 || index.next_id > MAX_ID + 1 {
        return Err(format!("next_id {} is out of range", index.next_id));
    }
    if index.board.as_deref().is_some_and(|b| !is_board_id(b)) {
        return Err("the board id is not 16 hex digits".into());
    }
    if index.removed.len() > MAX_PEOPLE {
        return Err(format!("more than {MAX_PEOPLE} removed people"));
    }
    let mut ids = std::collections::HashSet::new();
    let mut names = std::collections::HashSet::new();
    for p in &index.people {
        let (number, board) = parse_id(&p.id).ok_or_else(|| {
            format!(
                "'{}' is not a person id",
                crate::support::terminal::escape(&p.id)
            )
        })?;
        // Ids this board gave out count up; those from other boards count on their own boards.
        if (board.is_none() || board == index.board.as_deref()) && number >= index.next_id {
            return Err(format!(
                "person {} is not below next_id {} (a stale index would reuse its files)",
                p.id, index.next_id
            ));
        }
        if !ids.insert(p.id.as_str()) {
            return Err(format!("person id {} appears twice", p.id));
        }
        validate_name(&p.name).map_err(|e| format!("person {}: {e}", p.id))?;
        if p.origin.chars().count() > 64 {
            return Err(format!("person {}: the origin is too long", p.id));
        }
        if p.version > MAX_VERSION {
            return Err(format!(
                "person {}: version {} is out of range",
                p.id, p.version
            ));
        }
        if !names.insert(p.name.as_str()) {
            return Err(format!(
                "the name '{}' appears twice",
                crate::support::terminal::escape(&p.name)
            ));
        }
        if !(1..=MAX_SHOTS).contains(&p.shots) {
            return Err(format!(
                "person {} has {} shots (1 to {MAX_SHOTS})",
                p.id, p.shots
            ));
        }
        if p.crops.len() > p.shots {
            return Err(format!("person {} has more crops than shots", p.id));
        }
        check_crop_names(&p.id, &p.crops, "")?;
        if p.negatives > MAX_SHOTS || p.negative_crops.len() != p.negatives {
            return Err(format!(
                "person {} has {} negatives and {} negative crops (one each, at most {MAX_SHOTS})",
                p.id,
                p.negatives,
                p.negative_crops.len()
            ));
        }
        check_crop_names(&p.id, &p.negative_crops, NEGATIVE)?;
    }
    for t in &index.removed {
        if !is_fleet_id(&t.id) || !ids.insert(t.id.as_str()) {
            return Err(format!(
                "removed person '{}' is not a fleet id, or appears twice",
                crate::support::terminal::escape(&t.id)
            ));
        }
        if t.origin.chars().count() > 64 || t.version > MAX_VERSION {
            return Err("a removal's origin is too long, or its version out of range".into());
        }
    }
    Ok(())
}
