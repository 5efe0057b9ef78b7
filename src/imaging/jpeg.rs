//! JPEG decoding with libjpeg-turbo's algorithms (through the `mozjpeg` crate, whose decoder is
//! libjpeg-turbo's), because that is the decoder OpenCV's `imread` uses: the integer IDCT and
//! "fancy" chroma upsampling give exactly the pixels OpenCV sees, so detections on JPEG photos are
//! the same as OpenCV's, not merely close. Pure-Rust decoders differ by a few levels per pixel.
//!
//! libjpeg reports fatal errors by calling an `error_exit` hook that must not return; the hook
//! here unwinds, and [`decode`] catches that, so corrupt data is an error value, never an abort.
//! Data that ends early is treated as fatal too: libjpeg would otherwise pad the picture with grey.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use mozjpeg::Marker;
use mozjpeg_sys::{jpeg_common_struct, jpeg_error_mgr, JWRN_HIT_MARKER, JWRN_JPEG_EOF};

/// Decoded pixels, packed RGB, plus the EXIF orientation tag (1..=8) when the file has one.
pub struct Decoded {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
    pub exif_orientation: Option<u8>,
}

/// Whether `data` starts like a JPEG file.
pub fn sniff(data: &[u8]) -> bool {
    data.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Decodes a JPEG of at most `max_pixels` pixels; the size is checked from the header, before
/// libjpeg allocates anything for the picture.
pub fn decode(data: &[u8], max_pixels: u64) -> Result<Decoded, String> {
    let scans = count_scans(data);
    if scans > crate::support::limits::MAX_JPEG_SCANS {
        return Err(format!(
            "the JPEG has {scans} scans, more than the {} a photo needs",
            crate::support::limits::MAX_JPEG_SCANS
        ));
    }
    let mut too_large = None;
    let result = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<Decoded> {
        let d = mozjpeg::Decompress::with_err(error_manager())
            .with_markers(&[Marker::APP(1)])
            .from_mem(data)?;
        if let Err(e) =
            crate::support::limits::check_pixels(d.width() as u64, d.height() as u64, max_pixels)
        {
            too_large = Some(e);
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        let exif_orientation = d.markers().find_map(|m| exif_orientation(m.data));
        let mut started = d.rgb()?;
        let (width, height) = (started.width(), started.height());
        let rgb: Vec<u8> = started.read_scanlines()?;
        started.finish()?;
        Ok(Decoded {
            width,
            height,
            rgb,
            exif_orientation,
        })
    }));
    if let Some(e) = too_large {
        return Err(e);
    }
    match result {
        Ok(Ok(d)) if d.rgb.len() == d.width * d.height * 3 && d.width > 0 && d.height > 0 => Ok(d),
        Ok(Ok(_)) => Err("corrupt JPEG: decoded size does not match the header".into()),
        Ok(Err(e)) => Err(format!("corrupt JPEG: {e}")),
        Err(payload) => Err(match payload.downcast::<String>() {
            Ok(msg) => *msg,
            Err(_) => "corrupt JPEG".into(),
        }),
    }
}

/// Encodes packed RGB as a baseline JPEG. Fast settings, not mozjpeg's smallest-file ones: live
/// frames are encoded for every stream client, and a board has little CPU to spare.
pub fn encode(rgb: &image::RgbImage, quality: f32) -> Result<Vec<u8>, String> {
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    if w == 0 || h == 0 {
        return Err("cannot encode an image without pixels as JPEG".into());
    }
    let result = catch_unwind(AssertUnwindSafe(|| -> std::io::Result<Vec<u8>> {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        c.set_size(w, h);
        c.set_fastest_defaults();
        c.set_quality(quality);
        let mut started = c.start_compress(Vec::with_capacity(w * h / 4))?;
        started.write_scanlines(rgb.as_raw())?;
        started.finish()
    }));
    match result {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => Err(format!("cannot encode JPEG: {e}")),
        Err(_) => Err("cannot encode JPEG".into()),
    }
}

/// Start-of-scan markers in the file. Entropy-coded data stuffs every 0xFF with a zero byte, so
/// an `FF DA` pair outside the headers is always a marker.
fn count_scans(data: &[u8]) -> usize {
    data.windows(2).filter(|w| w == &[0xFF, 0xDA]).count()
}

fn error_manager() -> jpeg_error_mgr {
    // SAFETY: jpeg_std_error fills in every field of a zeroed manager (plain C data).
    let mut err: jpeg_error_mgr = unsafe { std::mem::zeroed() };
    unsafe { mozjpeg_sys::jpeg_std_error(&mut err) };
    err.error_exit = Some(fatal);
    err.emit_message = Some(message);
    err
}

/// libjpeg's text for the current message code.
fn text(cinfo: &mut jpeg_common_struct) -> String {
    // The binding declares format_message's buffer as `&[u8; 80]`, but libjpeg writes the message
    // into it (C: `char *buffer`): a write behind a shared reference is undefined behaviour. So
    // the function is called as what it is, with a raw mutable pointer.
    type Declared = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, &[u8; JMSG_LENGTH_MAX]);
    type Writes = unsafe extern "C-unwind" fn(&mut jpeg_common_struct, *mut u8);
    // SAFETY: `err` is the manager set up in `error_manager` (or null, which as_ref turns into None).
    let Some(format) = unsafe { cinfo.err.as_ref() }.and_then(|e| e.format_message) else {
        return String::new();
    };
    // SAFETY: the two signatures differ only in a `&[u8; 80]` against a `*mut u8` argument, both
    // one thin pointer in the C ABI, and the C function's own parameter is `char *`.
    let format = unsafe { std::mem::transmute::<Declared, Writes>(format) };
    let mut buffer = [0u8; JMSG_LENGTH_MAX];
    // SAFETY: format_message writes at most JMSG_LENGTH_MAX bytes, NUL included, into the buffer,
    // which nothing else borrows while it runs.
    unsafe { format(cinfo, buffer.as_mut_ptr()) };
    let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..end]).into_owned()
}

/// libjpeg's JMSG_LENGTH_MAX: the longest message format_message writes.
const JMSG_LENGTH_MAX: usize = 80;

extern "C-unwind" fn fatal(cinfo: &mut jpeg_common_struct) {
    resume_unwind(Box::new(format!("corrupt JPEG: {}", text(cinfo))))
}

extern "C-unwind" fn message(cinfo: &mut jpeg_common_struct, level: std::os::raw::c_int) {
    // Level -1 is a warning about corrupt data. Missing data would be silently padded; other
    // warnings (extra bytes between markers, common from webcams) leave the picture intact.
    // SAFETY: libjpeg passes the structure whose `err` is the manager installed above.
    let code = unsafe { cinfo.err.as_ref() }.map_or(0, |e| e.msg_code);
    if level < 0 && (code == JWRN_JPEG_EOF || code == JWRN_HIT_MARKER) {
        resume_unwind(Box::new(format!(
            "truncated or corrupt JPEG: {}",
            text(cinfo)
        )))
    }
}

/// The orientation tag of an EXIF APP1 segment, if it has a valid one.
fn exif_orientation(app1: &[u8]) -> Option<u8> {
    let tiff = app1.strip_prefix(b"Exif\0\0")?;
    let big_endian = match tiff.get(..4)? {
        b"MM\0*" => true,
        b"II*\0" => false,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let entries = u16_at(ifd)? as usize;
    (0..entries).find_map(|i| {
        let entry = ifd + 2 + i * 12;
        // Tag 0x0112 (Orientation), type SHORT, one value, stored in the entry itself.
        (u16_at(entry)? == 0x0112 && u16_at(entry + 2)? == 3)
            .then(|| u16_at(entry + 8))
            .flatten()
            .and_then(|v| u8::try_from(v).ok())
            .filter(|v| (1..=8).contains(v))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_orientation_in_both_byte_orders() {
        let mut be = b"Exif\0\0MM\0*\0\0\0\x08\0\x01".to_vec();
        be.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
        assert_eq!(exif_orientation(&be), Some(6));
        let mut le = b"Exif\0\0II*\0\x08\0\0\0\x01\0".to_vec();
        le.extend([0x12, 0x01, 3, 0, 1, 0, 0, 0, 3, 0, 0, 0]);
        assert_eq!(exif_orientation(&le), Some(3));
        assert_eq!(exif_orientation(b"Exif\0\0MM"), None);
        assert_eq!(exif_orientation(b"XMP"), None);
    }

    #[test]
    fn size_and_scans_are_checked_before_decoding() {
        let jpeg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photos/obama.jpg"
        ))
        .unwrap();
        let d = decode(&jpeg, u64::MAX).unwrap();
        let pixels = (d.width * d.height) as u64;
        assert!(decode(&jpeg, pixels).is_ok());
        let err = decode(&jpeg, pixels - 1).err().unwrap();
        assert!(err.contains("more than the limit"), "{err}");
        let mut many_scans = jpeg.clone();
        for _ in 0..=crate::support::limits::MAX_JPEG_SCANS {
            many_scans.extend_from_slice(&[0xFF, 0xDA]);
        }
        assert!(decode(&many_scans, u64::MAX)
            .err()
            .unwrap()
            .contains("scans"));
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let err = decode(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 1, 2, 3, 4, 5], u64::MAX)
            .err()
            .unwrap();
        assert!(err.contains("JPEG"), "{err}");
    }
}
