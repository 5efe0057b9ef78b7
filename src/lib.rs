//! facegate: face detection and recognition for edge boards.
//!
//! The modules follow the data: a picture is decoded ([`imaging`]), faces are found ([`detect`]),
//! aligned on their landmarks ([`align`]), embedded ([`embed`]) and matched against the gallery
//! ([`recognize`], [`store`]); on a live stream ([`live`]) faces are followed as tracks and each
//! visit becomes an event, which access rules ([`access`]), MQTT ([`mqtt`]), fleet sync ([`sync`])
//! and the web server ([`serve`]) act on. [`photo_index`] searches photo collections by face;
//! [`support`] holds what every stage leans on. This crate is the library behind the `facegate`
//! binary, which only parses flags and prints.

pub mod imaging;

pub mod detect;

pub mod align;

pub mod embed;

pub mod recognize;

pub mod store;

pub mod live;

pub mod events;

pub mod access;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "serve")]
pub mod serve;
pub mod sync;

pub mod photo_index;

pub mod support;
