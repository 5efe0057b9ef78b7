//! `facegate bench`: repeated timed detections, reported as JSON for comparison scripts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use facegate::detector::{Detector, Rect};
use facegate::image_io;

use crate::detect::{load_cascade, params};

#[derive(clap::Args)]
pub struct Args {
    /// OpenCV cascade XML [default: the built-in haarcascade_frontalface_default.xml]
    #[arg(long, value_name = "PATH")]
    pub cascade: Option<PathBuf>,
    #[arg(long, value_name = "F", default_value_t = 1.1)]
    pub scale_factor: f64,
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub min_neighbors: u32,
    /// Threads (0: one per CPU core)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub threads: usize,
    /// Timed runs per image (after one untimed warm-up run)
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub repeat: usize,
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct Timing<'a> {
    image: &'a str,
    threads: usize,
    /// Milliseconds per detection (decoding excluded): median and fastest of the timed runs.
    median_ms: f64,
    min_ms: f64,
    faces: &'a [Rect],
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let params = params(args.scale_factor, args.min_neighbors, 0, None, args.threads)?;
    let mut detector = Detector::new(load_cascade(args.cascade.as_deref())?);
    for path in &args.images {
        let photo = image_io::load(path).map_err(|e| e.to_string())?;
        let faces = detector.detect(photo.grey_view(), &params)?;
        let mut times = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat.max(1) {
            let start = Instant::now();
            let again = detector.detect(photo.grey_view(), &params)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            if again != faces {
                return Err(format!(
                    "{}: detections changed between runs",
                    path.display()
                ));
            }
        }
        times.sort_by(f64::total_cmp);
        let shown = path.display().to_string();
        let line = Timing {
            image: &shown,
            threads: params.threads,
            median_ms: times[times.len() / 2],
            min_ms: times[0],
            faces: &faces,
        };
        println!(
            "{}",
            serde_json::to_string(&line).map_err(|e| e.to_string())?
        );
    }
    Ok(ExitCode::SUCCESS)
}
