//! Real microphones and speakers through cpal. Each stream lives on its own
//! named thread (cpal streams cannot move between threads); the device
//! callback only moves samples through a preallocated queue with `try_lock`,
//! so it never blocks and never allocates. Conversion to and from mono
//! 48 kHz happens on the engine's side of the queue.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SizedSample};

use super::resample::{self, Stream as Resampler};
use super::sink::Sink;
use super::source::Source;
use super::{AudioError, SAMPLE_RATE};

type Queue = Arc<Mutex<VecDeque<f32>>>;
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

pub struct CpalMic {
    queue: Queue,
    channels: usize,
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
    queue: Queue,
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
                if let Ok(mut q) = queue.try_lock() {
                    let room = q.capacity() - q.len();
                    q.extend(
                        data.iter().take(room).map(|&s| <f32 as FromSample<T>>::from_sample_(s)),
                    );
                }
            },
            |e| tracing::warn!("microphone: {e}"),
            None,
        )
        .map_err(|e| e.to_string())
}

/// Opens an input device (`None` = the default).
pub fn open_input(wanted: Option<&str>) -> Result<CpalMic, AudioError> {
    let device = find(true, wanted).map_err(AudioError::NoInput)?;
    let supported =
        device.default_input_config().map_err(|e| AudioError::NoInput(e.to_string()))?;
    let format = supported.sample_format();
    let config: cpal::StreamConfig = supported.config();
    let channels = usize::from(config.channels.max(1));
    let rate = config.sample_rate.0;
    // Half a second of device audio: the engine drains it every frame.
    let queue: Queue = Arc::new(Mutex::new(VecDeque::with_capacity(rate as usize * channels / 2)));
    let stop = Arc::new(AtomicBool::new(false));
    let q = queue.clone();
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
        self.raw.clear();
        if let Ok(mut q) = self.queue.lock() {
            self.raw.extend(q.drain(..));
        }
        let mono = resample::downmix(&self.raw, self.channels);
        self.resampler.push(&mono, &mut self.pending);
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

pub struct CpalSpeaker {
    queue: Queue,
    channels: usize,
    resampler: Resampler,
    converted: Vec<f32>,
    /// Most device audio queued: small, for low delay.
    limit: usize,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    latency: Latency,
    /// Device samples per µs (rate × channels / 1e6), for the queue's delay.
    samples_per_us: f64,
}

fn build_output<T: SizedSample + FromSample<f32> + Send + 'static>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    queue: Queue,
    latency: Latency,
) -> Result<cpal::Stream, String> {
    device
        .build_output_stream(
            config,
            move |data: &mut [T], info: &cpal::OutputCallbackInfo| match queue.try_lock() {
                Ok(mut q) => {
                    let t = info.timestamp();
                    if let Some(d) = t.playback.duration_since(&t.callback) {
                        latency.store(d.as_micros() as u64, Ordering::Relaxed);
                    }
                    for s in data.iter_mut() {
                        *s = T::from_sample(q.pop_front().unwrap_or(0.0));
                    }
                }
                Err(_) => data.fill(T::EQUILIBRIUM),
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
    let limit = rate as usize * channels * 60 / 1000;
    let queue: Queue = Arc::new(Mutex::new(VecDeque::with_capacity(limit * 2)));
    let stop = Arc::new(AtomicBool::new(false));
    let q = queue.clone();
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
        channels,
        resampler: Resampler::new(SAMPLE_RATE, rate)?,
        converted: Vec::with_capacity(rate as usize),
        limit,
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
        if let Ok(mut q) = self.queue.lock() {
            for &x in &self.converted {
                for _ in 0..self.channels {
                    q.push_back(x);
                }
            }
            // A device that plays slower than we send: drop the oldest.
            let excess = q.len().saturating_sub(self.limit);
            q.drain(..excess);
        }
    }

    /// The device's own delay plus what waits in our queue.
    fn latency_us(&self) -> Option<u64> {
        let queued = self.queue.lock().map(|q| q.len()).unwrap_or(0);
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
         Choose with --mic / --speaker: default, an index above, part of a name, or a device-free choice.\n",
    );
    s
}
