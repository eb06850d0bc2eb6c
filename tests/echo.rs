//! "I hear myself", as issue 13 words it: bot A plays clicks and records what
//! it hears; bot B has no microphone of its own (`--mic none`) but sits in a
//! simulated room (`--echo room`: its speaker comes back into its
//! microphone, RT60 0.3 s, −6 dB, 60 ms device delay). A's recording is
//! only B's echo of A's clicks (the host's mix-minus leaves A's own voice
//! out), so its level with B's echo cancellation on and off is the
//! canceller's effect as a user hears it. B keeps its other voice settings
//! at their defaults (noise suppression and gain control on), as a user
//! does. Both cases run at once, in two meetings on one host.

mod common;

use common::start_host;
use sapora::media::audio::source::load_wav;

/// How long each bot stays, s.
const DURATION_S: u32 = 10;
/// A's recording is measured from here on, s: joining takes a moment, and
/// the canceller converges (2 s is the target).
const MEASURE_FROM_S: f64 = 5.0;

fn dbfs(x: &[f32]) -> f64 {
    let e: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    10.0 * (e / x.len().max(1) as f64).max(1e-15).log10()
}

/// The end-to-end test. It fails today: AEC3 (sonora 0.2) finds
/// the echo delay itself, with a matched filter on the signal below 2 kHz
/// (the 16 kHz band decimated by 4), and does not lock on sparse clicks:
/// `clicks` are 2.5 ms bursts at 3 kHz, outside that band, so it settles on
/// a wrong delay (200 ms here, against 60) and its suppressor misses the
/// echo. Measured: A hears −28.0 dBFS with B's AEC off and −27.1 dBFS with
/// it on (B reports ERLE −6 dB). In media::audio::apm's simulation the
/// canceller alone takes 2 dB off 3 kHz clicks and 4 dB off broadband noise
/// clicks (right delay found, still unstable), while with the true delay
/// given to it (AEC3's external-delay mode, through a patched sonora) it
/// takes about 40 dB off: the missing piece is a delay estimate that holds
/// on clicks. Speech is cancelled (tests/audio.rs,
/// `echo_cancellation_keeps_others_from_hearing_themselves`: 31.7 dB).
/// `cargo test --test echo -- --ignored --nocapture` prints the figures.
#[test]
fn clicks_played_by_a_come_back_25db_quieter_with_bs_echo_cancellation() {
    smol::block_on(async {
        let host = start_host().await;
        let dir = tempfile::tempdir().unwrap();
        let addr = host.control_addr.to_string();
        let bot = |args: String| {
            std::process::Command::new(env!("CARGO_BIN_EXE_sapora"))
                .arg("bot")
                .arg(&addr)
                .args(args.split_whitespace())
                .args(["--duration", &DURATION_S.to_string(), "--report", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("bot starts")
        };
        let mut runs = Vec::new();
        for aec in ["off", "on"] {
            let wav = dir.path().join(format!("a-{aec}.wav"));
            let room = format!("echo-{aec}");
            let a = bot(format!(
                "--name a --room {room} --mic clicks --speaker record:{}",
                wav.display()
            ));
            let b = bot(format!("--name b --room {room} --mic none --echo room --aec {aec}"));
            runs.push((aec, wav, a, b));
        }
        let mut heard = Vec::new();
        for (aec, wav, a, b) in runs {
            for (who, child) in [("a", a), ("b", b)] {
                let out = child.wait_with_output().expect("bot ends");
                let text = String::from_utf8_lossy(&out.stdout);
                let report: serde_json::Value =
                    text.lines().find_map(|l| serde_json::from_str(l).ok()).unwrap_or_else(|| {
                        panic!("{who}: {text} {}", String::from_utf8_lossy(&out.stderr))
                    });
                assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
                if who == "b" {
                    eprintln!("B with AEC {aec}: aec {}", report["aec"]);
                }
            }
            let x = load_wav(&wav).expect("A's recording is a readable WAV");
            let from = ((MEASURE_FROM_S * 48_000.0) as usize).min(x.len());
            let db = dbfs(&x[from..]);
            eprintln!("A hears its clicks at {db:.1} dBFS with B's AEC {aec}");
            heard.push(db);
        }
        assert!(heard[0] > -50.0, "without AEC the echo is loud ({:.1} dBFS)", heard[0]);
        let gain = heard[0] - heard[1];
        assert!(gain >= 25.0, "AEC makes the echo {gain:.1} dB quieter; want ≥ 25 dB");
        host.shutdown().await;
    });
}
