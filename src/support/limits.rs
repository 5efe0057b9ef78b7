//! How much any one input may cost: the bounds every file, frame and value is checked against
//! before facegate spends memory or time on it.
//!
//! A board has a few hundred MB for everything, and facegate will take uploads over a network, so
//! each way in has a limit that is checked first, from sizes a header or the file system states:
//! a 10 MB JPEG can claim 30000x30000 pixels (2.7 GB decoded), a cascade can nest elements a
//! million deep. The limits are library-level so that every caller (the command line, a server)
//! gets them; the numbers are in the README's hardening table.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Default for the largest decoded image, in pixels: 4096 x 3072 (12.6 MP) takes a 12 MP phone
/// photo (4032 x 3024), and decoded as RGB plus grey it needs about 50 MB, which fits a 64 MB
/// board budget. `--max-pixels` raises it.
pub const DEFAULT_MAX_PIXELS: u64 = 4096 * 3072;

/// A photo file larger than this is refused before it is read (a 12 MP PNG is about 36 MB).
pub const MAX_IMAGE_FILE_BYTES: u64 = 64 << 20;

/// One frame of an MJPEG stream; a 12 MP JPEG at top quality is about 8 MB.
pub const MAX_MJPEG_FRAME_BYTES: usize = 16 << 20;

/// JPEG scans (SOS segments). A progressive photo has about ten; thousands make libjpeg re-read
/// its whole coefficient buffer that many times.
pub const MAX_JPEG_SCANS: usize = 200;

/// Cascade XML: OpenCV's largest shipped cascade is 2.6 MB.
pub const MAX_CASCADE_BYTES: u64 = 16 << 20;
/// Nesting of cascade XML elements (OpenCV's files nest 7 deep).
pub const MAX_XML_DEPTH: usize = 32;
/// Attributes on one cascade XML element (OpenCV's files have at most one).
pub const MAX_XML_ATTRIBUTES: usize = 16;
/// XML nodes in one cascade (the 2.6 MB one has about 200 000).
pub const MAX_XML_NODES: u32 = 4_000_000;

/// A model card (JSON) is a few hundred bytes.
pub const MAX_CARD_BYTES: u64 = 1 << 20;
/// An ONNX model: SFace in f32 is 39 MB, the large ArcFace ResNet-100 about 250 MB.
pub const MAX_MODEL_BYTES: u64 = 512 << 20;
/// A TOML settings file.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// A gallery index: about 250 bytes a person, so room for 200 000 people.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;
/// A gallery embeddings file: 100 000 people with three 512-float shots are 800 MB.
pub const MAX_EMBEDDINGS_BYTES: u64 = 1 << 30;

static MAX_PIXELS: AtomicU64 = AtomicU64::new(DEFAULT_MAX_PIXELS);

/// The largest image, in pixels, that decoding accepts now.
pub fn max_pixels() -> u64 {
    MAX_PIXELS.load(Ordering::Relaxed)
}

/// Sets the pixel limit for every later decode in this process (`--max-pixels`).
pub fn set_max_pixels(pixels: u64) {
    MAX_PIXELS.store(pixels.max(1), Ordering::Relaxed);
}

/// Refuses an image whose header states more pixels than the limit, before anything is decoded.
pub fn check_pixels(width: u64, height: u64, limit: u64) -> Result<(), String> {
    match width.checked_mul(height) {
        Some(pixels) if pixels <= limit => Ok(()),
        _ => Err(format!(
            "the image is {width}x{height} pixels, {PIXEL_LIMIT_WORDS} of {limit} ({:.1} MP); \
             scale it down, or raise the limit with --max-pixels",
            limit as f64 / 1e6
        )),
    }
}

/// The words [`check_pixels`] refuses with, so that callers (the HTTP API answers 413 to a
/// decompression bomb) can tell this refusal from other decoding errors.
const PIXEL_LIMIT_WORDS: &str = "more than the limit";

/// Whether a decoding error is [`check_pixels`]'s refusal.
pub fn is_pixel_limit(message: &str) -> bool {
    message.contains(PIXEL_LIMIT_WORDS) && message.contains("--max-pixels")
}

/// Reads a whole file of at most `limit` bytes; `what` names the kind of file in the message
/// ("model card", "cascade"). The size is checked before reading and enforced while reading, so
/// a file that grows, or a device that never ends, costs at most `limit` bytes.
pub fn read_file(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    // Before opening: opening a named pipe would wait for a writer, forever.
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.is_dir() {
        return Err("is a directory, not a file".into());
    }
    if !meta.is_file() {
        return Err("is not a regular file (a device or a pipe)".into());
    }
    if meta.len() > limit {
        return Err(too_large(meta.len(), limit, what));
    }
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take`: a file that grew since its size was read is still read only this far.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64, limit, what));
    }
    Ok(bytes)
}

/// [`read_file`] for text: invalid UTF-8 is an error.
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String, String> {
    String::from_utf8(read_file(path, limit, what)?)
        .map_err(|_| format!("not a text file (invalid UTF-8); expected a {what}"))
}

fn too_large(size: u64, limit: u64, what: &str) -> String {
    format!(
        "{} is too large for a {what} (the limit is {})",
        human_bytes(size),
        human_bytes(limit)
    )
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 1 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_limit_refuses_before_overflow() {
        assert!(check_pixels(4032, 3024, DEFAULT_MAX_PIXELS).is_ok());
        let err = check_pixels(30000, 30000, DEFAULT_MAX_PIXELS).unwrap_err();
        assert!(err.contains("30000x30000"), "{err}");
        assert!(err.contains("--max-pixels"), "{err}");
        assert!(check_pixels(u64::MAX, u64::MAX, u64::MAX).is_err());
    }

    #[test]
    fn files_over_the_limit_are_not_read() {
        let dir = std::env::temp_dir().join(format!("facegate-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("big.json");
        std::fs::write(&path, vec![b' '; 2000]).unwrap();
        let err = read_file(&path, 1000, "model card").unwrap_err();
        assert_eq!(
            err,
            "2.0 KiB is too large for a model card (the limit is 1000 bytes)"
        );
        assert_eq!(read_file(&path, 2000, "model card").unwrap().len(), 2000);
        assert!(read_file(&dir, 2000, "model card")
            .unwrap_err()
            .contains("directory"));
        assert!(read_file(Path::new("/dev/zero"), 2000, "photo")
            .unwrap_err()
            .contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
