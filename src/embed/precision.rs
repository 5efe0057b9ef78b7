//! The float type the embedding network computes in.
//!
//! Boards with ARMv8.2 half-precision arithmetic (Raspberry Pi 5's Cortex-A76, Jetson Orin and
//! Xavier) run tract's f16 matrix kernels at twice the lanes of f32, and f16 weights take half the
//! memory. Elsewhere tract emulates f16 in software, which is correct but slow, so `auto` picks f16
//! only where tract itself would use its native f16 kernels. Embeddings in f16 agree with f32 to a
//! cosine of 0.999 or better (tested), far closer than any match threshold, so a gallery enrolled
//! in one precision is matched in the other.

use std::fmt;

/// What the user asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Precision {
    /// f16 where the CPU has half-precision arithmetic, f32 elsewhere.
    #[default]
    Auto,
    F32,
    F16,
}

/// What the network then runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Float {
    F32,
    F16,
}

impl Precision {
    pub fn resolve(self) -> Float {
        match self {
            Precision::F32 => Float::F32,
            Precision::F16 => Float::F16,
            Precision::Auto if cpu_has_f16_arithmetic() => Float::F16,
            Precision::Auto => Float::F32,
        }
    }
}

/// tract's own test (on aarch64 Linux, `asimdhp` in /proc/cpuinfo or a core known to have it), so
/// `auto` never picks f16 where tract would run it without its native kernels.
pub fn cpu_has_f16_arithmetic() -> bool {
    tract_onnx::tract_core::tract_linalg::has_fp16()
}

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Float::F32 => "f32",
            Float::F16 => "f16",
        })
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::F16 => "f16",
        })
    }
}
