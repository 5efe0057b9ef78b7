//! Annotated copies of photos: detection boxes drawn onto the image and saved as PNG.

use std::path::Path;

use image::{Rgb, RgbImage};

use crate::detector::Rect;

const BOX_COLOUR: Rgb<u8> = Rgb([0, 255, 0]);

/// Draws each rectangle's outline, `thickness` pixels wide, clipped to the image.
pub fn boxes(img: &mut RgbImage, rects: &[Rect], thickness: i32) {
    let (w, h) = (img.width() as i32, img.height() as i32);
    let mut put = |x: i32, y: i32| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img.put_pixel(x as u32, y as u32, BOX_COLOUR);
        }
    };
    for r in rects {
        for t in 0..thickness {
            let (x0, y0, x1, y1) = (r.x + t, r.y + t, r.x + r.w - 1 - t, r.y + r.h - 1 - t);
            if x0 > x1 || y0 > y1 {
                break;
            }
            for x in x0..=x1 {
                put(x, y0);
                put(x, y1);
            }
            for y in y0..=y1 {
                put(x0, y);
                put(x1, y);
            }
        }
    }
}

/// Writes `img` as PNG to `path` through a temporary file, so a reader never sees half an image.
pub fn save_png(img: &RgbImage, path: &Path) -> Result<(), String> {
    let tmp = path.with_extension("png.tmp");
    img.save_with_format(&tmp, image::ImageFormat::Png)
        .and_then(|_| std::fs::rename(&tmp, path).map_err(image::ImageError::IoError))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })
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
