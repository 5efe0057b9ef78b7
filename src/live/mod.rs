//! The live stream: frames from a source, recognised frame by frame, faces followed as tracks,
//! strangers grouped, and visits turned into events.

pub mod capture;
pub mod follow;
pub mod frames;
pub mod liveness;
pub mod motion;
pub mod recognizer;
pub mod run;
pub mod sinks;
pub mod source;
pub mod strangers;
pub mod tracker;
pub mod zones;
