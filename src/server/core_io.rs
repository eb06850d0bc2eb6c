//! The control plane's vocabulary: what a driver feeds the sans-IO
//! [`Host`](super::Host) ([`Input`]), what it gets back ([`Output`],
//! [`HostEvent`]), its configuration and its counters. Re-exported by
//! `core`.

use std::net::IpAddr;
use std::time::Duration;

use crate::proto::{
    ChatMessage, ClientMsg, Control, FileInfo, HostKey, HostMsg, Ports, PresenceChange, RoomInfo,
};

/// One TCP connection, numbered by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// One registered participant (a wire concept: it lives in `proto`).
pub use crate::proto::SessionId;

/// What a [`Host`](super::Host) is configured with; [`HostConfig::new`] gives the
/// defaults (heartbeat 3 s, idle timeout 15 s, registration within 10 s).
pub struct HostConfig {
    /// The host's name, sent in every Welcome.
    pub host_name: String,
    /// The host's service ports, sent in every Welcome.
    pub ports: Ports,
    /// How often clients are asked to send a heartbeat.
    pub heartbeat: Duration,
    /// A registered client silent this long is dropped.
    pub idle_timeout: Duration,
    /// A connection that has not registered within this long is closed.
    pub register_timeout: Duration,
    /// Source of session tokens: random in the driver, predictable in tests.
    pub tokens: Box<dyn FnMut() -> u64 + Send>,
    /// The secret the host gave its own app: a Register carrying it marks
    /// that member as the host in member lists. `None` marks nobody.
    pub host_key: Option<HostKey>,
    /// Every room records from its creation (`sapora host --record DIR`).
    pub record_from_start: bool,
    /// Why this host cannot record, if it cannot (a `Record` control is
    /// refused with it), e.g. its mix is PCM.
    pub cannot_record: Option<String>,
}

impl HostConfig {
    /// A configuration with the defaults above, no host key, recording off.
    /// `tokens` draws each new session's token (the driver passes a CSPRNG).
    pub fn new(
        host_name: impl Into<String>,
        ports: Ports,
        tokens: Box<dyn FnMut() -> u64 + Send>,
    ) -> Self {
        HostConfig {
            host_name: host_name.into(),
            ports,
            heartbeat: Duration::from_secs(3),
            idle_timeout: Duration::from_secs(15),
            register_timeout: Duration::from_secs(10),
            tokens,
            host_key: None,
            record_from_start: false,
            cannot_record: None,
        }
    }
}

/// What the driver feeds [`Host::handle`](super::Host::handle), with the current time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A control link was accepted (after its transport handshake).
    Connected {
        /// The driver's number for the link.
        conn: ConnId,
        /// The peer's IP address (shown to the room, matched by removals).
        peer: IpAddr,
    },
    /// The connection passed admission (the passcode check) for `room`, as
    /// the client named it there: its `Register.room` must name the same
    /// room (compared as rooms are), else it is refused. Connections that
    /// never get this input may register for any room.
    Admitted {
        /// The connection.
        conn: ConnId,
        /// The room named at admission.
        room: String,
    },
    /// A decoded control message from the client.
    Message {
        /// The connection it came on.
        conn: ConnId,
        /// The message.
        msg: ClientMsg,
    },
    /// The link ended: `error` is `None` for a clean close by the peer.
    Closed {
        /// The connection.
        conn: ConnId,
        /// The transport error, if the link failed.
        error: Option<String>,
    },
    /// The driver could not queue output for a client that does not read.
    TooSlow {
        /// The connection.
        conn: ConnId,
    },
    /// The client's first frame spoke another protocol version.
    WrongVersion {
        /// The connection.
        conn: ConnId,
        /// The version byte it sent.
        got: u8,
    },
    /// The client sent bytes that are not a valid message.
    Malformed {
        /// The connection.
        conn: ConnId,
        /// The decoder's error, for the log and the Disconnect.
        error: String,
    },
    /// A media service (files, screen, …) has something for these sessions
    /// over the control channel. Unknown sessions are skipped.
    Deliver {
        /// The sessions to send to.
        to: Vec<SessionId>,
        /// The message.
        msg: HostMsg,
    },
    /// A control typed at the host's own console (`sapora host --headless`):
    /// it has the host's authority in every room. The outcome comes back as
    /// [`HostEvent::Console`].
    Console {
        /// The control to apply.
        control: Control,
    },
    /// Time passed; check deadlines.
    Timeout,
    /// Tell everyone the host is going away, then close every connection.
    Shutdown,
}

/// What [`Host::poll_output`](super::Host::poll_output) hands the driver, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send one message to each of these connections.
    Send {
        /// The connections to send to.
        to: Vec<ConnId>,
        /// The message.
        msg: HostMsg,
    },
    /// Flush what was queued for this connection, then close it.
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// Something an operator would want in the log.
    Event(HostEvent),
}

/// What happened, for the host's log, its console, the media services
/// (which group sessions by room) and the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// `room` is the room's display name, the same for all its members while
    /// it exists; media services group sessions by it.
    Joined {
        /// The new session.
        session: SessionId,
        /// Its token: media datagrams and streams must carry it.
        token: u64,
        /// The member's name, as the host assigned it.
        name: String,
        /// The room's display name.
        room: String,
        /// The member's IP address.
        ip: IpAddr,
    },
    /// A member came back on a new link (by session token), keeping their
    /// session, name and room.
    Rejoined {
        /// The session, unchanged.
        session: SessionId,
        /// The member's name.
        name: String,
        /// The room's display name.
        room: String,
        /// The new link's IP address.
        ip: IpAddr,
    },
    /// A member is gone: left, timed out, dropped, removed, or the meeting
    /// ended.
    Left {
        /// The session that ended.
        session: SessionId,
        /// The member's name.
        name: String,
        /// The room's display name.
        room: String,
        /// How they went.
        change: PresenceChange,
    },
    /// A registration or a control link was refused.
    Refused {
        /// The client's IP address.
        ip: IpAddr,
        /// Why, as a sentence.
        reason: String,
    },
    /// The set of rooms or their member counts changed.
    Rooms(Vec<RoomInfo>),
    /// Recording of this room (display name) starts or stops; the driver
    /// opens or closes its files. A room that empties stops recording.
    Recording {
        /// The room's display name.
        room: String,
        /// `true`: starts; `false`: stops.
        on: bool,
    },
    /// A message to the whole room (private messages are not reported).
    Chat {
        /// The room's display name.
        room: String,
        /// The message, as delivered.
        msg: ChatMessage,
    },
    /// A file shared with the whole room.
    FileOffered {
        /// The room's display name.
        room: String,
        /// The file, as offered.
        file: FileInfo,
    },
    /// What became of an [`Input::Console`] control: done or refused.
    Console(String),
    /// The host holds this member muted (`held`: they may not unmute, so
    /// the mixer leaves their audio out whatever their client sends), or
    /// no longer does.
    HeldMuted {
        /// The member.
        session: SessionId,
        /// `true`: held muted; `false`: released.
        held: bool,
    },
}

/// Counts for the host's status line (`sapora host` prints them every
/// 10 s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open control links, registered or not.
    pub connections: usize,
    /// Rooms with at least one member.
    pub rooms: usize,
    /// Registered members, across rooms.
    pub members: usize,
    /// Chat messages delivered since the host started.
    pub chat_messages: u64,
}
