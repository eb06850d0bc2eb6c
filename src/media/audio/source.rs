//! Microphones: `tone[:HZ]`, `clicks`, `file:PATH.wav`, `none`, or a real
//! input device (`default`, an index from `sapora devices`, or a name).

use std::f64::consts::TAU;
use std::path::PathBuf;
use std::str::FromStr;

pub use super::Source;
use super::{AudioError, CLICK_PERIOD_US, SAMPLE_RATE};

/// Where a participant's voice comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum MicSpec {
    /// The system's default input device.
    Default,
    /// An input device by index (as `sapora devices` numbers them) or name.
    Device(String),
    /// A steady sine at this frequency, -10 dBFS.
    Tone(f32),
    /// Short bursts whenever the Unix time is a multiple of
    /// [`CLICK_PERIOD_US`], for measuring mouth-to-ear delay.
    Clicks,
    /// A WAV file of any rate and channel count, played once, then silence.
    File(PathBuf),
    /// No microphone: the participant only listens.
    None,
}

impl FromStr for MicSpec {
    type Err = AudioError;
    fn from_str(s: &str) -> Result<MicSpec, AudioError> {
        let s = s.trim();
        Ok(match s {
            "" | "default" => MicSpec::Default,
            "none" | "off" => MicSpec::None,
            "tone" => MicSpec::Tone(1000.0),
            "clicks" => MicSpec::Clicks,
            _ => {
                if let Some(hz) = s.strip_prefix("tone:") {
                    let hz: f32 = hz.parse().map_err(|_| {
                        AudioError::Spec(format!("tone frequency \"{hz}\" is not a number"))
                    })?;
                    if !(20.0..=20_000.0).contains(&hz) {
                        return Err(AudioError::Spec(format!(
                            "tone frequency {hz} Hz is outside 20–20000 Hz"
                        )));
                    }
                    MicSpec::Tone(hz)
                } else if let Some(path) = s.strip_prefix("file:") {
                    MicSpec::File(PathBuf::from(path))
                } else {
                    MicSpec::Device(s.strip_prefix("device:").unwrap_or(s).to_string())
                }
            }
        })
    }
}

/// A sine tone microphone (`--mic tone[:HZ]`), peak 0.316 of full scale
/// (−10 dBFS).
pub struct Tone {
    hz: f64,
    n: u64,
}

impl Tone {
    /// A tone of `hz` Hz starting at phase 0.
    pub fn new(hz: f32) -> Tone {
        Tone { hz: f64::from(hz), n: 0 }
    }
}

impl Source for Tone {
    fn read(&mut self, out: &mut [f32], _start_us: u64) -> bool {
        for x in out.iter_mut() {
            let t = self.n as f64 / f64::from(SAMPLE_RATE);
            *x = (0.316 * (TAU * self.hz * t).sin()) as f32;
            self.n += 1;
        }
        true
    }
}

/// Length of one click burst.
pub const CLICK_US: u64 = 2_500;

/// Clicks aligned to the wall clock (see [`CLICK_PERIOD_US`]), as a
/// microphone would capture them: one contiguous stream of samples.
///
/// Each read continues where the last one ended, whatever `start_us`
/// says, as long as the two agree within [`CLICKS_RESYNC_US`]: the
/// engine's wake-ups wander by a few ms on a busy machine, and reading the
/// wall-clock window of each wake-up instead would leave gaps between
/// frames (a click that falls in one is never sent: the bot "talks" less)
/// and overlaps (a click sent twice). Further apart (the engine stalled and
/// skipped frames, or this is the first read), it starts again at
/// `start_us`, as a device's ring that overflowed drops what it held.
#[derive(Debug, Default, Clone)]
pub struct Clicks {
    /// Wall-clock time, µs, of the sample after the last one read.
    next_us: Option<f64>,
}

/// How far a read's `start_us` may stray from the end of the previous
/// read before [`Clicks`] jumps to it (one 20 ms frame).
pub const CLICKS_RESYNC_US: f64 = 20_000.0;

/// One click sample `dt_us` after the click instant (0 outside the burst):
/// a 3 kHz burst at -2 dBFS, loud and short enough to find its onset after
/// two Opus generations.
pub fn click_sample(dt_us: f64) -> f32 {
    if !(0.0..CLICK_US as f64).contains(&dt_us) {
        return 0.0;
    }
    let t = dt_us / 1e6;
    (0.8 * (TAU * 3000.0 * t + 0.5).sin()) as f32
}

impl Source for Clicks {
    fn read(&mut self, out: &mut [f32], start_us: u64) -> bool {
        let wall = start_us as f64;
        let start = match self.next_us {
            Some(next) if (next - wall).abs() <= CLICKS_RESYNC_US => next,
            _ => wall,
        };
        let period = CLICK_PERIOD_US as f64;
        let sample_us = 1e6 / f64::from(SAMPLE_RATE);
        for (i, x) in out.iter_mut().enumerate() {
            let pos = (start + i as f64 * sample_us).rem_euclid(period);
            *x = click_sample(pos);
        }
        self.next_us = Some(start + out.len() as f64 * sample_us);
        true
    }
}

/// A microphone that plays a WAV file (`--mic file:PATH.wav`), converted
/// to mono 48 kHz, then silence.
pub struct FileSource {
    samples: Vec<f32>,
    at: usize,
}

/// Refuse files longer than this (they would be held in memory whole).
const MAX_FILE_SECONDS: u64 = 30 * 60;

/// Reads a whole WAV file as mono 48 kHz.
pub fn load_wav(path: &std::path::Path) -> Result<Vec<f32>, AudioError> {
    let err = |why: String| AudioError::File { path: path.display().to_string(), why };
    let reader = hound::WavReader::open(path).map_err(|e| err(e.to_string()))?;
    let spec = reader.spec();
    if spec.channels == 0 || spec.sample_rate == 0 {
        return Err(err("the WAV header has no channels or no sample rate".into()));
    }
    let frames = u64::from(reader.duration());
    if frames > MAX_FILE_SECONDS * u64::from(spec.sample_rate) {
        return Err(err(format!("longer than {} minutes", MAX_FILE_SECONDS / 60)));
    }
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| err(e.to_string()))?,
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
                .map_err(|e| err(e.to_string()))?
        }
    };
    super::resample::to_48k_mono(&interleaved, usize::from(spec.channels), spec.sample_rate)
        .map_err(|e| err(e.to_string()))
}

impl FileSource {
    /// Loads the whole file (see [`load_wav`] for the limits and errors).
    pub fn open(path: &std::path::Path) -> Result<FileSource, AudioError> {
        Ok(FileSource { samples: load_wav(path)?, at: 0 })
    }

    /// Plays `samples` (mono 48 kHz, full scale ±1.0).
    pub fn from_samples(samples: Vec<f32>) -> FileSource {
        FileSource { samples, at: 0 }
    }
}

impl Source for FileSource {
    fn read(&mut self, out: &mut [f32], _start_us: u64) -> bool {
        let rest = &self.samples[self.at.min(self.samples.len())..];
        let n = rest.len().min(out.len());
        out[..n].copy_from_slice(&rest[..n]);
        out[n..].fill(0.0);
        self.at += n;
        true
    }
}

/// `none`: nothing to send.
pub struct Silent;

impl Source for Silent {
    fn read(&mut self, out: &mut [f32], _start_us: u64) -> bool {
        out.fill(0.0);
        false
    }
}

/// Opens a microphone. A missing device is an error whose message says what
/// to use instead; the caller decides whether the call goes on without it.
pub fn open(spec: &MicSpec) -> Result<Box<dyn Source>, AudioError> {
    Ok(match spec {
        MicSpec::Tone(hz) => Box::new(Tone::new(*hz)),
        MicSpec::Clicks => Box::new(Clicks::default()),
        MicSpec::File(path) => Box::new(FileSource::open(path)?),
        MicSpec::None => Box::new(Silent),
        MicSpec::Default => Box::new(super::device::open_input(None)?),
        MicSpec::Device(name) => Box::new(super::device::open_input(Some(name))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!("tone".parse::<MicSpec>().unwrap(), MicSpec::Tone(1000.0));
        assert_eq!("tone:440".parse::<MicSpec>().unwrap(), MicSpec::Tone(440.0));
        assert!("tone:abc".parse::<MicSpec>().is_err());
        assert!("tone:5".parse::<MicSpec>().is_err());
        assert_eq!("clicks".parse::<MicSpec>().unwrap(), MicSpec::Clicks);
        assert_eq!("none".parse::<MicSpec>().unwrap(), MicSpec::None);
        assert_eq!("file:a.wav".parse::<MicSpec>().unwrap(), MicSpec::File("a.wav".into()));
        assert_eq!("2".parse::<MicSpec>().unwrap(), MicSpec::Device("2".into()));
        assert_eq!("default".parse::<MicSpec>().unwrap(), MicSpec::Default);
    }

    #[test]
    fn clicks_start_on_the_period_boundary() {
        let mut c = Clicks::default();
        let mut frame = vec![0.0f32; 960];
        // A frame starting 10 ms before a click instant: silence, then the burst.
        let start = 7 * CLICK_PERIOD_US - 10_000;
        c.read(&mut frame, start);
        let first = frame.iter().position(|x| x.abs() > 0.1).unwrap();
        assert!((480..=482).contains(&first), "onset at sample {first}");
        assert!(frame[..480].iter().all(|x| *x == 0.0));
        // 2.5 ms later it is quiet again.
        assert!(frame[480 + 121..].iter().all(|x| *x == 0.0));
    }

    /// Reads whose wall-clock starts wander by a few ms (a busy engine's
    /// wake-ups) still capture every click exactly once; a stall longer
    /// than a frame jumps to the wall clock.
    #[test]
    fn clicks_are_one_contiguous_stream_under_wandering_reads() {
        let mut c = Clicks::default();
        let mut frame = vec![0.0f32; 960];
        let (mut onsets, mut prev) = (0, 0.0f32);
        let mut t = 3 * CLICK_PERIOD_US;
        // 10 s of frames, each read 0-9 ms late, with no catch-up.
        for k in 0..500u64 {
            let wander = (k * 7_919) % 9_000;
            c.read(&mut frame, t + wander);
            // Between bursts the samples are exactly 0; inside one, never.
            for x in &frame {
                onsets += usize::from(*x != 0.0 && prev == 0.0);
                prev = *x;
            }
            t += 20_000;
        }
        assert_eq!(onsets, 20, "two clicks a second for 10 s");
        // The wall-clock window of each read would have missed or doubled some.
        let mut stateless = 0;
        let mut t = 3 * CLICK_PERIOD_US;
        for k in 0..500u64 {
            let wander = (k * 7_919) % 9_000;
            Clicks::default().read(&mut frame, t + wander);
            stateless += usize::from(frame.iter().any(|x| x.abs() > 0.1));
            t += 20_000;
        }
        assert_ne!(stateless, 20, "the test's wander does hit the gaps");
        // A 100 ms stall: the next read starts at the wall clock again.
        let mut c = Clicks::default();
        c.read(&mut frame, 5 * CLICK_PERIOD_US - 30_000);
        c.read(&mut frame, 5 * CLICK_PERIOD_US + 90_000);
        assert!(frame.iter().all(|x| *x == 0.0), "the click 90 ms before this read is gone");
    }

    #[test]
    fn missing_file_says_which() {
        let e = FileSource::open(std::path::Path::new("/nonexistent/x.wav")).err().unwrap();
        assert!(e.to_string().contains("/nonexistent/x.wav"));
    }
}
