//! Where a live run's output goes. The run hands every sink the same things in the same order:
//! the people at start, each processed frame, each event with its JSON line, each access decision
//! with its audit line and the messages its actions publish, gallery changes, and the end.
//!
//! A new destination for events (an HTTP push, a file, a second broker) is one more type here
//! implementing [`Sink`]; the live loop does not change.

pub mod console;
pub mod json_lines;
#[cfg(feature = "mqtt")]
pub mod mqtt;

use std::sync::Arc;

use image::RgbImage;

use crate::access::Decision;
use crate::store::gallery::Person;

use super::capture::Counts;
use super::recognizer::Recognizer;
use crate::events::Event;

/// A processed frame, as sinks see it.
pub struct FrameDone<'a> {
    /// 1-based position in the source.
    pub number: u64,
    /// The frame's pixels (sinks that keep them clone the `Arc`, not the pixels).
    pub rgb: &'a Arc<RgbImage>,
    /// The recognizer after this frame: faces in view, stage totals.
    pub recognizer: &'a Recognizer,
    /// Frames the capture dropped so far because recognition was behind.
    pub dropped: u64,
}

/// An access decision, as sinks see it.
pub struct DecisionDone<'a> {
    pub decision: &'a Decision,
    /// The decision's audit line (JSON).
    pub audit: &'a str,
    /// The MQTT messages (topic, payload) its actions publish.
    pub messages: &'a [(String, String)],
}

/// The frame source's state, as a run tells its sinks.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceState {
    /// Open and delivering; `live`: a camera or a live stream (frames are expected steadily).
    Up { live: bool },
    /// Down (could not be opened, failed, or a stream broke off): tried again after `wait`.
    Retrying {
        reason: String,
        wait: std::time::Duration,
    },
}

/// One destination of a live run's output. Every method has a default that does nothing, so a
/// sink implements only what it takes.
pub trait Sink {
    /// Before capture starts, with the people enrolled: a sink that needs a connection makes it
    /// here, and an error stops the run before the camera opens.
    fn open(&mut self, _people: &[Person]) -> Result<(), String> {
        Ok(())
    }

    /// The source is open; `source` names it.
    fn started(&mut self, _source: &str, _people: &[Person]) {}

    /// A frame went through the pipeline (before its events are handed out).
    fn frame(&mut self, _frame: &FrameDone<'_>) {}

    /// An event, with its JSON line (the same line on stdout, MQTT and the history).
    fn event(&mut self, _event: &Event, _line: &str) -> Result<(), String> {
        Ok(())
    }

    /// An access decision made on the event just handed out.
    fn decision(&mut self, _decision: &DecisionDone<'_>) -> Result<(), String> {
        Ok(())
    }

    /// The events of one frame have all been handed out.
    fn flush(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// The gallery changed on disk and was re-read.
    fn gallery(&mut self, _people: &[Person]) {}

    /// The frame source is up, or down and about to be tried again (`retry` runs).
    fn source_state(&mut self, _state: &SourceState) {}

    /// The frame source has ended (a recording, a closed stream) and the run lingers until
    /// stopped (see [`super::run::LiveConfig::linger`]): no frames come any more, but gallery
    /// changes still do.
    fn source_ended(&mut self) {}

    /// The run is over (the source ended, failed or was stopped); the last events were handed
    /// out. A sink with a connection closes it here.
    fn finish(&mut self, _recognizer: &Recognizer, _counts: Counts) {}
}
