//! What `serve` takes from the live run: frames and the faces in view for the hub (the live view
//! and status), events and access decisions for the history.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::Event;
use crate::live::recognizer::StageTotals;
use crate::live::sinks::{DecisionDone, FrameDone, Sink, SourceState};
use crate::store::gallery::Person;

use super::hub::Hub;
use super::recorder::{Record, Recorder};

/// Frames per second over windows of this length.
const FPS_WINDOW: Duration = Duration::from_secs(2);

/// Feeds the pipeline's frames and events to the server's hub and the history.
pub struct ToServer {
    hub: Arc<Hub>,
    recorder: Recorder,
    window: (Instant, u64),
    /// The recognizer's totals after the previous frame: the difference is this frame's.
    previous: StageTotals,
}

impl ToServer {
    pub fn new(hub: Arc<Hub>, recorder: Recorder) -> ToServer {
        ToServer {
            hub,
            recorder,
            window: (Instant::now(), 0),
            previous: StageTotals::default(),
        }
    }

    /// Writes what the history has not written yet.
    pub fn finish(self) {
        self.recorder.finish();
    }
}

impl Sink for ToServer {
    fn started(&mut self, source: &str, _people: &[Person]) {
        self.hub.set_stats(|s| s.source = source.to_string());
    }

    fn frame(&mut self, frame: &FrameDone<'_>) {
        let totals = frame.recognizer.totals();
        let elapsed = self.window.0.elapsed();
        let fps = (elapsed >= FPS_WINDOW).then(|| {
            let fps = (totals.frames - self.window.1) as f64 / elapsed.as_secs_f64();
            self.window = (Instant::now(), totals.frames);
            fps
        });
        self.hub.record_totals(&totals, frame.dropped, fps);
        let this = totals.since(&self.previous);
        self.previous = totals;
        if this.frames == 1 {
            let stages =
                [this.detect, this.landmarks, this.embed, this.track].map(|d| d.as_secs_f64());
            let whole = stages.iter().sum();
            let [d, l, e, t] = stages;
            self.hub.record_latency([d, l, e, t, whole]);
        }
        let in_view = frame.recognizer.in_view();
        self.hub
            .frame_done(frame.number, frame.rgb.clone(), in_view);
    }

    fn source_state(&mut self, state: &SourceState) {
        self.hub.set_stats(|s| match state {
            SourceState::Up { live } => {
                s.state = "up";
                s.reason = None;
                s.live_source = *live;
                s.up_since = Some(Instant::now());
            }
            SourceState::Retrying { reason, .. } => {
                s.state = "retrying";
                s.reason = Some(reason.clone());
            }
        });
    }

    fn source_ended(&mut self) {
        self.hub.set_stats(|s| s.state = "ended");
        eprintln!("facegate: the frame source ended; still serving until stopped (Ctrl-C)");
    }

    fn event(&mut self, event: &Event, _line: &str) -> Result<(), String> {
        self.recorder.send(Record::Event(event.clone()));
        Ok(())
    }

    fn decision(&mut self, decision: &DecisionDone<'_>) -> Result<(), String> {
        let which = usize::from(!decision.decision.granted);
        self.hub.decisions[which].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.recorder
            .send(Record::Decision(decision.decision.clone()));
        Ok(())
    }
}
