//! The viewer: a named thread receives tile updates on its stream, paints
//! them on an RGBA canvas and publishes each complete picture in a
//! latest-image slot.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::{MAX_SAMPLES, Reader, ScreenError, ScreenTarget, Writer, connect, read_msg, write_msg};
use crate::media::screen::Canvas;
use crate::net::unix_ms;
use crate::proto::{
    MsgType, SCREEN_MORE, ScreenAck, ScreenClientMsg, ScreenHostMsg, ScreenStopReason, StreamRole,
    TileFrame,
};

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
