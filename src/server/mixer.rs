//! The host's audio mixer, sans-IO: packets and ticks come in with the time,
//! datagrams go out through a callback. The UDP driver (`server::audio`)
//! authenticates packets against the directory before they get here.
//!
//! Every tick (one frame, 20 ms by default) each sender's jitter buffer gives
//! up one frame (played, concealed, or nothing when the sender is idle). In
//! each room, the senders that produced a frame are the talkers. Every
//! listener hears the talkers other than themselves (mix-minus), by one of
//! three streams:
//!
//! - **pass-through**: exactly one other talker (the usual case): that
//!   talker's packet goes out unchanged under the listener's sequence number,
//!   so the listener decodes the talker's own encoding (one codec generation,
//!   not two). A frame lost on the way to the host goes on as the talker's
//!   next packet, flagged for its in-band FEC ([`AudioDown::fec`]), or, when
//!   that is not here yet, as a gap in the sequence: the listener rebuilds
//!   the frame from the next packet's FEC, or conceals it.
//! - **shared mix**: listeners who are not talking all hear the same sum,
//!   soft-limited, encoded once per room and tick.
//! - **own mix**: a talker who hears two or more others gets a mix of their
//!   own (it lacks their voice).
//!
//! Moving a listener between streams leaves no seam in what they decode: an
//! encoder that takes over a stream is first primed with the frames the
//! listener heard last (the talkers' decoded frames, so it continues the
//! stream's look-ahead and prediction instead of starting from silence), and
//! moves that cannot be primed (from a mix back to pass-through, from an
//! own mix to the shared one) wait for a quiet moment (or a few seconds).
//!
//! Silence costs nothing: a listener who hears nobody gets an end mark
//! ([`AudioDown::end`]) after the last frame and then no audio, only the
//! speaking levels (five a second while someone in the room talks, once a
//! second in a silent room). No encoder runs for a silent room.
//!
//! Loss-adaptive FEC: the mixer counts each sender's lost packets and sends
//! them a reception report about once a second, with the loss their encoder
//! should expect (their uplink's, or the worst that listeners of their
//! forwarded packets measure, end to end); listeners report their loss
//! ([`Mixer::feedback`]) and the host's own encoders follow it.
//!
//! Redundancy (RFC 2198 style, [`AudioCodec::OpusRed`]): a talker whose
//! uplink loses sends copies of its last packets; the host fills its jitter
//! buffer's gaps with them before the tick, so the frame goes on unchanged
//! (pass-through holds while the loss the copies leave is low). Each
//! listener who reports loss gets copies of the last datagrams sent to it,
//! one or two by its loss ([`redundancy_frames`]); a clean link gets none.
//! Encoders then expect only the loss the copies leave ([`residual_loss`]).

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::media::audio::codec::{
    LossEstimate, expected_loss_percent, redundancy_frames, residual_loss,
};
use crate::media::audio::jitter::LossMeter;
use crate::media::audio::{
    Decoder, Encoder, JitterBuffer, JitterConfig, Playout, QUIET_FRAME_RMS, frame_us, rms,
};
use crate::proto::{
    AudioCodec, AudioDown, AudioUp, FeedbackDown, FeedbackUp, MAX_LEVELS, MAX_RED_BLOCKS, RedBlock,
    RedPayload, SpeakingLevel, level_from_rms,
};

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
    /// Forward a lone talker's packets unchanged (turn off only to compare paths).
    pub pass_through: bool,
    /// Stop sending to a listener not heard from (audio or keepalive) for this long.
    pub listener_timeout_us: u64,
    /// Ticks between reception reports to senders (50 × 20 ms: one a second).
    pub feedback_every: u32,
    /// Frames each talker's jitter buffer holds from the start of its
    /// stream until the stream proves clean ([`JitterConfig::startup_frames`]).
    /// 0 by default: the host mixes (and records) each talker on the wall
    /// clock from the first packet; listeners keep their start-up depth.
    pub jitter_startup_frames: u64,
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
            pass_through: true,
            listener_timeout_us: 5_000_000,
            feedback_every: 50,
            jitter_startup_frames: 0,
        }
    }

    /// Mixes in frames of `samples` (480 = 10 ms, anything else 960 = 20 ms),
    /// keeping the speaking-level reports at five a second and the
    /// reception reports at one a second.
    pub fn with_frame_samples(mut self, samples: usize) -> MixerConfig {
        use crate::media::audio::{FRAME_10MS, FRAME_20MS};
        self.frame_samples = if samples == FRAME_10MS { FRAME_10MS } else { FRAME_20MS };
        self.levels_every = (200_000 / frame_us(self.frame_samples)) as u32;
        self.feedback_every = (1_000_000 / frame_us(self.frame_samples)) as u32;
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
    /// Audio datagrams that carried a talker's packet unchanged (pass-through).
    pub forwarded: u64,
    /// Reception reports received from listeners and sent to senders.
    pub feedback_in: u64,
    pub feedback_out: u64,
    /// Summed over senders' jitter buffers: packets that arrived after
    /// their frame was played or given up on (never mixed or forwarded),
    /// frames lost (concealed and skipped), frames dropped to shrink the
    /// delay (skipped unheard: never forwarded either), and frames
    /// concealed while waiting for a late packet (the talker's delay grew
    /// by a frame).
    pub late: u64,
    pub lost: u64,
    pub dropped: u64,
    pub stretched: u64,
    /// Talker frames lost on the way here but rebuilt from a later packet's
    /// redundant copy (RFC 2198), summed over senders' jitter buffers.
    pub recovered: u64,
    /// Earlier frames sent again inside datagrams to listeners who report loss.
    pub red_out: u64,
}

/// Who sent a packet, as the directory knows them.
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub session: u32,
    pub name: &'a str,
    pub room: &'a str,
}

type Packet = (AudioCodec, Vec<u8>);

/// What a listener's stream carried last tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Nothing: nobody else talks.
    Silent,
    /// One talker's packets, unchanged.
    Forward(u32),
    /// The room's shared mix.
    Shared,
    /// A mix of its own.
    Own,
}

struct Member {
    name: String,
    room: String,
    last_heard_us: u64,
    jb: JitterBuffer<Packet>,
    decoder: Decoder,
    /// This tick's decoded frame, valid when `talking`.
    frame: Vec<f32>,
    talking: bool,
    /// This tick's packet as received, when it was played (not concealed)
    /// and is in the mix codec: what pass-through forwards.
    packet: Vec<u8>,
    has_packet: bool,
    /// This tick's frame was lost on the way here, and `packet` holds the
    /// next one, whose in-band FEC rebuilds it.
    fec_packet: bool,
    /// This tick's frame is late: the jitter buffer concealed it and waits
    /// for it (it plays next tick if it comes).
    waiting: bool,
    /// The last packet played was in another codec than the mix: this
    /// member is always mixed, never forwarded.
    foreign_codec: bool,
    /// This tick's packet ended the sender's talkspurt.
    end: bool,
    /// Own mix encoder, while this member hears a mix of its own.
    encoder: Option<Encoder>,
    stream: Stream,
    /// The last audio datagram sent to this listener ended a talkspurt (or
    /// none was sent yet): its playout is in a pause.
    ended: bool,
    /// Ticks spent on a mix that pass-through could replace (waiting for a
    /// quiet moment to switch).
    mix_for_one: u32,
    ticks_since_talk: u32,
    out_seq: u32,
    /// Loudest level since the last report.
    level: u8,
    /// Sent frames of another size: owed a datagram that shows ours.
    hint: bool,
    /// Decoded frames of the last few ticks this member talked (tick, frame).
    history: VecDeque<(u64, Vec<f32>)>,
    /// Loss of this member's packets on the way here.
    up_meter: LossMeter,
    up_loss: LossEstimate,
    /// Loss this member reports on what we send it.
    down_loss: LossEstimate,
    /// Redundant frames per packet this member sends (the largest `back`
    /// of its last packet): how much of its uplink loss the host recovers.
    up_red: u8,
    /// The last audio datagrams sent to this listener (seq, FEC stand-in,
    /// payload), kept while it reports loss: the redundancy of the next.
    red_sent: VecDeque<(u32, bool, Vec<u8>)>,
    /// A reception report went to this member already.
    reported: bool,
    /// When our reports on this member's uplink started to show loss
    /// (`None` while they show none).
    lossy_since_us: Option<u64>,
    /// Worst `down_loss` among listeners this member's packets were
    /// forwarded to since the last report.
    forward_loss: f64,
}

impl Member {
    /// Uplink loss left after the talker's redundancy rebuilt what it
    /// could, when the talker sends redundancy: the lower of what the copies
    /// leave of random loss and what the jitter buffer measures (the share
    /// of frames it concealed lately, which lags: it still counts the losses
    /// from before the copies came on). Else the uplink's loss, once the
    /// talker had [`RED_GRACE_US`] since our first report of it to start
    /// sending copies (before that, 0: a talker about to send copies is not
    /// moved to a mix and back).
    fn residual_up_loss(&self, now_us: u64) -> f64 {
        if self.up_red > 0 {
            residual_loss(self.up_loss.get(), self.up_red).min(self.jb.loss_rate())
        } else if self.lossy_since_us.is_some_and(|t| now_us.saturating_sub(t) < RED_GRACE_US) {
            0.0
        } else {
            self.up_loss.get()
        }
    }

    /// Redundant frames each datagram to this listener carries, for the
    /// loss it reports (0 on a clean LAN).
    fn down_red(&self) -> u8 {
        redundancy_frames(self.down_loss.get())
    }

    /// Downlink loss left after the redundancy we send this listener.
    fn residual_down_loss(&self) -> f64 {
        residual_loss(self.down_loss.get(), self.down_red())
    }
}

/// A room sum below this RMS (-50 dBFS) is quiet enough to switch a
/// listener between streams without a seam.
const QUIET_RMS: f32 = 0.003;
/// A listener waits at most this long for a quiet moment before switching
/// streams anyway, so encoder work stays bounded by recent talkers.
const RELEASE_AFTER_US: u64 = 3_000_000;
/// Frames a stream's new encoder is primed with (encoded once, output
/// discarded): the listener's last frames, so the new stream continues the
/// old one (the encoder's look-ahead and prediction state) instead of
/// starting from silence under the others' voices.
const PRIME_FRAMES: usize = 3;
/// Pass-through stops while a talker's uplink loses more than this share of
/// its packets (smoothed, [`LossEstimate`]): forwarded, every uplink loss
/// reaches the listener on top of the downlink's, while a mix conceals it
/// here (with the next packet's FEC) and re-encodes with FEC tuned for the
/// downlink alone, so the two legs' losses do not compound. On a clean LAN
/// the figure is 0 and pass-through applies.
const PASS_THROUGH_MAX_UP_LOSS: f64 = 0.03;
/// How long a talker whose uplink we report lossy has to start sending
/// redundancy before pass-through counts its raw loss (a round trip and a
/// frame, with room to spare).
const RED_GRACE_US: u64 = 500_000;
/// A sender's first reception report goes out once this many of its
/// packets were expected (a quarter second at 20 ms), not at the next
/// whole-second report.
const FIRST_REPORT_AFTER: u64 = 12;
/// Levels-only datagrams to a silent room: one per this many level reports.
const SILENT_LEVELS_EVERY: u64 = 5;

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
    /// The shared encoder encoded last tick (its stream is live).
    shared_live: bool,
    /// Worst downlink loss among the shared mix's listeners last tick.
    shared_loss: f64,
    /// Consecutive ticks whose sum was quiet.
    quiet_run: u32,
}

pub struct Mixer {
    cfg: MixerConfig,
    members: BTreeMap<u32, Member>,
    rooms: HashMap<String, RoomMix>,
    /// Members by room, in session order; rebuilt when membership changes.
    groups: Option<Vec<(String, Vec<u32>)>>,
    tick: u64,
    stats: MixerStats,
    sum: Vec<f32>,
    mix: Vec<f32>,
    /// This tick's shared mix (soft-limited), once encoded.
    shared_mix: Vec<f32>,
    payload: Vec<u8>,
    shared_payload: Vec<u8>,
    datagram: Vec<u8>,
    /// A listener's payload with its redundancy, and a copy of the packet
    /// to keep for the next datagrams' (reused tick to tick).
    red_payload: Vec<u8>,
    red_keep: Vec<u8>,
    /// Rooms being recorded: their shared mix is encoded every tick, even
    /// with no listener on it, and handed to `tap` (see `record.rs`).
    recorded: std::collections::HashSet<String>,
    tap: Option<MixTap>,
    /// (talker, listener's downlink loss) for each packet forwarded this
    /// tick; kept to reuse its allocation from tick to tick.
    forwarded: Vec<(u32, f64)>,
    /// Sessions the host muted and holds muted: their audio is left out of
    /// every mix whatever their client sends (they still hear the room).
    silenced: std::collections::HashSet<u32>,
}

/// Receives a recorded room's shared-mix packet (room, payload) every tick.
pub type MixTap = Box<dyn FnMut(&str, &[u8]) + Send>;

/// Sum of `members`' frames of tick `at` from their histories, but `skip`'s.
fn heard_at(
    members: &BTreeMap<u32, Member>,
    ids: &[u32],
    skip: Option<u32>,
    at: u64,
    out: &mut [f32],
) -> bool {
    out.fill(0.0);
    let mut any = false;
    for o in ids.iter().filter(|o| Some(**o) != skip) {
        if let Some((_, f)) = members[o].history.iter().find(|(t, _)| *t == at) {
            any = true;
            for (acc, x) in out.iter_mut().zip(f) {
                *acc += x;
            }
        }
    }
    for x in out.iter_mut() {
        *x = soft_limit(*x);
    }
    any
}

/// Feeds `enc` what the listener(s) heard in the last [`PRIME_FRAMES`]
/// ticks before `tick` (everyone in `ids` but `skip`); returns encodes done.
fn prime(
    enc: &mut Encoder,
    members: &BTreeMap<u32, Member>,
    ids: &[u32],
    skip: Option<u32>,
    tick: u64,
    frame: &mut [f32],
    scratch: &mut Vec<u8>,
) -> u64 {
    let mut encodes = 0;
    let mut started = false;
    for at in tick.saturating_sub(PRIME_FRAMES as u64)..tick {
        // Leading silence primes nothing a fresh encoder does not have.
        started |= heard_at(members, ids, skip, at, frame);
        if started {
            scratch.clear();
            let _ = enc.encode(frame, scratch);
            encodes += 1;
        }
    }
    encodes
}

impl Mixer {
    pub fn new(cfg: MixerConfig) -> Mixer {
        let n = cfg.frame_samples;
        Mixer {
            cfg,
            members: BTreeMap::new(),
            rooms: HashMap::new(),
            groups: None,
            tick: 0,
            stats: MixerStats::default(),
            sum: vec![0.0; n],
            mix: vec![0.0; n],
            shared_mix: vec![0.0; n],
            payload: Vec::with_capacity(2048),
            shared_payload: Vec::with_capacity(2048),
            datagram: Vec::with_capacity(4096),
            red_payload: Vec::with_capacity(4096),
            red_keep: Vec::with_capacity(2048),
            recorded: Default::default(),
            tap: None,
            forwarded: Vec::new(),
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
            s.lost += j.lost;
            s.dropped += j.dropped;
            s.stretched += j.stretched;
            s.recovered += j.recovered;
        }
        s
    }

    /// Sessions the mixer knows (senders and listeners).
    pub fn sessions(&self) -> Vec<u32> {
        self.members.keys().copied().collect()
    }

    pub fn remove(&mut self, session: u32) {
        self.members.remove(&session);
        self.groups = None;
    }

    /// Forgets sessions `keep` says are gone (left the host, or changed room).
    pub fn retain(&mut self, mut keep: impl FnMut(u32, &str) -> bool) {
        let before = self.members.len();
        self.members.retain(|&s, m| keep(s, &m.room));
        if self.members.len() != before {
            self.groups = None;
        }
        let rooms: Vec<String> = self.members.values().map(|m| m.room.clone()).collect();
        self.rooms.retain(|r, _| rooms.contains(r));
    }

    fn member(&mut self, now_us: u64, sender: Sender<'_>) -> &mut Member {
        let fus = frame_us(self.cfg.frame_samples);
        let n = self.cfg.frame_samples;
        let jitter = JitterConfig {
            startup_frames: self.cfg.jitter_startup_frames,
            ..JitterConfig::new(fus)
        };
        if self.members.get(&sender.session).is_none_or(|m| m.room != sender.room) {
            self.groups = None;
        }
        let m = self.members.entry(sender.session).or_insert_with(|| Member {
            name: sender.name.to_string(),
            room: sender.room.to_string(),
            last_heard_us: now_us,
            jb: JitterBuffer::new(jitter),
            decoder: Decoder::new(),
            frame: vec![0.0; n],
            talking: false,
            packet: Vec::new(),
            has_packet: false,
            fec_packet: false,
            waiting: false,
            foreign_codec: false,
            end: false,
            encoder: None,
            stream: Stream::Silent,
            ended: true,
            mix_for_one: 0,
            ticks_since_talk: u32::MAX,
            out_seq: 0,
            level: 0,
            hint: false,
            history: VecDeque::with_capacity(PRIME_FRAMES + 1),
            up_meter: LossMeter::new(),
            up_loss: LossEstimate::default(),
            down_loss: LossEstimate::default(),
            forward_loss: 0.0,
            up_red: 0,
            red_sent: VecDeque::new(),
            reported: false,
            lossy_since_us: None,
        });
        if m.room != sender.room {
            m.room = sender.room.to_string();
            m.jb = JitterBuffer::new(jitter);
            m.encoder = None;
            m.stream = Stream::Silent;
            m.ended = true;
            m.history.clear();
        }
        if m.name != sender.name {
            m.name.clear();
            m.name.push_str(sender.name);
        }
        m.last_heard_us = now_us;
        m
    }

    /// A packet from `sender` (the session that owns the link it came on;
    /// `pkt.session` is not trusted) arrived.
    pub fn receive(&mut self, now_us: u64, sender: Sender<'_>, pkt: &AudioUp<'_>) {
        self.stats.packets_in += 1;
        let frame_samples = self.cfg.frame_samples;
        let m = self.member(now_us, sender);
        if pkt.keepalive {
            return;
        }
        m.up_meter.record(pkt.seq);
        if usize::from(pkt.samples) != frame_samples {
            m.hint = true;
            self.stats.wrong_frame += 1;
            return;
        }
        // Redundancy (RFC 2198): copies of the talker's earlier frames.
        // `AudioUp::decode` checked the layout.
        let red = match pkt.codec {
            AudioCodec::OpusRed => RedPayload::decode(pkt.payload).ok(),
            _ => None,
        };
        let (codec, primary) = match &red {
            Some(r) => (AudioCodec::Opus, r.primary),
            None => (pkt.codec, pkt.payload),
        };
        m.up_red = red.as_ref().map_or(0, RedPayload::depth);
        m.jb.set_min_depth(m.up_red);
        let item = (!primary.is_empty()).then(|| (codec, primary.to_vec()));
        if item.is_some() || pkt.end {
            m.jb.push_marked(now_us, pkt.seq, pkt.timestamp, item, pkt.end);
        }
        for b in red.as_ref().map_or(&[][..], RedPayload::blocks) {
            let seq = pkt.seq.wrapping_sub(u32::from(b.back));
            if m.jb.wants(seq) {
                m.jb.push_redundant(seq, (AudioCodec::Opus, b.data.to_vec()));
            }
        }
    }

    /// A reception report from `sender` (as in [`Mixer::receive`]) on the
    /// audio we send it.
    pub fn feedback(&mut self, now_us: u64, sender: Sender<'_>, report: &FeedbackUp) {
        self.stats.feedback_in += 1;
        let m = self.member(now_us, sender);
        m.down_loss.update(report.loss);
    }

    /// One frame period: mixes every room and sends each listener its mix
    /// (`send` gets the listener's session and the datagram).
    pub fn tick(&mut self, now_us: u64, mut send: impl FnMut(u32, &[u8])) {
        self.stats.ticks += 1;
        self.tick += 1;
        let tick = self.tick;
        let n = self.cfg.frame_samples;
        let codec = self.cfg.codec;
        for (id, m) in self.members.iter_mut() {
            m.jb.set_quiet(!m.talking || rms(&m.frame) < QUIET_FRAME_RMS);
            m.has_packet = false;
            m.fec_packet = false;
            let stretched = m.jb.stats().stretched;
            m.talking = match m.jb.pop(now_us) {
                Playout::Frame((c, data)) => {
                    m.decoder.decode(c, &data, &mut m.frame);
                    m.has_packet = c == codec;
                    m.foreign_codec = c != codec;
                    m.packet = data;
                    true
                }
                Playout::Conceal { next } => {
                    m.decoder.conceal(next.as_ref().map(|(c, d)| (*c, &d[..])), &mut m.frame);
                    if let Some((c, d)) = next.filter(|(c, _)| *c == codec) {
                        m.fec_packet = c == AudioCodec::Opus;
                        m.packet = d;
                    }
                    true
                }
                Playout::Idle => false,
            } && !self.silenced.contains(id);
            m.waiting = m.jb.stats().stretched > stretched;
            m.end = m.has_packet && m.jb.ended();
            if m.talking {
                m.level = m.level.max(level_from_rms(rms(&m.frame)));
                m.ticks_since_talk = 0;
                // This tick's frame and the PRIME_FRAMES before it.
                let mut slot = if m.history.len() > PRIME_FRAMES {
                    m.history.pop_front().map(|(_, f)| f).unwrap_or_default()
                } else {
                    Vec::with_capacity(n)
                };
                slot.clear();
                slot.extend_from_slice(&m.frame);
                m.history.push_back((tick, slot));
            } else {
                m.ticks_since_talk = m.ticks_since_talk.saturating_add(1);
            }
        }
        let release_after = (RELEASE_AFTER_US / frame_us(n)) as u32;
        let levels_every = u64::from(self.cfg.levels_every.max(1));
        let report_levels = tick.is_multiple_of(levels_every);
        let silent_levels = tick.is_multiple_of(levels_every * SILENT_LEVELS_EVERY);
        let timestamp = (tick as u32).wrapping_mul(n as u32);
        let share = self.cfg.share_mix;
        let groups = match self.groups.take() {
            Some(g) => g,
            None => {
                let mut g: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
                for (&s, m) in &self.members {
                    g.entry(&m.room).or_default().push(s);
                }
                g.into_iter().map(|(r, ids)| (r.to_string(), ids)).collect()
            }
        };
        for (room, ids) in &groups {
            let ids = &ids[..];
            let talkers: Vec<u32> =
                ids.iter().copied().filter(|s| self.members[s].talking).collect();
            if !self.rooms.contains_key(room) {
                self.rooms.insert(room.clone(), RoomMix::default());
            }
            // A silent room whose listeners all heard its end: nothing to
            // do but the occasional levels.
            if talkers.is_empty()
                && !self.recorded.contains(room.as_str())
                && !(report_levels && silent_levels)
                && ids
                    .iter()
                    .all(|s| self.members[s].stream == Stream::Silent && !self.members[s].hint)
            {
                let state = self.rooms.get_mut(room).expect("inserted above");
                state.quiet_run = state.quiet_run.saturating_add(1);
                state.shared_live = false;
                continue;
            }
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
            for s in &talkers {
                for (acc, x) in self.sum.iter_mut().zip(&self.members[s].frame) {
                    *acc += x;
                }
            }
            let state = self.rooms.get_mut(room).expect("inserted above");
            state.quiet_run = if talkers.is_empty() || rms(&self.sum) < QUIET_RMS {
                state.quiet_run.saturating_add(1)
            } else {
                0
            };
            let quiet = state.quiet_run >= 2;
            let shared_was_live = std::mem::take(&mut state.shared_live);
            let shared_loss = std::mem::take(&mut state.shared_loss);
            let mut shared_ready = false;
            for &s in ids {
                let (talking, prev, since_talk, stale, waited) = {
                    let m = &self.members[&s];
                    (
                        m.talking,
                        m.stream,
                        m.ticks_since_talk,
                        now_us.saturating_sub(m.last_heard_us) > self.cfg.listener_timeout_us,
                        m.mix_for_one,
                    )
                };
                if stale {
                    continue;
                }
                let mut others = talkers.iter().copied().filter(|&t| t != s);
                let (first, more) = (others.next(), others.next().is_some());
                // The mix streams: the shared one for a listener who is not
                // talking, when it can take them over without a seam.
                let mixed = || -> Stream {
                    if !share || talking {
                        return Stream::Own;
                    }
                    match prev {
                        Stream::Shared | Stream::Silent => Stream::Shared,
                        // Its own mix is the shared sum by now, from
                        // another encoder: move in a pause.
                        Stream::Own if quiet || since_talk > release_after => Stream::Shared,
                        Stream::Own => Stream::Own,
                        // A fresh shared stream is primed with the room's
                        // sum, which is what this listener heard.
                        Stream::Forward(_)
                            if !shared_was_live && since_talk > PRIME_FRAMES as u32 =>
                        {
                            Stream::Shared
                        }
                        Stream::Forward(_) => Stream::Own,
                    }
                };
                let want = match (first, more) {
                    (None, _) => Stream::Silent,
                    (Some(t), false)
                        if self.cfg.pass_through
                            && !self.members[&t].foreign_codec
                            && self.members[&t].residual_up_loss(now_us)
                                < PASS_THROUGH_MAX_UP_LOSS =>
                    {
                        match prev {
                            Stream::Silent => Stream::Forward(t),
                            Stream::Forward(x) if x == t => Stream::Forward(t),
                            // From a mix (or another talker's stream), at a
                            // quiet moment: the decoder's state then matters
                            // little.
                            _ if quiet || waited > release_after => Stream::Forward(t),
                            _ => mixed(),
                        }
                    }
                    _ => mixed(),
                };
                let mut sent_end = None;
                let mut forward_from = None;
                let mut fec = false;
                let mut audio = true;
                self.payload.clear();
                match want {
                    Stream::Silent => {
                        audio = false;
                        let m = self.members.get_mut(&s).expect("listed above");
                        if prev != Stream::Silent && !m.ended {
                            // End the talkspurt: an own encoder fades out on
                            // a silent frame; other streams stop with a mark.
                            if let (Stream::Own, Some(enc)) = (prev, m.encoder.as_mut()) {
                                self.mix.fill(0.0);
                                if enc.encode(&self.mix, &mut self.payload).is_ok() {
                                    self.stats.encodes += 1;
                                } else {
                                    self.payload.clear();
                                }
                            }
                            sent_end = Some(true);
                            audio = true;
                        }
                    }
                    Stream::Forward(t) => {
                        let (has, end, has_fec, late) = {
                            let tm = &self.members[&t];
                            (tm.has_packet, tm.end, tm.fec_packet, tm.waiting)
                        };
                        self.forwarded.push((t, self.members[&s].residual_down_loss()));
                        if has || has_fec {
                            // A frame lost on the way here goes on as the
                            // next packet, for its FEC: the listener rebuilds
                            // it even if the next one's own datagram is lost.
                            forward_from = Some(t);
                            fec = has_fec;
                            sent_end = Some(end && has);
                        } else if late {
                            // Late, not lost: it goes out when it comes, and
                            // the listener's jitter buffer absorbs the wait
                            // (a gap here would make it conceal a frame and
                            // then play one frame later: a slip).
                            audio = false;
                        } else {
                            // Lost, and the next packet not here yet: a gap,
                            // which the listener conceals (with the next
                            // packet's FEC if it comes in time).
                            audio = false;
                            let m = self.members.get_mut(&s).expect("listed above");
                            m.out_seq = m.out_seq.wrapping_add(1);
                            m.ended = false;
                        }
                    }
                    Stream::Own => {
                        // Everyone else, summed in the same order as the shared sum.
                        self.mix.fill(0.0);
                        for o in talkers.iter().filter(|&&o| o != s) {
                            for (acc, x) in self.mix.iter_mut().zip(&self.members[o].frame) {
                                *acc += x;
                            }
                        }
                        for x in self.mix.iter_mut() {
                            *x = soft_limit(*x);
                        }
                        let cfg = self.cfg;
                        let m = self.members.get_mut(&s).expect("listed above");
                        let fresh = prev != Stream::Own || m.encoder.is_none();
                        if fresh {
                            match m.encoder.as_mut() {
                                Some(enc) => enc.reset(),
                                None => {
                                    m.encoder = Encoder::with_complexity(
                                        cfg.codec,
                                        cfg.bitrate,
                                        cfg.complexity,
                                    )
                                    .ok()
                                }
                            }
                        }
                        let loss = expected_loss_percent(m.residual_down_loss());
                        let mut enc = m.encoder.take();
                        if let (Some(e), true) = (enc.as_mut(), fresh && prev != Stream::Silent) {
                            // Continue what this listener heard.
                            let mut frame = std::mem::take(&mut self.shared_mix);
                            self.stats.encodes += prime(
                                e,
                                &self.members,
                                ids,
                                Some(s),
                                tick,
                                &mut frame,
                                &mut self.datagram,
                            );
                            self.shared_mix = frame;
                        }
                        let m = self.members.get_mut(&s).expect("listed above");
                        m.encoder = enc;
                        let Some(e) = m.encoder.as_mut() else { continue };
                        e.set_expected_loss(loss);
                        if e.encode(&self.mix, &mut self.payload).is_err() {
                            continue;
                        }
                        self.stats.encodes += 1;
                        sent_end = Some(false);
                    }
                    Stream::Shared => {
                        let state = self.rooms.get_mut(&self.members[&s].room).expect("room");
                        if !shared_ready {
                            if state.shared.is_none() {
                                state.shared = Encoder::with_complexity(
                                    self.cfg.codec,
                                    self.cfg.bitrate,
                                    self.cfg.complexity,
                                )
                                .ok();
                            } else if !shared_was_live && let Some(e) = state.shared.as_mut() {
                                e.reset();
                            }
                            let Some(enc) = state.shared.as_mut() else { continue };
                            if !shared_was_live && codec == AudioCodec::Opus {
                                // Continue the room's sum, as its listeners heard it.
                                self.stats.encodes += prime(
                                    enc,
                                    &self.members,
                                    ids,
                                    None,
                                    tick,
                                    &mut self.shared_mix,
                                    &mut self.datagram,
                                );
                            }
                            for (x, s) in self.shared_mix.iter_mut().zip(&self.sum) {
                                *x = soft_limit(*s);
                            }
                            enc.set_expected_loss(expected_loss_percent(shared_loss));
                            self.shared_payload.clear();
                            if enc.encode(&self.shared_mix, &mut self.shared_payload).is_err() {
                                continue;
                            }
                            self.stats.encodes += 1;
                            shared_ready = true;
                            state.shared_live = true;
                        }
                        state.shared_loss =
                            state.shared_loss.max(self.members[&s].residual_down_loss());
                        sent_end = Some(false);
                    }
                }
                let m = self.members.get_mut(&s).expect("listed above");
                if want != Stream::Own {
                    m.encoder = None;
                }
                let mix_for_one = first.is_some() && !more && !matches!(want, Stream::Forward(_));
                m.mix_for_one = if mix_for_one { m.mix_for_one.saturating_add(1) } else { 0 };
                m.stream = want;
                let datagram = &mut self.datagram;
                datagram.clear();
                if let (true, Some(end)) = (audio, sent_end) {
                    m.out_seq = m.out_seq.wrapping_add(1);
                    m.ended = end;
                    let copies = if codec == AudioCodec::Opus { m.down_red() } else { 0 };
                    if copies == 0 {
                        m.red_sent.clear();
                    }
                    let payload: &[u8] = if let Some(t) = forward_from {
                        &self.members[&t].packet
                    } else if want == Stream::Shared {
                        &self.shared_payload
                    } else {
                        &self.payload
                    };
                    let m = &self.members[&s];
                    let red = copies > 0 && !payload.is_empty();
                    let (out_codec, body) = if red {
                        // Redundancy for a listener who reports loss: the
                        // last datagrams' packets ride along (RFC 2198).
                        let mut blocks = [RedBlock::default(); MAX_RED_BLOCKS];
                        let mut k = 0;
                        for (seq, was_fec, data) in &m.red_sent {
                            let back = m.out_seq.wrapping_sub(*seq);
                            if (1..=u32::from(copies)).contains(&back) && k < blocks.len() {
                                blocks[k] = RedBlock { back: back as u8, fec: *was_fec, data };
                                k += 1;
                            }
                        }
                        self.stats.red_out += k as u64;
                        self.red_payload.clear();
                        RedPayload::encode(&blocks[..k], payload, &mut self.red_payload);
                        self.red_keep.clear();
                        self.red_keep.extend_from_slice(payload);
                        (AudioCodec::OpusRed, &self.red_payload[..])
                    } else {
                        (codec, payload)
                    };
                    AudioDown {
                        seq: m.out_seq,
                        keepalive: false,
                        end,
                        forwarded: forward_from.is_some(),
                        fec,
                        timestamp,
                        codec: out_codec,
                        samples: n as u16,
                        levels: levels.clone(),
                        payload: body,
                    }
                    .encode(datagram);
                    if forward_from.is_some() {
                        self.stats.forwarded += 1;
                    }
                    if red {
                        // Keep this packet for the next datagrams.
                        let m = self.members.get_mut(&s).expect("listed above");
                        let mut keep = if m.red_sent.len() >= MAX_RED_BLOCKS {
                            m.red_sent.pop_front().map(|(_, _, v)| v).unwrap_or_default()
                        } else {
                            Vec::new()
                        };
                        keep.clear();
                        keep.extend_from_slice(&self.red_keep);
                        m.red_sent.push_back((m.out_seq, fec, keep));
                    }
                } else if report_levels && (!talkers.is_empty() || silent_levels) || m.hint {
                    // No audio this tick: the levels alone, outside the
                    // sequence (and our frame size, to a member sending another).
                    m.hint = false;
                    AudioDown {
                        seq: m.out_seq,
                        keepalive: true,
                        end: false,
                        forwarded: false,
                        fec: false,
                        timestamp,
                        codec,
                        samples: n as u16,
                        levels: levels.clone(),
                        payload: &[],
                    }
                    .encode(datagram);
                } else {
                    continue;
                }
                self.stats.datagrams_out += 1;
                self.stats.bytes_out += datagram.len() as u64;
                send(s, datagram);
            }
            if self.recorded.contains(room.as_str()) && codec == AudioCodec::Opus {
                let state = self.rooms.get_mut(room).expect("inserted above");
                if !shared_ready {
                    for (x, s) in self.shared_mix.iter_mut().zip(&self.sum) {
                        *x = soft_limit(*s);
                    }
                    let cfg = self.cfg;
                    if state.shared.is_none() {
                        state.shared =
                            Encoder::with_complexity(cfg.codec, cfg.bitrate, cfg.complexity).ok();
                    }
                    if let Some(enc) = state.shared.as_mut() {
                        self.shared_payload.clear();
                        shared_ready =
                            enc.encode(&self.shared_mix, &mut self.shared_payload).is_ok();
                        self.stats.encodes += 1;
                        // The shared encoder ran on this tick's room sum: a
                        // listener moving to it continues a live stream.
                        state.shared_live = true;
                    }
                }
                if let (true, Some(tap)) = (shared_ready, self.tap.as_mut()) {
                    tap(room, &self.shared_payload);
                }
            }
        }
        if self.groups.is_none() {
            self.groups = Some(groups);
        }
        for (t, loss) in self.forwarded.drain(..) {
            if let Some(m) = self.members.get_mut(&t) {
                m.forward_loss = m.forward_loss.max(loss);
            }
        }
        if report_levels {
            for m in self.members.values_mut() {
                m.level = 0;
            }
        }
        let every = u64::from(self.cfg.feedback_every.max(1));
        if tick.is_multiple_of(every) {
            self.send_feedback(now_us, &mut send, false);
        } else if tick.is_multiple_of((every / 10).max(1)) {
            // A new sender hears about its uplink's loss after a quarter
            // second of audio, not up to a second (its redundancy and FEC
            // start sooner).
            self.send_feedback(now_us, &mut send, true);
        }
    }

    /// Reception reports to every member whose audio arrived since the last
    /// ones: their loss and jitter, and the loss their encoder should expect.
    fn send_feedback(&mut self, now_us: u64, send: &mut impl FnMut(u32, &[u8]), first_only: bool) {
        for (&session, m) in self.members.iter_mut() {
            if first_only && (m.reported || m.up_meter.pending() < FIRST_REPORT_AFTER) {
                continue;
            }
            m.reported = true;
            let forward_loss = std::mem::take(&mut m.forward_loss);
            let Some((loss, _)) = m.up_meter.take() else { continue };
            let up = m.up_loss.update(loss);
            m.lossy_since_us = match (m.lossy_since_us, redundancy_frames(up) > 0) {
                (_, false) => None,
                (None, true) => Some(now_us),
                (since, true) => since,
            };
            // A forwarded packet's FEC serves both legs; what its listeners
            // measure already includes the uplink's losses (the host leaves
            // a gap for each).
            // Redundancy leaves only the loss it cannot rebuild to FEC.
            let both =
                if m.up_red > 0 { residual_loss(up, m.up_red) } else { up }.max(forward_loss);
            let report = FeedbackDown {
                loss,
                jitter_us: m.jb.jitter_us().round().clamp(0.0, u32::MAX as f64) as u32,
                expected_loss_percent: expected_loss_percent(both),
            };
            self.datagram.clear();
            report.encode(&mut self.datagram);
            self.stats.feedback_out += 1;
            send(session, &self.datagram);
        }
    }
}

#[cfg(test)]
mod tests {
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
            let cfg = MixerConfig { jitter_startup_frames: 0, ..cfg };
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
                keepalive: frame.is_none(),
                end,
                seq: *seq,
                timestamp: seq.wrapping_mul(960),
                codec,
                samples: 960,
                payload: &payload,
            };
            let who = Sender { session, name: &name, room };
            self.mixer.receive(self.now, who, &up);
            payload
        }

        /// Ticks once; returns each listener's decoded audio datagram (by
        /// session). Levels-only datagrams and reports are left out.
        fn tick(&mut self) -> BTreeMap<u32, (Vec<u8>, Vec<f32>)> {
            let mut out = BTreeMap::new();
            self.now += F;
            self.mixer.tick(self.now, |to, data| {
                let session = to;
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
        r.mixer.set_silenced(1, true);
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
                if to == 2 && !d.levels.is_empty() {
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
        r.send(3, "x", None);
        assert_eq!(r.tick().keys().copied().collect::<Vec<_>>(), [2, 3]);
        r.mixer.retain(|s, _| s != 2);
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
                out.push((to, data.to_vec()))
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
            // 200 ticks = 4 s: a levels-only datagram once a second.
            assert!((3..=4 * 3).contains(&n), "member {s}: {n} datagrams in 4 s of silence");
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
                    let who = Sender { session: 2, name: &name, room: "fb" };
                    let report = FeedbackUp { session: 2, loss: listener_loss, jitter_us: 100 };
                    r.mixer.feedback(r.now, who, &report);
                }
                r.now += F;
                r.mixer.tick(r.now, |to, data| {
                    if let (true, Ok(fb)) = (to == 1, FeedbackDown::decode(data)) {
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
        let who = Sender { session: s, name: &name, room };
        let fb = FeedbackUp { session: s, loss, jitter_us: 0 };
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
        let name = "p1".to_string();
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
                let seq = k as u32 + 1;
                let up = AudioUp {
                    session: 1,
                    keepalive: false,
                    end: false,
                    seq,
                    timestamp: seq * 960,
                    codec: AudioCodec::OpusRed,
                    samples: 960,
                    payload: &payload,
                };
                r.mixer.receive(r.now, Sender { session: 1, name: &name, room: "red" }, &up);
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
}
