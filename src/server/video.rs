//! The video relay: forwards camera fragments to the sender's room without
//! decoding them, honouring each receiver's per-sender subscription.
//!
//! [`VideoRelay`] is the sans-IO core: a datagram, the session whose link
//! it arrived on and the time in, the sessions to forward it to (or a reply)
//! out. [`run`] is the driver: it takes the datagrams the links' readers
//! hand it ([`super::media`]) and sends with `Link::send_datagram`.
//! Invariants:
//! - a fragment goes only to members of the sender's room, never back to the
//!   sender, and only to receivers whose subscription to that sender names
//!   that fragment's layer (a thumbnail subscriber never gets a full-layer byte);
//! - the sender is the session that owns the link the fragment came on:
//!   the relay writes that session into every forwarded fragment, whatever
//!   the fragment claimed, so nobody can send video as somebody else;
//! - a datagram from a link whose session has left is dropped and counted,
//!   and so is anything that does not parse.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use smol::channel::Receiver;
use smol::future::FutureExt;

use super::core::SessionId;
use super::directory::Directory;
use super::media::{Arrival, Peers};
use crate::proto::{
    Layer, MAX_VIDEO_CONTROL, MsgType, SESSION_OFFSET, Subscription, VideoHello, VideoPacket,
    VideoPeer, VideoRoster, decode_video, encode_video_control,
};

#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// A receiver not heard from (hello) for this long gets nothing more.
    pub receiver_timeout: Duration,
    /// How long a sender's room is trusted before asking the directory
    /// again (so a member who left stops being relayed within this time).
    pub auth_refresh: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            // Three of the receivers' hellos (`HELLO_EVERY`).
            receiver_timeout: Duration::from_secs(15),
            auth_refresh: Duration::from_secs(1),
        }
    }
}

/// Counters for operators, tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub fragments_in: u64,
    pub bytes_in: u64,
    pub fragments_out: u64,
    pub bytes_out: u64,
    /// Bytes out of the full and thumbnail layers.
    pub bytes_out_full: u64,
    pub bytes_out_thumb: u64,
    pub hellos: u64,
    /// Hellos left unanswered: the receiver's roster was current.
    pub rosters_current: u64,
    /// Dropped: the link's session has left (or never registered).
    pub bad_token: u64,
    /// Dropped: did not parse, or not a client → host message.
    pub malformed: u64,
    /// Receivers currently registered.
    pub receivers: u64,
}

/// What to do with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send the (sender-stamped) datagram to every session in `targets`.
    Forward,
    /// Send these bytes back to the datagram's sender.
    Reply(Vec<u8>),
    /// Nothing to send: the datagram was refused.
    Drop(DropReason),
    /// Nothing to send: a hello from a receiver whose roster is current.
    Quiet,
}

/// [`VideoRoster::version`] of a member list (sorted by session): a SipHash
/// of the sessions and names, never 0 (a receiver's "none yet").
fn roster_version(members: &[VideoPeer]) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    members.hash(&mut h);
    (h.finish() as u32).max(1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    BadToken,
    Malformed,
}

struct SenderAuth {
    room: Arc<str>,
    checked: Instant,
}

struct ReceiverState {
    room: Arc<str>,
    default: Subscription,
    subs: HashMap<SessionId, Subscription>,
    last_hello: Instant,
}

pub struct VideoRelay {
    config: RelayConfig,
    directory: Directory,
    senders: HashMap<SessionId, SenderAuth>,
    receivers: HashMap<SessionId, ReceiverState>,
    stats: RelayStats,
}

impl VideoRelay {
    pub fn new(config: RelayConfig, directory: Directory) -> VideoRelay {
        VideoRelay {
            config,
            directory,
            senders: HashMap::new(),
            receivers: HashMap::new(),
            stats: RelayStats::default(),
        }
    }

    pub fn stats(&self) -> RelayStats {
        RelayStats { receivers: self.receivers.len() as u64, ..self.stats }
    }

    /// Handles one datagram that `session` sent on its own link. For
    /// [`Output::Forward`] the datagram has been rewritten in place (its
    /// sender field set to `session`) and `targets` holds the sessions it
    /// goes to.
    pub fn handle(
        &mut self,
        now: Instant,
        session: SessionId,
        datagram: &mut [u8],
        targets: &mut Vec<SessionId>,
    ) -> Output {
        targets.clear();
        let len = datagram.len() as u64;
        let layer = match decode_video(datagram) {
            Ok(VideoPacket::Fragment(f)) => f.header.layer,
            Ok(VideoPacket::Hello(h)) => return self.hello(now, session, h),
            Ok(VideoPacket::Roster(_)) | Err(_) => {
                self.stats.malformed += 1;
                return Output::Drop(DropReason::Malformed);
            }
        };
        self.stats.fragments_in += 1;
        self.stats.bytes_in += len;
        let Some(room) = self.sender_room(now, session) else {
            self.stats.bad_token += 1;
            return Output::Drop(DropReason::BadToken);
        };
        // Whatever sender the fragment named, it is the link's session.
        datagram[SESSION_OFFSET..SESSION_OFFSET + 4].copy_from_slice(&session.0.to_be_bytes());
        let timeout = self.config.receiver_timeout;
        for (&id, r) in &self.receivers {
            if id == session
                || r.room != room
                || now.saturating_duration_since(r.last_hello) > timeout
            {
                continue;
            }
            let sub = r.subs.get(&session).copied().unwrap_or(r.default);
            if sub.layer() == Some(layer) {
                targets.push(id);
            }
        }
        let n = targets.len() as u64;
        self.stats.fragments_out += n;
        self.stats.bytes_out += n * len;
        match layer {
            Layer::Full => self.stats.bytes_out_full += n * len,
            Layer::Thumb => self.stats.bytes_out_thumb += n * len,
        }
        Output::Forward
    }

    /// The sender's room, from a recent check or the directory.
    fn sender_room(&mut self, now: Instant, session: SessionId) -> Option<Arc<str>> {
        if let Some(a) = self.senders.get(&session)
            && now.saturating_duration_since(a.checked) < self.config.auth_refresh
        {
            return Some(a.room.clone());
        }
        match self.directory.heard(session) {
            Some(entry) => {
                let room: Arc<str> = match self.senders.get(&session) {
                    Some(a) if *a.room == *entry.room => a.room.clone(),
                    _ => entry.room.into(),
                };
                self.senders.insert(session, SenderAuth { room: room.clone(), checked: now });
                Some(room)
            }
            None => {
                self.senders.remove(&session);
                None
            }
        }
    }

    fn hello(&mut self, now: Instant, session: SessionId, h: VideoHello) -> Output {
        let Some(entry) = self.directory.heard(session) else {
            self.stats.bad_token += 1;
            return Output::Drop(DropReason::BadToken);
        };
        self.stats.hellos += 1;
        let members = self.directory.room_members(&entry.room);
        let room: Arc<str> = entry.room.into();
        self.receivers.insert(
            session,
            ReceiverState {
                room,
                default: h.default,
                subs: h.subs.into_iter().collect(),
                last_hello: now,
            },
        );
        let mut roster = VideoRoster {
            members: members
                .into_iter()
                .map(|e| VideoPeer { session: e.session, name: e.name })
                .collect(),
            version: 0,
        };
        roster.members.sort_by_key(|p| p.session);
        roster.version = roster_version(&roster.members);
        // The receiver holds this room's roster already: a hello of an idle
        // room costs no answer.
        if h.roster == roster.version {
            self.stats.rosters_current += 1;
            return Output::Quiet;
        }
        let mut out = Vec::new();
        encode_video_control(MsgType::VideoRoster, &roster, &mut out);
        // A room too big for one roster datagram is cut to fit.
        while out.len() > MAX_VIDEO_CONTROL as usize && roster.members.pop().is_some() {
            encode_video_control(MsgType::VideoRoster, &roster, &mut out);
        }
        Output::Reply(out)
    }

    /// Forgets receivers that went quiet or left the meeting. Call about once
    /// a second.
    pub fn tick(&mut self, now: Instant) {
        let timeout = self.config.receiver_timeout;
        let directory = &self.directory;
        self.receivers.retain(|&id, r| {
            now.saturating_duration_since(r.last_hello) <= timeout
                && directory.get(id).is_some_and(|e| *r.room == *e.room)
        });
        let refresh = self.config.auth_refresh;
        self.senders.retain(|_, a| now.saturating_duration_since(a.checked) < refresh * 4);
    }
}

/// A running relay, kept by `RunningHost`.
pub struct VideoService {
    stats: Arc<Mutex<RelayStats>>,
    _stop: smol::channel::Sender<()>,
    _task: smol::Task<()>,
}

impl VideoService {
    /// Starts the relay on the datagrams in `arrivals` (each with the
    /// session whose link it came on), sending through `peers`.
    pub fn start(arrivals: Receiver<Arrival>, peers: Peers, directory: Directory) -> VideoService {
        let stats: Arc<Mutex<RelayStats>> = Arc::default();
        let relay = VideoRelay::new(RelayConfig::default(), directory);
        let (stop_tx, stop) = smol::channel::bounded::<()>(1);
        let task = super::runtime::spawn(run(arrivals, peers, relay, stats.clone(), stop));
        VideoService { stats, _stop: stop_tx, _task: task }
    }

    /// Counters as of the last tick (at most 200 ms old).
    pub fn stats(&self) -> RelayStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The driver: take a datagram, ask the core, send. Stops when `stop`
/// closes (or when its task is dropped). Sending never waits: each link's
/// datagram queue is newest-wins.
pub async fn run(
    arrivals: Receiver<Arrival>,
    peers: Peers,
    mut relay: VideoRelay,
    stats: Arc<Mutex<RelayStats>>,
    stop: Receiver<()>,
) {
    const TICK: Duration = Duration::from_millis(200);
    let mut targets = Vec::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        enum Wake {
            Datagram(Option<Arrival>),
            Tick,
            Stop,
        }
        let wake = async { Wake::Datagram(arrivals.recv().await.ok()) }
            .or(async {
                smol::Timer::at(next_tick).await;
                Wake::Tick
            })
            .or(async {
                let _ = stop.recv().await;
                Wake::Stop
            })
            .await;
        match wake {
            Wake::Datagram(Some((session, data))) => {
                let now = Instant::now();
                let mut buf = Vec::from(data);
                match relay.handle(now, session, &mut buf, &mut targets) {
                    Output::Forward => {
                        let out = Bytes::from(buf);
                        for &to in &targets {
                            // One closed link must not stop the rest.
                            peers.send(to, out.clone());
                        }
                    }
                    Output::Reply(bytes) => {
                        peers.send(session, Bytes::from(bytes));
                    }
                    Output::Drop(_) | Output::Quiet => {}
                }
                if now >= next_tick {
                    next_tick = now + TICK;
                    relay.tick(now);
                    *stats.lock().unwrap_or_else(|e| e.into_inner()) = relay.stats();
                }
            }
            Wake::Datagram(None) | Wake::Stop => break,
            Wake::Tick => {
                let now = Instant::now();
                next_tick = now + TICK;
                relay.tick(now);
                *stats.lock().unwrap_or_else(|e| e.into_inner()) = relay.stats();
            }
        }
    }
    *stats.lock().unwrap_or_else(|e| e.into_inner()) = relay.stats();
}
