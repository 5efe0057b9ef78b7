//! Face alignment: a similarity transform (rotation, uniform scale, translation) that maps five
//! detected landmarks onto a model's template, and the bilinear warp that produces the model input.

use image::RgbImage;

/// A 2x3 affine map from output (crop) pixels to source (photo) pixels:
/// `src = [a b c; d e f] * [x y 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    pub m: [[f64; 3]; 2],
}

impl Affine {
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let m = &self.m;
        (
            m[0][0] * x + m[0][1] * y + m[0][2],
            m[1][0] * x + m[1][1] * y + m[1][2],
        )
    }
}

/// Least-squares similarity transform taking `from` points onto `to` points (Umeyama's closed form
/// for 2-D: with complex numbers, z' = a z + b). `None` when the `from` points coincide.
pub fn similarity(from: &[[f64; 2]], to: &[[f64; 2]]) -> Option<Affine> {
    let n = from.len().min(to.len()) as f64;
    if n < 2.0 {
        return None;
    }
    let mean = |p: &[[f64; 2]]| {
        let (sx, sy) = p.iter().fold((0.0, 0.0), |(x, y), q| (x + q[0], y + q[1]));
        (sx / n, sy / n)
    };
    let (fx, fy) = mean(from);
    let (tx, ty) = mean(to);
    // a = sum(conj(f) * t) / sum(|f|^2), over centred points.
    let (mut re, mut im, mut norm) = (0.0, 0.0, 0.0);
    for (f, t) in from.iter().zip(to) {
        let (ux, uy) = (f[0] - fx, f[1] - fy);
        let (vx, vy) = (t[0] - tx, t[1] - ty);
        re += ux * vx + uy * vy;
        im += ux * vy - uy * vx;
        norm += ux * ux + uy * uy;
    }
    if norm <= f64::EPSILON {
        return None;
    }
    let (a, b) = (re / norm, im / norm);
    Some(Affine {
        m: [
            [a, -b, tx - (a * fx - b * fy)],
            [b, a, ty - (b * fx + a * fy)],
        ],
    })
}

impl Affine {
    /// The inverse map, for a similarity (or any invertible) transform.
    pub fn inverse(&self) -> Option<Affine> {
        let [[a, b, c], [d, e, f]] = self.m;
        let det = a * e - b * d;
        if det.abs() <= f64::EPSILON {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine {
            m: [[ia, ib, -(ia * c + ib * f)], [id, ie, -(id * c + ie * f)]],
        })
    }
}

/// The transform that samples, for each crop pixel, the photo pixel it comes from. The fit goes
/// from landmarks to template and is then inverted, as OpenCV's `FaceRecognizerSF::alignCrop`
/// does: least squares in the other direction weighs the points differently and gives another
/// scale when the landmarks do not fit the template exactly.
pub fn crop_to_photo(landmarks: &[[f32; 2]; 5], template: &[[f32; 2]; 5]) -> Option<Affine> {
    let l: Vec<[f64; 2]> = landmarks
        .iter()
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
    let t: Vec<[f64; 2]> = template
        .iter()
        .map(|p| [p[0] as f64, p[1] as f64])
        .collect();
    similarity(&l, &t)?.inverse()
}

/// Warps `photo` into a `width` x `height` crop: bilinear sampling, black outside the photo.
pub fn warp(photo: &RgbImage, map: &Affine, width: u32, height: u32) -> RgbImage {
    let (pw, ph) = (photo.width() as i64, photo.height() as i64);
    let px = |x: i64, y: i64| -> [f64; 3] {
        if x < 0 || y < 0 || x >= pw || y >= ph {
            [0.0; 3]
        } else {
            photo.get_pixel(x as u32, y as u32).0.map(|v| v as f64)
        }
    };
    RgbImage::from_fn(width, height, |x, y| {
        let (sx, sy) = map.apply(x as f64, y as f64);
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let (a, b, c, d) = (
            px(x0, y0),
            px(x0 + 1, y0),
            px(x0, y0 + 1),
            px(x0 + 1, y0 + 1),
        );
        image::Rgb(std::array::from_fn(|k| {
            let top = a[k] + (b[k] - a[k]) * fx;
            let bottom = c[k] + (d[k] - c[k]) * fx;
            (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8
        }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity() {
        let from = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [7.0, 3.0]];
        // Rotate 30 degrees, scale 2, translate (5, -1).
        let (c, s) = (
            30f64.to_radians().cos() * 2.0,
            30f64.to_radians().sin() * 2.0,
        );
        let to: Vec<[f64; 2]> = from
            .iter()
            .map(|p| [c * p[0] - s * p[1] + 5.0, s * p[0] + c * p[1] - 1.0])
            .collect();
        let m = similarity(&from, &to).unwrap();
        for (f, t) in from.iter().zip(&to) {
            let (x, y) = m.apply(f[0], f[1]);
            assert!((x - t[0]).abs() < 1e-9 && (y - t[1]).abs() < 1e-9);
        }
        assert!(similarity(&[[1.0, 1.0], [1.0, 1.0]], &to[..2]).is_none());
    }

    #[test]
    fn identity_warp_copies() {
        let photo = RgbImage::from_fn(4, 3, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        let id = Affine {
            m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
        };
        assert_eq!(warp(&photo, &id, 4, 3), photo);
    }
}
