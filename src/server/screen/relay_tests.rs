//! The relay core's tests, on a virtual clock.
use super::*;
use crate::media::screen::{Canvas, FrameRef, TestScreen, TileEncoder};
use crate::proto::TileFrame;

const W: u16 = 320;
const H: u16 = 200;

fn who(session: u32, name: &str) -> Result<Who, String> {
    Ok(Who { session: SessionId(session), token: 1, name: name.into(), room: RoomKey::new("r") })
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

fn send_frame(h: &mut Harness, conn: ScreenConn, enc: &mut TileEncoder, f: &FrameRef<'_>, n: u32) {
    let tiles = enc.encode(f).unwrap();
    let head = TileFrameHead { frame: n, capture_ms: u64::from(n), width: W, height: H, flags: 0 };
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
        session: SessionId(1),
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
        matches!(&host_msgs(&h.take(a))[..], [ScreenHostMsg::Started(s)] if s.session == SessionId(1)),
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
    h.input(Input::Hello { conn: ScreenConn(1), who: Err("wrong token".into()), presenter: false });
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
