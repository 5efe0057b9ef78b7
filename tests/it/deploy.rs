//! `cross/deploy`, checked without a board: its dry run must name every step, in order, and the
//! unit and example config it installs must agree with the binary.

use crate::common::root;
use std::process::Command;

#[test]
fn the_dry_run_installs_binary_config_and_unit_then_starts_the_service() {
    let out = Command::new("bash")
        .arg(root().join("cross/deploy"))
        .args([
            "--dry-run",
            "--binary",
            env!("CARGO_BIN_EXE_facegate"),
            "pi@board",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = [
        "+ scp -q",
        "pi@board:/tmp/facegate-deploy.",
        "useradd --system",
        "--groups video facegate",
        "/usr/local/bin/facegate",
        "if [ 0 = 1 ] || [ ! -f /etc/facegate/config.toml ]",
        "/etc/systemd/system/facegate.service",
        "systemctl enable facegate",
        "systemctl restart facegate",
    ];
    let mut at = 0;
    for step in steps {
        let found = stdout[at..]
            .find(step)
            .unwrap_or_else(|| panic!("missing or out of order: {step}\n{stdout}"));
        at += found;
    }
    let missing = Command::new("bash")
        .arg(root().join("cross/deploy"))
        .args(["--dry-run", "--binary", "/nonexistent/facegate", "pi@board"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/facegate does not exist")
    );
}

#[test]
fn a_package_is_copied_and_installed_with_apt() {
    let dir = std::env::temp_dir().join(format!("facegate-deploy-deb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let deb = dir.join("facegate_0.1.0_arm64.deb");
    std::fs::write(&deb, b"!<arch>\n").unwrap();
    let out = Command::new("bash")
        .arg(root().join("cross/deploy"))
        .args(["--dry-run", "--deb"])
        .arg(&deb)
        .args(["--config", "cross/config.example.toml", "pi@board"])
        .current_dir(root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = [
        "+ scp -q",
        "pi@board:/tmp/facegate_0.1.0_arm64.deb",
        "sudo apt-get install -y /tmp/facegate_0.1.0_arm64.deb",
        "sudo install -m 644 /tmp/facegate-config.toml /etc/facegate/config.toml",
        "sudo systemctl restart facegate",
    ];
    let mut at = 0;
    for step in steps {
        at += stdout[at..]
            .find(step)
            .unwrap_or_else(|| panic!("missing or out of order: {step}\n{stdout}"));
    }
}

#[test]
fn the_example_config_is_accepted_by_serve() {
    // Every key of the shipped config must be a real `serve` setting: point it at a missing
    // directory of frames and expect the frame error (which ends the service), not a config error.
    let config = std::fs::read_to_string(root().join("cross/config.example.toml")).unwrap();
    let dir = std::env::temp_dir().join(format!("facegate-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.toml");
    let gallery = dir.join("gallery");
    let config = config
        .replace("/var/lib/facegate/gallery", gallery.to_str().unwrap())
        .replace("0.0.0.0:8080", "127.0.0.1:0");
    std::fs::write(&path, config).unwrap();
    // `serve` never exits for its source: it says why and tries again, and Ctrl-C still stops it.
    let mut child = crate::common::facegate()
        .args(["serve", "--frames", "/nonexistent/frames", "--config"])
        .arg(&path)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
        text
    });
    let started = std::time::Instant::now();
    let log = dir.join("state").join("events.db");
    while !log.exists() && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert!(
        stderr.contains("cannot read frame directory /nonexistent/frames")
            && stderr.contains("trying again"),
        "{stderr}"
    );
    assert!(status.success(), "stopped by Ctrl-C: {stderr}");
    let unit = std::fs::read_to_string(root().join("cross/facegate.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/local/bin/facegate serve --config /etc/facegate/config.toml")
    );
    assert!(unit.contains("StateDirectory=facegate") && unit.contains("Restart=on-failure"));
}
