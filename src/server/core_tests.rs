//! Tests of the sans-IO host core on a virtual clock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::core::*;
use crate::proto::*;

struct Harness {
    host: Host,
    now: Instant,
    /// Everything sent so far, per connection, in order.
    inbox: std::collections::HashMap<ConnId, Vec<HostMsg>>,
    closed: Vec<ConnId>,
    events: Vec<HostEvent>,
}

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7));

impl Harness {
    fn new() -> Harness {
        let mut n = 0u64;
        let tokens = Box::new(move || {
            n += 1;
            1000 + n
        });
        let now = Instant::now();
        let config = HostConfig::new("test-host", Ports::with_offset(0).unwrap(), tokens);
        Harness {
            host: Host::new(config, now, 1_700_000_000_000),
            now,
            inbox: Default::default(),
            closed: vec![],
            events: vec![],
        }
    }

    fn input(&mut self, input: Input) {
        self.host.handle(self.now, input);
        while let Some(out) = self.host.poll_output() {
            match out {
                Output::Send { to, msg } => {
                    for c in to {
                        self.inbox.entry(c).or_default().push(msg.clone());
                    }
                }
                Output::Close { conn } => self.closed.push(conn),
                Output::Event(e) => self.events.push(e),
            }
        }
    }

    fn take(&mut self, conn: u64) -> Vec<HostMsg> {
        self.inbox.remove(&ConnId(conn)).unwrap_or_default()
    }

    fn send(&mut self, conn: u64, msg: ClientMsg) {
        self.input(Input::Message { conn: ConnId(conn), msg });
    }

    /// A new connection `conn` that registers with `reg`.
    fn register(&mut self, conn: u64, reg: Register) {
        self.input(Input::Connected { conn: ConnId(conn), peer: IP });
        self.send(conn, ClientMsg::Register(reg));
    }

    fn join(&mut self, conn: u64, name: &str, room: &str) -> Welcome {
        self.register(conn, reg(name, room));
        let msgs = self.take(conn);
        match msgs.first() {
            Some(HostMsg::Welcome(w)) => (**w).clone(),
            other => panic!("expected a Welcome, got {other:?}"),
        }
    }

    fn chat(&mut self, conn: u64, id: u32, to: Option<&str>, text: &str) {
        self.send(
            conn,
            ClientMsg::Chat(ChatSend { id, to: to.map(Into::into), text: text.into() }),
        );
    }

    /// Moves the virtual clock, firing timeouts the way the driver would.
    fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(t) = self.host.poll_timeout().filter(|t| *t <= end) {
            self.now = t.max(self.now);
            self.input(Input::Timeout);
        }
        self.now = end;
    }
}

fn chats(msgs: &[HostMsg]) -> Vec<ChatMessage> {
    msgs.iter()
        .filter_map(|m| match m {
            HostMsg::Chat(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

fn results(msgs: &[HostMsg]) -> Vec<ChatOutcome> {
    msgs.iter()
        .filter_map(|m| match m {
            HostMsg::ChatResult(r) => Some(r.outcome.clone()),
            _ => None,
        })
        .collect()
}

fn last_members(msgs: &[HostMsg]) -> Vec<String> {
    msgs.iter()
        .rev()
        .find_map(|m| match m {
            HostMsg::UserList(l) => Some(l.members.iter().map(|m| m.name.clone()).collect()),
            _ => None,
        })
        .expect("a user list was pushed")
}

#[test]
fn welcome_carries_ports_members_and_blank_room_is_default() {
    let mut h = Harness::new();
    let w = h.join(1, "alice", "  ");
    assert_eq!(w.name, "alice");
    assert_eq!(w.room, "default");
    assert_eq!((w.ports.control, w.ports.discovery), (5000, 5001));
    assert_eq!(w.host_name, "test-host");
    assert_eq!(w.members.len(), 1);
    assert_eq!(w.members[0].ip, "10.0.0.7");
    let w2 = h.join(2, "bob", "default");
    assert_eq!(w2.members.iter().map(|m| &m.name[..]).collect::<Vec<_>>(), ["alice", "bob"]);
    // alice learns of bob: presence, then the whole list.
    let a = h.take(1);
    assert!(a.contains(&HostMsg::Presence(Presence {
        name: "bob".into(),
        change: PresenceChange::Joined
    })));
    assert_eq!(last_members(&a), ["alice", "bob"]);
}

#[test]
fn name_clash_gets_suffix_case_insensitively() {
    let mut h = Harness::new();
    assert_eq!(h.join(1, "alice", "r").name, "alice");
    assert_eq!(h.join(2, "ALICE", "r").name, "ALICE_1");
    assert_eq!(h.join(3, "Alice", "r").name, "Alice_2");
    // Same name in another room is fine.
    assert_eq!(h.join(4, "alice", "other").name, "alice");
    // A name freed by leaving can be taken again.
    h.send(1, ClientMsg::Leave(Leave { reason: "bye".into() }));
    assert_eq!(h.join(5, "alice", "R").name, "alice");
}

#[test]
fn wrong_version_and_bad_names_are_refused_clearly() {
    let mut h = Harness::new();
    h.register(1, Register { version: 9, ..reg("a", "") });
    match &h.take(1)[..] {
        [HostMsg::Refused(r)] => {
            assert_eq!(r.code, RefuseCode::Version);
            assert!(
                r.reason.contains("version 1") && r.reason.contains("version 9"),
                "{}",
                r.reason
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(h.closed, [ConnId(1)]);
    for (conn, name, room, code) in [
        (2, "   ", "", RefuseCode::BadName),
        (3, "a\u{7}b", "", RefuseCode::BadName),
        (4, &"x".repeat(33)[..], "", RefuseCode::BadName),
        (5, "ok", &"r".repeat(65)[..], RefuseCode::BadRoom),
    ] {
        h.register(conn, reg(name, room));
        assert!(
            matches!(&h.take(conn)[..], [HostMsg::Refused(r)] if r.code == code),
            "{name:?} {room:?}"
        );
    }
    assert_eq!(h.host.stats().connections, 0);
}

#[test]
fn messages_before_register_are_a_protocol_error() {
    let mut h = Harness::new();
    h.input(Input::Connected { conn: ConnId(1), peer: IP });
    h.chat(1, 1, None, "hi");
    assert!(
        matches!(&h.take(1)[..], [HostMsg::Disconnect(d)] if d.code == DisconnectCode::ProtocolError)
    );
    assert_eq!(h.closed, [ConnId(1)]);
}

#[test]
fn rooms_are_isolated_created_and_removed() {
    let mut h = Harness::new();
    h.join(1, "a", "red");
    h.join(2, "b", "blue");
    h.join(3, "c", "red");
    h.take(1);
    h.take(2);
    h.chat(1, 1, None, "red only");
    h.chat(1, 2, Some("b"), "try to cross");
    assert_eq!(chats(&h.take(3)).len(), 1);
    assert!(h.take(2).is_empty(), "nothing crosses rooms");
    assert!(
        matches!(&results(&h.take(1))[1], ChatOutcome::Refused { reason } if reason.contains("no such member"))
    );
    assert_eq!(h.host.rooms().len(), 2);
    h.send(2, ClientMsg::Leave(Leave { reason: String::new() }));
    assert_eq!(h.host.rooms(), [RoomInfo { name: "red".into(), members: 2 }]);
    // Room names compare case-insensitively; the first spelling is shown.
    assert_eq!(h.join(4, "d", "RED").room, "red");
}

#[test]
fn room_and_private_chat_with_confirmation_and_timestamps() {
    let mut h = Harness::new();
    h.join(1, "alice", "");
    h.join(2, "bob", "");
    h.join(3, "carol", "");
    for c in 1..=3 {
        h.take(c);
    }
    h.advance(Duration::from_millis(1500));
    h.chat(1, 10, None, "hello all");
    h.chat(1, 11, Some("CAROL"), "psst");
    h.chat(1, 12, Some("zed"), "anyone?");
    let a = h.take(1);
    assert!(chats(&a).is_empty(), "the sender is confirmed, not echoed");
    let r = results(&a);
    assert!(
        matches!(&r[0], ChatOutcome::Delivered { to: None, ts_ms, .. } if *ts_ms == 1_700_000_001_500)
    );
    assert!(matches!(&r[1], ChatOutcome::Delivered { to: Some(n), .. } if n == "carol"));
    assert!(
        matches!(&r[2], ChatOutcome::Refused { reason } if reason == "no such member \"zed\" in meeting \"default\"")
    );
    let b = chats(&h.take(2));
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].from.as_str(), b[0].to.as_deref(), b[0].text.as_str()),
        ("alice", None, "hello all")
    );
    let c = chats(&h.take(3));
    assert_eq!(c.len(), 2);
    assert_eq!(c[1].to.as_deref(), Some("carol"));
    assert_eq!(c[1].text, "psst");
}

#[test]
fn oversized_and_empty_chat_is_refused_with_reason() {
    let mut h = Harness::new();
    h.join(1, "a", "");
    h.join(2, "b", "");
    h.take(1);
    h.take(2);
    h.chat(1, 1, None, &"x".repeat(4097));
    h.chat(1, 2, None, &"é".repeat(2048)); // exactly 4096 bytes: allowed
    h.chat(1, 3, None, "  ");
    let r = results(&h.take(1));
    assert!(
        matches!(&r[0], ChatOutcome::Refused { reason } if reason.contains("4097 bytes") && reason.contains("4096"))
    );
    assert!(matches!(&r[1], ChatOutcome::Delivered { .. }));
    assert!(matches!(&r[2], ChatOutcome::Refused { reason } if reason.contains("empty")));
    assert_eq!(chats(&h.take(2)).len(), 1);
}

#[test]
fn late_joiner_gets_last_500_room_messages_but_no_private_ones() {
    let mut h = Harness::new();
    h.join(1, "a", "");
    h.join(2, "b", "");
    for i in 0..600 {
        h.chat(1, i, None, &format!("m{i}"));
    }
    h.chat(1, 9999, Some("b"), "secret");
    let w = h.join(3, "late", "");
    assert_eq!(w.history.len(), 500);
    assert_eq!(w.history.first().unwrap().text, "m100");
    assert_eq!(w.history.last().unwrap().text, "m599");
    assert!(w.history.iter().all(|m| m.to.is_none()));
}

#[test]
fn silent_client_dropped_after_15s_and_room_told_on_a_virtual_clock() {
    let mut h = Harness::new();
    h.join(1, "talker", "");
    h.join(2, "silent", "");
    h.take(1);
    // The talker heartbeats every 3 s; the silent one never does.
    for _ in 0..4 {
        h.advance(Duration::from_secs(3));
        h.send(1, ClientMsg::Heartbeat);
    }
    assert!(h.closed.is_empty(), "12 s of silence is not yet a timeout");
    h.advance(Duration::from_secs(3));
    h.send(1, ClientMsg::Heartbeat);
    assert_eq!(h.closed, [ConnId(2)]);
    assert!(
        matches!(&h.take(2)[..], [.., HostMsg::Disconnect(d)] if d.code == DisconnectCode::TimedOut)
    );
    let a = h.take(1);
    assert!(a.contains(&HostMsg::Presence(Presence {
        name: "silent".into(),
        change: PresenceChange::TimedOut
    })));
    assert_eq!(last_members(&a), ["talker"]);
    assert!(a.iter().filter(|m| **m == HostMsg::Heartbeat).count() >= 5, "heartbeats are echoed");
}

#[test]
fn unregistered_connection_closed_after_register_timeout() {
    let mut h = Harness::new();
    h.input(Input::Connected { conn: ConnId(1), peer: IP });
    h.advance(Duration::from_secs(9));
    assert!(h.closed.is_empty());
    h.advance(Duration::from_secs(1));
    assert_eq!(h.closed, [ConnId(1)]);
    assert_eq!(h.host.poll_timeout(), None);
}

#[test]
fn leaving_and_dropping_are_announced_differently() {
    let mut h = Harness::new();
    h.join(1, "a", "");
    h.join(2, "b", "");
    h.join(3, "c", "");
    h.take(1);
    h.send(2, ClientMsg::Leave(Leave { reason: "bye".into() }));
    h.input(Input::Closed { conn: ConnId(3), error: Some("connection reset".into()) });
    let a = h.take(1);
    assert!(
        a.contains(&HostMsg::Presence(Presence { name: "b".into(), change: PresenceChange::Left }))
    );
    assert!(a.contains(&HostMsg::Presence(Presence {
        name: "c".into(),
        change: PresenceChange::Dropped
    })));
    assert_eq!(last_members(&a), ["a"]);
}

#[test]
fn media_state_is_pushed_to_the_room_only_on_change() {
    let mut h = Harness::new();
    h.join(1, "a", "");
    h.join(2, "b", "");
    h.take(2);
    let on = MediaState { mic: true, camera: true, screen: false };
    h.send(1, ClientMsg::MediaState(on));
    h.send(1, ClientMsg::MediaState(on));
    let b = h.take(2);
    assert_eq!(b.len(), 1);
    let HostMsg::UserList(l) = &b[0] else { panic!("{b:?}") };
    assert!(l.members[0].mic && l.members[0].camera && !l.members[0].screen);
}

#[test]
fn shutdown_tells_every_client_then_closes() {
    let mut h = Harness::new();
    h.join(1, "a", "r1");
    h.join(2, "b", "r2");
    h.input(Input::Connected { conn: ConnId(3), peer: IP });
    h.take(1);
    h.take(2);
    h.input(Input::Shutdown);
    for c in 1..=3 {
        assert!(
            matches!(&h.take(c)[..], [HostMsg::Disconnect(d)] if d.code == DisconnectCode::HostShutdown)
        );
    }
    h.closed.sort();
    assert_eq!(h.closed, [ConnId(1), ConnId(2), ConnId(3)]);
    assert_eq!(h.host.stats(), Stats { chat_messages: 0, ..Stats::default() });
}

#[test]
fn rejoin_with_token_keeps_name_and_replaces_dead_link() {
    let mut h = Harness::new();
    let w = h.join(1, "alice", "r");
    h.join(2, "bob", "r");
    h.take(2);
    // The old link is half-open: the host has not noticed it died.
    h.register(3, Register { rejoin_token: Some(w.token), ..reg("alice", "r") });
    let m = h.take(3);
    let HostMsg::Welcome(w2) = &m[0] else { panic!("{m:?}") };
    assert_eq!((w2.name.as_str(), w2.session, w2.token), ("alice", w.session, w.token));
    assert!(h.closed.contains(&ConnId(1)));
    assert_eq!(last_members(&h.take(2)), ["alice", "bob"]);
    // A wrong token does not steal the name.
    h.register(4, Register { rejoin_token: Some(1), ..reg("alice", "r") });
    let HostMsg::Welcome(w3) = &h.take(4)[0] else { panic!() };
    assert_eq!(w3.name, "alice_1");
}

#[test]
fn too_slow_client_is_dropped() {
    let mut h = Harness::new();
    h.join(1, "a", "");
    h.join(2, "b", "");
    h.take(1);
    h.input(Input::TooSlow { conn: ConnId(2) });
    assert!(h.closed.contains(&ConnId(2)));
    assert!(h.take(1).contains(&HostMsg::Presence(Presence {
        name: "b".into(),
        change: PresenceChange::Dropped
    })));
}

#[test]
fn heartbeats_before_register_do_not_extend_or_spin_the_deadline() {
    let mut h = Harness::new();
    h.input(Input::Connected { conn: ConnId(1), peer: IP });
    for _ in 0..9 {
        h.advance(Duration::from_secs(1));
        h.send(1, ClientMsg::Heartbeat);
    }
    h.advance(Duration::from_secs(1));
    assert_eq!(h.closed, [ConnId(1)], "closed 10 s after connecting despite heartbeats");
    // The deadline the driver is given is never in the past once handled.
    assert_eq!(h.host.poll_timeout(), None);
}

#[test]
fn wrong_version_from_a_registered_client_leaves_properly() {
    let mut h = Harness::new();
    h.join(1, "a", "");
    h.join(2, "b", "");
    h.take(1);
    h.input(Input::WrongVersion { conn: ConnId(2), got: 7 });
    assert!(h.take(1).contains(&HostMsg::Presence(Presence {
        name: "b".into(),
        change: PresenceChange::Dropped
    })));
    assert_eq!(h.host.stats().members, 1);
}

#[test]
fn suffixed_long_names_stay_within_the_limit_so_rejoin_works() {
    let mut h = Harness::new();
    let long = "n".repeat(32);
    h.join(1, &long, "");
    let w = h.join(2, &long, "");
    assert_eq!(w.name.chars().count(), 32);
    assert!(w.name.ends_with("_1"));
    // Its assigned name is itself a valid name to register with.
    h.register(3, Register { rejoin_token: Some(w.token), ..reg(&w.name, "") });
    assert!(matches!(&h.take(3)[0], HostMsg::Welcome(w3) if w3.name == w.name));
}

/// A Register for `name` in `room`, current version, no token, no key.
fn reg(name: &str, room: &str) -> Register {
    Register {
        version: PROTOCOL_VERSION,
        name: name.into(),
        room: room.into(),
        rejoin_token: None,
        host_key: None,
    }
}

/// The room's latest word on who the host is, from the newest UserList.
fn last_host(msgs: &[HostMsg]) -> Option<String> {
    msgs.iter()
        .rev()
        .find_map(|m| match m {
            HostMsg::UserList(l) => Some(l.host_member.clone()),
            _ => None,
        })
        .expect("a user list was pushed")
}

fn register_keyed(
    h: &mut Harness,
    conn: u64,
    name: &str,
    token: Option<u64>,
    key: Option<HostKey>,
) {
    h.register(conn, Register { rejoin_token: token, host_key: key, ..reg(name, "r") });
}

const KEY: HostKey = HostKey(0x5EC2_E7AB_C0FF_EE00);

fn keyed_harness() -> Harness {
    let mut h = Harness::new();
    h.host = {
        let mut config = HostConfig::new("test-host", Ports::with_offset(0).unwrap(), {
            let mut n = 0u64;
            Box::new(move || {
                n += 1;
                1000 + n
            })
        });
        config.host_key = Some(KEY);
        Host::new(config, h.now, 1_700_000_000_000)
    };
    h
}

#[test]
fn the_member_who_presents_the_host_key_is_marked_host() {
    let mut h = keyed_harness();
    // A guest first: no host in the room yet.
    let w = h.join(1, "guest", "r");
    assert_eq!(w.host_member, None);
    // The host's own app registers with the key: everyone is told.
    register_keyed(&mut h, 2, "hostess", None, Some(KEY));
    let m = h.take(2);
    let HostMsg::Welcome(w2) = &m[0] else { panic!("{m:?}") };
    assert_eq!(w2.host_member.as_deref(), Some("hostess"));
    assert_eq!(last_host(&h.take(1)).as_deref(), Some("hostess"));
    // A wrong key marks nobody, and does not unmark the host.
    register_keyed(&mut h, 3, "mallory", None, Some(HostKey(KEY.0 ^ 1)));
    let m = h.take(3);
    let HostMsg::Welcome(w3) = &m[0] else { panic!("{m:?}") };
    assert_eq!(w3.host_member.as_deref(), Some("hostess"));
    assert_eq!(last_members(&m), ["guest", "hostess", "mallory"]);
    assert_eq!(last_host(&m).as_deref(), Some("hostess"));
    // A media change keeps the mark.
    h.send(2, ClientMsg::MediaState(MediaState { mic: true, camera: false, screen: false }));
    assert_eq!(last_host(&h.take(1)).as_deref(), Some("hostess"));
}

#[test]
fn the_host_mark_goes_with_the_host_and_comes_back_on_rejoin() {
    let mut h = keyed_harness();
    h.join(1, "guest", "r");
    register_keyed(&mut h, 2, "hostess", None, Some(KEY));
    let HostMsg::Welcome(w) = h.take(2).remove(0) else { panic!("no welcome") };
    h.take(1);
    // The host's app goes silent: after the idle timeout (virtual clock)
    // it is dropped and the room has no host.
    for _ in 0..16 {
        h.now += Duration::from_secs(1);
        h.send(1, ClientMsg::Heartbeat);
        h.input(Input::Timeout);
    }
    let m = h.take(1);
    assert_eq!(last_members(&m), ["guest"]);
    assert_eq!(last_host(&m), None);
    // It comes back (its old session is gone) with the key: marked again.
    register_keyed(&mut h, 3, "hostess", Some(w.token), Some(KEY));
    let HostMsg::Welcome(w) = h.take(3).remove(0) else { panic!("no welcome") };
    assert_eq!(last_host(&h.take(1)).as_deref(), Some("hostess"));
    // A rejoin of that session by token, without the key, loses the mark.
    register_keyed(&mut h, 4, "hostess", Some(w.token), None);
    let HostMsg::Welcome(w4) = h.take(4).remove(0) else { panic!("no welcome") };
    assert_eq!((w4.session, w4.host_member.clone()), (w.session, None));
    let m = h.take(1);
    assert_eq!(last_members(&m), ["guest", "hostess"]);
    assert_eq!(last_host(&m), None);
}

#[test]
fn without_a_configured_key_nobody_is_host_whatever_they_send() {
    let mut h = Harness::new();
    for (conn, key) in [(1, Some(HostKey(0))), (2, Some(KEY)), (3, None)] {
        register_keyed(&mut h, conn, &format!("p{conn}"), None, key);
    }
    let m = h.take(1);
    assert_eq!(last_members(&m), ["p1", "p2", "p3"]);
    assert_eq!(last_host(&m), None);
}

#[test]
fn invisible_and_direction_changing_names_are_refused_with_the_character_named() {
    let mut h = Harness::new();
    for (conn, name, room, code, says) in [
        (1, "al\u{200b}ice", "", RefuseCode::BadName, "ZERO WIDTH SPACE"),
        (2, "bob\u{202e}gnp.exe", "", RefuseCode::BadName, "RIGHT-TO-LEFT OVERRIDE"),
        (3, "ok", "lab\u{2066}", RefuseCode::BadRoom, "LEFT-TO-RIGHT ISOLATE"),
        (4, "\u{3164}", "", RefuseCode::BadName, "HANGUL FILLER"),
    ] {
        h.register(conn, reg(name, room));
        match &h.take(conn)[..] {
            [HostMsg::Refused(r)] => {
                assert_eq!(r.code, code, "{name:?}");
                assert!(r.reason.contains(says), "{name:?}: {}", r.reason);
            }
            other => panic!("{name:?} {other:?}"),
        }
    }
    // A decomposed name is stored NFC, spaces tidied.
    assert_eq!(h.join(5, " Jose\u{301}   Maria ", "r").name, "José Maria");
}

#[test]
fn look_alike_names_count_as_taken_and_look_alike_rooms_are_one_room() {
    let mut h = Harness::new();
    assert_eq!(h.join(1, "alice", "lab").name, "alice");
    // Cyrillic а: looks the same, so it is taken.
    assert_eq!(h.join(2, "\u{430}lice", "lab").name, "\u{430}lice_1");
    // Decomposed é is the same name as the composed one.
    assert_eq!(h.join(3, "José", "lab").name, "José");
    assert_eq!(h.join(4, "Jose\u{301}", "lab").name, "José_1");
    // A look-alike of the room's name is the same room.
    let w = h.join(5, "eve", "l\u{430}b");
    assert_eq!(w.room, "lab");
    assert_eq!(w.members.len(), 5);
    // Private chat finds the member by the same rule.
    h.chat(5, 1, Some("ALICE"), "hi");
    assert!(matches!(
        &results(&h.take(5))[..],
        [ChatOutcome::Delivered { to: Some(to), .. }] if to == "alice"
    ));
}

#[test]
fn a_member_who_timed_out_gets_the_same_session_back_with_their_token() {
    let mut h = Harness::new();
    h.join(1, "alice", "r");
    let bob = h.join(2, "bob", "r");
    for _ in 0..16 {
        h.advance(Duration::from_secs(1));
        h.send(1, ClientMsg::Heartbeat);
    }
    assert!(h.closed.contains(&ConnId(2)), "bob timed out");
    assert!(
        h.events
            .iter()
            .any(|e| matches!(e, HostEvent::Left { session, .. } if *session == bob.session))
    );
    h.take(1);
    // Bob's client rejoins with its token, after the host let go.
    h.register(3, Register { rejoin_token: Some(bob.token), ..reg("bob", "r") });
    let HostMsg::Welcome(w) = &h.take(3)[0] else { panic!() };
    assert_eq!((w.session, w.token, w.name.as_str()), (bob.session, bob.token, "bob"));
    // The room hears that bob is back.
    assert!(h.take(1).contains(&HostMsg::Presence(Presence {
        name: "bob".into(),
        change: PresenceChange::Joined
    })));
    // A stranger with a made-up token or another name does not get it.
    h.send(3, ClientMsg::Leave(Leave { reason: "bye".into() }));
    h.register(4, Register { rejoin_token: Some(bob.token), ..reg("mallory", "r") });
    let HostMsg::Welcome(w) = &h.take(4)[0] else { panic!() };
    assert_ne!(w.session, bob.session);
    h.register(5, Register { rejoin_token: Some(bob.token ^ 1), ..reg("bob", "r") });
    let HostMsg::Welcome(w) = &h.take(5)[0] else { panic!() };
    assert_ne!(w.session, bob.session);
}

// ---- Host controls (issue 17) ----

/// A harness whose host has a key; members join from their own addresses.
fn controlled() -> Harness {
    let mut h = Harness::new();
    let mut config = HostConfig::new("test-host", Ports::with_offset(0).unwrap(), {
        let mut n = 0u64;
        Box::new(move || {
            n += 1;
            1000 + n
        })
    });
    config.host_key = Some(KEY);
    h.host = Host::new(config, h.now, 1_700_000_000_000);
    h
}

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

impl Harness {
    /// Connection `conn` from 10.0.0.`conn` registers; returns the host's first answer.
    fn join_from(&mut self, conn: u64, reg: Register) -> HostMsg {
        self.input(Input::Connected { conn: ConnId(conn), peer: ip(conn as u8) });
        self.send(conn, ClientMsg::Register(reg));
        self.take(conn).into_iter().next().expect("an answer")
    }

    fn control(&mut self, conn: u64, id: u32, control: Control) -> Option<String> {
        self.send(conn, ClientMsg::Control(ControlRequest { id, control }));
        self.take(conn)
            .iter()
            .find_map(|m| match m {
                HostMsg::ControlResult(r) if r.id == id => Some(r.refused.clone()),
                _ => None,
            })
            .expect("a ControlResult")
    }
}

fn last_state(msgs: &[HostMsg]) -> RoomState {
    msgs.iter()
        .rev()
        .find_map(|m| match m {
            HostMsg::RoomState(s) => Some(s.clone()),
            _ => None,
        })
        .expect("a RoomState")
}

fn last_list(msgs: &[HostMsg]) -> Vec<Member> {
    msgs.iter()
        .rev()
        .find_map(|m| match m {
            HostMsg::UserList(l) => Some(l.members.clone()),
            _ => None,
        })
        .expect("a UserList")
}

fn notices(msgs: &[HostMsg]) -> Vec<String> {
    msgs.iter()
        .filter_map(|m| match m {
            HostMsg::ControlNotice(n) => Some(n.text.clone()),
            _ => None,
        })
        .collect()
}

/// Host "ann" (conn 1, with the key), "bob" (2), "Ana Maria" (3).
fn meeting() -> Harness {
    let mut h = controlled();
    let host = Register { host_key: Some(KEY), ..reg("ann", "") };
    assert!(matches!(h.join_from(1, host), HostMsg::Welcome(_)));
    assert!(matches!(h.join_from(2, reg("bob", "")), HostMsg::Welcome(_)));
    assert!(matches!(h.join_from(3, reg("Ana Maria", "")), HostMsg::Welcome(_)));
    for c in 1..=3 {
        h.take(c);
    }
    h
}

#[test]
fn a_non_hosts_control_is_refused_with_the_reason() {
    let mut h = meeting();
    let refused = |r: Option<String>| r.expect("refused");
    assert_eq!(
        refused(h.control(2, 1, Control::Lock)),
        "only the host or a co-host can lock the meeting"
    );
    assert_eq!(
        refused(h.control(2, 2, Control::Remove { name: "ann".into() })),
        "only the host or a co-host can remove someone"
    );
    assert_eq!(
        refused(h.control(2, 3, Control::CoHost { name: "bob".into(), on: true })),
        "only the host can make someone co-host"
    );
    assert_eq!(
        refused(h.control(1, 4, Control::Mute { name: "zed".into(), may_unmute: true })),
        "no such member \"zed\" in meeting \"default\""
    );
    // Nothing changed for anyone.
    assert!(h.take(3).is_empty());

    // A co-host may mute and lock, but not touch the host or name co-hosts.
    assert_eq!(h.control(1, 5, Control::CoHost { name: "BOB".into(), on: true }), None);
    assert_eq!(last_state(&h.take(3)).co_hosts, ["bob"]);
    assert_eq!(h.control(2, 6, Control::Mute { name: "ana maria".into(), may_unmute: true }), None);
    assert_eq!(
        refused(h.control(2, 7, Control::Mute { name: "ann".into(), may_unmute: true })),
        "nobody can mute the host"
    );
    assert_eq!(
        refused(h.control(2, 8, Control::CoHost { name: "Ana Maria".into(), on: true })),
        "only the host can make someone co-host"
    );
}

#[test]
fn mute_video_stop_and_hands_reach_everyones_list() {
    let mut h = meeting();
    h.send(2, ClientMsg::MediaState(MediaState { mic: true, camera: true, screen: false }));
    h.send(3, ClientMsg::MediaState(MediaState { mic: true, camera: true, screen: false }));
    h.take(1);
    h.take(2);
    h.take(3);

    // Held mute: bob is told and cannot turn his microphone back on.
    let mute = Control::Mute { name: "bob".into(), may_unmute: false };
    h.send(1, ClientMsg::Control(ControlRequest { id: 1, control: mute }));
    for c in 1..=3 {
        let msgs = h.take(c);
        let told =
            if c == 2 { vec!["ann muted you; only the host can let you unmute"] } else { vec![] };
        assert_eq!(notices(&msgs), told, "conn {c}");
        let list = last_list(&msgs);
        assert!(!list.iter().find(|m| m.name == "bob").unwrap().mic, "conn {c}");
        assert_eq!(
            last_state(&msgs).host_muted,
            [HostMute { name: "bob".into(), may_unmute: false }],
            "conn {c}"
        );
    }
    h.send(2, ClientMsg::MediaState(MediaState { mic: true, camera: true, screen: false }));
    assert!(h.take(3).is_empty(), "a held member's mic stays off");
    let held = |h: &Harness| {
        h.events
            .iter()
            .filter_map(|e| match e {
                HostEvent::HeldMuted { session, held } => Some((session.0, *held)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(held(&h), [(2, true)], "the mixer is told to leave bob out");
    // Released: he may unmute, and doing so clears the mark.
    assert_eq!(h.control(1, 2, Control::Mute { name: "bob".into(), may_unmute: true }), None);
    assert_eq!(notices(&h.take(2)), ["ann muted you; you may unmute yourself"]);
    assert_eq!(held(&h), [(2, true), (2, false)], "and to let him back");
    h.send(2, ClientMsg::MediaState(MediaState { mic: true, camera: true, screen: false }));
    let seen = h.take(3);
    assert!(last_list(&seen).iter().find(|m| m.name == "bob").unwrap().mic);
    assert!(last_state(&seen).host_muted.is_empty());

    // Video stop.
    assert_eq!(h.control(1, 3, Control::StopVideo { name: "Ana Maria".into() }), None);
    assert_eq!(notices(&h.take(3)), ["ann stopped your video"]);
    let seen = h.take(2);
    assert!(!last_list(&seen).iter().find(|m| m.name == "Ana Maria").unwrap().camera);
    assert_eq!(last_state(&seen).video_stopped, ["Ana Maria"]);

    // Hands, ordered by when they went up; anyone may raise their own.
    assert_eq!(h.control(3, 4, Control::Hand { raised: true }), None);
    h.advance(Duration::from_millis(1500));
    assert_eq!(h.control(2, 5, Control::Hand { raised: true }), None);
    let state = last_state(&h.take(1));
    let hands: Vec<(&str, u64)> =
        state.hands.iter().map(|x| (x.name.as_str(), x.since_ms)).collect();
    assert_eq!(hands, [("Ana Maria", 1_700_000_000_000), ("bob", 1_700_000_001_500)]);
    assert_eq!(h.control(3, 6, Control::Hand { raised: false }), None);
    let state = last_state(&h.take(2));
    assert_eq!(state.hands.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(), ["bob"]);
}

#[test]
fn a_locked_room_refuses_new_joins_but_takes_members_back() {
    let mut h = meeting();
    assert_eq!(h.control(1, 1, Control::Lock), None);
    assert_eq!(notices(&h.take(2)), ["ann locked the meeting: nobody new can join"]);
    match h.join_from(4, reg("dave", "")) {
        HostMsg::Refused(r) => {
            assert_eq!(r.code, RefuseCode::Locked);
            assert_eq!(
                r.reason,
                "meeting \"default\" is locked: the host is letting nobody new in"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Bob's link drops; his client comes back with its token and is let in.
    let token = 1002;
    h.input(Input::Closed { conn: ConnId(2), error: Some("reset".into()) });
    let back = Register { rejoin_token: Some(token), ..reg("bob", "") };
    assert!(matches!(h.join_from(5, back), HostMsg::Welcome(_)));
    // Other rooms are not locked.
    assert!(matches!(h.join_from(6, reg("dave", "other")), HostMsg::Welcome(_)));
    assert_eq!(h.control(1, 2, Control::Unlock), None);
    assert!(matches!(h.join_from(7, reg("dave", "")), HostMsg::Welcome(_)));
}

#[test]
fn a_removed_member_cannot_rejoin_until_let_back() {
    let mut h = meeting();
    assert_eq!(h.control(1, 1, Control::Remove { name: "bob".into() }), None);
    let bob = h.take(2);
    assert!(
        bob.iter().any(|m| matches!(m, HostMsg::Disconnect(d)
            if d.code == DisconnectCode::Removed && d.reason == "ann removed you from meeting \"default\"")),
        "{bob:?}"
    );
    assert!(h.closed.contains(&ConnId(2)));
    let refused = |answer: HostMsg| match answer {
        HostMsg::Refused(r) => {
            assert_eq!(r.code, RefuseCode::Removed);
            r.reason
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    // By token, by name (another machine), by address (another name).
    let by_token = Register { rejoin_token: Some(1002), ..reg("bob", "") };
    assert_eq!(
        refused(h.join_from(4, by_token)),
        "you were removed from meeting \"default\"; only the host can let you back in"
    );
    refused(h.join_from(5, reg("BOB", "")));
    h.input(Input::Connected { conn: ConnId(6), peer: ip(2) });
    h.send(6, ClientMsg::Register(reg("robert", "")));
    assert!(matches!(h.take(6).first(), Some(HostMsg::Refused(_))));
    // Not the host's to refuse elsewhere; and the host lets him back.
    assert_eq!(
        h.control(3, 2, Control::LetBack { name: "bob".into() }).unwrap(),
        "only the host or a co-host can let someone back in"
    );
    assert_eq!(h.control(1, 3, Control::LetBack { name: "bob".into() }), None);
    assert!(matches!(h.join_from(7, reg("bob", "")), HostMsg::Welcome(_)));
}

#[test]
fn ending_the_meeting_disconnects_everyone_and_recording_is_announced() {
    let mut h = meeting();
    assert_eq!(h.control(1, 1, Control::Record { on: true }), None);
    assert!(h.events.contains(&HostEvent::Recording { room: "default".into(), on: true }));
    let seen = h.take(3);
    assert_eq!(notices(&seen), ["ann started recording the meeting (sound and chat)"]);
    assert!(last_state(&seen).recording);
    h.chat(2, 1, None, "hello");
    assert!(h.events.iter().any(
        |e| matches!(e, HostEvent::Chat { room, msg } if room == "default" && msg.text == "hello")
    ));

    // The console speaks for the host.
    h.input(Input::Console { control: Control::Lock });
    assert_eq!(h.events.last(), Some(&HostEvent::Console("locked in default".into())));
    h.input(Input::Console { control: Control::Mute { name: "nobody".into(), may_unmute: true } });
    assert_eq!(
        h.events.last(),
        Some(&HostEvent::Console("refused: no such member \"nobody\" in any meeting".into()))
    );

    h.take(1);
    h.take(2);
    h.take(3);
    h.send(1, ClientMsg::Control(ControlRequest { id: 2, control: Control::End }));
    for c in 1..=3 {
        let got = h.take(c);
        assert!(
            got.iter().any(|m| matches!(m, HostMsg::Disconnect(d)
                if d.code == DisconnectCode::Ended && d.reason == "ann ended the meeting")),
            "conn {c}: {got:?}"
        );
        assert!(h.closed.contains(&ConnId(c)));
    }
    assert_eq!(h.host.stats().rooms, 0);
    assert!(h.events.contains(&HostEvent::Recording { room: "default".into(), on: false }));
}

#[test]
fn room_chat_and_public_file_offers_are_reported_for_the_recorder() {
    let mut h = meeting();
    h.events.clear();
    h.chat(2, 1, Some("ann"), "private: not recorded");
    h.chat(2, 2, None, "for the room");
    let file = |to: Option<&str>| FileInfo {
        id: 9,
        name: "notes.txt".into(),
        size: 3,
        md5: [0; 16],
        sender: "bob".into(),
        to: to.map(Into::into),
        ts_ms: 1_700_000_000_500,
    };
    let to = vec![SessionId(1), SessionId(3)];
    h.input(Input::Deliver { to: to.clone(), msg: HostMsg::FileOffered(file(None)) });
    h.input(Input::Deliver { to, msg: HostMsg::FileOffered(file(Some("ann"))) });
    let seen: Vec<String> = h
        .events
        .iter()
        .filter_map(|e| match e {
            HostEvent::Chat { room, msg } => Some(format!("{room}: chat {}", msg.text)),
            HostEvent::FileOffered { room, file } => Some(format!("{room}: file {}", file.name)),
            _ => None,
        })
        .collect();
    assert_eq!(seen, ["default: chat for the room", "default: file notes.txt"]);
}

#[test]
fn a_host_that_cannot_record_says_why() {
    let mut h = meeting();
    let why = "this host cannot record: its audio mix is PCM (start it with --audio-codec opus)";
    // Rebuild with the reason set (the harness's config is consumed by Host::new).
    let mut config = HostConfig::new("test-host", Ports::with_offset(0).unwrap(), Box::new(|| 7));
    config.host_key = Some(KEY);
    config.cannot_record = Some(why.into());
    h.host = Host::new(config, h.now, 1_700_000_000_000);
    let host = Register { host_key: Some(KEY), ..reg("ann", "") };
    assert!(matches!(h.join_from(11, host), HostMsg::Welcome(_)));
    assert_eq!(h.control(11, 1, Control::Record { on: true }).as_deref(), Some(why));
    assert!(!h.events.iter().any(|e| matches!(e, HostEvent::Recording { .. })));
}
