//! The tunnel's multiplexer: a sans-IO core (bytes in, messages out, time as
//! an input) that carries the control stream, datagrams and bidirectional
//! streams over one WebSocket. `docs/transport-v2.md` §5.1–5.5 is the wire
//! description; this module is its reference implementation.
//!
//! Nothing here touches a socket, spawns a task or reads a clock: the driver
//! ([`super`]) feeds it received messages ([`Mux::handle_message`]), asks it
//! for the next message to write ([`Mux::poll_transmit`], in priority order),
//! tells it the time ([`Mux::handle_timeout`]) and calls the stream and
//! datagram operations for the application. The only async-aware state is the
//! [`Waker`]s of blocked stream reads, writes and opens, which the core wakes
//! when their stream changes.
//!
//! Memory bounds (a peer that stops reading, or floods, cannot grow them):
//! - each stream's send queue holds at most the peer's credit (its window,
//!   [`STREAM_WINDOW`]); a writer without credit waits;
//! - each stream's receive buffer holds at most [`STREAM_WINDOW`] bytes: a
//!   peer that sends past the credit it was given is a protocol error;
//! - outgoing datagrams: at most [`DATAGRAM_QUEUE_BYTES`], the oldest dropped
//!   first (newest wins); incoming datagrams are handed to the driver at once;
//! - streams: at most [`MAX_STREAMS`] opened by each side; an OPEN past
//!   [`MAX_PEER_STREAMS`] is refused (STOP + RESET);
//! - queued protocol messages (windows, resets, refusals): at most
//!   [`MAX_PENDING_FRAMES`], past which the connection is closed.

use std::collections::{HashMap, VecDeque};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};

use super::datagrams::{self, DatagramQueue};

/// Message kinds (the first byte of every binary message after admission).
pub mod kind {
    /// Control stream bytes (stream 0); the rest of the message is data.
    pub const CONTROL: u8 = 0x00;
    /// One datagram; the rest of the message is its payload.
    pub const DATAGRAM: u8 = 0x01;
    /// `id: u32`: the sender opens stream `id`.
    pub const OPEN: u8 = 0x02;
    /// `id: u32`, then data bytes of stream `id`.
    pub const DATA: u8 = 0x03;
    /// `id: u32`: the sender's half of stream `id` ends after the data sent.
    pub const FIN: u8 = 0x04;
    /// `id: u32, code: u32`: the sender abandons its half of stream `id`.
    pub const RESET: u8 = 0x05;
    /// `id: u32, code: u32`: the sender no longer reads stream `id`.
    pub const STOP: u8 = 0x06;
    /// `id: u32, increment: u32`: the sender may send `increment` more bytes
    /// on stream `id` (0 = control).
    pub const WINDOW: u8 = 0x07;
    /// Two or more datagrams: each a `len: u16` and `len` payload bytes
    /// ([`super::super::datagrams`]).
    pub const BATCH: u8 = 0x08;
    /// Kinds from here up are reserved for other clients (the browser
    /// guest, issue 15); this version ignores them.
    pub const RESERVED_FROM: u8 = 0x40;
}

/// The control stream's id.
pub const CONTROL_ID: u32 = 0;
/// Credit each side grants per stream (and for control) at the start, and
/// the most bytes it buffers for a stream its reader has not taken yet. It
/// also bounds a stream's bytes in flight, so how long a datagram waits
/// behind them in TCP: 512 KiB is ~4 ms at 1 Gbit/s, and still allows
/// 100 MB/s per stream at a 5 ms round trip (`benches/tunnel.rs`: 1 MiB gave
/// the same loopback throughput and 1.5x the datagram delay during an
/// upload).
pub const STREAM_WINDOW: u32 = 512 * 1024;
/// A receiver returns credit (a WINDOW message) once its reader has taken
/// this many bytes.
pub const WINDOW_UPDATE_AT: u32 = STREAM_WINDOW / 4;
/// Largest payload of one DATA or CONTROL message, in bytes.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Largest datagram payload, in bytes.
pub const MAX_DATAGRAM: usize = 16 * 1024;
pub use super::datagrams::DATAGRAM_QUEUE_BYTES;
/// Streams one side may have open at once (opened by it).
pub const MAX_STREAMS: usize = 32;
/// Streams opened by the peer that are kept at once; past it an OPEN is
/// refused. Twice [`MAX_STREAMS`] because the two sides learn that a stream
/// is over at different moments.
pub const MAX_PEER_STREAMS: usize = 2 * MAX_STREAMS;
/// Protocol messages (windows, refusals) queued for the writer at most; a
/// peer that keeps provoking them without reading is dropped.
pub const MAX_PENDING_FRAMES: usize = 4096;
/// A side that sent nothing for this long sends a WebSocket ping (QUIC's
/// keep-alive, [`crate::transport::quic::KEEP_ALIVE_INTERVAL`]).
pub const KEEP_ALIVE_INTERVAL: Duration = crate::transport::quic::KEEP_ALIVE_INTERVAL;
/// A connection that received nothing for this long is closed (QUIC's idle
/// timeout, [`crate::transport::quic::IDLE_TIMEOUT`]).
pub const IDLE_TIMEOUT: Duration = crate::transport::quic::IDLE_TIMEOUT;

/// The keep-alive and idle rule of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Send a ping after this long without sending anything.
    pub keep_alive: Duration,
    /// Close after this long without receiving anything.
    pub idle_timeout: Duration,
}

impl Default for Timing {
    /// [`KEEP_ALIVE_INTERVAL`] and [`IDLE_TIMEOUT`], as QUIC.
    fn default() -> Timing {
        Timing { keep_alive: KEEP_ALIVE_INTERVAL, idle_timeout: IDLE_TIMEOUT }
    }
}
/// RESET/STOP code: the application dropped its half without finishing.
pub const CODE_DROPPED: u32 = 0;
/// RESET/STOP code: the receiver refused the stream (too many open).
pub const CODE_REFUSED: u32 = 1;

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
    /// Nothing arrived for the idle timeout ([`IDLE_TIMEOUT`]).
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
    /// The peer opened stream `id` (accept it with [`Mux::read`]/[`Mux::write`]).
    Accepted(u32),
}

/// Result of [`Mux::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were copied.
    Data(usize),
    /// The peer finished its half and everything was read.
    Fin,
    /// Nothing to read yet; the waker given will be woken.
    Blocked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    Open,
    /// FIN queued behind the data.
    Finishing,
    /// FIN or RESET sent (queued in order): nothing more to send.
    Done,
}

#[derive(Debug)]
struct Stream {
    opened_here: bool,
    // Send half.
    send_state: SendState,
    /// Framed DATA/CONTROL messages waiting for the writer.
    send_queue: VecDeque<Vec<u8>>,
    /// Bytes the peer allows beyond what is queued or sent.
    send_credit: u64,
    /// Set when the peer stopped reading (its STOP code).
    send_error: Option<StreamError>,
    send_handle: bool,
    send_waker: Option<Waker>,
    // Receive half.
    recv_buf: VecDeque<Bytes>,
    /// Bytes received in total, and the most the peer may have sent.
    recv_total: u64,
    recv_limit: u64,
    /// Bytes read since the last WINDOW.
    recv_unacked: u32,
    recv_fin: bool,
    recv_reset: Option<u32>,
    recv_handle: bool,
    recv_waker: Option<Waker>,
}

impl Stream {
    fn new(opened_here: bool) -> Stream {
        Stream {
            opened_here,
            send_state: SendState::Open,
            send_queue: VecDeque::new(),
            send_credit: u64::from(STREAM_WINDOW),
            send_error: None,
            send_handle: true,
            send_waker: None,
            recv_buf: VecDeque::new(),
            recv_total: 0,
            recv_limit: u64::from(STREAM_WINDOW),
            recv_unacked: 0,
            recv_fin: false,
            recv_reset: None,
            recv_handle: true,
            recv_waker: None,
        }
    }

    fn wake(&mut self) {
        if let Some(w) = self.send_waker.take() {
            w.wake();
        }
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// Whether the state can go: both handles gone, our half sent to the
    /// end, the peer's half ended.
    fn is_over(&self) -> bool {
        !self.send_handle
            && !self.recv_handle
            && self.send_state == SendState::Done
            && (self.recv_fin || self.recv_reset.is_some())
    }
}

/// The multiplexer of one tunnel connection (see the module docs).
#[derive(Debug)]
pub struct Mux {
    side: Side,
    next_id: u32,
    streams: HashMap<u32, Stream>,
    /// Round-robin position among streams with data to send.
    rr_after: u32,
    /// Protocol messages (OPEN, FIN of an empty queue, RESET, STOP, WINDOW),
    /// written before any data.
    frames: VecDeque<Vec<u8>>,
    datagrams: DatagramQueue,
    events: VecDeque<Event>,
    open_wakers: Vec<Waker>,
    closing: Option<(u16, String)>,
    closed: Option<CloseReason>,
    last_sent: Instant,
    last_received: Instant,
    timing: Timing,
}

/// Longest close reason sent, in bytes: a WebSocket close frame's payload
/// is at most 125 bytes, 2 of them the code (RFC 6455 §5.5).
pub const MAX_REASON: usize = 123;

/// `reason` cut to [`MAX_REASON`] bytes at a character boundary.
fn cut_reason(reason: &str) -> String {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

fn header(kind: u8, id: u32, capacity: usize) -> Vec<u8> {
    let mut message = Vec::with_capacity(5 + capacity);
    message.push(kind);
    if kind != kind::CONTROL && kind != kind::DATAGRAM {
        message.extend_from_slice(&id.to_be_bytes());
    }
    message
}

fn frame(kind: u8, id: u32, value: Option<u32>) -> Vec<u8> {
    let mut message = header(kind, id, 4);
    if let Some(value) = value {
        message.extend_from_slice(&value.to_be_bytes());
    }
    message
}

impl Mux {
    /// A new connection's multiplexer, right after admission at `now`.
    /// Stream 0 (control) is open on both sides.
    pub fn new(side: Side, now: Instant) -> Mux {
        Mux::with_timing(side, now, Timing::default())
    }

    /// [`Mux::new`] with another keep-alive and idle rule.
    pub fn with_timing(side: Side, now: Instant, timing: Timing) -> Mux {
        let mut streams = HashMap::new();
        streams.insert(CONTROL_ID, Stream::new(true));
        Mux {
            side,
            next_id: match side {
                Side::Client => 1,
                Side::Host => 2,
            },
            streams,
            rr_after: 0,
            frames: VecDeque::new(),
            datagrams: DatagramQueue::default(),
            events: VecDeque::new(),
            open_wakers: Vec::new(),
            closing: None,
            closed: None,
            last_sent: now,
            last_received: now,
            timing,
        }
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// Datagrams dropped from the full send queue so far (newest wins).
    pub fn datagrams_dropped(&self) -> u64 {
        self.datagrams.dropped()
    }

    /// Streams whose state is kept (control included).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Bytes buffered on this side: queued to send and received but unread.
    pub fn buffered_bytes(&self) -> usize {
        let streams: usize = self
            .streams
            .values()
            .map(|s| {
                s.send_queue.iter().map(Vec::len).sum::<usize>()
                    + s.recv_buf.iter().map(Bytes::len).sum::<usize>()
            })
            .sum();
        streams + self.datagrams.bytes() + self.frames.iter().map(Vec::len).sum::<usize>()
    }

    fn closed_error(&self) -> Option<StreamError> {
        self.closed.clone().map(StreamError::Closed)
    }

    /// Ends the connection: every blocked operation fails, the next
    /// transmit is the close frame (unless the peer already closed).
    fn shut(&mut self, reason: CloseReason, send_close: Option<(u16, String)>) {
        if self.closed.is_some() {
            return;
        }
        self.closed = Some(reason);
        self.closing = send_close;
        self.frames.clear();
        self.datagrams.clear();
        for stream in self.streams.values_mut() {
            stream.send_queue.clear();
            stream.wake();
        }
        for w in self.open_wakers.drain(..) {
            w.wake();
        }
    }

    /// Closes the connection from this side; the peer sees `reason`, cut to
    /// [`MAX_REASON`] bytes.
    pub fn close(&mut self, reason: &str) {
        let text = cut_reason(reason);
        self.shut(CloseReason::Local(text.clone()), Some((close_code::NORMAL, text)));
    }

    /// The peer closed the WebSocket (close frame received).
    pub fn handle_peer_close(&mut self, code: u16, reason: String) {
        self.shut(CloseReason::Peer { code, reason }, None);
    }

    /// The WebSocket failed or ended without a close frame.
    pub fn handle_lost(&mut self, why: String) {
        self.shut(CloseReason::Lost(why), None);
    }

    /// The peer broke the protocol outside the binary messages (e.g. sent
    /// a text message): closes with 1002.
    pub fn handle_violation(&mut self, what: &str) {
        self.protocol_error(format!("{what} from the peer"));
    }

    fn protocol_error(&mut self, why: String) {
        let reason = cut_reason(&why);
        self.shut(CloseReason::Protocol(why), Some((close_code::PROTOCOL_ERROR, reason)));
    }

    fn push_frame(&mut self, message: Vec<u8>) {
        if self.frames.len() >= MAX_PENDING_FRAMES {
            let reason = CloseReason::Protocol("the peer does not read its messages".into());
            self.shut(reason, Some((close_code::POLICY, "not reading".into())));
            return;
        }
        self.frames.push_back(message);
    }

    /// A ping, pong or other non-data message arrived at `now`.
    pub fn handle_activity(&mut self, now: Instant) {
        self.last_received = now;
    }

    /// One binary message arrived at `now`. A malformed message or one that
    /// breaks the flow-control rules closes the connection (1002).
    pub fn handle_message(&mut self, message: Bytes, now: Instant) {
        self.last_received = now;
        if self.closed.is_some() {
            return;
        }
        if let Err(why) = self.dispatch(message) {
            self.protocol_error(why);
        }
    }

    fn dispatch(&mut self, mut message: Bytes) -> Result<(), String> {
        let Some(&kind) = message.first() else {
            return Err("an empty message".into());
        };
        message.advance(1);
        if kind >= kind::RESERVED_FROM {
            return Ok(());
        }
        match kind {
            kind::CONTROL => return self.on_data(CONTROL_ID, message),
            kind::DATAGRAM => {
                if message.len() > MAX_DATAGRAM {
                    return Err(format!("a datagram of {} bytes", message.len()));
                }
                self.events.push_back(Event::Datagram(message));
                return Ok(());
            }
            kind::BATCH => {
                let events = &mut self.events;
                return datagrams::decode_batch(message, |d| events.push_back(Event::Datagram(d)));
            }
            _ => {}
        }
        let fixed = match kind {
            kind::OPEN | kind::FIN => 4,
            kind::DATA => return self.on_data_message(message),
            kind::RESET | kind::STOP | kind::WINDOW => 8,
            _ => return Err(format!("unknown message kind {kind:#04x}")),
        };
        if message.len() != fixed {
            return Err(format!("message kind {kind:#04x} of {} bytes", message.len() + 1));
        }
        let id = message.get_u32();
        let value = if fixed == 8 { message.get_u32() } else { 0 };
        match kind {
            kind::OPEN => self.on_open(id),
            kind::FIN => self.on_fin(id),
            kind::RESET => self.on_reset(id, value),
            kind::STOP => self.on_stop(id, value),
            _ => self.on_window(id, value),
        }
    }

    fn peer_opens(&self, id: u32) -> bool {
        id != CONTROL_ID && (id % 2 == 1) == (self.side == Side::Host)
    }

    fn on_open(&mut self, id: u32) -> Result<(), String> {
        if !self.peer_opens(id) {
            return Err(format!("the peer opened stream {id}, which is not its to open"));
        }
        if self.streams.contains_key(&id) {
            return Err(format!("the peer opened stream {id} twice"));
        }
        let open = self.streams.values().filter(|s| !s.opened_here).count();
        if open >= MAX_PEER_STREAMS {
            self.push_frame(frame(kind::STOP, id, Some(CODE_REFUSED)));
            self.push_frame(frame(kind::RESET, id, Some(CODE_REFUSED)));
            return Ok(());
        }
        self.streams.insert(id, Stream::new(false));
        self.events.push_back(Event::Accepted(id));
        Ok(())
    }

    fn on_data_message(&mut self, mut message: Bytes) -> Result<(), String> {
        if message.len() < 4 {
            return Err("a DATA message without a stream id".into());
        }
        let id = message.get_u32();
        if id == CONTROL_ID {
            return Err("DATA on stream 0 (control uses kind 0)".into());
        }
        self.on_data(id, message)
    }

    fn on_data(&mut self, id: u32, data: Bytes) -> Result<(), String> {
        // Frames for a stream whose state is gone (finished and dropped)
        // cannot carry anything anyone reads: they are ignored.
        let Some(stream) = self.streams.get_mut(&id) else { return Ok(()) };
        if stream.recv_fin || stream.recv_reset.is_some() {
            return Err(format!("data on stream {id} after its end"));
        }
        stream.recv_total += data.len() as u64;
        if stream.recv_total > stream.recv_limit {
            return Err(format!("the peer sent past its credit on stream {id}"));
        }
        if !stream.recv_handle {
            // Nobody reads it any more (STOP sent): drop the bytes.
            return Ok(());
        }
        if !data.is_empty() {
            stream.recv_buf.push_back(data);
            if let Some(w) = stream.recv_waker.take() {
                w.wake();
            }
        }
        Ok(())
    }

    fn on_fin(&mut self, id: u32) -> Result<(), String> {
        if let Some(stream) = self.streams.get_mut(&id) {
            stream.recv_fin = true;
            if let Some(w) = stream.recv_waker.take() {
                w.wake();
            }
            self.reap(id);
        }
        Ok(())
    }

    fn on_reset(&mut self, id: u32, code: u32) -> Result<(), String> {
        if let Some(stream) = self.streams.get_mut(&id) {
            if !stream.recv_fin {
                stream.recv_reset = Some(code);
                stream.recv_buf.clear();
            }
            if let Some(w) = stream.recv_waker.take() {
                w.wake();
            }
            self.reap(id);
        }
        Ok(())
    }

    fn on_stop(&mut self, id: u32, code: u32) -> Result<(), String> {
        let Some(stream) = self.streams.get_mut(&id) else { return Ok(()) };
        if stream.send_state != SendState::Done {
            stream.send_queue.clear();
            stream.send_state = SendState::Done;
            stream.send_error = Some(StreamError::Stopped(code));
            if let Some(w) = stream.send_waker.take() {
                w.wake();
            }
            self.push_frame(frame(kind::RESET, id, Some(code)));
            self.reap(id);
        }
        Ok(())
    }

    fn on_window(&mut self, id: u32, increment: u32) -> Result<(), String> {
        let Some(stream) = self.streams.get_mut(&id) else { return Ok(()) };
        stream.send_credit += u64::from(increment);
        if stream.send_credit > 1 << 40 {
            return Err(format!("credit past 1 TiB on stream {id}"));
        }
        if let Some(w) = stream.send_waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// The next datagram or accepted stream for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queues a datagram; when the queue is over [`DATAGRAM_QUEUE_BYTES`]
    /// the oldest are dropped. Never blocks.
    pub fn send_datagram(&mut self, data: Bytes) -> Result<(), StreamError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        if data.len() > MAX_DATAGRAM {
            return Err(StreamError::DatagramTooLarge(data.len()));
        }
        self.datagrams.push(data);
        Ok(())
    }

    /// Opens a stream: `Ok(Some(id))`, or `Ok(None)` when [`MAX_STREAMS`]
    /// are open (then `waker` is woken when one ends).
    pub fn open(&mut self, waker: &Waker) -> Result<Option<u32>, StreamError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let open =
            self.streams.iter().filter(|(id, s)| **id != CONTROL_ID && s.opened_here).count();
        if open >= MAX_STREAMS {
            if !self.open_wakers.iter().any(|w| w.will_wake(waker)) {
                self.open_wakers.push(waker.clone());
            }
            return Ok(None);
        }
        let id = self.next_id;
        let Some(next) = id.checked_add(2) else {
            self.close("stream ids exhausted");
            return Err(self.closed_error().unwrap_or(StreamError::Unknown));
        };
        self.next_id = next;
        self.streams.insert(id, Stream::new(true));
        self.push_frame(frame(kind::OPEN, id, None));
        Ok(Some(id))
    }

    /// Queues bytes of `buf` on stream `id` as far as the peer's credit
    /// allows: `Ok(n)` with `n > 0`, or `Ok(0)` when there is no credit (then
    /// `waker` is woken when there is). `buf` must not be empty.
    pub fn write(&mut self, id: u32, buf: &[u8], waker: &Waker) -> Result<usize, StreamError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let stream = self.streams.get_mut(&id).ok_or(StreamError::Unknown)?;
        if let Some(e) = &stream.send_error {
            return Err(e.clone());
        }
        if stream.send_state != SendState::Open {
            return Err(StreamError::Finished);
        }
        let n = buf.len().min(usize::try_from(stream.send_credit).unwrap_or(usize::MAX));
        if n == 0 {
            stream.send_waker = Some(waker.clone());
            return Ok(0);
        }
        stream.send_credit -= n as u64;
        let kind = if id == CONTROL_ID { kind::CONTROL } else { kind::DATA };
        let head = if id == CONTROL_ID { 1 } else { 5 };
        let mut rest = &buf[..n];
        // Fill the last queued message first (small writes coalesce).
        if let Some(last) = stream.send_queue.back_mut() {
            let room = (head + MAX_CHUNK).saturating_sub(last.len());
            let take = room.min(rest.len());
            last.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
        }
        for chunk in rest.chunks(MAX_CHUNK) {
            let mut message = header(kind, id, MAX_CHUNK.min(n));
            message.extend_from_slice(chunk);
            stream.send_queue.push_back(message);
        }
        Ok(n)
    }

    /// Finishes stream `id`'s send half: FIN follows the queued data.
    pub fn finish(&mut self, id: u32) -> Result<(), StreamError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let stream = self.streams.get_mut(&id).ok_or(StreamError::Unknown)?;
        if let Some(e) = &stream.send_error {
            return Err(e.clone());
        }
        if stream.send_state == SendState::Open {
            stream.send_state = SendState::Finishing;
        }
        Ok(())
    }

    /// The application dropped stream `id`'s send half: a finished half is
    /// left to drain, an unfinished one is reset ([`CODE_DROPPED`]).
    pub fn drop_send(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else { return };
        stream.send_handle = false;
        stream.send_waker = None;
        if stream.send_state == SendState::Open {
            stream.send_queue.clear();
            stream.send_state = SendState::Done;
            if self.closed.is_none() {
                self.push_frame(frame(kind::RESET, id, Some(CODE_DROPPED)));
            }
        }
        self.reap(id);
    }

    /// Reads from stream `id` into `buf` (not empty).
    pub fn read(&mut self, id: u32, buf: &mut [u8], waker: &Waker) -> Result<Read, StreamError> {
        let closed = self.closed_error();
        let stream = self.streams.get_mut(&id).ok_or(StreamError::Unknown)?;
        if let Some(code) = stream.recv_reset {
            return Err(StreamError::Reset(code));
        }
        let mut n = 0;
        while n < buf.len() {
            let Some(front) = stream.recv_buf.front_mut() else { break };
            let take = front.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&front[..take]);
            front.advance(take);
            n += take;
            if front.is_empty() {
                stream.recv_buf.pop_front();
            }
        }
        if n > 0 {
            stream.recv_unacked += n as u32;
            if stream.recv_unacked >= WINDOW_UPDATE_AT && !stream.recv_fin && closed.is_none() {
                let increment = std::mem::take(&mut stream.recv_unacked);
                stream.recv_limit += u64::from(increment);
                self.push_frame(frame(kind::WINDOW, id, Some(increment)));
            }
            return Ok(Read::Data(n));
        }
        if stream.recv_fin {
            return Ok(Read::Fin);
        }
        if let Some(e) = closed {
            return Err(e);
        }
        stream.recv_waker = Some(waker.clone());
        Ok(Read::Blocked)
    }

    /// The application dropped stream `id`'s receive half: unless the peer
    /// already ended its half, it is told to stop ([`CODE_DROPPED`]).
    pub fn drop_recv(&mut self, id: u32) {
        let Some(stream) = self.streams.get_mut(&id) else { return };
        stream.recv_handle = false;
        stream.recv_waker = None;
        stream.recv_buf.clear();
        let ended = stream.recv_fin || stream.recv_reset.is_some();
        if !ended && self.closed.is_none() {
            self.push_frame(frame(kind::STOP, id, Some(CODE_DROPPED)));
        }
        self.reap(id);
    }

    /// Forgets stream `id` if it is over, and lets a waiting opener go.
    fn reap(&mut self, id: u32) {
        if id == CONTROL_ID || !self.streams.get(&id).is_some_and(Stream::is_over) {
            return;
        }
        self.streams.remove(&id);
        for w in self.open_wakers.drain(..) {
            w.wake();
        }
    }

    /// The next message to write, in priority order: protocol messages,
    /// control bytes, datagrams, then stream data round-robin (one chunk per
    /// stream per turn), and a ping when nothing was sent for
    /// the keep-alive interval. After [`Transmit::Close`], nothing.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.closed.is_some() {
            self.frames.clear();
            return self.closing.take().map(|(code, reason)| Transmit::Close { code, reason });
        }
        let message = self.next_message();
        if let Some(message) = message {
            self.last_sent = now;
            return Some(Transmit::Message(message));
        }
        if now.saturating_duration_since(self.last_sent) >= self.timing.keep_alive {
            self.last_sent = now;
            return Some(Transmit::Ping);
        }
        None
    }

    fn next_message(&mut self) -> Option<Vec<u8>> {
        if let Some(message) = self.frames.pop_front() {
            return Some(message);
        }
        if let Some(message) = self.pop_stream(CONTROL_ID) {
            return Some(message);
        }
        if let Some(message) = self.datagrams.pop_message() {
            return Some(message);
        }
        // Round robin: the first stream with something to send after the
        // one served last.
        let mut ready: Vec<u32> = self
            .streams
            .iter()
            .filter(|&(&id, s)| {
                id != CONTROL_ID
                    && (!s.send_queue.is_empty() || s.send_state == SendState::Finishing)
            })
            .map(|(&id, _)| id)
            .collect();
        if ready.is_empty() {
            return None;
        }
        ready.sort_unstable();
        let id = ready.iter().copied().find(|&id| id > self.rr_after).unwrap_or(ready[0]);
        self.rr_after = id;
        self.pop_stream(id)
    }

    /// Stream `id`'s next DATA chunk, or its FIN once the queue is empty.
    fn pop_stream(&mut self, id: u32) -> Option<Vec<u8>> {
        let stream = self.streams.get_mut(&id)?;
        if let Some(message) = stream.send_queue.pop_front() {
            return Some(message);
        }
        if stream.send_state == SendState::Finishing {
            stream.send_state = SendState::Done;
            self.reap(id);
            return Some(frame(kind::FIN, id, None));
        }
        None
    }

    /// Whether [`Mux::poll_transmit`] has a message now (without the ping).
    pub fn wants_transmit(&self) -> bool {
        if self.closed.is_some() {
            return self.closing.is_some();
        }
        !self.frames.is_empty()
            || !self.datagrams.is_empty()
            || self
                .streams
                .values()
                .any(|s| !s.send_queue.is_empty() || s.send_state == SendState::Finishing)
    }

    /// When [`Mux::handle_timeout`] has something to do (a ping to send or
    /// the idle deadline); `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            return None;
        }
        let timing = self.timing;
        Some((self.last_sent + timing.keep_alive).min(self.last_received + timing.idle_timeout))
    }

    /// Applies the idle rule at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.closed.is_none()
            && now.saturating_duration_since(self.last_received) >= self.timing.idle_timeout
        {
            let reason = "idle timeout".to_string();
            self.shut(CloseReason::TimedOut, Some((close_code::GOING_AWAY, reason)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn t0() -> Instant {
        Instant::now()
    }

    fn noop() -> &'static Waker {
        Waker::noop()
    }

    /// Moves every pending message from `from` to `to`; returns how many.
    fn pump(from: &mut Mux, to: &mut Mux, now: Instant) -> usize {
        let mut n = 0;
        while let Some(Transmit::Message(m)) = from.poll_transmit(now) {
            to.handle_message(Bytes::from(m), now);
            n += 1;
        }
        n
    }

    fn pair() -> (Mux, Mux, Instant) {
        let now = t0();
        (Mux::new(Side::Client, now), Mux::new(Side::Host, now), now)
    }

    fn read_all(mux: &mut Mux, id: u32) -> (Vec<u8>, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match mux.read(id, &mut buf, noop()).unwrap() {
                Read::Data(n) => out.extend_from_slice(&buf[..n]),
                Read::Fin => return (out, true),
                Read::Blocked => return (out, false),
            }
        }
    }

    #[test]
    fn control_bytes_flow_both_ways_with_kind_zero() {
        let (mut c, mut h, now) = pair();
        assert_eq!(c.write(CONTROL_ID, b"hello", noop()), Ok(5));
        let Some(Transmit::Message(m)) = c.poll_transmit(now) else { panic!() };
        assert_eq!(m, b"\x00hello");
        h.handle_message(Bytes::from(m), now);
        assert_eq!(read_all(&mut h, CONTROL_ID), (b"hello".to_vec(), false));
        h.write(CONTROL_ID, b"back", noop()).unwrap();
        pump(&mut h, &mut c, now);
        assert_eq!(read_all(&mut c, CONTROL_ID).0, b"back");
    }

    #[test]
    fn streams_open_carry_data_and_finish_with_the_documented_bytes() {
        let (mut c, mut h, now) = pair();
        let id = c.open(noop()).unwrap().unwrap();
        assert_eq!(id, 1, "client ids are odd");
        c.write(id, b"abc", noop()).unwrap();
        c.finish(id).unwrap();
        let messages: Vec<_> = std::iter::from_fn(|| c.poll_transmit(now)).collect();
        assert_eq!(
            messages,
            vec![
                Transmit::Message(vec![2, 0, 0, 0, 1]),
                Transmit::Message(vec![3, 0, 0, 0, 1, b'a', b'b', b'c']),
                Transmit::Message(vec![4, 0, 0, 0, 1]),
            ]
        );
        for m in messages {
            let Transmit::Message(m) = m else { unreachable!() };
            h.handle_message(Bytes::from(m), now);
        }
        assert_eq!(h.poll_event(), Some(Event::Accepted(1)));
        assert_eq!(read_all(&mut h, 1), (b"abc".to_vec(), true));
        // The host answers on the same stream and finishes; the state goes
        // once both sides dropped their halves.
        h.write(1, b"ok", noop()).unwrap();
        h.finish(1).unwrap();
        pump(&mut h, &mut c, now);
        assert_eq!(read_all(&mut c, 1), (b"ok".to_vec(), true));
        c.drop_send(1);
        c.drop_recv(1);
        h.drop_send(1);
        h.drop_recv(1);
        assert_eq!(c.stream_count(), 1);
        assert_eq!(h.stream_count(), 1);
        assert_eq!(pump(&mut c, &mut h, now), 0, "nothing left to say: no STOP after FIN");
        // Host ids are even.
        assert_eq!(h.open(noop()).unwrap(), Some(2));
    }

    #[test]
    fn a_writer_stops_at_the_window_and_resumes_when_the_reader_reads() {
        let (mut c, mut h, now) = pair();
        let id = c.open(noop()).unwrap().unwrap();
        let big = vec![7u8; STREAM_WINDOW as usize + 1000];
        let n = c.write(id, &big, noop()).unwrap();
        assert_eq!(n, STREAM_WINDOW as usize);
        assert_eq!(c.write(id, &big[n..], noop()), Ok(0), "no credit left");
        pump(&mut c, &mut h, now);
        h.poll_event();
        let mut buf = vec![0u8; WINDOW_UPDATE_AT as usize];
        assert_eq!(h.read(id, &mut buf, noop()), Ok(Read::Data(buf.len())));
        pump(&mut h, &mut c, now);
        assert_eq!(c.write(id, &big[n..], noop()), Ok(1000));
    }

    #[test]
    fn sending_past_the_credit_is_a_protocol_error() {
        let (mut c, mut h, now) = pair();
        let id = c.open(noop()).unwrap().unwrap();
        pump(&mut c, &mut h, now);
        let mut m = vec![kind::DATA, 0, 0, 0, 1];
        m.extend(std::iter::repeat_n(0u8, MAX_CHUNK));
        for _ in 0..(STREAM_WINDOW as usize / MAX_CHUNK) {
            h.handle_message(Bytes::from(m.clone()), now);
        }
        assert!(h.close_reason().is_none());
        h.handle_message(Bytes::from(vec![kind::DATA, 0, 0, 0, id as u8, 1]), now);
        assert!(matches!(h.close_reason(), Some(CloseReason::Protocol(_))));
        assert_eq!(
            h.poll_transmit(now),
            Some(Transmit::Close {
                code: close_code::PROTOCOL_ERROR,
                reason: "the peer sent past its credit on stream 1".into()
            })
        );
        assert_eq!(h.poll_transmit(now), None);
        assert!(matches!(h.read(id, &mut [0; 4], noop()), Ok(Read::Data(_))));
    }

    #[test]
    fn malformed_messages_close_with_1002_and_reserved_kinds_are_ignored() {
        for bad in [&[][..], &[kind::OPEN, 0, 0][..], &[0x3f][..], &[kind::OPEN, 0, 0, 0, 2][..]] {
            let (_, mut h, now) = pair();
            h.handle_message(Bytes::copy_from_slice(bad), now);
            assert!(matches!(h.close_reason(), Some(CloseReason::Protocol(_))), "{bad:?}");
        }
        let (_, mut h, now) = pair();
        h.handle_message(Bytes::from_static(&[0x40, 1, 2, 3]), now);
        h.handle_message(Bytes::from_static(&[0xff]), now);
        assert_eq!(h.close_reason(), None);
    }

    #[test]
    fn control_and_datagrams_go_before_queued_file_data() {
        let (mut c, _, now) = pair();
        let id = c.open(noop()).unwrap().unwrap();
        c.write(id, &vec![1u8; 4 * MAX_CHUNK], noop()).unwrap();
        let Some(Transmit::Message(open)) = c.poll_transmit(now) else { panic!() };
        assert_eq!(open[0], kind::OPEN);
        let Some(Transmit::Message(first)) = c.poll_transmit(now) else { panic!() };
        assert_eq!(first[0], kind::DATA);
        c.send_datagram(Bytes::from_static(b"voice")).unwrap();
        c.write(CONTROL_ID, b"chat", noop()).unwrap();
        let next: Vec<u8> = (0..3)
            .map(|_| match c.poll_transmit(now) {
                Some(Transmit::Message(m)) => m[0],
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(next, vec![kind::CONTROL, kind::DATAGRAM, kind::DATA]);
    }

    #[test]
    fn streams_take_turns() {
        let (mut c, _, now) = pair();
        let a = c.open(noop()).unwrap().unwrap();
        let b = c.open(noop()).unwrap().unwrap();
        c.write(a, &vec![1u8; 3 * MAX_CHUNK], noop()).unwrap();
        c.write(b, &vec![2u8; 3 * MAX_CHUNK], noop()).unwrap();
        let mut order = Vec::new();
        while let Some(Transmit::Message(m)) = c.poll_transmit(now) {
            if m[0] == kind::DATA {
                order.push(m[4]);
            }
        }
        assert_eq!(order, vec![1, 3, 1, 3, 1, 3]);
    }

    #[test]
    fn full_datagram_queue_drops_the_oldest() {
        let (mut c, mut h, now) = pair();
        let n = DATAGRAM_QUEUE_BYTES / 1000 + 10;
        for i in 0..n {
            let mut d = vec![0u8; 1000];
            d[..4].copy_from_slice(&(i as u32).to_be_bytes());
            c.send_datagram(Bytes::from(d)).unwrap();
        }
        let kept = DATAGRAM_QUEUE_BYTES / 1000;
        assert_eq!(c.datagrams_dropped(), (n - kept) as u64);
        assert!(c.buffered_bytes() <= DATAGRAM_QUEUE_BYTES);
        pump(&mut c, &mut h, now);
        let Some(Event::Datagram(first)) = h.poll_event() else { panic!() };
        assert_eq!(&first[..4], &((n - kept) as u32).to_be_bytes(), "the newest survive");
        assert_eq!(
            c.send_datagram(Bytes::from(vec![0; MAX_DATAGRAM + 1])),
            Err(StreamError::DatagramTooLarge(MAX_DATAGRAM + 1))
        );
    }

    #[test]
    fn dropping_an_unfinished_send_half_resets_and_stop_asks_for_reset() {
        let (mut c, mut h, now) = pair();
        let id = c.open(noop()).unwrap().unwrap();
        c.write(id, b"partial", noop()).unwrap();
        pump(&mut c, &mut h, now);
        c.drop_send(id);
        pump(&mut c, &mut h, now);
        let mut buf = [0u8; 64];
        assert_eq!(h.read(id, &mut buf, noop()), Err(StreamError::Reset(CODE_DROPPED)));
        // The host stops reading a stream it opened toward the client.
        let id2 = h.open(noop()).unwrap().unwrap();
        pump(&mut h, &mut c, now);
        c.drop_recv(id2);
        pump(&mut c, &mut h, now);
        assert_eq!(h.write(id2, b"x", noop()), Err(StreamError::Stopped(CODE_DROPPED)));
        pump(&mut h, &mut c, now); // the RESET answering STOP
        c.drop_send(id2);
        assert_eq!(c.stream_count(), 2, "control and the half-open stream 1");
    }

    #[test]
    fn opens_past_the_limits_wait_or_are_refused() {
        let (mut c, mut h, now) = pair();
        for _ in 0..MAX_STREAMS {
            assert!(c.open(noop()).unwrap().is_some());
        }
        assert_eq!(c.open(noop()), Ok(None));
        // A peer that ignores the limit gets refusals, not state.
        for i in 0..(MAX_PEER_STREAMS as u32 + 5) {
            h.handle_message(Bytes::from(frame(kind::OPEN, 2 * i + 1, None)), now);
        }
        assert_eq!(h.stream_count(), 1 + MAX_PEER_STREAMS);
        let refusals = std::iter::from_fn(|| h.poll_transmit(now)).count();
        assert_eq!(refusals, 10, "a STOP and a RESET per refused stream");
    }

    #[test]
    fn a_peer_that_never_reads_our_refusals_is_dropped() {
        let (_, mut h, now) = pair();
        for i in 0..(MAX_PEER_STREAMS + MAX_PENDING_FRAMES) as u32 {
            h.handle_message(Bytes::from(frame(kind::OPEN, 2 * i + 1, None)), now);
        }
        assert!(matches!(h.close_reason(), Some(CloseReason::Protocol(_))));
        assert!(h.buffered_bytes() < 64 * 1024);
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let (mut c, _, now) = pair();
        let long = "é".repeat(100); // 200 bytes
        c.close(&long);
        let Some(Transmit::Close { code, reason }) = c.poll_transmit(now) else { panic!() };
        assert_eq!(code, close_code::NORMAL);
        assert!(reason.len() <= MAX_REASON && long.starts_with(&reason), "{reason}");
        assert_eq!(reason.len(), 122, "whole characters only");
    }

    #[test]
    fn keepalive_pings_and_the_idle_timeout_follow_the_clock() {
        let (mut c, _, now) = pair();
        assert_eq!(c.poll_transmit(now), None);
        assert_eq!(c.poll_timeout(), Some(now + KEEP_ALIVE_INTERVAL));
        let later = now + KEEP_ALIVE_INTERVAL;
        c.handle_timeout(later);
        assert_eq!(c.poll_transmit(later), Some(Transmit::Ping));
        assert_eq!(c.poll_timeout(), Some(later + KEEP_ALIVE_INTERVAL));
        c.handle_activity(now + Duration::from_secs(9));
        c.handle_timeout(now + IDLE_TIMEOUT);
        assert_eq!(c.close_reason(), None, "a pong 9 s in keeps it alive");
        let dead = now + Duration::from_secs(9) + IDLE_TIMEOUT;
        c.handle_timeout(dead);
        assert_eq!(c.close_reason(), Some(&CloseReason::TimedOut));
        assert!(matches!(c.poll_transmit(dead), Some(Transmit::Close { code: 1001, .. })));
        let mut buf = [0u8; 4];
        assert!(matches!(c.read(CONTROL_ID, &mut buf, noop()), Err(StreamError::Closed(_))));
        assert!(c.send_datagram(Bytes::from_static(b"x")).is_err());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write { host: bool, stream: usize, len: usize },
        Read { host: bool, stream: usize, max: usize },
        Finish { host: bool, stream: usize },
        Pump { to_host: bool, messages: usize },
        Datagram { host: bool, len: usize },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<bool>(), 0..4usize, 1..200_000usize).prop_map(|(host, stream, len)| Op::Write {
                host,
                stream,
                len
            }),
            (any::<bool>(), 0..4usize, 1..300_000usize).prop_map(|(host, stream, max)| Op::Read {
                host,
                stream,
                max
            }),
            (any::<bool>(), 0..4usize).prop_map(|(host, stream)| Op::Finish { host, stream }),
            (any::<bool>(), 1..50usize)
                .prop_map(|(to_host, messages)| Op::Pump { to_host, messages }),
            (any::<bool>(), 0..2000usize).prop_map(|(host, len)| Op::Datagram { host, len }),
        ]
    }

    proptest::proptest! {
        /// Whatever the interleaving of writes, reads, finishes and partial
        /// delivery, every stream delivers exactly the bytes written, in
        /// order, then EOF after FIN; no receiver buffers past its window;
        /// no side closes.
        #[test]
        fn streams_deliver_exactly_what_was_written(ops in proptest::collection::vec(op(), 1..60)) {
            let (mut c, mut h, now) = pair();
            let mut ids = vec![CONTROL_ID];
            for _ in 0..3 {
                ids.push(c.open(noop()).unwrap().unwrap());
            }
            pump(&mut c, &mut h, now);
            while h.poll_event().is_some() {}
            // [side][stream]: bytes written (sender side), bytes read.
            let mut written = vec![vec![Vec::<u8>::new(); 4]; 2];
            let mut read = vec![vec![Vec::<u8>::new(); 4]; 2];
            let mut finished = [[false; 4]; 2];
            let mut counter = 0u8;
            for op in ops {
                match op {
                    Op::Write { host, stream, len } => {
                        let side = if host { &mut h } else { &mut c };
                        if finished[host as usize][stream] {
                            continue;
                        }
                        let data: Vec<u8> = (0..len).map(|_| { counter = counter.wrapping_add(1); counter }).collect();
                        let n = side.write(ids[stream], &data, noop()).unwrap();
                        written[host as usize][stream].extend_from_slice(&data[..n]);
                    }
                    Op::Read { host, stream, max } => {
                        let side = if host { &mut h } else { &mut c };
                        let mut buf = vec![0u8; max];
                        if let Read::Data(n) = side.read(ids[stream], &mut buf, noop()).unwrap() {
                            // What this side reads, the other side wrote.
                            read[!host as usize][stream].extend_from_slice(&buf[..n]);
                        }
                    }
                    Op::Finish { host, stream } => {
                        let side = if host { &mut h } else { &mut c };
                        side.finish(ids[stream]).unwrap();
                        finished[host as usize][stream] = true;
                    }
                    Op::Pump { to_host, messages } => {
                        let (from, to) = if to_host { (&mut c, &mut h) } else { (&mut h, &mut c) };
                        for _ in 0..messages {
                            match from.poll_transmit(now) {
                                Some(Transmit::Message(m)) => to.handle_message(Bytes::from(m), now),
                                _ => break,
                            }
                        }
                    }
                    Op::Datagram { host, len } => {
                        let side = if host { &mut h } else { &mut c };
                        side.send_datagram(Bytes::from(vec![1u8; len])).unwrap();
                    }
                }
                for side in [&c, &h] {
                    proptest::prop_assert!(side.close_reason().is_none(), "{:?}", side.close_reason());
                    for s in side.streams.values() {
                        let buffered: usize = s.recv_buf.iter().map(Bytes::len).sum();
                        proptest::prop_assert!(buffered <= STREAM_WINDOW as usize);
                    }
                }
            }
            // Finish everything, then deliver and read all of it.
            for (host, side) in [(false, &mut c), (true, &mut h)] {
                for (k, &id) in ids.iter().enumerate() {
                    side.finish(id).unwrap();
                    finished[host as usize][k] = true;
                }
            }
            loop {
                let moved = pump(&mut c, &mut h, now) + pump(&mut h, &mut c, now);
                let mut progress = moved > 0;
                for (host, side) in [(false, &mut c), (true, &mut h)] {
                    for (k, &id) in ids.iter().enumerate() {
                        let mut buf = vec![0u8; 65536];
                        while let Read::Data(n) = side.read(id, &mut buf, noop()).unwrap() {
                            read[!host as usize][k].extend_from_slice(&buf[..n]);
                            progress = true;
                        }
                    }
                }
                if !progress {
                    break;
                }
            }
            for host in [false, true] {
                for k in 0..4 {
                    proptest::prop_assert_eq!(&read[host as usize][k], &written[host as usize][k]);
                    let reader = if host { &mut c } else { &mut h };
                    proptest::prop_assert_eq!(reader.read(ids[k], &mut [0u8; 8], noop()), Ok(Read::Fin));
                }
            }
        }

        /// Arbitrary messages never panic the receiver.
        #[test]
        fn arbitrary_messages_never_panic(messages in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..64), 0..50)) {
            let (mut c, mut h, now) = pair();
            c.open(noop()).unwrap();
            pump(&mut c, &mut h, now);
            for m in messages {
                h.handle_message(Bytes::from(m), now);
                while h.poll_event().is_some() {}
                while h.poll_transmit(now).is_some() {}
            }
        }
    }
}
