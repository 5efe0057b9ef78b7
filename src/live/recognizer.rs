//! Recognition on a stream of frames: detect -> align -> embed -> match -> track, one frame at a
//! time, with the time each stage took.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use image::RgbImage;

use crate::embed::Embedder;
use crate::events::Event;
use crate::events::EventKind;
use crate::imaging::rect::Rect;
use crate::live::capture::Frame;
use crate::live::liveness::{look, LivenessConfig, TrackLiveness, Verdict};
use crate::live::motion::{MotionConfig, MotionGate};
use crate::live::strangers::Strangers;
use crate::live::tracker::{Decision, Look, TrackEvent, Tracker, TrackerConfig, Vote};
use crate::recognize::matcher::Matcher;
use crate::recognize::{Candidate, Face, FaceFinder};
use crate::store::gallery::Person;

/// What a track in view has decided so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewState {
    Identified,
    Unknown,
    /// Still voting.
    Pending,
}

impl ViewState {
    pub fn as_str(self) -> &'static str {
        match self {
            ViewState::Identified => "identified",
            ViewState::Unknown => "unknown",
            ViewState::Pending => "pending",
        }
    }
}

/// A face in view now.
#[derive(Debug, Clone, PartialEq)]
pub struct InView {
    pub track: u64,
    pub rect: Rect,
    pub state: ViewState,
    pub name: Option<String>,
    pub score: f32,
}

/// Total time per stage over all frames so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTotals {
    pub frames: u64,
    /// Frames the motion gate kept from the detector (nothing moved, nobody in view).
    pub gated: u64,
    pub faces: u64,
    pub embedded: u64,
    pub detect: Duration,
    pub landmarks: Duration,
    pub embed: Duration,
    pub track: Duration,
}

impl StageTotals {
    /// Milliseconds per frame of each stage: (detect, landmarks+align, embed, match+track).
    pub fn per_frame_ms(&self) -> [f64; 4] {
        let n = self.frames.max(1) as f64;
        [self.detect, self.landmarks, self.embed, self.track].map(|d| d.as_secs_f64() * 1e3 / n)
    }

    pub fn since(&self, earlier: &StageTotals) -> StageTotals {
        StageTotals {
            frames: self.frames - earlier.frames,
            gated: self.gated - earlier.gated,
            faces: self.faces - earlier.faces,
            embedded: self.embedded - earlier.embedded,
            detect: self.detect.saturating_sub(earlier.detect),
            landmarks: self.landmarks.saturating_sub(earlier.landmarks),
            embed: self.embed.saturating_sub(earlier.embed),
            track: self.track.saturating_sub(earlier.track),
        }
    }
}

pub struct Recognizer {
    finder: FaceFinder,
    embedder: Embedder,
    matcher: Matcher,
    names: Vec<String>,
    ids: Vec<String>,
    threshold: f32,
    tracker: Tracker,
    tracking: TrackerConfig,
    totals: StageTotals,
    last: (u64, SystemTime),
    strangers: Option<Strangers>,
    strangers_failing: crate::support::warnings::Throttle,
    /// Per track, what its face showed of being a head, when liveness is measured.
    liveness: Option<Liveness>,
    /// Where faces count; faces elsewhere are dropped after detection.
    zones: Vec<super::zones::Zone>,
    /// Faces dropped for being outside every zone.
    outside: u64,
    /// Keeps the detector off still frames with nobody in view.
    motion: Option<MotionGate>,
}

/// Liveness of the tracks, measured from their landmarks in every frame until they are live.
struct Liveness {
    config: LivenessConfig,
    /// Track -> its evidence, and the frame it was last seen in.
    tracks: std::collections::HashMap<u64, (TrackLiveness, u64)>,
}

/// Frames after which a track's liveness is forgotten when it is not seen.
const LIVENESS_KEPT: u64 = 600;

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Recognizer {
    pub fn new(
        finder: FaceFinder,
        embedder: Embedder,
        people: &[Person],
        threshold: f32,
        tracking: TrackerConfig,
    ) -> Result<Recognizer, String> {
        tracking.validate()?;
        if !(-1.0..=1.0).contains(&threshold) {
            return Err(format!(
                "the match threshold must be a cosine from -1 to 1, got {threshold}"
            ));
        }
        Ok(Recognizer {
            finder,
            embedder,
            matcher: Matcher::new(people),
            names: people.iter().map(|p| p.entry.name.clone()).collect(),
            ids: people.iter().map(|p| p.entry.id.clone()).collect(),
            threshold,
            tracker: Tracker::new(tracking, threshold),
            tracking,
            totals: StageTotals::default(),
            last: (0, UNIX_EPOCH),
            strangers: None,
            strangers_failing: crate::support::warnings::Throttle::per_minute(),
            liveness: None,
            zones: Vec::new(),
            outside: 0,
            motion: None,
        })
    }

    /// Detects only in frames with motion or someone in view (and the safety net), from now on;
    /// `None`: in every frame.
    pub fn set_motion(&mut self, config: Option<MotionConfig>) {
        self.motion = config.map(MotionGate::new);
    }

    /// Counts only faces in `zones` from now on (none: the whole frame).
    pub fn set_zones(&mut self, zones: Vec<super::zones::Zone>) {
        self.zones = zones;
    }

    /// Faces dropped so far for being outside every zone.
    pub fn outside_zones(&self) -> u64 {
        self.outside
    }

    /// Measures from now on whether the faces of tracks are heads or pictures: their landmarks
    /// are taken in every frame until the track is live (landmarks cost 1-5 ms a face).
    pub fn measure_liveness(&mut self, config: LivenessConfig) {
        if self.liveness.is_none() {
            self.liveness = Some(Liveness {
                config,
                tracks: std::collections::HashMap::new(),
            });
        }
    }

    pub fn measures_liveness(&self) -> bool {
        self.liveness.is_some()
    }

    /// The liveness of a track, when it is measured.
    pub fn liveness(&self, track: u64) -> Option<Verdict> {
        let l = self.liveness.as_ref()?;
        Some(match l.tracks.get(&track) {
            Some((t, _)) => t.verdict(&l.config),
            None => TrackLiveness::default().verdict(&l.config),
        })
    }

    /// Groups unknown faces into recurring strangers, kept in `strangers`.
    pub fn keep_strangers(&mut self, strangers: Strangers) {
        self.strangers = Some(strangers);
    }

    pub fn totals(&self) -> StageTotals {
        self.totals
    }

    /// Forgets every track and timing, as if no frame had been seen (for benchmarks).
    pub fn restart(&mut self) {
        self.tracker = Tracker::new(self.tracking, self.threshold);
        self.totals = StageTotals::default();
    }

    /// The gallery changed (people added, renamed or removed by another writer): match against
    /// `people` from the next frame on. Running tracks keep their votes for people still enrolled.
    pub fn set_people(&mut self, people: &[Person]) {
        let new_ids: Vec<String> = people.iter().map(|p| p.entry.id.clone()).collect();
        let old_ids = std::mem::replace(&mut self.ids, new_ids);
        let ids = &self.ids;
        self.tracker.remap_people(|old| {
            let id = old_ids.get(old)?;
            ids.iter().position(|i| i == id)
        });
        self.matcher = Matcher::new(people);
        self.names = people.iter().map(|p| p.entry.name.clone()).collect();
    }

    /// Faces in the last frame processed, with what their tracks decided so far.
    pub fn in_view(&self) -> Vec<InView> {
        self.tracker
            .in_view(self.last.0)
            .into_iter()
            .map(|t| {
                let (state, name, score) = match t.decision {
                    Some((Decision::Identified(p), score)) => {
                        (ViewState::Identified, self.names.get(p).cloned(), score)
                    }
                    Some((Decision::Unknown, score)) => (ViewState::Unknown, None, score),
                    None => (ViewState::Pending, None, 0.0),
                };
                InView {
                    track: t.track,
                    rect: t.rect,
                    state,
                    name,
                    score,
                }
            })
            .collect()
    }

    /// Threads the detector scans each frame with.
    pub fn set_detect_threads(&mut self, threads: usize) {
        self.finder.params.threads = threads.max(1);
    }

    /// Runs one frame through the pipeline and returns the events it completes.
    pub fn process(&mut self, frame: &Frame) -> Result<Vec<Event>, String> {
        self.last = (frame.number, frame.time);
        let detecting = Instant::now();
        let following = self.tracker.is_following();
        let detect = self
            .motion
            .as_mut()
            .is_none_or(|g| g.should_detect(frame.photo.grey_view(), following));
        let (w, h) = (frame.photo.width(), frame.photo.height());
        let mut candidates = if detect {
            match super::zones::scan_area(&self.zones, w, h) {
                Some(area) => self.finder.candidates_in(&frame.photo, area)?,
                None => self.finder.candidates(&frame.photo)?,
            }
        } else {
            self.totals.gated += 1;
            Vec::new()
        };
        if !self.zones.is_empty() {
            let before = candidates.len();
            candidates.retain(|c| super::zones::counts(&self.zones, &c.rect, w, h));
            self.outside += (before - candidates.len()) as u64;
        }
        let detect_time = detecting.elapsed();

        // A box that continues a recognised track and is not due for a recheck keeps its track
        // without the landmark check: that stage costs as much per face as detection does.
        let confirming = Instant::now();
        let rects: Vec<Rect> = candidates.iter().map(|c| c.rect).collect();
        let settled = self.tracker.settled(frame.number, &rects);
        let mut kept: Vec<(Candidate, Option<Face>)> = Vec::with_capacity(candidates.len());
        for (candidate, settled) in candidates.into_iter().zip(settled) {
            if settled {
                kept.push((candidate, None));
            } else if let Some(face) =
                self.finder
                    .confirm(&frame.photo, candidate, &self.embedder)?
            {
                kept.push((candidate, Some(face)));
            }
        }
        let mut landmark_time = confirming.elapsed();

        let tracking = Instant::now();
        let rects: Vec<Rect> = kept.iter().map(|(c, _)| c.rect).collect();
        let assigned = self.tracker.assign(frame.number, &rects);
        let mut track_time = tracking.elapsed();

        let confirming = Instant::now();
        if let Some(l) = self.liveness.as_mut() {
            for (i, a) in assigned.iter().enumerate() {
                let entry = l
                    .tracks
                    .entry(a.track)
                    .or_insert_with(|| (TrackLiveness::default(), frame.number));
                entry.1 = frame.number;
                if entry.0.is_live() {
                    continue;
                }
                if kept[i].1.is_none() {
                    kept[i].1 = self
                        .finder
                        .confirm(&frame.photo, kept[i].0, &self.embedder)?;
                }
                if let Some(face) = &kept[i].1 {
                    if let Some(marks) = face.landmarks {
                        entry.0.observe(&marks, Some(look(&face.crop)), &l.config);
                    }
                }
            }
            l.tracks
                .retain(|_, (_, seen)| frame.number.saturating_sub(*seen) <= LIVENESS_KEPT);
        }
        let mut wanted = Vec::new();
        let mut crops: Vec<RgbImage> = Vec::new();
        for (i, a) in assigned.iter().enumerate() {
            if !a.embed {
                continue;
            }
            // Dropping unconfirmed boxes can hand a settled box another track, one that is due.
            let face = match kept[i].1.take() {
                Some(face) => Some(face),
                None => self
                    .finder
                    .confirm(&frame.photo, kept[i].0, &self.embedder)?,
            };
            if let Some(face) = face {
                wanted.push(i);
                crops.push(face.crop);
            }
        }
        landmark_time += confirming.elapsed();

        let embedding = Instant::now();
        let embeddings = self.embedder.embed(&crops)?;
        let embed_time = embedding.elapsed();

        let matching = Instant::now();
        let looks: Vec<Look> = wanted
            .iter()
            .zip(&embeddings)
            .map(|(&i, e)| {
                let m = self.matcher.identify(e, self.threshold);
                Look {
                    detection: i,
                    track: assigned[i].track,
                    vote: Vote {
                        person: m.person,
                        score: m.score,
                    },
                    embedding: e,
                }
            })
            .collect();
        let tracked = self.tracker.record(frame.number, &looks);
        let mut out = Vec::with_capacity(tracked.len());
        for e in tracked {
            let face = e
                .detection
                .map(|_| crate::imaging::crop::face_snapshot(&frame.photo.rgb, &e.rect));
            // The face that decided "unknown" was embedded in this frame: group it.
            let stranger = match (e.kind, e.detection) {
                (EventKind::Unknown, Some(d)) => wanted
                    .iter()
                    .position(|&i| i == d)
                    .map(|w| (&embeddings[w], &crops[w], e.rect.w)),
                _ => None,
            };
            let unknown_id = stranger.and_then(|(embedding, crop, width)| {
                self.stranger_id(embedding, crop, width, unix_seconds(frame.time))
            });
            let mut event = self.event(e, frame.number, frame.time, face);
            event.unknown_id = unknown_id;
            out.push(event);
        }
        track_time += matching.elapsed();

        self.totals.frames += 1;
        self.totals.faces += kept.len() as u64;
        self.totals.embedded += wanted.len() as u64;
        self.totals.detect += detect_time;
        self.totals.landmarks += landmark_time;
        self.totals.embed += embed_time;
        self.totals.track += track_time;
        Ok(out)
    }

    /// The stream is over: everyone still in view has left.
    pub fn finish(&mut self) -> Vec<Event> {
        let (frame, time) = self.last;
        self.tracker
            .finish()
            .into_iter()
            .map(|e| self.event(e, frame, time, None))
            .collect()
    }

    /// The recurring stranger an unknown face belongs to. The store failing (disk full) costs
    /// the id, never the event.
    fn stranger_id(
        &mut self,
        embedding: &[f32],
        crop: &RgbImage,
        width: i32,
        ts: f64,
    ) -> Option<String> {
        let strangers = self.strangers.as_ref()?;
        match strangers.observe(embedding, crop, width, ts) {
            Ok(id) => Some(id),
            Err(e) => {
                self.strangers_failing.warn(&e);
                None
            }
        }
    }

    fn event(&self, e: TrackEvent, frame: u64, time: SystemTime, face: Option<RgbImage>) -> Event {
        Event {
            ts: unix_seconds(time),
            kind: e.kind,
            name: e.person.and_then(|p| self.names.get(p).cloned()),
            person_id: e.person.and_then(|p| self.ids.get(p).cloned()),
            score: e.score,
            rect: e.rect,
            track: e.track,
            frame,
            face,
            unknown_id: None,
            liveness: self.liveness(e.track),
        }
    }
}
