//! `facegate bench detect|embed|match`: repeated timed detections, reported as JSON for comparison scripts.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use facegate::imaging::photo;
use facegate::imaging::rect::Rect;

use crate::detect::SearchArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub search: SearchArgs,
    /// Timed runs per image (after one untimed warm-up run)
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = crate::ranges::int(1usize, 100_000))]
    pub repeat: usize,
    #[arg(value_name = "IMAGE", required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct Timing<'a> {
    image: &'a str,
    threads: usize,
    /// Milliseconds per detection (decoding excluded): median and fastest of the timed runs.
    median_ms: f64,
    min_ms: f64,
    faces: &'a [Rect],
}

pub fn run(args: Args) -> Result<ExitCode, String> {
    let params = args.search.params()?;
    let mut detector = args.search.detector()?;
    for path in &args.images {
        let photo = photo::load(path).map_err(|e| e.to_string())?;
        let faces = detector.detect(photo.grey_view(), &params)?;
        let mut times = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat.max(1) {
            let start = Instant::now();
            let again = detector.detect(photo.grey_view(), &params)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            if again != faces {
                return Err(format!(
                    "{}: detections changed between runs",
                    path.display()
                ));
            }
        }
        times.sort_by(f64::total_cmp);
        let shown = path.display().to_string();
        let line = Timing {
            image: &shown,
            threads: params.threads,
            median_ms: times[times.len() / 2],
            min_ms: times[0],
            faces: &faces,
        };
        println!(
            "{}",
            serde_json::to_string(&line).map_err(|e| e.to_string())?
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct EmbedArgs {
    /// Model cards to time, in order; the first is the reference for agreement and speed ratios
    #[arg(long = "model", value_name = "CARD", required = true)]
    pub models: Vec<PathBuf>,
    /// Timed passes over the crops (after one warm-up pass)
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = crate::ranges::int(1usize, 100_000))]
    pub repeat: usize,
    /// Faces per network run
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = crate::ranges::int(1usize, 256))]
    pub batch: usize,
    /// Precisions to time each model in, in order (the first model in the first precision is
    /// the reference); `auto` is what the CPU makes of it
    #[arg(
        long = "precision",
        value_enum,
        value_name = "PRECISION",
        default_value = "f32"
    )]
    pub precisions: Vec<facegate::embed::Precision>,
    /// Embed on this many threads at once, from one plan (each thread embeds every crop); the
    /// time per face is then the wall time over all the faces of all threads
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = crate::ranges::int(1usize, 64))]
    pub threads: usize,
    /// Instead of timing whole runs, time every node of each model's plan and print one line per
    /// operator (milliseconds per face, summed over its nodes), slowest first
    #[arg(long)]
    pub profile: bool,
    /// Also write every model's embeddings of every crop here, as JSON (to compare platforms)
    #[arg(long, value_name = "FILE")]
    pub embeddings_out: Option<PathBuf>,
    /// Aligned crops of the model's input size (PNG)
    #[arg(value_name = "CROP", required = true)]
    pub crops: Vec<PathBuf>,
}

#[derive(serde::Serialize)]
struct EmbedTiming<'a> {
    model: &'a str,
    form: &'a str,
    /// What the network computed in (`f32` or `f16`).
    precision: String,
    batch: usize,
    threads: usize,
    /// Median milliseconds per face over the timed passes.
    per_face_ms: f64,
    /// Reference model's time per face divided by this model's (above 1: faster).
    speed_vs_first: f64,
    /// Lowest cosine between this model's and the reference model's embedding of the same crop.
    min_cosine_vs_first: f32,
}

pub fn embed(args: EmbedArgs) -> Result<ExitCode, String> {
    let crops: Vec<image::RgbImage> = args
        .crops
        .iter()
        .map(|p| {
            image::open(p)
                .map(|i| i.to_rgb8())
                .map_err(|e| format!("cannot read {}: {e}", p.display()))
        })
        .collect::<Result<_, _>>()?;
    let batch = args.batch.clamp(1, facegate::embed::MAX_BATCH);
    let mut reference: Option<(f64, Vec<Vec<f32>>)> = None;
    let mut dump = serde_json::Map::new();
    let runs = args
        .models
        .iter()
        .flat_map(|card| args.precisions.iter().map(move |&p| (card, p)));
    for (card, precision) in runs {
        let mut e = facegate::embed::Embedder::load_with(card, batch, precision)
            .map_err(|e| e.to_string())?;
        if args.profile {
            let table = e.profile(&crops, args.repeat)?;
            let total: f64 = table.iter().map(|t| t.ms).sum();
            for t in table {
                println!(
                    "{}",
                    serde_json::json!({"form": e.card().form, "precision": e.float().to_string(), "op": t.op, "nodes": t.nodes,
                        "ms_per_face": t.ms, "share": t.ms / total})
                );
            }
            continue;
        }
        let threads = args.threads;
        let crops = &crops;
        let run = |e: &mut facegate::embed::Embedder| -> Result<(f64, Vec<Vec<f32>>), String> {
            let start = Instant::now();
            let out = std::thread::scope(|scope| {
                let others: Vec<_> = (1..threads)
                    .map(|_| {
                        let mut other = e.share();
                        scope.spawn(move || other.embed(crops).map(|_| ()))
                    })
                    .collect();
                let mine = e.embed(crops);
                for other in others {
                    other
                        .join()
                        .map_err(|_| "an embedding thread failed".to_string())??;
                }
                mine
            })?;
            Ok((
                start.elapsed().as_secs_f64() * 1e3 / (crops.len() * threads) as f64,
                out,
            ))
        };
        let (_, embeddings) = run(&mut e)?;
        let mut times = Vec::new();
        for _ in 0..args.repeat.max(1) {
            times.push(run(&mut e)?.0);
        }
        times.sort_by(f64::total_cmp);
        let per_face = times[times.len() / 2];
        let (ref_time, ref_emb) = reference.get_or_insert_with(|| (per_face, embeddings.clone()));
        let min_cos = embeddings
            .iter()
            .zip(ref_emb.iter())
            .map(|(a, b)| facegate::embed::cosine(a, b))
            .fold(f32::INFINITY, f32::min);
        let name = card.display().to_string();
        dump.insert(
            format!("{} {}", e.card().form, e.float()),
            serde_json::json!(embeddings),
        );
        let line = EmbedTiming {
            model: &name,
            form: &e.card().form,
            precision: e.float().to_string(),
            batch,
            threads,
            per_face_ms: per_face,
            speed_vs_first: *ref_time / per_face,
            min_cosine_vs_first: min_cos,
        };
        println!(
            "{}",
            serde_json::to_string(&line).map_err(|e| e.to_string())?
        );
    }
    if let Some(path) = &args.embeddings_out {
        facegate::support::durable::write_or_say(
            path,
            serde_json::Value::Object(dump).to_string().as_bytes(),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct MatchArgs {
    /// Gallery sizes to time (people)
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000", value_parser = crate::ranges::int(1usize, 2_000_000))]
    pub people: Vec<usize>,
    #[arg(long, default_value_t = 128, value_parser = crate::ranges::int(1usize, 4096))]
    pub dim: usize,
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = crate::ranges::int(1usize, 100_000))]
    pub repeat: usize,
}

/// A random unit vector of `dim` values (the benchmarks' stand-in for embeddings).
pub fn random_unit(rng: &mut facegate::support::rng::Rng, dim: usize) -> Vec<f32> {
    let v: Vec<f32> = (0..dim)
        .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5)
        .collect();
    facegate::embed::normalized(&v)
}

/// Median milliseconds to find the best of `people` random unit vectors for each of `repeat`
/// random queries.
pub fn match_median_ms(
    rng: &mut facegate::support::rng::Rng,
    people: usize,
    dim: usize,
    repeat: usize,
) -> f64 {
    let rows: Vec<Vec<f32>> = (0..people).map(|_| random_unit(rng, dim)).collect();
    let matcher = facegate::recognize::matcher::Matcher::from_centroids(
        dim,
        rows.iter().map(|r| r.as_slice()),
    );
    let queries: Vec<Vec<f32>> = (0..repeat.max(1)).map(|_| random_unit(rng, dim)).collect();
    let mut times = Vec::new();
    for q in &queries {
        let start = Instant::now();
        let best = matcher.top_k(q, 1);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(best);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn matching(args: MatchArgs) -> Result<ExitCode, String> {
    let mut rng = facegate::support::rng::Rng::new(42);
    let mut first: Option<f64> = None;
    for &n in &args.people {
        let median = match_median_ms(&mut rng, n, args.dim, args.repeat);
        let per_person_ns = median * 1e6 / n as f64;
        let base = *first.get_or_insert(per_person_ns);
        println!(
            "{}",
            serde_json::json!({"people": n, "dim": args.dim, "median_ms": median,
                "ns_per_person": per_person_ns, "per_person_cost_vs_first": per_person_ns / base})
        );
    }
    Ok(ExitCode::SUCCESS)
}
