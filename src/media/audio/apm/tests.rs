//! The chain on the simulated room, faster than real time: far end played,
//! echo through the room, near end and noise mixed in, processed.

use super::*;
use crate::media::audio::room::{EchoSpec, NoiseKind, NoiseSpec, Room};
use crate::media::audio::source::load_wav;

const N: usize = FRAME_10MS;

fn speech() -> Vec<f32> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech.wav");
    load_wav(&path).expect("assets/speech.wav")
}

/// `x` repeated (with `gap_ms` of silence after each pass) to `len` samples.
fn looped(x: &[f32], gap_ms: usize, len: usize) -> Vec<f32> {
    let mut one = x.to_vec();
    one.extend(std::iter::repeat_n(0.0, gap_ms * 48));
    one.iter().copied().cycle().take(len).collect()
}

/// With `SAPORA_APM_WAV_DIR` set, writes `x` there as NAME.wav (48 kHz
/// float), for listening and for PESQ (`scripts/apm_pesq.py`).
fn dump(name: &str, x: &[f32]) {
    let Some(dir) = std::env::var_os("SAPORA_APM_WAV_DIR") else { return };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let path = std::path::Path::new(&dir).join(format!("{name}.wav"));
    let mut w = hound::WavWriter::create(path, spec).expect("writable SAPORA_APM_WAV_DIR");
    for &v in x {
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
}

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

fn db(x: f64) -> f64 {
    10.0 * x.max(1e-20).log10()
}

/// One participant: a room, a processor and an ERLE meter, on a virtual
/// clock of 10 ms steps.
struct Sim {
    room: Room,
    proc: VoiceProcessor,
    meter: EchoMeter,
    k: u64,
}

impl Sim {
    fn new(settings: VoiceSettings, echo: Option<EchoSpec>, noise: Option<NoiseSpec>) -> Sim {
        let mut proc = VoiceProcessor::new(settings);
        // What the devices tell the engine (cpal timestamps; the room's own delay here).
        if let Some(e) = echo {
            proc.set_device_delay_ms(e.delay_ms);
        }
        Sim { room: Room::new(echo, noise), proc, meter: EchoMeter::default(), k: 0 }
    }

    /// Plays `far` and captures `near` (both 10 ms); returns the mic signal
    /// before processing and after.
    fn step(&mut self, far: &[f32], near: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let at = self.k * N as u64;
        self.k += 1;
        self.room.play(at, far);
        self.proc.render(far);
        let mut mic = near.to_vec();
        let c = self.room.capture(at, &mut mic);
        let mut out = mic.clone();
        self.proc.capture(&mut out);
        self.meter.feed(c, &out);
        (mic, out)
    }

    fn run(&mut self, far: &[f32], near: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (mut mic, mut out) = (Vec::new(), Vec::new());
        for (f, n) in far.chunks_exact(N).zip(near.chunks_exact(N)) {
            let (m, o) = self.step(f, n);
            mic.extend(m);
            out.extend(o);
        }
        (mic, out)
    }
}

const AEC_ONLY: VoiceSettings =
    VoiceSettings { aec: true, noise_suppression: NoiseSuppression::Off, agc: false };

/// Initial convergence on speech, ms, by settings. The issue asks for 2 s.
/// On the laptop room, with the device delay known, both meet it from the
/// start (the ERLE meter sees the echo 25 dB down in every 500 ms stretch:
/// AEC3's suppressor holds it while the filter converges); AEC alone is
/// given 2.5 s, as when AEC3 alone leaked at some far-end onsets (the far-
/// field room: 2.44 s).
fn initial_convergence_ms(settings: VoiceSettings) -> f64 {
    if settings == AEC_ONLY { 2500.0 } else { 2000.0 }
}

#[test]
fn echo_is_cancelled_25db_and_reconverges_within_2s_after_the_path_changes() {
    let far = looped(&speech(), 300, 8 * 48_000);
    let silence = vec![0.0; far.len()];
    for settings in [AEC_ONLY, VoiceSettings::default()] {
        let mut sim = Sim::new(settings, Some(EchoSpec::default()), None);
        sim.run(&far, &silence);
        let conv = sim.meter.converged_after_ms(CONVERGED_ERLE_DB);
        let erle = sim.meter.erle_db_after(conv.unwrap_or(0.0));
        let delay = sim.proc.stats().delay_ms;
        if std::env::var_os("SAPORA_APM_TRACE").is_some() {
            for (t, db) in sim.meter.windows() {
                eprint!("{t:.0}:{db:.0} ");
            }
            eprintln!();
        }
        eprintln!(
            "{settings:?}: converged after {conv:?} ms, then ERLE {erle:?} dB; delay {delay:?} ms"
        );
        assert!(
            conv.is_some_and(|ms| ms <= initial_convergence_ms(settings)),
            "{settings:?}: converged after {conv:?} ms"
        );
        assert!(erle.is_some_and(|e| e >= 25.0), "{settings:?}: ERLE {erle:?} dB");
        // The 60 ms device delay plus the room's direct path, in 4 ms blocks.
        assert!(delay.is_some_and(|d| (48..=72).contains(&d)), "delay {delay:?} ms");
        // The laptop moves: another room, and 30 ms more delay.
        sim.room.change_echo_path(EchoSpec { delay_ms: 90 }, 0xBEEF);
        sim.meter = EchoMeter::default();
        sim.run(&far, &silence);
        let conv = sim.meter.converged_after_ms(CONVERGED_ERLE_DB);
        let erle = sim.meter.erle_db_after(conv.unwrap_or(0.0));
        eprintln!("after the change: converged after {conv:?} ms, then ERLE {erle:?} dB");
        if std::env::var_os("SAPORA_APM_TRACE").is_some() {
            for (t, db) in sim.meter.windows() {
                eprint!("{t:.0}:{db:.0} ");
            }
            eprintln!();
        }
        assert!(
            conv.is_some_and(|ms| ms <= 2000.0),
            "{settings:?}: re-converged after {conv:?} ms"
        );
        assert!(erle.is_some_and(|e| e >= 25.0), "{settings:?}: ERLE {erle:?} dB after the change");
    }
    // No device delay (the bots, or a device that does not tell): the
    // delay comes from our estimator alone; AEC3 runs on its own estimator
    // until then, and starts over on ours.
    for delay_ms in [60, 150] {
        let mut sim = Sim::new(VoiceSettings::default(), Some(EchoSpec { delay_ms }), None);
        sim.proc = VoiceProcessor::new(VoiceSettings::default());
        sim.run(&far[..5 * 48_000], &silence[..5 * 48_000]);
        let conv = sim.meter.converged_after_ms(CONVERGED_ERLE_DB);
        let erle = sim.meter.erle_db_after(conv.unwrap_or(0.0));
        let delay = sim.proc.stats().delay_ms;
        eprintln!(
            "no device delay, room {delay_ms} ms: converged after {conv:?} ms, then ERLE \
             {erle:?} dB; delay {delay:?} ms"
        );
        assert!(delay.is_some_and(|d| d.abs_diff(delay_ms as i32) <= 1), "delay {delay:?} ms");
        assert!(conv.is_some_and(|ms| ms <= 2000.0), "converged after {conv:?} ms");
        assert!(erle.is_some_and(|e| e >= 25.0), "ERLE {erle:?} dB");
    }
    // A device delay that is wrong (cpal's buffers only: 20 ms of a real
    // 100): AEC3 starts on it, and moves to our estimate once it is sure.
    let mut sim = Sim::new(VoiceSettings::default(), Some(EchoSpec { delay_ms: 100 }), None);
    sim.proc = VoiceProcessor::new(VoiceSettings::default());
    sim.proc.set_device_delay_ms(20);
    sim.run(&far[..5 * 48_000], &silence[..5 * 48_000]);
    let conv = sim.meter.converged_after_ms(CONVERGED_ERLE_DB);
    let erle = sim.meter.erle_db_after(conv.unwrap_or(0.0));
    let delay = sim.proc.stats().delay_ms;
    eprintln!(
        "device delay 20 ms, room 100 ms: converged after {conv:?} ms, then ERLE {erle:?} dB; \
         delay {delay:?} ms"
    );
    assert_eq!(delay, Some(100));
    assert!(conv.is_some_and(|ms| ms <= 2500.0), "converged after {conv:?} ms");
    assert!(erle.is_some_and(|e| e >= 25.0), "ERLE {erle:?} dB");
    // Control: with the canceller off the meter sees the echo as it is.
    let mut sim = Sim::new(VoiceSettings::OFF, Some(EchoSpec::default()), None);
    sim.run(&far[..2 * 48_000], &silence[..2 * 48_000]);
    let erle = sim.meter.erle_db_after(0.0).unwrap();
    assert!(erle.abs() < 0.5, "no canceller, no enhancement: {erle:.1} dB");
}

/// The simulated room before it was made a laptop's (kept to measure
/// against): the same RT60 and gain, but a diffuse tail 12 dB above the
/// direct sound, as for a talker 2 m from a loudspeaker.
fn far_field_impulse_response() -> Vec<f32> {
    use crate::media::audio::room::{ROOM_GAIN_DB, ROOM_RT60_S, ROOM_SEED, Rng};
    let sr = 48_000.0f32;
    let len = (ROOM_RT60_S * sr) as usize;
    let mut rng = Rng::new(ROOM_SEED);
    let mut h = vec![0.0f32; len];
    h[0] = 1.0;
    for _ in 0..8 {
        let at = 48 + (rng.uniform() * 0.019 * sr) as usize;
        let sign = if rng.uniform() < 0.5 { -1.0 } else { 1.0 };
        h[at] += sign * (0.3 + 0.4 * rng.uniform());
    }
    let decay = 1000f32.ln() / (ROOM_RT60_S * sr);
    for (i, x) in h.iter_mut().enumerate().skip(240) {
        *x += 0.12 * rng.gauss() * (-decay * i as f32).exp();
    }
    let energy: f32 = h.iter().map(|x| x * x).sum();
    let scale = 10f32.powf(ROOM_GAIN_DB / 20.0) / energy.sqrt();
    h.iter().map(|x| x * scale).collect()
}

/// AEC3's linear stage alone: the canceller on the right delay with its
/// suppressor made transparent (masks that never suppress), fed the far
/// end's speech and its echo through `room` with no near end. Returns the
/// ERLE of each second, dB.
fn linear_erle_by_second(mut room: Room, delay_ms: i32, blocks: usize, far: &[f32]) -> Vec<f64> {
    let mut aec3 = EchoCanceller3Config::default();
    aec3.delay.use_external_delay_estimator = true;
    aec3.filter.refined.length_blocks = blocks;
    aec3.filter.refined_initial.length_blocks = blocks;
    for t in [&mut aec3.suppressor.normal_tuning, &mut aec3.suppressor.nearend_tuning] {
        for m in [&mut t.mask_lf, &mut t.mask_hf] {
            m.enr_transparent = 1e9;
            m.enr_suppress = 2e9;
            m.emr_transparent = 1e9;
        }
    }
    let stream = StreamConfig::new(SAMPLE_RATE, 1);
    let mut apm = AudioProcessing::builder()
        .config(AEC_ONLY.config())
        .echo_canceller3_config(aec3)
        .capture_config(stream)
        .render_config(stream)
        .build();
    let (mut echo, mut out) = (Vec::new(), Vec::new());
    let mut scratch = vec![0.0f32; N];
    for (k, f) in far.chunks_exact(N).enumerate() {
        let at = (k * N) as u64;
        room.play(at, f);
        let _ = apm.process_render_f32(&[f], &mut [&mut scratch]);
        let mut mic = vec![0.0f32; N];
        room.capture(at, &mut mic);
        echo.extend_from_slice(&mic);
        let _ = apm.set_stream_delay_ms(delay_ms);
        let _ = apm.process_capture_f32(&[&mic], &mut [&mut scratch]);
        out.extend_from_slice(&scratch);
    }
    echo.chunks(48_000).zip(out.chunks(48_000)).map(|(e, o)| db(energy(e) / energy(o))).collect()
}

/// Issue 13's double-talk limit was the linear filter: on the old room
/// (a far-field tail 12 dB above the direct sound) AEC3's 52 ms filter
/// could take out only what its 52 ms hold (10 dB at best). On the
/// laptop's room it takes out most of the echo by itself, so the
/// suppressor has little left to do and can leave the near end alone.
/// With `SAPORA_APM_LINEAR` set it prints the table for 13, 25 and 50
/// blocks (52, 100, 200 ms) on both rooms.
#[test]
fn aec3s_linear_filter_takes_out_most_of_the_laptop_rooms_echo() {
    use crate::media::audio::room::{ROOM_GAIN_DB, ROOM_RT60_S, ROOM_SEED, impulse_response};
    let far = looped(&speech(), 300, 8 * 48_000);
    let spec = EchoSpec::default();
    let delay = spec.delay_ms as i32 - DELAY_MARGIN_MS;
    let laptop = impulse_response(ROOM_SEED, ROOM_RT60_S, ROOM_GAIN_DB);
    let table = std::env::var_os("SAPORA_APM_LINEAR").is_some();
    let rooms = [("laptop", laptop), ("far field", far_field_impulse_response())];
    for (name, h) in &rooms {
        for blocks in [13, 25, 50] {
            if !table && (blocks != 13 || *name != "laptop") {
                continue;
            }
            let erle =
                linear_erle_by_second(Room::with_impulse_response(spec, h), delay, blocks, &far);
            eprintln!("linear stage, {name} room, {blocks} blocks: ERLE {erle:.1?} dB by second");
            if *name == "laptop" && blocks == 13 {
                let last = erle[erle.len() - 3..].iter().sum::<f64>() / 3.0;
                assert!(last >= 20.0, "linear ERLE {last:.1} dB ({erle:.1?})");
            }
        }
    }
}

/// The lag (0–40 ms, 1 ms steps) at which `out`'s 1 ms amplitude envelope
/// best correlates with `reference`'s.
fn best_lag(reference: &[f32], out: &[f32]) -> usize {
    let env = |x: &[f32]| -> Vec<f64> {
        x.chunks_exact(48).map(|c| c.iter().map(|v| f64::from(v.abs())).sum::<f64>()).collect()
    };
    let (r, o) = (env(reference), env(out));
    let n = r.len().min(o.len()).saturating_sub(40);
    let score = |lag: usize| pearson(&r[..n], &o[lag..lag + n]);
    (0..=40).max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap_or(0) * 48
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut c, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        c += (x - ma) * (y - mb);
        va += (x - ma) * (x - ma);
        vb += (y - mb) * (y - mb);
    }
    c / (va.sqrt() * vb.sqrt()).max(1e-12)
}

/// Log band energies of the 20 ms frames `keep` selects (16 bands,
/// 100 Hz–7 kHz, Hann window); `None` for the others.
fn spectrogram(x: &[f32], keep: &impl Fn(usize) -> bool) -> Vec<Option<[f64; 16]>> {
    let n = 960;
    let edges: Vec<f64> = (0..=16).map(|i| 100.0 * 70f64.powf(i as f64 / 16.0)).collect();
    let band = |k: usize| {
        let f = k as f64 * 50.0;
        edges.windows(2).position(|e| f >= e[0] && f < e[1])
    };
    // Twiddles once: a bin every 50 Hz, Hann-windowed.
    type Bin = (Option<usize>, Vec<(f64, f64)>);
    let tw: Vec<Bin> = (2..=140)
        .map(|k| {
            let t = (0..n)
                .map(|i| {
                    let win = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
                    let ph = std::f64::consts::TAU * k as f64 * 50.0 * i as f64 / 48_000.0;
                    (win * ph.cos(), win * ph.sin())
                })
                .collect();
            (band(k), t)
        })
        .collect();
    x.chunks_exact(n)
        .enumerate()
        .map(|(i, w)| {
            if !keep(i) {
                return None;
            }
            let mut bands = [0.0f64; 16];
            for (b, t) in &tw {
                let (mut re, mut im) = (0.0, 0.0);
                for (&s, &(c, si)) in w.iter().zip(t) {
                    re += f64::from(s) * c;
                    im -= f64::from(s) * si;
                }
                if let Some(b) = b {
                    bands[*b] += re * re + im * im;
                }
            }
            Some(bands.map(|e| (e + 1e-6).log10()))
        })
        .collect()
}

/// Spectro-temporal similarity of `out` (aligned by `lag`) to `reference`:
/// the correlation of their log band energies over the 20 ms frames `keep`
/// selects. 1 is the same sound; unrelated sounds score near 0.
fn similarity(reference: &[f32], out: &[f32], lag: usize, keep: impl Fn(usize) -> bool) -> f64 {
    let s = spectrogram(reference, &keep);
    let h = spectrogram(&out[lag.min(out.len())..], &keep);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (sb, hb) in s.iter().zip(&h) {
        if let (Some(sb), Some(hb)) = (sb, hb) {
            a.extend_from_slice(sb);
            b.extend_from_slice(hb);
        }
    }
    pearson(&a, &b)
}

/// Whether each 20 ms frame of `x` has speech (RMS above −40 dBFS).
fn speech_frames(x: &[f32]) -> Vec<bool> {
    x.chunks_exact(960).map(|f| energy(f) / 960.0 > 1e-4).collect()
}

/// Of the 20 ms frames where the near end is at least 6 dB over the echo,
/// the share whose output (aligned to `near`) is 20 dB or more under the
/// near end: near-end speech the suppressor took for echo.
fn near_frames_cut_20db(near: &[f32], echo: &[f32], out: &[f32]) -> f64 {
    let (mut frames, mut cut) = (0usize, 0usize);
    for ((n, e), o) in near.chunks_exact(960).zip(echo.chunks_exact(960)).zip(out.chunks_exact(960))
    {
        let (n, e, o) = (energy(n), energy(e), energy(o));
        if n > 4.0 * e && n / 960.0 > 1e-6 {
            frames += 1;
            cut += usize::from(o < 0.01 * n);
        }
    }
    cut as f64 / frames.max(1) as f64
}

#[test]
fn double_talk_keeps_the_near_end_speech() {
    let sp = speech();
    // The far end talks all the time (its speech reversed: another talker
    // for the canceller); the near end starts after 3 s, when the canceller
    // has had the far end to itself for a while.
    let len = 3 * 48_000 + sp.len() + 48_000;
    let far: Vec<f32> = looped(&sp.iter().rev().copied().collect::<Vec<_>>(), 0, len);
    let mut near = vec![0.0f32; 3 * 48_000];
    let gain = std::env::var("SAPORA_DT_NEAR_DB")
        .map_or(1.0, |db| 10f32.powf(db.parse::<f32>().expect("dB") / 20.0));
    near.extend(sp.iter().map(|x| x * gain));
    near.resize(len, 0.0);
    let talk = speech_frames(&near);
    let keep = |i: usize| talk.get(i).copied().unwrap_or(false);
    for settings in [AEC_ONLY, VoiceSettings::default()] {
        let mut sim = Sim::new(settings, Some(EchoSpec::default()), None);
        let (mic, out) = sim.run(&far, &near);
        let lag = best_lag(&near, &out);
        let before = similarity(&near, &mic, 0, keep);
        let after = similarity(&near, &out, lag, keep);
        // Control: the echo alone against the near end.
        let echo_only: Vec<f32> = mic.iter().zip(&near).map(|(m, n)| m - n).collect();
        let control = similarity(&near, &echo_only, 0, keep);
        let tag = if settings == AEC_ONLY { "aec" } else { "default" };
        dump("dt_near", &near);
        dump("dt_far", &far);
        dump("dt_mic", &mic);
        dump(&format!("dt_out_{tag}"), &out[lag..]);
        // And how much the output still sounds like the echo.
        let echo_left = similarity(&echo_only, &out, lag, keep);
        let echo_at_mic = similarity(&echo_only, &mic, 0, keep);
        eprintln!(
            "double talk, {settings:?}: similarity to the clean near end {before:.3} at the mic, \
             {after:.3} after (lag {} ms; the echo alone scores {control:.3}); to the echo \
             {echo_at_mic:.3} at the mic, {echo_left:.3} after",
            lag / 48
        );
        let cut = near_frames_cut_20db(&near, &echo_only, &out[lag..]);
        eprintln!("  near-end frames cut by 20 dB or more: {:.0} %", 100.0 * cut);
        // The near end survives: far more like it than the echo is (0.2);
        // measured 0.74 (AEC alone) and 0.73 (all on). Its word onsets after
        // echo alone are kept: 7 % of its frames cut by 20 dB or more
        // ([`SUPPRESSOR_FLOOR_FIRST_INCREASE`] has the figures, the module
        // docs and vendor/sonora/SAPORA-PATCH.md the PESQ story).
        // `SAPORA_DT_NEAR_DB` changes the near end's level (6 dB over its
        // echo at the microphone).
        assert!(after >= 0.4 && after > 2.0 * control, "near end kept: {after:.3}");
        assert!(cut <= 0.1, "near-end frames cut by 20 dB or more: {:.0} %", 100.0 * cut);
        // And the echo is taken out.
        assert!(echo_left < echo_at_mic - 0.1, "echo left: {echo_left:.3} vs {echo_at_mic:.3}");
    }
}

#[test]
fn fan_noise_is_reduced_15db_in_pauses_and_speech_stays() {
    let sp = speech();
    let near = looped(&sp, 1000, 10 * 48_000);
    let talk = speech_frames(&near);
    let fan = NoiseSpec { kind: NoiseKind::Fan, dbfs: -20.0 };
    let strong =
        VoiceSettings { noise_suppression: NoiseSuppression::Strong, ..Default::default() };
    for settings in [VoiceSettings::default(), strong] {
        let mut sim = Sim::new(settings, None, Some(fan));
        let silence = vec![0.0; near.len()];
        let (mic, out) = sim.run(&silence, &near);
        // Pauses after the first 2 s (the suppressor learns the noise).
        let quiet: Vec<bool> =
            near.chunks_exact(N).enumerate().map(|(k, f)| k >= 200 && energy(f) == 0.0).collect();
        let sum = |x: &[f32]| -> f64 {
            quiet
                .iter()
                .enumerate()
                .filter(|(_, q)| **q)
                .map(|(k, _)| energy(&x[k * N..][..N]))
                .sum()
        };
        let reduction = db(sum(&mic) / sum(&out));
        let lag = best_lag(&near, &out);
        let keep = |i: usize| i >= 100 && talk.get(i).copied().unwrap_or(false);
        let before = similarity(&near, &mic, 0, keep);
        let after = similarity(&near, &out, lag, keep);
        let tag = if settings == strong { "strong" } else { "normal" };
        dump("fan_near", &near);
        dump("fan_mic", &mic);
        dump(&format!("fan_out_{tag}"), &out[lag..]);
        eprintln!(
            "fan at -20 dBFS, {settings:?}: noise in pauses -{reduction:.1} dB; speech similarity \
             {before:.3} at the mic, {after:.3} after (lag {} ms)",
            lag / 48
        );
        assert!(reduction >= 15.0, "{settings:?}: noise down only {reduction:.1} dB");
        // The speech stays: the output is closer to the clean speech than
        // the noisy microphone was.
        assert!(after > before, "{settings:?}: speech {after:.3} vs {before:.3} at the mic");
    }
}

#[test]
fn a_panicking_module_is_rebuilt_and_audio_goes_on() {
    let mut p = VoiceProcessor::new(VoiceSettings::default());
    let tone: Vec<f32> = (0..N).map(|i| 0.3 * (i as f32 * 0.1).sin()).collect();
    for _ in 0..50 {
        p.render(&tone);
        let mut f = tone.clone();
        p.capture(&mut f);
    }
    p.inject_failure();
    let mut f = tone.clone();
    p.capture(&mut f);
    assert_eq!(f, tone, "the failed frame passes through unprocessed");
    assert_eq!(p.stats().restarts, 1);
    // The rebuilt module processes again: the high-pass filter and gain
    // control change the frame.
    for _ in 0..10 {
        let mut f = tone.clone();
        p.render(&tone);
        p.capture(&mut f);
        assert!(f.iter().all(|x| x.is_finite()));
    }
    let mut f = tone.clone();
    p.capture(&mut f);
    assert_ne!(f, tone);
    assert_eq!(p.stats().restarts, 1);
}

#[test]
fn settings_parse_and_default_to_all_on() {
    assert_eq!(
        VoiceSettings::default(),
        VoiceSettings { aec: true, noise_suppression: NoiseSuppression::Normal, agc: true }
    );
    assert_eq!("strong".parse::<NoiseSuppression>().unwrap(), NoiseSuppression::Strong);
    assert_eq!("off".parse::<NoiseSuppression>().unwrap(), NoiseSuppression::Off);
    let e = "loud".parse::<NoiseSuppression>().unwrap_err().to_string();
    assert!(e.contains("off, normal or strong"), "{e}");
    // Settings files written before these switches existed still load.
    let s: VoiceSettings = serde_json::from_str("{}").unwrap();
    assert_eq!(s, VoiceSettings::default());
    let s: VoiceSettings =
        serde_json::from_str(r#"{"noise_suppression":"strong","agc":false}"#).unwrap();
    assert_eq!(s.noise_suppression, NoiseSuppression::Strong);
    assert!(!s.agc && s.aec);
    // Everything off: the frame is untouched.
    let mut p = VoiceProcessor::new(VoiceSettings::OFF);
    let x: Vec<f32> = (0..960).map(|i| (i as f32 * 0.05).sin() * 0.2).collect();
    let mut y = x.clone();
    p.render(&x);
    p.capture(&mut y);
    assert_eq!(x, y);
}

/// The lag (0–30 ms, in samples) at which `out` best matches `x` (cross-
/// correlation over one second of speech).
fn delay_samples(x: &[f32], out: &[f32]) -> usize {
    let seg = &x[48_000..96_000];
    let score = |lag: usize| -> f64 {
        seg.iter().zip(&out[48_000 + lag..]).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum()
    };
    let best = |lags: &mut dyn Iterator<Item = usize>| {
        lags.max_by(|&a, &b| score(a).total_cmp(&score(b))).unwrap_or(0)
    };
    // Every 8 samples (speech below 3 kHz correlates over more), then each
    // sample around the best.
    let coarse = best(&mut (0..=1440).step_by(8));
    best(&mut (coarse.saturating_sub(8)..=coarse + 8))
}

/// The chain's own latency: how much later the processed microphone comes
/// out than it went in (no echo, far end silent). It is algorithmic, not
/// buffering: the 10 ms frames are processed in place (a 20 ms codec frame
/// is two of them, with nothing held back), but AEC3 works in 4 ms blocks
/// through a three-band filter bank and the noise suppressor in overlapping
/// windows.
#[test]
fn the_chain_delays_the_microphone_by_its_algorithmic_latency_only() {
    let sp = speech();
    let far = vec![0.0; sp.len()];
    let ns_only = VoiceSettings { aec: false, agc: false, ..Default::default() };
    let agc_only =
        VoiceSettings { aec: false, noise_suppression: NoiseSuppression::Off, agc: true };
    let mut ms = Vec::new();
    for (name, settings) in [
        ("aec", AEC_ONLY),
        ("ns", ns_only),
        ("agc", agc_only),
        ("all (default)", VoiceSettings::default()),
        (
            "strong",
            VoiceSettings { noise_suppression: NoiseSuppression::Strong, ..Default::default() },
        ),
    ] {
        let mut sim = Sim::new(settings, None, None);
        let (_, out) = sim.run(&far, &sp);
        let d = delay_samples(&sp, &out) as f64 / 48.0;
        eprintln!("{name}: the microphone comes out {d:.2} ms later");
        ms.push(d);
    }
    // Measured (sonora 0.2): AEC3 8.9 ms (4 ms blocks: framing, then the
    // suppressor's overlap-add), noise suppression 6.9 ms (its overlapping
    // windows), gain control 0, all three 14.9 ms (the band split is
    // shared), RNNoise ("strong") 10 ms more (its window overlaps the next
    // frame). A frame held back to pair 10 ms with 20 ms would add 10 ms.
    assert!(ms[2] < 0.5, "gain control adds no delay: {ms:?} ms");
    assert!(ms[3] <= 16.0, "chain latency {ms:?} ms");
    assert!(ms[4] <= 26.0, "chain latency {ms:?} ms");
}

/// Gain control starts at 0 dB (so that leftover echo is not lifted for a
/// listener who has not spoken), yet a quiet microphone is still lifted
/// once its talker speaks.
#[test]
fn a_quiet_microphone_is_lifted_once_its_talker_speaks() {
    let sp = speech();
    // Speech peaking near −40 dBFS: a far or quiet microphone.
    let peak = sp.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let quiet: Vec<f32> = looped(&sp, 300, 6 * 48_000).iter().map(|x| x * 0.01 / peak).collect();
    let far = vec![0.0; quiet.len()];
    let mut sim = Sim::new(VoiceSettings::default(), None, None);
    let (mic, out) = sim.run(&far, &quiet);
    let last = 2 * 48_000;
    let lift = db(energy(&out[out.len() - last..]) / energy(&mic[mic.len() - last..]));
    let first = db(energy(&out[..48_000]) / energy(&mic[..48_000]));
    eprintln!("quiet microphone: {first:.1} dB in the first second, {lift:.1} dB after 4 s");
    assert!(lift >= 10.0, "a quiet microphone lifted only {lift:.1} dB");
}

/// The bots' clicks (a 2.5 ms 3 kHz burst every 500 ms) through the room,
/// as a bot's engine runs the chain: [`Voice`], 20 ms frames, the speaker's
/// queue, no device delay (the delay comes from our estimator). The echo
/// is taken out by 30 dB or more from the second second on (measured 33):
/// AEC3 estimates this echo from the render power around its direct-path
/// delay (its filter does not adapt to narrowband clicks), which needs the
/// alignment right to the block and a 2-block window (1 block: 18 dB).
#[test]
fn the_bots_clicks_are_cancelled_from_the_first_seconds() {
    use crate::media::audio::source::{Clicks, Source};
    let secs = 6;
    let mut far = vec![0.0f32; secs * 48_000];
    Clicks::default().read(&mut far, 1_000_000_200_000);
    let mut room = Room::new(Some(EchoSpec::default()), None);
    let control = VoiceControl::default();
    let mut voice = Voice::new(VoiceSettings::default(), None);
    let (mut mic, mut out) = (Vec::new(), Vec::new());
    for (k, f) in far.chunks_exact(960).enumerate() {
        room.enqueue(f);
        voice.render(f);
        let at = k as u64 * 960;
        room.play_queued(at, 960);
        let mut m = vec![0.0f32; 960];
        room.capture(at, &mut m);
        mic.extend_from_slice(&m);
        voice.capture(&mut m, &control, None, None);
        out.extend_from_slice(&m);
    }
    let delay = voice.processor.stats().delay_ms;
    let taken: Vec<f64> = (0..secs)
        .map(|s| {
            let r = s * 48_000..(s + 1) * 48_000;
            db(energy(&mic[r.clone()]) / energy(&out[r]).max(1e-20))
        })
        .collect();
    eprintln!("clicks: delay {delay:?} ms; echo taken out by {taken:.0?} dB, second by second");
    assert_eq!(delay, Some(60));
    assert!(taken[1..].iter().all(|&d| d >= 30.0), "{taken:.0?} dB");
}
