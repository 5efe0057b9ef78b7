//! Models shipped inside the binary, so a copied `facegate` works without any file beside it.

use crate::detector::Cascade;

/// `models/haarcascade_frontalface_default.xml`, OpenCV's default frontal face cascade.
pub const DEFAULT_CASCADE_NAME: &str = "haarcascade_frontalface_default.xml";
const DEFAULT_CASCADE_XML: &str = include_str!("../models/haarcascade_frontalface_default.xml");

/// The default face cascade. It is checked by the test suite, so loading it cannot fail at run time.
pub fn default_cascade() -> Cascade {
    Cascade::from_xml(DEFAULT_CASCADE_XML, DEFAULT_CASCADE_NAME)
        .unwrap_or_else(|e| unreachable!("the embedded cascade is tested: {e}"))
}

/// `models/sface_int8w.json` and the ONNX file it describes: the default face embedder.
const SFACE_CARD: &str = include_str!("../models/sface_int8w.json");
const SFACE_ONNX: &[u8] = include_bytes!("../models/sface_int8w.onnx");
/// `models/yunet_2023mar.onnx`: landmarks for alignment, or a whole-photo detector.
const YUNET_ONNX: &[u8] = include_bytes!("../models/yunet_2023mar.onnx");
const LBP_CASCADE_XML: &str = include_str!("../models/lbpcascade_frontalface_improved.xml");

/// The default embedder (SFace, int8 weights), checked against its card like a file on disk.
pub fn default_embedder(
    precision: crate::embedder::Precision,
) -> Result<crate::embedder::Embedder, crate::model_card::ModelError> {
    let path = std::path::PathBuf::from("<built-in>/sface_int8w.json");
    let card = crate::model_card::ModelCard::parse(SFACE_CARD).map_err(|problem| {
        crate::model_card::ModelError {
            path: path.clone(),
            problem,
        }
    })?;
    crate::embedder::Embedder::from_loaded(
        crate::model_card::LoadedModel {
            card,
            onnx: SFACE_ONNX.into(),
            onnx_path: path.with_file_name("sface_int8w.onnx"),
        },
        crate::embedder::DEFAULT_BATCH,
        precision,
    )
}

pub fn default_yunet() -> Result<crate::yunet::YuNet, String> {
    let yunet = crate::yunet::YuNet::from_bytes(YUNET_ONNX);
    crate::memory::release_pages(YUNET_ONNX);
    yunet
}

/// `models/lbpcascade_frontalface_improved.xml`.
pub fn lbp_cascade() -> Cascade {
    Cascade::from_xml(LBP_CASCADE_XML, "lbpcascade_frontalface_improved.xml")
        .unwrap_or_else(|e| unreachable!("the embedded cascade is tested: {e}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_default_cascade_loads() {
        let c = super::default_cascade();
        assert_eq!((c.window_width, c.window_height), (24, 24));
        assert_eq!(c.stages.len(), 25);
        assert_eq!(super::lbp_cascade().stages.len(), 19);
        assert!(super::default_yunet().is_ok());
    }
}
