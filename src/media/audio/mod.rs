//! Audio: device-free and real (cpal) microphones and speakers, the Opus and
//! PCM codecs, the adaptive jitter buffer and resampling. Everything here
//! speaks mono 48 kHz `f32` frames of 20 ms (or 10 ms); devices at other
//! rates and channel counts are converted at the edge.
//!
//! The [`Source`] and [`Sink`] traits live here, below every implementation:
//! `device` (cpal) implements them without importing `source`/`sink`, and the
//! factories `source::open`/`sink::open` sit above `device`, so the files
//! form no import cycle.
//!
//! The client engine (`client::audio`) and the host mixer (`server::mixer`)
//! are built from these parts.

pub mod apm;
pub mod codec;
pub mod delay;
pub mod device;
pub mod jitter;
pub mod phase;
pub mod queue;
pub mod resample;
pub mod room;
pub mod sink;
pub mod source;

pub use codec::{Decoder, Encoder};
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
pub use phase::{ArrivalWindow, TickPhase};
pub use sink::SpeakerSpec;
pub use source::MicSpec;

/// Fills 48 kHz mono frames. `start_us` is the Unix time (µs) at which the
/// frame's first sample leaves the microphone.
pub trait Source: Send {
    /// Returns false when there is nothing to send (no microphone).
    fn read(&mut self, out: &mut [f32], start_us: u64) -> bool;
    /// Device → us delay (input buffer), µs, where the device tells it.
    fn latency_us(&self) -> Option<u64> {
        None
    }
}

/// Takes 48 kHz mono frames, one per frame period.
pub trait Sink: Send {
    /// Plays (or stores) one frame of mono 48 kHz samples, full scale ±1.0;
    /// called once per frame period, never blocks.
    fn write(&mut self, frame: &[f32]);
    /// Flushes (e.g. completes the WAV header). Called once at the end.
    fn finish(&mut self) -> Result<(), AudioError> {
        Ok(())
    }
    /// Us → loudspeaker delay (queue and output buffer), µs, where the
    /// device tells it.
    fn latency_us(&self) -> Option<u64> {
        None
    }
}

/// The one sample rate Sapora's audio runs at.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples in a 20 ms frame (the default frame).
pub const FRAME_20MS: usize = 960;
/// Samples in a 10 ms frame (selectable, for lower delay).
pub const FRAME_10MS: usize = 480;
/// Default Opus bitrate. Speech crosses two Opus generations (talker → host
/// mix → listener); at 48 kbps wideband speech is already transparent in one
/// generation and the second costs little, while a LAN has bandwidth to
/// spare. 48 kbps + packet overhead keeps each direction near 60 kbps,
/// under the 100 kbps goal even with the host's speaking levels.
pub const DEFAULT_BITRATE: u32 = 48_000;
/// `clicks` microphones click when the Unix time in microseconds is a
/// multiple of this: every clicking participant clicks at the same instants,
/// so a listener can tell each click's send time from its arrival time alone.
pub const CLICK_PERIOD_US: u64 = 500_000;

/// Frame duration in microseconds for `samples` at 48 kHz.
pub fn frame_us(samples: usize) -> u64 {
    samples as u64 * 1_000_000 / u64::from(SAMPLE_RATE)
}

#[derive(Debug, thiserror::Error)]
/// Why an audio source, sink, device or codec could not be used. Every
/// message says what to do instead (e.g. a device-free `--mic`).
pub enum AudioError {
    #[error("cannot read {path}: {why}")]
    /// A WAV file could not be read (missing, not WAV, over 30 minutes).
    File {
        /// The WAV file as given.
        path: String,
        /// The reader's (hound's) error, or the limit the file broke.
        why: String,
    },
    #[error("cannot write {path}: {why}")]
    /// A recording (`record:PATH.wav`) could not be written.
    Record {
        /// The WAV file as given.
        path: String,
        /// The writer's error.
        why: String,
    },
    #[error("no audio input device: {0} — use --mic tone, clicks, file:PATH.wav or none")]
    /// No microphone could be opened; cpal's reason, or the choice that
    /// matched nothing.
    NoInput(String),
    #[error("no audio output device: {0} — use --speaker record:FILE.wav or null")]
    /// No speaker could be opened; cpal's reason, or the choice that
    /// matched nothing.
    NoOutput(String),
    #[error("audio codec: {0}")]
    /// The Opus encoder or decoder (libopus) refused; its message.
    Codec(String),
    #[error("{0}")]
    /// A `--mic` / `--speaker` choice that does not parse; the message says
    /// which forms exist.
    Spec(String),
    #[error("audio network: {0}")]
    /// The audio socket failed (bind, send or receive).
    Net(String),
}

/// A frame below this RMS (−40 dBFS) is a pause: dropping the frame after it
/// to cut the jitter buffer's delay goes unheard ([`JitterBuffer::set_quiet`]).
pub const QUIET_FRAME_RMS: f32 = 0.01;

/// Root mean square of a frame (full scale = 1.0); 0.0 for an empty frame.
pub fn rms(frame: &[f32]) -> f32 {
    if frame.is_empty() {
        return 0.0;
    }
    (frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32).sqrt()
}
