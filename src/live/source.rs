//! Which frame source a live run reads, chosen by the caller and opened on the capture thread.

use std::path::PathBuf;

use super::frames::directory::DirectorySource;
use super::frames::mjpeg::MjpegSource;
use super::frames::FrameSource;

/// Opens the chosen source; run on the capture thread, so a camera is opened where it is read.
pub type Opener = Box<dyn FnOnce() -> Result<Box<dyn FrameSource>, String> + Send>;

/// A frame source, as the command line or a settings file names it.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceSpec {
    /// A V4L2 camera, in the mode closest to the one asked for.
    Camera {
        index: u32,
        width: u32,
        height: u32,
        fps: u32,
    },
    /// The JPEG and PNG files of a directory in file-name order, optionally released at `fps`.
    Directory { dir: PathBuf, fps: Option<f64> },
    /// Concatenated JPEGs from a file, or from standard input when the path is `-`; `live`
    /// drops the oldest frames when recognition falls behind.
    Mjpeg { path: PathBuf, live: bool },
}

impl SourceSpec {
    /// How to open this source (on the capture thread).
    pub fn opener(&self) -> Result<Opener, String> {
        match self.clone() {
            SourceSpec::Directory { dir, fps } => Ok(Box::new(move || {
                Ok(Box::new(DirectorySource::open(&dir, fps)?) as Box<dyn FrameSource>)
            })),
            SourceSpec::Mjpeg { path, live } => Ok(Box::new(move || {
                if path.as_os_str() == "-" {
                    return Ok(
                        Box::new(MjpegSource::new("stdin".into(), std::io::stdin(), live))
                            as Box<dyn FrameSource>,
                    );
                }
                let file = std::fs::File::open(&path)
                    .map_err(|e| format!("cannot open MJPEG stream {}: {e}", path.display()))?;
                Ok(Box::new(MjpegSource::new(
                    path.display().to_string(),
                    file,
                    live,
                )))
            })),
            SourceSpec::Camera {
                index,
                width,
                height,
                fps,
            } => camera_opener(index, width, height, fps),
        }
    }

    /// Whether the source can deliver again after it ended: a camera, or a stream read from a
    /// file or a pipe that a writer may open again; not a directory of frames, nor standard
    /// input.
    pub fn can_return(&self) -> bool {
        match self {
            SourceSpec::Camera { .. } => true,
            SourceSpec::Mjpeg { path, .. } => path.as_os_str() != "-",
            SourceSpec::Directory { .. } => false,
        }
    }

    /// The rate frames are numbered at when a scripted clock gives them times: the directory's
    /// `fps`, else 10 frames a second.
    pub fn clock_rate(&self) -> f64 {
        match self {
            SourceSpec::Directory { fps: Some(fps), .. } => *fps,
            _ => 10.0,
        }
    }
}

#[cfg(all(feature = "camera", target_os = "linux"))]
fn camera_opener(index: u32, width: u32, height: u32, fps: u32) -> Result<Opener, String> {
    use super::frames::camera::{CameraRequest, CameraSource};
    let request = CameraRequest {
        index,
        width,
        height,
        fps,
    };
    Ok(Box::new(move || {
        Ok(Box::new(CameraSource::open(request)?) as Box<dyn FrameSource>)
    }))
}

#[cfg(not(all(feature = "camera", target_os = "linux")))]
fn camera_opener(index: u32, _: u32, _: u32, _: u32) -> Result<Opener, String> {
    Err(format!(
        "cannot open camera {index}: this facegate was built without camera support (the `camera` feature, Linux only); use --frames or --mjpeg"
    ))
}
