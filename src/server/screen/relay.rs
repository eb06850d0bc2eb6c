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

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::proto::{
    DecodeError, MsgType, SCREEN_BATCH_BYTES, SCREEN_MORE, ScreenBusy, ScreenClientMsg,
    ScreenHostMsg, ScreenRefused, ScreenStarted, ScreenStopReason, ScreenStopped, TileFrame,
    TileFrameHead, encode_tile_frame, screen_grid,
};

/// A viewer whose last message has not been written for this long is dropped.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ScreenConn(pub u64);

/// An authenticated screen connection's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Who {
    pub session: u32,
    pub token: u64,
    pub name: String,
    pub room: String,
}

#[derive(Debug)]
pub enum Input<'a> {
    /// A stream opened: who it is (checked against the directory), or why
    /// it is refused, and whether it presents (else it views).
    Hello { conn: ScreenConn, who: Result<Who, String>, presenter: bool },
    /// A frame after the hello.
    Message { conn: ScreenConn, kind: u8, payload: &'a [u8] },
    /// The connection's last message has been written; it can take another.
    Ready { conn: ScreenConn },
    /// The link closed or broke, or its session left the meeting.
    Closed { conn: ScreenConn },
    /// Time passed (drops stalled viewers).
    Tick,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Send {
        conn: ScreenConn,
        kind: u8,
        payload: Vec<u8>,
    },
    /// Flush what was sent, then close.
    Close {
        conn: ScreenConn,
    },
}

/// The relay's bookkeeping, for tests and the operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    pub conns: usize,
    pub presentations: usize,
    /// Tiles and JPEG bytes held for all current presentations.
    pub tiles_held: usize,
    pub bytes_held: usize,
    /// The largest dirty set of any viewer (bounded by the tile count).
    pub max_dirty: usize,
    /// Connections with a message being written (at most one each).
    pub writing: usize,
    pub frames_in: u64,
    pub updates_out: u64,
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
    session: u32,
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
    rooms: HashMap<String, Room>,
    next_id: u64,
    out: Vec<Output>,
    frames_in: u64,
    updates_out: u64,
    bytes_out: u64,
}

impl Relay {
    pub fn new() -> Relay {
        Relay::default()
    }

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
    pub fn sessions(&self) -> Vec<(ScreenConn, u32, u64)> {
        self.conns
            .iter()
            .filter_map(|(id, c)| c.who.as_ref().map(|w| (*id, w.session, w.token)))
            .collect()
    }

    /// Tiles this connection still has to be sent.
    pub fn dirty_tiles(&self, conn: ScreenConn) -> Option<usize> {
        self.conns.get(&conn).map(|c| c.dirty.count)
    }

    /// Who presents in `room`.
    pub fn presenter(&self, room: &str) -> Option<&str> {
        self.rooms.get(room)?.presentation.as_ref().map(|p| p.name.as_str())
    }

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

    fn frame(&mut self, now: Instant, conn: ScreenConn, room: &str, payload: &[u8]) {
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

    fn end(&mut self, now: Instant, room: &str, reason: ScreenStopReason) {
        let Some(r) = self.rooms.get_mut(room) else { return };
        if let Some(p) = r.presentation.take() {
            r.ended = Some((p.id, reason));
            self.pump_room(now, room);
        }
    }

    fn pump_room(&mut self, now: Instant, room: &str) {
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
mod tests {
    use super::*;
    use crate::media::screen::{Canvas, FrameRef, TestScreen, TileEncoder};
    use crate::proto::TileFrame;

    const W: u16 = 320;
    const H: u16 = 200;

    fn who(session: u32, name: &str) -> Result<Who, String> {
        Ok(Who { session, token: 1, name: name.into(), room: "r".into() })
    }

    /// Drives a relay on a virtual clock and records what each conn was sent.
    struct Harness {
        relay: Relay,
        now: Instant,
        sent: HashMap<ScreenConn, Vec<(u8, Vec<u8>)>>,
        closed: Vec<ScreenConn>,
        /// Connections that acknowledge every message at once.
        auto_ready: BTreeSet<ScreenConn>,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                relay: Relay::new(),
                now: Instant::now(),
                sent: HashMap::new(),
                closed: Vec::new(),
                auto_ready: BTreeSet::new(),
            }
        }
        fn input(&mut self, input: Input<'_>) {
            self.relay.handle(self.now, input);
            loop {
                let outs: Vec<Output> = self.relay.drain_output().collect();
                if outs.is_empty() {
                    break;
                }
                for o in outs {
                    match o {
                        Output::Send { conn, kind, payload } => {
                            self.sent.entry(conn).or_default().push((kind, payload));
                            if self.auto_ready.contains(&conn) {
                                self.relay.handle(self.now, Input::Ready { conn });
                                if kind == MsgType::ScreenFrame as u8 {
                                    let ack =
                                        ScreenClientMsg::Ack(crate::proto::ScreenAck { frame: 0 });
                                    let payload = ack.payload();
                                    let kind = ack.msg_type() as u8;
                                    self.relay.handle(
                                        self.now,
                                        Input::Message { conn, kind, payload: &payload },
                                    );
                                }
                            }
                        }
                        Output::Close { conn } => self.closed.push(conn),
                    }
                }
            }
        }
        fn take(&mut self, conn: ScreenConn) -> Vec<(u8, Vec<u8>)> {
            self.sent.remove(&conn).unwrap_or_default()
        }
        fn start(&mut self, conn: ScreenConn) {
            let p = ScreenClientMsg::Start(crate::proto::ScreenStart { width: W, height: H });
            self.input(Input::Message { conn, kind: 0x31, payload: &p.payload() });
        }
    }

    fn host_msgs(sent: &[(u8, Vec<u8>)]) -> Vec<ScreenHostMsg> {
        sent.iter().filter_map(|(k, p)| ScreenHostMsg::decode(*k, p).ok()).collect()
    }

    fn paint(canvas: &mut Option<Canvas>, sent: &[(u8, Vec<u8>)]) -> usize {
        let mut tiles = 0;
        for (k, p) in sent {
            if *k == 0x30 {
                let f = TileFrame::parse(p).unwrap();
                let c = canvas.get_or_insert_with(|| {
                    Canvas::new(usize::from(f.width), usize::from(f.height)).unwrap()
                });
                for t in f.tiles {
                    c.apply(t.col, t.row, t.jpeg).unwrap();
                    tiles += 1;
                }
            }
        }
        tiles
    }

    fn send_frame(
        h: &mut Harness,
        conn: ScreenConn,
        enc: &mut TileEncoder,
        f: &FrameRef<'_>,
        n: u32,
    ) {
        let tiles = enc.encode(f).unwrap();
        let head =
            TileFrameHead { frame: n, capture_ms: u64::from(n), width: W, height: H, flags: 0 };
        let mut p = Vec::new();
        encode_tile_frame(head, tiles.iter().map(|t| (t.col, t.row, &t.jpeg[..])), &mut p);
        h.input(Input::Message { conn, kind: 0x30, payload: &p });
    }

    #[test]
    fn viewers_follow_late_joiners_get_everything_slow_ones_skip_stale_tiles() {
        let (pres, fast, slow, late) = (ScreenConn(1), ScreenConn(2), ScreenConn(3), ScreenConn(4));
        let mut h = Harness::new();
        h.auto_ready.extend([pres, fast]);
        h.input(Input::Hello { conn: pres, who: who(1, "ann"), presenter: true });
        h.input(Input::Hello { conn: fast, who: who(2, "bob"), presenter: false });
        h.input(Input::Hello { conn: slow, who: who(3, "cy"), presenter: false });
        h.start(pres);
        assert!(
            matches!(&host_msgs(&h.take(pres))[..], [ScreenHostMsg::Started(s)] if s.presenter == "ann")
        );
        // The slow viewer got Started and has not acknowledged it yet.
        assert_eq!(host_msgs(&h.take(slow)).len(), 1);

        let mut screen = TestScreen::new(usize::from(W), usize::from(H));
        let mut enc = TileEncoder::new(usize::from(W), usize::from(H), 90).unwrap();
        let (mut fast_c, mut slow_c) = (None, None);
        let tile_count = 5 * 4;
        for n in 1..=20u32 {
            let f = screen.frame(u64::from(n));
            send_frame(&mut h, pres, &mut enc, &f, n);
            paint(&mut fast_c, &h.take(fast));
            let (max, _) = fast_c.as_ref().unwrap().compare(&f);
            assert!(max < 64, "fast viewer matches frame {n}: max channel error {max}");
            // The stalled viewer's backlog is a set of tiles, never a queue.
            assert!(h.relay.dirty_tiles(slow).unwrap() <= tile_count);
        }
        assert!(h.take(slow).is_empty(), "nothing sent while its write is pending");
        // The slow viewer catches up in one message holding only the newest tiles.
        h.input(Input::Ready { conn: slow });
        let sent = h.take(slow);
        assert_eq!(sent.len(), 1);
        let painted = paint(&mut slow_c, &sent);
        assert!(painted <= tile_count, "{painted} tiles: each at most once");
        let f = TileFrame::parse(&sent[0].1).unwrap();
        assert_eq!(f.frame, 20, "it carries the newest frame");
        let last = screen.frame(20);
        assert!(slow_c.as_ref().unwrap().compare(&last).0 < 64);

        // A late joiner gets the whole current screen at once.
        h.input(Input::Hello { conn: late, who: who(4, "dee"), presenter: false });
        h.input(Input::Ready { conn: late });
        let mut late_c = None;
        let sent = h.take(late);
        assert!(matches!(host_msgs(&sent)[..], [ScreenHostMsg::Started(_)]));
        paint(&mut late_c, &sent);
        assert!(late_c.as_ref().unwrap().compare(&last).0 < 64);
        assert!(h.relay.stats().tiles_held <= tile_count);
    }

    #[test]
    fn a_resolution_change_keeps_the_presentation_and_tells_viewers_the_new_size() {
        let (pres, v) = (ScreenConn(1), ScreenConn(2));
        let mut h = Harness::new();
        h.auto_ready.extend([pres, v]);
        h.input(Input::Hello { conn: pres, who: who(1, "ann"), presenter: true });
        h.input(Input::Hello { conn: v, who: who(2, "bob"), presenter: false });
        h.start(pres);
        h.take(v);
        let mut screen = TestScreen::new(usize::from(W), usize::from(H));
        let mut enc = TileEncoder::new(usize::from(W), usize::from(H), 90).unwrap();
        send_frame(&mut h, pres, &mut enc, &screen.frame(1), 1);
        h.take(v);
        // The presenter announces its new size on the same connection.
        let (w2, h2) = (200u16, 120u16);
        let start = ScreenClientMsg::Start(crate::proto::ScreenStart { width: w2, height: h2 });
        h.input(Input::Message { conn: pres, kind: 0x31, payload: &start.payload() });
        let started = ScreenHostMsg::Started(ScreenStarted {
            presenter: "ann".into(),
            session: 1,
            width: w2,
            height: h2,
        });
        assert_eq!(host_msgs(&h.take(v)), vec![started], "no Stopped: the same presentation");
        assert_eq!(h.relay.presenter("r"), Some("ann"));
        assert_eq!(h.relay.stats().tiles_held, 0, "the old grid's tiles are gone");
        // Tiles of the new size are relayed; the old size is now an error.
        screen = TestScreen::new(usize::from(w2), usize::from(h2));
        let mut enc2 = TileEncoder::new(usize::from(w2), usize::from(h2), 90).unwrap();
        let f = screen.frame(2);
        let tiles = enc2.encode(&f).unwrap();
        let head = TileFrameHead { frame: 2, capture_ms: 2, width: w2, height: h2, flags: 0 };
        let mut payload = Vec::new();
        encode_tile_frame(head, tiles.iter().map(|t| (t.col, t.row, &t.jpeg[..])), &mut payload);
        h.input(Input::Message { conn: pres, kind: 0x30, payload: &payload });
        let mut canvas = None;
        paint(&mut canvas, &h.take(v));
        let c = canvas.expect("tiles of the new size arrived");
        assert_eq!((c.width, c.height), (usize::from(w2), usize::from(h2)));
        assert!(c.compare(&f).0 < 64);
        // A late viewer is told the current size only.
        let late = ScreenConn(3);
        h.auto_ready.insert(late);
        h.input(Input::Hello { conn: late, who: who(3, "cy"), presenter: false });
        assert!(matches!(
            host_msgs(&h.take(late))[..],
            [ScreenHostMsg::Started(ScreenStarted { width: 200, height: 120, .. })]
        ));
    }

    #[test]
    fn one_presenter_at_a_time_and_stop_reaches_everyone() {
        let (a, b, v) = (ScreenConn(1), ScreenConn(2), ScreenConn(3));
        let mut h = Harness::new();
        h.auto_ready.extend([a, b, v]);
        for (c, s, n) in [(a, 1, "ann"), (b, 2, "bob"), (v, 3, "cy")] {
            h.input(Input::Hello { conn: c, who: who(s, n), presenter: n != "cy" });
        }
        h.start(a);
        h.start(b);
        // A presenter's stream hears only of its own presentation: no
        // Started for ann's, just the busy answer.
        assert_eq!(
            host_msgs(&h.take(b)),
            vec![ScreenHostMsg::Busy(ScreenBusy { presenter: "ann".into() })]
        );
        assert_eq!(h.relay.presenter("r"), Some("ann"));
        assert!(
            matches!(&host_msgs(&h.take(a))[..], [ScreenHostMsg::Started(s)] if s.session == 1),
            "ann's grant"
        );
        h.take(v);
        h.input(Input::Message { conn: a, kind: 0x32, payload: &[] });
        let stopped = ScreenHostMsg::Stopped(ScreenStopped {
            presenter: "ann".into(),
            reason: ScreenStopReason::Stopped,
        });
        assert_eq!(host_msgs(&h.take(v)), vec![stopped.clone()]);
        assert!(h.take(b).is_empty(), "bob never heard of ann's presentation");
        assert_eq!(host_msgs(&h.take(a)), vec![stopped]);
        // Now bob may present; ann leaving is then irrelevant, bob leaving is not.
        h.start(b);
        h.take(v);
        h.input(Input::Closed { conn: a });
        assert!(h.take(v).is_empty());
        h.input(Input::Closed { conn: b });
        assert_eq!(
            host_msgs(&h.take(v)),
            vec![ScreenHostMsg::Stopped(ScreenStopped {
                presenter: "bob".into(),
                reason: ScreenStopReason::Left,
            })]
        );
        assert_eq!(h.relay.stats().presentations, 0);
    }

    #[test]
    fn refusals_protocol_errors_and_stalls_close_the_connection() {
        let mut h = Harness::new();
        h.input(Input::Hello {
            conn: ScreenConn(1),
            who: Err("wrong token".into()),
            presenter: false,
        });
        assert!(
            matches!(&host_msgs(&h.take(ScreenConn(1)))[..], [ScreenHostMsg::Refused(r)] if r.reason == "wrong token")
        );
        assert_eq!(h.closed, [ScreenConn(1)]);

        // Tiles outside the grid end the presentation and the connection.
        let (p, v) = (ScreenConn(2), ScreenConn(3));
        h.auto_ready.extend([p]);
        h.input(Input::Hello { conn: p, who: who(1, "ann"), presenter: true });
        h.input(Input::Hello { conn: v, who: who(2, "bob"), presenter: false });
        h.start(p);
        let mut bad = Vec::new();
        let head = TileFrameHead { frame: 1, capture_ms: 1, width: W + 64, height: H, flags: 0 };
        encode_tile_frame(head, [(0u16, 0u16, &b"x"[..])], &mut bad);
        h.input(Input::Message { conn: p, kind: 0x30, payload: &bad });
        assert!(h.closed.contains(&p));
        assert_eq!(h.relay.stats().presentations, 0);

        // A viewer's stream that asks to present is refused and closed.
        let nosy = ScreenConn(9);
        h.input(Input::Hello { conn: nosy, who: who(9, "eve"), presenter: false });
        let start = ScreenClientMsg::Start(crate::proto::ScreenStart { width: W, height: H });
        h.input(Input::Message { conn: nosy, kind: 0x31, payload: &start.payload() });
        assert!(
            matches!(&host_msgs(&h.take(nosy))[..], [ScreenHostMsg::Refused(r)] if r.reason.contains("cannot present"))
        );
        assert!(h.closed.contains(&nosy));

        // The viewer never acknowledged Started: after the stall limit it goes.
        h.now += STALL_LIMIT;
        h.input(Input::Tick);
        assert!(h.closed.contains(&v));
        assert_eq!(h.relay.stats().conns, 0);
    }
}
