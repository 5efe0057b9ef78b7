//! Symmetric int8 quantisation of exported weights.
//!
//! Each group of weights gets the scale whose clip minimises the squared error (round-to-nearest
//! error shrinks with the step, clipping error grows with what is cut off); max-abs is one of the
//! candidates. At 8 bits the best clip is rarely far inside the largest weight unless the tails are
//! heavy, so most of the gain comes from small groups: blocks along the input channels (SFace's own
//! form) instead of one scale for a whole output channel, which let fine-tuned SFace's int8 export
//! fall to cosine 0.91.

/// Clips tried, as fractions of the largest magnitude: coarse, then refined around the best.
const COARSE_STEPS: usize = 50;
const FINE_STEPS: usize = 20;

/// Squared error of quantising `values` with `scale` (levels -127..=127).
fn squared_error(values: &[f32], scale: f32) -> f64 {
    values
        .iter()
        .map(|&v| {
            let q = (v / scale).round().clamp(-127.0, 127.0);
            let e = (v - q * scale) as f64;
            e * e
        })
        .sum()
}

/// The scale (clip / 127) with the least squared error for `values`. Max-abs is one of the
/// candidates, so the error is never worse than plain max-abs scaling.
pub fn mse_scale(values: &[f32]) -> f32 {
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        return 1.0;
    }
    let mut best = (squared_error(values, max / 127.0), max);
    // Coarse: clips from 20 % to 100 % of the maximum.
    for i in 0..COARSE_STEPS {
        let clip = max * (0.2 + 0.8 * i as f32 / COARSE_STEPS as f32);
        let e = squared_error(values, clip / 127.0);
        if e < best.0 {
            best = (e, clip);
        }
    }
    // Fine: one coarse step either side of the best.
    let step = max * 0.8 / COARSE_STEPS as f32;
    let centre = best.1;
    for i in 0..=FINE_STEPS {
        let clip = (centre - step + 2.0 * step * i as f32 / FINE_STEPS as f32).clamp(1e-12, max);
        let e = squared_error(values, clip / 127.0);
        if e < best.0 {
            best = (e, clip);
        }
    }
    best.1 / 127.0
}

/// `values` quantised with `scale` (symmetric, zero point 0).
pub fn quantise(values: &[f32], scale: f32) -> Vec<i8> {
    values
        .iter()
        .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
        .collect()
}

/// Quantises a `rows x cols` matrix (row-major) in blocks of `block` consecutive values of a row,
/// each with its own MSE scale: returns the int8 values and the `rows x ceil(cols / block)` scales.
pub fn blocks(values: &[f32], rows: usize, cols: usize, block: usize) -> (Vec<i8>, Vec<f32>) {
    let block = block.max(1);
    let per_row = cols.div_ceil(block);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(rows * per_row);
    for row in values.chunks(cols.max(1)).take(rows) {
        for part in row.chunks(block) {
            let s = mse_scale(part);
            scales.push(s);
            q.extend(quantise(part, s));
        }
    }
    (q, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dequantised(q: &[i8], scale: f32) -> Vec<f32> {
        q.iter().map(|&v| v as f32 * scale).collect()
    }

    fn sse(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum()
    }

    #[test]
    fn clipping_never_loses_to_max_abs_and_blocks_are_finer() {
        // Cauchy-tailed values (its quantiles): a few huge ones that max-abs lets dominate.
        let n = 4096;
        let heavy: Vec<f32> = (0..n)
            .map(|i| (std::f32::consts::PI * ((i as f32 + 0.5) / n as f32 - 0.5)).tan())
            .collect();
        let max_abs = heavy.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        let s = mse_scale(&heavy);
        let ours = sse(&heavy, &dequantised(&quantise(&heavy, s), s));
        let plain = sse(&heavy, &dequantised(&quantise(&heavy, max_abs), max_abs));
        assert!(ours <= plain, "{ours} vs {plain}");
        // A bulk of 4096 values and a block of 64 from it: the block's own scale is finer.
        let (q, scales) = blocks(&heavy[2016..2080], 1, 64, 64);
        let block = sse(&heavy[2016..2080], &dequantised(&q, scales[0]));
        let whole = sse(
            &heavy[2016..2080],
            &dequantised(&quantise(&heavy[2016..2080], s), s),
        );
        assert!(block < 0.01 * whole, "{block} vs {whole}");
        // One outlier among small weights: cutting it would cost more than it saves.
        let mut one: Vec<f32> = (0..256)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 5000.0)
            .collect();
        one[7] = 0.5;
        let s = mse_scale(&one);
        let plain = sse(
            &one,
            &dequantised(&quantise(&one, 0.5 / 127.0), 0.5 / 127.0),
        );
        assert!(sse(&one, &dequantised(&quantise(&one, s), s)) <= plain);
        // Evenly spread weights: nothing to clip, and never worse than max-abs.
        let even: Vec<f32> = (0..255).map(|i| (i as f32 - 127.0) / 127.0).collect();
        let s = mse_scale(&even);
        assert!(sse(&even, &dequantised(&quantise(&even, s), s)) <= 1e-9);
        assert_eq!(mse_scale(&[0.0, 0.0]), 1.0);
    }

    #[test]
    fn blocks_have_one_scale_each_and_a_short_last_block() {
        let values: Vec<f32> = (0..2 * 5).map(|i| i as f32 - 4.5).collect();
        let (q, scales) = blocks(&values, 2, 5, 2);
        assert_eq!(q.len(), 10);
        assert_eq!(scales.len(), 2 * 3);
        for (r, row) in values.chunks(5).enumerate() {
            for (b, part) in row.chunks(2).enumerate() {
                let s = scales[r * 3 + b];
                let back = dequantised(&q[r * 5 + b * 2..r * 5 + b * 2 + part.len()], s);
                for (x, y) in part.iter().zip(back) {
                    assert!((x - y).abs() <= s * 0.5 + 1e-6, "{x} {y}");
                }
            }
        }
    }
}
