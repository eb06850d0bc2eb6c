//! A participant's session with a host: connect, register, heartbeat, send
//! commands, receive events, and rejoin by itself after the link drops.
//! Shared by the bots and the desktop app.
//!
//! [`core`] holds the decisions (heartbeat and silence timers, rejoin
//! back-off, what each host frame means) with time as an input; this module
//! is its driver: the link, the channels and the clock.

pub mod core;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::{Task, Timer};

use crate::proto::{
    ChatMessage, ChatResult, ChatSend, ClientMsg, Control, ControlNotice, ControlRequest,
    ControlResult, DecodeError, DisconnectCode, HostMsg, Leave, MediaState, PROTOCOL_VERSION,
    Presence, Refused, Register, RoomState, UserList, Welcome, limits,
};
use crate::transport::framed::{FrameError, FrameReader, FrameWriter};
use crate::transport::link::{self, ConnectError, LinkRecv, LinkSend, TransportKind};
use crate::transport::pake::{Passcode, VerificationCode};
use crate::transport::pin::PinStore;

/// How long a member may receive nothing while others send before that is
/// reported as blocked (the 3 s, the same as the host's check).
pub const RECEIVE_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub host: SocketAddr,
    pub name: String,
    /// Blank joins "default".
    pub room: String,
    /// Rejoin by itself when the link drops or the host restarts.
    pub reconnect: bool,
    pub connect_timeout: Duration,
    /// The host's key, when this is the host's own app: the room then sees
    /// this member marked as the host (sent on every Register, rejoins too).
    pub host_key: Option<crate::proto::HostKey>,
    /// This client sends audio or video: if the host says none of it arrives
    /// (`HostMsg::MediaUnheard`), report [`Event::MediaBlocked`]. Chat-only
    /// clients leave it false (they send no media, so silence is expected).
    pub media: bool,
    /// The room's passcode (`--passcode`, `SAPORA_PASSCODE`); `None` joins
    /// an open room.
    pub passcode: Option<Passcode>,
    /// Where host certificates are pinned (trust on first use); `None` =
    /// `known_hosts` in the configuration directory.
    pub pins: Option<PinStore>,
    /// The fingerprint a discovery beacon announced for this host
    /// (`DiscoveredHost::fingerprint`): trusted instead of first use when
    /// `pins` has no entry for it; a pin always wins.
    pub beacon_fingerprint: Option<crate::transport::cert::Fingerprint>,
}

impl ClientConfig {
    pub fn new(host: SocketAddr, name: impl Into<String>, room: impl Into<String>) -> ClientConfig {
        ClientConfig {
            host,
            name: name.into(),
            room: room.into(),
            reconnect: true,
            connect_timeout: Duration::from_secs(5),
            host_key: None,
            media: false,
            passcode: None,
            pins: None,
            beacon_fingerprint: None,
        }
    }
}

/// What the session reports, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Registered: first at connect, again after every rejoin.
    Joined {
        welcome: Box<Welcome>,
        rejoined: bool,
    },
    Members(UserList),
    Presence(Presence),
    Chat(ChatMessage),
    ChatResult(ChatResult),
    /// Someone shared a file with the room or with you; fetch it with
    /// `client::files`.
    FileOffered(crate::proto::FileInfo),
    /// The link is gone; `retrying` says whether the session is rejoining.
    Disconnected {
        reason: String,
        code: Option<DisconnectCode>,
        retrying: bool,
    },
    /// The host turned a rejoin down; the session ends.
    Refused(Refused),
    /// The host handed the meeting to another host (two people started one
    /// at the same moment); the session is rejoining there by itself, and
    /// [`Client::host`] now returns `to`. A `Joined { rejoined: true }` follows.
    Moved {
        to: SocketAddr,
        host_name: String,
    },
    /// What became of a [`Client::control`] request (`refused: None` = done).
    ControlResult(ControlResult),
    /// A control was applied to the room or to you. When it muted you or
    /// stopped your video, the session has already marked your microphone
    /// or camera off towards the host; the media engine should stop too.
    ControlNotice(ControlNotice),
    /// The room's control state: co-hosts, raised hands (oldest first),
    /// host mutes, stopped videos, lock and recording.
    RoomState(RoomState),
    /// None of this client's audio/video reached the host within 3 s of
    /// joining: the text says what seems blocked and what to open.
    MediaBlocked(String),
    /// The session is over (left, or gave up); no more events follow.
    Ended,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach a Sapora host at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    /// The secure link could not be made: unreachable, a changed host
    /// certificate (the loud warning), or a missing or wrong passcode
    /// ([`ClientError::is_passcode_refusal`]).
    #[error("{0}")]
    Link(ConnectError),
    #[error("cannot reach a Sapora host at {addr}: no answer within {secs} s")]
    Timeout { addr: SocketAddr, secs: u64 },
    #[error("the host refused to let you join: {}", .0.reason)]
    Refused(Refused),
    #[error("the host at {addr} broke off the handshake: {why}")]
    Handshake { addr: SocketAddr, why: String },
    #[error("message is {len} bytes; the limit is {} bytes", limits::CHAT_TEXT)]
    TooLong { len: usize },
    #[error("the session has ended")]
    Ended,
}

impl ClientError {
    /// A missing, wrong or too-often-tried passcode (the CLI's own exit code).
    pub fn is_passcode_refusal(&self) -> bool {
        matches!(self, ClientError::Link(e) if e.is_passcode_refusal())
    }

    /// The host's certificate is not the one pinned for it.
    pub fn is_certificate_changed(&self) -> bool {
        matches!(self, ClientError::Link(e) if e.is_certificate_changed())
    }
}

enum Command {
    Chat(ChatSend),
    Control(ControlRequest),
    Media(MediaState),
    Leave,
}

/// A live session. Dropping it leaves the meeting.
pub struct Client {
    welcome: Welcome,
    current: Arc<Mutex<Welcome>>,
    link: Arc<Mutex<link::Link>>,
    host: Arc<Mutex<SocketAddr>>,
    cmd: Sender<Command>,
    events: Receiver<Event>,
    next_chat: AtomicU32,
    task: Option<Task<()>>,
}

impl Client {
    /// Connects and registers; returns once the host has welcomed us, with the
    /// reason if it did not.
    pub async fn connect(config: ClientConfig) -> Result<Client, ClientError> {
        let register = Register {
            version: PROTOCOL_VERSION,
            name: config.name.clone(),
            room: config.room.clone(),
            rejoin_token: None,
            host_key: config.host_key,
        };
        let (link, welcome) = Link::open(&config, register).await?;
        let (cmd, cmd_rx) = smol::channel::unbounded();
        let (ev_tx, events) = smol::channel::unbounded();
        let _ = ev_tx.try_send(Event::Joined { welcome: welcome.clone(), rejoined: false });
        let current = Arc::new(Mutex::new((*welcome).clone()));
        let host = Arc::new(Mutex::new(config.host));
        let slot = Arc::new(Mutex::new(link.link.clone()));
        let shared = Shared { current: current.clone(), host: host.clone(), link: slot.clone() };
        let task = smol::spawn(run(config, link, shared, cmd_rx, ev_tx));
        Ok(Client {
            welcome: *welcome,
            current,
            link: slot,
            host,
            cmd,
            events,
            next_chat: AtomicU32::new(1),
            task: Some(task),
        })
    }

    /// The first Welcome (name, room, ports, members, history).
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// The latest Welcome: after a host restart the session id, token and
    /// ports change, so media engines read this rather than keeping a copy.
    /// (Events go to one consumer; this is for everyone else.)
    pub fn current(&self) -> Welcome {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The host's control address now: the one connected to, until a
    /// handover ([`Event::Moved`]) moves the session elsewhere.
    pub fn host(&self) -> SocketAddr {
        *self.host.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link to the host now (it changes after a rejoin or a handover):
    /// for streams (files, screen) and datagrams (audio, video).
    pub fn link(&self) -> link::Link {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A handle engines can keep to read the latest link later.
    pub fn link_slot(&self) -> Arc<Mutex<link::Link>> {
        self.link.clone()
    }

    /// The 6-digit code to compare with the host's (participants panel):
    /// equal codes mean nobody relays the connection.
    pub fn verification_code(&self) -> VerificationCode {
        self.link().verification_code()
    }

    /// Which transport carries the session ("quic" in the bot report).
    pub fn transport(&self) -> TransportKind {
        self.link().kind()
    }

    /// A handle media engines can keep to read the latest Welcome later.
    pub fn current_slot(&self) -> Arc<Mutex<Welcome>> {
        self.current.clone()
    }

    pub fn events(&self) -> Receiver<Event> {
        self.events.clone()
    }

    /// Sends a chat message to the room (`to: None`) or one member; returns the
    /// id its [`ChatResult`] will carry.
    pub fn chat(&self, to: Option<&str>, text: &str) -> Result<u32, ClientError> {
        if text.len() > limits::CHAT_TEXT {
            return Err(ClientError::TooLong { len: text.len() });
        }
        let id = self.next_chat.fetch_add(1, Ordering::Relaxed);
        let msg = ChatSend { id, to: to.map(str::to_string), text: text.to_string() };
        self.cmd.try_send(Command::Chat(msg)).map_err(|_| ClientError::Ended)?;
        Ok(id)
    }

    /// Asks the host to apply a control (or raise/lower your hand); returns
    /// the id its [`Event::ControlResult`] will carry.
    pub fn control(&self, control: Control) -> Result<u32, ClientError> {
        let id = self.next_chat.fetch_add(1, Ordering::Relaxed);
        self.cmd
            .try_send(Command::Control(ControlRequest { id, control }))
            .map_err(|_| ClientError::Ended)?;
        Ok(id)
    }

    pub fn set_media(&self, state: MediaState) -> Result<(), ClientError> {
        self.cmd.try_send(Command::Media(state)).map_err(|_| ClientError::Ended)
    }

    /// Says goodbye to the host and waits (briefly) for the session to end.
    pub async fn leave(mut self) {
        let _ = self.cmd.try_send(Command::Leave);
        if let Some(task) = self.task.take() {
            task.or(async {
                Timer::after(Duration::from_secs(2)).await;
            })
            .await;
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // The task notices the closed command channel and says goodbye.
        self.cmd.close();
        if let Some(task) = self.task.take() {
            task.detach();
        }
    }
}

/// What the session task shares with [`Client`].
struct Shared {
    current: Arc<Mutex<Welcome>>,
    host: Arc<Mutex<SocketAddr>>,
    link: Arc<Mutex<link::Link>>,
}

/// One secure link to the host (`transport::link`): its control stream,
/// with a reader task decoding frames.
struct Link {
    link: link::Link,
    send: FrameWriter<LinkSend>,
    frames: Receiver<Result<HostMsg, String>>,
    _reader: Option<Task<()>>,
}

impl Link {
    async fn open(
        config: &ClientConfig,
        register: Register,
    ) -> Result<(Link, Box<Welcome>), ClientError> {
        let addr = config.host;
        let secs = config.connect_timeout.as_secs().max(1);
        let handshake = async {
            let pins = match &config.pins {
                Some(pins) => pins.clone(),
                None => PinStore::open_default().map_err(|e| {
                    ClientError::Link(ConnectError::Quic { addr, source: e.into() })
                })?,
            };
            let est = link::connect_expecting(
                addr,
                &register.room,
                config.passcode.as_ref(),
                &pins,
                config.beacon_fingerprint,
            )
            .await
            .map_err(ClientError::Link)?;
            let mut recv = FrameReader::new(est.control_recv);
            let mut link = Link {
                link: est.link,
                send: FrameWriter::new(est.control_send),
                frames: smol::channel::unbounded().1,
                _reader: None,
            };
            let broke = |why: String| ClientError::Handshake { addr, why };
            link.send(&ClientMsg::Register(register)).await.map_err(|e| broke(e.to_string()))?;
            let frame = match recv.next(|_| limits::CONTROL_FROM_HOST).await {
                Ok(frame) => frame,
                Err(FrameError::Decode(DecodeError::Version { got })) => {
                    return Err(broke(format!(
                        "it speaks protocol version {got} and this client speaks {PROTOCOL_VERSION}"
                    )));
                }
                Err(e) => return Err(broke(e.to_string())),
            };
            match HostMsg::decode(frame.header.kind, &frame.payload) {
                Ok(HostMsg::Welcome(w)) => Ok((link, recv, w)),
                Ok(HostMsg::Refused(r)) => Err(ClientError::Refused(r)),
                Ok(other) => Err(broke(format!("unexpected {other:?}"))),
                Err(e) => Err(broke(e.to_string())),
            }
        };
        let timeout = async {
            Timer::after(config.connect_timeout).await;
            Err(ClientError::Timeout { addr, secs })
        };
        let (mut link, recv, welcome) = handshake.or(timeout).await?;
        let (tx, rx) = smol::channel::unbounded();
        link.frames = rx;
        link._reader = Some(smol::spawn(read_loop(recv, tx)));
        Ok((link, welcome))
    }

    async fn send(&mut self, msg: &ClientMsg) -> std::io::Result<()> {
        let payload = msg.payload();
        let write = self.send.send(msg.msg_type() as u8, &payload);
        let timeout = async {
            Timer::after(Duration::from_secs(5)).await;
            Err(std::io::ErrorKind::TimedOut.into())
        };
        write.or(timeout).await
    }

    /// Finishes the control stream and waits (at most `grace`) until the
    /// host has finished its side too, so nothing in flight is lost when the
    /// link closes.
    async fn finish(&mut self, grace: Duration) {
        let _ = self.send.close().await;
        let until = Instant::now() + grace;
        loop {
            let next = async { self.frames.recv().await.ok() }
                .or(async {
                    Timer::at(until).await;
                    None
                })
                .await;
            match next {
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return,
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.link.close("the client left");
    }
}

async fn read_loop(recv: FrameReader<LinkRecv>, tx: Sender<Result<HostMsg, String>>) {
    let mut recv = recv;
    loop {
        let item = match recv.next(|_| limits::CONTROL_FROM_HOST).await {
            Ok(f) => match HostMsg::decode(f.header.kind, &f.payload) {
                Ok(msg) => Ok(msg),
                // A newer host may send types we do not know: skip them.
                Err(DecodeError::UnknownType(_)) => continue,
                Err(e) => Err(format!("the host sent a malformed message: {e}")),
            },
            Err(FrameError::Decode(DecodeError::Version { got })) => {
                Err(format!("host switched to protocol version {got}"))
            }
            Err(FrameError::Closed) => Err("the host closed the connection".to_string()),
            Err(e) => Err(format!("the link to the host failed: {e}")),
        };
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// How a link ended (see [`core::react`]).
#[derive(Debug)]
pub enum LinkEnd {
    /// The user left.
    Left,
    /// The link broke, the host went silent or it said goodbye (`code`).
    Lost { reason: String, code: Option<DisconnectCode> },
    /// The host handed the meeting over to another host.
    Moved { to: SocketAddr, host_name: String },
}

enum Wake {
    Frame(Result<HostMsg, String>),
    Command(Option<Command>),
    Timer,
}

/// Serves one link until it ends: the driver of [`core::LinkTimers`] and
/// [`core::react`].
async fn serve(
    link: &mut Link,
    config: &ClientConfig,
    welcome: &Welcome,
    cmd: &Receiver<Command>,
    events: &Sender<Event>,
    media: &mut MediaState,
) -> LinkEnd {
    let mut timers = core::LinkTimers::new(welcome, Instant::now());
    loop {
        let deadline = timers.next_deadline();
        let wake = async {
            Wake::Frame(link.frames.recv().await.unwrap_or_else(|_| Err("link closed".into())))
        }
        .or(async { Wake::Command(cmd.recv().await.ok()) })
        .or(async {
            Timer::at(deadline).await;
            Wake::Timer
        })
        .await;
        let sent = match wake {
            Wake::Frame(Ok(msg)) => {
                timers.heard(Instant::now());
                match core::react(msg, welcome, config.host.ip(), config.media, media) {
                    core::Reaction::Event(event) => {
                        let _ = events.send(event).await;
                    }
                    core::Reaction::Nothing => {}
                    core::Reaction::End(end) => return end,
                }
                continue;
            }
            Wake::Frame(Err(reason)) => return LinkEnd::Lost { reason, code: None },
            Wake::Command(Some(Command::Chat(c))) => link.send(&ClientMsg::Chat(c)).await,
            Wake::Command(Some(Command::Control(c))) => link.send(&ClientMsg::Control(c)).await,
            Wake::Command(Some(Command::Media(m))) => {
                *media = m;
                link.send(&ClientMsg::MediaState(m)).await
            }
            Wake::Command(Some(Command::Leave) | None) => {
                let _ =
                    link.send(&ClientMsg::Leave(Leave { reason: "left the meeting".into() })).await;
                link.finish(Duration::from_secs(1)).await;
                return LinkEnd::Left;
            }
            Wake::Timer => match timers.due(Instant::now()) {
                None => continue,
                Some(core::Due::Heartbeat) => {
                    timers.sent_heartbeat(Instant::now());
                    link.send(&ClientMsg::Heartbeat).await
                }
                Some(core::Due::Silence) => {
                    let reason =
                        format!("no word from the host for {} s", timers.silence().as_secs());
                    return LinkEnd::Lost { reason, code: None };
                }
            },
        };
        if let Err(e) = sent {
            return LinkEnd::Lost {
                reason: format!("sending to the host failed: {e}"),
                code: None,
            };
        }
    }
}

async fn run(
    mut config: ClientConfig,
    mut link: Link,
    shared: Shared,
    cmd: Receiver<Command>,
    events: Sender<Event>,
) {
    let Shared { current, host, link: link_slot } = shared;
    let mut welcome = current.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut media = MediaState::default();
    loop {
        let mut fresh = false;
        match serve(&mut link, &config, &welcome, &cmd, &events, &mut media).await {
            LinkEnd::Left => break,
            LinkEnd::Moved { to, host_name } => {
                drop(link);
                // The new host does not know our token: join it afresh, with
                // the same name and room.
                config.host = to;
                config.beacon_fingerprint = None;
                *host.lock().unwrap_or_else(|e| e.into_inner()) = to;
                fresh = true;
                let _ = events.send(Event::Moved { to, host_name }).await;
            }
            LinkEnd::Lost { reason, code } => {
                drop(link);
                // Another link of ours took over: nothing to rejoin.
                // Nor after being removed or the meeting's end: the host
                // would refuse us, or make a new empty meeting.
                let retrying = config.reconnect
                    && !matches!(
                        code,
                        Some(
                            DisconnectCode::Replaced
                                | DisconnectCode::Removed
                                | DisconnectCode::Ended
                        )
                    );
                let _ = events.send(Event::Disconnected { reason, code, retrying }).await;
                if !retrying {
                    break;
                }
            }
        }
        match rejoin(&config, &welcome, fresh, &cmd, &events, &mut media).await {
            Some((l, w)) => {
                link = l;
                *link_slot.lock().unwrap_or_else(|e| e.into_inner()) = link.link.clone();
                welcome = *w;
                *current.lock().unwrap_or_else(|e| e.into_inner()) = welcome.clone();
                let _ = events
                    .send(Event::Joined { welcome: Box::new(welcome.clone()), rejoined: true })
                    .await;
                if media != MediaState::default() {
                    let _ = link.send(&ClientMsg::MediaState(media)).await;
                }
            }
            None => break,
        }
    }
    let _ = events.send(Event::Ended).await;
}

/// Retries until the host takes us back (same room, same name, via the
/// session token), the user leaves, or the host refuses for good.
async fn rejoin(
    config: &ClientConfig,
    welcome: &Welcome,
    fresh: bool,
    cmd: &Receiver<Command>,
    events: &Sender<Event>,
    media: &mut MediaState,
) -> Option<(Link, Box<Welcome>)> {
    let mut backoff = core::Backoff::new();
    loop {
        let register = Register {
            version: PROTOCOL_VERSION,
            name: welcome.name.clone(),
            room: welcome.room.clone(),
            rejoin_token: (!fresh).then_some(welcome.token),
            host_key: config.host_key,
        };
        match Link::open(config, register).await {
            Ok(joined) => return Some(joined),
            Err(ClientError::Refused(r)) => {
                let _ = events.send(Event::Refused(r)).await;
                return None;
            }
            // A changed certificate or a passcode refusal: retrying cannot help.
            Err(ClientError::Link(e)) if e.is_permanent() => {
                let reason = e.to_string();
                let _ =
                    events.send(Event::Disconnected { reason, code: None, retrying: false }).await;
                return None;
            }
            Err(_) => {}
        }
        // Wait before the next try, answering commands meanwhile.
        let until = Instant::now() + backoff.after_failure();
        loop {
            let got = async { Some(cmd.recv().await.ok()) }
                .or(async {
                    Timer::at(until).await;
                    None
                })
                .await;
            match got {
                None => break,
                Some(None | Some(Command::Leave)) => return None,
                Some(Some(Command::Chat(c))) => {
                    let reason = "not connected to the host (reconnecting)".to_string();
                    let r = ChatResult {
                        id: c.id,
                        outcome: crate::proto::ChatOutcome::Refused { reason },
                    };
                    let _ = events.send(Event::ChatResult(r)).await;
                }
                Some(Some(Command::Control(c))) => {
                    let refused = Some("not connected to the host (reconnecting)".to_string());
                    let _ = events
                        .send(Event::ControlResult(ControlResult { id: c.id, refused }))
                        .await;
                }
                // Remembered, and sent once we are back.
                Some(Some(Command::Media(m))) => *media = m,
            }
        }
    }
}
