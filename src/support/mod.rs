//! What every stage leans on: input limits, terminal-safe text, throttled warnings, memory
//! accounting and the settings file.

pub mod durable;
pub mod limits;
pub mod memory;
pub mod rng;
pub mod settings;
pub mod terminal;
pub mod warnings;
