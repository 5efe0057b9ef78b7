//! Face detection with boosted cascades, a port of OpenCV 4.6's `CascadeClassifier::detectMultiScale`.
//!
//! The image is scanned at a pyramid of scales: each level is a bit-exact bilinear downscale of the
//! frame, a detection window of the cascade's fixed size slides over it, and windows that pass every
//! stage are mapped back to frame coordinates and grouped. Every rounding step follows OpenCV, so the
//! output is the same set of rectangles OpenCV returns for the same grey image.
//!
//! A [`Detector`] owns all scratch memory (pyramid level, integral tables, compiled cascade) and
//! reuses it from one frame to the next; scanning a window allocates nothing.

mod file;
mod group;
mod integral;
mod program;
mod resize;
mod xml_shape;

use std::sync::Arc;

pub use file::{Cascade, CascadeError, FeatureType};
pub use group::group_rectangles;
pub use resize::Resizer;

use crate::imaging::grey::GreyView;
use crate::imaging::rect::Rect;

use program::{HaarStumps, HaarTrees, HaarTwoSplits, Lbp, Program, Tables};

/// OpenCV's grouping tolerance for `detectMultiScale`.
pub const GROUP_EPS: f64 = 0.2;

/// Parameters of one detection, with OpenCV's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectParams {
    /// Ratio between successive pyramid levels; must be greater than 1.
    pub scale_factor: f64,
    /// A face needs more than this many overlapping raw detections; 0 returns raw detections.
    pub min_neighbors: u32,
    /// Smallest face (width, height) searched for.
    pub min_size: (usize, usize),
    /// Largest face searched for; `None` means the whole image.
    pub max_size: Option<(usize, usize)>,
    /// Worker threads for scanning; 1 scans on the calling thread. The output does not depend on it.
    pub threads: usize,
}

impl Default for DetectParams {
    fn default() -> Self {
        DetectParams {
            scale_factor: 1.1,
            min_neighbors: 3,
            min_size: (0, 0),
            max_size: None,
            threads: 1,
        }
    }
}

/// Scale factors accepted. Below 1.01 the pyramid grows past 700 levels (each a full scan) for a
/// large photo, and the level list itself grows without bound as the factor nears 1.
pub const SCALE_FACTOR_RANGE: (f64, f64) = (1.01, 10.0);

impl DetectParams {
    pub fn validate(&self) -> Result<(), String> {
        let (lo, hi) = SCALE_FACTOR_RANGE;
        if !(self.scale_factor.is_finite() && (lo..=hi).contains(&self.scale_factor)) {
            return Err(format!(
                "scale factor must be a number from {lo} to {hi}, got {}",
                self.scale_factor
            ));
        }
        if self.threads == 0 {
            return Err("threads must be at least 1".into());
        }
        Ok(())
    }
}

/// One pyramid level: the frame downscaled by `scale`.
#[derive(Debug, Clone, Copy)]
struct Level {
    scale: f32,
    width: usize,
    height: usize,
    /// Window step in both directions: 2 pixels at fine levels, 1 from scale 2 on (as OpenCV).
    step: usize,
}

/// The pyramid OpenCV scans for an image of `img_w` x `img_h` and a `win_w` x `win_h` cascade.
fn pyramid(img_w: usize, img_h: usize, win_w: usize, win_h: usize, p: &DetectParams) -> Vec<Level> {
    if img_w < win_w || img_h < win_h {
        return Vec::new();
    }
    let max_size = match p.max_size {
        Some((w, h)) if w > 0 && h > 0 => (w, h),
        _ => (img_w, img_h),
    };
    // Candidate factors accumulate in double precision but are stored, and used, as f32.
    let mut all = Vec::new();
    let mut factor = 1.0f64;
    loop {
        let w = (win_w as f64 * factor).round_ties_even() as usize;
        let h = (win_h as f64 * factor).round_ties_even() as usize;
        if w > img_w || h > img_h {
            break;
        }
        all.push(factor as f32);
        factor *= p.scale_factor;
    }
    let window = |s: f32| {
        (
            (win_w as f32 * s).round_ties_even() as usize,
            (win_h as f32 * s).round_ties_even() as usize,
        )
    };
    let mut scales = Vec::new();
    for &s in &all {
        let (w, h) = window(s);
        if w > max_size.0 || h > max_size.1 {
            break;
        }
        if w < p.min_size.0 || h < p.min_size.1 {
            continue;
        }
        scales.push(s);
    }
    // No level fits the size limits: OpenCV then scans the single level closest to the minimum size.
    if scales.is_empty() && !all.is_empty() {
        let distance = |s: f32| {
            let (w, h) = window(s);
            let dw = p.min_size.0 as f64 - w as f64;
            let dh = p.min_size.1 as f64 - h as f64;
            dw * dw + dh * dh
        };
        let mut best = all[0];
        for &s in &all[1..] {
            if distance(s) < distance(best) {
                best = s;
            }
        }
        scales.push(best);
    }
    scales
        .into_iter()
        .map(|scale| Level {
            scale,
            width: (img_w as f32 / scale).round_ties_even() as usize,
            height: (img_h as f32 / scale).round_ties_even() as usize,
            step: if scale >= 2.0 { 1 } else { 2 },
        })
        .collect()
}

enum Compiled {
    HaarStumps(HaarStumps),
    HaarTwoSplits(HaarTwoSplits),
    HaarTrees(HaarTrees),
    Lbp(Lbp),
}

/// A cascade with the scratch memory to run it on a stream of frames.
pub struct Detector {
    cascade: Arc<Cascade>,
    /// The cascade compiled for the table layout of the last frame size: (stride, tilted offset).
    compiled: Option<((usize, usize), Compiled)>,
    resizer: resize::Resizer,
    level: Vec<u8>,
    sum: Vec<i32>,
    sqsum: Vec<u32>,
    tilted: integral::TiltedScratch,
    /// Compile tree cascades with the general tree walker even when a specialised form applies
    /// (tests compare the two).
    general_trees: bool,
}

impl Detector {
    pub fn new(cascade: Cascade) -> Self {
        Detector::shared(Arc::new(cascade))
    }

    /// A detector over a cascade shared with other detectors (one per thread or camera).
    pub fn shared(cascade: Arc<Cascade>) -> Self {
        Detector {
            cascade,
            compiled: None,
            resizer: resize::Resizer::default(),
            level: Vec::new(),
            sum: Vec::new(),
            sqsum: Vec::new(),
            tilted: integral::TiltedScratch::default(),
            general_trees: false,
        }
    }

    pub fn cascade(&self) -> &Cascade {
        &self.cascade
    }

    /// Faces in `image`, grouped as `params.min_neighbors` asks.
    pub fn detect(&mut self, image: GreyView, params: &DetectParams) -> Result<Vec<Rect>, String> {
        params.validate()?;
        if image.width == 0
            || image.height == 0
            || image.stride < image.width
            || image.data.len() < (image.height - 1) * image.stride + image.width
        {
            return Err(format!(
                "grey image buffer of {} bytes does not hold {}x{} pixels with stride {}",
                image.data.len(),
                image.width,
                image.height,
                image.stride
            ));
        }
        let mut found = self.scan(image, params);
        group_rectangles(&mut found, params.min_neighbors, GROUP_EPS);
        // OpenCV clips to the image and drops what falls outside entirely.
        found.retain_mut(|r| {
            let x1 = (r.x + r.w).min(image.width as i32);
            let y1 = (r.y + r.h).min(image.height as i32);
            r.x = r.x.max(0);
            r.y = r.y.max(0);
            r.w = x1 - r.x;
            r.h = y1 - r.y;
            r.w > 0 && r.h > 0
        });
        Ok(found)
    }

    fn scan(&mut self, image: GreyView, params: &DetectParams) -> Vec<Rect> {
        let (win_w, win_h) = (self.cascade.window_width, self.cascade.window_height);
        let levels = pyramid(image.width, image.height, win_w, win_h, params);
        let Some(first) = levels.first() else {
            return Vec::new();
        };
        // One table layout, sized for the largest level, serves every level of the frame.
        let stride = first.width + 1;
        let plane = stride * (first.height + 1);
        let tilted = self.cascade.has_tilted_features();
        let tilted_offset = if tilted { plane } else { 0 };
        let layout = (stride, tilted_offset);
        if self.compiled.as_ref().map(|c| c.0) != Some(layout) {
            let program = match self.cascade.feature_type() {
                FeatureType::Haar if self.cascade.max_nodes_per_tree() == 1 => {
                    Compiled::HaarStumps(HaarStumps::new(&self.cascade, stride, tilted_offset))
                }
                FeatureType::Haar => match HaarTwoSplits::new(&self.cascade, stride, tilted_offset)
                    .filter(|_| !self.general_trees)
                {
                    Some(p) => Compiled::HaarTwoSplits(p),
                    None => {
                        Compiled::HaarTrees(HaarTrees::new(&self.cascade, stride, tilted_offset))
                    }
                },
                FeatureType::Lbp => Compiled::Lbp(Lbp::new(&self.cascade, stride)),
            };
            self.compiled = Some((layout, program));
        }
        let is_haar = self.cascade.feature_type() == FeatureType::Haar;
        self.sum.resize(if tilted { 2 * plane } else { plane }, 0);
        if is_haar {
            self.sqsum.resize(plane, 0);
        }
        self.level.resize(first.width * first.height, 0);

        // OpenCV splits rows into stripes sized from the first level's width and only scans rows
        // that fall in a whole stripe; matching its output means honouring that limit.
        let stripes = (first.width + 1).saturating_sub(win_w).div_ceil(32);
        let mut found = Vec::new();
        for level in &levels {
            let (w, h) = (level.width, level.height);
            let work_w = (w + 1).saturating_sub(win_w);
            let work_h = (h + 1).saturating_sub(win_h);
            if stripes == 0 || work_w == 0 || work_h == 0 {
                continue;
            }
            let stripe_rows = (work_h / level.step).div_ceil(stripes).max(1) * level.step;
            let rows = work_h.min(stripes * stripe_rows);

            let level_img = &mut self.level[..w * h];
            self.resizer.resize(image, level_img, w, h);
            if is_haar {
                integral::sums(level_img, w, h, stride, &mut self.sum, &mut self.sqsum);
                if tilted {
                    integral::tilted(
                        level_img,
                        w,
                        h,
                        stride,
                        &mut self.sum[plane..],
                        &mut self.tilted,
                    );
                }
            } else {
                integral::sum_only(level_img, w, h, stride, &mut self.sum);
            }
            let tables = Tables {
                sum: &self.sum,
                sqsum: &self.sqsum,
            };
            let scan = Scan {
                level,
                stride,
                work_w,
                rows,
                win: (win_w, win_h),
            };
            let Some((_, program)) = &self.compiled else {
                unreachable!("compiled above")
            };
            match program {
                Compiled::HaarStumps(p) => scan.run(p, &tables, params.threads, &mut found),
                Compiled::HaarTwoSplits(p) => scan.run(p, &tables, params.threads, &mut found),
                Compiled::HaarTrees(p) => scan.run(p, &tables, params.threads, &mut found),
                Compiled::Lbp(p) => scan.run(p, &tables, params.threads, &mut found),
            }
        }
        found
    }
}

/// The sliding-window scan of one pyramid level.
struct Scan<'a> {
    level: &'a Level,
    stride: usize,
    work_w: usize,
    rows: usize,
    win: (usize, usize),
}

impl Scan<'_> {
    fn run<P: Program>(&self, program: &P, tables: &Tables, threads: usize, out: &mut Vec<Rect>) {
        // Every lookup stays inside the tables: the last window starts at (work_w - 1, rows - 1).
        let last_base = (self.rows - 1) * self.stride + self.work_w - 1;
        assert!(last_base + program.reach() < tables.sum.len());
        if let Some(reach) = program.sqsum_reach() {
            assert!(last_base + reach < tables.sqsum.len());
        }
        let step = self.level.step;
        let row_count = self.rows.div_ceil(step);
        let threads = threads.min(row_count / 4).max(1);
        if threads == 1 {
            self.rows_into(program, tables, 0, self.rows, out);
            return;
        }
        // Contiguous bands of rows per thread, concatenated in order: the same output as one thread.
        let band = row_count.div_ceil(threads) * step;
        let parts: Vec<Vec<Rect>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (y0, y1) = (t * band, ((t + 1) * band).min(self.rows));
                    s.spawn(move || {
                        let mut part = Vec::new();
                        self.rows_into(program, tables, y0, y1, &mut part);
                        part
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                .collect()
        });
        for p in parts {
            out.extend(p);
        }
    }

    fn rows_into<P: Program>(
        &self,
        program: &P,
        tables: &Tables,
        y0: usize,
        y1: usize,
        out: &mut Vec<Rect>,
    ) {
        let step = self.level.step;
        let scale = self.level.scale;
        let win_w = (self.win.0 as f32 * scale).round_ties_even() as i32;
        let win_h = (self.win.1 as f32 * scale).round_ties_even() as i32;
        for y in (y0..y1).step_by(step) {
            let row = y * self.stride;
            let mut x = 0;
            while x < self.work_w {
                // SAFETY: `run` checked that the furthest window plus the program's reach is in bounds.
                let verdict = unsafe { program.classify(tables, row + x) };
                if verdict > 0 {
                    out.push(Rect {
                        x: (x as f32 * scale).round_ties_even() as i32,
                        y: (y as f32 * scale).round_ties_even() as i32,
                        w: win_w,
                        h: win_h,
                    });
                }
                // A window rejected by the very first stage also skips its neighbour (as OpenCV).
                x += if verdict == 0 { 2 * step } else { step };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pyramid_follows_opencv_rounding() {
        let levels = pyramid(640, 480, 24, 24, &DetectParams::default());
        assert_eq!(levels[0].scale, 1.0);
        assert_eq!(
            (levels[0].width, levels[0].height, levels[0].step),
            (640, 480, 2)
        );
        assert_eq!((levels[1].width, levels[1].height), (582, 436));
        // The last level still fits a 24x24 window in 480 rows: 24 * 1.1^k <= 480.
        let last = levels.last().unwrap();
        assert!((24.0 * last.scale).round() <= 480.0);
        assert!(levels
            .iter()
            .all(|l| l.step == if l.scale >= 2.0 { 1 } else { 2 }));
    }

    #[test]
    fn min_and_max_size_limit_the_levels() {
        let p = DetectParams {
            min_size: (48, 48),
            max_size: Some((100, 100)),
            ..DetectParams::default()
        };
        for l in pyramid(640, 480, 24, 24, &p) {
            let w = (24.0 * l.scale).round();
            assert!((48.0..=100.0).contains(&w), "{w}");
        }
    }

    #[test]
    fn two_split_trees_and_the_general_walker_agree() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let photo =
            crate::imaging::photo::load(&root.join("tests/fixtures/photos/messi5.jpg")).unwrap();
        let cascade =
            Cascade::from_file(&root.join("models/haarcascade_frontalface_alt2.xml")).unwrap();
        let raw = DetectParams {
            min_neighbors: 0,
            ..DetectParams::default()
        };
        let mut special = Detector::new(cascade.clone());
        let mut general = Detector::new(cascade);
        general.general_trees = true;
        let a = special.detect(photo.grey_view(), &raw).unwrap();
        let b = general.detect(photo.grey_view(), &raw).unwrap();
        assert!(matches!(
            special.compiled,
            Some((_, Compiled::HaarTwoSplits(_)))
        ));
        assert!(matches!(
            general.compiled,
            Some((_, Compiled::HaarTrees(_)))
        ));
        assert!(!a.is_empty());
        assert_eq!(a, b);
    }

    #[test]
    fn image_smaller_than_the_window_has_no_levels() {
        assert!(pyramid(20, 100, 24, 24, &DetectParams::default()).is_empty());
    }

    #[test]
    fn invalid_parameters_are_refused() {
        let p = DetectParams {
            scale_factor: 1.0,
            ..DetectParams::default()
        };
        assert!(p.validate().is_err());
    }
}
