//! Reading and writing ONNX tensors: the element types the rewrites and the trainer's importer
//! meet (f32, int8, uint8, 4-bit, int64), decoded from either of ONNX's two storage forms.

use super::*;

// ONNX TensorProto data types.
pub(super) const FLOAT: i32 = 1;
pub(super) const UINT8: i32 = 2;
pub(super) const INT8: i32 = 3;
pub(super) const INT64: i32 = 7;
pub(super) const UINT4: i32 = 21;
pub(super) const INT4: i32 = 22;

/// Any numeric tensor's values as f32 (int64 included), or `None` for element types neither the
/// rewrites nor the trainer's importer read.
pub fn f32_values(t: &TensorProto) -> Option<Vec<f32>> {
    match t.data_type {
        INT64 => Some(int64_values(t)?.into_iter().map(|v| v as f32).collect()),
        _ => values(t),
    }
}

pub(super) fn values(t: &TensorProto) -> Option<Vec<f32>> {
    match t.data_type {
        INT4 | UINT4 => Some(nibbles(t)?.into_iter().map(f32::from).collect()),
        FLOAT if !t.raw_data.is_empty() => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        FLOAT => Some(t.float_data.clone()),
        INT8 if !t.raw_data.is_empty() => {
            Some(t.raw_data.iter().map(|&b| b as i8 as f32).collect())
        }
        UINT8 if !t.raw_data.is_empty() => Some(t.raw_data.iter().map(|&b| b as f32).collect()),
        INT8 | UINT8 => Some(t.int32_data.iter().map(|&v| v as f32).collect()),
        _ => None,
    }
}

pub(super) fn f32_tensor(name: String, dims: Vec<i64>, values: &[f32]) -> TensorProto {
    TensorProto {
        name,
        dims,
        data_type: FLOAT,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..TensorProto::default()
    }
}

/// The dimensions of a tensor from the file, when none is negative.
pub(super) fn dims_of(t: &TensorProto) -> Option<Vec<usize>> {
    t.dims.iter().map(|&d| usize::try_from(d).ok()).collect()
}

/// The values of a 4-bit tensor (ONNX INT4 or UINT4, opset 21: two to a byte, the first in the
/// low nibble), or `None` unless its raw data holds exactly the elements its dimensions count.
pub(super) fn nibbles(t: &TensorProto) -> Option<Vec<i8>> {
    let count = element_count(&dims_of(t)?)?;
    if t.raw_data.len() != count.div_ceil(2) {
        return None;
    }
    let signed = t.data_type == INT4;
    Some(
        (0..count)
            .map(|i| {
                let byte = t.raw_data[i / 2];
                let nibble = if i % 2 == 0 { byte & 0x0f } else { byte >> 4 };
                if signed {
                    ((nibble << 4) as i8) >> 4
                } else {
                    nibble as i8
                }
            })
            .collect(),
    )
}

/// The number of elements of `dims`, unless it overflows.
pub(super) fn element_count(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

/// An INT64 tensor's values (a `Reshape`'s shape).
pub(super) fn int64_values(t: &TensorProto) -> Option<Vec<i64>> {
    match t.data_type {
        INT64 if !t.raw_data.is_empty() => {
            if !t.raw_data.len().is_multiple_of(8) {
                return None;
            }
            Some(
                t.raw_data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            )
        }
        INT64 => Some(t.int64_data.clone()),
        _ => None,
    }
}
