//! Following faces across frames, so that a person is reported once per visit and not once per
//! frame.
//!
//! Each detection joins the track whose last box it overlaps most. A track collects votes (who its
//! face matched, or nobody) over a sliding window; `confirm` votes for the same person within the
//! last `window` make an "identified" decision, `confirm` votes for nobody an "unknown" one. A
//! track not seen for `leave_after` frames ends with "left" if it was ever decided. Tracks that
//! vanish undecided (a passing false detection) are dropped silently.
//!
//! A name is never inherited: an identified track is re-embedded every `recheck_every` frames,
//! at once when its box jumps or changes size abruptly, and every frame while in doubt. A look
//! that neither matches the track's person nor resembles the track's own last confirmed face is
//! contrary; [`SWAP_LOOKS`] contrary looks in a row end the track (`left` for the person) and
//! start a new one for the new face, decided on its own votes. Before, a stranger who stepped
//! into an identified person's place kept the name for 2.6-3.1 s (the tracker kept the decision
//! until `confirm` rechecks, ten frames apart, outvoted it) and the person never left.

use std::collections::VecDeque;

use crate::events::EventKind;
use crate::imaging::rect::Rect;

#[derive(Debug, Clone, Copy)]
pub struct TrackerConfig {
    /// Votes for one decision needed within the window.
    pub confirm: usize,
    /// Votes remembered per track.
    pub window: usize,
    /// Frames without a sighting after which a track has left.
    pub leave_after: u64,
    /// A decided track is re-embedded every this many frames (an undecided one every frame): the
    /// embedder is the slowest stage after detection. Two frames bound how long a face that
    /// replaced an identified one in place (same box) can go unnoticed.
    pub recheck_every: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            confirm: 3,
            window: 5,
            leave_after: 15,
            recheck_every: 2,
        }
    }
}

/// The longest vote window: each track keeps this many votes, and more than a few seconds of
/// frames says nothing more about who someone is.
pub const MAX_WINDOW: usize = 1000;

impl TrackerConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.window > MAX_WINDOW {
            return Err(format!(
                "the vote window ({}) can be at most {MAX_WINDOW} frames",
                self.window
            ));
        }
        if self.confirm == 0 || self.confirm > self.window {
            return Err(format!(
                "confirmations ({}) must be between 1 and the window ({})",
                self.confirm, self.window
            ));
        }
        if self.leave_after == 0 || self.recheck_every == 0 {
            return Err("leave-after and recheck frame counts must be at least 1".into());
        }
        Ok(())
    }
}

/// Who a face matched in one frame: a gallery index with its score, or nobody (with the best
/// score, below the threshold).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vote {
    pub person: Option<usize>,
    pub score: f32,
}

/// One embedded face of a frame: the detection it came from, its track, how it matched the
/// gallery, and its embedding (compared with the track's last confirmed face).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Look<'a> {
    pub detection: usize,
    pub track: u64,
    pub vote: Vote,
    pub embedding: &'a [f32],
}

/// Contrary looks in a row that end an identified track: one is a blink, a turn, motion blur.
pub const SWAP_LOOKS: usize = 2;

/// A box this much larger or smaller than the track's last (either side), or whose centre moved
/// this many widths, is a jump: someone else may have stepped in, so it is embedded at once.
const JUMP_SCALE: f32 = 1.3;
const JUMP_SHIFT: f32 = 0.4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Identified(usize),
    Unknown,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrackEvent {
    pub kind: EventKind,
    pub track: u64,
    pub person: Option<usize>,
    /// Identified: the mean score of the votes that decided it; unknown: the mean best score of
    /// the votes for nobody; left: the decision's score.
    pub score: f32,
    pub rect: Rect,
    /// For identified and unknown events: the detection (in this frame's list) that triggered it.
    pub detection: Option<usize>,
}

struct Track {
    id: u64,
    rect: Rect,
    last_seen: u64,
    last_embedded: Option<u64>,
    votes: VecDeque<Vote>,
    decision: Option<(Decision, f32)>,
    /// The embedding of the last look that agreed with an identified decision (empty: none).
    anchor: Vec<f32>,
    /// Contrary looks since the last agreeing one (see [`SWAP_LOOKS`]).
    contrary: Vec<Vote>,
}

impl Track {
    fn new(id: u64, rect: Rect, frame: u64, window: usize) -> Track {
        Track {
            id,
            rect,
            last_seen: frame,
            last_embedded: None,
            votes: VecDeque::with_capacity(window),
            decision: None,
            anchor: Vec::new(),
            contrary: Vec::new(),
        }
    }
}

/// A face in view and what its track has decided so far (`None`: still voting).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InView {
    pub track: u64,
    pub rect: Rect,
    pub decision: Option<(Decision, f32)>,
}

/// Which track a detection belongs to, and whether it needs an embedding this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assignment {
    pub track: u64,
    pub embed: bool,
}

pub struct Tracker {
    config: TrackerConfig,
    tracks: Vec<Track>,
    next_id: u64,
    /// Cosine from which two looks of one track are the same face (the match threshold).
    same_face: f32,
}

/// Boxes this similar (intersection over union) belong to the same face in consecutive frames.
const MIN_OVERLAP: f32 = 0.25;

fn jumped(from: &Rect, to: &Rect) -> bool {
    let (a, b) = (from.w.max(1) as f32, to.w.max(1) as f32);
    let scale = if a > b { a / b } else { b / a };
    let dx = (from.x + from.w / 2 - to.x - to.w / 2) as f32;
    let dy = (from.y + from.h / 2 - to.y - to.h / 2) as f32;
    scale > JUMP_SCALE || dx.hypot(dy) > JUMP_SHIFT * a
}

fn iou(a: &Rect, b: &Rect) -> f32 {
    let x0 = a.x.max(b.x);
    let y0 = a.y.max(b.y);
    let x1 = (a.x + a.w).min(b.x + b.w);
    let y1 = (a.y + a.h).min(b.y + b.h);
    let inter = ((x1 - x0).max(0) as i64 * (y1 - y0).max(0) as i64) as f32;
    let union = (a.w as i64 * a.h as i64 + b.w as i64 * b.h as i64) as f32 - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
}

impl Tracker {
    /// `same_face`: the cosine from which two looks of a track are one face (the match
    /// threshold).
    pub fn new(config: TrackerConfig, same_face: f32) -> Tracker {
        Tracker {
            config,
            tracks: Vec::new(),
            next_id: 1,
            same_face,
        }
    }

    /// For each detection, the index of the track it continues (best overlaps first, each track
    /// at most once).
    fn associate(&self, rects: &[Rect]) -> Vec<Option<usize>> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (d, r) in rects.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                let overlap = iou(r, &track.rect);
                if overlap >= MIN_OVERLAP {
                    pairs.push((overlap, d, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of: Vec<Option<usize>> = vec![None; rects.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, d, t) in pairs {
            if track_of[d].is_none() && !taken[t] {
                track_of[d] = Some(t);
                taken[t] = true;
            }
        }
        track_of
    }

    /// Whether `track`, continued by a box at `rect`, is embedded this frame.
    fn due(&self, track: &Track, frame: u64, rect: &Rect) -> bool {
        if !track.contrary.is_empty() || jumped(&track.rect, rect) {
            return true;
        }
        match (track.decision, track.last_embedded) {
            (None, _) | (_, None) => true,
            // A decided track has at least `confirm` votes, unless the gallery changed under it
            // (see `remap_people`): then it is embedded every frame until it has them again.
            (Some(_), Some(last)) => {
                frame >= last + self.config.recheck_every || track.votes.len() < self.config.confirm
            }
        }
    }

    /// Which detections continue a decided track that needs no new embedding this frame: those
    /// can skip the landmark check and alignment too. [`Tracker::assign`] with the same boxes
    /// agrees.
    pub fn settled(&self, frame: u64, rects: &[Rect]) -> Vec<bool> {
        self.associate(rects)
            .into_iter()
            .zip(rects)
            .map(|(t, r)| t.is_some_and(|t| !self.due(&self.tracks[t], frame, r)))
            .collect()
    }

    /// Joins this frame's detections to tracks and opens tracks for the rest.
    pub fn assign(&mut self, frame: u64, rects: &[Rect]) -> Vec<Assignment> {
        let track_of = self.associate(rects);
        let mut out = Vec::with_capacity(rects.len());
        for (d, r) in rects.iter().enumerate() {
            let t = match track_of[d] {
                Some(t) => t,
                None => {
                    self.tracks
                        .push(Track::new(self.next_id, *r, frame, self.config.window));
                    self.next_id += 1;
                    self.tracks.len() - 1
                }
            };
            let embed = self.due(&self.tracks[t], frame, r);
            let track = &mut self.tracks[t];
            track.rect = *r;
            track.last_seen = frame;
            if embed {
                track.last_embedded = Some(frame);
            }
            out.push(Assignment {
                track: track.id,
                embed,
            });
        }
        out
    }

    /// Records this frame's looks and returns the events they complete (a swapped face's
    /// `left` before anything of the new track), then the tracks that have left.
    pub fn record(&mut self, frame: u64, looks: &[Look]) -> Vec<TrackEvent> {
        let mut events = Vec::new();
        let (confirm, window) = (self.config.confirm, self.config.window);
        for look in looks {
            let Some(t) = self.tracks.iter().position(|t| t.id == look.track) else {
                continue;
            };
            if let Some(left) = self.swapped(t, look) {
                events.push(left);
                let old = &mut self.tracks[t];
                let mut fresh = Track::new(self.next_id, old.rect, frame, window);
                self.next_id += 1;
                fresh.last_embedded = Some(frame);
                // The contrary looks, this one included, are the new face's first votes.
                fresh.votes.extend(std::mem::take(&mut old.contrary));
                *old = fresh;
            } else if !self.tracks[t].contrary.is_empty() {
                // In doubt: the vote waits to see whether the face was swapped.
                continue;
            } else {
                self.tracks[t].votes.push_back(look.vote);
            }
            let track = &mut self.tracks[t];
            while track.votes.len() > window {
                track.votes.pop_front();
            }
            let Some((decision, score)) = decide(&track.votes, confirm) else {
                continue;
            };
            if track.decision.map(|(d, _)| d) == Some(decision) {
                continue;
            }
            track.decision = Some((decision, score));
            if let Decision::Identified(_) = decision {
                track.anchor = look.embedding.to_vec();
            }
            let (kind, person) = match decision {
                Decision::Identified(p) => (EventKind::Identified, Some(p)),
                Decision::Unknown => (EventKind::Unknown, None),
            };
            events.push(TrackEvent {
                kind,
                track: track.id,
                person,
                score,
                rect: track.rect,
                detection: Some(look.detection),
            });
        }
        let leave_after = self.config.leave_after;
        events.extend(self.remove_where(|t| frame >= t.last_seen + leave_after));
        events
    }

    /// Weighs a look at an identified track: one that agrees (the person's match, or the track's
    /// own face) clears any doubt and renews the anchor; a contrary one is held back, and the
    /// [`SWAP_LOOKS`]th in a row ends the track: its `left` is returned, and the caller starts a
    /// new track seeded with the contrary votes.
    fn swapped(&mut self, t: usize, look: &Look) -> Option<TrackEvent> {
        let same_face = self.same_face;
        let track = &mut self.tracks[t];
        let Some((Decision::Identified(p), score)) = track.decision else {
            return None;
        };
        let matches_person = look.vote.person == Some(p);
        let same = !track.anchor.is_empty()
            && crate::embed::cosine(look.embedding, &track.anchor) >= same_face;
        if matches_person || same {
            if matches_person {
                track.anchor = look.embedding.to_vec();
            }
            // The looks held back were the same face after all: they count.
            for v in std::mem::take(&mut track.contrary) {
                track.votes.push_back(v);
            }
            return None;
        }
        track.contrary.push(look.vote);
        if track.contrary.len() < SWAP_LOOKS {
            return None;
        }
        Some(TrackEvent {
            kind: EventKind::Left,
            track: track.id,
            person: Some(p),
            score,
            rect: track.rect,
            detection: None,
        })
    }

    /// The tracks whose face was in frame `frame`, with their decision so far.
    /// Whether a track is alive (in view, or gone for fewer than `leave_after` frames).
    pub fn is_following(&self) -> bool {
        !self.tracks.is_empty()
    }

    pub fn in_view(&self, frame: u64) -> Vec<InView> {
        self.tracks
            .iter()
            .filter(|t| t.last_seen == frame)
            .map(|t| InView {
                track: t.id,
                rect: t.rect,
                decision: t.decision,
            })
            .collect()
    }

    /// The gallery changed under running tracks: `map` gives each old person index its new one,
    /// or `None` for someone removed. Every face in view votes again, a frame at a time, against
    /// the new gallery: a stranger just enrolled is named within `confirm` frames, and a person
    /// removed becomes unknown. A decision that still holds emits no new event.
    pub fn remap_people(&mut self, map: impl Fn(usize) -> Option<usize>) {
        for t in &mut self.tracks {
            t.votes.clear();
            if let Some((Decision::Identified(p), score)) = t.decision {
                t.decision = map(p).map(|q| (Decision::Identified(q), score));
            }
        }
    }

    /// Ends every track (the stream is over): "left" for each decided one.
    pub fn finish(&mut self) -> Vec<TrackEvent> {
        self.remove_where(|_| true)
    }

    fn remove_where(&mut self, gone: impl Fn(&Track) -> bool) -> Vec<TrackEvent> {
        let mut events = Vec::new();
        self.tracks.retain(|t| {
            if !gone(t) {
                return true;
            }
            if let Some((decision, score)) = t.decision {
                events.push(TrackEvent {
                    kind: EventKind::Left,
                    track: t.id,
                    person: match decision {
                        Decision::Identified(p) => Some(p),
                        Decision::Unknown => None,
                    },
                    score,
                    rect: t.rect,
                    detection: None,
                });
            }
            false
        });
        events
    }
}

/// The decision `confirm` votes of the window agree on, with their mean score.
fn decide(votes: &VecDeque<Vote>, confirm: usize) -> Option<(Decision, f32)> {
    let mut best: Option<(Decision, usize, f32)> = None;
    for v in votes {
        let decision = v.person.map_or(Decision::Unknown, Decision::Identified);
        let (count, sum) = votes
            .iter()
            .filter(|w| w.person.map_or(Decision::Unknown, Decision::Identified) == decision)
            .fold((0, 0.0), |(n, s), w| (n + 1, s + w.score));
        if count >= confirm && best.is_none_or(|(_, n, _)| count > n) {
            best = Some((decision, count, sum / count as f32));
        }
    }
    best.map(|(d, _, s)| (d, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: i32) -> Rect {
        Rect {
            x,
            y: 100,
            w: 100,
            h: 100,
        }
    }

    fn known(p: usize) -> Vote {
        Vote {
            person: Some(p),
            score: 0.6,
        }
    }

    const NOBODY: Vote = Vote {
        person: None,
        score: 0.1,
    };

    /// The face behind a vote: person p's is one axis, a stranger's another.
    fn face(vote: &Vote) -> Vec<f32> {
        let mut e = vec![0.0; 8];
        e[vote.person.unwrap_or(7).min(7)] = 1.0;
        e
    }

    fn tracker(config: TrackerConfig) -> Tracker {
        Tracker::new(config, 0.363)
    }

    /// Runs frames of (box x positions, votes) and returns the events as short strings.
    fn replay(config: TrackerConfig, frames: &[(&[i32], &[Vote])]) -> Vec<String> {
        let mut tracker = tracker(config);
        let mut log = Vec::new();
        for (n, (xs, votes)) in frames.iter().enumerate() {
            let frame = n as u64 + 1;
            let rects: Vec<Rect> = xs.iter().map(|&x| rect(x)).collect();
            let assigned = tracker.assign(frame, &rects);
            let faces: Vec<Vec<f32>> = votes.iter().map(face).collect();
            let cast: Vec<Look> = assigned
                .iter()
                .enumerate()
                .filter(|(_, a)| a.embed)
                .map(|(d, a)| Look {
                    detection: d,
                    track: a.track,
                    vote: votes[d],
                    embedding: &faces[d],
                })
                .collect();
            for e in tracker.record(frame, &cast) {
                log.push(format!("{frame}:{:?}:{}:{:?}", e.kind, e.track, e.person));
            }
        }
        for e in tracker.finish() {
            log.push(format!("end:{:?}:{}:{:?}", e.kind, e.track, e.person));
        }
        log
    }

    #[test]
    fn a_person_is_identified_once_per_visit() {
        let config = TrackerConfig {
            confirm: 3,
            window: 5,
            leave_after: 3,
            recheck_every: 2,
        };
        let here: (&[i32], &[Vote]) = (&[100], &[known(0)]);
        let moved: (&[i32], &[Vote]) = (&[110], &[known(0)]);
        let empty: (&[i32], &[Vote]) = (&[], &[]);
        let log = replay(
            config,
            &[
                here, moved, here, moved, here, empty, empty, empty, here, here, here,
            ],
        );
        assert_eq!(
            log,
            [
                "3:Identified:1:Some(0)",
                "8:Left:1:Some(0)",
                "11:Identified:2:Some(0)",
                "end:Left:2:Some(0)"
            ]
        );
    }

    #[test]
    fn strangers_who_stay_are_unknown_and_blips_are_silent() {
        let config = TrackerConfig {
            confirm: 2,
            window: 3,
            leave_after: 2,
            recheck_every: 5,
        };
        let stranger: (&[i32], &[Vote]) = (&[100], &[NOBODY]);
        let blip: (&[i32], &[Vote]) = (&[500], &[NOBODY]);
        let empty: (&[i32], &[Vote]) = (&[], &[]);
        let log = replay(config, &[blip, empty, empty, stranger, stranger, stranger]);
        assert_eq!(log, ["5:Unknown:2:None", "end:Left:2:None"]);
    }

    #[test]
    fn two_faces_keep_their_own_tracks_and_votes() {
        let config = TrackerConfig {
            confirm: 2,
            window: 3,
            leave_after: 5,
            recheck_every: 1,
        };
        let both: (&[i32], &[Vote]) = (&[100, 400], &[known(0), known(1)]);
        let swapped_order: (&[i32], &[Vote]) = (&[405, 95], &[known(1), known(0)]);
        let log = replay(config, &[both, swapped_order]);
        assert_eq!(
            log,
            [
                "2:Identified:2:Some(1)",
                "2:Identified:1:Some(0)",
                "end:Left:1:Some(0)",
                "end:Left:2:Some(1)"
            ]
        );
    }

    /// One look at someone else is held back (a blink, a turn); two in a row are another face:
    /// the person leaves and the new face is decided on its own votes.
    #[test]
    fn a_lone_mismatch_does_not_end_a_track_and_a_swap_does() {
        let config = TrackerConfig {
            confirm: 3,
            window: 5,
            leave_after: 5,
            recheck_every: 1,
        };
        let a: (&[i32], &[Vote]) = (&[100], &[known(0)]);
        let b: (&[i32], &[Vote]) = (&[100], &[known(1)]);
        let log = replay(config, &[a, a, a, b, a, b, b, b]);
        assert_eq!(
            log,
            [
                "3:Identified:1:Some(0)",
                "7:Left:1:Some(0)",
                "8:Identified:2:Some(1)",
                "end:Left:2:Some(1)"
            ]
        );
    }

    #[test]
    fn a_gallery_change_makes_faces_in_view_vote_again_at_once() {
        let mut tracker = tracker(TrackerConfig {
            confirm: 2,
            window: 3,
            leave_after: 9,
            recheck_every: 10,
        });
        let run = |tracker: &mut Tracker, frames: std::ops::RangeInclusive<u64>, vote: Vote| {
            let mut log = Vec::new();
            for frame in frames {
                let a = tracker.assign(frame, &[rect(100)])[0];
                if a.embed {
                    let look = Look {
                        detection: 0,
                        track: a.track,
                        vote,
                        embedding: &face(&vote),
                    };
                    for e in tracker.record(frame, &[look]) {
                        log.push(format!("{frame}:{:?}:{:?}", e.kind, e.person));
                    }
                    log.push(format!("{frame}:embedded"));
                }
            }
            log
        };
        // A stranger is decided unknown, then rechecked only every 10 frames.
        let log = run(&mut tracker, 1..=6, NOBODY);
        assert_eq!(log, ["1:embedded", "2:Unknown:None", "2:embedded"]);
        // Enrolled now as person 1 (person 0 is someone else, kept): named two frames later.
        tracker.remap_people(Some);
        let log = run(&mut tracker, 7..=12, known(1));
        assert_eq!(log, ["7:embedded", "8:Identified:Some(1)", "8:embedded"]);
        // Person 0 is removed: person 1 becomes index 0; the decision follows without an event.
        tracker.remap_people(|p| p.checked_sub(1));
        let log = run(&mut tracker, 13..=14, known(0));
        assert_eq!(log, ["13:embedded", "14:embedded"]);
        // Then they are removed too: unknown again.
        tracker.remap_people(|_| None);
        let log = run(&mut tracker, 15..=16, NOBODY);
        assert_eq!(log, ["15:embedded", "16:Unknown:None", "16:embedded"]);
    }

    #[test]
    fn decided_tracks_are_rechecked_not_embedded_every_frame() {
        let mut tracker = tracker(TrackerConfig {
            confirm: 1,
            window: 1,
            leave_after: 9,
            recheck_every: 4,
        });
        let mut embedded = Vec::new();
        for frame in 1..=10 {
            let a = tracker.assign(frame, &[rect(100)])[0];
            if a.embed {
                embedded.push(frame);
                let look = Look {
                    detection: 0,
                    track: a.track,
                    vote: known(0),
                    embedding: &face(&known(0)),
                };
                tracker.record(frame, &[look]);
            }
        }
        assert_eq!(embedded, [1, 5, 9]);
        assert!(TrackerConfig {
            confirm: 6,
            ..TrackerConfig::default()
        }
        .validate()
        .is_err());
    }

    /// A stranger steps into an identified person's place (a bigger face, a jump): embedded at
    /// once rather than at the next recheck, and the person has left two frames later, with no
    /// name passed on. The same person moving slightly keeps the track.
    #[test]
    fn a_face_that_replaces_an_identified_one_does_not_inherit_the_name() {
        let config = TrackerConfig {
            confirm: 3,
            window: 5,
            leave_after: 5,
            recheck_every: 10,
        };
        let ada: (&[i32], &[Vote]) = (&[100], &[known(0)]);
        let ada_moved: (&[i32], &[Vote]) = (&[112], &[known(0)]);
        let stranger: (&[i32], &[Vote]) = (&[160], &[NOBODY]);
        let log = replay(
            config,
            &[
                ada, ada, ada, ada_moved, ada, stranger, stranger, stranger, stranger,
            ],
        );
        assert_eq!(
            log,
            [
                "3:Identified:1:Some(0)",
                "7:Left:1:Some(0)",
                "8:Unknown:2:None",
                "end:Left:2:None"
            ]
        );
    }
}
