//! The client's video engine, shared by the bots and the desktop app.
//!
//! Two named threads share the session's link ([`MediaLink`]):
//! - `video-capture`: camera or test pattern → JPEG full layer + thumbnail →
//!   fragments (sized to the link's largest datagram) → host;
//! - `video-receive`: hello/subscriptions to the host (every
//!   [`HELLO_EVERY`], on change, on a rejoin and on a frame from someone the
//!   roster does not name yet) ← fragments → [`Reassembler`] → zune-jpeg to RGBA → the newest
//!   frame per sender in a shared slot, plus per-sender stats.
//!
//! The session id and the link are read every time they are used, so the
//! engine follows a rejoin after a host restart.
//! The UI reads [`VideoEngine::latest`] / [`VideoEngine::frames`] and may
//! listen to [`VideoEngine::events`] to know when to redraw.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use smol::channel::{Receiver, Sender};

use super::media::MediaLink;
use super::session::Client;
use crate::media::jpeg::{self, Rgba};
use crate::media::video::{
    CameraChoice, CaptureConfig, FULL_QUALITY, Reassembler, ReassemblyConfig, ReassemblyStats,
    SenderStats, StreamStats, THUMB_QUALITY, camera, fragment_frame, scale,
};
use crate::proto::{
    FragmentHeader, HELLO_EVERY, Layer, MAX_HELLO_ENTRIES, MAX_VIDEO_DATAGRAM, MediaState, MsgType,
    SessionId, Subscription, VideoHello, VideoPacket, decode_video, encode_video_control,
    fragment_stride,
};
use crate::stats::Percentiles;

#[derive(Debug, Clone)]
pub struct VideoOptions {
    pub camera: CameraChoice,
    pub capture: CaptureConfig,
    pub quality: u8,
    pub thumb_quality: u8,
    /// What to receive from senders without a choice of their own.
    pub subscribe: Subscription,
    /// Drawn on the test pattern.
    pub name: String,
    pub reassembly: ReassemblyConfig,
}

impl VideoOptions {
    pub fn new(name: impl Into<String>, camera: CameraChoice, subscribe: Subscription) -> Self {
        VideoOptions {
            camera,
            capture: CaptureConfig::default(),
            quality: FULL_QUALITY,
            thumb_quality: THUMB_QUALITY,
            subscribe,
            name: name.into(),
            reassembly: ReassemblyConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("cannot start reading video from the link: {0}")]
    Socket(std::io::Error),
    #[error("cannot start the video thread: {0}")]
    Thread(std::io::Error),
}

/// One decoded picture from one sender.
#[derive(Debug, Clone)]
pub struct VideoFrame {
    pub sender: SessionId,
    pub name: String,
    pub layer: Layer,
    pub frame_id: u32,
    /// Sender clock, microseconds since the Unix epoch.
    pub capture_us: u64,
    /// Capture → decoded RGBA ready, milliseconds (meaningful on one clock).
    pub delay_ms: f64,
    pub jpeg_bytes: usize,
    pub image: Arc<Rgba>,
}

#[derive(Debug, Clone)]
pub enum VideoEvent {
    /// A new newest frame (also in the slot). Dropped rather than queued when
    /// nobody reads events.
    Frame(VideoFrame),
    /// The camera could not start or stopped, and why; video sending is off.
    CameraFailed(String),
}

/// What the sending side did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SendStats {
    pub frames: u64,
    pub bytes_full: u64,
    pub bytes_thumb: u64,
}

/// The newest frame per sender, shared with the UI.
pub type FrameSlot = Arc<Mutex<HashMap<SessionId, VideoFrame>>>;

#[derive(Default)]
struct Subs {
    default: Subscription,
    per_sender: BTreeMap<SessionId, Subscription>,
}

struct Shared {
    stop: AtomicBool,
    subs: Mutex<Subs>,
    subs_changed: AtomicBool,
    frames: FrameSlot,
    stats: Mutex<HashMap<SessionId, StreamStats>>,
    names: Mutex<HashMap<SessionId, String>>,
    reassembly: Mutex<ReassemblyStats>,
    sent_frames: AtomicU64,
    sent_full: AtomicU64,
    sent_thumb: AtomicU64,
    camera_on: AtomicBool,
}

pub struct VideoEngine {
    shared: Arc<Shared>,
    events: Receiver<VideoEvent>,
    threads: Vec<JoinHandle<()>>,
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl VideoEngine {
    /// Starts receiving, and sending if a camera is chosen. A camera that
    /// cannot start is reported (in the result's second part, and as
    /// [`VideoEvent::CameraFailed`]); receiving goes on regardless.
    ///
    /// `media` is the session's ([`MediaLink::of`] a client).
    pub fn start(
        media: MediaLink,
        opts: VideoOptions,
    ) -> Result<(VideoEngine, Option<String>), VideoError> {
        let arrivals = media.video();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            subs: Mutex::new(Subs { default: opts.subscribe, per_sender: BTreeMap::new() }),
            subs_changed: AtomicBool::new(false),
            frames: FrameSlot::default(),
            stats: Mutex::default(),
            names: Mutex::default(),
            reassembly: Mutex::default(),
            sent_frames: AtomicU64::new(0),
            sent_full: AtomicU64::new(0),
            sent_thumb: AtomicU64::new(0),
            camera_on: AtomicBool::new(false),
        });
        let route = media;
        let (tx, events) = smol::channel::bounded(8);
        let mut threads = Vec::new();
        {
            let (shared, route, tx) = (shared.clone(), route.clone(), tx.clone());
            let config = opts.reassembly;
            let t = std::thread::Builder::new()
                .name("video-receive".into())
                .spawn(move || receive_loop(&shared, arrivals, &route, config, &tx))
                .map_err(VideoError::Thread)?;
            threads.push(t);
        }
        let mut camera_error = None;
        if opts.camera != CameraChoice::None {
            let (opened_tx, opened_rx) = std::sync::mpsc::channel();
            let (shared2, route, tx2) = (shared.clone(), route, tx.clone());
            let opts2 = opts.clone();
            let t = std::thread::Builder::new()
                .name("video-capture".into())
                .spawn(move || capture_loop(&shared2, &route, &opts2, opened_tx, &tx2))
                .map_err(VideoError::Thread)?;
            threads.push(t);
            // Devices can take a moment to open; the pattern is instant.
            match opened_rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(())) => shared.camera_on.store(true, Ordering::Relaxed),
                Ok(Err(e)) => camera_error = Some(e),
                Err(_) => camera_error = Some(format!("{} did not start within 10 s", opts.camera)),
            }
            if let Some(e) = &camera_error {
                let _ = tx.try_send(VideoEvent::CameraFailed(e.clone()));
            }
        }
        Ok((VideoEngine { shared, events, threads }, camera_error))
    }

    /// Whether frames are being sent.
    pub fn camera_on(&self) -> bool {
        self.shared.camera_on.load(Ordering::Relaxed)
    }

    pub fn events(&self) -> Receiver<VideoEvent> {
        self.events.clone()
    }

    /// The newest frame per sender (session id).
    pub fn frames(&self) -> FrameSlot {
        self.shared.frames.clone()
    }

    pub fn latest(&self, sender: SessionId) -> Option<VideoFrame> {
        self.shared.frames.lock().unwrap_or_else(|e| e.into_inner()).get(&sender).cloned()
    }

    /// Chooses what to receive from one sender (by session id); sent to the
    /// host at once and then repeated.
    pub fn subscribe(&self, sender: SessionId, sub: Subscription) {
        let mut s = self.shared.subs.lock().unwrap_or_else(|e| e.into_inner());
        if s.per_sender.len() < MAX_HELLO_ENTRIES || s.per_sender.contains_key(&sender) {
            s.per_sender.insert(sender, sub);
        }
        self.shared.subs_changed.store(true, Ordering::Relaxed);
    }

    /// Chooses what to receive from senders without a choice of their own.
    pub fn subscribe_all(&self, sub: Subscription) {
        let mut s = self.shared.subs.lock().unwrap_or_else(|e| e.into_inner());
        s.default = sub;
        s.per_sender.clear();
        self.shared.subs_changed.store(true, Ordering::Relaxed);
    }

    /// Per sender: session id, name, stats over the last 2 s.
    pub fn stats(&self) -> Vec<(SessionId, String, SenderStats)> {
        let now = Instant::now();
        let names = self.shared.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut stats = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = stats
            .iter_mut()
            .map(|(&id, s)| {
                let name = names.get(&id).cloned().unwrap_or_else(|| format!("#{id}"));
                (id, name, s.snapshot(now))
            })
            .collect();
        out.sort_by_key(|(id, _, _)| *id);
        out
    }

    pub fn reassembly_stats(&self) -> ReassemblyStats {
        *self.shared.reassembly.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn send_stats(&self) -> SendStats {
        SendStats {
            frames: self.shared.sent_frames.load(Ordering::Relaxed),
            bytes_full: self.shared.sent_full.load(Ordering::Relaxed),
            bytes_thumb: self.shared.sent_thumb.load(Ordering::Relaxed),
        }
    }

    /// Every capture → decoded delay per sender name, for reports.
    fn delays_by_name(&self) -> BTreeMap<String, (u64, Vec<f64>)> {
        let names = self.shared.names.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let stats = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, (u64, Vec<f64>)> = BTreeMap::new();
        for (id, s) in stats.iter() {
            let name = names.get(id).cloned().unwrap_or_else(|| format!("#{id}"));
            let e = out.entry(name).or_default();
            e.0 += s.delays_ms().len() as u64;
            e.1.extend_from_slice(s.delays_ms());
        }
        out
    }

    /// Stops both threads and waits for them.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.camera_on.store(false, Ordering::Relaxed);
    }
}

impl Drop for VideoEngine {
    fn drop(&mut self) {
        self.halt();
    }
}

fn capture_loop(
    shared: &Shared,
    route: &MediaLink,
    opts: &VideoOptions,
    opened: std::sync::mpsc::Sender<Result<(), String>>,
    events: &Sender<VideoEvent>,
) {
    let mut source = match camera::open(&opts.camera, &opts.name, opts.capture) {
        Ok(s) => {
            let _ = opened.send(Ok(()));
            s
        }
        Err(e) => {
            let _ = opened.send(Err(e.to_string()));
            return;
        }
    };
    let (w, h) = source.size();
    let period = Duration::from_secs_f64(1.0 / f64::from(opts.capture.fps));
    let (mut rgb, mut thumb_rgb) = (Vec::new(), Vec::new());
    let (mut full_jpeg, mut thumb_jpeg) = (Vec::new(), Vec::new());
    let mut packet = Vec::with_capacity(MAX_VIDEO_DATAGRAM);
    let mut seq = 0u16;
    let mut frame_id = 0u32;
    let mut next = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if !source.self_paced() {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            // After a stall, carry on at the normal rate rather than catch up.
            next = (next + period).max(Instant::now());
        }
        if let Err(e) = source.next_frame(frame_id, &mut rgb) {
            shared.camera_on.store(false, Ordering::Relaxed);
            let _ = events.try_send(VideoEvent::CameraFailed(e.to_string()));
            return;
        }
        let capture_us = unix_us();
        let (tw, th) = scale::thumbnail(&rgb, w, h, &mut thumb_rgb);
        let encoded = jpeg::encode_rgb(&rgb, w, h, opts.quality, &mut full_jpeg).and_then(|()| {
            jpeg::encode_rgb(&thumb_rgb, tw, th, opts.thumb_quality, &mut thumb_jpeg)
        });
        if let Err(e) = encoded {
            tracing::warn!("video frame not encoded: {e}");
            continue;
        }
        let session = route.session();
        // Fragments as large as the link takes now (within the protocol's
        // floor and ceiling).
        let stride = fragment_stride(route.max_datagram_size());
        publish_preview(
            shared,
            route,
            frame_id,
            capture_us,
            (&thumb_rgb, tw, th),
            thumb_jpeg.len(),
        );
        let header = FragmentHeader {
            session,
            frame_id,
            layer: Layer::Full,
            index: 0,
            count: 0,
            frame_len: 0,
            capture_us,
            stride,
        };
        let link = route.link();
        for (layer, data) in [(Layer::Full, &full_jpeg), (Layer::Thumb, &thumb_jpeg)] {
            let h = FragmentHeader { layer, ..header };
            fragment_frame(h, data, &mut seq, &mut packet, |d| {
                // A closed link (rejoining) loses this fragment, as the
                // network might; the frame is dropped whole at the receiver.
                let _ = link.send_datagram(bytes::Bytes::copy_from_slice(d));
            });
        }
        shared.sent_frames.fetch_add(1, Ordering::Relaxed);
        shared.sent_full.fetch_add(full_jpeg.len() as u64, Ordering::Relaxed);
        shared.sent_thumb.fetch_add(thumb_jpeg.len() as u64, Ordering::Relaxed);
        frame_id = frame_id.wrapping_add(1);
    }
}

/// Puts our own picture in the frame slot under our own session, for the
/// "(You)" tile: the thumbnail others see in a grid, widened to RGBA (no JPEG
/// round trip). The host never relays our frames back, so nothing else
/// writes this entry.
fn publish_preview(
    shared: &Shared,
    route: &MediaLink,
    frame_id: u32,
    capture_us: u64,
    (rgb, width, height): (&[u8], usize, usize),
    jpeg_bytes: usize,
) {
    let (sender, name) = {
        let w = route.welcome();
        (w.session, w.name)
    };
    let pixels = rgb.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    let frame = VideoFrame {
        sender,
        name,
        layer: Layer::Thumb,
        frame_id,
        capture_us,
        delay_ms: 0.0,
        jpeg_bytes,
        image: Arc::new(Rgba { width, height, pixels }),
    };
    shared.frames.lock().unwrap_or_else(|e| e.into_inner()).insert(sender, frame);
}

fn send_hello(shared: &Shared, route: &MediaLink, roster: u32, buf: &mut Vec<u8>) {
    let session = route.session();
    let hello = {
        let s = shared.subs.lock().unwrap_or_else(|e| e.into_inner());
        VideoHello {
            session,
            default: s.default,
            subs: s.per_sender.iter().map(|(k, v)| (*k, *v)).take(MAX_HELLO_ENTRIES).collect(),
            roster,
        }
    };
    encode_video_control(MsgType::VideoHello, &hello, buf);
    let _ = route.send(bytes::Bytes::copy_from_slice(buf));
}

fn receive_loop(
    shared: &Shared,
    arrivals: std::sync::mpsc::Receiver<bytes::Bytes>,
    route: &MediaLink,
    config: ReassemblyConfig,
    events: &Sender<VideoEvent>,
) {
    /// Hellos while no roster has answered (joining, or after a rejoin).
    const HELLO_UNANSWERED: Duration = Duration::from_millis(100);
    /// At most this often for a frame from a sender the roster lacks.
    const HELLO_FOR_NAME: Duration = Duration::from_millis(500);
    let mut reassembler = Reassembler::new(config);
    let mut hello_buf = Vec::new();
    let mut next_hello = Instant::now();
    let mut last_hello = Instant::now();
    // Hellos go out fast until the first roster answers, then every
    // HELLO_EVERY; the host answers only when our roster is out of date.
    let mut answered = false;
    let mut roster_version = 0u32;
    let mut hello_session = route.session();
    let mut want_names = false;
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        // A rejoin (new session): the host knows nothing of us yet.
        if route.session() != hello_session {
            hello_session = route.session();
            (answered, roster_version, next_hello) = (false, 0, now);
        }
        // A wish for names waits out HELLO_FOR_NAME; any hello answers it.
        let for_names = want_names && now >= last_hello + HELLO_FOR_NAME;
        if now >= next_hello || for_names || shared.subs_changed.swap(false, Ordering::Relaxed) {
            send_hello(shared, route, roster_version, &mut hello_buf);
            (last_hello, want_names) = (now, false);
            next_hello = now + if answered { HELLO_EVERY } else { HELLO_UNANSWERED };
        }
        let got = arrivals.recv_timeout(Duration::from_millis(20));
        let now = Instant::now();
        reassembler.expire(now);
        // Only the host speaks on our link.
        let buf = match got {
            Ok(buf) => buf,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match decode_video(&buf) {
            Ok(VideoPacket::Fragment(f)) => {
                let Some(frame) = reassembler.push(now, &f) else { continue };
                let sender = frame.sender;
                let bytes = frame.data.len();
                let image = match jpeg::decode_rgba(&frame.data) {
                    Ok(img) => Arc::new(img),
                    Err(e) => {
                        tracing::debug!("video frame from {sender} not decoded: {e}");
                        continue;
                    }
                };
                let delay_ms = unix_us().saturating_sub(frame.capture_us) as f64 / 1000.0;
                let name =
                    shared.names.lock().unwrap_or_else(|e| e.into_inner()).get(&sender).cloned();
                // Someone who joined since our roster: ask for the new one.
                want_names |= name.is_none();
                let name = name.unwrap_or_default();
                let vf = VideoFrame {
                    sender,
                    name,
                    layer: frame.layer,
                    frame_id: frame.frame_id,
                    capture_us: frame.capture_us,
                    delay_ms,
                    jpeg_bytes: bytes,
                    image,
                };
                shared
                    .stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(sender)
                    .or_insert_with(|| StreamStats::new(Duration::from_secs(2)))
                    .on_frame(Instant::now(), frame.frame_id, bytes, delay_ms);
                shared.frames.lock().unwrap_or_else(|e| e.into_inner()).insert(sender, vf.clone());
                let _ = events.try_send(VideoEvent::Frame(vf));
                *shared.reassembly.lock().unwrap_or_else(|e| e.into_inner()) = reassembler.stats();
            }
            Ok(VideoPacket::Roster(roster)) => {
                if !answered {
                    answered = true;
                    next_hello = now + HELLO_EVERY;
                }
                roster_version = roster.version;
                let mut names = shared.names.lock().unwrap_or_else(|e| e.into_inner());
                for p in &roster.members {
                    names.insert(p.session, p.name.clone());
                }
                drop(names);
                // Tiles of people who left (or of our previous session) go.
                let present = |s: &SessionId| roster.members.iter().any(|p| p.session == *s);
                let mut frames = shared.frames.lock().unwrap_or_else(|e| e.into_inner());
                let gone: Vec<SessionId> = frames.keys().copied().filter(|s| !present(s)).collect();
                for s in gone {
                    frames.remove(&s);
                    reassembler.forget(s);
                }
            }
            Ok(VideoPacket::Hello(_)) | Err(_) => {}
        }
    }
}

/// `--camera` and `--subscribe` of a bot.
#[derive(Debug, Clone)]
pub struct BotVideoOptions {
    pub camera: CameraChoice,
    pub subscribe: Subscription,
    pub capture: CaptureConfig,
}

impl Default for BotVideoOptions {
    fn default() -> Self {
        BotVideoOptions {
            camera: CameraChoice::None,
            subscribe: Subscription::Full,
            capture: CaptureConfig::default(),
        }
    }
}

/// What a bot reports per sender it received video from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoReport {
    pub frames: u64,
    /// Average over the bot's run from the first frame received.
    pub fps: f64,
    pub kbps: f64,
    /// Capture → decoded RGBA ready.
    pub latency_ms: Option<Percentiles>,
}

/// A bot's video: starts the engine, reports at the end.
#[derive(Default)]
pub struct BotVideo {
    engine: Option<VideoEngine>,
}

impl BotVideo {
    /// Starts video for a bot (nothing when the camera is off and it
    /// subscribes to nothing). Camera problems come back as error text; the
    /// rest of the bot goes on. Announces camera on/off to the room.
    pub fn start(
        client: &Client,
        name: &str,
        opts: &BotVideoOptions,
        media: &mut MediaState,
    ) -> (BotVideo, Vec<String>) {
        let mut errors = Vec::new();
        let idle = BotVideo { engine: None };
        if opts.camera == CameraChoice::None && opts.subscribe == Subscription::None {
            return (idle, errors);
        }
        let mut vo = VideoOptions::new(name, opts.camera.clone(), opts.subscribe);
        vo.capture = opts.capture;
        let link = match MediaLink::of(client) {
            Ok(link) => link,
            Err(e) => {
                errors.push(format!("video: {e}"));
                return (idle, errors);
            }
        };
        let engine = match VideoEngine::start(link, vo) {
            Ok((engine, camera_error)) => {
                errors.extend(camera_error.map(|e| format!("camera: {e}")));
                engine
            }
            Err(e) => {
                errors.push(e.to_string());
                return (idle, errors);
            }
        };
        media.camera = engine.camera_on();
        if media.camera {
            let _ = client.set_media(*media);
        }
        (BotVideo { engine: Some(engine) }, errors)
    }

    pub fn camera_on(&self) -> bool {
        self.engine.as_ref().is_some_and(VideoEngine::camera_on)
    }

    pub fn engine(&self) -> Option<&VideoEngine> {
        self.engine.as_ref()
    }

    /// Stops the engine and summarises what arrived, per sender name.
    pub fn finish(mut self) -> BTreeMap<String, VideoReport> {
        let Some(engine) = self.engine.take() else { return BTreeMap::new() };
        let delays = engine.delays_by_name();
        let totals: HashMap<String, (u64, u64)> = {
            let s = engine.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            let names = engine.shared.names.lock().unwrap_or_else(|e| e.into_inner());
            let mut t: HashMap<String, (u64, u64)> = HashMap::new();
            for (id, st) in s.iter() {
                let name = names.get(id).cloned().unwrap_or_else(|| format!("#{id}"));
                let e = t.entry(name).or_default();
                e.0 += st.frames();
                e.1 += st.bytes();
            }
            t
        };
        let spans = {
            let s = engine.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            let names = engine.shared.names.lock().unwrap_or_else(|e| e.into_inner());
            let mut t: HashMap<String, f64> = HashMap::new();
            for (id, st) in s.iter() {
                let name = names.get(id).cloned().unwrap_or_else(|| format!("#{id}"));
                *t.entry(name).or_default() += st.span().as_secs_f64();
            }
            t
        };
        engine.stop();
        delays
            .into_iter()
            .map(|(name, (_, d))| {
                let (frames, bytes) = totals.get(&name).copied().unwrap_or_default();
                let secs = spans.get(&name).copied().unwrap_or(0.0);
                // n frames span n-1 intervals.
                let fps = if secs > 0.0 { (frames.saturating_sub(1)) as f64 / secs } else { 0.0 };
                let kbps = if secs > 0.0 { bytes as f64 * 8.0 / 1000.0 / secs } else { 0.0 };
                let report = VideoReport { frames, fps, kbps, latency_ms: Percentiles::of(&d) };
                (name, report)
            })
            .collect()
    }
}
