//! 3x3 depthwise convolution with stride 2, vectorised, for x86.
//!
//! On x86 tract 0.23 runs a depthwise convolution's interior with AVX only at stride 1; at stride 2
//! it is a scalar loop. SFace's four stride-2 depthwise layers took 3.2 ms of a 18 ms face
//! (`facegate bench embed --profile`), the first one (64 channels, 112x112) 1.7 ms alone, ten
//! times its stride-1 neighbours per output. Here each input row is split once into its even and
//! odd columns, so the three taps of a kernel row read three contiguous runs and the loop over
//! output columns vectorises like the stride-1 case.
//!
//! Only x86_64 gets it: on aarch64 tract moves depthwise layers to channels-last and runs NEON
//! kernels at any stride, and boards must not lose that for a kernel nobody measured there.

use tract_onnx::tract_core::ops::cnn::conv::{Conv, KernelFormat};
use tract_onnx::tract_core::ops::nn::DataFormat;
use tract_onnx::tract_hir::internal::*;

/// Replaces every f32 NCHW 3x3 stride-2 depthwise `Conv` with constant weights by
/// [`StridedDepthwise`] (x86_64 only). Returns how many were replaced.
pub fn use_vectorised_stride2(model: &mut TypedModel) -> TractResult<usize> {
    if !cfg!(target_arch = "x86_64") {
        return Ok(0);
    }
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(conv) = node.op_as::<Conv>() else {
            continue;
        };
        let Some(op) = StridedDepthwise::for_conv(model, node, conv)? else {
            continue;
        };
        let name = node.name.clone();
        let input = node.inputs[0];
        let mut patch = TypedModelPatch::default();
        let x = patch.tap_model(model, input)?;
        let y = patch.wire_node(name, op, &[x])?;
        patch.shunt_outside(model, id.into(), y[0])?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// `y[n, c] = bias[c] + sum over the 3x3 taps of w[c] * x[n, c]`, stride 2, zero padding.
#[derive(Debug, Clone)]
pub struct StridedDepthwise {
    /// `channels * 9`, row-major taps per channel.
    weights: Vec<f32>,
    bias: Vec<f32>,
    pad_top: usize,
    pad_left: usize,
    out_h: usize,
    out_w: usize,
}

impl PartialEq for StridedDepthwise {
    fn eq(&self, other: &Self) -> bool {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        bits(&self.weights) == bits(&other.weights)
            && bits(&self.bias) == bits(&other.bias)
            && (self.pad_top, self.pad_left, self.out_h, self.out_w)
                == (other.pad_top, other.pad_left, other.out_h, other.out_w)
    }
}

impl Eq for StridedDepthwise {}

impl StridedDepthwise {
    fn for_conv(
        model: &TypedModel,
        node: &TypedNode,
        conv: &Conv,
    ) -> TractResult<Option<StridedDepthwise>> {
        let spec = &conv.pool_spec;
        let x = model.outlet_fact(node.inputs[0])?;
        let Some(shape) = x.shape.as_concrete() else {
            return Ok(None);
        };
        let channels = spec.input_channels;
        let plain = conv.q_params.is_none()
            && x.datum_type == f32::datum_type()
            && spec.data_format == DataFormat::NCHW
            && conv.kernel_fmt == KernelFormat::OIHW
            && shape.len() == 4
            && shape[1] == channels
            && conv.group == channels
            && spec.output_channels == channels
            && spec.kernel_shape.as_slice() == [3, 3]
            && spec
                .strides
                .as_ref()
                .is_some_and(|s| s.as_slice() == [2, 2])
            && spec
                .dilations
                .as_ref()
                .is_none_or(|d| d.iter().all(|&d| d == 1))
            && node.inputs.len() == 3;
        if !plain {
            return Ok(None);
        }
        let konst = |i: usize| model.outlet_fact(node.inputs[i]).map(|f| f.konst.clone());
        let (Some(kernel), Some(bias)) = (konst(1)?, konst(2)?) else {
            return Ok(None);
        };
        if kernel.datum_type() != f32::datum_type()
            || bias.datum_type() != f32::datum_type()
            || kernel.shape() != [channels, 1, 3, 3]
            || !(bias.len() == channels || bias.len() == 1)
        {
            return Ok(None);
        }
        let padding = spec.padding.compute(&shape[2..], &[3, 3], &[1, 1], &[2, 2]);
        let (rows, cols) = (&padding[0], &padding[1]);
        // Padding beyond one pixel would put whole kernels outside the image (never in a CNN);
        // rows of fewer than 8 outputs do not fill an AVX register, and measured no faster than
        // tract's own loop (SFace's 512 channels at 7x7: 0.28 ms here, 0.22 ms in tract).
        if rows.pad_before > 1 || cols.pad_before > 1 || cols.convoluted < 8 {
            return Ok(None);
        }
        let weights = kernel.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
        let b = bias.try_as_plain_ram()?.as_slice::<f32>()?;
        let bias = if b.len() == 1 {
            vec![b[0]; channels]
        } else {
            b.to_vec()
        };
        Ok(Some(StridedDepthwise {
            weights,
            bias,
            pad_top: rows.pad_before,
            pad_left: cols.pad_before,
            out_h: rows.convoluted,
            out_w: cols.convoluted,
        }))
    }

    /// One channel's plane: `input` is `h x w`, `out` is `out_h x out_w`.
    #[inline(always)]
    fn plane(&self, c: usize, input: &[f32], w: usize, out: &mut [f32], split: &mut Split) {
        let h = input.len() / w;
        let taps = &self.weights[c * 9..c * 9 + 9];
        split.load(input, w, self.pad_left, self.out_w);
        let (even, odd) = (&split.even, &split.odd);
        let stride = self.out_w + 1;
        for (oy, row) in out.chunks_exact_mut(self.out_w).enumerate() {
            row.fill(self.bias[c]);
            for dy in 0..3 {
                let Some(iy) = (2 * oy + dy).checked_sub(self.pad_top).filter(|&iy| iy < h) else {
                    continue;
                };
                let e = &even[iy * stride..iy * stride + stride];
                let o = &odd[iy * stride..iy * stride + self.out_w];
                let (w0, w1, w2) = (taps[dy * 3], taps[dy * 3 + 1], taps[dy * 3 + 2]);
                for (((y, &e0), &o0), &e1) in row.iter_mut().zip(e).zip(o).zip(&e[1..]) {
                    *y += w0 * e0 + w1 * o0 + w2 * e1;
                }
            }
        }
    }

    // Inlined, so that `run_avx`'s copy of the loops is compiled for AVX.
    #[inline(always)]
    fn run(&self, input: &[f32], shape: &[usize], out: &mut [f32]) {
        let (channels, h, w) = (shape[1], shape[2], shape[3]);
        let mut split = Split::default();
        let planes = input
            .chunks_exact(h * w)
            .zip(out.chunks_exact_mut(self.out_h * self.out_w));
        for (i, (x, y)) in planes.enumerate() {
            self.plane(i % channels, x, w, y, &mut split);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn run_avx(&self, input: &[f32], shape: &[usize], out: &mut [f32]) {
        self.run(input, shape, out)
    }
}

/// An input plane's columns, zero-padded and split by parity: `even[r][k]` is padded column `2k` of
/// row r, `odd[r][k]` column `2k + 1`, `out_w + 1` of each per row (the last odd one unused).
#[derive(Default)]
struct Split {
    even: Vec<f32>,
    odd: Vec<f32>,
}

impl Split {
    #[inline(always)]
    fn load(&mut self, input: &[f32], w: usize, pad_left: usize, out_w: usize) {
        let stride = out_w + 1;
        let h = input.len() / w;
        self.even.clear();
        self.even.resize(h * stride, 0.0);
        self.odd.clear();
        self.odd.resize(h * stride, 0.0);
        for (r, row) in input.chunks_exact(w).enumerate() {
            let (even, odd) = (
                &mut self.even[r * stride..(r + 1) * stride],
                &mut self.odd[r * stride..(r + 1) * stride],
            );
            // Padded column p is input column p - pad_left (pad_left is 0 or 1).
            let (first, second) = if pad_left == 0 {
                (&mut even[..], &mut odd[..])
            } else {
                (&mut odd[..], &mut even[1..])
            };
            let pairs = row.chunks_exact(2);
            if let Some(&last) = pairs.remainder().first() {
                if let Some(slot) = first.get_mut(w / 2) {
                    *slot = last;
                }
            }
            for ((a, b), pair) in first.iter_mut().zip(second.iter_mut()).zip(pairs) {
                *a = pair[0];
                *b = pair[1];
            }
        }
    }
}

impl Op for StridedDepthwise {
    fn name(&self) -> StaticName {
        "StridedDepthwise3x3".into()
    }

    op_as_typed_op!();
}

impl EvalOp for StridedDepthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let x = &inputs[0];
        let shape = x.shape().to_vec();
        let channels = self.bias.len();
        ensure!(
            shape.len() == 4 && shape[1] == channels,
            "depthwise convolution of {channels} channels given a tensor of shape {shape:?}"
        );
        let view = x.try_as_plain_ram()?;
        let input = view.as_slice::<f32>()?;
        let mut out = vec![0f32; shape[0] * channels * self.out_h * self.out_w];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has just been seen to support AVX.
            unsafe { self.run_avx(input, &shape, &mut out) };
            return Ok(tvec!(tensor_of(out, &shape, self)?));
        }
        self.run(input, &shape, &mut out);
        Ok(tvec!(tensor_of(out, &shape, self)?))
    }
}

fn tensor_of(data: Vec<f32>, shape: &[usize], op: &StridedDepthwise) -> TractResult<TValue> {
    let dims = [shape[0], shape[1], op.out_h, op.out_w];
    Ok(tract_ndarray::ArrayD::from_shape_vec(&dims[..], data)?
        .into_tensor()
        .into_tvalue())
}

impl TypedOp for StridedDepthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = &inputs[0].shape;
        ensure!(shape.rank() == 4);
        Ok(tvec!(f32::fact([
            shape[0].clone(),
            shape[1].clone(),
            self.out_h.to_dim(),
            self.out_w.to_dim()
        ])))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::cnn::{PaddingSpec, PoolSpec};

    /// A depthwise 3x3 stride-2 convolution of an `[2, channels, h, w]` input with the given
    /// padding, run by tract and with [`use_vectorised_stride2`].
    fn both(
        channels: usize,
        h: usize,
        w: usize,
        pad: (usize, usize),
    ) -> (Vec<f32>, Vec<f32>, usize) {
        let mut model = TypedModel::default();
        let x = model
            .add_source("x", f32::fact([2, channels, h, w]))
            .unwrap();
        let weights: Vec<f32> = (0..channels * 9)
            .map(|i| ((i * 7919 % 97) as f32 - 48.0) / 50.0)
            .collect();
        let kernel = tract_ndarray::ArrayD::from_shape_vec(&[channels, 1, 3, 3][..], weights)
            .unwrap()
            .into_tensor();
        let bias = tensor1(
            &(0..channels)
                .map(|c| c as f32 * 0.1 - 0.5)
                .collect::<Vec<_>>(),
        );
        let kernel = model.add_const("kernel", kernel).unwrap();
        let bias = model.add_const("bias", bias).unwrap();
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![3, 3],
                padding: PaddingSpec::Explicit(tvec![pad.0, pad.0], tvec![pad.1, pad.1]),
                dilations: None,
                strides: Some(tvec![2, 2]),
                input_channels: channels,
                output_channels: channels,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: channels,
            q_params: None,
        };
        let y = model.wire_node("conv", conv, &[x, kernel, bias]).unwrap();
        model.select_output_outlets(&y).unwrap();
        let n = 2 * channels * h * w;
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 31 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let run = |m: TypedModel| -> Vec<f32> {
            let input =
                tract_ndarray::ArrayD::from_shape_vec(&[2, channels, h, w][..], data.clone())
                    .unwrap()
                    .into_tensor();
            let out = m.into_optimized().unwrap().into_runnable().unwrap();
            let out = out.run(tvec!(input.into())).unwrap();
            out[0]
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .copied()
                .collect()
        };
        let mut ours = model.clone();
        let replaced = use_vectorised_stride2(&mut ours).unwrap();
        (run(ours), run(model), replaced)
    }

    #[test]
    fn stride_two_depthwise_agrees_with_tract() {
        for (c, h, w, pad) in [
            (3, 32, 32, (1, 1)),
            (5, 33, 35, (1, 1)),
            (4, 30, 31, (0, 0)),
            (2, 29, 34, (1, 0)),
            (3, 20, 40, (0, 1)),
        ] {
            let (ours, tracts, replaced) = both(c, h, w, pad);
            assert_eq!(replaced, usize::from(cfg!(target_arch = "x86_64")));
            assert_eq!(ours.len(), tracts.len(), "{c}x{h}x{w} pad {pad:?}");
            for (a, b) in ours.iter().zip(&tracts) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "{c}x{h}x{w} pad {pad:?}: {a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn narrow_outputs_stay_with_tract() {
        let (_, _, replaced) = both(4, 14, 14, (1, 1));
        assert_eq!(replaced, 0);
    }
}
