//! Is the face of a track a head, or a picture of one? A photo or a screen is a plane: however
//! it is tilted, turned or waved, the image of any point on it moves with the same homography
//! as the others. A head is not: when it turns or nods, the nose tip, in front of the eyes and
//! the mouth, moves off the homography that the eyes and the mouth corners define (parallax).
//!
//! Per frame, the four "flat" landmarks (eyes, mouth corners) of the track's reference frame are
//! mapped onto the current ones by the homography they define exactly; the nose tip's distance
//! from where that homography puts it, in eye distances, is the frame's parallax. A planar
//! picture keeps it at the landmark detector's noise; a head turning by 10 degrees moves it by
//! about 0.06 eye distances.
//!
//! The landmark model's jitter (about 0.03 eye distances per coordinate on a life-sized face,
//! measured by `facegate bench liveness`) is independent from frame to frame, a head's parallax
//! is not: the parallax is averaged over [`LivenessConfig::window`] frames, and a track is live
//! once that average has travelled [`LivenessConfig::threshold`] (the diameter of its path, so
//! that the reference frame's own jitter cancels).
//!
//! A slideshow (different photos of the person one after another) is not a plane between two
//! photos, but it changes at once, where a head moves through the frames between; and two
//! photos look different. A face that looks much less like the previous frame's than the
//! track's faces usually do ([`likeness`] of the aligned crops) is a cut: the evidence starts
//! over from that frame.
//!
//! What this cannot tell: a video of the person turning their head, shown on a screen, is a
//! plane whose pictures move like a head (the parallax is in the video). A 3D mask is a head.

pub mod presentations;

/// Landmarks as YuNet gives them: right eye, left eye (in image order: left then right),
/// nose tip, right and left mouth corners; photo pixels.
pub type Marks = [[f32; 2]; 5];

/// The thresholds, in eye distances (the distance between the eyes in the current frame).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LivenessConfig {
    /// How far the track's parallax must have travelled (the diameter of its path, averaged
    /// over [`LivenessConfig::window`] frames) for the track to be live.
    pub threshold: f32,
    /// Frames whose parallax is averaged: the landmark model's jitter is independent from frame
    /// to frame, a head's parallax is not.
    pub window: usize,
    /// Frames with an eye distance below this many pixels say too little and are skipped.
    pub min_eye_distance: f32,
    /// A face that looks less like the previous frame's than this ([`likeness`]), or this much
    /// less than the track's usual, is another picture: a cut.
    pub cut_below: f32,
    pub cut_drop: f32,
    /// A track whose flat landmarks have changed shape this much (what a tilted or turned
    /// picture does), without parallax, moved like a plane: not live.
    pub planar_motion: f32,
}

impl Default for LivenessConfig {
    /// Calibrated by `facegate bench liveness` (see the README's table).
    fn default() -> LivenessConfig {
        LivenessConfig {
            threshold: 0.10,
            window: 5,
            min_eye_distance: 12.0,
            cut_below: 0.6,
            cut_drop: 0.15,
            planar_motion: 0.03,
        }
    }
}

/// Likenesses remembered, for what is usual for the track.
const STEPS: usize = 8;

/// What one track has shown so far.
#[derive(Debug, Clone, Default)]
pub struct TrackLiveness {
    reference: Option<Marks>,
    previous_look: Option<Vec<f32>>,
    /// The last frames' likeness to the frame before.
    likenesses: std::collections::VecDeque<f32>,
    /// The last frames' parallax vectors.
    recent: std::collections::VecDeque<[f32; 2]>,
    /// The box around the averaged parallax since the last cut: min x, min y, max x, max y.
    span: Option<[f32; 4]>,
    /// The largest change of shape of the flat landmarks since the last cut.
    moved: f32,
    /// The largest diameter reached without a cut.
    peak: f32,
    live: bool,
    frames: u32,
    cuts: u32,
}

/// A track's liveness, as events and decisions carry it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// `None`: not enough motion seen yet to say.
    pub live: Option<bool>,
    /// The largest distance the averaged parallax travelled without a cut, in eye distances.
    pub score: f32,
    /// Frames measured, and cuts seen (changes too sudden for a head).
    pub frames: u32,
    pub cuts: u32,
}

impl TrackLiveness {
    /// Takes one frame's landmarks of the track, and the face's [`look`] when there is one.
    pub fn observe(&mut self, marks: &Marks, look: Option<Vec<f32>>, config: &LivenessConfig) {
        let eyes = distance(marks[0], marks[1]);
        if eyes.is_nan() || eyes < config.min_eye_distance {
            return;
        }
        self.frames += 1;
        let alike = match (&self.previous_look, &look) {
            (Some(a), Some(b)) => Some(likeness(a, b)),
            _ => None,
        };
        if look.is_some() {
            self.previous_look = look;
        }
        let Some(reference) = self.reference else {
            self.start_over(marks);
            return;
        };
        let mut cut = false;
        if let Some(alike) = alike {
            cut = alike < config.cut_below
                || (self.likenesses.len() >= 4
                    && alike < median(&self.likenesses) - config.cut_drop);
            push_bounded(&mut self.likenesses, alike);
        }
        if cut {
            // Too sudden for a head: a new picture. Its evidence starts here.
            self.cuts += 1;
            self.start_over(marks);
            return;
        }
        let Some(p) = parallax(&reference, marks) else {
            // A degenerate frame (the four points nearly on a line) says nothing.
            return;
        };
        self.recent.push_back([p[0] / eyes, p[1] / eyes]);
        if self.recent.len() > config.window.max(1) {
            self.recent.pop_front();
        }
        self.moved = self
            .moved
            .max(shape_change(&reference, marks, &FLAT) / eyes);
        if self.recent.len() < config.window.max(1) {
            return;
        }
        let n = self.recent.len() as f32;
        let (sx, sy) = self
            .recent
            .iter()
            .fold((0.0, 0.0), |(x, y), p| (x + p[0], y + p[1]));
        let (x, y) = (sx / n, sy / n);
        let span = self.span.get_or_insert([x, y, x, y]);
        *span = [
            span[0].min(x),
            span[1].min(y),
            span[2].max(x),
            span[3].max(y),
        ];
        let diameter = norm([span[2] - span[0], span[3] - span[1]]);
        self.peak = self.peak.max(diameter);
        if diameter >= config.threshold {
            self.live = true;
        }
    }

    fn start_over(&mut self, marks: &Marks) {
        self.reference = Some(*marks);
        self.recent.clear();
        self.span = None;
        self.moved = 0.0;
    }

    pub fn verdict(&self, config: &LivenessConfig) -> Verdict {
        // A track whose landmarks changed shape like a tilted picture, or that cut from picture
        // to picture, is not a head; one that has hardly moved may be a head that held still.
        let live = if self.live {
            Some(true)
        } else if self.cuts >= 2
            || (self.moved >= config.planar_motion && self.peak < config.threshold / 2.0)
        {
            Some(false)
        } else {
            None
        };
        Verdict {
            live,
            score: self.peak,
            frames: self.frames,
            cuts: self.cuts,
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }
}

/// A face's look, for telling two pictures apart: the aligned crop's middle, grey, 24x24, with
/// its mean taken out and its norm made 1 (so light and contrast do not count).
pub fn look(aligned: &image::RgbImage) -> Vec<f32> {
    const SIDE: u32 = 24;
    let (w, h) = (aligned.width(), aligned.height());
    if w < 8 || h < 8 {
        return Vec::new();
    }
    // The middle: eyes, nose and mouth, without the background at the crop's corners.
    let (x0, y0, cw, ch) = (w / 8, h / 8, w * 3 / 4, h * 3 / 4);
    let mut v = Vec::with_capacity((SIDE * SIDE) as usize);
    for j in 0..SIDE {
        for i in 0..SIDE {
            let x = x0 + (i * cw + cw / 2) / SIDE;
            let y = y0 + (j * ch + ch / 2) / SIDE;
            let p = aligned.get_pixel(x.min(w - 1), y.min(h - 1)).0;
            v.push(0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]));
        }
    }
    let mean = v.iter().sum::<f32>() / v.len() as f32;
    v.iter_mut().for_each(|x| *x -= mean);
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// How alike two looks are: their correlation, 1 for the same picture.
pub fn likeness(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.is_empty() {
        return 1.0;
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Eyes and mouth corners: nearly one plane on a face.
const FLAT: [usize; 4] = [0, 1, 3, 4];

fn push_bounded(v: &mut std::collections::VecDeque<f32>, x: f32) {
    v.push_back(x);
    if v.len() > STEPS {
        v.pop_front();
    }
}

fn median(v: &std::collections::VecDeque<f32>) -> f32 {
    let mut s: Vec<f32> = v.iter().copied().collect();
    s.sort_by(f32::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

/// How far the landmarks `points` of `now` are from the best similarity (shift, turn, scale)
/// of the reference's: root mean square, in pixels. A picture seen from another angle, or a head
/// turned, changes shape; one moved in its own plane does not.
fn shape_change(reference: &Marks, now: &Marks, points: &[usize]) -> f32 {
    let n = points.len() as f32;
    let centre = |m: &Marks| {
        let (sx, sy) = points
            .iter()
            .fold((0.0, 0.0), |(x, y), &i| (x + m[i][0], y + m[i][1]));
        [sx / n, sy / n]
    };
    let (c0, c1) = (centre(reference), centre(now));
    let (mut sxx, mut a, mut b) = (0.0f32, 0.0f32, 0.0f32);
    for &i in points {
        let (x, y) = (reference[i][0] - c0[0], reference[i][1] - c0[1]);
        let (u, v) = (now[i][0] - c1[0], now[i][1] - c1[1]);
        sxx += x * x + y * y;
        a += x * u + y * v;
        b += x * v - y * u;
    }
    if sxx <= 0.0 {
        return 0.0;
    }
    let (a, b) = (a / sxx, b / sxx);
    let mut sum = 0.0;
    for &i in points {
        let (x, y) = (reference[i][0] - c0[0], reference[i][1] - c0[1]);
        let (u, v) = (now[i][0] - c1[0], now[i][1] - c1[1]);
        let (ex, ey) = (u - (a * x - b * y), v - (b * x + a * y));
        sum += ex * ex + ey * ey;
    }
    (sum / n).sqrt()
}

fn distance(a: [f32; 2], b: [f32; 2]) -> f32 {
    norm([a[0] - b[0], a[1] - b[1]])
}

fn norm(v: [f32; 2]) -> f32 {
    (v[0] * v[0] + v[1] * v[1]).sqrt()
}

/// Where the nose tip of `now` is against where the homography of the four flat landmarks
/// (reference -> now) puts the reference's nose tip, in pixels; `None` when the four points
/// define no homography.
pub fn parallax(reference: &Marks, now: &Marks) -> Option<[f32; 2]> {
    let from = FLAT.map(|i| reference[i]);
    let to = FLAT.map(|i| now[i]);
    let h = homography(&from, &to)?;
    let [x, y] = reference[2];
    let (x, y) = (f64::from(x), f64::from(y));
    let w = h[6] * x + h[7] * y + 1.0;
    if w.abs() < 1e-9 {
        return None;
    }
    let px = (h[0] * x + h[1] * y + h[2]) / w;
    let py = (h[3] * x + h[4] * y + h[5]) / w;
    Some([
        (f64::from(now[2][0]) - px) as f32,
        (f64::from(now[2][1]) - py) as f32,
    ])
}

/// The homography (h33 = 1, row-major, 8 values) that maps four points onto four others;
/// `None` when three of them are (nearly) on a line.
pub fn homography(from: &[[f32; 2]; 4], to: &[[f32; 2]; 4]) -> Option<[f64; 8]> {
    // x' (h6 x + h7 y + 1) = h0 x + h1 y + h2, and the same for y'.
    let mut a = [[0.0f64; 9]; 8];
    for i in 0..4 {
        let (x, y) = (f64::from(from[i][0]), f64::from(from[i][1]));
        let (u, v) = (f64::from(to[i][0]), f64::from(to[i][1]));
        a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
        a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
    }
    // Scale-free pivot test: coordinates are pixels, so compare against the largest entry.
    let scale = a
        .iter()
        .flat_map(|r| r.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    for col in 0..8 {
        let pivot = (col..8).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-9 * scale.max(1.0) {
            return None;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (row, r) in a.iter_mut().enumerate() {
            if row != col {
                let f = r[col] / pivot_row[col];
                for (x, p) in r[col..].iter_mut().zip(&pivot_row[col..]) {
                    *x -= f * p;
                }
            }
        }
    }
    let mut h = [0.0; 8];
    for (i, v) in h.iter_mut().enumerate() {
        *v = a[i][8] / a[i][i];
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A five-point head (millimetres, x right, y down, z towards the camera), turned by `yaw`
    /// and `pitch` degrees, `distance` mm in front of a pinhole camera of focal length 800 px.
    fn head(yaw: f32, pitch: f32, distance: f32) -> Marks {
        let points = [
            [-32.0, 0.0, 0.0],
            [32.0, 0.0, 0.0],
            [0.0, 38.0, 22.0],
            [-25.0, 70.0, -4.0],
            [25.0, 70.0, -4.0],
        ];
        project(&points, yaw, pitch, distance)
    }

    fn project(points: &[[f32; 3]; 5], yaw: f32, pitch: f32, distance: f32) -> Marks {
        let (sy, cy) = yaw.to_radians().sin_cos();
        let (sp, cp) = pitch.to_radians().sin_cos();
        points.map(|[x, y, z]| {
            let (x, z) = (cy * x + sy * z, -sy * x + cy * z);
            let (y, z) = (cp * y - sp * z, sp * y + cp * z);
            let depth = distance - z;
            [320.0 + 800.0 * x / depth, 240.0 + 800.0 * y / depth]
        })
    }

    #[test]
    fn a_homography_maps_its_four_points() {
        let from = [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]];
        let to = [[1.0, 2.0], [12.0, 1.0], [0.0, 13.0], [11.0, 12.0]];
        let h = homography(&from, &to).unwrap();
        for (f, t) in from.iter().zip(&to) {
            let (x, y) = (f64::from(f[0]), f64::from(f[1]));
            let w = h[6] * x + h[7] * y + 1.0;
            assert!(((h[0] * x + h[1] * y + h[2]) / w - f64::from(t[0])).abs() < 1e-6);
            assert!(((h[3] * x + h[4] * y + h[5]) / w - f64::from(t[1])).abs() < 1e-6);
        }
        let line = [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]];
        assert!(homography(&line, &to).is_none());
    }

    #[test]
    fn a_turning_head_is_live_and_a_tilted_photo_is_not() {
        let config = LivenessConfig::default();
        let mut head_track = TrackLiveness::default();
        let mut photo_track = TrackLiveness::default();
        // The photo: the same five points pressed flat (z = 0), moved the same way.
        let flat = [
            [-32.0, 0.0, 0.0],
            [32.0, 0.0, 0.0],
            [0.0, 38.0, 0.0],
            [-25.0, 70.0, 0.0],
            [25.0, 70.0, 0.0],
        ];
        for i in 0..30 {
            let yaw = 25.0 * (i as f32 / 10.0).sin();
            let pitch = 10.0 * (i as f32 / 7.0).sin();
            head_track.observe(&head(yaw, pitch, 600.0 - 5.0 * i as f32), None, &config);
            photo_track.observe(
                &project(&flat, yaw, pitch, 600.0 - 5.0 * i as f32),
                None,
                &config,
            );
        }
        assert!(head_track.is_live(), "{:?}", head_track.verdict(&config));
        let photo = photo_track.verdict(&config);
        assert!(!photo_track.is_live() && photo.score < 0.01, "{photo:?}");
        assert_eq!(photo.live, Some(false), "it moved like a plane: {photo:?}");
    }

    #[test]
    fn a_slideshow_of_poses_is_cut_and_never_live() {
        let config = LivenessConfig::default();
        let mut track = TrackLiveness::default();
        // Photos of the head at different poses, each shown for five frames: without the
        // looks, their landmarks alone would pass for a head that turns.
        // Each photo looks like itself in every frame, and unlike the others.
        for (k, pose) in [0.0, 25.0, -20.0, 30.0, 10.0].into_iter().enumerate() {
            let mut look = vec![0.0; 5];
            look[k] = 1.0;
            for _ in 0..5 {
                track.observe(&head(pose, 0.0, 600.0), Some(look.clone()), &config);
            }
        }
        let v = track.verdict(&config);
        assert!(!track.is_live(), "{v:?}");
        assert!(v.cuts >= 3 && v.live == Some(false), "{v:?}");
    }
}
