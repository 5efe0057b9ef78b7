//! `facegate bench search`: query time of `facegate search` over synthetic collections of 10 000
//! to 1 000 000 faces, next to a reference run in the same process (score every face, sort them
//! all), and the time to open such an index from disk.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use facegate::imaging::rect::Rect;
use facegate::photo_index::nearest::nearest;
use facegate::photo_index::{FaceEntry, PhotoEntry, PhotoIndex, Record};
use facegate::recognize::matcher::dot;
use facegate::store::gallery::ModelInfo;

#[derive(clap::Args)]
pub struct BenchSearchArgs {
    /// Collection sizes to time (faces)
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000", value_parser = crate::ranges::int(1usize, 8_000_000))]
    pub faces: Vec<usize>,
    #[arg(long, default_value_t = 128, value_parser = crate::ranges::int(1usize, 4096))]
    pub dim: usize,
    /// Queries timed per size (the median is reported)
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = crate::ranges::int(1usize, 10_000))]
    pub repeat: usize,
    #[arg(long, value_name = "K", default_value_t = 10, value_parser = crate::ranges::int(1usize, 100_000))]
    pub top: usize,
    /// Also write each collection as an index in this folder and time opening it
    #[arg(long, value_name = "DIR")]
    pub open: Option<PathBuf>,
}

pub fn run(args: BenchSearchArgs) -> Result<ExitCode, String> {
    let mut rng = facegate::support::rng::Rng::new(7);
    let mut unit = |dim: usize| crate::bench::random_unit(&mut rng, dim);
    for &n in &args.faces {
        let mut matrix = Vec::with_capacity(n * args.dim);
        for _ in 0..n {
            matrix.extend(unit(args.dim));
        }
        let queries: Vec<Vec<f32>> = (0..args.repeat).map(|_| unit(args.dim)).collect();
        let ours = median_ms(&queries, |q| {
            nearest(&matrix, args.dim, q, args.top, -1.0, |_| false).len()
        });
        let reference = median_ms(&queries, |q| {
            let mut all: Vec<(f32, usize)> = matrix
                .chunks_exact(args.dim)
                .enumerate()
                .map(|(i, row)| (dot(q, row), i))
                .collect();
            all.sort_by(|a, b| b.0.total_cmp(&a.0));
            all.truncate(args.top);
            all.len()
        });
        let mut line = serde_json::json!({
            "faces": n, "dim": args.dim, "top": args.top,
            "query_ms": ours, "reference_sort_all_ms": reference,
            "speed_vs_reference": reference / ours,
            "scanned_mb_per_s": (n * args.dim * 4) as f64 / 1e6 / (ours / 1e3),
        });
        if let Some(dir) = &args.open {
            line["open_ms"] = open_ms(&dir.join(format!("bench-{n}")), &matrix, args.dim)?.into();
        }
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn median_ms(queries: &[Vec<f32>], mut search: impl FnMut(&[f32]) -> usize) -> f64 {
    let mut times: Vec<f64> = queries
        .iter()
        .map(|q| {
            let start = Instant::now();
            std::hint::black_box(search(q));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Writes the matrix as an index (one face per photo) and times opening it, as `search` does.
fn open_ms(dir: &std::path::Path, matrix: &[f32], dim: usize) -> Result<f64, String> {
    let _ = std::fs::remove_dir_all(dir);
    let model = ModelInfo {
        name: "bench".into(),
        fingerprint: "bench".into(),
        embedding_dim: dim,
    };
    let records: BTreeMap<PathBuf, Record> = matrix
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, row)| {
            let path = PathBuf::from(format!("/photos/{:08}.jpg", i));
            let face = FaceEntry {
                rect: Rect {
                    x: 10,
                    y: 10,
                    w: 100,
                    h: 100,
                },
                landmarks: Some([[40.0, 50.0]; 5]),
            };
            let photo = PhotoEntry {
                path: path.clone(),
                size: 100_000,
                modified_secs: 1_700_000_000,
                modified_nanos: 0,
                width: 640,
                height: 480,
                unreadable: false,
                faces: 1,
            };
            let record = Record {
                photo,
                faces: vec![(face, row.to_vec())],
            };
            (path, record)
        })
        .collect();
    let lock = PhotoIndex::lock(dir)?;
    PhotoIndex::commit(dir, &lock, (&model, 0.3), None, &records)?;
    drop(records);
    let start = Instant::now();
    let index = PhotoIndex::open(dir)?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    std::hint::black_box(index.faces().len());
    let _ = std::fs::remove_dir_all(dir);
    Ok(ms)
}
