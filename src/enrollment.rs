//! What makes a photo a usable enrollment shot, shared by `facegate enroll` and the web UI: one
//! face, large and sharp enough, that looks like the person's other shots.

use image::RgbImage;

use crate::embedder::{cosine, normalized};
use crate::image_io::Photo;
use crate::pipeline::Pipeline;

/// Faces narrower than this (photo pixels) are too small to enroll: where accuracy falls apart.
/// Measured by `tools/face_size_curve.py` (5-celebrity, 3-shot, shots and probes scaled to one
/// face width): identification 99.4-100 % from 40 px up, 96 % at 32 px, 86 % at 24 px.
pub const MIN_ENROLL_FACE: i32 = 32;
/// Faces narrower than this are enrolled with a warning: below it the detector starts to miss
/// faces (3 % at 48 px, 9 % at 32 px) and identification loses its margin.
pub const GOOD_ENROLL_FACE: i32 = 64;
/// Aligned crops whose grey Laplacian variance is below this are too blurred to enroll.
pub const MIN_SHARPNESS: f64 = 15.0;
/// Shots a camera enrollment takes.
pub const CAMERA_SHOTS: usize = 3;
/// What a guided camera enrollment asks before each shot.
pub const PROMPTS: [&str; CAMERA_SHOTS] = [
    "look straight at the camera",
    "turn your head slightly to one side",
    "turn your head slightly to the other side",
];

/// A shot that passed the checks.
#[derive(Debug, Clone)]
pub struct Shot {
    pub embedding: Vec<f32>,
    /// The aligned crop, PNG-encoded (what the gallery keeps).
    pub png: Vec<u8>,
    /// Whether landmarks were found (the crop is aligned, not just cut from the box).
    pub aligned: bool,
    /// Face width in photo pixels.
    pub width: i32,
    pub sharpness: f64,
}

impl Shot {
    /// What would make the shot better, if anything.
    pub fn advice(&self) -> Option<String> {
        (self.width < GOOD_ENROLL_FACE).then(|| {
            format!(
                "the face is small ({} px wide): taken, but a shot with the face {GOOD_ENROLL_FACE} px \
                 wide or more (closer, or a larger photo) matches more reliably",
                self.width
            )
        })
    }
}

impl Shot {
    /// Why the shot was accepted, in words.
    pub fn verdict(&self) -> String {
        match self.advice() {
            Some(advice) => format!("usable: {advice}"),
            None => format!(
                "good: one sharp face (sharpness {:.1}, {} px wide)",
                self.sharpness, self.width
            ),
        }
    }
}

/// The shot in `photo`, or why it is not usable. With `largest`, a photo of several faces gives
/// its largest one.
pub fn check_shot(pipeline: &mut Pipeline, photo: &Photo, largest: bool) -> Result<Shot, String> {
    let mut faces = pipeline.faces(photo)?;
    if faces.is_empty() {
        return Err("no face found".into());
    }
    if faces.len() > 1 && !largest {
        return Err(format!(
            "{} faces; enroll needs one (or --largest)",
            faces.len()
        ));
    }
    let (face, embedding) = faces.swap_remove(0);
    if face.rect.w < MIN_ENROLL_FACE {
        return Err(format!(
            "the face is too small ({} px wide, at least {MIN_ENROLL_FACE} needed)",
            face.rect.w
        ));
    }
    let sharpness = laplacian_variance(&face.crop);
    if sharpness < MIN_SHARPNESS {
        return Err(format!(
            "the face is too blurred (sharpness {sharpness:.1}, at least {MIN_SHARPNESS} needed)"
        ));
    }
    let png = png(&face.crop)?;
    Ok(Shot {
        embedding,
        png,
        aligned: face.landmarks.is_some(),
        width: face.rect.w,
        sharpness,
    })
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
        .map(|p| crate::grey::luma(p.0[0], p.0[1], p.0[2]) as f64)
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
