//! `watch --sync mqtt` (and `serve`): this board's gallery kept in step with the fleet's through
//! the MQTT broker (see the library's `sync` module).

use crate::faces::Pipeline;
use crate::watch::WatchArgs;

/// How galleries are shared between boards.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncVia {
    /// Through the broker given with --mqtt (one retained, signed message per person)
    Mqtt,
}

/// The environment variable holding the fleet's shared secret.
#[cfg(feature = "mqtt")]
pub const KEY_VARIABLE: &str = "FACEGATE_SYNC_KEY";

#[cfg(feature = "mqtt")]
pub struct Fleet(facegate::sync::member::Sync);

#[cfg(feature = "mqtt")]
impl Fleet {
    /// Joins the gallery to the fleet and starts syncing it, when `--sync` asks for it.
    pub fn start(args: &WatchArgs, pipeline: &Pipeline) -> Result<Option<Fleet>, String> {
        use facegate::sync::member::{Sync, SyncConfig};
        let (Some(SyncVia::Mqtt), Some(url)) = (args.sync, &args.mqtt) else {
            return Ok(None);
        };
        let key = std::env::var(KEY_VARIABLE).map_err(|_| {
            format!(
                "--sync mqtt needs the fleet's shared secret in {KEY_VARIABLE} (the same on \
                 every board, e.g. from `head -c 24 /dev/urandom | base64`)"
            )
        })?;
        let key = facegate::sync::key(&key)?;
        let credentials = args.mqtt_credentials();
        let mut embedder = pipeline.share()?.embedder;
        let config = SyncConfig {
            url: url.clone(),
            credentials,
            key,
            gallery: args.gallery.gallery.clone(),
            model: pipeline.model_info(),
        };
        let sync = Sync::start(config, Box::new(move |crops| embedder.embed(crops)))?;
        eprintln!(
            "facegate: sync: sharing the gallery with the fleet through {url} as board {}",
            sync.board()
        );
        Ok(Some(Fleet(sync)))
    }

    pub fn stop(self) {
        self.0.stop();
    }
}

#[cfg(not(feature = "mqtt"))]
pub enum Fleet {}

#[cfg(not(feature = "mqtt"))]
impl Fleet {
    pub fn start(args: &WatchArgs, _: &Pipeline) -> Result<Option<Fleet>, String> {
        match args.sync {
            Some(_) => Err("this facegate was built without MQTT support (the `mqtt` feature), which --sync needs".into()),
            None => Ok(None),
        }
    }

    pub fn stop(self) {
        match self {}
    }
}
