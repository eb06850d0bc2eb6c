//! The screen relay's driver: one task owns the [`Relay`] and feeds it the
//! streams' frames and the clock; per stream, the stream's own task reads
//! (one message in the relay at a time, so a fast presenter cannot queue
//! memory in the host) and a writer task writes what the relay sends.
//! Generic over the stream ([`LinkSend`]/[`LinkRecv`]); streams arrive
//! through [`crate::server::streams::serve_stream`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::{Task, Timer};

use super::relay::{Input, Output, Relay, RelayStats, ScreenConn, Who};
use crate::proto::{SCREEN_MAX_PAYLOAD, StreamRole};
use crate::server::directory::{Directory, Entry};
use crate::transport::framed::{FrameReader, FrameWriter};
use crate::transport::link::{LinkRecv, LinkSend};

/// A write stalled this long means the viewer is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
const TICK: Duration = Duration::from_secs(1);

enum DriverMsg {
    Opened {
        conn: ScreenConn,
        who: Result<Who, String>,
        presenter: bool,
        out: Sender<(u8, Vec<u8>)>,
        writer: Task<()>,
        /// Dropped by the driver when it lets go of the stream: the reader stops.
        stop: Sender<()>,
    },
    Message {
        conn: ScreenConn,
        kind: u8,
        payload: Bytes,
        done: Sender<()>,
    },
    Ready {
        conn: ScreenConn,
    },
    Closed {
        conn: ScreenConn,
    },
}

struct ConnTasks {
    tx: Sender<(u8, Vec<u8>)>,
    writer: Task<()>,
    _stop: Sender<()>,
}

/// The screen relay as the stream entry point sees it
/// ([`crate::server::streams::StreamContext::screen`]). Cheap to clone.
#[derive(Clone)]
pub struct ScreenStreams {
    tx: Sender<DriverMsg>,
    next: Arc<AtomicU64>,
}

impl ScreenStreams {
    /// Serves one screen stream after its first frame: `who` is the
    /// authenticated session (`None`: unknown session or wrong token, which
    /// the relay refuses with a reason), `role` presenter or viewer.
    pub async fn serve(
        &self,
        who: Option<Entry>,
        role: StreamRole,
        w: FrameWriter<LinkSend>,
        r: FrameReader<LinkRecv>,
    ) {
        let conn = ScreenConn(self.next.fetch_add(1, Ordering::Relaxed));
        let presenter = matches!(role, StreamRole::ScreenPresent);
        let who = match (who, &role) {
            (_, StreamRole::FileList | StreamRole::FileUpload(_) | StreamRole::FileDownload(_)) => {
                Err("not a screen stream".to_string())
            }
            (Some(e), _) => {
                Ok(Who { session: e.session, token: e.token, name: e.name, room: e.room_key })
            }
            (None, _) => Err("unknown session or wrong token: join the meeting first".to_string()),
        };
        let ok = who.is_ok();
        let (out_tx, out_rx) = smol::channel::bounded(2);
        let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
        let writer = crate::server::runtime::spawn(write_loop(conn, w, out_rx, self.tx.clone()));
        let opened = DriverMsg::Opened { conn, who, presenter, out: out_tx, writer, stop: stop_tx };
        if self.tx.send(opened).await.is_err() || !ok {
            return;
        }
        read_loop(conn, r, &self.tx, stop_rx).await;
    }
}

/// The running screen service.
pub struct ScreenService {
    stats: Arc<Mutex<RelayStats>>,
    streams: ScreenStreams,
    _task: Task<()>,
}

impl ScreenService {
    pub fn stats(&self) -> RelayStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle [`crate::server::streams::serve_stream`] needs for screen streams.
    pub fn streams(&self) -> ScreenStreams {
        self.streams.clone()
    }
}

/// Runs the relay until the service is dropped; streams reach it through
/// [`ScreenService::streams`] (the links' streams, via
/// [`crate::server::streams::serve_stream`]).
pub fn spawn(directory: Directory) -> ScreenService {
    let stats: Arc<Mutex<RelayStats>> = Arc::default();
    let (tx, rx) = smol::channel::bounded::<DriverMsg>(1024);
    let streams = ScreenStreams { tx, next: Arc::new(AtomicU64::new(1)) };
    let task = crate::server::runtime::spawn(run(rx, directory, stats.clone()));
    ScreenService { stats, streams, _task: task }
}

async fn run(rx: Receiver<DriverMsg>, directory: Directory, stats: Arc<Mutex<RelayStats>>) {
    let mut relay = Relay::new();
    let mut conns: HashMap<ScreenConn, ConnTasks> = HashMap::new();
    let mut next_tick = Instant::now() + TICK;
    loop {
        let msg = async { Some(rx.recv().await) }
            .or(async {
                Timer::at(next_tick).await;
                None
            })
            .await;
        let msg = match msg {
            Some(Ok(msg)) => Some(msg),
            // Every sender is gone (the service and every link's stream
            // context): nothing can reach the relay any more. Without this
            // the closed channel would read as a tick in a loop that never
            // yields.
            Some(Err(_)) => return,
            None => None,
        };
        let now = Instant::now();
        match msg {
            Some(DriverMsg::Opened { conn, who, presenter, out, writer, stop }) => {
                conns.insert(conn, ConnTasks { tx: out, writer, _stop: stop });
                relay.handle(now, Input::Hello { conn, who, presenter });
            }
            Some(DriverMsg::Message { conn, kind, payload, done }) => {
                relay.handle(now, Input::Message { conn, kind, payload: &payload });
                // The reader reads on only after this.
                let _ = done.try_send(());
            }
            Some(DriverMsg::Ready { conn }) => relay.handle(now, Input::Ready { conn }),
            Some(DriverMsg::Closed { conn }) => {
                relay.handle(now, Input::Closed { conn });
                conns.remove(&conn);
            }
            None => {
                next_tick = now + TICK;
                for (conn, session, token) in relay.sessions() {
                    if directory.authenticate(session, token).is_none() {
                        relay.handle(now, Input::Closed { conn });
                    }
                }
                relay.handle(now, Input::Tick);
            }
        }
        let outputs: Vec<Output> = relay.drain_output().collect();
        for out in outputs {
            match out {
                Output::Send { conn, kind, payload } => {
                    let Some(c) = conns.get(&conn) else { continue };
                    if c.tx.try_send((kind, payload)).is_err() {
                        // Cannot happen (one message in flight per conn);
                        // if it ever does, the stream is broken anyway.
                        relay.handle(now, Input::Closed { conn });
                    }
                }
                Output::Close { conn } => {
                    if let Some(c) = conns.remove(&conn) {
                        // The writer flushes what is queued, then finishes
                        // the stream; the reader stops (its stop sender is gone).
                        c.tx.close();
                        c.writer.detach();
                    }
                }
            }
        }
        *stats.lock().unwrap_or_else(|e| e.into_inner()) = relay.stats();
    }
}

async fn read_loop(
    conn: ScreenConn,
    mut r: FrameReader<LinkRecv>,
    tx: &Sender<DriverMsg>,
    stop: Receiver<()>,
) {
    let (done_tx, done_rx) = smol::channel::bounded::<()>(1);
    loop {
        let got = async { Some(r.next(|_| SCREEN_MAX_PAYLOAD).await) }
            .or(async {
                let _ = stop.recv().await;
                None
            })
            .await;
        match got {
            Some(Ok(frame)) => {
                let (kind, payload) = (frame.header.kind, frame.payload);
                let msg = DriverMsg::Message { conn, kind, payload, done: done_tx.clone() };
                if tx.send(msg).await.is_err() {
                    return;
                }
                // One message per stream in the relay at a time.
                let handled = async { done_rx.recv().await.ok() }
                    .or(async {
                        let _ = stop.recv().await;
                        None
                    })
                    .await;
                if handled.is_none() {
                    return;
                }
            }
            Some(Err(_)) => {
                let _ = tx.send(DriverMsg::Closed { conn }).await;
                return;
            }
            None => return,
        }
    }
}

async fn write_loop(
    conn: ScreenConn,
    mut w: FrameWriter<LinkSend>,
    rx: Receiver<(u8, Vec<u8>)>,
    tx: Sender<DriverMsg>,
) {
    while let Ok((kind, payload)) = rx.recv().await {
        let write = w.send(kind, &payload);
        let timed_out = async {
            Timer::after(WRITE_TIMEOUT).await;
            Err(std::io::ErrorKind::TimedOut.into())
        };
        if write.or(timed_out).await.is_err() {
            let _ = tx.send(DriverMsg::Closed { conn }).await;
            return;
        }
        if tx.send(DriverMsg::Ready { conn }).await.is_err() {
            break;
        }
    }
    let _ = async { w.close().await }
        .or(async {
            Timer::after(WRITE_TIMEOUT).await;
            Ok(())
        })
        .await;
}
