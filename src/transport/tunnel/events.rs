//! What the tunnel's multiplexer ([`super::mux::Mux`]) tells its driver and
//! its application: which side it is, the next thing to write
//! ([`Transmit`]), what arrived ([`Event`], [`Read`]), why the connection
//! ended ([`CloseReason`]) and why an operation failed ([`StreamError`]).
//! All re-exported from `mux`.

use bytes::Bytes;

use super::mux::MAX_DATAGRAM;

/// WebSocket close codes (RFC 6455 §7.4.1) the tunnel uses.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const POLICY: u16 = 1008;
}

/// Which end of the connection this is: the client opens odd stream ids,
/// the host even ones (0 is control).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Host,
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// This side closed it (or its last handle was dropped).
    Local(String),
    /// The peer closed it with this WebSocket close code and reason.
    Peer { code: u16, reason: String },
    /// Nothing arrived for the idle timeout ([`super::mux::IDLE_TIMEOUT`]).
    TimedOut,
    /// The peer broke the protocol; this side closed with 1002.
    Protocol(String),
    /// The connection failed (I/O error, EOF without a close).
    Lost(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Local(reason) => write!(f, "closed here ({reason})"),
            CloseReason::Peer { code, reason } if reason.is_empty() => {
                write!(f, "closed by the peer (code {code})")
            }
            CloseReason::Peer { reason, .. } => write!(f, "closed by the peer: {reason}"),
            CloseReason::TimedOut => {
                write!(f, "closed after hearing nothing from the peer (idle timeout)")
            }
            CloseReason::Protocol(why) => write!(f, "protocol error: {why}"),
            CloseReason::Lost(why) => write!(f, "connection lost: {why}"),
        }
    }
}

/// Errors of stream and datagram operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the link is {0}")]
    Closed(CloseReason),
    #[error("the peer reset the stream (code {0})")]
    Reset(u32),
    #[error("the peer stopped reading the stream (code {0})")]
    Stopped(u32),
    #[error("the stream was already finished")]
    Finished,
    #[error("datagram of {0} bytes is over the {MAX_DATAGRAM}-byte limit")]
    DatagramTooLarge(usize),
    #[error("no such stream")]
    Unknown,
}

impl From<StreamError> for std::io::Error {
    fn from(e: StreamError) -> std::io::Error {
        use std::io::ErrorKind;
        let kind = match e {
            StreamError::Closed(_) => ErrorKind::NotConnected,
            StreamError::Reset(_) => ErrorKind::ConnectionReset,
            StreamError::Stopped(_) | StreamError::Finished => ErrorKind::BrokenPipe,
            StreamError::DatagramTooLarge(_) => ErrorKind::InvalidInput,
            StreamError::Unknown => ErrorKind::NotFound,
        };
        std::io::Error::new(kind, e)
    }
}

/// What the driver writes next.
#[derive(Debug, PartialEq, Eq)]
pub enum Transmit {
    /// One binary message.
    Message(Vec<u8>),
    /// A WebSocket ping (keep-alive).
    Ping,
    /// The WebSocket close frame; the last transmit.
    Close { code: u16, reason: String },
}

/// What the driver hands to the application.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A datagram arrived.
    Datagram(Bytes),
    /// The peer opened stream `id` (accept it with
    /// [`Mux::read`](super::mux::Mux::read)/[`Mux::write`](super::mux::Mux::write)).
    Accepted(u32),
}

/// Result of [`Mux::read`](super::mux::Mux::read).
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were copied.
    Data(usize),
    /// The peer finished its half and everything was read.
    Fin,
    /// Nothing to read yet; the waker given will be woken.
    Blocked,
}
