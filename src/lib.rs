//! Sapora: LAN video conferencing. The binary is `src/main.rs`; this library
//! holds everything it and the integration tests share.

pub mod cli;
pub mod client;
pub mod guest;
pub mod lanif;
pub mod media;
pub mod net;
pub mod proto;
pub mod schedule;
pub mod server;
pub mod stats;
pub mod transport;
pub mod ui;
