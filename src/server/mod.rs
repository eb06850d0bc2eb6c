//! The host: control plane, discovery beacon and (later) media relays.
//! Logic lives in sans-IO cores; the smol tasks here only own sockets.

pub mod core;

#[cfg(test)]
mod core_tests;
