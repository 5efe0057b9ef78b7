//! Frames from a V4L2 camera through `nokhwa`. The camera is asked for MJPEG (what USB cameras
//! deliver at full frame rate) or YUYV, and the frames are decoded here: MJPEG with the same
//! libjpeg-turbo decoder as photos, YUYV with the BT.601 conversion cameras use.

use image::RgbImage;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
    Resolution,
};
use nokhwa::Camera;

use super::{FrameSource, Next};
use crate::imaging::photo::{self, Photo};

/// Formats facegate can decode, in order of preference.
const DECODABLE: [FrameFormat; 2] = [FrameFormat::MJPEG, FrameFormat::YUYV];

pub struct CameraSource {
    index: u32,
    camera: Camera,
}

/// What the user asks of the camera; the closest mode it supports is used.
#[derive(Debug, Clone, Copy)]
pub struct CameraRequest {
    pub index: u32,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl CameraSource {
    pub fn open(request: CameraRequest) -> Result<CameraSource, String> {
        let CameraRequest {
            index,
            width,
            height,
            fps,
        } = request;
        let wanted = CameraFormat::new(Resolution::new(width, height), FrameFormat::MJPEG, fps);
        let format =
            RequestedFormat::with_formats(RequestedFormatType::Closest(wanted), &DECODABLE);
        let device = format!("/dev/video{index}");
        let mut camera = Camera::new(CameraIndex::Index(index), format).map_err(|e| {
            let hint = if !std::path::Path::new(&device).exists() {
                format!(" ({device} does not exist: is a camera plugged in? `facegate cameras` lists them)")
            } else {
                format!(" (is {device} in use by another program, or is this user outside the `video` group?)")
            };
            format!("cannot open camera {index}: {e}{hint}")
        })?;
        camera
            .open_stream()
            .map_err(|e| format!("cannot start camera {index} ({device} busy?): {e}"))?;
        Ok(CameraSource { index, camera })
    }

    pub fn format(&self) -> CameraFormat {
        self.camera.camera_format()
    }
}

impl FrameSource for CameraSource {
    fn describe(&self) -> String {
        let f = self.camera.camera_format();
        format!(
            "camera {} ({}x{} {} at {} fps)",
            self.index,
            f.width(),
            f.height(),
            f.format(),
            f.frame_rate()
        )
    }

    fn is_live(&self) -> bool {
        true
    }

    fn next_frame(&mut self) -> Result<Next, String> {
        let buffer = self
            .camera
            .frame()
            .map_err(|e| format!("camera {} stopped delivering frames: {e}", self.index))?;
        let res = buffer.resolution();
        let decoded = match buffer.source_frame_format() {
            FrameFormat::MJPEG => photo::decode(buffer.buffer()),
            FrameFormat::YUYV => yuyv_to_rgb(buffer.buffer(), res.width(), res.height())
                .map(|rgb| Photo::from_dynamic(image::DynamicImage::ImageRgb8(rgb))),
            other => Err(format!(
                "the camera sent {other} frames, which facegate cannot decode"
            )),
        };
        Ok(match decoded {
            Ok(photo) => Next::Frame(photo),
            Err(e) => Next::Skipped(format!("camera {}: bad frame: {e}", self.index)),
        })
    }
}

/// YUYV 4:2:2 (two pixels share U and V) to RGB, BT.601 limited range in 16.16 fixed point.
pub fn yuyv_to_rgb(data: &[u8], width: u32, height: u32) -> Result<RgbImage, String> {
    let need = width as usize * height as usize * 2;
    if !width.is_multiple_of(2) || data.len() < need {
        return Err(format!(
            "a {width}x{height} YUYV frame needs {need} bytes, got {}",
            data.len()
        ));
    }
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    let clamp = |v: i32| (v >> 16).clamp(0, 255) as u8;
    for quad in data[..need].chunks_exact(4) {
        let (u, v) = (quad[1] as i32 - 128, quad[3] as i32 - 128);
        for y in [quad[0], quad[2]] {
            let c = 76_284 * (y as i32 - 16) + (1 << 15);
            rgb.extend_from_slice(&[
                clamp(c + 104_595 * v),
                clamp(c - 25_690 * u - 53_281 * v),
                clamp(c + 132_186 * u),
            ]);
        }
    }
    RgbImage::from_raw(width, height, rgb).ok_or_else(|| "YUYV frame size mismatch".to_string())
}

/// One line per camera and per decodable mode, for `facegate cameras`.
pub fn list() -> Result<Vec<String>, String> {
    let cameras =
        nokhwa::query(ApiBackend::Video4Linux).map_err(|e| format!("cannot list cameras: {e}"))?;
    let mut lines = Vec::new();
    for info in cameras {
        let CameraIndex::Index(index) = info.index().clone() else {
            continue;
        };
        lines.push(format!(
            "camera {index}: {} ({})",
            info.human_name(),
            info.description()
        ));
        let any = RequestedFormat::with_formats(RequestedFormatType::None, &DECODABLE);
        match Camera::new(CameraIndex::Index(index), any)
            .and_then(|mut c| c.compatible_camera_formats())
        {
            Ok(mut formats) => {
                formats.retain(|f| DECODABLE.contains(&f.format()));
                formats.sort_by_key(|f| {
                    (
                        f.format() as u8,
                        std::cmp::Reverse((f.width(), f.height(), f.frame_rate())),
                    )
                });
                for f in formats {
                    lines.push(format!(
                        "  {} {}x{} at {} fps",
                        f.format(),
                        f.width(),
                        f.height(),
                        f.frame_rate()
                    ));
                }
            }
            Err(e) => lines.push(format!("  cannot read its formats: {e}")),
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_greys_and_colours_convert_as_bt601() {
        // Black, white (limited range 16..235) and pure red (Y 81, U 90, V 240).
        let data = [16, 128, 235, 128, 81, 90, 81, 240];
        let rgb = yuyv_to_rgb(&data, 2, 2).unwrap();
        assert_eq!(rgb.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(rgb.get_pixel(1, 0).0, [255, 255, 255]);
        let red = rgb.get_pixel(0, 1).0;
        assert!(red[0] >= 250 && red[1] <= 3 && red[2] <= 3, "{red:?}");
        assert!(yuyv_to_rgb(&data, 2, 3)
            .unwrap_err()
            .contains("needs 12 bytes"));
    }

    #[test]
    fn a_missing_camera_is_a_clear_error() {
        // These build machines have no camera; on one that does, index 250 still does not exist.
        let err = CameraSource::open(CameraRequest {
            index: 250,
            width: 640,
            height: 480,
            fps: 30,
        })
        .err()
        .unwrap();
        assert!(err.starts_with("cannot open camera 250: "), "{err}");
    }
}
