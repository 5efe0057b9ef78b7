//! Triplet mining and the metric-learning losses.
//!
//! Mining happens on the host: the batch's distance matrix is small (P*K squared), and choosing
//! triplets is branchy code that GPUs do badly. The chosen (anchor, positive, negative) indices
//! then gather distances from the device tensor, so gradients flow only through them.

use burn::prelude::*;
use burn::tensor::Int;

use facegate::support::rng::Rng;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mining {
    /// Every anchor-positive pair with one random negative.
    Random,
    /// Every anchor-positive pair with the negative nearest the anchor.
    Hard,
    /// Each anchor with its farthest positive and nearest negative, hinge loss.
    HardPosNeg,
    /// FaceNet's semi-hard negatives: farther than the positive but inside the margin (the
    /// nearest such one; the nearest farther one when none is inside).
    SemiHard,
    /// Every anchor-positive pair with the negative nearest the positive.
    Mixed,
    /// Hermans et al.'s batch-hard: farthest positive and nearest negative per anchor, with the
    /// soft margin `ln(1 + e^(d_ap - d_an))` they recommend.
    BatchHard,
    /// Every valid triplet in the batch, averaged over those that still violate the margin.
    BatchAll,
    /// Not triplets: contrastive loss on every pair (same: d^2; different: max(0, m - d)^2).
    Contrastive,
}

impl Mining {
    pub const ALL: [Mining; 8] = [
        Mining::Random,
        Mining::Hard,
        Mining::HardPosNeg,
        Mining::SemiHard,
        Mining::Mixed,
        Mining::BatchHard,
        Mining::BatchAll,
        Mining::Contrastive,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mining::Random => "random",
            Mining::Hard => "hard",
            Mining::HardPosNeg => "hard-pos-neg",
            Mining::SemiHard => "semi-hard",
            Mining::Mixed => "mixed",
            Mining::BatchHard => "batch-hard",
            Mining::BatchAll => "batch-all",
            Mining::Contrastive => "contrastive",
        }
    }
}

/// What training minimises.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Triplet or contrastive loss on P x K batches, with `--mining`.
    Triplet,
    /// ArcFace: softmax over the training identities with an additive angular margin,
    /// `s * cos(theta + m)` for the true identity (Deng et al. 2019).
    Arcface,
    /// CosFace: softmax with an additive cosine margin, `s * (cos(theta) - m)` for the true
    /// identity (Wang et al. 2018).
    Cosface,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Triplet => "triplet",
            Objective::Arcface => "arcface",
            Objective::Cosface => "cosface",
        }
    }

    pub fn is_margin_softmax(self) -> bool {
        self != Objective::Triplet
    }

    /// The usual margin: ArcFace 0.5 rad and CosFace 0.35 (their papers' choices on faces);
    /// triplets 0.3 on the unit sphere's Euclidean distances.
    pub fn default_margin(self) -> f32 {
        match self {
            Objective::Triplet => 0.3,
            Objective::Arcface => 0.5,
            Objective::Cosface => 0.35,
        }
    }
}

/// The training-only classifier of the margin losses: one unit-length row per training identity.
/// It lives beside the network, never in it, so exported models are the same as triplet runs'.
#[derive(Module, Debug)]
pub struct MarginHead {
    pub weight: burn::module::Param<Tensor<2>>,
}

impl MarginHead {
    /// `classes` random directions in `dim` dimensions, drawn with `seed` (Box-Muller).
    pub fn new(classes: usize, dim: usize, seed: u64, device: &Device) -> MarginHead {
        let mut rng = Rng::new(seed ^ 0x4ead);
        let mut uniform = || ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let values: Vec<f32> = (0..classes * dim)
            .map(|_| {
                let (u, v) = (uniform(), uniform());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        MarginHead::from_values(values, classes, dim, device)
    }

    pub fn from_values(
        values: Vec<f32>,
        classes: usize,
        dim: usize,
        device: &Device,
    ) -> MarginHead {
        MarginHead {
            weight: burn::module::Param::from_tensor(Tensor::from_data(
                TensorData::new(values, [classes, dim]),
                device,
            )),
        }
    }

    pub fn classes(&self) -> usize {
        self.weight.val().dims()[0]
    }
}

/// The margin-softmax loss of unit-length `embeddings` whose identities are `labels`, with scale
/// `s` and margin `m`. `active` is the share of samples whose margin-reduced true logit is not yet
/// the largest.
pub fn margin_loss(
    objective: Objective,
    embeddings: Tensor<2>,
    head: &MarginHead,
    labels: &[usize],
    scale: f32,
    margin: f32,
) -> Option<LossValue> {
    let b = labels.len();
    let classes = head.classes();
    if b == 0 || labels.iter().any(|&l| l >= classes) {
        return None;
    }
    let device = embeddings.device();
    let weights = crate::model::l2_normalize(head.weight.val());
    // Clamped away from +-1: ArcFace's sin(theta) has an infinite gradient there.
    let cos = embeddings
        .matmul(weights.transpose())
        .clamp(-1.0 + 1e-6, 1.0 - 1e-6);
    let host = crate::model::host(cos.clone()).ok()?;
    let mut onehot = vec![0f32; b * classes];
    // ArcFace's cos(theta + m) stops falling past theta = pi - m; there the target takes
    // CosFace's form, cos(theta) - m sin(m), which keeps falling (InsightFace does the same).
    let mut past = vec![0f32; b * classes];
    let mut wrong = 0usize;
    let (cm, sm) = (margin.cos(), margin.sin());
    let threshold = (std::f32::consts::PI - margin).cos();
    for (i, &l) in labels.iter().enumerate() {
        onehot[i * classes + l] = 1.0;
        let c = host[i * classes + l];
        if c <= threshold {
            past[i * classes + l] = 1.0;
        }
        let target = match objective {
            Objective::Arcface if c > threshold => c * cm - (1.0 - c * c).max(0.0).sqrt() * sm,
            Objective::Arcface => c - margin * sm,
            _ => c - margin,
        };
        let rival = (0..classes)
            .filter(|&k| k != l)
            .map(|k| host[i * classes + k])
            .fold(f32::NEG_INFINITY, f32::max);
        if target <= rival {
            wrong += 1;
        }
    }
    let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [b, classes]), &device);
    let target = match objective {
        Objective::Arcface => {
            let past = Tensor::<2>::from_data(TensorData::new(past, [b, classes]), &device);
            let sin = cos
                .clone()
                .powf_scalar(2.0)
                .neg()
                .add_scalar(1.0)
                .clamp_min(1e-12)
                .sqrt();
            let rotated = cos.clone().mul_scalar(cm) - sin.mul_scalar(sm);
            let fallback = cos.clone().sub_scalar(margin * sm);
            rotated * past.clone().neg().add_scalar(1.0) + fallback * past
        }
        _ => cos.clone().sub_scalar(margin),
    };
    let logits =
        (onehot.clone() * target + onehot.clone().neg().add_scalar(1.0) * cos).mul_scalar(scale);
    let log_p = burn::tensor::activation::log_softmax(logits, 1);
    let loss = (log_p * onehot).sum_dim(1).mean().neg();
    Some(LossValue {
        loss: loss.reshape([1]),
        active: wrong as f32 / b as f32,
    })
}

/// SimCLR's NT-Xent over two views: rows `i` and `i + n/2` of the unit-length `embeddings` are
/// two augmentations of one image, and each row must pick its twin out of every other row at
/// `temperature`. Classes play no part, so features that tell apart images of one class survive;
/// those are what unseen classes are told apart by.
pub fn instance_loss(embeddings: Tensor<2>, temperature: f32) -> Option<Tensor<1>> {
    let n = embeddings.dims()[0];
    if n < 4 || !n.is_multiple_of(2) || temperature <= 0.0 {
        return None;
    }
    let device = embeddings.device();
    let half = n / 2;
    let sim = embeddings
        .clone()
        .matmul(embeddings.transpose())
        .div_scalar(temperature);
    // A row never picks itself: its own entry is pushed far below every cosine / temperature.
    let mut own = vec![0f32; n * n];
    for i in 0..n {
        own[i * n + i] = -1e4;
    }
    let own = Tensor::<2>::from_data(TensorData::new(own, [n, n]), &device);
    let log_p = burn::tensor::activation::log_softmax(sim + own, 1);
    let twins: Vec<usize> = (0..n).map(|i| i * n + (i + half) % n).collect();
    Some(gather(&log_p, &twins).mean().neg())
}

pub struct LossValue {
    pub loss: Tensor<1>,
    /// Triplets (or pairs) with a non-zero loss, over all chosen.
    pub active: f32,
}

/// Euclidean distances between unit-length embeddings, `[b, b]`.
pub fn distances(embeddings: &Tensor<2>) -> Tensor<2> {
    let cos = embeddings.clone().matmul(embeddings.clone().transpose());
    // The floor keeps sqrt's gradient finite for identical embeddings.
    cos.mul_scalar(-2.0).add_scalar(2.0).clamp_min(1e-6).sqrt()
}

/// Chooses triplets `(a, p, n)` from the batch's distances (row-major `b * b`).
pub fn mine(mining: Mining, d: &[f32], labels: &[usize], rng: &mut Rng) -> Vec<[usize; 3]> {
    let b = labels.len();
    let dist = |i: usize, j: usize| d[i * b + j];
    let positives = |a: usize| (0..b).filter(move |&p| p != a && labels[p] == labels[a]);
    let negatives = |a: usize| (0..b).filter(move |&n| labels[n] != labels[a]);
    let nearest = |from: usize, a: usize| {
        negatives(a).min_by(|&x, &y| dist(from, x).total_cmp(&dist(from, y)))
    };
    let mut out = Vec::new();
    for a in 0..b {
        let negs: Vec<usize> = negatives(a).collect();
        if negs.is_empty() {
            continue;
        }
        match mining {
            Mining::HardPosNeg | Mining::BatchHard => {
                let p = positives(a).max_by(|&x, &y| dist(a, x).total_cmp(&dist(a, y)));
                if let (Some(p), Some(n)) = (p, nearest(a, a)) {
                    out.push([a, p, n]);
                }
            }
            _ => {
                for p in positives(a) {
                    let n = match mining {
                        Mining::Random => Some(negs[(rng.next_u64() % negs.len() as u64) as usize]),
                        Mining::Hard => nearest(a, a),
                        Mining::Mixed => nearest(p, a),
                        // The nearest negative farther than the positive is the hardest
                        // semi-hard one when any lies inside the margin, and the fallback when
                        // none does: one search serves both.
                        Mining::SemiHard => {
                            let dap = dist(a, p);
                            negs.iter()
                                .copied()
                                .filter(|&n| dist(a, n) > dap)
                                .min_by(|&x, &y| dist(a, x).total_cmp(&dist(a, y)))
                                .or_else(|| nearest(a, a))
                        }
                        Mining::BatchAll => {
                            out.extend(negs.iter().map(|&n| [a, p, n]));
                            None
                        }
                        Mining::HardPosNeg | Mining::BatchHard | Mining::Contrastive => None,
                    };
                    if let Some(n) = n {
                        out.push([a, p, n]);
                    }
                }
            }
        }
    }
    out
}

fn gather(d: &Tensor<2>, pairs: &[usize]) -> Tensor<1> {
    let n = d.dims()[0];
    let index = Tensor::<1, Int>::from_data(
        TensorData::new(
            pairs.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [pairs.len()],
        ),
        &d.device(),
    );
    d.clone().reshape([n * n]).select(0, index)
}

/// The batch loss for unit-length `embeddings` with `labels`.
pub fn batch_loss(
    mining: Mining,
    embeddings: Tensor<2>,
    labels: &[usize],
    margin: f32,
    rng: &mut Rng,
) -> Option<LossValue> {
    let b = labels.len();
    let d = distances(&embeddings);
    let host = crate::model::host(d.clone()).ok()?;
    if mining == Mining::Contrastive {
        let (mut same, mut different) = (Vec::new(), Vec::new());
        for i in 0..b {
            for j in i + 1..b {
                if labels[i] == labels[j] {
                    same.push(i * b + j)
                } else {
                    different.push(i * b + j)
                }
            }
        }
        if same.is_empty() || different.is_empty() {
            return None;
        }
        let active = same.len() + different.iter().filter(|&&k| host[k] < margin).count();
        let total = (same.len() + different.len()) as f32;
        let pos = gather(&d, &same).powf_scalar(2.0).sum();
        let neg = gather(&d, &different)
            .neg()
            .add_scalar(margin)
            .clamp_min(0.0)
            .powf_scalar(2.0)
            .sum();
        return Some(LossValue {
            loss: (pos + neg).div_scalar(total),
            active: active as f32 / total,
        });
    }
    let triplets = mine(mining, &host, labels, rng);
    if triplets.is_empty() {
        return None;
    }
    let ap: Vec<usize> = triplets.iter().map(|t| t[0] * b + t[1]).collect();
    let an: Vec<usize> = triplets.iter().map(|t| t[0] * b + t[2]).collect();
    let gap = gather(&d, &ap) - gather(&d, &an);
    let violations = triplets
        .iter()
        .filter(|t| host[t[0] * b + t[1]] - host[t[0] * b + t[2]] + margin > 0.0)
        .count();
    let active = violations as f32 / triplets.len() as f32;
    let loss = match mining {
        // softplus(x) = ln(1 + e^x), written with burn's elementwise ops.
        Mining::BatchHard => gap.exp().add_scalar(1.0).log().mean(),
        Mining::BatchAll => {
            let hinge = gap.add_scalar(margin).clamp_min(0.0).sum();
            hinge.div_scalar(violations.max(1) as f32)
        }
        _ => gap.add_scalar(margin).clamp_min(0.0).mean(),
    };
    Some(LossValue { loss, active })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four points on a line: class 0 at 0 and 1, class 1 at 1.5 and 5.
    fn line() -> (Vec<f32>, Vec<usize>) {
        let x = [0.0f32, 1.0, 1.5, 5.0];
        let d = x
            .iter()
            .flat_map(|a| x.iter().map(move |b| (a - b).abs()))
            .collect();
        (d, vec![0, 0, 1, 1])
    }

    #[test]
    fn strategies_pick_the_negatives_they_promise() {
        let (d, labels) = line();
        let mut rng = Rng::new(1);
        // Anchor 0, positive 1: the nearest negative to the anchor is 2 (1.5 away).
        let hard = mine(Mining::Hard, &d, &labels, &mut rng);
        assert!(hard.contains(&[0, 1, 2]));
        // Semi-hard for (0, 1): d_ap = 1; the nearest negative farther than that is 2 (at 1.5),
        // inside a margin of 1 and the fallback outside a margin of 0.2 alike.
        assert!(mine(Mining::SemiHard, &d, &labels, &mut rng).contains(&[0, 1, 2]));
        // Anchor 3 (at 5), positive 2 (at 1.5): the negative nearest the positive is 1 (0.5 away).
        assert!(mine(Mining::Mixed, &d, &labels, &mut rng).contains(&[3, 2, 1]));
        // Batch-all: 4 anchors x 1 positive x 2 negatives.
        assert_eq!(mine(Mining::BatchAll, &d, &labels, &mut rng).len(), 8);
        // Hardest positive for anchor 2 is 3; nearest negative is 1.
        assert!(mine(Mining::HardPosNeg, &d, &labels, &mut rng).contains(&[2, 3, 1]));
    }

    fn tensor(values: Vec<f32>, rows: usize, device: &Device) -> Tensor<2> {
        let cols = values.len() / rows;
        Tensor::from_data(TensorData::new(values, [rows, cols]), device)
    }

    #[test]
    fn margin_losses_match_hand_computed_softmax() {
        let device = Device::flex();
        // Two classes along the axes; one sample at 60 degrees from class 0.
        let head = MarginHead::from_values(vec![1.0, 0.0, 0.0, 2.0], 2, 2, &device);
        let (c, s) = (0.5f32, 0.75f32.sqrt());
        let x = || tensor(vec![c, s], 1, &device);
        let ce = |t: f32, other: f32, scale: f32| {
            let (a, b) = ((scale * t).exp(), (scale * other).exp());
            -(a / (a + b)).ln()
        };
        let cos = loss_of(Objective::Cosface, x(), &head, 4.0, 0.2);
        assert!((cos - ce(c - 0.2, s, 4.0)).abs() < 1e-4, "{cos}");
        let arc = loss_of(Objective::Arcface, x(), &head, 4.0, 0.2);
        let theta = c.acos() + 0.2;
        assert!((arc - ce(theta.cos(), s, 4.0)).abs() < 1e-4, "{arc}");
        // Without a margin both are the normalised softmax.
        let plain = ce(c, s, 4.0);
        assert!((loss_of(Objective::Arcface, x(), &head, 4.0, 0.0) - plain).abs() < 1e-4);
        assert!((loss_of(Objective::Cosface, x(), &head, 4.0, 0.0) - plain).abs() < 1e-4);
        // Past pi - m ArcFace falls back to cos - m sin(m), still a finite loss.
        let far = tensor(vec![-1.0, 0.0], 1, &device);
        let v = margin_loss(Objective::Arcface, far, &head, &[0], 4.0, 0.5).unwrap();
        assert!(v.loss.into_scalar::<f32>().is_finite());
        assert_eq!(v.active, 1.0);
        // Labels outside the head are refused, not indexed.
        assert!(margin_loss(Objective::Cosface, x(), &head, &[2], 4.0, 0.2).is_none());
    }

    fn loss_of(o: Objective, x: Tensor<2>, head: &MarginHead, s: f32, m: f32) -> f32 {
        margin_loss(o, x, head, &[0], s, m)
            .unwrap()
            .loss
            .into_scalar::<f32>()
    }

    #[test]
    fn instance_loss_is_the_twins_softmax_and_small_when_twins_agree() {
        let device = Device::flex();
        // Views: a = (1, 0), b = (0, 1); their twins a' = (0.6, 0.8), b' = (0, 1).
        let rows = vec![1.0f32, 0.0, 0.0, 1.0, 0.6, 0.8, 0.0, 1.0];
        let e = tensor(rows.clone(), 4, &device);
        let t = 0.5;
        let got = instance_loss(e, t).unwrap().into_scalar::<f32>();
        let v: Vec<[f32; 2]> = rows.chunks(2).map(|c| [c[0], c[1]]).collect();
        let dot = |i: usize, j: usize| v[i][0] * v[j][0] + v[i][1] * v[j][1];
        let want = (0..4)
            .map(|i| {
                let twin = (i + 2) % 4;
                let others: f32 = (0..4)
                    .filter(|&j| j != i)
                    .map(|j| (dot(i, j) / t).exp())
                    .sum();
                -((dot(i, twin) / t).exp() / others).ln()
            })
            .sum::<f32>()
            / 4.0;
        assert!((got - want).abs() < 1e-4, "{got} against {want}");
        // Twins that coincide while the images stay apart: the loss is near zero at a low
        // temperature; swapped twins make it large.
        let apart = vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0];
        let near = instance_loss(tensor(apart, 4, &device), 0.05).unwrap();
        assert!(near.into_scalar::<f32>() < 1e-3);
        let swapped = vec![1.0f32, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
        let far = instance_loss(tensor(swapped, 4, &device), 0.05).unwrap();
        assert!(far.into_scalar::<f32>() > 10.0);
        // An odd batch has no twins.
        assert!(instance_loss(tensor(vec![1.0; 6], 3, &device), 0.1).is_none());
    }

    #[test]
    fn loss_is_zero_when_classes_are_apart_and_positive_otherwise() {
        let device = Device::flex();
        let apart = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0], [4, 2]),
            &device,
        );
        let mut rng = Rng::new(3);
        let v = batch_loss(Mining::Hard, apart, &[0, 0, 1, 1], 0.2, &mut rng).unwrap();
        assert!(v.loss.into_scalar::<f32>() < 1e-3);
        assert_eq!(v.active, 0.0);
        let mixed = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0], [4, 2]),
            &device,
        );
        let v = batch_loss(Mining::BatchAll, mixed, &[0, 0, 1, 1], 0.2, &mut rng).unwrap();
        assert!(v.loss.into_scalar::<f32>() > 0.5);
        assert!(v.active > 0.4);
    }
}
