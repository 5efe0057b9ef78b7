//! `facegate index`: find and embed every face of a photo collection into a searchable index,
//! incrementally (only new and changed photos are read), on several threads.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use facegate::photo_index::build::{build, BuildConfig, Outcome, Report};

use crate::faces::ModelArgs;
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

/// The progress bar and warnings on stderr.
struct Terminal {
    progress: Option<Progress>,
}

impl Report for Terminal {
    fn planned(&mut self, found: usize, unchanged: usize, todo: usize, removed: usize) {
        eprintln!(
            "facegate: {found} photos found: {unchanged} already indexed, {todo} to index, {removed} removed"
        );
        self.progress = Some(Progress::new("photos", todo));
    }

    fn advanced(&mut self) {
        if let Some(p) = &mut self.progress {
            p.advance();
        }
    }

    fn warn(&mut self, message: &str) {
        crate::progress::warn(message);
    }
}

pub fn run(args: IndexArgs) -> Result<ExitCode, String> {
    let pipeline = args.model.load()?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed));
    let config = BuildConfig {
        index: args.index,
        folders: args.folders,
        threads: args.threads,
        rebuild: args.rebuild,
    };
    let mut terminal = Terminal { progress: None };
    let outcome = build(&config, pipeline, stop, &mut terminal);
    let Some(progress) = terminal.progress else {
        return outcome.map(|_| ExitCode::SUCCESS);
    };
    progress.finish();
    let Outcome {
        read,
        todo,
        threads,
        photos_held,
        faces_held,
        stopped,
    } = outcome?;
    if read.photos == 0 {
        println!(
            "nothing new to index; the index holds {photos_held} photos and {faces_held} faces"
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "indexed {} photos in {:.1} s ({:.2} photos/s, {} thread{}): {} faces, {} without a face, \
         {} unreadable; the index holds {photos_held} photos and {faces_held} faces",
        read.photos,
        progress.elapsed().as_secs_f64(),
        progress.rate(),
        threads,
        if threads == 1 { "" } else { "s" },
        read.faces,
        read.faceless,
        read.unreadable,
    );
    if stopped {
        eprintln!(
            "facegate: stopped after {} of {todo} photos; what was read is saved, run the same \
             command again to go on",
            read.photos
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
