//! The names this module gives files and people: crop files (`crops/<id>-<k>.png`, negatives
//! `crops/<id>-n<k>.png`) and person ids (local numbers, fleet-wide `<board>-<n>`), and their checks.

use super::*;

/// Crops are numbered in the order taken (`crops/<id>-<kind><k>.png`); a dropped shot leaves a
/// gap, never a reuse, so a crop file is never overwritten while an index names it.
pub(super) fn check_crop_names(id: &str, crops: &[String], kind: &str) -> Result<(), String> {
    let mut previous = None;
    for c in crops {
        let number = numbered_crop(id, c, kind).filter(|&k| previous.is_none_or(|p| k > p));
        let Some(k) = number else {
            return Err(format!(
                "person {id}: crop '{}' is not the gallery's own file name ({}, numbered upwards)",
                crate::support::terminal::escape(c),
                numbered_crop_name(id, kind, previous.map_or(0, |p| p + 1))
            ));
        };
        previous = Some(k);
    }
    Ok(())
}

/// What sets a negative's crop name apart from a shot's: `crops/<id>-n<k>.png`.
pub(super) const NEGATIVE: &str = "n";

pub(super) fn numbered_crop_name(id: &str, kind: &str, k: usize) -> String {
    format!("{CROPS}/{id}-{kind}{k}.png")
}

pub(super) fn crop_name(id: &str, shot: usize) -> String {
    numbered_crop_name(id, "", shot)
}

/// Largest crop number: far above any real count of shots, small enough to print as it was read.
pub(super) const MAX_CROP_NUMBER: usize = 999_999;

/// The number `k` of a crop named exactly `crops/<id>-<kind><k>.png` (no leading zeros).
pub(super) fn numbered_crop(id: &str, crop: &str, kind: &str) -> Option<usize> {
    let digits = crop
        .strip_prefix(CROPS)?
        .strip_prefix('/')?
        .strip_prefix(id)?
        .strip_prefix('-')?
        .strip_prefix(kind)?
        .strip_suffix(".png")?;
    let k: usize = digits.parse().ok().filter(|&k| k <= MAX_CROP_NUMBER)?;
    (numbered_crop_name(id, kind, k) == crop).then_some(k)
}

/// The name of a person's next crop of `kind` after `crops`: numbers only go up.
pub(super) fn next_crop_name(id: &str, crops: &[String], kind: &str) -> Result<String, String> {
    let last = crops.last().and_then(|c| numbered_crop(id, c, kind));
    let k = last.map_or(0, |k| k + 1);
    if k > MAX_CROP_NUMBER {
        return Err(format!("{id} has run out of crop numbers"));
    }
    Ok(numbered_crop_name(id, kind, k))
}

/// The number and board of a person id: `p000042` (a gallery that never joined a fleet) or
/// `p000042-<board>` (`p`, six to twelve digits, and the 16 hex digits of the board that
/// enrolled them).
pub(super) fn parse_id(id: &str) -> Option<(u64, Option<&str>)> {
    let rest = id.strip_prefix('p')?;
    let (digits, board) = match rest.split_once('-') {
        Some((d, b)) if is_board_id(b) => (d, Some(b)),
        Some(_) => return None,
        None => (rest, None),
    };
    if digits.len() < 6 || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, board))
}

pub(super) fn id_number(id: &str) -> Option<u64> {
    parse_id(id).map(|(n, _)| n)
}

/// Whether `id` is a person id unique across boards (`p000042-<board>`).
pub fn is_fleet_id(id: &str) -> bool {
    parse_id(id).is_some_and(|(_, board)| board.is_some())
}

/// A board id: 16 lowercase hex digits.
pub fn is_board_id(text: &str) -> bool {
    text.len() == 16 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
