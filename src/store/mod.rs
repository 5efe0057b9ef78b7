//! What facegate keeps on disk: the gallery of enrolled people, written through
//! [`crate::support::durable`] under one kind of lock.

pub mod gallery;
pub mod lock;
