//! What a gallery folder holds besides what its index names: temporary files and leftovers of
//! interrupted writes (swept), foreign files (never touched), and signs of a lost index.

use super::*;

/// The generation of `embeddings-<digits>.bin`.
pub(super) fn generation_of(file: &str) -> Option<u64> {
    let digits = file.strip_prefix("embeddings-")?.strip_suffix(".bin")?;
    if digits.is_empty() || digits.len() > 18 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(super) enum Entry {
    /// Named as the gallery names its files (a crop or an embeddings file).
    Ours,
    /// A temporary file of [`write_atomic`].
    Temporary,
    /// Anything else; never touched.
    Foreign,
}

/// The files of a gallery folder and of its crops folder (not the index or the lock).
pub(super) fn folder_entries(dir: &Path) -> Vec<(PathBuf, Entry)> {
    let mut out = Vec::new();
    for (folder, is_crops) in [(dir.to_path_buf(), false), (dir.join(CROPS), true)] {
        // A crops link may point anywhere: never list (and so never sweep) through it.
        if is_crops && crops_is_link(dir) {
            continue;
        }
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            // `unknowns/` holds the recurring strangers `watch` keeps beside the gallery.
            if !is_crops
                && (name == INDEX
                    || name == LOCK
                    || name == CROPS
                    || name == "unknowns"
                    || is_board_file(&name))
            {
                continue;
            }
            let kind = if !is_file {
                Entry::Foreign
            } else if is_temporary_of_ours(&name, is_crops) {
                Entry::Temporary
            } else if is_crops && is_crop_file(&name) || !is_crops && generation_of(&name).is_some()
            {
                Entry::Ours
            } else {
                Entry::Foreign
            };
            out.push((e.path(), kind));
        }
    }
    out
}

/// What a board keeps beside its gallery, not part of it (never synced, never swept): the
/// access rules' name bindings and PINs, and the ids each camera announced to Home Assistant.
fn is_board_file(name: &str) -> bool {
    name == crate::access::bindings::FILE
        || name == crate::access::pins::FILE
        || name
            .strip_prefix("home-assistant-")
            .and_then(|rest| rest.strip_suffix(".json"))
            .is_some_and(|node| {
                !node.is_empty()
                    && node
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
}

/// `.<file>.tmp-<pid>`, where `<file>` is one the gallery writes in that folder.
pub(super) fn is_temporary_of_ours(name: &str, in_crops: bool) -> bool {
    let Some((file, pid)) = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".tmp-"))
    else {
        return false;
    };
    let ours = if in_crops {
        is_crop_file(file)
    } else {
        file == INDEX || generation_of(file).is_some()
    };
    ours && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
}

pub(super) fn is_crop_file(name: &str) -> bool {
    name.strip_suffix(".png")
        .and_then(|stem| stem.rsplit_once('-'))
        .is_some_and(|(id, shot)| {
            // Shots are `<id>-<k>`, negatives `<id>-n<k>`.
            let shot = shot.strip_prefix('n').unwrap_or(shot);
            id_number(id).is_some() && !shot.is_empty() && shot.bytes().all(|b| b.is_ascii_digit())
        })
}

/// What in `dir` shows it once held a gallery: an embeddings file, or a crop.
pub(super) fn gallery_data(dir: &Path) -> Option<String> {
    let found: Vec<String> = folder_entries(dir)
        .into_iter()
        .filter(|(_, kind)| matches!(kind, Entry::Ours))
        // The empty first commit, killed before its index was written, holds nobody.
        .filter(|(path, _)| !holds_nobody(path))
        .filter_map(|(p, _)| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let first = found.first()?;
    Some(if found.len() == 1 {
        crate::support::terminal::escape(first).into_owned()
    } else {
        format!(
            "{} and {} more files",
            crate::support::terminal::escape(first),
            found.len() - 1
        )
    })
}

/// Whether `path` is an embeddings file whose header says it holds no people.
pub(super) fn holds_nobody(path: &Path) -> bool {
    let mut header = [0u8; 16];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header))
        .is_ok_and(|()| header[..8] == MAGIC[..] && header[12..16] == [0, 0, 0, 0])
}

/// A crop is a regular file that starts like a PNG (decoding every crop is `reembed`'s job).
pub(super) fn looks_like_png(path: &Path) -> Result<(), String> {
    let meta = fs::symlink_metadata(path).map_err(|e| format!("cannot be read ({e})"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    let mut head = [0u8; 8];
    File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .map_err(|_| "is empty or truncated".to_string())?;
    if !crate::imaging::photo::is_png(&head) {
        return Err("is not a PNG file".into());
    }
    Ok(())
}

pub(super) fn crops_is_link(dir: &Path) -> bool {
    fs::symlink_metadata(dir.join(CROPS)).is_ok_and(|m| m.file_type().is_symlink())
}
