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
    LossEstimate, UNPROVEN_LOSS, expected_loss_percent, redundancy_frames, residual_loss,
};
use crate::media::audio::jitter::LossMeter;
use crate::media::audio::{
    Decoder, Encoder, JitterBuffer, JitterConfig, Playout, QUIET_FRAME_RMS, frame_us, rms,
};
use crate::proto::{
    AudioCodec, AudioDown, AudioUp, FeedbackDown, FeedbackUp, MAX_LEVELS, MAX_RED_BLOCKS, RedBlock,
    RedPayload, SessionId, SpeakingLevel, level_from_rms,
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
    /// The downlink loss assumed for a listener who has not reported yet
    /// ([`UNPROVEN_LOSS`]: lossy until proven clean, so a call's first
    /// words carry their redundancy). 0 treats unreported links as clean
    /// (tests that check the bytes of the first datagrams).
    pub unproven_loss: f64,
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
            unproven_loss: UNPROVEN_LOSS,
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
    pub session: SessionId,
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
    Forward(SessionId),
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
    /// Owed a levels-only datagram at the next tick: a new member (its
    /// client then knows it is heard), or one that sent frames of another
    /// size (the datagram shows ours).
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
    /// This member sent a reception report already (until then its
    /// downlink is assumed lossy, [`MixerConfig::unproven_loss`]).
    heard_report: bool,
    /// Our own measure shows this member's uplink lossy: a gap in its
    /// sequence since our last report, or our last report's smoothed loss.
    /// Until then its redundancy does not deepen its jitter buffer (a
    /// talker sends copies from the start of a call, before our first
    /// report proves the link clean; a clean link keeps the talker on the
    /// wall clock, with no added delay).
    up_lossy: bool,
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

    /// The downlink loss to plan for: the reported one, or `unproven`
    /// before the first report.
    fn assumed_down_loss(&self, unproven: f64) -> f64 {
        if self.heard_report { self.down_loss.get() } else { unproven }
    }

    /// Redundant frames each datagram to this listener carries, for the
    /// loss it reports (0 on a clean LAN).
    fn down_red(&self, unproven: f64) -> u8 {
        redundancy_frames(self.assumed_down_loss(unproven))
    }

    /// Downlink loss left after the redundancy we send this listener.
    fn residual_down_loss(&self, unproven: f64) -> f64 {
        residual_loss(self.assumed_down_loss(unproven), self.down_red(unproven))
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
/// Levels-only datagrams to a silent room: one per this many level reports
/// (every 2 s). Each costs a datagram and QUIC's ACK of it per member; the
/// client's keepalive answers it at once and carries its ACK
/// (`client::audio::KEEPALIVE_EVERY`), so an idle member costs the host
/// three packets every 2 s.
const SILENT_LEVELS_EVERY: u64 = 10;

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
    members: BTreeMap<SessionId, Member>,
    rooms: HashMap<String, RoomMix>,
    /// Members by room, in session order; rebuilt when membership changes.
    groups: Option<Vec<(String, Vec<SessionId>)>>,
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
    forwarded: Vec<(SessionId, f64)>,
    /// Sessions the host muted and holds muted: their audio is left out of
    /// every mix whatever their client sends (they still hear the room).
    silenced: std::collections::HashSet<SessionId>,
}

/// Receives a recorded room's shared-mix packet (room, payload) every tick.
pub type MixTap = Box<dyn FnMut(&str, &[u8]) + Send>;

/// Sum of `members`' frames of tick `at` from their histories, but `skip`'s.
fn heard_at(
    members: &BTreeMap<SessionId, Member>,
    ids: &[SessionId],
    skip: Option<SessionId>,
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
    members: &BTreeMap<SessionId, Member>,
    ids: &[SessionId],
    skip: Option<SessionId>,
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
    pub fn set_silenced(&mut self, session: SessionId, on: bool) {
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

    /// Whether a talker's next packet is late: it played a frame last tick
    /// and neither the next packet nor a later one is here
    /// ([`JitterBuffer::late`]), so a tick now would conceal the frame and
    /// wait for it, a 20 ms slip in what its listeners hear. A driver may
    /// tick a little later instead (`server::audio`: a talker's packet held
    /// up on a busy machine is usually a few ms late).
    pub fn talker_late(&self) -> bool {
        self.members.values().any(|m| m.talking && m.jb.late())
    }

    /// Sessions the mixer knows (senders and listeners).
    pub fn sessions(&self) -> Vec<SessionId> {
        self.members.keys().copied().collect()
    }

    pub fn remove(&mut self, session: SessionId) {
        self.members.remove(&session);
        self.groups = None;
    }

    /// Forgets sessions `keep` says are gone (left the host, or changed room).
    pub fn retain(&mut self, mut keep: impl FnMut(SessionId, &str) -> bool) {
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
            // A new member is answered at once (levels only): its client
            // then knows it is heard and slows its keepalives.
            hint: true,
            history: VecDeque::with_capacity(PRIME_FRAMES + 1),
            up_meter: LossMeter::new(),
            up_loss: LossEstimate::default(),
            down_loss: LossEstimate::default(),
            forward_loss: 0.0,
            up_red: 0,
            red_sent: VecDeque::new(),
            reported: false,
            heard_report: false,
            up_lossy: false,
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
        let expected = m.up_meter.pending();
        m.up_meter.record(pkt.seq);
        // A gap: lost on the way (or reordered), the uplink is lossy.
        m.up_lossy |= m.up_meter.pending() > expected + 1;
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
        m.jb.set_min_depth(if m.up_lossy { m.up_red } else { 0 });
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
        m.heard_report = true;
    }
}

#[path = "mixer_tick.rs"]
mod tick;

#[cfg(test)]
#[path = "mixer_tests.rs"]
mod tests;
