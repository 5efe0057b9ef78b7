//! What the live pipeline shares with the HTTP side: the latest frame and who is in it, running
//! statistics, and the stream of new events. The pipeline only ever stores into it and never
//! waits for a client; clients read copies.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use image::RgbImage;
use tokio::sync::{broadcast, watch};

use crate::live::recognizer::{InView, StageTotals, ViewState};

/// A frame's number and its annotated JPEG.
pub type Encoded = (u64, Arc<Vec<u8>>);

/// The latest frame the pipeline finished, and the faces it saw in it.
pub struct LatestFrame {
    pub number: u64,
    pub rgb: Arc<RgbImage>,
    pub faces: Vec<InView>,
}

/// Running numbers about the live pipeline, for the status page and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct LiveStats {
    pub source: String,
    /// Frames per second over the last few seconds.
    pub fps: f64,
    pub frames: u64,
    pub dropped: u64,
    /// Milliseconds per frame: detect, landmarks+align, embed, match+track (since the start).
    pub stage_ms: [f64; 4],
    /// The source: "starting", "up", "retrying" (down, tried again) or "ended".
    pub state: &'static str,
    /// Why the source is down (retrying).
    pub reason: Option<String>,
    /// A camera or live stream: frames are expected steadily, so a silence is a fault.
    pub live_source: bool,
    /// When the last frame was done, and when the source came up.
    pub last_frame: Option<Instant>,
    pub up_since: Option<Instant>,
    /// When the server started (the source is opened in the moments after).
    pub created: Option<Instant>,
}

/// A live source silent this long is not healthy, whatever it last said.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The frame rate reads 0 once no frame came for this long (it is measured over windows, and
/// the last window's rate would otherwise stay on show after the frames stopped).
const FPS_STALE: std::time::Duration = std::time::Duration::from_secs(3);

impl LiveStats {
    /// Seconds since the last frame (or since the source came up, before the first one).
    pub fn silent_s(&self) -> Option<f64> {
        self.last_frame
            .or(self.up_since)
            .map(|t| t.elapsed().as_secs_f64())
    }

    /// Frames per second now: 0 when frames stopped coming.
    pub fn fps_now(&self) -> f64 {
        match self.last_frame {
            Some(t) if t.elapsed() < FPS_STALE && self.state == "up" => self.fps,
            _ => 0.0,
        }
    }

    /// Why the live source is not healthy, if it is not.
    pub fn unhealthy(&self) -> Option<String> {
        match self.state {
            "up" => {
                let silent = self.silent_s().unwrap_or(0.0);
                (self.live_source && silent >= STALE_AFTER.as_secs_f64())
                    .then(|| format!("no frame from the source for {silent:.0} s"))
            }
            "retrying" => Some(format!(
                "the frame source is down: {}",
                self.reason.as_deref().unwrap_or("unknown")
            )),
            "ended" => Some("the frame source ended".into()),
            // Opening takes a moment (a camera a second or two): only a long wait is a fault.
            _ if self.created.is_some_and(|t| t.elapsed() < STALE_AFTER) => None,
            _ => Some("the frame source is not open yet".into()),
        }
    }
}

/// Upper bounds (seconds) of the per-stage latency histograms: from a tracked face's 0.1 ms to
/// a slow board's detection.
pub const LATENCY_BOUNDS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// The stages a frame goes through, as `/metrics` names them, and the whole frame.
pub const STAGES: [&str; 5] = ["detect", "landmarks", "embed", "track", "frame"];

/// Per-frame latency of each stage: counts per bound (cumulative on output), sum and count.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub buckets: [[u64; LATENCY_BOUNDS.len()]; STAGES.len()],
    pub sum_s: [f64; STAGES.len()],
    pub count: u64,
}

impl Latency {
    /// One frame's seconds per stage (in [`STAGES`] order).
    pub fn record(&mut self, seconds: [f64; STAGES.len()]) {
        for (stage, s) in seconds.iter().enumerate() {
            if let Some(b) = LATENCY_BOUNDS.iter().position(|bound| s <= bound) {
                self.buckets[stage][b] += 1;
            }
            self.sum_s[stage] += s;
        }
        self.count += 1;
    }
}

pub struct Hub {
    started: Instant,
    latency: Mutex<Latency>,
    stats: Mutex<LiveStats>,
    frame: Mutex<Option<LatestFrame>>,
    /// The annotated JPEG of one frame, encoded once however many clients watch.
    encoded: Mutex<Option<Encoded>>,
    frame_number: watch::Sender<u64>,
    events: broadcast::Sender<Arc<str>>,
    pub stream_clients: AtomicUsize,
    /// Events seen: identified, unknown, left.
    event_counts: [AtomicU64; 3],
    /// Access decisions: granted, denied.
    pub decisions: [AtomicU64; 2],
    pub events_dropped: AtomicU64,
}

/// Recovers a poisoned lock: the data behind these locks is replaced whole, never left half-done.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Events a slow SSE client may fall behind by before it misses some (it is told how many).
const EVENT_BACKLOG: usize = 256;

impl Hub {
    pub fn new(source: String) -> Hub {
        Hub {
            started: Instant::now(),
            latency: Mutex::new(Latency::default()),
            stats: Mutex::new(LiveStats {
                source,
                state: "starting",
                created: Some(Instant::now()),
                ..LiveStats::default()
            }),
            frame: Mutex::new(None),
            encoded: Mutex::new(None),
            frame_number: watch::channel(0).0,
            events: broadcast::channel(EVENT_BACKLOG).0,
            stream_clients: AtomicUsize::new(0),
            event_counts: Default::default(),
            decisions: Default::default(),
            events_dropped: AtomicU64::new(0),
        }
    }

    /// One frame's seconds per stage (in [`STAGES`] order), for the latency histograms.
    pub fn record_latency(&self, seconds: [f64; STAGES.len()]) {
        lock(&self.latency).record(seconds);
    }

    /// The latency histograms so far.
    pub fn latency(&self) -> Latency {
        lock(&self.latency).clone()
    }

    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The pipeline finished a frame.
    pub fn frame_done(&self, number: u64, rgb: Arc<RgbImage>, faces: Vec<InView>) {
        *lock(&self.frame) = Some(LatestFrame { number, rgb, faces });
        self.frame_number.send_replace(number);
    }

    pub fn set_stats(&self, update: impl FnOnce(&mut LiveStats)) {
        update(&mut lock(&self.stats));
    }

    pub fn stats(&self) -> LiveStats {
        lock(&self.stats).clone()
    }

    /// Updates the statistics from the recognizer's totals.
    pub fn record_totals(&self, totals: &StageTotals, dropped: u64, fps: Option<f64>) {
        let stage_ms = totals.per_frame_ms();
        self.set_stats(|s| {
            s.frames = totals.frames;
            s.dropped = dropped;
            s.stage_ms = stage_ms;
            s.last_frame = Some(Instant::now());
            if let Some(fps) = fps {
                s.fps = fps;
            }
        });
    }

    /// Waits for frames after the one a client saw last.
    pub fn subscribe_frames(&self) -> watch::Receiver<u64> {
        self.frame_number.subscribe()
    }

    /// The latest frame annotated with boxes and names, as JPEG; `None` before the first frame.
    pub fn annotated_jpeg(&self) -> Result<Option<Encoded>, String> {
        let (number, rgb, faces) = match &*lock(&self.frame) {
            Some(f) => (f.number, f.rgb.clone(), f.faces.clone()),
            None => return Ok(None),
        };
        if let Some((n, jpeg)) = &*lock(&self.encoded) {
            if *n == number {
                return Ok(Some((number, jpeg.clone())));
            }
        }
        let mut img = (*rgb).clone();
        annotate(&mut img, &faces);
        let jpeg = Arc::new(crate::imaging::jpeg::encode(&img, 80.0)?);
        *lock(&self.encoded) = Some((number, jpeg.clone()));
        Ok(Some((number, jpeg)))
    }

    /// The faces in the latest frame.
    pub fn in_view(&self) -> Vec<InView> {
        lock(&self.frame)
            .as_ref()
            .map_or_else(Vec::new, |f| f.faces.clone())
    }

    /// The latest raw frame (for guided camera shots).
    pub fn latest_frame(&self) -> Option<(u64, Arc<RgbImage>)> {
        lock(&self.frame)
            .as_ref()
            .map(|f| (f.number, f.rgb.clone()))
    }

    /// Publishes a stored event (its JSON) to live subscribers.
    pub fn publish_event(&self, kind: crate::events::EventKind, json: Arc<str>) {
        let i = match kind {
            crate::events::EventKind::Identified => 0,
            crate::events::EventKind::Unknown => 1,
            crate::events::EventKind::Left => 2,
        };
        self.event_counts[i].fetch_add(1, Ordering::Relaxed);
        // No subscriber is not an error: nobody is watching.
        let _ = self.events.send(json);
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<str>> {
        self.events.subscribe()
    }

    /// Events seen since the start: identified, unknown, left.
    pub fn event_counts(&self) -> [u64; 3] {
        [0, 1, 2].map(|i| self.event_counts[i].load(Ordering::Relaxed))
    }
}

const IDENTIFIED: [u8; 3] = [40, 220, 90];
const UNKNOWN: [u8; 3] = [240, 170, 30];
const PENDING: [u8; 3] = [200, 200, 200];

/// Draws each face's box and, above it, its name and score (or "unknown" / "?").
pub fn annotate(img: &mut RgbImage, faces: &[InView]) {
    use crate::imaging::draw::font;
    let scale = if img.width() >= 1000 { 3 } else { 2 };
    for f in faces {
        let (colour, text) = match (f.state, &f.name) {
            (ViewState::Identified, Some(name)) => (IDENTIFIED, format!("{name} {:.2}", f.score)),
            (ViewState::Pending, _) => (PENDING, "?".to_string()),
            _ => (UNKNOWN, format!("unknown {:.2}", f.score)),
        };
        crate::imaging::draw::outline(img, &f.rect, scale as i32, colour);
        let height = (font::LINE_HEIGHT * scale + 4 * scale) as i32;
        let y = if f.rect.y >= height {
            f.rect.y - height
        } else {
            f.rect.y.saturating_add(f.rect.h)
        };
        font::label(img, f.rect.x, y, &text, scale, [0, 0, 0], colour);
    }
}
