//! `facegate watch` and `facegate cameras`: live recognition from a camera, a directory of frames
//! or an MJPEG stream, with events as JSON lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use facegate::access::factors::Evidence;
use facegate::live::motion::MotionConfig;
use facegate::live::run::{Broker, FleetConfig, LiveConfig, StrangerConfig, Tuning};
use facegate::live::sinks::console::Console;
use facegate::live::sinks::json_lines::JsonLines;
use facegate::live::sinks::Sink;
use facegate::live::source::SourceSpec;
use facegate::live::tracker::TrackerConfig;
use facegate::recognize::pipeline::Pipeline;

use crate::faces::{GalleryArgs, ModelArgs};

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

impl SourceArgs {
    /// The source these flags name: --frames, --mjpeg, else the camera (0 by default).
    pub fn spec(&self) -> SourceSpec {
        if let Some(dir) = &self.frames {
            return SourceSpec::Directory {
                dir: dir.clone(),
                fps: self.fps,
            };
        }
        if let Some(path) = &self.mjpeg {
            return SourceSpec::Mjpeg {
                path: path.clone(),
                live: self.live,
            };
        }
        SourceSpec::Camera {
            index: self.camera.unwrap_or(0),
            width: self.size.0,
            height: self.size.1,
            fps: self.camera_fps,
        }
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
    /// Re-embed a recognised face every this many frames (others every frame; at once when its
    /// box jumps): how long a face that replaced it in place can go unnoticed
    #[arg(long, value_name = "FRAMES", default_value_t = 2, value_parser = crate::ranges::int(1u64, 1_000_000))]
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
    /// Count faces only in this zone: "[NAME=]x,y x,y x,y ...[ min=PX]", corners as fractions
    /// of the frame's width and height, min= the smallest face width there; repeat for more
    /// zones. Faces whose box centre is in no zone are never embedded, tracked or told about
    #[arg(long, value_name = "ZONE", value_parser = parse_zone)]
    pub zone: Vec<facegate::live::zones::Zone>,
    /// Run the detector on every frame, not only on frames where something moved or someone is
    /// in view
    #[arg(long)]
    pub no_motion_gate: bool,
    /// Grey levels (of 255) an 8x8 block must change by to count as motion
    #[arg(long, value_name = "LEVELS", default_value_t = 6.0, value_parser = crate::ranges::real(0.5, 255.0))]
    pub motion_level: f64,
    /// Detect a still frame with nobody in view at least every this many frames (the safety net
    /// for a face that appeared without moving)
    #[arg(long, value_name = "FRAMES", default_value_t = 50, value_parser = crate::ranges::int(1u64, 100_000))]
    pub motion_every: u64,
}

fn parse_zone(text: &str) -> Result<facegate::live::zones::Zone, String> {
    facegate::live::zones::Zone::parse(text)
}

impl TrackingArgs {
    pub fn tuning(&self) -> Tuning {
        Tuning {
            zones: self.zone.clone(),
            motion: (!self.no_motion_gate).then_some(MotionConfig {
                level: self.motion_level as f32,
                every: self.motion_every,
                ..MotionConfig::default()
            }),
            detect_size: self.detect_size,
            edge_pass_side: self.edge_pass_side,
            edge_pass_every: self.edge_pass_every,
            min_face: self.min_face,
            scale_factor: self.scale_factor,
            threads: self.threads,
            tracker: TrackerConfig {
                confirm: self.confirm,
                window: self.window,
                leave_after: self.leave_after,
                recheck_every: self.recheck,
            },
        }
    }

    /// Where strangers are kept for the gallery `gallery`, unless --no-unknowns.
    pub fn strangers(&self, gallery: &std::path::Path) -> Option<StrangerConfig> {
        (!self.no_unknowns).then(|| StrangerConfig {
            dir: self
                .unknowns
                .clone()
                .unwrap_or_else(|| gallery.join("unknowns")),
            days: self.unknowns_days,
        })
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
    /// When the camera or stream cannot be opened or fails, say why and try again (1 s, doubling
    /// up to 30 s) instead of exiting; `serve` always does
    #[arg(long)]
    pub retry_source: bool,
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
    /// Measure whether each face is a head or a picture held up to the camera (its landmarks'
    /// parallax as it moves) and say it in every event: "live" true, false, or null while the
    /// face has not moved enough, and "liveness", how far its parallax travelled. Rules with
    /// `liveness = "prefer"` or "require" turn it on by themselves
    #[arg(long)]
    pub liveness: bool,
    /// Seconds between --stats lines
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = crate::ranges::real(0.1, 86_400.0))]
    pub stats_every: f64,
}

impl WatchArgs {
    /// `--mqtt-user` with the password from FACEGATE_MQTT_PASSWORD.
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

impl WatchArgs {
    /// The live run these flags describe.
    pub fn live_config(&self) -> Result<LiveConfig, String> {
        Ok(LiveConfig {
            gallery: self.gallery.gallery.clone(),
            tuning: self.tracking.tuning(),
            strangers: self.tracking.strangers(&self.gallery.gallery),
            snapshots: self.snapshots.clone(),
            camera: self.camera_name.clone(),
            rules: self.rules.clone(),
            mqtt: self.mqtt.as_ref().map(|url| Broker {
                url: url.clone(),
                credentials: self.mqtt_credentials(),
            }),
            evidence: Evidence::default(),
            pins: false,
            liveness: self.liveness,
            frame_clock: self.frame_clock,
            fleet: self.fleet()?,
            linger: false,
            retry: self.retry_source,
        })
    }

    /// `--sync mqtt`: the fleet, with its key from FACEGATE_SYNC_KEY.
    fn fleet(&self) -> Result<Option<FleetConfig>, String> {
        let (Some(crate::fleet::SyncVia::Mqtt), Some(url)) = (self.sync, &self.mqtt) else {
            return Ok(None);
        };
        crate::fleet::config(url, self.mqtt_credentials()).map(Some)
    }

    /// The sinks besides the caller's own: JSON lines on stdout, status on stderr and, with
    /// --mqtt, the broker.
    pub fn sinks(&self) -> Result<Vec<Box<dyn Sink>>, String> {
        let stats = self
            .stats
            .then(|| Duration::from_secs_f64(self.stats_every));
        let mut sinks: Vec<Box<dyn Sink>> = vec![
            Box::new(JsonLines::new(std::io::stdout().lock())),
            Box::new(Console::new(self.gallery.gallery.clone(), stats)),
        ];
        if let Some(url) = &self.mqtt {
            sinks.push(crate::outbox::sink(url, self)?);
        }
        Ok(sinks)
    }
}

pub fn run(args: WatchArgs) -> Result<ExitCode, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    // `serve` may start on a gallery not made yet (people are enrolled through its web UI);
    // `watch` has no way to add anyone, so a missing gallery is a mistyped path.
    args.gallery.must_exist()?;
    let pipeline = args.model.load()?;
    live(&args, pipeline, stop, &mut [], None).map(|()| ExitCode::SUCCESS)
}

/// Runs the live pipeline with `watch`'s sinks and the caller's `extra` ones. `serve` passes
/// the evidence its API adds PINs to: its run lingers (a source that ends leaves the run
/// following the gallery until `stop`) and keeps trying a source that is down, since its UI
/// says why.
pub fn live(
    args: &WatchArgs,
    pipeline: Pipeline,
    stop: Arc<AtomicBool>,
    extra: &mut [&mut dyn Sink],
    serving: Option<Evidence>,
) -> Result<(), String> {
    let linger = serving.is_some();
    let config = LiveConfig {
        linger,
        retry: linger || args.retry_source,
        pins: linger,
        evidence: serving.unwrap_or_default(),
        ..args.live_config()?
    };
    let mut own = args.sinks()?;
    let mut sinks: Vec<&mut dyn Sink> = Vec::new();
    for s in own.iter_mut() {
        sinks.push(s.as_mut());
    }
    for s in extra.iter_mut() {
        sinks.push(&mut **s);
    }
    facegate::live::run::run(&config, pipeline, &args.source.spec(), stop, &mut sinks)
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
