//! Reading ONNX models with tract, and naming what this build cannot read.
//!
//! facegate links a trimmed tract-onnx (tools/tract-trimmed): it registers the 20 operators that
//! the shipped models and facegate-train's exports use, and with the `onnx-extra-ops` feature 22
//! more that common small CNNs use, so that the release binary does not carry the other 141. A
//! model using any other operator must be refused by name before tract builds anything, not with
//! tract's internal "unimplemented" error halfway through.

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
    // The names come from the file: a hostile one may be megabytes long, hold a line break or
    // a terminal escape, and a hostile file may hold millions of different ones.
    let mut named: Vec<String> = missing
        .iter()
        .take(MAX_NAMED)
        .map(|(op, n)| {
            let op = crate::support::terminal::escape(op);
            let op = match op.char_indices().nth(MAX_NAME_CHARS) {
                Some((cut, _)) => format!("{}...", &op[..cut]),
                None => op.into_owned(),
            };
            match n {
                1 => format!("{op} (1 node)"),
                n => format!("{op} ({n} nodes)"),
            }
        })
        .collect();
    if missing.len() > MAX_NAMED {
        named.push(format!("and {} more", missing.len() - MAX_NAMED));
    }
    // Which rebuild would help: the feature only where it adds one of the missing operators.
    let rebuild = if missing.keys().any(|op| EXTRA_OPERATORS.contains(op))
        && !cfg!(feature = "onnx-extra-ops")
    {
        format!(
            "build facegate with `--features onnx-extra-ops` (adds {})",
            EXTRA_OPERATORS.join(", ")
        )
    } else {
        "build facegate with the operator added (tools/tract-trimmed/README.md)".to_string()
    };
    Err(format!(
        "uses ONNX operators this facegate build does not include: {}. It reads models made of \
         these operators only: {}. Export the model with those, or {rebuild}",
        named.join(", "),
        operators(reader).join(", ")
    ))
}

/// The operators the `onnx-extra-ops` feature registers (tools/tract-trimmed/make.py's EXTRA).
const EXTRA_OPERATORS: [&str; 22] = [
    "AveragePool",
    "Cast",
    "Clip",
    "Concat",
    "Div",
    "Gather",
    "GlobalAveragePool",
    "HardSigmoid",
    "LeakyRelu",
    "MatMul",
    "Pad",
    "Pow",
    "ReduceL2",
    "ReduceMean",
    "Shape",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Squeeze",
    "Tanh",
    "Unsqueeze",
];

/// How many missing operators an error names, and how much of each name it shows.
const MAX_NAMED: usize = 8;
const MAX_NAME_CHARS: usize = 64;

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
        let extra = cfg!(feature = "onnx-extra-ops");
        assert_eq!(ops.len(), if extra { 42 } else { 20 }, "{ops:?}");
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
        for op in EXTRA_OPERATORS {
            assert_eq!(ops.contains(&op), extra, "{op}");
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

    /// The quoted names of `set` in tools/tract-trimmed/make.py, which generates the trimmed
    /// registry. `EXTRA_OPERATORS` copies its EXTRA, and a copy that drifted would misdirect the
    /// error's advice without failing any other test of a default build.
    fn make_py_set(set: &str) -> Vec<&'static str> {
        let script = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tools/tract-trimmed/make.py"
        ));
        let start = script
            .find(&format!("\n{set} = {{"))
            .unwrap_or_else(|| panic!("make.py has no {set} set"));
        let body = &script[start..];
        let body = &body[..body.find('}').expect("the set closes")];
        let mut names: Vec<&str> = body.split('"').skip(1).step_by(2).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn the_operator_lists_are_make_py_s() {
        assert_eq!(
            make_py_set("EXTRA"),
            EXTRA_OPERATORS,
            "copy make.py's EXTRA into EXTRA_OPERATORS"
        );
        let reader = reader();
        let mut built = operators(&reader);
        if cfg!(feature = "onnx-extra-ops") {
            built.retain(|op| !EXTRA_OPERATORS.contains(op));
        }
        assert_eq!(
            make_py_set("KEEP"),
            built,
            "rerun tools/tract-trimmed/make.py after changing KEEP"
        );
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
                 LRN (2 nodes). It reads models made of these operators only: Add,"
            ),
            "{err}"
        );
        // The feature adds neither, so the error does not send the user to it.
        assert!(!err.contains("onnx-extra-ops"), "{err}");
        assert!(err.ends_with("(tools/tract-trimmed/README.md)"), "{err}");
    }

    #[test]
    fn an_operator_of_the_extra_feature_is_read_or_names_the_feature() {
        let reader = reader();
        let result = check_operators(&model(&["Conv", "GlobalAveragePool", "Softmax"]), &reader);
        if cfg!(feature = "onnx-extra-ops") {
            assert_eq!(result, Ok(()));
        } else {
            let err = result.expect_err("GlobalAveragePool and Softmax need the feature");
            assert!(
                err.contains("GlobalAveragePool (1 node), Softmax (1 node)"),
                "{err}"
            );
            assert!(
                err.contains("build facegate with `--features onnx-extra-ops` (adds AveragePool,"),
                "{err}"
            );
        }
    }

    #[test]
    fn hostile_operator_names_are_escaped_cut_short_and_counted_not_listed() {
        let reader = reader();
        let long = "L".repeat(1 << 20);
        let many: Vec<String> = (0..1000).map(|i| format!("Op{i:04}")).collect();
        let mut ops: Vec<&str> = vec!["Bad\n\x1b[2J", &long];
        ops.extend(many.iter().map(String::as_str));
        let err = check_operators(&model(&ops), &reader).expect_err("none of them is read");
        assert!(err.contains("Bad\\x0a\\x1b[2J (1 node)"), "{err}");
        assert!(!err.contains('\n') && !err.contains('\x1b'), "{err}");
        assert!(
            err.contains(&format!("{}... (1 node)", "L".repeat(64))),
            "{err}"
        );
        assert!(err.contains("and 994 more"), "{err}");
        assert!(err.len() < 2000, "{} bytes", err.len());
    }
}
