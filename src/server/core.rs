//! The host's control plane as a sans-IO state machine.
//!
//! Inputs (a connection opened, a message arrived, a connection closed, time
//! passed, shutdown) go in through [`Host::handle`] together with the current
//! time; messages to send and connections to close come out of
//! [`Host::poll_output`]. Nothing here touches a socket, spawns, or reads a
//! clock, so tests drive an hour of meeting in milliseconds.

#![warn(missing_docs)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use crate::proto::{
    ChatMessage, ChatOutcome, ChatResult, ChatSend, ClientMsg, Control, ControlNotice,
    ControlRequest, ControlResult, Disconnect, DisconnectCode, HostMsg, HostMute, MediaState,
    Member, PROTOCOL_VERSION, Presence, PresenceChange, RaisedHand, RefuseCode, Refused, Register,
    RoomInfo, RoomState, UserList, Welcome, limits, text,
};
use text::RoomKey;

#[path = "core_io.rs"]
mod io;
pub use io::{ConnId, HostConfig, HostEvent, Input, Output, SessionId, Stats};

struct Conn {
    peer: IpAddr,
    opened: Instant,
    last_seen: Instant,
    session: Option<SessionId>,
    /// The room admission let this connection into ([`Input::Admitted`]).
    admitted: Option<String>,
}

struct Session {
    token: u64,
    room: RoomKey,
    conn: ConnId,
    member: Member,
    /// Registered with the host's key (on its latest Register).
    host: bool,
    co_host: bool,
    /// Raised hand: when (Unix ms).
    hand: Option<u64>,
    /// Muted by the host: `Some(may_unmute)` until they turn the mic on.
    host_mute: Option<bool>,
    /// Camera stopped by the host, until they start it again.
    video_stopped: bool,
}

struct Room {
    /// The room's name as first typed; lookups use its [`RoomKey`].
    display: String,
    /// In join order.
    members: Vec<SessionId>,
    history: VecDeque<ChatMessage>,
    locked: bool,
    recording: bool,
    /// Co-hosts in the order they were named.
    co_hosts: Vec<SessionId>,
    /// Removed members, refused until the host lets them back.
    removed: Vec<Removal>,
}

/// A removed member: refused when any of token, name or (non-loopback)
/// address matches.
struct Removal {
    token: u64,
    name_key: String,
    ip: IpAddr,
}

/// Who asked for a control.
#[derive(Clone, Copy)]
enum Actor {
    Member(SessionId),
    Console,
}

/// A member whose link was dropped or timed out, remembered so that their
/// client, rejoining with its token after the host already let go, gets
/// the same session back: what was addressed to the member (a private
/// file) follows them.
struct Departed {
    session: SessionId,
    token: u64,
    room: RoomKey,
    name_key: String,
}

/// How many departed members are remembered (oldest forgotten first).
const DEPARTED_KEPT: usize = 1024;

/// The control plane: connections, sessions, rooms, chat and host
/// controls. Feed it with [`Host::handle`], drain [`Host::poll_output`], and
/// call `handle(now, Input::Timeout)` at [`Host::poll_timeout`].
pub struct Host {
    config: HostConfig,
    departed: VecDeque<Departed>,
    /// Wall-clock time (Unix ms) at `started`, for stamping chat.
    started: Instant,
    started_unix_ms: u64,
    conns: HashMap<ConnId, Conn>,
    sessions: HashMap<SessionId, Session>,
    rooms: BTreeMap<RoomKey, Room>,
    next_session: u32,
    next_msg: u64,
    chat_messages: u64,
    out: VecDeque<Output>,
    shutting_down: bool,
}

/// The key names are compared by (rooms: [`RoomKey`]): case-insensitive and
/// confusable-insensitive (`alice`, `ALICE` and `аlice` with a Cyrillic а are
/// one name), see [`text::confusable_key`].
fn key(s: &str) -> String {
    text::confusable_key(s)
}

#[path = "core_controls.rs"]
mod controls;

impl Host {
    /// A host with no connections. `now` is the driver's monotonic clock and
    /// `now_unix_ms` the wall clock at the same moment (milliseconds since the
    /// Unix epoch): chat and hands are stamped from the two, so the core never
    /// reads a clock itself.
    pub fn new(config: HostConfig, now: Instant, now_unix_ms: u64) -> Host {
        Host {
            config,
            departed: VecDeque::new(),
            started: now,
            started_unix_ms: now_unix_ms,
            conns: HashMap::new(),
            sessions: HashMap::new(),
            rooms: BTreeMap::new(),
            next_session: 1,
            next_msg: 1,
            chat_messages: 0,
            out: VecDeque::new(),
            shutting_down: false,
        }
    }

    /// The next output, oldest first; `None` when there is nothing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the driver should next feed [`Input::Timeout`].
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conns.values().map(|c| self.deadline(c)).min()
    }

    /// The one place a connection's deadline is computed: the poll and the
    /// check must agree, or the driver would spin on a deadline in the past.
    /// Registration must finish within its timeout of connecting, whatever
    /// else the peer sends meanwhile.
    fn deadline(&self, c: &Conn) -> Instant {
        match c.session {
            Some(_) => c.last_seen + self.config.idle_timeout,
            None => c.opened + self.config.register_timeout,
        }
    }

    /// Counts for the status line.
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.conns.len(),
            rooms: self.rooms.len(),
            members: self.sessions.len(),
            chat_messages: self.chat_messages,
        }
    }

    /// Every room with its display name and member count, sorted by room key
    /// (what discovery beacons carry).
    pub fn rooms(&self) -> Vec<RoomInfo> {
        self.rooms
            .values()
            .map(|r| RoomInfo { name: r.display.clone(), members: r.members.len() as u32 })
            .collect()
    }

    /// Takes one input at time `now` (monotonic, never earlier than the last
    /// call's); the results wait in [`Host::poll_output`]. Bad client input
    /// refuses or drops that client; it never panics.
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected { conn, peer } => {
                if self.shutting_down {
                    self.out.push_back(Output::Close { conn });
                    return;
                }
                self.conns.insert(
                    conn,
                    Conn { peer, opened: now, last_seen: now, session: None, admitted: None },
                );
            }
            Input::Admitted { conn, room } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.admitted = Some(room);
                }
            }
            Input::Message { conn, msg } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return;
                };
                c.last_seen = now;
                self.on_message(now, conn, msg);
            }
            Input::Closed { conn, error } => {
                let change =
                    if error.is_some() { PresenceChange::Dropped } else { PresenceChange::Left };
                self.drop_conn(conn, change, None);
            }
            Input::TooSlow { conn } => {
                let notice = Disconnect {
                    code: DisconnectCode::TooSlow,
                    reason: "you were not reading fast enough".into(),
                };
                self.drop_conn(conn, PresenceChange::Dropped, Some(notice));
            }
            Input::WrongVersion { conn, got } => match self.conns.get(&conn).map(|c| c.session) {
                Some(None) => self.refuse(conn, RefuseCode::Version, version_mismatch(got)),
                // Already registered: leave properly, so the room is told.
                Some(Some(_)) => self.protocol_error(conn, &version_mismatch(got)),
                None => {}
            },
            Input::Malformed { conn, error } => self.protocol_error(conn, &error),
            Input::Deliver { to, msg } => {
                if let HostMsg::FileOffered(file) = &msg {
                    let room = to.iter().find_map(|s| self.sessions.get(s)).map(|s| &s.room);
                    if let (false, Some(room)) =
                        (file.private(), room.and_then(|r| self.rooms.get(r)))
                    {
                        let event = HostEvent::FileOffered {
                            room: room.display.clone(),
                            file: file.clone(),
                        };
                        self.out.push_back(Output::Event(event));
                    }
                }
                let conns =
                    to.iter().filter_map(|s| self.sessions.get(s)).map(|s| s.conn).collect();
                self.send(conns, msg);
            }
            Input::Console { control } => {
                let text = match self.on_console(now, control) {
                    Ok(done) => done,
                    Err(refused) => format!("refused: {refused}"),
                };
                self.out.push_back(Output::Event(HostEvent::Console(text)));
            }
            Input::Timeout => self.on_timeout(now),
            Input::Shutdown => {
                self.shutting_down = true;
                let all: Vec<ConnId> = self.conns.keys().copied().collect();
                if !all.is_empty() {
                    self.send(
                        all.clone(),
                        HostMsg::Disconnect(Disconnect {
                            code: DisconnectCode::HostShutdown,
                            reason: "the host is shutting down".into(),
                        }),
                    );
                }
                for conn in all {
                    self.out.push_back(Output::Close { conn });
                }
                for room in self.rooms.values().filter(|r| r.recording) {
                    self.out.push_back(Output::Event(HostEvent::Recording {
                        room: room.display.clone(),
                        on: false,
                    }));
                }
                self.conns.clear();
                self.sessions.clear();
                self.rooms.clear();
            }
        }
    }

    fn send(&mut self, to: Vec<ConnId>, msg: HostMsg) {
        if !to.is_empty() {
            self.out.push_back(Output::Send { to, msg });
        }
    }

    fn on_message(&mut self, now: Instant, conn: ConnId, msg: ClientMsg) {
        let session = self.conns.get(&conn).and_then(|c| c.session);
        match (msg, session) {
            (ClientMsg::Register(reg), None) => self.on_register(conn, reg),
            (ClientMsg::Heartbeat, _) => self.send(vec![conn], HostMsg::Heartbeat),
            (ClientMsg::Leave(_), _) => {
                self.drop_conn(conn, PresenceChange::Left, None);
            }
            (ClientMsg::MediaState(state), Some(sid)) => self.on_media_state(sid, state),
            (ClientMsg::Chat(chat), Some(sid)) => self.on_chat(now, conn, sid, chat),
            (ClientMsg::Control(req), Some(sid)) => self.on_control_request(now, conn, sid, req),
            (ClientMsg::Register(_), Some(_)) => self.protocol_error(conn, "registered twice"),
            (_, None) => self.protocol_error(conn, "the first message must be Register"),
        }
    }

    fn protocol_error(&mut self, conn: ConnId, why: &str) {
        let notice = Disconnect { code: DisconnectCode::ProtocolError, reason: why.into() };
        self.drop_conn(conn, PresenceChange::Dropped, Some(notice));
    }

    fn refuse(&mut self, conn: ConnId, code: RefuseCode, reason: String) {
        if let Some(c) = self.conns.remove(&conn) {
            self.out.push_back(Output::Event(HostEvent::Refused {
                ip: c.peer,
                reason: reason.clone(),
            }));
        }
        self.send(
            vec![conn],
            HostMsg::Refused(Refused { code, host_version: PROTOCOL_VERSION, reason }),
        );
        self.out.push_back(Output::Close { conn });
    }

    fn on_register(&mut self, conn: ConnId, reg: Register) {
        if reg.version != PROTOCOL_VERSION {
            return self.refuse(conn, RefuseCode::Version, version_mismatch(reg.version));
        }
        let name = match text::label(&reg.name, "your name", limits::NAME_CHARS) {
            Ok(name) => name,
            Err(e) => return self.refuse(conn, RefuseCode::BadName, e.to_string()),
        };
        let room_name = match text::normalize(&reg.room).as_str() {
            "" => text::DEFAULT_ROOM.to_string(),
            _ => match text::label(&reg.room, "the meeting id", limits::ROOM_CHARS) {
                Ok(room) => room,
                Err(e) => return self.refuse(conn, RefuseCode::BadRoom, e.to_string()),
            },
        };
        let room_key = RoomKey::new(&room_name);
        let Some((peer, admitted)) = self.conns.get(&conn).map(|c| (c.peer, c.admitted.clone()))
        else {
            return;
        };
        if let Some(admitted) = admitted
            && RoomKey::new(&admitted) != room_key
        {
            let reason = format!(
                "you were let in to meeting \"{}\" but asked to join \"{room_name}\"; join the meeting you were let in to",
                crate::proto::text::visible(&admitted)
            );
            return self.refuse(conn, RefuseCode::BadRoom, reason);
        }
        let is_host = self.config.host_key.is_some() && reg.host_key == self.config.host_key;

        // A reconnecting client takes its session over from the dead link.
        let rejoin = reg.rejoin_token.and_then(|token| {
            self.sessions.iter().find_map(|(sid, s)| {
                (s.token == token && s.room == room_key && key(&s.member.name) == key(&name))
                    .then_some(*sid)
            })
        });
        if !is_host && let Some(room) = self.rooms.get(&room_key) {
            let name_key = key(&name);
            let removed = room.removed.iter().any(|r| {
                Some(r.token) == reg.rejoin_token
                    || r.name_key == name_key
                    || (r.ip == peer && !peer.is_loopback())
            });
            if removed {
                let reason = format!(
                    "you were removed from meeting \"{}\"; only the host can let you back in",
                    room.display
                );
                return self.refuse(conn, RefuseCode::Removed, reason);
            }
            let returning = reg.rejoin_token.is_some_and(|token| {
                self.departed
                    .iter()
                    .any(|d| d.token == token && d.room == room_key && d.name_key == name_key)
            });
            if room.locked && rejoin.is_none() && !returning {
                let reason = format!(
                    "meeting \"{}\" is locked: the host is letting nobody new in",
                    room.display
                );
                return self.refuse(conn, RefuseCode::Locked, reason);
            }
        }
        let sid = match rejoin {
            Some(sid) => {
                let s = self.sessions.get_mut(&sid).expect("found above");
                let old = std::mem::replace(&mut s.conn, conn);
                s.member.ip = peer.to_string();
                s.host = is_host;
                let event = HostEvent::Rejoined {
                    session: sid,
                    name: s.member.name.clone(),
                    room: room_name.clone(),
                    ip: peer,
                };
                if self.conns.remove(&old).is_some() {
                    self.send(
                        vec![old],
                        HostMsg::Disconnect(Disconnect {
                            code: DisconnectCode::Replaced,
                            reason: "you reconnected on another link".into(),
                        }),
                    );
                    self.out.push_back(Output::Close { conn: old });
                }
                self.out.push_back(Output::Event(event));
                sid
            }
            None => {
                // The host let go of this member (timed out, link dropped)
                // and they come back with their token: same session again.
                let returning = reg.rejoin_token.and_then(|token| {
                    let i = self.departed.iter().position(|d| {
                        d.token == token && d.room == room_key && d.name_key == key(&name)
                    })?;
                    let d = self.departed.remove(i)?;
                    (!self.sessions.contains_key(&d.session)).then_some(d)
                });
                let (sid, token) = match returning {
                    Some(d) => (d.session, d.token),
                    None => {
                        let sid = SessionId(self.next_session);
                        self.next_session = self.next_session.wrapping_add(1).max(1);
                        (sid, (self.config.tokens)())
                    }
                };
                let record = self.config.record_from_start && self.config.cannot_record.is_none();
                let new_room = !self.rooms.contains_key(&room_key);
                let room = self.rooms.entry(room_key.clone()).or_insert_with(|| Room {
                    display: room_name.clone(),
                    members: Vec::new(),
                    history: VecDeque::new(),
                    locked: false,
                    recording: record,
                    co_hosts: Vec::new(),
                    removed: Vec::new(),
                });
                if new_room && record {
                    self.out.push_back(Output::Event(HostEvent::Recording {
                        room: room.display.clone(),
                        on: true,
                    }));
                }
                let taken: Vec<String> = room
                    .members
                    .iter()
                    .filter_map(|m| self.sessions.get(m).map(|s| key(&s.member.name)))
                    .collect();
                let assigned = unique_name(&name, &taken);
                room.members.push(sid);
                self.sessions.insert(
                    sid,
                    Session {
                        token,
                        room: room_key.clone(),
                        conn,
                        member: Member {
                            name: assigned.clone(),
                            ip: peer.to_string(),
                            mic: false,
                            camera: false,
                            screen: false,
                        },
                        host: is_host,
                        co_host: false,
                        hand: None,
                        host_mute: None,
                        video_stopped: false,
                    },
                );
                let room_display = room.display.clone();
                self.out.push_back(Output::Event(HostEvent::Joined {
                    session: sid,
                    token,
                    name: assigned,
                    room: room_display,
                    ip: peer,
                }));
                sid
            }
        };
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session = Some(sid);
        }
        let room = &self.rooms[&room_key];
        let s = &self.sessions[&sid];
        let welcome = Welcome {
            session: sid,
            token: s.token,
            name: s.member.name.clone(),
            room: room.display.clone(),
            host_name: self.config.host_name.clone(),
            ports: self.config.ports,
            heartbeat_ms: self.config.heartbeat.as_millis() as u32,
            timeout_ms: self.config.idle_timeout.as_millis() as u32,
            members: self.members_of(&room_key),
            history: room.history.iter().cloned().collect(),
            host_member: self.host_member_of(&room_key),
        };
        let joined_name = s.member.name.clone();
        self.send(vec![conn], HostMsg::Welcome(Box::new(welcome)));
        if rejoin.is_none() {
            let others = self.conns_of(&room_key, Some(sid));
            self.send(
                others,
                HostMsg::Presence(Presence { name: joined_name, change: PresenceChange::Joined }),
            );
        }
        self.push_user_list(&room_key);
        self.push_room_state(&room_key);
        self.out.push_back(Output::Event(HostEvent::Rooms(self.rooms())));
    }

    fn on_media_state(&mut self, sid: SessionId, state: MediaState) {
        let Some(s) = self.sessions.get_mut(&sid) else {
            return;
        };
        // Held muted by the host: the microphone stays off in the list.
        let mic = state.mic && s.host_mute != Some(false);
        let controls_before = (s.host_mute, s.video_stopped);
        if mic {
            s.host_mute = None;
        }
        if state.camera {
            s.video_stopped = false;
        }
        let controls_changed = controls_before != (s.host_mute, s.video_stopped);
        let m = &mut s.member;
        let room = s.room.clone();
        if (m.mic, m.camera, m.screen) != (mic, state.camera, state.screen) {
            (m.mic, m.camera, m.screen) = (mic, state.camera, state.screen);
            self.push_user_list(&room);
        }
        if controls_changed {
            self.push_room_state(&room);
        }
    }

    fn on_chat(&mut self, now: Instant, conn: ConnId, sid: SessionId, chat: ChatSend) {
        let refuse = |this: &mut Host, reason: String| {
            this.send(
                vec![conn],
                HostMsg::ChatResult(ChatResult {
                    id: chat.id,
                    outcome: ChatOutcome::Refused { reason },
                }),
            );
        };
        if chat.text.len() > limits::CHAT_TEXT {
            return refuse(
                self,
                format!(
                    "message is {} bytes; the limit is {} bytes (4 KiB)",
                    chat.text.len(),
                    limits::CHAT_TEXT
                ),
            );
        }
        if chat.text.trim().is_empty() {
            return refuse(self, "message is empty".into());
        }
        let Some(sender) = self.sessions.get(&sid) else {
            return;
        };
        let room_key = sender.room.clone();
        let from = sender.member.name.clone();
        let (recipients, to) = match &chat.to {
            None => (self.conns_of(&room_key, Some(sid)), None),
            Some(target) => {
                let target_key = key(target.trim());
                let found = self.rooms[&room_key]
                    .members
                    .iter()
                    .filter_map(|m| self.sessions.get(m))
                    .find(|s| key(&s.member.name) == target_key);
                match found {
                    Some(s) => (vec![s.conn], Some(s.member.name.clone())),
                    None => {
                        let room = self.rooms[&room_key].display.clone();
                        return refuse(
                            self,
                            format!("no such member \"{}\" in meeting \"{room}\"", target.trim()),
                        );
                    }
                }
            }
        };
        let ts_ms =
            self.started_unix_ms + now.saturating_duration_since(self.started).as_millis() as u64;
        let msg = ChatMessage { id: self.next_msg, from, to: to.clone(), text: chat.text, ts_ms };
        self.next_msg += 1;
        self.chat_messages += 1;
        if to.is_none() {
            let room = self.rooms.get_mut(&room_key).expect("sender's room exists");
            if room.history.len() == limits::CHAT_HISTORY {
                room.history.pop_front();
            }
            room.history.push_back(msg.clone());
            let event = HostEvent::Chat { room: room.display.clone(), msg: msg.clone() };
            self.out.push_back(Output::Event(event));
        }
        let outcome = ChatOutcome::Delivered { msg_id: msg.id, ts_ms, to };
        self.send(recipients, HostMsg::Chat(msg));
        self.send(vec![conn], HostMsg::ChatResult(ChatResult { id: chat.id, outcome }));
    }

    fn on_timeout(&mut self, now: Instant) {
        let expired: Vec<(ConnId, bool)> = self
            .conns
            .iter()
            .filter(|(_, c)| self.deadline(c) <= now)
            .map(|(id, c)| (*id, c.session.is_some()))
            .collect();
        for (conn, registered) in expired {
            let secs =
                if registered { self.config.idle_timeout } else { self.config.register_timeout }
                    .as_secs();
            let notice = Disconnect {
                code: DisconnectCode::TimedOut,
                reason: format!("nothing heard from you for {secs} s"),
            };
            self.drop_conn(conn, PresenceChange::TimedOut, Some(notice));
        }
    }

    /// Forgets a connection and the session on it (if any), tells the room.
    fn drop_conn(&mut self, conn: ConnId, change: PresenceChange, notice: Option<Disconnect>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        if let Some(notice) = notice {
            self.send(vec![conn], HostMsg::Disconnect(notice));
        }
        self.out.push_back(Output::Close { conn });
        let Some(sid) = c.session else { return };
        let Some(s) = self.sessions.remove(&sid) else {
            return;
        };
        let room_key = s.room;
        if s.host_mute == Some(false) {
            self.out.push_back(Output::Event(HostEvent::HeldMuted { session: sid, held: false }));
        }
        // Only their client knows the token, and it offers it only when
        // rejoining after a lost link, so remembering every departure is safe.
        if self.departed.len() == DEPARTED_KEPT {
            self.departed.pop_front();
        }
        self.departed.push_back(Departed {
            session: sid,
            token: s.token,
            room: room_key.clone(),
            name_key: key(&s.member.name),
        });
        let Some(room) = self.rooms.get_mut(&room_key) else {
            return;
        };
        room.members.retain(|m| *m != sid);
        room.co_hosts.retain(|m| *m != sid);
        let room_display = room.display.clone();
        if room.members.is_empty() {
            if self.rooms.remove(&room_key).is_some_and(|r| r.recording) {
                self.out.push_back(Output::Event(HostEvent::Recording {
                    room: room_display.clone(),
                    on: false,
                }));
            }
        } else {
            let others = self.conns_of(&room_key, None);
            self.send(others, HostMsg::Presence(Presence { name: s.member.name.clone(), change }));
            self.push_user_list(&room_key);
            if s.hand.is_some() || s.co_host || s.host_mute.is_some() || s.video_stopped {
                self.push_room_state(&room_key);
            }
        }
        self.out.push_back(Output::Event(HostEvent::Left {
            session: sid,
            name: s.member.name,
            room: room_display,
            change,
        }));
        self.out.push_back(Output::Event(HostEvent::Rooms(self.rooms())));
    }

    fn now_ms(&self, now: Instant) -> u64 {
        self.started_unix_ms + now.saturating_duration_since(self.started).as_millis() as u64
    }

    fn members_of(&self, room_key: &RoomKey) -> Vec<Member> {
        self.rooms
            .get(room_key)
            .map(|r| {
                r.members
                    .iter()
                    .filter_map(|m| self.sessions.get(m))
                    .map(|s| s.member.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first member (in join order) who registered with the host's key.
    fn host_member_of(&self, room_key: &RoomKey) -> Option<String> {
        let room = self.rooms.get(room_key)?;
        room.members
            .iter()
            .filter_map(|m| self.sessions.get(m))
            .find(|s| s.host)
            .map(|s| s.member.name.clone())
    }

    fn conns_of(&self, room_key: &RoomKey, except: Option<SessionId>) -> Vec<ConnId> {
        self.rooms
            .get(room_key)
            .map(|r| {
                r.members
                    .iter()
                    .filter(|m| Some(**m) != except)
                    .filter_map(|m| self.sessions.get(m))
                    .map(|s| s.conn)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn push_user_list(&mut self, room_key: &RoomKey) {
        let Some(room) = self.rooms.get(room_key) else {
            return;
        };
        let list = UserList {
            room: room.display.clone(),
            members: self.members_of(room_key),
            host_member: self.host_member_of(room_key),
        };
        let to = self.conns_of(room_key, None);
        self.send(to, HostMsg::UserList(list));
    }
}

fn version_mismatch(got: u8) -> String {
    format!(
        "this host speaks Sapora protocol version {PROTOCOL_VERSION} and your client speaks version {got}: use the same Sapora release on both sides"
    )
}

/// `name` if free, else `name_1`, `name_2`, … (compared by [`key`], so a
/// look-alike of a member's name counts as taken).
/// The base is shortened as needed so that the result stays within the name
/// limit: a client reconnecting under its assigned name must pass validation.
fn unique_name(name: &str, taken_keys: &[String]) -> String {
    if !taken_keys.contains(&key(name)) {
        return name.to_string();
    }
    (1..)
        .map(|n: u32| {
            let suffix = format!("_{n}");
            let keep = limits::NAME_CHARS.saturating_sub(suffix.chars().count());
            let base: String = name.chars().take(keep).collect();
            format!("{base}{suffix}")
        })
        .find(|candidate| !taken_keys.contains(&key(candidate)))
        .expect("some suffix is free")
}
