//! Writing the edge artefacts (ONNX f32 and int8, each with its model card) and proving them:
//! tract must reproduce the trained network, and facegate's own embedder must load the card.

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use facegate::embed::model_card::{Alignment, ChannelOrder, InputSpec, ModelCard, Threshold};
use facegate::support::durable;
use serde::Serialize;

use crate::data::Dataset;
use crate::model::Net;
use crate::onnx_io::{self, ExportOptions, WeightForm};
use crate::train::{batch_tensor, Pixels};

#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub f32_file: String,
    pub int8_file: String,
    pub f32_bytes: usize,
    pub int8_bytes: usize,
    /// Largest difference between burn's and tract's raw outputs on the check images.
    pub tract_max_abs_diff: f32,
    /// Cosine between f32 and int8 embeddings in tract: the worst and the mean over the images.
    pub int8_min_cosine: f32,
    pub int8_mean_cosine: f32,
    /// tract milliseconds per image (batch of 1), f32 and int8, measured in the same run.
    pub f32_ms: f64,
    pub int8_ms: f64,
    pub check_images: usize,
    /// The int8 model's unit-length embeddings of the check images, in tract (for k-shot figures
    /// beside f32's).
    #[serde(skip)]
    pub int8_embeddings: Vec<Vec<f32>>,
}

pub struct Artefact<'a> {
    pub name: &'a str,
    pub pixels: Pixels,
    pub aligned: bool,
    pub threshold: f32,
    pub calibrated_on: String,
    pub source: String,
}

fn card(a: &Artefact, file: &str, bytes: &[u8], form: &str, side: usize, dim: usize) -> ModelCard {
    let alignment = if a.aligned {
        Alignment::FivePoint {
            template: crate::data::template(side),
        }
    } else {
        Alignment::None
    };
    ModelCard {
        name: format!("{}-{form}", a.name),
        file: file.to_string(),
        sha256: facegate::embed::model_card::sha256_hex(bytes),
        form: form.to_string(),
        input: InputSpec {
            width: side,
            height: side,
            channels: ChannelOrder::Rgb,
            scale: a.pixels.scale,
            mean: [a.pixels.mean; 3],
            std: [a.pixels.std; 3],
        },
        alignment,
        embedding_dim: dim,
        threshold: Threshold {
            cosine: a.threshold,
            calibrated_on: a.calibrated_on.clone(),
        },
        license: "Apache-2.0 (trained by facegate-train; check the training data's terms)".into(),
        source: a.source.clone(),
    }
}

pub fn tract_plan(
    bytes: &[u8],
    shape: [usize; 4],
) -> Result<std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>, String> {
    use prost::Message;
    use tract_onnx::prelude::*;
    // Through facegate's own load-time folding, as the board runs it: tract cannot read blocked
    // DequantizeLinear itself.
    let mut proto = tract_onnx::pb::ModelProto::decode(bytes)
        .map_err(|e| format!("the exported model does not decode: {e}"))?;
    facegate::embed::onnx_prep::fold_constant_dequantize(&mut proto)?;
    let reader = tract_onnx::onnx();
    facegate::embed::onnx_reader::check_operators(&proto, &reader)
        .map_err(|e| format!("the exported model {e}"))?;
    reader
        .model_for_proto_model(&proto)
        .and_then(|m| m.with_input_fact(0, f32::fact(shape).into()))
        .and_then(|m| m.into_optimized())
        .and_then(|m| m.into_runnable())
        .map_err(|e| format!("tract cannot load the exported model: {e:#}"))
}

pub fn run(
    plan: &std::sync::Arc<tract_onnx::prelude::TypedRunnableModel>,
    input: &[f32],
    shape: [usize; 4],
) -> Result<Vec<f32>, String> {
    use tract_onnx::prelude::*;
    let tensor = tract_ndarray::Array4::from_shape_vec(shape, input.to_vec())
        .map_err(|e| e.to_string())?
        .into_tensor();
    let out = plan
        .run(tvec!(tensor.into()))
        .map_err(|e| format!("tract failed: {e:#}"))?;
    let view = out[0]
        .to_plain_array_view::<f32>()
        .map_err(|e| e.to_string())?;
    Ok(view.iter().copied().collect())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    facegate::embed::cosine(
        &facegate::embed::normalized(a),
        &facegate::embed::normalized(b),
    )
}

/// The int8 export's worst cosine to f32 below which `train` warns: under it, scores near the
/// threshold move enough to flip decisions.
pub const INT8_MIN_COSINE: f32 = 0.99;

/// Writes `<name>.onnx`/`.json` (f32) and `<name>_int8.onnx`/`.json` into `dir`, checking both in
/// tract on every image of `check` (the evaluated images: quantisation error is measured where the
/// model will be used, not on what it was fitted to).
pub fn export(
    net: &Net,
    artefact: &Artefact,
    check: &Dataset,
    dir: &Path,
    device: &Device,
) -> Result<ExportReport, String> {
    let net = net.valid();
    let side = net.input_size;
    let n = check.len();
    if n == 0 {
        return Err("no images to check the export with".into());
    }
    let f32_bytes = onnx_io::export(&net, ExportOptions::edge(WeightForm::F32));
    let int8_bytes = onnx_io::export(&net, ExportOptions::edge(WeightForm::Int8));
    // Batches of 64 (one plan each for the full batch and the remainder).
    let batch = n.min(64);
    let mut plans = std::collections::HashMap::new();
    let (mut diff, mut cosines, mut dim) = (0f32, Vec::with_capacity(n), 0);
    let mut int8_embeddings = Vec::with_capacity(n);
    let mut first_input = Vec::new();
    let all: Vec<usize> = (0..n).collect();
    for indices in all.chunks(batch) {
        let shape = [indices.len(), 3, side, side];
        let (p32, p8) = match plans.entry(indices.len()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert((
                tract_plan(&f32_bytes, shape)?,
                tract_plan(&int8_bytes, shape)?,
            )),
        };
        let (p32, p8) = (&*p32, &*p8);
        let x = batch_tensor(check, indices, artefact.pixels, None, device);
        let input = crate::model::host(x.clone())?;
        let expected = crate::model::host(net.forward(x))?;
        dim = expected.len() / indices.len();
        let got = run(p32, &input, shape)?;
        diff = expected
            .iter()
            .zip(&got)
            .fold(diff, |m, (a, b)| m.max((a - b).abs()));
        let got8 = run(p8, &input, shape)?;
        int8_embeddings.extend(got8.chunks(dim).map(facegate::embed::normalized));
        cosines.extend(
            got.chunks(dim)
                .zip(got8.chunks(dim))
                .map(|(a, b)| cosine(a, b)),
        );
        if first_input.is_empty() {
            first_input = input[..3 * side * side].to_vec();
        }
    }
    drop(plans);
    let int8_min_cosine = cosines.iter().copied().fold(1.0, f32::min);
    if int8_min_cosine < INT8_MIN_COSINE {
        eprintln!(
            "warning: the int8 model's worst cosine to f32 over {n} images is {int8_min_cosine:.4} (below {INT8_MIN_COSINE}); prefer {}.onnx where accuracy matters",
            artefact.name
        );
    }

    // Speed: one image at a time, as the edge runs it; interleaved so drift hits both alike.
    let one = [1, 3, side, side];
    let (p32, p8) = (tract_plan(&f32_bytes, one)?, tract_plan(&int8_bytes, one)?);
    let image = &first_input[..];
    let (mut t32, mut t8) = (0f64, 0f64);
    let rounds = 20;
    for _ in 0..rounds {
        let t = Instant::now();
        run(&p32, image, one)?;
        t32 += t.elapsed().as_secs_f64();
        let t = Instant::now();
        run(&p8, image, one)?;
        t8 += t.elapsed().as_secs_f64();
    }

    let stem = artefact.name;
    let files = [
        (format!("{stem}.onnx"), &f32_bytes, "f32"),
        (format!("{stem}_int8.onnx"), &int8_bytes, "qdq"),
    ];
    for (file, bytes, form) in &files {
        durable::write_or_say(&dir.join(file), bytes)?;
        let c = card(artefact, file, bytes, form, side, dim);
        let json = serde_json::to_string_pretty(&c).map_err(|e| e.to_string())?;
        let card_path = dir.join(file.replace(".onnx", ".json"));
        durable::write_or_say(&card_path, json.as_bytes())?;
        // The runtime must accept what was written: the card, the checksum and the network.
        facegate::embed::Embedder::load(&card_path).map_err(|e| e.to_string())?;
    }
    Ok(ExportReport {
        f32_file: files[0].0.clone(),
        int8_file: files[1].0.clone(),
        f32_bytes: f32_bytes.len(),
        int8_bytes: int8_bytes.len(),
        tract_max_abs_diff: diff,
        int8_min_cosine,
        int8_mean_cosine: cosines.iter().sum::<f32>() / cosines.len() as f32,
        f32_ms: t32 * 1000.0 / rounds as f64,
        int8_ms: t8 * 1000.0 / rounds as f64,
        check_images: n,
        int8_embeddings,
    })
}
