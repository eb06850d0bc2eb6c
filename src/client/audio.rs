//! The client's audio engine, shared by the bots and the desktop app:
//! microphone → encoder → datagrams on the session's link to the host's
//! mixer; mix from the host →
//! jitter buffer → decoder (Opus FEC and concealment) → speaker.
//!
//! Two named threads: `sapora-audio-engine` captures, encodes and sends
//! once per frame, and pops, decodes and plays once per frame, each at the
//! point of the frame period that keeps the delay low (see
//! [`TickPhase`]); `sapora-audio-rx` receives mix datagrams into the jitter
//! buffer and notes when they arrive. The frame size follows the host's mix.
//! Datagrams go on the session's current link ([`MediaLink`]), so the
//! engine follows a rejoin after a host restart by itself.
//!
//! Muting stops sending audio; the engine then sends a keepalive every
//! [`KEEPALIVE_EVERY`] so the host keeps sending it the mix. The owner also tells the
//! room through `Client::set_media` (see [`BotAudio`] for the pattern).
//!
//! Silence is not sent either: after [`SILENCE_HANGOVER`] frames below
//! [`SILENCE_RMS`] the engine sends one frame marked as the end of the
//! talkspurt, then only the keepalive until there is sound again. Once a
//! second it reports the mix's loss and jitter to the host, and its encoder
//! expects the loss the host's reports ask for (Opus FEC). While the host
//! reports loss on our audio (and from the start of a call until its first
//! report proves the link clean, [`UNPROVEN_LOSS`]), each packet also
//! carries the last one or two
//! ([`redundancy_frames`], codec `OpusRed`); copies in the mix fill the
//! jitter buffer's gaps. Pauses between talkspurts play comfort noise at the
//! background's level (silence after a clean source).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use smol::channel::{Receiver, Sender};

use super::media::MediaLink;
use super::session::Client;
use crate::media::audio::apm::{self, AecReport, VoiceSettings};
use crate::media::audio::codec::{LossEstimate, UNPROVEN_LOSS, redundancy_frames};
use crate::media::audio::jitter::LossMeter;
use crate::media::audio::room::{EchoSpec, NoiseSpec};
use crate::media::audio::source::CLICK_US;
use crate::media::audio::{
    self, AudioError, CLICK_PERIOD_US, DEFAULT_BITRATE, Decoder, Encoder, FRAME_10MS, FRAME_20MS,
    JitterBuffer, JitterConfig, MicSpec, Playout, SpeakerSpec, TickPhase, frame_us,
};
use crate::proto::{
    AUDIO_DATAGRAM_MAX, AudioCodec, AudioDown, AudioUp, FeedbackDown, FeedbackUp, RedBlock,
    RedPayload, SpeakingLevel, is_audio_feedback,
};

#[derive(Debug, Clone)]
pub struct AudioConfig {
    pub mic: MicSpec,
    pub speaker: SpeakerSpec,
    /// Opus bitrate, bits per second.
    pub bitrate: u32,
    /// 960 (20 ms) or 480 (10 ms) to start with; the engine then follows
    /// the frame size of the host's mix (the `samples` of its datagrams).
    pub frame_samples: usize,
    pub muted: bool,
    /// Echo cancellation, noise suppression, gain control (all on by default).
    pub voice: VoiceSettings,
    /// Bots: a simulated room between speaker and microphone, and noise.
    pub echo: Option<EchoSpec>,
    pub noise: Option<NoiseSpec>,
}

impl AudioConfig {
    pub fn new(mic: MicSpec, speaker: SpeakerSpec) -> AudioConfig {
        AudioConfig {
            mic,
            speaker,
            bitrate: DEFAULT_BITRATE,
            frame_samples: FRAME_20MS,
            muted: false,
            voice: VoiceSettings::default(),
            echo: None,
            noise: None,
        }
    }
}

/// Counters since the engine started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AudioStats {
    pub packets_sent: u64,
    pub keepalives_sent: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub bytes_received: u64,
    /// Mix frames that never arrived in time (lost on the way, or too late).
    pub packets_lost: u64,
    pub duplicates: u64,
    /// Frames played from a received packet.
    pub frames_played: u64,
    /// Frames filled by FEC or loss concealment (losses, and waits for late packets).
    pub frames_concealed: u64,
    /// Of those, frames rebuilt from the next packet's forward error correction.
    pub frames_fec: u64,
    /// Current jitter-buffer depth, ms.
    pub buffer_ms: f64,
    /// Times the mix stopped long enough for the jitter buffer to start over.
    pub buffer_resets: u64,
    /// Frames the jitter buffer dropped to shrink its delay.
    pub frames_dropped: u64,
    /// Mix datagrams with audio (levels-only ones not counted), and those
    /// that carried a talker's packet unchanged (the host's pass-through).
    pub mix_datagrams: u64,
    pub frames_forwarded: u64,
    /// Mix datagrams expected and lost, from the gaps in their sequence
    /// numbers (RFC 3550): the downlink's loss.
    pub down_expected: u64,
    pub down_lost: u64,
    /// The host's reports on our audio: how many, and their loss figures summed.
    pub up_reports: u64,
    pub up_loss_sum: f64,
    /// Packet loss our encoder expects, percent (Opus FEC; 0 = off), as the host asks.
    pub fec_expected_loss_percent: u8,
    /// Talkspurts sent (each ended by an end mark, then nothing until sound).
    pub talkspurts_sent: u64,
    /// Earlier frames sent again inside our audio packets (RFC 2198
    /// redundancy, only while the host reports loss), and how many each
    /// packet carried last (0 = none).
    pub red_frames_sent: u64,
    pub red_depth: u8,
    /// Mix frames whose own datagram was lost, played from a later
    /// datagram's redundant copy.
    pub frames_recovered: u64,
    /// Frames played as comfort noise in the pauses between talkspurts.
    pub comfort_noise_frames: u64,
}

/// What the engine tells its owner (the UI) besides counters.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioEvent {
    /// Who is speaking in the room, a few times a second.
    Levels(Vec<SpeakingLevel>),
}

/// A packet, and whether it is the next frame's, carried for its FEC
/// (the host forwards it when a talker's packet was lost on the way in).
type Packet = (AudioCodec, Vec<u8>, bool);

struct Shared {
    stop: AtomicBool,
    muted: AtomicBool,
    /// The codec the host mixes with; we send the same.
    codec: AtomicU8,
    jb: Mutex<JitterBuffer<Packet>>,
    stats: Mutex<AudioStats>,
    levels: Mutex<Vec<SpeakingLevel>>,
    latencies_ms: Mutex<Vec<f64>>,
    /// Samples per frame: ours at first, then whatever the host's mix uses.
    frame_samples: AtomicUsize,
    /// When the host's mix arrives within the frame period.
    phase: Mutex<TickPhase>,
    /// Loss of the mix on its way here, for our reports to the host.
    down_loss: Mutex<LossMeter>,
    /// Packet loss the host asks our encoder to expect, percent.
    expected_loss: AtomicU8,
    /// A levels-only datagram arrived since the last frame slot (see
    /// [`KEEPALIVE_EVERY`]).
    levels_only: AtomicBool,
    /// An audio datagram from the host arrived on this session: it has
    /// heard us (until then keepalives go every [`UNHEARD_KEEPALIVE_EVERY`]).
    heard: AtomicBool,
    /// Loss of our audio on its way to the host, per mille, smoothed
    /// ([`LossEstimate`]): how much redundancy we send. [`UNPROVEN_LOSS`]
    /// until the host's first report (the first report replaces it).
    up_loss_permille: AtomicU16,
    start: Instant,
    voice: apm::VoiceControl,
}

impl Shared {
    /// A fresh engine's state for `frame_samples`-sample frames: no mix
    /// heard yet, and our uplink lossy until the host's first report proves
    /// it clean.
    fn new(frame_samples: usize, muted: bool) -> Shared {
        let fus = frame_us(frame_samples);
        Shared {
            stop: AtomicBool::new(false),
            muted: AtomicBool::new(muted),
            codec: AtomicU8::new(AudioCodec::Opus as u8),
            jb: Mutex::new(JitterBuffer::new(JitterConfig::new(fus))),
            stats: Mutex::new(AudioStats::default()),
            levels: Mutex::new(Vec::new()),
            latencies_ms: Mutex::new(Vec::new()),
            frame_samples: AtomicUsize::new(frame_samples),
            phase: Mutex::new(TickPhase::new(fus)),
            down_loss: Mutex::new(LossMeter::new()),
            expected_loss: AtomicU8::new(0),
            levels_only: AtomicBool::new(false),
            heard: AtomicBool::new(false),
            up_loss_permille: AtomicU16::new((UNPROVEN_LOSS * 1000.0) as u16),
            start: Instant::now(),
            voice: apm::VoiceControl::default(),
        }
    }

    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

/// A running audio engine. Dropping it stops it (use [`AudioEngine::stop`]
/// to learn whether a recording was written completely).
pub struct AudioEngine {
    shared: Arc<Shared>,
    events: Receiver<AudioEvent>,
    engine: Option<JoinHandle<Result<(), AudioError>>>,
    rx: Option<JoinHandle<()>>,
}

impl AudioEngine {
    /// Starts capturing and playing on the session's media datagrams
    /// ([`MediaLink::of`] a client). Fails if the microphone or speaker
    /// cannot be opened (the message says what to use instead).
    pub fn start(media: MediaLink, config: AudioConfig) -> Result<AudioEngine, AudioError> {
        let mic = audio::source::open(&config.mic)?;
        let sink = audio::sink::open(&config.speaker)?;
        let (mic, sink, probe) = audio::room::attach(mic, sink, config.echo, config.noise);
        let arrivals = media.audio();
        let shared = Arc::new(Shared::new(config.frame_samples, config.muted));
        let (ev_tx, events) = smol::channel::bounded(64);
        let rx = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sapora-audio-rx".into())
                .spawn(move || rx::receive(arrivals, &shared, &ev_tx))
                .map_err(|e| AudioError::Net(e.to_string()))?
        };
        let engine = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sapora-audio-engine".into())
                .spawn(move || {
                    let mut e = Engine {
                        shared: &shared,
                        media,
                        mic,
                        sink,
                        clicks: ClickDetector::default(),
                        voice: apm::Voice::new(config.voice, probe),
                        config,
                    };
                    e.run()
                })
                .map_err(|e| AudioError::Net(e.to_string()))?
        };
        Ok(AudioEngine { shared, events, engine: Some(engine), rx: Some(rx) })
    }

    /// Stops sending audio (keepalives go on so the mix keeps coming).
    pub fn set_muted(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    pub fn muted(&self) -> bool {
        self.shared.muted.load(Ordering::Relaxed)
    }

    /// Switches echo cancellation, noise suppression and gain control
    /// from the next frame on.
    pub fn set_voice(&self, settings: VoiceSettings) {
        self.shared.voice.set(settings);
    }

    /// The voice settings in force, the processor's stats and the measured
    /// echo figures (ERLE only with a simulated room).
    pub fn voice_report(&self) -> (VoiceSettings, apm::VoiceStats, AecReport) {
        self.shared.voice.report()
    }

    pub fn stats(&self) -> AudioStats {
        *self.shared.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The latest speaking levels the host sent.
    pub fn levels(&self) -> Vec<SpeakingLevel> {
        self.shared.levels.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn events(&self) -> Receiver<AudioEvent> {
        self.events.clone()
    }

    /// Mouth-to-ear delays measured from clicks heard so far, ms (see [`ClickDetector`]).
    pub fn latencies_ms(&self) -> Vec<f64> {
        self.shared.latencies_ms.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops both threads and finishes the speaker (completes a WAV file).
    pub fn stop(mut self) -> Result<(), AudioError> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), AudioError> {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(rx) = self.rx.take() {
            let _ = rx.join();
        }
        match self.engine.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(AudioError::Net("the audio engine thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for AudioEngine {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

struct Engine<'a> {
    shared: &'a Shared,
    media: MediaLink,
    config: AudioConfig,
    mic: Box<dyn audio::Source>,
    sink: Box<dyn audio::Sink>,
    clicks: ClickDetector,
    voice: apm::Voice,
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The sending half's state, kept across frames.
struct Uplink {
    frame: Vec<f32>,
    payload: Vec<u8>,
    datagram: Vec<u8>,
    encoder: Option<Encoder>,
    seq: u32,
    timestamp: u32,
    since_keepalive: u32,
    /// The session the last frame slot sent for (a new one: not heard yet).
    session: crate::proto::SessionId,
    /// Frames in a row below [`SILENCE_RMS`] (or muted).
    quiet_frames: u32,
    /// In a talkspurt: frames are being sent.
    talking: bool,
    /// Frames since the last reception report to the host.
    since_feedback: u32,
    /// The last packets sent (seq, Opus packet), newest last, kept while
    /// the host reports loss: the redundancy of the next packets.
    sent: VecDeque<(u32, Vec<u8>)>,
    /// The packet with its redundancy, when there is some.
    red_payload: Vec<u8>,
    /// A reception report went to the host already.
    reported: bool,
}

/// How often a client that sends no audio (silent, muted, no microphone)
/// sends a keepalive: the host's mixer stops sending to a listener it has
/// not heard from for 5 s (`MixerConfig::listener_timeout_us`), so two may
/// be lost. A keepalive goes early, once half of this has passed, in the
/// first frame slot after a levels-only datagram (which a silent room gets
/// every 2 s): sent within QUIC's 25 ms `max_ack_delay` of it, it carries
/// the ACK of it (RFC 9000 §13.2.1), so an idle client sends no bare ACKs.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(2);
/// The keepalive period until the host answers (a join, a rejoin): the host
/// answers a new member at once with a levels-only datagram, so a lost
/// keepalive costs a listener who joins during speech 200 ms of it, not
/// [`KEEPALIVE_EVERY`].
pub const UNHEARD_KEEPALIVE_EVERY: Duration = Duration::from_millis(200);

/// A captured frame below this RMS (−60 dBFS) is silence: not sent once the
/// hangover has passed.
pub const SILENCE_RMS: f32 = 0.001;
/// Silent frames still sent after sound (200 ms at 20 ms frames), so the
/// tails of words and short pauses between them go out as they are.
pub const SILENCE_HANGOVER: u32 = 10;

/// The playing half's state, kept across frames.
struct Downlink {
    played: Vec<f32>,
    decoder: Decoder,
    concealed: u64,
    fec: u64,
    /// The frame just played was a pause (see `JitterBuffer::set_quiet`).
    quiet: bool,
    /// Fills the pauses between talkspurts.
    comfort: audio::codec::ComfortNoise,
    comfort_frames: u64,
    /// The jitter buffer's reset count when last seen (a reset means the
    /// sender went away, not a pause: no comfort noise).
    resets: u64,
}

/// Capture-and-send runs this long before the host's tick (at most 40 %
/// of a frame): room for our encoding, the network and scheduling jitter.
const SEND_LEAD_US: i64 = 5_000;
/// Playback runs this long after the latest usual arrival of the mix.
const PLAY_MARGIN_US: i64 = 1_000;
/// How long past its time a frame may wait for its late packet.
const PLAY_GRACE: Duration = Duration::from_millis(5);
const PLAY_RETRY: Duration = Duration::from_micros(250);
/// Moves smaller than this are not worth a schedule change.
const ALIGN_MIN_US: i64 = 500;
/// Frames between alignment checks (drift between host and client clocks is
/// a few microseconds a frame).
const ALIGN_EVERY: u32 = 25;

impl Engine<'_> {
    /// Two events a frame: capture-and-send, and pop-and-play. They start
    /// together; once the mix's arrival phase is known ([`TickPhase`]), the
    /// send moves to just before the host's tick and the playback to just
    /// after the mix arrives, so neither waits most of a frame.
    fn run(&mut self) -> Result<(), AudioError> {
        let mut n = self.shared.frame_samples.load(Ordering::Relaxed);
        let mut period = Duration::from_micros(frame_us(n));
        let mut up = Uplink {
            frame: vec![0.0; n],
            payload: Vec::with_capacity(2048),
            datagram: Vec::with_capacity(AUDIO_DATAGRAM_MAX),
            encoder: None,
            seq: 0,
            timestamp: 0,
            since_keepalive: u32::MAX,
            session: Default::default(),
            quiet_frames: u32::MAX,
            talking: false,
            since_feedback: 0,
            sent: VecDeque::with_capacity(crate::proto::MAX_RED_BLOCKS + 1),
            red_payload: Vec::with_capacity(2048),
            reported: false,
        };
        let mut down = Downlink {
            played: vec![0.0; n],
            decoder: Decoder::new(),
            concealed: 0,
            fec: 0,
            quiet: true,
            comfort: audio::codec::ComfortNoise::new(),
            comfort_frames: 0,
            resets: 0,
        };
        let mut send_at = Instant::now() + period;
        let mut play_at = send_at;
        let mut sends = 0u32;
        let mut aligned = false;
        // While waiting a moment for a late mix packet.
        let mut play_retry: Option<Instant> = None;
        while !self.shared.stop.load(Ordering::Relaxed) {
            let due = send_at.min(play_retry.unwrap_or(play_at));
            let now = Instant::now();
            if now < due {
                std::thread::sleep(due - now);
            }
            let now = Instant::now();
            let host_n = self.shared.frame_samples.load(Ordering::Relaxed);
            if host_n != n {
                // The host mixes with another frame size: follow it.
                n = host_n;
                period = Duration::from_micros(frame_us(n));
                up.frame.resize(n, 0.0);
                down.played.resize(n, 0.0);
                send_at = now + period;
                play_at = send_at;
                play_retry = None;
                aligned = false;
                continue;
            }
            if now >= send_at {
                self.send(&mut up, n)?;
                send_at += period;
                sends = sends.wrapping_add(1);
                // Every frame until the first alignment, then now and then.
                if !aligned || sends.is_multiple_of(ALIGN_EVERY) {
                    aligned |= self.align(&mut send_at, &mut play_at, n);
                }
            }
            if now >= play_retry.unwrap_or(play_at) {
                let waiting = self.shared.jb.lock().unwrap_or_else(|e| e.into_inner()).waiting();
                if waiting && now < play_at + PLAY_GRACE {
                    // The host's tick ran a little late (a busy machine):
                    // a few ms of waiting beats a frame of concealment and
                    // a frame more delay until the buffer shrinks again.
                    play_retry = Some(now + PLAY_RETRY);
                } else {
                    play_retry = None;
                    self.play(&mut down, n);
                    play_at += period;
                }
            }
            for at in [&mut send_at, &mut play_at] {
                if now > *at + period {
                    // The machine stalled: do not try to catch up in a burst.
                    *at = now + period;
                }
            }
        }
        self.sink.finish()
    }

    /// Moves the send and play events to their best phase (see
    /// [`TickPhase`]). False while the phase is not known yet.
    fn align(&self, send_at: &mut Instant, play_at: &mut Instant, n: usize) -> bool {
        let (period, window) = {
            let p = self.shared.phase.lock().unwrap_or_else(|e| e.into_inner());
            (p.period_us(), p.window())
        };
        let Some(w) = window else { return false };
        if period != frame_us(n) {
            return false;
        }
        if w.late - w.early > period / 2 {
            // Arrivals spread over half a frame or more (a jittery network):
            // the phase says little, so the schedule stays; the jitter
            // buffers absorb the spread.
            return true;
        }
        let lead = SEND_LEAD_US.min(period as i64 * 2 / 5);
        let wants = [w.early as i64 - lead, w.late as i64 + PLAY_MARGIN_US];
        for (at, want) in [send_at, play_at].into_iter().zip(wants) {
            let at_us = at.saturating_duration_since(self.shared.start).as_micros() as u64;
            let d = audio::phase::shift(period, at_us % period, want);
            if d.abs() < ALIGN_MIN_US {
                continue;
            }
            let moved = Duration::from_micros(d.unsigned_abs());
            *at = if d > 0 { *at + moved } else { at.checked_sub(moved).unwrap_or(*at) };
        }
        true
    }

    /// Captures the frame that just left the microphone, encodes and sends it
    /// (or a keepalive every [`KEEPALIVE_EVERY`] while muted or silent).
    fn send(&mut self, up: &mut Uplink, n: usize) -> Result<(), AudioError> {
        let now_unix = unix_us();
        let has_audio = self.mic.read(&mut up.frame, now_unix.saturating_sub(frame_us(n)));
        if has_audio {
            let (mic_us, speaker_us) = (self.mic.latency_us(), self.sink.latency_us());
            self.voice.capture(&mut up.frame, &self.shared.voice, mic_us, speaker_us);
        }
        let session = self.media.session();
        if session != up.session {
            // Joined or rejoined: the host has not heard this session yet.
            up.session = session;
            self.shared.heard.store(false, Ordering::Relaxed);
        }
        let codec = match self.shared.codec.load(Ordering::Relaxed) {
            0 => AudioCodec::Pcm16,
            _ => AudioCodec::Opus,
        };
        if up.encoder.as_ref().is_none_or(|e| e.codec() != codec) {
            up.encoder = Some(Encoder::new(codec, self.config.bitrate)?);
        }
        let muted = self.shared.muted.load(Ordering::Relaxed);
        let open = has_audio && !muted;
        let voiced = open && audio::rms(&up.frame) >= SILENCE_RMS;
        up.quiet_frames = if voiced { 0 } else { up.quiet_frames.saturating_add(1) };
        let in_talkspurt = open && up.quiet_frames <= SILENCE_HANGOVER;
        // The first frame after a talkspurt goes out marked as its end (a
        // silent one when muted), so the host and listeners know the gap
        // that follows is a pause, not loss.
        let end = up.talking && !in_talkspurt;
        let sending = in_talkspurt || end;
        up.talking = in_talkspurt;
        if end && !open {
            up.frame.fill(0.0);
        }
        up.payload.clear();
        let keepalive = !sending;
        // Redundancy while the host reports loss on our uplink: each packet
        // also carries the last one or two (see `redundancy_frames`).
        let up_loss = f64::from(self.shared.up_loss_permille.load(Ordering::Relaxed)) / 1000.0;
        let copies = if codec == AudioCodec::Opus { redundancy_frames(up_loss) } else { 0 };
        let mut red_blocks = 0;
        if sending {
            if let Some(enc) = up.encoder.as_mut() {
                enc.set_expected_loss(self.shared.expected_loss.load(Ordering::Relaxed));
                enc.encode(&up.frame, &mut up.payload)?;
            }
            up.seq = up.seq.wrapping_add(1);
            if copies == 0 {
                up.sent.clear();
            } else if !up.payload.is_empty() {
                let seq = up.seq;
                let mut blocks = [RedBlock::default(); crate::proto::MAX_RED_BLOCKS];
                for (seq_then, data) in up.sent.iter() {
                    let back = seq.wrapping_sub(*seq_then);
                    if (1..=u32::from(copies)).contains(&back) && red_blocks < blocks.len() {
                        blocks[red_blocks] = RedBlock { back: back as u8, fec: false, data };
                        red_blocks += 1;
                    }
                }
                up.red_payload.clear();
                RedPayload::encode(&blocks[..red_blocks], &up.payload, &mut up.red_payload);
                // Keep this packet for the next ones (reusing the oldest buffer).
                let mut keep = if up.sent.len() >= crate::proto::MAX_RED_BLOCKS {
                    up.sent.pop_front().map(|(_, v)| v).unwrap_or_default()
                } else {
                    Vec::new()
                };
                keep.clear();
                keep.extend_from_slice(&up.payload);
                up.sent.push_back((seq, keep));
                std::mem::swap(&mut up.payload, &mut up.red_payload);
            }
        }
        let codec = if sending && copies > 0 && !up.payload.is_empty() {
            AudioCodec::OpusRed
        } else {
            codec
        };
        self.feedback(up, n, session);
        up.timestamp = up.timestamp.wrapping_add(n as u32);
        up.since_keepalive = up.since_keepalive.saturating_add(1);
        let since_us = u64::from(up.since_keepalive) * frame_us(n);
        let every_us = KEEPALIVE_EVERY.as_micros() as u64;
        let after_levels = self.shared.levels_only.swap(false, Ordering::Relaxed);
        let unheard_us = UNHEARD_KEEPALIVE_EVERY.as_micros() as u64;
        let unheard = !self.shared.heard.load(Ordering::Relaxed);
        let keepalive_due = since_us >= every_us
            || (after_levels && since_us >= every_us / 2)
            || (unheard && since_us >= unheard_us);
        if !(sending || keepalive_due) {
            return Ok(());
        }
        if keepalive {
            up.since_keepalive = 0;
        }
        up.datagram.clear();
        AudioUp {
            session,
            keepalive,
            end,
            seq: up.seq,
            timestamp: up.timestamp,
            codec,
            samples: n as u16,
            payload: &up.payload,
        }
        .encode(&mut up.datagram);
        // A closed link (rejoining) loses the frame; a full queue drops
        // its oldest datagram.
        if self.media.send(bytes::Bytes::copy_from_slice(&up.datagram)).is_ok() {
            let mut s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            if keepalive {
                s.keepalives_sent += 1;
            } else {
                s.packets_sent += 1;
            }
            s.talkspurts_sent += u64::from(end);
            s.fec_expected_loss_percent = up.encoder.as_ref().map_or(0, Encoder::expected_loss);
            s.red_frames_sent += red_blocks as u64;
            if !keepalive {
                s.red_depth = copies;
            }
            s.bytes_sent += up.datagram.len() as u64;
        }
        Ok(())
    }

    /// About once a second, while the mix arrives: tells the host how much
    /// of it was lost on the way and its jitter (its encoders' FEC follows).
    fn feedback(&mut self, up: &mut Uplink, n: usize, session: crate::proto::SessionId) {
        up.since_feedback = up.since_feedback.saturating_add(1);
        // The first report goes out after a quarter second of the mix if it
        // lost some, so the host's redundancy and FEC for us stay on; one
        // of no loss waits for a second of the mix (until then the host
        // assumes loss: a quarter second without a gap proves little);
        // then once a second.
        let due = if up.reported {
            (up.since_feedback as u64) * frame_us(n) >= 1_000_000
        } else {
            let meter = self.shared.down_loss.lock().unwrap_or_else(|e| e.into_inner());
            let second = 1_000_000 / frame_us(n);
            meter.first_report_due(second)
        };
        if !due {
            return;
        }
        up.since_feedback = 0;
        let taken = self.shared.down_loss.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some((loss, expected)) = taken else { return };
        up.reported = true;
        let jitter = self.shared.jb.lock().unwrap_or_else(|e| e.into_inner()).jitter_us();
        {
            let mut s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
            s.down_expected += expected;
            s.down_lost += (loss * expected as f64).round() as u64;
        }
        let report = FeedbackUp { session, loss, jitter_us: jitter.round().clamp(0.0, 1e9) as u32 };
        up.datagram.clear();
        report.encode(&mut up.datagram);
        let _ = self.media.send(bytes::Bytes::copy_from_slice(&up.datagram));
    }

    /// Plays one frame of the mix: received, rebuilt (FEC), concealed, or silence.
    fn play(&mut self, down: &mut Downlink, n: usize) {
        let (out, jstats, delay) = {
            let mut jb = self.shared.jb.lock().unwrap_or_else(|e| e.into_inner());
            jb.set_quiet(down.quiet);
            let before = jb.stats();
            let now_us = self.shared.now_us();
            let out = jb.pop(now_us);
            jb.log_events_since(&before, now_us, format_args!("client"));
            let after = jb.stats();
            (out, after, jb.delay_us())
        };
        let audible = match out {
            Playout::Frame((codec, data, false)) => {
                down.decoder.decode(codec, &data, &mut down.played);
                down.comfort.observe(&down.played);
                true
            }
            Playout::Frame((codec, data, true)) => {
                // Lost before the host: rebuilt from the next packet's FEC.
                down.decoder.conceal(Some((codec, &data)), &mut down.played);
                down.concealed += 1;
                down.fec += 1;
                true
            }
            Playout::Conceal { next } => {
                // A packet carried for FEC belongs to the frame after next.
                let next = next.filter(|(_, _, fec)| !fec);
                down.decoder.conceal(next.as_ref().map(|(c, d, _)| (*c, &d[..])), &mut down.played);
                down.concealed += 1;
                down.fec += u64::from(next.is_some());
                true
            }
            Playout::Idle => {
                if jstats.resets != down.resets {
                    down.resets = jstats.resets;
                    down.comfort.forget();
                }
                // A pause between talkspurts: comfort noise at the
                // background's level (silence after a clean source).
                down.comfort_frames += u64::from(down.comfort.fill(&mut down.played));
                false
            }
        };
        down.quiet = !audible || audio::rms(&down.played) < audio::QUIET_FRAME_RMS;
        let play_unix = unix_us();
        self.sink.write(&down.played);
        self.voice.render(&down.played);
        if audible {
            for ms in self.clicks.feed(&down.played, play_unix) {
                let mut l = self.shared.latencies_ms.lock().unwrap_or_else(|e| e.into_inner());
                if l.len() < 100_000 {
                    l.push(ms);
                }
            }
        } else {
            self.clicks.feed_silence(n);
        }
        let mut s = self.shared.stats.lock().unwrap_or_else(|e| e.into_inner());
        s.packets_lost = jstats.lost + jstats.late;
        s.duplicates = jstats.duplicates;
        s.frames_played = jstats.played;
        s.frames_concealed = down.concealed;
        s.frames_fec = down.fec;
        s.buffer_ms = delay as f64 / 1000.0;
        s.buffer_resets = jstats.resets;
        s.frames_dropped = jstats.dropped;
        s.frames_recovered = jstats.recovered;
        s.comfort_noise_frames = down.comfort_frames;
    }
}

#[path = "audio_bot.rs"]
mod bot;
#[path = "audio_rx.rs"]
mod rx;
pub use bot::{AudioReport, BotAudio, BotAudioOptions, ClickDetector};
