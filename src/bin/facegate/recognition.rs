//! `facegate enroll`, `identify`, `verify` and `gallery`: people in, names out.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use facegate::embedder::cosine;
use facegate::gallery::{self, Gallery};
use facegate::image_io;

use crate::faces::{GalleryArgs, ModelArgs, Pipeline};

/// Faces narrower than this (photo pixels) are too small to enroll.
const MIN_ENROLL_FACE: i32 = 80;
/// Aligned crops whose grey Laplacian variance is below this are too blurred to enroll.
const MIN_SHARPNESS: f64 = 15.0;

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
    /// Shots of the person (three recommended)
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
}

pub fn enroll(args: EnrollArgs) -> Result<ExitCode, String> {
    gallery::validate_name(&args.name)?;
    let mut pipeline = Pipeline::new(&args.model)?;
    if args.images.len() < 3 {
        eprintln!(
            "facegate: warning: enrolling from {} shot{}; three shots (turning slightly) match more reliably",
            args.images.len(),
            if args.images.len() == 1 { "" } else { "s" }
        );
    }
    let mut shots = Vec::new();
    let mut crops = Vec::new();
    for (i, path) in args.images.iter().enumerate() {
        let which = format!("shot {} ({})", i + 1, path.display());
        let photo = image_io::load(path).map_err(|e| e.to_string())?;
        let mut faces = pipeline.faces(&photo)?;
        if faces.is_empty() {
            return Err(format!("{which}: no face found"));
        }
        if faces.len() > 1 && !args.largest {
            return Err(format!(
                "{which}: {} faces; enroll needs one (or --largest)",
                faces.len()
            ));
        }
        let (face, embedding) = faces.swap_remove(0);
        if face.rect.w < MIN_ENROLL_FACE {
            return Err(format!(
                "{which}: the face is too small ({} px wide, at least {MIN_ENROLL_FACE} needed)",
                face.rect.w
            ));
        }
        let sharpness = laplacian_variance(&face.crop);
        if sharpness < MIN_SHARPNESS {
            return Err(format!("{which}: the face is too blurred (sharpness {sharpness:.1}, at least {MIN_SHARPNESS} needed)"));
        }
        if face.landmarks.is_none() {
            eprintln!("facegate: warning: {which}: no landmarks found, the face is not aligned");
        }
        let mut png = Vec::new();
        face.crop
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .map_err(|e| e.to_string())?;
        shots.push(embedding);
        crops.push(png);
    }
    // Every shot must look like the others: compare it with the mean of the rest.
    if shots.len() > 1 {
        for i in 0..shots.len() {
            let others: Vec<Vec<f32>> = shots
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, s)| s.clone())
                .collect();
            let mut mean = vec![0f32; others[0].len()];
            for o in &others {
                for (m, v) in mean.iter_mut().zip(o) {
                    *m += v;
                }
            }
            let score = cosine(&shots[i], &facegate::embedder::normalized(&mean));
            if score < pipeline.threshold {
                return Err(format!(
                    "shot {} ({}) does not look like the same person as the other shots (cosine {score:.3}, threshold {:.3})",
                    i + 1,
                    args.images[i].display(),
                    pipeline.threshold
                ));
            }
        }
    }
    let lock = Gallery::lock(&args.gallery.gallery).map_err(|e| e.to_string())?;
    let mut g = pipeline.open_gallery(&args.gallery.gallery)?;
    let kept: &[Vec<u8>] = if args.no_crops { &[] } else { &crops };
    let person = g
        .add(&lock, &args.name, shots, kept)
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

/// Variance of the 4-neighbour Laplacian of the crop's grey image: low for blurred faces.
pub fn laplacian_variance(crop: &image::RgbImage) -> f64 {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    let grey: Vec<f64> = crop
        .pixels()
        .map(|p| facegate::grey::luma(p.0[0], p.0[1], p.0[2]) as f64)
        .collect();
    let mut values = Vec::with_capacity(w * h);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let c = grey[y * w + x];
            values.push(
                grey[y * w + x - 1]
                    + grey[y * w + x + 1]
                    + grey[(y - 1) * w + x]
                    + grey[(y + 1) * w + x]
                    - 4.0 * c,
            );
        }
    }
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
}

#[derive(clap::Args)]
pub struct IdentifyArgs {
    #[command(flatten)]
    pub gallery: GalleryArgs,
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON line per image on stdout
    #[arg(long)]
    pub json: bool,
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct IdentifiedFace<'a> {
    x: i32,
    y: i32,
    w: i32,
    h: i32,
    name: Option<&'a str>,
    score: f32,
    known: bool,
}

#[derive(serde::Serialize)]
struct IdentifyLine<'a> {
    image: &'a str,
    faces: Vec<IdentifiedFace<'a>>,
}

pub fn identify(args: IdentifyArgs) -> Result<ExitCode, String> {
    let mut pipeline = Pipeline::new(&args.model)?;
    let g = pipeline.open_gallery(&args.gallery.gallery)?;
    let matcher = facegate::matcher::Matcher::new(g.people());
    if g.people().is_empty() {
        eprintln!(
            "facegate: warning: the gallery {} is empty: every face is unknown",
            args.gallery.gallery.display()
        );
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failures = 0;
    for path in &args.images {
        let faces = match image_io::load(path)
            .map_err(|e| e.to_string())
            .and_then(|p| pipeline.faces(&p))
        {
            Ok(f) => f,
            Err(e) => {
                eprintln!("facegate: {e}");
                failures += 1;
                continue;
            }
        };
        let shown = path.display().to_string();
        let line = IdentifyLine {
            image: &shown,
            faces: faces
                .iter()
                .map(|(face, embedding)| {
                    let best = matcher.top_k(embedding, 1).into_iter().next();
                    let (name, score) = best.map_or((None, 0.0), |(i, s)| {
                        (Some(g.people()[i].entry.name.as_str()), s)
                    });
                    let known = name.is_some() && score >= pipeline.threshold;
                    IdentifiedFace {
                        x: face.rect.x,
                        y: face.rect.y,
                        w: face.rect.w,
                        h: face.rect.h,
                        name: if known { name } else { None },
                        score,
                        known,
                    }
                })
                .collect(),
        };
        let text = if args.json {
            serde_json::to_string(&line).map_err(|e| e.to_string())?
        } else {
            let parts: Vec<String> = line
                .faces
                .iter()
                .map(|f| {
                    format!(
                        "{} ({:.3}) at {}x{}+{}+{}",
                        f.name.unwrap_or("unknown"),
                        f.score,
                        f.w,
                        f.h,
                        f.x,
                        f.y
                    )
                })
                .collect();
            format!(
                "{shown}: {}",
                if parts.is_empty() {
                    "no faces".into()
                } else {
                    parts.join(", ")
                }
            )
        };
        writeln!(out, "{text}").map_err(|e| format!("cannot write to stdout: {e}"))?;
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// One JSON line on stdout
    #[arg(long)]
    pub json: bool,
    /// First photo (its largest face is used)
    pub a: PathBuf,
    /// Second photo (its largest face is used)
    pub b: PathBuf,
}

pub fn verify(args: VerifyArgs) -> Result<ExitCode, String> {
    let mut pipeline = Pipeline::new(&args.model)?;
    let (_, ea) = pipeline.largest_face(&args.a)?;
    let (_, eb) = pipeline.largest_face(&args.b)?;
    let score = cosine(&ea, &eb);
    let same = score >= pipeline.threshold;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"a": args.a.display().to_string(), "b": args.b.display().to_string(),
                "score": score, "same": same, "threshold": pipeline.threshold})
        );
    } else {
        println!(
            "{} (cosine {score:.3}, threshold {:.3})",
            if same {
                "same person"
            } else {
                "different people"
            },
            pipeline.threshold
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum GalleryCommand {
    /// List enrolled people
    List,
    /// Remove a person
    Remove { name: String },
    /// Rename a person
    Rename { old: String, new: String },
    /// Re-embed every person's kept crops with the current model
    Reembed,
}

#[derive(clap::Args)]
pub struct GalleryCmdArgs {
    #[command(subcommand)]
    pub command: GalleryCommand,
    #[command(flatten)]
    pub gallery: GalleryArgs,
    #[command(flatten)]
    pub model: ModelArgs,
}

pub fn gallery(args: GalleryCmdArgs) -> Result<ExitCode, String> {
    let dir = &args.gallery.gallery;
    let mut pipeline = Pipeline::new(&args.model)?;
    let info = pipeline.model_info();
    match args.command {
        GalleryCommand::List => {
            let g = Gallery::open_any(dir, &info).map_err(|e| e.to_string())?;
            for p in g.people() {
                println!(
                    "{}\t{}\t{} shots\tenrolled {}",
                    p.entry.id, p.entry.name, p.entry.shots, p.entry.enrolled_unix
                );
            }
            if g.model().fingerprint != info.fingerprint {
                eprintln!("facegate: note: made with model {}, not the current one; run `facegate gallery reembed`", g.model().name);
            }
        }
        GalleryCommand::Remove { name } => {
            let lock = Gallery::lock(dir).map_err(|e| e.to_string())?;
            let mut g = Gallery::open_any(dir, &info).map_err(|e| e.to_string())?;
            let gone = g.remove(&lock, &name).map_err(|e| e.to_string())?;
            println!("removed {} ({})", gone.name, gone.id);
        }
        GalleryCommand::Rename { old, new } => {
            let lock = Gallery::lock(dir).map_err(|e| e.to_string())?;
            let mut g = Gallery::open_any(dir, &info).map_err(|e| e.to_string())?;
            g.rename(&lock, &old, &new).map_err(|e| e.to_string())?;
            println!("renamed {old} to {new}");
        }
        GalleryCommand::Reembed => {
            let lock = Gallery::lock(dir).map_err(|e| e.to_string())?;
            let mut g = Gallery::open_any(dir, &info).map_err(|e| e.to_string())?;
            let mut all = Vec::new();
            for p in g.people() {
                if p.entry.crops.is_empty() {
                    return Err(format!(
                        "{} was enrolled without crops (--no-crops) and cannot be re-embedded",
                        p.entry.name
                    ));
                }
                let mut crops = Vec::new();
                for c in &p.entry.crops {
                    let path = dir.join(c);
                    let img = image::open(&path)
                        .map_err(|e| format!("cannot read crop {}: {e}", path.display()))?;
                    crops.push(img.to_rgb8());
                }
                all.push(pipeline.embedder.embed(&crops)?);
            }
            let n = all.len();
            g.replace_model(&lock, info, all)
                .map_err(|e| e.to_string())?;
            println!(
                "re-embedded {n} people with {}",
                pipeline.embedder.card().name
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
