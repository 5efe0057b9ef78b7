//! Face embeddings with `tract`: an ONNX embedder described by a model card, run on aligned crops,
//! a batch of faces per call, L2-normalised so that a dot product is the cosine similarity.
//!
//! The ONNX file is parsed once into one optimised plan with a concrete input shape (a fixed batch
//! of faces), which is reused for every call. Only the plan is kept: the parsed model, the
//! protobuf and the file bytes are each a full copy of the weights in f32 (SFace: 38 MB), and
//! dropping them as soon as the next form exists is what keeps a board's memory use down.

use std::path::Path;
use std::sync::Arc;

use image::RgbImage;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;

use crate::embed::model_card::{ChannelOrder, LoadedModel, ModelCard, ModelError};
use onnx_prep::DenseHead;
pub use precision::{cpu_has_f16_arithmetic, Float, Precision};

mod depthwise;
pub mod model_card;
pub mod onnx_prep;
pub mod onnx_reader;
mod precision;
mod prelu;

/// Most faces per network run.
pub const MAX_BATCH: usize = 8;
/// Faces per network run unless set otherwise. With tract 0.23 on x86 (AVX2), SFace takes 11 ms
/// per face one at a time but 20 ms in pairs and 28 ms in fours (`facegate bench embed --batch`),
/// so a frame's faces are run one by one; two threads on one plan do better (`--threads`).
pub const DEFAULT_BATCH: usize = 1;

type Plan = Arc<TypedRunnableModel>;

pub struct Embedder {
    card: ModelCard,
    plan: Plan,
    /// The final int8 dense layer, run here rather than by tract (see [`DenseHead`]).
    head: Option<Arc<DenseHead>>,
    batch: usize,
    /// What the plan computes in (its input and output are of this type).
    float: Float,
}

impl Embedder {
    /// Loads the model a card describes, checking the file against the card and the network's
    /// output against the card's embedding size.
    pub fn load(card_path: &Path) -> Result<Embedder, ModelError> {
        Embedder::load_with(card_path, DEFAULT_BATCH, Precision::Auto)
    }

    /// Like [`Embedder::load`], running `batch` faces (1 to [`MAX_BATCH`]) per network call in
    /// the given precision.
    pub fn load_with(
        card_path: &Path,
        batch: usize,
        precision: Precision,
    ) -> Result<Embedder, ModelError> {
        Embedder::from_loaded(ModelCard::load(card_path)?, batch, precision)
    }

    pub fn from_loaded(
        loaded: LoadedModel,
        batch: usize,
        precision: Precision,
    ) -> Result<Embedder, ModelError> {
        Embedder::build(loaded, batch, true, precision.resolve())
    }

    /// Loads the model with every layer run by tract, without the int8 dense head (to measure
    /// what the head changes).
    pub fn load_all_in_tract(card_path: &Path) -> Result<Embedder, ModelError> {
        Embedder::build(
            ModelCard::load(card_path)?,
            DEFAULT_BATCH,
            false,
            Float::F32,
        )
    }

    fn build(
        loaded: LoadedModel,
        batch: usize,
        int8_head: bool,
        float: Float,
    ) -> Result<Embedder, ModelError> {
        let path = loaded.onnx_path.clone();
        // tract checks most of a model but can still panic on a malformed graph deep in its
        // analysis: a wrong model file must be an error naming it, not the end of the process.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Embedder::build_checked(loaded, batch, int8_head, float)
        }))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown failure");
            Err(ModelError {
                path,
                problem: format!("not a usable embedding model (tract failed on it: {why})"),
            })
        })
    }

    fn build_checked(
        loaded: LoadedModel,
        batch: usize,
        int8_head: bool,
        float: Float,
    ) -> Result<Embedder, ModelError> {
        let LoadedModel {
            card,
            onnx,
            onnx_path,
        } = loaded;
        let fail = |problem: String| ModelError {
            path: onnx_path.clone(),
            problem,
        };
        let batch = batch.clamp(1, MAX_BATCH);
        let mut reader = crate::embed::onnx_reader::reader();
        prelu::register(&mut reader.op_register);
        let (proto, head) = onnx_prep::read_and_rewrite(&onnx, int8_head).map_err(fail)?;
        crate::embed::onnx_reader::check_operators(&proto, &reader).map_err(fail)?;
        // The decoded form holds everything from here: the file's bytes go (a model built into
        // the binary gives its pages back) before the plan's weights are made, so the two never
        // count together.
        match onnx {
            std::borrow::Cow::Borrowed(bytes) => crate::support::memory::release_pages(bytes),
            std::borrow::Cow::Owned(bytes) => drop(bytes),
        }
        let model = reader
            .model_for_proto_model(&proto)
            .map_err(|e| fail(format!("not a loadable ONNX model: {e:#}")))?;
        drop(proto);
        let (w, h) = (card.input.width, card.input.height);
        let plan = model
            .with_input_fact(0, f32::fact([batch, 3, h, w]).into())
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .and_then(|mut m| {
                match float {
                    // f16 weights are cast when the plan is optimised, so the plan keeps one
                    // copy of them, at half the size.
                    Float::F16 => m.transform(&FloatPrecisionTranslator::new(
                        f32::datum_type(),
                        f16::datum_type(),
                    ))?,
                    Float::F32 => {
                        depthwise::use_vectorised_stride2(&mut m)?;
                    }
                }
                m.into_optimized()
            })
            .and_then(|m| m.into_runnable())
            .map_err(|e| {
                fail(format!(
                    "cannot prepare the network for {batch} faces of {w}x{h}: {e:#}"
                ))
            })?;
        let mut embedder = Embedder {
            card,
            plan,
            head: head.map(Arc::new),
            batch,
            float,
        };
        // Run it once so a wrong model is refused at load time, not mid-stream.
        let probe = RgbImage::new(w as u32, h as u32);
        let out = embedder.embed(&[probe]).map_err(fail)?;
        if out[0].len() != embedder.card.embedding_dim {
            return Err(fail(format!(
                "the network outputs {} values per face, its card says {}",
                out[0].len(),
                embedder.card.embedding_dim
            )));
        }
        Ok(embedder)
    }

    pub fn card(&self) -> &ModelCard {
        &self.card
    }

    /// The model's fingerprint (sha256 of the ONNX file, from its verified card).
    pub fn fingerprint(&self) -> &str {
        &self.card.sha256
    }

    /// Whether the final dense layer runs in int8 outside tract.
    pub fn has_int8_head(&self) -> bool {
        self.head.is_some()
    }

    /// Faces per network run.
    /// Another handle on the same network and weights, for a second thread (`serve`'s API
    /// beside its live pipeline): the plan runs from `&self`, so nothing is copied or locked.
    pub fn share(&self) -> Embedder {
        Embedder {
            card: self.card.clone(),
            plan: self.plan.clone(),
            head: self.head.clone(),
            batch: self.batch,
            float: self.float,
        }
    }

    /// What the network computes in.
    pub fn float(&self) -> Float {
        self.float
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// One unit-length embedding per crop. Crops must be the card's input size.
    pub fn embed(&mut self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, String> {
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(self.batch) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    fn embed_batch(&mut self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, String> {
        let input = self.input_tensor(crops)?;
        let result = self
            .plan
            .run(tvec!(input.into()))
            .map_err(|e| format!("the network failed: {e:#}"))?;
        self.embeddings(&result[0], crops.len())
    }

    /// The network's input for up to one batch of crops: normalised as the card says, channels
    /// first, a short batch padded with zeros (the plan's batch size is fixed).
    fn input_tensor(&self, crops: &[RgbImage]) -> Result<Tensor, String> {
        let spec = &self.card.input;
        let (w, h) = (spec.width, spec.height);
        let mut data = vec![0f32; self.batch * 3 * h * w];
        for (i, crop) in crops.iter().enumerate() {
            if (crop.width() as usize, crop.height() as usize) != (w, h) {
                return Err(format!(
                    "face crop is {}x{}, the model needs {w}x{h}",
                    crop.width(),
                    crop.height()
                ));
            }
            let base = i * 3 * h * w;
            for (x, y, p) in crop.enumerate_pixels() {
                for c in 0..3 {
                    let src = match spec.channels {
                        ChannelOrder::Rgb => c,
                        ChannelOrder::Bgr => 2 - c,
                    };
                    let v = p.0[src] as f32 * spec.scale;
                    data[base + c * h * w + y as usize * w + x as usize] =
                        (v - spec.mean[c]) / spec.std[c];
                }
            }
        }
        let input = tract_ndarray::Array4::from_shape_vec((self.batch, 3, h, w), data)
            .map_err(|e| e.to_string())?
            .into_tensor();
        match self.float {
            Float::F32 => Ok(input),
            Float::F16 => input
                .cast_to::<f16>()
                .map(|t| t.into_owned())
                .map_err(|e| e.to_string()),
        }
    }

    /// Unit-length embeddings of the first `faces` rows of the network's output.
    fn embeddings(&self, output: &TValue, faces: usize) -> Result<Vec<Vec<f32>>, String> {
        let output = output.cast_to::<f32>().map_err(|e| e.to_string())?;
        let view = output
            .to_plain_array_view::<f32>()
            .map_err(|e| e.to_string())?;
        let per_face = view.len() / self.batch;
        if per_face == 0 || self.head.as_ref().is_some_and(|h| h.cols != per_face) {
            return Err(format!(
                "the network's output ({} values for {} faces) does not fit this model",
                view.len(),
                self.batch
            ));
        }
        let flat: Vec<f32> = view.iter().copied().collect();
        Ok(flat
            .chunks(per_face)
            .take(faces)
            .map(|features| match &self.head {
                Some(head) => normalized(&head.apply(features)),
                None => normalized(features),
            })
            .collect())
    }

    /// Where a network run spends its time: each crop is run `passes` times (after one untimed
    /// run) and every node of the optimised plan is timed, summed by operator and output shape.
    pub fn profile(&self, crops: &[RgbImage], passes: usize) -> Result<Vec<OpTime>, String> {
        let mut state = tract_onnx::tract_core::plan::SimpleState::new(&self.plan)
            .map_err(|e| format!("the network failed: {e:#}"))?;
        let mut by_op: std::collections::BTreeMap<String, OpTime> = Default::default();
        for pass in 0..=passes {
            for crop in crops {
                let input = self.input_tensor(std::slice::from_ref(crop))?;
                let mut times: Vec<(String, usize, f64)> = Vec::new();
                let outputs = state
                    .run_plan_with_eval(tvec!(input.into()), |ctx, op_state, node, inputs| {
                        let start = std::time::Instant::now();
                        let out = tract_onnx::tract_core::plan::eval(ctx, op_state, node, inputs);
                        let ms = start.elapsed().as_secs_f64() * 1e3;
                        let shape = node
                            .outputs
                            .first()
                            .map(|o| format!("{:?}", o.fact.shape))
                            .unwrap_or_default();
                        times.push((format!("{} {shape}", node.op().name()), node.id, ms));
                        out
                    })
                    .map_err(|e| format!("the network failed: {e:#}"))?;
                if self.head.is_some() {
                    let start = std::time::Instant::now();
                    self.embeddings(&outputs[0], 1)?;
                    let ms = start.elapsed().as_secs_f64() * 1e3;
                    times.push(("Int8DenseHead (outside tract)".into(), 0, ms));
                }
                if pass == 0 {
                    continue;
                }
                for (op, _, ms) in times {
                    let entry = by_op.entry(op.clone()).or_insert(OpTime {
                        op,
                        nodes: 0,
                        ms: 0.0,
                    });
                    entry.nodes += 1;
                    entry.ms += ms;
                }
            }
        }
        let runs = (passes * crops.len()).max(1) as f64;
        let mut table: Vec<OpTime> = by_op
            .into_values()
            .map(|t| OpTime {
                nodes: t.nodes / runs as usize,
                ms: t.ms / runs,
                ..t
            })
            .collect();
        table.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(table)
    }
}

/// One operator's share of a network run (see [`Embedder::profile`]).
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpTime {
    /// tract's name for the operator in the optimised plan, and the shape of what it outputs.
    pub op: String,
    /// Nodes of the plan running it.
    pub nodes: usize,
    /// Milliseconds per face, all its nodes together.
    pub ms: f64,
}

/// `v / |v|` (a zero vector stays zero).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// Cosine similarity of two unit-length embeddings.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
