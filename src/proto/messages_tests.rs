//! Tests of the control and discovery messages ([`super`]): round trips,
//! wire layouts and refusals of hostile bytes.

use super::*;
use crate::proto::{
    HEADER_LEN, Header, PROTOCOL_VERSION, SessionId, decode_datagram, encode_frame, limits,
};

fn sample_welcome() -> Welcome {
    Welcome {
        session: SessionId(7),
        token: 0xDEAD_BEEF_0000_0001,
        name: "alice_1".into(),
        room: "default".into(),
        host_name: "lab-pc".into(),
        ports: Ports::with_offset(0).unwrap(),
        heartbeat_ms: 3000,
        timeout_ms: 15000,
        members: vec![Member {
            name: "alice_1".into(),
            ip: "127.0.0.1".into(),
            mic: true,
            camera: false,
            screen: false,
        }],
        history: vec![ChatMessage {
            id: 1,
            from: "bob".into(),
            to: None,
            text: "hé 👋".into(),
            ts_ms: 1_700_000_000_000,
        }],
        host_member: Some("alice_1".into()),
    }
}

#[test]
fn every_message_round_trips() {
    let client = [
        ClientMsg::Register(Register {
            version: 1,
            name: "alice".into(),
            room: "".into(),
            rejoin_token: Some(9),
            host_key: Some(HostKey(0xFEED)),
        }),
        ClientMsg::Heartbeat,
        ClientMsg::Leave(Leave { reason: "bye".into() }),
        ClientMsg::MediaState(MediaState { mic: true, camera: false, screen: true }),
        ClientMsg::Chat(ChatSend { id: 3, to: Some("Bob".into()), text: "hi".into() }),
        ClientMsg::Control(ControlRequest {
            id: 4,
            control: Control::Mute { name: "Ana Maria".into(), may_unmute: false },
        }),
        ClientMsg::Control(ControlRequest { id: 5, control: Control::Hand { raised: true } }),
    ];
    for m in client {
        assert_eq!(ClientMsg::decode(m.msg_type() as u8, &m.payload()).unwrap(), m);
    }
    let host = [
        HostMsg::Welcome(Box::new(sample_welcome())),
        HostMsg::Refused(Refused {
            code: RefuseCode::Version,
            host_version: 1,
            reason: "x".into(),
        }),
        HostMsg::Heartbeat,
        HostMsg::UserList(UserList { room: "r".into(), members: vec![], host_member: None }),
        HostMsg::UserList(UserList {
            room: "r".into(),
            members: vec![],
            host_member: Some("bob".into()),
        }),
        HostMsg::Presence(Presence { name: "a".into(), change: PresenceChange::TimedOut }),
        HostMsg::ChatResult(ChatResult {
            id: 3,
            outcome: ChatOutcome::Refused { reason: "no such member: zed".into() },
        }),
        HostMsg::Disconnect(Disconnect {
            code: DisconnectCode::HostShutdown,
            reason: "bye".into(),
        }),
        HostMsg::Disconnect(Disconnect { code: DisconnectCode::Removed, reason: "x".into() }),
        HostMsg::ControlResult(ControlResult { id: 4, refused: Some("not host".into()) }),
        HostMsg::ControlNotice(ControlNotice {
            by: "ann".into(),
            control: Control::Record { on: true },
            text: "ann started recording".into(),
        }),
        HostMsg::RoomState(RoomState {
            room: "r".into(),
            locked: true,
            recording: true,
            co_hosts: vec!["bo".into()],
            hands: vec![RaisedHand { name: "cy".into(), since_ms: 5 }],
            host_muted: vec![HostMute { name: "di".into(), may_unmute: false }],
            video_stopped: vec!["ed".into()],
        }),
    ];
    for m in host {
        assert_eq!(HostMsg::decode(m.msg_type() as u8, &m.payload()).unwrap(), m);
    }
}

#[test]
fn register_bytes_are_as_documented() {
    // docs/protocol.md walks through exactly this frame.
    let mut out = Vec::new();
    let reg = Register {
        version: 1,
        name: "bob".into(),
        room: "".into(),
        rejoin_token: None,
        host_key: None,
    };
    encode_frame(MsgType::Register, 0, &reg, &mut out);
    assert_eq!(out, [1, 0x01, 0, 0, 0, 7, 0, 0, 0, 0, 1, 3, b'b', b'o', b'b', 0, 0]);
}

/// Register and UserList as version 1 first shipped them, before their
/// optional trailing fields: what an older peer encodes and decodes.
mod v1 {
    use serde::{Deserialize, Serialize};
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct Register {
        pub version: u8,
        pub name: String,
        pub room: String,
        pub rejoin_token: Option<u64>,
    }
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    pub struct UserList {
        pub room: String,
        pub members: Vec<super::Member>,
    }
}

#[test]
fn optional_trailing_fields_work_with_older_peers_both_ways() {
    use crate::proto::{decode_payload, encode_payload};
    let member = Member {
        name: "hostess".into(),
        ip: "10.0.0.2".into(),
        mic: true,
        camera: false,
        screen: false,
    };
    // An old client's Register reaches a new host: no key.
    let old =
        v1::Register { version: 1, name: "bob".into(), room: "".into(), rejoin_token: Some(4) };
    let ClientMsg::Register(reg) = ClientMsg::decode(0x01, &encode_payload(&old)).unwrap() else {
        panic!("not a Register")
    };
    assert_eq!((reg.rejoin_token, reg.host_key), (Some(4), None));
    // A new client's Register (with a key) reaches an old host.
    let new = Register {
        version: 1,
        name: "bob".into(),
        room: "".into(),
        rejoin_token: None,
        host_key: Some(HostKey(77)),
    };
    let bytes = encode_payload(&new);
    assert_eq!(bytes[bytes.len() - 2..], [1, 77], "Some(77) appended");
    let seen: v1::Register = decode_payload(&bytes).unwrap();
    assert_eq!(seen.name, "bob");
    let ClientMsg::Register(back) = ClientMsg::decode(0x01, &bytes).unwrap() else {
        panic!("not a Register")
    };
    assert_eq!(back.host_key, Some(HostKey(77)));
    // The key is a secret: printing the message does not show it.
    let shown = format!("{back:?}");
    assert!(shown.contains("HostKey(..)") && !shown.contains("77"), "{shown}");
    // Without a key nothing is appended: the bytes are version 1's.
    let none = Register { host_key: None, ..new };
    let v1_none =
        v1::Register { version: 1, name: "bob".into(), room: "".into(), rejoin_token: None };
    assert_eq!(encode_payload(&none), encode_payload(&v1_none));

    // A new host's UserList reaches an old client, an old host's a new one.
    let list = UserList {
        room: "r".into(),
        members: vec![member.clone()],
        host_member: Some("hostess".into()),
    };
    let seen: v1::UserList = decode_payload(&HostMsg::UserList(list).payload()).unwrap();
    assert_eq!(seen.members, std::slice::from_ref(&member));
    let old_list = v1::UserList { room: "r".into(), members: vec![member] };
    let HostMsg::UserList(got) = HostMsg::decode(0x03, &encode_payload(&old_list)).unwrap() else {
        panic!("not a UserList")
    };
    assert_eq!(got.host_member, None);
    // An old client reads a new Welcome's first ten fields, unchanged.
    let w = sample_welcome();
    let p = HostMsg::Welcome(Box::new(w.clone())).payload();
    let cut = Welcome { host_member: None, ..w };
    let v1_bytes = encode_payload(&cut);
    assert!(p.len() > v1_bytes.len() && p.starts_with(&v1_bytes));
    // Garbage where the trailing field would be reads as "absent".
    let mut junk = encode_payload(&old);
    junk.push(0x07);
    let ClientMsg::Register(reg) = ClientMsg::decode(0x01, &junk).unwrap() else {
        panic!("not a Register")
    };
    assert_eq!(reg.host_key, None);
}

#[test]
fn trailing_bytes_are_ignored_for_forward_compatibility() {
    let mut p = ClientMsg::Leave(Leave { reason: "x".into() }).payload();
    p.extend_from_slice(&[1, 2, 3]);
    assert_eq!(
        ClientMsg::decode(0x04, &p).unwrap(),
        ClientMsg::Leave(Leave { reason: "x".into() })
    );
}

#[test]
fn hostile_payloads_are_errors() {
    // Table of odd inputs; none may panic, each must be an error.
    let cases: &[(u8, &[u8], &str)] = &[
        (0x01, &[], "empty register"),
        (0x01, &[1, 200], "name length runs past the end"),
        (0x01, &[1, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], "name claims 4 GiB"),
        (0x01, &[1, 2, 0xC3, 0x28, 0, 0], "name is not UTF-8"),
        (0x07, &[2, 0, 0], "bool that is neither 0 nor 1"),
        (0x10, &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], "varint id overflows u32"),
        (0x99, &[], "unknown type"),
        (0x05, &[], "host-only type sent by a client"),
    ];
    for (kind, payload, why) in cases {
        assert!(ClientMsg::decode(*kind, payload).is_err(), "{why}");
    }
    assert!(HostMsg::decode(0x01, &[1, 0, 0, 0]).is_err(), "client-only type sent by a host");
    assert_eq!(
        HostMsg::decode(0x03, &[]),
        Err(DecodeError::Payload("Hit the end of buffer, expected more data".into()))
    );
}

#[test]
fn datagram_checks_version_limit_and_truncation() {
    let mut out = Vec::new();
    let probe = Probe { version: PROTOCOL_VERSION, nonce: 5 };
    encode_frame(MsgType::DiscoveryProbe, 1, &probe, &mut out);
    let (h, p) = decode_datagram(&out, limits::DISCOVERY_DATAGRAM as u32).unwrap();
    assert_eq!(h.kind, 0x50);
    assert_eq!(crate::proto::decode_payload::<Probe>(p).unwrap(), probe);
    assert!(matches!(
        decode_datagram(&out[..out.len() - 1], 1400),
        Err(DecodeError::UnexpectedEnd)
    ));
    assert!(matches!(decode_datagram(&out, 1), Err(DecodeError::TooLong { .. })));
    let mut v2 = out.clone();
    v2[0] = 2;
    assert_eq!(decode_datagram(&v2, 1400), Err(DecodeError::Version { got: 2 }));
    assert_eq!(Header::decode(&out).unwrap().len as usize, out.len() - HEADER_LEN);
}

#[test]
fn port_offset_shifts_both_and_refuses_overflow() {
    let p = Ports::with_offset(100).unwrap();
    assert_eq!([p.control, p.discovery], [5100, 5101]);
    assert!(Ports::with_offset(60534).is_ok());
    assert!(Ports::with_offset(60535).is_err(), "5001 + 60535 is past 65535");
}

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic(kind in 0u8..=255, bytes in proptest::collection::vec(0u8..=255, 0..256)) {
        let _ = ClientMsg::decode(kind, &bytes);
        let _ = HostMsg::decode(kind, &bytes);
        let _ = decode_datagram(&bytes, 1400);
    }
}
