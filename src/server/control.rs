//! The smol driver of the control plane: owns the TCP listener and the
//! connections, feeds [`Input`]s to the sans-IO [`Host`] core, and carries its
//! [`Output`]s back to sockets. It makes no decisions of its own.

use std::collections::HashMap;
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender, TrySendError};
use smol::future::FutureExt;
use smol::{Async, Task, Timer};

use super::core::{ConnId, Host, HostEvent, Input, Output, SessionId, Stats};
use crate::net::{FrameError, read_frame, write_frame};
use crate::proto::{ClientMsg, DecodeError, HostMsg, PROTOCOL_VERSION, limits};

/// Frames queued for one client before it counts as too slow and is dropped.
const WRITE_QUEUE: usize = 256;
/// A single write stalled this long means the client is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for goodbyes to be flushed.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// One encoded message, shared by every recipient of a fan-out.
struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

pub(crate) enum DriverMsg {
    Input(Input),
    Accepted { conn: ConnId, peer: IpAddr, stream: Arc<Async<TcpStream>> },
}

struct ConnHandle {
    tx: Sender<Arc<Frame>>,
    writer: Task<()>,
    _reader: Task<()>,
}

/// Lets a media service send control-channel messages to sessions (e.g. "a
/// file was shared with you"). Cheap to clone.
#[derive(Clone)]
pub struct ControlHandle {
    tx: Sender<DriverMsg>,
}

impl ControlHandle {
    /// Queues `msg` for these sessions; waits only if the control task is
    /// badly behind. Unknown sessions are skipped.
    pub async fn deliver(&self, to: Vec<SessionId>, msg: HostMsg) {
        let _ = self.tx.send(DriverMsg::Input(Input::Deliver { to, msg })).await;
    }
}

impl ControlHandle {
    /// A control typed at the host's console, with the host's authority; the
    /// outcome comes back as [`HostEvent::Console`] among the host's events.
    pub async fn console(&self, control: crate::proto::Control) {
        let _ = self.tx.send(DriverMsg::Input(Input::Console { control })).await;
    }
}

/// The control task's inbox; made before [`run`] so that services started
/// alongside it can hold a [`ControlHandle`].
pub struct Inbox {
    tx: Sender<DriverMsg>,
    rx: Receiver<DriverMsg>,
}

pub fn inbox() -> (ControlHandle, Inbox) {
    let (tx, rx) = smol::channel::bounded::<DriverMsg>(4096);
    (ControlHandle { tx: tx.clone() }, Inbox { tx, rx })
}

/// Runs the control plane until `stop` fires (or is dropped), then tells every
/// client and returns once their goodbyes are flushed.
pub async fn run(
    listener: Async<TcpListener>,
    mut core: Host,
    inbox: Inbox,
    stop: Receiver<()>,
    stats: Arc<Mutex<Stats>>,
    mut on_event: impl FnMut(HostEvent),
) {
    let Inbox { tx, rx } = inbox;
    let accept = smol::spawn(accept_loop(listener, tx.clone()));
    let mut conns: HashMap<ConnId, ConnHandle> = HashMap::new();
    let mut closing: Vec<Task<()>> = Vec::new();
    let mut stopping = false;

    loop {
        let deadline = core.poll_timeout();
        let next = async { rx.recv().await.ok() }
            .or(async {
                match deadline {
                    Some(t) => Timer::at(t).await,
                    None => Timer::never().await,
                };
                Some(DriverMsg::Input(Input::Timeout))
            })
            .or(async {
                let _ = stop.recv().await;
                None
            })
            .await;
        let input = match next {
            Some(DriverMsg::Input(input)) => input,
            Some(DriverMsg::Accepted { conn, peer, stream }) => {
                conns.insert(conn, spawn_conn(conn, stream, tx.clone()));
                Input::Connected { conn, peer }
            }
            None => {
                stopping = true;
                Input::Shutdown
            }
        };
        let mut pending = vec![input];
        while let Some(input) = pending.pop() {
            core.handle(Instant::now(), input);
            while let Some(out) = core.poll_output() {
                match out {
                    Output::Send { to, msg } => {
                        let frame =
                            Arc::new(Frame { kind: msg.msg_type() as u8, payload: msg.payload() });
                        for conn in to {
                            let Some(h) = conns.get(&conn) else { continue };
                            if let Err(TrySendError::Full(_)) = h.tx.try_send(frame.clone()) {
                                pending.push(Input::TooSlow { conn });
                            }
                        }
                    }
                    Output::Close { conn } => {
                        if let Some(h) = conns.remove(&conn) {
                            // Dropping the reader task cancels it; closing the
                            // queue lets the writer flush what is left and end.
                            h.tx.close();
                            if stopping {
                                closing.push(h.writer);
                            } else {
                                h.writer.detach();
                            }
                        }
                    }
                    Output::Event(e) => on_event(e),
                }
            }
        }
        *stats.lock().unwrap_or_else(|e| e.into_inner()) = core.stats();
        if stopping {
            break;
        }
    }
    drop(accept);
    let flushed = async {
        for w in closing {
            w.await;
        }
    };
    flushed
        .or(async {
            Timer::after(SHUTDOWN_FLUSH).await;
        })
        .await;
}

async fn accept_loop(listener: Async<TcpListener>, tx: Sender<DriverMsg>) {
    let mut next_id = 1u64;
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Chat latency matters more than segment count.
                let _ = stream.get_ref().set_nodelay(true);
                let conn = ConnId(next_id);
                next_id += 1;
                let msg = DriverMsg::Accepted { conn, peer: peer.ip(), stream: Arc::new(stream) };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!("accepting a connection failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

fn spawn_conn(conn: ConnId, stream: Arc<Async<TcpStream>>, tx: Sender<DriverMsg>) -> ConnHandle {
    let (out_tx, out_rx) = smol::channel::bounded::<Arc<Frame>>(WRITE_QUEUE);
    let writer = smol::spawn(write_loop(stream.clone(), out_rx));
    let reader = smol::spawn(read_loop(conn, stream, tx));
    ConnHandle { tx: out_tx, writer, _reader: reader }
}

async fn write_loop(stream: Arc<Async<TcpStream>>, rx: Receiver<Arc<Frame>>) {
    let mut seq = 0u16;
    let mut scratch = Vec::new();
    while let Ok(frame) = rx.recv().await {
        let mut out = &*stream;
        let write = write_frame(&mut out, frame.kind, seq, &frame.payload, &mut scratch);
        let timed_out = async {
            Timer::after(WRITE_TIMEOUT).await;
            Err(std::io::ErrorKind::TimedOut.into())
        };
        if write.or(timed_out).await.is_err() {
            break;
        }
        seq = seq.wrapping_add(1);
    }
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
}

async fn read_loop(conn: ConnId, stream: Arc<Async<TcpStream>>, tx: Sender<DriverMsg>) {
    let mut payload = Vec::new();
    loop {
        let input = match read_frame(&mut &*stream, limits::CONTROL_FROM_CLIENT, &mut payload).await
        {
            Ok(h) if h.version != PROTOCOL_VERSION => Input::WrongVersion { conn, got: h.version },
            Ok(h) => match ClientMsg::decode(h.kind, &payload) {
                Ok(msg) => Input::Message { conn, msg },
                // A newer client may send types we do not know: skip them.
                Err(DecodeError::UnknownType(_)) => continue,
                Err(e) => Input::Malformed { conn, error: e.to_string() },
            },
            Err(FrameError::Closed) => Input::Closed { conn, error: None },
            Err(FrameError::Decode(e)) => Input::Malformed { conn, error: e.to_string() },
            Err(FrameError::Io(e)) => Input::Closed { conn, error: Some(e.to_string()) },
        };
        let last = !matches!(input, Input::Message { .. });
        if tx.send(DriverMsg::Input(input)).await.is_err() || last {
            return;
        }
    }
}
