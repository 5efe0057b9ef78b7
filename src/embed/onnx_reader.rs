//! Reading ONNX models with tract, and naming what this build cannot read.
//!
//! facegate links a trimmed tract-onnx (vendor/): it registers the 20 operators that
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
    let extra = extra_operators();
    let rebuild = if missing.keys().any(|op| extra.iter().any(|e| e == op))
        && !cfg!(feature = "onnx-extra-ops")
    {
        format!(
            "build facegate with `--features onnx-extra-ops` (adds {})",
            extra.join(", ")
        )
    } else {
        "build facegate with the operator added (vendor/README.md)".to_string()
    };
    Err(format!(
        "uses ONNX operators this facegate build does not include: {}. It reads models made of \
         these operators only: {}. Export the model with those, or {rebuild}",
        named.join(", "),
        operators(reader).join(", ")
    ))
}

/// The operator lists of the trimmed tract-onnx, from the data file vendor/make.py generates it
/// from.
const OPERATOR_LISTS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/vendor/tract-operators.toml"
));

#[derive(serde::Deserialize)]
struct OperatorLists {
    /// Read by the tests only (the build registers what the vendored crate registers).
    #[serde(default)]
    #[cfg_attr(not(test), allow(dead_code))]
    keep: Vec<String>,
    extra: Vec<String>,
}

fn operator_lists() -> OperatorLists {
    // The file is part of the source tree, checked by the tests below: not input.
    toml::from_str(OPERATOR_LISTS).unwrap_or_else(|e| panic!("vendor/tract-operators.toml: {e}"))
}

/// The operators the `onnx-extra-ops` feature registers (`extra` in vendor/tract-operators.toml).
fn extra_operators() -> Vec<String> {
    operator_lists().extra
}

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
        for op in extra_operators() {
            assert_eq!(ops.contains(&op.as_str()), extra, "{op}");
        }
        // Trimmed: the release binary does not carry them (vendor/make.py).
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

    /// vendor/tract-operators.toml is what vendor/make.py trims tract-onnx to: a list that
    /// drifted from the vendored crate would misdirect the error's advice.
    #[test]
    fn the_registered_operators_are_the_data_file_s() {
        let lists = operator_lists();
        let reader = reader();
        let mut built = operators(&reader);
        if cfg!(feature = "onnx-extra-ops") {
            built.retain(|op| !lists.extra.iter().any(|e| e == op));
        }
        let mut keep: Vec<&str> = lists.keep.iter().map(String::as_str).collect();
        keep.sort_unstable();
        assert_eq!(keep, built, "rerun vendor/make.py after changing keep");
        assert!(
            lists.extra.iter().all(|e| !lists.keep.contains(e)),
            "an operator is in both lists"
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
        assert!(err.ends_with("(vendor/README.md)"), "{err}");
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
