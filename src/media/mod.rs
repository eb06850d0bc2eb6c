//! Media that a participant captures, encodes, decodes and plays: audio,
//! video, screen. Device-free sources and sinks live next to the real ones.

#![warn(missing_docs)]

pub mod audio;
pub mod jpeg;
pub mod screen;
pub mod video;
