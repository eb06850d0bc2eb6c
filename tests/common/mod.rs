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
pub mod ui;

/// Keeps every test out of the real home: hosts keep their certificate and
/// clients their known hosts in `$SAPORA_CONFIG_DIR`, which is set here to a
/// fresh directory for this test process unless already set (scripts/test.sh
/// sets one for the whole run). All hosts of a run share that certificate,
/// so a port reused by another test's host never looks like a changed one.
pub fn isolate() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("SAPORA_CONFIG_DIR").is_none_or(|d| d.is_empty()) {
            let cfg = tempfile::tempdir().expect("temp dir").keep();
            // SAFETY: inside call_once, which every test passes (through
            // options/start_host/join) before it starts a host or client.
            unsafe { std::env::set_var("SAPORA_CONFIG_DIR", cfg) };
        }
    });
}

/// Whether something (a host's QUIC endpoint) holds UDP `addr`: how tests
/// wait for a `sapora host` process to listen.
pub fn udp_bound(addr: impl std::net::ToSocketAddrs) -> bool {
    std::net::UdpSocket::bind(addr).is_err()
}

/// Host options on 127.0.0.1 with free ports (0 = any) and no discovery.
pub fn options() -> HostOptions {
    isolate();
    let ports = Ports { control: 0, discovery: 0 };
    HostOptions::new(LOOPBACK, ports, "test-host")
}

pub async fn start_host() -> RunningHost {
    isolate();
    server::start(options()).await.expect("host starts on loopback")
}

/// True when the run forces the TLS tunnel (`SAPORA_TRANSPORT=tls`).
pub fn over_tls() -> bool {
    std::env::var("SAPORA_TRANSPORT").is_ok_and(|t| t.trim().eq_ignore_ascii_case("tls"))
}

/// True (and says so) when the run forces the TLS tunnel
/// (`SAPORA_TRANSPORT=tls`): tests that put the UDP impairment shim in
/// front of the host's QUIC port then have nothing to impair, and skip.
pub fn skip_over_tls(test: &str) -> bool {
    let tls = over_tls();
    if tls {
        eprintln!("{test}: skipped over TLS (the impairment shim carries UDP, i.e. QUIC, only)");
    }
    tls
}

pub async fn join(addr: SocketAddr, name: &str, room: &str) -> Client {
    isolate();
    Client::connect(ClientConfig::new(addr, name, room)).await.expect("client joins")
}

/// Joins through an impairment shim at `shim`, over QUIC (a shim carries UDP
/// only): a handshake that loses too many packets to finish within the
/// client's QUIC grace time falls back to TLS, which the shim refuses, so
/// it is tried again (at most 5 times).
pub async fn join_through(shim: SocketAddr, name: &str, room: &str) -> Client {
    isolate();
    let mut tries = 0;
    loop {
        match Client::connect(ClientConfig::new(shim, name, room)).await {
            Ok(client) => return client,
            Err(e) if tries < 5 => {
                tries += 1;
                eprintln!("{name} joins through the shim again: {e}");
            }
            Err(e) => panic!("{name} cannot join through the shim: {e}"),
        }
    }
}

/// A port offset no other test in this run uses, so hosts on fixed ports
/// (discovery, restarts) do not collide when tests run in parallel. Every
/// shifted port (up to 5001 + offset) stays below the kernel's ephemeral
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

/// A client that speaks raw control frames: a QUIC link admitted to `room`
/// (no passcode), its control stream's halves as they are.
pub struct RawControl {
    pub link: sapora::transport::link::Link,
    pub send: sapora::transport::link::LinkSend,
    pub recv: sapora::transport::link::LinkRecv,
}

pub async fn raw_control(addr: SocketAddr, room: &str) -> RawControl {
    isolate();
    let pins = sapora::transport::pin::PinStore::open_default().expect("config dir");
    let est =
        sapora::transport::link::connect(addr, room, None, &pins).await.expect("link to the host");
    RawControl { link: est.link, send: est.control_send, recv: est.control_recv }
}

impl RawControl {
    pub async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use smol::io::AsyncWriteExt;
        self.send.write_all(bytes).await
    }

    /// Everything the host sends until it ends the stream or closes the
    /// link (or `within` passes).
    pub async fn read_until_closed(&mut self, within: Duration) -> Vec<u8> {
        use smol::io::AsyncReadExt;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + within;
        loop {
            let n = async { self.recv.read(&mut buf).await.ok() }
                .or(async {
                    smol::Timer::at(deadline).await;
                    None
                })
                .await;
            match n {
                Some(0) | None => return got,
                Some(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Whether the host closed the link within `within`.
    pub async fn closed_within(&self, within: Duration) -> bool {
        async {
            self.link.closed().await;
            true
        }
        .or(async {
            smol::Timer::after(within).await;
            false
        })
        .await
    }
}

/// The JSON report a finished `sapora bot` printed on stdout (its first JSON
/// line), after checking it lists no errors. Panics with the bot's stdout and
/// stderr when there is none.
pub fn bot_report(who: &str, out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = text
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("{who}: {text} {}", String::from_utf8_lossy(&out.stderr)));
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    report
}
