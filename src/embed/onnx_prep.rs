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
const INT64: i32 = 7;
const UINT4: i32 = 21;
const INT4: i32 = 22;

fn values(t: &TensorProto) -> Option<Vec<f32>> {
    match t.data_type {
        INT4 | UINT4 => Some(nibbles(t)?.into_iter().map(f32::from).collect()),
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
/// model ends in one), then constant `DequantizeLinear` (and the `Reshape` of their results)
/// folded. Errors describe what is wrong with the bytes; the rewrites leave any model they do not
/// recognise alone.
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
    fold_constant_dequantize(&mut proto)?;
    if let Some(graph) = proto.graph.as_mut() {
        fold_conv_batch_norm(graph);
    }
    Ok((proto, head))
}

/// Folds every `DequantizeLinear` whose inputs are all constants into an f32 initializer:
/// per-tensor, per-axis and blocked (opset 21 `block_size`, as in OpenCV Zoo's `*_int8bq.onnx`,
/// which tract 0.23 refuses), with zero points of either sign. A `Reshape` of a value folded so
/// far by a constant shape is folded too (the block-quantised files de-quantise 2-D weights and
/// reshape them for their convolutions). Graph inputs that nothing reads and that have no value
/// (the int8bq files still list their original weights) are dropped, as tract would otherwise
/// expect them as inputs of the network.
///
/// Returns how many nodes were folded, or an error naming a blocked `DequantizeLinear` whose
/// dimensions do not fit together (tract cannot run such a node either).
pub fn fold_constant_dequantize(model: &mut ModelProto) -> Result<usize, String> {
    let Some(graph) = model.graph.as_mut() else {
        return Ok(0);
    };
    fold_graph(graph)
}

fn fold_graph(graph: &mut GraphProto) -> Result<usize, String> {
    let by_name: HashMap<String, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.clone(), i))
        .collect();
    let mut reads: HashMap<&str, usize> = HashMap::new();
    for name in graph.node.iter().flat_map(|n| &n.input) {
        *reads.entry(name.as_str()).or_default() += 1;
    }
    // Values the graph shows outside its nodes.
    let listed: std::collections::HashSet<&str> = graph
        .output
        .iter()
        .chain(&graph.input)
        .map(|o| o.name.as_str())
        .collect();
    // Values folded so far, in node order: later nodes read them like initializers.
    let mut new_initializers: Vec<TensorProto> = Vec::new();
    let mut folded_at: HashMap<String, usize> = HashMap::new();
    let mut folded = vec![false; graph.node.len()];
    for (n, node) in graph.node.iter().enumerate() {
        if node.output.len() != 1
            || !matches!(node.op_type.as_str(), "DequantizeLinear" | "Reshape")
        {
            continue;
        }
        let output = &node.output[0];
        // A name given twice (hostile or broken file) is left to tract.
        if output.is_empty() || by_name.contains_key(output) || folded_at.contains_key(output) {
            continue;
        }
        let constant = |i: usize| -> Option<&TensorProto> {
            let name = node.input.get(i).filter(|name| !name.is_empty())?;
            match folded_at.get(name) {
                Some(&k) => Some(&new_initializers[k]),
                None => by_name.get(name).map(|&k| &graph.initializer[k]),
            }
        };
        let tensor = if node.op_type == "DequantizeLinear" {
            dequantize(node, constant)?
        } else {
            // Only what was just folded: tract folds a Reshape of a file's own f32 constants.
            let Some(&from) = node.input.first().and_then(|name| folded_at.get(name)) else {
                continue;
            };
            let Some(dims) = reshaped_dims(node, &new_initializers[from], constant(1)) else {
                continue;
            };
            let source = &mut new_initializers[from];
            // The de-quantised weights are read only here: moved, not copied (the int8bq SFace
            // would otherwise hold its 38 MB of f32 weights twice).
            let raw_data = if reads.get(node.input[0].as_str()) == Some(&1)
                && !listed.contains(node.input[0].as_str())
            {
                std::mem::take(&mut source.raw_data)
            } else {
                source.raw_data.clone()
            };
            Some(TensorProto {
                dims,
                data_type: FLOAT,
                raw_data,
                ..TensorProto::default()
            })
        };
        if let Some(mut tensor) = tensor {
            tensor.name = output.clone();
            folded_at.insert(output.clone(), new_initializers.len());
            new_initializers.push(tensor);
            folded[n] = true;
        }
    }
    let count = folded.iter().filter(|&&f| f).count();
    let mut i = 0;
    graph.node.retain(|_| {
        i += 1;
        !folded[i - 1]
    });
    // Initializers nothing reads any more (the int8 originals, and values folded again into a
    // later node) would be decoded by tract all the same, a second copy of the weights while the
    // plan is built.
    let read: std::collections::HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    // Older files also list initializers as graph inputs: those stay, or tract would see an
    // input with no value.
    let unused =
        |t: &TensorProto| !read.contains(t.name.as_str()) && !listed.contains(t.name.as_str());
    graph.initializer.retain(|t| !unused(t));
    new_initializers.retain(|t| !unused(t));
    graph.initializer.extend(new_initializers);
    // Inputs with no value that nothing reads: the int8bq files list each original f32 weight as
    // one, which tract would take as further inputs of the network.
    let valued: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let outputs: std::collections::HashSet<&str> =
        graph.output.iter().map(|o| o.name.as_str()).collect();
    let stale: std::collections::HashSet<String> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .filter(|&name| !read.contains(name) && !valued.contains(name) && !outputs.contains(name))
        .map(str::to_string)
        .collect();
    if stale.len() < graph.input.len() {
        graph.input.retain(|i| !stale.contains(&i.name));
    }
    Ok(count)
}

fn f32_tensor(name: String, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    TensorProto {
        name,
        dims,
        data_type: FLOAT,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..TensorProto::default()
    }
}

/// The dimensions of a tensor from the file, when none is negative.
fn dims_of(t: &TensorProto) -> Option<Vec<usize>> {
    t.dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

/// The values of a 4-bit tensor (ONNX INT4 or UINT4, opset 21: two to a byte, the first in the
/// low nibble), or `None` unless its raw data holds exactly the elements its dimensions count.
fn nibbles(t: &TensorProto) -> Option<Vec<i8>> {
    let count = element_count(&dims_of(t)?)?;
    if t.raw_data.len() != count.div_ceil(2) {
        return None;
    }
    let signed = t.data_type == INT4;
    Some(
        (0..count)
            .map(|i| {
                let byte = t.raw_data[i / 2];
                let nibble = if i % 2 == 0 { byte & 0x0f } else { byte >> 4 };
                if signed {
                    ((nibble << 4) as i8) >> 4
                } else {
                    nibble as i8
                }
            })
            .collect(),
    )
}

/// The number of elements of `dims`, unless it overflows.
fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// The f32 result of a `DequantizeLinear` whose inputs are constants, or `None` when it is not
/// one this can fold (left to tract). Blocked nodes whose dimensions do not fit are an error.
fn dequantize<'a>(
    node: &tract_onnx::pb::NodeProto,
    constant: impl Fn(usize) -> Option<&'a TensorProto>,
) -> Result<Option<TensorProto>, String> {
    if node.input.len() < 2 {
        return Ok(None);
    }
    let (Some(q), Some(scale)) = (constant(0), constant(1)) else {
        return Ok(None);
    };
    let zero = constant(2);
    if node.input.get(2).is_some_and(|z| !z.is_empty()) && zero.is_none() {
        return Ok(None);
    }
    let (Some(qv), Some(sv)) = (values(q), values(scale)) else {
        return Ok(None);
    };
    let zv = match zero {
        Some(z) => match values(z) {
            Some(zv) => zv,
            None => return Ok(None),
        },
        None => vec![0.0; sv.len()],
    };
    let axis_attr = attr_i(node, "axis", 1);
    let block = attr_i(node, "block_size", 0);
    // Dimensions come from the file: negative or overflowing ones, or ones that disagree with
    // the data, leave the node to tract's own checks.
    let Some(dims) = dims_of(q) else {
        return Ok(None);
    };
    if element_count(&dims) != Some(qv.len()) || zv.len() != sv.len() {
        return Ok(None);
    }
    let rank = dims.len() as i64;
    let axis = if axis_attr < 0 {
        axis_attr + rank
    } else {
        axis_attr
    };
    let axis = usize::try_from(axis).ok().filter(|&a| a < dims.len());
    let out: Vec<f32> = if block != 0 {
        let problem = |what: String| {
            format!(
                "DequantizeLinear '{}' (block_size {block}): {what}",
                crate::support::terminal::escape(&node.name)
            )
        };
        let block = usize::try_from(block).map_err(|_| problem("a negative block size".into()))?;
        let axis = axis.ok_or_else(|| {
            problem(format!(
                "axis {axis_attr} is outside the input's {} dimensions",
                dims.len()
            ))
        })?;
        let scale_dims =
            dims_of(scale).ok_or_else(|| problem("the scale has a negative dimension".into()))?;
        let fits = scale_dims.len() == dims.len()
            && scale_dims
                .iter()
                .zip(&dims)
                .enumerate()
                .all(|(d, (&s, &x))| {
                    if d == axis {
                        s == x.div_ceil(block)
                    } else {
                        s == x
                    }
                });
        if !fits {
            return Err(problem(format!(
                "scale dimensions {:?} do not block input dimensions {:?} along axis {axis}",
                scale.dims, q.dims
            )));
        }
        if element_count(&scale_dims) != Some(sv.len()) {
            return Err(problem(format!(
                "the scale holds {} values, its dimensions {:?} say otherwise",
                sv.len(),
                scale.dims
            )));
        }
        if zero.is_some_and(|z| z.dims != scale.dims) {
            return Err(problem(
                "the zero point's dimensions differ from the scale's".into(),
            ));
        }
        // Sizes below are bounded by the input's element count, checked against its data.
        let inner = element_count(&dims[axis + 1..]).unwrap_or(0);
        let outer = element_count(&dims[..axis]).unwrap_or(0);
        let blocks = scale_dims[axis];
        let mut out = Vec::with_capacity(qv.len());
        // An empty input is done (its other dimensions could be anything).
        if !qv.is_empty() {
            for o in 0..outer {
                for a in 0..dims[axis] {
                    let at = (o * blocks + a / block) * inner;
                    let (s, z) = (&sv[at..at + inner], &zv[at..at + inner]);
                    let from = out.len();
                    for ((&v, &s), &z) in qv[from..from + inner].iter().zip(s).zip(z) {
                        out.push((v - z) * s);
                    }
                }
            }
        }
        out
    } else if sv.len() == 1 {
        qv.iter().map(|&v| (v - zv[0]) * sv[0]).collect()
    } else {
        let Some(axis) = axis.filter(|&a| dims[a] == sv.len()) else {
            return Ok(None);
        };
        let Some(inner) = element_count(&dims[axis + 1..]).filter(|&i| i > 0) else {
            return Ok(None);
        };
        qv.iter()
            .enumerate()
            .map(|(i, &v)| {
                let c = (i / inner) % dims[axis];
                (v - zv[c]) * sv[c]
            })
            .collect()
    };
    // The ONNX operator computes (q - zero) * scale in f32: the same values as here.
    Ok(Some(f32_tensor(String::new(), q.dims.clone(), &out)))
}

/// An INT64 tensor's values (a `Reshape`'s shape).
fn int64_values(t: &TensorProto) -> Option<Vec<i64>> {
    match t.data_type {
        INT64 if !t.raw_data.is_empty() => {
            if !t.raw_data.len().is_multiple_of(8) {
                return None;
            }
            Some(
                t.raw_data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            )
        }
        INT64 => Some(t.int64_data.clone()),
        _ => None,
    }
}

/// The output dimensions of `Reshape(data, shape)` by ONNX's rules (0 copies the input's
/// dimension unless `allowzero`, one -1 takes what is left), or `None` when the shape is not a
/// constant or does not fit the data.
fn reshaped_dims(
    node: &tract_onnx::pb::NodeProto,
    data: &TensorProto,
    shape: Option<&TensorProto>,
) -> Option<Vec<i64>> {
    let shape = shape?;
    if node.input.len() != 2 || shape.dims.len() != 1 || data.data_type != FLOAT {
        return None;
    }
    let wanted = int64_values(shape)?;
    if usize::try_from(shape.dims[0]).ok()? != wanted.len() {
        return None;
    }
    let dims = dims_of(data)?;
    let total = element_count(&dims)?;
    if data.raw_data.len() != total.checked_mul(4)? {
        return None;
    }
    let allow_zero = attr_i(node, "allowzero", 0) != 0;
    let mut out: Vec<usize> = Vec::with_capacity(wanted.len());
    let mut free = None;
    for (i, &w) in wanted.iter().enumerate() {
        match w {
            -1 if free.is_none() => {
                free = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(*dims.get(i)?),
            w => out.push(usize::try_from(w).ok()?),
        }
    }
    if allow_zero && free.is_some() && wanted.contains(&0) {
        return None;
    }
    let known = element_count(&out)?;
    if let Some(i) = free {
        if known == 0 || total % known != 0 {
            return None;
        }
        out[i] = total / known;
    }
    if element_count(&out)? != total {
        return None;
    }
    out.into_iter().map(|d| i64::try_from(d).ok()).collect()
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
        graph.initializer.push(f32_tensor(
            bias_name.clone(),
            vec![new_b.len() as i64],
            &new_b,
        ));
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
    /// Row-major, `rows * cols`: int8 values, or 4-bit ones widened to int8.
    pub weights: Vec<i8>,
    /// Inputs that share one scale within a row (`cols`: one scale a row).
    pub block: usize,
    /// `rows * cols.div_ceil(block)`, row-major.
    pub scale: Vec<f32>,
    /// The zero point of each scale, or empty when all are 0: a weight is `(q - zero) * scale`.
    pub zero: Vec<f32>,
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
        let per_row = self.cols.div_ceil(self.block);
        // With zero points, (q - z) s . x = s (q . x) - s z (sum of x): the inputs' block sums
        // are shared by every row.
        let mut block_sums = Vec::new();
        if !self.zero.is_empty() {
            for chunk in features.chunks(self.block) {
                block_sums.push(chunk.iter().sum::<f32>());
            }
        }
        for (r, (row, (scales, b))) in self
            .weights
            .chunks_exact(self.cols)
            .zip(self.scale.chunks_exact(per_row).zip(&self.bias))
            .enumerate()
        {
            let mut v = dot_blocks(row, features, scales, self.block) + b;
            if let Some(zeros) = self.zero.get(r * per_row..(r + 1) * per_row) {
                for ((s, z), x) in scales.iter().zip(zeros).zip(&block_sums) {
                    v -= s * z * x;
                }
            }
            out.push(v);
        }
        out
    }
}

/// The sum over blocks of `scale * (w . x)` for int8 weights whose every `block` inputs share a
/// scale. 16 partial sums vectorise the products (two AVX registers, two independent chains), and
/// each block's scale is applied to the 16 lanes rather than after a horizontal sum, so blocks of
/// 64 cost little more than one scale a row.
#[inline(always)]
fn dot_blocks(w: &[i8], x: &[f32], scales: &[f32], block: usize) -> f32 {
    let mut acc = [0f32; 16];
    let mut tail = 0.0;
    for ((wb, xb), &s) in w.chunks(block).zip(x.chunks(block)).zip(scales) {
        let mut part = [0f32; 16];
        let n = wb.len().min(xb.len()) / 16 * 16;
        for (a, b) in wb[..n].chunks_exact(16).zip(xb[..n].chunks_exact(16)) {
            for k in 0..16 {
                part[k] += a[k] as f32 * b[k];
            }
        }
        for k in 0..16 {
            acc[k] += s * part[k];
        }
        let mut rest = 0.0;
        for (&a, b) in wb[n..].iter().zip(&xb[n..]) {
            rest += a as f32 * b;
        }
        tail += s * rest;
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

/// Finds the pattern `Gemm(x, DequantizeLinear(W, scale, zero 0), bias)`, with int8 W under one
/// scale or one a row, or int8 or 4-bit W under one scale a block of inputs (`block_size`),
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
    if dq.op_type != "DequantizeLinear" {
        return None;
    }
    let q = init(dq.input.first()?)?;
    if q.raw_data.is_empty() || q.dims.len() != 2 {
        return None;
    }
    let (rows, cols) = (
        usize::try_from(q.dims[0]).ok()?,
        usize::try_from(q.dims[1]).ok()?,
    );
    // Before anything is sized by `rows`: the file's dimensions must match its data.
    let weights: Vec<i8> = match q.data_type {
        INT8 if rows.checked_mul(cols)? == q.raw_data.len() => {
            q.raw_data.iter().map(|&b| b as i8).collect()
        }
        INT4 => nibbles(q)?,
        _ => return None,
    };
    let scale_init = init(dq.input.get(1)?)?;
    let scales = values(scale_init)?;
    // Zero points, one for each scale (OpenCV Zoo's int8bq files have non-zero ones).
    let zeros = match dq.input.get(2).filter(|z| !z.is_empty()) {
        Some(z) => values(init(z)?)?,
        None => vec![0.0; scales.len()],
    };
    if zeros.len() != scales.len() {
        return None;
    }
    // One scale, one a row (axis 0), or one a block of `block` inputs of a row (axis 1, opset
    // 21's block_size, as 4-bit weights need).
    let block_size = attr_i(dq, "block_size", 0);
    let (block, scale, zero): (usize, Vec<f32>, Vec<f32>) = match (scales.len(), block_size) {
        (1, 0) => (cols, vec![scales[0]; rows], vec![zeros[0]; rows]),
        (n, 0) if n == rows && attr_i(dq, "axis", 1) == 0 => (cols, scales, zeros),
        (n, b) if b > 0 && matches!(attr_i(dq, "axis", 1), 1 | -1) => {
            let block = usize::try_from(b).ok()?;
            let per_row = cols.div_ceil(block);
            if n != rows.checked_mul(per_row)? || scale_init.dims != [rows as i64, per_row as i64] {
                return None;
            }
            (block, scales, zeros)
        }
        _ => return None,
    };
    let zero = if zero.iter().all(|&z| z == 0.0) {
        Vec::new()
    } else {
        zero
    };
    // The bias may itself be behind a constant DequantizeLinear.
    let bias_name = gemm.input[2].clone();
    let bias: Vec<f32> = match init(&bias_name) {
        Some(t) => values(t)?,
        None => {
            let b = &graph.node[producer(&bias_name)?];
            if b.op_type != "DequantizeLinear" {
                return None;
            }
            // The same decoding as every other folded constant; a bias it cannot decode (or
            // finds malformed) leaves the head in the graph, where folding names the problem.
            let constant = |i: usize| init(b.input.get(i).filter(|n| !n.is_empty())?);
            values(&dequantize(b, constant).ok()??)?
        }
    };
    if bias.len() != rows || weights.len() != rows * cols || block == 0 || rows * cols == 0 {
        return None;
    }
    let mut head = DenseHead {
        rows,
        cols,
        weights,
        block,
        scale,
        zero,
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
        let per_row = head.scale.len() / rows;
        for (r, (scales, bias)) in head
            .scale
            .chunks_exact_mut(per_row)
            .zip(&mut head.bias)
            .enumerate()
        {
            let g = gamma[r] / (var[r] + eps).sqrt();
            scales.iter_mut().for_each(|s| *s *= g);
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

    use tract_onnx::pb::{AttributeProto, NodeProto, ValueInfoProto};

    fn raw(name: &str, data_type: i32, dims: &[i64], raw_data: Vec<u8>) -> TensorProto {
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type,
            raw_data,
            ..TensorProto::default()
        }
    }

    fn i8s(name: &str, dims: &[i64], v: &[i8]) -> TensorProto {
        raw(name, INT8, dims, v.iter().map(|&b| b as u8).collect())
    }

    fn u8s(name: &str, dims: &[i64], v: &[u8]) -> TensorProto {
        raw(name, UINT8, dims, v.to_vec())
    }

    fn f32s(name: &str, dims: &[i64], v: &[f32]) -> TensorProto {
        f32_tensor(name.into(), dims.to_vec(), v)
    }

    fn i64s(name: &str, v: &[i64]) -> TensorProto {
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        raw(name, INT64, &[v.len() as i64], bytes)
    }

    fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, i64)]) -> NodeProto {
        NodeProto {
            op_type: op.into(),
            name: format!("{op}_{output}"),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            attribute: attrs
                .iter()
                .map(|&(name, i)| AttributeProto {
                    name: name.into(),
                    i,
                    r#type: 2, // INT
                    ..AttributeProto::default()
                })
                .collect(),
            ..NodeProto::default()
        }
    }

    fn value(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            ..ValueInfoProto::default()
        }
    }

    /// A graph whose outputs read what `nodes` make (so folded values stay as initializers).
    fn model(nodes: Vec<NodeProto>, initializer: Vec<TensorProto>, outputs: &[&str]) -> ModelProto {
        let mut node = vec![self::node("Identity", &["x"], "x1", &[])];
        node.extend(nodes);
        for (k, o) in outputs.iter().enumerate() {
            node.push(self::node("Identity", &[o], &format!("y{k}"), &[]));
        }
        ModelProto {
            graph: Some(GraphProto {
                node,
                initializer,
                input: vec![value("x"), value("w_original")],
                output: (0..outputs.len())
                    .map(|k| value(&format!("y{k}")))
                    .collect(),
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    fn initializer<'a>(m: &'a ModelProto, name: &str) -> Option<&'a TensorProto> {
        m.graph
            .as_ref()?
            .initializer
            .iter()
            .find(|t| t.name == name)
    }

    /// Two to a byte, the first in the low nibble.
    fn i4s(name: &str, dims: &[i64], v: &[i8]) -> TensorProto {
        let packed = v
            .chunks(2)
            .map(|p| (p[0] as u8 & 0x0f) | (p.get(1).map_or(0, |&h| h as u8) << 4))
            .collect();
        raw(name, INT4, dims, packed)
    }

    /// `Gemm(x, DequantizeLinear(q, s; axis 1, block 2), b)`, then a BatchNormalization when
    /// `norm` gives one (gamma, beta, mean, var).
    fn head_model(q: TensorProto, s: TensorProto, norm: Option<[Vec<f32>; 4]>) -> ModelProto {
        let mut nodes = vec![
            node(
                "DequantizeLinear",
                &["q", "s"],
                "w",
                &[("axis", 1), ("block_size", 2)],
            ),
            node("Gemm", &["x", "w", "b"], "g", &[("transB", 1)]),
        ];
        let mut initializer = vec![q, s, f32s("b", &[2], &[0.5, -1.0])];
        let output = match norm {
            Some(p) => {
                nodes.push(node(
                    "BatchNormalization",
                    &["g", "gamma", "beta", "mean", "var"],
                    "y",
                    &[],
                ));
                for (name, v) in ["gamma", "beta", "mean", "var"].iter().zip(p) {
                    initializer.push(f32s(name, &[2], &v));
                }
                "y"
            }
            None => "g",
        };
        ModelProto {
            graph: Some(GraphProto {
                node: nodes,
                initializer,
                input: vec![value("x")],
                output: vec![value(output)],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn a_four_bit_blocked_dense_head_runs_as_its_dequantised_layer() {
        // [2, 5] weights in blocks of 2 (the last block short): three scales a row.
        let q = [-8i8, -1, 0, 7, 3, 5, -3, 1, -8, 2];
        let scales = [0.5f32, 0.25, 2.0, 0.125, 1.5, -0.75];
        let x = [1.0f32, -2.0, 3.0, 0.5, -1.5];
        let bias = [0.5f32, -1.0];
        let want: Vec<f32> = (0..2)
            .map(|r| {
                (0..5)
                    .map(|c| q[r * 5 + c] as f32 * scales[r * 3 + c / 2] * x[c])
                    .sum::<f32>()
                    + bias[r]
            })
            .collect();
        let four_bit = || i4s("q", &[2, 5], &q);
        let mut m = head_model(four_bit(), f32s("s", &[2, 3], &scales), None);
        let head = split_dense_head(&mut m).expect("the head is split off");
        assert_eq!((head.rows, head.cols, head.block), (2, 5, 2));
        assert_eq!(head.weights, q);
        let got = head.apply(&x);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-5, "{got:?} against {want:?}");
        }
        let got_plain = got;
        // The graph now ends at the Gemm's input.
        let graph = m.graph.as_ref().unwrap();
        assert!(graph.node.is_empty() && graph.output[0].name == "x");
        // A BatchNormalization after it folds into every block's scale and the bias.
        let norm = [
            vec![2.0, 0.5],
            vec![0.1, -0.2],
            vec![1.0, -3.0],
            vec![4.0 - 1e-5, 0.25 - 1e-5],
        ];
        let mut m = head_model(four_bit(), f32s("s", &[2, 3], &scales), Some(norm.clone()));
        let got = split_dense_head(&mut m).unwrap().apply(&x);
        for r in 0..2 {
            let g = norm[0][r] / (norm[3][r] + 1e-5).sqrt();
            let w = (want[r] - norm[2][r]) * g + norm[1][r];
            assert!((got[r] - w).abs() < 1e-4, "{got:?}");
        }
        // Zero points, one a block (the int8bq files have them): weights are (q - z) * s.
        let z = [1i8, -2, 0, 3, -1, 2];
        let mut m = head_model(four_bit(), f32s("s", &[2, 3], &scales), None);
        let graph = m.graph.as_mut().unwrap();
        graph.node[0].input.push("z".into());
        graph.initializer.push(i4s("z", &[2, 3], &z));
        let shifted = split_dense_head(&mut m).unwrap().apply(&x);
        for r in 0..2 {
            let w: f32 = (0..5)
                .map(|c| (q[r * 5 + c] - z[r * 3 + c / 2]) as f32 * scales[r * 3 + c / 2] * x[c])
                .sum::<f32>()
                + bias[r];
            assert!((shifted[r] - w).abs() < 1e-4, "{shifted:?}");
        }
        // A bias behind a blocked DequantizeLinear (as in the int8bq files): [1, -2] x 0.5.
        let mut m = head_model(four_bit(), f32s("s", &[2, 3], &scales), None);
        let graph = m.graph.as_mut().unwrap();
        graph.initializer.retain(|t| t.name != "b");
        graph.initializer.push(i8s("bq", &[2], &[1, -2]));
        graph.initializer.push(f32s("bs", &[1], &[0.5]));
        graph.node.insert(
            0,
            node(
                "DequantizeLinear",
                &["bq", "bs"],
                "b",
                &[("axis", 0), ("block_size", 2)],
            ),
        );
        assert_eq!(split_dense_head(&mut m).unwrap().apply(&x), got_plain);
        // Scales that do not block the weights, and packed data of the wrong length, leave the
        // model alone rather than guess.
        let mut m = head_model(four_bit(), f32s("s", &[2, 2], &scales[..4]), None);
        assert!(split_dense_head(&mut m).is_none());
        let mut short = four_bit();
        short.raw_data.pop();
        let mut m = head_model(short, f32s("s", &[2, 3], &scales), None);
        assert!(split_dense_head(&mut m).is_none());
        // Elsewhere in a graph, 4-bit weights fold to their f32 values like int8 ones.
        let mut m = model(
            vec![node(
                "DequantizeLinear",
                &["q", "s"],
                "w",
                &[("axis", 1), ("block_size", 2)],
            )],
            vec![four_bit(), f32s("s", &[2, 3], &scales)],
            &["w"],
        );
        assert_eq!(fold_constant_dequantize(&mut m), Ok(1));
        let folded = values(initializer(&m, "w").unwrap()).unwrap();
        let dequantised: Vec<f32> = (0..10)
            .map(|i| q[i] as f32 * scales[i / 5 * 3 + i % 5 / 2])
            .collect();
        assert_eq!(folded, dequantised);
        // Unsigned 4-bit values run 0 to 15.
        let mut u = raw("u", UINT4, &[3], vec![0xf0, 0x07]);
        assert_eq!(values(&u), Some(vec![0.0, 15.0, 7.0]));
        u.dims = vec![4];
        assert_eq!(values(&u), Some(vec![0.0, 15.0, 7.0, 0.0]));
        u.dims = vec![5];
        assert_eq!(values(&u), None);
    }

    #[test]
    fn blocked_dequantize_folds_to_the_onnx_values() {
        // int8, blocks of 2 along axis 1 of [2, 5] (the last block is short), zero points of
        // both signs; uint8, blocks of 2 along axis -2 of [3, 2]; then the first reshaped by
        // [0, -1, 1] as the int8bq files reshape their weights for a Conv.
        let mut m = model(
            vec![
                node(
                    "DequantizeLinear",
                    &["q", "s", "z"],
                    "w",
                    &[("axis", 1), ("block_size", 2)],
                ),
                node("Reshape", &["w", "shape"], "w4", &[]),
                node(
                    "DequantizeLinear",
                    &["qu", "su", "zu"],
                    "wu",
                    &[("axis", -2), ("block_size", 2)],
                ),
            ],
            vec![
                i8s("q", &[2, 5], &[-128, -1, 0, 5, 127, 3, -7, 100, -50, 1]),
                f32s("s", &[2, 3], &[0.5, 0.25, 2.0, 0.125, 1.5, -0.75]),
                i8s("z", &[2, 3], &[1, -2, 3, -4, 5, -6]),
                i64s("shape", &[0, -1, 1]),
                u8s("qu", &[3, 2], &[0, 255, 10, 20, 200, 128]),
                f32s("su", &[2, 2], &[0.5, 1.0, 2.0, 0.25]),
                u8s("zu", &[2, 2], &[128, 0, 100, 255]),
            ],
            &["w4", "wu"],
        );
        assert_eq!(fold_constant_dequantize(&mut m), Ok(3));
        let graph = m.graph.as_ref().unwrap();
        assert!(graph.node.iter().all(|n| n.op_type == "Identity"));
        assert_eq!(graph.node.len(), 3);
        let names: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            ["w4", "wu"],
            "the quantised originals and the 2-D weights go"
        );
        let inputs: Vec<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            inputs,
            ["x"],
            "an input nothing reads and with no value goes"
        );
        let w4 = initializer(&m, "w4").unwrap();
        assert_eq!(w4.dims, [2, 5, 1]);
        let expected = [
            -64.5, -1.0, 0.5, 1.75, 248.0, 0.875, -0.375, 142.5, -82.5, -5.25,
        ];
        assert_eq!(values(w4).unwrap(), expected);
        let wu = initializer(&m, "wu").unwrap();
        assert_eq!(wu.dims, [3, 2]);
        assert_eq!(
            values(wu).unwrap(),
            [-64.0, 255.0, -59.0, 20.0, 200.0, -31.75]
        );
    }

    #[test]
    fn malformed_blocks_are_errors_and_malformed_shapes_stay() {
        let q = || i8s("q", &[2, 5], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let dq = |attrs: &[(&str, i64)]| node("DequantizeLinear", &["q", "s", "z"], "w", attrs);
        let blocked = [("axis", 1), ("block_size", 2)];
        let s23 = || f32s("s", &[2, 3], &[1.0; 6]);
        let z23 = || i8s("z", &[2, 3], &[0; 6]);
        // Each should be refused with an error naming the node.
        let errors: Vec<(&str, Vec<NodeProto>, Vec<TensorProto>)> = vec![
            (
                "too few blocks",
                vec![dq(&blocked)],
                vec![
                    q(),
                    f32s("s", &[2, 2], &[1.0; 4]),
                    i8s("z", &[2, 2], &[0; 4]),
                ],
            ),
            (
                "too many blocks",
                vec![dq(&[("axis", 1), ("block_size", 1)])],
                vec![q(), s23(), z23()],
            ),
            (
                "scale of lower rank",
                vec![dq(&blocked)],
                vec![q(), f32s("s", &[6], &[1.0; 6]), i8s("z", &[6], &[0; 6])],
            ),
            (
                "other dimension differs",
                vec![dq(&blocked)],
                vec![
                    q(),
                    f32s("s", &[3, 2], &[1.0; 6]),
                    i8s("z", &[3, 2], &[0; 6]),
                ],
            ),
            (
                "zero point shaped otherwise",
                vec![dq(&blocked)],
                vec![q(), s23(), i8s("z", &[3, 2], &[0; 6])],
            ),
            (
                "scale dims disagree with its data",
                vec![dq(&blocked)],
                vec![
                    q(),
                    f32s("s", &[2, 3], &[1.0; 4]),
                    i8s("z", &[2, 3], &[0; 4]),
                ],
            ),
            (
                "negative block",
                vec![dq(&[("axis", 1), ("block_size", -2)])],
                vec![q(), s23(), z23()],
            ),
            (
                "axis out of range",
                vec![dq(&[("axis", 2), ("block_size", 2)])],
                vec![q(), s23(), z23()],
            ),
            (
                "negative axis out of range",
                vec![dq(&[("axis", -3), ("block_size", 2)])],
                vec![q(), s23(), z23()],
            ),
            (
                "negative scale dimension",
                vec![dq(&blocked)],
                vec![q(), f32s("s", &[2, -3], &[1.0; 6]), z23()],
            ),
        ];
        for (what, nodes, inits) in errors {
            let mut m = model(nodes, inits, &["w"]);
            let err = fold_constant_dequantize(&mut m).expect_err(what);
            assert!(
                err.contains("DequantizeLinear_w") && err.contains("block_size"),
                "{what}: {err}"
            );
        }
        // Dimensions that disagree with the data, overflow or are negative, and reshapes that do
        // not fit: left to tract, without a panic or an allocation sized by them.
        let huge = i64::MAX / 2;
        let untouched: Vec<(&str, Vec<NodeProto>, Vec<TensorProto>, &str)> = vec![
            (
                "input dims disagree with its data",
                vec![dq(&blocked)],
                vec![i8s("q", &[2, 6], &[0; 10]), s23(), z23()],
                "DequantizeLinear",
            ),
            (
                "input dims overflow",
                vec![dq(&blocked)],
                vec![i8s("q", &[huge, huge, 2], &[0; 10]), s23(), z23()],
                "DequantizeLinear",
            ),
            (
                "negative input dim",
                vec![dq(&blocked)],
                vec![i8s("q", &[-2, -5], &[0; 10]), s23(), z23()],
                "DequantizeLinear",
            ),
            (
                "per-axis, empty, dims after the axis overflow",
                vec![dq(&[("axis", 0)])],
                vec![
                    i8s("q", &[0, huge, huge], &[]),
                    f32s("s", &[0], &[]),
                    i8s("z", &[0], &[]),
                ],
                "DequantizeLinear",
            ),
            (
                "zero point of another length",
                vec![dq(&blocked)],
                vec![q(), s23(), i8s("z", &[2, 2], &[0; 4])],
                "DequantizeLinear",
            ),
        ];
        let reshape = |shape: &[i64], attrs: &[(&str, i64)]| {
            (
                vec![dq(&blocked), node("Reshape", &["w", "shape"], "w4", attrs)],
                vec![q(), s23(), z23(), i64s("shape", shape)],
            )
        };
        let mut cases = untouched;
        for (what, shape, attrs) in [
            ("no dimension fits", &[3, -1][..], &[][..]),
            ("two free dimensions", &[-1, -1], &[]),
            ("below -1", &[-2, -5], &[]),
            ("a zero past the input's rank", &[0, 0, 0], &[]),
            ("allowzero with -1", &[0, -1], &[("allowzero", 1)]),
            ("overflowing shape", &[huge, huge, 1], &[]),
            ("a free dimension that does not divide", &[huge, -1], &[]),
            ("too many elements", &[2, 5, 2], &[]),
        ] {
            let (nodes, inits) = reshape(shape, attrs);
            cases.push((what, nodes, inits, "Reshape"));
        }
        for (what, nodes, inits, stays) in cases {
            let out = if stays == "Reshape" { "w4" } else { "w" };
            let mut m = model(nodes, inits, &[out]);
            fold_constant_dequantize(&mut m).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(count(&m, stays), 1, "{what}: the {stays} stays");
        }
        // A shape tensor whose dims disagree with its values stays too.
        let (nodes, mut inits) = reshape(&[2, 5], &[]);
        inits[3].dims = vec![3];
        let mut m = model(nodes, inits, &["w4"]);
        assert_eq!(fold_constant_dequantize(&mut m), Ok(1));
        assert_eq!(count(&m, "Reshape"), 1);
        // An empty input with a huge dimension folds at once into an empty tensor.
        let empty = i8s("q", &[1 << 40, 0, 3], &[]);
        let s = f32s("s", &[1 << 40, 0, 2], &[]);
        let z = i8s("z", &[1 << 40, 0, 2], &[]);
        let mut m = model(
            vec![dq(&[("axis", 2), ("block_size", 2)])],
            vec![empty, s, z],
            &["w"],
        );
        assert_eq!(fold_constant_dequantize(&mut m), Ok(1));
    }

    /// OpenCV Zoo's block-quantised SFace folds to exactly the weights of its fp32 copy
    /// (`dequant_bq.py` in ../shared, which computes `(q - zero) * scale` in f32 with numpy).
    #[test]
    fn the_block_quantised_sface_folds_to_its_fp32_weights() {
        let shared = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/anchors/");
        let read = |file: &str| {
            let bytes = std::fs::read(format!("{shared}{file}"))
                .unwrap_or_else(|e| panic!("{file} (../shared): {e}"));
            tract_onnx::onnx()
                .proto_model_for_read(&mut &bytes[..])
                .expect("an ONNX model")
        };
        let mut ours = read("face_recognition_sface_2021dec_int8bq.onnx");
        let reference = read("sface_2021dec_fp32_from_int8bq.onnx");
        assert_eq!(count(&ours, "DequantizeLinear"), 29);
        assert_eq!(count(&ours, "Reshape"), 27);
        assert_eq!(fold_constant_dequantize(&mut ours), Ok(29 + 27));
        let graph = ours.graph.as_ref().unwrap();
        let kinds = |g: &GraphProto| g.node.iter().map(|n| n.op_type.clone()).collect::<Vec<_>>();
        let reference_graph = reference.graph.as_ref().unwrap();
        assert_eq!(kinds(graph), kinds(reference_graph));
        let inputs: Vec<&str> = graph
            .input
            .iter()
            .map(|i| i.name.as_str())
            .filter(|&name| initializer(&ours, name).is_none())
            .collect();
        assert_eq!(inputs, ["data"]);
        for theirs in &reference_graph.initializer {
            let mine = initializer(&ours, &theirs.name)
                .unwrap_or_else(|| panic!("{} was not folded", theirs.name));
            assert_eq!(mine.dims, theirs.dims, "{}", theirs.name);
            let (a, b) = (values(mine).unwrap(), values(theirs).unwrap());
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.len() == b.len(),
                "{}: values differ",
                theirs.name
            );
        }
        assert_eq!(graph.initializer.len(), reference_graph.initializer.len());
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
