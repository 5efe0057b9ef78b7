//! Model cards: the JSON file beside each shipped ONNX model that says how to feed it and how to
//! read its output. The card's sha256 of the ONNX file is the model's fingerprint: galleries record
//! it, and a model file that does not match its card is refused.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
            self.path.display(),
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
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ModelCard {
    /// Reads `card_path` and the ONNX file it names, and checks the file's sha256.
    pub fn load(card_path: &Path) -> Result<LoadedModel, ModelError> {
        let fail = |path: &Path, problem: String| ModelError {
            path: path.to_path_buf(),
            problem,
        };
        let text =
            std::fs::read_to_string(card_path).map_err(|e| fail(card_path, e.to_string()))?;
        let card: ModelCard = serde_json::from_str(&text)
            .map_err(|e| fail(card_path, format!("not a valid model card: {e}")))?;
        if card.embedding_dim == 0 || card.input.width == 0 || card.input.height == 0 {
            return Err(fail(
                card_path,
                "input size and embedding dimension must be positive".into(),
            ));
        }
        if card.input.std.contains(&0.0) {
            return Err(fail(card_path, "input std must not be zero".into()));
        }
        let onnx_path = card_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&card.file);
        let onnx = std::fs::read(&onnx_path).map_err(|e| fail(&onnx_path, e.to_string()))?;
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
