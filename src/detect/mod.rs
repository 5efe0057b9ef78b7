//! Finding faces: the OpenCV cascade port ([`cascade`]) and YuNet ([`yunet`]), one of which
//! [`DetectorKind`] picks. A new detector is one more module here and one more kind; the
//! recognizer reaches it through [`crate::recognize::FaceFinder`].

pub mod cascade;
pub mod yunet;

/// Which detector finds the faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DetectorKind {
    /// OpenCV's default Haar cascade, then YuNet landmarks inside each box (boxes where YuNet
    /// finds no face are dropped).
    Haar,
    /// OpenCV's improved LBP cascade, then YuNet landmarks inside each box.
    Lbp,
    /// YuNet on the whole photo (boxes and landmarks).
    Yunet,
}
