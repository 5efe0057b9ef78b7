//! Integral images: plain sums, sums of squares and 45-degree rotated sums.
//!
//! Each table has one more row and column than the image, and entry (x, y) sums the pixels above and
//! left of it, so any rectangle sum is four lookups. Like OpenCV the tables are 32-bit and may wrap on
//! large images: the window sums the detector takes are differences of nearby entries, which wrapping
//! arithmetic still gets exactly right.

/// Writes the sum and squared-sum tables of `img` (`w` x `h`, tightly packed) with row stride
/// `stride` (>= w + 1). Only the `(w + 1) x (h + 1)` corner of each table is written.
pub fn sums(img: &[u8], w: usize, h: usize, stride: usize, sum: &mut [i32], sqsum: &mut [u32]) {
    debug_assert!(stride > w && sum.len() >= (h + 1) * stride && sqsum.len() >= (h + 1) * stride);
    sum[..=w].fill(0);
    sqsum[..=w].fill(0);
    for y in 0..h {
        let row = &img[y * w..(y + 1) * w];
        let (above, below) = sum.split_at_mut((y + 1) * stride);
        let above = &above[y * stride..y * stride + w + 1];
        let below = &mut below[..w + 1];
        let (sq_above, sq_below) = sqsum.split_at_mut((y + 1) * stride);
        let sq_above = &sq_above[y * stride..y * stride + w + 1];
        let sq_below = &mut sq_below[..w + 1];
        below[0] = 0;
        sq_below[0] = 0;
        let (mut s, mut sq) = (0i32, 0u32);
        for x in 0..w {
            let p = row[x] as i32;
            s = s.wrapping_add(p);
            sq = sq.wrapping_add((p * p) as u32);
            below[x + 1] = above[x + 1].wrapping_add(s);
            sq_below[x + 1] = sq_above[x + 1].wrapping_add(sq);
        }
    }
}

/// Writes only the sum table (LBP cascades need nothing else).
pub fn sum_only(img: &[u8], w: usize, h: usize, stride: usize, sum: &mut [i32]) {
    debug_assert!(stride > w && sum.len() >= (h + 1) * stride);
    sum[..=w].fill(0);
    for y in 0..h {
        let row = &img[y * w..(y + 1) * w];
        let (above, below) = sum.split_at_mut((y + 1) * stride);
        let above = &above[y * stride..y * stride + w + 1];
        let below = &mut below[..w + 1];
        below[0] = 0;
        let mut s = 0i32;
        for x in 0..w {
            s = s.wrapping_add(row[x] as i32);
            below[x + 1] = above[x + 1].wrapping_add(s);
        }
    }
}

/// Scratch rows for [`tilted`], kept between calls.
#[derive(Debug, Default, Clone)]
pub struct TiltedScratch {
    rows: [Vec<i32>; 3],
}

/// Writes the rotated-sum table: entry (X, Y) sums the pixels (x, y) with `y < Y` and
/// `|x - X + 1| <= Y - y - 1`, a triangle whose apex is the pixel (X - 1, Y - 1). This is the table
/// OpenCV's `integral` returns as `tilted`.
pub fn tilted(
    img: &[u8],
    w: usize,
    h: usize,
    stride: usize,
    out: &mut [i32],
    scratch: &mut TiltedScratch,
) {
    debug_assert!(stride > w && out.len() >= (h + 1) * stride);
    // The recurrence T(X,Y) = T(X-1,Y-1) + T(X+1,Y-1) - T(X,Y-2) + I(X-1,Y-1) + I(X-1,Y-2) needs
    // columns beyond the image, where triangles still reach into it; beyond `pad` they are empty.
    let pad = h + 2;
    let width = w + 1 + 2 * pad;
    for r in &mut scratch.rows {
        r.clear();
        r.resize(width, 0);
    }
    let pixel = |x: isize, y: isize| -> i32 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0
        } else {
            img[y as usize * w + x as usize] as i32
        }
    };
    out[..=w].fill(0);
    // rows[(Y) % 3] holds T(., Y); row 0 is all zeros.
    for y in 1..=h {
        let (cur, prev, prev2) = {
            let [a, b, c] = &mut scratch.rows;
            match y % 3 {
                0 => (a, &*c, &*b),
                1 => (b, &*a, &*c),
                _ => (c, &*b, &*a),
            }
        };
        for i in 0..width {
            let x = i as isize - pad as isize;
            let left = if i > 0 { prev[i - 1] } else { 0 };
            let right = if i + 1 < width { prev[i + 1] } else { 0 };
            let two_up = if y >= 2 { prev2[i] } else { 0 };
            let yi = y as isize;
            cur[i] = left
                .wrapping_add(right)
                .wrapping_sub(two_up)
                .wrapping_add(pixel(x - 1, yi - 1))
                .wrapping_add(pixel(x - 1, yi - 2));
        }
        out[y * stride..y * stride + w + 1].copy_from_slice(&cur[pad..pad + w + 1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: usize, h: usize, seed: u32) -> Vec<u8> {
        let mut s = seed;
        (0..w * h)
            .map(|_| {
                s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                (s >> 16) as u8
            })
            .collect()
    }

    #[test]
    fn sums_match_brute_force() {
        let (w, h, stride) = (7, 5, 9);
        let img = image(w, h, 1);
        let mut sum = vec![0; (h + 1) * stride];
        let mut sq = vec![0; (h + 1) * stride];
        sums(&img, w, h, stride, &mut sum, &mut sq);
        let mut only = vec![0; (h + 1) * stride];
        sum_only(&img, w, h, stride, &mut only);
        for y in 0..=h {
            for x in 0..=w {
                let (mut s, mut q) = (0i32, 0u32);
                for yy in 0..y {
                    for xx in 0..x {
                        let p = img[yy * w + xx] as i32;
                        s += p;
                        q += (p * p) as u32;
                    }
                }
                assert_eq!(sum[y * stride + x], s);
                assert_eq!(only[y * stride + x], s);
                assert_eq!(sq[y * stride + x], q);
            }
        }
    }

    #[test]
    fn tilted_matches_its_definition() {
        for (w, h) in [(1, 1), (6, 4), (4, 9), (11, 3)] {
            let stride = w + 3;
            let img = image(w, h, (w * 31 + h) as u32);
            let mut t = vec![0; (h + 1) * stride];
            tilted(&img, w, h, stride, &mut t, &mut TiltedScratch::default());
            for yy in 0..=h as isize {
                for xx in 0..=w as isize {
                    let mut s = 0;
                    for y in 0..yy {
                        for x in 0..w as isize {
                            if (x - xx + 1).abs() < yy - y {
                                s += img[y as usize * w + x as usize] as i32;
                            }
                        }
                    }
                    assert_eq!(
                        t[yy as usize * stride + xx as usize],
                        s,
                        "{w}x{h} at ({xx},{yy})"
                    );
                }
            }
        }
    }

    #[test]
    fn tilted_matches_opencv_on_a_small_image() {
        // cv2.integral3(np.arange(12, dtype=np.uint8).reshape(3, 4))[2] with OpenCV 4.6.
        let img: Vec<u8> = (0..12).collect();
        let mut t = vec![0; 4 * 5];
        tilted(&img, 4, 3, 5, &mut t, &mut TiltedScratch::default());
        let expected = [
            0, 0, 0, 0, 0, //
            0, 0, 1, 2, 3, //
            0, 5, 8, 12, 12, //
            5, 20, 30, 34, 30,
        ];
        assert_eq!(t, expected);
    }
}
