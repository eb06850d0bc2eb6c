//! What a participant runs: the session with a host (shared by the desktop
//! app and the bots), LAN discovery, and the bots themselves.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

pub mod audio;
pub mod bot;
pub mod discover;
pub mod files;
pub mod files_bot;
pub mod files_cli;
pub mod media;
pub mod screen;
pub mod session;
pub mod streams;
pub mod terminal;
pub mod video;

pub use session::{Client, ClientConfig, ClientError, Event};

/// `ip`, `ip:port` or `name[:port]`. Blocking for names (DNS): run it off
/// the UI thread.
pub fn parse_address(input: &str, default_port: u16) -> Result<SocketAddr, String> {
    let host = input.trim();
    if let Ok(addr) = host.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, default_port));
    }
    let with_port =
        if host.contains(':') { host.to_string() } else { format!("{host}:{default_port}") };
    with_port.to_socket_addrs().ok().and_then(|mut a| a.next()).ok_or_else(|| {
        format!("\"{host}\" is not a host address: expected an IP like 192.168.1.20 (or ip:port)")
    })
}
