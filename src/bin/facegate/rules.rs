//! `facegate rules check FILE`: what an access rules file grants, person by person, checked
//! against the gallery exactly as `watch --rules` checks it at start.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::faces::{GalleryArgs, ModelArgs};

#[derive(clap::Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    what: RulesCommand,
}

#[derive(clap::Subcommand)]
enum RulesCommand {
    /// Check a rules file and explain what it grants to each enrolled person and to strangers
    Check {
        file: PathBuf,
        #[command(flatten)]
        gallery: GalleryArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
}

pub fn run(args: RulesArgs) -> Result<ExitCode, String> {
    match args.what {
        RulesCommand::Check {
            file,
            gallery,
            model,
        } => {
            gallery.must_exist()?;
            let pipeline = model.load()?;
            let g = pipeline.open_gallery(&gallery.gallery)?;
            let people: Vec<String> = g.people().iter().map(|p| p.entry.name.clone()).collect();
            let rules = facegate::access::rules::Rules::read(&file, &people)?;
            print!("{}", rules.explain(&people));
            // `watch` and `serve` start with these (the door keeps running); a check says them
            // and fails, so that a script or the owner sees what to fix.
            rules.warn(&file);
            Ok(if rules.warnings.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
