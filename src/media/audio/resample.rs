//! Sample-rate and channel conversion to and from mono 48 kHz (rubato).

use rubato::{FftFixedIn, Resampler};

use super::{AudioError, SAMPLE_RATE};

/// Interleaved channels to mono with [`super::device::Downmix`]: the active
/// channels, polarity-aligned, so channels never cancel.
pub fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(interleaved.len() / channels.max(1));
    super::device::Downmix::new(channels, super::device::ChannelChoice::Auto)
        .process(interleaved, &mut out);
    out
}

/// Converts a whole recording to mono 48 kHz.
pub fn to_48k_mono(
    interleaved: &[f32],
    channels: usize,
    rate: u32,
) -> Result<Vec<f32>, AudioError> {
    let mono = downmix(interleaved, channels);
    convert(&mono, rate, SAMPLE_RATE)
}

/// Converts a whole mono signal between rates, keeping its length in time
/// (the resampler's delay is removed).
pub fn convert(mono: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioError> {
    if from == to {
        return Ok(mono.to_vec());
    }
    let chunk = 1024;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, 1)
        .map_err(|e| AudioError::Codec(format!("resampler: {e}")))?;
    let delay = r.output_delay();
    let want = (mono.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let mut out = Vec::with_capacity(want + delay + chunk * 2);
    let mut pos = 0;
    let mut block = vec![0.0f32; chunk];
    // Feed zeros past the end until the delayed tail has come out.
    while out.len() < want + delay {
        let n = mono.len().saturating_sub(pos).min(chunk);
        block[..n].copy_from_slice(&mono[pos..pos + n]);
        block[n..].fill(0.0);
        pos += chunk;
        let res = r
            .process(&[&block[..]], None)
            .map_err(|e| AudioError::Codec(format!("resampler: {e}")))?;
        out.extend_from_slice(&res[0]);
    }
    Ok(out[delay..delay + want].to_vec())
}

/// Streaming conversion of a device's mono signal to or from 48 kHz, in
/// blocks of 10 ms of input.
pub struct Stream {
    inner: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    chunk: usize,
}

impl Stream {
    /// A resampler from `from` Hz to `to` Hz (pass-through when equal).
    /// Errors ([`AudioError::Spec`]) when rubato refuses the ratio (e.g. a rate
    /// of 0).
    pub fn new(from: u32, to: u32) -> Result<Stream, AudioError> {
        if from == to {
            return Ok(Stream { inner: None, pending: Vec::new(), chunk: 0 });
        }
        let chunk = (from as usize / 100).max(1);
        let inner = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 1, 1)
            .map_err(|e| AudioError::Codec(format!("resampler: {e}")))?;
        Ok(Stream { inner: Some(inner), pending: Vec::with_capacity(chunk * 4), chunk })
    }

    /// Converts what it can of `input`, appending to `out`; keeps the rest.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) {
        let Some(r) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            return;
        };
        self.pending.extend_from_slice(input);
        let mut used = 0;
        while self.pending.len() - used >= self.chunk {
            let block = &self.pending[used..used + self.chunk];
            if let Ok(res) = r.process(&[block], None) {
                out.extend_from_slice(&res[0]);
            }
            used += self.chunk;
        }
        self.pending.drain(..used);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f32, rate: u32, secs: f32) -> Vec<f32> {
        let n = (rate as f32 * secs) as usize;
        (0..n).map(|i| (std::f32::consts::TAU * hz * i as f32 / rate as f32).sin() * 0.5).collect()
    }

    #[test]
    fn converts_44k1_stereo_to_48k_mono_keeping_pitch_and_length() {
        let mono = sine(1000.0, 44_100, 1.0);
        let stereo: Vec<f32> = mono.iter().flat_map(|&x| [x, x]).collect();
        let out = to_48k_mono(&stereo, 2, 44_100).unwrap();
        assert_eq!(out.len(), 48_000);
        // Count zero crossings in the middle half: 1 kHz → 2 per ms.
        let mid = &out[12_000..36_000];
        let zc = mid.windows(2).filter(|w| (w[0] < 0.0) != (w[1] < 0.0)).count();
        assert!((995..=1005).contains(&zc), "{zc} zero crossings in 0.5 s");
    }

    #[test]
    fn stream_converts_in_blocks() {
        let mut s = Stream::new(44_100, 48_000).unwrap();
        let input = sine(500.0, 44_100, 0.5);
        let mut out = Vec::new();
        for block in input.chunks(333) {
            s.push(block, &mut out);
        }
        let want = 24_000;
        assert!(out.len().abs_diff(want) <= 480 + 1, "{} samples", out.len());
    }
}
