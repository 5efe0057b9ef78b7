//! `facegate watch` and `facegate cameras`: live recognition from a camera, a directory of frames
//! or an MJPEG stream, with events as JSON lines.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use facegate::live::capture::{Capture, Frame, Item};
use facegate::live::events::{self, Snapshots};
use facegate::live::frames::directory::DirectorySource;
use facegate::live::frames::mjpeg::MjpegSource;
use facegate::live::frames::FrameSource;
use facegate::live::recognizer::Event;
use facegate::live::recognizer::{Recognizer, StageTotals};
use facegate::live::strangers::Strangers;
use facegate::live::tracker::TrackerConfig;
use facegate::store::gallery::{Gallery, IndexStamp, ModelInfo, Person};

use crate::faces::{GalleryArgs, ModelArgs, Pipeline};
use crate::outbox::Outbox;

#[derive(clap::Args, Clone)]
pub struct SourceArgs {
    /// Camera index (/dev/videoN) [default: 0 when no other source is given]
    #[arg(long, value_name = "N", conflicts_with_all = ["frames", "mjpeg"])]
    pub camera: Option<u32>,
    /// A directory of JPEG/PNG frames, processed in file-name order
    #[arg(long, value_name = "DIR", conflicts_with = "mjpeg")]
    pub frames: Option<PathBuf>,
    /// A stream of concatenated JPEGs (MJPEG), from a file or `-` for stdin
    #[arg(long, value_name = "FILE")]
    pub mjpeg: Option<PathBuf>,
    /// Release --frames at this rate, like a camera (frames are then dropped when behind)
    #[arg(long, value_name = "FPS", requires = "frames", value_parser = crate::ranges::real(0.001, 1000.0))]
    pub fps: Option<f64>,
    /// Treat the --mjpeg stream as live: drop the oldest frames when recognition falls behind
    #[arg(long, requires = "mjpeg")]
    pub live: bool,
    /// Camera resolution asked for (the closest the camera offers is used)
    #[arg(long, value_name = "WxH", default_value = "640x480", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Camera frame rate asked for
    #[arg(long, value_name = "FPS", default_value_t = 30, value_parser = crate::ranges::int(1u32, 1000))]
    pub camera_fps: u32,
}

impl Default for SourceArgs {
    /// The default camera in its default mode (what `facegate watch` with no flags uses).
    fn default() -> Self {
        SourceArgs {
            camera: None,
            frames: None,
            mjpeg: None,
            fps: None,
            live: false,
            size: (640, 480),
            camera_fps: 30,
        }
    }
}

/// Unix seconds, or an RFC 3339 time.
fn parse_clock(s: &str) -> Result<f64, String> {
    if let Ok(v) = s.parse::<f64>() {
        return Ok(v);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond() as f64 / 1e3)
        .map_err(|e| format!("expected Unix seconds or a time like 2026-12-01T07:30:00Z: {e}"))
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or("expected WIDTHxHEIGHT, like 640x480")?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|&n| (1..=16384).contains(&n))
    };
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err(format!(
            "expected WIDTHxHEIGHT, like 640x480 (1 to 16384 a side), not {s}"
        )),
    }
}

type Opener = Box<dyn FnOnce() -> Result<Box<dyn FrameSource>, String> + Send>;

impl SourceArgs {
    /// How to open the chosen source (on the capture thread).
    pub fn opener(&self) -> Result<Opener, String> {
        if let Some(dir) = self.frames.clone() {
            let fps = self.fps;
            return Ok(Box::new(move || {
                Ok(Box::new(DirectorySource::open(&dir, fps)?) as Box<dyn FrameSource>)
            }));
        }
        if let Some(path) = self.mjpeg.clone() {
            let live = self.live;
            return Ok(Box::new(move || {
                if path.as_os_str() == "-" {
                    return Ok(
                        Box::new(MjpegSource::new("stdin".into(), std::io::stdin(), live))
                            as Box<dyn FrameSource>,
                    );
                }
                let file = std::fs::File::open(&path)
                    .map_err(|e| format!("cannot open MJPEG stream {}: {e}", path.display()))?;
                Ok(Box::new(MjpegSource::new(
                    path.display().to_string(),
                    file,
                    live,
                )))
            }));
        }
        self.camera_opener(self.camera.unwrap_or(0))
    }

    #[cfg(all(feature = "camera", target_os = "linux"))]
    fn camera_opener(&self, index: u32) -> Result<Opener, String> {
        use facegate::live::frames::camera::{CameraRequest, CameraSource};
        let request = CameraRequest {
            index,
            width: self.size.0,
            height: self.size.1,
            fps: self.camera_fps,
        };
        Ok(Box::new(move || {
            Ok(Box::new(CameraSource::open(request)?) as Box<dyn FrameSource>)
        }))
    }

    #[cfg(not(all(feature = "camera", target_os = "linux")))]
    fn camera_opener(&self, index: u32) -> Result<Opener, String> {
        Err(format!(
            "cannot open camera {index}: this facegate was built without camera support (the `camera` feature, Linux only); use --frames or --mjpeg"
        ))
    }
}

#[derive(clap::Args, Clone)]
pub struct TrackingArgs {
    /// Where unknown faces are grouped into recurring strangers (each with a stable
    /// `unknown_id`, enrollable with `facegate unknowns enroll`) [default: GALLERY/unknowns]
    #[arg(long, value_name = "DIR")]
    pub unknowns: Option<PathBuf>,
    /// Do not keep unknown faces (no `unknown_id`, nothing of strangers stored)
    #[arg(long, conflicts_with = "unknowns")]
    pub no_unknowns: bool,
    /// Days after which a stranger not seen again is forgotten
    #[arg(long, value_name = "DAYS", default_value_t = 30.0, value_parser = crate::ranges::real(0.0, 36_500.0))]
    pub unknowns_days: f64,
    /// Matches of the same person needed within the window before "identified" (the same count
    /// of non-matches makes "unknown")
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = crate::ranges::int(1, facegate::live::tracker::MAX_WINDOW))]
    pub confirm: usize,
    /// Frames in which a face was embedded that the vote looks back over
    #[arg(long, value_name = "M", default_value_t = 5, value_parser = crate::ranges::int(1, facegate::live::tracker::MAX_WINDOW))]
    pub window: usize,
    /// Frames without the face after which a person has "left"
    #[arg(long, value_name = "FRAMES", default_value_t = 15, value_parser = crate::ranges::int(1u64, 1_000_000))]
    pub leave_after: u64,
    /// Re-embed a recognised face every this many frames (others every frame)
    #[arg(long, value_name = "FRAMES", default_value_t = 10, value_parser = crate::ranges::int(1u64, 1_000_000))]
    pub recheck: u64,
    /// Frames larger than this (longer side, pixels) are downscaled for detection
    #[arg(long, value_name = "PX", default_value_t = 640, value_parser = crate::ranges::int(32u32, 16384))]
    pub detect_size: u32,
    /// Ratio between the detector's pyramid levels: half as many levels as the photo default
    /// (1.1), for 1.5x the frame rate; tracking over frames makes up for the coarser scan
    #[arg(long, value_name = "F", default_value_t = 1.2, value_parser = crate::ranges::scale_factor)]
    pub scale_factor: f64,
    /// Smallest face looked for, in frame pixels
    #[arg(long, value_name = "PX", default_value_t = 60, value_parser = crate::ranges::int(0, crate::ranges::MAX_PX))]
    pub min_face: usize,
    /// Longest side of the frame for the edge pass (YuNet's look for faces cut by the frame's
    /// edge, which the cascade cannot find): smaller is faster, and finds only larger faces
    #[arg(long, value_name = "PX", default_value_t = 160, value_parser = crate::ranges::int(32u32, 4096))]
    pub edge_pass_side: u32,
    /// Run the edge pass on one frame in this many (its track carries a face between passes)
    #[arg(long, value_name = "FRAMES", default_value_t = 3, value_parser = crate::ranges::int(1u64, 1000))]
    pub edge_pass_every: u64,
    /// Threads for the detector's scan (0: one per core); embedding runs on one
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = crate::ranges::int(0, crate::ranges::MAX_THREADS))]
    pub threads: usize,
}

impl TrackingArgs {
    pub fn tracker(&self) -> TrackerConfig {
        TrackerConfig {
            confirm: self.confirm,
            window: self.window,
            leave_after: self.leave_after,
            recheck_every: self.recheck,
        }
    }
}

#[derive(clap::Args)]
pub struct WatchArgs {
    /// A TOML file of settings: keys are these flags' long names (`gallery = "/var/lib/facegate"`,
    /// `camera = 0`, `mqtt = "mqtt://broker"`); flags given here override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    #[command(flatten)]
    pub gallery: GalleryArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Save a picture of the face of each identified/unknown event in this directory
    #[arg(long, value_name = "DIR")]
    pub snapshots: Option<PathBuf>,
    /// Print frames per second, per-stage milliseconds and dropped frames to stderr
    #[arg(long)]
    pub stats: bool,
    /// Publish each event (the same JSON line) to this MQTT broker: mqtt://host[:port]
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// MQTT topic for events
    #[arg(
        long,
        value_name = "TOPIC",
        default_value = "facegate/events",
        requires = "mqtt"
    )]
    pub mqtt_topic: String,
    /// MQTT user name; the password is read from FACEGATE_MQTT_PASSWORD (never a flag, which
    /// other users could see in the process list)
    #[arg(long, value_name = "USER", requires = "mqtt")]
    pub mqtt_user: Option<String>,
    /// Do not announce this board to Home Assistant (MQTT discovery is on whenever --mqtt is)
    #[arg(long, requires = "mqtt")]
    pub no_ha: bool,
    /// Home Assistant's discovery prefix
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "homeassistant",
        requires = "mqtt"
    )]
    pub ha_prefix: String,
    /// This board's camera, named in every event and Home Assistant entity [default in Home
    /// Assistant: the host name]
    #[arg(long, value_name = "NAME")]
    pub camera_name: Option<String>,
    /// Access rules (TOML): who may pass when, and what happens (GPIO, MQTT, webhook, command);
    /// every decision is printed as an "access" JSON line (and published to MQTT
    /// `facegate/access`). Re-read when the file changes; a bad edit keeps the old rules
    #[arg(long, value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// Give --frames and --mjpeg frames scripted times: frame N is at START + N / --fps (10 fps
    /// without --fps), START in Unix seconds or like 2026-12-01T07:30:00Z (for testing rules)
    #[arg(long, value_name = "START", value_parser = parse_clock)]
    pub frame_clock: Option<f64>,
    /// Share the gallery with other boards through the --mqtt broker: every enrollment, rename,
    /// shot change and removal here is published (retained, signed with FACEGATE_SYNC_KEY) and
    /// every board applies the others'. The gallery's ids become fleet-wide on the first run
    #[arg(long, value_name = "VIA", value_enum, requires = "mqtt")]
    pub sync: Option<crate::fleet::SyncVia>,
    /// Seconds between --stats lines
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = crate::ranges::real(0.1, 86_400.0))]
    pub stats_every: f64,
}

impl WatchArgs {
    /// `--mqtt-user` with the password from FACEGATE_MQTT_PASSWORD.
    #[cfg(feature = "mqtt")]
    pub fn mqtt_credentials(&self) -> Option<(String, String)> {
        self.mqtt_user.clone().map(|u| {
            (
                u,
                std::env::var("FACEGATE_MQTT_PASSWORD").unwrap_or_default(),
            )
        })
    }

    /// The camera's name: `--camera-name`, else the host's name.
    #[cfg(feature = "mqtt")]
    pub fn camera_name(&self) -> String {
        self.camera_name.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "facegate".into())
        })
    }
}

/// Builds the recognizer for a stream: the pipeline's stages, tuned for frames. Also returns the
/// gallery it matches against, and the model it was embedded with (to re-read the gallery when it
/// changes).
pub fn recognizer(
    pipeline: Pipeline,
    gallery: &GalleryArgs,
    tracking: &TrackingArgs,
) -> Result<(Recognizer, Gallery, ModelInfo), String> {
    let g = pipeline.open_gallery(&gallery.gallery)?;
    let info = pipeline.model_info();
    let join = pipeline.threshold;
    let mut r = recognizer_for(pipeline, g.people(), tracking)?;
    if !tracking.no_unknowns {
        let dir = tracking
            .unknowns
            .clone()
            .unwrap_or_else(|| gallery.gallery.join("unknowns"));
        r.keep_strangers(Strangers::open(&dir, &info, join, tracking.unknowns_days)?);
    }
    Ok((r, g, info))
}

/// A recognizer over `people`, from a loaded pipeline.
pub fn recognizer_for(
    pipeline: Pipeline,
    people: &[facegate::store::gallery::Person],
    tracking: &TrackingArgs,
) -> Result<Recognizer, String> {
    let Pipeline {
        mut finder,
        embedder,
        threshold,
    } = pipeline;
    finder.detect_max_side = Some(tracking.detect_size);
    finder.edge_pass_side = tracking.edge_pass_side;
    finder.edge_pass_every = tracking.edge_pass_every;
    finder.params.min_size = (tracking.min_face, tracking.min_face);
    finder.params.scale_factor = tracking.scale_factor;
    finder.params.validate()?;
    finder.params.threads = if tracking.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        tracking.threads
    };
    Recognizer::new(finder, embedder, people, threshold, tracking.tracker())
}

/// What a live run does besides printing events: `serve` keeps frames and events for its API.
pub trait Observer {
    /// The source is open; `people` are enrolled.
    fn started(&mut self, _source: &str, _people: &[Person]) {}
    /// A frame went through the pipeline.
    fn frame(&mut self, _frame: Frame, _recognizer: &Recognizer, _dropped: u64) {}
    /// An event was printed (and published).
    fn event(&mut self, _event: &Event) {}
    /// An access decision was printed (and published).
    fn decision(&mut self, _decision: &facegate::access::Decision) {}
    /// The gallery changed on disk and was re-read.
    fn gallery(&mut self, _people: &[Person]) {}
}

/// `watch` itself observes nothing more.
struct Quiet;
impl Observer for Quiet {}

/// How often the live loop looks for a gallery changed by another process (an enrollment
/// through the CLI or the web UI): cheap, one `stat` of the index.
const GALLERY_POLL: Duration = Duration::from_millis(500);

pub fn run(args: WatchArgs) -> Result<ExitCode, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    // `serve` may start on a gallery not made yet (people are enrolled through its web UI);
    // `watch` has no way to add anyone, so a missing gallery is a mistyped path.
    args.gallery.must_exist()?;
    let pipeline = args.model.load()?;
    live(&args, pipeline, stop, &mut Quiet).map(|()| ExitCode::SUCCESS)
}

/// Runs the live pipeline (`pipeline`, loaded from `args.model`) until the source ends or
/// `stop` is set: events as JSON lines on stdout (and MQTT, and snapshots), the gallery followed
/// as it changes.
pub fn live(
    args: &WatchArgs,
    pipeline: Pipeline,
    stop: Arc<AtomicBool>,
    observer: &mut dyn Observer,
) -> Result<(), String> {
    if !args.stats_every.is_finite() || args.stats_every <= 0.0 {
        return Err("--stats-every must be a positive number of seconds".into());
    }
    let threshold = pipeline.threshold;
    // Joining the fleet may give people new ids: before the gallery is read for matching.
    let fleet = crate::fleet::Fleet::start(args, &pipeline)?;
    let (mut recognizer, gallery, model) = recognizer(pipeline, &args.gallery, &args.tracking)?;
    let mut rules = match &args.rules {
        Some(path) => Some(RulesFollower::start(
            path,
            gallery.people(),
            threshold,
            args,
        )?),
        None => None,
    };
    let snapshots = args.snapshots.as_deref().map(Snapshots::new).transpose()?;
    let mut mqtt = match &args.mqtt {
        Some(url) => Some(Outbox::connect(url, args, gallery.people())?),
        None => None,
    };
    let camera = args.camera_name.clone();
    let capture = Capture::start(args.source.opener()?, stop)?;
    let people = gallery.people().len();
    eprintln!(
        "facegate: watching {} with {people} {} enrolled",
        facegate::support::terminal::escape(capture.description()),
        if people == 1 { "person" } else { "people" }
    );
    if people == 0 {
        eprintln!(
            "facegate: warning: the gallery {} is empty: every face is unknown",
            facegate::support::terminal::path(&args.gallery.gallery)
        );
    }
    observer.started(capture.description(), gallery.people());
    let mut follower = GalleryFollower::new(&args.gallery.gallery, model);

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut emit = |events: Vec<facegate::live::recognizer::Event>,
                    observer: &mut dyn Observer,
                    mqtt: &mut Option<Outbox>,
                    rules: &mut Option<RulesFollower>|
     -> Result<(), String> {
        for e in &events {
            let saved = match &snapshots {
                Some(s) => s.save(e).unwrap_or_else(|err| {
                    eprintln!("facegate: warning: {err}");
                    None
                }),
                None => None,
            };
            let line = events::json_line(e, saved.as_deref(), camera.as_deref());
            writeln!(out, "{line}").map_err(|e| format!("cannot write events to stdout: {e}"))?;
            if let Some(m) = mqtt {
                m.event(e, &line);
            }
            observer.event(e);
            if let Some((decision, messages)) = rules
                .as_mut()
                .and_then(|r| r.access.decide(e, camera.as_deref()))
            {
                let audit = decision.json();
                writeln!(out, "{audit}")
                    .map_err(|e| format!("cannot write events to stdout: {e}"))?;
                if let Some(m) = mqtt {
                    m.message("facegate/access", &audit);
                    for (topic, payload) in &messages {
                        m.message(topic, payload);
                    }
                }
                observer.decision(&decision);
            }
        }
        if !events.is_empty() {
            out.flush()
                .map_err(|e| format!("cannot write events to stdout: {e}"))?;
        }
        Ok(())
    };

    let mut stats = Stats::new(Duration::from_secs_f64(args.stats_every));
    let mut skip_warnings = facegate::support::warnings::Throttle::per_minute();
    let outcome = loop {
        let item = match capture.next() {
            Ok(Some(item)) => item,
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        };
        if let Some(people) = follower.poll() {
            recognizer.set_people(&people);
            eprintln!(
                "facegate: the gallery changed: {} {} enrolled",
                people.len(),
                if people.len() == 1 {
                    "person"
                } else {
                    "people"
                }
            );
            observer.gallery(&people);
            if let Some(m) = &mut mqtt {
                m.gallery(&people);
            }
            if let Some(r) = &mut rules {
                r.people = people.iter().map(|p| p.entry.name.clone()).collect();
            }
        }
        if let Some(r) = &mut rules {
            r.poll();
        }
        match item {
            Item::Skipped(why) => skip_warnings.warn(&format!("skipped {why}")),
            Item::Frame(mut frame) => {
                if let Some(start) = args.frame_clock {
                    let rate = args.source.fps.unwrap_or(10.0);
                    frame.time = std::time::UNIX_EPOCH
                        + Duration::from_secs_f64((start + frame.number as f64 / rate).max(0.0));
                }
                let events = recognizer.process(&frame)?;
                observer.frame(frame, &recognizer, capture.counts().dropped);
                emit(events, observer, &mut mqtt, &mut rules)?;
                if args.stats {
                    stats.maybe_print(&recognizer.totals(), capture.counts().dropped);
                }
            }
        }
    };
    emit(recognizer.finish(), observer, &mut mqtt, &mut rules)?;
    if let Some(r) = &mut rules {
        r.access.finish();
    }
    if let Some(m) = mqtt {
        m.close();
    }
    if let Some(f) = fleet {
        f.stop();
    }
    if args.stats {
        stats.print(&recognizer.totals(), capture.counts().dropped);
    }
    let counts = capture.counts();
    eprintln!(
        "facegate: {} frames, {} dropped, {} unreadable",
        recognizer.totals().frames,
        counts.dropped,
        counts.skipped
    );
    outcome
}

/// The access rules in force, and the file they came from: re-read when it changes (checked
/// against the people enrolled then); a file that no longer checks keeps the old rules.
struct RulesFollower {
    access: facegate::access::Access,
    path: PathBuf,
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
    people: Vec<String>,
}

impl RulesFollower {
    fn start(
        path: &Path,
        people: &[Person],
        threshold: f32,
        args: &WatchArgs,
    ) -> Result<RulesFollower, String> {
        let people: Vec<String> = people.iter().map(|p| p.entry.name.clone()).collect();
        let rules = read_rules(path, &people)?;
        let publishes = rules
            .actions
            .iter()
            .any(|(_, a)| matches!(a, facegate::access::rules::Action::Mqtt(_)));
        if publishes && args.mqtt.is_none() {
            return Err(format!(
                "rules {}: an action publishes to MQTT, but no --mqtt broker is given",
                facegate::support::terminal::path(path)
            ));
        }
        let access =
            facegate::access::Access::start(rules, &facegate::access::actions::Chardev, threshold)
                .map_err(|e| format!("rules {}: {e}", facegate::support::terminal::path(path)))?;
        Ok(RulesFollower {
            access,
            path: path.to_path_buf(),
            stamp: file_stamp(path),
            checked: Instant::now(),
            people,
        })
    }

    fn poll(&mut self) {
        if self.checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.checked = Instant::now();
        let stamp = file_stamp(&self.path);
        if stamp == self.stamp {
            return;
        }
        self.stamp = stamp;
        match read_rules(&self.path, &self.people).and_then(|r| self.access.replace(r)) {
            Ok(()) => eprintln!(
                "facegate: rules {} re-read: {} rules",
                facegate::support::terminal::path(&self.path),
                self.access.rules().rules.len()
            ),
            Err(e) => eprintln!(
                "facegate: warning: rules {} not re-read, the old rules stay: {}",
                facegate::support::terminal::path(&self.path),
                facegate::support::terminal::escape_message(&e)
            ),
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reads and checks a rules file against the people enrolled.
pub fn read_rules(
    path: &Path,
    people: &[String],
) -> Result<facegate::access::rules::Rules, String> {
    let text = facegate::support::limits::read_text(
        path,
        facegate::support::limits::MAX_CONFIG_BYTES,
        "rules file",
    )
    .map_err(|e| format!("rules {}: {e}", facegate::support::terminal::path(path)))?;
    facegate::access::rules::Rules::parse(&text, people)
        .map_err(|e| format!("rules {}: {e}", facegate::support::terminal::path(path)))
}

/// Notices when another process commits a change to the gallery, and re-reads it.
struct GalleryFollower {
    dir: PathBuf,
    model: ModelInfo,
    stamp: Option<IndexStamp>,
    checked: Instant,
    warnings: facegate::support::warnings::Throttle,
}

impl GalleryFollower {
    fn new(dir: &Path, model: ModelInfo) -> GalleryFollower {
        GalleryFollower {
            dir: dir.to_path_buf(),
            model,
            stamp: Gallery::index_stamp(dir),
            checked: Instant::now(),
            warnings: facegate::support::warnings::Throttle::per_minute(),
        }
    }

    /// The gallery's people when it changed since the last look.
    fn poll(&mut self) -> Option<Vec<Person>> {
        if self.checked.elapsed() < GALLERY_POLL {
            return None;
        }
        self.checked = Instant::now();
        let stamp = Gallery::index_stamp(&self.dir);
        if stamp == self.stamp {
            return None;
        }
        match Gallery::open(&self.dir, &self.model) {
            Ok(g) => {
                self.stamp = stamp;
                Some(g.people().to_vec())
            }
            Err(e) => {
                // Keep matching against the gallery as it was; say why, and try again later.
                self.warnings
                    .warn(&format!("the changed gallery could not be read: {e}"));
                None
            }
        }
    }
}

/// Periodic `--stats` lines, each about the interval since the previous one.
struct Stats {
    every: Duration,
    since: Instant,
    last: StageTotals,
    last_dropped: u64,
}

impl Stats {
    fn new(every: Duration) -> Stats {
        Stats {
            every,
            since: Instant::now(),
            last: StageTotals::default(),
            last_dropped: 0,
        }
    }

    fn maybe_print(&mut self, totals: &StageTotals, dropped: u64) {
        if self.since.elapsed() >= self.every {
            self.print(totals, dropped);
        }
    }

    fn print(&mut self, totals: &StageTotals, dropped: u64) {
        let part = totals.since(&self.last);
        let seconds = self.since.elapsed().as_secs_f64().max(1e-9);
        let [detect, landmarks, embed, track] = part.per_frame_ms();
        eprintln!(
            "facegate: stats: {:.1} fps, per frame: detect {detect:.1} ms, landmarks+align {landmarks:.1} ms, embed {embed:.1} ms, match+track {track:.2} ms; {:.2} faces/frame, {} embedded, {} dropped",
            part.frames as f64 / seconds,
            part.faces as f64 / part.frames.max(1) as f64,
            part.embedded,
            dropped - self.last_dropped,
        );
        self.since = Instant::now();
        self.last = *totals;
        self.last_dropped = dropped;
    }
}

#[derive(clap::Args)]
pub struct CamerasArgs {}

#[cfg(all(feature = "camera", target_os = "linux"))]
pub fn cameras(_: CamerasArgs) -> Result<ExitCode, String> {
    let lines = facegate::live::frames::camera::list()?;
    if lines.is_empty() {
        eprintln!("facegate: no camera found (no /dev/video* device that V4L2 can open)");
        return Ok(ExitCode::FAILURE);
    }
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(not(all(feature = "camera", target_os = "linux")))]
pub fn cameras(_: CamerasArgs) -> Result<ExitCode, String> {
    Err("this facegate was built without camera support (the `camera` feature, Linux only)".into())
}
