//! The integration tests: one test binary (linked once), one module per area. They run the
//! real `facegate` binary and library on real photos, models, galleries, a real mosquitto
//! broker, SQLite file and headless browser; helpers shared by all are in `tests/common/`.

#[path = "../common/mod.rs"]
mod common;

mod access;
mod browser;
mod cli;
mod deploy;
mod edge_faces;
mod enroll;
mod eval;
mod fuzz_replay;
mod gallery_integrity;
mod hardening;
mod home_assistant;
mod opencv_reference;
mod photo_index;
mod recognition;
mod reject;
mod serve;
mod strangers;
mod sync;
mod watch;
