//! Sapora's wire format. Pure: no I/O, no clocks, nothing else of ours.
//!
//! Every message is a 10-byte [`Header`] followed by a postcard-encoded payload.
//! `docs/protocol.md` describes the bytes precisely enough to write another client.
//! Decoders treat all input as hostile: a length over the channel's limit is an
//! error before any allocation, and no input makes them panic.

#![warn(missing_docs)]

mod audio;
pub mod coding;
mod files;
mod header;
mod messages;
mod screen;
mod streams;
pub mod text;
mod video;

pub use audio::*;
pub use files::*;
pub use header::{HEADER_LEN, Header};
pub use messages::*;
pub use screen::*;
pub use streams::*;
pub use video::*;

/// The protocol version this build speaks (header byte 0 and `Register.version`).
pub const PROTOCOL_VERSION: u8 = 1;

/// One registered participant on one host run: the number the host gives
/// in the [`Welcome`] and every later message, stream and media datagram
/// names them by. It stays the same across a rejoin with the session token.
///
/// On the wire it is exactly a `u32` (postcard varint in control and stream
/// messages, 4 bytes big-endian in media datagram headers): the newtype is
/// `#[serde(transparent)]`, so wrapping it changes no byte.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct SessionId(pub u32);

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Per-channel payload limits, checked against the header before allocating.
pub mod limits {
    /// Client → host on the control channel. Generous enough that a chat message
    /// a bit over the 4 KiB text limit still arrives and is refused with a reason.
    pub const CONTROL_FROM_CLIENT: u32 = 64 * 1024;
    /// Host → client on the control channel: a Welcome carries up to 500 chat
    /// messages of up to 4 KiB each.
    pub const CONTROL_FROM_HOST: u32 = 4 * 1024 * 1024;
    /// One discovery datagram, header included.
    pub const DISCOVERY_DATAGRAM: usize = 1400;
    /// Longest chat text in bytes of UTF-8.
    pub const CHAT_TEXT: usize = 4096;
    /// Chat messages a room keeps for late joiners.
    pub const CHAT_HISTORY: usize = 500;
    /// Longest participant name, in characters.
    pub const NAME_CHARS: usize = 32;
    /// Longest room name (meeting id), in characters.
    pub const ROOM_CHARS: usize = 64;
}

/// Message type numbers (header byte 1). 0x01–0x41 follow the reference system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MsgType {
    /// Client → host: the first control message ([`Register`]).
    Register = 0x01,
    /// Both ways: still alive (empty payload), every `Welcome::heartbeat_ms`.
    Heartbeat = 0x02,
    /// Host → client: the room's member list ([`UserList`]).
    UserList = 0x03,
    /// Client → host: leaving ([`Leave`]); host → client: closing the link
    /// ([`Disconnect`]).
    Disconnect = 0x04,
    /// Host → client: registration accepted ([`Welcome`]).
    Welcome = 0x05,
    /// Host → client: registration refused ([`Refused`]).
    Refused = 0x06,
    /// Client → host: microphone/camera/screen changed ([`MediaState`]).
    MediaState = 0x07,
    /// Host → client: someone joined or left ([`Presence`]).
    Presence = 0x08,
    /// Host → client: rejoin at another host (double-click merge).
    Handover = 0x09,
    /// Host → client: no media datagram from you reached the host.
    MediaUnheard = 0x0A,
    /// Client → host: a host control or a raised hand (issue 17).
    ControlRequest = 0x0B,
    /// Host → client: what became of a control request.
    ControlResult = 0x0C,
    /// Host → client: a control was applied.
    ControlNotice = 0x0D,
    /// Host → client: the room's control state (roles, hands, lock, recording).
    RoomState = 0x0E,
    /// Client → host: a chat message to send ([`ChatSend`]).
    ChatSend = 0x10,
    /// Host → client: a chat message, stamped ([`ChatMessage`]).
    Chat = 0x11,
    /// Host → client: what became of a ChatSend ([`ChatResult`]).
    ChatResult = 0x12,
    /// File stream, host → client: the file a download sends ([`FileInfo`]).
    FileMetadata = 0x20,
    /// File stream, both ways: a chunk (8-byte offset + raw data, see
    /// `files.rs`).
    FileChunk = 0x21,
    /// File stream, host → client: upload ready ([`UploadReady`]) or stored
    /// ([`UploadDone`]).
    FileAckSuccess = 0x24,
    /// File stream, host → client: the operation failed ([`FileFailure`]).
    FileAckFailure = 0x25,
    /// Host → client on the control channel: a file was shared with you.
    FileOffered = 0x26,
    /// File stream, host → client: a listing ([`FileList`]).
    FileList = 0x28,
    /// File stream, client → host: every byte sent, with the MD5 ([`UploadEnd`]).
    FileUploadEnd = 0x29,
    /// Screen stream (see `screen.rs`): a tile update.
    ScreenFrame = 0x30,
    /// Screen stream: start presenting ([`ScreenStart`]), or the host's yes
    /// ([`ScreenStarted`]).
    ScreenStart = 0x31,
    /// Screen stream: stop presenting (empty), or the host's notice that
    /// sharing stopped ([`ScreenStopped`]).
    ScreenStop = 0x32,
    /// Host → would-be presenter: someone else is presenting.
    ScreenBusy = 0x34,
    /// Screen stream, host → client: refused ([`ScreenRefused`]).
    ScreenRefused = 0x35,
    /// Viewer → host: that tile update is painted; send the next.
    ScreenAck = 0x36,
    /// Audio datagrams on the audio UDP port (see `audio`).
    StreamAudio = 0x41,
    /// UDP video fragment (see `video.rs`).
    StreamVideo = 0x40,
    /// UDP, client → host: video hello and subscriptions.
    VideoHello = 0x44,
    /// UDP, host → client: who is who on the video channel.
    VideoRoster = 0x45,
    /// UDP discovery, client → hosts: "answer now" ([`Probe`]).
    DiscoveryProbe = 0x50,
    /// UDP discovery, host → LAN or prober: who and where ([`Beacon`]).
    DiscoveryBeacon = 0x51,
    /// Client → host: the first frame of every file or screen stream
    /// (service, role, session authentication; see `streams.rs`).
    StreamOpen = 0x60,
    /// Host → client: the stream was refused before any service took it.
    StreamRefused = 0x61,
}

impl TryFrom<u8> for MsgType {
    type Error = DecodeError;
    fn try_from(b: u8) -> Result<Self, DecodeError> {
        use MsgType::*;
        Ok(match b {
            0x01 => Register,
            0x02 => Heartbeat,
            0x03 => UserList,
            0x04 => Disconnect,
            0x05 => Welcome,
            0x06 => Refused,
            0x07 => MediaState,
            0x08 => Presence,
            0x09 => Handover,
            0x0A => MediaUnheard,
            0x0B => ControlRequest,
            0x0C => ControlResult,
            0x0D => ControlNotice,
            0x0E => RoomState,
            0x10 => ChatSend,
            0x11 => Chat,
            0x12 => ChatResult,
            0x20 => FileMetadata,
            0x21 => FileChunk,
            0x24 => FileAckSuccess,
            0x25 => FileAckFailure,
            0x26 => FileOffered,
            0x28 => FileList,
            0x29 => FileUploadEnd,
            0x30 => ScreenFrame,
            0x31 => ScreenStart,
            0x32 => ScreenStop,
            0x34 => ScreenBusy,
            0x35 => ScreenRefused,
            0x36 => ScreenAck,
            0x41 => StreamAudio,
            0x40 => StreamVideo,
            0x44 => VideoHello,
            0x45 => VideoRoster,
            0x50 => DiscoveryProbe,
            0x51 => DiscoveryBeacon,
            0x60 => StreamOpen,
            0x61 => StreamRefused,
            other => return Err(DecodeError::UnknownType(other)),
        })
    }
}

/// Why bytes are not a message: every decoder in `proto` returns this
/// instead of panicking.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the header or payload did.
    #[error("input ended in the middle of a message")]
    UnexpectedEnd,
    /// The header declares a payload over the channel's limit; nothing was
    /// allocated for it.
    #[error("payload of {len} bytes is over this channel's limit of {max}")]
    TooLong {
        /// The length the header declares, in bytes.
        len: u32,
        /// The channel's limit, in bytes (see [`limits`]).
        max: u32,
    },
    /// Header byte 1 names no message type this build knows.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// A known type, but not one that may arrive on this channel or in this
    /// direction.
    #[error("message type 0x{0:02x} is not expected on this channel or direction")]
    Unexpected(u8),
    /// The header's version byte is not [`PROTOCOL_VERSION`].
    #[error("protocol version {got} is not supported (this build speaks {PROTOCOL_VERSION})")]
    Version {
        /// The version byte the peer sent.
        got: u8,
    },
    /// The postcard payload did not decode; the text is postcard's error.
    #[error("malformed payload: {0}")]
    Payload(String),
}

/// Appends one whole frame (header + payload) to `out`.
pub fn encode_frame<T: serde::Serialize>(kind: MsgType, seq: u16, payload: &T, out: &mut Vec<u8>) {
    let body = encode_payload(payload);
    Header { version: PROTOCOL_VERSION, kind: kind as u8, len: body.len() as u32, seq, flags: 0 }
        .encode(out);
    out.extend_from_slice(&body);
}

/// Encodes just a payload (for a driver that writes the header itself).
pub fn encode_payload<T: serde::Serialize>(payload: &T) -> Vec<u8> {
    // Our message structs hold only strings, integers, options and vectors:
    // serialising them into a Vec cannot fail.
    postcard::to_stdvec(payload).unwrap_or_default()
}

/// Decodes a postcard payload. Trailing bytes are ignored, so a later version
/// may append fields to a message without breaking older peers.
pub fn decode_payload<'a, T: serde::Deserialize<'a>>(payload: &'a [u8]) -> Result<T, DecodeError> {
    postcard::take_from_bytes(payload)
        .map(|(v, _rest)| v)
        .map_err(|e| DecodeError::Payload(e.to_string()))
}

/// An optional trailing field (docs/protocol.md §2.3): an `Option` appended
/// to the outermost payload struct after version 1 first shipped. Writers
/// leave it out when it is `None`; readers take a payload that ends before it
/// as `None`, so peers that predate it keep working in both directions.
/// Bytes there that do not decode are ignored like any other trailing bytes
/// (postcard cannot tell "ended" from "malformed" through serde). Use only on
/// a struct's last fields, as
/// `#[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "trailing")]`.
pub fn trailing<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d).unwrap_or(None))
}

/// Decodes one complete frame held in `buf` (a datagram): header, limit, payload.
pub fn decode_datagram(buf: &[u8], max: u32) -> Result<(Header, &[u8]), DecodeError> {
    let header = Header::decode(buf)?;
    if header.version != PROTOCOL_VERSION {
        return Err(DecodeError::Version { got: header.version });
    }
    let len = header.check_len(max)?;
    let payload = buf[HEADER_LEN..].get(..len).ok_or(DecodeError::UnexpectedEnd)?;
    Ok((header, payload))
}
