//! `facegate bench latency`: time to decision, measured the way a door owner sees it. A visit
//! stream (an empty hallway with sensor noise, then visitors stepping into view, staying,
//! leaving; every third a stranger) is played in real time at 10, 15 and 30 fps into a `watch`
//! process (this binary, the shipped model, access rules with a command action), once with motion
//! gating and once without. Per visit: the first frame showing the face -> the `identified` or
//! `unknown` event -> the door action. And the watch process's CPU seconds per minute of empty
//! hallway and of the visits.
//!
//! The times are wall clock: a frame's time is when it was due (a camera does not wait for the
//! pipeline), an event's when its line arrived, an action's what `date` said when it ran.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use image::{imageops, Rgb, RgbImage};

use facegate::access::factors::wall_now;
use facegate::support::rng::Rng;

#[derive(clap::Args)]
pub struct BenchLatencyArgs {
    /// Directory with the test photos (obama.jpg is enrolled; obama2.jpg visits, biden.jpg is
    /// the stranger)
    #[arg(long, value_name = "DIR", default_value = "tests/fixtures/photos")]
    pub photos: PathBuf,
    /// Frame rates to play the stream at
    #[arg(long, value_delimiter = ',', default_value = "10,15,30", value_parser = crate::ranges::int(1u64, 60))]
    pub fps: Vec<u64>,
    /// Visits per run (every third is a stranger)
    #[arg(long, value_name = "N", default_value_t = 6, value_parser = crate::ranges::int(1u64, 100))]
    pub visits: u64,
    /// Seconds of empty hallway before the first visit (the first 3 are the warm-up)
    #[arg(long, value_name = "S", default_value_t = 20, value_parser = crate::ranges::int(6u64, 3600))]
    pub hallway: u64,
    /// Where the run's gallery, rules and marks are made (removed afterwards)
    #[arg(long, value_name = "DIR", default_value = "/tmp")]
    pub scratch: PathBuf,
}

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// A visitor stays this long, then the hallway is empty this long before the next.
const STAY_S: f64 = 3.0;
const GAP_S: f64 = 3.0;
/// The hallway's first seconds, while the motion gate learns the background, are not counted.
const WARM_UP_S: f64 = 3.0;
/// The kernel's clock ticks (USER_HZ), which `/proc/<pid>/stat` counts CPU time in: 100 on
/// every Linux architecture facegate ships for.
const TICKS_PER_S: f64 = 100.0;

pub fn run(args: BenchLatencyArgs) -> Result<ExitCode, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = args
        .scratch
        .join(format!("facegate-bench-latency-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = measure(&args, &me, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(args: &BenchLatencyArgs, me: &Path, dir: &Path) -> Result<ExitCode, String> {
    let gallery = dir.join("gallery");
    let enrolled = Command::new(me)
        .args(["enroll", "--name", "Obama", "--gallery"])
        .arg(&gallery)
        .arg(args.photos.join("obama.jpg"))
        .output()
        .map_err(|e| e.to_string())?;
    if !enrolled.status.success() {
        return Err(format!(
            "enrolling obama.jpg from {} failed: {}",
            args.photos.display(),
            String::from_utf8_lossy(&enrolled.stderr).trim()
        ));
    }
    let visitor = sprite(&args.photos.join("obama2.jpg"))?;
    let stranger = sprite(&args.photos.join("biden.jpg"))?;
    let marks = dir.join("marks");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[actions.mark]\ncommand = [\"/bin/sh\", \"-c\", \"date +%s.%N >> '{}'\"]\n\
             [[rules]]\nname = \"door\"\nwho = [\"Obama\"]\ndo = [\"mark\"]\ncooldown = 0\n",
            marks.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    for &fps in &args.fps {
        let stream = Stream::new(fps, args, &visitor, &stranger)?;
        let mut runs = Vec::new();
        for gate in [false, true] {
            let _ = std::fs::remove_file(&marks);
            let run = play(me, &gallery, &rules, &marks, &stream, gate)?;
            println!("{}", run.json(fps, gate));
            runs.push(run);
        }
        let (off, on) = (&runs[0], &runs[1]);
        println!(
            "{}",
            serde_json::json!({
                "fps": fps,
                "gate_on_vs_off": {
                    "cpu_empty_hallway": ratio(on.cpu_empty, off.cpu_empty),
                    "cpu_visits": ratio(on.cpu_visits, off.cpu_visits),
                    "decision_p95": ratio(percentile(&on.decisions(), 0.95), percentile(&off.decisions(), 0.95)),
                }
            })
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(round(a / b)),
        _ => None,
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// A visitor as the camera sees them: their photo, 260 pixels tall.
fn sprite(path: &Path) -> Result<RgbImage, String> {
    let photo = facegate::imaging::photo::load(path).map_err(|e| e.to_string())?;
    let h = 260;
    let w = (photo.rgb.width() * h / photo.rgb.height().max(1)).clamp(1, WIDTH - 40);
    Ok(imageops::resize(
        &photo.rgb,
        w,
        h,
        imageops::FilterType::Triangle,
    ))
}

/// The hallway: a lit wall with a gradient, and sensor noise that differs in every frame.
fn hallway(rng: &mut Rng) -> RgbImage {
    RgbImage::from_fn(WIDTH, HEIGHT, |x, y| {
        let noise = (rng.next_u64() % 9) as i32 - 4;
        let v = (90 + (x / 8) as i32 / 2 + (y / 16) as i32 + noise).clamp(0, 255) as u8;
        Rgb([v, v.saturating_add(4), v.saturating_sub(6)])
    })
}

fn jpeg(img: &RgbImage) -> Result<Vec<u8>, String> {
    facegate::imaging::jpeg::encode(img, 85.0)
}

/// One run's frames, encoded before it starts (the bench must not steal the CPU it measures),
/// and where each visit starts.
struct Stream {
    fps: u64,
    /// Encoded frames: empty hallways (cycled), then each kind of visit's frames.
    empty: Vec<Vec<u8>>,
    known: Vec<Vec<u8>>,
    unknown: Vec<Vec<u8>>,
    /// Per frame: which list, which entry.
    order: Vec<(Kind, usize)>,
    /// The frame each visit starts at, and whether it is a stranger.
    visits: Vec<(usize, bool)>,
    /// The hallway's counted span, and the visits' span (frame numbers).
    empty_span: (usize, usize),
    visits_span: (usize, usize),
}

#[derive(Clone, Copy)]
enum Kind {
    Empty,
    Known,
    Unknown,
}

impl Stream {
    fn new(
        fps: u64,
        args: &BenchLatencyArgs,
        visitor: &RgbImage,
        stranger: &RgbImage,
    ) -> Result<Stream, String> {
        let mut rng = Rng::new(fps);
        let empty = (0..8)
            .map(|_| jpeg(&hallway(&mut rng)))
            .collect::<Result<Vec<_>, _>>()?;
        let stay = (STAY_S * fps as f64).round() as usize;
        // The visitor steps into view and walks closer (up to a fifth larger) while they stay.
        let visit = |who: &RgbImage, rng: &mut Rng| -> Result<Vec<Vec<u8>>, String> {
            (0..stay)
                .map(|i| {
                    let grow = 1.0 + 0.2 * i as f64 / stay as f64;
                    let (w, h) = (
                        (who.width() as f64 * grow) as u32,
                        (who.height() as f64 * grow) as u32,
                    );
                    let scaled = imageops::resize(who, w, h, imageops::FilterType::Triangle);
                    let mut frame = hallway(rng);
                    let x = (WIDTH.saturating_sub(w) / 2) as i64;
                    let y = (HEIGHT.saturating_sub(h) / 3) as i64;
                    imageops::overlay(&mut frame, &scaled, x, y);
                    jpeg(&frame)
                })
                .collect()
        };
        let known = visit(visitor, &mut rng)?;
        let unknown = visit(stranger, &mut rng)?;
        let per_s = fps as usize;
        let mut order = Vec::new();
        let empty_frames = |n: usize, order: &mut Vec<(Kind, usize)>| {
            for _ in 0..n {
                order.push((Kind::Empty, order.len() % 8));
            }
        };
        empty_frames(args.hallway as usize * per_s, &mut order);
        let empty_span = ((WARM_UP_S * fps as f64) as usize, order.len());
        let mut visits = Vec::new();
        let gap = (GAP_S * fps as f64).round() as usize;
        for v in 0..args.visits as usize {
            let stranger = v % 3 == 2;
            visits.push((order.len(), stranger));
            let kind = if stranger { Kind::Unknown } else { Kind::Known };
            order.extend((0..stay).map(|i| (kind, i)));
            empty_frames(gap, &mut order);
        }
        let visits_span = (empty_span.1, order.len());
        empty_frames(per_s, &mut order);
        Ok(Stream {
            fps,
            empty,
            known,
            unknown,
            order,
            visits,
            empty_span,
            visits_span,
        })
    }

    fn frame(&self, i: usize) -> &[u8] {
        let (kind, k) = self.order[i];
        match kind {
            Kind::Empty => &self.empty[k % self.empty.len()],
            Kind::Known => &self.known[k],
            Kind::Unknown => &self.unknown[k],
        }
    }

    /// When frame `i` is due, in seconds after the first.
    fn due(&self, i: usize) -> f64 {
        i as f64 / self.fps as f64
    }
}

/// What one run measured.
struct Run {
    /// Per visit: stranger or not, seconds from the first face frame to the decision event and
    /// to the door action (`None`: none came before the next visit).
    visits: Vec<(bool, Option<f64>, Option<f64>)>,
    cpu_empty: Option<f64>,
    cpu_visits: Option<f64>,
    /// Frames the detector ran on, as watch's closing line says.
    detected: Option<u64>,
    frames: usize,
}

impl Run {
    fn decisions(&self) -> Vec<f64> {
        self.visits.iter().filter_map(|v| v.1).collect()
    }

    fn json(&self, fps: u64, gate: bool) -> serde_json::Value {
        let decisions = self.decisions();
        let identified: Vec<f64> = self
            .visits
            .iter()
            .filter(|v| !v.0)
            .filter_map(|v| v.1)
            .collect();
        let actions: Vec<f64> = self.visits.iter().filter_map(|v| v.2).collect();
        let stats = |list: &[f64]| {
            serde_json::json!({
                "p50_s": percentile(list, 0.5),
                "p95_s": percentile(list, 0.95),
                "max_s": list.iter().copied().reduce(f64::max).map(round),
            })
        };
        serde_json::json!({
            "fps": fps,
            "motion_gate": gate,
            "visits": self.visits.len(),
            "decided": decisions.len(),
            "first_face_to_decision": stats(&decisions),
            "enrolled_first_face_to_identified": stats(&identified),
            "first_face_to_door_action": stats(&actions),
            "door_actions": actions.len(),
            "cpu_s_per_min_empty_hallway": self.cpu_empty.map(round),
            "cpu_s_per_min_visits": self.cpu_visits.map(round),
            "frames": self.frames,
            "frames_detected": self.detected,
        })
    }
}

/// The `q` quantile (nearest rank) of `list`.
fn percentile(list: &[f64], q: f64) -> Option<f64> {
    if list.is_empty() {
        return None;
    }
    let mut sorted = list.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(round(sorted[rank - 1]))
}

/// The CPU seconds `pid` has used so far (user and system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

/// Plays the stream into a `watch` process in real time and times its decisions.
fn play(
    me: &Path,
    gallery: &Path,
    rules: &Path,
    marks: &Path,
    stream: &Stream,
    gate: bool,
) -> Result<Run, String> {
    let mut watch = Command::new(me);
    watch
        .args(["watch", "--mjpeg", "-", "--min-face", "40", "--gallery"])
        .arg(gallery)
        .arg("--rules")
        .arg(rules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if !gate {
        watch.arg("--no-motion-gate");
    }
    let mut child: Child = watch
        .spawn()
        .map_err(|e| format!("cannot start watch: {e}"))?;
    let pid = child.id();
    let events: Arc<Mutex<Vec<(f64, String)>>> = Arc::default();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let seen = events.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let event = serde_json::from_str::<serde_json::Value>(&line)
                .ok()
                .and_then(|v| v["event"].as_str().map(str::to_string))
                .unwrap_or_default();
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((wall_now(), event));
        }
    });
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    // Let the process load its models before the first frame is due.
    std::thread::sleep(Duration::from_secs(2));
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let start = Instant::now();
    let start_unix = wall_now();
    let mut cpu_at = Vec::new();
    let marks_at = [
        stream.empty_span.0,
        stream.empty_span.1,
        stream.visits_span.1,
    ];
    for i in 0..stream.order.len() {
        let due = start + Duration::from_secs_f64(stream.due(i));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if marks_at.contains(&i) {
            cpu_at.push((i, cpu_seconds(pid)));
        }
        stdin
            .write_all(stream.frame(i))
            .map_err(|e| format!("watch stopped taking frames: {e}"))?;
    }
    drop(stdin);
    let status = child.wait().map_err(|e| e.to_string())?;
    let _ = reader.join();
    let log = log.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("watch failed: {}", log.trim()));
    }
    let events = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let actions: Vec<f64> = std::fs::read_to_string(marks)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let mut visits = Vec::new();
    for (n, &(first, stranger)) in stream.visits.iter().enumerate() {
        let from = start_unix + stream.due(first);
        let until = stream
            .visits
            .get(n + 1)
            .map_or(f64::INFINITY, |&(next, _)| start_unix + stream.due(next));
        let decision = events
            .iter()
            .find(|(t, e)| *t >= from && *t < until && (e == "identified" || e == "unknown"))
            .map(|(t, _)| t - from);
        let action = actions
            .iter()
            .find(|&&t| t >= from && t < until)
            .map(|t| t - from);
        visits.push((stranger, decision, action));
    }
    let per_min = |a: usize, b: usize| -> Option<f64> {
        let cpu = |i| cpu_at.iter().find(|(f, _)| *f == i).and_then(|(_, c)| *c);
        let seconds = stream.due(b) - stream.due(a);
        Some((cpu(b)? - cpu(a)?) / seconds * 60.0)
    };
    let detected = log
        .split("unreadable, ")
        .nth(1)
        .and_then(|r| r.split(" detected").next())
        .and_then(|n| n.trim().parse().ok());
    Ok(Run {
        visits,
        cpu_empty: per_min(stream.empty_span.0, stream.empty_span.1),
        cpu_visits: per_min(stream.visits_span.0, stream.visits_span.1),
        detected,
        frames: stream.order.len(),
    })
}
