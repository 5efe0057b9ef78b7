//! Folding a constant `BatchNormalization` into the `Conv` before it.

use super::*;

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
