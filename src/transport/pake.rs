//! The passcode check: SPAKE2 bound to the TLS exporter, confirmed both ways.
//!
//! A passcode room must not let a captured exchange be used to guess the
//! passcode offline, and a man in the middle who terminates TLS on both sides
//! must fail. So the passcode never travels, not even hashed: both sides run
//! SPAKE2 (RustCrypto `spake2`, Ed25519 group; client = side A with identity
//! `sapora/2 client`, host = side B with identity `sapora/2 host`), which
//! gives both the same 32-byte key `K` only if both used the same passcode.
//! An observer learns nothing it can test guesses against; an active attacker
//! gets one guess per run, which [`super::limit`] rate-limits.
//!
//! **Exporter binding.** `K` alone would not stop a relay: a man in the middle
//! could pass the SPAKE2 messages through unchanged. So the confirmation keys
//! also depend on the TLS exporter (RFC 8446 §7.5, label
//! [`EXPORTER_LABEL`], empty context, 32 bytes) of the connection each side
//! sees. A relay that terminates TLS has one TLS session with each side, and
//! the two exporters differ, so the confirmations fail.
//!
//! **Key schedule.**
//! ```text
//! TH       = SHA-256("sapora/2 pake v1" || u16be(len(room)) || room || msgA || msgB)
//! PRK      = HKDF-Extract(salt = exporter, IKM = K)           (HKDF-SHA-256, RFC 5869)
//! k_host   = HKDF-Expand(PRK, "sapora/2 host confirm", 32)
//! k_client = HKDF-Expand(PRK, "sapora/2 client confirm", 32)
//! host MAC   = HMAC-SHA-256(k_host, TH)
//! client MAC = HMAC-SHA-256(k_client, TH)
//! ```
//! `msgA`/`msgB` are the 33-byte SPAKE2 messages (side byte `A`/`B` + point).
//! MACs are compared in constant time.
//!
//! **Exchange** (every message is one [`Msg`] frame on the control stream,
//! before any control frame):
//! ```text
//! client                                   host
//! Start{room, msgA}          ─────────►    (rate limit; room's passcode)
//!                            ◄─────────    Challenge{msgB, host MAC} | Refused
//! (check host MAC)
//! Confirm{client MAC} | Abort ─────────►
//!                            ◄─────────    Accepted | Refused{WrongPasscode}
//! ```
//! A client without a passcode sends `Open{room}` and gets `Accepted` or
//! `Refused{PasscodeRequired}`. A client *with* a passcode never accepts a
//! room without one (the host would then prove nothing): it stops with
//! [`PakeError::HostSkippedPasscode`].
//!
//! Rooms without a passcode can still detect a man in the middle: both sides
//! show a [`VerificationCode`] derived from a second exporter
//! ([`VERIFY_EXPORTER_LABEL`]); with a relay in between they differ.
//!
//! Everything here is sans-IO: bytes and exporter values in, bytes and
//! decisions out. `quic.rs` drives it over a QUIC stream.

use std::fmt;
use std::time::Duration;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// TLS exporter label for the passcode binding (RFC 8446 §7.5 exporter,
/// empty context, [`EXPORTER_LEN`] bytes).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-sapora-passcode";
/// TLS exporter label for the verification code of rooms without passcode.
pub const VERIFY_EXPORTER_LABEL: &[u8] = b"EXPORTER-sapora-verify";
/// Bytes taken from each exporter.
pub const EXPORTER_LEN: usize = 32;
/// SPAKE2 identity of side A, the client.
pub const CLIENT_IDENTITY: &[u8] = b"sapora/2 client";
/// SPAKE2 identity of side B, the host.
pub const HOST_IDENTITY: &[u8] = b"sapora/2 host";
/// Length of a SPAKE2 Ed25519 message: side byte + 32-byte point.
pub const SPAKE_MSG_LEN: usize = 33;
/// Length of a confirmation MAC (HMAC-SHA-256).
pub const MAC_LEN: usize = 32;
/// Longest room name in bytes: 64 characters (the control plane's limit, see
/// `docs/protocol.md`) of at most 4 UTF-8 bytes each.
pub const MAX_ROOM_BYTES: usize = 256;
/// Longest passcode in bytes (after trimming).
pub const MAX_PASSCODE_BYTES: usize = 256;
/// Longest frame body (type byte onwards): `Start` with the longest room.
pub const MAX_BODY_LEN: usize = 1 + 2 + MAX_ROOM_BYTES + SPAKE_MSG_LEN;

const TRANSCRIPT_LABEL: &[u8] = b"sapora/2 pake v1";
const HOST_CONFIRM_INFO: &[u8] = b"sapora/2 host confirm";
const CLIENT_CONFIRM_INFO: &[u8] = b"sapora/2 client confirm";

/// The TLS exporter value of one connection, as this side sees it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Exporter(pub [u8; EXPORTER_LEN]);

impl fmt::Debug for Exporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Exporter(..)")
    }
}

/// A room passcode: the text with surrounding whitespace trimmed, compared
/// byte for byte (no case folding). `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Passcode(String);

impl Passcode {
    pub fn new(text: &str) -> Result<Passcode, PakeError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(PakeError::EmptyPasscode);
        }
        if text.len() > MAX_PASSCODE_BYTES {
            return Err(PakeError::PasscodeTooLong);
        }
        Ok(Passcode(text.to_string()))
    }
}

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode(..)")
    }
}

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
    /// first; see [`ClientHandshake::start`]).
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

    fn name(&self) -> &'static str {
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

/// Errors of the passcode check, worded for the person at either end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PakeError {
    #[error("the passcode is empty")]
    EmptyPasscode,
    #[error("the passcode is longer than {MAX_PASSCODE_BYTES} bytes")]
    PasscodeTooLong,
    #[error("the room name is longer than {MAX_ROOM_BYTES} bytes")]
    RoomTooLong,
    #[error("the other side sent a malformed passcode message: {0}")]
    Malformed(#[from] MsgError),
    #[error("the other side sent {got} where {expected} was expected")]
    Unexpected { got: &'static str, expected: &'static str },
    #[error(
        "the host could not prove it knows the passcode: the passcode is wrong, or someone is intercepting the connection"
    )]
    WrongPasscodeOrIntercepted,
    #[error("the client's passcode is wrong (or someone is intercepting the connection)")]
    ClientProofFailed,
    #[error(
        "the host admitted this client without checking the passcode it was given; refusing, because such a host proves nothing (join without a passcode and compare the verification code if that is intended)"
    )]
    HostSkippedPasscode,
    #[error("the host refused: {reason}{}", retry_text(*retry_after_ms))]
    Refused { reason: RefuseReason, retry_after_ms: u32 },
    #[error("the passcode check is already over")]
    Finished,
}

fn retry_text(ms: u32) -> String {
    if ms == 0 { String::new() } else { format!("; try again in {:.1} s", ms as f64 / 1000.0) }
}

/// How a connection got into its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The room as the client named it in `Start`/`Open`. The control
    /// plane's `Register.room` must name the same room.
    pub room: String,
    /// Whether both sides proved the passcode.
    pub proof: Proof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// SPAKE2 with key confirmation both ways, bound to this TLS session.
    Passcode,
    /// Open room: no proof; compare the [`VerificationCode`].
    None,
}

struct Keys {
    client: [u8; 32],
    host: [u8; 32],
    transcript: [u8; 32],
}

impl Keys {
    fn derive(
        k: &[u8],
        exporter: &Exporter,
        room: &str,
        msg_a: &[u8; SPAKE_MSG_LEN],
        msg_b: &[u8; SPAKE_MSG_LEN],
    ) -> Keys {
        let mut th = Sha256::new();
        th.update(TRANSCRIPT_LABEL);
        th.update((room.len() as u16).to_be_bytes());
        th.update(room.as_bytes());
        th.update(msg_a);
        th.update(msg_b);
        let hkdf = Hkdf::<Sha256>::new(Some(&exporter.0), k);
        let (mut client, mut host) = ([0u8; 32], [0u8; 32]);
        // 32 bytes is far below HKDF-SHA-256's limit of 255 * 32: cannot fail.
        let _ = hkdf.expand(CLIENT_CONFIRM_INFO, &mut client);
        let _ = hkdf.expand(HOST_CONFIRM_INFO, &mut host);
        Keys { client, host, transcript: th.finalize().into() }
    }

    fn mac(key: &[u8; 32], transcript: &[u8; 32]) -> [u8; MAC_LEN] {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(transcript);
        mac.finalize().into_bytes().into()
    }

    fn verify(key: &[u8; 32], transcript: &[u8; 32], tag: &[u8; MAC_LEN]) -> bool {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(transcript);
        mac.verify_slice(tag).is_ok()
    }
}

fn spake_array(msg: &[u8]) -> [u8; SPAKE_MSG_LEN] {
    let mut out = [0u8; SPAKE_MSG_LEN];
    let n = msg.len().min(SPAKE_MSG_LEN);
    out[..n].copy_from_slice(&msg[..n]);
    out
}

enum ClientState {
    AwaitChallenge { spake: Box<Spake2<Ed25519Group>>, msg_a: [u8; SPAKE_MSG_LEN] },
    AwaitResult { proof: Proof },
    Over,
}

/// The client's side of the exchange.
pub struct ClientHandshake {
    room: String,
    exporter: Exporter,
    state: ClientState,
}

/// What the client does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOutput {
    /// Send this frame and wait for the host's next one.
    Send(Vec<u8>),
    /// Done: the connection is admitted.
    Admitted(Admission),
}

impl ClientHandshake {
    /// Starts the check for `room`: with a passcode a `Start` frame, without
    /// one an `Open` frame (returned, to be sent first).
    pub fn start(
        room: &str,
        passcode: Option<&Passcode>,
        exporter: Exporter,
    ) -> Result<(ClientHandshake, Vec<u8>), PakeError> {
        if room.len() > MAX_ROOM_BYTES {
            return Err(PakeError::RoomTooLong);
        }
        let (state, frame) = match passcode {
            Some(passcode) => {
                let (spake, msg_a) = Spake2::<Ed25519Group>::start_a(
                    &Password::new(passcode.0.as_bytes()),
                    &Identity::new(CLIENT_IDENTITY),
                    &Identity::new(HOST_IDENTITY),
                );
                let msg_a = spake_array(&msg_a);
                let frame = Msg::Start { room: room.to_string(), spake: msg_a }.encode();
                (ClientState::AwaitChallenge { spake: Box::new(spake), msg_a }, frame)
            }
            None => (
                ClientState::AwaitResult { proof: Proof::None },
                Msg::Open { room: room.to_string() }.encode(),
            ),
        };
        Ok((ClientHandshake { room: room.to_string(), exporter, state }, frame))
    }

    /// Handles one frame from the host. After an error the handshake is
    /// over; if the error came from a `Challenge` the driver should send
    /// [`abort_frame`] so the host learns at once.
    pub fn handle(&mut self, frame: &[u8]) -> Result<ClientOutput, PakeError> {
        let msg = Msg::decode(frame);
        let state = std::mem::replace(&mut self.state, ClientState::Over);
        let msg = msg?;
        if let Msg::Refused { reason, retry_after_ms } = msg {
            if matches!(state, ClientState::Over) {
                return Err(PakeError::Finished);
            }
            return Err(PakeError::Refused { reason, retry_after_ms });
        }
        match state {
            ClientState::AwaitChallenge { spake, msg_a } => match msg {
                Msg::Challenge { spake: msg_b, mac } => {
                    let k =
                        spake.finish(&msg_b).map_err(|_| PakeError::WrongPasscodeOrIntercepted)?;
                    let keys = Keys::derive(&k, &self.exporter, &self.room, &msg_a, &msg_b);
                    if !Keys::verify(&keys.host, &keys.transcript, &mac) {
                        return Err(PakeError::WrongPasscodeOrIntercepted);
                    }
                    self.state = ClientState::AwaitResult { proof: Proof::Passcode };
                    let mac = Keys::mac(&keys.client, &keys.transcript);
                    Ok(ClientOutput::Send(Msg::Confirm { mac }.encode()))
                }
                Msg::Accepted => Err(PakeError::HostSkippedPasscode),
                other => Err(PakeError::Unexpected { got: other.name(), expected: "Challenge" }),
            },
            ClientState::AwaitResult { proof } => match msg {
                Msg::Accepted => {
                    Ok(ClientOutput::Admitted(Admission { room: self.room.clone(), proof }))
                }
                other => Err(PakeError::Unexpected { got: other.name(), expected: "Accepted" }),
            },
            ClientState::Over => Err(PakeError::Finished),
        }
    }
}

/// The frame a client sends when the host's proof failed.
pub fn abort_frame() -> Vec<u8> {
    Msg::Abort.encode()
}

/// A client's first frame as the host reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Passcode { room: String, spake: [u8; SPAKE_MSG_LEN] },
    Open { room: String },
}

impl Request {
    pub fn parse(frame: &[u8]) -> Result<Request, PakeError> {
        match Msg::decode(frame)? {
            Msg::Start { room, spake } => Ok(Request::Passcode { room, spake }),
            Msg::Open { room } => Ok(Request::Open { room }),
            other => Err(PakeError::Unexpected { got: other.name(), expected: "Start or Open" }),
        }
    }

    pub fn room(&self) -> &str {
        match self {
            Request::Passcode { room, .. } | Request::Open { room } => room,
        }
    }

    /// Whether answering this request runs the PAKE (and so must pass the
    /// attempt limiter first) given the room's passcode.
    pub fn runs_pake(&self, room_passcode: Option<&Passcode>) -> bool {
        matches!(self, Request::Passcode { .. }) && room_passcode.is_some()
    }
}

/// What the host answers to a [`Request`].
pub enum HostDecision {
    /// Open room, open request: send `reply` (Accepted); admitted.
    Admit { reply: Vec<u8>, admission: Admission },
    /// Send `reply` (Refused) and close the stream.
    Refuse { reply: Vec<u8>, reason: RefuseReason },
    /// Send `reply` (Challenge), then pass the client's next frame to
    /// [`HostHandshake::finish`].
    Challenge { reply: Vec<u8>, pending: HostHandshake },
}

/// A refusal frame (e.g. from the attempt limiter, before any PAKE runs).
pub fn refusal(reason: RefuseReason, retry_after: Duration) -> Vec<u8> {
    let retry_after_ms = retry_after.as_millis().min(u32::MAX as u128) as u32;
    Msg::Refused { reason, retry_after_ms }.encode()
}

/// The host's answer to a request, given the room's passcode (`None`: the
/// room is open). The attempt limiter must be asked before this when
/// [`Request::runs_pake`] is true.
pub fn respond(
    request: Request,
    room_passcode: Option<&Passcode>,
    exporter: Exporter,
) -> HostDecision {
    let refuse = |reason| HostDecision::Refuse { reply: refusal(reason, Duration::ZERO), reason };
    match (request, room_passcode) {
        (Request::Open { room }, None) => HostDecision::Admit {
            reply: Msg::Accepted.encode(),
            admission: Admission { room, proof: Proof::None },
        },
        (Request::Open { .. }, Some(_)) => refuse(RefuseReason::PasscodeRequired),
        (Request::Passcode { .. }, None) => refuse(RefuseReason::NoPasscodeInRoom),
        (Request::Passcode { room, spake: msg_a }, Some(passcode)) => {
            let (spake, msg_b) = Spake2::<Ed25519Group>::start_b(
                &Password::new(passcode.0.as_bytes()),
                &Identity::new(CLIENT_IDENTITY),
                &Identity::new(HOST_IDENTITY),
            );
            let msg_b = spake_array(&msg_b);
            let Ok(k) = spake.finish(&msg_a) else {
                // Not a valid side-A message (wrong side byte or not a point).
                return refuse(RefuseReason::BadRequest);
            };
            let keys = Keys::derive(&k, &exporter, &room, &msg_a, &msg_b);
            let mac = Keys::mac(&keys.host, &keys.transcript);
            HostDecision::Challenge {
                reply: Msg::Challenge { spake: msg_b, mac }.encode(),
                pending: HostHandshake { room, keys },
            }
        }
    }
}

/// The host waiting for the client's confirmation.
pub struct HostHandshake {
    room: String,
    keys: Keys,
}

impl HostHandshake {
    /// Checks the client's `Confirm`. Returns the frame to send (Accepted or
    /// Refused; none after an `Abort`) and the outcome. Every error here is a
    /// failed attempt for the limiter.
    pub fn finish(self, frame: &[u8]) -> (Option<Vec<u8>>, Result<Admission, PakeError>) {
        let wrong = || {
            (
                Some(refusal(RefuseReason::WrongPasscode, Duration::ZERO)),
                Err(PakeError::ClientProofFailed),
            )
        };
        match Msg::decode(frame) {
            Ok(Msg::Confirm { mac }) => {
                if Keys::verify(&self.keys.client, &self.keys.transcript, &mac) {
                    let admission = Admission { room: self.room, proof: Proof::Passcode };
                    (Some(Msg::Accepted.encode()), Ok(admission))
                } else {
                    wrong()
                }
            }
            Ok(Msg::Abort) => (None, Err(PakeError::ClientProofFailed)),
            Ok(other) => {
                let (reply, _) = wrong();
                (reply, Err(PakeError::Unexpected { got: other.name(), expected: "Confirm" }))
            }
            Err(e) => (Some(refusal(RefuseReason::BadRequest, Duration::ZERO)), Err(e.into())),
        }
    }
}

/// A 6-digit code both sides of a connection show, from the exporter with
/// label [`VERIFY_EXPORTER_LABEL`]: the first 8 bytes as a big-endian u64,
/// modulo 10^6 (bias below 10^-13). A relay in the middle makes the two
/// codes differ, except with probability 10^-6 per attempt for a relay that
/// cannot grind TLS handshakes; a relay that can try about a million
/// handshakes within the handshake timeout could match it, so passcode rooms
/// remain the strong protection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct VerificationCode(pub u32);

impl VerificationCode {
    pub fn from_exporter(exporter: &Exporter) -> VerificationCode {
        let mut first = [0u8; 8];
        first.copy_from_slice(&exporter.0[..8]);
        VerificationCode((u64::from_be_bytes(first) % 1_000_000) as u32)
    }
}

impl fmt::Display for VerificationCode {
    /// `012 345`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {:03}", self.0 / 1000, self.0 % 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXPORTER: Exporter = Exporter([7; 32]);

    fn code(text: &str) -> Passcode {
        Passcode::new(text).unwrap()
    }

    /// Runs the whole exchange in memory. Returns both sides' outcomes.
    fn run(
        client_code: Option<&str>,
        host_code: Option<&str>,
        client_exporter: Exporter,
        host_exporter: Exporter,
    ) -> (Result<Admission, PakeError>, Result<Admission, PakeError>) {
        let client_code = client_code.map(code);
        let host_code = host_code.map(code);
        let (mut client, first) =
            ClientHandshake::start("Standup", client_code.as_ref(), client_exporter).unwrap();
        let request = Request::parse(&first).unwrap();
        assert_eq!(request.room(), "Standup");
        match respond(request, host_code.as_ref(), host_exporter) {
            HostDecision::Admit { reply, admission } => {
                let client_side = client.handle(&reply).map(|out| match out {
                    ClientOutput::Admitted(a) => a,
                    other => panic!("{other:?}"),
                });
                (client_side, Ok(admission))
            }
            HostDecision::Refuse { reply, reason } => {
                let client_side = client.handle(&reply).map(|_| panic!("admitted after refusal"));
                (client_side, Err(PakeError::Refused { reason, retry_after_ms: 0 }))
            }
            HostDecision::Challenge { reply, pending } => match client.handle(&reply) {
                Ok(ClientOutput::Send(confirm)) => {
                    let (reply, host_side) = pending.finish(&confirm);
                    let client_side = match client.handle(&reply.unwrap()) {
                        Ok(ClientOutput::Admitted(a)) => Ok(a),
                        Ok(other) => panic!("{other:?}"),
                        Err(e) => Err(e),
                    };
                    (client_side, host_side)
                }
                Ok(other) => panic!("{other:?}"),
                Err(e) => {
                    let (reply, host_side) = pending.finish(&abort_frame());
                    assert_eq!(reply, None);
                    (Err(e), host_side)
                }
            },
        }
    }

    #[test]
    fn right_passcode_admits_both_sides() {
        let (client, host) = run(Some("hunter2"), Some("  hunter2 "), EXPORTER, EXPORTER);
        let expected = Admission { room: "Standup".into(), proof: Proof::Passcode };
        assert_eq!(client, Ok(expected.clone()));
        assert_eq!(host, Ok(expected));
    }

    #[test]
    fn wrong_passcode_fails_on_both_sides() {
        let (client, host) = run(Some("hunter3"), Some("hunter2"), EXPORTER, EXPORTER);
        assert_eq!(client, Err(PakeError::WrongPasscodeOrIntercepted));
        assert_eq!(host, Err(PakeError::ClientProofFailed));
        // Passcodes are case-sensitive.
        let (client, _) = run(Some("Hunter2"), Some("hunter2"), EXPORTER, EXPORTER);
        assert_eq!(client, Err(PakeError::WrongPasscodeOrIntercepted));
    }

    #[test]
    fn different_exporters_fail_like_a_man_in_the_middle() {
        // A relay that terminates TLS on both sides relays SPAKE2 messages
        // untouched, with the right passcode on both ends; only the
        // exporters differ.
        let (client, host) = run(Some("hunter2"), Some("hunter2"), EXPORTER, Exporter([8; 32]));
        assert_eq!(client, Err(PakeError::WrongPasscodeOrIntercepted));
        assert_eq!(host, Err(PakeError::ClientProofFailed));
    }

    #[test]
    fn relay_that_forwards_the_host_proof_still_fails_at_the_host() {
        // Even if the client skipped its check, the host's check of the
        // client's MAC catches the relay: the client's MAC is keyed with the
        // client's exporter.
        let pass = code("hunter2");
        let (mut client, first) = ClientHandshake::start("r", Some(&pass), EXPORTER).unwrap();
        let HostDecision::Challenge { reply, pending } =
            respond(Request::parse(&first).unwrap(), Some(&pass), EXPORTER)
        else {
            panic!()
        };
        let Ok(ClientOutput::Send(confirm)) = client.handle(&reply) else { panic!() };
        // Same transcript, host on another TLS session.
        let HostDecision::Challenge { pending: other_host, .. } =
            respond(Request::parse(&first).unwrap(), Some(&pass), Exporter([9; 32]))
        else {
            panic!()
        };
        assert!(other_host.finish(&confirm).1.is_err());
        assert!(pending.finish(&confirm).1.is_ok());
    }

    #[test]
    fn open_rooms_and_mismatched_expectations() {
        let (client, host) = run(None, None, EXPORTER, EXPORTER);
        let open = Admission { room: "Standup".into(), proof: Proof::None };
        assert_eq!((client, host), (Ok(open.clone()), Ok(open)));
        let (client, _) = run(None, Some("x"), EXPORTER, EXPORTER);
        assert!(
            matches!(
                client,
                Err(PakeError::Refused { reason: RefuseReason::PasscodeRequired, .. })
            ),
            "{client:?}"
        );
        let (client, _) = run(Some("x"), None, EXPORTER, EXPORTER);
        assert!(
            matches!(
                client,
                Err(PakeError::Refused { reason: RefuseReason::NoPasscodeInRoom, .. })
            ),
            "{client:?}"
        );
    }

    #[test]
    fn client_with_passcode_never_accepts_an_unproven_admission() {
        let (mut client, _) = ClientHandshake::start("r", Some(&code("x")), EXPORTER).unwrap();
        assert_eq!(client.handle(&Msg::Accepted.encode()), Err(PakeError::HostSkippedPasscode));
        // And it is over afterwards.
        assert_eq!(client.handle(&Msg::Accepted.encode()), Err(PakeError::Finished));
    }

    #[test]
    fn tampered_messages_fail() {
        let pass = code("hunter2");
        // Flip every bit position class in the Challenge (SPAKE2 point and
        // MAC) and in the Confirm; each must fail.
        for tamper_at in [3usize, 10, 35, 36, 60, 67] {
            let (mut client, first) = ClientHandshake::start("r", Some(&pass), EXPORTER).unwrap();
            let HostDecision::Challenge { mut reply, .. } =
                respond(Request::parse(&first).unwrap(), Some(&pass), EXPORTER)
            else {
                panic!()
            };
            reply[tamper_at] ^= 0x01;
            assert!(client.handle(&reply).is_err(), "Challenge byte {tamper_at}");
        }
        for tamper_at in [3usize, 20, 34] {
            let (mut client, first) = ClientHandshake::start("r", Some(&pass), EXPORTER).unwrap();
            let HostDecision::Challenge { reply, pending } =
                respond(Request::parse(&first).unwrap(), Some(&pass), EXPORTER)
            else {
                panic!()
            };
            let Ok(ClientOutput::Send(mut confirm)) = client.handle(&reply) else { panic!() };
            confirm[tamper_at] ^= 0x80;
            let (reply, outcome) = pending.finish(&confirm);
            assert_eq!(outcome, Err(PakeError::ClientProofFailed), "Confirm byte {tamper_at}");
            assert_eq!(
                Msg::decode(&reply.unwrap()).unwrap(),
                Msg::Refused { reason: RefuseReason::WrongPasscode, retry_after_ms: 0 }
            );
        }
        // A tampered room in Start changes the transcript: the host's MAC
        // (over the room it saw) fails at the client.
        let (mut client, mut first) =
            ClientHandshake::start("room", Some(&pass), EXPORTER).unwrap();
        first[5] = b'R';
        let HostDecision::Challenge { reply, .. } =
            respond(Request::parse(&first).unwrap(), Some(&pass), EXPORTER)
        else {
            panic!()
        };
        assert_eq!(client.handle(&reply), Err(PakeError::WrongPasscodeOrIntercepted));
    }

    #[test]
    fn bad_start_point_is_refused_not_a_panic() {
        let start = Msg::Start { room: "r".into(), spake: [0xff; SPAKE_MSG_LEN] }.encode();
        let decision = respond(Request::parse(&start).unwrap(), Some(&code("x")), EXPORTER);
        assert!(matches!(decision, HostDecision::Refuse { reason: RefuseReason::BadRequest, .. }));
    }

    #[test]
    fn messages_round_trip_and_match_the_documented_bytes() {
        let all = [
            Msg::Start { room: "Standup".into(), spake: [0x41; SPAKE_MSG_LEN] },
            Msg::Open { room: "ümlaut".into() },
            Msg::Challenge { spake: [0x42; SPAKE_MSG_LEN], mac: [3; MAC_LEN] },
            Msg::Confirm { mac: [4; MAC_LEN] },
            Msg::Abort,
            Msg::Accepted,
            Msg::Refused { reason: RefuseReason::TooManyAttempts, retry_after_ms: 41_000 },
            Msg::Refused { reason: RefuseReason::Other(99), retry_after_ms: 0 },
        ];
        for msg in all {
            assert_eq!(Msg::decode(&msg.encode()), Ok(msg.clone()), "{msg:?}");
        }
        // docs/transport-v2.md, worked example.
        assert_eq!(Msg::Open { room: "ab".into() }.encode(), [0, 5, 0x02, 0, 2, b'a', b'b']);
        assert_eq!(
            Msg::Refused { reason: RefuseReason::TooManyAttempts, retry_after_ms: 1000 }.encode(),
            [0, 6, 0x21, 2, 0, 0, 0x03, 0xe8]
        );
        assert_eq!(
            Msg::Start { room: "ab".into(), spake: [0; 33] }.encode().len(),
            2 + 1 + 2 + 2 + 33
        );
    }

    #[test]
    fn decoder_table_of_hostile_frames() {
        for (frame, expected) in [
            (vec![], MsgError::UnexpectedEnd),
            (vec![0], MsgError::UnexpectedEnd),
            (vec![0, 0], MsgError::Empty),
            // Over the limit: refused from the prefix alone.
            (vec![0xff, 0xff], MsgError::TooLong(0xffff)),
            (vec![0, 2, 0x20], MsgError::LengthMismatch { prefix: 2, actual: 1 }),
            (vec![0, 1, 0x7f], MsgError::UnknownType(0x7f)),
            (vec![0, 2, 0x20, 0], MsgError::TrailingBytes(1)),
            (vec![0, 3, 0x02, 0x01, 0x01], MsgError::RoomTooLong(257)),
            (vec![0, 4, 0x02, 0, 1, 0xff], MsgError::RoomNotUtf8),
            (vec![0, 4, 0x02, 0, 5, b'a'], MsgError::UnexpectedEnd),
            (vec![0, 2, 0x11, 1], MsgError::UnexpectedEnd),
        ] {
            assert_eq!(Msg::decode(&frame), Err(expected), "{frame:?}");
        }
        assert_eq!(body_len([0, 0]), Err(MsgError::Empty));
        assert_eq!(body_len([1, 0x25]), Err(MsgError::TooLong(293)));
        assert_eq!(body_len([1, 0x24]), Ok(MAX_BODY_LEN));
    }

    #[test]
    fn long_rooms_and_passcodes_are_refused() {
        assert_eq!(Passcode::new("   "), Err(PakeError::EmptyPasscode));
        assert_eq!(Passcode::new(&"x".repeat(257)), Err(PakeError::PasscodeTooLong));
        let room = "🙂".repeat(65);
        assert!(matches!(
            ClientHandshake::start(&room, None, EXPORTER),
            Err(PakeError::RoomTooLong)
        ));
        let room = "🙂".repeat(64);
        let (_, frame) = ClientHandshake::start(&room, Some(&code("x")), EXPORTER).unwrap();
        assert_eq!(frame.len(), 2 + MAX_BODY_LEN);
        assert_eq!(Request::parse(&frame).unwrap().room(), room);
        assert!(!format!("{:?}", code("secret")).contains("secret"));
    }

    #[test]
    fn verification_code_is_six_digits_from_the_exporter() {
        let a = VerificationCode::from_exporter(&Exporter([0; 32]));
        assert_eq!(a.to_string(), "000 000");
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&1_234_567u64.to_be_bytes());
        assert_eq!(VerificationCode::from_exporter(&Exporter(bytes)).to_string(), "234 567");
        assert_ne!(
            VerificationCode::from_exporter(&Exporter([1; 32])),
            VerificationCode::from_exporter(&Exporter([2; 32]))
        );
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Msg::decode(&bytes);
            let _ = Request::parse(&bytes);
        }

        #[test]
        fn hostile_frames_never_panic_either_side(
            bytes in proptest::collection::vec(any::<u8>(), 0..120),
            ty in prop::sample::select(vec![0x01u8, 0x02, 0x10, 0x11, 0x12, 0x20, 0x21]),
        ) {
            // Well-framed bodies of every type with random contents reach
            // the state machines, not just the decoder.
            let mut frame = ((bytes.len() + 1) as u16).to_be_bytes().to_vec();
            frame.push(ty);
            frame.extend_from_slice(&bytes);
            let pass = code("x");
            let (mut client, first) = ClientHandshake::start("r", Some(&pass), EXPORTER).unwrap();
            prop_assert!(!matches!(client.handle(&frame), Ok(ClientOutput::Admitted(_))));
            if let Ok(request) = Request::parse(&frame) {
                let _ = respond(request, Some(&pass), EXPORTER);
            }
            if let HostDecision::Challenge { pending, .. } =
                respond(Request::parse(&first).unwrap(), Some(&pass), EXPORTER)
            {
                prop_assert!(pending.finish(&frame).1.is_err());
            }
        }
    }
}
