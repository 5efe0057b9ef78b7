//! Measuring recognition on labelled photos: k-shot identification with unknown rejection, and the
//! threshold for a target false-accept rate.
//!
//! Embeddings are computed once per photo; the random draws only re-pick which photos are enrolled.

use crate::support::rng::Rng;
use std::path::{Path, PathBuf};

use crate::embed::cosine;

/// Labelled photos: one sub-folder per person, or `train/` and `val/` with one per person each.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub people: Vec<String>,
    /// (person index, photo) to enroll from.
    pub enroll_pool: Vec<(usize, PathBuf)>,
    /// (person index, photo) to probe with; empty when probes come from the enroll pool.
    pub probes: Vec<(usize, PathBuf)>,
}

fn images_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let p = e
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        let ext = p
            .extension()
            .map(|x| x.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if p.is_file() && matches!(ext.as_str(), "jpg" | "jpeg" | "png") {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

fn person_dirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let p = e
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        if p.is_dir() {
            out.push((
                p.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
                p,
            ));
        }
    }
    out.sort();
    Ok(out)
}

impl Dataset {
    pub fn open(dir: &Path) -> Result<Dataset, String> {
        let (train, val) = (dir.join("train"), dir.join("val"));
        let mut people: Vec<String> = Vec::new();
        let index =
            |name: &str, people: &mut Vec<String>| match people.iter().position(|p| p == name) {
                Some(i) => i,
                None => {
                    people.push(name.to_string());
                    people.len() - 1
                }
            };
        let mut enroll_pool = Vec::new();
        let mut probes = Vec::new();
        if train.is_dir() && val.is_dir() {
            for (name, d) in person_dirs(&train)? {
                let i = index(&name, &mut people);
                enroll_pool.extend(images_in(&d)?.into_iter().map(|p| (i, p)));
            }
            for (name, d) in person_dirs(&val)? {
                let i = index(&name, &mut people);
                probes.extend(images_in(&d)?.into_iter().map(|p| (i, p)));
            }
        } else {
            for (name, d) in person_dirs(dir)? {
                let i = index(&name, &mut people);
                enroll_pool.extend(images_in(&d)?.into_iter().map(|p| (i, p)));
            }
        }
        if people.len() < 2 || enroll_pool.is_empty() {
            return Err(format!(
                "{}: needs one sub-folder of photos per person, at least two people",
                dir.display()
            ));
        }
        Ok(Dataset {
            people,
            enroll_pool,
            probes,
        })
    }
}

/// Outcome of one draw.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DrawResult {
    pub probes: usize,
    /// Probes whose best match is their own identity (closed-set rank-1).
    pub rank1: usize,
    /// Probes matched to the right person above the threshold.
    pub accepted_correct: usize,
    /// Probes of enrolled people rejected as unknown.
    pub false_rejects: usize,
    /// Probes (or strangers) accepted as somebody else.
    pub false_accepts: usize,
    pub strangers: usize,
    pub strangers_accepted: usize,
    /// People enrolled in this draw, and those whose drawn shots `enroll` would refuse as not
    /// one person (they are left out of the gallery, as a user would be turned away) or take
    /// with a warning.
    pub enrolled: usize,
    /// Probes of people not enrolled in this draw (their shots were refused): misses in `rank1`.
    pub probes_unenrolled: usize,
    pub enrollments_refused: usize,
    pub enrollments_warned: usize,
}

/// Embedded photos: `None` where no face was found.
pub struct Embedded {
    pub person: usize,
    pub embedding: Option<Vec<f32>>,
}

/// Person `p`'s photos with a face in `pool`, and which of them (positions in that list) a draw
/// enrolls.
fn pick_shots(
    pool: &[Embedded],
    p: usize,
    shots: usize,
    rng: &mut Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mine: Vec<usize> = (0..pool.len())
        .filter(|&i| pool[i].person == p && pool[i].embedding.is_some())
        .collect();
    let chosen = rng.pick(mine.len(), shots);
    (mine, chosen)
}

/// Enrolls person `p` as `enroll` would: `shots` random photos of theirs that passed the shot
/// gates, then the consistency check across them. Returns the shots' embeddings, or `None` when
/// the person has no usable photo or the check refuses the shots; marks the enrolled photos.
fn enroll_person(
    pool: &[Embedded],
    p: usize,
    shots: usize,
    threshold: f32,
    rng: &mut Rng,
    enrolled: &mut [bool],
    r: &mut DrawResult,
) -> Option<Vec<Vec<f32>>> {
    let (mine, chosen) = pick_shots(pool, p, shots, rng);
    let vectors: Vec<Vec<f32>> = chosen
        .iter()
        .filter_map(|&c| pool[mine[c]].embedding.clone())
        .collect();
    if vectors.is_empty() {
        return None;
    }
    let refs: Vec<&Vec<f32>> = vectors.iter().collect();
    // A threshold outside the cosine range (the trainer's "rank-1 only") asks for no decisions,
    // and so for no consistency check either.
    let checked = if (-1.0..=1.0).contains(&threshold) {
        crate::recognize::enrollment::check_consistent(&refs, &[], threshold)
    } else {
        Ok(Vec::new())
    };
    match checked {
        Err(_) => {
            r.enrollments_refused += 1;
            return None;
        }
        Ok(warnings) if !warnings.is_empty() => r.enrollments_warned += 1,
        Ok(_) => {}
    }
    r.enrolled += 1;
    for &c in &chosen {
        enrolled[mine[c]] = true;
    }
    Some(vectors)
}

/// The probes of a draw: `probes`, or when there are none, the pool's photos not enrolled.
fn probe_set<'a>(
    pool: &'a [Embedded],
    probes: &'a [Embedded],
    enrolled: &[bool],
) -> Vec<&'a Embedded> {
    if probes.is_empty() {
        pool.iter()
            .zip(enrolled)
            .filter(|(_, &e)| !e)
            .map(|(p, _)| p)
            .collect()
    } else {
        probes.iter().collect()
    }
}

/// Enrolls `shots` random photos per person from `pool` and identifies `probes` (or, when empty,
/// the pool's remaining photos) plus `strangers`.
pub fn draw(
    pool: &[Embedded],
    probes: &[Embedded],
    strangers: &[Vec<f32>],
    people: usize,
    shots: usize,
    threshold: f32,
    rng: &mut Rng,
) -> DrawResult {
    let mut centroids: Vec<Option<Vec<f32>>> = vec![None; people];
    let mut enrolled = vec![false; pool.len()];
    let mut r = DrawResult::default();
    for (p, centroid) in centroids.iter_mut().enumerate() {
        if let Some(vectors) = enroll_person(pool, p, shots, threshold, rng, &mut enrolled, &mut r)
        {
            let refs: Vec<&Vec<f32>> = vectors.iter().collect();
            *centroid = Some(crate::recognize::enrollment::mean_direction(&refs));
        }
    }
    let best = |e: &[f32]| -> Option<(usize, f32)> {
        centroids
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, cosine(c, e))))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    };
    for p in probe_set(pool, probes, &enrolled) {
        r.probes += 1;
        if centroids.get(p.person).is_none_or(|c| c.is_none()) {
            r.probes_unenrolled += 1;
        }
        let Some(e) = &p.embedding else {
            r.false_rejects += 1;
            continue;
        };
        match best(e) {
            Some((who, score)) => {
                if who == p.person {
                    r.rank1 += 1;
                }
                if score >= threshold {
                    if who == p.person {
                        r.accepted_correct += 1;
                    } else {
                        r.false_accepts += 1;
                    }
                } else {
                    r.false_rejects += 1;
                }
            }
            None => r.false_rejects += 1,
        }
    }
    for s in strangers {
        r.strangers += 1;
        if best(s).is_some_and(|(_, score)| score >= threshold) {
            r.strangers_accepted += 1;
        }
    }
    r
}

/// One draw of the "this is not NAME" experiment: enrolled as in [`draw`] (the same random
/// picks), matched by the gallery's [`Matcher`](crate::recognize::matcher::Matcher); then every stranger
/// accepted as somebody is rejected as that person (a negative), and everything is matched again.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RejectionResult {
    pub before: DrawResult,
    pub after: DrawResult,
    /// Strangers accepted before, and so rejected.
    pub rejected: usize,
    /// Of those, accepted again as the same person after the rejection (should be none).
    pub accepted_again: usize,
}

pub fn draw_with_rejection(
    pool: &[Embedded],
    probes: &[Embedded],
    strangers: &[Vec<f32>],
    people: usize,
    shots: usize,
    threshold: f32,
    rng: &mut Rng,
) -> RejectionResult {
    use crate::recognize::matcher::Matcher;
    use crate::store::gallery::{Person, PersonEntry};
    let mut persons: Vec<Person> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    let mut enrolled = vec![false; pool.len()];
    let mut counts = DrawResult::default();
    for p in 0..people {
        let Some(vectors) =
            enroll_person(pool, p, shots, threshold, rng, &mut enrolled, &mut counts)
        else {
            continue;
        };
        let refs: Vec<&Vec<f32>> = vectors.iter().collect();
        persons.push(Person {
            entry: PersonEntry {
                id: format!("p{:06}", p + 1),
                name: p.to_string(),
                enrolled_unix: 0,
                shots: vectors.len(),
                crops: Vec::new(),
                negatives: 0,
                negative_crops: Vec::new(),
                version: 0,
                origin: String::new(),
            },
            centroid: crate::recognize::enrollment::mean_direction(&refs),
            shots: vectors,
            negatives: Vec::new(),
        });
        owner.push(p);
    }
    let probe_set = probe_set(pool, probes, &enrolled);
    let run = |persons: &[Person]| -> (DrawResult, Vec<Option<usize>>) {
        let m = Matcher::new(persons);
        let mut r = DrawResult {
            enrolled: counts.enrolled,
            enrollments_refused: counts.enrollments_refused,
            enrollments_warned: counts.enrollments_warned,
            ..DrawResult::default()
        };
        for p in &probe_set {
            r.probes += 1;
            let Some(e) = &p.embedding else {
                r.false_rejects += 1;
                continue;
            };
            // Rank-1 as matching ranks: the first candidate no negative refuses.
            if m.identify(e, f32::MIN).person.map(|i| owner[i]) == Some(p.person) {
                r.rank1 += 1;
            }
            match m.identify(e, threshold).person {
                Some(i) if owner[i] == p.person => r.accepted_correct += 1,
                Some(_) => r.false_accepts += 1,
                None => r.false_rejects += 1,
            }
        }
        let mut taken = Vec::with_capacity(strangers.len());
        for s in strangers {
            r.strangers += 1;
            let who = m.identify(s, threshold).person;
            if who.is_some() {
                r.strangers_accepted += 1;
            }
            taken.push(who);
        }
        (r, taken)
    };
    let (before, taken) = run(&persons);
    let mut rejected = 0;
    for (s, who) in strangers.iter().zip(&taken) {
        if let Some(i) = *who {
            persons[i].negatives.push(s.clone());
            persons[i].entry.negatives += 1;
            rejected += 1;
        }
    }
    let (after, taken_after) = run(&persons);
    let accepted_again = taken
        .iter()
        .zip(&taken_after)
        .filter(|(b, a)| b.is_some() && b == a)
        .count();
    RejectionResult {
        before,
        after,
        rejected,
        accepted_again,
    }
}

/// Threshold calibration from all same-person and different-person pairs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Calibration {
    pub threshold: f32,
    pub target_far: f64,
    pub far: f64,
    pub frr: f64,
    pub genuine_pairs: usize,
    pub impostor_pairs: usize,
}

/// The lowest threshold whose false-accept rate over impostor pairs is at most `target_far`.
pub fn calibrate(samples: &[(usize, Vec<f32>)], target_far: f64) -> Option<Calibration> {
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..samples.len() {
        for j in i + 1..samples.len() {
            let s = cosine(&samples[i].1, &samples[j].1);
            if samples[i].0 == samples[j].0 {
                genuine.push(s);
            } else {
                impostor.push(s);
            }
        }
    }
    if genuine.is_empty() || impostor.is_empty() {
        return None;
    }
    impostor.sort_by(|a, b| b.total_cmp(a));
    // Accepting `allowed` impostor pairs keeps the rate at or below the target.
    let allowed = (target_far * impostor.len() as f64).floor() as usize;
    let threshold = if allowed >= impostor.len() {
        f32::MIN
    } else {
        // Just above the first impostor score that must be rejected.
        impostor[allowed].next_up()
    };
    let far = impostor.iter().filter(|&&s| s >= threshold).count() as f64 / impostor.len() as f64;
    let frr = genuine.iter().filter(|&&s| s < threshold).count() as f64 / genuine.len() as f64;
    Some(Calibration {
        threshold,
        target_far,
        far,
        frr,
        genuine_pairs: genuine.len(),
        impostor_pairs: impostor.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::normalized;

    #[test]
    fn picks_are_distinct_and_reproducible() {
        let a = Rng::new(7).pick(10, 4);
        assert_eq!(a, Rng::new(7).pick(10, 4));
        let mut s = a.clone();
        s.sort();
        s.dedup();
        assert_eq!(s.len(), 4);
        assert_eq!(Rng::new(1).pick(3, 9).len(), 3);
    }

    #[test]
    fn calibration_meets_the_target_rate() {
        let e = |x: f32| normalized(&[x, 1.0 - x]);
        let samples = vec![
            (0, e(0.0)),
            (0, e(0.1)),
            (1, e(0.9)),
            (1, e(1.0)),
            (2, e(0.5)),
        ];
        let c = calibrate(&samples, 0.0).unwrap();
        assert_eq!(c.far, 0.0);
        assert_eq!(c.frr, 0.0, "{c:?}");
        assert_eq!((c.genuine_pairs, c.impostor_pairs), (2, 8));
    }
}
