//! `facegate rules check FILE`: what an access rules file grants, person by person, checked
//! against the gallery exactly as `watch --rules` checks it at start. `facegate rules bind NAME`:
//! the rules grant the person enrolled under NAME now (after the person a name meant was removed
//! and the name enrolled again). `facegate rules pin NAME`: sets the PIN the rules' `pin` factor
//! asks of that person, read from standard input.

use std::path::PathBuf;
use std::process::ExitCode;

use facegate::access::bindings::Bindings;
use facegate::access::pins::Pins;
use facegate::access::rules::{Enrolled, Rules};
use facegate::support::terminal;

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
    /// Make the names the rules give mean the people enrolled under them now
    ///
    /// The first time a live run finds a name of the rules enrolled, it binds the name to that
    /// person's id, so that someone enrolled later under the same name is not granted. Run this
    /// when that new person is meant to be granted.
    Bind {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[command(flatten)]
        gallery: GalleryArgs,
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Set a person's PIN for the rules' `pin` factor (4 to 12 digits, read from standard input)
    ///
    /// The PIN is entered at the door through `facegate serve`'s API (POST
    /// /api/v1/access/pin) and opens nothing without the person's face. Kept salted and hashed
    /// in the gallery directory (access-pins.json, readable by this user only).
    Pin {
        #[arg(value_name = "NAME")]
        name: String,
        /// Remove the person's PIN instead
        #[arg(long)]
        remove: bool,
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
            let (g, bindings) = open(&gallery, &model)?;
            let people = Enrolled::of(g.people());
            let rules = Rules::read(&file, &people, &bindings)?;
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
        RulesCommand::Bind {
            names,
            gallery,
            model,
        } => {
            let (g, mut bindings) = open(&gallery, &model)?;
            for name in &names {
                let person = find(&g, name)?;
                let before = bindings.get(name).map(str::to_string);
                if bindings.bind(name, &person.entry.id) {
                    match before {
                        Some(old) => println!(
                            "'{}' in the rules now means {} (it meant {old})",
                            terminal::escape(name),
                            person.entry.id
                        ),
                        None => println!(
                            "'{}' in the rules means {}",
                            terminal::escape(name),
                            person.entry.id
                        ),
                    }
                } else {
                    println!(
                        "'{}' in the rules already means {}",
                        terminal::escape(name),
                        person.entry.id
                    );
                }
            }
            bindings.save(&gallery.gallery)?;
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Pin {
            name,
            remove,
            gallery,
            model,
        } => {
            let (g, _) = open(&gallery, &model)?;
            let person = find(&g, &name)?;
            let id = person.entry.id.clone();
            let mut pins = Pins::load(&gallery.gallery)?;
            if remove {
                if !pins.remove(&id) {
                    println!("{} ({id}) has no PIN", terminal::escape(&name));
                    return Ok(ExitCode::SUCCESS);
                }
                pins.save(&gallery.gallery)?;
                println!("removed the PIN of {} ({id})", terminal::escape(&name));
                return Ok(ExitCode::SUCCESS);
            }
            // One line, never an argument: other users can read the process list.
            let mut line = String::new();
            let stdin = std::io::Read::take(std::io::stdin().lock(), 64);
            std::io::BufRead::read_line(&mut std::io::BufReader::new(stdin), &mut line)
                .map_err(|e| format!("cannot read the PIN from standard input: {e}"))?;
            let pin = line.trim_end_matches(['\n', '\r']);
            pins.set(&id, pin)
                .map_err(|e| format!("the PIN read from standard input: {e}"))?;
            pins.save(&gallery.gallery)?;
            println!("set the PIN of {} ({id})", terminal::escape(&name));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The person enrolled as `name`.
fn find<'g>(
    g: &'g facegate::store::gallery::Gallery,
    name: &str,
) -> Result<&'g facegate::store::gallery::Person, String> {
    g.people()
        .iter()
        .find(|p| p.entry.name == name)
        .ok_or_else(|| {
            format!(
                "nobody named '{}' is enrolled (names are as `facegate gallery list` shows them)",
                terminal::escape(name)
            )
        })
}

/// The gallery (checked against the model) and the names its rules were bound to.
fn open(
    gallery: &GalleryArgs,
    model: &ModelArgs,
) -> Result<(facegate::store::gallery::Gallery, Bindings), String> {
    gallery.must_exist()?;
    let g = model.load()?.open_gallery(&gallery.gallery)?;
    Ok((g, Bindings::load(&gallery.gallery)?))
}
