//! The mining-strategy comparison: the same data, split, network and schedule, once per strategy,
//! evaluated on classes held out of training.

use std::fmt::Write;
use std::time::Instant;

use serde::Serialize;

use crate::loss::Mining;
use crate::{eval, pick_device, prepare, train, StudyArgs};

#[derive(Serialize)]
struct Row {
    mining: &'static str,
    one_shot: f64,
    three_shot: f64,
    tar_at_far_1e2: f64,
    tar_at_far_1e3: f64,
    open_set_dir_at_fpir_1e2: f64,
    roc_auc: f64,
    final_loss: f32,
    final_active_fraction: f32,
    seconds: f64,
}

pub fn run(a: StudyArgs) -> Result<(), String> {
    let device = pick_device(a.device)?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let strategies = if a.strategies.is_empty() {
        Mining::ALL.to_vec()
    } else {
        a.strategies.clone()
    };
    let first = prepare(&a.data, &a.model, None, &device)?;
    let split = first.split;
    let mut rows = Vec::new();
    for mining in strategies {
        // Every strategy starts from the same initial weights.
        device.seed(a.data.seed);
        let (net, _) = crate::initial_net(&a.model, &device)?;
        let mut config = crate::config_from(&a.hyper, first.pixels, a.data.seed);
        config.mining = mining;
        config.frozen_norms = net.frozen_norms;
        eprintln!("== {} ==", mining.name());
        let started = Instant::now();
        let outcome = train::train(net, &split.train, &split.val, &config, None, None, &device)?;
        let seconds = started.elapsed().as_secs_f64();
        let embs = train::embed_all(&outcome.net, &split.test, config.pixels, &device);
        let (r, _) = eval::evaluate(&embs, &split.test.labels, a.draws, a.data.seed);
        let last = outcome.log.last();
        let row = Row {
            mining: mining.name(),
            one_shot: r.one_shot,
            three_shot: r.three_shot,
            tar_at_far_1e2: r.tar_at_far_1e2,
            tar_at_far_1e3: r.tar_at_far_1e3,
            open_set_dir_at_fpir_1e2: r.open_set_dir_at_fpir_1e2,
            roc_auc: r.roc_auc,
            final_loss: last.map_or(f32::NAN, |l| l.loss),
            final_active_fraction: last.map_or(f32::NAN, |l| l.active_fraction),
            seconds,
        };
        eprintln!(
            "{}",
            serde_json::to_string(&row).map_err(|e| e.to_string())?
        );
        rows.push(row);
    }
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Unseen classes: {} ({} images); trained on {} classes ({} images). {} epochs, P x K = {} x {}, margin {}, seed {}, {} enrolment draws.\n",
        split.test.classes.join(", "),
        split.test.len(),
        split.train.class_count(),
        split.train.len(),
        a.hyper.epochs,
        a.hyper.identities_per_batch,
        a.hyper.images_per_identity,
        a.hyper.margin,
        a.data.seed,
        a.draws
    );
    md.push_str("| mining | 1-shot | 3-shot | TAR@FAR 1e-2 | TAR@FAR 1e-3 | open-set DIR@FPIR 1e-2 | AUC | final loss | active | time (s) |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.4} | {:.4} | {:.0} % | {:.0} |",
            r.mining,
            r.one_shot * 100.0,
            r.three_shot * 100.0,
            r.tar_at_far_1e2 * 100.0,
            r.tar_at_far_1e3 * 100.0,
            r.open_set_dir_at_fpir_1e2 * 100.0,
            r.roc_auc,
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
