//! A cascade compiled for one integral-table row stride: every feature rectangle is turned into four
//! table offsets relative to the window's top-left entry, and stored inline in the node that tests
//! it, so evaluating a window walks memory in order instead of chasing feature indices.
//!
//! The arithmetic follows OpenCV's evaluator operation by operation (integer rectangle sums, `f32`
//! feature values scaled by the window's inverse standard deviation, `f64` stage sums), because any
//! reordering of the floating-point operations could flip a window that sits on a threshold.

use super::file::{Cascade, Features, HaarFeature, LbpFeature};

/// The integral tables one pyramid level is evaluated on. `sum` holds the plain sums and, for
/// cascades with tilted features, the rotated sums `tilted_offset` entries further on.
pub struct Tables<'a> {
    pub sum: &'a [i32],
    pub sqsum: &'a [u32],
}

/// Outcome of classifying one window, with OpenCV's meaning: `> 0` accepted, `0` rejected by the
/// first stage (the scan then skips the next window), `< 0` rejected later or unusable.
pub type Verdict = i32;

pub trait Program: Sync {
    /// Classifies the window whose top-left table entry is `base`.
    ///
    /// # Safety
    /// `base + self.reach()` must be a valid index of `tables.sum` and (for Haar) `tables.sqsum`.
    unsafe fn classify(&self, tables: &Tables, base: usize) -> Verdict;

    /// The largest offset any lookup into `sum` adds to `base`.
    fn reach(&self) -> usize;

    /// The largest offset a lookup into `sqsum` adds to `base`, if the program reads it.
    fn sqsum_reach(&self) -> Option<usize> {
        None
    }
}

#[derive(Clone, Copy, Default)]
struct RectOfs {
    ofs: [u32; 4],
    weight: f32,
}

#[derive(Clone, Copy)]
struct HaarFeatureOfs {
    rects: [RectOfs; 3],
}

impl HaarFeatureOfs {
    fn new(f: &HaarFeature, stride: usize, tilted_offset: usize) -> Self {
        let mut rects = [RectOfs::default(); 3];
        for (out, r) in rects.iter_mut().zip(&f.rects) {
            let at = |x: i32, y: i32| (x as usize + y as usize * stride) as u32;
            out.ofs = if f.tilted {
                let t = tilted_offset as u32;
                [
                    t + at(r.x, r.y),
                    t + at(r.x - r.h, r.y + r.h),
                    t + at(r.x + r.w, r.y + r.w),
                    t + at(r.x + r.w - r.h, r.y + r.w + r.h),
                ]
            } else {
                [
                    at(r.x, r.y),
                    at(r.x + r.w, r.y),
                    at(r.x, r.y + r.h),
                    at(r.x + r.w, r.y + r.h),
                ]
            };
            out.weight = r.weight;
        }
        HaarFeatureOfs { rects }
    }

    fn reach(&self) -> usize {
        self.rects.iter().flat_map(|r| r.ofs).max().unwrap_or(0) as usize
    }

    /// # Safety
    /// Every offset added to `base` must index `sum`.
    #[inline(always)]
    unsafe fn value(&self, sum: &[i32], base: usize) -> f32 {
        let rect = |r: &RectOfs| {
            let p = sum.as_ptr().add(base);
            let [a, b, c, d] = r.ofs;
            (*p.add(a as usize))
                .wrapping_sub(*p.add(b as usize))
                .wrapping_sub(*p.add(c as usize))
                .wrapping_add(*p.add(d as usize)) as f32
        };
        let [r0, r1, r2] = &self.rects;
        let mut v = r0.weight * rect(r0) + r1.weight * rect(r1);
        if r2.weight != 0.0 {
            v += r2.weight * rect(r2);
        }
        v
    }
}

#[derive(Clone, Copy)]
struct HaarStump {
    feature: HaarFeatureOfs,
    threshold: f32,
    left: f32,
    right: f32,
}

#[derive(Clone, Copy)]
struct HaarNode {
    feature: HaarFeatureOfs,
    threshold: f32,
    left: i32,
    right: i32,
}

#[derive(Clone, Copy)]
struct StageRange {
    threshold: f32,
    /// This stage's trees: `first .. first + count`.
    first: u32,
    count: u32,
}

/// Inverse standard deviation normalisation over the window minus a one-pixel border, as OpenCV.
#[derive(Clone, Copy)]
struct Variance {
    ofs: [u32; 4],
    area: f64,
}

impl Variance {
    fn new(win_w: usize, win_h: usize, stride: usize) -> Self {
        let (x0, y0, x1, y1) = (1, 1, win_w - 1, win_h - 1);
        let at = |x: usize, y: usize| (x + y * stride) as u32;
        Variance {
            ofs: [at(x0, y0), at(x1, y0), at(x0, y1), at(x1, y1)],
            area: ((x1 - x0) * (y1 - y0)) as f64,
        }
    }

    fn reach(&self) -> usize {
        self.ofs[3] as usize
    }

    /// The factor feature values are multiplied by, or `None` for windows OpenCV refuses
    /// (flat, or too little contrast to normalise).
    ///
    /// # Safety
    /// Offsets added to `base` must index both tables.
    #[inline(always)]
    unsafe fn inverse_std(&self, t: &Tables, base: usize) -> Option<f32> {
        let [a, b, c, d] = self.ofs.map(|o| base + o as usize);
        let s = t.sum.as_ptr();
        let q = t.sqsum.as_ptr();
        let sum = (*s.add(a))
            .wrapping_sub(*s.add(b))
            .wrapping_sub(*s.add(c))
            .wrapping_add(*s.add(d));
        let sq = (*q.add(a))
            .wrapping_sub(*q.add(b))
            .wrapping_sub(*q.add(c))
            .wrapping_add(*q.add(d));
        let nf = self.area * sq as f64 - sum as f64 * sum as f64;
        if nf > 0.0 {
            let inv = (1.0 / nf.sqrt()) as f32;
            (self.area * (inv as f64) < 0.1).then_some(inv)
        } else {
            None
        }
    }
}

fn stage_ranges(cascade: &Cascade) -> Vec<StageRange> {
    cascade
        .stages
        .iter()
        .map(|s| StageRange {
            threshold: s.threshold,
            first: s.first_tree as u32,
            count: s.tree_count as u32,
        })
        .collect()
}

/// The boosted cascade's outer loop, shared by every program: each stage sums its trees' leaf
/// values in `f64` (as OpenCV) and rejects the window below the stage threshold. `items` holds one
/// entry per tree, indexed by the stages' ranges; `leaf` evaluates one tree.
#[inline(always)]
fn run_stages<T>(stages: &[StageRange], items: &[T], mut leaf: impl FnMut(&T) -> f32) -> Verdict {
    for (si, stage) in stages.iter().enumerate() {
        let first = stage.first as usize;
        // SAFETY: stage ranges are built from the cascade's tree ranges, which index `items`.
        let trees = unsafe { items.get_unchecked(first..first + stage.count as usize) };
        let mut sum = 0.0f64;
        for tree in trees {
            sum += leaf(tree) as f64;
        }
        if sum < stage.threshold as f64 {
            return -(si as i32);
        }
    }
    1
}

/// The furthest table entry a Haar program reads: its features' and the variance window's.
fn haar_reach<'a>(
    features: impl Iterator<Item = &'a HaarFeatureOfs>,
    variance: &Variance,
) -> usize {
    features
        .map(|f| f.reach())
        .chain([variance.reach()])
        .max()
        .unwrap_or(0)
}

/// Haar cascade whose trees are all single splits (the common `haarcascade_*_default` form).
pub struct HaarStumps {
    stages: Vec<StageRange>,
    stumps: Vec<HaarStump>,
    variance: Variance,
    reach: usize,
}

/// Haar cascade with multi-node trees (e.g. `haarcascade_frontalface_alt2`).
pub struct HaarTrees {
    stages: Vec<StageRange>,
    /// Per tree: first node, first leaf.
    trees: Vec<(u32, u32)>,
    nodes: Vec<HaarNode>,
    leaves: Vec<f32>,
    variance: Variance,
    reach: usize,
}

fn haar_features(cascade: &Cascade, stride: usize, tilted_offset: usize) -> Vec<HaarFeatureOfs> {
    match &cascade.features {
        Features::Haar(f) => f
            .iter()
            .map(|f| HaarFeatureOfs::new(f, stride, tilted_offset))
            .collect(),
        Features::Lbp(_) => Vec::new(),
    }
}

impl HaarStumps {
    pub fn new(cascade: &Cascade, stride: usize, tilted_offset: usize) -> Self {
        let features = haar_features(cascade, stride, tilted_offset);
        // OpenCV reads a stump's leaves positionally: first leaf below the threshold.
        let stumps: Vec<HaarStump> = cascade
            .trees
            .iter()
            .map(|t| {
                let n = &cascade.nodes[t.first_node];
                HaarStump {
                    feature: features[n.feature],
                    threshold: n.threshold,
                    left: cascade.leaves[t.first_leaf],
                    right: cascade.leaves[t.first_leaf + 1],
                }
            })
            .collect();
        let variance = Variance::new(cascade.window_width, cascade.window_height, stride);
        let reach = haar_reach(stumps.iter().map(|s| &s.feature), &variance);
        HaarStumps {
            stages: stage_ranges(cascade),
            stumps,
            variance,
            reach,
        }
    }
}

impl Program for HaarStumps {
    /// # Safety
    /// As [`Program::classify`]: every table read adds at most `self.reach()` to `base`.
    #[inline]
    unsafe fn classify(&self, t: &Tables, base: usize) -> Verdict {
        let Some(norm) = self.variance.inverse_std(t, base) else {
            return -1;
        };
        run_stages(&self.stages, &self.stumps, |s| {
            let value = s.feature.value(t.sum, base) * norm;
            if value < s.threshold {
                s.left
            } else {
                s.right
            }
        })
    }

    fn reach(&self) -> usize {
        self.reach
    }

    fn sqsum_reach(&self) -> Option<usize> {
        Some(self.variance.reach())
    }
}

impl HaarTrees {
    pub fn new(cascade: &Cascade, stride: usize, tilted_offset: usize) -> Self {
        let features = haar_features(cascade, stride, tilted_offset);
        let nodes: Vec<HaarNode> = cascade
            .nodes
            .iter()
            .map(|n| HaarNode {
                feature: features[n.feature],
                threshold: n.threshold,
                left: n.left,
                right: n.right,
            })
            .collect();
        let variance = Variance::new(cascade.window_width, cascade.window_height, stride);
        let reach = haar_reach(nodes.iter().map(|n| &n.feature), &variance);
        HaarTrees {
            stages: stage_ranges(cascade),
            trees: cascade
                .trees
                .iter()
                .map(|t| (t.first_node as u32, t.first_leaf as u32))
                .collect(),
            nodes,
            leaves: cascade.leaves.clone(),
            variance,
            reach,
        }
    }
}

impl Program for HaarTrees {
    /// # Safety
    /// As [`Program::classify`]: every table read adds at most `self.reach()` to `base`.
    #[inline]
    unsafe fn classify(&self, t: &Tables, base: usize) -> Verdict {
        let Some(norm) = self.variance.inverse_std(t, base) else {
            return -1;
        };
        run_stages(&self.stages, &self.trees, |&(root, leaf0)| {
            // Child links were checked at load time to point forward, so this terminates.
            let mut idx = 0i32;
            loop {
                // SAFETY: the cascade loader accepts a positive link only when it is below the
                // tree's node count, and the tree's nodes start at `root` in `nodes`.
                let n = self.nodes.get_unchecked(root as usize + idx as usize);
                let value = n.feature.value(t.sum, base) * norm;
                idx = if value < n.threshold { n.left } else { n.right };
                if idx <= 0 {
                    break;
                }
            }
            // SAFETY: a leaf link -k was checked to be at most the tree's node count, and the
            // tree has node count + 1 leaves from `leaf0` on.
            *self.leaves.get_unchecked((leaf0 as i32 - idx) as usize)
        })
    }

    fn reach(&self) -> usize {
        self.reach
    }

    fn sqsum_reach(&self) -> Option<usize> {
        Some(self.variance.reach())
    }
}

/// The 16 corner offsets of an LBP feature's 3x3 block grid, row by row.
#[derive(Clone, Copy)]
struct LbpFeatureOfs {
    ofs: [u32; 16],
}

impl LbpFeatureOfs {
    fn new(f: &LbpFeature, stride: usize) -> Self {
        let mut ofs = [0u32; 16];
        for j in 0..4 {
            for i in 0..4 {
                let x = (f.x + i as i32 * f.w) as usize;
                let y = (f.y + j as i32 * f.h) as usize;
                ofs[j * 4 + i] = (x + y * stride) as u32;
            }
        }
        LbpFeatureOfs { ofs }
    }

    /// The 8-bit local binary pattern: each neighbour block compared with the centre block, clockwise
    /// from the top-left neighbour, most significant bit first.
    ///
    /// # Safety
    /// Every offset added to `base` must index `sum`.
    #[inline(always)]
    unsafe fn code(&self, sum: &[i32], base: usize) -> usize {
        let p = sum.as_ptr().add(base);
        let v: [i32; 16] = self.ofs.map(|o| *p.add(o as usize));
        let block = |a: usize, b: usize, c: usize, d: usize| {
            v[a].wrapping_sub(v[b])
                .wrapping_sub(v[c])
                .wrapping_add(v[d])
        };
        let centre = block(5, 6, 9, 10);
        let bit = |a, b, c, d, weight: usize| {
            if block(a, b, c, d) >= centre {
                weight
            } else {
                0
            }
        };
        bit(0, 1, 4, 5, 128)
            | bit(1, 2, 5, 6, 64)
            | bit(2, 3, 6, 7, 32)
            | bit(6, 7, 10, 11, 16)
            | bit(10, 11, 14, 15, 8)
            | bit(9, 10, 13, 14, 4)
            | bit(8, 9, 12, 13, 2)
            | bit(4, 5, 8, 9, 1)
    }
}

#[derive(Clone, Copy)]
struct LbpNode {
    feature: LbpFeatureOfs,
    /// Category bit set: the left branch is taken when bit `code` is set.
    subset: [u32; 8],
    left: i32,
    right: i32,
}

impl LbpNode {
    #[inline(always)]
    fn goes_left(&self, code: usize) -> bool {
        self.subset[code >> 5] & (1 << (code & 31)) != 0
    }
}

/// LBP cascade (stumps or trees over categorical splits).
pub struct Lbp {
    stages: Vec<StageRange>,
    trees: Vec<(u32, u32)>,
    nodes: Vec<LbpNode>,
    leaves: Vec<f32>,
    /// When every tree is a single split: per tree, its node's leaves (below, above), inline.
    stump_leaves: Option<Vec<[f32; 2]>>,
    reach: usize,
}

impl Lbp {
    pub fn new(cascade: &Cascade, stride: usize) -> Self {
        let features: Vec<LbpFeatureOfs> = match &cascade.features {
            Features::Lbp(f) => f.iter().map(|f| LbpFeatureOfs::new(f, stride)).collect(),
            Features::Haar(_) => Vec::new(),
        };
        let words = cascade.subset_words;
        let nodes: Vec<LbpNode> = cascade
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let mut subset = [0u32; 8];
                for (w, &s) in subset
                    .iter_mut()
                    .zip(&cascade.subsets[i * words..(i + 1) * words])
                {
                    *w = s as u32;
                }
                LbpNode {
                    feature: features[n.feature],
                    subset,
                    left: n.left,
                    right: n.right,
                }
            })
            .collect();
        let reach = nodes.iter().flat_map(|n| n.feature.ofs).max().unwrap_or(0) as usize;
        Lbp {
            stages: stage_ranges(cascade),
            trees: cascade
                .trees
                .iter()
                .map(|t| (t.first_node as u32, t.first_leaf as u32))
                .collect(),
            nodes,
            leaves: cascade.leaves.clone(),
            // As OpenCV's stump path: a stump's leaves are read positionally.
            stump_leaves: (cascade.max_nodes_per_tree() == 1).then(|| {
                cascade
                    .trees
                    .iter()
                    .map(|t| {
                        [
                            cascade.leaves[t.first_leaf],
                            cascade.leaves[t.first_leaf + 1],
                        ]
                    })
                    .collect()
            }),
            reach,
        }
    }
}

impl Program for Lbp {
    /// # Safety
    /// As [`Program::classify`]: every table read adds at most `self.reach()` to `base`.
    #[inline]
    unsafe fn classify(&self, t: &Tables, base: usize) -> Verdict {
        for (si, stage) in self.stages.iter().enumerate() {
            let mut sum = 0.0f64;
            let first = stage.first as usize;
            let trees = first..first + stage.count as usize;
            if let Some(stump_leaves) = &self.stump_leaves {
                // Stumps: node i is tree i, so nodes and leaves are read in step.
                // SAFETY: stage ranges come from the loader's own tree counts, so `trees` lies
                // within `nodes` and, for stumps (one node a tree), within `stump_leaves`.
                let nodes = self.nodes.get_unchecked(trees.clone());
                let leaves = stump_leaves.get_unchecked(trees);
                for (n, &[left, right]) in nodes.iter().zip(leaves) {
                    sum += if n.goes_left(n.feature.code(t.sum, base)) {
                        left
                    } else {
                        right
                    } as f64;
                }
            } else {
                // SAFETY: stage ranges come from the loader's own tree counts.
                for &(root, leaf0) in self.trees.get_unchecked(trees) {
                    let mut idx = 0i32;
                    loop {
                        // SAFETY: positive links were checked to stay inside the tree (as in
                        // HaarTrees above).
                        let n = self.nodes.get_unchecked(root as usize + idx as usize);
                        let code = n.feature.code(t.sum, base);
                        idx = if n.goes_left(code) { n.left } else { n.right };
                        if idx <= 0 {
                            break;
                        }
                    }
                    // SAFETY: leaf links were checked against the tree's leaf count.
                    sum += *self.leaves.get_unchecked((leaf0 as i32 - idx) as usize) as f64;
                }
            }
            if sum < stage.threshold as f64 {
                return -(si as i32);
            }
        }
        1
    }

    fn reach(&self) -> usize {
        self.reach
    }
}

/// A tree of two splits, the shape of every tree in `haarcascade_frontalface_alt2`: the root
/// leads to a leaf on one side and to a second split on the other.
#[derive(Clone, Copy)]
struct TwoSplits {
    root: HaarFeatureOfs,
    root_threshold: f32,
    /// Whether a root value below its threshold goes to the leaf (else to the second split).
    leaf_when_below: bool,
    second: HaarFeatureOfs,
    second_threshold: f32,
    /// Leaf after the root, then the second split's below / not-below leaves.
    leaves: [f32; 3],
}

/// Haar cascade made only of [`TwoSplits`] trees. Both splits are evaluated for every tree and
/// the leaf is selected without a data-dependent branch: the walk's branch is unpredictable, and
/// a mispredict costs more than the second feature. The chosen leaf is the one the walk would reach.
pub struct HaarTwoSplits {
    stages: Vec<StageRange>,
    trees: Vec<TwoSplits>,
    variance: Variance,
    reach: usize,
}

impl HaarTwoSplits {
    /// `None` unless every tree has exactly the two-split shape.
    pub fn new(cascade: &Cascade, stride: usize, tilted_offset: usize) -> Option<Self> {
        let features = haar_features(cascade, stride, tilted_offset);
        let mut trees = Vec::with_capacity(cascade.trees.len());
        for t in &cascade.trees {
            if t.node_count != 2 {
                return None;
            }
            let (n0, n1) = (
                &cascade.nodes[t.first_node],
                &cascade.nodes[t.first_node + 1],
            );
            let leaf_when_below = match (n0.left, n0.right) {
                (0, 1) => true,
                (1, 0) => false,
                _ => return None,
            };
            if (n1.left, n1.right) != (-1, -2) {
                return None;
            }
            let l = &cascade.leaves[t.first_leaf..t.first_leaf + 3];
            trees.push(TwoSplits {
                root: features[n0.feature],
                root_threshold: n0.threshold,
                leaf_when_below,
                second: features[n1.feature],
                second_threshold: n1.threshold,
                leaves: [l[0], l[1], l[2]],
            });
        }
        let variance = Variance::new(cascade.window_width, cascade.window_height, stride);
        let reach = haar_reach(trees.iter().flat_map(|t| [&t.root, &t.second]), &variance);
        Some(HaarTwoSplits {
            stages: stage_ranges(cascade),
            trees,
            variance,
            reach,
        })
    }
}

impl Program for HaarTwoSplits {
    /// # Safety
    /// As [`Program::classify`]: every table read adds at most `self.reach()` to `base`.
    #[inline]
    unsafe fn classify(&self, t: &Tables, base: usize) -> Verdict {
        let Some(norm) = self.variance.inverse_std(t, base) else {
            return -1;
        };
        run_stages(&self.stages, &self.trees, |tree| {
            let below0 = tree.root.value(t.sum, base) * norm < tree.root_threshold;
            let below1 = tree.second.value(t.sum, base) * norm < tree.second_threshold;
            let second = if below1 {
                tree.leaves[1]
            } else {
                tree.leaves[2]
            };
            if below0 == tree.leaf_when_below {
                tree.leaves[0]
            } else {
                second
            }
        })
    }

    fn reach(&self) -> usize {
        self.reach
    }

    fn sqsum_reach(&self) -> Option<usize> {
        Some(self.variance.reach())
    }
}
