//! Pictures in memory: decoding photos as OpenCV does, grey conversion, JPEG, drawing.

pub mod crop;
pub mod draw;
pub mod grey;
pub mod jpeg;
pub mod photo;
pub mod rect;
