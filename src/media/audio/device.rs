//! Real microphones and speakers through cpal. Each stream lives on its own
//! named thread (cpal streams cannot move between threads); the device
//! callback only moves samples through a wait-free ring ([`super::queue`]),
//! so it never locks, blocks or allocates. Conversion to and from mono
//! 48 kHz happens on the engine's side of the queue.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample};

use super::queue::{self, MicProducer, MicQueue, SpeakerConsumer, SpeakerQueue};
use super::resample::Stream as Resampler;
use super::{AudioError, SAMPLE_RATE};
use super::{Sink, Source};

/// A device's own delay from its callback timestamps, µs (`u64::MAX`: not
/// told yet); the echo canceller's delay hint.
type Latency = Arc<AtomicU64>;

fn latency_of(latency: &Latency) -> Option<u64> {
    Some(latency.load(Ordering::Relaxed)).filter(|&us| us != u64::MAX)
}

fn find(input: bool, wanted: Option<&str>) -> Result<cpal::Device, String> {
    let host = cpal::default_host();
    let Some(wanted) = wanted else {
        let d = if input { host.default_input_device() } else { host.default_output_device() };
        return d.ok_or_else(|| "the system has no default device".to_string());
    };
    let devices: Vec<cpal::Device> = if input {
        host.input_devices().map_err(|e| e.to_string())?.collect()
    } else {
        host.output_devices().map_err(|e| e.to_string())?.collect()
    };
    if let Ok(i) = wanted.parse::<usize>() {
        let n = devices.len();
        return devices
            .into_iter()
            .nth(i)
            .ok_or_else(|| format!("there is no device {i} (found {n}; see `sapora devices`)"));
    }
    let w = wanted.to_lowercase();
    devices
        .into_iter()
        .find(|d| d.name().map(|n| n.to_lowercase().contains(&w)).unwrap_or(false))
        .ok_or_else(|| format!("no device named like \"{wanted}\" (see `sapora devices`)"))
}

/// Runs `build` on a named thread that keeps the stream alive until `stop`.
fn spawn_stream(
    name: &str,
    build: impl FnOnce() -> Result<cpal::Stream, String> + Send + 'static,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, String> {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let stream = match build() {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if let Err(e) = stream.play() {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
            let _ = tx.send(Ok(()));
            while !stop.load(Ordering::Relaxed) {
                std::thread::park_timeout(Duration::from_millis(200));
            }
            drop(stream);
        })
        .map_err(|e| e.to_string())?;
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the device did not start within 5 s".into()),
    }
}

/// Which input channel(s) a multi-channel microphone contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelChoice {
    /// The active channels (within [`ACTIVE_DB`] of the loudest), each
    /// turned to the loudest one's polarity before they are averaged.
    #[default]
    Auto,
    /// This channel only (0-based).
    Only(usize),
}

/// A channel this much quieter than the loudest (smoothed power) is left out.
pub const ACTIVE_DB: f32 = 20.0;
/// Frames per analysis block: 10 ms at 48 kHz.
const BLOCK: usize = 480;
/// Smoothing of the per-channel statistics per block (time constant
/// ≈ 3 blocks ≈ 30 ms at 48 kHz): a word's onset is heard at full level
/// after one block, and a mic moved to another input is followed within
/// ~150 ms; gains ramp across each block, so the choice never clicks.
const SMOOTH: f32 = 0.3;

/// Multi-channel to mono without losing the voice.
///
/// Averaging every channel, as a plain downmix does, fails two common
/// microphones: an 8-input USB interface with the mic on one input comes
/// out 8× (18 dB) too quiet, and a laptop array whose two capsules are
/// wired in anti-phase sums to near silence. `Downmix` keeps, per channel,
/// a smoothed power and a smoothed correlation with the loudest channel;
/// channels more than [`ACTIVE_DB`] below the loudest get gain 0, the rest
/// gain ±1/n with the sign of their correlation, so channels never cancel
/// and one live channel among silent ones comes out at its own level.
/// Gains move linearly across each block, so a change never clicks.
/// Sans-IO and allocation-free after construction apart from `out`.
#[derive(Debug, Clone)]
pub struct Downmix {
    channels: usize,
    choice: ChannelChoice,
    power: Vec<f32>,
    /// Smoothed correlation of each channel with the reference channel.
    corr: Vec<f32>,
    gains: Vec<f32>,
    target: Vec<f32>,
    primed: bool,
}

impl Downmix {
    /// `channels` ≥ 1; a chosen channel past the last is taken as the last.
    pub fn new(channels: usize, choice: ChannelChoice) -> Downmix {
        let channels = channels.max(1);
        let choice = match choice {
            ChannelChoice::Only(c) => ChannelChoice::Only(c.min(channels - 1)),
            auto => auto,
        };
        Downmix {
            channels,
            choice,
            power: vec![0.0; channels],
            corr: vec![0.0; channels],
            gains: vec![0.0; channels],
            target: vec![0.0; channels],
            primed: false,
        }
    }

    /// Mixes `interleaved` (whole frames of `channels` samples; a partial
    /// frame at the end is dropped) to mono, appending to `out`.
    pub fn process(&mut self, interleaved: &[f32], out: &mut Vec<f32>) {
        let ch = self.channels;
        if ch == 1 {
            out.extend_from_slice(interleaved);
            return;
        }
        if let ChannelChoice::Only(c) = self.choice {
            out.extend(interleaved.chunks_exact(ch).map(|f| f[c]));
            return;
        }
        for block in interleaved.chunks(BLOCK * ch) {
            let frames = block.len() / ch;
            if frames == 0 {
                continue;
            }
            self.analyse(block, frames);
            let step = 1.0 / frames as f32;
            for (i, f) in block.chunks_exact(ch).enumerate() {
                let t = (i + 1) as f32 * step;
                let sum: f32 = f
                    .iter()
                    .zip(self.gains.iter().zip(&self.target))
                    .map(|(x, (g, to))| x * (g + (to - g) * t))
                    .sum();
                out.push(sum);
            }
            self.gains.copy_from_slice(&self.target);
        }
    }

    /// Updates the statistics from one block and sets the target gains.
    fn analyse(&mut self, block: &[f32], frames: usize) {
        let ch = self.channels;
        let first = !self.primed;
        let a = if first { 1.0 } else { SMOOTH };
        self.primed = true;
        for c in 0..ch {
            let p = block.chunks_exact(ch).map(|f| f[c] * f[c]).sum::<f32>() / frames as f32;
            self.power[c] += a * (p - self.power[c]);
        }
        let (reference, loudest) = self
            .power
            .iter()
            .copied()
            .enumerate()
            .fold((0, 0.0f32), |best, (c, p)| if p > best.1 { (c, p) } else { best });
        for c in 0..ch {
            let x =
                block.chunks_exact(ch).map(|f| f[c] * f[reference]).sum::<f32>() / frames as f32;
            self.corr[c] += a * (x - self.corr[c]);
        }
        self.target.fill(0.0);
        if loudest <= 1e-12 {
            // Silence everywhere: keep listening to the last choice.
            self.target.copy_from_slice(&self.gains);
            if self.target.iter().all(|g| *g == 0.0) {
                self.target[0] = 1.0;
            }
            return;
        }
        let floor = loudest * 10f32.powf(-ACTIVE_DB / 10.0);
        let active = self.power.iter().filter(|p| **p >= floor).count() as f32;
        for c in 0..ch {
            if self.power[c] >= floor {
                let sign = if self.corr[c] < 0.0 { -1.0 } else { 1.0 };
                self.target[c] = sign / active;
            }
        }
        if first {
            // Nothing to ramp from: start at the right gains.
            self.gains.copy_from_slice(&self.target);
        }
    }
}

/// Splits `--mic` text into the device part and an optional channel:
/// `"Scarlett#3"` is channel 3 (1-based, as interfaces label them) of the
/// device named like "Scarlett"; `"#2"` is channel 2 of the default device.
pub fn parse_channel(wanted: &str) -> Result<(Option<&str>, ChannelChoice), String> {
    let Some((device, channel)) = wanted.rsplit_once('#') else {
        return Ok((Some(wanted), ChannelChoice::Auto));
    };
    let n: usize =
        channel.trim().parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
            format!("\"{channel}\" after # is not an input channel number (1, 2, …)")
        })?;
    let device = device.trim();
    Ok(((!device.is_empty()).then_some(device), ChannelChoice::Only(n - 1)))
}

/// A real microphone (cpal): device audio, downmixed ([`Downmix`]) and
/// resampled to mono 48 kHz on the engine's side of a wait-free queue.
/// Opened by [`open_input`]; the stream's thread stops when this is dropped.
pub struct CpalMic {
    queue: MicQueue,
    channels: usize,
    downmix: Downmix,
    mono: Vec<f32>,
    resampler: Resampler,
    raw: Vec<f32>,
    pending: Vec<f32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    latency: Latency,
}

fn build_input<T: SizedSample + Send + 'static>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut queue: MicProducer,
    latency: Latency,
) -> Result<cpal::Stream, String>
where
    f32: FromSample<T>,
{
    device
        .build_input_stream(
            config,
            move |data: &[T], info: &cpal::InputCallbackInfo| {
                let t = info.timestamp();
                if let Some(d) = t.callback.duration_since(&t.capture) {
                    latency.store(d.as_micros() as u64, Ordering::Relaxed);
                }
                // A stalled engine loses the newest samples, never blocks us.
                queue.push(data, <f32 as FromSample<T>>::from_sample_);
            },
            |e| tracing::warn!("microphone: {e}"),
            None,
        )
        .map_err(|e| e.to_string())
}

/// Opens an input device (`None` = the default). `NAME#N` takes only input
/// channel N (see [`parse_channel`]); otherwise the channels are mixed by
/// [`Downmix`] in [`ChannelChoice::Auto`].
pub fn open_input(wanted: Option<&str>) -> Result<CpalMic, AudioError> {
    let (wanted, choice) = match wanted {
        // A device whose own name has a '#' in it is taken by name.
        Some(w) if w.contains('#') && find(true, Some(w)).is_ok() => (Some(w), ChannelChoice::Auto),
        Some(w) => parse_channel(w).map_err(AudioError::NoInput)?,
        None => (None, ChannelChoice::Auto),
    };
    let device = find(true, wanted).map_err(AudioError::NoInput)?;
    let supported =
        device.default_input_config().map_err(|e| AudioError::NoInput(e.to_string()))?;
    let format = supported.sample_format();
    let config: cpal::StreamConfig = supported.config();
    let channels = usize::from(config.channels.max(1));
    if let ChannelChoice::Only(c) = choice
        && c >= channels
    {
        return Err(AudioError::NoInput(format!(
            "the microphone has {channels} input channel(s); there is no channel {}",
            c + 1
        )));
    }
    let rate = config.sample_rate.0;
    // Half a second of device audio: the engine drains it every frame.
    let (q, queue) = queue::mic(rate as usize * channels / 2, channels);
    let stop = Arc::new(AtomicBool::new(false));
    let latency = Latency::new(AtomicU64::new(u64::MAX));
    let l = latency.clone();
    let thread = spawn_stream(
        "sapora-audio-mic",
        move || match format {
            cpal::SampleFormat::F32 => build_input::<f32>(&device, &config, q, l),
            cpal::SampleFormat::I16 => build_input::<i16>(&device, &config, q, l),
            cpal::SampleFormat::U16 => build_input::<u16>(&device, &config, q, l),
            cpal::SampleFormat::I32 => build_input::<i32>(&device, &config, q, l),
            other => Err(format!("unsupported sample format {other}")),
        },
        stop.clone(),
    )
    .map_err(AudioError::NoInput)?;
    Ok(CpalMic {
        queue,
        channels,
        downmix: Downmix::new(channels, choice),
        mono: Vec::with_capacity(rate as usize),
        resampler: Resampler::new(rate, SAMPLE_RATE)?,
        raw: Vec::with_capacity(rate as usize),
        pending: Vec::with_capacity(SAMPLE_RATE as usize),
        stop,
        thread: Some(thread),
        latency,
    })
}

impl Source for CpalMic {
    fn read(&mut self, out: &mut [f32], _start_us: u64) -> bool {
        self.queue.drain_into(&mut self.raw);
        // Whole frames only; a split frame's rest waits for the next read.
        let whole = self.raw.len() / self.channels * self.channels;
        self.mono.clear();
        self.downmix.process(&self.raw[..whole], &mut self.mono);
        self.raw.drain(..whole);
        self.resampler.push(&self.mono, &mut self.pending);
        // The device clock and ours drift apart: keep at most three frames.
        let keep = out.len() * 3;
        if self.pending.len() > keep {
            self.pending.drain(..self.pending.len() - keep);
        }
        let n = self.pending.len().min(out.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        out[n..].fill(0.0);
        self.pending.drain(..n);
        true
    }

    fn latency_us(&self) -> Option<u64> {
        latency_of(&self.latency)
    }
}

impl Drop for CpalMic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// A real speaker (cpal): mono 48 kHz frames resampled to the device rate
/// and copied to every channel, at most 60 ms queued. Opened by
/// [`open_output`]; the stream's thread stops when this is dropped.
pub struct CpalSpeaker {
    /// At most 60 ms of device audio, for low delay.
    queue: SpeakerQueue,
    resampler: Resampler,
    converted: Vec<f32>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    latency: Latency,
    /// Device samples per µs (rate × channels / 1e6), for the queue's delay.
    samples_per_us: f64,
}

fn build_output<T: SizedSample + FromSample<f32> + Send + 'static>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut queue: SpeakerConsumer,
    latency: Latency,
) -> Result<cpal::Stream, String> {
    device
        .build_output_stream(
            config,
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| {
                let t = info.timestamp();
                if let Some(d) = t.playback.duration_since(&t.callback) {
                    latency.store(d.as_micros() as u64, Ordering::Relaxed);
                }
                // Above 60 ms queued the oldest is dropped; underflow is silence.
                queue.pull(data, T::from_sample, T::EQUILIBRIUM);
            },
            |e| tracing::warn!("speaker: {e}"),
            None,
        )
        .map_err(|e| e.to_string())
}

/// Opens an output device (`None` = the default).
pub fn open_output(wanted: Option<&str>) -> Result<CpalSpeaker, AudioError> {
    let device = find(false, wanted).map_err(AudioError::NoOutput)?;
    let supported =
        device.default_output_config().map_err(|e| AudioError::NoOutput(e.to_string()))?;
    let format = supported.sample_format();
    let mut config: cpal::StreamConfig = supported.config();
    // Small device buffers: about 10 ms, where the device allows it.
    if let cpal::SupportedBufferSize::Range { min, max } = supported.buffer_size() {
        let want = (config.sample_rate.0 / 100).clamp(*min, *max);
        config.buffer_size = cpal::BufferSize::Fixed(want);
    }
    let channels = usize::from(config.channels.max(1));
    let rate = config.sample_rate.0;
    let (queue, q) = queue::speaker(rate as usize * channels * 60 / 1000, channels);
    let stop = Arc::new(AtomicBool::new(false));
    let latency = Latency::new(AtomicU64::new(u64::MAX));
    let l = latency.clone();
    let thread = spawn_stream(
        "sapora-audio-speaker",
        move || match format {
            cpal::SampleFormat::F32 => build_output::<f32>(&device, &config, q, l),
            cpal::SampleFormat::I16 => build_output::<i16>(&device, &config, q, l),
            cpal::SampleFormat::U16 => build_output::<u16>(&device, &config, q, l),
            cpal::SampleFormat::I32 => build_output::<i32>(&device, &config, q, l),
            other => Err(format!("unsupported sample format {other}")),
        },
        stop.clone(),
    )
    .map_err(AudioError::NoOutput)?;
    Ok(CpalSpeaker {
        queue,
        resampler: Resampler::new(SAMPLE_RATE, rate)?,
        converted: Vec::with_capacity(rate as usize),
        stop,
        thread: Some(thread),
        latency,
        samples_per_us: f64::from(rate) * channels as f64 / 1e6,
    })
}

impl Sink for CpalSpeaker {
    fn write(&mut self, frame: &[f32]) {
        self.converted.clear();
        self.resampler.push(frame, &mut self.converted);
        // A device that plays slower than we send: its callback drops the
        // oldest above the limit; the ring always has room for one write.
        self.queue.push_mono(&self.converted);
    }

    /// The device's own delay plus what waits in our queue.
    fn latency_us(&self) -> Option<u64> {
        let queued = self.queue.queued();
        latency_of(&self.latency).map(|us| us + (queued as f64 / self.samples_per_us) as u64)
    }
}

impl Drop for CpalSpeaker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// What `sapora devices` prints for audio: the devices cpal finds, and the
/// device-free choices that always work.
pub fn describe_devices() -> String {
    let mut s = String::new();
    let host = cpal::default_host();
    for (title, input) in [("Microphones", true), ("Speakers", false)] {
        let _ = writeln!(s, "{title} ({} audio):", host.id().name());
        let default =
            if input { host.default_input_device() } else { host.default_output_device() }
                .and_then(|d| d.name().ok());
        let list = if input {
            host.input_devices().map(|d| d.collect::<Vec<_>>())
        } else {
            host.output_devices().map(|d| d.collect::<Vec<_>>())
        };
        match list {
            Ok(devices) if !devices.is_empty() => {
                for (i, d) in devices.iter().enumerate() {
                    let name = d.name().unwrap_or_else(|_| "(unnamed)".into());
                    let mark = if Some(&name) == default.as_ref() { "  (default)" } else { "" };
                    let _ = writeln!(s, "  {i}: {name}{mark}");
                }
            }
            Ok(_) => {
                let _ = writeln!(s, "  none found");
            }
            Err(e) => {
                let _ = writeln!(s, "  none available: {e}");
            }
        }
    }
    s.push_str(
        "Device-free microphones: tone[:HZ]  clicks  file:PATH.wav  none\n\
         Device-free speakers:    record:PATH.wav  null\n\
         Choose with --mic / --speaker: default, an index above, part of a name, or a device-free choice.\n\
         A multi-channel microphone uses its active channel(s); NAME#N (or #N) takes input channel N only.\n",
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: f32 = 48_000.0;

    fn voice(n: usize) -> Vec<f32> {
        // Two partials and a slow envelope: speech-like enough for levels.
        (0..n)
            .map(|i| {
                let t = i as f32 / RATE;
                let env = 0.6 + 0.4 * (std::f32::consts::TAU * 3.0 * t).sin();
                env * (0.3 * (std::f32::consts::TAU * 220.0 * t).sin()
                    + 0.1 * (std::f32::consts::TAU * 660.0 * t).sin())
            })
            .collect()
    }

    fn interleave(chans: &[Vec<f32>]) -> Vec<f32> {
        (0..chans[0].len()).flat_map(|i| chans.iter().map(move |c| c[i])).collect()
    }

    fn db(x: &[f32]) -> f32 {
        let p = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        10.0 * p.max(1e-20).log10()
    }

    /// Mixes in 20 ms reads, as the microphone does.
    fn mix(d: &mut Downmix, interleaved: &[f32], channels: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for read in interleaved.chunks(960 * channels) {
            d.process(read, &mut out);
        }
        out
    }

    #[test]
    fn a_mic_on_one_of_eight_inputs_keeps_its_level() {
        let v = voice(48_000);
        // Input 6 carries the mic; the others hiss 50 dB down.
        let chans: Vec<Vec<f32>> = (0..8)
            .map(|c| {
                if c == 5 {
                    v.clone()
                } else {
                    (0..v.len())
                        .map(|i| 0.001 * (((i * 7919 + c * 104_729) % 2000) as f32 / 1000.0 - 1.0))
                        .collect()
                }
            })
            .collect();
        let out = mix(&mut Downmix::new(8, ChannelChoice::Auto), &interleave(&chans), 8);
        assert_eq!(out.len(), v.len());
        let (got, want) = (db(&out[4800..]), db(&v[4800..]));
        assert!((got - want).abs() < 1.0, "{got:.1} dB vs {want:.1} dB (averaging gives -18 dB)");
        // A plain average would have been 18 dB down.
        let avg: Vec<f32> =
            interleave(&chans).chunks(8).map(|f| f.iter().sum::<f32>() / 8.0).collect();
        assert!(db(&avg[4800..]) < want - 17.0);
        eprintln!(
            "8 inputs, mic on one: {:+.2} dB (plain average {:+.2} dB)",
            got - want,
            db(&avg[4800..]) - want
        );
    }

    #[test]
    fn anti_phase_channels_do_not_cancel() {
        let v = voice(48_000);
        let inverted: Vec<f32> = v.iter().map(|x| -0.9 * x).collect();
        let out =
            mix(&mut Downmix::new(2, ChannelChoice::Auto), &interleave(&[v.clone(), inverted]), 2);
        let (got, want) = (db(&out[4800..]), db(&v[4800..]));
        assert!((got - want).abs() < 1.5, "{got:.1} dB vs {want:.1} dB");
        let avg: Vec<f32> = v.iter().map(|x| (x - 0.9 * x) / 2.0).collect();
        eprintln!(
            "anti-phase pair: {:+.2} dB (plain average {:+.2} dB)",
            got - want,
            db(&avg[4800..]) - want
        );
        // The first block already counts: no silent start either.
        assert!(db(&out[..480]) > want - 3.0, "{:.1} dB", db(&out[..480]));
    }

    #[test]
    fn ordinary_stereo_stays_as_it_was() {
        let v = voice(9600);
        let out =
            mix(&mut Downmix::new(2, ChannelChoice::Auto), &interleave(&[v.clone(), v.clone()]), 2);
        for (a, b) in out.iter().zip(&v) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn the_mic_can_move_to_another_input() {
        let v = voice(48_000);
        let zero = vec![0.0; v.len()];
        let first = interleave(&[v.clone(), zero.clone(), zero.clone(), zero.clone()]);
        let then = interleave(&[zero.clone(), zero.clone(), v.clone(), zero]);
        let mut d = Downmix::new(4, ChannelChoice::Auto);
        mix(&mut d, &first, 4);
        let out = mix(&mut d, &then, 4);
        // Within a quarter second the new input is heard at full level.
        let (got, want) = (db(&out[12_000..]), db(&v[12_000..]));
        assert!((got - want).abs() < 1.0, "{got:.1} dB vs {want:.1} dB");
    }

    #[test]
    fn a_chosen_channel_is_taken_as_is_and_silence_is_silence() {
        let v = voice(4800);
        let other = voice(4800).iter().map(|x| x * 3.0).collect::<Vec<_>>();
        let out = mix(
            &mut Downmix::new(3, ChannelChoice::Only(1)),
            &interleave(&[other.clone(), v.clone(), other]),
            3,
        );
        assert_eq!(out, v);
        let silent = vec![0.0; 3 * 4800];
        let out = mix(&mut Downmix::new(3, ChannelChoice::Auto), &silent, 3);
        assert!(out.iter().all(|x| *x == 0.0) && out.len() == 4800);
        // A partial frame at the end is not invented.
        let mut out = Vec::new();
        Downmix::new(2, ChannelChoice::Auto).process(&[0.5, 0.5, 0.5], &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn channel_suffixes_parse() {
        assert_eq!(parse_channel("Scarlett#3"), Ok((Some("Scarlett"), ChannelChoice::Only(2))));
        assert_eq!(parse_channel("#1"), Ok((None, ChannelChoice::Only(0))));
        assert_eq!(parse_channel("USB mic"), Ok((Some("USB mic"), ChannelChoice::Auto)));
        assert!(parse_channel("x#0").unwrap_err().contains("not an input channel"));
        assert!(parse_channel("x#left").is_err());
    }
}
