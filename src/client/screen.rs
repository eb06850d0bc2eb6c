//! Screen sharing for a participant, used by the bots and the desktop app.
//!
//! - [`Presenter`]: a named thread captures the chosen screen at the chosen
//!   rate, diffs it against the previous frame, JPEG-encodes the changed
//!   64×64 tiles and sends them to the host.
//! - [`Viewer`]: a named thread receives tile updates, paints them on an RGBA
//!   canvas and publishes each complete picture in a latest-image slot
//!   ([`ScreenSlot`]); start/stop arrive as [`ViewerEvent`]s on a smol channel,
//!   and a bounded(1) "updated" channel wakes a UI without ever queueing.
//!
//! Both run on their own threads (capture, encoding and decoding are CPU
//! work that must not stall an async executor) and drive their stream, any
//! `(LinkSend, LinkRecv)` a [`StreamOpener`] gives, with `smol::block_on`.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use smol::future::FutureExt;

use super::session::Client;
use super::streams::{StreamOpener, open_stream, refusal};
use crate::media::screen::{
    Canvas, CaptureError, DEFAULT_FPS, DEFAULT_QUALITY, Downscaler, MAX_FPS, ScreenSource,
    TileEncoder, TileError, encode_png_rgba, share_size,
};
use crate::net::unix_ms;
use crate::proto::{
    MsgType, SCREEN_BATCH_BYTES, SCREEN_MAX_PAYLOAD, SCREEN_MORE, ScreenAck, ScreenClientMsg,
    ScreenHostMsg, ScreenStart, ScreenStopReason, StreamRole, StreamService, TileFrame,
    TileFrameHead, Welcome, encode_tile_frame,
};
use crate::stats::Percentiles;
use crate::transport::framed::{FrameError, FrameReader, FrameWriter};
use crate::transport::link::{LinkRecv, LinkSend};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Latency samples kept for the report (about 3 hours at 10 fps).
const MAX_SAMPLES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Tiles(#[from] TileError),
    #[error("cannot reach the host's screen service at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("{presenter} is presenting; you can share your screen once they stop")]
    Busy { presenter: String },
    #[error("the host refused screen sharing: {0}")]
    Refused(String),
    #[error("the screen link to the host failed: {0}")]
    Link(String),
}

/// How to reach the host's screen service (a [`StreamOpener`]) and who we
/// are, read from the session's latest Welcome (it changes when the
/// session rejoins).
#[derive(Clone)]
pub struct ScreenTarget {
    pub opener: StreamOpener,
    pub welcome: Arc<Mutex<Welcome>>,
}

impl ScreenTarget {
    /// `host` is the address the client joined (the Welcome has no address).
    pub fn new(client: &Client, host: IpAddr) -> ScreenTarget {
        ScreenTarget::welcome(host, client.current_slot())
    }

    /// The screen port named in the latest Welcome in `welcome`, at `host`.
    pub fn welcome(host: IpAddr, welcome: Arc<Mutex<Welcome>>) -> ScreenTarget {
        let opener = StreamOpener::welcome(host, welcome.clone(), StreamService::Screen);
        ScreenTarget { opener, welcome }
    }

    fn auth(&self) -> (u32, u64) {
        let w = self.welcome.lock().unwrap_or_else(|e| e.into_inner());
        (w.session, w.token)
    }
}

type Writer = FrameWriter<LinkSend>;
type Reader = FrameReader<LinkRecv>;

/// Opens a presenter's or viewer's stream (blocking: call from a thread).
fn connect(target: &ScreenTarget, role: StreamRole) -> Result<(Writer, Reader, u32), ScreenError> {
    let (session, token) = target.auth();
    let addr: SocketAddr = target.opener.addr();
    let (w, r) = smol::block_on(open_stream(&target.opener, session, token, role))
        .map_err(|source| ScreenError::Connect { addr, source })?;
    Ok((w, r, session))
}

/// Writes one frame (blocking, at most [`WRITE_TIMEOUT`]).
fn write_msg(w: &mut Writer, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    smol::block_on(w.send(kind, payload).or(async {
        smol::Timer::after(WRITE_TIMEOUT).await;
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the host stopped reading"))
    }))
}

/// Why [`read_msg`] returned no frame, worded for people.
enum ReadFail {
    /// The host refused the stream (`StreamRefused`).
    Refused(String),
    /// The stream broke, ended, timed out, or we stopped.
    Link(String),
}

impl From<ReadFail> for String {
    fn from(f: ReadFail) -> String {
        match f {
            ReadFail::Refused(s) | ReadFail::Link(s) => s,
        }
    }
}

/// Reads one frame (blocking; the length is checked before the buffer
/// grows), unless `stop` fires or `timeout` passes first.
fn read_msg(
    r: &mut Reader,
    stop: &smol::channel::Receiver<()>,
    timeout: Option<Duration>,
) -> Result<(u8, Bytes), ReadFail> {
    let read = async {
        match r.next(|_| SCREEN_MAX_PAYLOAD).await {
            Ok(f) => Ok((f.header.kind, f.payload)),
            Err(FrameError::Closed) => Err("the host closed the screen stream".to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let stopped = async {
        let _ = stop.recv().await;
        Err("stopped".to_string())
    };
    let timed_out = async {
        match timeout {
            Some(t) => smol::Timer::after(t).await,
            None => smol::Timer::never().await,
        };
        Err("the host did not answer in time".to_string())
    };
    let (kind, payload) = smol::block_on(read.or(stopped).or(timed_out)).map_err(ReadFail::Link)?;
    match refusal(kind, &payload) {
        Some(reason) => Err(ReadFail::Refused(reason)),
        None => Ok((kind, payload)),
    }
}

// ------------------------------------------------------------ presenter

#[derive(Debug, Clone)]
pub struct PresentOptions {
    pub source: ScreenSource,
    /// Captures per second, 1 to 30.
    pub fps: u32,
    pub quality: u8,
}

impl PresentOptions {
    pub fn new(source: ScreenSource) -> PresentOptions {
        PresentOptions { source, fps: DEFAULT_FPS, quality: DEFAULT_QUALITY }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PresenterStats {
    /// Frames captured.
    pub frames: u64,
    /// Frames that changed and were sent.
    pub updates: u64,
    pub tiles: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Capture + diff + encode time per frame, milliseconds.
    pub process_ms: Vec<f64>,
    /// Times the screen changed size while presenting (each one re-announced
    /// to the host, which tells the viewers the new geometry).
    pub resizes: u64,
    /// The size being shared now (after any downscaling).
    pub shared_size: (usize, usize),
}

/// What happens to a presentation without being asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PresenterEvent {
    Ended {
        reason: String,
    },
    /// The screen changed resolution; it is now shared at this size
    /// (the screen's own, or scaled down to fit `SHARE_MAX`).
    Resized {
        width: usize,
        height: usize,
    },
}

/// A running presentation. Dropping it stops sharing.
pub struct Presenter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<Mutex<PresenterStats>>,
    events: smol::channel::Receiver<PresenterEvent>,
    /// The size shared when the presentation started: the screen's own, or
    /// scaled down (one factor both ways) to fit
    /// [`SHARE_MAX`](crate::media::screen::SHARE_MAX), e.g. 5120×1440 → 2560×720.
    pub width: usize,
    pub height: usize,
}

impl Presenter {
    /// Opens the source, asks the host for the floor and returns once it is
    /// granted; [`ScreenError::Busy`] names who presents instead. Blocks for
    /// up to a few seconds: from async code use [`Presenter::start_async`].
    /// Afterwards set `MediaState.screen` with `Client::set_media` so the
    /// member list shows who presents ([`BotScreen`] does both).
    pub fn start(target: ScreenTarget, opts: PresentOptions) -> Result<Presenter, ScreenError> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<Mutex<PresenterStats>> = Arc::default();
        let (ev_tx, events) = smol::channel::unbounded();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let (stop, stats) = (stop.clone(), stats.clone());
            std::thread::Builder::new()
                .name("screen-presenter".into())
                .spawn(move || present(target, opts, stop, stats, ev_tx, ready_tx))
                .map_err(|e| ScreenError::Link(format!("cannot start the capture thread: {e}")))?
        };
        match ready_rx.recv() {
            Ok(Ok((width, height))) => {
                Ok(Presenter { stop, thread: Some(thread), stats, events, width, height })
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(ScreenError::Link("the capture thread ended unexpectedly".into())),
        }
    }

    pub async fn start_async(
        target: ScreenTarget,
        opts: PresentOptions,
    ) -> Result<Presenter, ScreenError> {
        smol::unblock(move || Presenter::start(target, opts)).await
    }

    pub fn stats(&self) -> PresenterStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Fires if the presentation ends by itself (host gone, capture failed).
    pub fn events(&self) -> smol::channel::Receiver<PresenterEvent> {
        self.events.clone()
    }

    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Tells the host to stop showing our screen, and waits for the thread.
    pub fn stop(mut self) -> PresenterStats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Presenter {
    fn drop(&mut self) {
        self.halt();
    }
}

type Ready = std::sync::mpsc::Sender<Result<(usize, usize), ScreenError>>;

fn present(
    target: ScreenTarget,
    opts: PresentOptions,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<PresenterStats>>,
    events: smol::channel::Sender<PresenterEvent>,
    ready: Ready,
) {
    let fail = |e: ScreenError| {
        let _ = ready.send(Err(e));
    };
    let mut capture = match opts.source.open() {
        Ok(c) => c,
        Err(e) => return fail(e.into()),
    };
    let mut source_size = capture.size();
    let (mut width, mut height) = share_size(source_size.0, source_size.1);
    let mut scaler = Downscaler::default();
    let mut encoder = match TileEncoder::new(width, height, opts.quality) {
        Ok(e) => e,
        Err(e) => return fail(e.into()),
    };
    let (mut stream, mut reader, session) = match connect(&target, StreamRole::ScreenPresent) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let start = ScreenClientMsg::Start(ScreenStart { width: width as u16, height: height as u16 });
    if let Err(e) = write_msg(&mut stream, start.msg_type() as u8, &start.payload()) {
        return fail(ScreenError::Link(e.to_string()));
    }
    // Wait for the grant.
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let (kind, buf) = match read_msg(&mut reader, &stop_rx, Some(left)) {
            Ok(k) => k,
            Err(ReadFail::Link(e)) => return fail(ScreenError::Link(e)),
            Err(ReadFail::Refused(e)) => return fail(ScreenError::Refused(e)),
        };
        match ScreenHostMsg::decode(kind, &buf) {
            Ok(ScreenHostMsg::Started(s)) if s.session == session => break,
            Ok(ScreenHostMsg::Busy(b)) => {
                return fail(ScreenError::Busy { presenter: b.presenter });
            }
            Ok(ScreenHostMsg::Refused(r)) => return fail(ScreenError::Refused(r.reason)),
            _ => continue,
        }
    }
    let _ = ready.send(Ok((width, height)));
    stats.lock().unwrap_or_else(|e| e.into_inner()).shared_size = (width, height);

    // The host may end the presentation (or vanish): a small reader notices.
    let ended: Arc<Mutex<Option<String>>> = Arc::default();
    let reader = {
        let ended = ended.clone();
        std::thread::Builder::new()
            .name("screen-presenter-rx".into())
            .spawn(move || {
                let reason = loop {
                    match read_msg(&mut reader, &stop_rx, None) {
                        Ok((kind, buf)) => match ScreenHostMsg::decode(kind, &buf) {
                            Ok(ScreenHostMsg::Stopped(st)) => {
                                break format!("the host ended the presentation ({:?})", st.reason);
                            }
                            Ok(ScreenHostMsg::Refused(r)) => break r.reason,
                            _ => continue,
                        },
                        Err(e) => break String::from(e),
                    }
                };
                *ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
            })
            .ok()
    };

    let period = Duration::from_secs(1) / opts.fps.clamp(1, MAX_FPS);
    let mut next = Instant::now();
    let mut frame_no = 0u32;
    let mut payload = Vec::new();
    let end_reason = loop {
        if stop.load(Ordering::Relaxed) {
            let m = ScreenClientMsg::Stop;
            let _ = write_msg(&mut stream, m.msg_type() as u8, &m.payload());
            break None;
        }
        if let Some(r) = ended.lock().unwrap_or_else(|e| e.into_inner()).take() {
            break Some(r);
        }
        let t0 = Instant::now();
        let capture_ms = unix_ms();
        let frame = match capture.frame() {
            Ok(f) => f,
            Err(e) => break Some(e.to_string()),
        };
        if (frame.width, frame.height) != source_size {
            // The resolution changed: a new grid, announced to the host
            // (which tells the viewers), then the whole new picture.
            source_size = (frame.width, frame.height);
            (width, height) = share_size(frame.width, frame.height);
            encoder = match TileEncoder::new(width, height, opts.quality) {
                Ok(e) => e,
                Err(e) => break Some(e.to_string()),
            };
            let m =
                ScreenClientMsg::Start(ScreenStart { width: width as u16, height: height as u16 });
            if let Err(e) = write_msg(&mut stream, m.msg_type() as u8, &m.payload()) {
                break Some(format!("sending to the host failed: {e}"));
            }
            {
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.resizes += 1;
                s.shared_size = (width, height);
            }
            let _ = events.try_send(PresenterEvent::Resized { width, height });
        }
        let frame = scaler.scale(&frame, width, height);
        let tiles = match encoder.encode(&frame) {
            Ok(t) => t,
            Err(e) => break Some(e.to_string()),
        };
        let process_ms = t0.elapsed().as_secs_f64() * 1000.0;
        frame_no = frame_no.wrapping_add(1);
        let mut sent = 0u64;
        let mut failed = None;
        // Split big updates; every part but the last says "more follows".
        let mut rest = tiles;
        while !rest.is_empty() {
            let mut n = 0;
            let mut bytes = 0;
            while n < rest.len() && (n == 0 || bytes + rest[n].jpeg.len() <= SCREEN_BATCH_BYTES) {
                bytes += rest[n].jpeg.len();
                n += 1;
            }
            let (part, tail) = rest.split_at(n);
            let head = TileFrameHead {
                frame: frame_no,
                capture_ms,
                width: width as u16,
                height: height as u16,
                flags: if tail.is_empty() { 0 } else { SCREEN_MORE },
            };
            payload.clear();
            encode_tile_frame(head, part.iter().map(|t| (t.col, t.row, &t.jpeg[..])), &mut payload);
            if let Err(e) = write_msg(&mut stream, MsgType::ScreenFrame as u8, &payload) {
                failed = Some(format!("sending to the host failed: {e}"));
                break;
            }
            sent += payload.len() as u64;
            rest = tail;
        }
        {
            let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
            s.frames += 1;
            if sent > 0 {
                s.updates += 1;
                s.tiles += tiles.len() as u64;
                s.bytes += sent;
            }
            if s.process_ms.len() < MAX_SAMPLES {
                s.process_ms.push(process_ms);
            }
        }
        if let Some(f) = failed {
            break Some(f);
        }
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // Behind (slow capture or encode): skip ahead instead of bursting.
            next = now;
        }
    };
    // Finish our side, and stop the reader (the host may be gone).
    let _ = smol::block_on(stream.close().or(async {
        smol::Timer::after(WRITE_TIMEOUT).await;
        Ok(())
    }));
    drop(stop_tx);
    if let Some(r) = reader {
        let _ = r.join();
    }
    if let Some(reason) = end_reason {
        let _ = events.try_send(PresenterEvent::Ended { reason });
    }
}

// --------------------------------------------------------------- viewer

/// The newest complete picture of the shared screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenImage {
    pub presenter: String,
    pub width: usize,
    pub height: usize,
    /// Tightly packed RGBA rows. The picture is published behind an `Arc`
    /// ([`ScreenSlot`]), so a UI can hand these bytes to its image handle
    /// without copying them (`bytes::Bytes::from_owner`).
    pub rgba: Vec<u8>,
    /// The presenter's frame number this picture shows.
    pub frame: u32,
    pub capture_ms: u64,
}

/// Latest-image slot: the viewer thread replaces it, the UI reads it.
pub type ScreenSlot = Arc<Mutex<Option<Arc<ScreenImage>>>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerEvent {
    Started {
        presenter: String,
        width: u16,
        height: u16,
    },
    Stopped {
        presenter: String,
        reason: ScreenStopReason,
    },
    /// The screen connection is gone (host refused it, or the link broke).
    Ended {
        reason: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct ViewerStats {
    /// Complete pictures received.
    pub updates: u64,
    pub tiles: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Capture → picture complete here, milliseconds (same-clock hosts only;
    /// the first picture of a presentation, the screen as it already was, is
    /// not counted).
    pub latency_ms: Vec<f64>,
    pub first_update: Option<Instant>,
    pub last_update: Option<Instant>,
    /// Tiles that failed to decode.
    pub bad_tiles: u64,
}

/// Watches the room's shared screen. Dropping it disconnects.
pub struct Viewer {
    /// Dropping it stops the viewer thread.
    stop: Option<smol::channel::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    slot: ScreenSlot,
    events: smol::channel::Receiver<ViewerEvent>,
    updated: smol::channel::Receiver<()>,
    stats: Arc<Mutex<ViewerStats>>,
}

impl Viewer {
    /// Connects and starts receiving. If someone is presenting, their whole
    /// screen arrives at once.
    pub fn start(target: ScreenTarget) -> Result<Viewer, ScreenError> {
        let (stream, reader, _) = connect(&target, StreamRole::ScreenView)?;
        let (stop, stop_rx) = smol::channel::bounded::<()>(1);
        let slot: ScreenSlot = Arc::default();
        let stats: Arc<Mutex<ViewerStats>> = Arc::default();
        let (ev_tx, events) = smol::channel::unbounded();
        let (up_tx, updated) = smol::channel::bounded(1);
        let thread = {
            let (slot, stats) = (slot.clone(), stats.clone());
            std::thread::Builder::new()
                .name("screen-viewer".into())
                .spawn(move || view(stream, reader, stop_rx, slot, stats, ev_tx, up_tx))
                .map_err(|e| ScreenError::Link(format!("cannot start the viewer thread: {e}")))?
        };
        Ok(Viewer { stop: Some(stop), thread: Some(thread), slot, events, updated, stats })
    }

    pub async fn start_async(target: ScreenTarget) -> Result<Viewer, ScreenError> {
        smol::unblock(move || Viewer::start(target)).await
    }

    pub fn slot(&self) -> ScreenSlot {
        self.slot.clone()
    }

    pub fn latest(&self) -> Option<Arc<ScreenImage>> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn events(&self) -> smol::channel::Receiver<ViewerEvent> {
        self.events.clone()
    }

    /// Holds at most one "there is a newer picture" signal.
    pub fn updated(&self) -> smol::channel::Receiver<()> {
        self.updated.clone()
    }

    pub fn stats(&self) -> ViewerStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn stop(mut self) -> ViewerStats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn view(
    mut stream: Writer,
    mut reader: Reader,
    stop: smol::channel::Receiver<()>,
    slot: ScreenSlot,
    stats: Arc<Mutex<ViewerStats>>,
    events: smol::channel::Sender<ViewerEvent>,
    updated: smol::channel::Sender<()>,
) {
    let mut canvas: Option<Canvas> = None;
    let mut presenter = String::new();
    // The first picture after ScreenStarted is the screen as it already was
    // (for a late viewer, possibly minutes old): its age is not a delay.
    let mut filling = true;
    let reason = loop {
        let (kind, buf) = match read_msg(&mut reader, &stop, None) {
            Ok(k) => k,
            Err(e) => break String::from(e),
        };
        if kind == MsgType::ScreenFrame as u8 {
            let f = match TileFrame::parse(&buf) {
                Ok(f) => f,
                Err(e) => break format!("the host sent a malformed tile update: {e}"),
            };
            let (w, h) = (usize::from(f.width), usize::from(f.height));
            if canvas.as_ref().is_none_or(|c| (c.width, c.height) != (w, h)) {
                match Canvas::new(w, h) {
                    Ok(c) => canvas = Some(c),
                    Err(e) => break e.to_string(),
                }
            }
            let Some(c) = canvas.as_mut() else { continue };
            let mut bad = 0;
            for t in &f.tiles {
                if c.apply(t.col, t.row, t.jpeg).is_err() {
                    bad += 1;
                }
            }
            let complete = f.flags & SCREEN_MORE == 0;
            // The host sends the next update only after this, so what we
            // get next is as new as it can be.
            let ack = ScreenClientMsg::Ack(ScreenAck { frame: f.frame });
            if let Err(e) = write_msg(&mut stream, ack.msg_type() as u8, &ack.payload()) {
                break format!("the screen link to the host failed: {e}");
            }
            let now = Instant::now();
            {
                let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                s.bytes += buf.len() as u64;
                s.tiles += f.tiles.len() as u64;
                s.bad_tiles += bad;
                if complete {
                    s.updates += 1;
                    s.first_update.get_or_insert(now);
                    s.last_update = Some(now);
                    if s.latency_ms.len() < MAX_SAMPLES && !filling {
                        s.latency_ms.push(unix_ms().saturating_sub(f.capture_ms) as f64);
                    }
                    filling = false;
                }
            }
            if complete {
                let image = ScreenImage {
                    presenter: presenter.clone(),
                    width: w,
                    height: h,
                    // The one copy per picture: the canvas is painted on
                    // in place, the published picture is shared (Arc).
                    rgba: c.rgba.clone(),
                    frame: f.frame,
                    capture_ms: f.capture_ms,
                };
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(image));
                let _ = updated.try_send(());
            }
            continue;
        }
        match ScreenHostMsg::decode(kind, &buf) {
            Ok(ScreenHostMsg::Started(s)) => {
                presenter = s.presenter.clone();
                filling = true;
                canvas = Canvas::new(usize::from(s.width), usize::from(s.height)).ok();
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
                let _ = events.try_send(ViewerEvent::Started {
                    presenter: s.presenter,
                    width: s.width,
                    height: s.height,
                });
            }
            Ok(ScreenHostMsg::Stopped(s)) => {
                let _ = events
                    .try_send(ViewerEvent::Stopped { presenter: s.presenter, reason: s.reason });
            }
            Ok(ScreenHostMsg::Refused(r)) => break r.reason,
            Ok(ScreenHostMsg::Busy(_)) | Err(_) => {}
        }
    };
    let _ = events.try_send(ViewerEvent::Ended { reason });
}

// ------------------------------------------------------------------ bots

/// `--share-screen`, `--view-screen`, `--save-png`, `--screen-fps`.
#[derive(Debug, Clone, Default)]
pub struct BotScreenOptions {
    /// `test`, `test:WxH`, or an X display such as `:99`.
    pub share: Option<String>,
    pub view: bool,
    /// Where a viewer saves the last picture it saw.
    pub save_png: Option<std::path::PathBuf>,
    /// Capture rate when sharing (default 10).
    pub fps: Option<u32>,
}

impl BotScreenOptions {
    pub fn any(&self) -> bool {
        self.share.is_some() || self.view
    }
}

/// The `screen` object of a bot's JSON report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScreenReport {
    /// "presenter" or "viewer".
    pub role: String,
    /// Updates sent (presenter) or complete pictures received (viewer).
    pub updates: u64,
    pub fps: f64,
    /// Viewer: capture → picture shown. Presenter: capture + diff + encode.
    pub latency_ms: Option<Percentiles>,
    pub bytes: u64,
    pub tiles: u64,
    /// Who the viewer last saw presenting.
    pub presenter: Option<String>,
    pub png: Option<String>,
}

/// A bot's screen share and/or screen viewer.
pub struct BotScreen {
    presenter: Option<Presenter>,
    viewer: Option<Viewer>,
    started: Instant,
    save_png: Option<std::path::PathBuf>,
}

impl BotScreen {
    /// Starts what `opts` asks for, with streams to the screen port at
    /// `host`; problems come back as report errors.
    pub async fn start(
        client: &Client,
        host: IpAddr,
        opts: &BotScreenOptions,
        media: &mut crate::proto::MediaState,
    ) -> (BotScreen, Vec<String>) {
        let opener = StreamOpener::for_client(client, host, StreamService::Screen);
        BotScreen::start_via(client, opener, opts, media).await
    }

    /// [`BotScreen::start`] with streams from `opener`.
    pub async fn start_via(
        client: &Client,
        opener: StreamOpener,
        opts: &BotScreenOptions,
        media: &mut crate::proto::MediaState,
    ) -> (BotScreen, Vec<String>) {
        let target = ScreenTarget { opener, welcome: client.current_slot() };
        let mut errors = Vec::new();
        let viewer = if opts.view {
            match Viewer::start_async(target.clone()).await {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(format!("screen viewer: {e}"));
                    None
                }
            }
        } else {
            None
        };
        let presenter = match &opts.share {
            Some(src) => {
                let mut p = PresentOptions::new(ScreenSource::parse(src));
                p.fps = opts.fps.unwrap_or(DEFAULT_FPS).clamp(1, MAX_FPS);
                match Presenter::start_async(target, p).await {
                    Ok(p) => {
                        media.screen = true;
                        let _ = client.set_media(*media);
                        Some(p)
                    }
                    Err(e) => {
                        errors.push(format!("screen share: {e}"));
                        None
                    }
                }
            }
            None => None,
        };
        let bot = BotScreen {
            presenter,
            viewer,
            started: Instant::now(),
            save_png: opts.save_png.clone(),
        };
        (bot, errors)
    }

    /// Stops everything, saves the PNG if asked, and reports.
    pub fn finish(self) -> (Option<ScreenReport>, Vec<String>) {
        let mut errors = Vec::new();
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let mut report = None;
        if let Some(p) = self.presenter {
            let events = p.events();
            while let Ok(e) = events.try_recv() {
                if let PresenterEvent::Ended { reason } = e {
                    errors.push(format!("screen share ended: {reason}"));
                }
            }
            let s = p.stop();
            report = Some(ScreenReport {
                role: "presenter".into(),
                updates: s.updates,
                fps: s.updates as f64 / secs,
                latency_ms: Percentiles::of(&s.process_ms),
                bytes: s.bytes,
                tiles: s.tiles,
                presenter: None,
                png: None,
            });
        }
        if let Some(v) = self.viewer {
            let latest = v.latest();
            let s = v.stop();
            let span = match (s.first_update, s.last_update) {
                (Some(a), Some(b)) if b > a => (b - a).as_secs_f64(),
                _ => secs,
            };
            let mut png = None;
            if let Some(path) = &self.save_png {
                match &latest {
                    Some(img) => {
                        let saved = encode_png_rgba(img.width, img.height, &img.rgba)
                            .map_err(|e| e.to_string())
                            .and_then(|bytes| {
                                std::fs::write(path, bytes).map_err(|e| e.to_string())
                            });
                        match saved {
                            Ok(()) => png = Some(path.display().to_string()),
                            Err(e) => errors.push(format!("cannot save {}: {e}", path.display())),
                        }
                    }
                    None => errors.push(format!(
                        "no shared screen was seen, so {} was not saved",
                        path.display()
                    )),
                }
            }
            report = Some(ScreenReport {
                role: "viewer".into(),
                updates: s.updates,
                fps: s.updates.saturating_sub(1) as f64 / span.max(1e-3),
                latency_ms: Percentiles::of(&s.latency_ms),
                bytes: s.bytes,
                tiles: s.tiles,
                presenter: latest.map(|i| i.presenter.clone()),
                png,
            });
        }
        (report, errors)
    }
}
