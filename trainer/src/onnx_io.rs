//! Reading a [`Net`] from ONNX and writing it back: burn has no ONNX export, so the graph is
//! written with the onnx.proto types tract-onnx generates.
//!
//! Export folds each BatchNorm into the convolution or Gemm before it, so the edge runtime runs
//! one op where training needed two. The int8 form stores weights as int8 with a DequantizeLinear
//! in front (facegate folds those at load time, the form tract runs fastest on x86): convolutions
//! in blocks of 64 along the input channels, each block with its own scale (SFace's own form, opset
//! 21), dense layers per output row (the form facegate keeps as an int8 matrix at run time); every
//! scale is the clip with the least squared error, not the largest weight.

use std::collections::HashMap;
use std::path::Path;

use burn::prelude::*;
use prost::Message;
use tract_onnx::pb;

use crate::model::{self, Net, Op};

/// How the exported weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightForm {
    F32,
    /// Symmetric int8 weights behind DequantizeLinear: convolutions in blocks along the input
    /// channels, dense layers per output row.
    Int8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    pub form: WeightForm,
    /// Fold each BatchNorm into the Conv/Gemm before it (for the edge); checkpoints keep them so
    /// training can resume with the running statistics.
    pub fold_norms: bool,
}

impl ExportOptions {
    pub fn edge(form: WeightForm) -> ExportOptions {
        ExportOptions {
            form,
            fold_norms: true,
        }
    }

    pub fn checkpoint() -> ExportOptions {
        ExportOptions {
            form: WeightForm::F32,
            fold_norms: false,
        }
    }
}

pub const INPUT_NAME: &str = "data";
pub const OUTPUT_NAME: &str = "embedding";

// ---------------------------------------------------------------- export

struct Writer {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
    form: WeightForm,
    /// A block-quantised weight was written: the model needs opset 21.
    blocked: bool,
}

/// Weights per block of a quantised convolution: SFace's choice; a 3x3 depthwise row (9 values)
/// is one block.
pub const BLOCK: usize = 64;

impl Writer {
    fn constant(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.to_string(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Float as i32,
            float_data: values,
            ..Default::default()
        });
        name.to_string()
    }

    fn int8(&mut self, name: &str, dims: &[usize], values: Vec<i8>) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.to_string(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: pb::tensor_proto::DataType::Int8 as i32,
            raw_data: values.into_iter().map(|v| v as u8).collect(),
            ..Default::default()
        });
        name.to_string()
    }

    /// A weight (`dims[0]` outputs); in the int8 form quantised: a convolution's in blocks of
    /// [`BLOCK`] along each output's `in x kh x kw` values (DequantizeLinear on the 2-D view,
    /// then Reshape), a dense layer's per output row.
    fn weight(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> String {
        if self.form == WeightForm::F32 {
            return self.constant(name, dims, values);
        }
        let rows = dims[0];
        let cols = values.len() / rows.max(1);
        let (block, flat) = if dims.len() == 4 {
            (BLOCK.min(cols), format!("{name}_2d"))
        } else {
            (cols, name.to_string())
        };
        let (quantised, scales) = crate::quantise::blocks(&values, rows, cols, block);
        let per_row = cols.div_ceil(block.max(1));
        let q = self.int8(&format!("{name}_int8"), &[rows, cols], quantised);
        let zero = format!("{name}_zero");
        if dims.len() == 4 {
            let zero = self.int8(&zero, &[rows, per_row], vec![0; rows * per_row]);
            self.blocked = true;
            let scale = self.constant(&format!("{name}_scale"), &[rows, per_row], scales);
            self.node(
                "DequantizeLinear",
                &[&q, &scale, &zero],
                &flat,
                vec![int_attr("axis", 1), int_attr("block_size", block as i64)],
            );
            let shape = format!("{name}_shape");
            self.initializers.push(pb::TensorProto {
                name: shape.clone(),
                dims: vec![dims.len() as i64],
                data_type: pb::tensor_proto::DataType::Int64 as i32,
                int64_data: dims.iter().map(|&d| d as i64).collect(),
                ..Default::default()
            });
            self.node("Reshape", &[&flat, &shape], name, vec![]);
        } else {
            // One scale a row: the 1-D per-axis form facegate's int8 dense head reads.
            let zero = self.int8(&zero, &[rows], vec![0; rows]);
            let scale = self.constant(&format!("{name}_scale"), &[rows], scales);
            self.node(
                "DequantizeLinear",
                &[&q, &scale, &zero],
                &flat,
                vec![int_attr("axis", 0)],
            );
        }
        name.to_string()
    }

    /// A Conv's or Gemm's weight (`dims[0]` output channels) and bias, with `norm` folded in.
    /// Returns their names.
    fn folded(
        &mut self,
        out: &str,
        dims: &[usize],
        mut weights: Vec<f32>,
        bias: Option<Vec<f32>>,
        norm: Option<&burn::nn::BatchNorm>,
    ) -> (String, String) {
        let mut bias = bias.unwrap_or_else(|| vec![0.0; dims[0]]);
        if let Some(norm) = norm {
            let (scale, shift) = norm_affine(norm);
            fold(&mut weights, &mut bias, &scale, &shift);
        }
        let weight = self.weight(&format!("{out}_w"), dims, weights);
        let bias = self.constant(&format!("{out}_b"), &[dims[0]], bias);
        (weight, bias)
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<pb::AttributeProto>,
    ) {
        self.nodes.push(pb::NodeProto {
            op_type: op.to_string(),
            name: format!("{output}_{}", op.to_lowercase()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            attribute,
            ..Default::default()
        });
    }
}

fn int_attr(name: &str, value: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: value,
        ..Default::default()
    }
}

fn ints_attr(name: &str, values: &[usize]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: values.iter().map(|&v| v as i64).collect(),
        ..Default::default()
    }
}

fn float_attr(name: &str, value: f32) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Float as i32,
        f: value,
        ..Default::default()
    }
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    model::host(t).unwrap_or_default()
}

/// Per-channel `(scale, shift)` of a BatchNorm in inference: `y = x * scale + shift`.
fn norm_affine(norm: &burn::nn::BatchNorm) -> (Vec<f32>, Vec<f32>) {
    let gamma = values(norm.gamma.val());
    let beta = values(norm.beta.val());
    let mean = values(norm.running_mean.value());
    let var = values(norm.running_var.value());
    let scale: Vec<f32> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + norm.epsilon as f32).sqrt())
        .collect();
    let shift = beta
        .iter()
        .zip(&mean)
        .zip(&scale)
        .map(|((b, m), s)| b - m * s)
        .collect();
    (scale, shift)
}

/// Multiplies each output channel's weights by `scale` and turns the bias into
/// `bias * scale + shift`.
fn fold(weights: &mut [f32], bias: &mut [f32], scale: &[f32], shift: &[f32]) {
    let per_channel = weights.len() / scale.len();
    for (c, chunk) in weights.chunks_mut(per_channel).enumerate() {
        chunk.iter_mut().for_each(|w| *w *= scale[c]);
        bias[c] = bias[c] * scale[c] + shift[c];
    }
}

/// The network as ONNX bytes: input `data` `[batch, 3, size, size]`, output `embedding`
/// `[batch, dim]` (not normalised; the runtime normalises).
pub fn export(net: &Net, options: ExportOptions) -> Vec<u8> {
    let mut w = Writer {
        nodes: Vec::new(),
        initializers: Vec::new(),
        form: options.form,
        blocked: false,
    };
    // names[i]: the value entering op i (names[0] is the input).
    let mut names = vec![INPUT_NAME.to_string()];
    let mut flat = false;
    let ops = &net.ops;
    let mut i = 0;
    while i < ops.len() {
        let input = names[i].clone();
        let out = format!("v{}", i + 1);
        // A BatchNorm right after a Conv or Linear is folded into it: its output name covers both.
        let next_norm = match (&ops[i], ops.get(i + 1)) {
            (Op::Conv(_) | Op::Linear(_), Some(Op::Norm(k))) if options.fold_norms => {
                Some(&net.norms[*k])
            }
            _ => None,
        };
        let consumed = if next_norm.is_some() { 2 } else { 1 };
        match &ops[i] {
            Op::Affine { sub, mul } => {
                // Constant names must not collide with node names, which are `<output>_<op>`.
                let sub_name = w.constant(&format!("{out}_offset"), &[], vec![*sub]);
                let mul_name = w.constant(&format!("{out}_factor"), &[], vec![*mul]);
                let shifted = format!("{out}_shifted");
                w.node("Sub", &[&input, &sub_name], &shifted, vec![]);
                w.node("Mul", &[&shifted, &mul_name], &out, vec![]);
            }
            Op::Conv(k) => {
                let conv = &net.convs[*k];
                let dims = conv.weight.val().dims();
                let bias = conv.bias.as_ref().map(|b| values(b.val()));
                let (wn, bn) = w.folded(&out, &dims, values(conv.weight.val()), bias, next_norm);
                let [top, left, bottom, right] = match conv.padding {
                    burn::nn::PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
                    _ => [0; 4],
                };
                w.node(
                    "Conv",
                    &[&input, &wn, &bn],
                    &out,
                    vec![
                        ints_attr("kernel_shape", &[dims[2], dims[3]]),
                        ints_attr("strides", &conv.stride),
                        ints_attr("pads", &[top, left, bottom, right]),
                        ints_attr("dilations", &conv.dilation),
                        int_attr("group", conv.groups as i64),
                    ],
                );
            }
            Op::Linear(k) => {
                let linear = &net.linears[*k];
                let weight = model::linear_weight(linear);
                let dims = weight.dims();
                let bias = linear.bias.as_ref().map(|b| values(b.val()));
                let (wn, bn) = w.folded(&out, &dims, values(weight), bias, next_norm);
                w.node(
                    "Gemm",
                    &[&input, &wn, &bn],
                    &out,
                    vec![int_attr("transB", 1)],
                );
            }
            Op::Norm(k) => {
                let norm = &net.norms[*k];
                let c = norm.gamma.val().dims()[0];
                let g = w.constant(&format!("{out}_gamma"), &[c], values(norm.gamma.val()));
                let b = w.constant(&format!("{out}_beta"), &[c], values(norm.beta.val()));
                let m = w.constant(
                    &format!("{out}_mean"),
                    &[c],
                    values(norm.running_mean.value()),
                );
                let v = w.constant(
                    &format!("{out}_var"),
                    &[c],
                    values(norm.running_var.value()),
                );
                w.node(
                    "BatchNormalization",
                    &[&input, &g, &b, &m, &v],
                    &out,
                    vec![float_attr("epsilon", norm.epsilon as f32)],
                );
            }
            Op::PRelu(k) => {
                let alpha = values(net.prelus[*k].alpha.val());
                let c = alpha.len();
                let dims: Vec<usize> = if flat { vec![c] } else { vec![c, 1, 1] };
                let slope = w.constant(&format!("{out}_slope"), &dims, alpha);
                w.node("PRelu", &[&input, &slope], &out, vec![]);
            }
            Op::Relu => w.node("Relu", &[&input], &out, vec![]),
            Op::Add { from } => {
                let other = names[*from].clone();
                w.node("Add", &[&input, &other], &out, vec![]);
            }
            Op::Flatten => {
                w.node("Flatten", &[&input], &out, vec![int_attr("axis", 1)]);
                flat = true;
            }
        }
        for _ in 0..consumed {
            names.push(out.clone());
        }
        i += consumed;
    }
    let last = names
        .last()
        .cloned()
        .unwrap_or_else(|| INPUT_NAME.to_string());
    if !flat {
        w.node("Flatten", &[&last], OUTPUT_NAME, vec![int_attr("axis", 1)]);
    } else {
        w.node("Identity", &[&last], OUTPUT_NAME, vec![]);
    }
    let size = net.input_size as i64;
    let tensor_type = |dims: Vec<pb::tensor_shape_proto::Dimension>| pb::TypeProto {
        value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
            elem_type: pb::tensor_proto::DataType::Float as i32,
            shape: Some(pb::TensorShapeProto { dim: dims }),
        })),
        ..Default::default()
    };
    let dim = |v: i64| pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)),
        ..Default::default()
    };
    let batch = pb::tensor_shape_proto::Dimension {
        value: Some(pb::tensor_shape_proto::dimension::Value::DimParam(
            "batch".into(),
        )),
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "facegate_embedder".into(),
        node: w.nodes,
        initializer: w.initializers,
        input: vec![pb::ValueInfoProto {
            name: INPUT_NAME.into(),
            r#type: Some(tensor_type(vec![
                batch.clone(),
                dim(3),
                dim(size),
                dim(size),
            ])),
            ..Default::default()
        }],
        // The output's rank and size follow from the graph; runtimes infer them.
        output: vec![pb::ValueInfoProto {
            name: OUTPUT_NAME.into(),
            r#type: Some(pb::TypeProto {
                value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                    elem_type: pb::tensor_proto::DataType::Float as i32,
                    shape: None,
                })),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    // Blocked DequantizeLinear exists from opset 21 (IR version 10); other models keep 13.
    let (ir_version, opset) = if w.blocked { (10, 21) } else { (8, 13) };
    let model = pb::ModelProto {
        ir_version,
        producer_name: "facegate-train".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: opset,
        }],
        graph: Some(graph),
        ..Default::default()
    };
    model.encode_to_vec()
}

// ---------------------------------------------------------------- import

struct Constant {
    dims: Vec<usize>,
    values: Vec<f32>,
}

/// The values of an initializer, decoded by the same code the board's loader uses.
fn tensor_values(t: &pb::TensorProto) -> Result<Vec<f32>, String> {
    facegate::embed::onnx_prep::tensor::f32_values(t).ok_or_else(|| {
        format!(
            "tensor {} has data type {}, which the importer does not read",
            t.name, t.data_type
        )
    })
}

fn attr<'a>(node: &'a pb::NodeProto, name: &str) -> Option<&'a pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_ints(node: &pb::NodeProto, name: &str) -> Option<Vec<usize>> {
    attr(node, name).map(|a| a.ints.iter().map(|&v| v as usize).collect())
}

/// Reads an embedder made of the ops [`Net`] knows (Conv, BatchNormalization, PRelu, Relu, Add,
/// Flatten, Gemm, scalar Sub/Mul on the input; Dropout and Identity pass through; constant
/// DequantizeLinear weights are de-quantised, blocked ones and their Reshape included).
pub fn import(path: &Path, device: &Device) -> Result<Net, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    import_bytes(&bytes, device).map_err(|e| format!("{}: {e}", path.display()))
}

pub fn import_bytes(bytes: &[u8], device: &Device) -> Result<Net, String> {
    let mut model = pb::ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    // facegate's own load-time folding first: constant DequantizeLinear of every form, blocked
    // ones (OpenCV Zoo's *_int8bq.onnx, opset 21) included, and the Reshape after them.
    facegate::embed::onnx_prep::fold_constant_dequantize(&mut model)?;
    let graph = model.graph.ok_or("the ONNX file has no graph")?;
    let mut consts: HashMap<String, Constant> = HashMap::new();
    for t in &graph.initializer {
        let dims = t.dims.iter().map(|&d| d as usize).collect();
        consts.insert(
            t.name.clone(),
            Constant {
                dims,
                values: tensor_values(t)?,
            },
        );
    }
    let input = graph
        .input
        .iter()
        .find(|i| !consts.contains_key(&i.name))
        .ok_or("the graph has no input")?;
    let shape: Vec<i64> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(pb::type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => v,
                        _ => -1,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if shape.len() != 4 || shape[1] != 3 || shape[2] != shape[3] || shape[2] <= 0 {
        return Err(format!(
            "input {} must be [N, 3, S, S], it is {shape:?}",
            input.name
        ));
    }
    let mut net = Net {
        convs: Vec::new(),
        norms: Vec::new(),
        prelus: Vec::new(),
        linears: Vec::new(),
        ops: Vec::new(),
        input_size: shape[2] as usize,
        frozen_norms: false,
    };
    // Value name -> index into the value list (0 = input, i = output of op i-1).
    let mut value_of: HashMap<String, usize> = HashMap::new();
    value_of.insert(input.name.clone(), 0);
    let tensor = |c: &Constant| {
        Tensor::<1>::from_data(TensorData::new(c.values.clone(), [c.values.len()]), device)
    };
    for node in &graph.node {
        let fail = |what: String| format!("node {} ({}): {what}", node.name, node.op_type);
        let get = |i: usize| -> Result<&Constant, String> {
            node.input
                .get(i)
                .and_then(|n| consts.get(n))
                .ok_or_else(|| fail(format!("input {i} must be a constant")))
        };
        match node.op_type.as_str() {
            "Constant" => {
                let t = attr(node, "value")
                    .and_then(|a| a.t.as_ref())
                    .ok_or_else(|| fail("no value".into()))?;
                let dims = t.dims.iter().map(|&d| d as usize).collect();
                consts.insert(
                    node.output[0].clone(),
                    Constant {
                        dims,
                        values: tensor_values(t)?,
                    },
                );
                continue;
            }
            "DequantizeLinear" if consts.contains_key(&node.input[0]) => {
                let x = get(0)?;
                let scale = get(1)?;
                let zero = node.input.get(2).and_then(|n| consts.get(n));
                let axis = attr(node, "axis").map(|a| a.i).unwrap_or(1);
                let per = if scale.values.len() == 1 {
                    x.values.len()
                } else {
                    let axis = axis.rem_euclid(x.dims.len() as i64) as usize;
                    x.dims[axis + 1..].iter().product::<usize>()
                };
                let n = scale.values.len();
                let values = x
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, &q)| {
                        let c = (i / per) % n;
                        let z = zero.map(|z| z.values[c]).unwrap_or(0.0);
                        (q - z) * scale.values[c]
                    })
                    .collect();
                consts.insert(
                    node.output[0].clone(),
                    Constant {
                        dims: x.dims.clone(),
                        values,
                    },
                );
                continue;
            }
            _ => {}
        }
        // Every other node reads the current value (the chain) and maybe one earlier value.
        let current = net.ops.len();
        let data_inputs: Vec<usize> = node
            .input
            .iter()
            .filter_map(|n| value_of.get(n).copied())
            .collect();
        if !data_inputs.contains(&current) {
            return Err(fail(
                "only chains with residual additions are supported".into(),
            ));
        }
        let op = match node.op_type.as_str() {
            "Dropout" | "Identity" => {
                value_of.insert(node.output[0].clone(), current);
                continue;
            }
            "Sub" | "Mul" => {
                let c = node
                    .input
                    .iter()
                    .find_map(|n| consts.get(n))
                    .ok_or_else(|| fail("needs a constant".into()))?;
                if c.values.len() != 1 {
                    return Err(fail("only scalar input scaling is supported".into()));
                }
                if node.op_type == "Sub" {
                    Op::Affine {
                        sub: c.values[0],
                        mul: 1.0,
                    }
                } else {
                    Op::Affine {
                        sub: 0.0,
                        mul: c.values[0],
                    }
                }
            }
            "Conv" => {
                let w = get(1)?;
                let bias = node
                    .input
                    .get(2)
                    .filter(|n| !n.is_empty())
                    .map(|_| get(2))
                    .transpose()?;
                if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&d| d != 1)) {
                    return Err(fail("dilated convolutions are not supported".into()));
                }
                let stride = attr_ints(node, "strides").unwrap_or(vec![1, 1]);
                let pads = attr_ints(node, "pads").unwrap_or(vec![0; 4]);
                if attr(node, "auto_pad").is_some_and(|a| !a.s.is_empty() && a.s != b"NOTSET") {
                    return Err(fail("auto_pad is not supported".into()));
                }
                let groups = attr(node, "group").map(|a| a.i as usize).unwrap_or(1);
                let dims: [usize; 4] = w
                    .dims
                    .clone()
                    .try_into()
                    .map_err(|_| fail("weight must be 4-D".into()))?;
                let weight =
                    Tensor::<4>::from_data(TensorData::new(w.values.clone(), dims), device);
                net.convs.push(model::conv_from(
                    weight,
                    bias.map(tensor),
                    [stride[0], stride[1]],
                    [pads[0], pads[1], pads[2], pads[3]],
                    groups,
                    device,
                ));
                Op::Conv(net.convs.len() - 1)
            }
            "BatchNormalization" => {
                let epsilon = attr(node, "epsilon").map(|a| a.f as f64).unwrap_or(1e-5);
                let momentum = attr(node, "momentum").map(|a| a.f as f64).unwrap_or(0.9);
                let mut norm = model::norm_from(
                    tensor(get(1)?),
                    tensor(get(2)?),
                    tensor(get(3)?),
                    tensor(get(4)?),
                    epsilon,
                    device,
                );
                // ONNX's momentum weighs the old running value, burn's the new batch.
                norm.momentum = 1.0 - momentum;
                net.norms.push(norm);
                Op::Norm(net.norms.len() - 1)
            }
            "PRelu" => {
                net.prelus.push(model::prelu_from(tensor(get(1)?), device));
                Op::PRelu(net.prelus.len() - 1)
            }
            "Relu" => Op::Relu,
            "Add" => {
                let from = data_inputs.iter().copied().find(|&v| v != current);
                match from {
                    Some(from) if data_inputs.len() == 2 => Op::Add { from },
                    _ => return Err(fail("Add must join the chain with an earlier value".into())),
                }
            }
            "Flatten" => {
                if attr(node, "axis").is_some_and(|a| a.i != 1) {
                    return Err(fail("only Flatten with axis 1 is supported".into()));
                }
                Op::Flatten
            }
            "Gemm" => {
                let w = get(1)?;
                let trans_b = attr(node, "transB").map(|a| a.i).unwrap_or(0) == 1;
                if attr(node, "transA").is_some_and(|a| a.i != 0)
                    || attr(node, "alpha").is_some_and(|a| a.f != 1.0)
                    || attr(node, "beta").is_some_and(|a| a.f != 1.0)
                {
                    return Err(fail(
                        "only Gemm with alpha = beta = 1 and no transA is supported".into(),
                    ));
                }
                let dims: [usize; 2] = w
                    .dims
                    .clone()
                    .try_into()
                    .map_err(|_| fail("weight must be 2-D".into()))?;
                let mut weight =
                    Tensor::<2>::from_data(TensorData::new(w.values.clone(), dims), device);
                if !trans_b {
                    weight = weight.transpose();
                }
                let bias = node
                    .input
                    .get(2)
                    .filter(|n| !n.is_empty())
                    .map(|_| get(2))
                    .transpose()?;
                net.linears
                    .push(model::linear_from(weight, bias.map(tensor), device));
                Op::Linear(net.linears.len() - 1)
            }
            other => return Err(fail(format!("the importer does not know the {other} op"))),
        };
        // Merge input scaling steps (SFace: Sub then Mul) into one Affine.
        if let (Op::Affine { sub: s2, mul: m2 }, Some(Op::Affine { sub: s1, mul: m1 })) =
            (&op, net.ops.last())
        {
            if *s2 == 0.0 {
                let merged = Op::Affine {
                    sub: *s1,
                    mul: m1 * m2,
                };
                *net.ops.last_mut().expect("matched above") = merged;
                value_of.insert(node.output[0].clone(), current);
                continue;
            }
        }
        net.ops.push(op);
        value_of.insert(node.output[0].clone(), net.ops.len());
    }
    if net.ops.is_empty() {
        return Err("the graph has no layers".into());
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{mobilefacenet, Architecture};

    #[test]
    fn export_matches_burn_and_import_restores_the_network() {
        let device = Device::flex();
        let arch = Architecture {
            input_size: 16,
            embedding_dim: 32,
            width: 0.25,
            final_channels: 32,
        };
        let net = mobilefacenet(&arch, &device).valid();
        let input: Vec<f32> = (0..2 * 3 * 16 * 16)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [2, 3, 16, 16]), &device);
        let expected = values(net.forward(x.clone()));
        let onnx = export(&net, ExportOptions::edge(WeightForm::F32));
        let got = crate::export::run(
            &crate::export::tract_plan(&onnx, [2, 3, 16, 16]).unwrap(),
            &input,
            [2, 3, 16, 16],
        )
        .unwrap();
        let diff = expected
            .iter()
            .zip(&got)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-4, "tract differs by {diff}");

        let checkpoint = export(&net, ExportOptions::checkpoint());
        let back = import_bytes(&checkpoint, &device).unwrap();
        assert_eq!(back.norms.len(), net.norms.len());
        let again = values(back.valid().forward(x));
        let diff = expected
            .iter()
            .zip(&again)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-4, "re-imported network differs by {diff}");
    }

    /// A real embedder from outside: SFace (Conv/BN/PRelu chain, input scaling, Dropout, Gemm head
    /// with a 1-D BatchNorm) imports and computes what tract computes.
    #[test]
    fn sface_imports_and_matches_tract() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/anchors/sface_2021dec_fp32_from_int8bq.onnx");
        let device = Device::flex();
        let net = import(&path, &device).unwrap();
        assert_eq!(net.input_size, 112);
        assert_eq!(net.convs.len(), 27);
        assert!(matches!(net.ops[0], Op::Affine { .. }));
        let input: Vec<f32> = (0..3 * 112 * 112)
            .map(|i| ((i * 7919) % 256) as f32)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [1, 3, 112, 112]), &device);
        let ours = values(net.valid().forward(x));
        let bytes = std::fs::read(&path).unwrap();
        let theirs = crate::export::run(
            &crate::export::tract_plan(&bytes, [1, 3, 112, 112]).unwrap(),
            &input,
            [1, 3, 112, 112],
        )
        .unwrap();
        assert_eq!(ours.len(), 128);
        let cos = facegate::embed::cosine(
            &facegate::embed::normalized(&ours),
            &facegate::embed::normalized(&theirs),
        );
        assert!(cos > 0.99999, "cosine {cos}");
    }

    /// OpenCV Zoo's block-quantised SFace (opset 21, DequantizeLinear with block_size, Reshape
    /// to the conv weights) imports as the same network as its fp32 copy.
    #[test]
    fn block_quantised_sface_imports_like_its_fp32_copy() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/anchors");
        let device = Device::flex();
        let blocked = import(
            &dir.join("face_recognition_sface_2021dec_int8bq.onnx"),
            &device,
        )
        .unwrap()
        .valid();
        let fp32 = import(&dir.join("sface_2021dec_fp32_from_int8bq.onnx"), &device)
            .unwrap()
            .valid();
        assert_eq!(blocked.convs.len(), 27);
        let input: Vec<f32> = (0..3 * 112 * 112)
            .map(|i| ((i * 7919) % 256) as f32)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(input, [1, 3, 112, 112]), &device);
        let (a, b) = (values(blocked.forward(x.clone())), values(fp32.forward(x)));
        assert_eq!(a.len(), 128);
        assert_eq!(a, b, "the folded weights are those of the fp32 copy");
    }
}
