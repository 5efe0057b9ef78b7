//! Shots taken from the live camera for a guided enrollment in the web UI, kept in memory until
//! the person is saved: bounded in number and age, so an abandoned enrollment costs nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::recognize::enrollment::Shot;

/// How long a taken shot waits to be saved.
pub const SHOT_LIFETIME: Duration = Duration::from_secs(600);
/// Shots held at most (several people enrolling at once); the oldest go first.
const MAX_SHOTS: usize = 32;

#[derive(Default)]
pub struct PendingShots {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    shots: Vec<(String, Instant, Shot)>,
}

impl PendingShots {
    /// Keeps a shot; returns its id (`c1`, `c2`, ...).
    pub fn add(&self, shot: Shot) -> String {
        let mut inner = crate::serve::lock(&self.inner);
        let now = Instant::now();
        inner
            .shots
            .retain(|(_, t, _)| now.duration_since(*t) < SHOT_LIFETIME);
        if inner.shots.len() >= MAX_SHOTS {
            inner.shots.remove(0);
        }
        inner.next += 1;
        let id = format!("c{}", inner.next);
        inner.shots.push((id.clone(), now, shot));
        id
    }

    /// A shot still held.
    pub fn get(&self, id: &str) -> Option<Shot> {
        let inner = crate::serve::lock(&self.inner);
        let now = Instant::now();
        inner
            .shots
            .iter()
            .find(|(i, t, _)| i == id && now.duration_since(*t) < SHOT_LIFETIME)
            .map(|(_, _, s)| s.clone())
    }

    /// Forgets shots that were saved.
    pub fn remove(&self, ids: &[String]) {
        crate::serve::lock(&self.inner)
            .shots
            .retain(|(i, _, _)| !ids.contains(i));
    }
}
