//! Motion gating (Frigate's central idea): a door camera shows an empty hallway most of the
//! day, and the detector, the costliest stage by far, need not look for faces where nothing
//! moved. Each frame is shrunk to a small grey copy (a mean of each 8x8 block) and compared with
//! a running background; blocks that differ by more than [`MotionConfig::level`] grey levels
//! are motion. Sensor noise averages out over a block; light that changes slowly is taken into
//! the background (it follows each frame by [`LEARN`]).
//!
//! The recognizer detects when a frame has motion, while any track is alive (a person standing
//! still keeps being followed), on the first frames, and at least every
//! [`MotionConfig::every`] frames as a safety net. A visitor walking in is motion in the frame
//! they appear in, so the first decision is not delayed.

use crate::imaging::grey::GreyView;

/// How much of a block's difference from the background is learned per frame.
const LEARN: f32 = 0.05;
/// The block side, in frame pixels.
const BLOCK: usize = 8;
/// Frames detected unconditionally at the start, while the background forms.
const WARM_UP: u64 = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MotionConfig {
    /// Grey levels (0-255) a block's mean must differ from the background's to be motion.
    pub level: f32,
    /// Blocks that must move for the frame to have motion.
    pub blocks: usize,
    /// Frames between two detections of a still frame with nobody in view (the safety net).
    pub every: u64,
}

impl Default for MotionConfig {
    fn default() -> MotionConfig {
        MotionConfig {
            level: 6.0,
            blocks: 2,
            every: 50,
        }
    }
}

/// The running background and what the gate let through.
pub struct MotionGate {
    config: MotionConfig,
    background: Vec<f32>,
    size: (usize, usize),
    frames: u64,
    last_detected: u64,
    /// Frames detected, and frames skipped.
    pub detected: u64,
    pub skipped: u64,
}

impl MotionGate {
    pub fn new(config: MotionConfig) -> MotionGate {
        MotionGate {
            config,
            background: Vec::new(),
            size: (0, 0),
            frames: 0,
            last_detected: 0,
            detected: 0,
            skipped: 0,
        }
    }

    /// Takes the frame into the background and says whether the detector should look at it;
    /// `tracked`: a track is alive.
    pub fn should_detect(&mut self, grey: GreyView<'_>, tracked: bool) -> bool {
        self.frames += 1;
        let moved = self.moved(grey);
        let due = self.frames <= WARM_UP
            || self.frames.saturating_sub(self.last_detected) >= self.config.every;
        let detect = moved || tracked || due;
        if detect {
            self.detected += 1;
            self.last_detected = self.frames;
        } else {
            self.skipped += 1;
        }
        detect
    }

    /// Whether enough blocks differ from the background; then learns the frame.
    fn moved(&mut self, grey: GreyView<'_>) -> bool {
        let (bw, bh) = (grey.width / BLOCK, grey.height / BLOCK);
        if bw == 0 || bh == 0 {
            return true;
        }
        let small = shrink(&grey, bw, bh);
        if self.size != (bw, bh) {
            // The first frame, or a new resolution: everything is new.
            self.size = (bw, bh);
            self.background = small;
            return true;
        }
        let mut moving = 0;
        for (b, s) in self.background.iter_mut().zip(&small) {
            if (s - *b).abs() > self.config.level {
                moving += 1;
            }
            *b += LEARN * (s - *b);
        }
        moving >= self.config.blocks
    }
}

/// The mean of each BLOCK x BLOCK block.
fn shrink(grey: &GreyView<'_>, bw: usize, bh: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; bw * bh];
    for by in 0..bh {
        for y in by * BLOCK..(by + 1) * BLOCK {
            let row = &grey.data[y * grey.stride..y * grey.stride + bw * BLOCK];
            for (bx, chunk) in row.chunks_exact(BLOCK).enumerate() {
                out[by * bw + bx] += chunk.iter().map(|&v| f32::from(v)).sum::<f32>();
            }
        }
    }
    let n = (BLOCK * BLOCK) as f32;
    out.iter_mut().for_each(|v| *v /= n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seed: u64, person: Option<usize>) -> Vec<u8> {
        // A hallway with sensor noise, and maybe a bright "person" at column `person`.
        let mut rng = crate::support::rng::Rng::new(seed);
        let mut f: Vec<u8> = (0..160 * 120)
            .map(|i| {
                let noise = (rng.next_u64() % 7) as i32 - 3;
                (100 + (i % 160) / 4 + noise) as u8
            })
            .collect();
        if let Some(x) = person {
            for y in 30..90 {
                for px in x..x + 30 {
                    f[y * 160 + px] = 230;
                }
            }
        }
        f
    }

    #[test]
    fn a_still_noisy_hallway_is_skipped_and_a_visitor_is_detected_at_once() {
        let mut gate = MotionGate::new(MotionConfig::default());
        fn view(f: &[u8]) -> GreyView<'_> {
            GreyView::new(f, 160, 120).unwrap()
        }
        for i in 0..200 {
            let f = frame(i, None);
            gate.should_detect(view(&f), false);
        }
        // Warm-up, then the safety net every 50 frames only.
        assert_eq!(gate.detected, 3 + 3, "{} detected", gate.detected);
        let f = frame(1000, Some(40));
        assert!(
            gate.should_detect(view(&f), false),
            "the visitor's first frame"
        );
        // A tracked person standing still is still looked at.
        let f = frame(1001, Some(40));
        assert!(gate.should_detect(view(&f), true));
        // Light that brightens slowly over an empty hallway is learned, not motion.
        let mut gate = MotionGate::new(MotionConfig::default());
        let mut skipped = 0;
        for i in 0..100u8 {
            let f: Vec<u8> = frame(2000 + u64::from(i), None)
                .iter()
                .map(|v| v.saturating_add(i / 10))
                .collect();
            if !gate.should_detect(view(&f), false) {
                skipped += 1;
            }
        }
        assert!(skipped >= 90, "{skipped} of 100 skipped");
    }
}
