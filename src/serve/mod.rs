//! `facegate serve`: the board as an appliance. The live pipeline (run by the caller, as `watch`
//! runs it) shares its frames and events through a [`hub::Hub`]; this module adds the event
//! history, the HTTP API and the web UI on a small tokio runtime of its own, so a slow client
//! never holds up recognition.

pub mod api;
pub mod auth;
mod connections;
mod gzipped;
pub mod history;
pub mod hub;
pub mod live_sink;
pub mod pending;
pub mod recorder;
pub mod state_dir;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::recognize::pipeline::Pipeline;
use crate::store::gallery::{Gallery, IndexStamp};

/// What the status page shows about the model.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ModelSummary {
    pub name: String,
    pub licence: String,
    pub fingerprint: String,
    pub threshold: f32,
    pub embedding_dim: usize,
}

impl ModelSummary {
    pub fn of(pipeline: &Pipeline) -> ModelSummary {
        let card = pipeline.embedder.card();
        ModelSummary {
            name: card.name.clone(),
            licence: card.license.clone(),
            fingerprint: card.sha256.clone(),
            threshold: pipeline.threshold,
            embedding_dim: card.embedding_dim,
        }
    }
}

/// Everything a request handler may use.
pub struct App {
    pub hub: Arc<hub::Hub>,
    pub history: Arc<Mutex<history::History>>,
    pub token: auth::Token,
    pub logins: auth::FailedLogins,
    /// The stages for still photos (API requests), apart from the live pipeline's own.
    pub pipeline: Mutex<Pipeline>,
    pub model: ModelSummary,
    /// What the gallery must have been embedded with (fixed for the process's life, so that
    /// gallery reads need not wait for the pipeline's lock while it recognises a photo).
    pub model_info: crate::store::gallery::ModelInfo,
    pub gallery_dir: PathBuf,
    gallery: Mutex<Option<(Option<IndexStamp>, Arc<Gallery>)>>,
    pub pending: pending::PendingShots,
    pub max_body: usize,
    /// Requests with a body (photos) in progress at most: each may hold `max_body` bytes.
    pub uploads: Arc<tokio::sync::Semaphore>,
    pub state_dir: PathBuf,
    /// What the access rules' factors saw: the PINs entered through the API go here.
    pub evidence: crate::access::factors::Evidence,
    pub wrong_pins: api::pin::WrongPins,
}

/// Uploads handled at once; more get 503 and a Retry-After. With the default 16 MiB bodies this
/// bounds what requests can hold to 64 MiB, and recognition runs one photo at a time anyway.
const MAX_UPLOADS: usize = 4;

/// Recovers a poisoned lock: a panicking request must not take the server down with it.
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        hub: Arc<hub::Hub>,
        history: Arc<Mutex<history::History>>,
        token: &str,
        pipeline: Pipeline,
        gallery_dir: PathBuf,
        max_body: usize,
        state_dir: PathBuf,
        evidence: crate::access::factors::Evidence,
    ) -> App {
        App {
            hub,
            history,
            token: auth::Token::new(token),
            logins: auth::FailedLogins::default(),
            model: ModelSummary::of(&pipeline),
            model_info: pipeline.model_info(),
            pipeline: Mutex::new(pipeline),
            gallery_dir,
            gallery: Mutex::new(None),
            pending: pending::PendingShots::default(),
            max_body,
            uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
            state_dir,
            evidence,
            wrong_pins: api::pin::WrongPins::default(),
        }
    }

    /// The gallery as committed now, re-read only when its index changed on disk.
    pub fn gallery(&self) -> Result<Arc<Gallery>, String> {
        let stamp = Gallery::index_stamp(&self.gallery_dir);
        let mut cached = lock(&self.gallery);
        if let Some((s, g)) = &*cached {
            if *s == stamp && stamp.is_some() {
                return Ok(g.clone());
            }
        }
        let g = Arc::new(
            Gallery::open(&self.gallery_dir, &self.model_info).map_err(|e| e.to_string())?,
        );
        *cached = Some((stamp, g.clone()));
        Ok(g)
    }
}

/// The running HTTP server.
pub struct Server {
    pub addr: SocketAddr,
    runtime: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Worker threads of the server's runtime: requests are small; heavy work (recognition, JPEG
/// encoding, SQLite) runs on the blocking pool, bounded below.
const WORKERS: usize = 2;
const BLOCKING_THREADS: usize = 8;

impl Server {
    /// Binds `listen` and starts serving `app`.
    pub fn start(app: App, listen: SocketAddr) -> Result<Server, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .max_blocking_threads(BLOCKING_THREADS)
            .thread_name("facegate-http")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
        let std_listener = std::net::TcpListener::bind(listen)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = api::router(Arc::new(app));
        let task = runtime.block_on(async {
            let listener = tokio::net::TcpListener::from_std(std_listener)
                .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
            Ok::<_, String>(tokio::spawn(connections::accept(listener, router, stopped)))
        })?;
        Ok(Server {
            addr,
            runtime,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Stops accepting requests, lets running ones finish briefly, and stops.
    pub fn stop(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(task) = self.task.take() {
            // Streams (MJPEG, SSE) never finish on their own: give requests a moment, no more.
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(std::time::Duration::from_secs(2), task).await
            });
        }
        self.runtime
            .shutdown_timeout(std::time::Duration::from_secs(1));
    }
}
