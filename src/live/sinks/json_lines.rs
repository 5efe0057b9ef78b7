//! Events and access decisions as JSON lines on a writer (stdout for `watch` and `serve`): the
//! form scripts and pipes read.

use std::io::Write;

use super::{DecisionDone, Sink};
use crate::events::Event;

pub struct JsonLines<W: Write> {
    out: W,
}

impl<W: Write> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out }
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        writeln!(self.out, "{line}").map_err(|e| format!("cannot write events to stdout: {e}"))
    }
}

impl<W: Write> Sink for JsonLines<W> {
    fn event(&mut self, _event: &Event, line: &str) -> Result<(), String> {
        self.line(line)
    }

    fn decision(&mut self, decision: &DecisionDone<'_>) -> Result<(), String> {
        self.line(decision.audit)
    }

    fn flush(&mut self) -> Result<(), String> {
        self.out
            .flush()
            .map_err(|e| format!("cannot write events to stdout: {e}"))
    }
}
