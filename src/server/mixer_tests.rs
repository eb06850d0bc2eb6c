use super::*;
use crate::proto::AudioDown;

const F: u64 = 20_000;

/// A constant-value frame makes each talker's share visible in the mix.
fn dc(v: f32) -> Vec<f32> {
    vec![v; 960]
}

struct Room {
    mixer: Mixer,
    enc: HashMap<u32, Encoder>,
    seq: HashMap<u32, u32>,
    now: u64,
}

impl Room {
    fn new(cfg: MixerConfig) -> Room {
        // Mixing is checked from the first tick on; the start-up depth
        // has its own tests (media::audio::jitter).
        // Links count as clean until reported, so the first datagrams'
        // bytes are the talkers' or the mix's own (the assumed loss has
        // its own test).
        let cfg = MixerConfig { jitter_startup_frames: 0, unproven_loss: 0.0, ..cfg };
        Room { mixer: Mixer::new(cfg), enc: HashMap::new(), seq: HashMap::new(), now: 0 }
    }

    fn send(&mut self, session: u32, room: &str, frame: Option<&[f32]>) -> Vec<u8> {
        self.send_marked(session, room, frame, false)
    }

    /// Sends a frame (or a keepalive), `end` marking the talkspurt's last.
    fn send_marked(
        &mut self,
        session: u32,
        room: &str,
        frame: Option<&[f32]>,
        end: bool,
    ) -> Vec<u8> {
        let codec = self.mixer.cfg.codec;
        let enc = self.enc.entry(session).or_insert_with(|| Encoder::new(codec, 48_000).unwrap());
        let seq = self.seq.entry(session).or_insert(0);
        let mut payload = Vec::new();
        if let Some(f) = frame {
            enc.encode(f, &mut payload).unwrap();
            *seq += 1;
        }
        let name = format!("p{session}");
        let up = AudioUp {
            session: SessionId(session),
            keepalive: frame.is_none(),
            end,
            seq: *seq,
            timestamp: seq.wrapping_mul(960),
            codec,
            samples: 960,
            payload: &payload,
        };
        let who = Sender { session: SessionId(session), name: &name, room };
        self.mixer.receive(self.now, who, &up);
        payload
    }

    /// Sends an RFC 2198 redundant packet (`AudioCodec::OpusRed`) the test
    /// built itself, numbered `seq`.
    fn send_red(&mut self, session: u32, room: &str, seq: u32, payload: &[u8]) {
        let up = AudioUp {
            session: SessionId(session),
            keepalive: false,
            end: false,
            seq,
            timestamp: seq * 960,
            codec: AudioCodec::OpusRed,
            samples: 960,
            payload,
        };
        let name = format!("p{session}");
        self.mixer.receive(
            self.now,
            Sender { session: SessionId(session), name: &name, room },
            &up,
        );
    }

    /// Ticks once; returns each listener's decoded audio datagram (by
    /// session). Levels-only datagrams and reports are left out.
    fn tick(&mut self) -> BTreeMap<u32, (Vec<u8>, Vec<f32>)> {
        let mut out = BTreeMap::new();
        self.now += F;
        self.mixer.tick(self.now, |to, data| {
            let session = to.0;
            let Ok(down) = AudioDown::decode(data) else { return };
            if down.keepalive {
                return;
            }
            let mut pcm = vec![0.0; 960];
            Decoder::new().decode(down.codec, down.payload, &mut pcm);
            out.insert(session, (down.payload.to_vec(), pcm));
        });
        out
    }
}

/// Frame `k` of a sine at `hz`, continuous from frame to frame.
fn tone(amplitude: f32, hz: f32, k: usize) -> Vec<f32> {
    (0..960)
        .map(|i| {
            let t = (k * 960 + i) as f32 / 48_000.0;
            amplitude * (std::f32::consts::TAU * hz * t).sin()
        })
        .collect()
}

/// The mix paths (shared and own encoders), without pass-through.
fn opus_room(share: bool) -> Room {
    let mut cfg = MixerConfig::new(AudioCodec::Opus);
    cfg.share_mix = share;
    cfg.pass_through = false;
    Room::new(cfg)
}

fn worst_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn pcm() -> MixerConfig {
    MixerConfig::new(AudioCodec::Pcm16)
}

fn near(a: f32, b: f32) -> bool {
    (a - b).abs() < 2e-4
}

#[test]
fn each_listener_hears_everyone_but_themselves() {
    let mut r = Room::new(pcm());
    let mut heard = BTreeMap::new();
    for _ in 0..5 {
        r.send(1, "lab", Some(&dc(0.1)));
        r.send(2, "lab", Some(&dc(0.02)));
        r.send(3, "lab", Some(&dc(0.004)));
        heard = r.tick();
    }
    assert!(near(heard[&1].1[0], 0.024), "A hears B+C: {}", heard[&1].1[0]);
    assert!(near(heard[&2].1[0], 0.104), "B hears A+C: {}", heard[&2].1[0]);
    assert!(near(heard[&3].1[0], 0.12), "C hears A+B: {}", heard[&3].1[0]);
}

#[test]
fn a_member_held_muted_by_the_host_is_left_out_of_every_mix() {
    let mut r = Room::new(pcm());
    r.mixer.set_silenced(SessionId(1), true);
    let mut heard = BTreeMap::new();
    for _ in 0..5 {
        r.send(1, "lab", Some(&dc(0.1)));
        r.send(2, "lab", Some(&dc(0.02)));
        heard = r.tick();
    }
    // B hears nothing: no datagram at all (a silent stream), or silence.
    let b_hears = heard.get(&2).map_or(0.0, |h| h.1[0]);
    assert!(near(b_hears, 0.0), "B does not hear A: {b_hears}");
    assert!(near(heard[&1].1[0], 0.02), "A still hears B: {}", heard[&1].1[0]);
    r.mixer.set_silenced(SessionId(1), false);
    for _ in 0..3 {
        r.send(1, "lab", Some(&dc(0.1)));
        r.send(2, "lab", Some(&dc(0.02)));
        heard = r.tick();
    }
    assert!(near(heard[&2].1[0], 0.1), "let back: {}", heard[&2].1[0]);
}

#[test]
fn alone_in_a_room_is_silence() {
    let mut r = Room::new(pcm());
    for _ in 0..5 {
        r.send(1, "solo", Some(&dc(0.5)));
        let heard = r.tick();
        // Nothing at all (silence costs no packets), never your own voice.
        assert!(heard.get(&1).is_none_or(|h| h.1.iter().all(|x| *x == 0.0)));
    }
}

#[test]
fn rooms_are_isolated() {
    let mut r = Room::new(pcm());
    for _ in 0..5 {
        r.send(1, "a", Some(&dc(0.3)));
        r.send(2, "a", None);
        r.send(3, "b", Some(&dc(0.2)));
        r.send(4, "b", None);
        let heard = r.tick();
        assert!(near(heard[&2].1[0], 0.3), "room a hears only a");
        assert!(near(heard[&4].1[0], 0.2), "room b hears only b");
        for alone in [1, 3] {
            assert!(heard.get(&alone).is_none_or(|h| h.1.iter().all(|x| *x == 0.0)));
        }
    }
}

#[test]
fn ten_loud_talkers_do_not_clip() {
    let mut r = Room::new(pcm());
    let loud: Vec<f32> =
        (0..960).map(|i| 0.9 * (std::f32::consts::TAU * i as f32 / 48.0).sin()).collect();
    for _ in 0..5 {
        for s in 1..=10 {
            r.send(s, "big", Some(&loud));
        }
        r.send(11, "big", None);
        let heard = r.tick();
        let peak = heard[&11].1.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak < 1.0 && peak > 0.9, "peak {peak}");
    }
    assert!(soft_limit(0.3) == 0.3 && soft_limit(-50.0) >= -1.0);
}

#[test]
fn shared_mix_equals_per_listener_mix_and_saves_encodes() {
    // Opus, so encoder state matters: the shared encoder must produce
    // exactly what a listener's own encoder would.
    let run = |share: bool| {
        let mut r = opus_room(share);
        let mut outs = Vec::new();
        for k in 0..50 {
            let t = |hz| tone(0.2, hz, k);
            r.send(1, "m", Some(&t(300.0)));
            r.send(2, "m", Some(&t(700.0)));
            r.send(3, "m", Some(&t(1100.0)));
            for s in 4..=8 {
                r.send(s, "m", None);
            }
            outs.push(r.tick());
        }
        (outs, r.mixer.stats().encodes)
    };
    let (shared, shared_encodes) = run(true);
    let (own, own_encodes) = run(false);
    for (a, b) in shared.iter().zip(&own) {
        for s in 1..=8 {
            assert_eq!(a[&s].0, b[&s].0, "listener {s} gets the same bytes either way");
        }
        // Listeners 4..8 share one payload.
        assert!((5..=8).all(|s| a[&s].0 == a[&4].0));
    }
    assert_eq!(own_encodes, 50 * 8);
    assert_eq!(shared_encodes, 50 * 4, "three talkers + one shared mix per tick");
}

#[test]
fn a_talker_who_stops_moves_to_the_shared_mix_only_when_the_room_is_quiet() {
    // Talker 1 stops at frame 20 while talker 2 goes on until frame 40.
    // Listener 1 decodes its stream with one decoder, as a client does;
    // the reference is the same room without mix sharing (listener 1
    // keeps one encoder throughout, so its stream has no seam).
    let run = |share: bool| {
        let mut r = opus_room(share);
        let mut dec = Decoder::new();
        let (mut heard, mut same_as_shared) = (Vec::new(), Vec::new());
        for k in 0..70 {
            let t = |hz| tone(0.3, hz, k);
            r.send(1, "m", (k < 20).then(|| t(300.0)).as_deref());
            r.send(2, "m", (k < 40).then(|| t(700.0)).as_deref());
            r.send(3, "m", None);
            let out = r.tick();
            // Once the room is silent nothing is sent (an end mark, with
            // no audio, first): the client plays silence.
            let bytes = out.get(&1).map(|o| &o.0[..]).unwrap_or(&[]);
            same_as_shared.push(bytes == out.get(&3).map(|o| &o.0[..]).unwrap_or(&[]));
            let mut pcm = vec![0.0; 960];
            if !bytes.is_empty() {
                dec.decode(AudioCodec::Opus, bytes, &mut pcm);
            }
            heard.extend(pcm);
        }
        (heard, same_as_shared)
    };
    let (heard, same) = run(true);
    let (reference, _) = run(false);
    // Own stream while talking and while talker 2 still sounds; the
    // shared one once the room has been quiet.
    let switch = same.iter().position(|s| *s).expect("back on the shared mix");
    assert!((41..50).contains(&switch), "switched at frame {switch}: {same:?}");
    assert!(same[switch..].iter().all(|s| *s), "{same:?}");
    let worst = worst_difference(&heard, &reference);
    // Switching mid-sound differs by about 0.011 here (100× this bound).
    assert!(worst < 0.001, "the switch is inaudible: worst difference {worst}");
}

#[test]
fn a_listener_who_starts_talking_goes_on_hearing_a_seamless_stream() {
    // Talker 1 talks throughout; listener 2 starts talking at frame 20
    // and so leaves the shared mix for a mix of its own, mid-sound.
    // Reference: the same room without sharing, where listener 2 has
    // had one encoder from the start. Both orders of the starter and
    // the remaining listener, as the mixer visits sessions in order.
    let run = |share: bool, starter: u32, silent: u32| {
        let mut r = opus_room(share);
        let mut dec = Decoder::new();
        let mut heard = Vec::new();
        for k in 0..40 {
            let t = |hz| tone(0.3, hz, k);
            r.send(1, "m", Some(&t(300.0)));
            r.send(starter, "m", (k >= 20).then(|| t(700.0)).as_deref());
            r.send(silent, "m", None);
            let out = r.tick();
            let mut pcm = vec![0.0; 960];
            dec.decode(AudioCodec::Opus, &out[&starter].0, &mut pcm);
            heard.extend(pcm);
        }
        (heard, r.mixer.stats().encodes)
    };
    for (starter, silent) in [(2, 3), (3, 2)] {
        let (heard, encodes) = run(true, starter, silent);
        let (reference, _) = run(false, starter, silent);
        let worst = worst_difference(&heard, &reference);
        // The codec's own variation: the 300 Hz tone repeats exactly
        // every 6 frames, its encodings differ by this much.
        let noise = (5 * 960..13 * 960)
            .map(|i| (reference[i] - reference[i + 6 * 960]).abs())
            .fold(0.0, f32::max);
        // A fresh encoder differs by 0.32 here (its look-ahead starts
        // as silence: a gap under the talker's voice).
        assert!(
            worst < 2.0 * noise && worst < 0.05,
            "the move to its own mix is inaudible: worst difference {worst}, codec noise {noise}"
        );
        // The shared mix 40 times, the starter's own mix 20 times, talker
        // 1's 20 times (it hears nobody before: no encoder runs for
        // that), and priming once.
        assert_eq!(encodes, 40 + 20 + 20 + PRIME_FRAMES as u64, "priming is paid once");
    }
}

#[test]
fn ten_ms_frames_keep_levels_at_five_a_second() {
    let cfg = MixerConfig::new(AudioCodec::Opus).with_frame_samples(480);
    assert_eq!((cfg.frame_samples, cfg.levels_every), (480, 20));
    let cfg = MixerConfig::new(AudioCodec::Opus).with_frame_samples(123);
    assert_eq!((cfg.frame_samples, cfg.levels_every), (960, 10));
}

#[test]
fn speaking_levels_name_the_talker_a_few_times_a_second() {
    let mut r = Room::new(pcm());
    let mut reports = 0;
    for _ in 0..50 {
        r.send(1, "lab", Some(&dc(0.2)));
        r.send(2, "lab", None);
        r.now += F;
        r.mixer.tick(r.now, |to, data| {
            let Ok(d) = AudioDown::decode(data) else { return };
            if to == SessionId(2) && !d.levels.is_empty() {
                reports += 1;
                let l1 = d.levels.iter().find(|l| l.session == SessionId(1)).unwrap();
                assert!(l1.level >= crate::proto::SPEAKING_LEVEL && l1.name == "p1");
                let l2 = d.levels.iter().find(|l| l.session == SessionId(2)).unwrap();
                assert_eq!(l2.level, 0);
            }
        });
    }
    assert_eq!(reports, 5, "every 200 ms over one second");
}

#[test]
fn departed_sessions_stop_getting_audio() {
    let mut r = Room::new(pcm());
    r.send(1, "x", Some(&dc(0.1)));
    r.send(2, "x", None);
    r.send(3, "x", None);
    assert_eq!(r.tick().keys().copied().collect::<Vec<_>>(), [2, 3]);
    r.mixer.retain(|s, _| s != SessionId(2));
    r.send(1, "x", Some(&dc(0.1)));
    assert_eq!(r.tick().keys().copied().collect::<Vec<_>>(), [3]);
    // And a listener silent for longer than the timeout is not sent to.
    r.now += 6_000_000;
    assert!(r.tick().is_empty());
}

/// Every audio datagram the mixer sends in one tick (reception reports
/// left out), by session.
fn tick_all(r: &mut Room) -> Vec<(u32, Vec<u8>)> {
    let mut out = Vec::new();
    r.now += F;
    r.mixer.tick(r.now, |to, data| {
        if !crate::proto::is_audio_feedback(data) {
            out.push((to.0, data.to_vec()))
        }
    });
    out
}

#[test]
fn a_lone_talker_is_forwarded_unchanged_under_each_listeners_sequence() {
    let mut r = Room::new(MixerConfig::new(AudioCodec::Opus));
    // Listeners 2 and 3 joined earlier: their sequences differ.
    r.send(3, "m", None);
    for _ in 0..3 {
        r.tick();
    }
    r.send(2, "m", None);
    let mut last_seq: HashMap<u32, u32> = HashMap::new();
    for k in 0..50 {
        let sent = r.send(1, "m", Some(&tone(0.3, 440.0, k)));
        for (to, data) in tick_all(&mut r) {
            let d = AudioDown::decode(&data).unwrap();
            if d.keepalive {
                continue;
            }
            assert_ne!(to, 1, "the talker hears nobody: no audio at all");
            assert!(d.forwarded);
            assert_eq!(d.payload, &sent[..], "listener {to} gets the talker's own bytes");
            if let Some(prev) = last_seq.insert(to, d.seq) {
                assert_eq!(d.seq, prev + 1, "listener {to}'s own sequence");
            }
        }
    }
    let s = r.mixer.stats();
    assert_eq!(s.encodes, 0, "no second encode");
    assert_eq!(s.forwarded, 100);
}

/// Windowed RMS (2.5 ms) of `x` against the ideal signal's: the worst
/// ratio either way, as a factor ≥ 1 (a gap or a click shows as a large one).
fn worst_level_jump(x: &[f32], ideal: &[f32], delay: usize) -> (f32, usize) {
    let mut worst = (1.0f32, 0);
    for (i, (w, v)) in x[delay..].chunks_exact(120).zip(ideal.chunks_exact(120)).enumerate() {
        let (a, b) = (rms(w), rms(v));
        let f = if a > b { a / b.max(1e-6) } else { b / a.max(1e-6) };
        if f > worst.0 {
            worst = (f, i * 120);
        }
    }
    worst
}

#[test]
fn moving_between_pass_through_and_a_mix_leaves_no_gap_or_click() {
    // Talker 1 talks throughout; talker 2 from frame 20 to 40, then
    // stops with an end mark. Listener 3 hears 1 forwarded, then the
    // shared mix of 1 + 2 (a new stream, primed with 1's frames), then
    // the shared mix of 1 alone until a quiet moment (talker 1 pauses at
    // frame 60), then 1 forwarded again.
    // It decodes everything with one decoder, as a client does.
    let mut r = Room::new(MixerConfig::new(AudioCodec::Opus));
    let mut dec = Decoder::new();
    let (mut heard, mut ideal) = (Vec::new(), Vec::new());
    let mut streams = Vec::new();
    for k in 0..100 {
        let one = (!(60..64).contains(&k)).then(|| tone(0.3, 300.0, k));
        let two = (20..40).contains(&k).then(|| tone(0.3, 700.0, k));
        r.send_marked(1, "m", one.as_deref(), k == 59);
        r.send_marked(2, "m", two.as_deref(), k == 39);
        r.send(3, "m", None);
        let mut pcm = vec![0.0; 960];
        let mut kind = "none";
        for (to, data) in tick_all(&mut r) {
            let d = AudioDown::decode(&data).unwrap();
            if to == 3 && !d.keepalive && !d.payload.is_empty() {
                dec.decode(AudioCodec::Opus, d.payload, &mut pcm);
                kind = if d.forwarded { "forwarded" } else { "mix" };
            }
        }
        streams.push(kind);
        heard.extend(pcm);
        let mut want = one.unwrap_or(vec![0.0; 960]);
        for (w, t) in want.iter_mut().zip(two.unwrap_or(vec![0.0; 960])) {
            *w = soft_limit(*w + t);
        }
        ideal.extend(want);
    }
    assert!(streams[5..20].iter().all(|s| *s == "forwarded"), "{streams:?}");
    assert!(streams[21..40].iter().all(|s| *s == "mix"), "{streams:?}");
    assert!(streams[66..].iter().all(|s| *s == "forwarded"), "{streams:?}");
    // Opus delays by its look-ahead: 6.5 ms at 48 kHz, one generation
    // (pass-through) or two (the mix) alike here, since the host decodes
    // without delay of its own beyond the talker's encoder.
    let delay = (0..960).step_by(12).min_by_key(|&d| {
        let e: f32 = heard[d + 10 * 960..d + 15 * 960]
            .iter()
            .zip(&ideal[10 * 960..15 * 960])
            .map(|(a, b)| (a - b).powi(2))
            .sum();
        (e * 1e6) as u64
    });
    let delay = delay.unwrap();
    // Around each switch (frames 18-24 and 36-44): the level follows the
    // ideal signal's, no window at half or twice of it.
    for (from, to) in [(18, 24), (36, 44)] {
        let (f, at) = worst_level_jump(
            &heard[from * 960..to * 960 + delay],
            &ideal[from * 960..to * 960],
            delay,
        );
        assert!(f < 2.0, "frames {from}-{to}: level off by ×{f:.2} at sample {at}");
    }
    let s = r.mixer.stats();
    assert!(s.forwarded >= 70, "{s:?}");
}

#[test]
fn a_silent_room_costs_no_encodes_and_almost_no_packets() {
    let mut r = Room::new(MixerConfig::new(AudioCodec::Opus));
    // Talker 1 says 10 frames and ends the talkspurt; then nobody talks
    // for 5 s while everyone's keepalives come once a second.
    let mut per_member: HashMap<u32, u32> = HashMap::new();
    let mut ends = 0;
    for k in 0..260u64 {
        let talk = (k < 10).then(|| tone(0.3, 440.0, k as usize));
        if talk.is_some() || k % 50 == 0 {
            r.send_marked(1, "quiet", talk.as_deref(), k == 9);
        }
        for s in 2..=4 {
            if k % 50 == 0 {
                r.send(s, "quiet", None);
            }
        }
        for (to, data) in tick_all(&mut r) {
            let d = AudioDown::decode(&data).unwrap();
            ends += u32::from(d.end);
            if k >= 60 {
                *per_member.entry(to).or_default() += 1;
            }
        }
    }
    assert_eq!(ends, 3, "each listener's last frame was marked as the end");
    let encodes = r.mixer.stats().encodes;
    assert_eq!(encodes, 0, "nothing encoded: one talker was forwarded, then silence");
    for s in 1..=4 {
        let n = per_member.get(&s).copied().unwrap_or(0);
        // 200 ticks = 4 s: a levels-only datagram every 2 s (none at all
        // would leave a talker who hears nobody without the tick's phase).
        assert!((2..=4 * 3).contains(&n), "member {s}: {n} datagrams in 4 s of silence");
    }
}

#[test]
fn senders_learn_the_loss_to_encode_for_from_both_legs() {
    let mut cfg = MixerConfig::new(AudioCodec::Opus);
    cfg.feedback_every = 50;
    let mut r = Room::new(cfg);
    let expected = |r: &mut Room, lose_every: usize, listener_loss: f64| -> Option<u8> {
        let mut got = None;
        for k in 0..50 {
            let f = tone(0.3, 440.0, k);
            if lose_every > 0 && k % lose_every == 0 {
                // Lost on the way: the sequence number moves on unseen.
                *r.seq.entry(1).or_insert(0) += 1;
            } else {
                r.send(1, "fb", Some(&f));
            }
            if k == 0 {
                let name = "p2".to_string();
                let who = Sender { session: SessionId(2), name: &name, room: "fb" };
                let report =
                    FeedbackUp { session: SessionId(2), loss: listener_loss, jitter_us: 100 };
                r.mixer.feedback(r.now, who, &report);
            }
            r.now += F;
            r.mixer.tick(r.now, |to, data| {
                if let (true, Ok(fb)) = (to == SessionId(1), FeedbackDown::decode(data)) {
                    got = Some(fb.expected_loss_percent);
                }
            });
        }
        got
    };
    assert_eq!(expected(&mut r, 0, 0.0), Some(0), "a clean LAN: no FEC");
    // 10 % lost on the way up; the listener it is forwarded to measures
    // 5 % (end to end): the uplink's figure rules.
    assert_eq!(expected(&mut r, 10, 0.05), Some(10));
    // Now the host knows the uplink is lossy and mixes instead of
    // forwarding (PASS_THROUGH_MAX_UP_LOSS): the listener's 20 % is its
    // own encoder's business, and the talker encodes for the uplink.
    assert_eq!(expected(&mut r, 10, 0.2), Some(10));
    assert_eq!(r.mixer.stats().feedback_in, 3);
}

/// A reception report from listener `s` on what the host sends it.
fn report(r: &mut Room, s: u32, room: &str, loss: f64) {
    let name = format!("p{s}");
    let who = Sender { session: SessionId(s), name: &name, room };
    let fb = FeedbackUp { session: SessionId(s), loss, jitter_us: 0 };
    r.mixer.feedback(r.now, who, &fb);
}

#[test]
fn redundancy_rebuilds_uplink_losses_and_goes_only_to_listeners_who_report_loss() {
    let mut r = Room::new(MixerConfig::new(AudioCodec::Opus));
    r.send(2, "red", None);
    r.send(3, "red", None);
    r.send(4, "red", None);
    // Listener 2's link is clean; listener 3 loses 3 % (one copy),
    // listener 4 10 % (two copies).
    report(&mut r, 2, "red", 0.0);
    report(&mut r, 3, "red", 0.03);
    report(&mut r, 4, "red", 0.1);
    let mut enc = Encoder::new(AudioCodec::Opus, 48_000).unwrap();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    // (seq, primary packet, redundant blocks (back, bytes)) per listener.
    type Got = Vec<(u32, Vec<u8>, Vec<(u8, Vec<u8>)>)>;
    let mut got: HashMap<u32, Got> = HashMap::new();
    for k in 0..60usize {
        let mut p = Vec::new();
        enc.encode(&tone(0.3, 440.0, k), &mut p).unwrap();
        // The talker sends each packet with a copy of the previous one;
        // every 10th is lost on the way up.
        let mut payload = Vec::new();
        let prev = k.checked_sub(1).map(|j| RedBlock { back: 1, fec: false, data: &sent[j] });
        RedPayload::encode(prev.as_slice(), &p, &mut payload);
        sent.push(p);
        if k % 10 != 7 {
            r.send_red(1, "red", k as u32 + 1, &payload);
        }
        for (to, data) in tick_all(&mut r) {
            let d = AudioDown::decode(&data).unwrap();
            if d.keepalive {
                continue;
            }
            assert!(d.forwarded, "pass-through, the uplink losses rebuilt");
            let entry = match d.codec {
                AudioCodec::OpusRed => {
                    let red = RedPayload::decode(d.payload).unwrap();
                    let blocks = red.blocks().iter().map(|b| (b.back, b.data.to_vec()));
                    (d.seq, red.primary.to_vec(), blocks.collect())
                }
                _ => (d.seq, d.payload.to_vec(), Vec::new()),
            };
            got.entry(to).or_default().push(entry);
        }
    }
    for to in [2, 3, 4] {
        let g = &got[&to];
        let primaries: Vec<&Vec<u8>> = g.iter().map(|e| &e.1).collect();
        // Every talker frame, the lost ones included, in order, without
        // a gap in the listener's sequence.
        assert_eq!(primaries, sent[..g.len()].iter().collect::<Vec<_>>(), "listener {to}");
        assert!(g.len() >= 55, "listener {to}: {} frames", g.len());
        assert!(g.windows(2).all(|w| w[1].0 == w[0].0 + 1), "listener {to}");
    }
    // The clean listener gets no redundancy at all; the lossy one gets
    // the previous datagram's packet again in each.
    assert!(got[&2].iter().all(|e| e.2.is_empty()));
    for w in got[&3].windows(2) {
        assert_eq!(w[1].2, vec![(1, w[0].1.clone())]);
    }
    assert_eq!(got[&4][1].2, vec![(1, got[&4][0].1.clone())]);
    for w in got[&4].windows(3) {
        assert_eq!(w[2].2, vec![(2, w[0].1.clone()), (1, w[1].1.clone())]);
    }
    let s = r.mixer.stats();
    assert_eq!(s.recovered, 6, "{s:?}");
    let copies = got[&3].len() - 1 + 2 * got[&4].len() - 3;
    assert_eq!(s.red_out, copies as u64, "{s:?}");
    assert_eq!(s.encodes, 0, "{s:?}");
}

#[test]
fn a_talker_packet_lost_on_the_way_in_goes_on_as_the_next_packet_for_its_fec() {
    let mut r = Room::new(MixerConfig::new(AudioCodec::Opus));
    let mut got: Vec<(u32, bool, Vec<u8>)> = Vec::new();
    let mut sent = Vec::new();
    // The host's jitter buffer holds one frame under loss; here two
    // frames arrive together at first, so the next one is there.
    for k in 0..40usize {
        let f = tone(0.3, 440.0, k);
        if k == 20 {
            // Frame 20 is lost on the way: its number is used up unseen.
            *r.seq.entry(1).or_insert(0) += 1;
            sent.push(Vec::new());
        } else {
            sent.push(r.send(1, "f", Some(&f)));
        }
        if k == 0 {
            sent.push(r.send(1, "f", Some(&tone(0.3, 440.0, 1))));
            r.send(2, "f", None);
        }
        if k == 0 {
            continue;
        }
        for (to, data) in tick_all(&mut r) {
            let d = AudioDown::decode(&data).unwrap();
            if to == 2 && !d.keepalive {
                got.push((d.seq, d.fec, d.payload.to_vec()));
            }
        }
    }
    let seqs: Vec<u32> = got.iter().map(|g| g.0).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "no gap: {seqs:?}");
    let i = got.iter().position(|g| g.1).expect("a datagram flagged for FEC");
    assert_eq!(got[i].2, got[i + 1].2, "it carries the next packet, which follows");
    assert_eq!(got.iter().filter(|g| g.1).count(), 1);
    assert_eq!(r.mixer.stats().encodes, 0);
}

#[test]
fn a_call_starts_lossy_until_reports_prove_it_clean() {
    // The default: links nobody reported on yet are taken as lossy.
    let cfg = MixerConfig { unproven_loss: UNPROVEN_LOSS, ..MixerConfig::new(AudioCodec::Opus) };
    let mut r = Room { mixer: Mixer::new(cfg), ..Room::new(cfg) };
    r.send(2, "u", None);
    let mut enc = Encoder::new(AudioCodec::Opus, 48_000).unwrap();
    let mut sent: Vec<Vec<u8>> = Vec::new();
    // (copies in the datagram, ticks between the talker's packet and its
    // forwarding) per datagram to listener 2.
    let mut got: Vec<(usize, usize)> = Vec::new();
    for k in 0..30usize {
        let mut p = Vec::new();
        enc.encode(&tone(0.3, 440.0, k), &mut p).unwrap();
        // The talker, lossy until proven clean too, sends two copies;
        // nothing is lost on the way.
        let blocks: Vec<RedBlock> = (1..=2u8)
            .filter_map(|b| {
                let j = k.checked_sub(usize::from(b))?;
                Some(RedBlock { back: b, fec: false, data: &sent[j] })
            })
            .rev()
            .collect();
        let mut payload = Vec::new();
        RedPayload::encode(&blocks, &p, &mut payload);
        sent.push(p);
        r.send_red(1, "u", k as u32 + 1, &payload);
        if k == 12 {
            // Listener 2's first report: its link is clean.
            report(&mut r, 2, "u", 0.0);
        }
        for (to, data) in tick_all(&mut r) {
            let d = AudioDown::decode(&data).unwrap();
            if to != 2 || d.keepalive {
                continue;
            }
            let (copies, primary) = match d.codec {
                AudioCodec::OpusRed => {
                    let red = RedPayload::decode(d.payload).unwrap();
                    (red.blocks().len(), red.primary.to_vec())
                }
                _ => (0, d.payload.to_vec()),
            };
            let at = sent.iter().position(|s| *s == primary).expect("a talker's packet");
            got.push((copies, k - at));
        }
    }
    // Copies from the second datagram (the first has none to copy), two
    // from the third, until the report; none after it.
    let copies: Vec<usize> = got.iter().map(|g| g.0).collect();
    assert_eq!(&copies[..12], &[0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2], "{copies:?}");
    assert!(copies[12..].iter().all(|&c| c == 0), "{copies:?}");
    // The talker's copies do not delay it at the host while its uplink
    // shows no loss: every packet goes on in the tick it arrived.
    assert!(got.iter().all(|g| g.1 == 0), "{got:?}");
    assert_eq!(got.len(), 30);
}

#[test]
fn a_tick_may_wait_for_a_talkers_late_packet_but_not_for_a_lost_or_ended_one() {
    let mut r = Room::new(MixerConfig::new(AudioCodec::Opus));
    r.send(2, "w", None);
    assert!(!r.mixer.talker_late(), "nobody talks");
    for k in 0..5 {
        r.send(1, "w", Some(&tone(0.3, 440.0, k)));
        assert!(!r.mixer.talker_late(), "on time");
        r.tick();
    }
    // Frame 5 is held up: the tick would conceal it and play late from then on.
    assert!(r.mixer.talker_late());
    r.send(1, "w", Some(&tone(0.3, 440.0, 5)));
    assert!(!r.mixer.talker_late(), "it came");
    let out = r.tick();
    assert!(out.contains_key(&2), "forwarded at its tick");
    // Frame 6 lost, 7 here: given up at once, not waited for.
    *r.seq.entry(1).or_insert(0) += 1;
    r.send(1, "w", Some(&tone(0.3, 440.0, 7)));
    assert!(!r.mixer.talker_late());
    r.tick();
    // The talkspurt's last frame: the pause after it is not lateness.
    r.send_marked(1, "w", Some(&tone(0.3, 440.0, 8)), true);
    r.tick();
    r.tick();
    assert!(!r.mixer.talker_late());
    // A member the host holds muted is not waited for either.
    r.mixer.set_silenced(SessionId(1), true);
    for k in 9..12 {
        r.send(1, "w", Some(&tone(0.3, 440.0, k)));
        r.tick();
    }
    assert!(!r.mixer.talker_late());
    assert_eq!(r.mixer.stats().stretched, 0);
}
