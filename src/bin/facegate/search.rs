//! `facegate search`: the indexed faces nearest to a photo's face or to an enrolled person.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use facegate::imaging::photo;
use facegate::photo_index::contact_sheet::{self, Section, Thumb};
use facegate::photo_index::nearest::{nearest, Hit};
use facegate::photo_index::PhotoIndex;
use facegate::store::gallery::Gallery;
use facegate::support::terminal;

use crate::faces::{ModelArgs, Pipeline};

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Index directory (made by `facegate index`)
    #[arg(long, value_name = "DIR")]
    pub index: PathBuf,
    /// Results per query
    #[arg(long, value_name = "K", default_value_t = 10, value_parser = crate::ranges::int(1usize, 100_000))]
    pub top: usize,
    /// One JSON line per query on stdout
    #[arg(long)]
    pub json: bool,
    /// Search with every face of a query photo, not only its largest
    #[arg(long)]
    pub all_faces: bool,
    /// A gallery whose enrolled people may be named as queries
    #[arg(long, value_name = "DIR")]
    pub gallery: Option<PathBuf>,
    /// Also write a contact sheet: an HTML page with the query's and the results' faces
    #[arg(long, value_name = "OUT")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Photos (their faces are searched for; a photo's own faces are left out of its results), or
    /// with --gallery, names of enrolled people
    #[arg(value_name = "QUERY", required = true)]
    pub queries: Vec<String>,
}

/// A face to search with.
struct Probe {
    /// The query as given (a path or a name).
    query: String,
    /// The face's box in the query photo (for --all-faces output).
    rect: Option<facegate::imaging::rect::Rect>,
    embedding: Vec<f32>,
    thumb: Option<Thumb>,
    /// The index's entry for the query photo, whose faces are left out of the results.
    own_photo: Option<usize>,
}

#[derive(serde::Serialize)]
struct Line<'a> {
    query: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    face: Option<Box4>,
    results: Vec<Result4<'a>>,
}

#[derive(serde::Serialize)]
struct Box4 {
    x: i32,
    y: i32,
    w: i32,
    h: i32,
}

#[derive(serde::Serialize)]
struct Result4<'a> {
    image: std::borrow::Cow<'a, str>,
    x: i32,
    y: i32,
    w: i32,
    h: i32,
    score: f32,
}

pub fn run(args: SearchArgs) -> Result<ExitCode, String> {
    let index = PhotoIndex::open(&args.index)?;
    // The model's match threshold by default: faces below it are, as far as the model can tell,
    // someone else, and listing them as results would be the false match users distrust.
    let threshold = args.model.threshold.unwrap_or(index.threshold());
    let gallery = match &args.gallery {
        Some(dir) => Some(Gallery::open(dir, index.model()).map_err(|e| {
            format!("{e} (the gallery must use the model the index was built with)")
        })?),
        None => None,
    };
    let mut pipeline: Option<Pipeline> = None;
    let mut failures = 0;
    let mut sections = Vec::new();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for query in &args.queries {
        let probes = match probes(&args, &index, gallery.as_ref(), &mut pipeline, query) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("facegate: {}", terminal::escape_message(&e));
                failures += 1;
                continue;
            }
        };
        for probe in probes {
            let hits = nearest(
                index.embeddings(),
                index.dim(),
                &probe.embedding,
                args.top,
                threshold,
                |face| {
                    probe
                        .own_photo
                        .is_some_and(|p| index.faces_of(p).contains(&face))
                },
            );
            print(&mut out, &args, &index, &probe, &hits)?;
            if args.html.is_some() {
                sections.push(section(&index, probe, &hits));
            }
        }
    }
    if let Some(path) = &args.html {
        facegate::support::durable::write_or_say(
            path,
            contact_sheet::render(&sections).as_bytes(),
        )?;
        eprintln!(
            "facegate: contact sheet written to {}",
            terminal::path(path)
        );
    }
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The faces one query searches with: an enrolled person's centroid, or a photo's largest face
/// (every face with --all-faces). A photo indexed and unchanged since reuses its stored faces, so
/// the same photo always gives the same answer and no model needs loading.
fn probes(
    args: &SearchArgs,
    index: &PhotoIndex,
    gallery: Option<&Gallery>,
    pipeline: &mut Option<Pipeline>,
    query: &str,
) -> Result<Vec<Probe>, String> {
    if let Some(g) = gallery {
        if let Some(person) = g.people().iter().find(|p| p.entry.name == query) {
            return Ok(vec![Probe {
                query: query.to_string(),
                rect: None,
                embedding: person.centroid.clone(),
                thumb: person
                    .entry
                    .crops
                    .first()
                    .map(|c| Thumb::Image(g.crop_path(c))),
                own_photo: None,
            }]);
        }
    }
    let path = PathBuf::from(query);
    if !path.is_file() {
        return Err(match gallery {
            Some(g) => format!(
                "{query}: neither a photo nor someone enrolled in the gallery {}",
                terminal::path(g.dir())
            ),
            None => format!("{query}: no such photo (to search for an enrolled person by name, add --gallery DIR)"),
        });
    }
    let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
    let indexed = index.find_photo(&canonical).filter(|&i| {
        let photo = &index.photos()[i];
        !photo.unreadable
            && facegate::photo_index::scan::stat(&canonical)
                .is_some_and(|found| found.is_unchanged(photo))
    });
    let keep = if args.all_faces { usize::MAX } else { 1 };
    if let Some(i) = indexed {
        let faces: Vec<Probe> = index
            .faces_of(i)
            .take(keep)
            .map(|face| Probe {
                query: query.to_string(),
                rect: Some(index.faces()[face].rect),
                embedding: index.embedding(face).to_vec(),
                thumb: Some(Thumb::Face {
                    photo: canonical.clone(),
                    rect: index.faces()[face].rect,
                }),
                own_photo: Some(i),
            })
            .collect();
        return non_empty(faces, query);
    }
    if pipeline.is_none() {
        let p = args.model.load()?;
        if p.model_info().fingerprint != index.model().fingerprint {
            return Err(format!(
                "index {}: it was built with the model {}, not {} (pass the index's --model)",
                terminal::path(index.dir()),
                terminal::escape(&index.model().name),
                terminal::escape(&p.model_info().name)
            ));
        }
        *pipeline = Some(p);
    }
    let Some(p) = pipeline.as_mut() else {
        return Err("no model loaded".into());
    };
    let photo = photo::load(&path).map_err(|e| e.to_string())?;
    let faces = p
        .faces(&photo)?
        .into_iter()
        .take(keep)
        .map(|(face, embedding)| Probe {
            query: query.to_string(),
            rect: Some(face.rect),
            embedding,
            thumb: Some(Thumb::Face {
                photo: canonical.clone(),
                rect: face.rect,
            }),
            own_photo: index.find_photo(&canonical),
        })
        .collect();
    non_empty(faces, query)
}

fn non_empty(probes: Vec<Probe>, query: &str) -> Result<Vec<Probe>, String> {
    if probes.is_empty() {
        Err(format!("{}: no face found", terminal::escape(query)))
    } else {
        Ok(probes)
    }
}

fn print(
    out: &mut impl Write,
    args: &SearchArgs,
    index: &PhotoIndex,
    probe: &Probe,
    hits: &[Hit],
) -> Result<(), String> {
    let results: Vec<Result4> = hits
        .iter()
        .map(|h| {
            let r = index.faces()[h.face].rect;
            Result4 {
                image: index.photo_of(h.face).path.to_string_lossy(),
                x: r.x,
                y: r.y,
                w: r.w,
                h: r.h,
                score: h.score,
            }
        })
        .collect();
    let text = if args.json {
        let line = Line {
            query: &probe.query,
            face: probe.rect.filter(|_| args.all_faces).map(|r| Box4 {
                x: r.x,
                y: r.y,
                w: r.w,
                h: r.h,
            }),
            results,
        };
        serde_json::to_string(&line).map_err(|e| e.to_string())?
    } else {
        let mut text = terminal::escape(&probe.query).into_owned();
        if let Some(r) = probe.rect.filter(|_| args.all_faces) {
            text.push_str(&format!(" (face at {}x{}+{}+{})", r.w, r.h, r.x, r.y));
        }
        text.push_str(&match results.len() {
            0 => ": no face at or above the threshold".to_string(),
            1 => ": 1 result".to_string(),
            n => format!(": {n} results"),
        });
        for r in &results {
            text.push_str(&format!(
                "\n  {:.3}  {}  {}x{}+{}+{}",
                r.score,
                terminal::escape(&r.image),
                r.w,
                r.h,
                r.x,
                r.y
            ));
        }
        text
    };
    writeln!(out, "{text}").map_err(|e| format!("cannot write to stdout: {e}"))
}

fn section(index: &PhotoIndex, probe: Probe, hits: &[Hit]) -> Section {
    Section {
        query: probe.query,
        thumb: probe.thumb,
        results: hits
            .iter()
            .map(|h| {
                let photo = &index.photo_of(h.face).path;
                let thumb = Thumb::Face {
                    photo: photo.clone(),
                    rect: index.faces()[h.face].rect,
                };
                (thumb, photo.clone(), h.score)
            })
            .collect(),
    }
}
