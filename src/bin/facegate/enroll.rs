//! `facegate enroll`: a person in, from photos or from a camera taking the shots itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate::capture::{Capture, Item};
use facegate::enrollment::{
    check_consistent, check_shot, matches_earlier, Shot, CAMERA_SHOTS, PROMPTS,
};
use facegate::gallery::{self, Gallery};
use facegate::image_io;

use crate::faces::{GalleryArgs, ModelArgs, Pipeline};
use crate::watch::SourceArgs;

#[derive(clap::Args)]
pub struct EnrollArgs {
    /// The person's name (any text; it is never used as a file name)
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub gallery: GalleryArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Use the largest face of a shot that shows several
    #[arg(long)]
    pub largest: bool,
    /// Do not keep the aligned crops (the gallery then cannot be re-embedded for a new model)
    #[arg(long)]
    pub no_crops: bool,
    /// Take the three shots from a camera (index N, default 0) instead of photos
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "0", conflicts_with = "images")]
    pub camera: Option<u32>,
    /// Take the three shots from a directory of frames (a recording), as from a camera
    #[arg(long, value_name = "DIR", conflicts_with_all = ["images", "camera"])]
    pub frames: Option<PathBuf>,
    /// Frames to wait between camera shots, so the person can turn
    #[arg(long, value_name = "FRAMES", default_value_t = 30, value_parser = crate::ranges::int(1u64, 100_000))]
    pub shot_gap: u64,
    /// Seconds to wait for usable camera shots before giving up
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = crate::ranges::int(1u64, 86_400))]
    pub timeout: u64,
    /// Shots of the person (three recommended)
    #[arg(value_name = "IMAGE", required_unless_present_any = ["camera", "frames"])]
    pub images: Vec<PathBuf>,
}

pub fn enroll(args: EnrollArgs) -> Result<ExitCode, String> {
    gallery::validate_name(&args.name)?;
    let mut pipeline = args.model.load()?;
    // Fail on a damaged or foreign gallery before anyone poses for three shots.
    pipeline.open_gallery(&args.gallery.gallery)?;
    let (shots, labels) = if args.camera.is_some() || args.frames.is_some() {
        let shots = shots_from_stream(&args, &mut pipeline)?;
        let labels = (1..=shots.len()).map(|i| format!("shot {i}")).collect();
        (shots, labels)
    } else {
        shots_from_files(&args, &mut pipeline)?
    };
    let embeddings: Vec<&Vec<f32>> = shots.iter().map(|s| &s.embedding).collect();
    for warning in check_consistent(&embeddings, &labels, pipeline.threshold)? {
        eprintln!(
            "facegate: warning: {}",
            facegate::terminal::escape_message(&warning)
        );
    }
    let lock = Gallery::lock(&args.gallery.gallery).map_err(|e| e.to_string())?;
    let mut g = pipeline.open_gallery(&args.gallery.gallery)?;
    let crops: Vec<Vec<u8>> = if args.no_crops {
        Vec::new()
    } else {
        shots.iter().map(|s| s.png.clone()).collect()
    };
    let embeddings = shots.into_iter().map(|s| s.embedding).collect();
    let person = g
        .add(&lock, &args.name, embeddings, &crops)
        .map_err(|e| e.to_string())?;
    println!(
        "enrolled {} as {} from {} shot{}",
        person.entry.name,
        person.entry.id,
        person.entry.shots,
        if person.entry.shots == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}

fn shots_from_files(
    args: &EnrollArgs,
    pipeline: &mut Pipeline,
) -> Result<(Vec<Shot>, Vec<String>), String> {
    if args.images.len() < 3 {
        eprintln!(
            "facegate: warning: enrolling from {} shot{}; three shots (turning slightly) match more reliably",
            args.images.len(),
            if args.images.len() == 1 { "" } else { "s" }
        );
    }
    let mut shots = Vec::new();
    let mut labels = Vec::new();
    for (i, path) in args.images.iter().enumerate() {
        let which = format!("shot {} ({})", i + 1, facegate::terminal::path(path));
        let photo = image_io::load(path).map_err(|e| e.to_string())?;
        let shot =
            check_shot(pipeline, &photo, args.largest).map_err(|why| format!("{which}: {why}"))?;
        if let Some(advice) = shot.advice() {
            eprintln!("facegate: warning: {which}: {advice}");
        }
        if !shot.aligned {
            eprintln!("facegate: warning: {which}: no landmarks found, the face is not aligned");
        }
        shots.push(shot);
        labels.push(which);
    }
    Ok((shots, labels))
}

/// Takes the shots from a camera (or recorded frames): waits for a single, sharp, large enough
/// face that looks like the earlier shots, takes it, asks the person to turn, and repeats.
fn shots_from_stream(args: &EnrollArgs, pipeline: &mut Pipeline) -> Result<Vec<Shot>, String> {
    let source = SourceArgs {
        camera: args.camera,
        frames: args.frames.clone(),
        ..SourceArgs::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));
    let capture = Capture::start(source.opener()?, stop.clone())?;
    let prompts = PROMPTS;
    println!(
        "Enrolling {} from {}: {}.",
        args.name,
        capture.description(),
        prompts[0]
    );
    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    let mut shots: Vec<Shot> = Vec::new();
    let mut last_shot_frame: Option<u64> = None;
    let mut last_problem = String::from("no frame arrived");
    let mut shown_problem = String::new();
    let mut skip_warnings = facegate::warnings::Throttle::per_minute();
    while shots.len() < CAMERA_SHOTS {
        if started.elapsed() > timeout {
            return Err(format!(
                "gave up after {} s with {} of {CAMERA_SHOTS} shots; last problem: {last_problem}",
                args.timeout,
                shots.len()
            ));
        }
        let frame = match capture.next()? {
            Some(Item::Frame(f)) => f,
            Some(Item::Skipped(why)) => {
                skip_warnings.warn(&format!("skipped {why}"));
                continue;
            }
            None if stop.load(Ordering::Relaxed) => return Err("enrollment interrupted".into()),
            None => {
                return Err(format!(
                "the frames ran out with {} of {CAMERA_SHOTS} shots; last problem: {last_problem}",
                shots.len()
            ))
            }
        };
        if last_shot_frame.is_some_and(|n| frame.number < n + args.shot_gap) {
            continue;
        }
        let checked = check_shot(pipeline, &frame.photo, args.largest).and_then(|shot| {
            let earlier: Vec<&Vec<f32>> = shots.iter().map(|s| &s.embedding).collect();
            matches_earlier(&shot.embedding, &earlier, pipeline.threshold)?;
            Ok(shot)
        });
        match checked {
            Ok(shot) => {
                shots.push(shot);
                last_shot_frame = Some(frame.number);
                shown_problem.clear();
                match prompts.get(shots.len()) {
                    Some(next) => println!(
                        "Shot {} of {CAMERA_SHOTS} taken (frame {}). Now {next}.",
                        shots.len(),
                        frame.number
                    ),
                    None => println!(
                        "Shot {CAMERA_SHOTS} of {CAMERA_SHOTS} taken (frame {}).",
                        frame.number
                    ),
                }
            }
            Err(problem) => {
                // Say why we are still waiting, once per new reason, not once per frame.
                let kind: String = problem
                    .chars()
                    .take_while(|c| !c.is_ascii_digit())
                    .collect();
                if kind != shown_problem {
                    eprintln!("facegate: waiting: {problem}");
                    shown_problem = kind;
                }
                last_problem = problem;
            }
        }
    }
    Ok(shots)
}
