//! The mining-strategy comparison: the same data, split, network and schedule, once per strategy,
//! evaluated on classes held out of training.

use std::fmt::Write;

use serde::Serialize;

use crate::loss::{Mining, Objective};
use crate::{eval, pick_device, prepare, StudyArgs};

/// One row of the study: a triplet mining strategy or a margin softmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    Triplet(Mining),
    Margin(Objective),
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Triplet(m) => m.name(),
            Method::Margin(o) => o.name(),
        }
    }

    /// Every mining strategy, then ArcFace and CosFace.
    pub fn all() -> Vec<Method> {
        Mining::ALL
            .iter()
            .map(|&m| Method::Triplet(m))
            .chain([
                Method::Margin(Objective::Arcface),
                Method::Margin(Objective::Cosface),
            ])
            .collect()
    }
}

/// `--strategy` values: a mining strategy's name, `arcface` or `cosface`.
pub fn parse_method(text: &str) -> Result<Method, String> {
    Method::all()
        .into_iter()
        .find(|m| m.name() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = Method::all().iter().map(|m| m.name()).collect();
            format!("{text:?} is not one of {}", names.join(", "))
        })
}

#[derive(Serialize)]
struct SplitRun {
    test_classes: Vec<String>,
    report: eval::Report,
    final_loss: f32,
    final_active_fraction: f32,
    seconds: f64,
}

#[derive(Serialize)]
struct Row {
    mining: &'static str,
    /// Mean and worst over the splits.
    mean: eval::Metrics,
    worst: eval::Metrics,
    /// Training time a split, mean.
    seconds: f64,
    final_loss: f32,
    final_active_fraction: f32,
    splits: Vec<SplitRun>,
}

pub fn run(a: StudyArgs) -> Result<(), String> {
    let device = pick_device(a.device)?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let strategies = if a.strategies.is_empty() {
        Method::all()
    } else {
        a.strategies.clone()
    };
    let first = prepare(&a.data, &a.model, a.hyper.no_flip, None, &device)?;
    let splits = first.splits;
    let mut rows = Vec::new();
    for method in strategies {
        let mut runs = Vec::new();
        for (i, split) in splits.iter().enumerate() {
            let mut config = crate::config_from(&a.hyper, first.pixels, a.data.seed);
            match method {
                Method::Triplet(mining) => {
                    config.mining = mining;
                    config.objective = Objective::Triplet;
                }
                Method::Margin(objective) => config.objective = objective,
            }
            config.margin = a.hyper.margin.unwrap_or(config.objective.default_margin());
            eprintln!(
                "== {} (split {} of {}) ==",
                method.name(),
                i + 1,
                splits.len()
            );
            // Every strategy and split starts from the same initial weights.
            let done = crate::train_split(split, &a.model, &config, a.draws, &device)?;
            let last = done.outcome.log.last();
            let run = SplitRun {
                test_classes: split.test.classes.clone(),
                report: done.report,
                final_loss: last.map_or(f32::NAN, |l| l.loss),
                final_active_fraction: last.map_or(f32::NAN, |l| l.active_fraction),
                seconds: done.seconds,
            };
            eprintln!(
                "{}",
                serde_json::to_string(&run).map_err(|e| e.to_string())?
            );
            runs.push(run);
        }
        let metrics: Vec<eval::Metrics> =
            runs.iter().map(|r| eval::Metrics::of(&r.report)).collect();
        let summary = eval::summarise(&metrics);
        let n = runs.len().max(1) as f64;
        rows.push(Row {
            mining: method.name(),
            mean: summary.mean,
            worst: summary.worst,
            seconds: runs.iter().map(|r| r.seconds).sum::<f64>() / n,
            final_loss: (runs.iter().map(|r| r.final_loss as f64).sum::<f64>() / n) as f32,
            final_active_fraction: (runs
                .iter()
                .map(|r| r.final_active_fraction as f64)
                .sum::<f64>()
                / n) as f32,
            splits: runs,
        });
    }
    let s0 = &splits[0];
    let held: Vec<String> = splits.iter().map(|s| s.test.classes.join(", ")).collect();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Unseen classes, {} split(s): {{{}}}; trained on the other {} classes ({} images in the first split). {} epochs, P x K = {} x {}, margin {} (ArcFace and CosFace: scale {}), {}, seed {}, {} enrolment draws.\n",
        splits.len(),
        held.join("}, {"),
        s0.train.class_count(),
        s0.train.len(),
        a.hyper.epochs,
        a.hyper.identities_per_batch,
        a.hyper.images_per_identity,
        a.hyper
            .margin
            .map_or("each loss's default".to_string(), |m| m.to_string()),
        a.hyper.scale,
        if a.hyper.instance > 0.0 {
            format!(
                "instance term weight {} at temperature {}",
                a.hyper.instance, a.hyper.temperature
            )
        } else {
            "no instance term".to_string()
        },
        a.data.seed,
        a.draws
    );
    if splits.len() > 1 {
        md.push_str(
            "Each figure is the mean over the splits, then the worst split in brackets.\n\n",
        );
    }
    md.push_str("| mining | 1-shot | 3-shot | TAR@FAR 1e-2 | TAR@FAR 1e-3 | open-set DIR@FPIR 1e-2 | AUC | final loss | active | time a split (s) |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    let one = splits.len() == 1;
    let pct = |mean: f64, worst: f64| {
        if one {
            format!("{:.1} %", mean * 100.0)
        } else {
            format!("{:.1} % ({:.1})", mean * 100.0, worst * 100.0)
        }
    };
    for r in &rows {
        let (m, w) = (&r.mean, &r.worst);
        let auc = if one {
            format!("{:.4}", m.roc_auc)
        } else {
            format!("{:.4} ({:.4})", m.roc_auc, w.roc_auc)
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {:.4} | {:.0} % | {:.0} |",
            r.mining,
            pct(m.one_shot, w.one_shot),
            pct(m.three_shot, w.three_shot),
            pct(m.tar_at_far_1e2, w.tar_at_far_1e2),
            pct(m.tar_at_far_1e3, w.tar_at_far_1e3),
            pct(m.open_set_dir_at_fpir_1e2, w.open_set_dir_at_fpir_1e2),
            auc,
            r.final_loss,
            r.final_active_fraction * 100.0,
            r.seconds
        );
    }
    crate::write(&a.out.join("mining.md"), &md)?;
    crate::write(
        &a.out.join("mining.json"),
        &serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?,
    )?;
    print!("{md}");
    Ok(())
}
