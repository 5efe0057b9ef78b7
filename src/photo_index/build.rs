//! Building an index: the photos of some folders planned against the index (only new and
//! changed ones are read), read and embedded on several threads, and committed at checkpoints so
//! an interrupted run loses little and the next one goes on where it stopped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::imaging::photo;
use crate::recognize::pipeline::Pipeline;
use crate::support::terminal;

use super::scan::{self, Found};
use super::{FaceEntry, PhotoEntry, PhotoIndex, Record};

/// Work is committed at least this often, so an interrupted run loses little.
const CHECKPOINT: Duration = Duration::from_secs(60);

/// What to index.
pub struct BuildConfig {
    /// The index directory (created if missing).
    pub index: PathBuf,
    /// Folders of photos, searched recursively.
    pub folders: Vec<PathBuf>,
    /// Photos read at once (`None`: one per core).
    pub threads: Option<usize>,
    /// Re-embed every photo (for an index built with another model).
    pub rebuild: bool,
}

/// What a run tells the person who started it, as it goes (all on the calling thread).
pub trait Report {
    /// The folders were scanned: `found` photos, `unchanged` already indexed, `todo` to read,
    /// `removed` gone from the folders.
    fn planned(&mut self, found: usize, unchanged: usize, todo: usize, removed: usize);
    /// One more photo was read.
    fn advanced(&mut self);
    /// Something to warn about: an unreadable photo, a folder that could not be listed.
    fn warn(&mut self, message: &str);
}

/// Counts of one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Photos read in this run.
    pub photos: usize,
    pub faces: usize,
    /// Photos read that show no face.
    pub faceless: usize,
    pub unreadable: usize,
}

impl Counts {
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

/// How a run ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub read: Counts,
    /// Photos there were to read.
    pub todo: usize,
    pub threads: usize,
    /// What the index holds now.
    pub photos_held: usize,
    pub faces_held: usize,
    /// Stopped (`stop` set) before every photo was read; what was read is saved.
    pub stopped: bool,
}

/// Indexes `config.folders` with `pipeline` until done or `stop` is set.
pub fn build(
    config: &BuildConfig,
    pipeline: Pipeline,
    stop: Arc<AtomicBool>,
    report: &mut dyn Report,
) -> Result<Outcome, String> {
    let model = pipeline.model_info();
    let lock = PhotoIndex::lock(&config.index)?;
    let index = PhotoIndex::open_or_new(&config.index, &model, pipeline.threshold)?;
    let mut generation = index.generation().map(str::to_owned);
    if index.model().fingerprint != model.fingerprint && !config.rebuild {
        return Err(format!(
            "index {}: it was built with the model {}, this run uses {}; nothing was changed \
             (pass the same --model, or --rebuild to re-embed every photo with the new one)",
            terminal::path(&config.index),
            terminal::escape(&index.model().name),
            terminal::escape(&model.name)
        ));
    }
    let (_, mut records) = index.into_records();
    if config.rebuild {
        records.clear();
    }
    let found = scan::scan(&config.folders, Some(&config.index))?;
    for problem in &found.problems {
        report.warn(problem);
    }
    let plan = scan::plan(&records, &found, config.rebuild);
    for gone in &plan.removed {
        records.remove(gone);
    }
    report.planned(
        found.photos.len(),
        plan.unchanged,
        plan.todo.len(),
        plan.removed.len(),
    );
    let threads = config
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .min(plan.todo.len().max(1));
    let todo = plan.todo.len();
    let mut read = Counts::default();
    let mut last_commit = Instant::now();
    let meta = (&model, pipeline.threshold);
    let result = std::thread::scope(|s| -> Result<(), String> {
        // A photo's record comes back with the warning to give about it, if any.
        let (tx, rx) = mpsc::sync_channel::<(Record, Option<String>)>(threads * 2);
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
        for (record, warning) in rx {
            if let Some(w) = warning {
                report.warn(&w);
            }
            read.count(&record);
            records.insert(record.photo.path.clone(), record);
            report.advanced();
            if last_commit.elapsed() >= CHECKPOINT {
                generation = Some(PhotoIndex::commit(
                    &config.index,
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
    result?;
    let changed = read.photos > 0 || !plan.removed.is_empty() || generation.is_none();
    if changed {
        PhotoIndex::commit(&config.index, &lock, meta, generation.as_deref(), &records)?;
    }
    Ok(Outcome {
        read,
        todo,
        threads,
        photos_held: records.len(),
        faces_held: records.values().map(|r| r.faces.len()).sum(),
        stopped: stop.load(Ordering::Relaxed) && read.photos < todo,
    })
}

/// Reads one photo and embeds its faces. A photo that cannot be read is recorded as unreadable
/// and reported; the next run tries it again (a larger --max-pixels may be all it needs).
fn read_photo(pipeline: &mut Pipeline, found: &Found) -> (Record, Option<String>) {
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
            let record = Record {
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
            };
            (record, None)
        }
        Err(e) => {
            photo.unreadable = true;
            let record = Record {
                photo,
                faces: Vec::new(),
            };
            (record, Some(e))
        }
    }
}

fn named(path: &Path, problem: &str) -> String {
    format!("{}: {problem}", terminal::path(path))
}
