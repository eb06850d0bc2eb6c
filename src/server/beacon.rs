//! LAN discovery, host side: announce this host on the discovery port and
//! answer probes.
//!
//! The decisions (what a datagram means, what a beacon holds, whether we may
//! answer) are pure functions and small structs with time passed in; only
//! [`run_beacon`] owns a socket and a clock.
//!
//! Two paths lead a client to a host:
//! - every `interval` the host broadcasts a Beacon (nonce 0) to the discovery
//!   port, so every listener on the segment refreshes its list;
//! - a client broadcasts a Probe from an ephemeral port and the host answers it
//!   at once, unicast, echoing the nonce. This is what makes `sapora discover`
//!   and the launcher fast: they need not wait up to 5 s for the next beacon.
//!
//! Both go out on every LAN interface ([`crate::lanif::Fanout`]): to each
//! interface's directed broadcast from a socket bound to that interface's
//! address, plus 255.255.255.255 where a route allows. Probe answers leave
//! from the socket of the interface whose subnet holds the prober. The list
//! of interfaces is re-read every [`INTERFACE_RESCAN`].
//!
//! A host started by `sapora` with no arguments also listens for rivals: two
//! people who double-click at the same moment both start hosting, and
//! [`merge_rule`] picks one survivor; [`run_beacon`] then returns it and the
//! other host hands its participants over (`server::host`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::{Async, Timer};
use tracing::{debug, info, warn};

use crate::lanif::{Datagram, Fanout, Reach};
use crate::net::bind_discovery_socket;
use crate::proto::text::RoomKey;
use crate::proto::{
    Beacon, DecodeError, HEADER_LEN, MsgType, PROTOCOL_VERSION, Probe, RoomInfo, control_addr_of,
    decode_datagram, decode_payload, encode_frame, limits,
};

/// The reference system's discovery port.
pub const DEFAULT_DISCOVERY_PORT: u16 = 5001;
/// The default discovery target. It means "every LAN interface": each
/// interface's directed broadcast plus 255.255.255.255 where a route allows
/// ([`crate::lanif::Reach`]). Tests use 127.255.255.255 instead, which
/// overrides it; this is only ever a default, never forced.
pub const LAN_BROADCAST: IpAddr = IpAddr::V4(Ipv4Addr::BROADCAST);
/// The reference system's beacon period (clients forget a host after 15 s,
/// so three beacons may be lost before it disappears).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// A zero or tiny interval would turn the beacon into a broadcast storm.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Host names are machine names; anything longer is cut so that a beacon
/// always fits in one discovery datagram even with no room listed.
pub const MAX_HOST_NAME_CHARS: usize = 64;
/// Probe answers allowed per second. A Probe is ~16 bytes and a Beacon up to
/// 1400, so unlimited answers to spoofed sources would make us an amplifier.
pub const MAX_ANSWERS_PER_SEC: u32 = 64;

/// Biggest payload a discovery datagram may carry.
const MAX_PAYLOAD: u32 = (limits::DISCOVERY_DATAGRAM - HEADER_LEN) as u32;

/// Everything a beacon says about this host, and where it says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeaconConfig {
    pub host_name: String,
    /// Random per host run (see [`random_host_id`]); lets clients list a host
    /// seen on several paths once, and lets us ignore our own broadcasts.
    pub host_id: u64,
    /// The host's control bind address; 0.0.0.0 tells clients "use the address
    /// this beacon came from".
    pub control_addr: IpAddr,
    pub control_port: u16,
    pub discovery_port: u16,
    /// Where periodic beacons go: [`LAN_BROADCAST`] (every interface) for
    /// users, 127.255.255.255 in tests (that address only).
    pub target: IpAddr,
    /// Period of unsolicited beacons ([`DEFAULT_INTERVAL`]); clamped to at
    /// least [`MIN_INTERVAL`].
    pub interval: Duration,
    /// Who runs the host (a login name), shown as "Ana's meeting".
    pub owner: Option<String>,
    /// When this host run started, ms since the Unix epoch.
    pub started_ms: u64,
    /// `Some(room)` only for a host started by `sapora` with no arguments:
    /// it hands `room` over to an earlier such host ([`merge_rule`]).
    pub merge_room: Option<String>,
    /// The host certificate's fingerprint (clients may pin it from here).
    pub fingerprint: Option<crate::transport::cert::Fingerprint>,
    /// Joining needs a passcode.
    pub passcode: bool,
}

/// A fresh random host id. Falls back to clock and pid if the OS has no
/// randomness to give, since a merely unlikely collision only merges two
/// entries in a client's list.
pub fn random_host_id() -> u64 {
    crate::net::random_u64()
}

/// What a datagram arriving on the discovery port means to a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A client wants hosts to answer now.
    Probe { nonce: u32 },
    /// Our own periodic beacon, looped back by the broadcast.
    OwnBeacon,
    /// Another host's beacon (a rival, if both were auto-started).
    PeerBeacon(Box<Beacon>),
    /// A well-formed message that is not for a host (another host's beacon,
    /// another type).
    NotForUs { kind: u8 },
    /// Not a valid Sapora discovery datagram of our version.
    Malformed(DecodeError),
}

/// Classifies one received datagram. Pure; never panics on any input.
pub fn classify(datagram: &[u8], own_host_id: u64) -> Incoming {
    if datagram.len() > limits::DISCOVERY_DATAGRAM {
        return Incoming::Malformed(DecodeError::TooLong {
            len: u32::try_from(datagram.len()).unwrap_or(u32::MAX),
            max: limits::DISCOVERY_DATAGRAM as u32,
        });
    }
    let (header, payload) = match decode_datagram(datagram, MAX_PAYLOAD) {
        Ok(v) => v,
        Err(e) => return Incoming::Malformed(e),
    };
    match MsgType::try_from(header.kind) {
        Ok(MsgType::DiscoveryProbe) => match decode_payload::<Probe>(payload) {
            Ok(p) if p.version == PROTOCOL_VERSION => Incoming::Probe { nonce: p.nonce },
            // The header said our version but the body disagrees: not a probe
            // we can vouch for.
            Ok(p) => Incoming::Malformed(DecodeError::Version { got: p.version }),
            Err(e) => Incoming::Malformed(e),
        },
        Ok(MsgType::DiscoveryBeacon) => match decode_payload::<Beacon>(payload) {
            Ok(b) if b.host_id == own_host_id => Incoming::OwnBeacon,
            Ok(b) => Incoming::PeerBeacon(Box::new(b)),
            Err(e) => Incoming::Malformed(e),
        },
        Ok(_) => Incoming::NotForUs { kind: header.kind },
        Err(e) => Incoming::Malformed(e),
    }
}

/// Encodes one Beacon frame that always fits in a discovery datagram: the
/// host name is cut to [`MAX_HOST_NAME_CHARS`] and trailing rooms are left out
/// until it fits (a client learns the full list when it joins).
pub fn encode_beacon(cfg: &BeaconConfig, rooms: &[RoomInfo], nonce: u32, seq: u16) -> Vec<u8> {
    let mut beacon = Beacon {
        version: PROTOCOL_VERSION,
        host_id: cfg.host_id,
        host_name: cfg.host_name.chars().take(MAX_HOST_NAME_CHARS).collect(),
        control_addr: cfg.control_addr.to_string(),
        control_port: cfg.control_port,
        rooms: rooms.to_vec(),
        nonce,
        owner: cfg.owner.as_ref().map(|o| o.chars().take(MAX_HOST_NAME_CHARS).collect()),
        started_ms: Some(cfg.started_ms),
        merge_room: cfg.merge_room.as_ref().map(|r| r.chars().take(MAX_HOST_NAME_CHARS).collect()),
        fingerprint: cfg.fingerprint.map(|f| f.0),
        passcode: Some(cfg.passcode),
    };
    loop {
        let mut frame = Vec::new();
        encode_frame(MsgType::DiscoveryBeacon, seq, &beacon, &mut frame);
        // With no rooms the frame is at most ~850 bytes (three strings of 64
        // four-byte chars plus the longest IPv6 text), so this loop always ends.
        if frame.len() <= limits::DISCOVERY_DATAGRAM || beacon.rooms.pop().is_none() {
            return frame;
        }
    }
}

/// Caps probe answers per one-second window. Time is passed in.
#[derive(Debug, Clone, Default)]
pub struct AnswerBudget {
    window_start: Option<Instant>,
    used: u32,
}

impl AnswerBudget {
    /// Whether one more answer may be sent at `now` (and counts it if so).
    pub fn allow(&mut self, now: Instant) -> bool {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(1));
        if expired {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used < MAX_ANSWERS_PER_SEC {
            self.used += 1;
            true
        } else {
            false
        }
    }
}

/// What the beacon task has seen, for debug logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BeaconStats {
    pub beacons_sent: u64,
    pub probes_answered: u64,
    /// Probes not answered because of [`MAX_ANSWERS_PER_SEC`].
    pub probes_throttled: u64,
    pub malformed: u64,
    pub ignored: u64,
    pub send_errors: u64,
    pub recv_errors: u64,
}

/// The host an auto-started host hands its meeting to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survivor {
    pub host_id: u64,
    pub host_name: String,
    pub owner: Option<String>,
    /// Its control address, as the beacon tells clients to use it.
    pub addr: SocketAddr,
}

/// What an auto-started host makes of another host's beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Not a rival: an explicit host, another room, or this host is explicit.
    Ignore,
    /// The other host started earlier (or at the same millisecond with a
    /// lower host id): hand the meeting over to it.
    Yield,
    /// The other host must yield to us: tell it at once that we exist.
    Outrank,
}

/// The double-click rule. Only two hosts that were both started by `sapora`
/// with no arguments (both beacons carry `merge_room`) for the same room
/// (by [`RoomKey`]) take part; the survivor is the one with the smaller
/// `(started_ms, host_id)`. Both sides compute the same answer from the same
/// two beacons, so clock skew between machines changes who wins, never
/// whether exactly one does. Pure.
pub fn merge_rule(me: &BeaconConfig, peer: &Beacon) -> Merge {
    let (Some(mine), Some(theirs)) = (&me.merge_room, &peer.merge_room) else {
        return Merge::Ignore;
    };
    if peer.host_id == me.host_id || RoomKey::new(mine) != RoomKey::new(theirs) {
        return Merge::Ignore;
    }
    // A beacon without a start time cannot be ranked; leave it alone.
    let Some(their_start) = peer.started_ms else {
        return Merge::Ignore;
    };
    if (their_start, peer.host_id) < (me.started_ms, me.host_id) {
        Merge::Yield
    } else {
        Merge::Outrank
    }
}

/// After the first rival that wins, wait this long for others (three
/// double-clicks: hand over to the best of them, not to one that is itself
/// about to hand over).
pub const YIELD_GATHER: Duration = Duration::from_millis(300);
/// An auto-started host beacons and probes at these times after it starts,
/// so two hosts started in the same second find each other at once.
const FAST_START: [Duration; 4] = [
    Duration::ZERO,
    Duration::from_millis(300),
    Duration::from_millis(1000),
    Duration::from_millis(2000),
];
/// How often the interface list is re-read (a laptop joining Wi-Fi).
pub const INTERFACE_RESCAN: Duration = Duration::from_secs(2);
/// At most one extra beacon this often in answer to outranked rivals.
const OUTRANK_EVERY: Duration = Duration::from_millis(200);

/// Runs the discovery beacon until the task is dropped, or (for an
/// auto-started host, `cfg.merge_room` set) until it hears an earlier
/// auto-started host of the same room: then it returns that host, and the
/// caller hands the meeting over.
///
/// Errors only if the discovery socket cannot be set up; once running, every
/// per-datagram problem is logged and counted and the beacon carries on.
pub async fn run_beacon(
    cfg: BeaconConfig,
    rooms: Arc<Mutex<Vec<RoomInfo>>>,
) -> io::Result<Survivor> {
    let shared = Async::new(bind_discovery_socket(cfg.discovery_port)?)?;
    let reach = Reach::from_target(cfg.target);
    let fanout = Fanout::open(reach, Some(shared))?;
    info!(
        port = cfg.discovery_port,
        target = %cfg.target,
        interfaces = ?fanout.interfaces().iter().map(|i| &i.name).collect::<Vec<_>>(),
        host_id = format_args!("{:016x}", cfg.host_id),
        "discovery beacon running"
    );
    let interval = cfg.interval.max(MIN_INTERVAL);
    let started = Instant::now();
    let mut driver = Driver {
        fanout,
        probe_nonce: loop {
            let n = crate::net::random_u64() as u32;
            if n != 0 {
                break n;
            }
        },
        cfg,
        rooms,
        seq: 0,
        stats: BeaconStats::default(),
        budget: AnswerBudget::default(),
        broadcast_failing: false,
        best_rival: None,
        yield_at: None,
        last_outrank: None,
    };
    let mut fast: Vec<Instant> = if driver.cfg.merge_room.is_some() {
        FAST_START.iter().map(|d| started + *d).collect()
    } else {
        vec![started]
    };
    fast.reverse(); // popped from the back, earliest first
    let mut next_beacon = fast.pop().unwrap_or(started);
    let mut next_scan = started + INTERFACE_RESCAN;

    enum Wake {
        Beacon,
        Scan,
        Yield,
        Datagram(Datagram),
    }

    loop {
        let now = Instant::now();
        // Timers are checked on every turn so a flood of datagrams cannot
        // starve them.
        let wake = if driver.yield_at.is_some_and(|t| now >= t) {
            Wake::Yield
        } else if now >= next_beacon {
            Wake::Beacon
        } else if now >= next_scan {
            Wake::Scan
        } else {
            let wake_at = [Some(next_beacon), Some(next_scan), driver.yield_at]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(next_beacon);
            let incoming = driver.fanout.incoming().clone();
            smol::future::or(
                async {
                    match incoming.recv().await {
                        Ok(d) => Wake::Datagram(d),
                        Err(_) => {
                            // Cannot happen while the fanout lives; do not spin.
                            Timer::at(wake_at).await;
                            Wake::Scan
                        }
                    }
                },
                async {
                    Timer::at(wake_at).await;
                    Wake::Scan
                },
            )
            .await
        };
        match wake {
            Wake::Yield => {
                if let Some((survivor, _)) = driver.best_rival.take() {
                    info!(to = %survivor.addr, host = %survivor.host_name,
                        "another meeting started at the same moment; handing this one over");
                    return Ok(survivor);
                }
                driver.yield_at = None;
            }
            Wake::Beacon => {
                driver.send_beacon().await;
                if driver.cfg.merge_room.is_some() {
                    driver.send_probe().await;
                }
                // From now, not from the missed deadline: after a stall (a
                // suspended laptop) we send one beacon, not a burst.
                let now = Instant::now();
                fast.retain(|t| *t > now);
                next_beacon = fast.pop().unwrap_or(now + interval);
            }
            Wake::Scan => {
                if Instant::now() >= next_scan {
                    next_scan = Instant::now() + INTERFACE_RESCAN;
                    if !driver.fanout.refresh().is_empty() {
                        // A new network: announce ourselves there now.
                        next_beacon = Instant::now();
                    }
                }
            }
            Wake::Datagram(d) => driver.handle(&d).await,
        }
    }
}

/// The state [`run_beacon`] keeps between wake-ups.
struct Driver {
    fanout: Fanout,
    cfg: BeaconConfig,
    rooms: Arc<Mutex<Vec<RoomInfo>>>,
    /// Our own probe's nonce (auto-started hosts probe for rivals); a probe
    /// with it is our own, looped back.
    probe_nonce: u32,
    seq: u16,
    stats: BeaconStats,
    budget: AnswerBudget,
    /// Broadcast can fail for as long as the machine has no route for it;
    /// this makes us say so once per outage instead of every five seconds.
    broadcast_failing: bool,
    /// The best host heard so far that we should yield to, and when to.
    best_rival: Option<(Survivor, (u64, u64))>,
    yield_at: Option<Instant>,
    last_outrank: Option<Instant>,
}

impl Driver {
    fn frame(&mut self, nonce: u32) -> Vec<u8> {
        let frame = encode_beacon(&self.cfg, &snapshot(&self.rooms), nonce, self.seq);
        self.seq = self.seq.wrapping_add(1);
        frame
    }

    async fn send_beacon(&mut self) {
        let frame = self.frame(0);
        let sent = self.fanout.broadcast(&frame, self.cfg.discovery_port).await;
        if sent > 0 {
            self.stats.beacons_sent += 1;
            if self.broadcast_failing {
                info!("discovery beacons are going out again");
                self.broadcast_failing = false;
            }
        } else {
            self.stats.send_errors += 1;
            if !self.broadcast_failing {
                warn!(target = %self.cfg.target,
                    "cannot send beacons on any interface; still answering probes");
                self.broadcast_failing = true;
            }
        }
    }

    async fn send_probe(&mut self) {
        let mut frame = Vec::new();
        let probe = Probe { version: PROTOCOL_VERSION, nonce: self.probe_nonce };
        encode_frame(MsgType::DiscoveryProbe, self.seq, &probe, &mut frame);
        self.seq = self.seq.wrapping_add(1);
        self.fanout.broadcast(&frame, self.cfg.discovery_port).await;
    }

    async fn handle(&mut self, d: &Datagram) {
        let (datagram, src) = (&d.bytes[..], d.src);
        let nonce = match classify(datagram, self.cfg.host_id) {
            Incoming::Probe { nonce } if nonce == self.probe_nonce => {
                self.stats.ignored += 1;
                return;
            }
            Incoming::Probe { nonce } => nonce,
            Incoming::PeerBeacon(b) => {
                self.rival(src, &b).await;
                return;
            }
            Incoming::OwnBeacon | Incoming::NotForUs { .. } => {
                self.stats.ignored += 1;
                return;
            }
            Incoming::Malformed(e) => {
                self.stats.malformed += 1;
                let count = self.stats.malformed;
                let len = datagram.len();
                debug!(%src, len, error = %e, count, "discarded discovery datagram");
                return;
            }
        };
        if src.port() == 0 {
            // Cannot be answered; only a forged source looks like this.
            self.stats.malformed += 1;
            debug!(%src, "probe from port 0 ignored");
            return;
        }
        if !self.budget.allow(Instant::now()) {
            self.stats.probes_throttled += 1;
            let count = self.stats.probes_throttled;
            debug!(%src, count, "probe not answered: over the answer budget");
            return;
        }
        let frame = self.frame(nonce);
        if self.fanout.send_to(&frame, src).await {
            self.stats.probes_answered += 1;
            debug!(%src, nonce, "answered probe");
        } else {
            self.stats.send_errors += 1;
        }
    }

    /// Another host's beacon: apply the double-click rule.
    async fn rival(&mut self, src: SocketAddr, b: &Beacon) {
        match merge_rule(&self.cfg, b) {
            Merge::Ignore => self.stats.ignored += 1,
            Merge::Outrank => {
                let now = Instant::now();
                if self
                    .last_outrank
                    .is_none_or(|t| now.saturating_duration_since(t) >= OUTRANK_EVERY)
                {
                    self.last_outrank = Some(now);
                    debug!(%src, "an auto-started rival must yield to us: announcing");
                    self.send_beacon().await;
                }
            }
            Merge::Yield => {
                let key = (b.started_ms.unwrap_or(u64::MAX), b.host_id);
                if self.best_rival.as_ref().is_none_or(|(_, best)| key < *best) {
                    let survivor = Survivor {
                        host_id: b.host_id,
                        host_name: b.host_name.clone(),
                        owner: b.owner.clone(),
                        addr: control_addr_of(src, b),
                    };
                    debug!(to = %survivor.addr, "an earlier auto-started host is here");
                    self.best_rival = Some((survivor, key));
                }
                self.yield_at.get_or_insert_with(|| Instant::now() + YIELD_GATHER);
            }
        }
    }
}

/// Copies the room list out so the lock is never held across an await. A
/// poisoned lock still holds a usable list: a panic elsewhere must not silence
/// discovery.
fn snapshot(rooms: &Mutex<Vec<RoomInfo>>) -> Vec<RoomInfo> {
    rooms.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::free_udp_port;
    use crate::proto::{Header, Probe};
    use std::net::UdpSocket;

    fn cfg(host_id: u64) -> BeaconConfig {
        BeaconConfig {
            host_name: "lab-pc".into(),
            host_id,
            control_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            control_port: 5000,
            discovery_port: 5001,
            target: IpAddr::V4(Ipv4Addr::new(127, 255, 255, 255)),
            interval: DEFAULT_INTERVAL,
            owner: Some("ana".into()),
            started_ms: 1_700_000_000_000,
            merge_room: None,
            fingerprint: Some(crate::transport::cert::Fingerprint([0xAB; 32])),
            passcode: true,
        }
    }

    fn probe_frame(version: u8, nonce: u32) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(MsgType::DiscoveryProbe, 0, &Probe { version, nonce }, &mut out);
        out
    }

    #[test]
    fn classify_table() {
        let mut wrong_header_version = probe_frame(PROTOCOL_VERSION, 1);
        wrong_header_version[0] = PROTOCOL_VERSION + 1;
        let mut huge_len = probe_frame(PROTOCOL_VERSION, 1);
        huge_len[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut truncated = probe_frame(PROTOCOL_VERSION, 0xFFFF_FFFF);
        truncated.pop();
        let garbage_probe = {
            let mut out = Vec::new();
            let h = Header { version: PROTOCOL_VERSION, kind: 0x50, len: 3, seq: 0, flags: 0 };
            h.encode(&mut out);
            out.extend_from_slice(&[0xFF, 0xFF, 0xFF]); // varint nonce that never ends
            out
        };
        let mut oversized = probe_frame(PROTOCOL_VERSION, 1);
        oversized.resize(limits::DISCOVERY_DATAGRAM + 1, 0);

        // Each case: why it is odd, the bytes, and what a host must make of them.
        type Expect = fn(&Incoming) -> bool;
        let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
            ("valid probe", probe_frame(PROTOCOL_VERSION, 7), |i| {
                *i == Incoming::Probe { nonce: 7 }
            }),
            ("own beacon looped back", encode_beacon(&cfg(42), &[], 0, 0), |i| {
                *i == Incoming::OwnBeacon
            }),
            (
                "another host's beacon",
                encode_beacon(&cfg(43), &[], 0, 0),
                |i| matches!(i, Incoming::PeerBeacon(b) if b.host_id == 43),
            ),
            ("empty datagram", vec![], |i| {
                matches!(i, Incoming::Malformed(DecodeError::UnexpectedEnd))
            }),
            ("half a header", vec![1, 0x50, 0], |i| matches!(i, Incoming::Malformed(_))),
            ("header of another version", wrong_header_version, |i| {
                matches!(i, Incoming::Malformed(DecodeError::Version { .. }))
            }),
            ("body of another version", probe_frame(PROTOCOL_VERSION + 1, 7), |i| {
                matches!(i, Incoming::Malformed(DecodeError::Version { .. }))
            }),
            ("length claims 4 GiB", huge_len, |i| {
                matches!(i, Incoming::Malformed(DecodeError::TooLong { .. }))
            }),
            ("payload cut short", truncated, |i| matches!(i, Incoming::Malformed(_))),
            ("unterminated varint", garbage_probe, |i| matches!(i, Incoming::Malformed(_))),
            ("bigger than a discovery datagram", oversized, |i| {
                matches!(i, Incoming::Malformed(DecodeError::TooLong { .. }))
            }),
            ("unknown type", vec![PROTOCOL_VERSION, 0x99, 0, 0, 0, 0, 0, 0, 0, 0], |i| {
                matches!(i, Incoming::Malformed(DecodeError::UnknownType(0x99)))
            }),
            (
                "control message on the discovery port",
                vec![PROTOCOL_VERSION, 0x02, 0, 0, 0, 0, 0, 0, 0, 0],
                |i| *i == Incoming::NotForUs { kind: 0x02 },
            ),
        ];
        for (why, bytes, ok) in cases {
            let got = classify(&bytes, 42);
            assert!(ok(&got), "{why}: got {got:?}");
        }
    }

    #[test]
    fn beacon_always_fits_a_datagram() {
        let mut c = cfg(1);
        c.host_name = "é".repeat(10_000);
        c.owner = Some("😀".repeat(10_000));
        c.merge_room = Some("😀".repeat(10_000));
        c.control_addr = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let rooms: Vec<RoomInfo> =
            (0..500).map(|i| RoomInfo { name: format!("{i:0>64}"), members: u32::MAX }).collect();
        let frame = encode_beacon(&c, &rooms, u32::MAX, u16::MAX);
        assert!(frame.len() <= limits::DISCOVERY_DATAGRAM, "{}", frame.len());
        let (_, payload) = decode_datagram(&frame, MAX_PAYLOAD).unwrap();
        let b: Beacon = decode_payload(payload).unwrap();
        assert_eq!(b.host_name.chars().count(), MAX_HOST_NAME_CHARS);
        assert!(!b.rooms.is_empty(), "as many rooms as fit are kept");
        assert_eq!(b.rooms[..], rooms[..b.rooms.len()], "rooms keep their order");
        assert_eq!(b.nonce, u32::MAX);
    }

    #[test]
    fn small_beacon_is_kept_whole() {
        let rooms = vec![RoomInfo { name: "default".into(), members: 3 }];
        let frame = encode_beacon(&cfg(9), &rooms, 5, 0);
        let (h, payload) = decode_datagram(&frame, MAX_PAYLOAD).unwrap();
        assert_eq!(h.kind, MsgType::DiscoveryBeacon as u8);
        let b: Beacon = decode_payload(payload).unwrap();
        assert_eq!(
            b,
            Beacon {
                version: PROTOCOL_VERSION,
                host_id: 9,
                host_name: "lab-pc".into(),
                control_addr: "127.0.0.1".into(),
                control_port: 5000,
                rooms,
                nonce: 5,
                owner: Some("ana".into()),
                started_ms: Some(1_700_000_000_000),
                merge_room: None,
                fingerprint: Some([0xAB; 32]),
                passcode: Some(true),
            }
        );
    }

    fn rival(host_id: u64, started_ms: Option<u64>, merge_room: Option<&str>) -> Beacon {
        let mut c = cfg(host_id);
        c.merge_room = merge_room.map(str::to_string);
        let frame = encode_beacon(&c, &[], 0, 0);
        let (_, payload) = decode_datagram(&frame, MAX_PAYLOAD).unwrap();
        let mut b: Beacon = decode_payload(payload).unwrap();
        b.started_ms = started_ms;
        b
    }

    #[test]
    fn double_click_rule_picks_one_survivor() {
        let t = 1_700_000_000_000;
        let mut me = cfg(50);
        me.merge_room = Some("default".into());
        me.started_ms = t;
        let cases = [
            ("earlier start wins", rival(99, Some(t - 1), Some("default")), Merge::Yield),
            ("later start loses", rival(1, Some(t + 1), Some("default")), Merge::Outrank),
            ("same ms: lower id wins", rival(49, Some(t), Some("default")), Merge::Yield),
            ("same ms: higher id loses", rival(51, Some(t), Some("default")), Merge::Outrank),
            ("room names ignore case", rival(1, Some(t - 5), Some(" Default ")), Merge::Yield),
            (
                "look-alike letters: one room",
                rival(1, Some(t - 5), Some("d\u{435}fault")),
                Merge::Yield,
            ),
            ("a blank room is the default room", rival(1, Some(t - 5), Some("")), Merge::Yield),
            ("another room", rival(1, Some(t - 5), Some("lab")), Merge::Ignore),
            ("an explicit host never takes part", rival(1, Some(t - 5), None), Merge::Ignore),
            ("no start time: cannot rank", rival(1, None, Some("default")), Merge::Ignore),
            ("our own beacon", rival(50, Some(t), Some("default")), Merge::Ignore),
        ];
        for (why, peer, want) in cases {
            assert_eq!(merge_rule(&me, &peer), want, "{why}");
        }
        // Symmetric: of two auto hosts exactly one yields.
        let mut other = cfg(49);
        other.merge_room = Some("default".into());
        other.started_ms = t;
        let me_b = rival(50, Some(t), Some("default"));
        let other_b = rival(49, Some(t), Some("default"));
        assert_eq!(merge_rule(&me, &other_b), Merge::Yield);
        assert_eq!(merge_rule(&other, &me_b), Merge::Outrank);
        // An explicit host never yields, whoever is earlier.
        let explicit = cfg(77);
        assert_eq!(merge_rule(&explicit, &rival(1, Some(0), Some("default"))), Merge::Ignore);
    }

    #[test]
    fn answer_budget_refills_each_second() {
        let t0 = Instant::now();
        let mut budget = AnswerBudget::default();
        for _ in 0..MAX_ANSWERS_PER_SEC {
            assert!(budget.allow(t0));
        }
        assert!(!budget.allow(t0 + Duration::from_millis(999)));
        assert!(budget.allow(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn two_listeners_share_the_discovery_port() {
        smol::block_on(async {
            let port = free_udp_port();
            let a = Async::new(bind_discovery_socket(port).unwrap()).unwrap();
            let b = Async::new(bind_discovery_socket(port).unwrap()).unwrap();
            let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
            sender.set_broadcast(true).unwrap();
            sender.send_to(b"hello", (Ipv4Addr::new(127, 255, 255, 255), port)).unwrap();
            for sock in [&a, &b] {
                let mut buf = [0u8; 16];
                let got = smol::future::or(async { Some(sock.recv_from(&mut buf).await) }, async {
                    Timer::after(Duration::from_secs(2)).await;
                    None
                })
                .await;
                let (n, _) = got.expect("each listener gets the broadcast").unwrap();
                assert_eq!(&buf[..n], b"hello");
            }
        });
    }

    proptest::proptest! {
        #[test]
        fn classify_never_panics(bytes in proptest::collection::vec(0u8..=255, 0..1500)) {
            let _ = classify(&bytes, 1);
        }
    }
}
