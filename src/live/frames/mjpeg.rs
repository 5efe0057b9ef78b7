//! Frames from a stream of concatenated JPEG images: what `ffmpeg -f mjpeg -` writes and what many
//! IP cameras send (with multipart headers between the images, which are skipped).
//!
//! A frame's end is found by walking the JPEG marker structure, not by searching for the end marker:
//! EXIF thumbnails carry their own start and end markers inside an APP1 segment, and only the
//! segment lengths tell them apart from the frame's own.

use std::io::{BufRead, BufReader, ErrorKind, Read};

use super::{FrameSource, Next};
use crate::imaging::photo;

/// A frame larger than this is taken as a corrupt stream rather than buffered without bound.
const MAX_FRAME_BYTES: usize = crate::support::limits::MAX_MJPEG_FRAME_BYTES;

/// Splits a byte stream into JPEG frames.
pub struct MjpegSplitter<R: Read> {
    input: BufReader<R>,
    frames: u64,
    ended: bool,
    /// A broken frame ended at the start marker of the next image, which was consumed: the next
    /// frame starts there. (Scanning on for a start marker would find the one of the thumbnail
    /// embedded in that frame's EXIF data, and cut the thumbnail out as a frame.)
    at_start: bool,
}

/// Why a frame could not be cut out of the stream.
#[derive(Debug, PartialEq)]
pub enum SplitError {
    /// Frame `n` (1-based) breaks the JPEG structure; the splitter resynchronises on the next frame.
    Corrupt {
        frame: u64,
        problem: String,
    },
    /// The stream ended inside frame `n`.
    Truncated {
        frame: u64,
    },
    Io(String),
}

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitError::Corrupt { frame, problem } => {
                write!(f, "frame {frame}: corrupt JPEG ({problem})")
            }
            SplitError::Truncated { frame } => {
                write!(
                    f,
                    "frame {frame}: the stream ended in the middle of the JPEG"
                )
            }
            SplitError::Io(e) => write!(f, "read error: {e}"),
        }
    }
}

impl<R: Read> MjpegSplitter<R> {
    pub fn new(input: R) -> Self {
        MjpegSplitter {
            input: BufReader::with_capacity(1 << 16, input),
            frames: 0,
            ended: false,
            at_start: false,
        }
    }

    /// Frames started so far, including corrupt ones.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    fn byte(&mut self) -> Result<Option<u8>, SplitError> {
        loop {
            match self.input.fill_buf() {
                Ok([]) => return Ok(None),
                Ok(buf) => {
                    let b = buf[0];
                    self.input.consume(1);
                    return Ok(Some(b));
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(SplitError::Io(e.to_string())),
            }
        }
    }

    /// The next complete JPEG, or `None` at the end of the stream.
    pub fn next_jpeg(&mut self) -> Result<Option<Vec<u8>>, SplitError> {
        if self.ended {
            return Ok(None);
        }
        // Anything before a start-of-image marker (multipart headers, padding) is not ours.
        let mut previous = 0u8;
        while !std::mem::take(&mut self.at_start) {
            match self.byte()? {
                None => {
                    self.ended = true;
                    return Ok(None);
                }
                Some(0xD8) if previous == 0xFF => break,
                Some(b) => previous = b,
            }
        }
        self.frames += 1;
        let frame = self.frames;
        let mut out = vec![0xFF, 0xD8];
        match self.rest_of_frame(&mut out) {
            Ok(()) => Ok(Some(out)),
            Err(e) => {
                if matches!(e, SplitError::Truncated { .. }) {
                    self.ended = true;
                }
                Err(e)
            }
        }
        .map_err(|e| match e {
            SplitError::Corrupt { problem, .. } => SplitError::Corrupt { frame, problem },
            SplitError::Truncated { .. } => SplitError::Truncated { frame },
            other => other,
        })
    }

    fn need(&mut self) -> Result<u8, SplitError> {
        self.byte()?.ok_or(SplitError::Truncated { frame: 0 })
    }

    fn rest_of_frame(&mut self, out: &mut Vec<u8>) -> Result<(), SplitError> {
        let corrupt = |problem: String| SplitError::Corrupt { frame: 0, problem };
        let mut pending_marker: Option<u8> = None;
        loop {
            if out.len() > MAX_FRAME_BYTES {
                return Err(corrupt(format!(
                    "no end marker within {} MiB",
                    MAX_FRAME_BYTES >> 20
                )));
            }
            let marker = match pending_marker.take() {
                Some(m) => m,
                None => {
                    let b = self.need()?;
                    if b != 0xFF {
                        return Err(corrupt(format!("expected a marker, found byte {b:#04x}")));
                    }
                    let mut m = self.need()?;
                    while m == 0xFF {
                        m = self.need()?; // fill bytes
                    }
                    m
                }
            };
            out.extend_from_slice(&[0xFF, marker]);
            match marker {
                0xD9 => return Ok(()),
                0xD8 => {
                    self.at_start = true;
                    return Err(corrupt("a new image starts before this one ended".into()));
                }
                0x01 | 0xD0..=0xD7 => continue,
                _ => {}
            }
            let (hi, lo) = (self.need()?, self.need()?);
            let len = u16::from_be_bytes([hi, lo]) as usize;
            if len < 2 {
                return Err(corrupt(format!("segment {marker:#04x} has length {len}")));
            }
            out.extend_from_slice(&[hi, lo]);
            for _ in 2..len {
                let b = self.need()?;
                out.push(b);
            }
            if marker == 0xDA {
                pending_marker = Some(self.entropy_coded(out)?);
            }
        }
    }

    /// Copies entropy-coded scan data up to the next real marker, which it returns (consumed).
    fn entropy_coded(&mut self, out: &mut Vec<u8>) -> Result<u8, SplitError> {
        loop {
            let b = self.need()?;
            if b != 0xFF {
                out.push(b);
                if out.len() > MAX_FRAME_BYTES {
                    return Err(SplitError::Corrupt {
                        frame: 0,
                        problem: format!("no end marker within {} MiB", MAX_FRAME_BYTES >> 20),
                    });
                }
                continue;
            }
            let mut next = self.need()?;
            while next == 0xFF {
                next = self.need()?;
            }
            match next {
                // A stuffed 0xFF data byte, or a restart marker: both belong to the scan.
                0x00 | 0xD0..=0xD7 => out.extend_from_slice(&[0xFF, next]),
                m => return Ok(m),
            }
        }
    }
}

/// A frame source over an MJPEG byte stream (a file or stdin).
pub struct MjpegSource<R: Read> {
    name: String,
    splitter: MjpegSplitter<R>,
    live: bool,
}

impl<R: Read> MjpegSource<R> {
    /// `live`: the stream comes from a camera in real time, so frames may be dropped when the
    /// consumer falls behind.
    pub fn new(name: String, input: R, live: bool) -> Self {
        MjpegSource {
            name,
            splitter: MjpegSplitter::new(input),
            live,
        }
    }
}

impl<R: Read> FrameSource for MjpegSource<R> {
    fn describe(&self) -> String {
        format!("MJPEG stream {}", self.name)
    }

    fn is_live(&self) -> bool {
        self.live
    }

    fn next_frame(&mut self) -> Result<Next, String> {
        match self.splitter.next_jpeg() {
            Ok(Some(jpeg)) => Ok(match photo::decode(&jpeg) {
                Ok(photo) => Next::Frame(photo),
                Err(e) => Next::Skipped(format!(
                    "{}: frame {}: {e}",
                    self.name,
                    self.splitter.frames()
                )),
            }),
            Ok(None) if self.splitter.frames() == 0 => {
                Err(format!("{}: no JPEG image in the stream", self.name))
            }
            Ok(None) => Ok(Next::End),
            Err(SplitError::Io(e)) => Err(format!("cannot read {}: {e}", self.name)),
            Err(e) => Ok(Next::Skipped(format!("{}: {e}", self.name))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal structurally valid JPEG: SOI, an APP segment, SOS with scan bytes, EOI.
    fn fake_jpeg(app: &[u8], scan: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8, 0xFF, 0xE1];
        v.extend_from_slice(&((app.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(app);
        v.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x03, 0x01]);
        v.extend_from_slice(scan);
        v.extend_from_slice(&[0xFF, 0xD9]);
        v
    }

    fn split(stream: &[u8]) -> Vec<Result<Vec<u8>, SplitError>> {
        let mut s = MjpegSplitter::new(stream);
        std::iter::from_fn(|| match s.next_jpeg() {
            Ok(None) => None,
            Ok(Some(f)) => Some(Ok(f)),
            Err(e) => Some(Err(e)),
        })
        .collect()
    }

    #[test]
    fn frames_split_at_their_own_end_marker() {
        // An embedded thumbnail (its own SOI/EOI inside APP1), stuffed bytes and a restart marker.
        let a = fake_jpeg(
            &[0xFF, 0xD8, 1, 2, 0xFF, 0xD9],
            &[5, 0xFF, 0x00, 6, 0xFF, 0xD3, 7],
        );
        let b = fake_jpeg(b"Exif", &[9, 9, 9]);
        let mut stream = b"--boundary\r\nContent-Type: image/jpeg\r\n\r\n".to_vec();
        stream.extend_from_slice(&a);
        stream.extend_from_slice(b"\r\n--boundary\r\n\r\n");
        stream.extend_from_slice(&b);
        let frames = split(&stream);
        assert_eq!(frames, vec![Ok(a), Ok(b)]);
    }

    #[test]
    fn a_truncated_last_frame_is_reported() {
        let a = fake_jpeg(b"x", &[1, 2, 3]);
        let mut stream = a.clone();
        stream.extend_from_slice(&a[..a.len() - 3]);
        assert_eq!(
            split(&stream),
            vec![Ok(a), Err(SplitError::Truncated { frame: 2 })]
        );
    }

    #[test]
    fn a_corrupt_frame_is_skipped_and_the_next_one_found() {
        let a = fake_jpeg(b"x", &[1, 2, 3]);
        let mut stream = vec![0xFF, 0xD8, 0x12, 0x34];
        stream.extend_from_slice(&a);
        let frames = split(&stream);
        assert!(
            matches!(&frames[0], Err(SplitError::Corrupt { frame: 1, .. })),
            "{frames:?}"
        );
        assert_eq!(frames[1], Ok(a));
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn a_frame_cut_short_by_the_next_image_loses_nothing_of_that_image() {
        // The next frame carries an EXIF thumbnail (its own SOI and EOI inside APP1): resuming the
        // scan after the broken frame would cut the thumbnail out instead of the whole frame.
        let b = fake_jpeg(&[0xFF, 0xD8, 7, 7, 0xFF, 0xD9], &[4, 5, 6]);
        let mut stream = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00];
        stream.extend_from_slice(&b);
        let frames = split(&stream);
        assert!(
            matches!(&frames[0], Err(SplitError::Corrupt { frame: 1, .. })),
            "{frames:?}"
        );
        assert_eq!(frames[1], Ok(b));
        assert_eq!(frames.len(), 2);
    }

    #[test]
    fn real_frames_decode_and_garbage_is_refused() {
        let jpeg = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/photos/obama.jpg"
        ))
        .unwrap();
        let mut stream = jpeg.clone();
        stream.extend_from_slice(&jpeg);
        let mut src = MjpegSource::new("test".into(), stream.as_slice(), false);
        for _ in 0..2 {
            assert!(matches!(src.next_frame(), Ok(Next::Frame(_))));
        }
        assert!(matches!(src.next_frame(), Ok(Next::End)));
        let mut src = MjpegSource::new("stdin".into(), &b"hello"[..], false);
        assert_eq!(
            src.next_frame().err().unwrap(),
            "stdin: no JPEG image in the stream"
        );
    }
}
