//! A device-free acoustic path for bots and tests: what the bot's speaker
//! plays comes back into its own microphone through a simulated room
//! (`--echo room[:DELAY_MS]`), and generated background noise is mixed into
//! the microphone (`--noise fan|babble|keyboard[:DBFS]`).
//!
//! The room is a fixed, seeded impulse response: a direct path, a few early
//! reflections and an exponentially decaying diffuse tail (Polack's
//! statistical model of reverberation) with RT60 ≈ [`ROOM_RT60_S`],
//! scaled to a broadband echo gain of [`ROOM_GAIN_DB`] and delayed by the
//! device delay (default [`ROOM_DELAY_MS`]). The convolution is a uniformly
//! partitioned overlap-save FFT convolution (10 ms blocks), so a 0.3 s tail
//! costs a few microseconds per frame.
//!
//! [`Room`] is sans-IO: samples are placed on an absolute sample timeline
//! given by the caller, so tests run it faster than real time. [`attach`]
//! wraps a bot's microphone and speaker with it, on the wall clock.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::{AudioError, FRAME_10MS, SAMPLE_RATE};
use super::{Sink, Source};

/// Reverberation time of the simulated room, seconds (a furnished office).
pub const ROOM_RT60_S: f32 = 0.3;
/// Broadband echo gain of the simulated room (speaker → microphone), dB.
pub const ROOM_GAIN_DB: f32 = -6.0;
/// Default device delay (output buffer + air + input buffer), ms.
pub const ROOM_DELAY_MS: u32 = 60;
/// Longest device delay `--echo room:DELAY_MS` accepts, ms (AEC3 searches
/// delays up to about half a second).
pub const ROOM_MAX_DELAY_MS: u32 = 400;
/// Seed of the room's impulse response: every run hears the same room.
pub const ROOM_SEED: u64 = 0x5A90_4A11;
/// Most audio the simulated speaker queues, ms (as `CpalSpeaker`).
const QUEUE_LIMIT_MS: usize = 60;
/// Default level of `--noise` (RMS, dBFS).
pub const NOISE_DBFS: f32 = -20.0;

/// `--echo room` or `--echo room:DELAY_MS`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoSpec {
    /// Device delay before the direct sound reaches the microphone, ms.
    pub delay_ms: u32,
}

impl Default for EchoSpec {
    fn default() -> EchoSpec {
        EchoSpec { delay_ms: ROOM_DELAY_MS }
    }
}

impl FromStr for EchoSpec {
    type Err = AudioError;
    fn from_str(s: &str) -> Result<EchoSpec, AudioError> {
        let s = s.trim();
        let bad = || {
            AudioError::Spec(format!(
                "--echo \"{s}\": use room or room:DELAY_MS (0–{ROOM_MAX_DELAY_MS} ms)"
            ))
        };
        match s.split_once(':') {
            None if s == "room" => Ok(EchoSpec::default()),
            Some(("room", ms)) => {
                let delay_ms: u32 = ms.trim().parse().map_err(|_| bad())?;
                if delay_ms > ROOM_MAX_DELAY_MS {
                    return Err(bad());
                }
                Ok(EchoSpec { delay_ms })
            }
            _ => Err(bad()),
        }
    }
}

/// Kinds of generated background noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseKind {
    /// Steady broadband rumble with a blade-pass hum (a laptop or desk fan).
    Fan,
    /// Several distant talkers (a café or open office).
    Babble,
    /// Key clicks at typing speed.
    Keyboard,
}

/// `--noise fan|babble|keyboard[:DBFS]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseSpec {
    /// Which noise.
    pub kind: NoiseKind,
    /// Long-term RMS level, dBFS.
    pub dbfs: f32,
}

impl FromStr for NoiseSpec {
    type Err = AudioError;
    fn from_str(s: &str) -> Result<NoiseSpec, AudioError> {
        let s = s.trim();
        let bad = || {
            AudioError::Spec(format!(
                "--noise \"{s}\": use fan, babble or keyboard, optionally :DBFS (e.g. fan:-30, -60 to 0)"
            ))
        };
        let (kind, level) = match s.split_once(':') {
            Some((k, l)) => (k, Some(l)),
            None => (s, None),
        };
        let kind = match kind {
            "fan" => NoiseKind::Fan,
            "babble" => NoiseKind::Babble,
            "keyboard" => NoiseKind::Keyboard,
            _ => return Err(bad()),
        };
        let dbfs = match level {
            None => NOISE_DBFS,
            Some(l) => l.trim().parse::<f32>().map_err(|_| bad())?,
        };
        if !(-60.0..=0.0).contains(&dbfs) {
            return Err(bad());
        }
        Ok(NoiseSpec { kind, dbfs })
    }
}

/// SplitMix64: a tiny seeded generator, so rooms and noises are reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits (SplitMix64, Steele, Lea and Flood 2014).
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box–Muller).
    pub fn gauss(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// Volume of the simulated office, m³ (5 × 4 × 2.7 m).
pub const ROOM_VOLUME_M3: f32 = 54.0;
/// Its surface (walls, floor, ceiling), m².
pub const ROOM_SURFACE_M2: f32 = 88.6;
/// Distance from the laptop's speakers to its microphone, m.
pub const SPEAKER_MIC_M: f32 = 0.25;
/// Directivity factor of the speakers: 2, radiating into the half space
/// above the desk.
pub const SPEAKER_Q: f32 = 2.0;
/// Speed of sound, m/s.
const SOUND_M_S: f32 = 343.0;

/// The room's direct-to-reverberant energy ratio at the microphone (linear),
/// from statistical room acoustics (Kuttruff, *Room Acoustics*, ch. 5):
/// Sabine's absorption area A = 0.161·V/RT60, mean absorption α = A/S, room
/// constant R = A/(1 − α), and direct/reverberant = Q·R/(16π·r²). For the
/// office above with RT60 0.3 s and the laptop's 0.25 m: about 27 (14 dB):
/// the microphone is well inside the critical distance (about 1.3 m).
pub fn direct_to_reverberant(rt60_s: f32) -> f32 {
    let a = 0.161 * ROOM_VOLUME_M3 / rt60_s;
    let alpha = (a / ROOM_SURFACE_M2).min(0.99);
    let r = a / (1.0 - alpha);
    SPEAKER_Q * r / (16.0 * std::f32::consts::PI * SPEAKER_MIC_M * SPEAKER_MIC_M)
}

/// The room's impulse response (without the device delay): the direct
/// sound, eight early reflections in the first 20 ms and a diffuse tail
/// from 5 ms on (Polack's statistical model: Gaussian noise under an
/// envelope that falls 60 dB in `rt60_s`); normalised so that its energy is
/// `gain_db` (the echo of white noise is `gain_db` below what is played).
///
/// The parts' levels are a laptop's on a desk in an office
/// ([`ROOM_VOLUME_M3`], [`SPEAKER_MIC_M`]): each reflection is an image
/// source, arriving Δt after the direct sound at amplitude
/// √(1 − α)·r/(r + c·Δt) of it (spherical spreading and one bounce); the
/// tail's energy is the direct sound's over [`direct_to_reverberant`]
/// (14 dB below it at RT60 0.3 s). Until this model the tail was 12 dB
/// *above* the direct sound, a talker 2 m from a loudspeaker rather than a
/// laptop: 52 ms of echo path (AEC3's default linear filter) then held
/// only 10 dB of the echo's energy, and no linear canceller of that length
/// could take out more.
pub fn impulse_response(seed: u64, rt60_s: f32, gain_db: f32) -> Vec<f32> {
    let sr = SAMPLE_RATE as f32;
    let len = (rt60_s * sr) as usize;
    let mut rng = Rng::new(seed);
    let mut h = vec![0.0f32; len.max(1)];
    h[0] = 1.0;
    let absorption = (0.161 * ROOM_VOLUME_M3 / rt60_s / ROOM_SURFACE_M2).min(0.99);
    let bounce = (1.0 - absorption).sqrt();
    for _ in 0..8 {
        let at = 48 + (rng.uniform() * 0.019 * sr) as usize;
        let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        let path = SPEAKER_MIC_M + SOUND_M_S * at as f32 / sr;
        if at < len {
            h[at] += sign * bounce * SPEAKER_MIC_M / path;
        }
    }
    // Envelope exp(-t·ln(1000)/RT60) is −60 dB at RT60. The tail starts 5 ms in.
    let decay = 1000f32.ln() / (rt60_s * sr);
    let tail_from = (0.005 * sr) as usize;
    let mut tail = vec![0.0f32; len.max(1)];
    for (i, x) in tail.iter_mut().enumerate().skip(tail_from) {
        *x = rng.gauss() * (-decay * i as f32).exp();
    }
    let tail_energy: f32 = tail.iter().map(|x| x * x).sum();
    let tail_gain = (1.0 / direct_to_reverberant(rt60_s) / tail_energy.max(1e-12)).sqrt();
    h.iter_mut().zip(&tail).for_each(|(x, t)| *x += tail_gain * t);
    let energy: f32 = h.iter().map(|x| x * x).sum();
    let scale = 10f32.powf(gain_db / 20.0) / energy.sqrt();
    h.iter_mut().for_each(|x| *x *= scale);
    h
}

/// Uniformly partitioned overlap-save convolution with blocks of
/// [`FRAME_10MS`] samples.
struct Convolver {
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    /// Spectra of the impulse response's partitions.
    parts: Vec<Vec<Complex32>>,
    /// Spectra of the last inputs, newest at `head` (frequency-domain delay line).
    history: Vec<Vec<Complex32>>,
    head: usize,
    /// The previous and the current input block.
    window: Vec<f32>,
    acc: Vec<Complex32>,
    time: Vec<f32>,
    scratch: Vec<Complex32>,
}

impl Convolver {
    const B: usize = FRAME_10MS;

    fn new(h: &[f32]) -> Convolver {
        let n = 2 * Self::B;
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(n);
        let ifft = planner.plan_fft_inverse(n);
        let mut scratch = fft.make_scratch_vec();
        let parts: Vec<Vec<Complex32>> = h
            .chunks(Self::B)
            .map(|c| {
                let mut t = vec![0.0f32; n];
                t[..c.len()].copy_from_slice(c);
                let mut s = fft.make_output_vec();
                let _ = fft.process_with_scratch(&mut t, &mut s, &mut scratch);
                s
            })
            .collect();
        let history = vec![fft.make_output_vec(); parts.len()];
        let scratch_len = scratch.len().max(ifft.get_scratch_len());
        scratch.resize(scratch_len, Complex32::default());
        Convolver {
            acc: fft.make_output_vec(),
            time: vec![0.0; n],
            window: vec![0.0; n],
            fft,
            ifft,
            parts,
            history,
            head: 0,
            scratch,
        }
    }

    fn reset(&mut self) {
        self.window.fill(0.0);
        self.history.iter_mut().for_each(|h| h.fill(Complex32::default()));
    }

    /// Feeds one block of input, writes one block of output.
    fn block(&mut self, input: &[f32], out: &mut [f32]) {
        let b = Self::B;
        self.window.copy_within(b.., 0);
        self.window[b..].copy_from_slice(input);
        self.time.copy_from_slice(&self.window);
        self.head = (self.head + self.history.len() - 1) % self.history.len();
        let _ = self.fft.process_with_scratch(
            &mut self.time,
            &mut self.history[self.head],
            &mut self.scratch,
        );
        self.acc.fill(Complex32::default());
        let p = self.history.len();
        for (k, part) in self.parts.iter().enumerate() {
            let x = &self.history[(self.head + k) % p];
            for ((a, x), h) in self.acc.iter_mut().zip(x).zip(part) {
                *a += x * h;
            }
        }
        // Real signals: DC and Nyquist bins are real (realfft checks).
        self.acc[0].im = 0.0;
        if let Some(last) = self.acc.last_mut() {
            last.im = 0.0;
        }
        let _ = self.ifft.process_with_scratch(&mut self.acc, &mut self.time, &mut self.scratch);
        let scale = 1.0 / (2 * b) as f32;
        for (o, t) in out.iter_mut().zip(&self.time[b..]) {
            *o = t * scale;
        }
    }
}

/// Samples on an absolute timeline (sample index since some epoch), the
/// last `len` of them kept; anything never written reads as silence.
struct Timeline {
    buf: Vec<f32>,
    /// One past the newest sample written.
    end: u64,
}

impl Timeline {
    fn new(len: usize) -> Timeline {
        Timeline { buf: vec![0.0; len], end: 0 }
    }

    fn write(&mut self, at: u64, samples: &[f32]) {
        let len = self.buf.len() as u64;
        // Silence in a gap (nothing was played there).
        let gap_from = self.end.max(at.saturating_sub(len));
        for i in gap_from..at {
            self.buf[(i % len) as usize] = 0.0;
        }
        for (i, &x) in samples.iter().enumerate() {
            self.buf[((at + i as u64) % len) as usize] = x;
        }
        self.end = self.end.max(at + samples.len() as u64);
    }

    fn get(&self, i: u64) -> f32 {
        let len = self.buf.len() as u64;
        if i >= self.end || i + len < self.end {
            return 0.0;
        }
        self.buf[(i % len) as usize]
    }
}

/// Energies of one captured frame, by part (sums of squares).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Captured {
    /// The echo alone (what a perfect canceller removes).
    pub echo: f64,
    /// What the speaker played, as it reaches the microphone's time (after
    /// the device delay, before the room): far-end activity.
    pub far: f64,
    /// The near end: the microphone's own sound plus the noise.
    pub near: f64,
    /// Samples these energies were summed over.
    pub samples: usize,
}

/// The simulated acoustic environment of one participant.
pub struct Room {
    echo: Option<EchoPath>,
    noise: Option<Noise>,
    near: Vec<f32>,
    /// Frames handed to the speaker, waiting to be played (see [`Room::enqueue`]).
    queue: std::collections::VecDeque<f32>,
}

struct EchoPath {
    delay: u64,
    conv: Convolver,
    played: Timeline,
    echo: Timeline,
    /// The next echo block to compute (block k covers `[kB, (k+1)B)`).
    next_block: Option<u64>,
    input: Vec<f32>,
    output: Vec<f32>,
}

impl EchoPath {
    fn new(spec: EchoSpec, h: &[f32]) -> EchoPath {
        let sr = u64::from(SAMPLE_RATE);
        EchoPath {
            delay: u64::from(spec.delay_ms) * sr / 1000,
            conv: Convolver::new(h),
            played: Timeline::new(2 * sr as usize),
            echo: Timeline::new(sr as usize),
            next_block: None,
            input: vec![0.0; Convolver::B],
            output: vec![0.0; Convolver::B],
        }
    }

    /// Computes the echo up to sample `until` (exclusive).
    fn run_until(&mut self, until: u64) {
        let b = Convolver::B as u64;
        let last = until.div_ceil(b);
        let parts = self.conv.parts.len() as u64;
        let first_needed = (until / b).saturating_sub(parts + 2);
        let mut k = match self.next_block {
            Some(k) if k + 100 >= first_needed => k,
            _ => {
                // First call, or a long stall: start over with a clean history.
                self.conv.reset();
                first_needed
            }
        };
        while k < last {
            for (j, x) in self.input.iter_mut().enumerate() {
                let t = k * b + j as u64;
                *x = if t >= self.delay { self.played.get(t - self.delay) } else { 0.0 };
            }
            self.conv.block(&self.input, &mut self.output);
            self.echo.write(k * b, &self.output);
            k += 1;
        }
        self.next_block = Some(k);
    }
}

impl Room {
    /// A room with an echo path (`None`: no echo) and noise (`None`: quiet).
    pub fn new(echo: Option<EchoSpec>, noise: Option<NoiseSpec>) -> Room {
        let echo = echo.map(|spec| {
            EchoPath::new(spec, &impulse_response(ROOM_SEED, ROOM_RT60_S, ROOM_GAIN_DB))
        });
        Room { echo, noise: noise.map(Noise::new), near: Vec::new(), queue: Default::default() }
    }

    /// A room with an echo path of the given impulse response `h` (48 kHz
    /// taps, without the device delay) and no noise: for measuring a
    /// canceller on other rooms.
    pub fn with_impulse_response(echo: EchoSpec, h: &[f32]) -> Room {
        Room {
            echo: Some(EchoPath::new(echo, h)),
            noise: None,
            near: Vec::new(),
            queue: Default::default(),
        }
    }

    /// Replaces the echo path (the laptop moved): same room model, another
    /// seed and delay. Tests use it for re-convergence.
    pub fn change_echo_path(&mut self, spec: EchoSpec, seed: u64) {
        let played = self.echo.take().map(|e| e.played);
        let mut path = EchoPath::new(spec, &impulse_response(seed, ROOM_RT60_S, ROOM_GAIN_DB));
        if let Some(p) = played {
            path.played = p;
        }
        self.echo = Some(path);
    }

    /// The speaker plays `frame`, its first sample at sample index `at`.
    pub fn play(&mut self, at: u64, frame: &[f32]) {
        if let Some(e) = &mut self.echo {
            e.played.write(at, frame);
        }
    }

    /// Hands a frame to the speaker's output queue, as the engine does with
    /// a real device: it is played when the device gets to it
    /// ([`Room::play_queued`]). Like `CpalSpeaker`, at most 60 ms wait; the
    /// oldest are dropped beyond that.
    pub fn enqueue(&mut self, frame: &[f32]) {
        self.queue.extend(frame);
        let limit = QUEUE_LIMIT_MS * SAMPLE_RATE as usize / 1000;
        let excess = self.queue.len().saturating_sub(limit);
        self.queue.drain(..excess);
    }

    /// The device plays the next `n` queued samples (silence when the queue
    /// runs dry) at sample index `at`: a full-duplex device plays and
    /// records on one clock, so the microphone's reads drive it.
    pub fn play_queued(&mut self, at: u64, n: usize) {
        let Some(e) = &mut self.echo else {
            self.queue.clear();
            return;
        };
        let take = n.min(self.queue.len());
        self.near.clear();
        self.near.extend(self.queue.drain(..take));
        self.near.resize(n, 0.0);
        e.played.write(at, &self.near);
    }

    /// The microphone picks up `mic` (the near-end sound, changed in place
    /// to what the microphone hears), its first sample at index `at`: the
    /// room's echo and the noise are added.
    pub fn capture(&mut self, at: u64, mic: &mut [f32]) -> Captured {
        self.near.clear();
        self.near.extend_from_slice(mic);
        if let Some(noise) = &mut self.noise {
            for x in self.near.iter_mut() {
                *x += noise.sample();
            }
        }
        let near: f64 = self.near.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let (mut echo_energy, mut far) = (0.0f64, 0.0f64);
        if let Some(e) = &mut self.echo {
            e.run_until(at + mic.len() as u64);
            for (i, (m, n)) in mic.iter_mut().zip(&self.near).enumerate() {
                let t = at + i as u64;
                let echo = e.echo.get(t);
                echo_energy += f64::from(echo) * f64::from(echo);
                let x = if t >= e.delay { e.played.get(t - e.delay) } else { 0.0 };
                far += f64::from(x) * f64::from(x);
                *m = n + echo;
            }
        } else {
            mic.copy_from_slice(&self.near);
        }
        Captured { echo: echo_energy, far, near, samples: mic.len() }
    }
}

/// Generated background noise, one sample at a time.
struct Noise {
    kind: NoiseKind,
    rng: Rng,
    gain: f32,
    n: u64,
    /// Filter states (one-pole low-passes, resonators), per kind.
    state: [f32; 16],
    /// Babble: each talker's syllable envelope and phase; keyboard: the
    /// current click's remaining samples and amplitude.
    env: [f32; 4],
    next_event: u64,
}

impl Noise {
    fn new(spec: NoiseSpec) -> Noise {
        let mut n = Noise {
            kind: spec.kind,
            rng: Rng::new(ROOM_SEED ^ (spec.kind as u64 + 1)),
            gain: 1.0,
            n: 0,
            state: [0.0; 16],
            env: [0.0; 4],
            next_event: 0,
        };
        // Calibrate: measure 2 s of the raw generator and scale to the level.
        let mut probe = Noise { rng: Rng::new(0xCA11B), ..n.clone_state() };
        let len = 2 * SAMPLE_RATE as usize;
        let energy: f64 = (0..len).map(|_| f64::from(probe.raw()).powi(2)).sum();
        let rms = (energy / len as f64).sqrt().max(1e-9) as f32;
        n.gain = 10f32.powf(spec.dbfs / 20.0) / rms;
        n
    }

    fn clone_state(&self) -> Noise {
        Noise {
            kind: self.kind,
            rng: self.rng.clone(),
            gain: 1.0,
            n: self.n,
            state: self.state,
            env: self.env,
            next_event: self.next_event,
        }
    }

    fn sample(&mut self) -> f32 {
        self.raw() * self.gain
    }

    fn raw(&mut self) -> f32 {
        let sr = SAMPLE_RATE as f32;
        self.n += 1;
        let t = self.n as f32 / sr;
        match self.kind {
            NoiseKind::Fan => {
                // Brown-ish rumble (low-passed white noise) plus a little
                // hiss, and a hum at the blade-pass frequency (110 Hz) and
                // its harmonics.
                let w = self.rng.gauss();
                self.state[0] += 0.02 * (w - self.state[0]);
                self.state[1] += 0.3 * (w - self.state[1]);
                let hum = (std::f32::consts::TAU * 110.0 * t).sin()
                    + 0.5 * (std::f32::consts::TAU * 220.0 * t).sin()
                    + 0.25 * (std::f32::consts::TAU * 330.0 * t).sin();
                4.0 * self.state[0] + 0.3 * self.state[1] + 0.05 * w + 0.15 * hum
            }
            NoiseKind::Babble => {
                // Four talkers: noise through a formant-like resonator each,
                // switched on and off at a syllable rate (4 Hz).
                let mut sum = 0.0;
                for k in 0..4 {
                    if self.n % 12_000 == (k as u64 * 3_000) {
                        // A new syllable (or a pause) every 250 ms.
                        self.env[k] =
                            if self.rng.uniform() < 0.6 { self.rng.uniform() } else { 0.0 };
                    }
                    let w = self.rng.gauss();
                    // Two-pole resonator at 300–900 Hz, one per talker.
                    let f = 300.0 + 200.0 * k as f32;
                    let r = 0.995f32;
                    let c = 2.0 * r * (std::f32::consts::TAU * f / sr).cos();
                    let (y1, y2) = (self.state[2 * k], self.state[2 * k + 1]);
                    let y = w + c * y1 - r * r * y2;
                    self.state[2 * k + 1] = y1;
                    self.state[2 * k] = y;
                    // Smooth envelope to avoid clicks.
                    self.state[8 + k] += 0.002 * (self.env[k] - self.state[8 + k]);
                    sum += y * self.state[8 + k];
                }
                sum
            }
            NoiseKind::Keyboard => {
                // Key clicks: 8 ms decaying noise bursts every 80–250 ms.
                if self.n >= self.next_event {
                    self.env[0] = 0.5 + 0.5 * self.rng.uniform();
                    self.env[1] = 0.0;
                    let gap = 0.08 + 0.17 * self.rng.uniform();
                    self.next_event = self.n + (gap * sr) as u64;
                }
                self.env[1] += 1.0;
                let age = self.env[1] / sr;
                let w = self.rng.gauss();
                // High-passed noise: the click is bright.
                let hp = w - self.state[0];
                self.state[0] = w;
                if age < 0.008 { self.env[0] * hp * (-age / 0.002).exp() } else { 0.0 }
            }
        }
    }
}

/// The latest microphone frame's echo and near-end energies, shared with
/// the ERLE meter (see [`super::apm::EchoMeter`]).
pub type Probe = Arc<Mutex<Option<Captured>>>;

/// Wall clock (Unix µs) → sample index at 48 kHz (48 samples a ms; the
/// product stays far from overflow for the next few thousand years).
fn index_of(unix_us: u64) -> u64 {
    unix_us * u64::from(SAMPLE_RATE / 1000) / 1000
}

/// Keeps a device's samples contiguous on the room's timeline: consecutive
/// frames follow each other exactly (as on a real device); the position
/// snaps back to the wall clock only after a stall of more than 100 ms.
#[derive(Default)]
struct Cursor(Option<u64>);

impl Cursor {
    fn place(&mut self, wall: u64, n: usize) -> u64 {
        let at = match self.0 {
            Some(next) if next.abs_diff(wall) <= u64::from(SAMPLE_RATE) / 10 => next,
            _ => wall,
        };
        self.0 = Some(at + n as u64);
        at
    }
}

struct RoomMic {
    inner: Box<dyn Source>,
    room: Arc<Mutex<Room>>,
    cursor: Cursor,
    probe: Probe,
}

impl Source for RoomMic {
    fn read(&mut self, out: &mut [f32], start_us: u64) -> bool {
        // `none` reads silence: the room still has something to say.
        let _ = self.inner.read(out, start_us);
        let at = self.cursor.place(index_of(start_us), out.len());
        let captured = {
            let mut room = self.room.lock().unwrap_or_else(|e| e.into_inner());
            room.play_queued(at, out.len());
            room.capture(at, out)
        };
        *self.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some(captured);
        true
    }

    fn latency_us(&self) -> Option<u64> {
        self.inner.latency_us()
    }
}

struct RoomSpeaker {
    inner: Box<dyn Sink>,
    room: Arc<Mutex<Room>>,
}

impl Sink for RoomSpeaker {
    fn write(&mut self, frame: &[f32]) {
        self.inner.write(frame);
        self.room.lock().unwrap_or_else(|e| e.into_inner()).enqueue(frame);
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        self.inner.finish()
    }

    fn latency_us(&self) -> Option<u64> {
        self.inner.latency_us()
    }
}

/// Puts a bot's microphone and speaker in a simulated room: what the
/// speaker plays comes back into the microphone (`echo`), and noise is
/// mixed in. With neither, returns them unchanged and no probe.
pub fn attach(
    mic: Box<dyn Source>,
    speaker: Box<dyn Sink>,
    echo: Option<EchoSpec>,
    noise: Option<NoiseSpec>,
) -> (Box<dyn Source>, Box<dyn Sink>, Option<Probe>) {
    if echo.is_none() && noise.is_none() {
        return (mic, speaker, None);
    }
    let room = Arc::new(Mutex::new(Room::new(echo, noise)));
    let probe: Probe = Arc::default();
    let mic =
        RoomMic { inner: mic, room: room.clone(), cursor: Cursor::default(), probe: probe.clone() };
    let speaker: Box<dyn Sink> =
        if echo.is_some() { Box::new(RoomSpeaker { inner: speaker, room }) } else { speaker };
    (Box::new(mic), speaker, Some(probe))
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
