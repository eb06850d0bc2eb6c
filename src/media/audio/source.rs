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

/// Clicks aligned to the wall clock (see [`CLICK_PERIOD_US`]): each click
/// starts at its instant when that falls inside the frame read, and every
/// click is captured exactly once, as a microphone would.
///
/// The engine reads the wall-clock window of each wake-up
/// (`start_us`), and wake-ups wander by a few ms on a busy machine: one
/// window may overlap the last (a click in both would be sent twice) or
/// leave a gap after it (a click in it would never be sent, and the bot
/// "talks" less). So a click already captured is not captured again, and a
/// click whose instant fell in a gap of at most [`CLICK_LATE_MAX_US`]
/// starts at the next read's first sample (that late); a burst cut by a
/// frame's end goes on at the start of the next read. A click missed by
/// more (the engine stalled and skipped frames) is gone, as a device ring
/// that overflowed drops what it held.
#[derive(Debug, Default, Clone)]
pub struct Clicks {
    /// The last click captured (its instant over the period).
    last: Option<u64>,
    /// µs into the burst under way, when a read ended inside one.
    burst_us: Option<f64>,
}

/// The most a click may be captured after its instant (one 20 ms frame).
pub const CLICK_LATE_MAX_US: u64 = 20_000;

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
        let sample_us = 1e6 / f64::from(SAMPLE_RATE);
        for (i, x) in out.iter_mut().enumerate() {
            let t = start_us as f64 + i as f64 * sample_us;
            if self.burst_us.is_none() {
                let k = (t / CLICK_PERIOD_US as f64).floor() as u64;
                let late = t - (k * CLICK_PERIOD_US) as f64;
                if self.last.is_none_or(|l| l < k) && late < CLICK_LATE_MAX_US as f64 {
                    self.last = Some(k);
                    // On time: the instant inside this sample period (as
                    // the wall clock has it); late: from the burst's start.
                    self.burst_us = Some(if late < sample_us { late } else { 0.0 });
                }
            }
            *x = match self.burst_us {
                Some(d) => {
                    self.burst_us = Some(d + sample_us).filter(|d| *d < CLICK_US as f64);
                    click_sample(d)
                }
                None => 0.0,
            };
        }
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
    /// wake-ups, overlapping or leaving gaps) still capture every click
    /// exactly once, each on its instant or at most the gap late; after a
    /// stall longer than a frame the missed click is gone.
    #[test]
    fn every_click_is_captured_once_however_the_reads_wander() {
        let mut c = Clicks::default();
        let mut frame = vec![0.0f32; 960];
        let (mut onsets, mut prev) = (Vec::new(), 0.0f32);
        let mut t = 3 * CLICK_PERIOD_US;
        // 10 s of frames, each read 0-9 ms late, with no catch-up.
        for k in 0..500u64 {
            let start = t + (k * 7_919) % 9_000;
            c.read(&mut frame, start);
            // Between bursts the samples are exactly 0; inside one, never.
            for (i, x) in frame.iter().enumerate() {
                if *x != 0.0 && prev == 0.0 {
                    onsets.push(start + i as u64 * 1_000_000 / 48_000);
                }
                prev = *x;
            }
            t += 20_000;
        }
        assert_eq!(onsets.len(), 21, "1.5 s to 11.5 s, two a second: {onsets:?}");
        for o in &onsets {
            assert!(o % CLICK_PERIOD_US < 9_000, "{o} is at most the gap late");
        }
        // Reading each window afresh would have missed or doubled some.
        let mut fresh = 0;
        let mut t = 3 * CLICK_PERIOD_US;
        for k in 0..500u64 {
            Clicks::default().read(&mut frame, t + (k * 7_919) % 9_000);
            fresh += usize::from(frame.first().is_some_and(|x| *x != 0.0));
            t += 20_000;
        }
        assert!(fresh > 0, "the test's wander does cut clicks");
        // A 100 ms stall: the click 90 ms before the next read is gone.
        let mut c = Clicks::default();
        c.read(&mut frame, 5 * CLICK_PERIOD_US - 30_000);
        assert!(frame.iter().all(|x| *x == 0.0));
        c.read(&mut frame, 5 * CLICK_PERIOD_US + 90_000);
        assert!(frame.iter().all(|x| *x == 0.0), "the click 90 ms before this read is gone");
    }

    #[test]
    fn missing_file_says_which() {
        let e = FileSource::open(std::path::Path::new("/nonexistent/x.wav")).err().unwrap();
        assert!(e.to_string().contains("/nonexistent/x.wav"));
    }
}
