//! Finding faces: the OpenCV cascade port and YuNet.

pub mod cascade;
pub mod yunet;
