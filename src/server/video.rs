//! The video relay (UDP 6000): forwards camera fragments to the sender's room
//! without decoding them, honouring each receiver's per-sender subscription.
//!
//! [`VideoRelay`] is the sans-IO core: a datagram and the time in, the
//! addresses to forward it to (or a reply) out. [`run`] is the driver that
//! owns the socket. Invariants:
//! - a fragment goes only to members of the sender's room, never back to the
//!   sender, and only to receivers whose subscription to that sender names
//!   that fragment's layer (a thumbnail subscriber never gets a full-layer byte);
//! - a fragment whose token is not its session's is dropped and counted, and
//!   so is anything that does not parse;
//! - forwarded fragments carry a zeroed token, so receivers never learn
//!   another participant's secret.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::Async;
use smol::channel::Receiver;
use smol::future::FutureExt;

use super::directory::Directory;
use crate::proto::{
    Layer, MAX_VIDEO_CONTROL, MAX_VIDEO_DATAGRAM, MsgType, Subscription, TOKEN_OFFSET, VideoHello,
    VideoPacket, VideoPeer, VideoRoster, decode_video, encode_video_control,
};

#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    /// A receiver not heard from (hello) for this long gets nothing more.
    pub receiver_timeout: Duration,
    /// How long a sender's token check is trusted before asking the directory
    /// again (so a member who left stops being relayed within this time).
    pub auth_refresh: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            receiver_timeout: Duration::from_secs(10),
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
    /// Dropped: token not the session's, or session unknown.
    pub bad_token: u64,
    /// Dropped: did not parse, or not a client → host message.
    pub malformed: u64,
    /// Receivers currently registered.
    pub receivers: u64,
}

/// What to do with one datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send the (token-zeroed) datagram to every address in `targets`.
    Forward,
    /// Send these bytes back to the datagram's source.
    Reply(Vec<u8>),
    /// Nothing to send.
    Drop(DropReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    BadToken,
    Malformed,
}

struct SenderAuth {
    token: u64,
    room: Arc<str>,
    checked: Instant,
}

struct ReceiverState {
    addr: SocketAddr,
    token: u64,
    room: Arc<str>,
    default: Subscription,
    subs: HashMap<u32, Subscription>,
    last_hello: Instant,
}

pub struct VideoRelay {
    config: RelayConfig,
    directory: Directory,
    senders: HashMap<u32, SenderAuth>,
    receivers: HashMap<u32, ReceiverState>,
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

    /// Handles one datagram from `from`. For [`Output::Forward`] the datagram
    /// has been rewritten in place (token zeroed) and `targets` holds where it
    /// goes.
    pub fn handle(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &mut [u8],
        targets: &mut Vec<SocketAddr>,
    ) -> Output {
        targets.clear();
        let len = datagram.len() as u64;
        let (session, token, layer) = match decode_video(datagram) {
            Ok(VideoPacket::Fragment(f)) => (f.header.session, f.header.token, f.header.layer),
            Ok(VideoPacket::Hello(h)) => return self.hello(now, from, h),
            Ok(VideoPacket::Roster(_)) | Err(_) => {
                self.stats.malformed += 1;
                return Output::Drop(DropReason::Malformed);
            }
        };
        self.stats.fragments_in += 1;
        self.stats.bytes_in += len;
        let Some(room) = self.sender_room(now, session, token) else {
            self.stats.bad_token += 1;
            return Output::Drop(DropReason::BadToken);
        };
        datagram[TOKEN_OFFSET..TOKEN_OFFSET + 8].fill(0);
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
                targets.push(r.addr);
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

    /// The sender's room if `token` is its session's, from a recent check or
    /// the directory.
    fn sender_room(&mut self, now: Instant, session: u32, token: u64) -> Option<Arc<str>> {
        if let Some(a) = self.senders.get(&session)
            && a.token == token
            && now.saturating_duration_since(a.checked) < self.config.auth_refresh
        {
            return Some(a.room.clone());
        }
        match self.directory.authenticate(session, token) {
            Some(entry) => {
                let room: Arc<str> = match self.senders.get(&session) {
                    Some(a) if *a.room == *entry.room => a.room.clone(),
                    _ => entry.room.into(),
                };
                self.senders
                    .insert(session, SenderAuth { token, room: room.clone(), checked: now });
                Some(room)
            }
            None => {
                // Only a real session's own entry is forgotten, never on a
                // forger's word alone: the next genuine packet re-checks anyway.
                if self.senders.get(&session).is_some_and(|a| a.token == token) {
                    self.senders.remove(&session);
                }
                None
            }
        }
    }

    fn hello(&mut self, now: Instant, from: SocketAddr, h: VideoHello) -> Output {
        let Some(entry) = self.directory.authenticate(h.session, h.token) else {
            self.stats.bad_token += 1;
            return Output::Drop(DropReason::BadToken);
        };
        self.stats.hellos += 1;
        let members = self.directory.room_members(&entry.room);
        let room: Arc<str> = entry.room.into();
        self.receivers.insert(
            h.session,
            ReceiverState {
                addr: from,
                token: h.token,
                room,
                default: h.default,
                subs: h.subs.into_iter().collect(),
                last_hello: now,
            },
        );
        let mut roster = VideoRoster {
            members: members
                .into_iter()
                .map(|e| VideoPeer { session: e.session.0, name: e.name })
                .collect(),
        };
        roster.members.sort_by_key(|p| p.session);
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
                && directory.authenticate(id, r.token).is_some()
        });
        let refresh = self.config.auth_refresh;
        self.senders.retain(|_, a| now.saturating_duration_since(a.checked) < refresh * 4);
    }
}

/// A running relay, kept by `RunningHost`.
pub struct VideoService {
    pub addr: SocketAddr,
    stats: Arc<Mutex<RelayStats>>,
    _stop: smol::channel::Sender<()>,
    _task: smol::Task<()>,
}

impl VideoService {
    /// Starts the relay on an already bound socket.
    pub fn start(socket: UdpSocket, directory: Directory) -> std::io::Result<VideoService> {
        let addr = socket.local_addr()?;
        let socket = Async::new(socket)?;
        let stats: Arc<Mutex<RelayStats>> = Arc::default();
        let relay = VideoRelay::new(RelayConfig::default(), directory);
        let (stop_tx, stop) = smol::channel::bounded::<()>(1);
        let task = smol::spawn(run(socket, relay, stats.clone(), stop));
        Ok(VideoService { addr, stats, _stop: stop_tx, _task: task })
    }

    /// Counters as of the last tick (at most 200 ms old).
    pub fn stats(&self) -> RelayStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The driver: receive, ask the core, send. Stops when `stop` closes (or when
/// its task is dropped).
pub async fn run(
    socket: Async<UdpSocket>,
    mut relay: VideoRelay,
    stats: Arc<Mutex<RelayStats>>,
    stop: Receiver<()>,
) {
    const TICK: Duration = Duration::from_millis(200);
    let mut buf = vec![0u8; MAX_VIDEO_DATAGRAM.max(MAX_VIDEO_CONTROL as usize) + 1];
    let mut targets = Vec::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        enum Wake {
            Packet(std::io::Result<(usize, SocketAddr)>),
            Tick,
            Stop,
        }
        let wake = async { Wake::Packet(socket.recv_from(&mut buf).await) }
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
            Wake::Packet(Ok((n, from))) => {
                let now = Instant::now();
                match relay.handle(now, from, &mut buf[..n], &mut targets) {
                    Output::Forward => {
                        for to in &targets {
                            // One unreachable receiver must not stop the rest.
                            if let Err(e) = socket.send_to(&buf[..n], *to).await {
                                tracing::debug!("video to {to}: {e}");
                            }
                        }
                    }
                    Output::Reply(bytes) => {
                        let _ = socket.send_to(&bytes, from).await;
                    }
                    Output::Drop(_) => {}
                }
                if now >= next_tick {
                    next_tick = now + TICK;
                    relay.tick(now);
                    *stats.lock().unwrap_or_else(|e| e.into_inner()) = relay.stats();
                }
            }
            // ICMP "port unreachable" from a receiver that left shows up here.
            Wake::Packet(Err(e)) => tracing::debug!("video socket: {e}"),
            Wake::Tick => {
                let now = Instant::now();
                next_tick = now + TICK;
                relay.tick(now);
                *stats.lock().unwrap_or_else(|e| e.into_inner()) = relay.stats();
            }
            Wake::Stop => break,
        }
    }
    *stats.lock().unwrap_or_else(|e| e.into_inner()) = relay.stats();
}
