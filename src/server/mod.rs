//! The host: control plane, discovery beacon and (later) media relays.
//! Logic lives in sans-IO cores; the smol tasks here only own sockets.

pub mod audio;
pub mod beacon;
pub mod control;
pub mod core;
pub mod directory;
pub mod files;
pub mod host;
pub mod media;
pub mod mixer;
pub mod reach;
pub mod record;
pub mod runtime;
pub mod screen;
pub mod streams;
pub mod video;

pub use control::{ControlHandle, serve_link};
pub use directory::Directory;
pub use host::{HostError, HostOptions, RoomPasscodes, RunningHost, start};

#[cfg(test)]
mod core_tests;
