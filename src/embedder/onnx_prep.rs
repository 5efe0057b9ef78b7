//! Rewrites applied to an ONNX model before `tract` sees it.
//!
//! Weight-only int8 models (int8 initializers behind `DequantizeLinear`) keep the file about 4x
//! smaller, but tract evaluates those `DequantizeLinear` nodes on every run, which measured 1.25x
//! slower than the f32 model on x86. Replacing each constant `DequantizeLinear` by its f32 result
//! once, at load time, gives f32 speed with int8-rounded weights: the file stays small, the
//! arithmetic is the same as the dequantising runtime's.

use std::collections::HashMap;

use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};
use tract_onnx::prelude::Framework;

const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT8: i32 = 3;

fn values(t: &TensorProto) -> Option<Vec<f32>> {
    match t.data_type {
        FLOAT if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        FLOAT => Some(t.float_data.clone()),
        INT8 if !t.raw_data.is_empty() => {
            Some(t.raw_data.iter().map(|&b| b as i8 as f32).collect())
        }
        UINT8 if !t.raw_data.is_empty() => Some(t.raw_data.iter().map(|&b| b as f32).collect()),
        INT8 | UINT8 => Some(t.int32_data.iter().map(|&v| v as f32).collect()),
        _ => None,
    }
}

/// Decodes ONNX bytes and applies the rewrites: the dense head split off (when `int8_head` and the
/// model ends in one), then constant `DequantizeLinear` folded. Errors describe what is wrong with
/// the bytes; the rewrites leave any model they do not recognise alone.
pub fn read_and_rewrite(
    onnx: &[u8],
    int8_head: bool,
) -> Result<(ModelProto, Option<DenseHead>), String> {
    let mut proto = tract_onnx::onnx()
        .proto_model_for_read(&mut &onnx[..])
        .map_err(|e| format!("not an ONNX model: {e:#}"))?;
    let head = if int8_head {
        split_dense_head(&mut proto)
    } else {
        None
    };
    fold_constant_dequantize(&mut proto);
    if let Some(graph) = proto.graph.as_mut() {
        fold_conv_batch_norm(graph);
    }
    Ok((proto, head))
}

/// Folds every `DequantizeLinear` whose inputs are all initializers into an f32 initializer.
/// Returns how many were folded.
pub fn fold_constant_dequantize(model: &mut ModelProto) -> usize {
    let Some(graph) = model.graph.as_mut() else {
        return 0;
    };
    fold_graph(graph)
}

fn fold_graph(graph: &mut GraphProto) -> usize {
    let by_name: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut new_initializers = Vec::new();
    let mut folded = vec![false; graph.node.len()];
    for (n, node) in graph.node.iter().enumerate() {
        if node.op_type != "DequantizeLinear" || node.input.len() < 2 || node.output.len() != 1 {
            continue;
        }
        let tensor = |i: usize| {
            node.input
                .get(i)
                .and_then(|name| by_name.get(name))
                .map(|&k| &graph.initializer[k])
        };
        let (Some(q), Some(scale)) = (tensor(0), tensor(1)) else {
            continue;
        };
        let zero = tensor(2);
        if node.input.len() > 2 && zero.is_none() {
            continue;
        }
        let (Some(qv), Some(sv)) = (values(q), values(scale)) else {
            continue;
        };
        let zv = zero.and_then(values).unwrap_or_else(|| vec![0.0; sv.len()]);
        let axis_attr = node
            .attribute
            .iter()
            .find(|a| a.name == "axis")
            .map_or(1, |a| a.i);
        let block = node
            .attribute
            .iter()
            .find(|a| a.name == "block_size")
            .map_or(0, |a| a.i);
        if block != 0 || zv.len() != sv.len() {
            continue;
        }
        // Dimensions come from the file: negative or overflowing ones, or ones that disagree
        // with the data, leave the node to tract's own checks.
        let Ok(dims) = q
            .dims
            .iter()
            .map(|&d| usize::try_from(d))
            .collect::<Result<Vec<usize>, _>>()
        else {
            continue;
        };
        if dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(qv.len()) {
            continue;
        }
        let out: Vec<f32> = if sv.len() == 1 {
            qv.iter().map(|&v| (v - zv[0]) * sv[0]).collect()
        } else {
            let axis = if axis_attr < 0 {
                axis_attr + dims.len() as i64
            } else {
                axis_attr
            } as usize;
            if axis >= dims.len() || dims[axis] != sv.len() {
                continue;
            }
            let inner: usize = dims[axis + 1..].iter().product();
            qv.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = (i / inner) % dims[axis];
                    (v - zv[c]) * sv[c]
                })
                .collect()
        };
        // The ONNX operator computes (q - zero) * scale in f32: the same values as here.
        new_initializers.push(TensorProto {
            name: node.output[0].clone(),
            dims: q.dims.clone(),
            data_type: FLOAT,
            raw_data: out.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..TensorProto::default()
        });
        folded[n] = true;
    }
    let count = new_initializers.len();
    let mut i = 0;
    graph.node.retain(|_| {
        i += 1;
        !folded[i - 1]
    });
    // Initializers nothing reads any more (the int8 originals) would be decoded by tract all the
    // same, a second copy of the weights while the plan is built.
    let read: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    // Older files also list initializers as graph inputs: those stay, or tract would see an
    // input with no value.
    let outputs: std::collections::HashSet<&str> = graph
        .output
        .iter()
        .chain(&graph.input)
        .map(|o| o.name.as_str())
        .collect();
    let unused: std::collections::HashSet<String> = graph
        .initializer
        .iter()
        .filter(|t| !read.contains(t.name.as_str()) && !outputs.contains(t.name.as_str()))
        .map(|t| t.name.clone())
        .collect();
    graph.initializer.retain(|t| !unused.contains(&t.name));
    graph.initializer.extend(new_initializers);
    count
}

/// Folds every constant `BatchNormalization` that follows a `Conv` with f32 initializer weights
/// (and is the conv's only reader) into the conv's weights and bias. Returns how many.
///
/// tract folds them itself, but only for ordinary convolutions (`group == 1`): after a depthwise
/// one (13 in SFace) the normalisation stayed a separate pass over the activations. Folding
/// changes only the order of the same f32 operations (`w * s` once, instead of `(w x) * s`).
pub fn fold_conv_batch_norm(graph: &mut GraphProto) -> usize {
    let mut folded = Vec::new();
    for bn_at in 0..graph.node.len() {
        let bn = &graph.node[bn_at];
        if bn.op_type != "BatchNormalization" || bn.input.len() != 5 || bn.output.len() != 1 {
            continue;
        }
        let Some(conv_at) = graph
            .node
            .iter()
            .position(|n| n.output.first() == bn.input.first())
        else {
            continue;
        };
        let conv = &graph.node[conv_at];
        let conv_out = &bn.input[0];
        if conv.op_type != "Conv"
            || conv.output.len() != 1
            || readers(graph, conv_out) != 1
            || graph.output.iter().any(|o| &o.name == conv_out)
        {
            continue;
        }
        let init_at = |name: &str| graph.initializer.iter().position(|t| t.name == name);
        let Some(w_at) = conv.input.get(1).and_then(|n| init_at(n)) else {
            continue;
        };
        let w = &graph.initializer[w_at];
        let Some(weights) = values(w).filter(|_| w.data_type == FLOAT) else {
            continue;
        };
        let Some(&out_channels) = w.dims.first() else {
            continue;
        };
        let Ok(channels) = usize::try_from(out_channels) else {
            continue;
        };
        if channels == 0 || weights.len() % channels != 0 {
            continue;
        }
        let params: Option<Vec<Vec<f32>>> = bn.input[1..]
            .iter()
            .map(|i| init_at(i).and_then(|k| values(&graph.initializer[k])))
            .collect();
        let Some(params) = params.filter(|p| p.iter().all(|v| v.len() == channels)) else {
            continue;
        };
        // A bias the conv already has must be a constant too; other readers of the weights or the
        // bias must not see the folded values.
        let bias = match conv.input.get(2).filter(|b| !b.is_empty()) {
            Some(name) => match init_at(name).and_then(|k| values(&graph.initializer[k])) {
                Some(b) if b.len() == channels => b,
                _ => continue,
            },
            None => vec![0.0; channels],
        };
        let shared = |name: &str| readers(graph, name) > 1;
        if shared(&conv.input[1])
            || conv
                .input
                .get(2)
                .is_some_and(|b| !b.is_empty() && shared(b))
        {
            continue;
        }
        let eps = attr_f(bn, "epsilon", 1e-5);
        let (gamma, beta, mean, var) = (&params[0], &params[1], &params[2], &params[3]);
        let scale: Vec<f32> = (0..channels)
            .map(|c| gamma[c] / (var[c] + eps).sqrt())
            .collect();
        let per = weights.len() / channels;
        let new_w: Vec<f32> = weights
            .iter()
            .enumerate()
            .map(|(i, &v)| v * scale[i / per])
            .collect();
        let new_b: Vec<f32> = (0..channels)
            .map(|c| (bias[c] - mean[c]) * scale[c] + beta[c])
            .collect();
        folded.push((bn_at, conv_at, w_at, new_w, new_b));
    }
    let count = folded.len();
    let mut dropped = vec![false; graph.node.len()];
    for (bn_at, conv_at, w_at, new_w, new_b) in folded {
        graph.initializer[w_at].raw_data = new_w.iter().flat_map(|v| v.to_le_bytes()).collect();
        graph.initializer[w_at].float_data.clear();
        let bias_name = format!("{}.folded_bias", graph.node[bn_at].output[0]);
        graph.initializer.push(TensorProto {
            name: bias_name.clone(),
            dims: vec![new_b.len() as i64],
            data_type: FLOAT,
            raw_data: new_b.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..TensorProto::default()
        });
        let out = graph.node[bn_at].output[0].clone();
        let conv = &mut graph.node[conv_at];
        conv.input.truncate(2);
        conv.input.push(bias_name);
        conv.output[0] = out;
        dropped[bn_at] = true;
    }
    let mut i = 0;
    graph.node.retain(|_| {
        i += 1;
        !dropped[i - 1]
    });
    count
}

/// A final fully connected layer kept in int8 and run outside tract: `y = scale * (W x) + bias`
/// per output row.
///
/// In SFace that layer holds two thirds of the weights (128 x 50 176). Given to tract it becomes
/// 26 MB of f32 weights, plus a packed copy, and a matrix-vector product that streams all of it
/// from memory for every face; kept as int8 it is 6.4 MB, read once per face.
#[derive(Debug, Clone)]
pub struct DenseHead {
    pub rows: usize,
    pub cols: usize,
    /// Row-major, `rows * cols`.
    pub weights: Vec<i8>,
    pub scale: Vec<f32>,
    pub bias: Vec<f32>,
}

impl DenseHead {
    /// `features` (one face) to the layer's output.
    pub fn apply(&self, features: &[f32]) -> Vec<f32> {
        // The binary targets baseline x86_64 (SSE2); with AVX2 the int8-to-f32 widening and the
        // products run 8 wide, which measured 3x faster on SFace's 6.4 M weights.
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has just been seen to support AVX2.
            return unsafe { self.apply_avx2(features) };
        }
        self.apply_portable(features)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn apply_avx2(&self, features: &[f32]) -> Vec<f32> {
        self.apply_portable(features)
    }

    // No closures in here: a closure does not take on the target features of the function
    // it is written in, so the AVX2 copy of this body would call an SSE2 inner loop.
    #[inline(always)]
    fn apply_portable(&self, features: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.rows);
        for (row, (s, b)) in self
            .weights
            .chunks_exact(self.cols)
            .zip(self.scale.iter().zip(&self.bias))
        {
            out.push(s * dot_i8(row, features) + b);
        }
        out
    }
}

/// Dot product of int8 weights with f32 values, with 16 partial sums so that it vectorises (two
/// AVX registers: two independent chains of additions).
#[inline(always)]
fn dot_i8(w: &[i8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let n = w.len().min(x.len()) / 16 * 16;
    for (a, b) in w[..n].chunks_exact(16).zip(x[..n].chunks_exact(16)) {
        for k in 0..16 {
            acc[k] += a[k] as f32 * b[k];
        }
    }
    let mut tail = 0.0;
    for (&a, b) in w[n..].iter().zip(&x[n..]) {
        tail += a as f32 * b;
    }
    acc.iter().sum::<f32>() + tail
}

/// How many nodes of the graph read the value `name`.
fn readers(graph: &GraphProto, name: &str) -> usize {
    graph
        .node
        .iter()
        .filter(|n| n.input.iter().any(|i| i == name))
        .count()
}

fn attr_f(node: &tract_onnx::pb::NodeProto, name: &str, default: f32) -> f32 {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.f)
}

fn attr_i(node: &tract_onnx::pb::NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.i)
}

/// Finds the pattern `Gemm(x, DequantizeLinear(int8 W, per-row or single scale, zero 0), bias)`,
/// optionally followed by a constant `BatchNormalization`, that ends the graph; removes it (the
/// graph then outputs `x`) and returns it as a [`DenseHead`]. Must run before
/// [`fold_constant_dequantize`]. Any other shape of model is left alone.
pub fn split_dense_head(model: &mut ModelProto) -> Option<DenseHead> {
    let graph = model.graph.as_mut()?;
    if graph.output.len() != 1 {
        return None;
    }
    let output = graph.output[0].name.clone();
    let producer = |name: &str| {
        graph
            .node
            .iter()
            .position(|n| n.output.iter().any(|o| o == name))
    };
    let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
    let last = producer(&output)?;
    let (gemm_at, bn_at) = if graph.node[last].op_type == "BatchNormalization" {
        (producer(graph.node[last].input.first()?)?, Some(last))
    } else {
        (last, None)
    };
    let gemm = &graph.node[gemm_at];
    if gemm.op_type != "Gemm"
        || gemm.input.len() != 3
        || attr_i(gemm, "transA", 0) != 0
        || attr_i(gemm, "transB", 0) != 1
        || attr_f(gemm, "alpha", 1.0) != 1.0
        || attr_f(gemm, "beta", 1.0) != 1.0
    {
        return None;
    }
    // Nothing else may read the Gemm's output or its weights.
    if readers(graph, gemm.output.first()?) != bn_at.map_or(0, |_| 1)
        || readers(graph, &gemm.input[1]) != 1
    {
        return None;
    }
    let dq_at = producer(&gemm.input[1])?;
    let dq = &graph.node[dq_at];
    if dq.op_type != "DequantizeLinear" || attr_i(dq, "block_size", 0) != 0 {
        return None;
    }
    let q = init(dq.input.first()?)?;
    if q.data_type != INT8 || q.raw_data.is_empty() || q.dims.len() != 2 {
        return None;
    }
    let (rows, cols) = (
        usize::try_from(q.dims[0]).ok()?,
        usize::try_from(q.dims[1]).ok()?,
    );
    // Before anything is sized by `rows`: the file's dimensions must match its data.
    if rows.checked_mul(cols)? != q.raw_data.len() {
        return None;
    }
    let scales = values(init(dq.input.get(1)?)?)?;
    if let Some(zero) = dq.input.get(2) {
        if values(init(zero)?)?.iter().any(|&z| z != 0.0) {
            return None;
        }
    }
    let scale: Vec<f32> = match scales.len() {
        1 => vec![scales[0]; rows],
        n if n == rows && attr_i(dq, "axis", 1) == 0 => scales,
        _ => return None,
    };
    // The bias may itself be behind a constant DequantizeLinear.
    let bias_name = gemm.input[2].clone();
    let bias: Vec<f32> = match init(&bias_name) {
        Some(t) => values(t)?,
        None => {
            let b = &graph.node[producer(&bias_name)?];
            if b.op_type != "DequantizeLinear"
                || b.input.len() > 2 && values(init(&b.input[2])?)?.iter().any(|&z| z != 0.0)
            {
                return None;
            }
            let (bq, bs) = (
                values(init(b.input.first()?)?)?,
                values(init(b.input.get(1)?)?)?,
            );
            if bs.len() != 1 && bs.len() != bq.len() {
                return None;
            }
            bq.iter()
                .enumerate()
                .map(|(i, v)| v * bs[if bs.len() == 1 { 0 } else { i }])
                .collect()
        }
    };
    if bias.len() != rows || q.raw_data.len() != rows * cols {
        return None;
    }
    let mut head = DenseHead {
        rows,
        cols,
        weights: q.raw_data.iter().map(|&b| b as i8).collect(),
        scale,
        bias,
    };
    if let Some(bn) = bn_at {
        let n = &graph.node[bn];
        let p: Vec<Vec<f32>> = n
            .input
            .get(1..)?
            .iter()
            .map(|i| init(i).and_then(values))
            .collect::<Option<_>>()?;
        if p.len() != 4 || p.iter().any(|v| v.len() != rows) {
            return None;
        }
        let eps = attr_f(n, "epsilon", 1e-5);
        let (gamma, beta, mean, var) = (&p[0], &p[1], &p[2], &p[3]);
        for (r, (scale, bias)) in head.scale.iter_mut().zip(&mut head.bias).enumerate() {
            let g = gamma[r] / (var[r] + eps).sqrt();
            *scale *= g;
            *bias = (*bias - mean[r]) * g + beta[r];
        }
    }
    let features = gemm.input[0].clone();
    let weight_name = dq.input[0].clone();
    let mut drop_nodes = vec![gemm_at, dq_at];
    drop_nodes.extend(bn_at);
    let mut i = 0;
    graph.node.retain(|_| {
        i += 1;
        !drop_nodes.contains(&(i - 1))
    });
    graph.initializer.retain(|t| t.name != weight_name);
    let elem_type = graph.output[0].r#type.clone();
    graph.output[0] = tract_onnx::pb::ValueInfoProto {
        name: features,
        r#type: elem_type.map(|t| tract_onnx::pb::TypeProto {
            value: match t.value {
                Some(tract_onnx::pb::type_proto::Value::TensorType(tt)) => {
                    Some(tract_onnx::pb::type_proto::Value::TensorType(
                        tract_onnx::pb::type_proto::Tensor {
                            elem_type: tt.elem_type,
                            shape: None,
                        },
                    ))
                }
                other => other,
            },
            ..t
        }),
        doc_string: String::new(),
    };
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(proto: &ModelProto, op: &str) -> usize {
        proto
            .graph
            .as_ref()
            .map_or(0, |g| g.node.iter().filter(|n| n.op_type == op).count())
    }

    #[test]
    fn the_shipped_model_loses_every_batch_norm_after_a_conv() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/sface_int8w.onnx");
        let bytes = std::fs::read(path).expect("the shipped model");
        let raw = tract_onnx::onnx()
            .proto_model_for_read(&mut &bytes[..])
            .expect("an ONNX model");
        let (proto, head) = read_and_rewrite(&bytes, true).expect("rewritten");
        assert!(head.is_some(), "the int8 dense head is split off");
        assert_eq!(count(&raw, "Conv"), count(&proto, "Conv"));
        assert_eq!(count(&raw, "DequantizeLinear"), 28);
        assert_eq!(count(&proto, "DequantizeLinear"), 0);
        // 27 follow a conv; of the other two, the head took one and one stays before the dropout.
        assert_eq!(count(&raw, "BatchNormalization"), 29);
        assert_eq!(count(&proto, "BatchNormalization"), 1);
        let graph = proto.graph.as_ref().expect("a graph");
        assert!(graph
            .node
            .iter()
            .filter(|n| n.op_type == "Conv")
            .all(|n| n.input.len() == 3));
    }
}
