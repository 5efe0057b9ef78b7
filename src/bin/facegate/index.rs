//! `facegate index`: find and embed every face of a photo collection into a searchable index,
//! incrementally (only new and changed photos are read), on several threads.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use facegate::imaging::photo;
use facegate::photo_index::scan::{self, Found};
use facegate::photo_index::{FaceEntry, PhotoEntry, PhotoIndex, Record};
use facegate::support::terminal;

use crate::faces::{ModelArgs, Pipeline};
use crate::progress::Progress;

#[derive(clap::Args)]
pub struct IndexArgs {
    /// Index directory (created if missing)
    #[arg(long, value_name = "DIR")]
    pub index: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Photos read at once [default: one per CPU core]
    #[arg(long, value_name = "N", value_parser = crate::ranges::int(1usize, 256))]
    pub threads: Option<usize>,
    /// Re-embed every photo (needed when the index was built with another model)
    #[arg(long)]
    pub rebuild: bool,
    /// Folders of photos (JPEG and PNG, searched recursively). Photos indexed earlier from other
    /// folders stay in the index; photos gone from these folders are dropped.
    #[arg(value_name = "PHOTO_DIR", required = true)]
    pub folders: Vec<PathBuf>,
}

/// Work is committed at least this often, so an interrupted run loses little.
const CHECKPOINT: Duration = Duration::from_secs(60);

pub fn run(args: IndexArgs) -> Result<ExitCode, String> {
    let pipeline = args.model.load()?;
    let model = pipeline.model_info();
    let lock = PhotoIndex::lock(&args.index)?;
    let index = PhotoIndex::open_or_new(&args.index, &model, pipeline.threshold)?;
    let mut generation = index.generation().map(str::to_owned);
    if index.model().fingerprint != model.fingerprint && !args.rebuild {
        return Err(format!(
            "index {}: it was built with the model {}, this run uses {}; nothing was changed \
             (pass the same --model, or --rebuild to re-embed every photo with the new one)",
            terminal::path(&args.index),
            terminal::escape(&index.model().name),
            terminal::escape(&model.name)
        ));
    }
    let (_, mut records) = index.into_records();
    if args.rebuild {
        records.clear();
    }
    let found = scan::scan(&args.folders, Some(&args.index))?;
    for problem in &found.problems {
        eprintln!("facegate: warning: {}", terminal::escape_message(problem));
    }
    let plan = scan::plan(&records, &found, args.rebuild);
    for gone in &plan.removed {
        records.remove(gone);
    }
    eprintln!(
        "facegate: {} photos found: {} already indexed, {} to index, {} removed",
        found.photos.len(),
        plan.unchanged,
        plan.todo.len(),
        plan.removed.len()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));

    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(plan.todo.len().max(1));
    let total = plan.todo.len();
    let mut progress = Progress::new("photos", total);
    let mut stats = Stats::default();
    let mut last_commit = Instant::now();
    let meta = (&model, pipeline.threshold);
    let result = std::thread::scope(|s| -> Result<(), String> {
        let (tx, rx) = mpsc::sync_channel::<Record>(threads * 2);
        let todo = Arc::new(plan.todo);
        let next = Arc::new(AtomicUsize::new(0));
        let mut pipelines = vec![pipeline];
        for _ in 1..threads {
            pipelines.push(pipelines[0].share()?);
        }
        for mut p in pipelines {
            let (tx, todo, next, stop) = (tx.clone(), todo.clone(), next.clone(), stop.clone());
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(found) = todo.get(next.fetch_add(1, Ordering::Relaxed)) else {
                        break;
                    };
                    if tx.send(read_photo(&mut p, found)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for record in rx {
            stats.count(&record);
            records.insert(record.photo.path.clone(), record);
            progress.advance();
            if last_commit.elapsed() >= CHECKPOINT {
                generation = Some(PhotoIndex::commit(
                    &args.index,
                    &lock,
                    meta,
                    generation.as_deref(),
                    &records,
                )?);
                last_commit = Instant::now();
            }
        }
        Ok(())
    });
    progress.finish();
    result?;
    let changed = stats.photos > 0 || !plan.removed.is_empty() || generation.is_none();
    if changed {
        PhotoIndex::commit(&args.index, &lock, meta, generation.as_deref(), &records)?;
    }
    let faces: usize = records.values().map(|r| r.faces.len()).sum();
    if stats.photos == 0 {
        println!(
            "nothing new to index; the index holds {} photos and {} faces",
            records.len(),
            faces
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "indexed {} photos in {:.1} s ({:.2} photos/s, {} thread{}): {} faces, {} without a face, \
         {} unreadable; the index holds {} photos and {} faces",
        stats.photos,
        progress.elapsed().as_secs_f64(),
        progress.rate(),
        threads,
        if threads == 1 { "" } else { "s" },
        stats.faces,
        stats.faceless,
        stats.unreadable,
        records.len(),
        faces
    );
    if stop.load(Ordering::Relaxed) && stats.photos < total {
        eprintln!(
            "facegate: stopped after {} of {total} photos; what was read is saved, run the same \
             command again to go on",
            stats.photos
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Default)]
struct Stats {
    photos: usize,
    faces: usize,
    faceless: usize,
    unreadable: usize,
}

impl Stats {
    fn count(&mut self, r: &Record) {
        self.photos += 1;
        self.faces += r.faces.len();
        if r.photo.unreadable {
            self.unreadable += 1;
        } else if r.faces.is_empty() {
            self.faceless += 1;
        }
    }
}

/// Reads one photo and embeds its faces. A photo that cannot be read is recorded as unreadable
/// and reported; the next run tries it again (a larger --max-pixels may be all it needs).
fn read_photo(pipeline: &mut Pipeline, found: &Found) -> Record {
    let mut photo = PhotoEntry {
        path: found.path.clone(),
        size: found.size,
        modified_secs: found.modified_secs,
        modified_nanos: found.modified_nanos,
        width: 0,
        height: 0,
        unreadable: false,
        faces: 0,
    };
    let faces = photo::load(&found.path)
        .map_err(|e| e.to_string())
        .and_then(|img| {
            photo.width = img.width() as u32;
            photo.height = img.height() as u32;
            pipeline.faces(&img).map_err(|e| named(&found.path, &e))
        });
    match faces {
        Ok(faces) => {
            photo.faces = faces.len() as u32;
            Record {
                photo,
                faces: faces
                    .into_iter()
                    .map(|(face, embedding)| {
                        let entry = FaceEntry {
                            rect: face.rect,
                            landmarks: face.landmarks,
                        };
                        (entry, embedding)
                    })
                    .collect(),
            }
        }
        Err(e) => {
            crate::progress::warn(&e);
            photo.unreadable = true;
            Record {
                photo,
                faces: Vec::new(),
            }
        }
    }
}

fn named(path: &Path, problem: &str) -> String {
    format!("{}: {problem}", terminal::path(path))
}
