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

#[path = "pake_wire.rs"]
mod wire;
pub use wire::{Msg, MsgError, RefuseReason, body_len};

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
#[path = "pake_tests.rs"]
mod tests;
