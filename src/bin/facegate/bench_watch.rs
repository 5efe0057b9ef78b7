//! `facegate bench watch`: frames per second of the live pipeline on 640x480 scenes with one and
//! with five faces, per stage, on one core and on all cores, and the process's peak memory.
//!
//! Frames go through the same capture thread and recognizer as `watch`; they are composed from
//! the test photos once and handed out as copies (as a decoder would hand out new buffers), so
//! the capture thread costs next to nothing and the numbers are the pipeline's.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use image::{imageops, RgbImage};

use facegate::imaging::photo::{self, Photo};
use facegate::live::capture::{Capture, Item};
use facegate::live::frames::{FrameSource, Next};
use facegate::live::recognizer::{Recognizer, StageTotals};

use crate::faces::{ModelArgs, Pipeline};
use crate::watch::TrackingArgs;

#[derive(clap::Args)]
pub struct BenchWatchArgs {
    /// Directory with the test photos the scenes are built from
    #[arg(long, value_name = "DIR", default_value = "tests/fixtures/photos")]
    pub photos: PathBuf,
    /// Frames per run
    #[arg(long, value_name = "N", default_value_t = 150, value_parser = crate::ranges::int(1u64, 1_000_000))]
    pub frames: u64,
    #[command(flatten)]
    pub tracking: TrackingArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// Goals from the issue: frames per second with one face on one core, and peak memory.
const GOAL_FPS: f64 = 30.0;
const GOAL_RSS_MB: f64 = 60.0;

/// A few variants of a scene, cycled; a face moves a few pixels between them, as people do.
pub struct Scene {
    pub frames: Vec<Photo>,
    pub left: u64,
    pub next: usize,
}

impl FrameSource for Scene {
    fn describe(&self) -> String {
        "bench scene".into()
    }
    fn is_live(&self) -> bool {
        false
    }
    fn next_frame(&mut self) -> Result<Next, String> {
        if self.left == 0 {
            return Ok(Next::End);
        }
        self.left -= 1;
        self.next = (self.next + 1) % self.frames.len();
        Ok(Next::Frame(self.frames[self.next].clone()))
    }
}

/// The largest face of a photo with some context around it, as a square `side` pixels wide.
pub fn face_tile(pipeline: &mut Pipeline, path: &Path, side: u32) -> Result<RgbImage, String> {
    let photo = photo::load(path).map_err(|e| e.to_string())?;
    let (face, _) = pipeline
        .faces(&photo)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{}: no face found", path.display()))?;
    let r = face.rect;
    let context = (r.w as f32 * 1.8) as i64;
    let (cx, cy) = (r.x as i64 + r.w as i64 / 2, r.y as i64 + r.h as i64 / 2);
    let (w, h) = (photo.rgb.width() as i64, photo.rgb.height() as i64);
    let half = (context / 2).min(cx).min(cy).min(w - cx).min(h - cy).max(1);
    let region = imageops::crop_imm(
        &photo.rgb,
        (cx - half) as u32,
        (cy - half) as u32,
        (2 * half) as u32,
        (2 * half) as u32,
    )
    .to_image();
    Ok(imageops::resize(
        &region,
        side,
        side,
        imageops::FilterType::Triangle,
    ))
}

pub fn compose(tiles: &[(RgbImage, i64, i64)], shift: i64) -> Photo {
    let mut canvas = RgbImage::from_pixel(640, 480, image::Rgb([96, 96, 96]));
    for (tile, x, y) in tiles {
        imageops::overlay(&mut canvas, tile, x + shift, *y);
    }
    Photo::from_dynamic(image::DynamicImage::ImageRgb8(canvas))
}

pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// `frames` frames of a scene through `recognizer` on `threads` detection threads: frames per
/// second and the time of each stage.
pub fn run_scene(
    recognizer: &mut Recognizer,
    tiles: &[(RgbImage, i64, i64)],
    frames: u64,
    threads: usize,
) -> Result<(f64, StageTotals), String> {
    let variants: Vec<Photo> = (0..6)
        .map(|i| compose(tiles, [0, 2, 4, 6, 4, 2][i]))
        .collect();
    recognizer.restart();
    recognizer.set_detect_threads(threads);
    let scene = Scene {
        frames: variants,
        left: frames,
        next: 0,
    };
    let capture = Capture::start(
        move || Ok(Box::new(scene) as Box<dyn FrameSource>),
        Arc::default(),
    )?;
    let start = Instant::now();
    while let Some(item) = capture.next()? {
        if let Item::Frame(f) = item {
            recognizer.process(&f)?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let totals = recognizer.totals();
    Ok((totals.frames as f64 / seconds, totals))
}

pub fn run(args: BenchWatchArgs) -> Result<ExitCode, String> {
    let mut pipeline = args.model.load()?;
    let tile = |p: &mut Pipeline, name: &str, side| face_tile(p, &args.photos.join(name), side);
    let one = vec![(tile(&mut pipeline, "obama2.jpg", 260)?, 190, 110)];
    let five = vec![
        (tile(&mut pipeline, "obama.jpg", 190)?, 20, 30),
        (tile(&mut pipeline, "biden.jpg", 190)?, 225, 30),
        (tile(&mut pipeline, "obama2.jpg", 190)?, 430, 30),
        (tile(&mut pipeline, "messi5.jpg", 190)?, 120, 260),
        (tile(&mut pipeline, "astronaut.png", 190)?, 330, 260),
    ];
    // One recognizer serves every run, as one `watch` process would: the peak memory reported
    // below is then that of a single pipeline.
    let mut recognizer = args.tracking.tuning().recognizer(pipeline, &[])?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "640x480 frames, {} per run, detection at up to {} px for faces from {} px (scale factor {}), decided faces re-embedded every {} frames",
        args.frames, args.tracking.detect_size, args.tracking.min_face, args.tracking.scale_factor, args.tracking.recheck
    );
    println!("scene     threads    fps   detect  landmarks  embed  match+track  (ms per frame)  faces/frame  embeds/frame");
    let mut one_face_one_core = 0.0;
    for threads in [1, cores] {
        for (label, tiles, faces) in [("1 face", &one, 1usize), ("5 faces", &five, 5)] {
            let (fps, totals) = run_scene(&mut recognizer, tiles, args.frames, threads)?;
            let [d, l, e, t] = totals.per_frame_ms();
            let seen = totals.faces as f64 / totals.frames.max(1) as f64;
            println!(
                "{label:<9} {threads:>7} {fps:>6.1} {d:>8.1} {l:>10.1} {e:>6.1} {t:>12.2}  {:>28.2} {:>13.2}",
                seen,
                totals.embedded as f64 / totals.frames.max(1) as f64
            );
            if (seen - faces as f64).abs() > 0.5 {
                eprintln!(
                    "facegate: warning: {label}: found {seen:.2} faces per frame, not {faces}"
                );
            }
            if threads == 1 && faces == 1 {
                one_face_one_core = fps;
            }
        }
    }
    println!(
        "one face on one core: {one_face_one_core:.1} fps = {:.2}x the {GOAL_FPS} fps goal",
        one_face_one_core / GOAL_FPS
    );
    match peak_rss_mb() {
        Some(mb) => println!(
            "peak resident memory of this process: {mb:.1} MB = {:.2}x the {GOAL_RSS_MB} MB goal",
            mb / GOAL_RSS_MB
        ),
        None => println!("peak resident memory: not available (no /proc/self/status)"),
    }
    Ok(ExitCode::SUCCESS)
}
