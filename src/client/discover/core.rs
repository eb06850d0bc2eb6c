//! The sans-IO core of client-side discovery: beacons and time in, host
//! list and probe times out. No sockets, no clock, no tasks: the driver
//! (`driver.rs`) reads the clock and the sockets and calls in here.
//!
//! - [`parse_beacon`]: a datagram → a [`Beacon`], treating input as hostile.
//! - [`HostTable`]: the hosts heard recently, expiring after [`HostTable::TTL`].
//! - [`ProbeSchedule`]: when to send a probe (once and a retry for a one-shot
//!   discovery; also every [`WATCH_PROBE_EVERY`] while watching).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

// Names come from the network: control characters and bidi overrides are
// shown visibly, never sent raw to the user's terminal.
use crate::proto::text::visible;
use crate::proto::{
    Beacon, DecodeError, HEADER_LEN, Header, MsgType, PROTOCOL_VERSION, RoomInfo, decode_payload,
    limits,
};

/// A probe is sent again this long after the first, in case one was lost.
pub const PROBE_RETRY: Duration = Duration::from_millis(250);
/// While watching, probe this often (the beacon period) so hosts whose
/// broadcasts do not reach us stay listed.
pub const WATCH_PROBE_EVERY: Duration = Duration::from_secs(5);

/// Biggest payload a discovery datagram may carry.
const MAX_PAYLOAD: u32 = (limits::DISCOVERY_DATAGRAM - HEADER_LEN) as u32;

/// One host as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredHost {
    pub host_id: u64,
    pub host_name: String,
    /// The control address to join: the beacon's `control_addr`, or the
    /// datagram's source IP when the host bound the wildcard address.
    pub addr: SocketAddr,
    pub rooms: Vec<RoomInfo>,
    /// The host's protocol version; see [`DiscoveredHost::is_compatible`].
    pub version: u8,
    pub last_seen: Instant,
    /// Who runs it (a login name), if the beacon says.
    pub owner: Option<String>,
    /// Started by `sapora` with no arguments (it may hand over to another
    /// such host started at the same moment).
    pub auto: bool,
    /// The host certificate's fingerprint, as the beacon says (not
    /// authenticated: `ClientConfig::beacon_fingerprint` uses it only for a
    /// host with no known-hosts pin).
    pub fingerprint: Option<crate::transport::cert::Fingerprint>,
    /// Joining needs a passcode.
    pub passcode: bool,
}

impl DiscoveredHost {
    /// Whether this build can join the host.
    pub fn is_compatible(&self) -> bool {
        self.version == PROTOCOL_VERSION
    }

    /// Everyone in the host's meetings.
    pub fn people(&self) -> u64 {
        self.rooms.iter().map(|r| u64::from(r.members)).sum()
    }

    /// "Ana's meeting · 3 people" (or the host's name when the beacon names
    /// nobody), with control characters from the network made harmless.
    pub fn label(&self) -> String {
        let who = match self.owner.as_deref().map(str::trim).filter(|o| !o.is_empty()) {
            Some(owner) => format!("{}'s meeting", visible(owner)),
            None => format!("meeting on {}", visible(&self.host_name)),
        };
        match self.people() {
            1 => format!("{who} · 1 person"),
            n => format!("{who} · {n} people"),
        }
    }
}

pub use crate::proto::control_addr_of;

/// Decodes a datagram that should be a Beacon. Pure; never panics.
///
/// Unlike the host's probe check this accepts any header version as long as
/// header and body agree: the payload layout is append-only, so a newer
/// host's beacon still decodes, and listing it as incompatible is more
/// helpful than not listing it at all.
pub fn parse_beacon(datagram: &[u8]) -> Result<Beacon, DecodeError> {
    if datagram.len() > limits::DISCOVERY_DATAGRAM {
        return Err(DecodeError::TooLong {
            len: u32::try_from(datagram.len()).unwrap_or(u32::MAX),
            max: limits::DISCOVERY_DATAGRAM as u32,
        });
    }
    let header = Header::decode(datagram)?;
    if header.kind != MsgType::DiscoveryBeacon as u8 {
        return Err(DecodeError::Unexpected(header.kind));
    }
    let len = header.check_len(MAX_PAYLOAD)?;
    let payload = datagram
        .get(HEADER_LEN..)
        .and_then(|rest| rest.get(..len))
        .ok_or(DecodeError::UnexpectedEnd)?;
    let beacon: Beacon = decode_payload(payload)?;
    if beacon.version != header.version {
        return Err(DecodeError::Version { got: beacon.version });
    }
    Ok(beacon)
}

/// The hosts heard recently, keyed by host id. Sans-IO: time is passed in.
#[derive(Debug, Clone, Default)]
pub struct HostTable {
    hosts: HashMap<u64, DiscoveredHost>,
}

impl HostTable {
    /// A host not heard from for this long is forgotten (three missed beacons).
    pub const TTL: Duration = Duration::from_secs(15);
    /// Beacons with random host ids must not grow the table without bound;
    /// no real LAN has this many hosts.
    pub const MAX_HOSTS: usize = 256;

    pub fn new() -> HostTable {
        HostTable::default()
    }

    /// Records a beacon heard at `now` from `src`. Returns true if the host is
    /// new or anything shown about it (name, address, rooms, version) changed.
    /// The last beacon wins: a host seen on two paths is one entry whose
    /// address is the latest one heard.
    pub fn observe(&mut self, now: Instant, src: SocketAddr, beacon: Beacon) -> bool {
        let addr = control_addr_of(src, &beacon);
        if let Some(host) = self.hosts.get_mut(&beacon.host_id) {
            let changed = host.host_name != beacon.host_name
                || host.addr != addr
                || host.rooms != beacon.rooms
                || host.version != beacon.version
                || host.owner != beacon.owner;
            host.host_name = beacon.host_name;
            host.addr = addr;
            host.rooms = beacon.rooms;
            host.version = beacon.version;
            host.owner = beacon.owner;
            host.auto = beacon.merge_room.is_some();
            host.fingerprint = beacon.fingerprint.map(crate::transport::cert::Fingerprint);
            host.passcode = beacon.passcode.unwrap_or(false);
            // Never move backwards if the caller's clock readings interleave.
            host.last_seen = host.last_seen.max(now);
            return changed;
        }
        if self.hosts.len() >= Self::MAX_HOSTS {
            return false;
        }
        self.hosts.insert(
            beacon.host_id,
            DiscoveredHost {
                host_id: beacon.host_id,
                host_name: beacon.host_name,
                addr,
                rooms: beacon.rooms,
                version: beacon.version,
                last_seen: now,
                owner: beacon.owner,
                auto: beacon.merge_room.is_some(),
                fingerprint: beacon.fingerprint.map(crate::transport::cert::Fingerprint),
                passcode: beacon.passcode.unwrap_or(false),
            },
        );
        true
    }

    /// Forgets hosts not heard from for [`HostTable::TTL`] or longer; returns
    /// their ids.
    pub fn expire(&mut self, now: Instant) -> Vec<u64> {
        let mut gone: Vec<u64> = self
            .hosts
            .values()
            .filter(|h| now.saturating_duration_since(h.last_seen) >= Self::TTL)
            .map(|h| h.host_id)
            .collect();
        gone.sort_unstable();
        for id in &gone {
            self.hosts.remove(id);
        }
        gone
    }

    /// When the next host will expire, so a driver knows how long to sleep.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.hosts.values().map(|h| h.last_seen + Self::TTL).min()
    }

    /// All hosts, sorted by name (case-insensitively), then address.
    pub fn hosts(&self) -> Vec<DiscoveredHost> {
        let mut list: Vec<DiscoveredHost> = self.hosts.values().cloned().collect();
        list.sort_by(|a, b| {
            (a.host_name.to_lowercase(), &a.host_name, a.addr, a.host_id).cmp(&(
                b.host_name.to_lowercase(),
                &b.host_name,
                b.addr,
                b.host_id,
            ))
        });
        list
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// Which probe [`ProbeSchedule::poll`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// A new round: the driver should also look for new network interfaces.
    Round,
    /// The same round again, [`PROBE_RETRY`] after it, in case a datagram
    /// was lost.
    Retry,
}

/// When to probe. Sans-IO: the caller passes the time in, sends what
/// [`ProbeSchedule::poll`] asks for, and sleeps until
/// [`ProbeSchedule::poll_timeout`].
///
/// A one-shot discovery probes at the start and once more [`PROBE_RETRY`]
/// later; a watcher repeats that every [`WATCH_PROBE_EVERY`] (the beacon
/// period), so hosts whose broadcasts do not reach us stay listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSchedule {
    /// The next round, if another is due.
    next_round: Option<Instant>,
    /// The pending retry of the last round.
    retry_at: Option<Instant>,
    /// `None` for a one-shot discovery.
    every: Option<Duration>,
}

impl ProbeSchedule {
    /// One round at `start` (and its retry).
    pub fn once(start: Instant) -> ProbeSchedule {
        ProbeSchedule { next_round: Some(start), retry_at: None, every: None }
    }

    /// A round at `start`, then one every `every`.
    pub fn every(start: Instant, every: Duration) -> ProbeSchedule {
        ProbeSchedule { next_round: Some(start), retry_at: None, every: Some(every) }
    }

    /// The probe due at `now`, if any; each due probe is returned once. A
    /// round that is due wins over a pending retry (which it replaces).
    pub fn poll(&mut self, now: Instant) -> Option<ProbeKind> {
        if let Some(round) = self.next_round
            && now >= round
        {
            self.next_round = self.every.map(|every| now + every);
            self.retry_at = Some(now + PROBE_RETRY);
            return Some(ProbeKind::Round);
        }
        if let Some(retry) = self.retry_at
            && now >= retry
        {
            self.retry_at = None;
            return Some(ProbeKind::Retry);
        }
        None
    }

    /// When the next probe is due (`None`: no more probes).
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.next_round, self.retry_at].into_iter().flatten().min()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::proto::{Probe, encode_frame};

    /// A beacon for tests (also used by the CLI's formatting tests).
    pub(crate) fn beacon(
        host_id: u64,
        name: &str,
        control_addr: &str,
        rooms: &[(&str, u32)],
    ) -> Beacon {
        Beacon {
            version: PROTOCOL_VERSION,
            host_id,
            host_name: name.into(),
            control_addr: control_addr.into(),
            control_port: 5000,
            rooms: rooms.iter().map(|(n, m)| RoomInfo { name: (*n).into(), members: *m }).collect(),
            nonce: 0,
            owner: None,
            started_ms: None,
            merge_room: None,
            fingerprint: None,
            passcode: None,
        }
    }

    pub(crate) fn src(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn table_new_update_and_expiry_on_a_virtual_clock() {
        let t0 = Instant::now();
        let mut table = HostTable::new();
        let b = beacon(1, "lab-pc", "192.168.1.20", &[("default", 3)]);

        assert!(table.observe(t0, src("192.168.1.20:5001"), b.clone()), "new host");
        assert!(
            !table.observe(t0 + Duration::from_secs(5), src("192.168.1.20:5001"), b.clone()),
            "same beacon again is not a change"
        );
        let mut b2 = b.clone();
        b2.rooms.push(RoomInfo { name: "lab".into(), members: 1 });
        assert!(
            table.observe(t0 + Duration::from_secs(6), src("192.168.1.20:5001"), b2),
            "rooms changed"
        );
        let hosts = table.hosts();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].addr, src("192.168.1.20:5000"));
        assert_eq!(hosts[0].rooms.len(), 2);
        assert_eq!(hosts[0].last_seen, t0 + Duration::from_secs(6));

        let seen = t0 + Duration::from_secs(6);
        assert_eq!(table.next_expiry(), Some(seen + HostTable::TTL));
        assert!(
            table.expire(seen + HostTable::TTL - Duration::from_millis(1)).is_empty(),
            "not before 15 s"
        );
        assert_eq!(table.len(), 1);
        assert_eq!(table.expire(seen + HostTable::TTL), vec![1], "gone at exactly 15 s");
        assert!(table.is_empty());
        assert_eq!(table.next_expiry(), None);
    }

    #[test]
    fn unspecified_control_addr_means_the_source_ip() {
        let t0 = Instant::now();
        let mut table = HostTable::new();
        table.observe(t0, src("10.0.0.7:40000"), beacon(1, "a", "0.0.0.0", &[]));
        table.observe(t0, src("10.0.0.8:40000"), beacon(2, "b", "not an address", &[]));
        table.observe(t0, src("10.0.0.9:40000"), beacon(3, "c", "255.255.255.255", &[]));
        table.observe(t0, src("10.0.0.10:40000"), beacon(4, "d", "10.0.0.99", &[]));
        let addrs: Vec<SocketAddr> = table.hosts().iter().map(|h| h.addr).collect();
        assert_eq!(
            addrs,
            [
                src("10.0.0.7:5000"),
                src("10.0.0.8:5000"),
                src("10.0.0.9:5000"),
                src("10.0.0.99:5000")
            ]
        );
    }

    #[test]
    fn one_entry_per_host_id_sorted_by_name_then_addr() {
        let t0 = Instant::now();
        let mut table = HostTable::new();
        // The same host heard as a probe answer and as a broadcast beacon.
        assert!(table.observe(t0, src("10.0.0.5:1234"), beacon(7, "zed", "0.0.0.0", &[])));
        assert!(!table.observe(t0, src("10.0.0.5:5001"), beacon(7, "zed", "0.0.0.0", &[])));
        assert!(table.observe(t0, src("10.0.0.2:5001"), beacon(8, "Alpha", "0.0.0.0", &[])));
        assert!(table.observe(t0, src("10.0.0.1:5001"), beacon(9, "alpha", "0.0.0.0", &[])));
        assert!(table.observe(t0, src("10.0.0.3:5001"), beacon(10, "beta", "0.0.0.0", &[])));
        let names: Vec<(String, u64)> =
            table.hosts().into_iter().map(|h| (h.host_name, h.host_id)).collect();
        assert_eq!(
            names,
            [("Alpha".into(), 8), ("alpha".into(), 9), ("beta".into(), 10), ("zed".into(), 7)]
        );
        // Renamed host: same entry, reported as a change.
        assert!(table.observe(t0, src("10.0.0.5:5001"), beacon(7, "zed2", "0.0.0.0", &[])));
        assert_eq!(table.len(), 4);
    }

    #[test]
    fn table_is_bounded_and_expiry_frees_room() {
        let t0 = Instant::now();
        let mut table = HostTable::new();
        for id in 0..HostTable::MAX_HOSTS as u64 {
            assert!(table.observe(t0, src("10.0.0.1:1"), beacon(id, "x", "0.0.0.0", &[])));
        }
        assert!(!table.observe(t0, src("10.0.0.1:1"), beacon(u64::MAX, "y", "0.0.0.0", &[])));
        assert_eq!(table.len(), HostTable::MAX_HOSTS);
        assert_eq!(table.expire(t0 + HostTable::TTL).len(), HostTable::MAX_HOSTS);
        assert!(table.observe(
            t0 + HostTable::TTL,
            src("10.0.0.1:1"),
            beacon(u64::MAX, "y", "0.0.0.0", &[])
        ));
    }

    #[test]
    fn parse_beacon_accepts_beacons_only() {
        let b = beacon(1, "h", "0.0.0.0", &[("default", 2)]);
        let mut frame = Vec::new();
        encode_frame(MsgType::DiscoveryBeacon, 0, &b, &mut frame);
        assert_eq!(parse_beacon(&frame), Ok(b.clone()));

        // A newer host's beacon is listed (as incompatible), not dropped.
        let mut newer = b.clone();
        newer.version = PROTOCOL_VERSION + 1;
        let mut v2 = Vec::new();
        encode_frame(MsgType::DiscoveryBeacon, 0, &newer, &mut v2);
        v2[0] = PROTOCOL_VERSION + 1;
        assert_eq!(parse_beacon(&v2).map(|b| b.version), Ok(PROTOCOL_VERSION + 1));

        let mut mismatched = frame.clone();
        mismatched[0] = PROTOCOL_VERSION + 1;
        let mut probe = Vec::new();
        encode_frame(MsgType::DiscoveryProbe, 0, &Probe { version: 1, nonce: 1 }, &mut probe);
        let mut huge = frame.clone();
        huge[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        let mut oversized = frame.clone();
        oversized.resize(limits::DISCOVERY_DATAGRAM + 1, 0);
        let cases: &[(&str, &[u8])] = &[
            ("empty", &[]),
            ("header cut short", &frame[..5]),
            ("payload cut short", &frame[..frame.len() - 1]),
            ("header and body versions disagree", &mismatched),
            ("a probe is not a beacon", &probe),
            ("length claims 4 GiB", &huge),
            ("bigger than a discovery datagram", &oversized),
        ];
        for (why, bytes) in cases {
            assert!(parse_beacon(bytes).is_err(), "{why}");
        }
    }

    #[test]
    fn a_one_shot_schedule_probes_then_retries_once() {
        let t0 = Instant::now();
        let mut s = ProbeSchedule::once(t0);
        assert_eq!(s.poll_timeout(), Some(t0));
        assert_eq!(s.poll(t0), Some(ProbeKind::Round));
        assert_eq!(s.poll(t0), None, "each probe is asked for once");
        assert_eq!(s.poll_timeout(), Some(t0 + PROBE_RETRY));
        assert_eq!(s.poll(t0 + PROBE_RETRY - Duration::from_millis(1)), None);
        assert_eq!(s.poll(t0 + PROBE_RETRY), Some(ProbeKind::Retry));
        assert_eq!(s.poll_timeout(), None, "nothing more to send");
        assert_eq!(s.poll(t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn a_watch_schedule_repeats_rounds_from_when_they_ran() {
        let t0 = Instant::now();
        let mut s = ProbeSchedule::every(t0, WATCH_PROBE_EVERY);
        assert_eq!(s.poll(t0), Some(ProbeKind::Round));
        assert_eq!(s.poll(t0 + PROBE_RETRY), Some(ProbeKind::Retry));
        assert_eq!(s.poll_timeout(), Some(t0 + WATCH_PROBE_EVERY));
        // A driver that wakes late runs the round late; the next one is
        // counted from then, and the late round's retry follows it.
        let late = t0 + WATCH_PROBE_EVERY + Duration::from_secs(2);
        assert_eq!(s.poll(late), Some(ProbeKind::Round));
        assert_eq!(s.poll_timeout(), Some(late + PROBE_RETRY));
        assert_eq!(s.poll(late + PROBE_RETRY), Some(ProbeKind::Retry));
        assert_eq!(s.poll_timeout(), Some(late + WATCH_PROBE_EVERY));
    }

    #[test]
    fn a_round_due_replaces_a_pending_retry() {
        let t0 = Instant::now();
        // A round period shorter than the retry delay.
        let mut s = ProbeSchedule::every(t0, PROBE_RETRY / 2);
        assert_eq!(s.poll(t0), Some(ProbeKind::Round));
        let t1 = t0 + PROBE_RETRY;
        assert_eq!(s.poll(t1), Some(ProbeKind::Round));
        assert_eq!(s.poll(t1), None);
        assert_eq!(s.poll_timeout(), Some(t1 + PROBE_RETRY / 2));
    }

    proptest::proptest! {
        #[test]
        fn parse_beacon_never_panics(bytes in proptest::collection::vec(0u8..=255, 0..1500)) {
            let _ = parse_beacon(&bytes);
        }
    }
}
