//! `facegate enroll`: a person in, from photos or from a camera taking the shots itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use facegate::imaging::photo;
use facegate::live::capture::{Capture, Item};
use facegate::recognize::enrollment::{
    check_consistent, check_shot, matches_earlier, Gate, Quality, Refusal, Shot, CAMERA_SHOTS,
    PROMPTS,
};
use facegate::store::gallery::{self, Gallery};

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
    /// One JSON object on stdout: each shot's quality (size, sharpness, head turn, brightness,
    /// verdict, advice), the checks across shots, and whether the person was enrolled
    #[arg(long)]
    pub json: bool,
    /// Check the shots and report, without enrolling anyone
    #[arg(long, conflicts_with_all = ["camera", "frames"])]
    pub check: bool,
    /// Shots of the person (three recommended)
    #[arg(value_name = "IMAGE", required_unless_present_any = ["camera", "frames"])]
    pub images: Vec<PathBuf>,
}

/// What `enroll --json` prints.
#[derive(serde::Serialize, Default)]
struct Report {
    name: String,
    enrolled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    shots: Vec<ShotReport>,
    /// Warnings about the shots taken together (one resembling the others only weakly).
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(serde::Serialize)]
struct ShotReport {
    image: String,
    verdict: &'static str,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    quality: Option<Quality>,
    advice: Vec<String>,
    aligned: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    gate: Option<Gate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl ShotReport {
    fn of(image: String, result: &Result<Shot, Refusal>) -> ShotReport {
        match result {
            Ok(shot) => ShotReport {
                image,
                verdict: shot.quality.verdict(),
                quality: Some(shot.quality),
                advice: shot.quality.advice(),
                aligned: shot.aligned,
                gate: None,
                error: None,
            },
            Err(r) => ShotReport {
                image,
                verdict: "refused",
                quality: r.quality,
                advice: Vec::new(),
                aligned: false,
                gate: Some(r.gate),
                error: Some(r.message.clone()),
            },
        }
    }
}

pub fn enroll(args: EnrollArgs) -> Result<ExitCode, String> {
    gallery::validate_name(&args.name)?;
    let mut pipeline = args.model.load()?;
    // Fail on a damaged or foreign gallery before anyone poses for three shots.
    pipeline.open_gallery(&args.gallery.gallery)?;
    let mut report = Report {
        name: args.name.clone(),
        ..Report::default()
    };
    let result = enroll_checked(&args, &mut pipeline, &mut report);
    if let Err(e) = &result {
        report.error = Some(e.clone());
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).map_err(|e| e.to_string())?
        );
    }
    match result {
        Ok(()) if args.check => {
            if !args.json {
                println!("the shots are usable: enrolling would succeed (nothing was enrolled)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Ok(()) => Ok(ExitCode::SUCCESS),
        // The JSON says why; stderr says it too, for people reading a terminal.
        Err(e) => Err(e),
    }
}

fn enroll_checked(
    args: &EnrollArgs,
    pipeline: &mut Pipeline,
    report: &mut Report,
) -> Result<(), String> {
    let (shots, labels) = if args.camera.is_some() || args.frames.is_some() {
        let shots = shots_from_stream(args, pipeline)?;
        let labels: Vec<String> = (1..=shots.len()).map(|i| format!("shot {i}")).collect();
        report.shots = shots
            .iter()
            .zip(&labels)
            .map(|(shot, label)| ShotReport::of(label.clone(), &Ok(shot.clone())))
            .collect();
        (shots, labels)
    } else {
        shots_from_files(args, pipeline, report)?
    };
    let embeddings: Vec<&Vec<f32>> = shots.iter().map(|s| &s.embedding).collect();
    report.warnings = check_consistent(&embeddings, &labels, pipeline.threshold)?;
    if !args.json {
        for warning in &report.warnings {
            eprintln!(
                "facegate: warning: {}",
                facegate::support::terminal::escape_message(warning)
            );
        }
    }
    if args.check {
        return Ok(());
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
    report.enrolled = true;
    report.id = Some(person.entry.id.clone());
    if let Some(w) = facegate::access::bindings::enrollment_warning(
        &args.gallery.gallery,
        &person.entry.name,
        &person.entry.id,
    ) {
        if !args.json {
            eprintln!("facegate: warning: {w}");
        }
        report.warnings.push(w);
    }
    if !args.json {
        println!(
            "enrolled {} as {} from {} shot{}",
            person.entry.name,
            person.entry.id,
            person.entry.shots,
            if person.entry.shots == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Checks every shot (all of them, so a report names every problem), then fails on the first
/// refused one.
fn shots_from_files(
    args: &EnrollArgs,
    pipeline: &mut Pipeline,
    report: &mut Report,
) -> Result<(Vec<Shot>, Vec<String>), String> {
    if args.images.len() < 3 && !args.json {
        eprintln!(
            "facegate: warning: enrolling from {} shot{}; three shots (turning slightly) match more reliably",
            args.images.len(),
            if args.images.len() == 1 { "" } else { "s" }
        );
    }
    let mut results = Vec::new();
    let mut labels = Vec::new();
    for (i, path) in args.images.iter().enumerate() {
        let which = format!(
            "shot {} ({})",
            i + 1,
            facegate::support::terminal::path(path)
        );
        let result = photo::load(path)
            .map_err(|e| Refusal {
                gate: Gate::NoFace,
                message: e.to_string(),
                quality: None,
            })
            .and_then(|photo| check_shot(pipeline, &photo, args.largest))
            .map_err(with_flag_hint);
        report
            .shots
            .push(ShotReport::of(path.display().to_string(), &result));
        if let Ok(shot) = &result {
            if !args.json {
                for advice in shot.quality.advice() {
                    eprintln!("facegate: warning: {which}: {advice}");
                }
                if !shot.aligned {
                    eprintln!(
                        "facegate: warning: {which}: no landmarks found, the face is not aligned"
                    );
                }
            }
        }
        results.push(result);
        labels.push(which);
    }
    let mut shots = Vec::new();
    for (result, which) in results.into_iter().zip(&labels) {
        shots.push(result.map_err(|why| format!("{which}: {why}"))?);
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
    let capture = Capture::start(source.spec().opener()?, stop.clone())?;
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
    let mut skip_warnings = facegate::support::warnings::Throttle::per_minute();
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
            Some(Item::Idle) => continue,
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
        let checked = check_shot(pipeline, &frame.photo, args.largest)
            .map_err(String::from)
            .and_then(|shot| {
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

/// A refusal for several faces, with the flag that takes the largest instead (the library's
/// words serve the API too, which has no such flag).
fn with_flag_hint(mut r: Refusal) -> Refusal {
    if r.gate == Gate::SeveralFaces {
        r.message
            .push_str(", or pass --largest to enroll the largest");
    }
    r
}
