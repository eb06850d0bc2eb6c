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
//! 2 ms from the peak. The estimate is set only on a clear, repeated peak:
//! PSR at least [`MIN_PSR`] at the same lag (±1 ms) in [`CONFIRMATIONS`]
//! windows in a row; it moves to another delay after
//! [`MOVE_CONFIRMATIONS`] such windows, and only once the correlation at
//! the old delay has fallen below half the peak (the echo there is gone). The delay is that of the earliest strong arrival (a
//! peak at least half the highest within 30 ms before it): the direct path,
//! not a stronger reflection, so that a canceller's filter starting there
//! covers the whole echo.
//!
//! Sans-IO: time is the number of samples fed; the caller feeds the render
//! reference and the microphone in step, 10 ms each.

use sonora_fft::pffft::{FftType, Pffft, PffftBuffer};

use super::SAMPLE_RATE;

/// The estimator's sample rate, Hz.
const RATE: usize = 16_000;
const DECIMATION: usize = SAMPLE_RATE as usize / RATE;
/// Longest delay searched, ms.
pub const MAX_DELAY_MS: usize = 500;
/// Microphone audio per correlation window, ms.
pub const WINDOW_MS: usize = 256;
/// A window every this many ms.
pub const HOP_MS: usize = 100;
/// Exponential averaging of the whitened cross-spectra, per window.
pub const SMOOTHING: f32 = 0.72;
/// Peak-to-sidelobe ratio a peak needs to count.
pub const MIN_PSR: f32 = 12.0;
/// Windows in a row with the same clear peak before there is an estimate.
pub const CONFIRMATIONS: u32 = 3;
/// Windows in a row with the same clear peak before an estimate moves to
/// another delay: a change of the echo path lasts, while on the bots'
/// clicks under load a wrong lag (10 ms beside 60) came up for three
/// windows, and each move makes AEC3 start its filter over.
pub const MOVE_CONFIRMATIONS: u32 = 6;
/// The reference must play above this in a window (mean square, −60 dBFS)
/// for the window to count.
const RENDER_FLOOR: f32 = 1e-6;
/// Windows averaged before any peak counts.
const MIN_WINDOWS: u32 = 3;
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
    /// PFFFT (WebRTC's FFT, through sonora): compiled optimised even in
    /// dev builds, where a generic FFT crate runs unoptimised in our crate
    /// (rustfft there cost 1.9 ms per 10 ms frame).
    fft: Pffft,
    /// Decimated reference, the last `WINDOW + MAX_LAG` samples (oldest first).
    render: Vec<f32>,
    /// Decimated microphone, the last `WINDOW` samples.
    capture: Vec<f32>,
    /// Partial sums of the decimators.
    render_acc: (f32, usize),
    capture_acc: (f32, usize),
    since_hop: usize,
    /// Averaged whitened cross-spectrum, packed as PFFFT orders a real
    /// spectrum: DC, Nyquist, then (re, im) of bins 1..N/2.
    cross: PffftBuffer,
    /// Windows averaged so far (for the bias correction of the start).
    windows: u32,
    time_r: PffftBuffer,
    time_c: PffftBuffer,
    spec_r: PffftBuffer,
    spec_c: PffftBuffer,
    corr: PffftBuffer,
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
    /// An estimator that has heard nothing yet (no delay claimed).
    pub fn new() -> DelayEstimator {
        let fft = Pffft::new(FFT_LEN, FftType::Real);
        DelayEstimator {
            render: vec![0.0; WINDOW + MAX_LAG],
            capture: vec![0.0; WINDOW],
            render_acc: (0.0, 0),
            capture_acc: (0.0, 0),
            since_hop: 0,
            cross: fft.create_buffer(),
            windows: 0,
            time_r: fft.create_buffer(),
            time_c: fft.create_buffer(),
            spec_r: fft.create_buffer(),
            spec_c: fft.create_buffer(),
            corr: fft.create_buffer(),
            taper: (0..WINDOW)
                .map(|i| {
                    let x = std::f32::consts::TAU * (i as f32 + 0.5) / WINDOW as f32;
                    0.5 - 0.5 * x.cos()
                })
                .collect(),
            fft,
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
        let time_r = self.time_r.as_mut_slice();
        time_r.fill(0.0);
        for (t, x) in time_r.iter_mut().zip(&self.render) {
            *t = x - mean_r;
        }
        // The microphone window tapered (Hann): its abrupt ends would
        // correlate with the reference's at the longest lag.
        let time_c = self.time_c.as_mut_slice();
        time_c.fill(0.0);
        for ((t, x), w) in time_c.iter_mut().zip(&self.capture).zip(&self.taper) {
            *t = (x - mean_c) * w;
        }
        self.fft.forward(&self.time_r, &mut self.spec_r, true);
        self.fft.forward(&self.time_c, &mut self.spec_c, true);
        // Plain loops over floats: this runs in unoptimised (dev) builds too.
        let a = SMOOTHING;
        let (r, c) = (self.spec_r.as_slice(), self.spec_c.as_slice());
        let g = self.cross.as_mut_slice();
        // DC and Nyquist (packed first) are outside the band: they stay 0.
        for k in 1..FFT_LEN / 2 {
            let (i, j) = (2 * k, 2 * k + 1);
            g[i] *= a;
            g[j] *= a;
            // Only the voice band counts: below it, hum, rumble and the
            // windows' edges; above, the decimator's alias.
            if (LOW_BIN..HIGH_BIN).contains(&k) {
                // r · conj(c)
                let re = r[i] * c[i] + r[j] * c[j];
                let im = r[j] * c[i] - r[i] * c[j];
                let m = (re * re + im * im).sqrt();
                if m > 1e-12 {
                    g[i] += (1.0 - a) * re / m;
                    g[j] += (1.0 - a) * im / m;
                }
            }
        }
        self.windows += 1;
        self.fft.backward(&self.cross, &mut self.corr, true);
        // corr[m] = Σ r[n + m]·c[n]: delay d is at m = MAX_LAG − d. Keep |corr|
        // by delay in `corr` itself, reversed into place.
        let lags = &mut self.corr.as_mut_slice()[..=MAX_LAG];
        lags.reverse();
        let (mut peak, mut top) = (0, 0.0f32);
        let (mut s, mut s2) = (0.0f64, 0.0f64);
        for (d, x) in lags.iter_mut().enumerate() {
            let v = x.abs();
            *x = v;
            if v > top {
                (peak, top) = (d, v);
            }
            s += f64::from(v);
            s2 += f64::from(v) * f64::from(v);
        }
        // Sidelobes: all lags but those within 2 ms of the peak.
        let guard = 2 * PER_MS;
        let near = peak.saturating_sub(guard)..(peak + guard + 1).min(lags.len());
        let k = (lags.len() - near.len()).max(1) as f64;
        for &v in &lags[near] {
            s -= f64::from(v);
            s2 -= f64::from(v) * f64::from(v);
        }
        let mean = s / k;
        let sd = (s2 / k - mean * mean).max(1e-24).sqrt();
        let psr = ((f64::from(top) - mean) / sd) as f32;
        self.last_psr = psr;
        if psr < MIN_PSR || self.windows < MIN_WINDOWS {
            self.candidate = None;
            return;
        }
        // The earliest strong arrival within 30 ms before the peak.
        let lags = &self.corr.as_slice()[..=MAX_LAG];
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
        let needed = if self.estimate.is_some() { MOVE_CONFIRMATIONS } else { CONFIRMATIONS };
        if count >= CONFIRMATIONS {
            let delay_ms = first as f32 / PER_MS as f32;
            let moved = self.estimate.is_none_or(|e| (e.delay_ms - delay_ms).abs() > 1.0);
            // An estimate stays while its lag still carries a strong
            // arrival (half the peak or more): the echo is still there. On
            // a periodic sound (the bots' clicks, every 500 ms) or with a
            // reflection, another lag can briefly come out as the earliest
            // strong arrival, and following it would misalign the canceller
            // for a while (the bots' click test failed one run in three so:
            // 60 → 37.5 → 60 ms, 60 → 497 → 60 ms). After a real change of
            // the echo path the old lag fades out of the average within a
            // few windows (`SMOOTHING`), and the estimate moves.
            let still_there = self.estimate.is_some_and(|e| {
                let at = (e.delay_ms * PER_MS as f32).round() as usize;
                let around = at.saturating_sub(PER_MS)..(at + PER_MS + 1).min(lags.len());
                lags[around].iter().any(|&v| v >= 0.5 * top)
            });
            if moved && !still_there && count >= needed {
                self.estimate = Some(DelayEstimate { delay_ms, psr });
            } else if let Some(e) = &mut self.estimate {
                e.psr = psr;
            }
        }
    }
}

#[cfg(test)]
mod tests;
