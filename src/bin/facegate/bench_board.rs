//! `facegate bench board`: one markdown table of what this board does, for a Pi or Jetson owner to
//! paste into an issue: detection, landmarks, embedding per precision, matching, `watch` frames
//! per second, and `watch`'s peak resident memory.
//!
//! Everything is measured here, on the board, against the same 640x480 scenes `bench watch` uses
//! (built from the test photos, which a board needs a copy of). `watch`'s memory is that of a real
//! `facegate watch` child process over frames written to a temporary folder, not of this process
//! (which holds the photos, the scenes and the benchmark's own buffers).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use facegate::embed::{cosine, Embedder, Float, Precision};

use crate::bench_watch::{compose, face_tile, peak_rss_mb, run_scene};
use crate::faces::ModelArgs;
use crate::watch::TrackingArgs;

#[derive(clap::Args)]
pub struct BenchBoardArgs {
    /// The test photos the scenes are built from (copy tests/fixtures/photos to the board)
    #[arg(long, value_name = "DIR", default_value = "tests/fixtures/photos")]
    pub photos: PathBuf,
    /// Frames per `watch` run
    #[arg(long, value_name = "N", default_value_t = 150, value_parser = crate::ranges::int(1u64, 1_000_000))]
    pub frames: u64,
    /// Timed embeddings per precision (after one untimed)
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = crate::ranges::int(1usize, 100_000))]
    pub repeat: usize,
    /// Do not measure `watch`'s memory (it runs `facegate watch` as a child process, which an
    /// emulator such as qemu-user may not be able to start)
    #[arg(long)]
    pub skip_memory: bool,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// People in the gallery of the matching row.
const MATCH_PEOPLE: usize = 1000;

struct Row {
    what: String,
    value: String,
}

fn row(what: impl Into<String>, value: impl Into<String>) -> Row {
    Row {
        what: what.into(),
        value: value.into(),
    }
}

pub fn run(args: BenchBoardArgs) -> Result<ExitCode, String> {
    if !args.photos.join("obama2.jpg").is_file() {
        return Err(format!(
            "{}: no test photos there (obama2.jpg); copy the repository's tests/fixtures/photos \
             to the board and pass --photos DIR",
            args.photos.display()
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = vec![
        row("machine", machine()),
        row("cores", cores.to_string()),
        row(
            "half-precision arithmetic (tract's f16 kernels)",
            if facegate::embed::cpu_has_f16_arithmetic() {
                "yes"
            } else {
                "no (f16 runs in software)"
            },
        ),
        row("facegate", env!("CARGO_PKG_VERSION")),
    ];

    let mut pipeline = args.model.load()?;
    let tile = face_tile(&mut pipeline, &args.photos.join("obama2.jpg"), 260)?;
    let scene = vec![(tile, 190, 110)];
    let crop = pipeline
        .finder
        .faces(&compose(&scene, 0), &pipeline.embedder)?
        .into_iter()
        .next()
        .ok_or("the one-face scene has no face: the detector or the photos are not as shipped")?
        .crop;
    rows.extend(embed_rows(&args, &crop)?);
    rows.push(row(
        format!("match one face against {MATCH_PEOPLE} people (ms)"),
        format!(
            "{:.3}",
            crate::bench::match_median_ms(
                &mut facegate::support::rng::Rng::new(7),
                MATCH_PEOPLE,
                pipeline.embedder.card().embedding_dim,
                51
            )
        ),
    ));

    let precision = pipeline.embedder.float();
    let mut recognizer = args.tracking.tuning().recognizer(pipeline, &[])?;
    for threads in [1, cores] {
        let (fps, totals) = run_scene(&mut recognizer, &scene, args.frames, threads)?;
        let [detect, landmarks, ..] = totals.per_frame_ms();
        let per_face = totals.frames as f64 / totals.faces.max(1) as f64;
        if threads == 1 {
            rows.push(row(
                "detect, Haar cascade, 640x480 frame (ms)",
                format!("{detect:.1}"),
            ));
            rows.push(row(
                "landmarks, YuNet in the box (ms per face)",
                format!("{:.1}", landmarks * per_face),
            ));
        }
        rows.push(row(
            format!(
                "watch, one face, {threads} core{} (frames per second, {precision})",
                if threads == 1 { "" } else { "s" }
            ),
            format!("{fps:.1}"),
        ));
        if cores == 1 {
            break;
        }
    }
    // An idle door: a still frame with nobody in view, the detector behind the motion gate or
    // not (a flat frame, which the cascade rejects fastest: the gate saves more on a real
    // hallway; set it beside the detect row above, measured on a frame with a face).
    let mut idle = [0.0; 2];
    for (i, gate) in [false, true].into_iter().enumerate() {
        recognizer.set_motion(gate.then(facegate::live::motion::MotionConfig::default));
        let (fps, _) = run_scene(&mut recognizer, &[], args.frames, 1)?;
        idle[i] = 1e3 / fps.max(1e-9);
    }
    rows.push(row(
        "a still, empty 640x480 frame, one core (ms, motion gate off / on)",
        format!("{:.2} / {:.2}", idle[0], idle[1]),
    ));
    // What every frame of an MJPEG camera or stream costs before the gate can look at it: the
    // floor under an idle door's CPU.
    let frame = facegate::imaging::jpeg::encode(&compose(&scene, 0).rgb, 85.0)?;
    let started = Instant::now();
    for _ in 0..args.frames.max(1) {
        facegate::imaging::jpeg::decode(&frame, 1 << 22)?;
    }
    rows.push(row(
        "decode a 640x480 MJPEG frame, one core (ms)",
        format!(
            "{:.2}",
            started.elapsed().as_secs_f64() * 1e3 / args.frames.max(1) as f64
        ),
    ));
    drop(recognizer);
    if !args.skip_memory {
        rows.push(row(
            format!("watch peak resident memory, {precision} (MiB)"),
            watch_peak_mb(&args, &scene),
        ));
    }

    println!("| facegate bench board | |\n|---|---|");
    for r in rows {
        println!("| {} | {} |", r.what, r.value);
    }
    Ok(ExitCode::SUCCESS)
}

/// The CPU's name, from /proc/cpuinfo (x86 `model name`, Pi `Model`) and the architecture.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| {
        info.lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim() == key)
            .map(|(_, v)| v.trim().to_string())
    };
    // Arm boards other than the Pi (Jetson) name only the core's part number.
    let arm_core = || {
        let part = field("CPU part")?;
        let core = match part.as_str() {
            "0xd03" => "Cortex-A53",
            "0xd04" => "Cortex-A35",
            "0xd05" => "Cortex-A55",
            "0xd07" => "Cortex-A57",
            "0xd08" => "Cortex-A72",
            "0xd09" => "Cortex-A73",
            "0xd0a" => "Cortex-A75",
            "0xd0b" => "Cortex-A76",
            "0xd0c" => "Neoverse-N1",
            "0xd41" => "Cortex-A78",
            "0xd42" => "Cortex-A78AE",
            "0x004" => "NVIDIA Carmel",
            _ => return Some(format!("Arm core part {part}")),
        };
        Some(core.to_string())
    };
    let name = field("Model")
        .or_else(|| field("model name"))
        .or_else(arm_core)
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{name} ({})", std::env::consts::ARCH)
}

/// Milliseconds per face in f32 and f16 on one thread, and how close f16 comes to f32.
fn embed_rows(args: &BenchBoardArgs, crop: &image::RgbImage) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut reference: Option<Vec<f32>> = None;
    for precision in [Precision::F32, Precision::F16] {
        let mut embedder = match &args.model.model {
            Some(card) => Embedder::load_with(card, 1, precision),
            None => facegate::recognize::models::default_embedder(precision),
        }
        .map_err(|e| e.to_string())?;
        let crops = std::slice::from_ref(crop);
        let first = embedder.embed(crops)?.remove(0);
        let mut times = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            let start = Instant::now();
            std::hint::black_box(embedder.embed(crops)?);
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        let float = embedder.float();
        let mut value = format!("{ms:.1}");
        match &reference {
            None => reference = Some(first),
            Some(full) => value += &format!(" (cosine to f32: {:.5})", cosine(full, &first)),
        }
        if float == Float::F16 && !facegate::embed::cpu_has_f16_arithmetic() {
            value += ", software f16";
        }
        rows.push(row(
            format!("embed, {float} (ms per face, 1 thread)"),
            value,
        ));
    }
    Ok(rows)
}

/// Peak resident memory of `facegate watch` over the scene's frames, with one person enrolled,
/// run as a child process with the same model options; or why it could not be measured.
fn watch_peak_mb(args: &BenchBoardArgs, scene: &[(image::RgbImage, i64, i64)]) -> String {
    match child_watch_peak_kb(args, scene) {
        Ok(kb) => format!("{:.1}", kb as f64 / 1024.0),
        Err(why) => {
            let own = peak_rss_mb().map_or("unknown".into(), |mb| format!("{mb:.1}"));
            format!("not measured ({why}); this benchmark process: {own}")
        }
    }
}

fn child_watch_peak_kb(
    args: &BenchBoardArgs,
    scene: &[(image::RgbImage, i64, i64)],
) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let dir = TempDir::new()?;
    let frames = dir.0.join("frames");
    std::fs::create_dir(&frames).map_err(|e| format!("{}: {e}", frames.display()))?;
    for i in 0..args.frames.min(300) {
        let shift = [0, 2, 4, 6, 4, 2][i as usize % 6];
        // JPEG, as a camera's MJPEG stream delivers them.
        let path = frames.join(format!("frame{i:04}.jpg"));
        let jpeg = facegate::imaging::jpeg::encode(&compose(scene, shift).rgb, 90.0)?;
        std::fs::write(&path, jpeg).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let gallery = dir.0.join("gallery");
    let mut model = Vec::new();
    if let Some(card) = &args.model.model {
        model.extend(["--model".into(), card.clone().into_os_string()]);
    }
    model.extend([
        "--precision".into(),
        args.model.precision.to_string().into(),
    ]);
    let enroll = std::process::Command::new(&exe)
        .args(["enroll", "--gallery"])
        .arg(&gallery)
        .args(["--name", "obama"])
        .args(&model)
        .arg(args.photos.join("obama.jpg"))
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    if !enroll.status.success() {
        return Err(format!(
            "enroll failed: {}",
            String::from_utf8_lossy(&enroll.stderr).trim()
        ));
    }
    let log = dir.0.join("watch.log");
    let child = std::process::Command::new(&exe)
        .args(["watch", "--gallery"])
        .arg(&gallery)
        .arg("--frames")
        .arg(&frames)
        .args(&model)
        .stdout(std::process::Stdio::null())
        // A file, not a pipe: a pipe nobody reads until the end could fill and stall watch.
        .stderr(std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    wait_for_peak_kb(child).map_err(|why| {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        format!("{why} {}", said.trim())
    })
}

/// Waits for the child, reading its peak resident set (`VmHWM`) as it runs. `wait4`'s
/// `ru_maxrss` would not do: Linux carries the parent's peak into a spawned child's, so it would
/// report this (larger) benchmark process. `VmHWM` belongs to the child's own address space and
/// only grows, so the last reading before it exits is its peak, give or take the last few
/// milliseconds.
fn wait_for_peak_kb(mut child: std::process::Child) -> Result<u64, String> {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = None;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| format!("waiting for watch: {e}"))?
        {
            break status;
        }
        let hwm = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
        peak_kb = hwm.or(peak_kb);
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    if !status.success() {
        return Err(format!("watch failed ({status}):"));
    }
    peak_kb.ok_or_else(|| "no /proc/PID/status to read it from".into())
}

/// A folder removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        let path =
            std::env::temp_dir().join(format!("facegate-bench-board-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
