//! Recognition on a stream of frames: detect -> align -> embed -> match -> track, one frame at a
//! time, with the time each stage took.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use image::RgbImage;

use crate::capture::Frame;
use crate::detector::Rect;
use crate::embedder::Embedder;
use crate::gallery::Person;
use crate::matcher::Matcher;
use crate::recognize::FaceFinder;
use crate::tracker::{EventKind, Tracker, TrackerConfig, Vote};

/// Something worth telling the world about.
#[derive(Debug, Clone)]
pub struct Event {
    /// Capture time of the frame that completed the event, seconds since the Unix epoch.
    pub ts: f64,
    pub kind: EventKind,
    pub name: Option<String>,
    pub score: f32,
    pub rect: Rect,
    pub track: u64,
    pub frame: u64,
    /// The face's box cut from the frame (identified and unknown events), for snapshots.
    pub face: Option<RgbImage>,
}

/// Total time per stage over all frames so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTotals {
    pub frames: u64,
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
    threshold: f32,
    tracker: Tracker,
    totals: StageTotals,
    last: (u64, SystemTime),
}

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
        Ok(Recognizer {
            finder,
            embedder,
            matcher: Matcher::new(people),
            names: people.iter().map(|p| p.entry.name.clone()).collect(),
            threshold,
            tracker: Tracker::new(tracking),
            totals: StageTotals::default(),
            last: (0, UNIX_EPOCH),
        })
    }

    pub fn totals(&self) -> StageTotals {
        self.totals
    }

    pub fn embedder_mut(&mut self) -> &mut Embedder {
        &mut self.embedder
    }

    /// Runs one frame through the pipeline and returns the events it completes.
    pub fn process(&mut self, frame: &Frame) -> Result<Vec<Event>, String> {
        self.last = (frame.number, frame.time);
        let faces = self.finder.faces(&frame.photo, &self.embedder)?;
        let timings = self.finder.last_timings;

        let tracking = Instant::now();
        let rects: Vec<Rect> = faces.iter().map(|f| f.rect).collect();
        let assigned = self.tracker.assign(frame.number, &rects);
        let wanted: Vec<usize> = (0..faces.len()).filter(|&i| assigned[i].embed).collect();
        let mut track_time = tracking.elapsed();

        let embedding = Instant::now();
        let crops: Vec<RgbImage> = wanted.iter().map(|&i| faces[i].crop.clone()).collect();
        let embeddings = self.embedder.embed(&crops)?;
        let embed_time = embedding.elapsed();

        let matching = Instant::now();
        let votes: Vec<(usize, u64, Vote)> = wanted
            .iter()
            .zip(&embeddings)
            .map(|(&i, e)| {
                let best = self.matcher.top_k(e, 1).first().copied();
                let vote = match best {
                    Some((p, s)) if s >= self.threshold => Vote {
                        person: Some(p),
                        score: s,
                    },
                    Some((_, s)) => Vote {
                        person: None,
                        score: s,
                    },
                    None => Vote {
                        person: None,
                        score: 0.0,
                    },
                };
                (i, assigned[i].track, vote)
            })
            .collect();
        let events = self.tracker.record(frame.number, &votes);
        let ts = unix_seconds(frame.time);
        let out = events
            .into_iter()
            .map(|e| Event {
                ts,
                kind: e.kind,
                name: e.person.and_then(|p| self.names.get(p).cloned()),
                score: e.score,
                rect: e.rect,
                track: e.track,
                frame: frame.number,
                face: e.detection.map(|_| cut(&frame.photo.rgb, &e.rect)),
            })
            .collect();
        track_time += matching.elapsed();

        self.totals.frames += 1;
        self.totals.faces += faces.len() as u64;
        self.totals.embedded += wanted.len() as u64;
        self.totals.detect += timings.detect;
        self.totals.landmarks += timings.landmarks;
        self.totals.embed += embed_time;
        self.totals.track += track_time;
        Ok(out)
    }

    /// The stream is over: everyone still in view has left.
    pub fn finish(&mut self) -> Vec<Event> {
        let (frame, time) = self.last;
        let ts = unix_seconds(time);
        self.tracker
            .finish()
            .into_iter()
            .map(|e| Event {
                ts,
                kind: e.kind,
                name: e.person.and_then(|p| self.names.get(p).cloned()),
                score: e.score,
                rect: e.rect,
                track: e.track,
                frame,
                face: None,
            })
            .collect()
    }
}

/// The part of `rgb` inside `r`, clipped to the frame (at least one pixel).
fn cut(rgb: &RgbImage, r: &Rect) -> RgbImage {
    let (w, h) = (rgb.width() as i32, rgb.height() as i32);
    let (x0, y0) = (r.x.clamp(0, w - 1), r.y.clamp(0, h - 1));
    let x1 = (r.x + r.w).clamp(x0 + 1, w);
    let y1 = (r.y + r.h).clamp(y0 + 1, h);
    image::imageops::crop_imm(
        rgb,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image()
}
