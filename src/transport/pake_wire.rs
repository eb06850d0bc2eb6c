//! The passcode exchange's wire format: [`Msg`] frames (a `u16be` length,
//! then a type byte and fixed fields), their decoder's [`MsgError`], and the
//! host's [`RefuseReason`] codes. Pure bytes in and out; the handshakes that
//! send them are in `pake.rs`.

use std::fmt;

use super::{MAC_LEN, MAX_BODY_LEN, MAX_ROOM_BYTES, SPAKE_MSG_LEN};

/// Why a host refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// 1: the client's confirmation did not match: wrong passcode.
    WrongPasscode,
    /// 2: too many wrong passcodes from this address; `retry_after` says when.
    TooManyAttempts,
    /// 3: this address has passcode checks in progress; retry shortly.
    Busy,
    /// 4: the room has a passcode and the client sent none.
    PasscodeRequired,
    /// 5: the client sent a passcode but the room has none.
    NoPasscodeInRoom,
    /// 6: the request was malformed.
    BadRequest,
    /// Any other code (from a newer host).
    Other(u8),
}

impl RefuseReason {
    pub fn code(self) -> u8 {
        match self {
            RefuseReason::WrongPasscode => 1,
            RefuseReason::TooManyAttempts => 2,
            RefuseReason::Busy => 3,
            RefuseReason::PasscodeRequired => 4,
            RefuseReason::NoPasscodeInRoom => 5,
            RefuseReason::BadRequest => 6,
            RefuseReason::Other(code) => code,
        }
    }

    pub fn from_code(code: u8) -> RefuseReason {
        match code {
            1 => RefuseReason::WrongPasscode,
            2 => RefuseReason::TooManyAttempts,
            3 => RefuseReason::Busy,
            4 => RefuseReason::PasscodeRequired,
            5 => RefuseReason::NoPasscodeInRoom,
            6 => RefuseReason::BadRequest,
            code => RefuseReason::Other(code),
        }
    }
}

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefuseReason::WrongPasscode => f.write_str("wrong passcode"),
            RefuseReason::TooManyAttempts => {
                f.write_str("too many wrong passcodes from this address")
            }
            RefuseReason::Busy => {
                f.write_str("the host is busy checking passcodes from this address")
            }
            RefuseReason::PasscodeRequired => {
                f.write_str("this room needs a passcode (give --passcode or SAPORA_PASSCODE)")
            }
            RefuseReason::NoPasscodeInRoom => f.write_str(
                "this room has no passcode; join without one and compare the verification code",
            ),
            RefuseReason::BadRequest => f.write_str("the host could not read the request"),
            RefuseReason::Other(code) => write!(f, "refused (reason {code})"),
        }
    }
}

/// One message of the passcode exchange.
///
/// Frame: `u16be length` of the body, then the body: a type byte and the
/// fields below, fixed-size byte arrays raw, `room` as `u16be length` + UTF-8.
///
/// | type | message | body after the type byte |
/// |---|---|---|
/// | 0x01 | `Start` (client) | room, msgA \[33] |
/// | 0x02 | `Open` (client) | room |
/// | 0x10 | `Challenge` (host) | msgB \[33], host MAC \[32] |
/// | 0x11 | `Confirm` (client) | client MAC \[32] |
/// | 0x12 | `Abort` (client) | (empty): the host's MAC did not verify |
/// | 0x20 | `Accepted` (host) | (empty) |
/// | 0x21 | `Refused` (host) | reason u8, retry_after_ms u32be |
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    Start { room: String, spake: [u8; SPAKE_MSG_LEN] },
    Open { room: String },
    Challenge { spake: [u8; SPAKE_MSG_LEN], mac: [u8; MAC_LEN] },
    Confirm { mac: [u8; MAC_LEN] },
    Abort,
    Accepted,
    Refused { reason: RefuseReason, retry_after_ms: u32 },
}

/// Why bytes are not a [`Msg`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    #[error("the message ended early")]
    UnexpectedEnd,
    #[error("a passcode message of {0} bytes is over the limit of {MAX_BODY_LEN}")]
    TooLong(usize),
    #[error("an empty passcode message")]
    Empty,
    #[error("the length prefix says {prefix} bytes, but {actual} follow")]
    LengthMismatch { prefix: usize, actual: usize },
    #[error("unknown passcode message type 0x{0:02x}")]
    UnknownType(u8),
    #[error("a room name of {0} bytes is over the limit of {MAX_ROOM_BYTES}")]
    RoomTooLong(usize),
    #[error("the room name is not UTF-8")]
    RoomNotUtf8,
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
}

/// Checks a frame's 2-byte length prefix before the body is read: the body
/// length, or an error if it is 0 or over [`MAX_BODY_LEN`].
pub fn body_len(prefix: [u8; 2]) -> Result<usize, MsgError> {
    match u16::from_be_bytes(prefix) as usize {
        0 => Err(MsgError::Empty),
        len if len > MAX_BODY_LEN => Err(MsgError::TooLong(len)),
        len => Ok(len),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MsgError> {
        if self.0.len() < n {
            return Err(MsgError::UnexpectedEnd);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MsgError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn room(&mut self) -> Result<String, MsgError> {
        let len = u16::from_be_bytes(self.array()?) as usize;
        if len > MAX_ROOM_BYTES {
            return Err(MsgError::RoomTooLong(len));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| MsgError::RoomNotUtf8)
    }
}

impl Msg {
    /// The whole frame, length prefix included. A room over
    /// [`MAX_ROOM_BYTES`] is cut at a character boundary (callers check it
    /// first; see [`super::ClientHandshake::start`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(MAX_BODY_LEN);
        let put_room = |body: &mut Vec<u8>, room: &str| {
            let mut end = room.len().min(MAX_ROOM_BYTES);
            while !room.is_char_boundary(end) {
                end -= 1;
            }
            body.extend_from_slice(&(end as u16).to_be_bytes());
            body.extend_from_slice(&room.as_bytes()[..end]);
        };
        match self {
            Msg::Start { room, spake } => {
                body.push(0x01);
                put_room(&mut body, room);
                body.extend_from_slice(spake);
            }
            Msg::Open { room } => {
                body.push(0x02);
                put_room(&mut body, room);
            }
            Msg::Challenge { spake, mac } => {
                body.push(0x10);
                body.extend_from_slice(spake);
                body.extend_from_slice(mac);
            }
            Msg::Confirm { mac } => {
                body.push(0x11);
                body.extend_from_slice(mac);
            }
            Msg::Abort => body.push(0x12),
            Msg::Accepted => body.push(0x20),
            Msg::Refused { reason, retry_after_ms } => {
                body.push(0x21);
                body.push(reason.code());
                body.extend_from_slice(&retry_after_ms.to_be_bytes());
            }
        }
        let mut frame = Vec::with_capacity(2 + body.len());
        frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
        frame.extend_from_slice(&body);
        frame
    }

    /// Parses one whole frame (length prefix included). Hostile input gives
    /// an error, never a panic, and allocates at most the room name.
    pub fn decode(frame: &[u8]) -> Result<Msg, MsgError> {
        let mut r = Reader(frame);
        let len = body_len(r.array()?)?;
        if r.0.len() != len {
            return Err(MsgError::LengthMismatch { prefix: len, actual: r.0.len() });
        }
        let msg = match r.array::<1>()?[0] {
            0x01 => Msg::Start { room: r.room()?, spake: r.array()? },
            0x02 => Msg::Open { room: r.room()? },
            0x10 => Msg::Challenge { spake: r.array()?, mac: r.array()? },
            0x11 => Msg::Confirm { mac: r.array()? },
            0x12 => Msg::Abort,
            0x20 => Msg::Accepted,
            0x21 => Msg::Refused {
                reason: RefuseReason::from_code(r.array::<1>()?[0]),
                retry_after_ms: u32::from_be_bytes(r.array()?),
            },
            other => return Err(MsgError::UnknownType(other)),
        };
        if !r.0.is_empty() {
            return Err(MsgError::TrailingBytes(r.0.len()));
        }
        Ok(msg)
    }

    pub(super) fn name(&self) -> &'static str {
        match self {
            Msg::Start { .. } => "Start",
            Msg::Open { .. } => "Open",
            Msg::Challenge { .. } => "Challenge",
            Msg::Confirm { .. } => "Confirm",
            Msg::Abort => "Abort",
            Msg::Accepted => "Accepted",
            Msg::Refused { .. } => "Refused",
        }
    }
}
