//! Helpers shared by the integration tests (`tests/it/`): running the facegate binary, test
//! photos, scratch folders, and (in `broker` and `server`) a real mosquitto and a running
//! `facegate serve`.

pub mod broker;
pub mod http;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's root (where `tests/`, `models/` and `cross/` are).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The facegate binary under test, as a command to add arguments to.
pub fn facegate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_facegate"))
}

/// Runs the facegate binary with `args`.
pub fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    run_facegate(args, &[])
}

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
        "facegate failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the facegate binary with `args` and extra environment variables.
pub fn run_facegate<S: AsRef<std::ffi::OsStr>>(args: &[S], env: &[(&str, &str)]) -> Output {
    facegate()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// Enrolls `name` into `gallery` from one test photo (the run must succeed).
pub fn enroll(gallery: &std::path::Path, name: &str, image: &str) {
    ok(&facegate()
        .args(["enroll", "--name", name, "--gallery"])
        .arg(gallery)
        .arg(photo(image))
        .output()
        .unwrap());
}
