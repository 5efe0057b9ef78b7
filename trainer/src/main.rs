//! facegate-train: trains facegate's face embedder with triplet loss, evaluates it on unseen
//! identities and exports it to ONNX (f32 and int8) with the model card the edge binary reads.

mod data;
mod eval;
mod export;
mod loss;
mod model;
mod onnx_io;
mod plot;
mod quantise;
mod study;
mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use burn::prelude::*;
use clap::{Args, Parser, Subcommand};

use data::FaceCrop;
use loss::{Mining, Objective};
use train::{Augment, OptimizerKind, Pixels, TrainConfig};

const FACE_RECIPE: &str = "\
FACE RECIPE
  Data: one folder per person, any number of photos each (JPEG or PNG, any size):
      faces/alice/1.jpg  faces/alice/2.jpg ...  faces/bob/1.jpg ...
  (LFW, CASIA-WebFace and VGGFace2 unpack to this layout.) --crop align finds each photo's
  largest face with YuNet and aligns it to the ArcFace template, exactly as facegate does at run
  time; photos without a face are skipped and counted.

  From scratch (thousands of identities, e.g. CASIA-WebFace), on a GPU host:
      cargo run -p facegate-train --features gpu -- train \\
          --data casia/ --crop align --input-size 112 --embedding-dim 128 --width 1.0 \\
          --final-channels 512 --test-identities 500 --val-identities 200 \\
          --mining batch-hard --identities-per-batch 32 --images-per-identity 4 \\
          --epochs 30 --learning-rate 0.001 --instance 0 --out runs/casia
  Fine-tuning the shipped SFace on your own people (CPU is fine, minutes):
      cargo run -p facegate-train -- train --data my_faces/ --crop align \\
          --init models/sface_int8w.onnx --mining semi-hard --margin 0.2 \\
          --learning-rate 0.00002 --epochs 5 --identities-per-batch 5 --images-per-identity 4 \\
          --test-identities 0 --instance 0 --val-data my_faces_val/ --out runs/mine
  Then use it: facegate enroll/identify/watch --model runs/casia/embedder_int8.json ...
  (This workspace's dev profile already optimises everything at opt-level 2; --release adds fat
  LTO, which only makes the burn build much longer.)

  Hyper-parameters that work: P x K = 32 x 4 (GPU) or 8 x 4 (CPU); margin 0.2-0.3 on unit
  embeddings; AdamW, learning rate 1e-3 to 3e-3 from scratch, 1e-5 to 5e-5 when fine-tuning
  (BatchNorm statistics stay frozen unless --update-norms). The instance term (--instance, on by
  default) is what lets a net trained on a few identities tell unseen ones apart; the face recipes
  turn it off because they were measured without it (fine-tuning) or have thousands of
  identities to learn from (from scratch; unmeasured with it). ArcFace/CosFace (--loss) trail batch-hard
  on 7 training digits (their papers train on thousands of identities). docs/TRAINING.md compares the mining
  strategies and the margin losses over rotating splits (--splits), measured.

GPU
  Build with `--features gpu` (burn's wgpu backend: Vulkan on Linux/Windows, Metal on macOS; needs
  the GPU vendor's Vulkan driver, e.g. NVIDIA's libnvidia-gl). --device auto takes the GPU when one
  answers and the CPU otherwise. burn's CUDA backend is not offered: it downloads an LLVM bundle
  while building.";

#[derive(Parser)]
#[command(name = "facegate-train", version, about = "Train, evaluate and export facegate's face embedder", after_long_help = FACE_RECIPE)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an embedder, evaluate it on unseen identities and export ONNX + model cards.
    Train(TrainArgs),
    /// Evaluate an ONNX embedder (facegate's, SFace, or one trained here) on a data set.
    Evaluate(EvaluateArgs),
    /// Train once per mining strategy and tabulate 1-shot/3-shot accuracy on unseen classes.
    MiningStudy(StudyArgs),
}

#[derive(Args, Clone)]
struct DataArgs {
    /// Identity folders (one sub-folder per person) or a digit table (.csv or .csv.gz).
    #[arg(long)]
    data: PathBuf,
    /// How photos become inputs.
    #[arg(long, value_enum, default_value_t = FaceCrop::None)]
    crop: FaceCrop,
    /// Identities held out of training entirely and evaluated at the end.
    #[arg(long, default_value_t = 3)]
    test_identities: usize,
    /// Identities held out for per-epoch validation.
    #[arg(long, default_value_t = 0)]
    val_identities: usize,
    /// Put this identity (folder name or digit) into the test part; repeatable.
    #[arg(long = "hold-out")]
    held_out: Vec<String>,
    /// A separate validation set (same layout); with it, per-epoch validation uses it.
    #[arg(long)]
    val_data: Option<PathBuf>,
    /// Seed for the split, the batches and the augmentation.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Train and evaluate once per split: each holds out its own --test-identities classes, disjoint
    /// from every other split's (K x --test-identities <= classes); reports the mean and the worst
    /// split. `train` exports the first split's network.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    splits: u64,
    /// Train also on every training identity turned a quarter turn, as a new identity: twice
    /// the classes to tell apart (docs/TRAINING.md, "Turned classes"). Right where orientation
    /// is part of identity (a turned 7 is no digit); wrong for faces, where a turned face is the
    /// same person. auto: on with --no-flip, which says the same of mirror images.
    #[arg(long, value_enum, default_value_t = TurnedClasses::Auto)]
    turned_classes: TurnedClasses,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TurnedClasses {
    Auto,
    On,
    Off,
}

impl TurnedClasses {
    fn wanted(self, no_flip: bool) -> bool {
        match self {
            TurnedClasses::Auto => no_flip,
            TurnedClasses::On => true,
            TurnedClasses::Off => false,
        }
    }
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Square input side in pixels.
    #[arg(long, default_value_t = 112)]
    input_size: usize,
    /// Embedding size (64, 128 or 512 are usual). The defaults of the network and schedule are
    /// the best measured over rotating splits of few identities (docs/TRAINING.md); thousands of
    /// identities want a wider network (the face recipe in --help).
    #[arg(long, default_value_t = 64)]
    embedding_dim: usize,
    /// Channel multiplier on MobileFaceNet's widths.
    #[arg(long, default_value_t = 0.25)]
    width: f32,
    /// Channels of the last 1x1 convolution before the global depthwise convolution.
    #[arg(long, default_value_t = 128)]
    final_channels: usize,
    /// Start from this ONNX embedder's weights (fine-tuning); its architecture replaces the above.
    #[arg(long)]
    init: Option<PathBuf>,
    /// With --init: let BatchNorm statistics follow the new data (by default they stay frozen:
    /// a few people in small batches would overwrite statistics learned on millions of faces).
    #[arg(long)]
    update_norms: bool,
}

#[derive(Args, Clone)]
struct HyperArgs {
    /// Passes over the training images (turned classes double them). 6 is what keeps every
    /// measured split of 7 training digits at 92 % 3-shot or more (docs/TRAINING.md).
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// Identities per batch (P).
    #[arg(long, default_value_t = 8)]
    identities_per_batch: usize,
    /// Images per identity in a batch (K).
    #[arg(long, default_value_t = 8)]
    images_per_identity: usize,
    /// What training minimises: triplets (with --mining) or a margin softmax over the training
    /// identities (ArcFace, CosFace), whose classifier is used only in training and never exported.
    #[arg(long, value_enum, default_value_t = Objective::Triplet)]
    loss: Objective,
    /// How triplet batches are mined (--loss triplet).
    #[arg(long, value_enum, default_value_t = Mining::BatchHard)]
    mining: Mining,
    /// Triplets: margin on the Euclidean distance between unit-length embeddings (default 0.3);
    /// batch-hard, the default mining, uses the soft margin ln(1 + e^(d_ap - d_an)) instead, so
    /// there it only changes which triplets are counted as active. ArcFace: angular margin in
    /// radians (0.5). CosFace: cosine margin (0.35).
    #[arg(long)]
    margin: Option<f32>,
    /// Margin softmax: scale on the cosine logits (few identities want a small one).
    #[arg(long, default_value_t = train::default_scale())]
    scale: f32,
    #[arg(long, value_enum, default_value_t = OptimizerKind::Adamw)]
    optimizer: OptimizerKind,
    #[arg(long, default_value_t = 3e-3)]
    learning_rate: f64,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    /// Steps of linear warm-up before the cosine decay.
    #[arg(long, default_value_t = 20)]
    warmup_steps: usize,
    /// No horizontal flips (digits and text are not mirror-symmetric; faces are).
    #[arg(long)]
    no_flip: bool,
    /// Largest random shift, in pixels.
    #[arg(long, default_value_t = 2)]
    jitter: usize,
    /// Largest brightness change, fraction of full scale.
    #[arg(long, default_value_t = 0.1)]
    brightness: f32,
    /// Largest contrast change, fraction.
    #[arg(long, default_value_t = 0.2)]
    contrast: f32,
    /// Largest random rotation, degrees each way (bilinear, edges repeated).
    #[arg(long, default_value_t = 0.0, value_parser = degrees)]
    rotate: f32,
    /// Largest random change of scale, fraction each way (0.1: 90 % to 110 %).
    #[arg(long, default_value_t = 0.0, value_parser = zoom)]
    zoom: f32,
    /// Largest elastic displacement in pixels (a smooth random warp that bends strokes without
    /// turning the image; 0: none).
    #[arg(long, default_value_t = 0.0, value_parser = elastic)]
    elastic: f32,
    /// Chance of erasing one random rectangle (2-20 % of the image) with random grey (0: never).
    #[arg(long, default_value_t = 0.0, value_parser = chance)]
    erase: f32,
    /// Average the network's weights over the last N epochs (stochastic weight averaging, then
    /// fresh BatchNorm statistics); 0 keeps the last epoch's weights.
    #[arg(long, default_value_t = 0)]
    average_epochs: usize,
    /// Weight of an instance term added to the loss: every batch image is seen in two
    /// augmentations and each must find its twin among all the others (SimCLR's NT-Xent), which
    /// keeps features that separate images within a class, and so unseen classes (docs/TRAINING.md:
    /// 3-shot on unseen digits 89.9 % mean / 82.8 % worst split without it, 92.5 / 90.4 with it);
    /// 0 turns it off and halves the work per step.
    #[arg(long, default_value_t = 1.0, value_parser = weight)]
    instance: f32,
    /// Softmax temperature of the instance term.
    #[arg(long, default_value_t = train::default_temperature(), value_parser = temperature)]
    temperature: f32,
    /// Stop after this many steps in all (0: none).
    #[arg(long, default_value_t = 0)]
    max_steps: usize,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    hyper: HyperArgs,
    /// Output folder: checkpoint, metrics.jsonl, eval.json, plots, ONNX models and cards.
    #[arg(long)]
    out: PathBuf,
    /// Continue the run saved in --out (its checkpoint and settings).
    #[arg(long)]
    resume: bool,
    /// Where to train.
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Random enrolment draws per k-shot figure.
    #[arg(long, default_value_t = 20)]
    draws: usize,
    /// File stem of the exported models.
    #[arg(long, default_value = "embedder")]
    name: String,
}

#[derive(Args)]
struct EvaluateArgs {
    /// The ONNX embedder (a model card beside it, same stem, supplies the pixel scaling).
    #[arg(long)]
    model: PathBuf,
    /// Identity folders or a digit table: every identity is evaluated.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_enum, default_value_t = FaceCrop::None)]
    crop: FaceCrop,
    #[arg(long, default_value_t = 20)]
    draws: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Evaluate K disjoint groups of the identities (drawn with --seed) on their own, each as its
    /// own gallery, and report the mean and the worst group: figures then compare with a trained
    /// run's --splits, whose test parts are just as small.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    splits: u64,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
}

#[derive(Args)]
struct StudyArgs {
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    hyper: HyperArgs,
    /// Rows to compare: triplet mining strategies (random, hard, hard-pos-neg, semi-hard, mixed,
    /// batch-hard, batch-all, contrastive) and the margin losses (arcface, cosface); default all.
    /// Each row uses its loss's default margin unless --margin is given.
    #[arg(long = "strategy", value_parser = study::parse_method)]
    strategies: Vec<study::Method>,
    /// Folder for the table (mining.md) and the per-strategy results (mining.json).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    #[arg(long, default_value_t = 20)]
    draws: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DeviceChoice {
    /// The GPU when built with `--features gpu` and one answers, else the CPU.
    Auto,
    Cpu,
    Gpu,
}

fn pick_device(choice: DeviceChoice) -> Result<Device, String> {
    match choice {
        DeviceChoice::Cpu => Ok(Device::flex()),
        DeviceChoice::Gpu => gpu_device().ok_or_else(|| {
            if cfg!(feature = "gpu") {
                "no GPU answered (wgpu found no adapter); use --device cpu".to_string()
            } else {
                "this build has no GPU backend: rebuild with `--features gpu`".to_string()
            }
        }),
        DeviceChoice::Auto => Ok(gpu_device().unwrap_or_else(Device::flex)),
    }
}

#[cfg(feature = "gpu")]
fn gpu_device() -> Option<Device> {
    // wgpu panics when no adapter exists; a small computation proves the device works.
    std::panic::catch_unwind(|| {
        let device = Device::wgpu(Default::default());
        let probe: f32 = Tensor::<1>::ones([4], &device).sum().into_scalar();
        (probe == 4.0).then_some(device)
    })
    .ok()
    .flatten()
}

#[cfg(not(feature = "gpu"))]
fn gpu_device() -> Option<Device> {
    None
}

/// A number within `lo..=hi`, or an error that says which range the option takes.
fn number_in(s: &str, lo: f32, hi: f32) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|e| format!("{s:?} is not a number ({e})"))?;
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside {lo} to {hi}"))
    }
}

/// Value parsers that refuse numbers outside their range, naming it.
macro_rules! ranged {
    ($($(#[$doc:meta])* $name:ident: $lo:expr, $hi:expr;)*) => {$(
        $(#[$doc])*
        fn $name(s: &str) -> Result<f32, String> {
            number_in(s, $lo, $hi)
        }
    )*};
}

ranged! {
    degrees: 0.0, 180.0;
    /// Beyond 90 % shrinking an image is a few pixels.
    zoom: 0.0, 0.9;
    /// Displacements beyond a few pixels tear small images apart.
    elastic: 0.0, 16.0;
    chance: 0.0, 1.0;
    weight: 0.0, 100.0;
    /// Below 0.01 the instance softmax overflows (cosines / temperature reach e^100).
    temperature: 0.01, 10.0;
}

fn config_from(h: &HyperArgs, pixels: Pixels, seed: u64) -> TrainConfig {
    TrainConfig {
        epochs: h.epochs,
        identities_per_batch: h.identities_per_batch,
        images_per_identity: h.images_per_identity,
        mining: h.mining,
        margin: h.margin.unwrap_or(h.loss.default_margin()),
        objective: h.loss,
        scale: h.scale,
        optimizer: h.optimizer,
        learning_rate: h.learning_rate,
        weight_decay: h.weight_decay,
        warmup_steps: h.warmup_steps,
        augment: Augment {
            flip: !h.no_flip,
            jitter: h.jitter,
            brightness: h.brightness,
            contrast: h.contrast,
            rotate: h.rotate,
            zoom: h.zoom,
            elastic: h.elastic,
            erase: h.erase,
        },
        pixels,
        seed,
        max_steps: h.max_steps,
        frozen_norms: false,
        average_epochs: h.average_epochs,
        instance: h.instance,
        temperature: h.temperature,
    }
}

/// Our own networks take pixels scaled to [-1, 1].
const OWN_PIXELS: Pixels = Pixels {
    scale: 1.0 / 255.0,
    mean: 0.5,
    std: 0.5,
};

/// Pixel scaling of an existing ONNX embedder: its card's when one sits beside it, else raw
/// 0..255 values (SFace and other InsightFace exports scale inside the graph).
fn pixels_of(onnx: &Path) -> Result<Pixels, String> {
    let card = onnx.with_extension("json");
    if !card.exists() {
        return Ok(Pixels {
            scale: 1.0,
            mean: 0.0,
            std: 1.0,
        });
    }
    let text = std::fs::read_to_string(&card).map_err(|e| format!("{}: {e}", card.display()))?;
    let c: facegate::embed::model_card::ModelCard = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a model card: {e}", card.display()))?;
    let same = |v: [f32; 3]| v.iter().all(|&x| x == v[0]);
    if !same(c.input.mean) || !same(c.input.std) {
        return Err(format!(
            "{}: per-channel mean/std are not supported for training",
            card.display()
        ));
    }
    Ok(Pixels {
        scale: c.input.scale,
        mean: c.input.mean[0],
        std: c.input.std[0],
    })
}

struct Prepared {
    /// One split, or --splits of them; the first is the run that `train` exports.
    splits: Vec<data::Split>,
    net: model::Net,
    pixels: Pixels,
}

/// The network training starts from: the --init model (BatchNorm statistics frozen unless
/// --update-norms), or a new MobileFaceNet; with its pixel scaling.
fn initial_net(m: &ModelArgs, device: &Device) -> Result<(model::Net, Pixels), String> {
    match &m.init {
        Some(path) => {
            let mut net = onnx_io::import(path, device)?;
            net.frozen_norms = !m.update_norms;
            Ok((net, pixels_of(path)?))
        }
        None => {
            let arch = model::Architecture {
                input_size: m.input_size,
                embedding_dim: m.embedding_dim,
                width: m.width,
                final_channels: m.final_channels,
            };
            Ok((model::mobilefacenet(&arch, device), OWN_PIXELS))
        }
    }
}

/// The data at the network's input size, and the network: `given` (a checkpoint), the --init
/// model, or a new MobileFaceNet.
fn prepare(
    d: &DataArgs,
    m: &ModelArgs,
    no_flip: bool,
    given: Option<(model::Net, Pixels)>,
    device: &Device,
) -> Result<Prepared, String> {
    // New layers draw their initial weights from this seed: runs repeat.
    device.seed(d.seed);
    let (net, pixels) = match given {
        Some(given) => given,
        None => initial_net(m, device)?,
    };
    let ds = data::load(&d.data, net.input_size, d.crop)?;
    let mut splits = data::rotating_splits(
        &ds,
        d.splits as usize,
        d.val_identities,
        d.test_identities,
        &d.held_out,
        d.seed,
    )?;
    if d.turned_classes.wanted(no_flip) {
        for split in &mut splits {
            split.train = split.train.with_turned_classes();
        }
    }
    if let Some(val) = &d.val_data {
        let val = data::load(val, net.input_size, d.crop)?;
        for split in &mut splits {
            split.val = val.clone();
        }
    }
    if splits.len() > 1 {
        for (i, s) in splits.iter().enumerate() {
            eprintln!(
                "split {}: test classes {} (rerun alone with --hold-out {})",
                i + 1,
                s.test.classes.join(", "),
                s.test.classes.join(" --hold-out ")
            );
        }
    }
    Ok(Prepared {
        splits,
        net,
        pixels,
    })
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    facegate::support::durable::write_or_say(path, text.as_bytes())
}

fn run_train(a: TrainArgs) -> Result<(), String> {
    let device = pick_device(a.device)?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    if a.resume && a.data.splits > 1 {
        return Err("--resume continues one run; it cannot be combined with --splits".into());
    }
    let resumed = if a.resume {
        let (net, state) = train::load_checkpoint(&a.out, &device)?;
        eprintln!(
            "resuming at epoch {} (step {}); optimizer moments start afresh",
            state.epoch, state.step
        );
        Some((net, state))
    } else {
        None
    };
    let given = resumed
        .as_ref()
        .map(|(net, state)| (net.clone(), state.config.pixels));
    let Prepared {
        splits,
        net,
        pixels,
    } = prepare(&a.data, &a.model, a.hyper.no_flip, given, &device)?;
    let split = &splits[0];
    let (config, start) = match resumed {
        Some((_, state)) => (state.config.clone(), Some(state)),
        None => {
            let mut config = config_from(&a.hyper, pixels, a.data.seed);
            config.frozen_norms = net.frozen_norms;
            (config, None)
        }
    };
    eprintln!(
        "training on {} ({} parameters): {} images of {} identities; validation {}; unseen test {} identities",
        device_name(&device),
        net.parameter_count(),
        split.train.len(),
        split.train.class_count(),
        split.val.len(),
        split.test.class_count()
    );
    let outcome = train::train(
        net,
        &split.train,
        &split.val,
        &config,
        Some(&a.out),
        start.as_ref(),
        &device,
    )?;
    let (mut result, first) = finish(&outcome.net, split, &config, &a, &device)?;
    if splits.len() > 1 {
        let mut per_split = vec![first.ok_or("the first split has no held-out identities")?];
        for (i, split) in splits.iter().enumerate().skip(1) {
            eprintln!("== split {} of {} ==", i + 1, splits.len());
            per_split.push(train_split(split, &a.model, &config, a.draws, &device)?.report);
        }
        let classes: Vec<Vec<String>> = splits.iter().map(|s| s.test.classes.clone()).collect();
        let json = splits_json(&classes, &per_split)?;
        write(
            &a.out.join("splits.json"),
            &serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
        )?;
        result.insert("splits".into(), json);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&result).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// One split trained from the same initial weights as every other split (seeded from the
/// config), then evaluated on its unseen identities.
pub struct TrainedSplit {
    pub report: eval::Report,
    pub outcome: train::Outcome,
    /// Training time alone, without evaluation.
    pub seconds: f64,
}

fn train_split(
    split: &data::Split,
    m: &ModelArgs,
    config: &TrainConfig,
    draws: usize,
    device: &Device,
) -> Result<TrainedSplit, String> {
    device.seed(config.seed);
    let (net, _) = initial_net(m, device)?;
    let mut config = config.clone();
    config.frozen_norms = net.frozen_norms;
    let started = std::time::Instant::now();
    let outcome = train::train(net, &split.train, &split.val, &config, None, None, device)?;
    let seconds = started.elapsed().as_secs_f64();
    let embs = train::embed_all(&outcome.net, &split.test, config.pixels, device);
    let (report, _) = eval::evaluate(&embs, &split.test.labels, draws, config.seed);
    Ok(TrainedSplit {
        report,
        outcome,
        seconds,
    })
}

/// Every split's test classes and report, with the mean and the worst split.
fn splits_json(
    test_classes: &[Vec<String>],
    reports: &[eval::Report],
) -> Result<serde_json::Value, String> {
    let metrics: Vec<eval::Metrics> = reports.iter().map(eval::Metrics::of).collect();
    let summary = eval::summarise(&metrics);
    let per_split: Vec<serde_json::Value> = test_classes
        .iter()
        .zip(reports)
        .map(|(c, r)| serde_json::json!({"test_classes": c, "report": r}))
        .collect();
    Ok(serde_json::json!({
        "splits": summary.splits,
        "mean": summary.mean,
        "worst": summary.worst,
        "per_split": per_split,
    }))
}

fn device_name(device: &Device) -> String {
    format!("{device:?}")
}

/// Evaluation, plots and export after training: the result for stdout, and the report on the
/// unseen identities when there are any.
fn finish(
    net: &model::Net,
    split: &data::Split,
    config: &TrainConfig,
    a: &TrainArgs,
    device: &Device,
) -> Result<
    (
        serde_json::Map<String, serde_json::Value>,
        Option<eval::Report>,
    ),
    String,
> {
    let evaluated = if split.test.is_empty() {
        &split.val
    } else {
        &split.test
    };
    let mut result = serde_json::Map::new();
    let mut threshold = 0.5;
    let mut calibrated_on = "not calibrated: no held-out identities".to_string();
    let mut unseen = None;
    if !evaluated.is_empty() {
        let embs = train::embed_all(net, evaluated, config.pixels, device);
        let (report, curve) = eval::evaluate(&embs, &evaluated.labels, a.draws, config.seed);
        threshold = report.threshold_far_1e2;
        calibrated_on = format!(
            "FAR 1 % over {} images of {} identities unseen in training (facegate-train)",
            report.images, report.identities
        );
        write(
            &a.out.join("roc.svg"),
            &plot::roc_svg(&[("unseen identities", &curve)]),
        )?;
        write(
            &a.out.join("embedding.svg"),
            &plot::embedding_svg(&embs, &evaluated.labels, &evaluated.classes),
        )?;
        let json = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        write(
            &a.out.join("eval.json"),
            &serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?,
        )?;
        result.insert("unseen".into(), json);
        unseen = Some(report);
    }
    let artefact = export::Artefact {
        name: &a.name,
        pixels: config.pixels,
        aligned: a.data.crop == FaceCrop::Align,
        threshold,
        calibrated_on,
        source: format!(
            "facegate-train {} on {}",
            config.mining.name(),
            a.data.data.display()
        ),
    };
    let check = if evaluated.is_empty() {
        &split.train
    } else {
        evaluated
    };
    let report = export::export(net, &artefact, check, &a.out, device)?;
    if !evaluated.is_empty() {
        // The same figures for the int8 export as the board runs it, beside f32's.
        let (int8, _) = eval::evaluate(
            &report.int8_embeddings,
            &evaluated.labels,
            a.draws,
            config.seed,
        );
        result.insert(
            "unseen_int8".into(),
            serde_json::to_value(&int8).map_err(|e| e.to_string())?,
        );
    }
    if report.tract_max_abs_diff >= 1e-4 {
        return Err(format!(
            "tract's output differs from the trained network by {}",
            report.tract_max_abs_diff
        ));
    }
    result.insert(
        "export".into(),
        serde_json::to_value(&report).map_err(|e| e.to_string())?,
    );
    Ok((result, unseen))
}

fn run_evaluate(a: EvaluateArgs) -> Result<(), String> {
    let device = pick_device(a.device)?;
    let net = onnx_io::import(&a.model, &device)?;
    let pixels = pixels_of(&a.model)?;
    let ds = data::load(&a.data, net.input_size, a.crop)?;
    if a.splits <= 1 {
        let embs = train::embed_all(&net, &ds, pixels, &device);
        let (report, _) = eval::evaluate(&embs, &ds.labels, a.draws, a.seed);
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let groups = data::identity_groups(&ds, a.splits as usize, a.seed)?;
    let mut parts = Vec::new();
    let mut reports = Vec::new();
    for classes in &groups {
        let part = ds.subset(classes);
        let embs = train::embed_all(&net, &part, pixels, &device);
        reports.push(eval::evaluate(&embs, &part.labels, a.draws, a.seed).0);
        parts.push(part.classes);
    }
    let json = splits_json(&parts, &reports)?;
    println!(
        "{}",
        serde_json::to_string_pretty(&json).map_err(|e| e.to_string())?
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => run_train(a),
        Command::Evaluate(a) => run_evaluate(a),
        Command::MiningStudy(a) => study::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
