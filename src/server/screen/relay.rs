//! The screen-share relay's sans-IO core: one presenter per room, any number
//! of viewers.
//!
//! [`Relay`] is the core. It keeps each room's current tile set (so a
//! late viewer gets the whole screen at once) and, per viewer, only a *dirty
//! set*: which tiles changed since that viewer was last sent them. A viewer is
//! sent one message at a time, built when its previous one has been written
//! ([`Input::Ready`]) and, for tile updates, acknowledged by the viewer
//! (`ScreenAck`), from the newest version of each dirty tile. Waiting for the
//! acknowledgement keeps stale updates out of socket buffers too. A slow viewer
//! therefore skips stale versions, and a stalled one costs one bit per tile,
//! never a queue. `driver.rs` is the smol driver that owns the streams.
//!
//! A stream is a presenter's or a viewer's (its first frame says which). A
//! presenter's stream is told only about its own presentation (the grant, a
//! busy answer, the end); a viewer's stream may not present.

#![warn(missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::SessionId;
use crate::proto::text::RoomKey;
use crate::proto::{
    DecodeError, MsgType, SCREEN_BATCH_BYTES, SCREEN_MORE, ScreenBusy, ScreenClientMsg,
    ScreenHostMsg, ScreenRefused, ScreenStarted, ScreenStopReason, ScreenStopped, TileFrame,
    TileFrameHead, encode_tile_frame, screen_grid,
};

/// A viewer whose last message has not been written for this long is dropped.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

/// One screen stream, numbered by the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScreenConn(pub u64);

/// An authenticated screen connection's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    /// The session id.
    pub session: SessionId,
    /// The session token (the driver drops the stream once the directory no
    /// longer has this session with this token).
    pub token: u64,
    /// The member's name, shown as the presenter.
    pub name: String,
    /// The room's key: the presenter's viewers are this room's.
    pub room: RoomKey,
}

/// What the driver feeds [`Relay::handle`], with the current time.
#[derive(Debug)]
pub enum Input<'a> {
    /// A stream opened: who it is (checked against the directory), or why
    /// it is refused, and whether it presents (else it views).
    Hello {
        /// The connection.
        conn: ScreenConn,
        /// The session, or why authentication failed (sent as the refusal).
        who: Result<Who, String>,
        /// A presenter's stream (else a viewer's).
        presenter: bool,
    },
    /// A frame after the hello.
    Message {
        /// The connection.
        conn: ScreenConn,
        /// The frame's message type byte.
        kind: u8,
        /// The frame's payload, borrowed for the call.
        payload: &'a [u8],
    },
    /// The connection's last message has been written; it can take another.
    Ready {
        /// The connection.
        conn: ScreenConn,
    },
    /// The link closed or broke, or its session left the meeting.
    Closed {
        /// The connection.
        conn: ScreenConn,
    },
    /// Time passed (drops stalled viewers).
    Tick,
}

/// What [`Relay::poll_output`] hands the driver.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Write one frame (header added by the driver) on the connection, then
    /// report [`Input::Ready`].
    Send {
        /// The connection.
        conn: ScreenConn,
        /// The frame's message type byte ([`MsgType`] as `u8`).
        kind: u8,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Flush what was sent, then close.
    Close {
        /// The connection.
        conn: ScreenConn,
    },
}

/// The relay's bookkeeping, for tests and the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Open screen streams (authenticated).
    pub conns: usize,
    /// Rooms with someone presenting.
    pub presentations: usize,
    /// Tiles and JPEG bytes held for all current presentations.
    pub tiles_held: usize,
    /// JPEG bytes held for all current presentations.
    pub bytes_held: usize,
    /// The largest dirty set of any viewer (bounded by the tile count).
    pub max_dirty: usize,
    /// Connections with a message being written (at most one each).
    pub writing: usize,
    /// Tile updates received from presenters.
    pub frames_in: u64,
    /// Tile updates sent to viewers.
    pub updates_out: u64,
    /// Payload bytes sent to viewers (tile updates and control).
    pub bytes_out: u64,
}

/// Which tiles a viewer still needs; one bit per tile.
#[derive(Debug, Default)]
struct Dirty {
    bits: Vec<u64>,
    count: usize,
}

impl Dirty {
    fn reset(&mut self, tiles: usize) {
        self.bits.clear();
        self.bits.resize(tiles.div_ceil(64), 0);
        self.count = 0;
    }
    fn set(&mut self, i: usize) {
        if let Some(w) = self.bits.get_mut(i / 64)
            && *w & (1 << (i % 64)) == 0
        {
            *w |= 1 << (i % 64);
            self.count += 1;
        }
    }
    fn take_next(&mut self) -> Option<usize> {
        let (wi, w) = self.bits.iter_mut().enumerate().find(|(_, w)| **w != 0)?;
        let bit = w.trailing_zeros() as usize;
        *w &= !(1 << bit);
        self.count -= 1;
        Some(wi * 64 + bit)
    }
}

struct Known {
    id: u64,
    presenter: String,
    /// The screen size it was last told (a presenter's resolution changes
    /// within one presentation).
    size: (u16, u16),
}

struct Conn {
    who: Option<Who>,
    /// A presenter's stream (else a viewer's).
    presenter: bool,
    /// No message of ours is being written to it.
    ready: bool,
    writing_since: Option<Instant>,
    /// A tile update was sent and the viewer has not acknowledged it yet.
    awaiting_ack: Option<Instant>,
    /// The answer to its last refused ScreenStart.
    busy: Option<String>,
    /// The presentation it has been told about.
    known: Option<Known>,
    dirty: Dirty,
}

struct Presentation {
    id: u64,
    conn: ScreenConn,
    session: SessionId,
    name: String,
    width: u16,
    height: u16,
    tiles: Vec<Option<Arc<[u8]>>>,
    bytes: usize,
    frame: u32,
    capture_ms: u64,
    /// The presenter's last message said more tiles of its frame follow.
    partial: bool,
}

#[derive(Default)]
struct Room {
    presentation: Option<Presentation>,
    /// How the last presentation ended.
    ended: Option<(u64, ScreenStopReason)>,
    conns: BTreeSet<ScreenConn>,
}

/// The sans-IO relay core.
#[derive(Default)]
pub struct Relay {
    conns: HashMap<ScreenConn, Conn>,
    rooms: HashMap<RoomKey, Room>,
    next_id: u64,
    out: Vec<Output>,
    frames_in: u64,
    updates_out: u64,
    bytes_out: u64,
}

impl Relay {
    /// A relay with no streams.
    pub fn new() -> Relay {
        Relay::default()
    }

    /// Takes one input at time `now` (monotonic); the results wait in
    /// [`Relay::poll_output`]. A stream that breaks the protocol is refused and
    /// closed; the rest go on.
    pub fn handle(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Hello { conn, who, presenter } => self.hello(now, conn, who, presenter),
            Input::Message { conn, kind, payload } => self.message(now, conn, kind, payload),
            Input::Ready { conn } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.ready = true;
                    c.writing_since = None;
                    self.pump(now, conn);
                }
            }
            Input::Closed { conn } => self.drop_conn(now, conn, ScreenStopReason::Left),
            Input::Tick => {
                let stalled: Vec<ScreenConn> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| {
                        let since = c.writing_since.into_iter().chain(c.awaiting_ack).min();
                        since.is_some_and(|t| now >= t + STALL_LIMIT)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for conn in stalled {
                    self.drop_conn(now, conn, ScreenStopReason::Left);
                }
            }
        }
    }

    /// Everything to do, in order. Call after each `handle`.
    pub fn poll_output(&mut self) -> Option<Output> {
        if self.out.is_empty() { None } else { Some(self.out.remove(0)) }
    }

    /// Drains all outputs at once (cheaper than `poll_output` in a loop).
    pub fn drain_output(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// Authenticated connections and their sessions, so the driver can drop
    /// those whose session left the meeting.
    pub fn sessions(&self) -> Vec<(ScreenConn, SessionId, u64)> {
        self.conns
            .iter()
            .filter_map(|(id, c)| c.who.as_ref().map(|w| (*id, w.session, w.token)))
            .collect()
    }

    /// Tiles this connection still has to be sent.
    pub fn dirty_tiles(&self, conn: ScreenConn) -> Option<usize> {
        self.conns.get(&conn).map(|c| c.dirty.count)
    }

    /// Who presents in `room` (compared by [`RoomKey`]).
    pub fn presenter(&self, room: &str) -> Option<&str> {
        self.rooms.get(&RoomKey::new(room))?.presentation.as_ref().map(|p| p.name.as_str())
    }

    /// The relay's bookkeeping now.
    pub fn stats(&self) -> RelayStats {
        let pres = self.rooms.values().filter_map(|r| r.presentation.as_ref());
        RelayStats {
            conns: self.conns.len(),
            presentations: pres.clone().count(),
            tiles_held: pres.clone().map(|p| p.tiles.iter().flatten().count()).sum(),
            bytes_held: pres.map(|p| p.bytes).sum(),
            max_dirty: self.conns.values().map(|c| c.dirty.count).max().unwrap_or(0),
            writing: self.conns.values().filter(|c| !c.ready || c.awaiting_ack.is_some()).count(),
            frames_in: self.frames_in,
            updates_out: self.updates_out,
            bytes_out: self.bytes_out,
        }
    }

    fn hello(&mut self, now: Instant, conn: ScreenConn, who: Result<Who, String>, presenter: bool) {
        let who = match who {
            Ok(w) => w,
            Err(reason) => {
                let msg = ScreenHostMsg::Refused(ScreenRefused { reason });
                self.out.push(Output::Send {
                    conn,
                    kind: msg.msg_type() as u8,
                    payload: msg.payload(),
                });
                self.out.push(Output::Close { conn });
                return;
            }
        };
        if self.conns.contains_key(&conn) {
            return self.protocol_error(now, conn, "second hello on one connection");
        }
        self.rooms.entry(who.room.clone()).or_default().conns.insert(conn);
        self.conns.insert(
            conn,
            Conn {
                who: Some(who),
                presenter,
                ready: true,
                writing_since: None,
                awaiting_ack: None,
                busy: None,
                known: None,
                dirty: Dirty::default(),
            },
        );
        self.pump(now, conn);
    }

    fn message(&mut self, now: Instant, conn: ScreenConn, kind: u8, payload: &[u8]) {
        let Some(room) = self.conns.get(&conn).and_then(|c| c.who.as_ref()).map(|w| w.room.clone())
        else {
            return;
        };
        if kind == MsgType::ScreenFrame as u8 {
            return self.frame(now, conn, &room, payload);
        }
        match ScreenClientMsg::decode(kind, payload) {
            Ok(ScreenClientMsg::Start(_))
                if self.conns.get(&conn).is_some_and(|c| !c.presenter) =>
            {
                self.protocol_error(now, conn, "a viewer's stream cannot present")
            }
            Ok(ScreenClientMsg::Start(s)) => {
                let Some(sized) = (s.width > 0 && s.height > 0)
                    .then(|| screen_grid(s.width, s.height))
                    .filter(|_| {
                        s.width <= crate::proto::SCREEN_MAX_SIDE
                            && s.height <= crate::proto::SCREEN_MAX_SIDE
                    })
                else {
                    return self.protocol_error(now, conn, "screen size out of range");
                };
                let r = self.rooms.entry(room.clone()).or_default();
                match &mut r.presentation {
                    Some(p) if p.conn != conn => {
                        let presenter = p.name.clone();
                        if let Some(c) = self.conns.get_mut(&conn) {
                            c.busy = Some(presenter);
                        }
                        self.pump(now, conn);
                        return;
                    }
                    Some(p) => {
                        // The presenter's screen changed resolution: the same
                        // presentation on a new grid; every viewer is told
                        // the new geometry (a Started again) before its tiles.
                        p.width = s.width;
                        p.height = s.height;
                        p.tiles = vec![None; usize::from(sized.0) * usize::from(sized.1)];
                        p.bytes = 0;
                        p.partial = false;
                        self.pump_room(now, &room);
                        return;
                    }
                    None => {}
                }
                let Some(who) = self.conns.get(&conn).and_then(|c| c.who.clone()) else { return };
                self.next_id += 1;
                let tiles = usize::from(sized.0) * usize::from(sized.1);
                let r = self.rooms.entry(room.clone()).or_default();
                r.presentation = Some(Presentation {
                    id: self.next_id,
                    conn,
                    session: who.session,
                    name: who.name,
                    width: s.width,
                    height: s.height,
                    tiles: vec![None; tiles],
                    bytes: 0,
                    frame: 0,
                    capture_ms: 0,
                    partial: false,
                });
                self.pump_room(now, &room);
            }
            Ok(ScreenClientMsg::Stop) => {
                let presenting = self.rooms.get(&room).and_then(|r| r.presentation.as_ref());
                if presenting.is_some_and(|p| p.conn == conn) {
                    self.end(now, &room, ScreenStopReason::Stopped);
                }
            }
            Ok(ScreenClientMsg::Ack(_)) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.awaiting_ack = None;
                }
                self.pump(now, conn);
            }
            // A newer client may send types we do not know: skip them.
            Err(DecodeError::UnknownType(_)) => {}
            Err(e) => self.protocol_error(now, conn, &e.to_string()),
        }
    }

    fn frame(&mut self, now: Instant, conn: ScreenConn, room: &RoomKey, payload: &[u8]) {
        let Some(p) = self.rooms.get_mut(room).and_then(|r| r.presentation.as_mut()) else {
            // Tiles racing a stop we already processed: harmless, ignore.
            return;
        };
        if p.conn != conn {
            return;
        }
        let f = match TileFrame::parse(payload) {
            Ok(f) if (f.width, f.height) == (p.width, p.height) => f,
            Ok(f) => {
                let why = format!(
                    "tiles for a {}x{} screen in a {}x{} presentation",
                    f.width, f.height, p.width, p.height
                );
                return self.protocol_error(now, conn, &why);
            }
            Err(e) => return self.protocol_error(now, conn, &e.to_string()),
        };
        self.frames_in += 1;
        let (cols, _) = screen_grid(p.width, p.height);
        let mut changed = Vec::with_capacity(f.tiles.len());
        for t in &f.tiles {
            let i = usize::from(t.row) * usize::from(cols) + usize::from(t.col);
            let old = p.tiles[i].replace(Arc::from(t.jpeg));
            p.bytes = p.bytes + t.jpeg.len() - old.map_or(0, |o| o.len());
            changed.push(i);
        }
        p.frame = f.frame;
        p.capture_ms = f.capture_ms;
        p.partial = f.flags & SCREEN_MORE != 0;
        let id = p.id;
        let members: Vec<ScreenConn> =
            self.rooms.get(room).map(|r| r.conns.iter().copied().collect()).unwrap_or_default();
        for m in &members {
            if let Some(c) = self.conns.get_mut(m)
                && *m != conn
                && c.known.as_ref().is_some_and(|k| k.id == id)
            {
                for &i in &changed {
                    c.dirty.set(i);
                }
            }
        }
        for m in members {
            self.pump(now, m);
        }
    }

    fn protocol_error(&mut self, now: Instant, conn: ScreenConn, why: &str) {
        tracing::debug!("screen connection {conn:?}: {why}");
        let msg =
            ScreenHostMsg::Refused(ScreenRefused { reason: format!("protocol error: {why}") });
        if self.conns.get(&conn).is_some_and(|c| c.ready) {
            self.out.push(Output::Send {
                conn,
                kind: msg.msg_type() as u8,
                payload: msg.payload(),
            });
        }
        self.drop_conn(now, conn, ScreenStopReason::Error);
    }

    fn drop_conn(&mut self, now: Instant, conn: ScreenConn, reason: ScreenStopReason) {
        let Some(c) = self.conns.remove(&conn) else { return };
        self.out.push(Output::Close { conn });
        let Some(room) = c.who.map(|w| w.room) else { return };
        let presenting = self.rooms.get(&room).and_then(|r| r.presentation.as_ref());
        if presenting.is_some_and(|p| p.conn == conn) {
            self.end(now, &room, reason);
        }
        if let Some(r) = self.rooms.get_mut(&room) {
            r.conns.remove(&conn);
            if r.conns.is_empty() && r.presentation.is_none() {
                self.rooms.remove(&room);
            }
        }
    }

    fn end(&mut self, now: Instant, room: &RoomKey, reason: ScreenStopReason) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        if let Some(p) = r.presentation.take() {
            r.ended = Some((p.id, reason));
            self.pump_room(now, room);
        }
    }

    fn pump_room(&mut self, now: Instant, room: &RoomKey) {
        let members: Vec<ScreenConn> =
            self.rooms.get(room).map(|r| r.conns.iter().copied().collect()).unwrap_or_default();
        for m in members {
            self.pump(now, m);
        }
    }

    /// If `conn` can take a message and has something due, builds the most
    /// urgent one: busy answer, then stop, then start, then tiles.
    fn pump(&mut self, now: Instant, conn: ScreenConn) {
        let Some(c) = self.conns.get_mut(&conn) else { return };
        if !c.ready {
            return;
        }
        let Some(room) = c.who.as_ref().and_then(|w| self.rooms.get(&w.room)) else { return };
        // A presenter's stream hears only of its own presentation.
        let current = room.presentation.as_ref().filter(|p| !c.presenter || p.conn == conn);
        let msg: Option<(u8, Vec<u8>)> = if let Some(presenter) = c.busy.take() {
            let m = ScreenHostMsg::Busy(ScreenBusy { presenter });
            Some((m.msg_type() as u8, m.payload()))
        } else if c.known.as_ref().is_some_and(|k| current.is_none_or(|p| p.id != k.id)) {
            let k = c.known.take().expect("checked above");
            let reason = match room.ended {
                Some((id, reason)) if id == k.id => reason,
                _ => ScreenStopReason::Stopped,
            };
            c.dirty.reset(0);
            let m = ScreenHostMsg::Stopped(ScreenStopped { presenter: k.presenter, reason });
            Some((m.msg_type() as u8, m.payload()))
        } else if let Some(p) = current
            && c.known.as_ref().is_none_or(|k| k.id == p.id && k.size != (p.width, p.height))
        {
            // A presentation this viewer has not heard of yet, or the same
            // one at a new size: (re)announce it before any tile of it.
            c.known =
                Some(Known { id: p.id, presenter: p.name.clone(), size: (p.width, p.height) });
            c.dirty.reset(p.tiles.len());
            if p.conn != conn {
                for (i, t) in p.tiles.iter().enumerate() {
                    if t.is_some() {
                        c.dirty.set(i);
                    }
                }
            }
            let m = ScreenHostMsg::Started(ScreenStarted {
                presenter: p.name.clone(),
                session: p.session,
                width: p.width,
                height: p.height,
            });
            Some((m.msg_type() as u8, m.payload()))
        } else if let (Some(p), true, None) = (current, c.dirty.count > 0, c.awaiting_ack) {
            let (cols, _) = screen_grid(p.width, p.height);
            let mut picked = Vec::new();
            let mut bytes = 0;
            while bytes < SCREEN_BATCH_BYTES {
                let Some(i) = c.dirty.take_next() else { break };
                if let Some(t) = &p.tiles[i] {
                    bytes += t.len();
                    picked.push((
                        (i % usize::from(cols)) as u16,
                        (i / usize::from(cols)) as u16,
                        t,
                    ));
                }
            }
            let more = c.dirty.count > 0 || p.partial;
            let head = TileFrameHead {
                frame: p.frame,
                capture_ms: p.capture_ms,
                width: p.width,
                height: p.height,
                flags: if more { SCREEN_MORE } else { 0 },
            };
            let mut payload = Vec::with_capacity(bytes + picked.len() * 8 + 32);
            encode_tile_frame(head, picked.iter().map(|(x, y, t)| (*x, *y, &t[..])), &mut payload);
            self.updates_out += 1;
            c.awaiting_ack = Some(now);
            Some((MsgType::ScreenFrame as u8, payload))
        } else {
            None
        };
        if let Some((kind, payload)) = msg {
            self.bytes_out += payload.len() as u64;
            c.ready = false;
            c.writing_since = Some(now);
            self.out.push(Output::Send { conn, kind, payload });
        }
    }
}

#[cfg(test)]
#[path = "relay_tests.rs"]
mod tests;
