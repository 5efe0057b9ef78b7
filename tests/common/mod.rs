//! Helpers for the integration tests that run the facegate binary (each test file is its own
//! crate and uses a part of them).
#![allow(dead_code)]

pub mod broker;
pub mod server;

use std::path::PathBuf;
use std::process::Output;

/// A test photo from tests/fixtures/photos.
pub fn photo(name: &str) -> String {
    format!(
        "{}/tests/fixtures/photos/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// A new empty folder for one test, unique to this test process.
pub fn scratch(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("facegate-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The standard output of a run that must have succeeded.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "facegate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the facegate binary with `args` and extra environment variables.
pub fn run_facegate<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Enrolls `name` into `gallery` from one test photo (the run must succeed).
pub fn enroll(gallery: &std::path::Path, name: &str, image: &str) {
    ok(&std::process::Command::new(env!("CARGO_BIN_EXE_facegate"))
        .args(["enroll", "--name", name, "--gallery"])
        .arg(gallery)
        .arg(photo(image))
        .output()
        .unwrap());
}
