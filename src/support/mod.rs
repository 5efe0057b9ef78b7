//! What every stage leans on: input limits, terminal-safe text, throttled warnings, memory
//! accounting and the settings file.

pub mod limits;
pub mod memory;
pub mod settings;
pub mod terminal;
pub mod warnings;
