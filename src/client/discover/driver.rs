//! The socket driver of client-side discovery: [`discover`] (one shot,
//! for `sapora discover` and the launcher) and [`watch`] (continuous, for
//! the GUI) read the clock and the sockets and feed the sans-IO core
//! ([`HostTable`], [`ProbeSchedule`], [`parse_beacon`]).
//!
//! Probes are sent from an ephemeral socket of our own, so hosts answer
//! unicast to a port no one else holds. The shared discovery port is also
//! bound (with reuse-port) to hear periodic beacons; a unicast answer sent
//! there would reach only one of the processes sharing it.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::{Async, Timer};
use tracing::{debug, warn};

use super::core::{
    DiscoveredHost, HostTable, ProbeKind, ProbeSchedule, WATCH_PROBE_EVERY, parse_beacon,
};
use crate::lanif::{Fanout, Reach, Via};
use crate::net::bind_discovery_socket;
use crate::proto::{Beacon, DecodeError, MsgType, PROTOCOL_VERSION, Probe, encode_frame};

/// How long `sapora discover` and the launcher listen by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a receive error so a persistently failing socket cannot spin.
const RECV_ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// The watcher wakes at least this often to notice that nobody listens any more.
const WATCH_MAX_SLEEP: Duration = Duration::from_secs(1);

/// Where to look and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscoverOptions {
    /// Where probes go: `server::beacon::LAN_BROADCAST` for users, the
    /// loopback broadcast 127.255.255.255 in tests, or one host's address.
    pub target: IpAddr,
    /// The discovery port (`server::beacon::DEFAULT_DISCOVERY_PORT`).
    pub port: u16,
    /// How long [`discover`] collects answers; unused by [`watch`].
    pub timeout: Duration,
}

/// One-shot discovery: probe, collect answers and beacons until
/// `opts.timeout`, return the hosts heard.
///
/// Fails only if we can neither send a probe nor listen for beacons.
pub async fn discover(opts: &DiscoverOptions) -> io::Result<Vec<DiscoveredHost>> {
    let start = Instant::now();
    let deadline = start + opts.timeout;
    let mut scanner = Scanner::open(opts)?;
    let mut table = HostTable::new();
    let mut schedule = ProbeSchedule::once(start);

    loop {
        if let Some(kind) = schedule.poll(Instant::now())
            && let Err(e) = scanner.probe().await
        {
            match kind {
                ProbeKind::Round if !scanner.listening => return Err(e),
                ProbeKind::Round => warn!(target = %opts.target, port = opts.port, error = %e,
                    "cannot send a discovery probe; listening for beacons only"),
                ProbeKind::Retry => debug!(error = %e, "discovery probe resend failed"),
            }
        }
        let wake_at = schedule.poll_timeout().map_or(deadline, |t| t.min(deadline));
        match scanner.next(wake_at).await {
            Heard::Beacon(src, beacon) => {
                table.observe(Instant::now(), src, *beacon);
            }
            Heard::Nothing if Instant::now() >= deadline => break,
            Heard::Nothing => {}
        }
    }
    Ok(table.hosts())
}

/// Keeps discovering until `updates` is closed, sending the whole host list
/// whenever a host appears, changes or expires.
///
/// Sends with `force_send`: on a bounded channel a slow reader gets only the
/// newest list, never a backlog.
pub async fn watch(opts: DiscoverOptions, updates: Sender<Vec<DiscoveredHost>>) -> io::Result<()> {
    let mut scanner = Scanner::open(&opts)?;
    let mut table = HostTable::new();
    let mut schedule = ProbeSchedule::every(Instant::now(), WATCH_PROBE_EVERY);
    let mut probe_failing = false;

    loop {
        if updates.is_closed() {
            return Ok(());
        }
        let now = Instant::now();
        if let Some(kind) = schedule.poll(now) {
            if kind == ProbeKind::Round && !scanner.fanout.refresh().is_empty() {
                debug!("new network interface: probing there too");
            }
            match scanner.probe().await {
                Ok(()) => probe_failing = false,
                Err(e) if !probe_failing => {
                    warn!(target = %opts.target, port = opts.port, error = %e,
                        "cannot send discovery probes; listening for beacons only");
                    probe_failing = true;
                }
                Err(e) => debug!(error = %e, "discovery probe failed again"),
            }
        }
        if !table.expire(now).is_empty() && updates.force_send(table.hosts()).is_err() {
            return Ok(());
        }

        let max_sleep = now + WATCH_MAX_SLEEP;
        let wake_at = [schedule.poll_timeout(), table.next_expiry()]
            .into_iter()
            .flatten()
            .fold(max_sleep, Instant::min);
        if let Heard::Beacon(src, beacon) = scanner.next(wake_at).await
            && table.observe(Instant::now(), src, *beacon)
            && updates.force_send(table.hosts()).is_err()
        {
            return Ok(());
        }
    }
}

/// Runs [`watch`] on smol's global executor; the task ends (within about a
/// second) once the returned receiver is dropped.
pub fn spawn_watch(opts: DiscoverOptions) -> Receiver<Vec<DiscoveredHost>> {
    let (tx, rx) = smol::channel::bounded(1);
    smol::spawn(async move {
        if let Err(e) = watch(opts, tx).await {
            warn!(error = %e, "LAN discovery stopped");
        }
    })
    .detach();
    rx
}

/// What [`Scanner::next`] woke up for.
enum Heard {
    Beacon(SocketAddr, Box<Beacon>),
    /// The wake-up time passed.
    Nothing,
}

/// The sockets and probe state shared by [`discover`] and [`watch`].
struct Scanner {
    /// Per-interface sockets (probes go out from them, answers come back to
    /// them) and the shared discovery port (periodic beacons), read as one.
    fanout: Fanout,
    port: u16,
    /// Whether the shared discovery port is bound (periodic beacons heard).
    listening: bool,
    nonce: u32,
    seq: u16,
    rejected: u64,
}

impl Scanner {
    fn open(opts: &DiscoverOptions) -> io::Result<Scanner> {
        let listen = if opts.target.is_ipv4() {
            match bind_discovery_socket(opts.port).and_then(Async::new) {
                Ok(s) => Some(s),
                Err(e) => {
                    debug!(port = opts.port, error = %e,
                        "cannot listen on the discovery port; relying on probe answers");
                    None
                }
            }
        } else {
            None
        };
        let listening = listen.is_some();
        let fanout = Fanout::open(Reach::from_target(opts.target), listen)?;
        // 0 marks unsolicited beacons, so a probe never uses it.
        let nonce = getrandom::u32().unwrap_or(0).max(1);
        Ok(Scanner { fanout, port: opts.port, listening, nonce, seq: 0, rejected: 0 })
    }

    /// Probes everywhere discovery reaches; an error only if no copy left.
    async fn probe(&mut self) -> io::Result<()> {
        let mut frame = Vec::new();
        let probe = Probe { version: PROTOCOL_VERSION, nonce: self.nonce };
        encode_frame(MsgType::DiscoveryProbe, self.seq, &probe, &mut frame);
        self.seq = self.seq.wrapping_add(1);
        match self.fanout.broadcast(&frame, self.port).await {
            0 => Err(io::Error::new(
                io::ErrorKind::NetworkUnreachable,
                "no network interface could send a probe",
            )),
            _ => Ok(()),
        }
    }

    /// Waits for the next acceptable beacon, or until `wake_at`.
    async fn next(&mut self, wake_at: Instant) -> Heard {
        let incoming = self.fanout.incoming().clone();
        loop {
            // Checked on every turn so a flood of datagrams cannot keep us
            // past the deadline; receiving is polled first so queued answers
            // are not left unread when the deadline and they race.
            if Instant::now() >= wake_at {
                return Heard::Nothing;
            }
            let got = smol::future::or(async { incoming.recv().await.ok() }, async {
                Timer::at(wake_at).await;
                None
            })
            .await;
            let Some(d) = got else {
                if Instant::now() < wake_at {
                    // The readers are gone (cannot happen while we hold the
                    // fanout); do not spin.
                    Timer::after(RECV_ERROR_BACKOFF).await;
                }
                return Heard::Nothing;
            };
            let src = d.src;
            match parse_beacon(&d.bytes) {
                // Answers on our own sockets must echo our nonce; anything
                // else there is stale or forged.
                Ok(b) if d.via != Via::Shared && b.nonce != self.nonce => {
                    self.rejected += 1;
                    debug!(%src, nonce = b.nonce, "beacon with a foreign nonce ignored");
                }
                Ok(b) => return Heard::Beacon(src, Box::new(b)),
                // Probes (ours and other clients') also arrive on the shared
                // port; they are not for us and not worth a log line.
                Err(DecodeError::Unexpected(kind)) if kind == MsgType::DiscoveryProbe as u8 => {}
                Err(e) => {
                    self.rejected += 1;
                    let count = self.rejected;
                    let len = d.bytes.len();
                    debug!(%src, len, error = %e, count, "discarded discovery datagram");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::free_udp_port;
    use crate::proto::RoomInfo;
    use crate::server::beacon::{BeaconConfig, run_beacon};
    use std::future::Future;
    use std::net::{Ipv4Addr, UdpSocket};
    use std::sync::{Arc, Mutex};

    const LOOPBACK_BROADCAST: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255));

    // ---- loopback integration: only 127.0.0.1 and 127.255.255.255 ----

    /// A watchdog, not a timing assertion: fails the test instead of hanging
    /// it when a discovery never returns. Generous, so a loaded machine (CI
    /// on 2 cores) never trips it; what must happen is asserted by events
    /// (a host found, a list sent, a task finished) and by the deadline
    /// logic, which never ends a window early.
    const HANG_GUARD: Duration = Duration::from_secs(60);

    async fn hang_guard<T>(fut: impl Future<Output = T>) -> T {
        smol::future::or(fut, async {
            Timer::after(HANG_GUARD).await;
            panic!("hung for {HANG_GUARD:?}");
        })
        .await
    }

    fn start_host(
        port: u16,
        host_id: u64,
    ) -> smol::Task<io::Result<crate::server::beacon::Survivor>> {
        let cfg = BeaconConfig {
            host_name: "loop-host".into(),
            host_id,
            control_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            control_port: 4999,
            discovery_port: port,
            target: LOOPBACK_BROADCAST,
            interval: Duration::from_secs(5),
            owner: None,
            started_ms: 0,
            merge_room: None,
            fingerprint: None,
            passcode: false,
        };
        let rooms = Arc::new(Mutex::new(vec![
            RoomInfo { name: "default".into(), members: 3 },
            RoomInfo { name: "lab".into(), members: 1 },
        ]));
        smol::spawn(run_beacon(cfg, rooms))
    }

    fn loopback_opts(port: u16, timeout: Duration) -> DiscoverOptions {
        DiscoverOptions { target: LOOPBACK_BROADCAST, port, timeout }
    }

    #[test]
    fn finds_a_loopback_host_within_one_short_window() {
        // A one-shot discovery with a short window (as `sapora discover
        // --timeout 0.6`) lists the host: through its answer to the probe or
        // its first beacon, whichever arrives first.
        smol::block_on(hang_guard(async {
            let port = free_udp_port();
            let _host = start_host(port, 0x5A);
            let hosts = discover(&loopback_opts(port, Duration::from_millis(600))).await.unwrap();
            assert_eq!(hosts.len(), 1, "{hosts:?}");
            let h = &hosts[0];
            assert_eq!(h.host_id, 0x5A);
            assert_eq!(h.host_name, "loop-host");
            assert_eq!(h.addr, SocketAddr::from((Ipv4Addr::LOCALHOST, 4999)));
            assert_eq!(
                h.rooms,
                vec![
                    RoomInfo { name: "default".into(), members: 3 },
                    RoomInfo { name: "lab".into(), members: 1 },
                ]
            );
            assert!(h.is_compatible());
        }));
    }

    #[test]
    fn two_discoverers_at_once_both_find_the_host() {
        // Both bind the shared discovery port next to the host (reuse-port);
        // each still gets its own probe answers.
        smol::block_on(hang_guard(async {
            let port = free_udp_port();
            let _host = start_host(port, 0x77);
            let opts = loopback_opts(port, Duration::from_millis(400));
            let (a, b) = smol::future::zip(discover(&opts), discover(&opts)).await;
            for hosts in [a.unwrap(), b.unwrap()] {
                assert_eq!(hosts.iter().map(|h| h.host_id).collect::<Vec<_>>(), [0x77]);
            }
        }));
    }

    #[test]
    fn garbage_does_not_stop_the_host_answering() {
        smol::block_on(hang_guard(async {
            let port = free_udp_port();
            let _host = start_host(port, 0x99);
            // The host answering once proves it is bound, so it receives the
            // garbage below (an event, not a sleep).
            let opts = loopback_opts(port, Duration::from_millis(400));
            let before = discover(&opts).await.unwrap();
            assert_eq!(before.iter().map(|h| h.host_id).collect::<Vec<_>>(), [0x99]);
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            sender.set_broadcast(true).unwrap();
            let mut wrong_version = Vec::new();
            encode_frame(
                MsgType::DiscoveryProbe,
                0,
                &Probe { version: 9, nonce: 1 },
                &mut wrong_version,
            );
            wrong_version[0] = 9;
            let garbage: Vec<Vec<u8>> = vec![
                vec![],
                vec![0xFF; 3],
                vec![PROTOCOL_VERSION, 0x50, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0],
                vec![PROTOCOL_VERSION, 0x50, 0, 0, 0, 3, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF],
                vec![PROTOCOL_VERSION, 0x51, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0xFF],
                wrong_version,
                vec![0xAA; 1500],
                (0..=255).collect(),
            ];
            for g in &garbage {
                for dest in [LOOPBACK_BROADCAST, IpAddr::V4(Ipv4Addr::LOCALHOST)] {
                    sender.send_to(g, (dest, port)).unwrap();
                }
            }
            let hosts = discover(&opts).await.unwrap();
            assert_eq!(hosts.iter().map(|h| h.host_id).collect::<Vec<_>>(), [0x99]);
        }));
    }

    #[test]
    fn no_host_means_an_empty_list_after_the_whole_window() {
        // Returning at all is the event (the watchdog catches a hang); the
        // window is never cut short, which a monotonic clock makes exact.
        smol::block_on(hang_guard(async {
            let port = free_udp_port();
            let start = Instant::now();
            let hosts = discover(&loopback_opts(port, Duration::from_millis(300))).await.unwrap();
            assert!(hosts.is_empty());
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(300), "returned early, after {took:?}");
        }));
    }

    #[test]
    fn watch_reports_a_host_and_stops_when_nobody_listens() {
        smol::block_on(hang_guard(async {
            let port = free_udp_port();
            let _host = start_host(port, 0x42);
            let (tx, rx) = smol::channel::bounded(1);
            let watcher = smol::spawn(watch(loopback_opts(port, DEFAULT_TIMEOUT), tx));
            let hosts = rx.recv().await.unwrap();
            assert_eq!(hosts.iter().map(|h| h.host_id).collect::<Vec<_>>(), [0x42]);
            // Nobody listens any more: the watcher ends by itself (awaited
            // as an event; the watchdog above catches it never ending).
            drop(rx);
            watcher.await.unwrap();
        }));
    }
}
