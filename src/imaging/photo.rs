//! Reading photos from disk into the RGB and grey buffers the pipeline works on.
//!
//! Decoding follows what OpenCV's `imread` does with the same file, because detections are compared
//! against OpenCV: JPEG goes through libjpeg-turbo's algorithms, EXIF orientation is applied, alpha
//! is dropped (not blended), 16-bit samples keep their high byte, and grey files stay grey.

use std::fmt;
use std::path::{Path, PathBuf};

use image::metadata::Orientation;
use image::{DynamicImage, ImageFormat, ImageReader, RgbImage};

use crate::support::limits;

/// A decoded photo.
#[derive(Debug, Clone)]
pub struct Photo {
    pub rgb: RgbImage,
    /// Grey version, `width * height` bytes, converted as OpenCV's `COLOR_BGR2GRAY`.
    pub grey: Vec<u8>,
}

impl Photo {
    pub fn width(&self) -> usize {
        self.rgb.width() as usize
    }

    pub fn height(&self) -> usize {
        self.rgb.height() as usize
    }

    pub fn grey_view(&self) -> crate::imaging::grey::GreyView<'_> {
        crate::imaging::grey::GreyView {
            data: &self.grey,
            width: self.width(),
            height: self.height(),
            stride: self.width(),
        }
    }

    /// Builds a photo from decoded pixels, converting to 8-bit RGB and grey as OpenCV would.
    pub fn from_dynamic(img: DynamicImage) -> Photo {
        let (w, h) = (img.width(), img.height());
        let grey_input = matches!(
            img,
            DynamicImage::ImageLuma8(_)
                | DynamicImage::ImageLumaA8(_)
                | DynamicImage::ImageLuma16(_)
                | DynamicImage::ImageLumaA16(_)
        );
        let rgb: RgbImage = match img {
            DynamicImage::ImageRgb8(i) => i,
            DynamicImage::ImageRgba8(i) => RgbImage::from_fn(w, h, |x, y| {
                let p = i.get_pixel(x, y).0;
                image::Rgb([p[0], p[1], p[2]])
            }),
            DynamicImage::ImageRgb16(i) => RgbImage::from_fn(w, h, |x, y| {
                let p = i.get_pixel(x, y).0;
                image::Rgb(p.map(|v| (v >> 8) as u8))
            }),
            DynamicImage::ImageRgba16(i) => RgbImage::from_fn(w, h, |x, y| {
                let p = i.get_pixel(x, y).0;
                image::Rgb([p[0], p[1], p[2]].map(|v| (v >> 8) as u8))
            }),
            DynamicImage::ImageLuma16(i) => RgbImage::from_fn(w, h, |x, y| {
                let v = (i.get_pixel(x, y).0[0] >> 8) as u8;
                image::Rgb([v, v, v])
            }),
            DynamicImage::ImageLumaA16(i) => RgbImage::from_fn(w, h, |x, y| {
                let v = (i.get_pixel(x, y).0[0] >> 8) as u8;
                image::Rgb([v, v, v])
            }),
            other => other.to_rgb8(),
        };
        let grey = if grey_input {
            // R = G = B, and the luma weights sum to one, so the grey value is the sample itself.
            rgb.pixels().map(|p| p.0[0]).collect()
        } else {
            let mut g = vec![0u8; (w * h) as usize];
            crate::imaging::grey::from_rgb(rgb.as_raw(), &mut g);
            g
        };
        Photo { rgb, grey }
    }
}

/// Why a photo could not be read; the message names the file.
#[derive(Debug)]
pub struct ImageError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read image {}: {}",
            crate::support::terminal::path(&self.path),
            self.problem
        )
    }
}

impl std::error::Error for ImageError {}

/// Reads and decodes a JPEG or PNG photo (the format is recognised from the content, not the name).
/// Files over [`limits::MAX_IMAGE_FILE_BYTES`] and images over [`limits::max_pixels`] are refused
/// before they are decoded.
pub fn load(path: &Path) -> Result<Photo, ImageError> {
    let fail = |problem: String| ImageError {
        path: path.to_path_buf(),
        problem,
    };
    let data = limits::read_file(path, limits::MAX_IMAGE_FILE_BYTES, "photo").map_err(fail)?;
    decode(&data).map_err(fail)
}

/// Decodes JPEG or PNG bytes, within the process's pixel limit ([`limits::max_pixels`]).
pub fn decode(data: &[u8]) -> Result<Photo, String> {
    decode_within(data, limits::max_pixels())
}

/// Decodes JPEG or PNG bytes of at most `max_pixels` pixels (checked from the header).
pub fn decode_within(data: &[u8], max_pixels: u64) -> Result<Photo, String> {
    if data.is_empty() {
        return Err("the file is empty".into());
    }
    let img = if crate::imaging::jpeg::sniff(data) {
        let d = crate::imaging::jpeg::decode(data, max_pixels)?;
        let rgb = RgbImage::from_raw(d.width as u32, d.height as u32, d.rgb)
            .ok_or("corrupt JPEG: decoded size does not match the header")?;
        let mut img = DynamicImage::ImageRgb8(rgb);
        if let Some(o) = d.exif_orientation.and_then(Orientation::from_exif) {
            img.apply_orientation(o);
        }
        img
    } else if is_png(data) {
        decode_png(data, max_pixels)?
    } else {
        return Err("not a JPEG or PNG file".into());
    };
    if img.width() == 0 || img.height() == 0 {
        return Err("the image has no pixels".into());
    }
    Ok(Photo::from_dynamic(img))
}

/// Whether `data` starts with the PNG signature.
pub fn is_png(data: &[u8]) -> bool {
    data.starts_with(b"\x89PNG\r\n\x1a\n")
}

fn decode_png(data: &[u8], max_pixels: u64) -> Result<DynamicImage, String> {
    let reader = || ImageReader::with_format(std::io::Cursor::new(data), ImageFormat::Png);
    let (w, h) = reader().into_dimensions().map_err(describe)?;
    limits::check_pixels(w as u64, h as u64, max_pixels)?;
    let mut reader = reader();
    let mut bounds = image::Limits::default();
    // 16-bit RGBA is the widest PNG: 8 bytes a pixel, plus the decoder's line buffers.
    bounds.max_alloc = Some((w as u64 * h as u64).saturating_mul(8) + (16 << 20));
    reader.limits(bounds);
    reader.decode().map_err(describe)
}

fn describe(e: image::ImageError) -> String {
    match e {
        image::ImageError::Decoding(d) => format!("corrupt or truncated image data ({d})"),
        image::ImageError::IoError(e) => format!("corrupt or truncated image data ({e})"),
        image::ImageError::Unsupported(u) => format!("unsupported image: {u}"),
        image::ImageError::Limits(l) => format!("image too large to decode: {l}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_is_named() {
        let err = load(Path::new("/nonexistent/face.jpg"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read image /nonexistent/face.jpg: "),
            "{err}"
        );
    }

    #[test]
    fn unknown_and_empty_data_are_refused() {
        assert_eq!(decode(b"GIF89a").unwrap_err(), "not a JPEG or PNG file");
        assert_eq!(decode(b"").unwrap_err(), "the file is empty");
        assert!(decode(b"\x89PNG\r\n\x1a\n\0\0")
            .unwrap_err()
            .contains("corrupt"));
    }

    #[test]
    fn png_size_is_checked_from_the_header() {
        let png = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photos/astronaut.png"
        ))
        .unwrap();
        let photo = decode_within(&png, u64::MAX).unwrap();
        let pixels = (photo.width() * photo.height()) as u64;
        assert!(decode_within(&png, pixels).is_ok());
        let err = decode_within(&png, pixels - 1).unwrap_err();
        assert!(err.contains("more than the limit"), "{err}");
    }

    #[test]
    fn grey_input_keeps_its_values() {
        let img = image::GrayImage::from_raw(2, 1, vec![3, 250]).unwrap();
        let photo = Photo::from_dynamic(DynamicImage::ImageLuma8(img));
        assert_eq!(photo.grey, vec![3, 250]);
        assert_eq!(photo.rgb.get_pixel(1, 0).0, [250, 250, 250]);
    }
}
