//! Speakers: `record:PATH.wav`, `null`, or a real output device.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::str::FromStr;

pub use super::Sink;
use super::{AudioError, SAMPLE_RATE};

/// Where what a participant hears goes.
#[derive(Debug, Clone, PartialEq)]
pub enum SpeakerSpec {
    /// The system's default output device.
    Default,
    /// An output device by index (as `sapora devices` numbers them) or name.
    Device(String),
    /// Writes 48 kHz mono 16-bit WAV.
    Record(PathBuf),
    /// Plays nothing (the audio is still decoded and measured).
    Null,
}

impl FromStr for SpeakerSpec {
    type Err = AudioError;
    fn from_str(s: &str) -> Result<SpeakerSpec, AudioError> {
        let s = s.trim();
        Ok(match s {
            "" | "default" => SpeakerSpec::Default,
            "null" | "none" | "off" => SpeakerSpec::Null,
            _ => match s.strip_prefix("record:") {
                Some("") => {
                    return Err(AudioError::Spec(
                        "record: needs a file name, e.g. record:out.wav".into(),
                    ));
                }
                Some(path) => SpeakerSpec::Record(PathBuf::from(path)),
                None => SpeakerSpec::Device(s.strip_prefix("device:").unwrap_or(s).to_string()),
            },
        })
    }
}

/// A speaker that discards everything (`--speaker null`).
pub struct NullSink;

impl Sink for NullSink {
    fn write(&mut self, _frame: &[f32]) {}
}

/// A speaker that records what it is given to a mono 48 kHz 16-bit WAV
/// file (`--speaker record:PATH.wav`); the header is completed by
/// [`Sink::finish`].
pub struct WavSink {
    path: PathBuf,
    writer: Option<hound::WavWriter<BufWriter<File>>>,
    error: Option<String>,
}

impl WavSink {
    /// Creates (or truncates) the WAV file; [`AudioError::Record`] if it
    /// cannot be written.
    pub fn create(path: PathBuf) -> Result<WavSink, AudioError> {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let writer = hound::WavWriter::create(&path, spec).map_err(|e| AudioError::Record {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        Ok(WavSink { path, writer: Some(writer), error: None })
    }
}

impl Sink for WavSink {
    fn write(&mut self, frame: &[f32]) {
        let Some(w) = self.writer.as_mut() else { return };
        for &x in frame {
            let v = (x.clamp(-1.0, 1.0) * 32767.0).round() as i16;
            if let Err(e) = w.write_sample(v) {
                // Keep the first error (disk full…) for finish(); stop writing.
                self.error = Some(e.to_string());
                self.writer = None;
                return;
            }
        }
    }

    fn finish(&mut self) -> Result<(), AudioError> {
        let err = |why: String| AudioError::Record { path: self.path.display().to_string(), why };
        if let Some(why) = self.error.take() {
            return Err(err(why));
        }
        match self.writer.take() {
            Some(w) => w.finalize().map_err(|e| err(e.to_string())),
            None => Ok(()),
        }
    }
}

impl Drop for WavSink {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            let _ = w.finalize();
        }
    }
}

/// Opens a speaker; a missing device is an error that says what to use instead.
pub fn open(spec: &SpeakerSpec) -> Result<Box<dyn Sink>, AudioError> {
    Ok(match spec {
        SpeakerSpec::Null => Box::new(NullSink),
        SpeakerSpec::Record(path) => Box::new(WavSink::create(path.clone())?),
        SpeakerSpec::Default => Box::new(super::device::open_output(None)?),
        SpeakerSpec::Device(name) => Box::new(super::device::open_output(Some(name))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!("null".parse::<SpeakerSpec>().unwrap(), SpeakerSpec::Null);
        assert_eq!(
            "record:x.wav".parse::<SpeakerSpec>().unwrap(),
            SpeakerSpec::Record("x.wav".into())
        );
        assert!("record:".parse::<SpeakerSpec>().is_err());
        assert_eq!("USB".parse::<SpeakerSpec>().unwrap(), SpeakerSpec::Device("USB".into()));
    }

    #[test]
    fn records_a_readable_wav() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.wav");
        let mut sink = WavSink::create(path.clone()).unwrap();
        sink.write(&[0.5; 960]);
        sink.write(&[-2.0; 960]);
        sink.finish().unwrap();
        let r = hound::WavReader::open(&path).unwrap();
        assert_eq!(r.spec().sample_rate, 48_000);
        let s: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(s.len(), 1920);
        assert_eq!(s[0], 16384);
        assert_eq!(s[1919], -32767, "clamped, not wrapped");
    }
}
