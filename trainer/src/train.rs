//! The training loop: P x K batches, augmentation, mining, AdamW with warm-up and cosine decay,
//! per-epoch checkpoints and a metrics log.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::optim::{AdamConfig, AdamWConfig, GradientsParams};
use burn::prelude::*;
use facegate::support::rng::Rng;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::loss::{self, MarginHead, Mining, Objective};
use crate::model::Net;
use crate::onnx_io::{self, ExportOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Adam,
    Adamw,
}

/// How pixels become network input: `(v * scale - mean) / std` for every channel. Stored in the
/// model card so facegate feeds the exported network exactly what training did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Pixels {
    pub scale: f32,
    pub mean: f32,
    pub std: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Augment {
    pub flip: bool,
    /// Largest shift in pixels, each way.
    pub jitter: usize,
    /// Largest brightness change, as a fraction of full scale.
    pub brightness: f32,
    /// Largest contrast change, as a fraction.
    pub contrast: f32,
    /// Largest rotation, degrees each way (0: none; runs saved before it existed had none).
    #[serde(default)]
    pub rotate: f32,
    /// Largest change of scale, as a fraction each way (0.1: 90 % to 110 %).
    #[serde(default)]
    pub zoom: f32,
    /// Largest elastic displacement in pixels: a 4 x 4 grid of random offsets, interpolated
    /// smoothly over the image (0: none).
    #[serde(default)]
    pub elastic: f32,
    /// Chance of erasing one random rectangle (2-20 % of the image) with random grey (0: never).
    #[serde(default)]
    pub erase: f32,
}

/// Control points of the elastic field, each way.
const ELASTIC_GRID: usize = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Identities per batch (P) and images per identity (K).
    pub identities_per_batch: usize,
    pub images_per_identity: usize,
    pub mining: Mining,
    pub margin: f32,
    /// Triplets (with `mining`) or a margin softmax; runs saved before it existed were triplets.
    #[serde(default = "triplet")]
    pub objective: Objective,
    /// The margin softmax's scale `s` on the cosine logits.
    #[serde(default = "default_scale")]
    pub scale: f32,
    pub optimizer: OptimizerKind,
    pub learning_rate: f64,
    pub weight_decay: f32,
    pub warmup_steps: usize,
    pub augment: Augment,
    pub pixels: Pixels,
    pub seed: u64,
    /// Stop after this many optimizer steps in all (0: no limit). Tests use it.
    pub max_steps: usize,
    /// BatchNorms keep their running statistics (fine-tuning).
    #[serde(default)]
    pub frozen_norms: bool,
    /// Average the weights of the last this many epochs (0: keep the last weights).
    #[serde(default)]
    pub average_epochs: usize,
    /// Weight of the two-view instance term (`loss::instance_loss`) added to the main loss; 0:
    /// none, and batches hold one view of each image.
    #[serde(default)]
    pub instance: f32,
    /// The instance term's softmax temperature.
    #[serde(default = "default_temperature")]
    pub temperature: f32,
}

fn triplet() -> Objective {
    Objective::Triplet
}

pub fn default_scale() -> f32 {
    16.0
}

pub fn default_temperature() -> f32 {
    0.5
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub epoch: usize,
    pub step: usize,
    pub config: TrainConfig,
    /// The margin losses' identity directions (`classes x dim`, row-major): resuming without them
    /// would restart the classifier at random and undo the network's progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<Vec<f32>>,
}

/// What the optimiser updates: the network and, for margin losses, the training-only head.
#[derive(Module, Debug)]
pub struct Trainee {
    pub net: Net,
    pub head: Option<MarginHead>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub step: usize,
    pub loss: f32,
    pub active_fraction: f32,
    pub learning_rate: f64,
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_one_shot: Option<f64>,
}

pub struct Outcome {
    pub net: Net,
    pub log: Vec<EpochLog>,
}

/// Input tensor for `indices`, augmented when `augment` is given.
pub fn batch_tensor(
    ds: &Dataset,
    indices: &[usize],
    pixels: Pixels,
    augment: Option<(&Augment, &mut Rng)>,
    device: &Device,
) -> Tensor<4> {
    let s = ds.side;
    let mut data = vec![0f32; indices.len() * 3 * s * s];
    let mut augment = augment;
    for (b, &i) in indices.iter().enumerate() {
        let img = &ds.images[i];
        let (mut flip, mut dx, mut dy, mut gain, mut offset) = (false, 0i64, 0i64, 1f32, 0f32);
        let mut warp = None;
        let mut field = None;
        let mut erase = None;
        if let Some((aug, rng)) = augment.as_mut() {
            let mut unit = || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
            flip = aug.flip && unit() < 0.5;
            let j = aug.jitter as f32;
            dx = ((unit() * 2.0 - 1.0) * j).round() as i64;
            dy = ((unit() * 2.0 - 1.0) * j).round() as i64;
            gain = 1.0 + (unit() * 2.0 - 1.0) * aug.contrast;
            offset = (unit() * 2.0 - 1.0) * aug.brightness * 255.0;
            // Drawn only when asked for, so runs without them repeat their batches exactly.
            if aug.rotate > 0.0 || aug.zoom > 0.0 {
                let angle = (unit() * 2.0 - 1.0) * aug.rotate.to_radians();
                let scale = 1.0 + (unit() * 2.0 - 1.0) * aug.zoom;
                warp = Some((angle, scale));
            }
            if aug.elastic > 0.0 {
                let n = ELASTIC_GRID * ELASTIC_GRID * 2;
                field = Some(
                    (0..n)
                        .map(|_| (unit() * 2.0 - 1.0) * aug.elastic)
                        .collect::<Vec<f32>>(),
                );
            }
            if aug.erase > 0.0 && unit() < aug.erase {
                let area = (0.02 + unit() * 0.18) * (s * s) as f32;
                let aspect = (unit() * 2.0 - 1.0) * 1.2f32;
                let aspect = aspect.exp();
                let h = ((area * aspect).sqrt().round() as usize).clamp(1, s);
                let w = ((area / aspect).sqrt().round() as usize).clamp(1, s);
                let (y, x) = (unit() * (s - h + 1) as f32, unit() * (s - w + 1) as f32);
                let (y, x) = ((y as usize).min(s - h), (x as usize).min(s - w));
                erase = Some((x, y, w, h, unit() * 255.0));
            }
        }
        let base = b * 3 * s * s;
        let mut put = |c: usize, p: usize, v: f32| {
            let v = ((v - 127.5) * gain + 127.5 + offset).clamp(0.0, 255.0);
            data[base + c * s * s + p] = (v * pixels.scale - pixels.mean) / pixels.std;
        };
        if warp.is_some() || field.is_some() {
            let (angle, scale) = warp.unwrap_or((0.0, 1.0));
            let shift = (dx as f32, dy as f32);
            let sample = warped(img, s, angle, scale, shift, flip, field.as_deref());
            for (k, v) in sample.into_iter().enumerate() {
                put(k % 3, k / 3, v);
            }
        } else {
            shifted(img, s, (dx, dy), flip, put);
        }
        if let Some((x0, y0, w, h, grey)) = erase {
            let v = (grey * pixels.scale - pixels.mean) / pixels.std;
            for c in 0..3 {
                for y in y0..y0 + h {
                    let row = base + c * s * s + y * s;
                    data[row + x0..row + x0 + w].fill(v);
                }
            }
        }
    }
    Tensor::from_data(TensorData::new(data, [indices.len(), 3, s, s]), device)
}

/// Every pixel of `img` (RGB, `s x s`) shifted by whole pixels and mirrored, handed to `put` as
/// (channel, pixel index, value).
fn shifted(
    img: &[u8],
    s: usize,
    (dx, dy): (i64, i64),
    flip: bool,
    mut put: impl FnMut(usize, usize, f32),
) {
    for y in 0..s {
        // Shifted pixels read the nearest edge pixel, not black: a black band is a cue the
        // network would learn and never see at run time.
        let sy = (y as i64 - dy).clamp(0, s as i64 - 1) as usize;
        for x in 0..s {
            let mut sx = (x as i64 - dx).clamp(0, s as i64 - 1) as usize;
            if flip {
                sx = s - 1 - sx;
            }
            for c in 0..3 {
                put(c, y * s + x, img[(sy * s + sx) * 3 + c] as f32);
            }
        }
    }
}

/// `img` (RGB, `s x s`) rotated by `angle` and scaled by `scale` about its centre, then shifted
/// and mirrored: each output pixel reads the source bilinearly, edges repeating as in the shift.
/// `field` (x then y offsets at an `ELASTIC_GRID` square of control points spanning the image)
/// moves where each output pixel reads from by the bilinear blend of its four nearest points.
fn warped(
    img: &[u8],
    s: usize,
    angle: f32,
    scale: f32,
    shift: (f32, f32),
    flip: bool,
    field: Option<&[f32]>,
) -> Vec<f32> {
    let c = (s as f32 - 1.0) / 2.0;
    let g = ELASTIC_GRID;
    let offset = |x: f32, y: f32| -> (f32, f32) {
        let Some(f) = field else { return (0.0, 0.0) };
        // Output coordinates onto the control grid, 0..=g-1 across the image.
        let span = (s as f32 - 1.0).max(1.0);
        let (gx, gy) = (x / span * (g - 1) as f32, y / span * (g - 1) as f32);
        let (i, j) = ((gx as usize).min(g - 2), (gy as usize).min(g - 2));
        let (fx, fy) = (gx - i as f32, gy - j as f32);
        let blend = |k: usize| {
            let at = |u: usize, v: usize| f[(v * g + u) * 2 + k];
            let top = at(i, j) * (1.0 - fx) + at(i + 1, j) * fx;
            let bottom = at(i, j + 1) * (1.0 - fx) + at(i + 1, j + 1) * fx;
            top * (1.0 - fy) + bottom * fy
        };
        (blend(0), blend(1))
    };
    let (sin, cos) = angle.sin_cos();
    let at = |x: isize, y: isize, ch: usize| {
        let x = x.clamp(0, s as isize - 1) as usize;
        let y = y.clamp(0, s as isize - 1) as usize;
        img[(y * s + x) * 3 + ch] as f32
    };
    let mut out = Vec::with_capacity(s * s * 3);
    for y in 0..s {
        for x in 0..s {
            let ox = if flip { (s - 1 - x) as f32 } else { x as f32 };
            // Inverse map: undo the shift, then the scale and rotation about the centre.
            let (px, py) = (ox - shift.0 - c, y as f32 - shift.1 - c);
            let (ex, ey) = offset(x as f32, y as f32);
            let sx = (cos * px + sin * py) / scale + c + ex;
            let sy = (-sin * px + cos * py) / scale + c + ey;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            for ch in 0..3 {
                let top = at(x0, y0, ch) * (1.0 - fx) + at(x0 + 1, y0, ch) * fx;
                let bottom = at(x0, y0 + 1, ch) * (1.0 - fx) + at(x0 + 1, y0 + 1, ch) * fx;
                out.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    out
}

/// Every float parameter's values on the host, in the module's visiting order.
struct Collect(Vec<Vec<f32>>);

impl burn::module::ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        self.0
            .push(crate::model::host(param.val()).unwrap_or_default());
    }
}

/// Replaces every float parameter's values, in the same order as [`Collect`].
struct Replace(std::vec::IntoIter<Vec<f32>>);

impl burn::module::ModuleMapper for Replace {
    fn map_float<const D: usize>(
        &mut self,
        param: burn::module::Param<Tensor<D>>,
    ) -> burn::module::Param<Tensor<D>> {
        let Some(values) = self.0.next() else {
            return param;
        };
        param.map(|t| {
            let (shape, device) = (t.shape(), t.device());
            if values.len() != shape.num_elements() {
                return t;
            }
            Tensor::from_data(TensorData::new(values, shape), &device)
        })
    }
}

/// Stochastic weight averaging (Izmailov et al. 2018): the mean of the weights at the end of the
/// last epochs. Unseen classes' accuracy swings from epoch to epoch while the training loss is
/// flat; the mean sits between those solutions.
#[derive(Default)]
struct WeightAverage {
    sum: Vec<Vec<f32>>,
    count: usize,
}

impl WeightAverage {
    fn add(&mut self, net: &Net) {
        let mut now = Collect(Vec::new());
        net.visit(&mut now);
        if self.sum.is_empty() {
            self.sum = now.0;
        } else {
            for (s, v) in self.sum.iter_mut().zip(now.0) {
                s.iter_mut().zip(v).for_each(|(a, b)| *a += b);
            }
        }
        self.count += 1;
    }

    fn apply(self, net: Net) -> Net {
        let n = self.count as f32;
        let mean: Vec<Vec<f32>> = self
            .sum
            .into_iter()
            .map(|v| v.into_iter().map(|x| x / n).collect())
            .collect();
        net.map(&mut Replace(mean.into_iter()))
    }
}

/// Unit-length embeddings of every image, without augmentation.
pub fn embed_all(net: &Net, ds: &Dataset, pixels: Pixels, device: &Device) -> Vec<Vec<f32>> {
    let net = net.valid();
    let mut out = Vec::with_capacity(ds.len());
    let all: Vec<usize> = (0..ds.len()).collect();
    for chunk in all.chunks(64) {
        let e = net.embed(batch_tensor(ds, chunk, pixels, None, device));
        let dim = e.dims()[1];
        let flat = crate::model::host(e).unwrap_or_default();
        out.extend(flat.chunks(dim).map(|c| c.to_vec()));
    }
    out
}

/// Identities with the two images a positive pair needs.
fn eligible(by_class: &[Vec<usize>]) -> Vec<usize> {
    (0..by_class.len())
        .filter(|&c| by_class[c].len() >= 2)
        .collect()
}

/// P identities, K images each (drawn with replacement when an identity has fewer); fewer than P
/// when the data has fewer identities.
fn sample_batch(
    by_class: &[Vec<usize>],
    p: usize,
    k: usize,
    rng: &mut Rng,
) -> (Vec<usize>, Vec<usize>) {
    let eligible = eligible(by_class);
    let chosen = rng.pick(eligible.len(), p);
    let (mut idx, mut labels) = (Vec::new(), Vec::new());
    for c in chosen.into_iter().map(|i| eligible[i]) {
        let members = &by_class[c];
        let picks: Vec<usize> = if members.len() >= k {
            rng.pick(members.len(), k)
        } else {
            (0..k)
                .map(|_| (rng.next_u64() % members.len() as u64) as usize)
                .collect()
        };
        for m in picks {
            idx.push(members[m]);
            labels.push(c);
        }
    }
    (idx, labels)
}

fn learning_rate(config: &TrainConfig, step: usize, total: usize) -> f64 {
    let base = config.learning_rate;
    if step < config.warmup_steps {
        return base * (step + 1) as f64 / config.warmup_steps as f64;
    }
    let span = total.saturating_sub(config.warmup_steps).max(1);
    let t = (step - config.warmup_steps) as f64 / span as f64;
    // Cosine decay to 1 % of the base rate.
    base * (0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()))
}

struct Progress {
    tty: bool,
    last: Instant,
}

impl Progress {
    fn show(
        &mut self,
        epoch: usize,
        epochs: usize,
        step: usize,
        steps: usize,
        loss: f32,
        active: f32,
    ) {
        if !self.tty || (self.last.elapsed().as_millis() < 200 && step + 1 != steps) {
            return;
        }
        self.last = Instant::now();
        let width = 24;
        let filled = (step + 1) * width / steps.max(1);
        eprint!(
            "\repoch {}/{epochs} [{}{}] {}/{steps} loss {loss:.4} active {:.0}%   ",
            epoch + 1,
            "#".repeat(filled),
            ".".repeat(width - filled),
            step + 1,
            active * 100.0
        );
        let _ = std::io::stderr().flush();
    }
}

/// Trains `net` on `train`; `val` (may be empty) is evaluated 1-shot after each epoch.
pub fn train(
    net: Net,
    train: &Dataset,
    val: &Dataset,
    config: &TrainConfig,
    out_dir: Option<&Path>,
    start: Option<&Checkpoint>,
    device: &Device,
) -> Result<Outcome, String> {
    // Gradients need the autodiff decorator over the chosen backend; evaluation stays on the
    // plain device.
    let ad = device.clone().autodiff();
    let by_class = train.by_class();
    let identities = eligible(&by_class).len();
    if identities < 2 {
        return Err("training needs at least 2 identities with 2 or more images each".into());
    }
    let head = if config.objective.is_margin_softmax() {
        let dim = net
            .valid()
            .embed(Tensor::zeros([1, 3, train.side, train.side], device))
            .dims()[1];
        let classes = train.class_count();
        Some(match start.and_then(|c| c.head.clone()) {
            Some(values) if values.len() == classes * dim => {
                MarginHead::from_values(values, classes, dim, device)
            }
            Some(_) => return Err(
                "the checkpoint's identity head does not match the data's identities; train afresh"
                    .into(),
            ),
            None => MarginHead::new(classes, dim, config.seed, device),
        })
    } else {
        None
    };
    let mut trainee = Trainee { net, head }.train();
    trainee.net.frozen_norms = config.frozen_norms;
    // The batch as it really is: P shrinks to the identities there are.
    let batch = config.identities_per_batch.min(identities) * config.images_per_identity;
    // Margin losses see every image once an epoch in shuffled batches of the same size (the last
    // partial batch is dropped: BatchNorm on a handful of images is noise).
    let steps_per_epoch = if trainee.head.is_some() {
        (train.len() / batch).max(1)
    } else {
        train.len().div_ceil(batch).max(1)
    };
    let total_steps = steps_per_epoch * config.epochs;
    let mut optimizer = match config.optimizer {
        OptimizerKind::Adam => AdamConfig::new().init(),
        OptimizerKind::Adamw => AdamWConfig::new()
            .with_weight_decay(config.weight_decay)
            .init(),
    };
    let (first_epoch, mut step) = start.map_or((0, 0), |c| (c.epoch, c.step));
    let mut rng = Rng::new(config.seed.wrapping_add(step as u64));
    let mut progress = Progress {
        tty: std::io::stderr().is_terminal(),
        last: Instant::now(),
    };
    let mut log = Vec::new();
    let mut metrics = match out_dir {
        Some(dir) => Some(
            fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("metrics.jsonl"))
                .map_err(|e| format!("{}: {e}", dir.join("metrics.jsonl").display()))?,
        ),
        None => None,
    };
    let mut average = WeightAverage::default();
    for epoch in first_epoch..config.epochs {
        // Drawn only for margin losses, so triplet runs repeat the numbers they gave before.
        let order = if config.objective.is_margin_softmax() {
            rng.pick(train.len(), train.len())
        } else {
            Vec::new()
        };
        let mut stopped = false;
        let started = Instant::now();
        let (mut loss_sum, mut active_sum, mut counted) = (0f64, 0f64, 0usize);
        let mut lr = config.learning_rate;
        for s in 0..steps_per_epoch {
            if config.max_steps > 0 && step >= config.max_steps {
                stopped = true;
                break;
            }
            let (idx, labels) = if trainee.head.is_some() {
                // A set smaller than one batch is one short batch.
                let end = ((s + 1) * batch).min(order.len());
                let idx = order[(s * batch).min(end)..end].to_vec();
                let labels = idx.iter().map(|&i| train.labels[i]).collect();
                (idx, labels)
            } else {
                sample_batch(
                    &by_class,
                    config.identities_per_batch,
                    config.images_per_identity,
                    &mut rng,
                )
            };
            // With the instance term every image comes twice, each copy augmented on its own.
            let (idx, labels) = if config.instance > 0.0 {
                (
                    [idx.clone(), idx].concat(),
                    [labels.clone(), labels].concat(),
                )
            } else {
                (idx, labels)
            };
            let x = batch_tensor(
                train,
                &idx,
                config.pixels,
                Some((&config.augment, &mut rng)),
                &ad,
            );
            let emb = trainee.net.embed(x);
            let twins = (config.instance > 0.0).then(|| emb.clone());
            lr = learning_rate(config, step, total_steps);
            step += 1;
            let value = match &trainee.head {
                Some(head) => loss::margin_loss(
                    config.objective,
                    emb,
                    head,
                    &labels,
                    config.scale,
                    config.margin,
                ),
                None => loss::batch_loss(config.mining, emb, &labels, config.margin, &mut rng),
            };
            let Some(mut value) = value else {
                continue;
            };
            if let Some(term) = twins.and_then(|e| loss::instance_loss(e, config.temperature)) {
                value.loss = value.loss + term.mul_scalar(config.instance);
            }
            let loss_value: f32 = value.loss.clone().into_scalar::<f32>();
            if !loss_value.is_finite() {
                return Err(format!(
                    "the loss became {loss_value} at step {step}; lower --learning-rate"
                ));
            }
            let grads = GradientsParams::from_grads(value.loss.backward(), &trainee);
            trainee = optimizer.step(lr, trainee, grads);
            loss_sum += loss_value as f64;
            active_sum += value.active as f64;
            counted += 1;
            progress.show(
                epoch,
                config.epochs,
                s,
                steps_per_epoch,
                loss_value,
                value.active,
            );
        }
        if progress.tty {
            eprintln!();
        }
        if stopped && counted == 0 {
            break;
        }
        let val_one_shot = (!val.is_empty()).then(|| {
            let embs = embed_all(&trainee.net, val, config.pixels, device);
            crate::eval::k_shot(&embs, &val.labels, 1, 10, config.seed)
        });
        let entry = EpochLog {
            epoch: epoch + 1,
            step,
            loss: (loss_sum / counted.max(1) as f64) as f32,
            active_fraction: (active_sum / counted.max(1) as f64) as f32,
            learning_rate: lr,
            seconds: started.elapsed().as_secs_f64(),
            val_one_shot,
        };
        let line = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
        if !progress.tty || out_dir.is_some() {
            eprintln!("{line}");
        }
        if let Some(file) = metrics.as_mut() {
            writeln!(file, "{line}").map_err(|e| format!("metrics.jsonl: {e}"))?;
        }
        log.push(entry);
        if config.average_epochs > 0 && epoch + config.average_epochs >= config.epochs {
            average.add(&trainee.net);
        }
        if let Some(dir) = out_dir {
            let head = match &trainee.head {
                Some(h) => Some(crate::model::host(h.weight.val())?),
                None => None,
            };
            save_checkpoint(
                dir,
                &trainee.net,
                &Checkpoint {
                    epoch: epoch + 1,
                    step,
                    config: config.clone(),
                    head,
                },
            )?;
        }
        if stopped {
            break;
        }
    }
    let mut net = trainee.net;
    let averaged = average.count;
    if averaged > 1 {
        net = average.apply(net);
        if !net.frozen_norms {
            // The averaged weights need their own BatchNorm statistics: forward passes in
            // training mode (no step) over shuffled training images refresh the running means.
            let order = rng.pick(train.len(), train.len());
            for chunk in order.chunks(batch).take(60) {
                let x = batch_tensor(train, chunk, config.pixels, None, &ad);
                drop(net.embed(x));
            }
        }
        eprintln!(
            "weights averaged over the last {averaged} epochs; BatchNorm statistics refreshed"
        );
    }
    Ok(Outcome { net, log })
}

pub fn checkpoint_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("checkpoint.onnx"), dir.join("checkpoint.json"))
}

/// The network with its BatchNorms unfolded (so training can go on) and the loop's position.
/// Written to temporary files, then renamed: an interrupted save leaves the previous checkpoint.
fn save_checkpoint(dir: &Path, net: &Net, state: &Checkpoint) -> Result<(), String> {
    let (onnx, json) = checkpoint_paths(dir);
    let bytes = onnx_io::export(net, ExportOptions::checkpoint());
    let text = serde_json::to_string_pretty(state).map_err(|e| e.to_string())?;
    facegate::support::durable::write_or_say(&onnx, &bytes)?;
    facegate::support::durable::write_or_say(&json, text.as_bytes())
}

pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<(Net, Checkpoint), String> {
    let (onnx, json) = checkpoint_paths(dir);
    let text = fs::read_to_string(&json).map_err(|e| format!("{}: {e}", json.display()))?;
    let state: Checkpoint =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))?;
    let net = onnx_io::import(&onnx, device)?;
    Ok((net, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No augmentation at all.
    fn still() -> Augment {
        Augment {
            flip: false,
            jitter: 0,
            brightness: 0.0,
            contrast: 0.0,
            rotate: 0.0,
            zoom: 0.0,
            elastic: 0.0,
            erase: 0.0,
        }
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        let config = TrainConfig {
            epochs: 1,
            identities_per_batch: 2,
            images_per_identity: 2,
            mining: Mining::Hard,
            margin: 0.2,
            objective: Objective::Triplet,
            scale: 16.0,
            optimizer: OptimizerKind::Adamw,
            learning_rate: 1.0,
            weight_decay: 0.0,
            warmup_steps: 10,
            augment: still(),
            pixels: Pixels {
                scale: 1.0,
                mean: 0.0,
                std: 1.0,
            },
            seed: 1,
            max_steps: 0,
            frozen_norms: false,
            average_epochs: 0,
            instance: 0.0,
            temperature: 0.2,
        };
        assert!((learning_rate(&config, 0, 100) - 0.1).abs() < 1e-9);
        assert!((learning_rate(&config, 9, 100) - 1.0).abs() < 1e-9);
        assert!(learning_rate(&config, 50, 100) < 0.6);
        assert!((learning_rate(&config, 100, 100) - 0.01).abs() < 1e-9);
    }

    #[test]
    fn weight_averaging_takes_the_mean_of_every_parameter() {
        let device = Device::flex();
        let arch = crate::model::Architecture {
            input_size: 16,
            embedding_dim: 8,
            width: 0.25,
            final_channels: 16,
        };
        device.seed(1);
        let a = crate::model::mobilefacenet(&arch, &device);
        device.seed(2);
        let b = crate::model::mobilefacenet(&arch, &device);
        let params = |n: &Net| {
            let mut c = Collect(Vec::new());
            n.visit(&mut c);
            c.0
        };
        let (pa, pb) = (params(&a), params(&b));
        assert_ne!(pa, pb);
        let mut average = WeightAverage::default();
        average.add(&a);
        average.add(&b);
        let mean = params(&average.apply(a));
        assert_eq!(mean.len(), pa.len());
        for ((m, x), y) in mean.iter().zip(&pa).zip(&pb) {
            for ((m, x), y) in m.iter().zip(x).zip(y) {
                assert!((m - (x + y) / 2.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn warping_by_nothing_is_the_identity_and_a_quarter_turn_turns() {
        let s = 5;
        let img: Vec<u8> = (0..s * s * 3).map(|i| (i * 7 % 251) as u8).collect();
        let same = warped(&img, s, 0.0, 1.0, (0.0, 0.0), false, None);
        assert!(same
            .iter()
            .zip(&img)
            .all(|(a, &b)| (a - b as f32).abs() < 1e-3));
        // A quarter turn moves the top-left pixel to a corner and keeps the centre.
        let turned = warped(
            &img,
            s,
            std::f32::consts::FRAC_PI_2,
            1.0,
            (0.0, 0.0),
            false,
            None,
        );
        let px = |v: &[f32], x: usize, y: usize| v[(y * s + x) * 3];
        assert!((px(&turned, 2, 2) - img[(2 * s + 2) * 3] as f32).abs() < 1e-3);
        let corner = img[0] as f32;
        let corners = [(0, 0), (s - 1, 0), (0, s - 1), (s - 1, s - 1)];
        assert!(corners
            .iter()
            .any(|&(x, y)| (x, y) != (0, 0) && (px(&turned, x, y) - corner).abs() < 1e-3));
        // A shift of one pixel moves the content one pixel.
        let shifted = warped(&img, s, 0.0, 1.0, (1.0, 0.0), false, None);
        assert!((px(&shifted, 3, 1) - img[(s + 2) * 3] as f32).abs() < 1e-3);
        // An elastic field that is the same everywhere is a shift; one that is zero is nothing.
        let points = ELASTIC_GRID * ELASTIC_GRID;
        let still = warped(
            &img,
            s,
            0.0,
            1.0,
            (0.0, 0.0),
            false,
            Some(&vec![0.0; points * 2]),
        );
        assert_eq!(still, same);
        let right: Vec<f32> = (0..points * 2).map(|k| [-1.0, 0.0][k % 2]).collect();
        let moved = warped(&img, s, 0.0, 1.0, (0.0, 0.0), false, Some(&right));
        assert_eq!(moved, shifted);
        // A field that differs between control points bends the image: not a shift.
        let bent: Vec<f32> = (0..points * 2).map(|k| (k % 5) as f32 * 0.4).collect();
        let bent = warped(&img, s, 0.0, 1.0, (0.0, 0.0), false, Some(&bent));
        assert!(bent.iter().zip(&same).any(|(a, b)| (a - b).abs() > 1.0));
    }

    #[test]
    fn erasing_fills_one_rectangle_and_draws_nothing_when_off() {
        let ds = Dataset {
            side: 8,
            images: vec![vec![200u8; 8 * 8 * 3]],
            labels: vec![0],
            classes: vec!["a".into()],
        };
        let pixels = Pixels {
            scale: 1.0,
            mean: 0.0,
            std: 1.0,
        };
        let mut aug = Augment {
            erase: 1.0,
            ..still()
        };
        let device = Device::flex();
        let mut rng = Rng::new(3);
        let draw = |aug: &Augment, rng: &mut Rng| {
            let t = batch_tensor(&ds, &[0], pixels, Some((aug, rng)), &device);
            crate::model::host(t).unwrap()
        };
        for _ in 0..20 {
            let v = draw(&aug, &mut rng);
            let changed: Vec<usize> = (0..64).filter(|&p| v[p] != 200.0).collect();
            // 2-20 % of 64 pixels, rounded to whole rows and columns; every channel alike.
            assert!((1..=20).contains(&changed.len()), "{}", changed.len());
            assert!((0..64).all(|p| v[p] == v[64 + p] && v[p] == v[128 + p]));
            let (xs, ys): (Vec<_>, Vec<_>) = changed.iter().map(|p| (p % 8, p / 8)).unzip();
            let w = xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1;
            let h = ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1;
            assert_eq!(w * h, changed.len(), "one whole rectangle");
        }
        aug.erase = 0.0;
        let v = draw(&aug, &mut rng);
        assert!(v.iter().all(|&x| x == 200.0));
    }
}
