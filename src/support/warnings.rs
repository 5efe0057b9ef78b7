//! Repeated warnings, rate-limited: a stream of broken frames must not become millions of log
//! lines (a 52 MB stream of bare JPEG start markers once printed 13 million). The first few of
//! each window are shown; the rest are counted and the count is reported.

use std::time::{Duration, Instant};

/// What to do with one warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Print it; `suppressed` warnings were dropped since the last one printed (say so first).
    Show { suppressed: u64 },
    /// Drop it; it is counted.
    Suppress,
}

/// Lets `burst` warnings through per `window`, and counts the others.
#[derive(Debug, Clone)]
pub struct Throttle {
    burst: u32,
    window: Duration,
    window_start: Option<Instant>,
    shown_in_window: u32,
    suppressed: u64,
}

impl Throttle {
    pub fn new(burst: u32, window: Duration) -> Throttle {
        Throttle {
            burst: burst.max(1),
            window,
            window_start: None,
            shown_in_window: 0,
            suppressed: 0,
        }
    }

    /// Ten a minute: enough to see what is wrong, few enough for a service's journal.
    pub fn per_minute() -> Throttle {
        Throttle::new(10, Duration::from_secs(60))
    }

    pub fn admit(&mut self, now: Instant) -> Admit {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            self.window_start = Some(now);
            self.shown_in_window = 0;
        }
        if self.shown_in_window < self.burst {
            self.shown_in_window += 1;
            Admit::Show {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            Admit::Suppress
        }
    }

    /// Prints `message` as a facegate warning on stderr if the throttle lets it through, with
    /// control characters escaped (messages name files and streams from outside).
    pub fn warn(&mut self, message: &str) {
        if let Admit::Show { suppressed } = self.admit(Instant::now()) {
            if suppressed > 0 {
                eprintln!(
                    "facegate: warning: {suppressed} more warnings like the next were not shown"
                );
            }
            eprintln!(
                "facegate: warning: {}",
                crate::support::terminal::escape(message)
            );
        }
    }

    /// Warnings dropped since the last one shown (for a closing summary).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_pass_and_the_rest_is_counted() {
        let mut t = Throttle::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(t.admit(t0), Admit::Show { suppressed: 0 });
        assert_eq!(t.admit(t0), Admit::Show { suppressed: 0 });
        for _ in 0..1000 {
            assert_eq!(t.admit(t0 + Duration::from_secs(1)), Admit::Suppress);
        }
        assert_eq!(
            t.admit(t0 + Duration::from_secs(61)),
            Admit::Show { suppressed: 1000 }
        );
        assert_eq!(
            t.admit(t0 + Duration::from_secs(62)),
            Admit::Show { suppressed: 0 }
        );
        assert_eq!(t.admit(t0 + Duration::from_secs(62)), Admit::Suppress);
        assert_eq!(t.take_suppressed(), 1);
        assert_eq!(t.take_suppressed(), 0);
    }
}
