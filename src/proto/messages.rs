//! Payloads of the control channel (the QUIC control stream) and of discovery (UDP).
//!
//! Field order is wire order (postcard encodes struct fields in declaration
//! order): append new fields at the end only, never reorder.

use serde::{Deserialize, Serialize};

use super::{DecodeError, MsgType, decode_payload, encode_payload};

/// Every service port a host runs; sent in the Welcome so a client needs only
/// the control address. Audio and video have no port of their own: they
/// are datagrams on the member's link (the control port's QUIC connection,
/// or the TLS tunnel on TCP at the same number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ports {
    /// UDP: the QUIC endpoint whose control stream carries these messages;
    /// TCP: the TLS fallback.
    pub control: u16,
    /// UDP: LAN discovery beacons and probes (reference default 5001).
    pub discovery: u16,
}

impl Ports {
    /// The reference system's ports shifted by `offset`.
    pub fn with_offset(offset: u16) -> Result<Ports, String> {
        let shift = |p: u16| {
            p.checked_add(offset)
                .ok_or_else(|| format!("--port-offset {offset} pushes port {p} past 65535"))
        };
        Ok(Ports { control: shift(5000)?, discovery: shift(5001)? })
    }
}

/// The port media travels on, in words, from the ports actually in use
/// (never literals): "port 5000" (audio and video ride the control port's
/// link).
pub fn describe_media_ports(ports: &Ports) -> String {
    format!("port {}", ports.control)
}

/// The warning a member sees when the host heard none of their media:
/// "UDP to 10.77.0.1 port 5000 seems blocked by a firewall", and what
/// to open.
pub fn blocked_warning(host: std::net::IpAddr, ports: &Ports) -> String {
    let what = describe_media_ports(ports);
    format!(
        "No audio or video gets through: UDP to {host} {what} seems blocked by a firewall. \
         Allow UDP {what} in the host's firewall (and on this machine, if it filters outgoing traffic)."
    )
}

/// The secret a host hands only to its own app (docs/protocol.md §3.1,
/// Register). On the wire it is a plain `u64`; `Debug` never shows it, so
/// logging an options struct or a message cannot leak it.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostKey(pub u64);

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostKey(..)")
    }
}

/// 0x01, client → host: the first message on a control connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// Must equal the host's protocol version; checked before anything else.
    pub version: u8,
    /// Asked-for display name: at most [`super::limits::NAME_CHARS`]
    /// characters, checked by `proto::text`; the host may add a `_N` suffix.
    pub name: String,
    /// Blank means "default".
    pub room: String,
    /// The token of a previous session, so a reconnecting client gets its old
    /// name back even if the host has not yet noticed the old link died.
    pub rejoin_token: Option<u64>,
    /// Optional trailing field: the secret the host gave its own app, so the
    /// room can be told which member is the host. A wrong key marks nobody.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::trailing"
    )]
    pub host_key: Option<HostKey>,
}

/// One participant as the room sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member's name, unique in the room (compared by `proto::text`).
    pub name: String,
    /// The address the host sees the member's control link from, as text
    /// ("192.168.1.20", or an IPv6 address).
    pub ip: String,
    /// Microphone on.
    pub mic: bool,
    /// Camera on.
    pub camera: bool,
    /// Presenting their screen.
    pub screen: bool,
}

/// 0x03, host → client: the room's whole member list, pushed on every change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    /// The room, as the host spells it.
    pub room: String,
    /// Every member, the receiver included, in join order.
    pub members: Vec<Member>,
    /// Optional trailing field: the name of the member who runs the host
    /// (whose Register carried the host's key), if they are in this room.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::trailing"
    )]
    pub host_member: Option<String>,
}

/// 0x04, client → host: "I am leaving".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leave {
    /// Free text for the host's log ("quit", "window closed").
    pub reason: String,
}

/// Why the host closes a connection, in [`Disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DisconnectCode {
    /// The host is shutting down (Ctrl+C).
    HostShutdown,
    /// Nothing heard from the client for the idle timeout.
    TimedOut,
    /// The client broke the protocol.
    ProtocolError,
    /// The client did not read fast enough and its queue filled up.
    TooSlow,
    /// The same participant reconnected on a new link.
    Replaced,
    /// The host (or a co-host) removed this member from the meeting; they
    /// cannot rejoin it until the host lets them back ([`Control::LetBack`]).
    Removed,
    /// The host (or a co-host) ended the meeting for everyone.
    Ended,
}

/// 0x04, host → client: the host is closing this connection, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disconnect {
    /// The machine-readable reason.
    pub code: DisconnectCode,
    /// The same for people ("the host is shutting down").
    pub reason: String,
}

/// 0x05, host → client: registration accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// The session id, unique on this host run (a u32 on the wire): media
    /// datagrams, streams and the video roster name members by it.
    pub session: super::SessionId,
    /// Secret for this session: media packets carry it, and a reconnecting
    /// client presents it to get its name back.
    pub token: u64,
    /// The name the host assigned (the asked-for name, or it with a `_N` suffix).
    pub name: String,
    /// The room the member is in, as the host spells it.
    pub room: String,
    /// The host's name (discovery shows the same).
    pub host_name: String,
    /// Every service port of this host, so the client needs only the
    /// control address.
    pub ports: Ports,
    /// How often the client must send a Heartbeat, in milliseconds
    /// (3000 by default, `server::core::HostConfig::heartbeat`).
    pub heartbeat_ms: u32,
    /// Silence after which the host drops the client, in milliseconds
    /// (15000 by default, `HostConfig::idle_timeout`).
    pub timeout_ms: u32,
    /// The room's members at the moment of joining, the new member included.
    pub members: Vec<Member>,
    /// The room's most recent messages, oldest first.
    pub history: Vec<ChatMessage>,
    /// Optional trailing field, as in [`UserList::host_member`].
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::trailing"
    )]
    pub host_member: Option<String>,
}

/// Why a registration is refused, in [`Refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefuseCode {
    /// `Register.version` is not this host's [`super::PROTOCOL_VERSION`].
    Version,
    /// The name is empty, too long, or holds characters `proto::text` refuses
    /// (controls, invisible or direction-changing characters).
    BadName,
    /// The room name is too long or holds characters `proto::text` refuses,
    /// or the host does not let this client into that room.
    BadRoom,
    /// The first message was not a Register, or did not decode.
    Protocol,
    /// The meeting is locked: no new joins (a member rejoining with their
    /// session token still gets back in).
    Locked,
    /// This member was removed from the meeting and not let back in.
    Removed,
}

/// 0x06, host → client: registration refused; the host closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refused {
    /// The machine-readable reason.
    pub code: RefuseCode,
    /// The host's [`super::PROTOCOL_VERSION`], so a client can say which
    /// side to update.
    pub host_version: u8,
    /// The same for people.
    pub reason: String,
}

/// 0x07, client → host: my microphone/camera/screen state changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaState {
    /// Microphone on.
    pub mic: bool,
    /// Camera on.
    pub camera: bool,
    /// Presenting the screen.
    pub screen: bool,
}

/// How a member came or went, in [`Presence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PresenceChange {
    /// Joined the room (also a rejoin after a dropped link).
    Joined,
    /// Left on purpose (a Leave or a clean close), was removed, or the
    /// meeting ended.
    Left,
    /// Sent nothing for the idle timeout (`Welcome::timeout_ms`).
    TimedOut,
    /// The link broke, or the host dropped it (too slow, a protocol error).
    Dropped,
}

/// 0x08, host → client: someone joined or left the room, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// The member's name.
    pub name: String,
    /// What happened.
    pub change: PresenceChange,
}

/// 0x10, client → host: a chat message to the room (`to: None`) or one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatSend {
    /// Chosen by the client; echoed in the ChatResult.
    pub id: u32,
    /// `None`: the whole room; `Some(name)`: only that member (and the sender).
    pub to: Option<String>,
    /// The message: at most [`super::limits::CHAT_TEXT`] bytes of UTF-8.
    pub text: String,
}

/// 0x11, host → client: a chat message, stamped by the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Host-wide, increasing.
    pub id: u64,
    /// The sender's name in the room, or "the host" for the console.
    pub from: String,
    /// `None` for a room message, else the recipient's name.
    pub to: Option<String>,
    /// The message text, as sent.
    pub text: String,
    /// Milliseconds since the Unix epoch, host clock.
    pub ts_ms: u64,
}

/// What became of a [`ChatSend`], in [`ChatResult`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChatOutcome {
    /// `to` is the recipient's name as the room knows it.
    Delivered {
        /// The host-assigned [`ChatMessage::id`].
        msg_id: u64,
        /// The host's timestamp, milliseconds since the Unix epoch.
        ts_ms: u64,
        /// The recipient's name as the room knows it, for a private message;
        /// `None` for the room.
        to: Option<String>,
    },
    /// Not sent (for example no such member, or the text is too long).
    Refused {
        /// The reason, as a sentence for the sender.
        reason: String,
    },
}

/// 0x12, host → client: what became of a ChatSend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatResult {
    /// The [`ChatSend::id`] this answers.
    pub id: u32,
    /// Delivered or refused.
    pub outcome: ChatOutcome,
}

/// 0x50, client → discovery port: "hosts, answer now".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// The prober's [`super::PROTOCOL_VERSION`]; hosts answer any version, so
    /// a client can list hosts it cannot join.
    pub version: u8,
    /// Random per probe; the answering Beacon echoes it.
    pub nonce: u32,
}

/// One room of a host, in a [`Beacon`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's name.
    pub name: String,
    /// How many members are in it now.
    pub members: u32,
}

/// 0x51, host → discovery port (every 5 s) or → a prober (at once).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    /// The host's [`super::PROTOCOL_VERSION`].
    pub version: u8,
    /// Random per host run, so one host seen on several paths is listed once.
    pub host_id: u64,
    /// The host's name (`sapora host --name`, default the machine's name).
    pub host_name: String,
    /// The address the host bound; "0.0.0.0" means "the address this datagram
    /// came from".
    pub control_addr: String,
    /// The host's control port (UDP, QUIC).
    pub control_port: u16,
    /// The rooms with at least one member.
    pub rooms: Vec<RoomInfo>,
    /// The probe's nonce when answering one, else 0.
    pub nonce: u32,
    /// Optional trailing field: who runs the host (the login name of the
    /// person who started it), so a list can say "Ana's meeting".
    // Always written (None as one 0 byte), never skipped: a later trailing
    // field must not be read in its place.
    #[serde(default, deserialize_with = "super::trailing")]
    pub owner: Option<String>,
    /// Optional trailing field: when this host run started, milliseconds since
    /// the Unix epoch (the first key of the double-click rule).
    // Always written (None as one 0 byte), never skipped: a later trailing
    // field must not be read in its place.
    #[serde(default, deserialize_with = "super::trailing")]
    pub started_ms: Option<u64>,
    /// Optional trailing field: set only by a host started by `sapora` with no
    /// arguments: the room it would hand over to an earlier such host.
    // Always written (None as one 0 byte), never skipped: a later trailing
    // field must not be read in its place.
    #[serde(default, deserialize_with = "super::trailing")]
    pub merge_room: Option<String>,
    /// Optional trailing field: the SHA-256 fingerprint of the host's TLS
    /// certificate (32 bytes). Unauthenticated: a client's known-hosts pin
    /// always wins over it; an unknown host may be pinned from it.
    #[serde(default, deserialize_with = "super::trailing")]
    pub fingerprint: Option<[u8; 32]>,
    /// Optional trailing field: joining needs a passcode (`sapora host
    /// --passcode`).
    #[serde(default, deserialize_with = "super::trailing")]
    pub passcode: Option<bool>,
}

/// Where to reach the host that sent `beacon` from `src`: its advertised
/// control address when that is a usable unicast address, else the address
/// the datagram came from (a host bound to 0.0.0.0 advertises "0.0.0.0").
pub fn control_addr_of(src: std::net::SocketAddr, beacon: &Beacon) -> std::net::SocketAddr {
    use std::net::IpAddr;
    let usable_unicast = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    };
    let ip = match beacon.control_addr.parse::<IpAddr>() {
        Ok(ip) if usable_unicast(ip) => ip,
        _ => src.ip(),
    };
    std::net::SocketAddr::new(ip, beacon.control_port)
}

/// 0x09, host → client: this host hands its meeting to another host (two
/// people started one at the same moment); rejoin there, same name and room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The other host's control address (IP text) and port.
    pub addr: String,
    /// The other host's control port (UDP, QUIC).
    pub port: u16,
    /// Who hosts there, for the notice ("Ana's meeting").
    pub host_name: String,
}

/// 0x0A, host → client: the host has heard no UDP media datagram from this
/// session since it joined `waited_ms` ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaUnheard {
    /// Milliseconds since the session joined.
    pub waited_ms: u32,
}

/// A host control (issue 17), asked for in a [`ControlRequest`] and
/// announced in a [`ControlNotice`]. `name` is a member's name as the room
/// shows it (compared case- and look-alike-insensitively, like chat).
///
/// Who may: [`Control::Hand`] anyone (for themselves); [`Control::CoHost`]
/// the host only; everything else the host or a co-host. Nobody may mute,
/// stop, remove or demote the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// No new joins until [`Control::Unlock`].
    Lock,
    /// Let new members join again.
    Unlock,
    /// Turn a member's microphone off. With `may_unmute: false` they cannot
    /// turn it on again until the host mutes them again with `true`.
    Mute {
        /// The member, as the room shows the name.
        name: String,
        /// May turn the microphone on again themselves.
        may_unmute: bool,
    },
    /// Turn a member's camera off (they may start it again).
    StopVideo {
        /// The member, as the room shows the name.
        name: String,
    },
    /// Disconnect a member; they cannot rejoin (by token, name or address)
    /// until [`Control::LetBack`].
    Remove {
        /// The member, as the room shows the name.
        name: String,
    },
    /// Lift a removal.
    LetBack {
        /// The member, as the room shows the name.
        name: String,
    },
    /// Disconnect everyone and close the room.
    End,
    /// Make a member co-host (`on`) or take it back.
    CoHost {
        /// The member, as the room shows the name.
        name: String,
        /// `true`: make co-host; `false`: take it back.
        on: bool,
    },
    /// Raise or lower the sender's own hand.
    Hand {
        /// `true`: raise; `false`: lower.
        raised: bool,
    },
    /// Start or stop recording the room's mix and chat.
    Record {
        /// `true`: start; `false`: stop.
        on: bool,
    },
}

/// 0x0B, client → host: please apply this control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlRequest {
    /// Chosen by the client; echoed in the [`ControlResult`].
    pub id: u32,
    /// What to apply.
    pub control: Control,
}

/// 0x0C, host → client: what became of a [`ControlRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlResult {
    /// The [`ControlRequest::id`] this answers.
    pub id: u32,
    /// `None`: done. `Some(reason)`: refused, with a sentence for the user
    /// ("only the host or a co-host can remove someone", "no such member
    /// \"zed\" in meeting \"default\"").
    pub refused: Option<String>,
}

/// 0x0D, host → client: a control was applied. Sent to the whole room for
/// lock, end, co-host and recording changes, and to the member concerned
/// for mute and video stop (whose client then turns its microphone or
/// camera off).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlNotice {
    /// Who applied it: a member's name, or "the host" for the host's console.
    pub by: String,
    /// What was applied.
    pub control: Control,
    /// The same, as a sentence to show ("Ana muted you; you may unmute").
    pub text: String,
}

/// A raised hand, in [`RoomState::hands`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaisedHand {
    /// The member's name.
    pub name: String,
    /// When it was raised: milliseconds since the Unix epoch, host clock.
    pub since_ms: u64,
}

/// A member the host muted, in [`RoomState::host_muted`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostMute {
    /// The member's name.
    pub name: String,
    /// May turn their microphone on again themselves.
    pub may_unmute: bool,
}

/// 0x0E, host → client: the room's control state, sent after the Welcome
/// and pushed with every change (alongside the UserList it complements).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    /// The room, as the host spells it.
    pub room: String,
    /// No new joins ([`Control::Lock`]).
    pub locked: bool,
    /// The host is recording the room's mix and chat.
    pub recording: bool,
    /// Co-hosts' names, in the order they were named.
    pub co_hosts: Vec<String>,
    /// Raised hands, oldest first.
    pub hands: Vec<RaisedHand>,
    /// Members muted by the host who have not turned their microphone on since.
    pub host_muted: Vec<HostMute>,
    /// Members whose camera the host stopped and who have not restarted it.
    pub video_stopped: Vec<String>,
}

/// Everything a client may send on the control channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// 0x01: the first message.
    Register(Register),
    /// 0x02: still here (empty payload), every `Welcome::heartbeat_ms`.
    Heartbeat,
    /// 0x04: leaving.
    Leave(Leave),
    /// 0x07: microphone/camera/screen changed.
    MediaState(MediaState),
    /// 0x10: a chat message.
    Chat(ChatSend),
    /// 0x0B: a host control or a raised hand.
    Control(ControlRequest),
}

/// Everything a host may send on the control channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMsg {
    /// 0x05: registration accepted (boxed: it carries the chat history).
    Welcome(Box<Welcome>),
    /// 0x06: registration refused; the host closes the link.
    Refused(Refused),
    /// 0x02: the host is alive (empty payload).
    Heartbeat,
    /// 0x03: the room's member list.
    UserList(UserList),
    /// 0x08: someone joined or left.
    Presence(Presence),
    /// 0x11: a chat message.
    Chat(ChatMessage),
    /// 0x12: what became of your chat message.
    ChatResult(ChatResult),
    /// 0x04: the host closes this link.
    Disconnect(Disconnect),
    /// 0x26: a file was shared with the room or with you (see `files.rs`).
    FileOffered(super::FileInfo),
    /// 0x09: rejoin the meeting at another host.
    Handover(Handover),
    /// 0x0A: no media datagram from you has reached the host.
    MediaUnheard(MediaUnheard),
    /// 0x0C: what became of your control request.
    ControlResult(ControlResult),
    /// 0x0D: a control was applied.
    ControlNotice(ControlNotice),
    /// 0x0E: the room's control state.
    RoomState(RoomState),
}

impl ClientMsg {
    /// The header's message type for this message.
    pub fn msg_type(&self) -> MsgType {
        match self {
            ClientMsg::Register(_) => MsgType::Register,
            ClientMsg::Heartbeat => MsgType::Heartbeat,
            ClientMsg::Leave(_) => MsgType::Disconnect,
            ClientMsg::MediaState(_) => MsgType::MediaState,
            ClientMsg::Chat(_) => MsgType::ChatSend,
            ClientMsg::Control(_) => MsgType::ControlRequest,
        }
    }

    /// The postcard payload (empty for Heartbeat); the header goes in front
    /// (see [`super::encode_frame`]).
    pub fn payload(&self) -> Vec<u8> {
        match self {
            ClientMsg::Register(m) => encode_payload(m),
            ClientMsg::Heartbeat => Vec::new(),
            ClientMsg::Leave(m) => encode_payload(m),
            ClientMsg::MediaState(m) => encode_payload(m),
            ClientMsg::Chat(m) => encode_payload(m),
            ClientMsg::Control(m) => encode_payload(m),
        }
    }

    /// Parses a payload of header type `kind` as a client message: an error
    /// for a type a client does not send ([`DecodeError::Unexpected`]) or a
    /// payload that does not decode.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<ClientMsg, DecodeError> {
        Ok(match MsgType::try_from(kind)? {
            MsgType::Register => ClientMsg::Register(decode_payload(payload)?),
            MsgType::Heartbeat => ClientMsg::Heartbeat,
            MsgType::Disconnect => ClientMsg::Leave(decode_payload(payload)?),
            MsgType::MediaState => ClientMsg::MediaState(decode_payload(payload)?),
            MsgType::ChatSend => ClientMsg::Chat(decode_payload(payload)?),
            MsgType::ControlRequest => ClientMsg::Control(decode_payload(payload)?),
            _ => return Err(DecodeError::Unexpected(kind)),
        })
    }
}

impl HostMsg {
    /// The header's message type for this message.
    pub fn msg_type(&self) -> MsgType {
        match self {
            HostMsg::Welcome(_) => MsgType::Welcome,
            HostMsg::Refused(_) => MsgType::Refused,
            HostMsg::Heartbeat => MsgType::Heartbeat,
            HostMsg::UserList(_) => MsgType::UserList,
            HostMsg::Presence(_) => MsgType::Presence,
            HostMsg::Chat(_) => MsgType::Chat,
            HostMsg::ChatResult(_) => MsgType::ChatResult,
            HostMsg::Disconnect(_) => MsgType::Disconnect,
            HostMsg::FileOffered(_) => MsgType::FileOffered,
            HostMsg::Handover(_) => MsgType::Handover,
            HostMsg::MediaUnheard(_) => MsgType::MediaUnheard,
            HostMsg::ControlResult(_) => MsgType::ControlResult,
            HostMsg::ControlNotice(_) => MsgType::ControlNotice,
            HostMsg::RoomState(_) => MsgType::RoomState,
        }
    }

    /// The postcard payload (empty for Heartbeat); the header goes in front
    /// (see [`super::encode_frame`]).
    pub fn payload(&self) -> Vec<u8> {
        match self {
            HostMsg::Welcome(m) => encode_payload(m),
            HostMsg::Refused(m) => encode_payload(m),
            HostMsg::Heartbeat => Vec::new(),
            HostMsg::UserList(m) => encode_payload(m),
            HostMsg::Presence(m) => encode_payload(m),
            HostMsg::Chat(m) => encode_payload(m),
            HostMsg::ChatResult(m) => encode_payload(m),
            HostMsg::Disconnect(m) => encode_payload(m),
            HostMsg::FileOffered(m) => encode_payload(m),
            HostMsg::Handover(m) => encode_payload(m),
            HostMsg::MediaUnheard(m) => encode_payload(m),
            HostMsg::ControlResult(m) => encode_payload(m),
            HostMsg::ControlNotice(m) => encode_payload(m),
            HostMsg::RoomState(m) => encode_payload(m),
        }
    }

    /// Parses a payload of header type `kind` as a host message: an error for
    /// a type a host does not send ([`DecodeError::Unexpected`]) or a payload
    /// that does not decode.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<HostMsg, DecodeError> {
        Ok(match MsgType::try_from(kind)? {
            MsgType::Welcome => HostMsg::Welcome(Box::new(decode_payload(payload)?)),
            MsgType::Refused => HostMsg::Refused(decode_payload(payload)?),
            MsgType::Heartbeat => HostMsg::Heartbeat,
            MsgType::UserList => HostMsg::UserList(decode_payload(payload)?),
            MsgType::Presence => HostMsg::Presence(decode_payload(payload)?),
            MsgType::Chat => HostMsg::Chat(decode_payload(payload)?),
            MsgType::ChatResult => HostMsg::ChatResult(decode_payload(payload)?),
            MsgType::Disconnect => HostMsg::Disconnect(decode_payload(payload)?),
            MsgType::FileOffered => HostMsg::FileOffered(decode_payload(payload)?),
            MsgType::Handover => HostMsg::Handover(decode_payload(payload)?),
            MsgType::MediaUnheard => HostMsg::MediaUnheard(decode_payload(payload)?),
            MsgType::ControlResult => HostMsg::ControlResult(decode_payload(payload)?),
            MsgType::ControlNotice => HostMsg::ControlNotice(decode_payload(payload)?),
            MsgType::RoomState => HostMsg::RoomState(decode_payload(payload)?),
            _ => return Err(DecodeError::Unexpected(kind)),
        })
    }
}

#[cfg(test)]
#[path = "messages_tests.rs"]
mod tests;
