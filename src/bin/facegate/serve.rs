//! `facegate serve`: `watch`'s live pipeline plus the web UI, the HTTP API and the event history.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use facegate::serve::history::{History, Retention};
use facegate::serve::hub::Hub;
use facegate::serve::live_sink::ToServer;
use facegate::serve::recorder::Recorder;
use facegate::serve::state_dir::StateDir;
use facegate::serve::{App, Server};

use crate::watch::WatchArgs;

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Address and port the web UI and API listen on (put HTTPS in front with a reverse proxy;
    /// see docs/serve.md)
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Where the event history, snapshots and the API token live [default: /var/lib/facegate
    /// under systemd (STATE_DIRECTORY), ./state otherwise]
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Read the API token from this file instead of the state directory's generated one
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Forget events older than this many days (and their snapshots)
    #[arg(long, value_name = "DAYS", default_value_t = 30.0, value_parser = crate::ranges::real(0.001, 36_500.0))]
    pub keep_days: f64,
    /// Keep at most this many events (the oldest go first)
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = crate::ranges::int(1u64, 100_000_000))]
    pub keep_events: u64,
    /// Largest request body accepted, in bytes (photos for enrollment and recognition)
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20, value_parser = crate::ranges::int(1024usize, 1 << 30))]
    pub max_body: usize,
}

impl ServeArgs {
    fn state_dir(&self) -> PathBuf {
        if let Some(d) = &self.state_dir {
            return d.clone();
        }
        // systemd's StateDirectory= sets this (to /var/lib/facegate in cross/facegate.service).
        match std::env::var_os("STATE_DIRECTORY") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => PathBuf::from("state"),
        }
    }
}

pub fn run(args: ServeArgs) -> Result<ExitCode, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;

    let state = StateDir::open(&args.state_dir())?;
    let (token, generated) = state.token(args.token_file.as_deref())?;
    let token_path = args
        .token_file
        .clone()
        .unwrap_or_else(|| state.dir.join(facegate::serve::state_dir::TOKEN));
    if generated {
        // Printed this once, for the person setting the board up; it stays in the file.
        eprintln!(
            "facegate: generated the API token {token} (kept in {}, readable by this user only)",
            facegate::support::terminal::path(&token_path)
        );
    } else {
        // Never the token itself again (journals are read by more people), but where it is.
        eprintln!(
            "facegate: the API token is in {} (log in to the web UI with it)",
            facegate::support::terminal::path(&token_path)
        );
    }
    let history = Arc::new(Mutex::new(History::open(&state.dir)?));
    let hub = Arc::new(Hub::new(String::new()));
    let keep = Retention {
        days: args.keep_days,
        events: args.keep_events,
    };
    // Events are stored with the camera their line names (only when it is named).
    let recorder = Recorder::start(
        history.clone(),
        hub.clone(),
        keep,
        args.watch.camera_name.clone(),
    )?;
    // One embedder's weights serve both the live pipeline and the API.
    let live_pipeline = args.watch.model.load()?;
    // PINs entered through the API, read by the access rules of the live run.
    let evidence = facegate::access::factors::Evidence::default();
    let app = App::new(
        hub.clone(),
        history,
        &token,
        live_pipeline.share()?,
        args.watch.gallery.gallery.clone(),
        args.max_body,
        state.dir.clone(),
        evidence.clone(),
    );
    let server = Server::start(app, args.listen)?;
    eprintln!(
        "facegate: serving the web UI and API on http://{}{} (state in {})",
        server.addr,
        reachable_as(&server.addr),
        facegate::support::terminal::path(&state.dir)
    );

    let mut to_server = ToServer::new(hub.clone(), recorder);
    let outcome = crate::watch::live(
        &args.watch,
        live_pipeline,
        stop.clone(),
        &mut [&mut to_server],
        // A source that ends (a recording, a closed stream) leaves the history, people, API,
        // MQTT and fleet sync running until stopped; one that cannot be opened or fails (a
        // camera unplugged) is tried again, with the UI and `/health` saying why.
        Some(evidence),
    );
    hub.set_stats(|s| s.state = "ended");
    to_server.finish();
    server.stop();
    outcome.map(|()| ExitCode::SUCCESS)
}

/// How other machines reach a server listening on every address (0.0.0.0 is no address to
/// type into a browser): by the board's host name.
fn reachable_as(addr: &std::net::SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return String::new();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.is_ascii());
    match host {
        Some(h) => format!(
            ", from other machines http://{h}.local:{} or the board's address",
            addr.port()
        ),
        None => format!(
            ", from other machines http://<the board's address>:{}",
            addr.port()
        ),
    }
}
