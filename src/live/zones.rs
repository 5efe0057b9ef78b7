//! Zones (Frigate's word and idea): the parts of the picture where faces count. A door camera
//! that also sees the street, a poster on the wall or a television should not identify the
//! people there. A face whose box centre is in no zone is dropped right after detection: it is
//! never embedded, tracked or told about. Each zone may ask for a larger face (someone close
//! enough to mean the door).
//!
//! `--zone "door=0.25,0 0.75,0 0.75,1 0.25,1 min=80"`: an optional name, then three or more
//! corners as fractions of the frame's width and height (so a zone survives a change of
//! resolution), then optionally the smallest face width in pixels.

use crate::imaging::rect::Rect;

/// Most corners a zone may have, and most zones: a door needs a few.
const MAX_CORNERS: usize = 64;
pub const MAX_ZONES: usize = 32;

#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    /// Corners, as fractions of the frame's width and height.
    pub corners: Vec<[f32; 2]>,
    /// Smallest face width, pixels (0: any the detector finds).
    pub min_face: i32,
}

impl Zone {
    /// Reads `[NAME=]x,y x,y x,y ...[ min=PX]`.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let (name, rest) = match text.split_once('=') {
            Some((n, r)) if !n.contains([',', ' ']) => (n.trim().to_string(), r),
            _ => (String::new(), text),
        };
        let mut corners = Vec::new();
        let mut min_face = 0;
        for part in rest.split_whitespace() {
            if let Some(px) = part.strip_prefix("min=") {
                min_face = px
                    .parse::<i32>()
                    .ok()
                    .filter(|p| (0..=16384).contains(p))
                    .ok_or_else(|| format!("zone '{text}': min={px} is not 0 to 16384 pixels"))?;
                continue;
            }
            let (x, y) = part
                .split_once(',')
                .ok_or_else(|| format!("zone '{text}': '{part}' is not a corner x,y"))?;
            let coord = |v: &str| {
                v.parse::<f32>()
                    .ok()
                    .filter(|f| (0.0..=1.0).contains(f))
                    .ok_or_else(|| {
                        format!(
                            "zone '{text}': '{v}' is not a fraction of the frame from 0 to 1 \
                             (0.5 is the middle)"
                        )
                    })
            };
            corners.push([coord(x)?, coord(y)?]);
        }
        if corners.len() < 3 || corners.len() > MAX_CORNERS {
            return Err(format!(
                "zone '{text}': a zone has 3 to {MAX_CORNERS} corners, like 0.2,0 0.8,0 0.8,1 0.2,1"
            ));
        }
        Ok(Zone {
            name,
            corners,
            min_face,
        })
    }

    /// Whether a face's box counts in this zone of a `width` x `height` frame: its centre inside
    /// the polygon, and wide enough.
    pub fn takes(&self, r: &Rect, width: usize, height: usize) -> bool {
        if r.w < self.min_face {
            return false;
        }
        let x = (r.x as f32 + r.w as f32 / 2.0) / width.max(1) as f32;
        let y = (r.y as f32 + r.h as f32 / 2.0) / height.max(1) as f32;
        // Even-odd rule: a ray to the right crosses the border an odd number of times.
        let mut inside = false;
        let n = self.corners.len();
        for i in 0..n {
            let [xi, yi] = self.corners[i];
            let [xj, yj] = self.corners[(i + n - 1) % n];
            if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
                inside = !inside;
            }
        }
        inside
    }
}

/// The part of a `width` x `height` frame the detector must scan for faces whose centre can be
/// in a zone: the zones' bounding box, widened by a quarter of the frame's shorter side on each
/// side for the faces that reach out of a zone. `None`: the whole frame.
pub fn scan_area(zones: &[Zone], width: usize, height: usize) -> Option<Rect> {
    if zones.is_empty() {
        return None;
    }
    let (w, h) = (width as f32, height as f32);
    let mut b = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
    for c in zones.iter().flat_map(|z| &z.corners) {
        b = [
            b[0].min(c[0]),
            b[1].min(c[1]),
            b[2].max(c[0]),
            b[3].max(c[1]),
        ];
    }
    let pad = w.min(h) / 4.0;
    let x0 = (b[0] * w - pad).max(0.0).floor() as i32;
    let y0 = (b[1] * h - pad).max(0.0).floor() as i32;
    let x1 = (b[2] * w + pad).min(w).ceil() as i32;
    let y1 = (b[3] * h + pad).min(h).ceil() as i32;
    // Scanning most of the frame anyway: a copy would cost more than it saves.
    let whole = (x1 - x0) as f32 * (y1 - y0) as f32 >= 0.8 * w * h;
    (!whole).then_some(Rect {
        x: x0,
        y: y0,
        w: x1 - x0,
        h: y1 - y0,
    })
}

/// Whether a face counts: no zones means the whole frame does.
pub fn counts(zones: &[Zone], r: &Rect, width: usize, height: usize) -> bool {
    zones.is_empty() || zones.iter().any(|z| z.takes(r, width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rect(x: i32, y: i32, w: i32) -> Rect {
        Rect { x, y, w, h: w }
    }

    #[test]
    fn zones_take_faces_whose_centre_is_inside_and_large_enough() {
        let door = Zone::parse("door=0.25,0 0.75,0 0.75,1 0.25,1 min=80").unwrap();
        assert_eq!(door.name, "door");
        assert_eq!(door.min_face, 80);
        assert!(door.takes(&rect(260, 100, 100), 640, 480));
        assert!(!door.takes(&rect(260, 100, 60), 640, 480), "too small");
        assert!(
            !door.takes(&rect(10, 100, 100), 640, 480),
            "left of the door"
        );
        let triangle = Zone::parse("0,0 1,0 0,1").unwrap();
        assert!(triangle.takes(&rect(50, 50, 20), 640, 480));
        assert!(!triangle.takes(&rect(500, 400, 20), 640, 480));
        assert!(counts(&[], &rect(0, 0, 1), 640, 480));
        assert!(counts(
            &[door.clone(), triangle],
            &rect(500, 10, 20),
            640,
            480
        ));
    }

    #[test]
    fn bad_zones_say_what_is_wrong() {
        for (text, expected) in [
            ("0,0 1,0", "3 to 64 corners"),
            ("0,0 1,0 2,1", "fraction of the frame"),
            ("0,0 1,0 x", "not a corner"),
            ("0,0 1,0 1,1 min=-3", "min=-3"),
            ("a=0,0 1,0 nan,1", "fraction of the frame"),
        ] {
            let e = Zone::parse(text).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }
}
