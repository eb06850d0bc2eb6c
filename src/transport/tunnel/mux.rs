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

pub use super::events::{CloseReason, Event, Read, Side, StreamError, Transmit, close_code};
use super::stream::{SendState, Stream};

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
#[path = "mux_tests.rs"]
mod tests;
