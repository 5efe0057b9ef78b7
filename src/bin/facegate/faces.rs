//! Options and set-up shared by the recognition subcommands.

use std::path::{Path, PathBuf};

use facegate::detector::Detector;
use facegate::embedder::Embedder;
use facegate::gallery::{Gallery, ModelInfo};
use facegate::image_io::{self, Photo};
use facegate::models;
use facegate::recognize::{DetectorKind, Face, FaceFinder};

#[derive(clap::Args, Clone)]
pub struct ModelArgs {
    /// Face embedder model card [default: the built-in SFace int8 model, models/sface_int8w.json]
    #[arg(long, value_name = "CARD", global = true)]
    pub model: Option<PathBuf>,
    /// Face detector: a cascade (with YuNet landmarks inside each box) or YuNet on the whole photo
    #[arg(long, value_enum, default_value_t = DetectorKind::Haar, global = true)]
    pub detector: DetectorKind,
    /// Crop the detection box without landmark alignment (for measuring what alignment buys)
    #[arg(long, global = true)]
    pub no_align: bool,
    /// Cosine similarity at or above which a face is taken as a match [default: the model card's]
    #[arg(long, value_name = "COSINE", global = true, value_parser = crate::ranges::cosine)]
    pub threshold: Option<f32>,
}

#[derive(clap::Args, Clone)]
pub struct GalleryArgs {
    /// Gallery directory
    #[arg(long, value_name = "DIR", default_value = "enrollment", global = true)]
    pub gallery: PathBuf,
}

impl GalleryArgs {
    /// Every command but `enroll` reads an existing gallery: a mistyped path is an error, not an
    /// empty gallery.
    pub fn must_exist(&self) -> Result<(), String> {
        if self.gallery.is_dir() {
            return Ok(());
        }
        Err(format!(
            "no gallery at {}: the folder does not exist (check --gallery, or enroll someone first \
             with `facegate enroll --gallery {} --name NAME PHOTO...`)",
            facegate::terminal::path(&self.gallery),
            facegate::terminal::path(&self.gallery)
        ))
    }
}

pub struct Pipeline {
    pub finder: FaceFinder,
    pub embedder: Embedder,
    pub threshold: f32,
}

impl Pipeline {
    pub fn new(args: &ModelArgs) -> Result<Pipeline, String> {
        let embedder = match &args.model {
            Some(card) => Embedder::load(card),
            None => models::default_embedder(),
        }
        .map_err(|e| e.to_string())?;
        let cascade = match args.detector {
            DetectorKind::Haar => Some(Detector::new(models::default_cascade())),
            DetectorKind::Lbp => Some(Detector::new(models::lbp_cascade())),
            DetectorKind::Yunet => None,
        };
        let yunet = models::default_yunet()?;
        let threshold = args.threshold.unwrap_or(embedder.card().threshold.cosine);
        let mut finder = FaceFinder::new(args.detector, cascade, yunet);
        finder.skip_alignment = args.no_align;
        Ok(Pipeline {
            finder,
            embedder,
            threshold,
        })
    }

    pub fn model_info(&self) -> ModelInfo {
        let card = self.embedder.card();
        ModelInfo {
            name: card.name.clone(),
            fingerprint: card.sha256.clone(),
            embedding_dim: card.embedding_dim,
        }
    }

    pub fn open_gallery(&self, dir: &Path) -> Result<Gallery, String> {
        Gallery::open(dir, &self.model_info()).map_err(|e| e.to_string())
    }

    /// Faces of a photo with their embeddings, largest first.
    pub fn faces(&mut self, photo: &Photo) -> Result<Vec<(Face, Vec<f32>)>, String> {
        let faces = self.finder.faces(photo, &self.embedder)?;
        let crops: Vec<_> = faces.iter().map(|f| f.crop.clone()).collect();
        let embeddings = self.embedder.embed(&crops)?;
        Ok(faces.into_iter().zip(embeddings).collect())
    }

    /// The largest face of a photo file, or an error naming the file.
    pub fn largest_face(&mut self, path: &Path) -> Result<(Face, Vec<f32>), String> {
        let photo = image_io::load(path).map_err(|e| e.to_string())?;
        self.faces(&photo)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{}: no face found", facegate::terminal::path(path)))
    }
}
