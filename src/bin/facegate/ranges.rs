//! Ranges for numeric flags (and the `--config` keys that feed them): a value outside what makes
//! sense is refused by name when the command line is read, instead of becoming a huge allocation,
//! an endless pyramid or a division by zero later.

use std::fmt::Display;
use std::str::FromStr;

/// A whole number in `lo..=hi`.
pub fn int<T>(lo: T, hi: T) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Copy + Send + Sync + 'static,
{
    move |s: &str| {
        let v: T = s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a whole number"))?;
        if v < lo || v > hi {
            return Err(format!("{v} is out of range ({lo} to {hi})"));
        }
        Ok(v)
    }
}

/// A finite number in `lo..=hi`.
pub fn real(lo: f64, hi: f64) -> impl Fn(&str) -> Result<f64, String> + Clone + Send + Sync {
    move |s: &str| {
        let v: f64 = s
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a number"))?;
        if !v.is_finite() || v < lo || v > hi {
            return Err(format!("{v} is out of range ({lo} to {hi})"));
        }
        Ok(v)
    }
}

/// A cosine similarity threshold: -1 to 1.
pub fn cosine(s: &str) -> Result<f32, String> {
    real(-1.0, 1.0)(s).map(|v| v as f32)
}

/// The detector's scale factor, with the library's bounds (they cap the pyramid's levels).
pub fn scale_factor(s: &str) -> Result<f64, String> {
    let (lo, hi) = facegate::detect::cascade::SCALE_FACTOR_RANGE;
    real(lo, hi)(s)
}

/// Largest sizes anything is measured in, in pixels.
pub const MAX_PX: usize = 1 << 16;
/// Threads: far more than any board has cores.
pub const MAX_THREADS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_the_range_are_named() {
        assert_eq!(int(1usize, 10)("3"), Ok(3));
        assert_eq!(
            int(1usize, 10)("0").unwrap_err(),
            "0 is out of range (1 to 10)"
        );
        assert_eq!(
            int(1u64, 10)("-1").unwrap_err(),
            "'-1' is not a whole number"
        );
        assert!(real(0.0, 1.0)("NaN").is_err());
        assert!(real(0.0, 1e9)("inf").is_err());
        assert_eq!(cosine("0.4"), Ok(0.4));
        assert!(cosine("1.5").is_err());
        assert!(scale_factor("1.0000001").is_err());
        assert!(scale_factor("1.1").is_ok());
    }
}
