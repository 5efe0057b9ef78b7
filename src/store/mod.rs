//! What facegate keeps on disk: the gallery of enrolled people.

pub mod gallery;
