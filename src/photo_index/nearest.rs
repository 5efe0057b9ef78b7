//! Exact nearest-neighbour search: the cosine of a query to every indexed face, keeping the best
//! `k`. Embeddings are unit length, so the cosine is a dot product. The scan streams the matrix
//! once with [`crate::recognize::matcher::dot`] (eight accumulators, vectorised) and keeps a small heap, so
//! its cost is the memory it reads: 128 dimensions take 512 bytes a face.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::recognize::matcher::dot;

/// One result: a face (its row in the matrix) and its cosine to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub face: usize,
    pub score: f32,
}

/// Orders hits worst first, so the heap's top is the hit to drop; equal scores rank the earlier
/// face first, which makes results independent of scan order.
#[derive(PartialEq)]
struct Worst(Hit);

impl Eq for Worst {}

impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then(self.0.face.cmp(&other.0.face))
    }
}

impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `k` faces of `matrix` (`rows x dim`, row-major) most similar to `query`, best first, among
/// those scoring at least `threshold`. `skip` leaves rows out (the query's own face, say).
pub fn nearest(
    matrix: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    threshold: f32,
    skip: impl Fn(usize) -> bool,
) -> Vec<Hit> {
    if k == 0 || dim == 0 || query.len() != dim {
        return Vec::new();
    }
    let mut heap: BinaryHeap<Worst> = BinaryHeap::with_capacity(k + 1);
    // The score a row must beat to enter the results: the threshold until the heap is full, then
    // the worst kept score.
    let mut bar = threshold;
    for (face, row) in matrix.chunks_exact(dim).enumerate() {
        let score = dot(query, row);
        if score < bar || (heap.len() == k && score == bar) || skip(face) {
            continue;
        }
        heap.push(Worst(Hit { face, score }));
        if heap.len() > k {
            heap.pop();
        }
        if heap.len() == k {
            bar = heap.peek().map_or(threshold, |w| w.0.score);
        }
    }
    let mut hits: Vec<Hit> = heap.into_iter().map(|w| w.0).collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.face.cmp(&b.face)));
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reproducible pseudo-random unit vector.
    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let row: Vec<f32> = (0..dim)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
                })
                .collect();
            out.extend(crate::embed::normalized(&row));
        }
        out
    }

    fn by_sorting(matrix: &[f32], dim: usize, q: &[f32], k: usize, t: f32) -> Vec<Hit> {
        let mut all: Vec<Hit> = matrix
            .chunks_exact(dim)
            .enumerate()
            .map(|(face, row)| Hit {
                face,
                score: dot(q, row),
            })
            .filter(|h| h.score >= t)
            .collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.face.cmp(&b.face)));
        all.truncate(k);
        all
    }

    #[test]
    fn agrees_with_sorting_everything() {
        let dim = 16;
        let matrix = vectors(2000, dim, 7);
        for (seed, k, t) in [(1, 1, -1.0), (2, 10, -1.0), (3, 50, 0.2), (4, 5000, 0.0)] {
            let q = vectors(1, dim, seed);
            assert_eq!(
                nearest(&matrix, dim, &q, k, t, |_| false),
                by_sorting(&matrix, dim, &q, k, t),
                "k={k} threshold={t}"
            );
        }
    }

    #[test]
    fn ties_threshold_and_skip() {
        // Rows 0 and 2 are identical: the earlier one ranks first.
        let matrix = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.6, 0.8];
        let hits = nearest(&matrix, 2, &[1.0, 0.0], 2, -1.0, |_| false);
        assert_eq!(hits.iter().map(|h| h.face).collect::<Vec<_>>(), [0, 2]);
        let hits = nearest(&matrix, 2, &[1.0, 0.0], 10, 0.5, |face| face == 0);
        assert_eq!(hits.iter().map(|h| h.face).collect::<Vec<_>>(), [2, 3]);
        assert!(nearest(&matrix, 2, &[1.0, 0.0], 0, -1.0, |_| false).is_empty());
        assert!(nearest(&matrix, 2, &[1.0], 3, -1.0, |_| false).is_empty());
    }
}
