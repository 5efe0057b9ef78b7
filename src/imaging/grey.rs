//! Colour to grey conversion with OpenCV's `COLOR_BGR2GRAY` arithmetic (ITU-R BT.601 luma in
//! 15-bit fixed point, rounded half up), so detections on colour photos match OpenCV's exactly.

const R: u32 = 9798;
const G: u32 = 19235;
const B: u32 = 3735;
const SHIFT: u32 = 15;

/// Grey value of one pixel.
#[inline]
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((r as u32 * R + g as u32 * G + b as u32 * B + (1 << (SHIFT - 1))) >> SHIFT) as u8
}

/// Converts packed RGB pixels into `out` (one byte per pixel).
pub fn from_rgb(rgb: &[u8], out: &mut [u8]) {
    for (px, o) in rgb.chunks_exact(3).zip(out.iter_mut()) {
        *o = luma(px[0], px[1], px[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one() {
        assert_eq!(R + G + B, 1 << SHIFT);
        for v in [0u8, 1, 127, 128, 254, 255] {
            assert_eq!(luma(v, v, v), v);
        }
    }

    #[test]
    fn matches_opencv_values() {
        // cv2.cvtColor(np.uint8([[[b, g, r]]]), cv2.COLOR_BGR2GRAY) with OpenCV 4.6.
        assert_eq!(luma(255, 0, 0), 76);
        assert_eq!(luma(0, 255, 0), 150);
        assert_eq!(luma(0, 0, 255), 29);
        assert_eq!(luma(10, 200, 30), 124);
    }
}

/// A borrowed 8-bit grey image; `stride` is the distance between rows in bytes.
#[derive(Debug, Clone, Copy)]
pub struct GreyView<'a> {
    pub data: &'a [u8],
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

impl<'a> GreyView<'a> {
    /// A view of a tightly packed image; `None` if `data` is too short.
    pub fn new(data: &'a [u8], width: usize, height: usize) -> Option<Self> {
        (data.len() >= width * height).then_some(GreyView {
            data,
            width,
            height,
            stride: width,
        })
    }
}
