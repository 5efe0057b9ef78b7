//! `facegate detect`: faces in still photos, as text or one JSON line per image.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use facegate::detect::cascade::{Cascade, DetectParams, Detector};
use facegate::imaging::rect::Rect;
use facegate::{imaging::draw, imaging::photo, recognize::models};

/// How the cascade search runs: shared by `detect` and `bench`.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// OpenCV cascade XML (HAAR or LBP) [default: the built-in haarcascade_frontalface_default.xml]
    #[arg(long, value_name = "PATH")]
    pub cascade: Option<PathBuf>,
    /// Ratio between pyramid levels (> 1)
    #[arg(long, value_name = "F", default_value_t = 1.1, value_parser = crate::ranges::scale_factor)]
    pub scale_factor: f64,
    /// Overlapping raw detections a face needs (0 prints raw detections)
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = crate::ranges::int(0u32, 1000))]
    pub min_neighbors: u32,
    /// Smallest face size searched for, in pixels
    #[arg(long, value_name = "PX", default_value_t = 0, value_parser = crate::ranges::int(0, crate::ranges::MAX_PX))]
    pub min_size: usize,
    /// Largest face size searched for, in pixels [default: the whole image]
    #[arg(long, value_name = "PX", value_parser = crate::ranges::int(1, crate::ranges::MAX_PX))]
    pub max_size: Option<usize>,
    /// Threads scanning each image (0: one per CPU core); results do not depend on it
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = crate::ranges::int(0, crate::ranges::MAX_THREADS))]
    pub threads: usize,
}

impl SearchArgs {
    pub fn params(&self) -> Result<DetectParams, String> {
        let threads = if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        };
        let p = DetectParams {
            scale_factor: self.scale_factor,
            min_neighbors: self.min_neighbors,
            min_size: (self.min_size, self.min_size),
            max_size: self.max_size.map(|m| (m, m)),
            threads,
        };
        p.validate()?;
        Ok(p)
    }

    pub fn detector(&self) -> Result<Detector, String> {
        let cascade = match &self.cascade {
            Some(p) => Cascade::from_file(p).map_err(|e| e.to_string())?,
            None => models::default_cascade(),
        };
        Ok(Detector::new(cascade))
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub search: SearchArgs,
    /// One JSON line per image on stdout
    #[arg(long)]
    pub json: bool,
    /// Write each image with its faces boxed, as PNG, into this directory
    #[arg(long, value_name = "DIR")]
    pub draw: Option<PathBuf>,
    /// Photos (JPEG or PNG)
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct JsonLine<'a> {
    image: &'a str,
    width: usize,
    height: usize,
    faces: &'a [Rect],
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let params = args.search.params()?;
    let mut detector = args.search.detector()?;
    if let Some(dir) = &args.draw {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failures = 0;
    let mut drawn_names = HashSet::new();
    for path in &args.images {
        let photo = match photo::load(path) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("facegate: {e}");
                failures += 1;
                continue;
            }
        };
        let faces = detector.detect(photo.grey_view(), &params)?;
        let shown = path.display().to_string();
        let written = if args.json {
            let line = JsonLine {
                image: &shown,
                width: photo.width(),
                height: photo.height(),
                faces: &faces,
            };
            serde_json::to_string(&line)
                .map_err(|e| e.to_string())
                .and_then(|s| writeln!(out, "{s}").map_err(|e| e.to_string()))
        } else {
            let boxes: Vec<String> = faces
                .iter()
                .map(|r| format!("{}x{}+{}+{}", r.w, r.h, r.x, r.y))
                .collect();
            writeln!(
                out,
                "{}: {} face{} ({}x{}) {}",
                facegate::support::terminal::path(path),
                faces.len(),
                if faces.len() == 1 { "" } else { "s" },
                photo.width(),
                photo.height(),
                boxes.join(" ")
            )
            .map_err(|e| e.to_string())
        };
        written.map_err(|e| format!("cannot write to stdout: {e}"))?;
        if let Some(dir) = &args.draw {
            let mut rgb = photo.rgb;
            let thickness = (rgb.width().max(rgb.height()) / 400).max(2) as i32;
            draw::boxes(&mut rgb, &faces, thickness);
            let dest = dir.join(unique_name(path, &mut drawn_names));
            if let Err(e) = draw::save_png(&rgb, &dest) {
                eprintln!("facegate: {e}");
                failures += 1;
            }
        }
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `<stem>.png`, or `<stem>-2.png` ... when two inputs share a stem.
fn unique_name(path: &Path, taken: &mut HashSet<String>) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let mut name = format!("{stem}.png");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{stem}-{n}.png");
        n += 1;
    }
    name
}
