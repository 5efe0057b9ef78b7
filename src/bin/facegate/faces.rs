//! Options and set-up shared by the recognition subcommands.

use std::path::PathBuf;

use facegate::detect::DetectorKind;
use facegate::embed::Precision;
pub use facegate::recognize::pipeline::Pipeline;
use facegate::recognize::pipeline::PipelineConfig;

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
    /// Do not look for faces cut by the photo's edge or filling it with YuNet where the cascade
    /// cannot (for measuring what that pass adds)
    #[arg(long, global = true)]
    pub no_edge_pass: bool,
    /// Cosine similarity at or above which a face is taken as a match [default: the model card's]
    #[arg(long, value_name = "COSINE", global = true, allow_hyphen_values = true, value_parser = crate::ranges::cosine)]
    pub threshold: Option<f32>,
    /// What the embedder computes in: f16 halves its weights and is faster on boards with
    /// half-precision arithmetic (Pi 5, Jetson Orin/Xavier); `auto` uses it only there
    #[arg(long, value_enum, default_value_t = Precision::Auto, global = true)]
    pub precision: Precision,
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
            facegate::support::terminal::path(&self.gallery),
            facegate::support::terminal::path(&self.gallery)
        ))
    }
}

impl ModelArgs {
    /// Loads the stages these options name.
    pub fn load(&self) -> Result<Pipeline, String> {
        Pipeline::load(&PipelineConfig {
            model: self.model.as_deref(),
            detector: self.detector,
            no_align: self.no_align,
            no_edge_pass: self.no_edge_pass,
            threshold: self.threshold,
            precision: self.precision,
        })
    }
}
