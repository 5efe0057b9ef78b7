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

mod batch_norm;
mod dense_head;
mod dequantize;
pub mod tensor;

pub use batch_norm::fold_conv_batch_norm;
pub use dense_head::{split_dense_head, DenseHead};
pub use dequantize::fold_constant_dequantize;
use dequantize::*;
use tensor::*;

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

/// How many nodes of the graph read the value `name`.
pub(super) fn readers(graph: &GraphProto, name: &str) -> usize {
    graph
        .node
        .iter()
        .filter(|n| n.input.iter().any(|i| i == name))
        .count()
}

pub(super) fn attr_f(node: &tract_onnx::pb::NodeProto, name: &str, default: f32) -> f32 {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.f)
}

pub(super) fn attr_i(node: &tract_onnx::pb::NodeProto, name: &str, default: i64) -> i64 {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map_or(default, |a| a.i)
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
