//! Voice processing cost: one 10 ms frame through the chain (render
//! reference + capture: AEC3 → noise suppression → AGC2), on speech with
//! room echo and fan noise, after the canceller has converged. The share of
//! one core is time / 10 ms; the target is under 5 % (500 µs a frame).
//!
//! Run: `cargo bench --bench apm` (or with `--profile dev`, which reuses the
//! test build: the chain's crates are built with opt-level 3 there too).
//! Measured with `--profile dev` on the 2-core dev machine (shared): 193 µs
//! a frame by default (1.9 % of a core), 126 µs AEC alone, 330 µs with
//! strong noise suppression (RNNoise), before the echo delay estimator
//! (media::audio::delay: GCC-PHAT, three 16384-point FFTs every 100 ms).
//! With it (load average 2.7): 234 µs default (2.3 % of a core), 201 µs AEC
//! alone, 332 µs strong; under a load average of 7, 614 / 307 / 443 µs.
//! Release (`cargo bench --bench apm`, load average 4): 176 µs default
//! (1.8 % of a core), 138 µs AEC alone, 217 µs strong.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sapora::media::audio::FRAME_10MS;
use sapora::media::audio::apm::{NoiseSuppression, VoiceProcessor, VoiceSettings};
use sapora::media::audio::room::{EchoSpec, NoiseKind, NoiseSpec, Room};
use sapora::media::audio::source::load_wav;

fn chain(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech.wav");
    let far = load_wav(&path).expect("assets/speech.wav");
    let near: Vec<f32> = far.iter().rev().map(|x| 0.5 * x).collect();
    let frames = far.len() / FRAME_10MS;
    let mut group = c.benchmark_group("voice chain, 10 ms frame");
    let cases = [
        ("default (aec, ns normal, agc)", VoiceSettings::default()),
        (
            "aec only",
            VoiceSettings { aec: true, noise_suppression: NoiseSuppression::Off, agc: false },
        ),
        (
            "strong ns (+ rnnoise)",
            VoiceSettings { noise_suppression: NoiseSuppression::Strong, ..Default::default() },
        ),
    ];
    for (name, settings) in cases {
        // Pre-computed microphone frames: echo of `far` plus `near` and a fan.
        let mut room = Room::new(
            Some(EchoSpec::default()),
            Some(NoiseSpec { kind: NoiseKind::Fan, dbfs: -40.0 }),
        );
        let mut mics = Vec::with_capacity(frames);
        for k in 0..frames {
            let at = (k * FRAME_10MS) as u64;
            let f = &far[k * FRAME_10MS..][..FRAME_10MS];
            room.play(at, f);
            let mut m = near[k * FRAME_10MS..][..FRAME_10MS].to_vec();
            room.capture(at, &mut m);
            mics.push((f.to_vec(), m));
        }
        let mut p = VoiceProcessor::new(settings);
        // Converge first (one pass over the speech).
        let mut out = vec![0.0f32; FRAME_10MS];
        for (f, m) in &mics {
            p.render(f);
            out.copy_from_slice(m);
            p.capture(&mut out);
        }
        let mut k = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                let (f, m) = &mics[k % frames];
                k += 1;
                p.render(black_box(f));
                out.copy_from_slice(m);
                p.capture(black_box(&mut out));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, chain);
criterion_main!(benches);
