//! Video: fragmentation and reassembly on a virtual clock (loss, reordering,
//! duplication, hostile fragments), the relay's subscriptions, and loopback
//! runs of the whole path (test camera → JPEG → fragments → host → receiver →
//! RGBA) with and without the loss shim.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::shim::{Impairment, Shim};
use common::{LOOPBACK, SEC, join, start_host};
use sapora::client::bot::{BotOptions, run_bot};
use sapora::client::media::MediaLink;
use sapora::client::video::{BotVideoOptions, VideoEngine, VideoEvent, VideoOptions};
use sapora::media::video::{
    Assembled, CameraChoice, Reassembler, ReassemblyConfig, fragment_frame, read_counter,
};
use sapora::proto::{
    FragmentHeader, Layer, MAX_FRAGMENT_PAYLOAD, MsgType, SESSION_OFFSET, Subscription, VideoHello,
    VideoPacket, decode_video, encode_fragment, encode_video_control,
};
use sapora::server::Directory;
use sapora::server::core::{HostEvent, SessionId};
use sapora::server::video::{DropReason, Output, RelayConfig, VideoRelay};
use smol::future::FutureExt;

const MS: Duration = Duration::from_millis(1);

/// Deterministic pseudo-random numbers for shuffles and loss.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn frame_bytes(id: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(id * 7) as u8).collect()
}

fn header(session: u32, frame_id: u32, layer: Layer) -> FragmentHeader {
    FragmentHeader {
        session: SessionId(session),
        frame_id,
        layer,
        index: 0,
        count: 0,
        frame_len: 0,
        capture_us: 1000 + u64::from(frame_id),
        stride: MAX_FRAGMENT_PAYLOAD as u16,
    }
}

/// All datagrams of one frame.
fn datagrams(session: u32, frame_id: u32, layer: Layer, data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let (mut seq, mut buf) = (0u16, Vec::new());
    fragment_frame(header(session, frame_id, layer), data, &mut seq, &mut buf, |d| {
        out.push(d.to_vec())
    });
    out
}

fn push(r: &mut Reassembler, now: Instant, datagram: &[u8]) -> Option<Assembled> {
    match decode_video(datagram) {
        Ok(VideoPacket::Fragment(f)) => r.push(now, &f),
        _ => None,
    }
}

#[test]
fn reassembles_through_loss_reordering_and_duplicates_never_corrupt() {
    let t0 = Instant::now();
    let mut rng = Rng(0x5EED);
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let mut emitted = Vec::new();
    let mut whole_sent = 0;
    let frames = 300u32;
    // 15 fps; each frame's fragments are shuffled within a window, 5% lost,
    // 5% duplicated; frames of different sizes, some a single fragment.
    for id in 0..frames {
        let now = t0 + Duration::from_millis(u64::from(id) * 66);
        let len = [1, 1200, 1201, 9000, 35_000][id as usize % 5] + (id as usize % 7);
        let data = frame_bytes(id, len);
        let mut grams = datagrams(9, id, Layer::Full, &data);
        let mut lost = false;
        grams.retain(|_| {
            let keep = rng.below(100) >= 5;
            lost |= !keep;
            keep
        });
        for i in (1..grams.len()).rev() {
            grams.swap(i, rng.below(i + 1));
        }
        let dups: Vec<Vec<u8>> = grams.iter().filter(|_| rng.below(100) < 5).cloned().collect();
        grams.extend(dups);
        whole_sent += u32::from(!lost);
        for (k, g) in grams.iter().enumerate() {
            let at = now + MS * k as u32 / 4;
            r.expire(at);
            if let Some(f) = push(&mut r, at, g) {
                assert_eq!(f.data, frame_bytes(f.frame_id, f.data.len()), "frame {}", f.frame_id);
                assert_eq!(f.capture_us, 1000 + u64::from(f.frame_id));
                emitted.push(f.frame_id);
            }
        }
    }
    // Every frame that lost nothing came out, in order, exactly once.
    assert_eq!(emitted.len() as u32, whole_sent, "{:?}", r.stats());
    assert!(emitted.windows(2).all(|w| w[0] < w[1]));
    assert!(whole_sent < frames, "the test must lose something");
    let s = r.stats();
    assert!(s.duplicates > 0);
    // Lost frames are dropped by the timeout; nothing is left holding memory.
    r.expire(t0 + Duration::from_secs(60));
    assert_eq!(r.pending_bytes(), 0);
    assert_eq!(s.frames, u64::from(whole_sent));
}

#[test]
fn incomplete_frames_time_out_and_late_fragments_are_ignored() {
    let t0 = Instant::now();
    let config = ReassemblyConfig { timeout: Duration::from_millis(100), ..Default::default() };
    let mut r = Reassembler::new(config);
    let a = datagrams(1, 10, Layer::Thumb, &frame_bytes(10, 5000));
    // Frame 10 misses its last fragment until after the timeout.
    for g in &a[..a.len() - 1] {
        assert_eq!(push(&mut r, t0, g), None);
    }
    assert_eq!(r.next_timeout(), Some(t0 + Duration::from_millis(100)));
    assert_eq!(r.expire(t0 + Duration::from_millis(99)), 0);
    assert_eq!(r.expire(t0 + Duration::from_millis(100)), 1);
    // The straggler starts a new attempt that never completes: no frame.
    assert_eq!(push(&mut r, t0 + Duration::from_millis(120), &a[a.len() - 1]), None);
    // Frame 11 arrives whole; then a late fragment of frame 10 is refused.
    let b = datagrams(1, 11, Layer::Thumb, &frame_bytes(11, 2500));
    let got: Vec<_> = b.iter().filter_map(|g| push(&mut r, t0 + 200 * MS, g)).collect();
    assert_eq!(got.len(), 1);
    assert_eq!(push(&mut r, t0 + 201 * MS, &a[0]), None);
    assert!(r.stats().late >= 1);
    // A frame id far behind means the sender restarted: accepted.
    let c = datagrams(1, 0, Layer::Thumb, &frame_bytes(0, 100));
    let _ = push(&mut r, t0 + 300 * MS, &c[0]);
    let d = datagrams(1, 100_000, Layer::Thumb, &frame_bytes(1, 100));
    assert!(push(&mut r, t0 + 301 * MS, &d[0]).is_some());
    let restarted = datagrams(1, 5, Layer::Thumb, &frame_bytes(5, 100));
    assert!(push(&mut r, t0 + 302 * MS, &restarted[0]).is_some());
}

#[test]
fn hostile_fragments_are_dropped_and_never_panic_or_corrupt() {
    let t0 = Instant::now();
    let mut r = Reassembler::new(ReassemblyConfig::default());
    let good = datagrams(3, 1, Layer::Full, &frame_bytes(1, 3000));
    let h = header(3, 1, Layer::Full);
    let enc = |h: FragmentHeader, data: &[u8]| {
        let mut out = Vec::new();
        encode_fragment(&h, data, 0, &mut out);
        out
    };
    let hostile = [
        // index ≥ count
        enc(FragmentHeader { index: 3, count: 3, frame_len: 3000, ..h }, &[0; 600]),
        // absurd count for the size
        enc(FragmentHeader { index: 0, count: 65535, frame_len: 3000, ..h }, &[0; 1200]),
        // absurd size
        enc(FragmentHeader { index: 0, count: 65535, frame_len: u32::MAX, ..h }, &[0; 1200]),
        // a different size for the same frame (would misplace bytes)
        enc(FragmentHeader { index: 0, count: 3, frame_len: 2500, ..h }, &[0xEE; 1100]),
        // another stride for the same frame (would misplace bytes too)
        enc(
            FragmentHeader { index: 1, count: 3, frame_len: 3000, stride: 1000, ..h },
            &[0xEE; 1000],
        ),
        // short middle fragment
        enc(FragmentHeader { index: 1, count: 3, frame_len: 3000, ..h }, &[0xEE; 10]),
        // garbage and truncations
        vec![1, 0x40, 0, 0, 0, 3, 0, 0, 0, 0, 1, 2, 3],
        vec![],
        good[0][..20].to_vec(),
    ];
    let mut emitted = Vec::new();
    // Hostile fragments interleaved with the real frame's (which starts it).
    for (i, g) in good.iter().enumerate() {
        if let Some(f) = push(&mut r, t0 + MS * i as u32, g) {
            emitted.push(f);
        }
        for bad in &hostile {
            if let Some(f) = push(&mut r, t0 + MS * i as u32, bad) {
                emitted.push(f);
            }
        }
    }
    // The consistent-but-wrong "2500-byte frame 1" header is refused as
    // inconsistent with the frame already in progress, so the real one wins.
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].data, frame_bytes(1, 3000));
    assert!(r.stats().inconsistent >= 1, "{:?}", r.stats());
    // Memory stays bounded under a flood of new frame ids claiming 1 MiB.
    for id in 0..10_000u32 {
        let f = FragmentHeader {
            session: SessionId(id % 300),
            frame_id: id,
            index: 0,
            count: sapora::proto::fragment_count(1 << 20, MAX_FRAGMENT_PAYLOAD as u16),
            frame_len: 1 << 20,
            ..h
        };
        let _ = push(&mut r, t0, &enc(f, &[0; MAX_FRAGMENT_PAYLOAD]));
    }
    assert!(r.pending_bytes() <= ReassemblyConfig::default().max_pending_bytes);
}

// ---- relay ----

fn directory() -> Directory {
    let d = Directory::default();
    for (s, token, name, room) in [
        (1, 11, "ann", "lab"),
        (2, 22, "bob", "lab"),
        (3, 33, "cy", "lab"),
        (4, 44, "dee", "other"),
    ] {
        d.apply(&HostEvent::Joined {
            session: SessionId(s),
            token,
            name: name.into(),
            room: room.into(),
            ip: LOOPBACK,
        });
    }
    d
}

fn hello(session: u32, default: Subscription, subs: &[(u32, Subscription)]) -> Vec<u8> {
    let subs = subs.iter().map(|&(s, sub)| (SessionId(s), sub)).collect();
    let h = VideoHello { session: SessionId(session), default, subs, roster: 0 };
    let mut out = Vec::new();
    encode_video_control(MsgType::VideoHello, &h, &mut out);
    out
}

fn fragment(session: u32, layer: Layer) -> Vec<u8> {
    let h = FragmentHeader { frame_len: 100, count: 1, ..header(session, 1, layer) };
    let mut out = Vec::new();
    encode_fragment(&h, &[7; 100], 0, &mut out);
    out
}

/// An idle room's hellos go unanswered once the receiver echoes the
/// roster's version; a join changes the version and brings a roster again.
#[test]
fn a_current_roster_is_sent_once_and_again_after_a_join() {
    let t0 = Instant::now();
    let dir = directory();
    let mut relay = VideoRelay::new(RelayConfig::default(), dir.clone());
    let mut targets = Vec::new();
    let mut say = |relay: &mut VideoRelay, roster: u32| {
        let h =
            VideoHello { session: SessionId(1), default: Subscription::Full, subs: vec![], roster };
        let mut d = Vec::new();
        encode_video_control(MsgType::VideoHello, &h, &mut d);
        relay.handle(t0, SessionId(1), &mut d, &mut targets)
    };
    let roster = |out: Output| match out {
        Output::Reply(bytes) => match decode_video(&bytes) {
            Ok(VideoPacket::Roster(r)) => r,
            other => panic!("{other:?}"),
        },
        other => panic!("hello not answered: {other:?}"),
    };
    let first = roster(say(&mut relay, 0));
    assert_eq!(first.members.len(), 3);
    assert_ne!(first.version, 0);
    // Same room, same version: nothing goes back, though the hello counts.
    assert_eq!(say(&mut relay, first.version), Output::Quiet);
    assert_eq!(say(&mut relay, first.version), Output::Quiet);
    assert_eq!(relay.stats().rosters_current, 2);
    assert_eq!(relay.stats().hellos, 3);
    // A stale version (a lost roster, a rejoin) is answered.
    assert_eq!(roster(say(&mut relay, first.version ^ 1)).version, first.version);
    // Someone joins the room: the old version is out of date.
    dir.apply(&HostEvent::Joined {
        session: SessionId(5),
        token: 55,
        name: "eve".into(),
        room: "lab".into(),
        ip: LOOPBACK,
    });
    let second = roster(say(&mut relay, first.version));
    assert_eq!(second.members.len(), 4);
    assert_ne!(second.version, first.version);
    assert_eq!(say(&mut relay, second.version), Output::Quiet);
}

#[test]
fn relay_honours_subscriptions_rooms_and_the_links_sender() {
    let t0 = Instant::now();
    let mut relay = VideoRelay::new(RelayConfig::default(), directory());
    let mut targets = Vec::new();
    // `from` is the session that owns the link the datagram arrived on.
    let mut say = |relay: &mut VideoRelay, from: u32, mut d: Vec<u8>| {
        let out = relay.handle(t0, SessionId(from), &mut d, &mut targets);
        (out, targets.iter().map(|s| s.0).collect::<Vec<u32>>(), d)
    };
    // ann: thumbnails of everyone but bob in full; bob: full of all; cy: none
    // of ann; dee (other room): full of all.
    for (from, h, room_size) in [
        (1, hello(1, Subscription::Thumb, &[(2, Subscription::Full)]), 3),
        (2, hello(2, Subscription::Full, &[]), 3),
        (3, hello(3, Subscription::Thumb, &[(1, Subscription::None)]), 3),
        (4, hello(4, Subscription::Full, &[]), 1),
    ] {
        match say(&mut relay, from, h).0 {
            // The roster names the hello's room, by session id.
            Output::Reply(roster) => match decode_video(&roster) {
                Ok(VideoPacket::Roster(r)) => {
                    assert_eq!(r.members.len(), room_size);
                    assert!(r.members.iter().any(|m| m.session == SessionId(from)));
                }
                other => panic!("{other:?}"),
            },
            other => panic!("hello not answered: {other:?}"),
        }
    }
    let sorted = |mut v: Vec<u32>| {
        v.sort();
        v
    };
    // ann's full layer: only bob (never ann herself, not cy, not dee's room).
    let (out, to, fwd) = say(&mut relay, 1, fragment(1, Layer::Full));
    assert_eq!((out, sorted(to)), (Output::Forward, vec![2]));
    assert_eq!(&fwd[SESSION_OFFSET..SESSION_OFFSET + 4], &1u32.to_be_bytes());
    // ann's thumbnail: nobody (bob takes full, cy takes none of ann).
    let (_, to, _) = say(&mut relay, 1, fragment(1, Layer::Thumb));
    assert!(to.is_empty());
    // bob's full layer → ann (per-sender full); thumb → cy.
    let (_, to, _) = say(&mut relay, 2, fragment(2, Layer::Full));
    assert_eq!(sorted(to), vec![1]);
    let (_, to, _) = say(&mut relay, 2, fragment(2, Layer::Thumb));
    assert_eq!(sorted(to), vec![3]);
    // cy's layers: thumb → ann; full → bob.
    let (_, to, _) = say(&mut relay, 3, fragment(3, Layer::Thumb));
    assert_eq!(sorted(to), vec![1]);
    let (_, to, _) = say(&mut relay, 3, fragment(3, Layer::Full));
    assert_eq!(sorted(to), vec![2]);
    // Spoofed: ann's link sends a fragment that names bob as its sender. It
    // goes where ann's full layer goes (bob, not ann, who takes bob's full
    // layer), stamped as ann's: nobody can send as somebody else.
    let (out, to, fwd) = say(&mut relay, 1, fragment(2, Layer::Full));
    assert_eq!((out, sorted(to)), (Output::Forward, vec![2]));
    assert_eq!(&fwd[SESSION_OFFSET..SESSION_OFFSET + 4], &1u32.to_be_bytes(), "ann's, not bob's");
    // A link whose session is unknown (left, or never registered), and
    // malformed bytes: dropped and counted.
    let (out, to, _) = say(&mut relay, 9, fragment(1, Layer::Full));
    assert_eq!((out, to.len()), (Output::Drop(DropReason::BadToken), 0));
    let (out, _, _) = say(&mut relay, 9, hello(2, Subscription::Full, &[]));
    assert_eq!(out, Output::Drop(DropReason::BadToken));
    let (out, _, _) = say(&mut relay, 1, vec![1, 0x40, 0, 0, 0, 1, 0, 0, 0, 0, 9]);
    assert_eq!(out, Output::Drop(DropReason::Malformed));
    let s = relay.stats();
    assert_eq!((s.bad_token, s.malformed, s.hellos, s.receivers), (2, 1, 4, 4));
    // A hello naming bob from ann's link changed ann's subscriptions, not
    // bob's: bob still gets ann's full layer, ann still not her own.
    let (_, _, _) = say(&mut relay, 1, hello(2, Subscription::None, &[]));
    let (_, to, _) = say(&mut relay, 1, fragment(1, Layer::Full));
    assert_eq!(to, vec![2]);
    let (_, to, _) = say(&mut relay, 2, fragment(2, Layer::Thumb));
    assert_eq!(sorted(to), vec![3], "ann now takes none");
}

#[test]
fn thumbnail_receivers_never_get_full_layer_bytes_and_quiet_receivers_expire() {
    let t0 = Instant::now();
    let dir = directory();
    let mut relay = VideoRelay::new(RelayConfig::default(), dir.clone());
    let mut targets = Vec::new();
    let mut rx_bytes: BTreeMap<u32, Vec<Layer>> = BTreeMap::new();
    let mut rng = Rng(7);
    let subs = [Subscription::Thumb, Subscription::Full, Subscription::None];
    for step in 0..2000u32 {
        let now = t0 + MS * step;
        // Everyone re-sends hellos now and then; bob (2) and cy (3) flip
        // between thumb, full and none.
        if step % 100 == 0 {
            for s in [1, 2, 3] {
                let sub = if s == 1 { Subscription::Thumb } else { subs[rng.below(3)] };
                let mut h = hello(s, sub, &[]);
                let _ = relay.handle(now, SessionId(s), &mut h, &mut targets);
            }
        }
        let sender = [1u32, 2, 3][rng.below(3)];
        let layer = if rng.below(2) == 0 { Layer::Full } else { Layer::Thumb };
        let mut d = fragment(sender, layer);
        if let Output::Forward = relay.handle(now, SessionId(sender), &mut d, &mut targets) {
            for to in &targets {
                assert_ne!(to.0, sender, "sent back to the sender");
                rx_bytes.entry(to.0).or_default().push(layer);
            }
        }
    }
    // ann subscribes to thumbnails only, the whole time.
    let ann = &rx_bytes[&1];
    assert!(!ann.is_empty() && ann.iter().all(|l| *l == Layer::Thumb));
    // A receiver that stops saying hello stops receiving after the timeout.
    let later = t0 + Duration::from_secs(30);
    relay.tick(later);
    let mut d = fragment(1, Layer::Thumb);
    let _ = relay.handle(later, SessionId(1), &mut d, &mut targets);
    assert!(targets.is_empty());
    // A receiver who leaves the meeting is forgotten at the next tick.
    let mut h = hello(2, Subscription::Full, &[]);
    let _ = relay.handle(later, SessionId(2), &mut h, &mut targets);
    dir.apply(&HostEvent::Left {
        session: SessionId(2),
        name: "bob".into(),
        room: "lab".into(),
        change: sapora::proto::PresenceChange::Left,
    });
    relay.tick(later + MS);
    assert_eq!(relay.stats().receivers, 0);
}

// ---- loopback ----

/// Waits for `n` frames from the engine, checking each is a whole test
/// pattern frame (its drawn counter equals its frame id).
async fn whole_frames(engine: &VideoEngine, n: usize, within: Duration) -> Vec<u32> {
    let events = engine.events();
    let deadline = Instant::now() + within;
    let mut ids = Vec::new();
    while ids.len() < n {
        let next = common::recv_by(&events, deadline).await;
        match next {
            Some(VideoEvent::Frame(f)) => {
                let img = &f.image;
                assert_eq!(
                    read_counter(&img.pixels, img.width, img.height),
                    Some(f.frame_id as u16),
                    "frame {} from {} is not whole",
                    f.frame_id,
                    f.name
                );
                ids.push(f.frame_id);
            }
            Some(VideoEvent::CameraFailed(e)) => panic!("camera failed: {e}"),
            None => panic!("only {} of {n} frames within {within:?}", ids.len()),
        }
    }
    ids
}

#[test]
fn frames_keep_arriving_whole_through_five_percent_loss() {
    if common::skip_over_tls("frames_keep_arriving_whole_through_five_percent_loss") {
        return;
    }
    smol::block_on(async {
        let host = start_host().await;
        let imp = Impairment {
            loss: 0.05,
            delay: 2 * MS,
            jitter: 3 * MS,
            duplicate: 0.01,
            ..Impairment::none()
        };
        // The shim sits in front of the host's QUIC port: the links, and
        // the datagrams on them, cross it.
        let shim = Shim::start(host.control_addr, imp);
        let ann = common::join_through(shim.addr, "ann", "").await;
        let bob = common::join_through(shim.addr, "bob", "").await;
        let send = VideoOptions::new("ann", CameraChoice::Test, Subscription::None);
        let (sender, err) = VideoEngine::start(MediaLink::of(&ann).unwrap(), send).unwrap();
        assert_eq!(err, None);
        assert!(sender.camera_on());
        // Our own camera shows in our own slot (the "(You)" tile), unrelayed.
        let own = ann.current().session;
        let deadline = std::time::Instant::now() + 5 * SEC;
        let preview = loop {
            if let Some(f) = sender.latest(own) {
                break f;
            }
            assert!(std::time::Instant::now() < deadline, "no local preview");
            smol::Timer::after(20 * MS).await;
        };
        assert_eq!(preview.name, "ann");
        assert_eq!(preview.image.pixels.len(), preview.image.width * preview.image.height * 4);
        // Camera on is visible to the room.
        let state = sapora::proto::MediaState { camera: sender.camera_on(), ..Default::default() };
        ann.set_media(state).unwrap();
        common::expect(&bob, 5 * SEC, |e| match e {
            sapora::client::Event::Members(l) => {
                l.members.iter().any(|m| m.name == "ann" && m.camera).then_some(())
            }
            _ => None,
        })
        .await;
        for (sub, want) in [(Subscription::Thumb, Layer::Thumb), (Subscription::Full, Layer::Full)]
        {
            let recv = VideoOptions::new("bob", CameraChoice::None, sub);
            let (receiver, _) = VideoEngine::start(MediaLink::of(&bob).unwrap(), recv).unwrap();
            let ids = whole_frames(&receiver, 8, 20 * SEC).await;
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "frames go forward: {ids:?}");
            let latest = receiver.latest(ann.current().session).expect("a tile for ann");
            assert_eq!((latest.layer, latest.name.as_str()), (want, "ann"));
            let stats = receiver.stats();
            assert_eq!(stats.len(), 1);
            receiver.stop();
        }
        assert!(shim.stats().dropped.load(std::sync::atomic::Ordering::Relaxed) > 0);
        sender.stop();
        host.shutdown().await;
    });
}

#[test]
fn three_bots_with_test_cameras_see_each_other() {
    smol::block_on(async {
        let host = start_host().await;
        let (_stop_tx, stop) = smol::channel::bounded::<()>(1);
        let bots: Vec<_> = ["ann", "bob", "cy"]
            .into_iter()
            .map(|name| {
                let opts = BotOptions {
                    duration: Some(Duration::from_secs(5)),
                    video: BotVideoOptions {
                        camera: CameraChoice::Test,
                        subscribe: Subscription::Thumb,
                        ..Default::default()
                    },
                    ..BotOptions::new(host.control_addr, name)
                };
                smol::spawn(run_bot(opts, stop.clone()))
            })
            .collect();
        let mut reports = Vec::new();
        for b in bots {
            reports.push(
                b.or(async {
                    smol::Timer::after(30 * SEC).await;
                    panic!("bot did not finish")
                })
                .await,
            );
        }
        for r in &reports {
            assert!(r.errors.is_empty(), "{}: {:?}", r.name, r.errors);
            let others: Vec<&String> = r.video.keys().collect();
            assert_eq!(others.len(), 2, "{} saw {others:?}", r.name);
            assert!(!r.video.contains_key(&r.name), "own video came back");
            for (from, v) in &r.video {
                // 15 fps sent; a debug build on a loaded 2-core machine
                // delivers less, so this is a floor, not the target (the
                // release figures are in the benchmark notes).
                assert!(v.fps >= 7.0 && v.frames >= 30, "{} from {from}: {v:?}", r.name);
                assert!(v.latency_ms.is_some());
            }
        }
        // Everyone subscribed to thumbnails: no full-layer byte left the host.
        let stats = host.video_stats();
        assert!(stats.bytes_out_thumb > 0 && stats.bytes_out_full == 0, "{stats:?}");
        host.shutdown().await;
    });
}

#[test]
fn video_follows_a_host_restart() {
    smol::block_on(async {
        // Only the control port is fixed (the clients rejoin there); the video
        // port is picked anew, so the engines must follow the new Welcome.
        let fixed = sapora::proto::Ports::with_offset(common::unique_offset(31)).unwrap();
        let ports = sapora::proto::Ports { control: fixed.control, ..common::options().ports };
        common::isolate();
        let opts = sapora::server::HostOptions::new(LOOPBACK, ports, "restarting");
        let host = sapora::server::start(opts.clone()).await.unwrap();
        let ann = join(host.control_addr, "ann", "").await;
        let bob = join(host.control_addr, "bob", "").await;
        let send = VideoOptions::new("ann", CameraChoice::Test, Subscription::None);
        let (_sender, _) = VideoEngine::start(MediaLink::of(&ann).unwrap(), send).unwrap();
        let recv = VideoOptions::new("bob", CameraChoice::None, Subscription::Thumb);
        let (receiver, _) = VideoEngine::start(MediaLink::of(&bob).unwrap(), recv).unwrap();
        whole_frames(&receiver, 3, 10 * SEC).await;

        host.shutdown().await;
        smol::Timer::after(Duration::from_millis(500)).await;
        let host = sapora::server::start(opts).await.unwrap();
        let restarted_us =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros()
                as u64;
        // Both rejoin by themselves (new session ids and tokens); video
        // resumes: a frame captured after the restart arrives, from ann's
        // current session, named.
        let deadline = Instant::now() + 15 * SEC;
        let events = receiver.events();
        loop {
            assert!(Instant::now() < deadline, "no video after the restart");
            let next = async { events.recv().await.ok() }
                .or(async {
                    smol::Timer::after(200 * MS).await;
                    None
                })
                .await;
            if let Some(VideoEvent::Frame(f)) = next
                && f.capture_us > restarted_us
                && f.sender == ann.current().session
            {
                assert_eq!(f.name, "ann");
                break;
            }
        }
        host.shutdown().await;
    });
}
