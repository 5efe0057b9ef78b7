//! One gallery, many boards: every board's gallery changes travel through the MQTT broker the
//! boards already use, one retained, signed, versioned message per person
//! (`facegate/gallery/<person-id>`), and every board applies what it verifies.
//!
//! - [`message`]: the wire format (HMAC-SHA256 with the fleet's shared key) and its checks.
//! - [`manifest`]: what one board holds (ids and versions), so a board catching up asks for
//!   exactly what it lacks.
//! - [`member`]: the thread that keeps one gallery in step with the broker: it publishes what
//!   changed here (whoever made the change: `watch`, `serve`'s web UI, or the CLI) and applies
//!   what other boards published, re-embedding from the crops when their model differs.
//!
//! No replication protocol of our own: the broker's retained messages are the fleet's state.
//! A board that was off (or is new) reads the boards' manifests when it connects and asks for
//! the people it lacks by their exact topics, a bounded window at a time, so catching up never
//! depends on how many messages the broker queues for one client. Conflicts resolve the same
//! way on every board ([`crate::store::gallery::wins`]: the higher version, then the greater
//! origin board id), removals are tombstones that stay retained, and a board that sees the
//! broker hold an older version than its own publishes its own again.

pub mod manifest;
#[cfg(feature = "mqtt")]
pub mod member;
pub mod message;

pub use message::{key, open, seal, topic, PersonState, SyncShot, MAX_MESSAGE_BYTES};
