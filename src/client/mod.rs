//! What a participant runs: the session with a host (shared by the desktop
//! app and the bots), LAN discovery, and the bots themselves.

pub mod audio;
pub mod bot;
pub mod discover;
pub mod files;
pub mod files_bot;
pub mod files_cli;
pub mod screen;
pub mod session;
pub mod terminal;
pub mod video;

pub use session::{Client, ClientConfig, ClientError, Event};
