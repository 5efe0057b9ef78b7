//! The final int8 (or 4-bit) dense layer, split off the graph and run outside tract.

use super::*;

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
pub(super) fn dot_blocks(w: &[i8], x: &[f32], scales: &[f32], block: usize) -> f32 {
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
