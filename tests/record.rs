//! Recording a meeting: the room's mix as Ogg Opus, chat as WebVTT and JSONL,
//! checked with ffprobe and opusinfo (installed by scripts/setup.sh) and by
//! decoding the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sapora::client::bot::{BotOptions, run_bot};
use sapora::client::{Client, ClientConfig, Event};
use sapora::media::audio::Decoder;
use sapora::proto::{AudioCodec, ChatOutcome, Control};

fn tool(name: &str, args: &[&str], file: &Path) -> std::process::Output {
    Command::new(name)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("{name} is needed (scripts/setup.sh installs it): {e}"))
}

/// ffprobe's duration of the file, seconds; panics if ffprobe rejects it.
fn ffprobe_duration(file: &Path) -> f64 {
    let out = tool(
        "ffprobe",
        &["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"],
        file,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffprobe: {stderr}");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a duration")
}

/// opusinfo reads the whole stream and finds nothing wrong. A file cut
/// short by a kill has no end-of-stream flag: opusinfo then warns "EOS not
/// set (normal for live streams)" and exits 1; with `cut_short` that one
/// warning is allowed, and nothing else.
fn opusinfo_accepts(file: &Path, cut_short: bool) {
    let out = tool("opusinfo", &[], file);
    let text = String::from_utf8_lossy(&out.stdout);
    let all = format!("opusinfo {}: {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Opus stream 1") && text.contains("Playback length"), "{all}");
    let problems: Vec<&str> = all
        .lines()
        .filter(|l| l.contains("WARNING") || l.contains("ERROR"))
        .filter(|l| !(cut_short && l.contains("EOS not set")))
        .collect();
    assert!(problems.is_empty(), "{all}");
    if !cut_short {
        assert!(out.status.success(), "{all}");
    }
}

fn one_file(dir: &Path, ext: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert_eq!(found.len(), 1, "one .{ext} in {dir:?}: {found:?}");
    found[0].clone()
}

/// The file decoded to 48 kHz mono, pre-skip dropped.
fn decode(file: &Path) -> Vec<f32> {
    let bytes = std::fs::read(file).unwrap();
    let mut r = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let head = r.read_packet_expected().unwrap();
    let pre_skip = u16::from_le_bytes([head.data[10], head.data[11]]) as usize;
    r.read_packet_expected().unwrap(); // OpusTags
    let mut dec = Decoder::new();
    let mut pcm = Vec::new();
    let mut frame = vec![0.0f32; 960];
    while let Some(p) = r.read_packet().unwrap() {
        assert!(dec.decode(AudioCodec::Opus, &p.data, &mut frame), "packet decodes");
        pcm.extend_from_slice(&frame);
    }
    pcm.split_off(pre_skip.min(pcm.len()))
}

/// Onsets of loud bursts, in ms from the start (200 ms apart at least).
fn clicks(pcm: &[f32]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::new();
    for (i, x) in pcm.iter().enumerate() {
        let t = i as f64 / 48.0;
        if x.abs() > 0.25 && out.last().is_none_or(|l| t - l > 200.0) {
            out.push(t);
        }
    }
    out
}

/// The `ts_ms` of the recording's start line in the `.jsonl`.
fn start_ms(jsonl: &str) -> u64 {
    let first: serde_json::Value = serde_json::from_str(jsonl.lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "start", "{first}");
    first["ts_ms"].as_u64().unwrap()
}

fn talker(host: &sapora::server::RunningHost, name: &str, secs: f64) -> BotOptions {
    let mut o = BotOptions::new(host.control_addr, name);
    o.audio.mic = Some("clicks".into());
    o.duration = Some(Duration::from_secs_f64(secs));
    o
}

/// A 20 s call: two talkers take turns clicking (both on the wall clock's
/// 500 ms grid, see `media::audio::source::Clicks`); the host mutes the first half-way
/// and the second unmutes then. Every click in the recording must sit on
/// that grid (after one constant pipeline delay) within ±20 ms, in both
/// halves; the file lasts as long as the call; the chat is in the .vtt.
#[test]
fn a_recorded_call_has_both_talkers_clicks_and_the_chat_at_their_times() {
    let dir = tempfile::tempdir().unwrap();
    let call = smol::block_on(async {
        let mut opts = options();
        opts.record_dir = Some(dir.path().into());
        opts.record_from_start = true;
        let host = sapora::server::start(opts).await.unwrap();
        let began = Instant::now();
        let mut config = ClientConfig::new(host.control_addr, "ann", "");
        config.host_key = Some(host.host_key);
        let ann = Client::connect(config).await.unwrap();
        let (_stop_tx, stop) = smol::channel::bounded::<()>(1);
        // Two halves of 10 s: the 20 s call.
        let half = 10.0;
        let a = smol::spawn(run_bot(talker(&host, "talker-a", 2.0 * half), stop.clone()));
        let mut b_opts = talker(&host, "talker-b", 2.0 * half);
        b_opts.audio.unmute_after = Some(Duration::from_secs_f64(half));
        b_opts.say = Some("b says hi".into());
        let b = smol::spawn(run_bot(b_opts, stop.clone()));
        smol::Timer::after(Duration::from_millis(1200)).await;
        let id = ann.chat(None, "a <chat> line").unwrap();
        let sent_ts = expect(&ann, SEC, |e| match e {
            Event::ChatResult(r) if r.id == id => match r.outcome {
                ChatOutcome::Delivered { ts_ms, .. } => Some(ts_ms),
                _ => None,
            },
            _ => None,
        })
        .await;
        smol::Timer::at(began + Duration::from_secs_f64(half)).await;
        ann.control(Control::Mute { name: "talker-a".into(), may_unmute: false }).unwrap();
        let (ra, rb) = (a.await, b.await);
        assert!(ra.errors.is_empty() && rb.errors.is_empty(), "{:?} {:?}", ra.errors, rb.errors);
        assert!(ra.notices.iter().any(|n| n.contains("muted you")), "{:?}", ra.notices);
        host.shutdown().await;
        (began.elapsed().as_secs_f64(), sent_ts)
    });
    let (call_secs, chat_ts) = call;
    let opus = one_file(dir.path(), "opus");
    let secs = ffprobe_duration(&opus);
    opusinfo_accepts(&opus, false);
    assert!((secs - call_secs).abs() < 0.5, "recording {secs:.3} s, call {call_secs:.3} s");

    let jsonl = std::fs::read_to_string(opus.with_extension("jsonl")).unwrap();
    let start = start_ms(&jsonl);
    let pcm = decode(&opus);
    assert!((pcm.len() as f64 / 48_000.0 - secs).abs() < 0.05);
    // Each click's place on the 500 ms wall-clock grid.
    let onsets = clicks(&pcm);
    let phase = |t: f64| (start as f64 + t).rem_euclid(500.0);
    let phases: Vec<f64> = onsets.iter().map(|t| phase(*t)).collect();
    let half_ms = call_secs * 500.0;
    let first_half = onsets.iter().filter(|t| **t > 500.0 && **t < half_ms - 500.0).count();
    let second_half =
        onsets.iter().filter(|t| **t > half_ms + 500.0 && **t < 2.0 * half_ms - 500.0).count();
    assert!(first_half >= 3 && second_half >= 3, "clicks {onsets:?}");
    // The pipeline delay (client capture, network, the mixer's jitter
    // buffer) is one unknown constant: take the one that fits best, the
    // middle of the clicks' offsets from the first click's phase.
    let offsets: Vec<f64> =
        phases.iter().map(|p| (p - phases[0] + 250.0).rem_euclid(500.0) - 250.0).collect();
    let (lo, hi) = offsets.iter().fold((f64::MAX, f64::MIN), |(l, h), o| (l.min(*o), h.max(*o)));
    // Signed: the recording's clock may run a little ahead of the mix (the
    // recorder fills silence up to 100 ms behind the wall clock before the
    // room's first mix arrives), so a click can land just before the grid.
    let delay = (phases[0] + (lo + hi) / 2.0 + 250.0).rem_euclid(500.0) - 250.0;
    for (t, o) in onsets.iter().zip(&offsets) {
        let off = o - (lo + hi) / 2.0;
        assert!(off.abs() <= 20.0, "click at {t:.1} ms is {off:.1} ms off: phases {phases:?}");
    }
    assert!((-150.0..250.0).contains(&delay), "{delay:.1} ms from the grid");
    println!(
        "{} clicks, {delay:.1} ms after the grid, spread {:.1} ms, recording {secs:.3} s for a {call_secs:.3} s call",
        onsets.len(),
        hi - lo
    );

    // Chat: escaped in the .vtt at its time, raw in the .jsonl.
    let vtt = std::fs::read_to_string(opus.with_extension("vtt")).unwrap();
    assert!(vtt.starts_with("WEBVTT\n\n"), "{vtt}");
    let t = chat_ts - start;
    let cue_start = format!("00:00:{:02}.{:03} --> ", t / 1000, t % 1000);
    assert!(vtt.contains(&cue_start), "{cue_start} in {vtt}");
    assert!(vtt.contains("<v ann>a &lt;chat&gt; line\n"), "{vtt}");
    assert!(vtt.contains("<v talker-b>b says hi\n"), "{vtt}");
    assert!(jsonl.contains("\"text\":\"a <chat> line\""), "{jsonl}");
}

/// `kill -9` of a recording host: the file still plays, having lost at most
/// about the last second.
#[test]
fn a_killed_host_leaves_a_playable_recording() {
    isolate();
    let dir = tempfile::tempdir().unwrap();
    let offset = unique_offset(40);
    let mut host = Command::new(env!("CARGO_BIN_EXE_sapora"))
        .args(["host", "--headless", "--bind", "127.0.0.1", "--no-discovery", "--port-offset"])
        .arg(offset.to_string())
        .arg("--record")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", 5000 + offset).parse().unwrap();
    let talked = smol::block_on(async {
        // Wait for the host to listen.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !udp_bound(addr) {
            assert!(Instant::now() < deadline, "the host did not start");
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        let mut o = BotOptions::new(addr, "talker");
        o.audio.mic = Some("clicks".into());
        o.duration = Some(Duration::from_millis(3500));
        let (_tx, stop) = smol::channel::bounded::<()>(1);
        let t = Instant::now();
        let bot = smol::spawn(run_bot(o, stop));
        smol::Timer::after(Duration::from_millis(3000)).await;
        host.kill().unwrap(); // SIGKILL
        let _ = host.wait();
        drop(bot);
        t.elapsed().as_secs_f64()
    });
    let opus = one_file(dir.path(), "opus");
    let secs = ffprobe_duration(&opus);
    opusinfo_accepts(&opus, true);
    assert!(secs > talked - 1.6 && secs <= talked + 0.1, "kept {secs:.2} s of {talked:.2} s");
    let pcm = decode(&opus);
    assert!(clicks(&pcm).len() >= 3, "the clicks are in what was kept");
}

/// The headless host's console: `/lock` refuses a newcomer, `/record on|off`
/// records and tells everyone, `/mute NAME` reaches the member; then
/// `sapora recordings DIR` lists the recording.
#[test]
fn the_headless_hosts_console_controls_the_meeting_and_recordings_are_listed() {
    use std::io::Write;
    isolate();
    let dir = tempfile::tempdir().unwrap();
    let offset = unique_offset(41);
    let mut host = Command::new(env!("CARGO_BIN_EXE_sapora"))
        .args(["host", "--headless", "--bind", "127.0.0.1", "--no-discovery", "--port-offset"])
        .arg(offset.to_string())
        .env("XDG_DATA_HOME", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut console = host.stdin.take().unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", 5000 + offset).parse().unwrap();
    smol::block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !udp_bound(addr) {
            assert!(Instant::now() < deadline, "the host did not start");
            smol::Timer::after(Duration::from_millis(50)).await;
        }
        let ann = join(addr, "Ann Lee", "").await;
        writeln!(console, "/lock").unwrap();
        let told = |c: &Client, what: &'static str| {
            let c = c.events();
            async move {
                let deadline = Instant::now() + 5 * SEC;
                loop {
                    match recv_by(&c, deadline).await {
                        Some(Event::ControlNotice(n)) if n.text == what => return,
                        Some(_) => {}
                        None => panic!("not told \"{what}\""),
                    }
                }
            }
        };
        told(&ann, "the host locked the meeting: nobody new can join").await;
        match Client::connect(ClientConfig::new(addr, "bob", "")).await {
            Err(sapora::client::ClientError::Refused(r)) => assert!(r.reason.contains("locked")),
            other => panic!("locked, yet: {}", other.is_ok()),
        }
        writeln!(console, "/record on").unwrap();
        told(&ann, "the host started recording the meeting (sound and chat)").await;
        ann.chat(None, "on the record").unwrap();
        writeln!(console, "/mute ann lee").unwrap();
        told(&ann, "the host muted you; you may unmute yourself").await;
        smol::Timer::after(Duration::from_millis(1500)).await;
        writeln!(console, "/record off").unwrap();
        told(&ann, "the host stopped recording the meeting").await;
    });
    host.kill().unwrap();
    let _ = host.wait();
    let recordings = dir.path().join("sapora/recordings");
    let opus = one_file(&recordings, "opus");
    let secs = ffprobe_duration(&opus);
    opusinfo_accepts(&opus, false);
    assert!((1.0..4.0).contains(&secs), "{secs}");
    let out = Command::new(env!("CARGO_BIN_EXE_sapora"))
        .arg("recordings")
        .arg(&recordings)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let name = opus.file_name().unwrap().to_string_lossy().into_owned();
    assert!(out.status.success() && text.contains(&name), "{text}");
    assert!(text.contains("1 chat line(s)"), "{text}");
}
