//! The state directory of `facegate serve`: its lock (one server per directory) and the API
//! token.

use std::fs::File;
use std::path::{Path, PathBuf};

const LOCK: &str = "serve.lock";
pub const TOKEN: &str = "token";
/// 128 bits of randomness, as 32 hex digits.
const TOKEN_BYTES: usize = 16;
/// A shorter token than this is guessable; one set by hand must be at least this long.
pub const MIN_TOKEN_CHARS: usize = 32;

pub struct StateDir {
    pub dir: PathBuf,
    _lock: File,
}

impl StateDir {
    /// Creates the directory (owner-only) if needed and takes its lock.
    pub fn open(dir: &Path) -> Result<StateDir, String> {
        let shown = crate::support::terminal::path(dir);
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the state directory {shown}: {e}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Snapshots of faces and the token live here: other users have no business reading.
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = dir.join(LOCK);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", crate::support::terminal::path(&path)))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "another facegate serve is using the state directory {shown}; stop it, or \
                     give this one its own --state-dir"
                ))
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!(
                    "cannot lock {}: {e}",
                    crate::support::terminal::path(&path)
                ))
            }
        }
        Ok(StateDir {
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// The API token: read from `token_file` when given, else from the state directory, where
    /// a new one is generated on first start. The flag says whether it was just generated.
    pub fn token(&self, token_file: Option<&Path>) -> Result<(String, bool), String> {
        if let Some(path) = token_file {
            return read_token(path).map(|t| (t, false));
        }
        let path = self.dir.join(TOKEN);
        if path.exists() {
            return read_token(&path).map(|t| (t, false));
        }
        let mut bytes = [0u8; TOKEN_BYTES];
        getrandom::fill(&mut bytes)
            .map_err(|e| format!("cannot get random bytes for a token: {e}"))?;
        let token = crate::embed::model_card::hex(&bytes);
        write_private(&path, format!("{token}\n").as_bytes())?;
        Ok((token, true))
    }
}

fn read_token(path: &Path) -> Result<String, String> {
    let text = crate::support::limits::read_text(path, 4096, "token file")?;
    let token = text.trim();
    // The login puts the token in a cookie: visible ASCII without the cookie's separators.
    let cookie_safe = |c: char| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\');
    if token.chars().count() < MIN_TOKEN_CHARS || !token.chars().all(cookie_safe) {
        return Err(format!(
            "token file {}: a token is one word of at least {MIN_TOKEN_CHARS} ASCII letters, \
             digits or punctuation other than ; , \" \\ (`openssl rand -hex 16` makes one)",
            crate::support::terminal::path(path)
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                eprintln!(
                    "facegate: warning: the token file {} can be read by other users; chmod 600 it",
                    crate::support::terminal::path(path)
                );
            }
        }
    }
    Ok(token.to_string())
}

/// Writes a file only its owner can read, atomically.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    crate::support::durable::write_private(path, bytes)
        .map_err(|e| format!("cannot write {}: {e}", crate::support::terminal::path(path)))
}
