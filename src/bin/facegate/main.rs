//! The `facegate` command line: a thin layer over the library, one module per subcommand.

mod bench;
mod bench_board;
mod bench_latency;
mod bench_liveness;
mod bench_search;
#[cfg(feature = "mqtt")]
mod bench_sync;
mod bench_watch;
mod config;
mod detect;
mod enroll;
mod evaluation;
mod faces;
mod fleet;
mod index;
mod outbox;
mod progress;
mod ranges;
mod recognition;
mod rules;
mod search;
#[cfg(feature = "serve")]
mod serve;
mod unknowns;
mod watch;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "facegate",
    version,
    about = "Face detection and recognition for edge boards"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Largest image decoded, in pixels (checked from the file's header before decoding) [default:
    /// 12582912, 4096x3072]
    #[arg(long, value_name = "PIXELS", global = true, value_parser = ranges::int(1u64, 1 << 32))]
    max_pixels: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Find faces in photos (Haar or LBP cascade, OpenCV-identical results).
    Detect(detect::Args),
    /// Enroll a person from photos (three shots recommended).
    Enroll(enroll::EnrollArgs),
    /// Name the faces in photos, or say they are unknown.
    Identify(recognition::IdentifyArgs),
    /// Say whether two photos show the same person.
    Verify(recognition::VerifyArgs),
    /// List, remove, rename or re-embed enrolled people.
    Gallery(recognition::GalleryCmdArgs),
    /// Measure k-shot identification and unknown rejection on labelled photos.
    Eval(evaluation::EvalArgs),
    /// Recognise people live from a camera, a directory of frames or an MJPEG stream; events as JSON lines.
    Watch(watch::WatchArgs),
    /// Run at the door: live recognition plus the web UI, the HTTP API and the event history.
    #[cfg(feature = "serve")]
    Serve(serve::ServeArgs),
    /// List cameras and the modes they offer.
    Cameras(watch::CamerasArgs),
    /// Check an access rules file and explain what it grants, person by person.
    Rules(rules::RulesArgs),
    /// List, show, enroll or forget the recurring strangers `watch` and `serve` grouped.
    Unknowns(unknowns::UnknownsArgs),
    /// Find and embed every face of a photo collection, for `search` (incremental).
    Index(index::IndexArgs),
    /// Find the photos of an indexed collection that show a person.
    Search(search::SearchArgs),
    /// Derive the match threshold for a target false-accept rate from labelled photos.
    Calibrate(evaluation::CalibrateArgs),
    /// Benchmarks: this board in one table, and detect, embed, match, search, watch.
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// One table of this board's speed and memory, to paste when sharing results
    /// (cross/RASPBERRY-PI.md).
    Board(bench_board::BenchBoardArgs),
    /// Time the detector on photos (used by tools/bench_detect.py to compare with OpenCV).
    Detect(bench::Args),
    /// Time to decision: a visit stream played in real time into `watch` at 10, 15 and 30 fps,
    /// with and without motion gating (first face frame -> event -> door action, CPU per minute).
    Latency(bench_latency::BenchLatencyArgs),
    /// How often liveness takes a picture for a head (APCER, rendered attacks) and a head for a
    /// picture (BPCER, simulated visitors).
    Liveness(bench_liveness::BenchLivenessArgs),
    /// Time face embedding with one or more models on aligned crops.
    Embed(bench::EmbedArgs),
    /// Time matching one face against galleries of many people.
    Match(bench::MatchArgs),
    /// Time `search` over synthetic collections of 10 000 to 1 000 000 faces.
    Search(bench_search::BenchSearchArgs),
    /// Bytes per person on the wire, and the time a new board takes to sync 1 000 and 10 000
    /// people from a (test) broker.
    #[cfg(feature = "mqtt")]
    Sync(bench_sync::BenchSyncArgs),
    /// Time the live pipeline on 640x480 scenes with one and five faces, and its peak memory.
    Watch(bench_watch::BenchWatchArgs),
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    if let Some((sub, path)) = config::config_path(&argv) {
        cmd = match config::apply(cmd, sub, &path, &argv) {
            Ok(cmd) => cmd,
            Err(message) => {
                eprintln!(
                    "facegate: {}",
                    facegate::support::terminal::escape_message(&message)
                );
                return ExitCode::FAILURE;
            }
        };
    }
    let cli = match Cli::from_arg_matches(&cmd.get_matches_from(argv)) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(pixels) = cli.max_pixels {
        facegate::support::limits::set_max_pixels(pixels);
    }
    let result = match cli.command {
        Command::Detect(args) => detect::run(args),
        Command::Bench(BenchArgs { what }) => match what {
            BenchCommand::Board(args) => bench_board::run(args),
            BenchCommand::Detect(args) => bench::run(args),
            BenchCommand::Embed(args) => bench::embed(args),
            BenchCommand::Latency(args) => bench_latency::run(args),
            BenchCommand::Liveness(args) => bench_liveness::run(args),
            BenchCommand::Match(args) => bench::matching(args),
            BenchCommand::Watch(args) => bench_watch::run(args),
            BenchCommand::Search(args) => bench_search::run(args),
            #[cfg(feature = "mqtt")]
            BenchCommand::Sync(args) => bench_sync::run(args),
        },
        Command::Enroll(args) => enroll::enroll(args),
        Command::Identify(args) => recognition::identify(args),
        Command::Verify(args) => recognition::verify(args),
        Command::Gallery(args) => recognition::gallery(args),
        Command::Eval(args) => evaluation::eval(args),
        Command::Calibrate(args) => evaluation::calibrate(args),
        Command::Watch(args) => watch::run(args),
        Command::Index(args) => index::run(args),
        Command::Unknowns(args) => unknowns::run(args),
        Command::Rules(args) => rules::run(args),
        Command::Search(args) => search::run(args),
        #[cfg(feature = "serve")]
        Command::Serve(args) => serve::run(args),
        Command::Cameras(args) => watch::cameras(args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!(
                "facegate: {}",
                facegate::support::terminal::escape_message(&message)
            );
            ExitCode::FAILURE
        }
    }
}
