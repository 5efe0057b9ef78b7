//! Annotated copies of photos: detection boxes (and, on the live stream, names) drawn onto the
//! image.

pub mod font;

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::imaging::rect::Rect;

const BOX_COLOUR: Rgb<u8> = Rgb([0, 255, 0]);

/// Draws each rectangle's outline, `thickness` pixels wide, clipped to the image.
pub fn boxes(img: &mut RgbImage, rects: &[Rect], thickness: i32) {
    for r in rects {
        outline(img, r, thickness, BOX_COLOUR.0);
    }
}

/// Draws one rectangle's outline in `colour`, `thickness` pixels wide, clipped to the image.
pub fn outline(img: &mut RgbImage, r: &Rect, thickness: i32, colour: [u8; 3]) {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let mut put = |x: i32, y: i32| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img.put_pixel(x as u32, y as u32, Rgb(colour));
        }
    };
    for t in 0..thickness {
        let (x0, y0) = (r.x.saturating_add(t), r.y.saturating_add(t));
        let x1 = r.x.saturating_add(r.w).saturating_sub(1 + t);
        let y1 = r.y.saturating_add(r.h).saturating_sub(1 + t);
        if x0 > x1 || y0 > y1 {
            break;
        }
        // Only the visible part of each edge is walked: a hostile box must not cost its size.
        for x in x0.max(0)..=x1.min(w - 1) {
            put(x, y0);
            put(x, y1);
        }
        for y in y0.max(0)..=y1.min(h - 1) {
            put(x0, y);
            put(x1, y);
        }
    }
}

/// Writes `img` as PNG to `path` atomically, so a reader never sees half an image.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<(), String> {
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode {} as PNG: {e}", path.display()))?;
    crate::support::durable::write_or_say(path, &png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_outline_only() {
        let mut img = RgbImage::new(10, 10);
        boxes(
            &mut img,
            &[Rect {
                x: 2,
                y: 2,
                w: 5,
                h: 5,
            }],
            1,
        );
        assert_eq!(*img.get_pixel(2, 2), BOX_COLOUR);
        assert_eq!(*img.get_pixel(6, 6), BOX_COLOUR);
        assert_eq!(*img.get_pixel(4, 4), Rgb([0, 0, 0]));
        // Boxes running off the image are clipped, not a panic.
        boxes(
            &mut img,
            &[Rect {
                x: -5,
                y: 8,
                w: 30,
                h: 30,
            }],
            2,
        );
    }
}
