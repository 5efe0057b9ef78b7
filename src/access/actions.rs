//! What a granted (or notified) decision does: pulse a GPIO line, POST a webhook, run a command.
//! (MQTT messages go out through the caller's connection.) Actions run on worker threads, so a
//! slow webhook or a 2-second door pulse never holds up recognition, and webhooks have a thread
//! of their own, so a hanging webhook never delays a door pulse or a command.
//!
//! A command runs with a cleared environment: `PATH` and the decision's `FACEGATE_*` variables
//! only (facegate's own secrets, such as `FACEGATE_SYNC_KEY` and `FACEGATE_MQTT_PASSWORD`, never
//! reach it), and its standard output goes to facegate's standard error (the journal under
//! systemd), never into the JSON event stream. A webhook follows no redirect: a 3xx answer is a
//! failure, like a 4xx or 5xx, so a decision is never delivered to a host the rules do not name.
//!
//! GPIO sits behind [`Gpio`]: the real backend is the Linux GPIO character device (`gpiocdev`),
//! and tests use [`RecordingGpio`]. On a board, check the wiring without facegate with
//! `gpioset -t 1500ms,0 gpiochip0 17=1` (libgpiod 2) and watch a line with `gpiomon gpiochip0 17`.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::factors::{Evidence, GpioInputSpec};

/// A GPIO output line, requested once at start and held.
pub trait OutputLine: Send {
    /// Drives the line active for `length`, then inactive again.
    fn pulse(&mut self, length: Duration) -> Result<(), String>;
}

/// Opens output lines: the chip (`/dev/gpiochip0` or `gpiochip0`), the line offset, and whether
/// the line is active low.
pub trait Gpio: Send + Sync {
    fn open(&self, chip: &str, line: u32, active_low: bool) -> Result<Box<dyn OutputLine>, String>;

    /// Requests an input line (a button, a keypad's relay) and, for as long as the process
    /// runs, records in `evidence` each time it goes active.
    fn watch(&self, spec: &GpioInputSpec, evidence: Evidence) -> Result<(), String>;
}

/// The kernel's GPIO character device.
pub struct Chardev;

impl Gpio for Chardev {
    #[cfg(all(target_os = "linux", feature = "gpio"))]
    fn open(&self, chip: &str, line: u32, active_low: bool) -> Result<Box<dyn OutputLine>, String> {
        use gpiocdev::line::Value;
        let path = chip_path(chip);
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(&path)
            .with_consumer("facegate")
            .with_line(line)
            .as_output(Value::Inactive);
        if active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|e| {
            format!(
                "GPIO line {line} of {path}: {e} (is the chip there, the line free, and the user in \
                 the gpio group?)"
            )
        })?;
        Ok(Box::new(ChardevLine { request }))
    }

    #[cfg(all(target_os = "linux", feature = "gpio"))]
    fn watch(&self, spec: &GpioInputSpec, evidence: Evidence) -> Result<(), String> {
        use gpiocdev::line::EdgeDetection;
        let path = chip_path(&spec.chip);
        let mut builder = gpiocdev::Request::builder();
        builder
            .on_chip(&path)
            .with_consumer("facegate")
            .with_line(spec.line)
            .as_input()
            .with_edge_detection(EdgeDetection::RisingEdge)
            // A mechanical button bounces for a few milliseconds; one press is one edge.
            .with_debounce_period(Duration::from_millis(20));
        if spec.active_low {
            builder.as_active_low();
        }
        let request = builder.request().map_err(|e| {
            format!(
                "GPIO input line {} of {path}: {e} (is the chip there, the line free, and the user \
                 in the gpio group?)",
                spec.line
            )
        })?;
        let (chip, line) = (spec.chip.clone(), spec.line);
        std::thread::Builder::new()
            .name(format!("facegate-input-{line}"))
            .spawn(move || {
                let mut warnings = crate::support::warnings::Throttle::per_minute();
                loop {
                    match request.read_edge_event() {
                        Ok(_) => evidence.input(&chip, line, super::factors::wall_now()),
                        Err(e) => {
                            warnings.warn(&format!("GPIO input line {line} of {chip}: {e}"));
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                }
            })
            .map_err(|e| format!("GPIO input line {}: {e}", spec.line))?;
        Ok(())
    }

    #[cfg(not(all(target_os = "linux", feature = "gpio")))]
    fn watch(&self, spec: &GpioInputSpec, _evidence: Evidence) -> Result<(), String> {
        Err(format!(
            "GPIO input line {} of {}: this build has no GPIO support (Linux, feature `gpio`)",
            spec.line, spec.chip
        ))
    }

    #[cfg(not(all(target_os = "linux", feature = "gpio")))]
    fn open(
        &self,
        chip: &str,
        line: u32,
        _active_low: bool,
    ) -> Result<Box<dyn OutputLine>, String> {
        Err(format!(
            "GPIO line {line} of {chip}: this build has no GPIO support (Linux, feature `gpio`)"
        ))
    }
}

/// `gpiochip0` or `/dev/gpiochip0` to the device's path.
#[cfg(all(target_os = "linux", feature = "gpio"))]
fn chip_path(chip: &str) -> String {
    if chip.starts_with('/') {
        chip.to_string()
    } else {
        format!("/dev/{chip}")
    }
}

#[cfg(all(target_os = "linux", feature = "gpio"))]
struct ChardevLine {
    request: gpiocdev::Request,
}

#[cfg(all(target_os = "linux", feature = "gpio"))]
impl OutputLine for ChardevLine {
    fn pulse(&mut self, length: Duration) -> Result<(), String> {
        use gpiocdev::line::Value;
        self.request
            .set_lone_value(Value::Active)
            .map_err(|e| e.to_string())?;
        std::thread::sleep(length);
        self.request
            .set_lone_value(Value::Inactive)
            .map_err(|e| e.to_string())
    }
}

/// A pulse as [`RecordingGpio`] saw it: chip, line, active low, length.
pub type Pulse = (String, u32, bool, Duration);

/// A stand-in that records pulses instead of driving pins.
#[derive(Clone, Default)]
pub struct RecordingGpio {
    pub pulses: Arc<Mutex<Vec<Pulse>>>,
    /// Chips that exist (others fail to open, as a missing chip would).
    pub chips: Vec<String>,
    /// Input lines watched, with the evidence they would write to (a test presses the
    /// "button" by writing it).
    pub inputs: Arc<Mutex<Vec<(GpioInputSpec, Evidence)>>>,
}

struct RecordingLine {
    key: (String, u32, bool),
    pulses: Arc<Mutex<Vec<Pulse>>>,
}

impl Gpio for RecordingGpio {
    fn open(&self, chip: &str, line: u32, active_low: bool) -> Result<Box<dyn OutputLine>, String> {
        if !self.chips.iter().any(|c| c == chip) {
            return Err(format!("GPIO line {line} of {chip}: no such chip"));
        }
        Ok(Box::new(RecordingLine {
            key: (chip.to_string(), line, active_low),
            pulses: self.pulses.clone(),
        }))
    }

    fn watch(&self, spec: &GpioInputSpec, evidence: Evidence) -> Result<(), String> {
        if !self.chips.contains(&spec.chip) {
            return Err(format!(
                "GPIO input line {} of {}: no such chip",
                spec.line, spec.chip
            ));
        }
        if let Ok(mut i) = self.inputs.lock() {
            i.push((spec.clone(), evidence));
        }
        Ok(())
    }
}

impl OutputLine for RecordingLine {
    fn pulse(&mut self, length: Duration) -> Result<(), String> {
        if let Ok(mut p) = self.pulses.lock() {
            p.push((self.key.0.clone(), self.key.1, self.key.2, length));
        }
        Ok(())
    }
}

/// One thing to do, with the decision as JSON.
pub enum Job {
    Pulse {
        line: usize,
        length: Duration,
    },
    Webhook {
        url: String,
        body: String,
        timeout: Duration,
    },
    Command {
        argv: Vec<String>,
        env: Vec<(String, String)>,
    },
}

/// Runs jobs on two threads, in order on each: door pulses and commands on one, webhooks on the
/// other. Failures are reported on stderr (rate-limited) and never stop recognition.
pub struct Runner {
    local: Queue,
    webhooks: Queue,
}

/// One worker thread and its bounded queue.
struct Queue {
    jobs: Option<mpsc::SyncSender<Job>>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Queue {
    fn start(mut lines: Vec<Box<dyn OutputLine>>) -> Queue {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let worker = std::thread::spawn(move || {
            let mut warnings = crate::support::warnings::Throttle::per_minute();
            for job in rx {
                if let Err(e) = run(job, &mut lines) {
                    warnings.warn(&format!("access action failed: {e}"));
                }
            }
        });
        Queue {
            jobs: Some(tx),
            worker: Some(worker),
        }
    }

    fn submit(&self, job: Job) -> Result<(), String> {
        match &self.jobs {
            Some(tx) => tx
                .try_send(job)
                .map_err(|_| "access actions are behind; an action was dropped".to_string()),
            None => Err("access actions have stopped".into()),
        }
    }

    fn finish(&mut self) {
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Jobs waiting beyond this are dropped (and reported): a stuck webhook must not grow memory.
const QUEUE: usize = 64;

impl Runner {
    pub fn start(lines: Vec<Box<dyn OutputLine>>) -> Runner {
        Runner {
            local: Queue::start(lines),
            webhooks: Queue::start(Vec::new()),
        }
    }

    pub fn submit(&self, job: Job) -> Result<(), String> {
        match job {
            Job::Webhook { .. } => self.webhooks.submit(job),
            _ => self.local.submit(job),
        }
    }

    /// Waits for the queued actions to finish (at exit: a door pulse is not cut short).
    pub fn finish(&mut self) {
        self.local.finish();
        self.webhooks.finish();
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(job: Job, lines: &mut [Box<dyn OutputLine>]) -> Result<(), String> {
    match job {
        Job::Pulse { line, length } => lines
            .get_mut(line)
            .ok_or("no such GPIO line")?
            .pulse(length),
        Job::Webhook { url, body, timeout } => webhook(&url, &body, timeout)
            .map_err(|e| format!("webhook {}: {e}", crate::support::terminal::escape(&url))),
        Job::Command { argv, env } => {
            let (program, args) = argv.split_first().ok_or("empty command")?;
            let mut child = std::process::Command::new(program)
                .args(args)
                .env_clear()
                .env("PATH", command_path())
                .envs(env)
                .stdin(std::process::Stdio::null())
                .stdout(std::io::stderr())
                .spawn()
                .map_err(|e| {
                    format!("command {}: {e}", crate::support::terminal::escape(program))
                })?;
            // Reaped on its own thread: a slow command must not hold the next door pulse.
            std::thread::spawn(move || {
                let _ = child.wait();
            });
            Ok(())
        }
    }
}

/// POSTs the decision; only a 2xx answer counts as delivered. No redirect is followed.
fn webhook(url: &str, body: &str, timeout: Duration) -> Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .redirects(0)
        .timeout(timeout)
        .build();
    let response = agent
        .post(url)
        .set("Content-Type", "application/json")
        .send_string(body)
        .map_err(|e| e.to_string())?;
    match response.status() {
        200..=299 => Ok(()),
        status => Err(format!(
            "answered {status} {} (only 2xx counts as delivered; redirects are not followed)",
            crate::support::terminal::escape(response.status_text())
        )),
    }
}

/// The `PATH` a command action runs with: facegate's own, else the usual system one.
fn command_path() -> std::ffi::OsString {
    std::env::var_os("PATH")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into())
}
