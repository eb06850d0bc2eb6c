//! Opus (48 kHz mono, VoIP mode, loss-adaptive in-band FEC) and raw 16-bit PCM.
//!
//! Encoders start expecting no loss (no FEC: a clean LAN spends every bit
//! on the voice); their owners feed them measured loss
//! ([`Encoder::set_expected_loss`], from [`LossEstimate`]) and Opus then
//! spends bits on in-band FEC (LBRR) in proportion.
//!
//! Decoders take packets from the network: a packet that does not decode is
//! concealed like a lost one, never a panic.

pub use crate::proto::AudioCodec;

use super::{AudioError, SAMPLE_RATE};

/// Opus's own maximum: 120 ms at 48 kHz.
const OPUS_MAX_SAMPLES: usize = 5760;
/// Largest Opus packet we produce (far above 20 ms at 64 kbps: 160 bytes).
const OPUS_MAX_PACKET: usize = 1275;

/// Encodes 48 kHz mono `f32` frames (full scale ±1.0; 480 or 960 samples)
/// into one packet each: an Opus packet (RFC 6716, VoIP application, voice
/// signal, at most 1275 bytes) or 16-bit little-endian PCM (2 bytes a
/// sample). An encoder made for [`AudioCodec::OpusRed`] encodes Opus: the
/// sender packages the redundancy ([`RedPayload`](crate::proto::RedPayload)).
pub struct Encoder {
    codec: AudioCodec,
    opus: Option<opus::Encoder>,
    scratch: Vec<u8>,
    /// Packet loss the encoder is told to expect, percent.
    expected_loss: u8,
}

/// Loss below this (0.5 %) is a clean network: no FEC.
const CLEAN_LOSS: f64 = 0.005;
/// The most loss FEC is tuned for: beyond it, FEC's bits are better spent on
/// the voice (Opus's LBRR rebuilds one lost frame from the next packet only).
const MAX_EXPECTED_LOSS: u8 = 40;

/// The Opus packet loss percentage (`OPUS_SET_PACKET_LOSS_PERC`) for a
/// measured loss fraction: 0 on a clean network, else the loss rounded up
/// to a whole percent, at most 40.
pub fn expected_loss_percent(loss: f64) -> u8 {
    if loss.is_nan() || loss < CLEAN_LOSS {
        return 0;
    }
    // Less a hair, so that 10 % measured (5 of 50) is 10, not 11.
    (loss * 100.0 - 1e-6).ceil().min(f64::from(MAX_EXPECTED_LOSS)) as u8
}

/// Below this smoothed loss (5 %), one redundant copy per frame; at or
/// above, two. Measured with `scripts/pesq.sh --loss 10` (10 % random loss
/// each way): two copies scored 2.91 on average over 7 runs, one copy 2.38
/// (a loaded machine; one copy leaves 1 % of frames lost per leg, two 0.1 %),
/// for 20 ms more jitter buffer at each end, under loss only.
const TWO_COPIES_LOSS: f64 = 0.05;

/// How many earlier frames each audio packet carries again (RFC 2198
/// redundancy, [`AudioCodec::OpusRed`]) for a measured loss fraction of the
/// link it crosses: 0 on a clean network (below 0.5 %: nothing extra is
/// sent), 1 up to 5 %, else 2 (at most
/// [`MAX_RED_BLOCKS`](crate::proto::MAX_RED_BLOCKS)). Random loss `p`
/// then leaves `p²` (or `p³`) of the frames lost ([`residual_loss`]), for
/// one (two) frames more of jitter buffer at the receiver.
pub fn redundancy_frames(loss: f64) -> u8 {
    if loss.is_nan() || loss < CLEAN_LOSS {
        0
    } else if loss < TWO_COPIES_LOSS {
        1
    } else {
        2
    }
}

/// The loss a sender assumes for a link it has no reception report on yet
/// (10 %: two copies, [`redundancy_frames`]): "lossy until proven clean".
/// A call's first words then carry their redundancy from the first packets,
/// so the receivers' jitter buffers, which start at the copies' depth
/// ([`JitterConfig::startup_frames`](super::JitterConfig)), hold from the
/// start rather than growing by 20 ms steps while the first words play
/// once a report shows loss. On a clean LAN the first report comes after
/// a second of audio ([`LossMeter::first_report_due`](super::jitter::LossMeter::first_report_due))
/// and says 0, and the copies stop: a clean call pays a second of extra
/// bytes, no delay.
pub const UNPROVEN_LOSS: f64 = 0.10;

/// The share of frames still lost when each packet also carries the
/// `copies` frames before it and packets are lost independently with
/// probability `loss`: all `copies + 1` packets that hold a frame must be lost.
pub fn residual_loss(loss: f64, copies: u8) -> f64 {
    let l = if loss.is_finite() { loss.clamp(0.0, 1.0) } else { 0.0 };
    l.powi(i32::from(copies) + 1)
}

/// A loss figure smoothed over successive reports (one a second or so):
/// it rises at once to a worse report, so FEC is there for the next burst,
/// and falls a quarter of the way to a better one, so one lucky second does
/// not switch it off (the shape of WebRTC's loss-based controllers).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossEstimate {
    value: f64,
}

impl LossEstimate {
    /// Takes one reported loss fraction (0..=1; NaN or infinite counts as
    /// 0, anything else is clamped) and returns the smoothed loss, 0..=1.
    pub fn update(&mut self, reported: f64) -> f64 {
        let r = if reported.is_finite() { reported.clamp(0.0, 1.0) } else { 0.0 };
        self.value = if r >= self.value { r } else { self.value + (r - self.value) / 4.0 };
        self.value
    }

    /// The smoothed loss, 0..=1.
    pub fn get(&self) -> f64 {
        self.value
    }
}

impl Encoder {
    /// `bitrate` in bits per second is used by Opus only.
    pub fn new(codec: AudioCodec, bitrate: u32) -> Result<Encoder, AudioError> {
        Encoder::with_complexity(codec, bitrate, 10)
    }

    /// Opus `complexity` 0–10 trades CPU for quality; the host's mixer, which
    /// runs one encoder per talker plus one per room, uses less than 10.
    pub fn with_complexity(
        codec: AudioCodec,
        bitrate: u32,
        complexity: i32,
    ) -> Result<Encoder, AudioError> {
        // Redundancy is packaging around Opus packets, not an encoding.
        let codec = codec.base();
        let opus = match codec {
            AudioCodec::Pcm16 => None,
            AudioCodec::Opus | AudioCodec::OpusRed => {
                let e = |e: opus::Error| AudioError::Codec(e.to_string());
                let mut enc =
                    opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
                        .map_err(e)?;
                enc.set_bitrate(opus::Bitrate::Bits(bitrate.clamp(6_000, 510_000) as i32))
                    .map_err(e)?;
                enc.set_complexity(complexity.clamp(0, 10)).map_err(e)?;
                // Speech: every encoder picks the same (SILK or hybrid) mode,
                // so a listener's decoder can move between the host's
                // encoders and a talker's forwarded packets without a mode
                // switch (which, unannounced by the encoder, is a gap).
                enc.set_signal(opus::Signal::Voice).map_err(e)?;
                // A clean network until told otherwise: no FEC.
                enc.set_inband_fec(false).map_err(e)?;
                enc.set_packet_loss_perc(0).map_err(e)?;
                Some(enc)
            }
        };
        Ok(Encoder { codec, opus, scratch: vec![0; OPUS_MAX_PACKET], expected_loss: 0 })
    }

    /// Tells Opus how much packet loss to expect, percent (see
    /// [`expected_loss_percent`]): above 0, in-band FEC is on and Opus spends
    /// bits on it in proportion; 0 turns it off. Cheap when unchanged.
    pub fn set_expected_loss(&mut self, percent: u8) {
        let percent = percent.min(100);
        if percent == self.expected_loss {
            return;
        }
        if let Some(enc) = self.opus.as_mut() {
            let _ = enc.set_inband_fec(percent > 0);
            let _ = enc.set_packet_loss_perc(i32::from(percent));
        }
        self.expected_loss = percent;
    }

    /// The packet loss Opus is told to expect, percent (0 = no FEC).
    pub fn expected_loss(&self) -> u8 {
        self.expected_loss
    }

    /// Forgets the signal so far (as a new encoder would), keeping settings.
    pub fn reset(&mut self) {
        if let Some(enc) = self.opus.as_mut() {
            let _ = enc.reset_state();
        }
    }

    /// The codec of the packets it makes: [`AudioCodec::Opus`] for an
    /// encoder made for [`AudioCodec::OpusRed`] ([`AudioCodec::base`]).
    pub fn codec(&self) -> AudioCodec {
        self.codec
    }

    /// Encodes one frame (480 or 960 samples), appending the packet to `out`.
    pub fn encode(&mut self, frame: &[f32], out: &mut Vec<u8>) -> Result<(), AudioError> {
        match self.opus.as_mut() {
            None => {
                out.reserve(frame.len() * 2);
                for &x in frame {
                    let v = (x.clamp(-1.0, 1.0) * 32767.0).round() as i16;
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Ok(())
            }
            Some(enc) => {
                let n = enc
                    .encode_float(frame, &mut self.scratch)
                    .map_err(|e| AudioError::Codec(e.to_string()))?;
                out.extend_from_slice(&self.scratch[..n]);
                Ok(())
            }
        }
    }
}

/// Decodes either codec (a stream may switch when the host's choice changes)
/// and conceals lost frames.
pub struct Decoder {
    opus: Option<opus::Decoder>,
    last_opus: bool,
    /// The last good PCM frame, faded out to conceal PCM losses.
    last: Vec<f32>,
    scratch: Vec<f32>,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl Decoder {
    /// A decoder for either codec. libopus's decoder is made at the first
    /// Opus packet; if libopus refuses, Opus frames come out as silence.
    pub fn new() -> Decoder {
        Decoder {
            opus: None,
            last_opus: false,
            last: Vec::new(),
            scratch: vec![0.0; OPUS_MAX_SAMPLES],
        }
    }

    fn opus(&mut self) -> Option<&mut opus::Decoder> {
        if self.opus.is_none() {
            self.opus = opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono).ok();
        }
        self.opus.as_mut()
    }

    /// Decodes one packet into `out` (the frame length). Returns false if the
    /// packet was unusable, in which case `out` holds a concealment.
    pub fn decode(&mut self, codec: AudioCodec, payload: &[u8], out: &mut [f32]) -> bool {
        match codec {
            AudioCodec::Pcm16 => {
                if payload.len() != out.len() * 2 {
                    self.conceal(None, out);
                    return false;
                }
                for (x, b) in out.iter_mut().zip(payload.chunks_exact(2)) {
                    *x = f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0;
                }
                self.last_opus = false;
                self.last.clear();
                self.last.extend_from_slice(out);
                true
            }
            AudioCodec::OpusRed => match crate::proto::RedPayload::decode(payload) {
                Ok(red) => self.decode(AudioCodec::Opus, red.primary, out),
                Err(_) => {
                    self.conceal(None, out);
                    false
                }
            },
            AudioCodec::Opus => {
                if payload.is_empty() {
                    self.conceal(None, out);
                    return false;
                }
                let len = out.len();
                let mut scratch = std::mem::take(&mut self.scratch);
                let got = self.opus().map(|d| d.decode_float(payload, &mut scratch, false));
                let ok = matches!(got, Some(Ok(n)) if n == len);
                if ok {
                    out.copy_from_slice(&scratch[..len]);
                }
                self.scratch = scratch;
                if !ok {
                    self.conceal(None, out);
                    return false;
                }
                self.last_opus = true;
                true
            }
        }
    }

    /// Fills `out` for a lost frame: Opus's in-band FEC from the next packet
    /// when there is one, else Opus packet-loss concealment; PCM repeats the
    /// last frame, faded.
    pub fn conceal(&mut self, next: Option<(AudioCodec, &[u8])>, out: &mut [f32]) {
        let next = match next {
            Some((AudioCodec::OpusRed, p)) => {
                crate::proto::RedPayload::decode(p).ok().map(|red| (AudioCodec::Opus, red.primary))
            }
            other => other,
        };
        let len = out.len();
        if self.last_opus || matches!(next, Some((AudioCodec::Opus, _))) {
            let mut scratch = std::mem::take(&mut self.scratch);
            let got = match next {
                Some((AudioCodec::Opus, p)) if !p.is_empty() => {
                    self.opus().map(|d| d.decode_float(p, &mut scratch[..len], true))
                }
                _ => self.opus().map(|d| d.decode_float(&[], &mut scratch[..len], false)),
            };
            if matches!(got, Some(Ok(n)) if n == len) {
                out.copy_from_slice(&scratch[..len]);
            } else {
                out.fill(0.0);
            }
            self.scratch = scratch;
            return;
        }
        if self.last.len() == len {
            for (i, (x, l)) in out.iter_mut().zip(self.last.iter_mut()).enumerate() {
                *l *= 0.5 * (1.0 - i as f32 / len as f32) + 0.5 * 0.5;
                *x = *l;
            }
        } else {
            out.fill(0.0);
        }
    }
}

/// Comfort noise for the pauses between talkspurts (the idea of RFC 3389
/// and of Opus/WebRTC CNG): senders send nothing while silent, and a
/// listener's playback fills the gap with noise at the level of the
/// background heard just before, instead of dead digital silence, so a
/// pause does not sound like a dropped line.
///
/// The background level is a minimum-statistics estimate (Martin 2001, in
/// its simplest form): the lowest frame RMS of the talkspurt, let rise by
/// 0.4 dB a frame so it follows a noise floor that goes up. Noise below
/// −90 dBFS (a clean digital source) gives silence, and the level is capped
/// at −50 dBFS: comfort noise is never louder than a quiet room. The noise
/// is white noise through a one-pole low-pass (a pinkish hiss), from a
/// xorshift generator: no allocation, no system randomness.
#[derive(Debug, Clone)]
pub struct ComfortNoise {
    /// Background RMS estimate (full scale 1.0); 0 = none yet.
    floor: f32,
    rng: u32,
    lowpass: f32,
}

/// Below this background RMS (−90 dBFS) there is no noise to imitate.
const CN_MIN_RMS: f32 = 3.2e-5;
/// Comfort noise never exceeds this RMS (−50 dBFS).
const CN_MAX_RMS: f32 = 3.2e-3;
/// Rise of the floor estimate per frame (0.4 dB).
const CN_RISE: f32 = 1.047;
/// One-pole low-pass coefficient of the noise shaping (about 1.5 kHz at 48 kHz).
const CN_POLE: f32 = 0.82;

impl Default for ComfortNoise {
    fn default() -> Self {
        ComfortNoise::new()
    }
}

impl ComfortNoise {
    /// No background estimate yet: silence until a talkspurt is observed.
    pub fn new() -> ComfortNoise {
        ComfortNoise { floor: 0.0, rng: 0x2545_f491, lowpass: 0.0 }
    }

    /// A frame of a talkspurt was played: updates the background estimate.
    pub fn observe(&mut self, frame: &[f32]) {
        let r = super::rms(frame);
        if !r.is_finite() {
            return;
        }
        self.floor = if self.floor <= 0.0 { r } else { (self.floor * CN_RISE).min(r) };
    }

    /// Forgets the background (the sender is gone, not pausing).
    pub fn forget(&mut self) {
        self.floor = 0.0;
    }

    /// The comfort noise's RMS, 0 when there is none.
    pub fn level(&self) -> f32 {
        if self.floor < CN_MIN_RMS { 0.0 } else { self.floor.min(CN_MAX_RMS) }
    }

    /// Fills `out` with comfort noise (or silence when there is no
    /// background to imitate). Returns whether it is noise.
    pub fn fill(&mut self, out: &mut [f32]) -> bool {
        let level = self.level();
        if level == 0.0 {
            out.fill(0.0);
            return false;
        }
        // White noise of unit variance through the low-pass: its output
        // variance is (1 - a)² / (1 - a²) = (1 - a) / (1 + a).
        let gain = level * ((1.0 + CN_POLE) / (1.0 - CN_POLE)).sqrt();
        for x in out.iter_mut() {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 17;
            self.rng ^= self.rng << 5;
            // Uniform in [-1, 1): variance 1/3.
            let white = (self.rng as f32 / u32::MAX as f32) * 2.0 - 1.0;
            let white = white * 3f32.sqrt();
            self.lowpass = CN_POLE * self.lowpass + (1.0 - CN_POLE) * white;
            *x = gain * self.lowpass;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, start: usize) -> Vec<f32> {
        (start..start + n)
            .map(|i| 0.3 * (std::f32::consts::TAU * 1000.0 * i as f32 / 48_000.0).sin())
            .collect()
    }

    #[test]
    fn pcm_round_trips_exactly_to_16_bits() {
        let mut e = Encoder::new(AudioCodec::Pcm16, 0).unwrap();
        let mut d = Decoder::new();
        let f = tone(960, 0);
        let mut p = Vec::new();
        e.encode(&f, &mut p).unwrap();
        assert_eq!(p.len(), 1920);
        let mut out = vec![0.0; 960];
        assert!(d.decode(AudioCodec::Pcm16, &p, &mut out));
        assert!(f.iter().zip(&out).all(|(a, b)| (a - b).abs() < 1.0 / 16_000.0));
        // A short packet is concealed, not a panic.
        assert!(!d.decode(AudioCodec::Pcm16, &p[..7], &mut out));
    }

    #[test]
    fn opus_packets_are_small_and_garbage_is_concealed() {
        let mut e = Encoder::new(AudioCodec::Opus, 48_000).unwrap();
        let mut d = Decoder::new();
        let mut out = vec![0.0; 960];
        let mut sizes = Vec::new();
        for k in 0..50 {
            let mut p = Vec::new();
            e.encode(&tone(960, k * 960), &mut p).unwrap();
            sizes.push(p.len());
            assert!(d.decode(AudioCodec::Opus, &p, &mut out));
        }
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        // 48 kbps × 20 ms = 120 bytes.
        assert!((60.0..=160.0).contains(&mean), "mean packet {mean} bytes");
        for junk in [&[0xffu8; 3][..], &[0x00; 1][..], &[0x7f; 1000][..]] {
            d.decode(AudioCodec::Opus, junk, &mut out);
            assert!(out.iter().all(|x| x.is_finite()));
        }
        d.conceal(None, &mut out);
        d.conceal(Some((AudioCodec::Opus, &[0xfc, 1, 2])), &mut out);
        // A redundancy payload decodes as its own packet; a broken one is concealed.
        let mut p = Vec::new();
        e.encode(&tone(960, 0), &mut p).unwrap();
        let mut red = Vec::new();
        crate::proto::RedPayload::encode(
            &[crate::proto::RedBlock { back: 1, fec: false, data: &[1, 2, 3] }],
            &p,
            &mut red,
        );
        assert!(d.decode(AudioCodec::OpusRed, &red, &mut out));
        assert!(!d.decode(AudioCodec::OpusRed, &red[..3], &mut out));
    }

    #[test]
    fn redundancy_follows_measured_loss() {
        assert_eq!(redundancy_frames(0.0), 0, "a clean LAN sends nothing extra");
        assert_eq!(redundancy_frames(0.004), 0);
        assert_eq!(redundancy_frames(0.03), 1);
        assert_eq!(redundancy_frames(0.1), 2);
        assert_eq!(redundancy_frames(f64::NAN), 0);
        assert!((residual_loss(0.1, 1) - 0.01).abs() < 1e-12);
        assert!((residual_loss(0.1, 0) - 0.1).abs() < 1e-12);
        assert!((residual_loss(0.1, 2) - 0.001).abs() < 1e-12);
    }

    #[test]
    fn comfort_noise_imitates_the_background_and_a_clean_source_stays_silent() {
        let mut cn = ComfortNoise::new();
        let mut out = vec![1.0; 960];
        assert!(!cn.fill(&mut out), "nothing heard yet: silence");
        assert!(out.iter().all(|x| *x == 0.0));
        // Speech over a −66 dBFS hiss: the floor is the hiss, not the speech.
        let mut rng = 1u32;
        let mut hiss = |n: usize, amp: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    rng = rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    amp * ((rng >> 8) as f32 / (1u32 << 24) as f32 * 2.0 - 1.0)
                })
                .collect()
        };
        let floor = 0.0005f32 * 3f32.sqrt(); // RMS 0.0005 = −66 dBFS
        for k in 0..50 {
            let mut f = hiss(960, floor);
            if k % 5 != 0 {
                for (i, x) in f.iter_mut().enumerate() {
                    *x += 0.3 * (std::f32::consts::TAU * 200.0 * i as f32 / 48_000.0).sin();
                }
            }
            cn.observe(&f);
        }
        assert!(cn.fill(&mut out));
        let level = crate::media::audio::rms(&out);
        assert!((0.0004..0.0007).contains(&level), "comfort noise RMS {level}");
        // A digitally clean source: no noise to imitate.
        let mut cn = ComfortNoise::new();
        cn.observe(&vec![0.0; 960]);
        assert!(!cn.fill(&mut out) && out.iter().all(|x| *x == 0.0));
        // Never louder than a quiet room, whatever it heard.
        let mut cn = ComfortNoise::new();
        cn.observe(&vec![0.5; 960]);
        assert!(cn.fill(&mut out) && crate::media::audio::rms(&out) < 0.004);
        cn.forget();
        assert_eq!(cn.level(), 0.0);
    }

    #[test]
    fn fec_follows_measured_loss() {
        assert_eq!(expected_loss_percent(0.0), 0, "a clean LAN: no FEC");
        assert_eq!(expected_loss_percent(0.004), 0);
        assert_eq!(expected_loss_percent(0.1), 10);
        assert_eq!(expected_loss_percent(0.101), 11);
        assert_eq!(expected_loss_percent(0.9), 40);
        assert_eq!(expected_loss_percent(f64::NAN), 0);
        let mut l = LossEstimate::default();
        assert_eq!(l.update(0.2), 0.2, "rises at once");
        assert!((l.update(0.0) - 0.15).abs() < 1e-9, "falls slowly");
        // With FEC on, a lost frame is rebuilt from the next packet far
        // better than concealment guesses it.
        let speechlike = |k: usize| -> Vec<f32> {
            (0..960)
                .map(|i| {
                    let t = (k * 960 + i) as f32 / 48_000.0;
                    let env = 0.5 + 0.5 * (std::f32::consts::TAU * 3.0 * t).sin();
                    env * 0.3 * (std::f32::consts::TAU * 220.0 * t).sin()
                        + env * 0.1 * (std::f32::consts::TAU * 1250.0 * t).sin()
                })
                .collect()
        };
        let run = |loss: u8| -> f64 {
            let mut e = Encoder::new(AudioCodec::Opus, 48_000).unwrap();
            e.set_expected_loss(loss);
            assert_eq!(e.expected_loss(), loss);
            let packets: Vec<Vec<u8>> = (0..100)
                .map(|k| {
                    let mut p = Vec::new();
                    e.encode(&speechlike(k), &mut p).unwrap();
                    p
                })
                .collect();
            let (mut clean, mut lossy) = (Decoder::new(), Decoder::new());
            let (mut a, mut b) = (vec![0.0; 960], vec![0.0; 960]);
            let mut err = 0.0f64;
            for (k, pair) in packets.windows(2).enumerate() {
                clean.decode(AudioCodec::Opus, &pair[0], &mut a);
                if k % 7 == 3 {
                    lossy.conceal(Some((AudioCodec::Opus, &pair[1])), &mut b);
                } else {
                    lossy.decode(AudioCodec::Opus, &pair[0], &mut b);
                }
                if k % 7 == 3 {
                    err += a.iter().zip(&b).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>();
                }
            }
            err
        };
        let (without, with) = (run(0), run(10));
        assert!(with * 2.0 < without, "FEC rebuilds lost frames: error {with} vs {without}");
    }
}
