//! Tests of the simulated room (`media::audio::room`).

use super::*;

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum()
}

#[test]
fn specs_parse_and_bad_ones_say_what_to_use() {
    assert_eq!("room".parse::<EchoSpec>().unwrap(), EchoSpec { delay_ms: 60 });
    assert_eq!("room:120".parse::<EchoSpec>().unwrap(), EchoSpec { delay_ms: 120 });
    for bad in ["", "hall", "room:", "room:x", "room:-5", "room:5000"] {
        let e = bad.parse::<EchoSpec>().unwrap_err().to_string();
        assert!(e.contains("room:DELAY_MS"), "{bad}: {e}");
    }
    assert_eq!(
        "fan".parse::<NoiseSpec>().unwrap(),
        NoiseSpec { kind: NoiseKind::Fan, dbfs: -20.0 }
    );
    assert_eq!(
        "keyboard:-35".parse::<NoiseSpec>().unwrap(),
        NoiseSpec { kind: NoiseKind::Keyboard, dbfs: -35.0 }
    );
    for bad in ["", "rain", "fan:", "fan:loud", "fan:10", "babble:NaN"] {
        assert!(bad.parse::<NoiseSpec>().is_err(), "{bad}");
    }
}

#[test]
fn impulse_response_has_the_rt60_gain_and_direct_sound_of_a_laptop() {
    let h = impulse_response(ROOM_SEED, 0.3, -6.0);
    let total = energy(&h);
    assert!((10.0 * total.log10() + 6.0).abs() < 0.01, "{}", 10.0 * total.log10());
    // Schroeder backward integration of the diffuse tail (after the
    // early reflections, 20 ms on): its decay from −5 dB to −25 dB,
    // extrapolated to 60 dB (T20), is the RT60. (From the start, the
    // direct sound would be most of the energy curve's first 5 dB.)
    let from = 960;
    let mut edc: Vec<f64> = Vec::with_capacity(h.len());
    let mut acc = 0.0;
    for &x in h[from..].iter().rev() {
        acc += f64::from(x) * f64::from(x);
        edc.push(acc);
    }
    edc.reverse();
    let db = |i: usize| 10.0 * (edc[i] / edc[0]).log10();
    let t5 = (0..edc.len()).find(|&i| db(i) < -5.0).unwrap();
    let t25 = (0..edc.len()).find(|&i| db(i) < -25.0).unwrap();
    let rt60 = 3.0 * (t25 - t5) as f64 / 48_000.0;
    assert!((0.25..0.35).contains(&rt60), "RT60 {rt60:.3} s");
    // A laptop's microphone is well inside the critical distance: the
    // direct sound is most of the echo, the diffuse tail (5 ms on, with
    // the later reflections) 10-16 dB under it (14 dB without them).
    let direct = f64::from(h[0]) * f64::from(h[0]);
    let drr_db = 10.0 * (direct / energy(&h[240..])).log10();
    assert!((10.0..16.0).contains(&drr_db), "direct to reverberant {drr_db:.1} dB");
    assert!((10.0 * (direct / total).log10()) > -1.5, "direct sound {direct:.3} of {total:.3}");
    // What a linear canceller with 52 ms of filter (AEC3's default)
    // can take out at best: the echo beyond 52 ms is left.
    let beyond = energy(&h[52 * 48..]);
    let bound_db = 10.0 * (total / beyond).log10();
    assert!(bound_db > 20.0, "52 ms of filter hold only {bound_db:.1} dB of the echo");
}

#[test]
fn room_echo_is_the_direct_convolution_delayed() {
    let spec = EchoSpec { delay_ms: 60 };
    let mut room = Room::new(Some(spec), None);
    let h = impulse_response(ROOM_SEED, ROOM_RT60_S, ROOM_GAIN_DB);
    let mut rng = Rng::new(7);
    let x: Vec<f32> = (0..48_000).map(|_| 0.3 * rng.gauss()).collect();
    let mut heard = Vec::new();
    // Play in 20 ms frames, capture in 10 ms frames, like the engine can.
    for (k, f) in x.chunks(960).enumerate() {
        room.play(1_000_000 + k as u64 * 960, f);
        for half in 0..2 {
            let mut mic = vec![0.0f32; 480];
            room.capture(1_000_000 + k as u64 * 960 + half * 480, &mut mic);
            heard.extend(mic);
        }
    }
    let d = 2880;
    for t in [d, d + 1, 10_000, 30_000, 47_999] {
        let want: f32 = (0..h.len().min(t - d + 1)).map(|k| h[k] * x[t - d - k]).sum();
        assert!((heard[t] - want).abs() < 1e-3, "t={t}: {} vs {want}", heard[t]);
    }
    let early = heard[..d].iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let first = heard.iter().position(|v| v.abs() > 1e-6);
    assert!(early < 1e-6, "nothing before the device delay: {early}, first at {first:?}");
}

#[test]
fn noises_have_their_level_and_character() {
    for kind in [NoiseKind::Fan, NoiseKind::Babble, NoiseKind::Keyboard] {
        let mut room = Room::new(None, Some(NoiseSpec { kind, dbfs: -20.0 }));
        let mut x = vec![0.0f32; 4 * 48_000];
        let c = room.capture(0, &mut x);
        let dbfs = 10.0 * (energy(&x) / x.len() as f64).log10();
        assert!((dbfs + 20.0).abs() < 1.5, "{kind:?}: {dbfs:.1} dBFS");
        assert!((c.near - energy(&x)).abs() < 1e-6 * c.near && c.echo == 0.0);
        // Keyboard is bursty (mostly silence), a fan is steady.
        let frames: Vec<f64> = x.chunks(480).map(energy).collect();
        let quiet = frames.iter().filter(|e| **e < 1e-6).count() as f64 / frames.len() as f64;
        match kind {
            NoiseKind::Keyboard => assert!(quiet > 0.3, "{quiet}"),
            _ => assert!(quiet < 0.05, "{kind:?} {quiet}"),
        }
    }
}
