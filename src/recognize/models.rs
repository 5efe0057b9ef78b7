//! Models shipped inside the binary, so a copied `facegate` works without any file beside it.
//!
//! They are stored deflated (by `build.rs`, 11.2 MB down to 8.4 MB) and inflated when loaded; the
//! inflated bytes live only until they are decoded.

use crate::detect::cascade::Cascade;

/// A model file of `models/`, deflated by `build.rs`.
macro_rules! deflated {
    ($name:literal) => {
        include_bytes!(concat!(env!("OUT_DIR"), "/", $name, ".deflate"))
    };
}

/// More than any embedded model inflates to: a safety bound, not a setting.
const MAX_INFLATED: usize = 64 << 20;

/// The bytes of an embedded model. The test suite inflates every one of them, so this cannot fail
/// at run time.
fn inflate(name: &str, deflated: &'static [u8]) -> Vec<u8> {
    let bytes = miniz_oxide::inflate::decompress_to_vec_with_limit(deflated, MAX_INFLATED)
        .unwrap_or_else(|e| unreachable!("the embedded {name} is tested: {e:?}"));
    // The deflated pages are not read again.
    crate::support::memory::release_pages(deflated);
    bytes
}

fn inflate_text(name: &str, deflated: &'static [u8]) -> String {
    String::from_utf8(inflate(name, deflated))
        .unwrap_or_else(|e| unreachable!("the embedded {name} is tested: {e}"))
}

/// `models/haarcascade_frontalface_default.xml`, OpenCV's default frontal face cascade.
pub const DEFAULT_CASCADE_NAME: &str = "haarcascade_frontalface_default.xml";
const DEFAULT_CASCADE_XML: &[u8] = deflated!("haarcascade_frontalface_default.xml");

/// The default face cascade. It is checked by the test suite, so loading it cannot fail at run time.
pub fn default_cascade() -> Cascade {
    let xml = inflate_text(DEFAULT_CASCADE_NAME, DEFAULT_CASCADE_XML);
    Cascade::from_xml(&xml, DEFAULT_CASCADE_NAME)
        .unwrap_or_else(|e| unreachable!("the embedded cascade is tested: {e}"))
}

/// `models/sface_int8w.json` and the ONNX file it describes: the default face embedder.
const SFACE_CARD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/models/sface_int8w.json"
));
const SFACE_ONNX: &[u8] = deflated!("sface_int8w.onnx");
/// `models/yunet_2023mar.onnx`: landmarks for alignment, or a whole-photo detector.
const YUNET_ONNX: &[u8] = deflated!("yunet_2023mar.onnx");
const LBP_CASCADE_XML: &[u8] = deflated!("lbpcascade_frontalface_improved.xml");

/// The default embedder (SFace, int8 weights), checked against its card like a file on disk.
pub fn default_embedder(
    precision: crate::embed::Precision,
) -> Result<crate::embed::Embedder, crate::embed::model_card::ModelError> {
    let path = std::path::PathBuf::from("<built-in>/sface_int8w.json");
    let card = crate::embed::model_card::ModelCard::parse(SFACE_CARD).map_err(|problem| {
        crate::embed::model_card::ModelError {
            path: path.clone(),
            problem,
        }
    })?;
    crate::embed::Embedder::from_loaded(
        crate::embed::model_card::LoadedModel {
            card,
            onnx: inflate("sface_int8w.onnx", SFACE_ONNX).into(),
            onnx_path: path.with_file_name("sface_int8w.onnx"),
        },
        crate::embed::DEFAULT_BATCH,
        precision,
    )
}

pub fn default_yunet() -> Result<crate::detect::yunet::YuNet, String> {
    crate::detect::yunet::YuNet::from_bytes(&inflate("yunet_2023mar.onnx", YUNET_ONNX))
}

/// `models/lbpcascade_frontalface_improved.xml`.
pub fn lbp_cascade() -> Cascade {
    let name = "lbpcascade_frontalface_improved.xml";
    Cascade::from_xml(&inflate_text(name, LBP_CASCADE_XML), name)
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

    /// Every embedded model inflates to exactly the file in `models/`.
    #[test]
    fn embedded_models_are_the_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for (name, deflated) in [
            ("sface_int8w.onnx", super::SFACE_ONNX),
            ("yunet_2023mar.onnx", super::YUNET_ONNX),
            (
                "haarcascade_frontalface_default.xml",
                super::DEFAULT_CASCADE_XML,
            ),
            (
                "lbpcascade_frontalface_improved.xml",
                super::LBP_CASCADE_XML,
            ),
        ] {
            let file = std::fs::read(root.join(name)).unwrap();
            assert!(
                deflated.len() < file.len(),
                "{name} is not smaller deflated"
            );
            assert!(super::inflate(name, deflated) == file, "{name} differs");
        }
    }
}
