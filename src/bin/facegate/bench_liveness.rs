//! `facegate bench liveness`: how often the geometry of `live::liveness` takes a picture for a
//! head, and a head for a picture, in two honest halves (see `live::liveness::presentations`):
//!
//! - attacks, rendered from real photos and run through the real detector and landmark model:
//!   a photo, a print and a screen, each tilted, panned, waved, shaken and brought closer, and
//!   a slideshow of a person's photos; the attack presentation classification error rate
//!   (APCER, ISO/IEC 30107-3) per kind;
//! - genuine visitors, simulated: an average head's landmarks moved naturally, with the jitter
//!   the landmark model shows on the same photos; the bona fide presentation classification
//!   error rate (BPCER) and the time to acceptance. Simulated, and labelled so.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use facegate::imaging::photo::{self, Photo};
use facegate::live::liveness::presentations::{
    head_marks, render, Camera, Medium, Motion, Pose, Visitor, MEDIA, MOTIONS,
};
use facegate::live::liveness::{LivenessConfig, Marks, TrackLiveness};
use facegate::recognize::{Candidate, FaceFinder};
use facegate::support::rng::Rng;

use crate::faces::ModelArgs;

#[derive(clap::Args)]
pub struct BenchLivenessArgs {
    /// Photos the attacks are made of: a directory of people's directories (as the 5-celebrity
    /// `val/` set), or of photos. Not photos the thresholds were tuned on
    #[arg(long, value_name = "DIR")]
    pub photos: PathBuf,
    /// Frames per presentation
    #[arg(long, value_name = "N", default_value_t = 30, value_parser = crate::ranges::int(2usize, 1000))]
    pub frames: usize,
    /// Frames per second of the presentations
    #[arg(long, value_name = "FPS", default_value_t = 10.0, value_parser = crate::ranges::real(1.0, 120.0))]
    pub fps: f64,
    /// Simulated genuine visitors
    #[arg(long, value_name = "N", default_value_t = 2000, value_parser = crate::ranges::int(1usize, 1_000_000))]
    pub visitors: usize,
    /// At most this many photos (0: all)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: usize,
    #[command(flatten)]
    pub model: ModelArgs,
}

/// A picture's width as held up: a phone or a 10x15 print held upright.
const PICTURE_MM: f32 = 110.0;
/// Frames each photo of a slideshow is shown for.
const SLIDE_FRAMES: usize = 6;

/// One attack: its kind and the landmarks of the largest face in each frame (none where no
/// face was found).
struct Attack {
    kind: String,
    marks: Vec<Option<Marks>>,
    looks: Vec<Option<Vec<f32>>>,
}

pub fn run(args: BenchLivenessArgs) -> Result<ExitCode, String> {
    let people = photos_by_person(&args.photos, args.limit)?;
    let count: usize = people.iter().map(|(_, p)| p.len()).sum();
    if count == 0 {
        return Err(format!(
            "no photos in {} (a directory of JPEG or PNG photos, or of people's directories)",
            args.photos.display()
        ));
    }
    let pipeline = args.model.load()?;
    let mut finder = pipeline.finder;
    let embedder = pipeline.embedder;
    let camera = Camera::default();
    let config = LivenessConfig::default();
    eprintln!(
        "facegate: bench liveness: {count} photos of {} people, {} frames at {} fps per presentation",
        people.len(),
        args.frames,
        args.fps
    );
    let jitter = measure_jitter(&mut finder, &people, &camera)?;
    let mut attacks = Vec::new();
    let mut rng = Rng::new(0x5eed);
    for (_, photos) in &people {
        for photo in photos {
            for medium in MEDIA {
                let shown = medium.show(&photo.rgb);
                for motion in MOTIONS {
                    let frames: Vec<_> = (0..args.frames)
                        .map(|i| (&shown, motion.pose(i as f32 / args.fps as f32, &mut rng)))
                        .collect();
                    let (marks, looks) =
                        landmarks_of(&mut finder, &embedder, &camera, medium, frames, &mut rng)?;
                    attacks.push(Attack {
                        kind: format!("{} {}", medium.name(), motion.name()),
                        marks,
                        looks,
                    });
                }
            }
        }
        eprint!(".");
    }
    for (_, photos) in people.iter().filter(|(_, p)| p.len() >= 2) {
        for medium in MEDIA {
            let shown: Vec<_> = photos.iter().map(|p| medium.show(&p.rgb)).collect();
            let frames: Vec<_> = (0..shown.len() * SLIDE_FRAMES)
                .map(|i| {
                    let t = i as f32 / args.fps as f32;
                    (&shown[i / SLIDE_FRAMES], Motion::Shake.pose(t, &mut rng))
                })
                .collect();
            let (marks, looks) =
                landmarks_of(&mut finder, &embedder, &camera, medium, frames, &mut rng)?;
            attacks.push(Attack {
                kind: format!("{} slideshow", medium.name()),
                marks,
                looks,
            });
        }
    }
    eprintln!();
    print_attacks(&attacks, &config, args.frames);
    print_genuine(&args, &camera, &config, jitter);
    print_sweep(&attacks, &args, &camera, jitter);
    Ok(ExitCode::SUCCESS)
}

/// The photos under `dir`, by person (a subdirectory each), or each photo on its own.
fn photos_by_person(dir: &Path, limit: usize) -> Result<Vec<(String, Vec<Photo>)>, String> {
    let list = |d: &Path| -> Result<Vec<PathBuf>, String> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| format!("cannot read {}: {e}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    let mut people = Vec::new();
    let mut loose = Vec::new();
    let mut taken = 0;
    let mut take = |path: &Path| -> Option<Photo> {
        if limit > 0 && taken >= limit {
            return None;
        }
        let p = photo::load(path).ok()?;
        taken += 1;
        Some(p)
    };
    for entry in list(dir)? {
        if entry.is_dir() {
            let photos: Vec<Photo> = list(&entry)?.iter().filter_map(|p| take(p)).collect();
            let name = entry.file_name().map(|n| n.to_string_lossy().into_owned());
            people.push((name.unwrap_or_default(), photos));
        } else if let Some(p) = take(&entry) {
            loose.push(p);
        }
    }
    people.extend(loose.into_iter().map(|p| (String::new(), vec![p])));
    people.retain(|(_, p)| !p.is_empty());
    Ok(people)
}

/// Renders each (picture, pose) and finds the largest face's landmarks.
/// The landmarks and looks of the largest face in each frame.
type Seen = (Vec<Option<Marks>>, Vec<Option<Vec<f32>>>);

fn landmarks_of(
    finder: &mut FaceFinder,
    embedder: &facegate::embed::Embedder,
    camera: &Camera,
    medium: Medium,
    frames: Vec<(&image::RgbImage, Pose)>,
    rng: &mut Rng,
) -> Result<Seen, String> {
    let (mut marks, mut looks) = (Vec::new(), Vec::new());
    for (shown, pose) in frames {
        let frame = render(
            shown,
            PICTURE_MM,
            pose,
            camera,
            medium == Medium::Screen,
            rng,
        );
        let photo = Photo::from_dynamic(frame.into());
        let face = match largest(finder, &photo)? {
            Some(c) => finder.confirm(&photo, c, embedder)?,
            None => None,
        };
        marks.push(face.as_ref().and_then(|f| f.landmarks));
        looks.push(face.map(|f| facegate::live::liveness::look(&f.crop)));
    }
    Ok((marks, looks))
}

/// The detector's largest face in `photo`: the one held up to the camera.
fn largest(finder: &mut FaceFinder, photo: &Photo) -> Result<Option<Candidate>, String> {
    Ok(finder
        .candidates(photo)?
        .into_iter()
        .max_by_key(|c| c.rect.w))
}

/// The landmarks of the largest face (without the aligned crop the attacks also need).
fn largest_face(finder: &mut FaceFinder, photo: &Photo) -> Result<Option<Marks>, String> {
    match largest(finder, photo)? {
        Some(c) => finder.landmarks(photo, c),
        None => Ok(None),
    }
}

/// The landmark model's jitter on the photos, held frontal and still with the face life-sized
/// (its eyes 84 px apart, as a head's at 42 cm): each rendered eight times with new sensor noise
/// and shifts of up to 1 mm (about 1.3 px); the deviation of each landmark
/// coordinate from its mean, in eye distances, root mean square over all.
fn measure_jitter(
    finder: &mut FaceFinder,
    people: &[(String, Vec<Photo>)],
    camera: &Camera,
) -> Result<f32, String> {
    let mut rng = Rng::new(0x1177e5);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for photo in people.iter().flat_map(|(_, p)| p) {
        let shown = Medium::Photo.show(&photo.rgb);
        // Held so that the face is life-sized: its eyes 63 mm apart.
        let frontal = Pose {
            yaw: 0.0,
            pitch: 0.0,
            roll: 0.0,
            x: 0.0,
            y: 0.0,
            distance: 420.0,
        };
        let frame = render(&shown, PICTURE_MM, frontal, camera, false, &mut rng);
        let Some(m) = largest_face(finder, &Photo::from_dynamic(frame.into()))? else {
            continue;
        };
        let eyes_px = ((m[0][0] - m[1][0]).powi(2) + (m[0][1] - m[1][1]).powi(2)).sqrt();
        let life = PICTURE_MM * (camera.focal * 63.0 / 420.0) / eyes_px.max(1.0);
        let mut seen = Vec::new();
        for i in 0..8 {
            let pose = Pose {
                yaw: 0.0,
                pitch: 0.0,
                roll: 0.0,
                x: (i % 3) as f32 - 1.0,
                y: (i / 3) as f32 - 1.0,
                distance: 420.0,
            };
            let frame = render(&shown, life, pose, camera, false, &mut rng);
            if let Some(m) = largest_face(finder, &Photo::from_dynamic(frame.into()))? {
                // Undo the shift, which moves every landmark alike.
                let shift = [camera.focal * pose.x / 420.0, camera.focal * pose.y / 420.0];
                seen.push(m.map(|[x, y]| [x - shift[0], y - shift[1]]));
            }
        }
        if seen.len() < 4 {
            continue;
        }
        let mean: Marks = std::array::from_fn(|k| {
            let (sx, sy) = seen
                .iter()
                .fold((0.0, 0.0), |(x, y), m| (x + m[k][0], y + m[k][1]));
            [sx / seen.len() as f32, sy / seen.len() as f32]
        });
        let eyes = ((mean[0][0] - mean[1][0]).powi(2) + (mean[0][1] - mean[1][1]).powi(2)).sqrt();
        for m in &seen {
            for k in 0..5 {
                for c in 0..2 {
                    sum += f64::from(((m[k][c] - mean[k][c]) / eyes).powi(2));
                    n += 1;
                }
            }
        }
    }
    if n == 0 {
        return Err("no face was found in the rendered photos".into());
    }
    let jitter = (sum / n as f64).sqrt() as f32;
    println!(
        "Landmark jitter on the photos (frontal, life-sized, sensor noise, shifts up to 1.3 px): \
         {:.4} eye distances per coordinate (root mean square)\n",
        jitter
    );
    Ok(jitter)
}

/// The verdict of a sequence: the first frame at which it was live, if any.
fn live_at(
    marks: &[Option<Marks>],
    looks: Option<&[Option<Vec<f32>>]>,
    config: &LivenessConfig,
) -> Option<usize> {
    let mut track = TrackLiveness::default();
    for (i, m) in marks.iter().enumerate() {
        if let Some(m) = m {
            let look = looks.and_then(|l| l.get(i).cloned().flatten());
            track.observe(m, look, config);
            if track.is_live() {
                return Some(i);
            }
        }
    }
    None
}

/// Attacks with a face in at least half their frames count; the others would not be decided.
fn presented(a: &Attack) -> bool {
    a.marks.iter().filter(|m| m.is_some()).count() * 2 >= a.marks.len()
}

fn print_attacks(attacks: &[Attack], config: &LivenessConfig, frames: usize) {
    println!(
        "Attacks (rendered from the photos through the detector and YuNet; {frames} frames; \
         threshold {}, window {}):\n",
        config.threshold, config.window
    );
    println!("| attack | presentations | face found | taken as live | APCER |");
    println!("|---|---:|---:|---:|---:|");
    let mut kinds: Vec<&str> = attacks.iter().map(|a| a.kind.as_str()).collect();
    kinds.dedup();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let all: Vec<&Attack> = attacks.iter().filter(|a| a.kind == kind).collect();
        let shown: Vec<&&Attack> = all.iter().filter(|a| presented(a)).collect();
        let live = shown
            .iter()
            .filter(|a| live_at(&a.marks, Some(&a.looks), config).is_some())
            .count();
        println!(
            "| {kind} | {} | {} | {live} | {} |",
            all.len(),
            shown.len(),
            percent(live, shown.len())
        );
    }
    println!();
}

fn percent(k: usize, n: usize) -> String {
    if n == 0 {
        "-".into()
    } else {
        format!("{:.1} %", 100.0 * k as f64 / n as f64)
    }
}

/// Simulated genuine visitors: BPCER within 1.5 s and 3 s, and the time to acceptance.
fn genuine(
    args: &BenchLivenessArgs,
    camera: &Camera,
    config: &LivenessConfig,
    jitter: f32,
) -> (f64, f64, f64, f64) {
    let mut rng = Rng::new(0x6e9);
    let frames = (3.0 * args.fps).round() as usize;
    let mut times = Vec::new();
    let mut late = [0usize; 2];
    for _ in 0..args.visitors {
        let v = Visitor::natural(&mut rng);
        let marks: Vec<Option<Marks>> = (0..frames)
            .map(|i| {
                Some(head_marks(
                    v.pose(i as f32 / args.fps as f32),
                    camera,
                    jitter,
                    &mut rng,
                ))
            })
            .collect();
        match live_at(&marks, None, config) {
            Some(i) => {
                let t = i as f64 / args.fps;
                if t > 1.5 {
                    late[0] += 1;
                }
                times.push(t);
            }
            None => {
                late[0] += 1;
                late[1] += 1;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    let n = args.visitors as f64;
    (
        late[0] as f64 / n,
        late[1] as f64 / n,
        at(0.5).unwrap_or(f64::NAN),
        at(0.95).unwrap_or(f64::NAN),
    )
}

fn print_genuine(args: &BenchLivenessArgs, camera: &Camera, config: &LivenessConfig, jitter: f32) {
    let (b15, b3, p50, p95) = genuine(args, camera, config, jitter);
    println!(
        "Genuine visitors (SIMULATED: an average head's five landmarks, turns of 5-20 degrees and \
         nods of 2-8 while walking up, with the jitter above; {} visitors):\n",
        args.visitors
    );
    println!(
        "| BPCER within 1.5 s | BPCER within 3 s | accepted after, median | 95th percentile |"
    );
    println!("|---:|---:|---:|---:|");
    println!(
        "| {:.1} % | {:.1} % | {p50:.1} s | {p95:.1} s |\n",
        100.0 * b15,
        100.0 * b3
    );
}

/// APCER (worst attack kind) and BPCER at other thresholds, for choosing them.
fn print_sweep(attacks: &[Attack], args: &BenchLivenessArgs, camera: &Camera, jitter: f32) {
    println!("Other thresholds (worst attack kind's APCER; simulated BPCER within 1.5 s):\n");
    println!("| threshold | window | worst APCER | kind | BPCER 1.5 s |");
    println!("|---:|---:|---:|---|---:|");
    let mut kinds: Vec<&str> = attacks.iter().map(|a| a.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    for threshold in [0.06, 0.08, 0.10, 0.12, 0.15, 0.20] {
        for window in [3, 5, 8] {
            let config = LivenessConfig {
                threshold,
                window,
                ..LivenessConfig::default()
            };
            let (worst, kind) = kinds
                .iter()
                .map(|k| {
                    let shown: Vec<&Attack> = attacks
                        .iter()
                        .filter(|a| a.kind == *k && presented(a))
                        .collect();
                    let live = shown
                        .iter()
                        .filter(|a| live_at(&a.marks, Some(&a.looks), &config).is_some())
                        .count();
                    (live as f64 / shown.len().max(1) as f64, *k)
                })
                .fold((0.0, ""), |best, x| if x.0 > best.0 { x } else { best });
            let (b15, ..) = genuine(args, camera, &config, jitter);
            println!(
                "| {threshold} | {window} | {:.1} % | {kind} | {:.1} % |",
                100.0 * worst,
                100.0 * b15
            );
        }
    }
}
