//! Unit tests of `mux.rs` (a child module of it, so private items are in
//! reach): the wire bytes of §5.1, flow control, priority, limits, the
//! keep-alive and idle rule, and property tests against a model.
use super::*;
use std::task::Waker;

fn t0() -> Instant {
    Instant::now()
}

fn noop() -> &'static Waker {
    Waker::noop()
}

/// Moves every pending message from `from` to `to`; returns how many.
fn pump(from: &mut Mux, to: &mut Mux, now: Instant) -> usize {
    let mut n = 0;
    while let Some(Transmit::Message(m)) = from.poll_transmit(now) {
        to.handle_message(Bytes::from(m), now);
        n += 1;
    }
    n
}

fn pair() -> (Mux, Mux, Instant) {
    let now = t0();
    (Mux::new(Side::Client, now), Mux::new(Side::Host, now), now)
}

fn read_all(mux: &mut Mux, id: u32) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match mux.read(id, &mut buf, noop()).unwrap() {
            Read::Data(n) => out.extend_from_slice(&buf[..n]),
            Read::Fin => return (out, true),
            Read::Blocked => return (out, false),
        }
    }
}

#[test]
fn control_bytes_flow_both_ways_with_kind_zero() {
    let (mut c, mut h, now) = pair();
    assert_eq!(c.write(CONTROL_ID, b"hello", noop()), Ok(5));
    let Some(Transmit::Message(m)) = c.poll_transmit(now) else { panic!() };
    assert_eq!(m, b"\x00hello");
    h.handle_message(Bytes::from(m), now);
    assert_eq!(read_all(&mut h, CONTROL_ID), (b"hello".to_vec(), false));
    h.write(CONTROL_ID, b"back", noop()).unwrap();
    pump(&mut h, &mut c, now);
    assert_eq!(read_all(&mut c, CONTROL_ID).0, b"back");
}

#[test]
fn streams_open_carry_data_and_finish_with_the_documented_bytes() {
    let (mut c, mut h, now) = pair();
    let id = c.open(noop()).unwrap().unwrap();
    assert_eq!(id, 1, "client ids are odd");
    c.write(id, b"abc", noop()).unwrap();
    c.finish(id).unwrap();
    let messages: Vec<_> = std::iter::from_fn(|| c.poll_transmit(now)).collect();
    assert_eq!(
        messages,
        vec![
            Transmit::Message(vec![2, 0, 0, 0, 1]),
            Transmit::Message(vec![3, 0, 0, 0, 1, b'a', b'b', b'c']),
            Transmit::Message(vec![4, 0, 0, 0, 1]),
        ]
    );
    for m in messages {
        let Transmit::Message(m) = m else { unreachable!() };
        h.handle_message(Bytes::from(m), now);
    }
    assert_eq!(h.poll_event(), Some(Event::Accepted(1)));
    assert_eq!(read_all(&mut h, 1), (b"abc".to_vec(), true));
    // The host answers on the same stream and finishes; the state goes
    // once both sides dropped their halves.
    h.write(1, b"ok", noop()).unwrap();
    h.finish(1).unwrap();
    pump(&mut h, &mut c, now);
    assert_eq!(read_all(&mut c, 1), (b"ok".to_vec(), true));
    c.drop_send(1);
    c.drop_recv(1);
    h.drop_send(1);
    h.drop_recv(1);
    assert_eq!(c.stream_count(), 1);
    assert_eq!(h.stream_count(), 1);
    assert_eq!(pump(&mut c, &mut h, now), 0, "nothing left to say: no STOP after FIN");
    // Host ids are even.
    assert_eq!(h.open(noop()).unwrap(), Some(2));
}

#[test]
fn a_writer_stops_at_the_window_and_resumes_when_the_reader_reads() {
    let (mut c, mut h, now) = pair();
    let id = c.open(noop()).unwrap().unwrap();
    let big = vec![7u8; STREAM_WINDOW as usize + 1000];
    let n = c.write(id, &big, noop()).unwrap();
    assert_eq!(n, STREAM_WINDOW as usize);
    assert_eq!(c.write(id, &big[n..], noop()), Ok(0), "no credit left");
    pump(&mut c, &mut h, now);
    h.poll_event();
    let mut buf = vec![0u8; WINDOW_UPDATE_AT as usize];
    assert_eq!(h.read(id, &mut buf, noop()), Ok(Read::Data(buf.len())));
    pump(&mut h, &mut c, now);
    assert_eq!(c.write(id, &big[n..], noop()), Ok(1000));
}

#[test]
fn sending_past_the_credit_is_a_protocol_error() {
    let (mut c, mut h, now) = pair();
    let id = c.open(noop()).unwrap().unwrap();
    pump(&mut c, &mut h, now);
    let mut m = vec![kind::DATA, 0, 0, 0, 1];
    m.extend(std::iter::repeat_n(0u8, MAX_CHUNK));
    for _ in 0..(STREAM_WINDOW as usize / MAX_CHUNK) {
        h.handle_message(Bytes::from(m.clone()), now);
    }
    assert!(h.close_reason().is_none());
    h.handle_message(Bytes::from(vec![kind::DATA, 0, 0, 0, id as u8, 1]), now);
    assert!(matches!(h.close_reason(), Some(CloseReason::Protocol(_))));
    assert_eq!(
        h.poll_transmit(now),
        Some(Transmit::Close {
            code: close_code::PROTOCOL_ERROR,
            reason: "the peer sent past its credit on stream 1".into()
        })
    );
    assert_eq!(h.poll_transmit(now), None);
    assert!(matches!(h.read(id, &mut [0; 4], noop()), Ok(Read::Data(_))));
}

#[test]
fn malformed_messages_close_with_1002_and_reserved_kinds_are_ignored() {
    let bad_batch = &[kind::BATCH, 0, 5, 1, 2][..];
    for bad in
        [&[][..], &[kind::OPEN, 0, 0][..], &[0x3f][..], &[kind::OPEN, 0, 0, 0, 2][..], bad_batch]
    {
        let (_, mut h, now) = pair();
        h.handle_message(Bytes::copy_from_slice(bad), now);
        assert!(matches!(h.close_reason(), Some(CloseReason::Protocol(_))), "{bad:?}");
    }
    let (_, mut h, now) = pair();
    h.handle_message(Bytes::from_static(&[0x40, 1, 2, 3]), now);
    h.handle_message(Bytes::from_static(&[0xff]), now);
    assert_eq!(h.close_reason(), None);
}

#[test]
fn queued_datagrams_cross_as_one_batch_and_arrive_one_by_one_in_order() {
    let (mut c, mut h, now) = pair();
    for i in 0..25u8 {
        c.send_datagram(Bytes::from(vec![i; 1200])).unwrap();
    }
    assert_eq!(pump(&mut c, &mut h, now), 1, "one message for a video frame's fragments");
    let got: Vec<u8> = std::iter::from_fn(|| h.poll_event())
        .map(|e| match e {
            Event::Datagram(d) => {
                assert_eq!(d.len(), 1200);
                d[0]
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got, (0..25).collect::<Vec<u8>>());
    assert_eq!(c.buffered_bytes(), 0);
}

#[test]
fn control_and_datagrams_go_before_queued_file_data() {
    let (mut c, _, now) = pair();
    let id = c.open(noop()).unwrap().unwrap();
    c.write(id, &vec![1u8; 4 * MAX_CHUNK], noop()).unwrap();
    let Some(Transmit::Message(open)) = c.poll_transmit(now) else { panic!() };
    assert_eq!(open[0], kind::OPEN);
    let Some(Transmit::Message(first)) = c.poll_transmit(now) else { panic!() };
    assert_eq!(first[0], kind::DATA);
    c.send_datagram(Bytes::from_static(b"voice")).unwrap();
    c.write(CONTROL_ID, b"chat", noop()).unwrap();
    let next: Vec<u8> = (0..3)
        .map(|_| match c.poll_transmit(now) {
            Some(Transmit::Message(m)) => m[0],
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(next, vec![kind::CONTROL, kind::DATAGRAM, kind::DATA]);
}

#[test]
fn streams_take_turns() {
    let (mut c, _, now) = pair();
    let a = c.open(noop()).unwrap().unwrap();
    let b = c.open(noop()).unwrap().unwrap();
    c.write(a, &vec![1u8; 3 * MAX_CHUNK], noop()).unwrap();
    c.write(b, &vec![2u8; 3 * MAX_CHUNK], noop()).unwrap();
    let mut order = Vec::new();
    while let Some(Transmit::Message(m)) = c.poll_transmit(now) {
        if m[0] == kind::DATA {
            order.push(m[4]);
        }
    }
    assert_eq!(order, vec![1, 3, 1, 3, 1, 3]);
}

#[test]
fn full_datagram_queue_drops_the_oldest() {
    let (mut c, mut h, now) = pair();
    let n = DATAGRAM_QUEUE_BYTES / 1000 + 10;
    for i in 0..n {
        let mut d = vec![0u8; 1000];
        d[..4].copy_from_slice(&(i as u32).to_be_bytes());
        c.send_datagram(Bytes::from(d)).unwrap();
    }
    let kept = DATAGRAM_QUEUE_BYTES / 1000;
    assert_eq!(c.datagrams_dropped(), (n - kept) as u64);
    assert!(c.buffered_bytes() <= DATAGRAM_QUEUE_BYTES);
    pump(&mut c, &mut h, now);
    let Some(Event::Datagram(first)) = h.poll_event() else { panic!() };
    assert_eq!(&first[..4], &((n - kept) as u32).to_be_bytes(), "the newest survive");
    assert_eq!(
        c.send_datagram(Bytes::from(vec![0; MAX_DATAGRAM + 1])),
        Err(StreamError::DatagramTooLarge(MAX_DATAGRAM + 1))
    );
}

#[test]
fn dropping_an_unfinished_send_half_resets_and_stop_asks_for_reset() {
    let (mut c, mut h, now) = pair();
    let id = c.open(noop()).unwrap().unwrap();
    c.write(id, b"partial", noop()).unwrap();
    pump(&mut c, &mut h, now);
    c.drop_send(id);
    pump(&mut c, &mut h, now);
    let mut buf = [0u8; 64];
    assert_eq!(h.read(id, &mut buf, noop()), Err(StreamError::Reset(CODE_DROPPED)));
    // The host stops reading a stream it opened toward the client.
    let id2 = h.open(noop()).unwrap().unwrap();
    pump(&mut h, &mut c, now);
    c.drop_recv(id2);
    pump(&mut c, &mut h, now);
    assert_eq!(h.write(id2, b"x", noop()), Err(StreamError::Stopped(CODE_DROPPED)));
    pump(&mut h, &mut c, now); // the RESET answering STOP
    c.drop_send(id2);
    assert_eq!(c.stream_count(), 2, "control and the half-open stream 1");
}

#[test]
fn opens_past_the_limits_wait_or_are_refused() {
    let (mut c, mut h, now) = pair();
    for _ in 0..MAX_STREAMS {
        assert!(c.open(noop()).unwrap().is_some());
    }
    assert_eq!(c.open(noop()), Ok(None));
    // A peer that ignores the limit gets refusals, not state.
    for i in 0..(MAX_PEER_STREAMS as u32 + 5) {
        h.handle_message(Bytes::from(frame(kind::OPEN, 2 * i + 1, None)), now);
    }
    assert_eq!(h.stream_count(), 1 + MAX_PEER_STREAMS);
    let refusals = std::iter::from_fn(|| h.poll_transmit(now)).count();
    assert_eq!(refusals, 10, "a STOP and a RESET per refused stream");
}

#[test]
fn a_peer_that_never_reads_our_refusals_is_dropped() {
    let (_, mut h, now) = pair();
    for i in 0..(MAX_PEER_STREAMS + MAX_PENDING_FRAMES) as u32 {
        h.handle_message(Bytes::from(frame(kind::OPEN, 2 * i + 1, None)), now);
    }
    assert!(matches!(h.close_reason(), Some(CloseReason::Protocol(_))));
    assert!(h.buffered_bytes() < 64 * 1024);
}

#[test]
fn close_reasons_fit_a_close_frame() {
    let (mut c, _, now) = pair();
    let long = "é".repeat(100); // 200 bytes
    c.close(&long);
    let Some(Transmit::Close { code, reason }) = c.poll_transmit(now) else { panic!() };
    assert_eq!(code, close_code::NORMAL);
    assert!(reason.len() <= MAX_REASON && long.starts_with(&reason), "{reason}");
    assert_eq!(reason.len(), 122, "whole characters only");
}

#[test]
fn keepalive_pings_and_the_idle_timeout_follow_the_clock() {
    let (mut c, _, now) = pair();
    assert_eq!(c.poll_transmit(now), None);
    assert_eq!(c.poll_timeout(), Some(now + KEEP_ALIVE_INTERVAL));
    let later = now + KEEP_ALIVE_INTERVAL;
    c.handle_timeout(later);
    assert_eq!(c.poll_transmit(later), Some(Transmit::Ping));
    assert_eq!(c.poll_timeout(), Some(later + KEEP_ALIVE_INTERVAL));
    c.handle_activity(now + Duration::from_secs(9));
    c.handle_timeout(now + IDLE_TIMEOUT);
    assert_eq!(c.close_reason(), None, "a pong 9 s in keeps it alive");
    let dead = now + Duration::from_secs(9) + IDLE_TIMEOUT;
    c.handle_timeout(dead);
    assert_eq!(c.close_reason(), Some(&CloseReason::TimedOut));
    assert!(matches!(c.poll_transmit(dead), Some(Transmit::Close { code: 1001, .. })));
    let mut buf = [0u8; 4];
    assert!(matches!(c.read(CONTROL_ID, &mut buf, noop()), Err(StreamError::Closed(_))));
    assert!(c.send_datagram(Bytes::from_static(b"x")).is_err());
}

#[derive(Debug, Clone)]
enum Op {
    Write { host: bool, stream: usize, len: usize },
    Read { host: bool, stream: usize, max: usize },
    Finish { host: bool, stream: usize },
    Pump { to_host: bool, messages: usize },
    Datagram { host: bool, len: usize },
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        (any::<bool>(), 0..4usize, 1..200_000usize).prop_map(|(host, stream, len)| Op::Write {
            host,
            stream,
            len
        }),
        (any::<bool>(), 0..4usize, 1..300_000usize).prop_map(|(host, stream, max)| Op::Read {
            host,
            stream,
            max
        }),
        (any::<bool>(), 0..4usize).prop_map(|(host, stream)| Op::Finish { host, stream }),
        (any::<bool>(), 1..50usize).prop_map(|(to_host, messages)| Op::Pump { to_host, messages }),
        (any::<bool>(), 0..2000usize).prop_map(|(host, len)| Op::Datagram { host, len }),
    ]
}

proptest::proptest! {
    /// Whatever the interleaving of writes, reads, finishes and partial
    /// delivery, every stream delivers exactly the bytes written, in
    /// order, then EOF after FIN; no receiver buffers past its window;
    /// no side closes.
    #[test]
    fn streams_deliver_exactly_what_was_written(ops in proptest::collection::vec(op(), 1..60)) {
        let (mut c, mut h, now) = pair();
        let mut ids = vec![CONTROL_ID];
        for _ in 0..3 {
            ids.push(c.open(noop()).unwrap().unwrap());
        }
        pump(&mut c, &mut h, now);
        while h.poll_event().is_some() {}
        // [side][stream]: bytes written (sender side), bytes read.
        let mut written = vec![vec![Vec::<u8>::new(); 4]; 2];
        let mut read = vec![vec![Vec::<u8>::new(); 4]; 2];
        let mut finished = [[false; 4]; 2];
        let mut counter = 0u8;
        for op in ops {
            match op {
                Op::Write { host, stream, len } => {
                    let side = if host { &mut h } else { &mut c };
                    if finished[host as usize][stream] {
                        continue;
                    }
                    let data: Vec<u8> = (0..len).map(|_| { counter = counter.wrapping_add(1); counter }).collect();
                    let n = side.write(ids[stream], &data, noop()).unwrap();
                    written[host as usize][stream].extend_from_slice(&data[..n]);
                }
                Op::Read { host, stream, max } => {
                    let side = if host { &mut h } else { &mut c };
                    let mut buf = vec![0u8; max];
                    if let Read::Data(n) = side.read(ids[stream], &mut buf, noop()).unwrap() {
                        // What this side reads, the other side wrote.
                        read[!host as usize][stream].extend_from_slice(&buf[..n]);
                    }
                }
                Op::Finish { host, stream } => {
                    let side = if host { &mut h } else { &mut c };
                    side.finish(ids[stream]).unwrap();
                    finished[host as usize][stream] = true;
                }
                Op::Pump { to_host, messages } => {
                    let (from, to) = if to_host { (&mut c, &mut h) } else { (&mut h, &mut c) };
                    for _ in 0..messages {
                        match from.poll_transmit(now) {
                            Some(Transmit::Message(m)) => to.handle_message(Bytes::from(m), now),
                            _ => break,
                        }
                    }
                }
                Op::Datagram { host, len } => {
                    let side = if host { &mut h } else { &mut c };
                    side.send_datagram(Bytes::from(vec![1u8; len])).unwrap();
                }
            }
            for side in [&c, &h] {
                proptest::prop_assert!(side.close_reason().is_none(), "{:?}", side.close_reason());
                for s in side.streams.values() {
                    let buffered: usize = s.recv_buf.iter().map(Bytes::len).sum();
                    proptest::prop_assert!(buffered <= STREAM_WINDOW as usize);
                }
            }
        }
        // Finish everything, then deliver and read all of it.
        for (host, side) in [(false, &mut c), (true, &mut h)] {
            for (k, &id) in ids.iter().enumerate() {
                side.finish(id).unwrap();
                finished[host as usize][k] = true;
            }
        }
        loop {
            let moved = pump(&mut c, &mut h, now) + pump(&mut h, &mut c, now);
            let mut progress = moved > 0;
            for (host, side) in [(false, &mut c), (true, &mut h)] {
                for (k, &id) in ids.iter().enumerate() {
                    let mut buf = vec![0u8; 65536];
                    while let Read::Data(n) = side.read(id, &mut buf, noop()).unwrap() {
                        read[!host as usize][k].extend_from_slice(&buf[..n]);
                        progress = true;
                    }
                }
            }
            if !progress {
                break;
            }
        }
        for host in [false, true] {
            for k in 0..4 {
                proptest::prop_assert_eq!(&read[host as usize][k], &written[host as usize][k]);
                let reader = if host { &mut c } else { &mut h };
                proptest::prop_assert_eq!(reader.read(ids[k], &mut [0u8; 8], noop()), Ok(Read::Fin));
            }
        }
    }

    /// Arbitrary messages never panic the receiver.
    #[test]
    fn arbitrary_messages_never_panic(messages in proptest::collection::vec(proptest::collection::vec(0u8..=255, 0..64), 0..50)) {
        let (mut c, mut h, now) = pair();
        c.open(noop()).unwrap();
        pump(&mut c, &mut h, now);
        for m in messages {
            h.handle_message(Bytes::from(m), now);
            while h.poll_event().is_some() {}
            while h.poll_transmit(now).is_some() {}
        }
    }
}
