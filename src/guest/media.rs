//! The gateway's media adapter: the one place that moves a guest's media
//! between the host and the gateway. Today it is a UDP socket to the host's
//! video port, speaking the native video protocol (hello/roster,
//! fragments); at the QUIC merge it becomes the session's `Link`
//! datagrams, and nothing else in [`super`] changes.
//!
//! - Up: a guest's JPEG frames (both layers, made by the page) are cut into
//!   fragments ([`fragment_frame`]) under the guest's session and token.
//! - Down: fragments are reassembled ([`Reassembler`]) and the newest frame
//!   per sender waits in a [`FrameMailbox`]: a slow guest loses frames, it
//!   never queues them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::Async;

use crate::media::video::{Reassembler, ReassemblyConfig, fragment_frame};
use crate::proto::{
    FragmentHeader, Layer, MAX_VIDEO_CONTROL, MAX_VIDEO_DATAGRAM, MsgType, Subscription,
    VideoHello, VideoPacket, Welcome, decode_video, encode_video_control,
};

/// How often the receiver's hello (subscriptions) is repeated.
pub const HELLO_EVERY: Duration = Duration::from_secs(1);

/// One whole frame for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFrame {
    pub sender: u32,
    pub name: String,
    pub layer: Layer,
    pub frame_id: u32,
    pub jpeg: Vec<u8>,
}

/// The newest frame per sender, waiting for the guest's WebSocket writer;
/// a newer frame replaces an unsent older one.
#[derive(Default)]
pub struct FrameMailbox {
    frames: Mutex<BTreeMap<u32, GuestFrame>>,
    replaced: std::sync::atomic::AtomicU64,
}

impl FrameMailbox {
    /// Puts `frame` in its sender's slot; true if it replaced an unsent one.
    pub fn put(&self, frame: GuestFrame) -> bool {
        let old = self.frames.lock().unwrap_or_else(|e| e.into_inner()).insert(frame.sender, frame);
        if old.is_some() {
            self.replaced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        old.is_some()
    }

    /// Every waiting frame, emptying the mailbox.
    pub fn take(&self) -> Vec<GuestFrame> {
        std::mem::take(&mut *self.frames.lock().unwrap_or_else(|e| e.into_inner()))
            .into_values()
            .collect()
    }

    /// Frames dropped because a newer one came before they were sent.
    pub fn replaced(&self) -> u64 {
        self.replaced.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What the guest wants to receive (its layout): `full` senders get the
/// full layer, every other sender `default`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wants {
    pub default: Subscription,
    pub full: Vec<u32>,
}

/// The video half of a guest's media.
pub struct VideoLink {
    socket: Arc<Async<UdpSocket>>,
    welcome: Arc<Mutex<Welcome>>,
    host: IpAddr,
    seq: Mutex<u16>,
    wants: Arc<Mutex<Wants>>,
    task: Option<smol::Task<()>>,
}

fn route(welcome: &Mutex<Welcome>, host: IpAddr) -> (u32, u64, SocketAddr) {
    let w = welcome.lock().unwrap_or_else(|e| e.into_inner());
    (w.session, w.token, SocketAddr::new(host, w.ports.video))
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl VideoLink {
    /// Opens the socket and starts receiving for the session in `welcome`
    /// (read on every use: it changes after a rejoin) at `host`; whole frames
    /// go to `mailbox`, and `wake` gets a token after each.
    pub fn start(
        welcome: Arc<Mutex<Welcome>>,
        host: IpAddr,
        mailbox: Arc<FrameMailbox>,
        wake: smol::channel::Sender<()>,
    ) -> std::io::Result<VideoLink> {
        let bind: SocketAddr = match host {
            IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = Arc::new(Async::<UdpSocket>::bind(bind)?);
        let wants = Arc::new(Mutex::new(Wants::default()));
        let task = smol::spawn(receive(
            socket.clone(),
            welcome.clone(),
            host,
            wants.clone(),
            mailbox,
            wake,
        ));
        Ok(VideoLink { socket, welcome, host, seq: Mutex::new(0), wants, task: Some(task) })
    }

    /// Sends one of the guest's frames (`frame_id` from the page, the same
    /// for both layers of one capture).
    pub fn send_frame(&self, layer: Layer, frame_id: u32, jpeg: &[u8]) {
        let (session, token, to) = route(&self.welcome, self.host);
        let header = FragmentHeader {
            session,
            token,
            frame_id,
            layer,
            index: 0,
            count: 0,
            frame_len: 0,
            capture_us: unix_us(),
        };
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = Vec::with_capacity(MAX_VIDEO_DATAGRAM);
        fragment_frame(header, jpeg, &mut seq, &mut buf, |d| {
            // A full send buffer loses the fragment, as the network might.
            let _ = self.socket.get_ref().send_to(d, to);
        });
    }

    /// Changes what the guest receives (sent with the next hello, at once).
    pub fn set_wants(&self, wants: Wants) {
        *self.wants.lock().unwrap_or_else(|e| e.into_inner()) = wants;
        send_hello(&self.socket, &self.welcome, self.host, &self.wants);
    }
}

impl Drop for VideoLink {
    fn drop(&mut self) {
        drop(self.task.take());
    }
}

fn send_hello(
    socket: &Async<UdpSocket>,
    welcome: &Mutex<Welcome>,
    host: IpAddr,
    wants: &Mutex<Wants>,
) {
    let (session, token, to) = route(welcome, host);
    let wants = wants.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let hello = VideoHello {
        session,
        token,
        default: wants.default,
        subs: wants.full.iter().map(|s| (*s, Subscription::Full)).collect(),
    };
    let mut buf = Vec::new();
    encode_video_control(MsgType::VideoHello, &hello, &mut buf);
    let _ = socket.get_ref().send_to(&buf, to);
}

async fn receive(
    socket: Arc<Async<UdpSocket>>,
    welcome: Arc<Mutex<Welcome>>,
    host: IpAddr,
    wants: Arc<Mutex<Wants>>,
    mailbox: Arc<FrameMailbox>,
    wake: smol::channel::Sender<()>,
) {
    let mut reassembler = Reassembler::new(ReassemblyConfig::default());
    let mut names: HashMap<u32, String> = HashMap::new();
    let mut buf = vec![0u8; MAX_VIDEO_DATAGRAM.max(MAX_VIDEO_CONTROL as usize) + 1];
    let mut next_hello = Instant::now();
    loop {
        if Instant::now() >= next_hello {
            send_hello(&socket, &welcome, host, &wants);
            next_hello = Instant::now() + HELLO_EVERY;
        }
        let received = smol::future::or(async { Some(socket.recv_from(&mut buf).await) }, async {
            smol::Timer::at(next_hello).await;
            None
        })
        .await;
        let n = match received {
            Some(Ok((n, _))) => n,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "guest video socket");
                smol::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
            None => continue,
        };
        match decode_video(&buf[..n]) {
            Ok(VideoPacket::Fragment(frag)) => {
                if let Some(frame) = reassembler.push(Instant::now(), &frag) {
                    let name = names.get(&frame.sender).cloned().unwrap_or_default();
                    mailbox.put(GuestFrame {
                        sender: frame.sender,
                        name,
                        layer: frame.layer,
                        frame_id: frame.frame_id,
                        jpeg: frame.data,
                    });
                    let _ = wake.try_send(());
                }
            }
            Ok(VideoPacket::Roster(roster)) => {
                let gone: Vec<u32> = names
                    .keys()
                    .copied()
                    .filter(|s| !roster.members.iter().any(|p| p.session == *s))
                    .collect();
                for s in gone {
                    reassembler.forget(s);
                }
                names = roster.members.into_iter().map(|p| (p.session, p.name)).collect();
            }
            Ok(VideoPacket::Hello(_)) | Err(_) => {}
        }
    }
}

/// Samples per audio frame sent up (20 ms at 48 kHz, the host's default).
pub const UP_FRAME: usize = crate::media::audio::FRAME_20MS;
/// A keepalive goes up when nothing else did for this long, so the host
/// keeps sending the mix to a guest whose microphone is off.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
/// Most samples of a guest's PCM waiting for a whole frame (a misbehaving
/// page cannot grow it): 100 ms.
const MAX_PENDING: usize = 5 * UP_FRAME;

struct Uplink {
    /// Opus at the native clients' bitrate; `None` (PCM sent as is) only
    /// if libopus refused to make an encoder.
    encoder: Option<crate::media::audio::Encoder>,
    pending: Vec<i16>,
    seq: u32,
    timestamp: u32,
    datagram: Vec<u8>,
    payload: Vec<u8>,
}

/// The audio half of a guest's media: the guest's PCM up to the mixer,
/// encoded here as Opus 20 ms frames (as native clients send), and its
/// mix-minus down, decoded to 16-bit PCM.
pub struct AudioLink {
    socket: Arc<Async<UdpSocket>>,
    welcome: Arc<Mutex<Welcome>>,
    host: IpAddr,
    up: Arc<Mutex<Uplink>>,
    task: Option<smol::Task<()>>,
}

fn audio_dest(welcome: &Mutex<Welcome>, host: IpAddr) -> (u32, u64, SocketAddr) {
    let w = welcome.lock().unwrap_or_else(|e| e.into_inner());
    (w.session, w.token, SocketAddr::new(host, w.ports.audio))
}

fn send_up(
    socket: &Async<UdpSocket>,
    welcome: &Mutex<Welcome>,
    host: IpAddr,
    up: &mut Uplink,
    frame: Option<&[i16]>,
) {
    let (session, token, to) = audio_dest(welcome, host);
    up.payload.clear();
    let mut codec = crate::proto::AudioCodec::Pcm16;
    if let Some(frame) = frame {
        up.seq = up.seq.wrapping_add(1);
        let samples: Vec<f32> = frame.iter().map(|&s| f32::from(s) / 32768.0).collect();
        let Uplink { encoder, payload, .. } = &mut *up;
        match encoder.as_mut().map(|e| e.encode(&samples, payload)) {
            Some(Ok(())) => codec = crate::proto::AudioCodec::Opus,
            _ => {
                payload.clear();
                for s in frame {
                    payload.extend_from_slice(&s.to_le_bytes());
                }
            }
        }
    }
    up.datagram.clear();
    crate::proto::AudioUp {
        session,
        token,
        keepalive: frame.is_none(),
        end: false,
        seq: up.seq,
        timestamp: up.timestamp,
        codec,
        samples: frame.map_or(UP_FRAME, <[i16]>::len) as u16,
        payload: &up.payload,
    }
    .encode(&mut up.datagram);
    if let Some(frame) = frame {
        up.timestamp = up.timestamp.wrapping_add(frame.len() as u32);
    }
    let _ = socket.get_ref().send_to(&up.datagram, to);
}

impl AudioLink {
    /// Opens the socket and starts receiving the mix for the session in
    /// `welcome` at `host`: each decoded frame goes to `mix` (16-bit PCM,
    /// 48 kHz mono); when the guest's writer falls behind, frames are
    /// dropped (a bounded channel), never queued without limit.
    pub fn start(
        welcome: Arc<Mutex<Welcome>>,
        host: IpAddr,
        mix: smol::channel::Sender<Vec<i16>>,
    ) -> std::io::Result<AudioLink> {
        let bind: SocketAddr = match host {
            IpAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
            IpAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = Arc::new(Async::<UdpSocket>::bind(bind)?);
        let encoder = crate::media::audio::Encoder::new(
            crate::proto::AudioCodec::Opus,
            crate::media::audio::DEFAULT_BITRATE,
        )
        .map_err(|e| tracing::warn!(error = %e, "guest audio goes up as PCM"))
        .ok();
        let up = Arc::new(Mutex::new(Uplink {
            encoder,
            pending: Vec::new(),
            seq: 0,
            timestamp: 0,
            datagram: Vec::new(),
            payload: Vec::new(),
        }));
        let task = smol::spawn(receive_mix(socket.clone(), welcome.clone(), host, up.clone(), mix));
        Ok(AudioLink { socket, welcome, host, up, task: Some(task) })
    }

    /// Takes the guest's 16-bit little-endian PCM (any length) and sends
    /// every whole frame of [`UP_FRAME`] samples.
    pub fn send_pcm(&self, pcm_le: &[u8]) {
        let mut up = self.up.lock().unwrap_or_else(|e| e.into_inner());
        up.pending.extend(pcm_le.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])));
        if up.pending.len() > MAX_PENDING {
            let excess = up.pending.len() - MAX_PENDING;
            up.pending.drain(..excess);
        }
        while up.pending.len() >= UP_FRAME {
            let frame: Vec<i16> = up.pending.drain(..UP_FRAME).collect();
            send_up(&self.socket, &self.welcome, self.host, &mut up, Some(&frame));
        }
    }
}

impl AudioLink {
    /// Sends one Opus packet the page encoded (WebCodecs; 20 ms, 48 kHz
    /// mono) as it is.
    pub fn send_opus(&self, packet: &[u8]) {
        if packet.is_empty() || packet.len() > crate::proto::AUDIO_DATAGRAM_MAX / 2 {
            return;
        }
        let mut up = self.up.lock().unwrap_or_else(|e| e.into_inner());
        let (session, token, to) = audio_dest(&self.welcome, self.host);
        up.seq = up.seq.wrapping_add(1);
        let mut datagram = std::mem::take(&mut up.datagram);
        datagram.clear();
        crate::proto::AudioUp {
            session,
            token,
            keepalive: false,
            end: false,
            seq: up.seq,
            timestamp: up.timestamp,
            codec: crate::proto::AudioCodec::Opus,
            samples: UP_FRAME as u16,
            payload: packet,
        }
        .encode(&mut datagram);
        up.timestamp = up.timestamp.wrapping_add(UP_FRAME as u32);
        let _ = self.socket.get_ref().send_to(&datagram, to);
        up.datagram = datagram;
    }
}

impl Drop for AudioLink {
    fn drop(&mut self) {
        drop(self.task.take());
    }
}

async fn receive_mix(
    socket: Arc<Async<UdpSocket>>,
    welcome: Arc<Mutex<Welcome>>,
    host: IpAddr,
    up: Arc<Mutex<Uplink>>,
    mix: smol::channel::Sender<Vec<i16>>,
) {
    let mut decoder = crate::media::audio::Decoder::new();
    let mut buf = vec![0u8; crate::proto::AUDIO_DATAGRAM_MAX + 1];
    let mut out = vec![0f32; 4 * UP_FRAME];
    let mut next_keepalive = Instant::now();
    loop {
        if Instant::now() >= next_keepalive {
            let mut up = up.lock().unwrap_or_else(|e| e.into_inner());
            send_up(&socket, &welcome, host, &mut up, None);
            next_keepalive = Instant::now() + KEEPALIVE_EVERY;
        }
        let received = smol::future::or(async { Some(socket.recv_from(&mut buf).await) }, async {
            smol::Timer::at(next_keepalive).await;
            None
        })
        .await;
        let n = match received {
            Some(Ok((n, _))) => n,
            Some(Err(_)) => {
                smol::Timer::after(Duration::from_millis(50)).await;
                continue;
            }
            None => continue,
        };
        if crate::proto::is_audio_feedback(&buf[..n]) {
            continue;
        }
        let Ok(down) = crate::proto::AudioDown::decode(&buf[..n]) else { continue };
        // Keepalives carry levels only; an FEC copy repeats the next packet.
        if down.keepalive || down.fec || down.payload.is_empty() {
            continue;
        }
        let samples = usize::from(down.samples).min(out.len());
        if !decoder.decode(down.codec, down.payload, &mut out[..samples]) {
            continue;
        }
        let pcm = out[..samples].iter().map(|s| (s.clamp(-1.0, 1.0) * 32767.0) as i16).collect();
        let _ = mix.try_send(pcm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(sender: u32, frame_id: u32) -> GuestFrame {
        GuestFrame { sender, name: "b".into(), layer: Layer::Thumb, frame_id, jpeg: vec![1] }
    }

    #[test]
    fn the_mailbox_keeps_only_the_newest_frame_per_sender() {
        let mailbox = FrameMailbox::default();
        assert!(!mailbox.put(frame(1, 1)));
        assert!(mailbox.put(frame(1, 2)));
        assert!(!mailbox.put(frame(2, 9)));
        let taken = mailbox.take();
        assert_eq!(
            taken.iter().map(|f| (f.sender, f.frame_id)).collect::<Vec<_>>(),
            [(1, 2), (2, 9)]
        );
        assert_eq!(mailbox.replaced(), 1);
        assert!(mailbox.take().is_empty());
    }
}
