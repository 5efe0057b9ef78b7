//! Model cards: the JSON file beside each shipped ONNX model that says how to feed it and how to
//! read its output. The card's sha256 of the ONNX file is the model's fingerprint: galleries record
//! it, and a model file that does not match its card is refused.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::support::limits;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

/// How pixels become the network's input: `(value * scale - mean[c]) / std[c]`, NCHW, f32.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    pub width: usize,
    pub height: usize,
    pub channels: ChannelOrder,
    pub scale: f32,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// Where the face must sit in the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alignment {
    /// The detector's box, resized to the input size.
    None,
    /// Five landmarks (eyes, nose tip, mouth corners, in the image's left-to-right order) mapped
    /// onto these input-pixel positions by a similarity transform.
    FivePoint { template: [[f32; 2]; 5] },
}

/// The default unknown-rejection threshold and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Cosine similarity at or above which two faces are taken as the same person.
    pub cosine: f32,
    /// The data and method it was calibrated with.
    pub calibrated_on: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    /// ONNX file, relative to the card.
    pub file: String,
    /// sha256 of the ONNX file, hex.
    pub sha256: String,
    /// `f32`, `qdq` (int8 weights, DequantizeLinear) or `qlinear` (QLinearConv).
    pub form: String,
    pub input: InputSpec,
    pub alignment: Alignment,
    pub embedding_dim: usize,
    pub threshold: Threshold,
    pub license: String,
    pub source: String,
}

#[derive(Debug)]
pub struct ModelError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot load model {}: {}",
            crate::support::terminal::path(&self.path),
            self.problem
        )
    }
}

impl std::error::Error for ModelError {}

/// A card with the model bytes it describes, checked against each other.
pub struct LoadedModel {
    pub card: ModelCard,
    /// Borrowed for the models built into the binary: a copy would only add to peak memory.
    pub onnx: std::borrow::Cow<'static, [u8]>,
    pub onnx_path: PathBuf,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes as lower-case hex (digests, tokens, signatures).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bounds on card values: the sha256 covers the ONNX file, not the card, so every value the card
/// states is checked before it sizes a buffer or decides a match.
const MAX_INPUT_SIDE: usize = 1024;
const MAX_EMBEDDING_DIM: usize = 4096;

impl ModelCard {
    /// Parses and checks a card's JSON text.
    pub fn parse(text: &str) -> Result<ModelCard, String> {
        let card: ModelCard =
            serde_json::from_str(text).map_err(|e| format!("not a valid model card: {e}"))?;
        card.validate()?;
        Ok(card)
    }

    /// Every value in range: sizes that fit a board, finite pixel scaling, a template inside the
    /// input, a threshold that is a cosine, and a sha256 that is one.
    pub fn validate(&self) -> Result<(), String> {
        let input = &self.input;
        if !(1..=MAX_INPUT_SIDE).contains(&input.width)
            || !(1..=MAX_INPUT_SIDE).contains(&input.height)
        {
            return Err(format!(
                "input size {}x{} is out of range (1 to {MAX_INPUT_SIDE} a side)",
                input.width, input.height
            ));
        }
        if !(1..=MAX_EMBEDDING_DIM).contains(&self.embedding_dim) {
            return Err(format!(
                "embedding dimension {} is out of range (1 to {MAX_EMBEDDING_DIM})",
                self.embedding_dim
            ));
        }
        let scaling = [input.scale].into_iter().chain(input.mean).chain(input.std);
        if scaling.into_iter().any(|v| !v.is_finite()) {
            return Err("input scale, mean and std must be finite numbers".into());
        }
        if input.std.iter().any(|s| s.abs() < 1e-6) {
            return Err("input std must not be zero".into());
        }
        if let Alignment::FivePoint { template } = &self.alignment {
            let (w, h) = (input.width as f32, input.height as f32);
            if template
                .iter()
                .any(|[x, y]| !(0.0..=w).contains(x) || !(0.0..=h).contains(y))
            {
                return Err(format!(
                    "an alignment template point lies outside the {}x{} input",
                    input.width, input.height
                ));
            }
        }
        let t = self.threshold.cosine;
        if !(-1.0..=1.0).contains(&t) {
            return Err(format!("threshold {t} is not a cosine (-1 to 1)"));
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("sha256 must be 64 hex digits".into());
        }
        if !matches!(self.form.as_str(), "f32" | "qdq" | "qlinear") {
            return Err(format!(
                "form '{}' is not one of f32, qdq, qlinear",
                crate::support::terminal::escape(&self.form)
            ));
        }
        for (what, text) in [("name", &self.name), ("file", &self.file)] {
            if text.is_empty() || text.chars().count() > 200 || text.chars().any(char::is_control) {
                return Err(format!(
                    "the {what} must be 1 to 200 characters without control characters"
                ));
            }
        }
        Ok(())
    }

    /// Reads `card_path` and the ONNX file it names, and checks the file's sha256.
    pub fn load(card_path: &Path) -> Result<LoadedModel, ModelError> {
        let fail = |path: &Path, problem: String| ModelError {
            path: path.to_path_buf(),
            problem,
        };
        let text = limits::read_text(card_path, limits::MAX_CARD_BYTES, "model card")
            .map_err(|e| fail(card_path, e))?;
        let card = ModelCard::parse(&text).map_err(|e| fail(card_path, e))?;
        let onnx_path = card_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&card.file);
        let onnx = limits::read_file(&onnx_path, limits::MAX_MODEL_BYTES, "model")
            .map_err(|e| fail(&onnx_path, e))?;
        let actual = sha256_hex(&onnx);
        if actual != card.sha256 {
            return Err(fail(
                &onnx_path,
                format!(
                    "sha256 is {actual}, but its card {} says {}: wrong or modified model file",
                    card_path.display(),
                    card.sha256
                ),
            ));
        }
        Ok(LoadedModel {
            card,
            onnx: onnx.into(),
            onnx_path,
        })
    }
}
