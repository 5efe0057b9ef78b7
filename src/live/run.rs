//! The live run that `watch` and `serve` share: frames from a source through the recognizer,
//! the gallery and the access rules followed as they change, and every event and access decision
//! handed to the sinks, in order.
//!
//! ```text
//! source -> capture thread -> Recognizer (detect, landmarks, embed, match, track) -> events
//!        -> snapshot + JSON line -> sinks (stdout, MQTT, serve's hub and history, ...)
//!        -> access rules -> decision + actions -> sinks
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::access::factors::Evidence;
use crate::recognize::pipeline::Pipeline;
use crate::store::gallery::Person;

use super::capture::{Capture, Counts, Item};
use super::follow::{GalleryFollower, RulesFollower};
use super::liveness::LivenessConfig;
use super::recognizer::Recognizer;
use super::sinks::{DecisionDone, FrameDone, Sink, SourceState};
use super::source::SourceSpec;
use super::strangers::Strangers;
use super::tracker::TrackerConfig;
use crate::events::Event;
use crate::events::{self, Snapshots};

/// How the pipeline is tuned for frames (the photo commands use other defaults).
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Frames larger than this (longer side) are downscaled for detection.
    pub detect_size: u32,
    /// Longest side of the frame for YuNet's edge pass.
    pub edge_pass_side: u32,
    /// The edge pass runs on one frame in this many.
    pub edge_pass_every: u64,
    /// Smallest face looked for, in frame pixels.
    pub min_face: usize,
    /// Ratio between the detector's pyramid levels.
    pub scale_factor: f64,
    /// Threads for the detector's scan (0: one per core).
    pub threads: usize,
    pub tracker: TrackerConfig,
    /// Where faces count (none: the whole frame).
    pub zones: Vec<super::zones::Zone>,
    /// Detect only where something moved or someone is in view (`None`: every frame).
    pub motion: Option<super::motion::MotionConfig>,
}

impl Tuning {
    /// A recognizer over `people`, from a loaded pipeline.
    pub fn recognizer(&self, pipeline: Pipeline, people: &[Person]) -> Result<Recognizer, String> {
        let Pipeline {
            mut finder,
            embedder,
            threshold,
        } = pipeline;
        if self.zones.len() > super::zones::MAX_ZONES {
            return Err(format!(
                "at most {} zones (--zone)",
                super::zones::MAX_ZONES
            ));
        }
        finder.detect_max_side = Some(self.detect_size);
        finder.edge_pass_side = self.edge_pass_side;
        finder.edge_pass_every = self.edge_pass_every;
        finder.params.min_size = (self.min_face, self.min_face);
        finder.params.scale_factor = self.scale_factor;
        finder.params.validate()?;
        finder.params.threads = if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        };
        let mut recognizer = Recognizer::new(finder, embedder, people, threshold, self.tracker)?;
        recognizer.set_zones(self.zones.clone());
        recognizer.set_motion(self.motion);
        Ok(recognizer)
    }
}

/// Where recurring strangers are kept, and for how long.
#[derive(Debug, Clone)]
pub struct StrangerConfig {
    pub dir: PathBuf,
    /// Days after which a stranger not seen again is forgotten.
    pub days: f64,
}

/// The fleet this board's gallery is shared with (`--sync mqtt`).
#[derive(Clone)]
pub struct FleetConfig {
    /// The broker, `mqtt://host[:port]`.
    pub url: String,
    pub credentials: Option<(String, String)>,
    /// The fleet's shared secret.
    pub key: Vec<u8>,
}

/// An MQTT broker: `mqtt://host[:port]`, and a user name and password.
#[derive(Clone)]
pub struct Broker {
    pub url: String,
    pub credentials: Option<(String, String)>,
}

/// Everything a live run needs besides the pipeline, the source and the sinks.
pub struct LiveConfig {
    /// The gallery matched against, followed as other processes change it.
    pub gallery: PathBuf,
    pub tuning: Tuning,
    /// `None`: strangers are not kept (no `unknown_id`).
    pub strangers: Option<StrangerConfig>,
    /// A directory for a picture of each event's face.
    pub snapshots: Option<PathBuf>,
    /// This camera's name, in every event and decision.
    pub camera: Option<String>,
    /// The access rules file, re-read when it changes.
    pub rules: Option<PathBuf>,
    /// The MQTT broker the sinks publish to: rules with an MQTT action or an MQTT factor need
    /// one.
    pub mqtt: Option<Broker>,
    /// What the rules' factors besides the face saw; `serve`'s API adds the PINs entered.
    pub evidence: Evidence,
    /// Whether PINs can be entered (`serve`'s API): a PIN factor under `watch` never holds.
    pub pins: bool,
    /// Measure whether faces are heads or pictures (`live::liveness`) even when no rule asks,
    /// so that events carry it (`watch --liveness`).
    pub liveness: bool,
    /// Scripted frame times: frame N is at this many Unix seconds + N / the source's rate.
    pub frame_clock: Option<f64>,
    pub fleet: Option<FleetConfig>,
    /// When the source ends, keep following the gallery (for the sinks and the fleet) until
    /// `stop` is set, instead of returning: what `serve` wants, whose UI still enrolls people.
    pub linger: bool,
    /// When the source cannot be opened or fails (no camera yet, a camera unplugged, a stream
    /// that broke off), say so to the sinks and try again, waiting 1 s and doubling up to 30 s,
    /// instead of returning the error: `serve`, whose UI must stay up to show what is wrong, and
    /// `watch --retry-source`. A directory of frames, or standard input, that ends has ended.
    pub retry: bool,
}

/// How long the first retry of a failed source waits, and the longest wait.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_LONGEST: Duration = Duration::from_secs(30);

/// Runs the live pipeline until the source ends or `stop` is set, handing everything to `sinks`.
pub fn run(
    config: &LiveConfig,
    pipeline: Pipeline,
    source: &SourceSpec,
    stop: Arc<AtomicBool>,
    sinks: &mut [&mut dyn Sink],
) -> Result<(), String> {
    let threshold = pipeline.threshold;
    // Joining the fleet may give people new ids: before the gallery is read for matching.
    let fleet = fleet::join(config, &pipeline)?;
    let model = pipeline.model_info();
    // The follower notes the gallery's index before it is read: a commit between the read and
    // the first frame (the sync thread applying what the broker held, an enrollment) is then
    // seen as a change. Noted after the read, such a commit went unseen, and the run matched
    // against the older gallery until the next change.
    let follower = GalleryFollower::new(&config.gallery, model.clone());
    let gallery = pipeline.open_gallery(&config.gallery)?;
    let mut recognizer = config.tuning.recognizer(pipeline, gallery.people())?;
    if let Some(s) = &config.strangers {
        recognizer.keep_strangers(Strangers::open(&s.dir, &model, threshold, s.days)?);
    }
    let rules = match &config.rules {
        Some(path) => Some(RulesFollower::start(
            path,
            &config.gallery,
            gallery.people(),
            threshold,
            config.mqtt.as_ref(),
            config.evidence.clone(),
            config.pins,
        )?),
        None => None,
    };
    if config.liveness
        || rules
            .as_ref()
            .is_some_and(|r| r.access.rules().needs_liveness())
    {
        recognizer.measure_liveness(LivenessConfig::default());
    }
    let snapshots = config
        .snapshots
        .as_deref()
        .map(Snapshots::new)
        .transpose()?;
    for s in sinks.iter_mut() {
        s.open(gallery.people())?;
    }
    let mut out = Emitter {
        snapshots,
        camera: config.camera.clone(),
        sinks,
    };
    let mut following = Following {
        follower,
        rules,
        people: gallery.people().to_vec(),
    };
    let mut skip_warnings = crate::support::warnings::Throttle::per_minute();
    let mut wait = RETRY_FIRST;
    let mut counts = Counts::default();
    let outcome = loop {
        let capture = match source
            .opener()
            .and_then(|open| Capture::start(open, stop.clone()))
        {
            Ok(c) => c,
            Err(e) if config.retry => {
                if !out.wait_for_source(&e, &mut wait, &mut following, &mut recognizer, &stop) {
                    break Ok(());
                }
                continue;
            }
            Err(e) => break Err(e),
        };
        for s in out.sinks.iter_mut() {
            s.started(capture.description(), &following.people);
            s.source_state(&SourceState::Up {
                live: capture.is_live(),
            });
        }
        let failed = loop {
            let item = match capture.next() {
                Ok(Some(item)) => item,
                Ok(None) => break None,
                Err(e) => break Some(e),
            };
            out.follow(&mut following, &mut recognizer);
            out.settle(&mut following.rules)?;
            match item {
                Item::Skipped(why) => skip_warnings.warn(&format!("skipped {why}")),
                Item::Idle => {}
                Item::Frame(mut frame) => {
                    wait = RETRY_FIRST;
                    if let Some(start) = config.frame_clock {
                        let rate = source.clock_rate();
                        frame.time = std::time::UNIX_EPOCH
                            + Duration::from_secs_f64(
                                (start + frame.number as f64 / rate).max(0.0),
                            );
                    }
                    let events = recognizer.process(&frame)?;
                    if recognizer.measures_liveness() {
                        let now = crate::access::factors::wall_now();
                        for v in recognizer.in_view() {
                            if let Some(verdict) = recognizer.liveness(v.track) {
                                config.evidence.track(v.track, verdict, now);
                            }
                        }
                    }
                    // The frame is done with: its pixels move behind an Arc without a copy.
                    let rgb = Arc::new(frame.photo.rgb);
                    let done = FrameDone {
                        number: frame.number,
                        rgb: &rgb,
                        recognizer: &recognizer,
                        dropped: counts.dropped + capture.counts().dropped,
                    };
                    for s in out.sinks.iter_mut() {
                        s.frame(&done);
                    }
                    out.emit(events, &mut following.rules)?;
                }
            }
        };
        counts = counts.plus(capture.counts());
        drop(capture);
        let stopped = stop.load(Ordering::Relaxed);
        let why = match failed {
            Some(e) => e,
            // A camera, or a stream from a pipe or a file, that ends can come back; a directory
            // of frames or standard input that ends is over.
            None if config.retry && !stopped && source.can_return() => {
                "the stream ended".to_string()
            }
            None => break Ok(()),
        };
        if !config.retry || stopped {
            break Err(why);
        }
        // Whoever was in view is gone with the picture: their visits end now.
        out.emit(recognizer.finish(), &mut following.rules)?;
        if !out.wait_for_source(&why, &mut wait, &mut following, &mut recognizer, &stop) {
            break Ok(());
        }
    };
    out.emit(recognizer.finish(), &mut following.rules)?;
    if outcome.is_ok() && config.linger && !stop.load(Ordering::Relaxed) {
        // The people, the history and the fleet stay useful: changes made now (in the web UI)
        // still reach Home Assistant and the other boards.
        for s in out.sinks.iter_mut() {
            s.source_ended();
        }
        while !stop.load(Ordering::Relaxed) {
            if let Some(people) = following.follower.poll() {
                for s in out.sinks.iter_mut() {
                    s.gallery(&people);
                }
            }
            out.settle(&mut following.rules)?;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if let Some(r) = &mut following.rules {
        for (decision, messages) in r.access.abandon() {
            out.decided(&decision, &messages)?;
        }
        r.access.finish();
    }
    for s in out.sinks.iter_mut() {
        s.finish(&recognizer, counts);
    }
    fleet::leave(fleet);
    outcome
}

/// What a run follows while frames come, or while it waits for its source: the gallery (which
/// the recognizer, the rules and the sinks take) and the rules file.
struct Following {
    follower: GalleryFollower,
    rules: Option<RulesFollower>,
    /// The people enrolled now.
    people: Vec<Person>,
}

impl Emitter<'_, '_> {
    /// Takes a gallery or rules change made by another writer.
    fn follow(&mut self, f: &mut Following, recognizer: &mut Recognizer) {
        if let Some(people) = f.follower.poll() {
            recognizer.set_people(&people);
            for s in self.sinks.iter_mut() {
                s.gallery(&people);
            }
            if let Some(r) = f.rules.as_mut() {
                r.set_people(&people);
            }
            f.people = people;
        }
        if let Some(r) = f.rules.as_mut() {
            r.poll();
            // An edit that asks for liveness starts its measuring.
            if r.access.rules().needs_liveness() {
                recognizer.measure_liveness(LivenessConfig::default());
            }
        }
    }

    /// Says why the source is down, then waits `wait` (doubled for the next time, up to
    /// [`RETRY_LONGEST`]) while following the gallery and the rules; false when stopped.
    fn wait_for_source(
        &mut self,
        why: &str,
        wait: &mut Duration,
        f: &mut Following,
        recognizer: &mut Recognizer,
        stop: &AtomicBool,
    ) -> bool {
        let this = *wait;
        *wait = (this * 2).min(RETRY_LONGEST);
        eprintln!(
            "facegate: warning: the frame source is down ({}); trying again in {} s",
            crate::support::terminal::escape_message(why),
            this.as_secs()
        );
        for s in self.sinks.iter_mut() {
            s.source_state(&SourceState::Retrying {
                reason: why.to_string(),
                wait: this,
            });
        }
        let until = std::time::Instant::now() + this;
        while std::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            self.follow(f, recognizer);
            if let Err(e) = self.settle(&mut f.rules) {
                eprintln!(
                    "facegate: warning: {}",
                    crate::support::terminal::escape_message(&e)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        !stop.load(Ordering::Relaxed)
    }
}

/// Hands events, and the access decisions they lead to, to the sinks.
struct Emitter<'s, 'a> {
    snapshots: Option<Snapshots>,
    camera: Option<String>,
    sinks: &'s mut [&'a mut dyn Sink],
}

impl Emitter<'_, '_> {
    fn emit(
        &mut self,
        events: Vec<Event>,
        rules: &mut Option<RulesFollower>,
    ) -> Result<(), String> {
        for e in &events {
            let saved = match &self.snapshots {
                Some(s) => s.save(e).unwrap_or_else(|err| {
                    eprintln!("facegate: warning: {err}");
                    None
                }),
                None => None,
            };
            let line = events::json_line(e, saved.as_deref(), self.camera.as_deref());
            for s in self.sinks.iter_mut() {
                s.event(e, &line)?;
            }
            let decided = rules
                .as_mut()
                .and_then(|r| r.access.decide(e, self.camera.as_deref()));
            if let Some((decision, messages)) = decided {
                self.decided(&decision, &messages)?;
            }
        }
        if !events.is_empty() {
            for s in self.sinks.iter_mut() {
                s.flush()?;
            }
        }
        Ok(())
    }
}

impl Emitter<'_, '_> {
    /// Hands an access decision, and the MQTT messages of its actions, to the sinks.
    fn decided(
        &mut self,
        decision: &crate::access::Decision,
        messages: &[(String, String)],
    ) -> Result<(), String> {
        let audit = decision.json();
        let done = DecisionDone {
            decision,
            audit: &audit,
            messages,
        };
        for s in self.sinks.iter_mut() {
            s.decision(&done)?;
        }
        Ok(())
    }

    /// Decides the faces that waited for factors besides the face, where the factors came or
    /// the wait is over.
    fn settle(&mut self, rules: &mut Option<RulesFollower>) -> Result<(), String> {
        let Some(r) = rules.as_mut() else {
            return Ok(());
        };
        let settled = r.access.poll();
        for (decision, messages) in &settled {
            self.decided(decision, messages)?;
        }
        if !settled.is_empty() {
            for s in self.sinks.iter_mut() {
                s.flush()?;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "mqtt")]
mod fleet {
    use super::LiveConfig;
    use crate::recognize::pipeline::Pipeline;
    use crate::sync::member::{Sync, SyncConfig};

    /// Joins the gallery to the fleet and starts syncing it, when the run asks for it.
    pub fn join(config: &LiveConfig, pipeline: &Pipeline) -> Result<Option<Sync>, String> {
        let Some(fleet) = &config.fleet else {
            return Ok(None);
        };
        let mut embedder = pipeline.share()?.embedder;
        let sync = Sync::start(
            SyncConfig {
                url: fleet.url.clone(),
                credentials: fleet.credentials.clone(),
                key: fleet.key.clone(),
                gallery: config.gallery.clone(),
                model: pipeline.model_info(),
            },
            Box::new(move |crops| embedder.embed(crops)),
        )?;
        eprintln!(
            "facegate: sync: sharing the gallery with the fleet through {} as board {}",
            fleet.url,
            sync.board()
        );
        Ok(Some(sync))
    }

    pub fn leave(sync: Option<Sync>) {
        if let Some(s) = sync {
            s.stop();
        }
    }
}

#[cfg(not(feature = "mqtt"))]
mod fleet {
    use super::LiveConfig;
    use crate::recognize::pipeline::Pipeline;

    pub enum Never {}

    pub fn join(config: &LiveConfig, _: &Pipeline) -> Result<Option<Never>, String> {
        match config.fleet {
            Some(_) => Err("this facegate was built without MQTT support (the `mqtt` feature), which --sync needs".into()),
            None => Ok(None),
        }
    }

    pub fn leave(_: Option<Never>) {}
}
