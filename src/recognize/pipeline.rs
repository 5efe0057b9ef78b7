//! The loaded recognition stages for still photos: detector, landmarks and alignment, embedder and
//! the match threshold, as the photo commands and the HTTP API use them.

use std::path::Path;

use crate::detect::cascade::Detector;
use crate::detect::DetectorKind;
use crate::embed::{Embedder, Precision, DEFAULT_BATCH};
use crate::imaging::photo::{self, Photo};
use crate::recognize::models;
use crate::recognize::{Face, FaceFinder};
use crate::store::gallery::{Gallery, ModelInfo};

pub struct Pipeline {
    pub finder: FaceFinder,
    pub embedder: Embedder,
    pub threshold: f32,
}

/// What to load: the model card (`None`: the built-in default), the detector, whether to align,
/// and the threshold (`None`: the card's).
#[derive(Debug, Clone)]
pub struct PipelineConfig<'a> {
    pub model: Option<&'a Path>,
    pub detector: DetectorKind,
    pub no_align: bool,
    pub threshold: Option<f32>,
    /// Skip the cascade's edge pass (for measuring what it adds).
    pub no_edge_pass: bool,
    /// What the embedder computes in.
    pub precision: Precision,
}

impl Pipeline {
    pub fn load(config: &PipelineConfig<'_>) -> Result<Pipeline, String> {
        crate::support::memory::loading_begins();
        let embedder = match config.model {
            Some(card) => Embedder::load_with(card, DEFAULT_BATCH, config.precision),
            None => models::default_embedder(config.precision),
        }
        .map_err(|e| e.to_string())?;
        let cascade = cascade(config.detector);
        let yunet = models::default_yunet()?;
        let threshold = config.threshold.unwrap_or(embedder.card().threshold.cosine);
        let mut finder = FaceFinder::new(config.detector, cascade, yunet);
        finder.skip_alignment = config.no_align;
        finder.edge_pass = !config.no_edge_pass;
        crate::support::memory::loading_done();
        Ok(Pipeline {
            finder,
            embedder,
            threshold,
        })
    }

    /// A second pipeline for another thread: its own detector (small, with per-frame scratch
    /// buffers) and the same embedder weights (the large part, shared).
    pub fn share(&self) -> Result<Pipeline, String> {
        let kind = self.finder.kind();
        let mut finder = FaceFinder::new(kind, cascade(kind), models::default_yunet()?);
        finder.skip_alignment = self.finder.skip_alignment;
        finder.edge_pass = self.finder.edge_pass;
        finder.params = self.finder.params.clone();
        finder.detect_max_side = self.finder.detect_max_side;
        Ok(Pipeline {
            finder,
            embedder: self.embedder.share(),
            threshold: self.threshold,
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
        let photo = photo::load(path).map_err(|e| e.to_string())?;
        self.faces(&photo)?
            .into_iter()
            .next()
            .ok_or_else(|| format!("{}: no face found", crate::support::terminal::path(path)))
    }
}

/// The built-in cascade a detector kind scans with (YuNet needs none).
fn cascade(kind: DetectorKind) -> Option<Detector> {
    match kind {
        DetectorKind::Haar => Some(Detector::new(models::default_cascade())),
        DetectorKind::Lbp => Some(Detector::new(models::lbp_cascade())),
        DetectorKind::Yunet => None,
    }
}
