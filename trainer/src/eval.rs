//! Evaluation on identities the network never saw: k-shot identification, verification ROC and
//! open-set identification, all on cosine similarity of unit-length embeddings.

use facegate::embed::cosine;
use facegate::recognize::evaluate::{draw, Embedded};
use facegate::support::rng::Rng;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub identities: usize,
    pub images: usize,
    /// Rank-1 accuracy with one enrolled image per identity (mean over draws).
    pub one_shot: f64,
    /// Rank-1 accuracy with three enrolled images per identity (their mean embedding).
    pub three_shot: f64,
    /// Verification: true accepts at 1 % and 0.1 % false accepts, over all image pairs.
    pub tar_at_far_1e2: f64,
    pub tar_at_far_1e3: f64,
    pub roc_auc: f64,
    /// Cosine threshold that gives 1 % false accepts on these pairs.
    pub threshold_far_1e2: f32,
    /// Open set (half the identities enrolled with 3 shots, the rest strangers): share of enrolled
    /// people's probes identified correctly above the threshold that lets 1 % of strangers in.
    pub open_set_dir_at_fpir_1e2: f64,
    pub draws: usize,
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    facegate::embed::normalized(&v)
}

fn mean_template(embs: &[Vec<f32>], members: &[usize]) -> Vec<f32> {
    let mut sum = vec![0f32; embs[0].len()];
    for &i in members {
        sum.iter_mut().zip(&embs[i]).for_each(|(s, v)| *s += v);
    }
    unit(sum)
}

/// Rank-1 accuracy with `shots` enrolled images per identity, averaged over `draws` random
/// enrolments (facegate's own enrolment draw). Identities with no image left to probe are left out.
pub fn k_shot(embs: &[Vec<f32>], labels: &[usize], shots: usize, draws: usize, seed: u64) -> f64 {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let by_class = crate::data::group_by_label(labels, classes);
    let pool: Vec<Embedded> = (0..embs.len())
        .filter(|&i| by_class[labels[i]].len() > shots)
        .map(|i| Embedded {
            person: labels[i],
            embedding: Some(embs[i].clone()),
        })
        .collect();
    let mut rng = Rng::new(seed);
    let (mut right, mut total) = (0usize, 0usize);
    for _ in 0..draws {
        // No threshold: only the rank-1 count is read.
        let r = draw(&pool, &[], &[], classes, shots, f32::MAX, &mut rng);
        right += r.rank1;
        total += r.probes;
    }
    if total == 0 {
        0.0
    } else {
        right as f64 / total as f64
    }
}

/// Genuine and impostor scores over all pairs (at most `max_pairs` of each, evenly sampled).
pub fn pair_scores(embs: &[Vec<f32>], labels: &[usize]) -> (Vec<f32>, Vec<f32>) {
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..embs.len() {
        for j in i + 1..embs.len() {
            let s = cosine(&embs[i], &embs[j]);
            if labels[i] == labels[j] {
                genuine.push(s)
            } else {
                impostor.push(s)
            }
        }
    }
    (genuine, impostor)
}

/// Threshold that lets `far` of the impostor scores through (strictly above it).
pub fn threshold_at(impostor_sorted_desc: &[f32], far: f64) -> f32 {
    if impostor_sorted_desc.is_empty() {
        return 1.0;
    }
    let k = ((far * impostor_sorted_desc.len() as f64).floor() as usize)
        .min(impostor_sorted_desc.len() - 1);
    impostor_sorted_desc[k]
}

fn accept_rate(scores: &[f32], threshold: f32) -> f64 {
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().filter(|&&s| s > threshold).count() as f64 / scores.len() as f64
}

/// ROC points `(far, tar)`, log-spaced in FAR, for plotting.
pub fn roc_curve(genuine: &[f32], impostor_desc: &[f32]) -> Vec<(f64, f64)> {
    let mut points = Vec::new();
    let mut far = 1e-4;
    while far <= 1.0 {
        let t = threshold_at(impostor_desc, far);
        points.push((far, accept_rate(genuine, t)));
        far *= 1.25;
    }
    points
}

/// Area under the ROC curve: the chance that a random genuine pair outscores a random impostor.
fn auc(genuine: &[f32], impostor_asc: &[f32]) -> f64 {
    if genuine.is_empty() || impostor_asc.is_empty() {
        return 0.0;
    }
    let below: f64 = genuine
        .iter()
        .map(|&g| impostor_asc.partition_point(|&s| s < g) as f64)
        .sum();
    below / (genuine.len() as f64 * impostor_asc.len() as f64)
}

/// Open-set identification, averaged over `draws` random halves of the identities.
pub fn open_set(embs: &[Vec<f32>], labels: &[usize], shots: usize, draws: usize, seed: u64) -> f64 {
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    if classes < 2 {
        return 0.0;
    }
    let by_class = crate::data::group_by_label(labels, classes);
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut sum = 0.0;
    for _ in 0..draws {
        let known: Vec<usize> = rng.pick(classes, classes.div_ceil(2));
        let mut templates = Vec::new();
        let mut known_probes = Vec::new();
        let mut stranger_probes = Vec::new();
        for (c, members) in by_class.iter().enumerate() {
            if known.contains(&c) && members.len() > shots {
                let chosen: Vec<usize> = rng
                    .pick(members.len(), shots)
                    .into_iter()
                    .map(|k| members[k])
                    .collect();
                templates.push((c, mean_template(embs, &chosen)));
                known_probes.extend(members.iter().copied().filter(|i| !chosen.contains(i)));
            } else if !known.contains(&c) {
                stranger_probes.extend(members.iter().copied());
            }
        }
        let best = |p: usize| {
            templates
                .iter()
                .map(|(c, t)| (*c, cosine(&embs[p], t)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
        };
        let mut stranger_scores: Vec<f32> = stranger_probes
            .iter()
            .filter_map(|&p| best(p).map(|b| b.1))
            .collect();
        stranger_scores.sort_by(|a, b| b.total_cmp(a));
        let t = threshold_at(&stranger_scores, 0.01);
        let hits = known_probes
            .iter()
            .filter(|&&p| best(p).is_some_and(|(c, s)| c == labels[p] && s > t))
            .count();
        sum += if known_probes.is_empty() {
            0.0
        } else {
            hits as f64 / known_probes.len() as f64
        };
    }
    sum / draws as f64
}

pub fn evaluate(
    embs: &[Vec<f32>],
    labels: &[usize],
    draws: usize,
    seed: u64,
) -> (Report, Vec<(f64, f64)>) {
    let (genuine, mut impostor) = pair_scores(embs, labels);
    impostor.sort_by(|a, b| b.total_cmp(a));
    let t2 = threshold_at(&impostor, 1e-2);
    let t3 = threshold_at(&impostor, 1e-3);
    let curve = roc_curve(&genuine, &impostor);
    impostor.reverse();
    let report = Report {
        identities: labels.iter().copied().max().map_or(0, |m| m + 1),
        images: embs.len(),
        one_shot: k_shot(embs, labels, 1, draws, seed),
        three_shot: k_shot(embs, labels, 3, draws, seed),
        tar_at_far_1e2: accept_rate(&genuine, t2),
        tar_at_far_1e3: accept_rate(&genuine, t3),
        roc_auc: auc(&genuine, &impostor),
        threshold_far_1e2: t2,
        open_set_dir_at_fpir_1e2: open_set(embs, labels, 3, draws, seed),
        draws,
    };
    (report, curve)
}

/// The figures compared across splits.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Metrics {
    pub one_shot: f64,
    pub three_shot: f64,
    pub tar_at_far_1e2: f64,
    pub tar_at_far_1e3: f64,
    pub open_set_dir_at_fpir_1e2: f64,
    pub roc_auc: f64,
}

impl Metrics {
    pub fn of(r: &Report) -> Metrics {
        Metrics {
            one_shot: r.one_shot,
            three_shot: r.three_shot,
            tar_at_far_1e2: r.tar_at_far_1e2,
            tar_at_far_1e3: r.tar_at_far_1e3,
            open_set_dir_at_fpir_1e2: r.open_set_dir_at_fpir_1e2,
            roc_auc: r.roc_auc,
        }
    }

    fn of_value(v: f64) -> Metrics {
        Metrics {
            one_shot: v,
            three_shot: v,
            tar_at_far_1e2: v,
            tar_at_far_1e3: v,
            open_set_dir_at_fpir_1e2: v,
            roc_auc: v,
        }
    }

    fn fields(&mut self) -> [&mut f64; 6] {
        [
            &mut self.one_shot,
            &mut self.three_shot,
            &mut self.tar_at_far_1e2,
            &mut self.tar_at_far_1e3,
            &mut self.open_set_dir_at_fpir_1e2,
            &mut self.roc_auc,
        ]
    }
}

/// Mean and worst split of every figure: a result that holds on one split only is luck of the
/// draw (which classes were held out), so the headline is the worst split beside the mean.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary {
    pub splits: usize,
    pub mean: Metrics,
    /// The lowest value of each figure over the splits (not necessarily all from one split).
    pub worst: Metrics,
}

pub fn summarise(per_split: &[Metrics]) -> Summary {
    let mut mean = Metrics::of_value(0.0);
    let mut worst = Metrics::of_value(f64::INFINITY);
    for m in per_split {
        let mut m = *m;
        for ((s, w), v) in mean
            .fields()
            .into_iter()
            .zip(worst.fields())
            .zip(m.fields())
        {
            *s += *v / per_split.len() as f64;
            *w = w.min(*v);
        }
    }
    if per_split.is_empty() {
        worst = Metrics::of_value(0.0);
    }
    Summary {
        splits: per_split.len(),
        mean,
        worst,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_the_mean_and_the_lowest_of_each_figure() {
        let a = Metrics {
            one_shot: 0.9,
            three_shot: 0.8,
            tar_at_far_1e2: 0.5,
            tar_at_far_1e3: 0.2,
            open_set_dir_at_fpir_1e2: 0.4,
            roc_auc: 0.99,
        };
        let b = Metrics {
            one_shot: 0.7,
            three_shot: 1.0,
            ..a
        };
        let s = summarise(&[a, b]);
        assert_eq!(s.splits, 2);
        assert!((s.mean.one_shot - 0.8).abs() < 1e-12);
        assert!((s.mean.three_shot - 0.9).abs() < 1e-12);
        assert_eq!(s.worst.one_shot, 0.7);
        assert_eq!(s.worst.three_shot, 0.8);
        assert_eq!(s.worst.roc_auc, 0.99);
        assert_eq!(summarise(&[]).worst.one_shot, 0.0);
    }

    #[test]
    fn separated_classes_score_perfectly_and_mixed_ones_do_not() {
        // Three classes around three axes, a little noise.
        let mut embs = Vec::new();
        let mut labels = Vec::new();
        for c in 0..3 {
            for k in 0..6 {
                let mut v = vec![0.05 * k as f32; 3];
                v[c] = 1.0;
                embs.push(unit(v));
                labels.push(c);
            }
        }
        let (report, curve) = evaluate(&embs, &labels, 5, 1);
        assert_eq!(report.one_shot, 1.0);
        assert_eq!(report.three_shot, 1.0);
        assert_eq!(report.roc_auc, 1.0);
        assert_eq!(report.tar_at_far_1e2, 1.0);
        assert!(!curve.is_empty());
        // The same embeddings with shuffled labels: chance level.
        let shuffled: Vec<usize> = (0..18).map(|i| i % 3).collect();
        let (bad, _) = evaluate(&embs, &shuffled, 5, 1);
        assert!(bad.one_shot < 0.7, "{}", bad.one_shot);
        assert!(bad.roc_auc < 0.8, "{}", bad.roc_auc);
    }
}
