//! The smol driver of the control plane: takes the admitted links' control
//! streams ([`serve_link`]), feeds [`Input`]s to the sans-IO [`Host`] core,
//! and carries its [`Output`]s back to the streams. It makes no decisions of
//! its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender, TrySendError};
use smol::future::FutureExt;
use smol::{Task, Timer};

use super::core::{ConnId, Host, HostEvent, Input, Output, SessionId, Stats};
use super::media::{LinkSession, MediaRouter};
use crate::proto::text::RoomKey;
use crate::proto::{ClientMsg, DecodeError, HostMsg, limits};
use crate::transport::framed::{FrameError, FrameReader, FrameWriter};
use crate::transport::link::{Established, Link, LinkRecv, LinkSend};
use crate::transport::pake::VerificationCode;

/// The verification code of each member's link (the code that member's
/// app shows), by room and name as the host's `Welcome` gave them: the
/// host's app shows it per member, so people can compare out loud. A
/// member is listed from its `Welcome` until its connection closes.
#[derive(Debug, Clone, Default)]
pub struct MemberCodes(Arc<Mutex<HashMap<ConnId, MemberCode>>>);

/// One welcomed connection: room, name, its link's code.
type MemberCode = (RoomKey, String, VerificationCode);

impl MemberCodes {
    /// The code of `name`'s link in `room` (compared by [`RoomKey`]; the
    /// newest connection, if a rejoin overlaps the old one).
    pub fn get(&self, room: &str, name: &str) -> Option<VerificationCode> {
        let room = RoomKey::new(room);
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.iter()
            .filter(|(_, (r, n, _))| *r == room && n == name)
            .max_by_key(|(conn, _)| conn.0)
            .map(|(_, (_, _, code))| *code)
    }

    fn welcomed(&self, conn: ConnId, room: &str, name: &str, code: VerificationCode) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(conn, (RoomKey::new(room), name.to_string(), code));
    }

    fn closed(&self, conn: ConnId) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&conn);
    }
}

/// Frames queued for one client before it counts as too slow and is dropped.
const WRITE_QUEUE: usize = 256;
/// A single write stalled this long means the client is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long shutdown waits for goodbyes to be flushed.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// After finishing its side of the control stream, how long the host waits
/// for the client to close the link (it does once it has read everything)
/// before closing it itself (which would discard anything still unsent).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// One encoded message, shared by every recipient of a fan-out.
struct Frame {
    kind: u8,
    payload: Vec<u8>,
}

pub(crate) enum DriverMsg {
    Input(Input),
    /// An admitted link's control stream, and where its datagram reader
    /// learns the session the link carries.
    Link(Box<Established<Link>>, Arc<LinkSession>),
}

struct ConnHandle {
    link: Link,
    owner: Arc<LinkSession>,
    tx: Sender<Arc<Frame>>,
    /// The verification code of this connection's link.
    code: VerificationCode,
    writer: Task<()>,
    _reader: Task<()>,
}

/// Lets a media service send control-channel messages to sessions (e.g. "a
/// file was shared with you"). Cheap to clone.
#[derive(Clone)]
pub struct ControlHandle {
    tx: Sender<DriverMsg>,
    media: MediaRouter,
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
    media: MediaRouter,
}

/// `media` takes the links' audio and video datagrams; the control task
/// binds each session to the link it registered on (`media.peers`).
pub fn inbox(media: MediaRouter) -> (ControlHandle, Inbox) {
    let (tx, rx) = smol::channel::bounded::<DriverMsg>(4096);
    (ControlHandle { tx: tx.clone(), media: media.clone() }, Inbox { tx, rx, media })
}

/// Serves one admitted client link: hands its control stream to the
/// control plane (whose core then sees `Register`, chat, …), serves each
/// further stream the client opens (files, screen) with
/// [`super::streams::serve_stream`], `streams.peer` set to the link's remote
/// address, and hands its datagrams (audio, video) to the media services
/// as sent by the session registered on this link. Returns when the link
/// closes.
pub async fn serve_link(
    established: Established<Link>,
    control: &ControlHandle,
    streams: super::streams::StreamContext,
) {
    let link = established.link.clone();
    let owner = Arc::new(LinkSession::new());
    if control.tx.send(DriverMsg::Link(Box::new(established), owner.clone())).await.is_err() {
        link.close("the host is shutting down");
        return;
    }
    let ctx = super::streams::StreamContext { peer: link.remote_address(), ..streams };
    let datagrams = super::media::read_datagrams(link.clone(), owner, control.media.clone());
    let accept = async {
        while let Ok((send, recv)) = link.accept_bi().await {
            super::runtime::spawn(super::streams::serve_stream(send, recv, ctx.clone())).detach();
        }
    };
    accept.or(datagrams).await;
}

/// Runs the control plane until `stop` fires (or is dropped), then tells every
/// client and returns once their goodbyes are flushed. Links arrive through
/// [`serve_link`] (the QUIC accept loop in `host.rs`).
pub async fn run(
    mut core: Host,
    inbox: Inbox,
    stop: Receiver<()>,
    stats: Arc<Mutex<Stats>>,
    codes: MemberCodes,
    mut on_event: impl FnMut(HostEvent),
) {
    let Inbox { tx, rx, media } = inbox;
    let mut next_id = 1u64;
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
            Some(DriverMsg::Link(est, owner)) => {
                let conn = ConnId(next_id);
                next_id += 1;
                let peer = est.link.remote_address().ip();
                let room = est.admission.room.clone();
                conns.insert(conn, spawn_conn(conn, *est, owner, tx.clone()));
                core.handle(Instant::now(), Input::Connected { conn, peer });
                Input::Admitted { conn, room }
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
                        if let HostMsg::Welcome(w) = &msg {
                            // The session now owns the link it registered
                            // (or rejoined) on: its datagrams are its own.
                            for conn in &to {
                                if let Some(h) = conns.get(conn) {
                                    codes.welcomed(*conn, &w.room, &w.name, h.code);
                                    h.owner.set(w.session);
                                    media.peers.bind(w.session, conn.0, h.link.clone());
                                }
                            }
                        }
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
                        codes.closed(conn);
                        media.peers.unbind_conn(conn.0);
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

fn spawn_conn(
    conn: ConnId,
    est: Established<Link>,
    owner: Arc<LinkSession>,
    tx: Sender<DriverMsg>,
) -> ConnHandle {
    let (out_tx, out_rx) = smol::channel::bounded::<Arc<Frame>>(WRITE_QUEUE);
    let code = est.link.verification_code();
    let link = est.link.clone();
    let writer = super::runtime::spawn(write_loop(est.control_send, est.link, out_rx));
    let reader = super::runtime::spawn(read_loop(conn, est.control_recv, tx));
    ConnHandle { link, owner, tx: out_tx, code, writer, _reader: reader }
}

async fn write_loop(send: LinkSend, link: Link, rx: Receiver<Arc<Frame>>) {
    let mut send = FrameWriter::new(send);
    while let Ok(frame) = rx.recv().await {
        let write = send.send(frame.kind, &frame.payload);
        let timed_out = async {
            Timer::after(WRITE_TIMEOUT).await;
            Err(std::io::ErrorKind::TimedOut.into())
        };
        if write.or(timed_out).await.is_err() {
            link.close("too slow");
            return;
        }
    }
    // Finish the stream, give the client a moment to read the rest and close
    // the link itself, then close it.
    let _ = send.close().await;
    link.closed()
        .or(async {
            Timer::after(CLOSE_GRACE).await;
        })
        .await;
    link.close("closed by the host");
}

async fn read_loop(conn: ConnId, recv: LinkRecv, tx: Sender<DriverMsg>) {
    let mut reader = FrameReader::new(recv);
    loop {
        let input = match reader.next(|_| limits::CONTROL_FROM_CLIENT).await {
            Err(FrameError::Decode(DecodeError::Version { got })) => {
                Input::WrongVersion { conn, got }
            }
            Ok(f) => match ClientMsg::decode(f.header.kind, &f.payload) {
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
