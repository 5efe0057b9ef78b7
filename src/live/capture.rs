//! Capture on its own thread, so that reading the camera never waits for recognition.
//!
//! Frames travel through a bounded single-producer/single-consumer queue (`heapless::spsc`). When
//! the source is live and the consumer is behind, the producer drops the *oldest* queued frame to
//! make room: what gets recognised is always recent, latency stays bounded by the queue length and
//! memory stays flat. Sources that are not live (files) make the producer wait instead, so every
//! frame is processed and results are reproducible.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread};
use std::time::{Duration, SystemTime};

use heapless::spsc::{Consumer, Producer, Queue};

use crate::imaging::photo::Photo;
use crate::live::frames::{FrameSource, Next};

/// Slots in the queue (`heapless` keeps one of the N free): two frames in flight, so a live
/// stream's frames are at most two frame periods old when recognition starts on them.
const QUEUE_SLOTS: usize = 3;

/// Reasons for skipped frames waiting for the consumer. A stream of nothing but broken frames
/// produces them far faster than anyone reads them; past this many the reason is dropped (the
/// frame is still counted in [`Counts::skipped`]), so memory stays flat.
const SKIP_MESSAGES: usize = 16;

/// A captured frame.
pub struct Frame {
    /// 1-based position in the source, counting frames that were skipped or dropped.
    pub number: u64,
    pub time: SystemTime,
    pub photo: Photo,
}

/// What the consumer receives.
pub enum Item {
    Frame(Frame),
    /// A frame the source could not read, with the reason; capture goes on.
    Skipped(String),
    /// No frame for [`IDLE`]: the caller may do what does not wait for frames (a face waiting
    /// for a PIN, a gallery changed, a timeout) while a camera stalls.
    Idle,
}

/// How long [`Capture::next`] waits for a frame before it returns [`Item::Idle`].
pub const IDLE: Duration = Duration::from_millis(250);

/// Frame counts so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub captured: u64,
    /// Live frames dropped because the consumer was behind.
    pub dropped: u64,
    pub skipped: u64,
}

impl Counts {
    /// The counts of two captures of one run (a source opened again after it failed).
    pub fn plus(self, other: Counts) -> Counts {
        Counts {
            captured: self.captured + other.captured,
            dropped: self.dropped + other.dropped,
            skipped: self.skipped + other.skipped,
        }
    }
}

struct Shared {
    stop: Arc<AtomicBool>,
    closing: AtomicBool,
    done: AtomicBool,
    error: Mutex<Option<String>>,
    captured: AtomicU64,
    dropped: AtomicU64,
    skipped: AtomicU64,
    consumer_thread: Thread,
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.closing.load(Ordering::Relaxed)
    }
}

pub struct Capture {
    consumer: &'static Mutex<Consumer<'static, Frame>>,
    skipped: mpsc::Receiver<String>,
    shared: Arc<Shared>,
    producer_thread: Thread,
    description: String,
    live: bool,
}

impl Capture {
    /// Opens a source on a new capture thread (some sources, like cameras, must live on the thread
    /// that reads them) and returns once it is open. The calling thread becomes the consumer.
    /// Setting `stop` ends capture after the current frame.
    pub fn start<F>(open: F, stop: Arc<AtomicBool>) -> Result<Capture, String>
    where
        F: FnOnce() -> Result<Box<dyn FrameSource>, String> + Send + 'static,
    {
        // The queue outlives this call on both threads. A capture thread blocked in a read (stdin,
        // a camera) cannot be joined on Ctrl-C, so the queue is leaked rather than scoped: a few
        // hundred bytes per capture, frames drained on drop.
        let queue: &'static mut Queue<Frame, QUEUE_SLOTS> = Box::leak(Box::new(Queue::new()));
        let (producer, consumer) = queue.split();
        let consumer: &'static Mutex<Consumer<'static, Frame>> =
            Box::leak(Box::new(Mutex::new(consumer)));
        let shared = Arc::new(Shared {
            stop,
            closing: AtomicBool::new(false),
            done: AtomicBool::new(false),
            error: Mutex::new(None),
            captured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            consumer_thread: thread::current(),
        });
        let (opened_tx, opened_rx) = mpsc::channel();
        let (skipped_tx, skipped_rx) = mpsc::sync_channel(SKIP_MESSAGES);
        let thread_shared = shared.clone();
        let handle = thread::Builder::new()
            .name("facegate-capture".into())
            .spawn(move || {
                let source = match open() {
                    Ok(s) => {
                        let _ = opened_tx.send(Ok((s.describe(), s.is_live())));
                        s
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                produce(source, producer, consumer, &thread_shared, skipped_tx);
                thread_shared.done.store(true, Ordering::Release);
                thread_shared.consumer_thread.unpark();
            })
            .map_err(|e| format!("cannot start the capture thread: {e}"))?;
        let (description, live) = opened_rx
            .recv()
            .map_err(|_| "the capture thread ended before opening the source".to_string())??;
        Ok(Capture {
            consumer,
            skipped: skipped_rx,
            shared,
            producer_thread: handle.thread().clone(),
            description,
            live,
        })
    }

    pub fn description(&self) -> &str {
        &self.description
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    pub fn counts(&self) -> Counts {
        Counts {
            captured: self.shared.captured.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
            skipped: self.shared.skipped.load(Ordering::Relaxed),
        }
    }

    fn dequeue(&self) -> Option<Frame> {
        let frame = self.consumer.lock().ok()?.dequeue();
        if frame.is_some() {
            self.producer_thread.unpark();
        }
        frame
    }

    /// The next item, waiting for it; `None` when the source has ended or `stop` was set. An
    /// error means the source failed (camera unplugged, read error).
    pub fn next(&self) -> Result<Option<Item>, String> {
        let waiting = std::time::Instant::now();
        loop {
            if let Ok(why) = self.skipped.try_recv() {
                return Ok(Some(Item::Skipped(why)));
            }
            if let Some(frame) = self.dequeue() {
                return Ok(Some(Item::Frame(frame)));
            }
            if self.shared.done.load(Ordering::Acquire) {
                // The producer may have queued its last frames just before finishing.
                if let Ok(why) = self.skipped.try_recv() {
                    return Ok(Some(Item::Skipped(why)));
                }
                if let Some(frame) = self.dequeue() {
                    return Ok(Some(Item::Frame(frame)));
                }
                return match self.shared.error.lock().ok().and_then(|mut e| e.take()) {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
            if self.shared.stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
            if waiting.elapsed() >= IDLE {
                return Ok(Some(Item::Idle));
            }
            thread::park_timeout(Duration::from_millis(100));
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::Relaxed);
        self.producer_thread.unpark();
        while self.dequeue().is_some() {}
    }
}

fn produce(
    mut source: Box<dyn FrameSource>,
    mut producer: Producer<'static, Frame>,
    consumer: &Mutex<Consumer<'static, Frame>>,
    shared: &Shared,
    skipped: mpsc::SyncSender<String>,
) {
    let live = source.is_live();
    let mut number = 0;
    while !shared.stopping() {
        let next = source.next_frame();
        number += 1;
        let photo = match next {
            Ok(Next::Frame(photo)) => photo,
            Ok(Next::Skipped(why)) => {
                shared.skipped.fetch_add(1, Ordering::Relaxed);
                // Full: the consumer is behind on reasons; the count above still has this frame.
                let _ = skipped.try_send(why);
                shared.consumer_thread.unpark();
                continue;
            }
            Ok(Next::End) => break,
            Err(e) => {
                if let Ok(mut slot) = shared.error.lock() {
                    *slot = Some(e);
                }
                break;
            }
        };
        shared.captured.fetch_add(1, Ordering::Relaxed);
        let mut frame = Frame {
            number,
            time: SystemTime::now(),
            photo,
        };
        loop {
            match producer.enqueue(frame) {
                Ok(()) => break,
                Err(back) => {
                    frame = back;
                    if live {
                        let oldest = consumer.lock().ok().and_then(|mut c| c.dequeue());
                        if oldest.is_some() {
                            shared.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    } else if shared.stopping() {
                        return;
                    } else {
                        thread::park_timeout(Duration::from_millis(50));
                    }
                }
            }
        }
        shared.consumer_thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of `n` tiny frames, each `delay` apart, live or not.
    struct Synthetic {
        n: u64,
        sent: u64,
        delay: Duration,
        live: bool,
    }

    impl FrameSource for Synthetic {
        fn describe(&self) -> String {
            "synthetic".into()
        }
        fn is_live(&self) -> bool {
            self.live
        }
        fn next_frame(&mut self) -> Result<Next, String> {
            if self.sent == self.n {
                return Ok(Next::End);
            }
            self.sent += 1;
            thread::sleep(self.delay);
            if self.sent == 3 {
                return Ok(Next::Skipped("frame 3 is bad".into()));
            }
            let img = image::RgbImage::new(1, 1);
            Ok(Next::Frame(Photo::from_dynamic(
                image::DynamicImage::ImageRgb8(img),
            )))
        }
    }

    fn run(live: bool, consumer_delay: Duration) -> (Vec<u64>, Counts) {
        let stop = Arc::new(AtomicBool::new(false));
        let capture = Capture::start(
            move || {
                Ok(Box::new(Synthetic {
                    n: 40,
                    sent: 0,
                    delay: Duration::from_millis(1),
                    live,
                }) as Box<dyn FrameSource>)
            },
            stop,
        )
        .unwrap();
        let mut numbers = Vec::new();
        while let Some(item) = capture.next().unwrap() {
            if let Item::Frame(f) = item {
                numbers.push(f.number);
                thread::sleep(consumer_delay);
            }
        }
        (numbers, capture.counts())
    }

    #[test]
    fn files_lose_no_frame_even_with_a_slow_consumer() {
        let (numbers, counts) = run(false, Duration::from_millis(3));
        let expected: Vec<u64> = (1..=40).filter(|&n| n != 3).collect();
        assert_eq!(numbers, expected);
        assert_eq!(
            counts,
            Counts {
                captured: 39,
                dropped: 0,
                skipped: 1
            }
        );
    }

    #[test]
    fn a_live_source_drops_the_oldest_frames_when_the_consumer_is_behind() {
        let (numbers, counts) = run(true, Duration::from_millis(10));
        assert!(counts.dropped > 10, "{counts:?}");
        assert_eq!(numbers.len() as u64 + counts.dropped, counts.captured);
        // Frames arrive in order, and the newest frame is never the one dropped.
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        assert_eq!(numbers.last(), Some(&40));
    }

    /// A stream of nothing but unreadable frames.
    struct AllBad(u64);

    impl FrameSource for AllBad {
        fn describe(&self) -> String {
            "broken".into()
        }
        fn is_live(&self) -> bool {
            false
        }
        fn next_frame(&mut self) -> Result<Next, String> {
            if self.0 == 0 {
                return Ok(Next::End);
            }
            self.0 -= 1;
            Ok(Next::Skipped(format!("frame {} is bad", self.0)))
        }
    }

    #[test]
    fn reasons_for_skipped_frames_are_bounded_but_every_frame_is_counted() {
        let capture = Capture::start(
            || Ok(Box::new(AllBad(100_000)) as Box<dyn FrameSource>),
            Arc::default(),
        )
        .unwrap();
        while capture.counts().skipped < 100_000 {
            thread::sleep(Duration::from_millis(5));
        }
        let mut reasons = 0;
        while let Some(item) = capture.next().unwrap() {
            match item {
                Item::Skipped(_) => reasons += 1,
                Item::Idle => {}
                Item::Frame(_) => panic!("no frame was good"),
            }
        }
        assert!((1..=SKIP_MESSAGES).contains(&reasons), "{reasons}");
        assert_eq!(capture.counts().skipped, 100_000);
    }

    #[test]
    fn a_source_that_cannot_open_is_an_error() {
        let err = Capture::start(
            || Err("cannot open camera 7: no such device".to_string()),
            Arc::default(),
        )
        .err()
        .unwrap();
        assert_eq!(err, "cannot open camera 7: no such device");
    }

    #[test]
    fn stop_ends_capture_early() {
        let stop = Arc::new(AtomicBool::new(false));
        let capture = Capture::start(
            || {
                Ok(Box::new(Synthetic {
                    n: u64::MAX,
                    sent: 0,
                    delay: Duration::from_millis(1),
                    live: true,
                }) as Box<dyn FrameSource>)
            },
            stop.clone(),
        )
        .unwrap();
        let mut frames = 0;
        while let Some(item) = capture.next().unwrap() {
            if let Item::Frame(_) = item {
                frames += 1;
                if frames == 5 {
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        assert!((5..=5 + QUEUE_SLOTS).contains(&frames), "{frames}");
    }
}
