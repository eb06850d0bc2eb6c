//! The estimator on the simulated room (its direct path arrives exactly
//! after the room's delay), with speech, broadband noise bursts and the
//! bots' clicks, near-end noise on the microphone, and a mid-call change.

use super::*;
use crate::media::audio::FRAME_10MS as N;
use crate::media::audio::room::{
    EchoSpec, NoiseKind, NoiseSpec, ROOM_GAIN_DB, ROOM_RT60_S, ROOM_SEED, Rng, Room,
    impulse_response,
};
use crate::media::audio::source::{Clicks, Source, load_wav};

fn speech(len: usize) -> Vec<f32> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech.wav");
    let sp = load_wav(&path).expect("assets/speech.wav");
    sp.iter().copied().chain(std::iter::repeat_n(0.0, 300 * 48)).cycle().take(len).collect()
}

/// 30 ms white-noise bursts at −12 dBFS every 400 ms.
fn noise_bursts(len: usize) -> Vec<f32> {
    let mut rng = Rng::new(7);
    (0..len).map(|i| if i % (400 * 48) < 30 * 48 { 0.25 * rng.gauss() } else { 0.0 }).collect()
}

/// The bots' `--mic clicks`: a 2.5 ms 3 kHz burst every 500 ms.
fn clicks(len: usize) -> Vec<f32> {
    let mut x = vec![0.0; len];
    Clicks::default().read(&mut x, 123_456);
    x
}

/// Plays `far` through a room (fan noise on the microphone at −45 dBFS);
/// returns the estimate after each 10 ms. `change` swaps the echo path
/// (frame index, new room) mid-call.
fn run(far: &[f32], delay_ms: u32, change: Option<(usize, u32)>) -> Vec<Option<DelayEstimate>> {
    let fan = NoiseSpec { kind: NoiseKind::Fan, dbfs: -45.0 };
    let mut room = Room::new(Some(EchoSpec { delay_ms }), Some(fan));
    let mut est = DelayEstimator::new();
    let mut out = Vec::new();
    for (k, f) in far.chunks_exact(N).enumerate() {
        if let Some((at, d)) = change
            && at == k
        {
            room.change_echo_path(EchoSpec { delay_ms: d }, 0xBEEF);
        }
        let at = (k * N) as u64;
        room.play(at, f);
        est.render(f);
        let mut mic = vec![0.0; N];
        room.capture(at, &mut mic);
        out.push(est.capture(&mic));
    }
    out
}

/// First frame from which the estimate stays within 1 ms of `want`, ms.
fn locked_after_ms(track: &[Option<DelayEstimate>], want: u32) -> Option<usize> {
    let ok = |e: &Option<DelayEstimate>| e.is_some_and(|e| (e.delay_ms - want as f32).abs() <= 1.0);
    if !track.last().is_some_and(ok) {
        return None;
    }
    Some(track.iter().rposition(|e| !ok(e)).map_or(0, |i| i + 1) * 10)
}

#[test]
fn finds_the_echo_delay_of_speech_noise_bursts_and_clicks() {
    let len = 4 * 48_000;
    let signals =
        [("speech", speech(len)), ("noise bursts", noise_bursts(len)), ("clicks", clicks(len))];
    for (name, far) in &signals {
        for delay in [20, 60, 150, 300] {
            let track = run(far, delay, None);
            let locked = locked_after_ms(&track, delay);
            let last = track.last().copied().flatten();
            eprintln!("{name}, {delay} ms: locked after {locked:?} ms; {last:?}");
            // Clicks come every 500 ms: three of them.
            assert!(
                locked.is_some_and(|ms| ms <= 1500),
                "{name} at {delay} ms: locked after {locked:?} ms, estimate {last:?}"
            );
        }
    }
}

#[test]
fn follows_a_mid_call_delay_change() {
    let len = 8 * 48_000;
    for (name, far) in [("speech", speech(len)), ("clicks", clicks(len))] {
        let track = run(&far, 60, Some((400, 150)));
        let before = locked_after_ms(&track[..400], 60);
        let after = locked_after_ms(&track[400..], 150);
        eprintln!("{name}: 60 ms locked after {before:?} ms; 150 ms after the change {after:?} ms");
        assert!(before.is_some(), "{name}: {:?}", track[399]);
        assert!(after.is_some_and(|ms| ms <= 1500), "{name}: after the change {after:?} ms");
    }
}

/// Once locked, the estimate stays while the echo at its delay is still
/// there, even when an earlier arrival half as strong or more shows up
/// beside it (here a second path 22.5 ms earlier from 2 s on, at 0.7 of
/// the echo's amplitude): moving to the earliest strong arrival then would
/// leave the main echo outside a canceller's window for a while. In the
/// bots' end-to-end test such a lag (37.5 ms beside 60; once 497) came up
/// on the clicks for three windows, and the canceller, misaligned, let the
/// echo through for half a second.
#[test]
fn an_echo_still_there_keeps_its_estimate_beside_an_earlier_arrival() {
    let len = 6 * 48_000;
    let far = clicks(len);
    let mut room = Room::new(Some(EchoSpec { delay_ms: 60 }), None);
    let mut est = DelayEstimator::new();
    let early = 37_500 * 48 / 1000;
    // The room's direct path (its strongest tap).
    let h = impulse_response(ROOM_SEED, ROOM_RT60_S, ROOM_GAIN_DB);
    let direct = h.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let mut track = Vec::new();
    for (k, f) in far.chunks_exact(N).enumerate() {
        let at = k * N;
        room.play(at as u64, f);
        est.render(f);
        let mut mic = vec![0.0; N];
        room.capture(at as u64, &mut mic);
        if at >= 2 * 48_000 {
            for (i, m) in mic.iter_mut().enumerate() {
                *m += 0.7 * direct * far[at + i - early];
            }
        }
        track.push(est.capture(&mic));
    }
    let locked = locked_after_ms(&track, 60);
    let others: Vec<f32> =
        track.iter().flatten().map(|e| e.delay_ms).filter(|d| (d - 60.0).abs() > 1.0).collect();
    eprintln!("60 ms and a second path at 37.5: locked after {locked:?} ms; also {others:?}");
    assert!(locked.is_some_and(|ms| ms <= 1500), "locked after {locked:?} ms; also {others:?}");
}

#[test]
fn claims_nothing_without_an_echo() {
    // The far end plays, the microphone hears only its own talker and a fan.
    let len = 6 * 48_000;
    let far = speech(len);
    let near: Vec<f32> = far.iter().rev().copied().collect();
    let fan = NoiseSpec { kind: NoiseKind::Fan, dbfs: -30.0 };
    let mut room = Room::new(None, Some(fan));
    let mut est = DelayEstimator::new();
    let mut max_psr = 0.0f32;
    for (k, (f, n)) in far.chunks_exact(N).zip(near.chunks_exact(N)).enumerate() {
        est.render(f);
        let mut mic = n.to_vec();
        room.capture((k * N) as u64, &mut mic);
        assert_eq!(est.capture(&mic), None, "at {} ms (PSR {})", k * 10, est.last_psr());
        max_psr = max_psr.max(est.last_psr());
    }
    eprintln!("no echo: highest PSR {max_psr:.1} (a clear peak needs {MIN_PSR})");
}
