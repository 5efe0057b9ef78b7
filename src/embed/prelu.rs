//! PRelu as one pass over the tensor, in place.
//!
//! tract 0.23 expands ONNX `PRelu(x, slope)` into three ops, `Iff(0 > x, x * slope, x)`, each a full
//! pass over the activations with a fresh output buffer, and none of them fuses into the
//! convolution before it. SFace has 27 PRelus: profiled on x86 (`facegate bench embed --profile`)
//! those three ops took 58 % of a face's embedding time, more than every convolution together.
//! A per-channel slope known when the model is loaded (every PRelu of a CNN) is applied here in
//! a single in-place loop instead; anything else keeps tract's expansion. The arithmetic is the
//! same (`x * slope` where `x < 0`, `x` elsewhere), so embeddings are bit-for-bit unchanged.

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops::expandable::{expand, Expansion};

/// Replaces tract's `PRelu` parser with [`OnnxPrelu`].
pub fn register(ops: &mut OnnxOpRegister) {
    ops.insert("PRelu", parse);
}

fn parse(
    _ctx: &ParsingContext,
    _node: &NodeProto,
) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    Ok((expand(OnnxPrelu), vec![]))
}

/// ONNX `PRelu` as parsed: becomes [`ChannelPrelu`] when the slope is a constant per channel
/// (axis 1) or a scalar, tract's own three-op form otherwise.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
struct OnnxPrelu;

impl Expansion for OnnxPrelu {
    fn name(&self) -> StaticName {
        "Prelu".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 2)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        name: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let (x, slope) = (inputs[0], inputs[1]);
        if let Some(op) = ChannelPrelu::for_inputs(model.outlet_fact(x)?, model.outlet_fact(slope)?)
        {
            return model.wire_node(name, op, &[x]);
        }
        wire_expanded(name, model, x, slope)
    }
}

/// tract's own expansion, `Iff(0 > x, x * slope, x)`, with the slope broadcast to x's rank.
fn wire_expanded(
    name: &str,
    model: &mut TypedModel,
    x: OutletId,
    mut slope: OutletId,
) -> TractResult<TVec<OutletId>> {
    let rank = model.outlet_fact(x)?.rank();
    while model.outlet_fact(slope)?.rank() < rank {
        let r = model.outlet_fact(slope)?.rank();
        slope = model.wire_node(format!("{name}.add-axis-{r}"), AxisOp::Add(0), &[slope])?[0];
    }
    let zero = tensor0(0.0)
        .cast_to_dt(model.outlet_fact(x)?.datum_type)?
        .into_owned()
        .broadcast_into_rank(rank)?;
    let scaled = model.wire_node(
        format!("{name}.mul"),
        tract_onnx::tract_hir::ops::math::mul(),
        &[x, slope],
    )?[0];
    let zero = model.add_const(format!("{name}.zero"), zero)?;
    let negative = model.wire_node(
        format!("{name}.test"),
        tract_onnx::tract_core::ops::binary::TypedBinOp(
            tract_onnx::tract_core::ops::logic::comp_gt(),
            None,
        ),
        &[zero, x],
    )?;
    model.wire_node(
        format!("{name}.iff"),
        tract_onnx::tract_core::ops::logic::Iff,
        &[negative[0], scaled, x],
    )
}

/// `x < 0 ? x * slope[c] : x` for f32 activations laid out `[batch, channel, ...]`.
#[derive(Debug, Clone)]
pub struct ChannelPrelu {
    slope: Vec<f32>,
}

impl PartialEq for ChannelPrelu {
    fn eq(&self, other: &Self) -> bool {
        self.slope.len() == other.slope.len()
            && self
                .slope
                .iter()
                .zip(&other.slope)
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for ChannelPrelu {}

impl ChannelPrelu {
    /// The op for these inputs, when x is f32 of known shape `[N, C, ...]` and the slope a constant
    /// that broadcasts to it along the channel axis only (shape `[C, 1, ..]`, `[1, C, 1, ..]`, or
    /// one value).
    fn for_inputs(x: &TypedFact, slope: &TypedFact) -> Option<ChannelPrelu> {
        let konst = slope.konst.as_ref()?;
        if x.datum_type != f32::datum_type() || konst.datum_type() != f32::datum_type() {
            return None;
        }
        let shape = x.shape.as_concrete()?;
        if shape.len() < 2 || konst.rank() > shape.len() {
            return None;
        }
        let channels = shape[1];
        let values = konst
            .try_as_plain_ram()
            .ok()?
            .as_slice::<f32>()
            .ok()?
            .to_vec();
        if values.len() == 1 {
            return Some(ChannelPrelu {
                slope: vec![values[0]; channels],
            });
        }
        // Right-aligned against x's shape, the slope may only have extent on axis 1.
        let offset = shape.len() - konst.rank();
        let per_channel = konst.shape().iter().enumerate().all(|(i, &d)| {
            let axis = i + offset;
            d == 1 || (axis == 1 && d == channels)
        });
        (per_channel && values.len() == channels).then_some(ChannelPrelu { slope: values })
    }
}

impl Op for ChannelPrelu {
    fn name(&self) -> StaticName {
        "ChannelPrelu".into()
    }

    op_as_typed_op!();
}

impl EvalOp for ChannelPrelu {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, mut inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        // The convolution's output is read by nothing else, so this takes it without a copy.
        let mut x = inputs.remove(0).into_tensor();
        let shape = x.shape().to_vec();
        let channels = self.slope.len();
        if shape.len() < 2 || shape[1] != channels {
            bail!(
                "PRelu with {channels} slopes applied to a tensor of shape {:?}",
                shape
            );
        }
        let plane: usize = shape[2..].iter().product();
        if plane > 0 && x.datum_type() == f16::datum_type() {
            // A model translated to f16 (`--precision f16`) after this op was chosen.
            let mut view = x.try_as_plain_ram_mut()?;
            self.apply_f16(view.as_slice_mut::<f16>()?, plane);
        } else if plane > 0 {
            let mut view = x.try_as_plain_ram_mut()?;
            let data = view.as_slice_mut::<f32>()?;
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: the CPU has just been seen to support AVX.
                unsafe { self.apply_avx(data, plane) };
                return Ok(tvec!(x.into_tvalue()));
            }
            self.apply(data, plane);
        }
        Ok(tvec!(x.into_tvalue()))
    }
}

impl ChannelPrelu {
    /// `data` is whole planes of `plane` values, channel after channel. No closures: they would
    /// not be compiled for the AVX copy.
    #[inline(always)]
    fn apply(&self, data: &mut [f32], plane: usize) {
        for (i, block) in data.chunks_mut(plane).enumerate() {
            let a = self.slope[i % self.slope.len()];
            for v in block {
                *v = if *v < 0.0 { *v * a } else { *v };
            }
        }
    }

    fn apply_f16(&self, data: &mut [f16], plane: usize) {
        let zero = f16::from_f32(0.0);
        for (i, block) in data.chunks_mut(plane).enumerate() {
            let a = f16::from_f32(self.slope[i % self.slope.len()]);
            for v in block {
                if *v < zero {
                    *v *= a;
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    fn apply_avx(&self, data: &mut [f32], plane: usize) {
        self.apply(data, plane)
    }
}

impl TypedOp for ChannelPrelu {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        Ok(tvec!(inputs[0].without_value()))
    }

    as_op!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `PRelu(x, slope)` for x of shape [2, 4, 3, 5] through a model built by `wire`.
    fn run(
        slope: Tensor,
        wire: impl Fn(&mut TypedModel, OutletId, OutletId) -> TractResult<TVec<OutletId>>,
    ) -> Vec<f32> {
        let shape = [2usize, 4, 3, 5];
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(shape)).unwrap();
        let slope = model.add_const("slope", slope).unwrap();
        let y = wire(&mut model, x, slope).unwrap();
        model.select_output_outlets(&y).unwrap();
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 23) as f32 - 11.3) / 3.0)
            .collect();
        let input = tract_ndarray::ArrayD::from_shape_vec(&shape[..], data)
            .unwrap()
            .into_tensor();
        let out = plan.run(tvec!(input.into())).unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn one_pass_prelu_equals_tracts_expansion_bit_for_bit() {
        let slopes = [
            tensor3(&[[[0.25f32]], [[-0.8]], [[1.12]], [[0.0]]]),
            tensor1(&[0.3f32]),
            tensor4(&[[[[0.1f32]], [[0.2]], [[-0.3]], [[2.0]]]]),
        ];
        for slope in slopes {
            let ours = run(slope.clone(), |model, x, slope| {
                let op = ChannelPrelu::for_inputs(
                    &model.outlet_fact(x)?.clone(),
                    model.outlet_fact(slope)?,
                )
                .expect("a per-channel constant slope");
                model.wire_node("prelu", op, &[x])
            });
            let tracts = run(slope, |model, x, slope| {
                wire_expanded("prelu", model, x, slope)
            });
            assert_eq!(ours.len(), tracts.len());
            for (a, b) in ours.iter().zip(&tracts) {
                assert_eq!(a.to_bits(), b.to_bits(), "{a} vs {b}");
            }
            assert!(
                ours.iter().any(|&v| v < 0.0),
                "the data has negative values"
            );
        }
    }

    #[test]
    fn slopes_along_other_axes_keep_tracts_expansion() {
        let x = f32::fact([1usize, 4, 3, 5]);
        let along_width = TypedFact::try_from(tensor1(&[0.1f32, 0.2, 0.3, 0.4, 0.5])).unwrap();
        assert!(ChannelPrelu::for_inputs(&x, &along_width).is_none());
        let wrong_count = TypedFact::try_from(tensor3(&[[[0.1f32]], [[0.2]]])).unwrap();
        assert!(ChannelPrelu::for_inputs(&x, &wrong_count).is_none());
        let not_constant = f32::fact([4usize, 1, 1]);
        assert!(ChannelPrelu::for_inputs(&x, &not_constant).is_none());
    }
}
