//! Folding constant `DequantizeLinear` nodes (per tensor, per axis and blocked, int8 and 4-bit)
//! into f32 initializers at load time, with the `Reshape`s of their results.

use super::*;

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

pub(super) fn fold_graph(graph: &mut GraphProto) -> Result<usize, String> {
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

/// The f32 result of a `DequantizeLinear` whose inputs are constants, or `None` when it is not
/// one this can fold (left to tract). Blocked nodes whose dimensions do not fit are an error.
pub(super) fn dequantize<'a>(
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

/// The output dimensions of `Reshape(data, shape)` by ONNX's rules (0 copies the input's
/// dimension unless `allowzero`, one -1 takes what is left), or `None` when the shape is not a
/// constant or does not fit the data.
pub(super) fn reshaped_dims(
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
