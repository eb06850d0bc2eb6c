//! Voice processing on the captured microphone frame, against what is
//! played: echo cancellation (AEC), noise suppression (NS) and automatic
//! gain control (AGC), the chain of the WebRTC audio processing module.
//!
//! Every 10 ms of 48 kHz mono `f32` (frames of 20 ms are processed as two):
//! the render reference (exactly what the speaker plays) goes to
//! [`VoiceProcessor::render`], the microphone frame to
//! [`VoiceProcessor::capture`], which runs AEC → NS → AGC in place before
//! the frame is encoded.
//!
//! The implementation is `sonora`, a pure-Rust port of WebRTC's audio
//! processing module: AEC3 (adaptive linear filter with delay estimation,
//! then a residual-echo suppressor), its noise suppressor, AGC2 (adaptive
//! digital gain and limiter) and the high-pass filter AEC3 wants. "Strong"
//! noise suppression adds RNNoise (`nnnoiseless`), a recurrent network
//! that also removes non-stationary noise (keyboards, babble).
//!
//! If the module panics, it is rebuilt and the frame passes through
//! unprocessed: audio never stops. The first panic is logged.
//!
//! [`EchoMeter`] measures echo return loss enhancement (ERLE) where the
//! echo alone is known (the simulated room of [`super::room`]).
//!
//! The echo delay comes from our own estimator ([`DelayEstimator`],
//! GCC-PHAT on the reference and the raw microphone): AEC3's estimator
//! (a matched filter below 2 kHz) locked late on speech and not at all on
//! sparse clicks. AEC3 runs on its own estimator only until there is a
//! delay to give it (the devices' delay from cpal's latencies, else our
//! confident estimate); then it is rebuilt once in its external-delay mode
//! (`EchoCanceller3Config::delay.use_external_delay_estimator`, settable
//! through the vendored sonora, vendor/sonora/SAPORA-PATCH.md) and follows
//! our estimate from then on. AEC3 takes its alignment from the render
//! frames it holds when the delay is set, so render and capture calls
//! alternate every 10 ms and the rebuild happens just before a render call:
//! the delay given is then the alignment it uses, in every run.
//!
//! Gain control runs in a module of its own after the rest, starts at 0 dB
//! and is held on frames that are leftover echo (far end active, 20 dB or
//! more taken out), so that it does not lift the echo for the others.
//!
//! Measured on the simulated room (a laptop's: the direct sound 14 dB over
//! the diffuse tail; see the tests): ERLE 37–54 dB after convergence (the
//! meter counts the echo's tail too); with the device delay known the
//! suppressor holds the echo 25 dB down from the start, and after an
//! echo-path change it is back within 1.5 s; the bots' clicks are taken
//! out by 33 dB from the first second. AEC3's linear stage alone (the
//! suppressor made transparent) takes out 22–24 dB of the far end's echo
//! after 4 s with AEC3's default 13-block (52 ms) filter, about what 52 ms
//! of this room hold (24 dB); 25 blocks reach 30–32 dB after 4 s but are
//! slower at first (16–17 dB in seconds 1–2, against 18–20), 50 blocks do
//! worse (12–19 dB). On the room used before, whose diffuse tail was 12 dB
//! over the direct sound, 13 blocks took out 6–10 dB, which is all that
//! 52 ms of such a room can hold (10 dB).
//!
//! Double talk is poor (PESQ-WB 1.24 for the near end, 1.23 at the
//! microphone; the issue aims at 3.0, which an ideal canceller leaving the
//! echo 20 dB down would just miss, 2.95; WebRTC's C++ AEC3 scores 1.08 on
//! the same files): once the near end talks AEC3's linear stage takes out
//! only about 12 dB of the echo, so its suppressor must choose between
//! echo and near end. Its gain used to climb back from −100 dB after each
//! stretch of echo alone, cutting the near end's word onsets (18 % of its
//! 20 ms frames 20 dB down or more, PESQ 1.09); it now starts from −40 dB
//! ([`SUPPRESSOR_FLOOR_FIRST_INCREASE`]: 7 %). Filter length, leakage,
//! ERLE bounds, masks, near-end detection: ±0.05 alone, up to 1.35 with
//! it but re-converging in 1.7–1.8 s (vendor/sonora/SAPORA-PATCH.md).
//! The chain delays the microphone by 14.9 ms (AEC3 8.9, noise
//! suppression 6.9; RNNoise 10 more), all of it algorithmic: frames are
//! processed in place.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::Mutex;

use nnnoiseless::DenoiseState;
use serde::{Deserialize, Serialize};
use sonora::config::{
    AdaptiveDigital, EchoCanceller, EchoCanceller3Config, GainController2, NoiseSuppression as Ns,
    NoiseSuppressionLevel,
};
use sonora::{AudioProcessing, Config, StreamConfig};

use super::delay::DelayEstimator;
use super::room::{Captured, Probe};
use super::{AudioError, FRAME_10MS, SAMPLE_RATE};

/// How hard noise is suppressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseSuppression {
    /// No noise suppression.
    Off,
    /// WebRTC's noise suppressor at its "high" level (about 18 dB on
    /// stationary noise such as fans).
    #[default]
    Normal,
    /// WebRTC's at "very high" (about 21 dB), then RNNoise, which also
    /// takes out keyboards and babble; costs more CPU and some voice quality.
    Strong,
}

impl NoiseSuppression {
    /// Every level, mildest first (the Settings picker's order).
    pub const ALL: [NoiseSuppression; 3] =
        [NoiseSuppression::Off, NoiseSuppression::Normal, NoiseSuppression::Strong];
}

impl std::fmt::Display for NoiseSuppression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoiseSuppression::Off => "off",
            NoiseSuppression::Normal => "normal",
            NoiseSuppression::Strong => "strong",
        })
    }
}

impl FromStr for NoiseSuppression {
    type Err = AudioError;
    fn from_str(s: &str) -> Result<NoiseSuppression, AudioError> {
        match s.trim() {
            "off" => Ok(NoiseSuppression::Off),
            "normal" | "on" => Ok(NoiseSuppression::Normal),
            "strong" => Ok(NoiseSuppression::Strong),
            other => Err(AudioError::Spec(format!(
                "noise suppression \"{other}\": use off, normal or strong"
            ))),
        }
    }
}

/// The three switches (`--aec`, `--noise-suppression`, `--agc`; the app's
/// Settings). All on by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VoiceSettings {
    /// Echo cancellation.
    pub aec: bool,
    /// Noise suppression level.
    pub noise_suppression: NoiseSuppression,
    /// Automatic gain control.
    pub agc: bool,
}

impl Default for VoiceSettings {
    fn default() -> VoiceSettings {
        VoiceSettings { aec: true, noise_suppression: NoiseSuppression::Normal, agc: true }
    }
}

impl VoiceSettings {
    /// No processing at all: the microphone goes to the encoder unchanged.
    pub const OFF: VoiceSettings =
        VoiceSettings { aec: false, noise_suppression: NoiseSuppression::Off, agc: false };

    fn any(&self) -> bool {
        *self != VoiceSettings::OFF
    }

    /// The module's switches: echo cancellation and noise suppression.
    /// Gain control runs in a module of its own ([`Self::agc_config`]),
    /// so that it can be held while only echo comes in.
    fn config(&self) -> Config {
        let level = match self.noise_suppression {
            NoiseSuppression::Off => None,
            NoiseSuppression::Normal => Some(NoiseSuppressionLevel::High),
            NoiseSuppression::Strong => Some(NoiseSuppressionLevel::VeryHigh),
        };
        Config {
            echo_canceller: self.aec.then(EchoCanceller::default),
            noise_suppression: level.map(|level| Ns { level, ..Default::default() }),
            ..Default::default()
        }
    }

    /// Gain control alone (AGC2's adaptive digital gain and limiter).
    fn agc_config(&self) -> Config {
        Config {
            gain_controller2: Some(GainController2 {
                // Digital gain only: we do not steer the system's mic volume.
                input_volume_controller: false,
                // Starting at 0 dB, not WebRTC's +15: a listener who has not
                // spoken sends only leftover echo, which a start gain lifts
                // for everyone (on the simulated room a +15 or +6 dB start
                // put first convergence at 5.4 s; 0 dB, 1.6 s). A quiet
                // microphone is lifted as its talker speaks, at AGC2's
                // 6 dB/s: +15 dB after 2.5 s of speech.
                adaptive_digital: Some(AdaptiveDigital {
                    initial_gain_db: 0.0,
                    ..AdaptiveDigital::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// What the processor knows about the echo, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct VoiceStats {
    /// AEC3's own ERLE estimate, dB.
    pub aec_erle_estimate_db: Option<f64>,
    /// AEC3's estimate of the echo delay (render call → echo in a capture
    /// call), ms.
    pub delay_ms: Option<i32>,
    /// Times the module panicked and was rebuilt.
    pub restarts: u32,
}

/// The processing chain; one per audio engine, used from its thread.
pub struct VoiceProcessor {
    settings: VoiceSettings,
    /// Echo cancellation and noise suppression.
    apm: Option<AudioProcessing>,
    /// Gain control.
    agc: Option<AudioProcessing>,
    /// 10 ms frames for which the far end still counts as active.
    far_hold: u32,
    rnnoise: Option<Box<DenoiseState<'static>>>,
    /// The devices' delay (cpal's latencies), ms, where they tell it.
    device_delay_ms: Option<i32>,
    /// Our estimate of the echo delay, from the signals.
    estimator: DelayEstimator,
    /// Whether AEC3 runs on our delay (its external-delay mode) rather
    /// than on its own estimator.
    external_delay: bool,
    /// AEC3 is to be rebuilt in its external-delay mode before the next
    /// render call.
    rebuild_pending: bool,
    /// The echo delay last logged, ms.
    logged_delay_ms: Option<i32>,
    input: Vec<f32>,
    scratch: Vec<f32>,
    stats: VoiceStats,
    /// A test sets this to make the next call panic inside the guard.
    #[cfg(test)]
    fail_next: bool,
}

/// The far end counts as active this long after it played above −50 dBFS,
/// 10 ms frames: the longest echo delay (500 ms) and the room's tail.
const FAR_HOLD_FRAMES: u32 = 80;

/// Taken off the echo delay given to AEC3, ms. None is needed since AEC3
/// gets its render and capture calls alternating (10 ms each) and is
/// rebuilt just before a render call: its alignment is then the delay
/// given. (With a 20 ms frame given as render, render, capture, capture,
/// and AEC3 rebuilt between captures, its alignment was a block or two off
/// in a way that depended on the run, and margins of 2-8 ms were tried
/// against it; on the bots' clicks, 0 now gives 33 dB from the first
/// second, 2 leaked a whole second, 6-16 leaked for 3 s.)
const DELAY_MARGIN_MS: i32 = 0;

/// Blocks (4 ms) before and after the linear filter's direct-path delay
/// from which AEC3 estimates the echo power while the filter is not usable
/// (`EchoModel::render_pre/post_window_size`; WebRTC's default is 1).
/// 2 and 3 took the bots' clicks out by 38 dB, 1 by 18 dB.
const ECHO_MODEL_WINDOW_BLOCKS: usize = 2;

/// The suppressor gain (amplitude) from which AEC3 lets a fully
/// suppressed band rise again, doubling per 4 ms block
/// (`Suppressor::floor_first_increase`; WebRTC's default is 1e-5, −100 dB,
/// which takes 68 ms to climb back to unity). In double talk on the laptop
/// room (the test `double_talk_keeps_the_near_end_speech`), 1e-2 (−40 dB)
/// keeps the near end's word onsets: 7 % of its 20 ms frames cut by 20 dB
/// or more instead of 18 %, PESQ-WB 1.24 instead of 1.09, with the echo in
/// the near end's pauses 21 dB down instead of 23. 1e-1 scored 1.34 but
/// slowed re-convergence after an echo-path change to 1.8 s (1e-2: 1.5 s;
/// default 0.9 s; the issue allows 2 s). See vendor/sonora/SAPORA-PATCH.md.
const SUPPRESSOR_FLOOR_FIRST_INCREASE: f32 = 0.01;

/// Which module.
#[derive(Clone, Copy)]
enum Stage {
    Main,
    Agc,
}

/// Builds the gain-control module (if on).
fn build_agc(settings: &VoiceSettings) -> Option<AudioProcessing> {
    settings.agc.then(|| {
        let stream = StreamConfig::new(SAMPLE_RATE, 1);
        AudioProcessing::builder()
            .config(settings.agc_config())
            .capture_config(stream)
            .render_config(stream)
            .build()
    })
}

/// Builds the module; with `external_delay` AEC3 aligns its reference by
/// the delay given with `set_stream_delay_ms` instead of estimating it.
fn build(settings: &VoiceSettings, external_delay: bool) -> Option<AudioProcessing> {
    (settings.aec || settings.noise_suppression != NoiseSuppression::Off).then(|| {
        let stream = StreamConfig::new(SAMPLE_RATE, 1);
        // Otherwise WebRTC's defaults: none of the tunings tried (initial
        // phase, filter length, ERLE bounds, reverb decay, suppressor masks,
        // dominant-near-end detection) met the targets; see the module docs.
        let mut aec3 = EchoCanceller3Config::default();
        aec3.delay.use_external_delay_estimator = external_delay;
        // Until the linear filter has converged (and on sounds it never
        // converges on, such as the bots' narrowband clicks), AEC3 estimates
        // the echo from the render power in a window of blocks around the
        // filter's direct-path delay: ±1 block by default. On the laptop
        // room the echo is mostly that direct path, and a 1-block window
        // missed it: every click came through 18 dB down instead of 38.
        aec3.echo_model.render_pre_window_size = ECHO_MODEL_WINDOW_BLOCKS;
        aec3.echo_model.render_post_window_size = ECHO_MODEL_WINDOW_BLOCKS;
        // After a stretch of echo alone the suppressor's gain sits near
        // zero, and AEC3 lets it rise from `floor_first_increase` (1e-5,
        // −100 dB) by at most 2× per 4 ms block: a near-end talker who
        // starts right after the far end lost the first 50–150 ms of each
        // phrase. See [`SUPPRESSOR_FLOOR_FIRST_INCREASE`].
        aec3.suppressor.floor_first_increase = SUPPRESSOR_FLOOR_FIRST_INCREASE;
        AudioProcessing::builder()
            .config(settings.config())
            .echo_canceller3_config(aec3)
            .capture_config(stream)
            .render_config(stream)
            .build()
    })
}

impl VoiceProcessor {
    /// A chain with these settings for 48 kHz mono 10 ms frames; the echo
    /// delay is estimated until the device's is given.
    pub fn new(settings: VoiceSettings) -> VoiceProcessor {
        VoiceProcessor {
            settings,
            apm: build(&settings, false),
            agc: build_agc(&settings),
            far_hold: 0,
            rnnoise: (settings.noise_suppression == NoiseSuppression::Strong)
                .then(DenoiseState::new),
            device_delay_ms: None,
            estimator: DelayEstimator::new(),
            external_delay: false,
            rebuild_pending: false,
            logged_delay_ms: None,
            input: vec![0.0; FRAME_10MS],
            scratch: vec![0.0; FRAME_10MS],
            stats: VoiceStats::default(),
            #[cfg(test)]
            fail_next: false,
        }
    }

    /// The settings the chain runs with.
    pub fn settings(&self) -> VoiceSettings {
        self.settings
    }

    /// Changes the switches; the module starts over (a moment of
    /// re-convergence), so call it only on a real change.
    pub fn set_settings(&mut self, settings: VoiceSettings) {
        if settings != self.settings {
            let device_delay_ms = self.device_delay_ms;
            *self = VoiceProcessor { device_delay_ms, ..Self::new(settings) };
        }
    }

    /// The delay the devices add between playing and capturing (output
    /// buffer + input buffer), ms, as the device timestamps tell it: the
    /// canceller's echo delay until the estimate from the signals
    /// ([`DelayEstimator`]) is confident.
    pub fn set_device_delay_ms(&mut self, ms: u32) {
        self.device_delay_ms = Some(ms.min(500) as i32);
    }

    /// The echo delay the canceller is given, ms: the confident estimate,
    /// else the devices' delay; `None` leaves AEC3 to its own estimator.
    pub fn echo_delay_ms(&self) -> Option<i32> {
        self.estimator.estimate().map(|e| e.delay_ms.round() as i32).or(self.device_delay_ms)
    }

    /// The chain's counters and AEC3's own metrics so far.
    pub fn stats(&self) -> VoiceStats {
        let mut s = self.stats;
        if let Some(apm) = &self.apm {
            let st = apm.statistics();
            s.aec_erle_estimate_db = st.echo_return_loss_enhancement;
            s.delay_ms = if self.external_delay {
                self.echo_delay_ms()
            } else {
                st.delay_ms.or(st.delay_median_ms)
            };
        }
        s
    }

    /// Runs `f` on a module; on a panic rebuilds it, logs the first
    /// time, and returns false (also when the module is off).
    fn guarded(
        &mut self,
        stage: Stage,
        f: impl FnOnce(&mut AudioProcessing, &[f32], &mut [f32]),
    ) -> bool {
        let module = match stage {
            Stage::Main => &mut self.apm,
            Stage::Agc => &mut self.agc,
        };
        let Some(apm) = module.as_mut() else { return false };
        #[cfg(test)]
        let fail = std::mem::take(&mut self.fail_next);
        let (input, scratch) = (&self.input, &mut self.scratch);
        let ok = catch_unwind(AssertUnwindSafe(|| {
            #[cfg(test)]
            if fail {
                panic!("injected voice-processing failure");
            }
            f(apm, input, scratch)
        }))
        .is_ok();
        if !ok {
            if self.stats.restarts == 0 {
                tracing::error!(
                    "voice processing failed; restarting it (audio goes on unprocessed meanwhile)"
                );
            }
            self.stats.restarts += 1;
            match stage {
                Stage::Main => self.apm = build(&self.settings, self.external_delay),
                Stage::Agc => self.agc = build_agc(&self.settings),
            }
        }
        ok
    }

    /// What the speaker plays (any multiple of 10 ms): the canceller's
    /// reference.
    pub fn render(&mut self, played: &[f32]) {
        if !self.settings.aec {
            return;
        }
        for chunk in played.chunks_exact(FRAME_10MS) {
            if std::mem::take(&mut self.rebuild_pending) {
                self.apm = build(&self.settings, true);
            }
            self.estimator.render(chunk);
            if energy(chunk) / FRAME_10MS as f64 > FAR_FLOOR {
                self.far_hold = FAR_HOLD_FRAMES;
            }
            self.input.copy_from_slice(chunk);
            self.guarded(Stage::Main, |apm, input, scratch| {
                let _ = apm.process_render_f32(&[input], &mut [scratch]);
            });
        }
    }

    /// Processes a microphone frame (any multiple of 10 ms) in place.
    pub fn capture(&mut self, frame: &mut [f32]) {
        if !self.settings.any() {
            return;
        }
        for chunk in frame.chunks_exact_mut(FRAME_10MS) {
            let mut delay = self.device_delay_ms.unwrap_or(0);
            if self.settings.aec {
                self.estimator.capture(chunk);
                if let Some(d) = self.echo_delay_ms() {
                    if self.logged_delay_ms != Some(d) {
                        tracing::info!("echo delay: {d} ms");
                        self.logged_delay_ms = Some(d);
                    }
                    if !self.external_delay {
                        // From now on AEC3 runs on our delay: it starts over
                        // once, aligned (what it had learnt was on its own
                        // guess of the delay), at the next render call, so
                        // that it sees render and capture calls alternate
                        // from its first call on.
                        self.external_delay = true;
                        self.rebuild_pending = true;
                    }
                    // AEC3 aligns to whole 4 ms blocks, rounding down; a
                    // little less keeps the direct path inside its filter
                    // when the estimate is a little late.
                    delay = (d - DELAY_MARGIN_MS).max(0);
                }
            }
            let mic = energy(chunk);
            let far_active = self.far_hold > 0;
            self.far_hold = self.far_hold.saturating_sub(1);
            self.input.copy_from_slice(chunk);
            if self.apm.is_some() {
                let ok = self.guarded(Stage::Main, |apm, input, out| {
                    // Clamping out-of-range hints is reported as an Err; harmless.
                    let _ = apm.set_stream_delay_ms(delay);
                    let _ = apm.process_capture_f32(&[input], &mut [out]);
                });
                if !ok {
                    // The input is still in `chunk`: it goes out unprocessed.
                    continue;
                }
                chunk.copy_from_slice(&self.scratch);
            }
            if let Some(rnn) = self.rnnoise.as_mut() {
                // RNNoise works on 16-bit-scaled floats, 480 samples at 48 kHz.
                for (i, x) in self.input.iter_mut().zip(chunk.iter()) {
                    *i = x * 32768.0;
                }
                rnn.process_frame(&mut self.scratch, &self.input);
                for (x, y) in chunk.iter_mut().zip(&self.scratch) {
                    *x = (y / 32768.0).clamp(-1.0, 1.0);
                }
            }
            // Gain control is held while the far end plays and the chain
            // took out nearly all (20 dB or more) of what the microphone
            // heard: that frame is leftover echo, which gain would lift for
            // everyone to hear. The frame goes on at unity gain, and AGC2
            // does not learn the echo as the talker's level. When the near
            // end talks, the canceller leaves its voice and gain control
            // runs as usual (a 3 dB threshold cost double talk: similarity
            // 0.39 instead of 0.49). Quiet frames are held too
            // ([`RESIDUAL_FLOOR`]).
            let out = energy(chunk);
            let echo_only = self.settings.aec
                && far_active
                && (out < 0.01 * mic || out / FRAME_10MS as f64 <= RESIDUAL_FLOOR);
            if self.agc.is_some() && !echo_only {
                self.input.copy_from_slice(chunk);
                if self.guarded(Stage::Agc, |apm, input, out| {
                    let _ = apm.process_capture_f32(&[input], &mut [out]);
                }) {
                    chunk.copy_from_slice(&self.scratch);
                }
            }
        }
    }

    #[cfg(test)]
    fn inject_failure(&mut self) {
        self.fail_next = true;
    }
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

/// ERLE in the field's sense, `10·log10(E[echo²] / E[residual²])`, measured
/// where the echo alone is known: over frames where echo reaches the
/// microphone (above −80 dBFS, [`ECHO_FLOOR`]) and the near end is at least
/// 30 dB below it, in windows of [`EchoMeter::WINDOW_MS`] of such audio.
/// That includes the echo's reverberant tail after the far end stopped (a
/// click's tail lasts 0.3 s after its 2.5 ms), and the frame after a
/// click's: the chain delays what it lets through by 9–15 ms, so a click's
/// direct echo that leaks comes out in the next frame. (The meter used to
/// count only frames where the far end played, and reported 40–55 dB while
/// the clicks came through whole.)
#[derive(Debug, Clone, Default)]
pub struct EchoMeter {
    /// Audio time fed so far, samples.
    at: u64,
    /// The current window: echo energy, residual energy, samples.
    window: (f64, f64, usize),
    /// Finished windows: (end time ms, echo energy, residual energy).
    windows: Vec<(f64, f64, f64)>,
    /// When echo was first present, ms.
    first_echo_ms: Option<f64>,
}

/// The far end counts as active above this (mean square, −50 dBFS).
const FAR_FLOOR: f64 = 1e-5;

/// Echo at the microphone above this (mean square, −80 dBFS) counts for
/// ERLE; below it there is nothing to hear.
const ECHO_FLOOR: f64 = 1e-8;

/// While the far end plays, a processed frame at or below this (mean
/// square, −50 dBFS) is taken as leftover echo whatever the canceller took
/// out, and gain control is held on it: in the echo's reverberant tail the
/// canceller takes out less than 20 dB of what is already quiet, and gain
/// control lifted that (the bots' click test: B's output rose from 45 dB
/// under the echo to 10–15 dB under it within seconds, about one run in
/// three). A near-end talker is louder than this.
const RESIDUAL_FLOOR: f64 = 1e-5;

/// The ERLE that counts as converged, dB (the figure).
pub const CONVERGED_ERLE_DB: f64 = 25.0;

/// The echo canceller's figures for a report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct AecReport {
    /// Measured ERLE after convergence (or over the whole run if it never
    /// converged), dB; null without a known echo (`--echo room`).
    pub erle_db: Option<f64>,
    /// AEC3's estimate of the echo delay, ms.
    pub delay_ms: Option<i32>,
    /// Audio time from the first echo until the measured ERLE stayed at or
    /// above 25 dB in every later window, ms; null if it never did.
    pub converged_after_ms: Option<f64>,
}

impl EchoMeter {
    /// Far-end-only audio per ERLE window.
    pub const WINDOW_MS: usize = 100;
    /// Windows per stretch for the convergence time: ERLE in single 100 ms
    /// windows dips at every far-end onset after a pause (the suppressor's
    /// gain takes a block or two to fall), so convergence is judged on the
    /// ERLE of 500 ms stretches.
    pub const CONVERGENCE_WINDOWS: usize = 5;

    /// Feeds one processed frame: what the room put into it (`captured`)
    /// and the processor's output.
    pub fn feed(&mut self, captured: Captured, output: &[f32]) {
        let n = captured.samples.max(1);
        let now_ms = self.at as f64 * 1000.0 / f64::from(SAMPLE_RATE);
        self.at += n as u64;
        let far_active = captured.far / n as f64 > FAR_FLOOR;
        if far_active && self.first_echo_ms.is_none() {
            self.first_echo_ms = Some(now_ms);
        }
        let echo_present = captured.echo / n as f64 > ECHO_FLOOR;
        if !echo_present || captured.near > captured.echo * 1e-3 {
            return;
        }
        let out: f64 = output.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        self.window.0 += captured.echo;
        self.window.1 += out;
        self.window.2 += n;
        if self.window.2 >= Self::WINDOW_MS * SAMPLE_RATE as usize / 1000 {
            let end = self.at as f64 * 1000.0 / f64::from(SAMPLE_RATE);
            self.windows.push((end, self.window.0, self.window.1));
            self.window = (0.0, 0.0, 0);
        }
    }

    fn erle(echo: f64, residual: f64) -> f64 {
        10.0 * (echo / residual.max(1e-12)).log10()
    }

    /// ERLE of each finished window: (end time ms, dB).
    pub fn windows(&self) -> Vec<(f64, f64)> {
        self.windows.iter().map(|&(t, e, r)| (t, Self::erle(e, r))).collect()
    }

    /// Time from the first echo to the end of the last stretch of
    /// [`EchoMeter::CONVERGENCE_WINDOWS`] windows (500 ms of far-end-only
    /// audio) whose ERLE is below `threshold_db` (0 if none was); `None` if
    /// the last stretch is below.
    pub fn converged_after_ms(&self, threshold_db: f64) -> Option<f64> {
        let k = Self::CONVERGENCE_WINDOWS.min(self.windows.len());
        if k == 0 {
            return None;
        }
        let stretch = |w: &[(f64, f64, f64)]| {
            let (e, r) = w.iter().fold((0.0, 0.0), |(e, r), &(_, we, wr)| (e + we, r + wr));
            (w[w.len() - 1].0, Self::erle(e, r))
        };
        let stretches: Vec<(f64, f64)> = self.windows.windows(k).map(stretch).collect();
        let (_, last) = *stretches.last()?;
        if last < threshold_db {
            return None;
        }
        let start = self.first_echo_ms.unwrap_or(0.0);
        let failed_until =
            stretches.iter().rev().find(|(_, db)| *db < threshold_db).map(|(t, _)| *t);
        Some(failed_until.map_or(0.0, |t| t - start))
    }

    /// ERLE over all windows ending after `from_ms` of audio (from the
    /// first echo), dB.
    pub fn erle_db_after(&self, from_ms: f64) -> Option<f64> {
        let start = self.first_echo_ms.unwrap_or(0.0);
        let (e, r) = self
            .windows
            .iter()
            .filter(|(t, _, _)| t - start > from_ms)
            .fold((0.0, 0.0), |(e, r), &(_, we, wr)| (e + we, r + wr));
        (e > 0.0).then(|| Self::erle(e, r))
    }

    /// The bot report's `aec` field: ERLE (dB) after convergence, the echo
    /// delay (ms) and when ERLE first held [`CONVERGED_ERLE_DB`] (ms).
    pub fn report(&self, stats: &VoiceStats) -> AecReport {
        let converged = self.converged_after_ms(CONVERGED_ERLE_DB);
        AecReport {
            erle_db: self.erle_db_after(converged.unwrap_or(0.0)),
            delay_ms: stats.delay_ms,
            converged_after_ms: converged,
        }
    }
}

/// Settings changes and reports between the engine's owner and its thread.
#[derive(Debug, Default)]
pub struct VoiceControl {
    pending: Mutex<Option<VoiceSettings>>,
    report: Mutex<(VoiceSettings, VoiceStats, AecReport)>,
}

impl VoiceControl {
    /// Asks the engine thread to switch at its next frame.
    pub fn set(&self, settings: VoiceSettings) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some(settings);
    }

    /// The settings in force, the processor's stats and the measured ERLE.
    pub fn report(&self) -> (VoiceSettings, VoiceStats, AecReport) {
        *self.report.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The engine thread's part: the processor, the simulated room's probe (if
/// any) and the ERLE meter.
///
/// The canceller's reference is what the device plays, in step with what
/// it records: a full-duplex device plays and records on one clock. The
/// engine hands the speaker a frame at its own pace (now and then two in a
/// row, or one late, as it follows the host's tick), so played frames wait
/// here and one frame of reference goes to the canceller per captured
/// frame, as they leave the speaker's queue. Otherwise the echo delay seen
/// by the canceller would jump whenever the engine's pace does.
pub struct Voice {
    processor: VoiceProcessor,
    probe: Option<Probe>,
    meter: EchoMeter,
    frames: u32,
    reference: std::collections::VecDeque<f32>,
    chunk: Vec<f32>,
}

/// Most reference held back, ms: the speaker queue's limit (`CpalSpeaker`).
const REFERENCE_LIMIT_MS: usize = 60;

impl Voice {
    /// A chain with these settings; `probe` is the simulated room's meter
    /// (bots with `--echo room`), `None` for a real microphone.
    pub fn new(settings: VoiceSettings, probe: Option<Probe>) -> Voice {
        Voice {
            processor: VoiceProcessor::new(settings),
            probe,
            meter: EchoMeter::default(),
            frames: 0,
            reference: std::collections::VecDeque::new(),
            chunk: Vec::new(),
        }
    }

    /// What was just handed to the speaker.
    pub fn render(&mut self, played: &[f32]) {
        self.reference.extend(played);
        let limit = REFERENCE_LIMIT_MS * SAMPLE_RATE as usize / 1000;
        let excess = self.reference.len().saturating_sub(limit);
        self.reference.drain(..excess);
    }

    /// Processes the microphone frame in place. `mic_us`/`speaker_us` are
    /// the devices' latencies where they tell them.
    pub fn capture(
        &mut self,
        frame: &mut [f32],
        control: &VoiceControl,
        mic_us: Option<u64>,
        speaker_us: Option<u64>,
    ) {
        if let Some(s) = control.pending.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.processor.set_settings(s);
            self.meter = EchoMeter::default();
        }
        if mic_us.is_some() || speaker_us.is_some() {
            let us = mic_us.unwrap_or(0) + speaker_us.unwrap_or(0);
            self.processor.set_device_delay_ms((us / 1000) as u32);
        }
        // The reference for this frame: what left the speaker meanwhile.
        let take = frame.len().min(self.reference.len());
        self.chunk.clear();
        self.chunk.extend(self.reference.drain(..take));
        self.chunk.resize(frame.len(), 0.0);
        // 10 ms of reference, then 10 ms of microphone, and so on: AEC3
        // expects its render and capture calls to alternate (a 20 ms frame
        // given as render, render, capture, capture left the bots' clicks
        // through whole, or 25-35 dB down, in some runs: its render buffer
        // was a frame off, the alignment a block or two late).
        for (r, c) in self.chunk.chunks(FRAME_10MS).zip(frame.chunks_mut(FRAME_10MS)) {
            self.processor.render(r);
            self.processor.capture(c);
        }
        if let Some(c) =
            self.probe.as_ref().and_then(|p| *p.lock().unwrap_or_else(|e| e.into_inner()))
        {
            self.meter.feed(c, frame);
        }
        // Reports a few times a second (statistics are not free).
        self.frames = self.frames.wrapping_add(1);
        if self.frames % 16 == 1 {
            let stats = self.processor.stats();
            let mut aec = self.meter.report(&stats);
            if self.probe.is_none() {
                aec.erle_db = None;
                aec.converged_after_ms = None;
            }
            *control.report.lock().unwrap_or_else(|e| e.into_inner()) =
                (self.processor.settings(), stats, aec);
        }
    }
}

#[cfg(test)]
mod tests;
