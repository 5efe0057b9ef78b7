//! Bilinear downscaling of 8-bit grey images, bit-identical to OpenCV's `INTER_LINEAR_EXACT`.
//!
//! OpenCV builds the cascade pyramid with this mode. Its arithmetic is fixed point: interpolation
//! weights are rounded to 8 fractional bits, a horizontal pass keeps 8 fractional bits, the vertical
//! pass accumulates 16 and rounds once. Reproducing exactly that (and its handling of source
//! coordinates that fall outside the image) is what makes every pyramid level, and so every
//! detection, identical to OpenCV's.

use super::GreyView;

/// Per destination column (or row): which source sample to start from and the two weights.
#[derive(Debug, Clone, Default)]
pub struct Axis {
    offsets: Vec<usize>,
    /// Weight pairs in units of 1/256; they sum to 256.
    weights: Vec<[u32; 2]>,
    /// Destinations before `first` clamp to source sample 0 ...
    first: usize,
    /// ... and those from `end` on to the last source sample.
    end: usize,
}

impl Axis {
    fn plan(&mut self, src_len: usize, dst_len: usize) {
        self.offsets.clear();
        self.weights.clear();
        self.offsets.resize(dst_len, src_len - 1);
        self.weights.resize(dst_len, [256, 0]);
        // OpenCV derives the step from the destination/source ratio, in double precision.
        let inv_scale = dst_len as f64 / src_len as f64;
        let scale = 1.0 / inv_scale;
        let (mut first, mut end) = (0, dst_len);
        for d in 0..dst_len {
            let f = scale * (d as f64 + 0.5) - 0.5;
            let i = f.floor();
            if i >= 0.0 && src_len > 1 {
                let i = i as usize;
                if i < src_len - 1 {
                    let frac = ((f - i as f64) * 256.0).round_ties_even() as u32;
                    self.offsets[d] = i;
                    self.weights[d] = [256 - frac, frac];
                } else {
                    end = end.min(d);
                }
            } else {
                first = first.max(d + 1);
            }
        }
        self.first = first;
        self.end = end.max(first);
    }
}

/// Scratch state for [`resize`], kept so repeated pyramids do not allocate.
#[derive(Debug, Clone, Default)]
pub struct Resizer {
    x: Axis,
    y: Axis,
    /// Two horizontally interpolated source rows, 8 fractional bits.
    rows: [Vec<u32>; 2],
}

impl Resizer {
    /// Resizes `image` into `dst`, `dw` x `dh` pixels, tightly packed.
    pub fn resize(&mut self, image: GreyView, dst: &mut [u8], dw: usize, dh: usize) {
        let (src, sw, sh, src_stride) = (image.data, image.width, image.height, image.stride);
        assert!(sw > 0 && sh > 0 && dw > 0 && dh > 0);
        assert!(src.len() >= (sh - 1) * src_stride + sw && dst.len() >= dw * dh);
        if sw == dw && sh == dh {
            for y in 0..sh {
                dst[y * dw..(y + 1) * dw]
                    .copy_from_slice(&src[y * src_stride..y * src_stride + sw]);
            }
            return;
        }
        self.x.plan(sw, dw);
        self.y.plan(sh, dh);
        for row in &mut self.rows {
            row.resize(dw, 0);
        }
        // `loaded[k]` is the source row held in `rows[k]`.
        let mut loaded = [usize::MAX; 2];
        let mut load = |rows: &mut [Vec<u32>; 2], x: &Axis, sy: usize| {
            let slot = sy % 2;
            if loaded[slot] != sy {
                horizontal(
                    &src[sy * src_stride..sy * src_stride + sw],
                    x,
                    &mut rows[slot],
                );
                loaded[slot] = sy;
            }
            slot
        };
        for dy in 0..dh {
            let out = &mut dst[dy * dw..(dy + 1) * dw];
            if dy < self.y.first || dy >= self.y.end {
                let sy = if dy < self.y.first { 0 } else { sh - 1 };
                let slot = load(&mut self.rows, &self.x, sy);
                for (o, &v) in out.iter_mut().zip(&self.rows[slot]) {
                    *o = ((v + 128) >> 8) as u8;
                }
                continue;
            }
            let sy = self.y.offsets[dy];
            let [w0, w1] = self.y.weights[dy];
            let a = load(&mut self.rows, &self.x, sy);
            let b = load(&mut self.rows, &self.x, sy + 1);
            let (r0, r1) = (&self.rows[a], &self.rows[b]);
            for ((o, &v0), &v1) in out.iter_mut().zip(r0.iter()).zip(r1.iter()) {
                *o = ((v0 * w0 + v1 * w1 + (1 << 15)) >> 16).min(255) as u8;
            }
        }
    }
}

fn horizontal(src: &[u8], x: &Axis, out: &mut [u32]) {
    let last = src[x.offsets.last().copied().unwrap_or(0)] as u32;
    for (d, o) in out.iter_mut().enumerate() {
        *o = if d < x.first {
            (src[0] as u32) << 8
        } else if d >= x.end {
            last << 8
        } else {
            let s = x.offsets[d];
            let [w0, w1] = x.weights[d];
            w0 * src[s] as u32 + w1 * src[s + 1] as u32
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(data: &[u8], w: usize, h: usize) -> GreyView<'_> {
        GreyView::new(data, w, h).unwrap()
    }

    #[test]
    fn same_size_is_a_copy() {
        let src: Vec<u8> = (0..12).collect();
        let mut dst = vec![0; 12];
        Resizer::default().resize(view(&src, 4, 3), &mut dst, 4, 3);
        assert_eq!(src, dst);
    }

    #[test]
    fn halving_averages_two_by_two_blocks_with_rounding() {
        // At exactly 1/2 OpenCV's exact bilinear equals a 2x2 box filter rounding half up.
        let src = [0u8, 1, 10, 20, 3, 4, 30, 41];
        let mut dst = [0u8; 2];
        Resizer::default().resize(view(&src, 4, 2), &mut dst, 2, 1);
        assert_eq!(dst, [2, 25]);
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 37 * 23];
        let mut dst = vec![0u8; 20 * 11];
        Resizer::default().resize(view(&src, 37, 23), &mut dst, 20, 11);
        assert!(dst.iter().all(|&v| v == 77));
    }
}
