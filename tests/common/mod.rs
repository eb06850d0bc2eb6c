//! Shared by the integration tests: hosts on 127.0.0.1 and helpers to wait
//! for client events with a deadline (no test may hang).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use sapora::client::{Client, ClientConfig, Event};
use sapora::proto::Ports;
use sapora::server::{self, HostOptions, RunningHost};
use smol::future::FutureExt;

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// The only broadcast address tests may use.
pub const LOOPBACK_BROADCAST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255));

pub mod lan;
pub mod shim;

/// Host options on 127.0.0.1 with free ports (0 = any) and no discovery.
pub fn options() -> HostOptions {
    let ports = Ports { control: 0, discovery: 0, file: 0, screen: 0, video: 0, audio: 0 };
    HostOptions::new(LOOPBACK, ports, "test-host")
}

pub async fn start_host() -> RunningHost {
    server::start(options()).await.expect("host starts on loopback")
}

pub async fn join(addr: SocketAddr, name: &str, room: &str) -> Client {
    Client::connect(ClientConfig::new(addr, name, room)).await.expect("client joins")
}

/// A port offset no other test in this run uses, so hosts on fixed ports
/// (discovery, restarts) do not collide when tests run in parallel. Every
/// shifted port (up to 6001 + offset) stays below the kernel's ephemeral
/// range (32768 and up), where the OS hands out ports to other sockets.
pub fn unique_offset(slot: u16) -> u16 {
    let base = 10000 + (std::process::id() % 300) as u16 * 50;
    base + slot
}

/// The next item from `rx`, or `None` once `deadline` passes (or `rx` closes).
pub async fn recv_by<T>(rx: &smol::channel::Receiver<T>, deadline: Instant) -> Option<T> {
    async { rx.recv().await.ok() }
        .or(async {
            smol::Timer::at(deadline).await;
            None
        })
        .await
}

/// Waits for the first event matching `pick`, skipping others; panics after
/// `within` with what was seen, so a broken host fails the test instead of
/// hanging it.
pub async fn expect<T>(
    client: &Client,
    within: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    let events = client.events();
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let next = recv_by(&events, deadline).await;
        match next {
            Some(e) => {
                if let Some(v) = pick(&e) {
                    return v;
                }
                seen.push(e);
            }
            None => panic!("no matching event within {within:?}; saw {seen:#?}"),
        }
    }
}

/// Drains events for `d` and returns them.
pub async fn collect(client: &Client, d: Duration) -> Vec<Event> {
    let events = client.events();
    let deadline = Instant::now() + d;
    let mut out = Vec::new();
    loop {
        let next = recv_by(&events, deadline).await;
        match next {
            Some(e) => out.push(e),
            None => return out,
        }
    }
}

pub const SEC: Duration = Duration::from_secs(1);
