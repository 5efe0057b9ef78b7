//! The `facegate` command line: a thin layer over the library, one module per subcommand.

mod bench;
mod detect;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "facegate",
    version,
    about = "Face detection and recognition for edge boards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find faces in photos (Haar or LBP cascade, OpenCV-identical results).
    Detect(detect::Args),
    /// Time the detector on photos (used by tools/bench_detect.py to compare with OpenCV).
    Bench(bench::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Detect(args) => detect::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("facegate: {message}");
            ExitCode::FAILURE
        }
    }
}
