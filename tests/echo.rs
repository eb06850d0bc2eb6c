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
const DURATION_S: u32 = 14;
/// The last this many seconds of A's recording are measured, s: joining
/// takes a moment (seconds on a loaded machine, so the recording's start
/// varies), and B's canceller needs about a second of clicks to find the
/// delay and converge. Measured from 4 s of 10 s runs instead, 4 runs in 6
/// failed under load: leaks of 100–300 ms early in the run, while the two
/// bots and the host start up.
const MEASURE_LAST_S: f64 = 5.0;
/// A's recording must be at least this long for the measured part to
/// start after B's canceller has had time to converge, s.
const MIN_RECORDING_S: f64 = 9.0;

fn dbfs(x: &[f32]) -> f64 {
    let e: f64 = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
    10.0 * (e / x.len().max(1) as f64).max(1e-15).log10()
}

/// The end-to-end test. B has no device delay to go by (no real
/// device), so its canceller finds the delay itself: the GCC-PHAT estimator
/// of `media::audio::delay` locks on the clicks within a second (AEC3's own
/// estimator, a matched filter below 2 kHz, never did on these 3 kHz
/// bursts), and AEC3 runs on it. B's gain control starts at 0 dB and is held
/// on leftover echo. With AEC off the echo comes back at about −41 dBFS;
/// with it on, A hears nothing (−150 dBFS) or 26–40 dB less.
///
/// It used to fail about one run in three (a 14 s run measured from 9 s).
/// Fixed since: a run where the bots joined late left A's recording shorter
/// than 9 s, so both cases measured nothing (−150 dBFS); now the last 5 s
/// are measured, and a short recording fails with its own message. And two
/// causes found in B's traces: the delay estimate moved
/// for a few hundred ms (60 → 37.5, 497 or 10 ms and back) while the echo at
/// 60 ms was still there, each move making AEC3 start its filter over
/// (the estimator now keeps an estimate while its echo is there and moves
/// only on a lag that holds for 600 ms); and gain control lifted the
/// leftover echo of the clicks' reverberant tail, where the canceller takes
/// out less than the 20 dB that held it (now also held on any frame at or
/// below −50 dBFS while the far end plays).
/// Still ignored: 20 runs in 26 passed on the shared 2-core machine (load
/// average 4–18; before the fixes about 2 in 3). A then hears 24–111 dB
/// less. Of the failures, five (15–21 dB) were single leaks of 100–300 ms
/// that B's own ERLE meter, which looks only at frames where the room's
/// direct echo arrives, did not see. A per-frame trace of B in a failing
/// run: the frame with a click's direct echo comes out cancelled (below
/// −60 dBFS), but the 6–8 frames of its reverberant tail after it come out
/// at the echo's own level (−37 to −58 dBFS, nothing taken out), for one
/// or two clicks in the run; the cause is not found yet (the delay estimate
/// stayed at 60 ms). In one run (load average 4) B's canceller took out
/// nothing all run long (B's report: ERLE 3.6 dB on the right delay, 60
/// ms), not understood either. Run it with
/// `cargo test --test echo -- --ignored --nocapture`.
#[test]
#[ignore = "issue 13: passes ~3 runs in 4 (rare echo-tail leaks, once no cancellation); see the doc"]
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
                let report = common::bot_report(who, &out);
                if who == "b" {
                    eprintln!("B with AEC {aec}: aec {}", report["aec"]);
                    for l in String::from_utf8_lossy(&out.stderr).lines() {
                        if l.contains("echo delay") || l.contains("voice processing") {
                            eprintln!("  B: {l}");
                        }
                    }
                }
            }
            let x = load_wav(&wav).expect("A's recording is a readable WAV");
            let secs = x.len() as f64 / 48_000.0;
            assert!(
                secs >= MIN_RECORDING_S,
                "A recorded only {secs:.1} s of {DURATION_S} (the bots joined late)"
            );
            let from = x.len() - (MEASURE_LAST_S * 48_000.0) as usize;
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
