//! YuNet (2023mar), a small CNN face detector that also gives five landmarks, run with `tract`.
//! facegate uses it to find the landmarks that align a face for the embedder, inside each cascade
//! detection or on the whole photo.
//!
//! Decoding follows OpenCV's `FaceDetectorYN` for this network: per stride 8/16/32 and grid cell,
//! score sqrt(cls * obj), box centre offset and log size in stride units, landmarks as offsets;
//! then non-maximum suppression.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use image::RgbImage;
use tract_onnx::prelude::*;

use crate::embed::model_card::ModelError;

const STRIDES: [usize; 3] = [8, 16, 32];

/// A face found by YuNet, in photo pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// x, y, width, height.
    pub bbox: [f32; 4],
    /// Right eye, left eye (as seen in the image: left then right), nose tip, mouth corners.
    pub landmarks: [[f32; 2]; 5],
    pub score: f32,
}

pub struct YuNet {
    model: InferenceModel,
    plans: HashMap<(usize, usize), Arc<TypedRunnableModel>>,
    pub score_threshold: f32,
    pub nms_threshold: f32,
}

impl YuNet {
    pub fn load(path: &Path) -> Result<YuNet, ModelError> {
        let bytes = crate::support::limits::read_file(
            path,
            crate::support::limits::MAX_MODEL_BYTES,
            "model",
        )
        .map_err(|problem| ModelError {
            path: path.to_path_buf(),
            problem,
        })?;
        YuNet::from_bytes(&bytes).map_err(|problem| ModelError {
            path: path.to_path_buf(),
            problem,
        })
    }

    pub fn from_bytes(onnx: &[u8]) -> Result<YuNet, String> {
        let reader = crate::embed::onnx_reader::reader();
        let proto = reader
            .proto_model_for_read(&mut &onnx[..])
            .map_err(|e| format!("not an ONNX model: {e:#}"))?;
        crate::embed::onnx_reader::check_operators(&proto, &reader)?;
        let model = reader
            .model_for_proto_model(&proto)
            .map_err(|e| format!("not a loadable ONNX model: {e:#}"))?;
        if model.output_outlets().map_or(0, |o| o.len()) != 12 {
            return Err(
                "not a YuNet 2023 model (expected 12 outputs: cls, obj, bbox, kps x 3 strides)"
                    .into(),
            );
        }
        Ok(YuNet {
            model,
            plans: HashMap::new(),
            score_threshold: 0.6,
            nms_threshold: 0.3,
        })
    }

    fn plan(&mut self, w: usize, h: usize) -> Result<Arc<TypedRunnableModel>, String> {
        if let Some(p) = self.plans.get(&(w, h)) {
            return Ok(p.clone());
        }
        let plan = self
            .model
            .clone()
            .with_input_fact(0, f32::fact([1, 3, h, w]).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(|e| format!("cannot prepare YuNet for {w}x{h}: {e:#}"))?;
        // A camera stream has one frame size; photos of many sizes should not pile up plans.
        if self.plans.len() >= 8 {
            self.plans.clear();
        }
        self.plans.insert((w, h), plan.clone());
        Ok(plan)
    }

    /// Faces in `photo`, most confident first. The network sees the photo padded with black to
    /// sides that are multiples of 32.
    pub fn detect(&mut self, photo: &RgbImage) -> Result<Vec<Face>, String> {
        let (w, h) = (photo.width() as usize, photo.height() as usize);
        let (pw, ph) = (w.div_ceil(32) * 32, h.div_ceil(32) * 32);
        let mut data = vec![0f32; 3 * pw * ph];
        for (x, y, p) in photo.enumerate_pixels() {
            let at = y as usize * pw + x as usize;
            // BGR, 0..255, as OpenCV feeds it.
            data[at] = p.0[2] as f32;
            data[pw * ph + at] = p.0[1] as f32;
            data[2 * pw * ph + at] = p.0[0] as f32;
        }
        let input = tract_ndarray::Array4::from_shape_vec((1, 3, ph, pw), data)
            .map_err(|e| e.to_string())?
            .into_tensor();
        let out = self
            .plan(pw, ph)?
            .run(tvec!(input.into()))
            .map_err(|e| format!("YuNet failed: {e:#}"))?;
        let view = |i: usize| -> Result<Vec<f32>, String> {
            Ok(out[i]
                .to_plain_array_view::<f32>()
                .map_err(|e| e.to_string())?
                .iter()
                .copied()
                .collect())
        };
        let mut faces = Vec::new();
        for (si, stride) in STRIDES.iter().enumerate() {
            let (cls, obj, bbox, kps) = (view(si)?, view(3 + si)?, view(6 + si)?, view(9 + si)?);
            let cols = pw / stride;
            let cells = cols * (ph / stride);
            if cls.len() != cells
                || obj.len() != cells
                || bbox.len() != 4 * cells
                || kps.len() != 10 * cells
            {
                return Err(format!("unexpected YuNet output sizes at stride {stride}"));
            }
            let s = *stride as f32;
            for i in 0..cells {
                let score = (cls[i].clamp(0.0, 1.0) * obj[i].clamp(0.0, 1.0)).sqrt();
                if score < self.score_threshold {
                    continue;
                }
                let (r, c) = ((i / cols) as f32, (i % cols) as f32);
                let b = &bbox[4 * i..4 * i + 4];
                let (cx, cy) = ((c + b[0]) * s, (r + b[1]) * s);
                let (bw, bh) = (b[2].exp() * s, b[3].exp() * s);
                let k = &kps[10 * i..10 * i + 10];
                let landmarks =
                    std::array::from_fn(|n| [(k[2 * n] + c) * s, (k[2 * n + 1] + r) * s]);
                faces.push(Face {
                    bbox: [cx - bw / 2.0, cy - bh / 2.0, bw, bh],
                    landmarks,
                    score,
                });
            }
        }
        Ok(non_maximum_suppression(faces, self.nms_threshold))
    }
}

/// Intersection over union of two (x, y, width, height) boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let x0 = a[0].max(b[0]);
    let y0 = a[1].max(b[1]);
    let x1 = (a[0] + a[2]).min(b[0] + b[2]);
    let y1 = (a[1] + a[3]).min(b[1] + b[3]);
    let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// Greedy suppression, most confident first.
pub fn non_maximum_suppression(mut faces: Vec<Face>, threshold: f32) -> Vec<Face> {
    faces.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Face> = Vec::new();
    for f in faces {
        if kept.iter().all(|k| iou(&k.bbox, &f.bbox) <= threshold) {
            kept.push(f);
        }
    }
    kept
}
