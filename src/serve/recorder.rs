//! The pipeline's events into the history: a thread that stores each event and its snapshot,
//! then tells live subscribers. The pipeline hands events over without waiting; if the disk is
//! so slow that the queue fills, events are counted as dropped rather than stalling recognition.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::events::Event;
use crate::serve::history::{History, Retention};
use crate::serve::hub::Hub;

/// Events waiting to be stored at most.
const QUEUE: usize = 256;

/// What the recorder stores.
pub enum Record {
    Event(Event),
    Decision(crate::access::Decision),
}

pub struct Recorder {
    queue: Option<SyncSender<Record>>,
    thread: Option<std::thread::JoinHandle<()>>,
    hub: Arc<Hub>,
}

impl Recorder {
    pub fn start(
        history: Arc<Mutex<History>>,
        hub: Arc<Hub>,
        keep: Retention,
        camera: Option<String>,
    ) -> Result<Recorder, String> {
        crate::serve::lock(&history).enforce(keep)?;
        let (queue, events) = sync_channel(QUEUE);
        let thread_hub = hub.clone();
        let thread = std::thread::Builder::new()
            .name("facegate-recorder".into())
            .spawn(move || record(events, &history, &thread_hub, keep, camera.as_deref()))
            .map_err(|e| format!("cannot start the event recorder: {e}"))?;
        Ok(Recorder {
            queue: Some(queue),
            thread: Some(thread),
            hub,
        })
    }

    /// Hands an event or decision over; never blocks.
    pub fn send(&self, record: Record) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.hub
                    .events_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Stores what is queued, then stops.
    pub fn finish(mut self) {
        self.queue.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn record(
    records: Receiver<Record>,
    history: &Mutex<History>,
    hub: &Hub,
    keep: Retention,
    camera: Option<&str>,
) {
    let mut warnings = crate::support::warnings::Throttle::per_minute();
    for record in records {
        let event = match record {
            Record::Event(e) => e,
            Record::Decision(d) => {
                if let Err(e) = crate::serve::lock(history).insert_decision(&d) {
                    warnings.warn(&format!("access decision not stored: {e}"));
                }
                continue;
            }
        };
        let snapshot =
            event
                .face
                .as_ref()
                .and_then(|face| match crate::imaging::jpeg::encode(face, 85.0) {
                    Ok(jpeg) => Some(jpeg),
                    Err(e) => {
                        warnings.warn(&format!("event snapshot not kept: {e}"));
                        None
                    }
                });
        let stored = {
            let mut history = crate::serve::lock(history);
            let stored = history.insert(&event, snapshot.as_deref(), camera);
            // Events come a few a minute, and the check is one indexed query: run it every time,
            // before anyone hears of the event, so that the history a listener then reads already
            // holds the limits.
            if let Err(e) = history.enforce(keep) {
                warnings.warn(&e);
            }
            stored
        };
        match stored {
            Ok(stored) => match serde_json::to_string(&stored) {
                Ok(json) => hub.publish_event(event.kind, json.into()),
                Err(e) => warnings.warn(&format!("event not published: {e}")),
            },
            Err(e) => warnings.warn(&format!("event not stored: {e}")),
        }
    }
}
