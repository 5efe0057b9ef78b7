//! facegate: face detection and recognition for edge boards.
//!
//! The pipeline runs one way: a frame source yields images, the [`detector`] finds faces, and later
//! stages crop, embed and match them. This crate is the library behind the `facegate` binary.

pub mod access;
pub mod align;
pub mod capture;
pub mod detector;
pub mod draw;
pub mod embedder;
pub mod enrollment;
pub mod evaluate;
pub mod events;
pub mod frames;
pub mod gallery;
pub mod grey;
pub mod image_io;
pub mod jpeg;
pub mod limits;
pub mod live;
pub mod matcher;
pub mod memory;
pub mod model_card;
pub mod models;
#[cfg(feature = "mqtt")]
pub mod mqtt;
pub mod onnx_reader;
pub mod photo_index;
pub mod pipeline;
pub mod recognize;
#[cfg(feature = "serve")]
pub mod serve;
pub mod settings;
pub mod strangers;
pub mod sync;
pub mod terminal;
pub mod tracker;
pub mod warnings;
pub mod yunet;
