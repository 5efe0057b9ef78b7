//! The embedder as a burn module: a list of layers applied in order, with residual additions.
//!
//! One representation serves both the MobileFaceNet-style networks this tool builds and networks
//! read from an ONNX file (SFace is a plain chain of Conv/BatchNorm/PRelu then Flatten/Gemm), so
//! fine-tuning, checkpoints and export share a single forward pass and a single ONNX writer.

use burn::module::{Param, RunningState};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{
    BatchNorm, BatchNormConfig, Linear, LinearConfig, PRelu, PReluConfig, PaddingConfig2d,
};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

/// One step of the network. Indices point into the layer lists of [`Net`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// `(x - sub) * mul`: input scaling baked into the graph (SFace takes raw 0..255 pixels).
    Affine {
        sub: f32,
        mul: f32,
    },
    Conv(usize),
    Norm(usize),
    PRelu(usize),
    Relu,
    /// Adds the value `from` steps back (0 = the network input, i = output of op i-1).
    Add {
        from: usize,
    },
    Flatten,
    Linear(usize),
}

#[derive(Module, Debug)]
pub struct Net {
    pub convs: Vec<Conv2d>,
    pub norms: Vec<BatchNorm>,
    pub prelus: Vec<PRelu>,
    pub linears: Vec<Linear>,
    #[module(skip)]
    pub ops: Vec<Op>,
    /// Input side (square), channels are always RGB.
    #[module(skip)]
    pub input_size: usize,
    /// BatchNorms use their running statistics even in training (their scale and shift still
    /// learn). Fine-tuning on a few people in small batches would otherwise overwrite statistics
    /// gathered on millions of faces with those of a handful.
    #[module(skip)]
    pub frozen_norms: bool,
}

#[derive(Clone)]
enum Value {
    Map(Tensor<4>),
    Flat(Tensor<2>),
}

impl Value {
    fn add(self, other: &Value) -> Value {
        match (self, other) {
            (Value::Map(a), Value::Map(b)) => Value::Map(a + b.clone()),
            (Value::Flat(a), Value::Flat(b)) => Value::Flat(a + b.clone()),
            _ => panic!("residual addition between a feature map and a vector"),
        }
    }
}

impl Net {
    /// Raw embeddings (not normalised) for a batch `[n, 3, size, size]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<2> {
        let keep = self.kept_values();
        let mut kept: Vec<Option<Value>> = Vec::with_capacity(self.ops.len() + 1);
        let mut x = Value::Map(input);
        for (i, op) in self.ops.iter().enumerate() {
            kept.push(if keep[i] { Some(x.clone()) } else { None });
            x = match (op, x) {
                (Op::Affine { sub, mul }, Value::Map(t)) => {
                    Value::Map(t.sub_scalar(*sub).mul_scalar(*mul))
                }
                (Op::Conv(k), Value::Map(t)) => Value::Map(self.convs[*k].forward(t)),
                (Op::Norm(k), Value::Map(t)) => Value::Map(self.norm(*k, t)),
                (Op::Norm(k), Value::Flat(t)) => Value::Flat(self.norm(*k, t)),
                (Op::PRelu(k), Value::Map(t)) => Value::Map(self.prelus[*k].forward(t)),
                (Op::PRelu(k), Value::Flat(t)) => Value::Flat(self.prelus[*k].forward(t)),
                (Op::Relu, Value::Map(t)) => Value::Map(burn::tensor::activation::relu(t)),
                (Op::Relu, Value::Flat(t)) => Value::Flat(burn::tensor::activation::relu(t)),
                (Op::Add { from }, v) => match &kept[*from] {
                    Some(earlier) => v.add(earlier),
                    None => unreachable!("kept_values keeps every residual source"),
                },
                (Op::Flatten, Value::Map(t)) => Value::Flat(t.flatten(1, 3)),
                (Op::Flatten, v @ Value::Flat(_)) => v,
                (Op::Linear(k), Value::Flat(t)) => Value::Flat(self.linears[*k].forward(t)),
                (op, _) => panic!("{op:?} does not apply to this value's shape"),
            };
        }
        match x {
            Value::Flat(t) => t,
            Value::Map(t) => t.flatten(1, 3),
        }
    }

    fn norm<const D: usize>(&self, k: usize, t: Tensor<D>) -> Tensor<D> {
        let norm = &self.norms[k];
        if !self.frozen_norms {
            return norm.forward(t);
        }
        let device = t.device();
        burn::tensor::module::batch_norm(
            t,
            norm.gamma.val(),
            norm.beta.val(),
            norm.running_mean.value().to_device(&device),
            norm.running_var.value().to_device(&device),
            norm.epsilon,
        )
    }

    /// Unit-length embeddings.
    pub fn embed(&self, input: Tensor<4>) -> Tensor<2> {
        l2_normalize(self.forward(input))
    }

    /// `keep[i]`: the value entering op i is read again by a later residual addition.
    fn kept_values(&self) -> Vec<bool> {
        let mut keep = vec![false; self.ops.len() + 1];
        for op in &self.ops {
            if let Op::Add { from } = op {
                keep[*from] = true;
            }
        }
        keep
    }

    pub fn parameter_count(&self) -> usize {
        self.num_params()
    }
}

/// A tensor's values on the host, as f32.
pub fn host<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, String> {
    t.into_data()
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))
}

pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x
        .clone()
        .powf_scalar(2.0)
        .sum_dim(1)
        .sqrt()
        .clamp_min(1e-12);
    x / norm
}

/// The shape of a MobileFaceNet-style embedder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Architecture {
    pub input_size: usize,
    pub embedding_dim: usize,
    /// Channel multiplier on MobileFaceNet's widths (64, 128, ...); 1.0 is the paper's network.
    pub width: f32,
    /// Width of the last 1x1 convolution before the global depthwise convolution.
    pub final_channels: usize,
}

/// Builds the network layer by layer, keeping the ops list and the layer lists in step.
struct Builder<'a> {
    net: Net,
    device: &'a Device,
    channels: usize,
    side: usize,
}

impl<'a> Builder<'a> {
    fn conv(&mut self, out: usize, kernel: usize, stride: usize, groups: usize) {
        let pad = if kernel == self.side && stride == 1 && groups > 1 {
            0
        } else {
            kernel / 2
        };
        let conv = Conv2dConfig::new([self.channels, out], [kernel, kernel])
            .with_stride([stride, stride])
            .with_groups(groups)
            .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
            .with_bias(false)
            .init(self.device);
        self.net.ops.push(Op::Conv(self.net.convs.len()));
        self.net.convs.push(conv);
        self.channels = out;
        self.side = (self.side + 2 * pad - kernel) / stride + 1;
        self.norm();
    }

    fn norm(&mut self) {
        self.net.ops.push(Op::Norm(self.net.norms.len()));
        self.net
            .norms
            .push(BatchNormConfig::new(self.channels).init(self.device));
    }

    fn prelu(&mut self) {
        self.net.ops.push(Op::PRelu(self.net.prelus.len()));
        self.net.prelus.push(
            PReluConfig::new()
                .with_num_parameters(self.channels)
                .with_alpha(0.25)
                .init(self.device),
        );
    }

    /// MobileFaceNet's bottleneck: expand 1x1, depthwise 3x3, linear project 1x1, residual when
    /// the shape is kept.
    fn bottleneck(&mut self, out: usize, stride: usize, expansion: usize) {
        let start = self.net.ops.len();
        let residual = stride == 1 && out == self.channels;
        let hidden = self.channels * expansion;
        self.conv(hidden, 1, 1, 1);
        self.prelu();
        self.conv(hidden, 3, stride, hidden);
        self.prelu();
        self.conv(out, 1, 1, 1);
        if residual {
            self.net.ops.push(Op::Add { from: start });
        }
    }
}

/// Number of stride-2 steps that bring `size` to 7 or less (112 -> 7 takes four, as in
/// MobileFaceNet; 28 -> 7 takes two).
fn downsamplings(size: usize) -> usize {
    let (mut side, mut n) = (size, 0);
    while side > 7 && n < 4 {
        side = side.div_ceil(2);
        n += 1;
    }
    n.max(1)
}

pub fn mobilefacenet(arch: &Architecture, device: &Device) -> Net {
    let ch = |c: usize| ((c as f32 * arch.width).round() as usize).max(8);
    let mut b = Builder {
        net: Net {
            convs: Vec::new(),
            norms: Vec::new(),
            prelus: Vec::new(),
            linears: Vec::new(),
            ops: Vec::new(),
            input_size: arch.input_size,
            frozen_norms: false,
        },
        device,
        channels: 3,
        side: arch.input_size,
    };
    let downs = downsamplings(arch.input_size);
    // MobileFaceNet: conv 3x3/2, dw 3x3, then bottleneck stages at 64 (/2), 128 (/2), 128 (/2),
    // each with a few repeats. Small inputs drop the later stride-2 steps, not the stages.
    let strides: Vec<usize> = (0..4).map(|i| if i < downs { 2 } else { 1 }).collect();
    b.conv(ch(64), 3, strides[0], 1);
    b.prelu();
    let c = b.channels;
    b.conv(c, 3, 1, c);
    b.prelu();
    for (stage, (out, repeats, expansion)) in [(64, 2, 2), (128, 2, 4), (128, 2, 2)]
        .into_iter()
        .enumerate()
    {
        for r in 0..repeats {
            let stride = if r == 0 { strides[stage + 1] } else { 1 };
            b.bottleneck(ch(out), stride, expansion);
        }
    }
    b.conv(arch.final_channels, 1, 1, 1);
    b.prelu();
    // Global depthwise convolution: a learned spatial weighting instead of average pooling, which
    // MobileFaceNet found matters for faces (the centre counts more than the corners).
    let (c, side) = (b.channels, b.side);
    b.conv(c, side, 1, c);
    b.conv(arch.embedding_dim, 1, 1, 1);
    b.net.ops.push(Op::Flatten);
    b.net
}

/// Helpers for building layers from known weights (ONNX import).
pub fn conv_from(
    weight: Tensor<4>,
    bias: Option<Tensor<1>>,
    stride: [usize; 2],
    pads: [usize; 4],
    groups: usize,
    device: &Device,
) -> Conv2d {
    let [out, inp_per_group, kh, kw] = weight.dims();
    let mut conv = Conv2dConfig::new([inp_per_group * groups, out], [kh, kw])
        .with_stride(stride)
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Explicit(
            pads[0], pads[1], pads[2], pads[3],
        ))
        .with_bias(bias.is_some())
        .init(device);
    conv.weight = Param::from_tensor(weight);
    conv.bias = bias.map(Param::from_tensor);
    conv
}

pub fn norm_from(
    gamma: Tensor<1>,
    beta: Tensor<1>,
    mean: Tensor<1>,
    var: Tensor<1>,
    epsilon: f64,
    device: &Device,
) -> BatchNorm {
    let [c] = gamma.dims();
    let mut norm = BatchNormConfig::new(c).with_epsilon(epsilon).init(device);
    norm.gamma = Param::from_tensor(gamma);
    norm.beta = Param::from_tensor(beta);
    norm.running_mean = RunningState::new(mean);
    norm.running_var = RunningState::new(var);
    norm
}

pub fn prelu_from(alpha: Tensor<1>, device: &Device) -> PRelu {
    let [c] = alpha.dims();
    let mut prelu = PReluConfig::new().with_num_parameters(c).init(device);
    prelu.alpha = Param::from_tensor(alpha);
    prelu
}

/// `weight` in ONNX Gemm's `[out, in]` layout.
pub fn linear_from(weight: Tensor<2>, bias: Option<Tensor<1>>, device: &Device) -> Linear {
    let [out, inp] = weight.dims();
    let mut linear = LinearConfig::new(inp, out)
        .with_bias(bias.is_some())
        .init(device);
    linear.weight = Param::from_tensor(weight.transpose());
    linear.bias = bias.map(Param::from_tensor);
    linear
}

/// `[out, in]`, ONNX Gemm's layout, whatever burn's storage.
pub fn linear_weight(linear: &Linear) -> Tensor<2> {
    linear.weight.val().transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobilefacenet_maps_any_input_size_to_the_embedding() {
        let device = Device::flex();
        for (size, dim) in [(16, 32), (28, 64), (112, 128)] {
            let arch = Architecture {
                input_size: size,
                embedding_dim: dim,
                width: 0.25,
                final_channels: 64,
            };
            let net = mobilefacenet(&arch, &device);
            let out = net.valid().embed(Tensor::ones([2, 3, size, size], &device));
            assert_eq!(out.dims(), [2, dim]);
            let norms: Vec<f32> = out
                .powf_scalar(2.0)
                .sum_dim(1)
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-4), "{norms:?}");
        }
    }

    #[test]
    fn downsamplings_reach_seven_or_less() {
        assert_eq!(downsamplings(112), 4);
        assert_eq!(downsamplings(28), 2);
        assert_eq!(downsamplings(16), 2);
        assert_eq!(downsamplings(8), 1);
    }
}
