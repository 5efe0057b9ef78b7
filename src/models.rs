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

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_default_cascade_loads() {
        let c = super::default_cascade();
        assert_eq!((c.window_width, c.window_height), (24, 24));
        assert_eq!(c.stages.len(), 25);
    }
}
