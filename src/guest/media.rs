//! The gateway's media adapter: the one place that moves a guest's media
//! between the host and the gateway. It speaks the native media protocol
//! (audio, video hello/roster, fragments) as datagrams on the gateway
//! session's own encrypted link ([`MediaLink`]), like any native client:
//! the host attributes them to the guest's session by that link.
//!
//! - Up: a guest's JPEG frames (both layers, made by the page) are cut into
//!   fragments ([`fragment_frame`]) sized to the link.
//! - Down: fragments are reassembled ([`Reassembler`]) and the newest frame
//!   per sender waits in a [`FrameMailbox`]: a slow guest loses frames, it
//!   never queues them.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use crate::client::media::MediaLink;
use crate::media::video::{Reassembler, ReassemblyConfig, fragment_frame};
use crate::proto::{
    FragmentHeader, Layer, MAX_VIDEO_DATAGRAM, MsgType, SessionId, Subscription, VideoHello,
    VideoPacket, decode_video, encode_video_control, fragment_stride,
};

/// A receive thread and its stop flag; dropping it stops and joins it.
struct Receiving {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Receiving {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Waits for the next datagram until `deadline`; `Err` once the reader is gone.
fn next_until(arrivals: &Receiver<Bytes>, deadline: Instant) -> Result<Option<Bytes>, ()> {
    let wait = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
    match arrivals.recv_timeout(wait) {
        Ok(d) => Ok(Some(d)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(()),
    }
}

/// How often the receiver's hello (subscriptions) is repeated: more often
/// than a native client's ([`crate::proto::HELLO_EVERY`]), as the guest
/// does not speed up while unanswered or after a rejoin. The host answers
/// only when the guest's roster is out of date.
pub const HELLO_EVERY: Duration = Duration::from_secs(1);

/// One whole frame for the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestFrame {
    pub sender: SessionId,
    pub name: String,
    pub layer: Layer,
    pub frame_id: u32,
    pub jpeg: Vec<u8>,
}

/// The newest frame per sender, waiting for the guest's WebSocket writer;
/// a newer frame replaces an unsent older one.
#[derive(Default)]
pub struct FrameMailbox {
    frames: Mutex<BTreeMap<SessionId, GuestFrame>>,
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
    pub full: Vec<SessionId>,
}

/// The video half of a guest's media.
pub struct VideoLink {
    link: MediaLink,
    seq: Mutex<u16>,
    wants: Arc<Mutex<Wants>>,
    /// The [`crate::proto::VideoRoster::version`] the guest holds.
    roster: Arc<AtomicU32>,
    _rx: Receiving,
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl VideoLink {
    /// Starts receiving for the session of `link` (it follows a rejoin);
    /// whole frames go to `mailbox`, and `wake` gets a token after each.
    pub fn start(
        link: MediaLink,
        mailbox: Arc<FrameMailbox>,
        wake: smol::channel::Sender<()>,
    ) -> std::io::Result<VideoLink> {
        let wants = Arc::new(Mutex::new(Wants::default()));
        let roster = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = link.video();
        let thread = {
            let (link, wants, roster, stop) =
                (link.clone(), wants.clone(), roster.clone(), stop.clone());
            std::thread::Builder::new().name("sapora-guest-video".into()).spawn(move || {
                receive(arrivals, &link, (&wants, &roster), &mailbox, &wake, &stop)
            })?
        };
        Ok(VideoLink {
            link,
            seq: Mutex::new(0),
            wants,
            roster,
            _rx: Receiving { stop, thread: Some(thread) },
        })
    }

    /// Sends one of the guest's frames (`frame_id` from the page, the same
    /// for both layers of one capture).
    pub fn send_frame(&self, layer: Layer, frame_id: u32, jpeg: &[u8]) {
        let link = self.link.link();
        let header = FragmentHeader {
            session: self.link.session(),
            frame_id,
            layer,
            index: 0,
            count: 0,
            frame_len: 0,
            capture_us: unix_us(),
            stride: fragment_stride(link.max_datagram_size()),
        };
        let mut seq = self.seq.lock().unwrap_or_else(|e| e.into_inner());
        let mut buf = Vec::with_capacity(MAX_VIDEO_DATAGRAM);
        fragment_frame(header, jpeg, &mut seq, &mut buf, |d| {
            // A closed link (rejoining) loses the fragment, as the network might.
            let _ = link.send_datagram(Bytes::copy_from_slice(d));
        });
    }

    /// Changes what the guest receives (sent with the next hello, at once).
    pub fn set_wants(&self, wants: Wants) {
        *self.wants.lock().unwrap_or_else(|e| e.into_inner()) = wants;
        send_hello(&self.link, &self.wants, &self.roster);
    }
}

fn send_hello(link: &MediaLink, wants: &Mutex<Wants>, roster: &AtomicU32) {
    let wants = wants.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let hello = VideoHello {
        session: link.session(),
        default: wants.default,
        subs: wants.full.iter().map(|s| (*s, Subscription::Full)).collect(),
        roster: roster.load(Ordering::Relaxed),
    };
    let mut buf = Vec::new();
    encode_video_control(MsgType::VideoHello, &hello, &mut buf);
    let _ = link.send(Bytes::from(buf));
}

fn receive(
    arrivals: Receiver<Bytes>,
    link: &MediaLink,
    (wants, roster): (&Mutex<Wants>, &AtomicU32),
    mailbox: &FrameMailbox,
    wake: &smol::channel::Sender<()>,
    stop: &AtomicBool,
) {
    let mut reassembler = Reassembler::new(ReassemblyConfig::default());
    let mut names: HashMap<SessionId, String> = HashMap::new();
    let mut next_hello = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_hello {
            send_hello(link, wants, roster);
            next_hello = Instant::now() + HELLO_EVERY;
        }
        let buf = match next_until(&arrivals, next_hello) {
            Ok(Some(buf)) => buf,
            Ok(None) => continue,
            Err(()) => return,
        };
        match decode_video(&buf) {
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
            Ok(VideoPacket::Roster(list)) => {
                roster.store(list.version, Ordering::Relaxed);
                let gone: Vec<SessionId> = names
                    .keys()
                    .copied()
                    .filter(|s| !list.members.iter().any(|p| p.session == *s))
                    .collect();
                for s in gone {
                    reassembler.forget(s);
                }
                names = list.members.into_iter().map(|p| (p.session, p.name)).collect();
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
    link: MediaLink,
    up: Arc<Mutex<Uplink>>,
    _rx: Receiving,
}

fn send_up(link: &MediaLink, up: &mut Uplink, frame: Option<&[i16]>) {
    let session = link.session();
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
    let _ = link.send(Bytes::copy_from_slice(&up.datagram));
}

impl AudioLink {
    /// Starts receiving the mix for the session of `link`: each decoded
    /// frame goes to `mix` (16-bit PCM, 48 kHz mono); when the guest's
    /// writer falls behind, frames are dropped (a bounded channel), never
    /// queued without limit.
    pub fn start(
        link: MediaLink,
        mix: smol::channel::Sender<Vec<i16>>,
    ) -> std::io::Result<AudioLink> {
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
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = link.audio();
        let thread = {
            let (link, up, stop) = (link.clone(), up.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sapora-guest-audio".into())
                .spawn(move || receive_mix(arrivals, &link, &up, &mix, &stop))?
        };
        Ok(AudioLink { link, up, _rx: Receiving { stop, thread: Some(thread) } })
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
            send_up(&self.link, &mut up, Some(&frame));
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
        let session = self.link.session();
        up.seq = up.seq.wrapping_add(1);
        let mut datagram = std::mem::take(&mut up.datagram);
        datagram.clear();
        crate::proto::AudioUp {
            session,
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
        let _ = self.link.send(Bytes::copy_from_slice(&datagram));
        up.datagram = datagram;
    }
}

fn receive_mix(
    arrivals: Receiver<Bytes>,
    link: &MediaLink,
    up: &Mutex<Uplink>,
    mix: &smol::channel::Sender<Vec<i16>>,
    stop: &AtomicBool,
) {
    let mut decoder = crate::media::audio::Decoder::new();
    let mut out = vec![0f32; 4 * UP_FRAME];
    let mut next_keepalive = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() >= next_keepalive {
            let mut up = up.lock().unwrap_or_else(|e| e.into_inner());
            send_up(link, &mut up, None);
            next_keepalive = Instant::now() + KEEPALIVE_EVERY;
        }
        let buf = match next_until(&arrivals, next_keepalive) {
            Ok(Some(buf)) => buf,
            Ok(None) => continue,
            Err(()) => return,
        };
        if crate::proto::is_audio_feedback(&buf) {
            continue;
        }
        let Ok(down) = crate::proto::AudioDown::decode(&buf) else { continue };
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
        let sender = SessionId(sender);
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
            [(SessionId(1), 2), (SessionId(2), 9)]
        );
        assert_eq!(mailbox.replaced(), 1);
        assert!(mailbox.take().is_empty());
    }
}
