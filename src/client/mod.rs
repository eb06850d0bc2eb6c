//! What a participant runs: the session with a host (shared by the desktop
//! app and the bots), LAN discovery, and the bots themselves.

pub mod bot;
pub mod discover;
pub mod session;
pub mod terminal;

pub use session::{Client, ClientConfig, ClientError, Event};
