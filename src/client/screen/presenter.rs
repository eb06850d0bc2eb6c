//! The presenter: a named thread captures the chosen screen at the chosen
//! rate, diffs it against the previous frame, JPEG-encodes the changed 64×64
//! tiles and sends them to the host on its stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use smol::future::FutureExt;

use super::{
    ANSWER_TIMEOUT, MAX_SAMPLES, ReadFail, STOP_ACK_TIMEOUT, ScreenError, ScreenTarget,
    WRITE_TIMEOUT, connect, read_msg, write_msg,
};
use crate::media::screen::{
    DEFAULT_FPS, DEFAULT_QUALITY, Downscaler, MAX_FPS, ScreenSource, TileEncoder, share_size,
};
use crate::net::unix_ms;
use crate::proto::{
    MsgType, SCREEN_BATCH_BYTES, SCREEN_MORE, ScreenClientMsg, ScreenHostMsg, ScreenStart,
    StreamRole, TileFrameHead, encode_tile_frame,
};

/// How long a failed first write waits for the host's refusal, which may
/// already be on its way (the host stops a stream it refuses).
const REFUSAL_GRACE: Duration = Duration::from_millis(500);

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
    /// member list shows who presents ([`BotScreen`](super::BotScreen) does both).
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
        // A host that refused the stream at once (bad token) may have
        // stopped it before our Start went out: its refusal is the reason.
        let (_never, no_stop) = smol::channel::bounded::<()>(1);
        return match read_msg(&mut reader, &no_stop, Some(REFUSAL_GRACE)) {
            Err(ReadFail::Refused(reason)) => fail(ScreenError::Refused(reason)),
            Ok((kind, buf)) => match ScreenHostMsg::decode(kind, &buf) {
                Ok(ScreenHostMsg::Refused(r)) => fail(ScreenError::Refused(r.reason)),
                _ => fail(ScreenError::Link(e.to_string())),
            },
            Err(ReadFail::Link(_)) => fail(ScreenError::Link(e.to_string())),
        };
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
    // The reader says when it is done: the host's Stopped, its end of the
    // stream or a broken link (see the wait after the loop).
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
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
                let _ = done_tx.send(());
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
    // After our Stop, wait (at most STOP_ACK_TIMEOUT) for the host to take
    // note: it frees the room's floor before its Stopped or its end of the
    // stream reaches the reader. So once `stop()` returns, another member
    // may present at once (over TLS that member's request could otherwise
    // overtake our Stop and be told the floor is busy).
    if end_reason.is_none() && reader.is_some() {
        let _ = done_rx.recv_timeout(STOP_ACK_TIMEOUT);
    }
    drop(stop_tx);
    if let Some(r) = reader {
        let _ = r.join();
    }
    if let Some(reason) = end_reason {
        let _ = events.try_send(PresenterEvent::Ended { reason });
    }
}
