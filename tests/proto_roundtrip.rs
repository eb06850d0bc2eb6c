//! Property tests of the wire format: whatever a sender may encode, the
//! receiver decodes to exactly the same value (`decode(encode(x)) == x`).
//! The hostile-input proptests next to each codec check the other direction
//! (no input panics); these catch an encoder and a decoder that disagree
//! about an offset, a flag bit or a field order.
//!
//! Values are drawn from what the protocol allows (e.g. a fragment index
//! below its count, a tile inside its grid, loss in whole per mille, at most
//! [`MAX_LEVELS`] speaking levels), so every case must round-trip.

use proptest::prelude::*;
use sapora::proto::*;

/// Names as the host hands them out: 1-32 characters, any script.
fn name() -> impl Strategy<Value = String> {
    "\\PC{1,32}"
}

/// Free text (chat, reasons), including what the host would refuse: the
/// codec carries it either way.
fn text() -> impl Strategy<Value = String> {
    "\\PC{0,200}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

fn codec() -> impl Strategy<Value = AudioCodec> {
    prop_oneof![Just(AudioCodec::Pcm16), Just(AudioCodec::Opus)]
}

fn media_state() -> impl Strategy<Value = MediaState> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(mic, camera, screen)| MediaState {
        mic,
        camera,
        screen,
    })
}

fn member() -> impl Strategy<Value = Member> {
    (name(), "[0-9.:a-f]{0,39}", media_state()).prop_map(|(name, ip, m)| Member {
        name,
        ip,
        mic: m.mic,
        camera: m.camera,
        screen: m.screen,
    })
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        Just(ClientMsg::Heartbeat),
        (any::<u8>(), name(), name(), any::<Option<u64>>(), any::<Option<u64>>()).prop_map(
            |(version, name, room, rejoin_token, key)| ClientMsg::Register(Register {
                version,
                name,
                room,
                rejoin_token,
                host_key: key.map(HostKey),
            })
        ),
        text().prop_map(|reason| ClientMsg::Leave(Leave { reason })),
        media_state().prop_map(ClientMsg::MediaState),
        (any::<u32>(), proptest::option::of(name()), text())
            .prop_map(|(id, to, text)| ClientMsg::Chat(ChatSend { id, to, text })),
    ]
}

fn host_msg() -> impl Strategy<Value = HostMsg> {
    let chat_outcome = prop_oneof![
        (any::<u64>(), any::<u64>(), proptest::option::of(name()))
            .prop_map(|(msg_id, ts_ms, to)| ChatOutcome::Delivered { msg_id, ts_ms, to }),
        text().prop_map(|reason| ChatOutcome::Refused { reason }),
    ];
    let presence = prop_oneof![
        Just(PresenceChange::Joined),
        Just(PresenceChange::Left),
        Just(PresenceChange::TimedOut),
        Just(PresenceChange::Dropped),
    ];
    let disconnect = prop_oneof![
        Just(DisconnectCode::HostShutdown),
        Just(DisconnectCode::TimedOut),
        Just(DisconnectCode::Removed),
        Just(DisconnectCode::Ended),
    ];
    prop_oneof![
        Just(HostMsg::Heartbeat),
        (name(), proptest::collection::vec(member(), 0..12), proptest::option::of(name()))
            .prop_map(|(room, members, host_member)| HostMsg::UserList(UserList {
                room,
                members,
                host_member
            })),
        (name(), presence).prop_map(|(name, change)| HostMsg::Presence(Presence { name, change })),
        (any::<u64>(), name(), proptest::option::of(name()), text(), any::<u64>()).prop_map(
            |(id, from, to, text, ts_ms)| HostMsg::Chat(ChatMessage { id, from, to, text, ts_ms })
        ),
        (any::<u32>(), chat_outcome)
            .prop_map(|(id, outcome)| HostMsg::ChatResult(ChatResult { id, outcome })),
        (disconnect, text())
            .prop_map(|(code, reason)| HostMsg::Disconnect(Disconnect { code, reason })),
        ("[0-9.]{7,15}", any::<u16>(), name()).prop_map(|(addr, port, host_name)| {
            HostMsg::Handover(Handover { addr, port, host_name })
        }),
        any::<u32>().prop_map(|waited_ms| HostMsg::MediaUnheard(MediaUnheard { waited_ms })),
    ]
}

proptest! {
    #[test]
    fn headers_round_trip(version: u8, kind: u8, len: u32, seq: u16, flags: u16) {
        let h = Header { version, kind, len, seq, flags };
        let mut out = Vec::new();
        h.encode(&mut out);
        prop_assert_eq!(out.len(), HEADER_LEN);
        prop_assert_eq!(Header::decode(&out), Ok(h));
    }

    #[test]
    fn control_messages_from_clients_round_trip(m in client_msg()) {
        let payload = m.payload();
        prop_assert_eq!(ClientMsg::decode(m.msg_type() as u8, &payload), Ok(m));
    }

    #[test]
    fn control_messages_from_hosts_round_trip(m in host_msg()) {
        let payload = m.payload();
        prop_assert_eq!(HostMsg::decode(m.msg_type() as u8, &payload), Ok(m));
    }

    #[test]
    fn framed_control_messages_round_trip(m in client_msg(), seq: u16) {
        // Header and payload together, as they travel.
        let mut wire = Vec::new();
        Header {
            version: PROTOCOL_VERSION,
            kind: m.msg_type() as u8,
            len: m.payload().len() as u32,
            seq,
            flags: 0,
        }
        .encode(&mut wire);
        wire.extend_from_slice(&m.payload());
        let (h, payload) = decode_datagram(&wire, limits::CONTROL_FROM_CLIENT).unwrap();
        prop_assert_eq!(h.seq, seq);
        prop_assert_eq!(ClientMsg::decode(h.kind, payload), Ok(m));
    }

    #[test]
    fn audio_from_clients_round_trips(
        session: u32, keepalive: bool, end: bool, seq: u32, timestamp: u32,
        codec in codec(), samples: u16, payload in bytes(1200),
    ) {
        let up = AudioUp { session: SessionId(session), keepalive, end, seq, timestamp, codec, samples, payload: &payload };
        let mut out = Vec::new();
        up.encode(&mut out);
        prop_assert_eq!(AudioUp::decode(&out), Ok(up));
        prop_assert!(AudioDown::decode(&out).is_err(), "a client packet is never a host packet");
    }

    #[test]
    fn audio_from_the_host_round_trips(
        seq: u32, keepalive: bool, end: bool, forwarded: bool, fec: bool, timestamp: u32,
        codec in codec(), samples: u16,
        levels in proptest::collection::vec((any::<u32>(), any::<u8>(), name()), 0..=MAX_LEVELS),
        payload in bytes(1200),
    ) {
        let levels: Vec<SpeakingLevel> = levels
            .into_iter()
            .map(|(session, level, name)| SpeakingLevel { session: SessionId(session), level, name })
            .collect();
        let down = AudioDown {
            seq, keepalive, end, forwarded, fec, timestamp, codec, samples, levels, payload: &payload,
        };
        let mut out = Vec::new();
        down.encode(&mut out);
        prop_assert_eq!(AudioDown::decode(&out), Ok(down));
        prop_assert!(AudioUp::decode(&out).is_err(), "a host packet is never a client packet");
    }

    #[test]
    fn audio_feedback_round_trips(
        session: u32, up_loss in 0u16..=1000, up_jitter: u32,
        down_loss in 0u16..=1000, down_jitter: u32, expected in 0u8..=100,
    ) {
        // Loss travels in whole per mille.
        let up = FeedbackUp { session: SessionId(session), loss: f64::from(up_loss) / 1000.0, jitter_us: up_jitter };
        let mut out = Vec::new();
        up.encode(&mut out);
        prop_assert_eq!(FeedbackUp::decode(&out), Ok(up));
        let down = FeedbackDown {
            loss: f64::from(down_loss) / 1000.0,
            jitter_us: down_jitter,
            expected_loss_percent: expected,
        };
        let mut out = Vec::new();
        down.encode(&mut out);
        prop_assert_eq!(FeedbackDown::decode(&out), Ok(down));
    }

    #[test]
    fn video_fragments_round_trip(
        session: u32, frame_id: u32, thumb: bool, capture_us: u64, seq: u16,
        frame_len in 1u32..=40_000, pick: prop::sample::Index, stride in 256u16..=1100,
    ) {
        let count = fragment_count(frame_len, stride);
        let index = pick.index(usize::from(count)) as u16;
        let layer = if thumb { Layer::Thumb } else { Layer::Full };
        let header =
            FragmentHeader { session: SessionId(session), frame_id, layer, index, count, frame_len, capture_us, stride };
        let data: Vec<u8> = (0..fragment_len(frame_len, index, stride)).map(|i| i as u8).collect();
        let mut out = Vec::new();
        encode_fragment(&header, &data, seq, &mut out);
        match decode_video(&out) {
            Ok(VideoPacket::Fragment(f)) => {
                prop_assert_eq!(f.header, header);
                prop_assert_eq!(f.data, &data[..]);
            }
            other => prop_assert!(false, "not the fragment sent: {other:?}"),
        }
    }

    #[test]
    fn screen_tile_updates_round_trip(
        frame: u32, capture_ms: u64, width in 1u16..=SCREEN_MAX_SIDE, height in 1u16..=SCREEN_MAX_SIDE,
        flags: u8,
        tiles in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), proptest::collection::vec(any::<u8>(), 1..300)), 0..20),
    ) {
        let cols = usize::from(width).div_ceil(SCREEN_TILE);
        let rows = usize::from(height).div_ceil(SCREEN_TILE);
        let tiles: Vec<(u16, u16, Vec<u8>)> = tiles
            .into_iter()
            .map(|(c, r, jpeg)| (c.index(cols) as u16, r.index(rows) as u16, jpeg))
            .collect();
        let head = TileFrameHead { frame, capture_ms, width, height, flags };
        let mut out = Vec::new();
        encode_tile_frame(head, tiles.iter().map(|(c, r, j)| (*c, *r, &j[..])), &mut out);
        let parsed = TileFrame::parse(&out).unwrap();
        prop_assert_eq!(parsed.head(), head);
        let got: Vec<(u16, u16, Vec<u8>)> =
            parsed.tiles.iter().map(|t| (t.col, t.row, t.jpeg.to_vec())).collect();
        prop_assert_eq!(got, tiles);
    }

    #[test]
    fn file_chunks_round_trip(offset: u64, data in bytes(4096)) {
        let mut out = Vec::new();
        encode_chunk(offset, &data, &mut out);
        prop_assert_eq!(decode_chunk(out.into()), Ok((offset, data.into())));
    }

    #[test]
    fn discovery_probes_round_trip(version: u8, nonce: u32, seq: u16) {
        let probe = Probe { version, nonce };
        let mut out = Vec::new();
        encode_frame(MsgType::DiscoveryProbe, seq, &probe, &mut out);
        let (h, payload) = decode_datagram(&out, limits::DISCOVERY_DATAGRAM as u32).unwrap();
        prop_assert_eq!(h.kind, MsgType::DiscoveryProbe as u8);
        prop_assert_eq!(decode_payload::<Probe>(payload), Ok(probe));
    }
}
