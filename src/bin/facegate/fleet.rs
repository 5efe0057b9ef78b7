//! `watch --sync mqtt` (and `serve`): the flag, and the fleet's key from the environment. The
//! syncing itself is the library's (`facegate::sync`, started by `facegate::live::run`).

use facegate::live::run::FleetConfig;

/// How galleries are shared between boards.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncVia {
    /// Through the broker given with --mqtt (one retained, signed message per person)
    Mqtt,
}

/// The environment variable holding the fleet's shared secret.
pub const KEY_VARIABLE: &str = "FACEGATE_SYNC_KEY";

/// The fleet behind `url`, with the key from [`KEY_VARIABLE`].
pub fn config(url: &str, credentials: Option<(String, String)>) -> Result<FleetConfig, String> {
    let key = std::env::var(KEY_VARIABLE).map_err(|_| {
        format!(
            "--sync mqtt needs the fleet's shared secret in {KEY_VARIABLE} (the same on \
             every board, e.g. from `head -c 24 /dev/urandom | base64`)"
        )
    })?;
    Ok(FleetConfig {
        url: url.to_string(),
        credentials,
        key: facegate::sync::key(&key)?,
    })
}
