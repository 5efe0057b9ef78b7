//! Where frames come from: a camera, a directory of images, or a stream of concatenated JPEGs.
//!
//! Every source hands out decoded [`Photo`]s one at a time. A frame that cannot be decoded is
//! reported and skipped (a long-running watcher must survive one bad frame); a source that cannot go
//! on at all (directory gone, camera unplugged) is an error.

pub mod directory;
pub mod mjpeg;

#[cfg(all(feature = "camera", target_os = "linux"))]
pub mod camera;

use crate::imaging::photo::Photo;

/// What a source yields next.
pub enum Next {
    Frame(Photo),
    /// A frame was unreadable; the message says which and why, and the source can go on.
    Skipped(String),
    /// The source has no more frames.
    End,
}

pub trait FrameSource {
    /// Names the source in messages ("directory frames/", "camera 0", "stdin").
    fn describe(&self) -> String;

    /// Whether frames arrive on their own clock (a camera, a paced replay). A live source's frames
    /// are dropped, oldest first, when the consumer falls behind; other sources wait for it.
    fn is_live(&self) -> bool;

    /// The next frame. An error means the source cannot go on.
    fn next_frame(&mut self) -> Result<Next, String>;
}
