//! Presentations made up for the liveness evaluation (`facegate bench liveness`) and its tests,
//! since no recording of real heads, or of real attacks, ships in any package here.
//!
//! - *Attacks*, rendered: a real photo as a plane (a print, a phone) moved in front of a pinhole
//!   camera, optionally looking printed (ink and paper, a halftone) or shown on a screen (a
//!   pixel grid, another gamma, glare), with sensor noise. These go through the real detector
//!   and landmark model.
//! - *Genuine visitors*, simulated: the five landmarks of an average head (published
//!   anthropometric means, rounded) moved through natural head motion, projected by the same
//!   camera, with the landmark detector's jitter as measured on real photos. Only landmarks,
//!   never pictures: these say what the geometry does with a head, not what YuNet does with one.

use image::{Rgb, RgbImage};

use super::Marks;
use crate::support::rng::Rng;

/// A pinhole camera: the frame's size and the focal length, in pixels.
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    pub width: u32,
    pub height: u32,
    pub focal: f32,
}

impl Default for Camera {
    /// A door camera's 640x480 with about a 60 degree horizontal field of view.
    fn default() -> Camera {
        Camera {
            width: 640,
            height: 480,
            focal: 560.0,
        }
    }
}

/// Where a picture or a head is: turned (degrees) and placed (millimetres; `distance` in front
/// of the camera).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pose {
    pub yaw: f32,
    pub pitch: f32,
    pub roll: f32,
    pub x: f32,
    pub y: f32,
    pub distance: f32,
}

impl Pose {
    /// A point of the object's frame in the camera's frame.
    fn place(&self, [x, y, z]: [f32; 3]) -> [f32; 3] {
        let (sr, cr) = self.roll.to_radians().sin_cos();
        let (x, y) = (cr * x - sr * y, sr * x + cr * y);
        let (sp, cp) = self.pitch.to_radians().sin_cos();
        let (y, z) = (cp * y - sp * z, sp * y + cp * z);
        let (sy, cy) = self.yaw.to_radians().sin_cos();
        let (x, z) = (cy * x + sy * z, -sy * x + cy * z);
        // z points at the camera: depth is the distance less it.
        [x + self.x, y + self.y, self.distance - z]
    }
}

impl Camera {
    fn project(&self, [x, y, depth]: [f32; 3]) -> [f32; 2] {
        [
            self.width as f32 / 2.0 + self.focal * x / depth,
            self.height as f32 / 2.0 + self.focal * y / depth,
        ]
    }
}

/// How a picture is held up to the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Motion {
    /// Tilted back and forth (about the horizontal axis), up to 35 degrees.
    Tilt,
    /// Turned left and right, up to 40 degrees.
    Pan,
    /// Waved sideways, with some roll.
    Wave,
    /// Held still by a hand that shakes.
    Shake,
    /// Brought from arm's length up to the camera, turning a little.
    Approach,
}

pub const MOTIONS: [Motion; 5] = [
    Motion::Tilt,
    Motion::Pan,
    Motion::Wave,
    Motion::Shake,
    Motion::Approach,
];

impl Motion {
    pub fn name(self) -> &'static str {
        match self {
            Motion::Tilt => "tilt",
            Motion::Pan => "pan",
            Motion::Wave => "wave",
            Motion::Shake => "shake",
            Motion::Approach => "approach",
        }
    }

    /// The pose at `t` seconds, with a hand's tremor from `rng`.
    pub fn pose(self, t: f32, rng: &mut Rng) -> Pose {
        let tremor = |rng: &mut Rng, size: f32| (uniform(rng) - 0.5) * size;
        let w = std::f32::consts::TAU;
        let mut p = Pose {
            yaw: tremor(rng, 2.0),
            pitch: tremor(rng, 2.0),
            roll: tremor(rng, 2.0),
            x: tremor(rng, 3.0),
            y: tremor(rng, 3.0),
            distance: 420.0,
        };
        match self {
            Motion::Tilt => p.pitch += 35.0 * (w * 0.5 * t).sin(),
            Motion::Pan => p.yaw += 40.0 * (w * 0.4 * t).sin(),
            Motion::Wave => {
                p.x += 80.0 * (w * 0.7 * t).sin();
                p.roll += 15.0 * (w * 0.7 * t).cos();
            }
            Motion::Shake => {}
            Motion::Approach => {
                p.distance = 650.0 - 110.0 * t.min(3.0);
                p.yaw += 10.0 * (w * 0.3 * t).sin();
            }
        }
        p
    }
}

/// What shows the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Medium {
    /// The photo as it is.
    Photo,
    /// Printed: ink never black, paper never white, a halftone screen.
    Print,
    /// On a phone or tablet: a pixel grid, a brighter gamma, a reflection.
    Screen,
}

pub const MEDIA: [Medium; 3] = [Medium::Photo, Medium::Print, Medium::Screen];

impl Medium {
    pub fn name(self) -> &'static str {
        match self {
            Medium::Photo => "photo",
            Medium::Print => "print",
            Medium::Screen => "screen",
        }
    }

    /// The picture as this medium shows it, at twice its resolution (so that a screen's grid and
    /// a print's dots are finer than the picture's own pixels).
    pub fn show(self, picture: &RgbImage) -> RgbImage {
        let (w, h) = (picture.width() * 2, picture.height() * 2);
        let big = image::imageops::resize(picture, w, h, image::imageops::FilterType::Triangle);
        RgbImage::from_fn(w, h, |x, y| {
            let p = big.get_pixel(x, y).0;
            let shade = |v: u8| -> u8 {
                let v = f32::from(v) / 255.0;
                let out = match self {
                    Medium::Photo => v,
                    Medium::Print => {
                        let dots = 0.93 + 0.07 * ((x as f32 * 1.9).cos() * (y as f32 * 1.9).cos());
                        (0.07 + 0.85 * v.powf(1.15)) * dots
                    }
                    Medium::Screen => {
                        let grid = if x % 3 == 2 || y % 3 == 2 { 0.8 } else { 1.0 };
                        (0.03 + 0.95 * v.powf(0.85)) * grid
                    }
                };
                (out * 255.0).round().clamp(0.0, 255.0) as u8
            };
            Rgb([shade(p[0]), shade(p[1]), shade(p[2])])
        })
    }
}

/// A uniform number in [0, 1).
pub fn uniform(rng: &mut Rng) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
}

/// A standard normal number (Box-Muller).
pub fn normal(rng: &mut Rng) -> f32 {
    let u = uniform(rng).max(1e-7);
    let v = uniform(rng);
    (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
}

/// One camera frame of `shown` (a medium's picture) held as a plane `width_mm` wide at `pose`,
/// in front of a plain wall, with sensor noise; `glare` adds a screen's reflection.
pub fn render(
    shown: &RgbImage,
    width_mm: f32,
    pose: Pose,
    camera: &Camera,
    glare: bool,
    rng: &mut Rng,
) -> RgbImage {
    let (pw, ph) = (shown.width() as f32, shown.height() as f32);
    let mm = width_mm / pw;
    let corners = [[0.0, 0.0], [pw, 0.0], [0.0, ph], [pw, ph]];
    let image_corners = corners
        .map(|[u, v]| camera.project(pose.place([(u - pw / 2.0) * mm, (v - ph / 2.0) * mm, 0.0])));
    let back = super::homography(&image_corners, &corners);
    let glare_at = camera.project(pose.place([pw * 0.2 * mm, -ph * 0.1 * mm, 0.0]));
    RgbImage::from_fn(camera.width, camera.height, |x, y| {
        let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
        // The wall: a soft gradient.
        let wall = 150.0 + 30.0 * (fy / camera.height as f32) - 20.0 * (fx / camera.width as f32);
        let mut rgb = [wall, wall * 0.97, wall * 0.92];
        if let Some(h) = back {
            let (x64, y64) = (f64::from(fx), f64::from(fy));
            let w = h[6] * x64 + h[7] * y64 + 1.0;
            let u = ((h[0] * x64 + h[1] * y64 + h[2]) / w) as f32;
            let v = ((h[3] * x64 + h[4] * y64 + h[5]) / w) as f32;
            if u >= 0.0 && v >= 0.0 && u < pw - 1.0 && v < ph - 1.0 {
                rgb = bilinear(shown, u, v);
            }
        }
        if glare {
            let d2 = (fx - glare_at[0]).powi(2) + (fy - glare_at[1]).powi(2);
            let g = 70.0 * (-d2 / (2.0 * 35.0f32.powi(2))).exp();
            rgb = rgb.map(|c| c + g);
        }
        let noise = 2.5 * normal(rng);
        Rgb(rgb.map(|c| (c + noise).round().clamp(0.0, 255.0) as u8))
    })
}

fn bilinear(img: &RgbImage, u: f32, v: f32) -> [f32; 3] {
    let (x0, y0) = (u.floor() as u32, v.floor() as u32);
    let (ax, ay) = (u - x0 as f32, v - y0 as f32);
    let px = |x: u32, y: u32| img.get_pixel(x, y).0.map(f32::from);
    let (a, b, c, d) = (
        px(x0, y0),
        px(x0 + 1, y0),
        px(x0, y0 + 1),
        px(x0 + 1, y0 + 1),
    );
    std::array::from_fn(|i| {
        (a[i] * (1.0 - ax) + b[i] * ax) * (1.0 - ay) + (c[i] * (1.0 - ax) + d[i] * ax) * ay
    })
}

/// The five landmarks of an average adult head, millimetres from the midpoint between the eyes
/// (x right, y down, z towards the camera): pupils 63 mm apart, the nose tip 38 mm below them
/// and 22 mm in front, mouth corners 50 mm apart, 70 mm below the eyes, 4 mm behind them.
/// (Rounded means of adult anthropometric surveys, in YuNet's landmark order.)
pub const HEAD: [[f32; 3]; 5] = [
    [-31.5, 0.0, 0.0],
    [31.5, 0.0, 0.0],
    [0.0, 38.0, 22.0],
    [-25.0, 70.0, -4.0],
    [25.0, 70.0, -4.0],
];

/// A simulated visitor: how much they turn and nod while they walk up.
#[derive(Debug, Clone, Copy)]
pub struct Visitor {
    /// Largest turn and nod, degrees, and their rates (Hz).
    pub yaw: f32,
    pub yaw_rate: f32,
    pub pitch: f32,
    pub pitch_rate: f32,
    /// Where the walk starts and ends (mm from the camera), and how long it takes.
    pub from: f32,
    pub to: f32,
    pub walk: f32,
    phase: [f32; 2],
}

impl Visitor {
    /// A visitor who moves as people do at a door: turns of 5 to 20 degrees, nods of 2 to 8,
    /// a few tenths of a cycle per second, walking up from 0.9-1.2 m to 0.4-0.6 m in 2-4 s.
    pub fn natural(rng: &mut Rng) -> Visitor {
        let between = |rng: &mut Rng, a: f32, b: f32| a + (b - a) * uniform(rng);
        Visitor {
            yaw: between(rng, 5.0, 20.0),
            yaw_rate: between(rng, 0.2, 0.6),
            pitch: between(rng, 2.0, 8.0),
            pitch_rate: between(rng, 0.2, 0.6),
            from: between(rng, 900.0, 1200.0),
            to: between(rng, 400.0, 600.0),
            walk: between(rng, 2.0, 4.0),
            phase: [between(rng, 0.0, 6.3), between(rng, 0.0, 6.3)],
        }
    }

    pub fn pose(&self, t: f32) -> Pose {
        let w = std::f32::consts::TAU;
        let walked = (t / self.walk).min(1.0);
        Pose {
            yaw: self.yaw * (w * self.yaw_rate * t + self.phase[0]).sin(),
            pitch: self.pitch * (w * self.pitch_rate * t + self.phase[1]).sin(),
            roll: 0.0,
            x: 0.0,
            y: -30.0,
            distance: self.from + (self.to - self.from) * walked,
        }
    }
}

/// The landmarks a head at `pose` shows the camera, with `jitter` (standard deviation, in eye
/// distances) added to each coordinate as the landmark detector would.
pub fn head_marks(pose: Pose, camera: &Camera, jitter: f32, rng: &mut Rng) -> Marks {
    let mut marks = HEAD.map(|p| camera.project(pose.place(p)));
    let eyes = ((marks[0][0] - marks[1][0]).powi(2) + (marks[0][1] - marks[1][1]).powi(2)).sqrt();
    for m in &mut marks {
        m[0] += jitter * eyes * normal(rng);
        m[1] += jitter * eyes * normal(rng);
    }
    marks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_plane_lands_where_the_camera_puts_its_corners() {
        let picture = RgbImage::from_pixel(40, 60, Rgb([10, 10, 10]));
        let camera = Camera::default();
        let mut rng = Rng::new(1);
        let pose = Pose {
            yaw: 20.0,
            pitch: 0.0,
            roll: 0.0,
            x: 0.0,
            y: 0.0,
            distance: 400.0,
        };
        let frame = render(&picture, 100.0, pose, &camera, false, &mut rng);
        // The centre of the picture is at the centre of the frame: dark; a corner is wall.
        assert!(frame.get_pixel(320, 240).0[0] < 40);
        assert!(frame.get_pixel(5, 5).0[0] > 100);
        // Turned by 20 degrees, the near edge is taller than the far one.
        let column = |x: u32| {
            (0..480)
                .filter(|&y| frame.get_pixel(x, y).0[0] < 40)
                .count()
        };
        assert!(column(320 + 50) != column(320 - 50));
    }

    #[test]
    fn a_visitor_walks_up_and_turns() {
        let mut rng = Rng::new(7);
        let v = Visitor::natural(&mut rng);
        let (start, end) = (v.pose(0.0), v.pose(10.0));
        assert!(start.distance > end.distance);
        let camera = Camera::default();
        let near = head_marks(end, &camera, 0.0, &mut rng);
        let far = head_marks(start, &camera, 0.0, &mut rng);
        assert!(near[1][0] - near[0][0] > far[1][0] - far[0][0]);
    }
}
