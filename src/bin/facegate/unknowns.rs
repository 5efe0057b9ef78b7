//! `facegate unknowns`: the recurring strangers `watch` and `serve` grouped, listed, shown, and
//! enrolled as a person from their best shots.

use std::path::PathBuf;
use std::process::ExitCode;

use facegate::live::strangers::{Cluster, Strangers};
use facegate::recognize::enrollment::check_consistent;
use facegate::store::gallery::Gallery;
use facegate::support::terminal;

use crate::faces::{GalleryArgs, ModelArgs};

#[derive(clap::Args)]
pub struct UnknownsArgs {
    #[command(subcommand)]
    what: UnknownsCommand,
    #[command(flatten)]
    gallery: GalleryArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// The strangers' folder [default: GALLERY/unknowns]
    #[arg(long, value_name = "DIR", global = true)]
    unknowns: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum UnknownsCommand {
    /// Every recurring stranger, most recently seen first
    List {
        /// One JSON line per stranger
        #[arg(long)]
        json: bool,
    },
    /// One stranger: visits, times and the crop files of the best shots
    Show { id: String },
    /// Enroll a stranger as NAME from their (up to three) best shots
    Enroll {
        id: String,
        #[arg(long)]
        name: String,
    },
    /// Forget a stranger (their shots are deleted)
    Forget { id: String },
}

#[derive(serde::Serialize)]
struct Line<'a> {
    id: &'a str,
    visits: u64,
    first_seen: f64,
    last_seen: f64,
    shots: Vec<String>,
}

fn line<'a>(s: &Strangers, c: &'a Cluster) -> Line<'a> {
    Line {
        id: &c.id,
        visits: c.visits,
        first_seen: c.first_seen,
        last_seen: c.last_seen,
        shots: c
            .shots
            .iter()
            .map(|shot| s.crop_path(shot).display().to_string())
            .collect(),
    }
}

pub fn run(args: UnknownsArgs) -> Result<ExitCode, String> {
    args.gallery.must_exist()?;
    let pipeline = args.model.load()?;
    let model = pipeline.model_info();
    let dir = args
        .unknowns
        .clone()
        .unwrap_or_else(|| args.gallery.gallery.join("unknowns"));
    let strangers = Strangers::open(&dir, &model, pipeline.threshold, f64::INFINITY)?;
    match args.what {
        UnknownsCommand::List { json } => {
            let clusters = strangers.clusters()?;
            if clusters.is_empty() && !json {
                println!("no strangers kept in {}", terminal::path(&dir));
            }
            for c in &clusters {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&line(&strangers, c)).map_err(|e| e.to_string())?
                    );
                } else {
                    println!(
                        "{}  {} visit{}, last seen {}, {} shot{}",
                        c.id,
                        c.visits,
                        if c.visits == 1 { "" } else { "s" },
                        when(c.last_seen),
                        c.shots.len(),
                        if c.shots.len() == 1 { "" } else { "s" }
                    );
                }
            }
        }
        UnknownsCommand::Show { id } => {
            let clusters = strangers.clusters()?;
            let c = clusters
                .iter()
                .find(|c| c.id == id)
                .ok_or_else(|| no_such(&id))?;
            println!(
                "{}: {} visits, first seen {}, last seen {}",
                c.id,
                c.visits,
                when(c.first_seen),
                when(c.last_seen)
            );
            for shot in &c.shots {
                println!(
                    "  {} ({} px wide, {})",
                    terminal::path(&strangers.crop_path(shot)),
                    shot.width,
                    when(shot.ts)
                );
            }
        }
        UnknownsCommand::Enroll { id, name } => {
            facegate::store::gallery::validate_name(&name)?;
            let lock = Gallery::lock(&args.gallery.gallery).map_err(|e| e.to_string())?;
            let mut g = pipeline.open_gallery(&args.gallery.gallery)?;
            let mut enrolled = None;
            strangers.remove(&id, |c| {
                let shots: Vec<&Vec<f32>> = c.shots.iter().map(|s| &s.embedding).collect();
                let labels: Vec<String> = c.shots.iter().map(|s| s.crop.clone()).collect();
                for warning in check_consistent(&shots, &labels, pipeline.threshold)? {
                    eprintln!("facegate: warning: {}", terminal::escape_message(&warning));
                }
                let crops = c
                    .shots
                    .iter()
                    .map(|s| {
                        std::fs::read(strangers.crop_path(s)).map_err(|e| {
                            format!("{}: {e}", terminal::path(&strangers.crop_path(s)))
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let embeddings = c.shots.iter().map(|s| s.embedding.clone()).collect();
                let person = g
                    .add(&lock, &name, embeddings, &crops)
                    .map_err(|e| e.to_string())?;
                enrolled = Some((person.entry.id.clone(), person.entry.shots));
                Ok(())
            })?;
            if let Some((pid, shots)) = enrolled {
                println!(
                    "enrolled {} as {pid} from {shots} shot{} of {id}",
                    terminal::escape(&name),
                    if shots == 1 { "" } else { "s" }
                );
            }
        }
        UnknownsCommand::Forget { id } => {
            strangers.remove(&id, |_| Ok(()))?;
            println!("forgot {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn no_such(id: &str) -> String {
    format!(
        "no stranger '{}' (see `facegate unknowns list`)",
        terminal::escape(id)
    )
}

/// Seconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
fn when(ts: f64) -> String {
    jiff::Timestamp::from_second(ts.max(0.0) as i64).map_or_else(
        |_| format!("{ts} s"),
        |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}
