//! Cutting faces out of frames: the pictures of events, strangers and search results.

use image::RgbImage;

use super::rect::Rect;

/// The face in `r` with a margin of a quarter of its size on every side, clipped to the frame:
/// snapshots show the head, and a face detector can find the face in them again (the "this is
/// NAME" correction enrolls from one).
pub fn face_snapshot(rgb: &RgbImage, r: &Rect) -> RgbImage {
    cut(rgb, &with_margin(r))
}

fn with_margin(r: &Rect) -> Rect {
    let (mx, my) = (r.w / 4, r.h / 4);
    Rect {
        x: r.x - mx,
        y: r.y - my,
        w: r.w + 2 * mx,
        h: r.h + 2 * my,
    }
}

/// The part of `rgb` inside `r`, clipped to the frame (at least one pixel).
fn cut(rgb: &RgbImage, r: &Rect) -> RgbImage {
    let (w, h) = (rgb.width() as i32, rgb.height() as i32);
    let (x0, y0) = (r.x.clamp(0, w - 1), r.y.clamp(0, h - 1));
    let x1 = (r.x + r.w).clamp(x0 + 1, w);
    let y1 = (r.y + r.h).clamp(y0 + 1, h);
    image::imageops::crop_imm(
        rgb,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image()
}
