//! Tests of the passcode exchange: wire round trips and hostile frames,
//! both handshakes against each other, relays and wrong passcodes.

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
        matches!(client, Err(PakeError::Refused { reason: RefuseReason::PasscodeRequired, .. })),
        "{client:?}"
    );
    let (client, _) = run(Some("x"), None, EXPORTER, EXPORTER);
    assert!(
        matches!(client, Err(PakeError::Refused { reason: RefuseReason::NoPasscodeInRoom, .. })),
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
    let (mut client, mut first) = ClientHandshake::start("room", Some(&pass), EXPORTER).unwrap();
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
    assert_eq!(Msg::Start { room: "ab".into(), spake: [0; 33] }.encode().len(), 2 + 1 + 2 + 2 + 33);
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
    assert!(matches!(ClientHandshake::start(&room, None, EXPORTER), Err(PakeError::RoomTooLong)));
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
