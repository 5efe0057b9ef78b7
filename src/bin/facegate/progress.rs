//! A one-line progress bar with rate and time left, drawn on standard error when it is a terminal
//! (and silent otherwise, so logs and pipes get only the summary).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

pub struct Progress {
    what: &'static str,
    total: usize,
    done: usize,
    started: Instant,
    drawn: Option<Instant>,
    on_terminal: bool,
}

const WIDTH: usize = 30;

impl Progress {
    pub fn new(what: &'static str, total: usize) -> Progress {
        Progress {
            what,
            total,
            done: 0,
            started: Instant::now(),
            drawn: None,
            on_terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn advance(&mut self) {
        self.done += 1;
        // At most ten redraws a second: a terminal is slow next to a fast loop.
        if self.on_terminal
            && (self.done == self.total
                || self
                    .drawn
                    .is_none_or(|t| t.elapsed() >= Duration::from_millis(100)))
        {
            self.draw();
        }
    }

    /// Items per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn draw(&mut self) {
        self.drawn = Some(Instant::now());
        let fraction = self.done as f64 / self.total.max(1) as f64;
        let filled = ((fraction * WIDTH as f64) as usize).min(WIDTH);
        let rate = self.rate();
        let left = if rate > 0.0 && self.done < self.total {
            format!("  ETA {}", clock((self.total - self.done) as f64 / rate))
        } else {
            String::new()
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {}/{} {}  {rate:.1}/s{left}\x1b[K",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled),
            self.done,
            self.total,
            self.what
        );
        let _ = err.flush();
    }

    /// Ends the bar's line so that what follows starts on a fresh one.
    pub fn finish(&self) {
        if self.on_terminal && self.drawn.is_some() {
            eprintln!();
        }
    }
}

/// `1h02m`, `4m05s` or `12s`.
pub fn clock(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A warning printed while a bar may be on screen: it takes the bar's line, and the bar is
/// redrawn below it.
pub fn warn(message: &str) {
    let clear = if std::io::stderr().is_terminal() {
        "\r\x1b[K"
    } else {
        ""
    };
    eprintln!(
        "{clear}facegate: warning: {}",
        facegate::support::terminal::escape_message(message)
    );
}
