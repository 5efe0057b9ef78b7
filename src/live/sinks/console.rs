//! What a live run tells the person who started it, on stderr: what is watched, gallery
//! changes, `--stats` lines and the closing counts.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::store::gallery::Person;
use crate::support::terminal;

use super::super::capture::Counts;
use super::super::recognizer::{Recognizer, StageTotals};
use super::{FrameDone, Sink};

pub struct Console {
    gallery: PathBuf,
    /// `--stats`: a line every this often.
    stats: Option<Stats>,
}

impl Console {
    /// `gallery` is named when it is empty; `stats_every`: print per-stage timings this often.
    pub fn new(gallery: PathBuf, stats_every: Option<Duration>) -> Console {
        Console {
            gallery,
            stats: stats_every.map(Stats::new),
        }
    }
}

fn people_count(n: usize) -> String {
    format!("{n} {}", if n == 1 { "person" } else { "people" })
}

impl Sink for Console {
    fn started(&mut self, source: &str, people: &[Person]) {
        eprintln!(
            "facegate: watching {} with {} enrolled",
            terminal::escape(source),
            people_count(people.len())
        );
        if people.is_empty() {
            eprintln!(
                "facegate: warning: the gallery {} is empty: every face is unknown",
                terminal::path(&self.gallery)
            );
        }
    }

    fn frame(&mut self, frame: &FrameDone<'_>) {
        if let Some(stats) = &mut self.stats {
            stats.maybe_print(&frame.recognizer.totals(), frame.dropped);
        }
    }

    fn gallery(&mut self, people: &[Person]) {
        eprintln!(
            "facegate: the gallery changed: {} enrolled",
            people_count(people.len())
        );
    }

    fn finish(&mut self, recognizer: &Recognizer, counts: Counts) {
        if let Some(stats) = &mut self.stats {
            stats.print(&recognizer.totals(), counts.dropped);
        }
        let totals = recognizer.totals();
        eprintln!(
            "facegate: {} frames, {} dropped, {} unreadable, {} detected",
            totals.frames,
            counts.dropped,
            counts.skipped,
            totals.frames - totals.gated
        );
    }
}

/// Periodic `--stats` lines, each about the interval since the previous one.
struct Stats {
    every: Duration,
    since: Instant,
    last: StageTotals,
    last_dropped: u64,
}

impl Stats {
    fn new(every: Duration) -> Stats {
        Stats {
            every,
            since: Instant::now(),
            last: StageTotals::default(),
            last_dropped: 0,
        }
    }

    fn maybe_print(&mut self, totals: &StageTotals, dropped: u64) {
        if self.since.elapsed() >= self.every {
            self.print(totals, dropped);
        }
    }

    fn print(&mut self, totals: &StageTotals, dropped: u64) {
        let part = totals.since(&self.last);
        let seconds = self.since.elapsed().as_secs_f64().max(1e-9);
        let [detect, landmarks, embed, track] = part.per_frame_ms();
        eprintln!(
            "facegate: stats: {:.1} fps, per frame: detect {detect:.1} ms, landmarks+align {landmarks:.1} ms, embed {embed:.1} ms, match+track {track:.2} ms; {:.2} faces/frame, {} embedded, {} dropped, {} detected",
            part.frames as f64 / seconds,
            part.faces as f64 / part.frames.max(1) as f64,
            part.embedded,
            dropped - self.last_dropped,
            part.frames - part.gated,
        );
        self.since = Instant::now();
        self.last = *totals;
        self.last_dropped = dropped;
    }
}
