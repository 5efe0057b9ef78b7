//! Reading ONNX models with tract, and naming what this build cannot read.
//!
//! facegate links a trimmed tract-onnx (tools/tract-trimmed): it registers the 42 operators that
//! the shipped models, facegate-train's exports and common small CNNs use, so that the release
//! binary does not carry the other 141. A model using any other operator must be refused by name
//! before tract builds anything, not with tract's internal "unimplemented" error halfway through.

use std::collections::BTreeMap;

use tract_onnx::pb::ModelProto;
use tract_onnx::Onnx;

/// tract's ONNX reader as facegate uses it: shapes come from the input fact facegate sets, so the
/// file's recorded output shapes and value infos (often stale in exported files) are ignored.
pub fn reader() -> Onnx {
    tract_onnx::onnx()
        .with_ignore_output_shapes(true)
        .with_ignore_value_info(true)
}

/// The operators `reader` can build, sorted.
pub fn operators(reader: &Onnx) -> Vec<&str> {
    let mut names: Vec<&str> = reader.op_register.0.keys().map(String::as_str).collect();
    names.sort_unstable();
    names
}

/// An error naming every operator of `model` that `reader` has no builder for (with how many
/// nodes use it), and the operators it does read.
pub fn check_operators(model: &ModelProto, reader: &Onnx) -> Result<(), String> {
    let mut missing: BTreeMap<&str, usize> = BTreeMap::new();
    for node in model.graph.iter().flat_map(|g| &g.node) {
        if !reader.op_register.0.contains_key(&node.op_type) {
            *missing.entry(node.op_type.as_str()).or_default() += 1;
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = missing
        .iter()
        .map(|(op, n)| match n {
            1 => format!("{op} (1 node)"),
            n => format!("{op} ({n} nodes)"),
        })
        .collect();
    Err(format!(
        "uses ONNX operators this facegate build does not include: {}. It reads models made of \
         these operators only: {}. Export the model with those, or build facegate with the \
         operator added (tools/tract-trimmed/README.md)",
        named.join(", "),
        operators(reader).join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::pb::{GraphProto, NodeProto};

    fn model(ops: &[&str]) -> ModelProto {
        ModelProto {
            graph: Some(GraphProto {
                node: ops
                    .iter()
                    .map(|op| NodeProto {
                        op_type: op.to_string(),
                        ..NodeProto::default()
                    })
                    .collect(),
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    #[test]
    fn the_build_reads_the_operators_it_promises_and_not_the_trimmed_ones() {
        let reader = reader();
        let ops = operators(&reader);
        assert_eq!(ops.len(), 42, "{ops:?}");
        for op in [
            "Conv",
            "PRelu",
            "Gemm",
            "DequantizeLinear",
            "Resize",
            "QLinearConv",
        ] {
            assert!(ops.contains(&op), "{op}");
        }
        // Trimmed: the release binary does not carry them (tools/tract-trimmed/make.py).
        for op in [
            "Einsum",
            "LSTM",
            "Attention",
            "LayerNormalization",
            "TopK",
            "If",
        ] {
            assert!(!ops.contains(&op), "{op}");
        }
    }

    #[test]
    fn an_unknown_operator_is_named_with_its_count() {
        let reader = reader();
        assert_eq!(check_operators(&model(&["Conv", "Relu"]), &reader), Ok(()));
        let err = check_operators(&model(&["Conv", "LRN", "Einsum", "LRN"]), &reader)
            .expect_err("LRN and Einsum are not read");
        assert!(
            err.starts_with(
                "uses ONNX operators this facegate build does not include: Einsum (1 node), \
                 LRN (2 nodes). It reads models made of these operators only: Add, AveragePool,"
            ),
            "{err}"
        );
    }
}
