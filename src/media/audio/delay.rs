//! Echo delay estimation: how long after it is played the render reference
//! comes back into the microphone, for the echo canceller.
//!
//! GCC-PHAT (generalised cross-correlation with phase transform; Knapp &
//! Carter, "The generalized correlation method for estimation of time
//! delay", IEEE Trans. ASSP 24(4), 1976). Both signals are decimated to
//! 16 kHz (a 3-tap average: the bots' 3 kHz clicks pass), and every
//! [`HOP_MS`] the last [`WINDOW_MS`] of microphone is cross-correlated with
//! the render reference over lags 0–[`MAX_DELAY_MS`] in one FFT of
//! [`FFT_LEN`] points. Each window's cross-spectrum is whitened (PHAT: only
//! the phase is kept, so a click, a noise burst and voiced speech weigh
//! alike and the peak is sharp), and the whitened spectra are averaged
//! exponentially ([`SMOOTHING`] per window, about half a second of memory)
//! over the windows where the reference plays, so sparse sounds add up.
//!
//! Confidence is the peak-to-sidelobe ratio (PSR) of the averaged
//! correlation: (peak − mean) / standard deviation over the lags more than
//! 2 ms from the peak. The estimate moves only on a clear, repeated peak:
//! PSR at least [`MIN_PSR`] at the same lag (±1 ms) in [`CONFIRMATIONS`]
//! windows in a row. The delay is that of the earliest strong arrival (a
//! peak at least half the highest within 30 ms before it): the direct path,
//! not a stronger reflection, so that a canceller's filter starting there
//! covers the whole echo.
//!
//! Sans-IO: time is the number of samples fed; the caller feeds the render
//! reference and the microphone in step, 10 ms each.

use std::sync::Arc;

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

use super::SAMPLE_RATE;

/// The estimator's sample rate, Hz.
const RATE: usize = 16_000;
const DECIMATION: usize = SAMPLE_RATE as usize / RATE;
/// Longest delay searched, ms.
pub const MAX_DELAY_MS: usize = 500;
/// Microphone audio per correlation window, ms.
pub const WINDOW_MS: usize = 256;
/// A window every this many ms.
pub const HOP_MS: usize = 50;
/// Exponential averaging of the whitened cross-spectra, per window.
pub const SMOOTHING: f32 = 0.85;
/// Peak-to-sidelobe ratio a peak needs to count.
pub const MIN_PSR: f32 = 12.0;
/// Windows in a row with the same clear peak before the estimate moves.
pub const CONFIRMATIONS: u32 = 3;
/// The reference must play above this in a window (mean square, −60 dBFS)
/// for the window to count.
const RENDER_FLOOR: f32 = 1e-6;
/// Windows averaged before any peak counts.
const MIN_WINDOWS: u32 = 4;
/// The band correlated: 150 Hz–7.5 kHz, in FFT bins.
const LOW_BIN: usize = 150 * FFT_LEN / RATE;
const HIGH_BIN: usize = 7_500 * FFT_LEN / RATE;

const MAX_LAG: usize = MAX_DELAY_MS * RATE / 1000;
const WINDOW: usize = WINDOW_MS * RATE / 1000;
const HOP: usize = HOP_MS * RATE / 1000;
/// FFT length: at least window + lags, so the correlation does not wrap.
pub const FFT_LEN: usize = 16_384;
const _: () = assert!(FFT_LEN >= WINDOW + MAX_LAG);
/// Samples per ms at the estimator's rate.
const PER_MS: usize = RATE / 1000;

/// A delay estimate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DelayEstimate {
    /// Render → microphone delay, ms (1/16 ms resolution).
    pub delay_ms: f32,
    /// Peak-to-sidelobe ratio of the correlation when it was last confirmed.
    pub psr: f32,
}

/// GCC-PHAT echo delay estimator (see the module docs).
pub struct DelayEstimator {
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    /// Decimated reference, the last `WINDOW + MAX_LAG` samples (oldest first).
    render: Vec<f32>,
    /// Decimated microphone, the last `WINDOW` samples.
    capture: Vec<f32>,
    /// Partial sums of the decimators.
    render_acc: (f32, usize),
    capture_acc: (f32, usize),
    since_hop: usize,
    /// Averaged whitened cross-spectrum.
    cross: Vec<Complex32>,
    /// Windows averaged so far (for the bias correction of the start).
    windows: u32,
    time_r: Vec<f32>,
    time_c: Vec<f32>,
    spec_r: Vec<Complex32>,
    spec_c: Vec<Complex32>,
    scratch: Vec<Complex32>,
    corr: Vec<f32>,
    taper: Vec<f32>,
    /// The last clear peak (lag, times in a row).
    candidate: Option<(usize, u32)>,
    estimate: Option<DelayEstimate>,
    /// PSR of the last window (0 before any).
    last_psr: f32,
}

impl Default for DelayEstimator {
    fn default() -> Self {
        Self::new()
    }
}

impl DelayEstimator {
    pub fn new() -> DelayEstimator {
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(FFT_LEN);
        let ifft = planner.plan_fft_inverse(FFT_LEN);
        let scratch_len = fft.get_scratch_len().max(ifft.get_scratch_len());
        DelayEstimator {
            render: vec![0.0; WINDOW + MAX_LAG],
            capture: vec![0.0; WINDOW],
            render_acc: (0.0, 0),
            capture_acc: (0.0, 0),
            since_hop: 0,
            cross: vec![Complex32::default(); FFT_LEN / 2 + 1],
            windows: 0,
            time_r: fft.make_input_vec(),
            time_c: fft.make_input_vec(),
            spec_r: fft.make_output_vec(),
            spec_c: fft.make_output_vec(),
            scratch: vec![Complex32::default(); scratch_len],
            corr: ifft.make_output_vec(),
            taper: (0..WINDOW)
                .map(|i| {
                    let x = std::f32::consts::TAU * (i as f32 + 0.5) / WINDOW as f32;
                    0.5 - 0.5 * x.cos()
                })
                .collect(),
            fft,
            ifft,
            candidate: None,
            estimate: None,
            last_psr: 0.0,
        }
    }

    /// The confirmed estimate, if any.
    pub fn estimate(&self) -> Option<DelayEstimate> {
        self.estimate
    }

    /// PSR of the last correlation window (0 before the first).
    pub fn last_psr(&self) -> f32 {
        self.last_psr
    }

    /// Forgets everything (a new call).
    pub fn reset(&mut self) {
        *self = DelayEstimator::new();
    }

    fn decimate(ring: &mut Vec<f32>, acc: &mut (f32, usize), x: &[f32]) -> usize {
        let mut pushed = 0;
        for &v in x {
            acc.0 += v;
            acc.1 += 1;
            if acc.1 == DECIMATION {
                ring.push(acc.0 / DECIMATION as f32);
                *acc = (0.0, 0);
                pushed += 1;
            }
        }
        pushed
    }

    fn trim(ring: &mut Vec<f32>, keep: usize) {
        let excess = ring.len().saturating_sub(keep);
        if excess > 0 {
            ring.drain(..excess);
        }
    }

    /// What the speaker plays (48 kHz mono), in step with [`Self::capture`]:
    /// call it first for the same stretch of time.
    pub fn render(&mut self, played: &[f32]) {
        Self::decimate(&mut self.render, &mut self.render_acc, played);
        Self::trim(&mut self.render, WINDOW + MAX_LAG);
    }

    /// What the microphone picked up (48 kHz mono, before any processing).
    /// Correlates a window every [`HOP_MS`]; returns the estimate.
    pub fn capture(&mut self, mic: &[f32]) -> Option<DelayEstimate> {
        let n = Self::decimate(&mut self.capture, &mut self.capture_acc, mic);
        Self::trim(&mut self.capture, WINDOW);
        self.since_hop += n;
        if self.since_hop >= HOP {
            self.since_hop -= HOP;
            self.correlate();
        }
        self.estimate
    }

    /// One window: whitened cross-spectrum into the average, then the peak.
    fn correlate(&mut self) {
        let power = self.render.iter().map(|x| x * x).sum::<f32>() / self.render.len() as f32;
        if power < RENDER_FLOOR {
            return;
        }
        // Mean removed: a DC offset would correlate the windows' edges.
        let mean_r = self.render.iter().sum::<f32>() / self.render.len() as f32;
        let mean_c = self.capture.iter().sum::<f32>() / self.capture.len() as f32;
        self.time_r.fill(0.0);
        for (t, x) in self.time_r.iter_mut().zip(&self.render) {
            *t = x - mean_r;
        }
        // The microphone window tapered (Hann): its abrupt ends would
        // correlate with the reference's at the longest lag.
        self.time_c.fill(0.0);
        for ((t, x), w) in self.time_c.iter_mut().zip(&self.capture).zip(&self.taper) {
            *t = (x - mean_c) * w;
        }
        // Errors only on wrong buffer lengths, which are fixed here.
        let _ =
            self.fft.process_with_scratch(&mut self.time_r, &mut self.spec_r, &mut self.scratch);
        let _ =
            self.fft.process_with_scratch(&mut self.time_c, &mut self.spec_c, &mut self.scratch);
        let a = SMOOTHING;
        let bins = self.cross.len();
        for k in 0..bins {
            // Only the voice band counts: below it, hum, rumble and the
            // windows' edges; above, the decimator's alias.
            let w = if (LOW_BIN..HIGH_BIN).contains(&k) {
                let x = self.spec_r[k] * self.spec_c[k].conj();
                let m = x.norm();
                if m > 1e-12 { x / m } else { Complex32::default() }
            } else {
                Complex32::default()
            };
            self.cross[k] = self.cross[k] * a + w * (1.0 - a);
        }
        self.windows += 1;
        self.spec_r.copy_from_slice(&self.cross);
        let _ = self.ifft.process_with_scratch(&mut self.spec_r, &mut self.corr, &mut self.scratch);
        // corr[m] = Σ r[n + m]·c[n]: delay d is at m = MAX_LAG − d. Keep |corr|
        // by delay in `corr` itself, reversed into place.
        let lags = &mut self.corr[..=MAX_LAG];
        lags.reverse();
        for v in lags.iter_mut() {
            *v = v.abs();
        }
        let (mut peak, mut top) = (0, 0.0f32);
        for (d, &v) in lags.iter().enumerate() {
            if v > top {
                (peak, top) = (d, v);
            }
        }
        let guard = 2 * PER_MS;
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        let mut k = 0usize;
        for (d, &v) in lags.iter().enumerate() {
            if d.abs_diff(peak) > guard {
                let v = f64::from(v);
                s += v;
                s2 += v * v;
                k += 1;
            }
        }
        let mean = s / k.max(1) as f64;
        let sd = (s2 / k.max(1) as f64 - mean * mean).max(1e-24).sqrt();
        let psr = ((f64::from(top) - mean) / sd) as f32;
        self.last_psr = psr;
        if psr < MIN_PSR || self.windows < MIN_WINDOWS {
            self.candidate = None;
            return;
        }
        // The earliest strong arrival within 30 ms before the peak.
        let lags = &self.corr[..=MAX_LAG];
        let first = (peak.saturating_sub(30 * PER_MS)..peak)
            .find(|&d| {
                let v = lags[d];
                v >= 0.5 * top && v >= lags[d.saturating_sub(1)] && v >= lags[d + 1]
            })
            .unwrap_or(peak);
        let count = match self.candidate {
            Some((lag, count)) if lag.abs_diff(first) <= PER_MS => count + 1,
            _ => 1,
        };
        self.candidate = Some((first, count));
        if count >= CONFIRMATIONS {
            let delay_ms = first as f32 / PER_MS as f32;
            let moved = self.estimate.is_none_or(|e| (e.delay_ms - delay_ms).abs() > 1.0);
            if moved {
                self.estimate = Some(DelayEstimate { delay_ms, psr });
            } else if let Some(e) = &mut self.estimate {
                e.psr = psr;
            }
        }
    }
}

#[cfg(test)]
mod tests;
