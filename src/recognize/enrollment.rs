//! What makes a photo a usable enrollment shot, shared by `facegate enroll` and the web UI: one
//! face, large and sharp enough, that looks like the person's other shots.

use image::RgbImage;

use crate::embed::{cosine, normalized};
use crate::imaging::photo::Photo;
use crate::recognize::pipeline::Pipeline;

/// Faces narrower than this (photo pixels) are too small to enroll: where accuracy falls apart.
/// Measured by `tools/face_size_curve.py` (5-celebrity, 3-shot, shots and probes scaled to one
/// face width): identification 99.4-100 % from 40 px up, 96 % at 32 px, 86 % at 24 px.
pub const MIN_ENROLL_FACE: i32 = 32;
/// Faces narrower than this are enrolled with a warning: below it the detector starts to miss
/// faces (3 % at 48 px, 9 % at 32 px) and identification loses its margin.
pub const GOOD_ENROLL_FACE: i32 = 64;
// The quality gates below are set from `tools/quality_curves.py` (5-celebrity, every photo
// blurred or its brightness scaled; plots in docs/quality/): a shot is refused where
// identification falls apart, and taken with a warning where its embedding starts to drift from
// the same face at full quality (cosine to it below about 0.9).

/// Aligned crops whose grey Laplacian variance is below this are too blurred to enroll: at a
/// median of 10.9 (Gaussian blur of 2 % of the face width) the embedding keeps cosine 0.80 to the
/// sharp face; at 5.0 (3 %) it keeps 0.60 and rank-1 falls to 44 %.
pub const MIN_SHARPNESS: f64 = 8.0;
/// Below this sharpness a shot is taken with a warning (a median of 62 keeps cosine 0.945).
pub const GOOD_SHARPNESS: f64 = 40.0;
/// Head turns beyond this many degrees are taken with a warning: the cosine to the person's other
/// photos drops from 0.72 (10-20 degrees) to 0.61 (20-30). No turn in the data (up to 45
/// degrees) lost rank-1, so none is refused.
pub const GOOD_YAW: f32 = 20.0;
/// Mean grey level of the aligned crop outside which a shot is refused: at a median of 10 (the
/// photo at 8 % of its brightness) nothing is identified, at 30 (25 %) rank-1 is 96 %; at 203
/// (three times as bright, washed out) rank-1 falls to 65 % and the cosine to the face at its
/// own exposure to 0.51.
pub const MIN_BRIGHTNESS: f64 = 15.0;
pub const MAX_BRIGHTNESS: f64 = 200.0;
/// Outside this range a shot is taken with a warning (at 167, one and a half times as bright,
/// the cosine to the original is 0.84; at 61, half as bright, 0.95).
pub const GOOD_BRIGHTNESS: (f64, f64) = (40.0, 170.0);
/// Shots a camera enrollment takes.
pub const CAMERA_SHOTS: usize = 3;
/// What a guided camera enrollment asks before each shot.
pub const PROMPTS: [&str; CAMERA_SHOTS] = [
    "look straight at the camera",
    "turn your head slightly to one side",
    "turn your head slightly to the other side",
];

/// How a face measures as an enrollment shot.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Quality {
    /// Face width in photo pixels.
    pub width: i32,
    /// Grey Laplacian variance of the aligned crop: low for blurred faces.
    pub sharpness: f64,
    /// Head turn left or right, in degrees, estimated from the landmarks (none without them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yaw: Option<f32>,
    /// Mean grey level of the aligned crop, 0 (black) to 255 (white).
    pub brightness: f64,
}

/// Which check refused a shot (for counting refusals in `eval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Gate {
    NoFace,
    SeveralFaces,
    TooSmall,
    TooBlurred,
    TooDark,
    TooBright,
}

/// Why a photo is not a usable shot.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub gate: Gate,
    pub message: String,
    /// The face's measurements, when there was one face to measure.
    pub quality: Option<Quality>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<Refusal> for String {
    fn from(r: Refusal) -> String {
        r.message
    }
}

/// A shot that passed the checks.
#[derive(Debug, Clone)]
pub struct Shot {
    pub embedding: Vec<f32>,
    /// The aligned crop, PNG-encoded (what the gallery keeps).
    pub png: Vec<u8>,
    /// Whether landmarks were found (the crop is aligned, not just cut from the box).
    pub aligned: bool,
    pub quality: Quality,
}

impl Quality {
    /// What would make the shot better, if anything (each taken, not refused).
    pub fn advice(&self) -> Vec<String> {
        let mut advice = Vec::new();
        if self.width < GOOD_ENROLL_FACE {
            advice.push(format!(
                "the face is small ({} px wide): taken, but a shot with the face {GOOD_ENROLL_FACE} px \
                 wide or more (closer, or a larger photo) matches more reliably",
                self.width
            ));
        }
        if self.sharpness < GOOD_SHARPNESS {
            advice.push(format!(
                "the face is soft (sharpness {:.1}): taken, but a sharper shot (steady camera, \
                 focus on the face) matches more reliably",
                self.sharpness
            ));
        }
        if let Some(yaw) = self.yaw.filter(|y| y.abs() > GOOD_YAW) {
            advice.push(format!(
                "the head is turned ({:.0} degrees): taken, but a shot facing the camera (within \
                 {GOOD_YAW:.0} degrees) matches more reliably",
                yaw.abs()
            ));
        }
        if self.brightness < GOOD_BRIGHTNESS.0 || self.brightness > GOOD_BRIGHTNESS.1 {
            advice.push(format!(
                "the face is {} (brightness {:.0} of 255): taken, but an evenly lit face matches \
                 more reliably",
                if self.brightness < GOOD_BRIGHTNESS.0 {
                    "dark"
                } else {
                    "bright"
                },
                self.brightness
            ));
        }
        advice
    }

    /// `good`, `usable` (taken with advice) or `refused`, for reports.
    pub fn verdict(&self) -> &'static str {
        if refusal(self).is_some() {
            "refused"
        } else if self.advice().is_empty() {
            "good"
        } else {
            "usable"
        }
    }
}

impl Shot {
    /// Why the shot was accepted, in words.
    pub fn verdict(&self) -> String {
        let advice = self.quality.advice();
        if advice.is_empty() {
            format!(
                "good: one sharp face (sharpness {:.1}, {} px wide)",
                self.quality.sharpness, self.quality.width
            )
        } else {
            format!("usable: {}", advice.join("; "))
        }
    }
}

/// What a face measures: size, sharpness, head turn and brightness.
pub fn measure(face: &crate::recognize::Face) -> Quality {
    Quality {
        width: face.rect.w,
        sharpness: laplacian_variance(&face.crop),
        yaw: face.landmarks.as_ref().map(yaw_degrees),
        brightness: mean_grey(&face.crop),
    }
}

/// The gate a face fails, with the reason in words.
fn refusal(q: &Quality) -> Option<(Gate, String)> {
    if q.width < MIN_ENROLL_FACE {
        return Some((
            Gate::TooSmall,
            format!(
                "the face is too small ({} px wide, at least {MIN_ENROLL_FACE} needed)",
                q.width
            ),
        ));
    }
    if q.sharpness < MIN_SHARPNESS {
        return Some((
            Gate::TooBlurred,
            format!(
                "the face is too blurred (sharpness {:.1}, at least {MIN_SHARPNESS} needed)",
                q.sharpness
            ),
        ));
    }
    if q.brightness < MIN_BRIGHTNESS {
        return Some((
            Gate::TooDark,
            format!(
                "the face is too dark (brightness {:.0} of 255, at least {MIN_BRIGHTNESS:.0} needed)",
                q.brightness
            ),
        ));
    }
    if q.brightness > MAX_BRIGHTNESS {
        return Some((
            Gate::TooBright,
            format!(
                "the face is too bright, washed out (brightness {:.0} of 255, at most \
                 {MAX_BRIGHTNESS:.0})",
                q.brightness
            ),
        ));
    }
    None
}

/// The shot in `photo`, or why it is not usable. With `largest`, a photo of several faces gives
/// its largest one.
pub fn check_shot(pipeline: &mut Pipeline, photo: &Photo, largest: bool) -> Result<Shot, Refusal> {
    let refused = |gate, message: String| Refusal {
        gate,
        message,
        quality: None,
    };
    let mut faces = pipeline
        .faces(photo)
        .map_err(|e| refused(Gate::NoFace, e))?;
    if faces.is_empty() {
        return Err(refused(Gate::NoFace, "no face found".into()));
    }
    if faces.len() > 1 && !largest {
        return Err(refused(
            Gate::SeveralFaces,
            format!(
                "{} faces; a shot must show one face (crop the photo to the one person)",
                faces.len()
            ),
        ));
    }
    let (face, embedding) = faces.swap_remove(0);
    let quality = measure(&face);
    if let Some((gate, message)) = refusal(&quality) {
        return Err(Refusal {
            gate,
            message,
            quality: Some(quality),
        });
    }
    let png = png(&face.crop).map_err(|e| refused(Gate::NoFace, e))?;
    Ok(Shot {
        embedding,
        png,
        aligned: face.landmarks.is_some(),
        quality,
    })
}

/// Head turn from the five landmarks (eyes, nose tip, mouth corners, photo pixels): how far the
/// nose tip sits off the middle of the eyes along the eye line, over the eye distance, taken as
/// `0.6 tan(yaw)` (the nose tip stands about 0.6 eye distances in front of the eyes). Roll does
/// not change it; positive is the face turned towards the photo's left.
pub fn yaw_degrees(points: &[[f32; 2]; 5]) -> f32 {
    let (l, r, nose) = (points[0], points[1], points[2]);
    let axis = [r[0] - l[0], r[1] - l[1]];
    let distance = (axis[0] * axis[0] + axis[1] * axis[1]).sqrt().max(1e-3);
    let mid = [(l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0];
    let along = ((nose[0] - mid[0]) * axis[0] + (nose[1] - mid[1]) * axis[1]) / distance;
    (along / distance / NOSE_DEPTH).atan().to_degrees()
}

const NOSE_DEPTH: f32 = 0.6;

/// Mean grey level of a crop.
pub fn mean_grey(crop: &RgbImage) -> f64 {
    let n = (crop.width() as u64 * crop.height() as u64).max(1);
    let sum: u64 = crop
        .pixels()
        .map(|p| u64::from(crate::imaging::grey::luma(p.0[0], p.0[1], p.0[2])))
        .sum();
    sum as f64 / n as f64
}

/// An aligned crop as PNG bytes (what the gallery keeps).
pub fn png(crop: &RgbImage) -> Result<Vec<u8>, String> {
    let mut png = Vec::new();
    crop.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode the face crop: {e}"))?;
    Ok(png)
}

/// Unit-length mean of embeddings.
pub fn mean_direction(shots: &[&Vec<f32>]) -> Vec<f32> {
    let mut mean = vec![0f32; shots.first().map_or(0, |s| s.len())];
    for s in shots {
        for (m, v) in mean.iter_mut().zip(s.iter()) {
            *m += v;
        }
    }
    normalized(&mean)
}

/// Whether `shot` looks like the `earlier` shots of the same person (cosine to their mean).
pub fn matches_earlier(shot: &[f32], earlier: &[&Vec<f32>], threshold: f32) -> Result<(), String> {
    if earlier.is_empty() {
        return Ok(());
    }
    let score = cosine(shot, &mean_direction(earlier));
    if score < threshold {
        return Err(format!(
            "this face does not look like the earlier shots (cosine {score:.3}, threshold {threshold:.3})"
        ));
    }
    Ok(())
}

/// Shots that resemble each other less than this fraction of the match threshold are refused as
/// probably not one person; between it and the threshold they are taken with a warning.
/// Measured by `tools/consistency_gate.py` on every triple of 5-celebrity photos (SFace, threshold
/// 0.363, so the refusal level is 0.200): it refuses 0.6 % of same-person triples (the threshold
/// itself refused 7 %: pose, age and small faces, which still identify every `val/` photo once
/// enrolled) and lets 7 % of triples holding one photo of someone else through, each with a
/// warning naming that photo. Same-person and other-person densities cross at about 0.26.
pub const CONSISTENCY_REFUSE_FRACTION: f32 = 0.55;

/// Every shot must look like the others: each is compared with the mean of the rest. `labels`
/// name the shots in messages. Returns warnings for shots that resemble the others only weakly;
/// fails for a shot that resembles them so little it is probably someone else.
pub fn check_consistent(
    shots: &[&Vec<f32>],
    labels: &[String],
    threshold: f32,
) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    if shots.len() < 2 {
        return Ok(warnings);
    }
    let refuse = threshold * CONSISTENCY_REFUSE_FRACTION;
    for (i, shot) in shots.iter().enumerate() {
        let others: Vec<&Vec<f32>> = shots
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, s)| *s)
            .collect();
        let score = cosine(shot, &mean_direction(&others));
        let label = labels
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("shot {}", i + 1));
        if score < refuse {
            return Err(format!(
                "{label} does not look like the same person as the other shots (cosine {score:.3}; \
                 below {refuse:.3} a shot is more likely someone else)"
            ));
        }
        if score < threshold {
            warnings.push(format!(
                "{label} resembles the other shots only weakly (cosine {score:.3}, match threshold \
                 {threshold:.3}): taken; if it shows someone else, enroll again without it (a \
                 frontal, sharp photo of the face matches better)"
            ));
        }
    }
    Ok(warnings)
}

/// Variance of the 4-neighbour Laplacian of the crop's grey image: low for blurred faces.
pub fn laplacian_variance(crop: &RgbImage) -> f64 {
    let (w, h) = (crop.width() as usize, crop.height() as usize);
    let grey: Vec<f64> = crop
        .pixels()
        .map(|p| crate::imaging::grey::luma(p.0[0], p.0[1], p.0[2]) as f64)
        .collect();
    let mut values = Vec::with_capacity(w * h);
    for y in 1..h.saturating_sub(1) {
        for x in 1..w.saturating_sub(1) {
            let c = grey[y * w + x];
            values.push(
                grey[y * w + x - 1]
                    + grey[y * w + x + 1]
                    + grey[(y - 1) * w + x]
                    + grey[(y + 1) * w + x]
                    - 4.0 * c,
            );
        }
    }
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n
}
