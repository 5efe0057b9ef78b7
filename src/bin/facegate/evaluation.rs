//! `facegate eval` and `facegate calibrate`: how well recognition works on labelled photos.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use facegate::imaging::photo;
use facegate::recognize::enrollment::{check_shot, Gate};
use facegate::recognize::evaluate::{self, Dataset, DrawResult, Embedded};
use facegate::support::rng::Rng;

use crate::faces::{ModelArgs, Pipeline};

#[derive(clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Photos enrolled per person in each draw
    #[arg(long, value_name = "K", default_value_t = 3, value_parser = crate::ranges::int(1usize, 100))]
    pub gallery_shots: usize,
    /// Random draws of the enrolled photos
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = crate::ranges::int(1usize, 100_000))]
    pub draws: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Photos of people outside the dataset: every face in them must come out unknown
    #[arg(long, value_name = "DIR")]
    pub strangers: Option<PathBuf>,
    /// Also measure "this is not NAME": in each draw, reject every stranger accepted as somebody
    /// (a negative of that person), then match everything again
    #[arg(long, requires = "strangers")]
    pub reject_strangers: bool,
    /// One JSON object on stdout instead of the report
    #[arg(long)]
    pub json: bool,
    /// One sub-folder per person (or train/ and val/ with one sub-folder per person each)
    pub dataset: PathBuf,
}

fn embed_all(
    pipeline: &mut Pipeline,
    photos: &[(usize, PathBuf)],
) -> Result<(Vec<Embedded>, usize), String> {
    let mut out = Vec::with_capacity(photos.len());
    let mut missing = 0;
    for (person, path) in photos {
        let embedding = match pipeline.largest_face(path) {
            Ok((_, e)) => Some(e),
            Err(e) => {
                eprintln!("facegate: {e}");
                missing += 1;
                None
            }
        };
        out.push(Embedded {
            person: *person,
            embedding,
        });
    }
    Ok((out, missing))
}

/// Embeds the photos to enroll from through `enroll`'s own checks (the largest face, as `enroll
/// --largest`): a photo they refuse is never enrolled, and is counted by the check that refused it.
fn embed_enrollable(
    pipeline: &mut Pipeline,
    photos: &[(usize, PathBuf)],
) -> (Vec<Embedded>, BTreeMap<Gate, usize>) {
    let mut refused = BTreeMap::new();
    let out = photos
        .iter()
        .map(|(person, path)| {
            let shot = photo::load(path)
                .map_err(|e| e.to_string())
                .and_then(|photo| {
                    check_shot(pipeline, &photo, true).map_err(|r| {
                        *refused.entry(r.gate).or_insert(0) += 1;
                        r.message
                    })
                });
            Embedded {
                person: *person,
                embedding: match shot {
                    Ok(shot) => Some(shot.embedding),
                    Err(e) => {
                        eprintln!("facegate: {}: {e}", facegate::support::terminal::path(path));
                        None
                    }
                },
            }
        })
        .collect();
    (out, refused)
}

fn gates_json(refused: &BTreeMap<Gate, usize>) -> serde_json::Value {
    serde_json::to_value(refused).unwrap_or_default()
}

fn stranger_faces(pipeline: &mut Pipeline, dir: &Path) -> Result<Vec<Vec<f32>>, String> {
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| {
                matches!(
                    x.to_string_lossy().to_lowercase().as_str(),
                    "jpg" | "jpeg" | "png"
                )
            })
        })
        .collect();
    entries.sort();
    for path in entries {
        let photo = photo::load(&path).map_err(|e| e.to_string())?;
        out.extend(pipeline.faces(&photo)?.into_iter().map(|(_, e)| e));
    }
    Ok(out)
}

/// Runs `one` for every draw, from the seed: two experiments enroll the same photos.
fn each_draw<T>(args: &EvalArgs, mut one: impl FnMut(&mut Rng) -> T) -> Vec<T> {
    let mut rng = Rng::new(args.seed);
    (0..args.draws.max(1)).map(|_| one(&mut rng)).collect()
}

pub fn eval(args: EvalArgs) -> Result<ExitCode, String> {
    let mut pipeline = args.model.load()?;
    let data = Dataset::open(&args.dataset)?;
    let (pool, refused) = embed_enrollable(&mut pipeline, &data.enroll_pool);
    let missing_pool = refused.get(&Gate::NoFace).copied().unwrap_or(0);
    let (probes, missing_probes) = embed_all(&mut pipeline, &data.probes)?;
    let strangers = match &args.strangers {
        Some(d) => stranger_faces(&mut pipeline, d)?,
        None => Vec::new(),
    };
    let (people, shots, threshold) = (data.people.len(), args.gallery_shots, pipeline.threshold);
    let results: Vec<DrawResult> = each_draw(&args, |rng| {
        evaluate::draw(&pool, &probes, &strangers, people, shots, threshold, rng)
    });
    let rate = |f: fn(&DrawResult) -> usize, of: fn(&DrawResult) -> usize| -> (f64, f64, f64) {
        let v: Vec<f64> = results
            .iter()
            .map(|r| f(r) as f64 / of(r).max(1) as f64)
            .collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (mean, min, max)
    };
    // The same draws again (same seed), with the gallery's matcher and negatives.
    let rejection: Option<Vec<evaluate::RejectionResult>> = args.reject_strangers.then(|| {
        each_draw(&args, |rng| {
            evaluate::draw_with_rejection(&pool, &probes, &strangers, people, shots, threshold, rng)
        })
    });
    let rejection_summary = rejection.as_ref().map(|all| {
        let sum =
            |f: &dyn Fn(&evaluate::RejectionResult) -> usize| all.iter().map(f).sum::<usize>();
        let probes = sum(&|r| r.before.probes).max(1) as f64;
        serde_json::json!({
            "rejected": sum(&|r| r.rejected),
            "accepted_again": sum(&|r| r.accepted_again),
            "strangers_accepted_after": sum(&|r| r.after.strangers_accepted),
            "rank1_before": sum(&|r| r.before.rank1) as f64 / probes,
            "rank1_after": sum(&|r| r.after.rank1) as f64 / probes,
            "identified_before": sum(&|r| r.before.accepted_correct) as f64 / probes,
            "identified_after": sum(&|r| r.after.accepted_correct) as f64 / probes,
        })
    });
    let rank1 = rate(|r| r.rank1, |r| r.probes);
    // Rank-1 over the probes of people whose enrollment succeeded (a refused enrollment's
    // probes are misses in `rank1`: the user was asked for other shots).
    let rank1_of_enrolled = results.iter().map(|r| r.rank1).sum::<usize>() as f64
        / results
            .iter()
            .map(|r| r.probes - r.probes_unenrolled)
            .sum::<usize>()
            .max(1) as f64;
    let accepted = rate(|r| r.accepted_correct, |r| r.probes);
    let false_rejects = rate(|r| r.false_rejects, |r| r.probes);
    let false_accepts = rate(|r| r.false_accepts, |r| r.probes);
    let strangers_accepted = rate(|r| r.strangers_accepted, |r| r.strangers);
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "dataset": args.dataset.display().to_string(), "people": data.people.len(),
                "gallery_shots": args.gallery_shots, "draws": results.len(), "threshold": pipeline.threshold,
                "probes_per_draw": results[0].probes, "strangers": results[0].strangers,
                "photos_without_face": missing_pool + missing_probes,
                "rank1": rank1.0, "rank1_min": rank1.1, "identified": accepted.0,
                "rank1_of_enrolled": rank1_of_enrolled,
                "false_reject_rate": false_rejects.0, "false_accept_rate": false_accepts.0,
                "strangers_accepted_rate": strangers_accepted.0,
                "reject_strangers": rejection_summary,
                "enrollment": {
                    "shots_refused": gates_json(&refused),
                    "people_enrolled": results.iter().map(|r| r.enrolled).sum::<usize>(),
                    "people_refused_inconsistent": results.iter().map(|r| r.enrollments_refused).sum::<usize>(),
                    "people_enrolled_with_warning": results.iter().map(|r| r.enrollments_warned).sum::<usize>(),
                },
            })
        );
    } else {
        println!(
            "{} people, {}-shot, {} draws, threshold {:.3}; {} probes and {} stranger faces per draw; {} photos without a face",
            data.people.len(),
            args.gallery_shots,
            results.len(),
            pipeline.threshold,
            results[0].probes,
            results[0].strangers,
            missing_pool + missing_probes
        );
        let line = |label: &str, (mean, min, max): (f64, f64, f64)| {
            println!(
                "{label:28} {:6.1} %   (draws: {:.1} .. {:.1} %)",
                mean * 100.0,
                min * 100.0,
                max * 100.0
            )
        };
        let total = |f: fn(&DrawResult) -> usize| results.iter().map(f).sum::<usize>();
        println!(
            "enrolled as `enroll` would: shots refused {}; over the draws {} people enrolled, {} \
             refused (shots not one person), {} taken with a warning",
            if refused.is_empty() {
                "none".to_string()
            } else {
                refused
                    .iter()
                    .map(|(g, n)| format!("{n} {}", gate_words(*g)))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            total(|r| r.enrolled),
            total(|r| r.enrollments_refused),
            total(|r| r.enrollments_warned)
        );
        line("rank-1 (closed set)", rank1);
        println!(
            "{:28} {:6.1} %",
            "rank-1 of enrolled people",
            rank1_of_enrolled * 100.0
        );
        line("identified (open set)", accepted);
        line("false rejects", false_rejects);
        line("false accepts", false_accepts);
        line("strangers accepted", strangers_accepted);
        if let Some(s) = &rejection_summary {
            let pct = |k: &str| s[k].as_f64().unwrap_or(f64::NAN) * 100.0;
            println!(
                "this is not NAME: {} stranger faces accepted over the draws were rejected; \
                 accepted again as the same person: {}; strangers accepted after: {}",
                s["rejected"], s["accepted_again"], s["strangers_accepted_after"]
            );
            println!(
                "  rank-1 {:.1} % -> {:.1} %, identified {:.1} % -> {:.1} % (the gallery's matcher, before -> after)",
                pct("rank1_before"),
                pct("rank1_after"),
                pct("identified_before"),
                pct("identified_after")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Target false-accept rate over different-person pairs
    #[arg(long, value_name = "RATE", default_value_t = 0.01, value_parser = crate::ranges::real(1e-9, 1.0))]
    pub far: f64,
    /// One sub-folder per person (train/ and val/ are pooled)
    pub dataset: PathBuf,
}

pub fn calibrate(args: CalibrateArgs) -> Result<ExitCode, String> {
    if !(0.0..=1.0).contains(&args.far) {
        return Err(format!("--far must be between 0 and 1, got {}", args.far));
    }
    let mut pipeline = args.model.load()?;
    let data = Dataset::open(&args.dataset)?;
    let photos: Vec<(usize, PathBuf)> = data
        .enroll_pool
        .iter()
        .chain(&data.probes)
        .cloned()
        .collect();
    let (embedded, refused) = embed_enrollable(&mut pipeline, &photos);
    if !refused.is_empty() {
        eprintln!(
            "left out as `enroll` would refuse them: {}",
            refused
                .iter()
                .map(|(g, n)| format!("{n} {}", gate_words(*g)))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let samples: Vec<(usize, Vec<f32>)> = embedded
        .into_iter()
        .filter_map(|e| e.embedding.map(|v| (e.person, v)))
        .collect();
    let c = evaluate::calibrate(&samples, args.far)
        .ok_or("calibration needs at least two photos of one person and two people")?;
    println!("{}", serde_json::to_string(&c).map_err(|e| e.to_string())?);
    eprintln!(
        "threshold {:.4}: false accepts {:.2} % of {} different-person pairs, false rejects {:.2} % of {} same-person pairs",
        c.threshold,
        c.far * 100.0,
        c.impostor_pairs,
        c.frr * 100.0,
        c.genuine_pairs
    );
    Ok(ExitCode::SUCCESS)
}

fn gate_words(gate: Gate) -> &'static str {
    match gate {
        Gate::NoFace => "without a face",
        Gate::SeveralFaces => "with several faces",
        Gate::TooSmall => "too small",
        Gate::TooBlurred => "too blurred",
        Gate::TooDark => "too dark",
        Gate::TooBright => "too bright",
    }
}
