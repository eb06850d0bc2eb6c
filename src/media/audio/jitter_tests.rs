use super::*;

const F: u64 = 20_000;

/// A buffer without the start-up depth (the behaviour after it).
fn jb() -> JitterBuffer<u32> {
    JitterBuffer::new(JitterConfig { startup_frames: 0, ..JitterConfig::new(F) })
}

fn ts(seq: u32) -> u32 {
    seq.wrapping_mul(960)
}

/// Pops once per frame from `from_us` to `to_us`, collecting the output.
fn pops(b: &mut JitterBuffer<u32>, at: u64) -> Playout<u32> {
    b.pop(at)
}

#[test]
fn plays_a_clean_stream_with_no_added_delay() {
    let mut b = jb();
    let mut out = Vec::new();
    for i in 0..200u32 {
        let t = u64::from(i) * F;
        b.push(t + 1_000, i, ts(i), i);
        out.push(pops(&mut b, t + 5_000));
    }
    assert_eq!(out, (0..200).map(Playout::Frame).collect::<Vec<_>>());
    assert_eq!(b.delay_us(), 0);
    let s = b.stats();
    assert_eq!((s.lost, s.stretched, s.dropped, s.late), (0, 0, 0, 0));
}

#[test]
fn sequence_numbers_wrap() {
    let mut b = jb();
    for k in 0..20u32 {
        let seq = (u32::MAX - 9).wrapping_add(k);
        b.push(u64::from(k) * F, seq, ts(seq), k);
        assert_eq!(b.pop(u64::from(k) * F + 1), Playout::Frame(k));
    }
}

#[test]
fn duplicates_are_dropped_and_counted() {
    let mut b = jb();
    for i in 0..50u32 {
        let t = u64::from(i) * F;
        assert_eq!(b.push(t, i, ts(i), i), Push::Accepted);
        assert_eq!(b.push(t + 10, i, ts(i), i), Push::Duplicate);
        assert_eq!(b.pop(t + 100), Playout::Frame(i));
        // And again once played: now it is late.
        assert_eq!(b.push(t + 200, i, ts(i), i), Push::Late);
    }
    assert_eq!(b.stats().duplicates, 50);
    assert_eq!(b.stats().played, 50);
}

#[test]
fn reordered_packets_play_in_order() {
    // Pairs swap on the wire: 1 0 3 2 5 4 …, each pair arriving together.
    let mut b = jb();
    let mut played = Vec::new();
    for pair in 0..100u32 {
        let t = u64::from(pair) * 2 * F;
        for i in [2 * pair + 1, 2 * pair] {
            b.push(t, i, ts(i), i);
        }
        for k in 0..2 {
            if let Playout::Frame(x) = b.pop(t + k * F + 1) {
                played.push(x);
            }
        }
    }
    let sorted = {
        let mut s = played.clone();
        s.sort();
        s
    };
    assert_eq!(played, sorted, "never out of order");
    assert!(played.len() >= 195, "played {}", played.len());
    assert_eq!(b.stats().late, 0);
}

#[test]
fn a_burst_of_loss_is_concealed_and_playout_goes_on() {
    let mut b = jb();
    let mut out = Vec::new();
    for i in 0..100u32 {
        let t = u64::from(i) * F;
        if !(40..45).contains(&i) {
            b.push(t, i, ts(i), i);
        }
        out.push(b.pop(t + 1));
    }
    // After the burst the loss rate is 5 %: the buffer grows by a frame
    // (one more concealment, right after the gap) to have the next
    // packet at hand for FEC, so the last frame plays one pop later.
    out.push(b.pop(100 * F + 1));
    let concealed = out.iter().filter(|p| matches!(p, Playout::Conceal { .. })).count();
    let frames = out.iter().filter(|p| matches!(p, Playout::Frame(_))).count();
    assert_eq!(frames, 95);
    assert_eq!(concealed, 5 + 1, "{out:?}");
    assert_eq!(b.stats().lost, 5);
    assert!(out.iter().all(|p| *p != Playout::Idle), "the gap is concealed, not silence");
    // The FEC hint: the frame after the gap came with the last concealment.
    assert_eq!(b.stats().played, 95);
}

#[test]
fn a_late_packet_is_dropped_after_its_frame_was_concealed() {
    let mut b = jb();
    for i in 0..10u32 {
        b.push(u64::from(i) * F, i, ts(i), i);
        b.pop(u64::from(i) * F + 1);
    }
    // 10 is delayed; 11 and 12 arrive; the buffer gives up on 10.
    b.push(10 * F, 11, ts(11), 11);
    b.push(10 * F + 1, 12, ts(12), 12);
    assert_eq!(b.pop(10 * F + 2), Playout::Conceal { next: Some(11) });
    assert_eq!(b.push(10 * F + 3, 10, ts(10), 10), Push::Late);
    assert_eq!(b.pop(11 * F), Playout::Frame(11));
    assert_eq!(b.stats().late, 1);
}

#[test]
fn jitter_grows_the_buffer_and_keeps_loss_low() {
    // Arrival delay uniform in 0..40 ms (a ±20 ms jitter).
    let mut b = jb();
    let mut rng = 12345u64;
    let mut arrivals = Vec::new();
    for i in 0..3000u32 {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = (rng >> 33) % 40_000;
        arrivals.push((u64::from(i) * F + delay, i));
    }
    arrivals.sort();
    let mut a = arrivals.into_iter().peekable();
    let mut frames = 0;
    for tick in 0..3100u64 {
        let now = tick * F + 10_000;
        while let Some(&(t, i)) = a.peek() {
            if t > now {
                break;
            }
            b.push(t, i, ts(i), i);
            a.next();
        }
        if matches!(b.pop(now), Playout::Frame(_)) {
            frames += 1;
        }
        assert!(b.delay_us() <= 200_000);
    }
    let s = b.stats();
    assert!(frames >= 2900, "played {frames} of 3000: {s:?}");
    assert!(s.late + s.lost <= 90, "{s:?}");
    assert!(b.target_frames() >= 1, "the target follows the jitter ({} µs)", b.jitter_us());
}

#[test]
fn clock_drift_either_way_keeps_the_delay_bounded() {
    for (sender_ppm, name) in [(10_000i64, "sender 1% fast"), (-10_000, "sender 1% slow")] {
        let mut b = jb();
        let period = (F as i64 * 1_000_000 / (1_000_000 + sender_ppm)) as u64;
        let mut next_send = 0u64;
        let mut seq = 0u32;
        let mut frames = 0u64;
        let ticks = 30_000u64; // ten minutes
        for tick in 0..ticks {
            let now = tick * F + 7_000;
            while next_send <= now {
                b.push(next_send, seq, ts(seq), seq);
                seq += 1;
                next_send += period;
            }
            if matches!(b.pop(now), Playout::Frame(_)) {
                frames += 1;
            }
            assert!(b.delay_us() <= 200_000, "{name}: {} µs", b.delay_us());
        }
        let s = b.stats();
        // 1% of 30 000 frames is 300 to drop or to stretch.
        assert!(frames as f64 >= ticks as f64 * 0.985, "{name}: played {frames}, {s:?}");
        assert_eq!(s.resets, 0, "{name}: {s:?}");
        if sender_ppm > 0 {
            assert!((250..=450).contains(&s.dropped), "{name}: {s:?}");
        } else {
            assert!((250..=450).contains(&s.stretched), "{name}: {s:?}");
        }
    }
}

#[test]
fn excess_delay_is_dropped_in_a_pause_or_after_two_seconds_without_one() {
    // Two frames more than needed from the start, on a clean network.
    // Returns the pop at which a frame was skipped, and the pops.
    let run = |quiet_at: &dyn Fn(u64) -> bool| -> (Option<u64>, u64) {
        let mut b = jb();
        b.push(0, 0, ts(0), 0);
        b.push(0, 1, ts(1), 1);
        let mut want = 0;
        for k in 0..200u64 {
            let seq = k as u32 + 2;
            b.push(k * F + 1_000, seq, ts(seq), seq);
            b.set_quiet(quiet_at(k));
            let Playout::Frame(got) = b.pop(k * F + 5_000) else { panic!("pop {k}") };
            if got != want {
                return (Some(k), b.stats().dropped);
            }
            want = got + 1;
        }
        (None, b.stats().dropped)
    };
    // An owner that never says drops after one window (25 pops), both
    // frames in a row (the whole excess in one pause).
    assert_eq!(run(&|_| true), (Some(25), 2));
    // Talking throughout the first window, a pause at pop 40: the drop
    // waits for it, and takes both frames there.
    assert_eq!(run(&|k| (40..45).contains(&k)), (Some(41), 2));
    // No pause at all: after four windows anyway.
    assert_eq!(run(&|_| false), (Some(100), 1));
}

#[test]
fn a_stall_s_excess_is_dropped_in_one_pause() {
    // The sender stalls for 100 ms (frames 20 to 24 arrive together
    // with 25): the buffer stretched five frames waiting. The talker
    // pauses at pops 80 to 89; the five frames go there, in a row.
    let mut b = jb();
    let mut lags = Vec::new();
    for k in 0..200u64 {
        let t = k * F;
        match k {
            20..25 => {}
            25 => {
                for seq in 20..=25u32 {
                    b.push(t + 1_000, seq, ts(seq), seq);
                }
            }
            _ => {
                b.push(t + 1_000, k as u32, ts(k as u32), k as u32);
            }
        }
        b.set_quiet((80..90).contains(&k));
        lags.push(match b.pop(t + 5_000) {
            Playout::Frame(x) => Some(k as i64 - i64::from(x)),
            _ => None,
        });
    }
    assert_eq!(lags[30], Some(5), "{lags:?}");
    let moves: Vec<(usize, i64)> = lags
        .iter()
        .enumerate()
        .skip(30)
        .filter_map(|(k, l)| l.map(|l| (k, l)))
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0].1 != w[1].1)
        .map(|w| (w[1].0, w[1].1))
        .collect();
    // One frame per pop from the pause's first, back to no delay.
    assert_eq!(moves, vec![(81, 4), (82, 3), (83, 2), (84, 1), (85, 0)], "{lags:?}");
    let s = b.stats();
    assert_eq!((s.dropped, s.stretched, s.lost), (5, 5, 0), "{s:?}");
}

#[test]
fn never_holds_more_than_200_ms() {
    let mut b = jb();
    for i in 0..30u32 {
        b.push(0, i, ts(i), i);
    }
    assert!(b.delay_us() <= 200_000);
    assert_eq!(b.stats().dropped, 20);
    // The newest ten are the ones kept.
    assert_eq!(b.pop(1), Playout::Frame(20));
}

#[test]
fn a_silent_sender_goes_idle_and_a_restart_is_followed() {
    let mut b = jb();
    for i in 0..10u32 {
        b.push(u64::from(i) * F, i, ts(i), i);
        b.pop(u64::from(i) * F + 1);
    }
    let outs: Vec<_> = (10..20u64).map(|k| b.pop(k * F + 1)).collect();
    assert!(matches!(outs[0], Playout::Conceal { .. }), "a short gap is concealed first");
    assert_eq!(outs[9], Playout::Idle);
    // The sender comes back with a new sequence (a host restart).
    b.push(21 * F, 5_000_000, 0, 777);
    assert_eq!(b.pop(21 * F + 1), Playout::Frame(777));
}

#[test]
fn an_end_mark_makes_the_pause_silence_not_loss() {
    // A talkspurt of 10 frames, the last marked; a 1 s pause; the next
    // talkspurt goes on with the next sequence number.
    let mut b = jb();
    let mut out = Vec::new();
    for k in 0..100u64 {
        let t = k * F;
        let seq = match k {
            0..10 => Some(k as u32),
            60..70 => Some(k as u32 - 50),
            _ => None,
        };
        if let Some(seq) = seq {
            b.push_marked(t, seq, (k as u32) * 960, Some(seq), seq == 9 || seq == 19);
        }
        out.push(b.pop(t + 1));
        if k == 9 {
            assert!(b.ended());
        }
    }
    let frames: Vec<u32> = out
        .iter()
        .filter_map(|p| if let Playout::Frame(x) = p { Some(*x) } else { None })
        .collect();
    assert_eq!(frames, (0..20).collect::<Vec<_>>());
    assert!(!out.iter().any(|p| matches!(p, Playout::Conceal { .. })), "{out:?}");
    let s = b.stats();
    assert_eq!((s.lost, s.stretched, s.talkspurts), (0, 0, 2), "{s:?}");
    // Without the mark the same pause starts with concealment.
    let mut b = jb();
    for k in 0..10u64 {
        b.push(k * F, k as u32, (k as u32) * 960, k as u32);
        b.pop(k * F + 1);
    }
    assert!(matches!(b.pop(10 * F + 1), Playout::Conceal { .. }));
}

#[test]
fn an_end_mark_without_audio_ends_the_talkspurt_and_late_packets_stay_out() {
    let mut b = jb();
    for k in 0..5u32 {
        b.push(u64::from(k) * F, k, k * 960, k);
        assert_eq!(b.pop(u64::from(k) * F + 1), Playout::Frame(k));
    }
    b.push_marked(5 * F, 5, 5 * 960, None, true);
    assert_eq!(b.pop(5 * F + 1), Playout::Idle);
    assert_eq!(b.pop(6 * F + 1), Playout::Idle);
    // A duplicate of an old frame after the end is late, not replayed.
    assert_eq!(b.push(6 * F + 2, 3, 3 * 960, 3), Push::Late);
    b.push(20 * F, 6, 20 * 960, 6);
    assert_eq!(b.pop(20 * F + 1), Playout::Frame(6));
    assert_eq!(b.stats().lost + b.stats().stretched, 0);
}

#[test]
fn redundant_copies_fill_lost_frames_in_time_and_nothing_else() {
    // Every packet also carries the previous frame (depth 1); every
    // 10th packet is lost. The buffer holds one frame more, so each
    // loss is rebuilt from the next packet's copy: nothing concealed.
    let mut b = jb();
    let mut out = Vec::new();
    for i in 0..200u32 {
        let t = u64::from(i) * F;
        if i % 10 != 5 {
            b.push(t + 1_000, i, ts(i), i);
            b.set_min_depth(1);
            if i > 0 && b.wants(i - 1) {
                assert!(b.push_redundant(i - 1, i - 1));
            }
        }
        out.push(b.pop(t + 5_000));
    }
    let frames: Vec<u32> = out
        .iter()
        .filter_map(|p| if let Playout::Frame(x) = p { Some(*x) } else { None })
        .collect();
    // One frame of delay: playout starts once a second packet is here,
    // and 199 is still buffered at the end.
    assert_eq!(out[0], Playout::Idle);
    assert_eq!(frames, (0..199).collect::<Vec<_>>());
    let s = b.stats();
    assert_eq!((s.lost, s.recovered, s.received), (0, 20, 180), "{s:?}");
    assert_eq!(s.stretched, 0, "a lost packet is no reason to grow: {s:?}");
    // A copy of a frame that arrived, or that was already played, is ignored.
    assert!(!b.push_redundant(198, 0));
    assert!(!b.push_redundant(150, 0));
    // A copy is not taken for a frame in front of a talkspurt that has
    // not started playing (it would be the tail of an earlier one).
    let mut b = jb();
    b.push(0, 100, ts(100), 100);
    assert!(!b.wants(99) && !b.push_redundant(99, 99));
    assert_eq!(b.pop(1), Playout::Frame(100));
}

#[test]
fn the_redundancy_depth_is_the_largest_seen_lately() {
    let mut b = jb();
    b.set_min_depth(2);
    assert_eq!(b.target_frames(), 2);
    // One packet that carries fewer copies does not move the target...
    b.set_min_depth(0);
    assert_eq!(b.target_frames(), 2);
    // ...a second without any does.
    for _ in 0..DEPTH_MEMORY {
        b.set_min_depth(0);
    }
    assert_eq!(b.target_frames(), 0);
}

/// A call's start on a lossy link, on a virtual clock: every 10th
/// packet is lost; the sender adds two copies of the earlier frames
/// from packet 15 on (once the receiver's report reached it); the
/// talker pauses at pops 60 to 65. Frames 35 and 45 have no copies
/// (lost before a host that forwards: a gap no copy fills). Returns,
/// per pop, the playout lag
/// (pop index minus the frame played; `None` when no frame played) and
/// the stats.
fn lossy_start(copies: u8, quiet_at: impl Fn(u64) -> bool) -> (Vec<Option<i64>>, JitterStats) {
    lossy_start_with(jb(), copies, quiet_at)
}

fn lossy_start_with(
    mut b: JitterBuffer<u32>,
    copies: u8,
    quiet_at: impl Fn(u64) -> bool,
) -> (Vec<Option<i64>>, JitterStats) {
    let mut lags = Vec::new();
    for k in 0..300u64 {
        let t = k * F;
        let seq = k as u32;
        if k % 10 != 5 {
            let red = if k >= 15 { copies } else { 0 };
            b.set_min_depth(red);
            b.push(t + 1_000, seq, ts(seq), seq);
            for back in 1..=u32::from(red) {
                let copied = seq - back != 35 && seq - back != 45;
                if seq >= 14 + back && copied && b.wants(seq - back) {
                    b.push_redundant(seq - back, seq - back);
                }
            }
        }
        b.set_quiet(quiet_at(k));
        lags.push(match b.pop(t + 5_000) {
            Playout::Frame(x) => Some(k as i64 - i64::from(x)),
            _ => None,
        });
    }
    (lags, b.stats())
}

#[test]
fn on_a_lossy_start_the_buffer_grows_in_a_pause_not_mid_word() {
    let pause = 60..66u64;
    let (lags, s) = lossy_start(2, |k| pause.contains(&k));
    let played: Vec<(usize, i64)> =
        lags.iter().enumerate().filter_map(|(k, l)| l.map(|l| (k, l))).collect();
    // Where the playout lag moved: a jump of 20 ms (or more) heard.
    let moves: Vec<usize> =
        played.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0).collect();
    // The first loss (frame 5, with nothing after it here yet: it may
    // just be late) is waited for once; every other growth, to the
    // copies' depth of two frames, happens in the pause.
    let mid_word: Vec<usize> = moves
        .iter()
        .copied()
        .filter(|&k| !(pause.start as usize..=pause.end as usize).contains(&k))
        .collect();
    assert!(mid_word.len() <= 1, "lag moved mid-word at pops {mid_word:?} (all moves {moves:?})");
    let last = played.last().unwrap().1;
    assert_eq!(last, 2, "two frames of delay for two copies: {lags:?}");
    // After the pause every lost packet is rebuilt from a copy.
    let after: Vec<i64> = played.iter().filter(|(k, _)| *k > 70).map(|(_, l)| *l).collect();
    assert!(after.iter().all(|&l| l == last), "{after:?}");
    assert!(s.recovered >= 20, "{s:?}");
    // Talking throughout (no pause to grow in): the frame waited for at
    // the first loss after the copies started (15, rebuilt from 16's
    // copy) left one frame of delay, which rebuilds every single loss;
    // nothing else moves mid-word.
    let (lags, s) = lossy_start(2, |_| false);
    let played: Vec<i64> = lags.iter().filter_map(|l| *l).collect();
    let moves = played.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!((moves, played.last().copied()), (1, Some(1)), "{lags:?} {s:?}");
    assert_eq!(s.lost, 3, "5, before the copies, and 35 and 45: {s:?}");
}

/// Playout lags of the frames played, in pop order, and where they moved.
fn moves(lags: &[Option<i64>]) -> (Vec<i64>, Vec<usize>) {
    let played: Vec<(usize, i64)> =
        lags.iter().enumerate().filter_map(|(k, l)| l.map(|l| (k, l))).collect();
    let moved = played.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0).collect();
    (played.into_iter().map(|(_, l)| l).collect(), moved)
}

#[test]
fn a_call_starts_at_the_redundancy_depth_and_a_lossy_one_never_jumps() {
    // The lossy start above with the start-up depth: the first frame
    // plays two frames late, and that is where it stays: the copies,
    // when they come, find the room they need; no jump, paused or not.
    let b = JitterBuffer::new(JitterConfig::new(F));
    let (lags, s) = lossy_start_with(b, 2, |_| false);
    let (played, moved) = moves(&lags);
    assert_eq!(played[0], 2, "{lags:?}");
    assert!(moved.is_empty(), "moved at pops {moved:?}: {lags:?}");
    // Frame 5 (before the copies) concealed where it fell; all later
    // losses rebuilt, even 35 and 45 (which no copy can fill) are
    // concealed in place.
    assert_eq!((s.lost, s.stretched, s.dropped), (3, 0, 0), "{s:?}");
    assert!(s.recovered >= 25, "{s:?}");
}

#[test]
fn a_clean_call_leaves_the_start_up_depth_in_its_first_pause_after_a_second() {
    let mut b = JitterBuffer::new(JitterConfig::new(F));
    let mut lags = Vec::new();
    for k in 0..200u64 {
        let t = k * F;
        b.push(t + 1_000, k as u32, ts(k as u32), k as u32);
        // Pauses at pops 30 to 39 (too early: not proved clean yet)
        // and 120 to 129.
        b.set_quiet((30..40).contains(&k) || (120..130).contains(&k));
        lags.push(match b.pop(t + 5_000) {
            Playout::Frame(x) => Some(k as i64 - i64::from(x)),
            _ => None,
        });
    }
    let (played, moved) = moves(&lags);
    assert_eq!(&lags[..2], &[None, None], "two frames held first");
    assert_eq!(played[0], 2);
    // Both frames go in one pause, the first after the clean second.
    assert_eq!(moved, vec![121, 122], "{lags:?}");
    assert_eq!(played.last(), Some(&0), "no delay left on a clean link");
    let s = b.stats();
    assert_eq!((s.lost, s.stretched, s.dropped), (0, 0, 2), "{s:?}");
}

#[test]
fn the_start_up_depth_ends_with_the_first_talkspurt() {
    // A click: five frames and an end mark, then a pause; the next
    // click plays at once.
    let mut b = JitterBuffer::new(JitterConfig::new(F));
    let mut out = Vec::new();
    for k in 0..40u64 {
        let seq = match k {
            0..6 => Some(k as u32),
            25..31 => Some(k as u32 - 19),
            _ => None,
        };
        if let Some(seq) = seq {
            let end = seq == 5 || seq == 11;
            b.push_marked(k * F + 1_000, seq, (k as u32) * 960, Some(seq), end);
        }
        out.push(b.pop(k * F + 5_000));
    }
    assert_eq!(&out[..3], &[Playout::Idle, Playout::Idle, Playout::Frame(0)], "held first");
    assert_eq!(out[25], Playout::Frame(6), "the second click at once: {out:?}");
}

#[test]
fn without_copies_a_loss_is_concealed_in_place_and_the_fec_frame_added_in_a_pause() {
    // Every 10th packet lost and no redundancy: the target becomes one
    // frame (the next packet at hand for FEC) once the loss rate shows,
    // and the buffer takes that frame in the pause; each loss before
    // is concealed where it falls, with no jump.
    let pause = 60..66u64;
    let (lags, s) = lossy_start(0, |k| pause.contains(&k));
    let played: Vec<(usize, i64)> =
        lags.iter().enumerate().filter_map(|(k, l)| l.map(|l| (k, l))).collect();
    let moves: Vec<usize> =
        played.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0).collect();
    assert!(
        moves.iter().all(|&k| (pause.start as usize..=pause.end as usize).contains(&k)),
        "moves {moves:?}"
    );
    assert_eq!(played.last().unwrap().1, 1, "{lags:?}");
    assert_eq!(s.lost, 30, "{s:?}");
}

#[test]
fn loss_meter_counts_gaps_per_interval() {
    let mut m = LossMeter::new();
    assert_eq!(m.take(), None);
    // 50 packets, every 10th lost, one duplicate.
    for seq in (1000u32..1050).filter(|s| s % 10 != 3) {
        m.record(seq);
    }
    assert_eq!(m.pending(), 50, "1000 to 1049");
    assert_eq!(m.pending_lost(), 5);
    m.record(1049);
    let (loss, expected) = m.take().unwrap();
    assert_eq!(expected, 50);
    // 5 lost, but the duplicate counts as received (RFC 3550 does too).
    assert!((loss - 4.0 / 50.0).abs() < 1e-9, "{loss}");
    // A pause: nothing expected, no figure.
    assert_eq!(m.take(), None);
    // Sequence numbers wrap; a clean interval is 0.
    let mut m = LossMeter::new();
    for k in 0..20u32 {
        m.record((u32::MAX - 10).wrapping_add(k));
    }
    assert_eq!(m.pending_lost(), 0);
    assert_eq!(m.take(), Some((0.0, 20)));
    // A restarted sender starts a new count.
    m.record(100_000);
    m.record(100_001);
    assert_eq!(m.take(), Some((0.0, 2)));
}

#[test]
fn late_only_while_a_pop_would_stretch() {
    let mut b = jb();
    assert!(!b.late(), "nothing played yet");
    for i in 0..10u32 {
        let t = u64::from(i) * F;
        b.push(t + 1_000, i, ts(i), i);
        assert_eq!(b.pop(t + 5_000), Playout::Frame(i));
    }
    // Packet 10 is not here and nothing after it: a pop now would wait.
    assert!(b.late() && b.waiting());
    // It comes a moment later: nothing to wait for.
    b.push(10 * F + 6_000, 10, ts(10), 10);
    assert!(!b.late());
    assert_eq!(b.pop(10 * F + 6_500), Playout::Frame(10));
    // Packet 11 lost, 12 here: a pop gives 11 up, so nobody should wait
    // for it (it is still `waiting`, the client's broader question).
    b.push(12 * F + 1_000, 12, ts(12), 12);
    assert!(b.waiting() && !b.late());
    assert!(matches!(b.pop(11 * F + 5_000), Playout::Conceal { next: Some(12) }));
    assert_eq!(b.stats().stretched, 0, "given up, not waited for");
    // A talkspurt that ended is a pause, not a late packet.
    b.push_marked(12 * F + 1_000, 13, ts(13), Some(13), true);
    assert_eq!(b.pop(12 * F + 5_000), Playout::Frame(12));
    assert_eq!(b.pop(13 * F + 5_000), Playout::Frame(13));
    assert!(!b.late());
}
