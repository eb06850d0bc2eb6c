//! The host's audio mixer, sans-IO: packets and ticks come in with the time,
//! datagrams go out through a callback. The UDP driver (`server::audio`)
//! authenticates packets against the directory before they get here.
//!
//! Every tick (one frame, 20 ms by default) each sender's jitter buffer gives
//! up one frame (played, concealed, or nothing when the sender is idle). In
//! each room, the senders that produced a frame are the talkers. Every
//! listener gets the sum of the talkers other than themselves (mix-minus),
//! soft-limited. Listeners who are not talking all hear the same sum, so it
//! is encoded once per room and tick: encoder work grows with the number of
//! talkers, not with the room. Rooms never share audio.
//!
//! Moving a listener between the shared stream and one of its own is done
//! so that the stream it decodes has no seam: a new talker's encoder is
//! primed with the shared encoder's last frames, and a former talker moves
//! back only when the room is quiet.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;

use crate::media::audio::{
    Decoder, Encoder, JitterBuffer, JitterConfig, Playout, QUIET_FRAME_RMS, frame_us, rms,
};
use crate::proto::{AudioCodec, AudioDown, AudioUp, MAX_LEVELS, SpeakingLevel, level_from_rms};

#[derive(Debug, Clone, Copy)]
pub struct MixerConfig {
    /// Codec of the mix sent to listeners.
    pub codec: AudioCodec,
    pub bitrate: u32,
    /// Opus encoder complexity (0–10) of the mixes.
    pub complexity: i32,
    /// Samples per frame and tick: 960 (20 ms) or 480 (10 ms).
    pub frame_samples: usize,
    /// Ticks between speaking-level reports (10 × 20 ms: five a second).
    pub levels_every: u32,
    /// Encode one mix for all non-talkers (turn off only to compare paths).
    pub share_mix: bool,
    /// Stop sending to a listener not heard from (audio or keepalive) for this long.
    pub listener_timeout_us: u64,
}

impl MixerConfig {
    pub fn new(codec: AudioCodec) -> MixerConfig {
        MixerConfig {
            codec,
            bitrate: crate::media::audio::DEFAULT_BITRATE,
            // About half the encoder CPU of complexity 10; the loopback
            // tests' tone and speech measures pass either way.
            complexity: 5,
            frame_samples: crate::media::audio::FRAME_20MS,
            levels_every: 10,
            share_mix: true,
            listener_timeout_us: 5_000_000,
        }
    }

    /// Mixes in frames of `samples` (480 = 10 ms, anything else 960 = 20 ms),
    /// keeping the speaking-level reports at five a second.
    pub fn with_frame_samples(mut self, samples: usize) -> MixerConfig {
        use crate::media::audio::{FRAME_10MS, FRAME_20MS};
        self.frame_samples = if samples == FRAME_10MS { FRAME_10MS } else { FRAME_20MS };
        self.levels_every = (200_000 / frame_us(self.frame_samples)) as u32;
        self
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MixerStats {
    pub ticks: u64,
    pub packets_in: u64,
    /// Audio packets with a frame size other than the host's.
    pub wrong_frame: u64,
    pub encodes: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    /// Sum over senders of their jitter buffers' late, lost and dropped frames.
    pub late: u64,
    pub lost: u64,
}

/// Who sent a packet, as the directory knows them.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub session: u32,
    pub name: &'a str,
    pub room: &'a str,
}

type Packet = (AudioCodec, Vec<u8>);

struct Member {
    name: String,
    room: String,
    addr: SocketAddr,
    last_heard_us: u64,
    jb: JitterBuffer<Packet>,
    decoder: Decoder,
    /// This tick's decoded frame, valid when `talking`.
    frame: Vec<f32>,
    talking: bool,
    /// Own mix encoder, while this member talks (their mix differs from the room's).
    encoder: Option<Encoder>,
    /// Got the room's shared mix last tick.
    on_shared: bool,
    ticks_since_talk: u32,
    out_seq: u32,
    /// Loudest level since the last report.
    level: u8,
}

/// A room sum below this RMS (-50 dBFS) is quiet enough to switch a
/// listener between encoders without a seam.
const QUIET_RMS: f32 = 0.003;
/// A former talker rejoins the shared mix after this long even without a
/// quiet moment, so encoder work stays bounded by recent talkers.
const RELEASE_AFTER_US: u64 = 3_000_000;
/// Shared-mix frames a listener's new encoder is primed with when it starts
/// talking, so its stream continues the shared one (the encoder's look-ahead
/// and prediction state) instead of starting from silence under the others'
/// voices. Encoded once at that moment; the output is discarded.
const PRIME_FRAMES: usize = 3;

/// Soft limiter: linear up to 0.6, then a tanh knee that never reaches 1.0,
/// so ten loud talkers do not clip. Stateless, so every listener's mix is
/// limited the same way whichever path it takes.
pub fn soft_limit(x: f32) -> f32 {
    const KNEE: f32 = 0.6;
    let a = x.abs();
    if a <= KNEE {
        return x;
    }
    let y = KNEE + (1.0 - KNEE) * ((a - KNEE) / (1.0 - KNEE)).tanh();
    y.copysign(x)
}

/// What the mixer keeps per room.
#[derive(Default)]
struct RoomMix {
    /// Encoder of the mix everyone not talking shares.
    shared: Option<Encoder>,
    /// The last `PRIME_FRAMES` frames the shared encoder took (Opus only).
    recent: VecDeque<Vec<f32>>,
    /// Consecutive ticks whose sum was quiet.
    quiet_run: u32,
}

pub struct Mixer {
    cfg: MixerConfig,
    members: BTreeMap<u32, Member>,
    rooms: HashMap<String, RoomMix>,
    tick: u64,
    stats: MixerStats,
    sum: Vec<f32>,
    mix: Vec<f32>,
    /// This tick's shared mix (soft-limited), once encoded.
    shared_mix: Vec<f32>,
    payload: Vec<u8>,
    shared_payload: Vec<u8>,
    datagram: Vec<u8>,
    /// Rooms being recorded: their shared mix is encoded every tick, even
    /// with no listener on it, and handed to `tap` (see `record.rs`).
    recorded: std::collections::HashSet<String>,
    tap: Option<MixTap>,
    /// Sessions the host muted and holds muted: their audio is left out of
    /// every mix whatever their client sends (they still hear the room).
    silenced: std::collections::HashSet<u32>,
}

/// Receives a recorded room's shared-mix packet (room, payload) every tick.
pub type MixTap = Box<dyn FnMut(&str, &[u8]) + Send>;

impl Mixer {
    pub fn new(cfg: MixerConfig) -> Mixer {
        let n = cfg.frame_samples;
        Mixer {
            cfg,
            members: BTreeMap::new(),
            rooms: HashMap::new(),
            tick: 0,
            stats: MixerStats::default(),
            sum: vec![0.0; n],
            mix: vec![0.0; n],
            shared_mix: vec![0.0; n],
            payload: Vec::with_capacity(2048),
            shared_payload: Vec::with_capacity(2048),
            datagram: Vec::with_capacity(4096),
            recorded: Default::default(),
            tap: None,
            silenced: Default::default(),
        }
    }

    /// Where recorded rooms' mixes go; `None` stops the tap.
    pub fn set_tap(&mut self, tap: Option<MixTap>) {
        self.tap = tap;
    }

    /// Starts or stops recording `room` (its display name).
    pub fn set_recorded(&mut self, room: &str, on: bool) {
        if on {
            self.recorded.insert(room.to_string());
        } else {
            self.recorded.remove(room);
        }
    }

    /// Leaves `session`'s audio out of every mix (`on`), or lets it back.
    pub fn set_silenced(&mut self, session: u32, on: bool) {
        if on {
            self.silenced.insert(session);
        } else {
            self.silenced.remove(&session);
        }
    }

    pub fn config(&self) -> &MixerConfig {
        &self.cfg
    }

    pub fn stats(&self) -> MixerStats {
        let mut s = self.stats;
        for m in self.members.values() {
            let j = m.jb.stats();
            s.late += j.late;
            s.lost += j.lost + j.dropped;
        }
        s
    }

    /// Sessions the mixer knows (senders and listeners).
    pub fn sessions(&self) -> Vec<u32> {
        self.members.keys().copied().collect()
    }

    pub fn remove(&mut self, session: u32) {
        self.members.remove(&session);
    }

    /// Forgets sessions `keep` says are gone (left the host, or changed room).
    pub fn retain(&mut self, mut keep: impl FnMut(u32, &str) -> bool) {
        self.members.retain(|&s, m| keep(s, &m.room));
        let rooms: Vec<String> = self.members.values().map(|m| m.room.clone()).collect();
        self.rooms.retain(|r, _| rooms.contains(r));
    }

    /// An authenticated packet from `sender` arrived from `from`.
    pub fn receive(
        &mut self,
        now_us: u64,
        sender: Sender<'_>,
        from: SocketAddr,
        pkt: &AudioUp<'_>,
    ) {
        self.stats.packets_in += 1;
        let fus = frame_us(self.cfg.frame_samples);
        let m = self.members.entry(sender.session).or_insert_with(|| Member {
            name: sender.name.to_string(),
            room: sender.room.to_string(),
            addr: from,
            last_heard_us: now_us,
            jb: JitterBuffer::new(JitterConfig::new(fus)),
            decoder: Decoder::new(),
            frame: vec![0.0; self.cfg.frame_samples],
            talking: false,
            encoder: None,
            on_shared: false,
            ticks_since_talk: u32::MAX,
            out_seq: 0,
            level: 0,
        });
        if m.room != sender.room {
            m.room = sender.room.to_string();
            m.jb = JitterBuffer::new(JitterConfig::new(fus));
            m.encoder = None;
            m.on_shared = false;
        }
        m.name.clear();
        m.name.push_str(sender.name);
        // The latest address wins (NAT rebinding, a client restart).
        m.addr = from;
        m.last_heard_us = now_us;
        if pkt.keepalive {
            return;
        }
        if usize::from(pkt.samples) != self.cfg.frame_samples {
            self.stats.wrong_frame += 1;
            return;
        }
        m.jb.push(now_us, pkt.seq, pkt.timestamp, (pkt.codec, pkt.payload.to_vec()));
    }

    /// One frame period: mixes every room and sends each listener its mix.
    pub fn tick(&mut self, now_us: u64, mut send: impl FnMut(SocketAddr, &[u8])) {
        self.stats.ticks += 1;
        self.tick += 1;
        let n = self.cfg.frame_samples;
        let share = self.cfg.share_mix;
        for (id, m) in self.members.iter_mut() {
            m.jb.set_quiet(!m.talking || rms(&m.frame) < QUIET_FRAME_RMS);
            m.talking = match m.jb.pop(now_us) {
                Playout::Frame((codec, data)) => {
                    m.decoder.decode(codec, &data, &mut m.frame);
                    true
                }
                Playout::Conceal { next } => {
                    m.decoder.conceal(next.as_ref().map(|(c, d)| (*c, &d[..])), &mut m.frame);
                    true
                }
                Playout::Idle => false,
            } && !self.silenced.contains(id);
            if m.talking {
                m.level = m.level.max(level_from_rms(rms(&m.frame)));
                m.ticks_since_talk = 0;
            } else {
                m.ticks_since_talk = m.ticks_since_talk.saturating_add(1);
            }
        }
        let release_after = (RELEASE_AFTER_US / frame_us(n)) as u32;
        let report_levels = self.tick % u64::from(self.cfg.levels_every.max(1)) == 0;
        let timestamp = (self.tick as u32).wrapping_mul(n as u32);
        let mut rooms: Vec<String> = self.members.values().map(|m| m.room.clone()).collect();
        rooms.sort();
        rooms.dedup();
        for room in rooms {
            let ids: Vec<u32> =
                self.members.iter().filter(|(_, m)| m.room == room).map(|(&s, _)| s).collect();
            let levels: Vec<SpeakingLevel> = if report_levels {
                let mut l: Vec<SpeakingLevel> = ids
                    .iter()
                    .map(|s| {
                        let m = &self.members[s];
                        SpeakingLevel { session: *s, level: m.level, name: m.name.clone() }
                    })
                    .collect();
                l.sort_by_key(|l| std::cmp::Reverse(l.level));
                l.truncate(MAX_LEVELS);
                l
            } else {
                Vec::new()
            };
            // The sum of every talker, in session order.
            self.sum.fill(0.0);
            for s in &ids {
                let m = &self.members[s];
                if m.talking {
                    for (acc, x) in self.sum.iter_mut().zip(&m.frame) {
                        *acc += x;
                    }
                }
            }
            let recorded = self.recorded.contains(&room);
            let state = self.rooms.entry(room.clone()).or_default();
            state.quiet_run =
                if rms(&self.sum) < QUIET_RMS { state.quiet_run.saturating_add(1) } else { 0 };
            let quiet_run = state.quiet_run;
            let mut shared_ready = false;
            for s in &ids {
                let (talking, stale) = {
                    let m = &self.members[s];
                    (
                        m.talking,
                        now_us.saturating_sub(m.last_heard_us) > self.cfg.listener_timeout_us,
                    )
                };
                if stale {
                    continue;
                }
                // A member who stopped talking hears the same sum as the
                // shared mix, but from another encoder: moving from one
                // stream to the other mid-sound is an audible seam, so the
                // move waits for a quiet moment (or a few seconds at most).
                {
                    let m = self.members.get_mut(s).expect("listed above");
                    if share
                        && !talking
                        && m.encoder.is_some()
                        && (quiet_run >= 2 || m.ticks_since_talk > release_after)
                    {
                        m.encoder = None;
                    }
                }
                let own = talking || !share || self.members[s].encoder.is_some();
                if own {
                    // Everyone else, summed in the same order as the shared sum.
                    self.mix.fill(0.0);
                    for o in &ids {
                        let m = &self.members[o];
                        if o != s && m.talking {
                            for (acc, x) in self.mix.iter_mut().zip(&m.frame) {
                                *acc += x;
                            }
                        }
                    }
                    for x in self.mix.iter_mut() {
                        *x = soft_limit(*x);
                    }
                    let cfg = self.cfg;
                    let m = self.members.get_mut(s).expect("listed above");
                    if m.encoder.is_none() {
                        m.encoder =
                            Encoder::with_complexity(cfg.codec, cfg.bitrate, cfg.complexity).ok();
                        // Leaving the shared mix: continue its stream.
                        if let (Some(enc), true) = (m.encoder.as_mut(), m.on_shared) {
                            for frame in &state.recent {
                                self.payload.clear();
                                let _ = enc.encode(frame, &mut self.payload);
                                self.stats.encodes += 1;
                            }
                        }
                    }
                    self.payload.clear();
                    if let Some(enc) = m.encoder.as_mut() {
                        if enc.encode(&self.mix, &mut self.payload).is_err() {
                            continue;
                        }
                    }
                    self.stats.encodes += 1;
                } else if !shared_ready {
                    for (x, s) in self.shared_mix.iter_mut().zip(&self.sum) {
                        *x = soft_limit(*s);
                    }
                    if state.shared.is_none() {
                        state.shared = Encoder::with_complexity(
                            self.cfg.codec,
                            self.cfg.bitrate,
                            self.cfg.complexity,
                        )
                        .ok();
                    }
                    let Some(enc) = state.shared.as_mut() else { continue };
                    self.shared_payload.clear();
                    if enc.encode(&self.shared_mix, &mut self.shared_payload).is_err() {
                        continue;
                    }
                    self.stats.encodes += 1;
                    shared_ready = true;
                }
                let m = self.members.get_mut(s).expect("listed above");
                m.on_shared = !own;
                m.out_seq = m.out_seq.wrapping_add(1);
                let payload = if own { &self.payload } else { &self.shared_payload };
                self.datagram.clear();
                AudioDown {
                    seq: m.out_seq,
                    timestamp,
                    codec: self.cfg.codec,
                    samples: n as u16,
                    levels: levels.clone(),
                    payload,
                }
                .encode(&mut self.datagram);
                self.stats.datagrams_out += 1;
                self.stats.bytes_out += self.datagram.len() as u64;
                send(m.addr, &self.datagram);
            }
            if recorded && self.cfg.codec == AudioCodec::Opus {
                if !shared_ready {
                    for (x, s) in self.shared_mix.iter_mut().zip(&self.sum) {
                        *x = soft_limit(*s);
                    }
                    let cfg = self.cfg;
                    let enc = state.shared.get_or_insert_with(|| {
                        Encoder::with_complexity(cfg.codec, cfg.bitrate, cfg.complexity)
                            .expect("opus encoder")
                    });
                    self.shared_payload.clear();
                    shared_ready = enc.encode(&self.shared_mix, &mut self.shared_payload).is_ok();
                    self.stats.encodes += 1;
                }
                if let (true, Some(tap)) = (shared_ready, self.tap.as_mut()) {
                    tap(&room, &self.shared_payload);
                }
            }
            // After the loop: a member primed this tick must not see this
            // tick's frame among the shared encoder's past ones. PCM has no
            // encoder state to prime.
            if shared_ready && self.cfg.codec == AudioCodec::Opus {
                let recent = &mut state.recent;
                let mut frame = if recent.len() >= PRIME_FRAMES {
                    recent.pop_front().unwrap_or_default()
                } else {
                    Vec::new()
                };
                frame.clear();
                frame.extend_from_slice(&self.shared_mix);
                recent.push_back(frame);
            }
        }
        if report_levels {
            for m in self.members.values_mut() {
                m.level = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::AudioDown;
    use std::net::{IpAddr, Ipv4Addr};

    const F: u64 = 20_000;

    fn addr(session: u32) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40_000 + session as u16)
    }

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
            Room { mixer: Mixer::new(cfg), enc: HashMap::new(), seq: HashMap::new(), now: 0 }
        }

        fn send(&mut self, session: u32, room: &str, frame: Option<&[f32]>) {
            let codec = self.mixer.cfg.codec;
            let enc =
                self.enc.entry(session).or_insert_with(|| Encoder::new(codec, 48_000).unwrap());
            let seq = self.seq.entry(session).or_insert(0);
            let mut payload = Vec::new();
            if let Some(f) = frame {
                enc.encode(f, &mut payload).unwrap();
                *seq += 1;
            }
            let name = format!("p{session}");
            let up = AudioUp {
                session,
                token: 0,
                keepalive: frame.is_none(),
                seq: *seq,
                timestamp: seq.wrapping_mul(960),
                codec,
                samples: 960,
                payload: &payload,
            };
            let who = Sender { session, name: &name, room };
            self.mixer.receive(self.now, who, addr(session), &up);
        }

        /// Ticks once; returns each listener's decoded datagram (by session).
        fn tick(&mut self) -> BTreeMap<u32, (Vec<u8>, Vec<f32>)> {
            let mut out = BTreeMap::new();
            self.now += F;
            self.mixer.tick(self.now, |to, data| {
                let session = u32::from(to.port() - 40_000);
                let down = AudioDown::decode(data).unwrap();
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

    fn opus_room(share: bool) -> Room {
        let mut cfg = MixerConfig::new(AudioCodec::Opus);
        cfg.share_mix = share;
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
        r.mixer.set_silenced(1, true);
        let mut heard = BTreeMap::new();
        for _ in 0..5 {
            r.send(1, "lab", Some(&dc(0.1)));
            r.send(2, "lab", Some(&dc(0.02)));
            heard = r.tick();
        }
        assert!(near(heard[&2].1[0], 0.0), "B does not hear A: {}", heard[&2].1[0]);
        assert!(near(heard[&1].1[0], 0.02), "A still hears B: {}", heard[&1].1[0]);
        r.mixer.set_silenced(1, false);
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
            assert!(heard[&1].1.iter().all(|x| *x == 0.0), "never your own voice");
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
            assert!(heard[&1].1.iter().all(|x| *x == 0.0));
            assert!(heard[&3].1.iter().all(|x| *x == 0.0));
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
                let (bytes, _) = &out[&1];
                same_as_shared.push(*bytes == out[&3].0);
                let mut pcm = vec![0.0; 960];
                dec.decode(AudioCodec::Opus, bytes, &mut pcm);
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
            assert_eq!(encodes, 40 * 2 + 20 + PRIME_FRAMES as u64, "priming is paid once");
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
                let d = AudioDown::decode(data).unwrap();
                if to == addr(2) && !d.levels.is_empty() {
                    reports += 1;
                    let l1 = d.levels.iter().find(|l| l.session == 1).unwrap();
                    assert!(l1.level >= crate::proto::SPEAKING_LEVEL && l1.name == "p1");
                    let l2 = d.levels.iter().find(|l| l.session == 2).unwrap();
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
        assert_eq!(r.tick().len(), 2);
        r.mixer.retain(|s, _| s != 2);
        assert_eq!(r.tick().keys().copied().collect::<Vec<_>>(), [1]);
        // And a listener silent for longer than the timeout is not sent to.
        r.now += 6_000_000;
        assert!(r.tick().is_empty());
    }
}
