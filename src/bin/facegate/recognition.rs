//! `facegate identify`, `verify` and `gallery`: names out, and the gallery kept.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use facegate::embed::cosine;
use facegate::imaging::photo;
use facegate::store::gallery::Gallery;
use facegate::support::terminal::escape;

use crate::faces::{GalleryArgs, ModelArgs};

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
    /// Someone the face would have matched, had it not been rejected as them.
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct IdentifyLine<'a> {
    image: &'a str,
    faces: Vec<IdentifiedFace<'a>>,
}

pub fn identify(args: IdentifyArgs) -> Result<ExitCode, String> {
    args.gallery.must_exist()?;
    let mut pipeline = args.model.load()?;
    let g = pipeline.open_gallery(&args.gallery.gallery)?;
    let matcher = facegate::recognize::matcher::Matcher::new(g.people());
    if g.people().is_empty() {
        eprintln!(
            "facegate: warning: the gallery {} is empty: every face is unknown",
            facegate::support::terminal::path(&args.gallery.gallery)
        );
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut failures = 0;
    for path in &args.images {
        let faces = match photo::load(path)
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
        let plain = facegate::support::terminal::path(path);
        let line = IdentifyLine {
            image: &shown,
            faces: faces
                .iter()
                .map(|(face, embedding)| {
                    let m = matcher.identify(embedding, pipeline.threshold);
                    let name = m.person.map(|i| g.people()[i].entry.name.as_str());
                    IdentifiedFace {
                        x: face.rect.x,
                        y: face.rect.y,
                        w: face.rect.w,
                        h: face.rect.h,
                        name,
                        score: m.score,
                        known: name.is_some(),
                        refused: m.refused.map(|i| g.people()[i].entry.name.as_str()),
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
                        escape(f.name.unwrap_or("unknown")),
                        f.score,
                        f.w,
                        f.h,
                        f.x,
                        f.y
                    )
                })
                .collect();
            format!(
                "{plain}: {}",
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
    let mut pipeline = args.model.load()?;
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

/// `gallery check`: under the lock, so that a writer's half-done change is not reported as damage.
fn check(dir: &std::path::Path) -> Result<ExitCode, String> {
    let _lock = Gallery::lock(dir).map_err(|e| e.to_string())?;
    let report = Gallery::check(dir);
    for p in &report.problems {
        println!("damaged: {p}");
    }
    for l in &report.leftovers {
        println!("leftover: {l}");
    }
    for f in &report.foreign {
        println!("other: {f}");
    }
    if report.is_consistent() {
        println!(
            "{}: consistent, {} {}",
            facegate::support::terminal::path(dir),
            report.people,
            if report.people == 1 {
                "person"
            } else {
                "people"
            }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "{}: {} {} found; nothing was changed",
            facegate::support::terminal::path(dir),
            report.problems.len(),
            if report.problems.len() == 1 {
                "problem"
            } else {
                "problems"
            }
        );
        Ok(ExitCode::FAILURE)
    }
}

#[derive(clap::Subcommand)]
pub enum GalleryCommand {
    /// List enrolled people
    List,
    /// Remove a person
    Remove { name: String },
    /// Rename a person
    Rename { old: String, new: String },
    /// Record that the face in IMAGE is not NAME ("this is not NAME"): matching then refuses
    /// NAME for faces closer to it than to NAME's own shots
    Reject {
        name: String,
        /// A photo of the face that is not NAME (its largest face is used)
        image: PathBuf,
    },
    /// Re-embed every person's kept crops with the current model
    Reembed,
    /// Check the gallery: index, embeddings and crops agree; exits 1 if anything is damaged
    Check,
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
    args.gallery.must_exist()?;
    // Loading the models is for the commands that need them; `check` reads only the files.
    let pipeline = || args.model.load();
    match args.command {
        GalleryCommand::Check => return check(dir),
        GalleryCommand::List => {
            let info = pipeline()?.model_info();
            let g = Gallery::open_any(dir, &info).map_err(|e| e.to_string())?;
            for p in g.people() {
                let negatives = match p.entry.negatives {
                    0 => String::new(),
                    1 => "\t1 negative".into(),
                    n => format!("\t{n} negatives"),
                };
                println!(
                    "{}\t{}\t{} shots\tenrolled {}{negatives}",
                    p.entry.id,
                    escape(&p.entry.name),
                    p.entry.shots,
                    p.entry.enrolled_unix
                );
            }
            if g.model().fingerprint != info.fingerprint {
                eprintln!("facegate: note: made with model {}, not the current one; run `facegate gallery reembed`", g.model().name);
            }
        }
        GalleryCommand::Remove { name } => {
            let info = pipeline()?.model_info();
            let lock = Gallery::lock(dir).map_err(|e| e.to_string())?;
            let mut g = Gallery::open_any(dir, &info).map_err(|e| e.to_string())?;
            let gone = g.remove(&lock, &name).map_err(|e| e.to_string())?;
            println!("removed {} ({})", escape(&gone.name), gone.id);
        }
        GalleryCommand::Rename { old, new } => {
            let info = pipeline()?.model_info();
            let lock = Gallery::lock(dir).map_err(|e| e.to_string())?;
            let mut g = Gallery::open_any(dir, &info).map_err(|e| e.to_string())?;
            g.rename(&lock, &old, &new).map_err(|e| e.to_string())?;
            println!("renamed {} to {}", escape(&old), escape(&new));
        }
        GalleryCommand::Reject { name, image } => {
            let mut pipeline = pipeline()?;
            let info = pipeline.model_info();
            let (face, embedding) = pipeline.largest_face(&image)?;
            let png = facegate::recognize::enrollment::png(&face.crop)?;
            let lock = Gallery::lock(dir).map_err(|e| e.to_string())?;
            let mut g = Gallery::open(dir, &info).map_err(|e| e.to_string())?;
            let p = g
                .reject(&lock, &name, embedding, &png)
                .map_err(|e| e.to_string())?;
            let n = p.entry.negatives;
            println!(
                "recorded the face in {} as not {} ({n} negative{})",
                facegate::support::terminal::path(&image),
                escape(&name),
                if n == 1 { "" } else { "s" }
            );
        }
        GalleryCommand::Reembed => {
            let mut pipeline = pipeline()?;
            let info = pipeline.model_info();
            let lock = Gallery::lock(dir).map_err(|e| e.to_string())?;
            let mut g = Gallery::open_any(dir, &info).map_err(|e| e.to_string())?;
            let mut all = Vec::new();
            let mut negatives = Vec::new();
            for p in g.people() {
                if p.entry.crops.is_empty() {
                    return Err(format!(
                        "{} was enrolled without crops (--no-crops) and cannot be re-embedded",
                        escape(&p.entry.name)
                    ));
                }
                let mut embed = |names: &[String]| -> Result<Vec<Vec<f32>>, String> {
                    let mut crops = Vec::new();
                    for c in names {
                        let photo = photo::load(&g.crop_path(c)).map_err(|e| e.to_string())?;
                        crops.push(photo.rgb);
                    }
                    pipeline.embedder.embed(&crops)
                };
                all.push(embed(&p.entry.crops)?);
                negatives.push(embed(&p.entry.negative_crops)?);
            }
            let n = all.len();
            g.replace_model(&lock, info, all, negatives)
                .map_err(|e| e.to_string())?;
            println!(
                "re-embedded {n} people with {}",
                escape(&pipeline.embedder.card().name)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
