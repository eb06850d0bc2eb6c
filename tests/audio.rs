//! Audio end to end on loopback: real host (mixer), real client engines,
//! real Opus, real QUIC datagrams (or the TLS tunnel's with
//! SAPORA_TRANSPORT=tls), through the impairment shim (in front of the
//! host's QUIC port) where the issue asks for loss and jitter. Every test is
//! bounded in time.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::shim::{Impairment, Shim};
use common::{SEC, join, start_host};
use sapora::client::audio::{AudioConfig, AudioEngine};
use sapora::client::media::MediaLink;
use sapora::media::audio::apm::VoiceSettings;
use sapora::media::audio::{MicSpec, SpeakerSpec, source::load_wav};
use sapora::proto::{AudioCodec, AudioUp};

/// These tests run in real time on a small machine: one at a time, so their
/// threads do not starve each other.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// 10% loss and a ±20 ms jitter (20 ms base delay plus 0–40 ms) each way,
/// with a few duplicates.
fn lossy(seed: u64) -> Impairment {
    Impairment {
        loss: 0.10,
        delay: Duration::from_millis(20),
        jitter: Duration::from_millis(40),
        duplicate: 0.02,
        seed,
    }
}

/// Joins through the impairment shim (see [`common::join_through`]).
async fn join_through(shim: &Shim, name: &str, room: &str) -> sapora::client::Client {
    common::join_through(shim.addr, name, room).await
}

fn engine(client: &sapora::client::Client, mic: MicSpec, speaker: SpeakerSpec) -> AudioEngine {
    let mut cfg = AudioConfig::new(mic, speaker);
    // These tests measure the transport with test tones, which noise
    // suppression (on by default) rightly takes for steady noise.
    cfg.voice = VoiceSettings::OFF;
    AudioEngine::start(MediaLink::of(client).unwrap(), cfg).expect("device-free audio starts")
}

fn read_wav(path: &Path) -> Vec<f32> {
    load_wav(path).expect("recording is a readable WAV")
}

/// Tone power at `hz` and everything else, over windows of 100 ms: returns
/// (signal-to-noise ratio in dB over all windows, number of windows).
fn tone_snr_db(x: &[f32], hz: f64) -> f64 {
    let n = x.len().min(4800);
    let (mut tone, mut noise) = (0.0f64, 0.0f64);
    for w in x.chunks_exact(n) {
        let (mut a, mut b, mut e) = (0.0f64, 0.0f64, 0.0f64);
        for (i, &s) in w.iter().enumerate() {
            let ph = std::f64::consts::TAU * hz * i as f64 / 48_000.0;
            a += f64::from(s) * ph.cos();
            b += f64::from(s) * ph.sin();
            e += f64::from(s) * f64::from(s);
        }
        // Least-squares fit of a sine at `hz` in this window.
        let p = 2.0 * (a * a + b * b) / n as f64;
        tone += p;
        noise += (e - p).max(0.0);
    }
    10.0 * (tone / noise.max(1e-12)).log10()
}

/// The median over 20 ms frames of [`tone_snr_db`]: robust to the odd
/// concealed frame when a busy test machine delays a thread.
fn median_frame_snr_db(x: &[f32], hz: f64) -> f64 {
    let mut snrs: Vec<f64> = x.chunks_exact(960).map(|w| tone_snr_db(w, hz)).collect();
    snrs.sort_by(f64::total_cmp);
    snrs[snrs.len() / 2]
}

/// The strongest frequency between 100 Hz and 4 kHz, in 5 Hz steps: power
/// at each frequency (Goertzel) summed over 100 ms windows.
fn frequency(x: &[f32]) -> f64 {
    let mut best = (0.0, 0.0);
    for step in 20..=800 {
        let hz = f64::from(step) * 5.0;
        let coeff = 2.0 * (std::f64::consts::TAU * hz / 48_000.0).cos();
        let mut power = 0.0;
        for w in x.chunks_exact(4800) {
            let (mut s1, mut s2) = (0.0f64, 0.0f64);
            for &v in w {
                let s0 = f64::from(v) + coeff * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            power += s1 * s1 + s2 * s2 - coeff * s1 * s2;
        }
        if power > best.1 {
            best = (hz, power);
        }
    }
    best.0
}

#[test]
fn a_tone_through_10pct_loss_and_jitter_is_still_a_1khz_tone() {
    if common::skip_over_tls("a_tone_through_10pct_loss_and_jitter_is_still_a_1khz_tone") {
        return;
    }
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let shim = Shim::start(host.control_addr, lossy(7));
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("heard.wav");
        let a = join_through(&shim, "talker", "r").await;
        let b = join_through(&shim, "listener", "r").await;
        let ea = engine(&a, MicSpec::Tone(1000.0), SpeakerSpec::Null);
        let eb = engine(&b, MicSpec::None, SpeakerSpec::Record(wav.clone()));
        smol::Timer::after(5 * SEC).await;
        let sa = ea.stats();
        let sb = eb.stats();
        ea.stop().unwrap();
        eb.stop().unwrap();
        let dropped = shim.stats().dropped.load(std::sync::atomic::Ordering::Relaxed);
        assert!(dropped > 20, "the shim dropped packets ({dropped})");

        // Audio kept flowing: ~250 frames in 5 s; 10% lost each way.
        assert!(sa.packets_sent >= 230, "{sa:?}");
        assert!(sb.packets_received >= 180, "{sb:?}");
        // The losses reached the listener and were filled: rebuilt from
        // the redundant copies (which a call sends from its start, until a
        // report proves the link clean) or concealed.
        let filled = sb.frames_concealed + sb.frames_recovered;
        assert!(filled >= 5, "losses were filled: {sb:?}");
        let x = read_wav(&wav);
        // Skip the first second (join, jitter buffers filling) and the end.
        let body = &x[48_000..x.len() - 9_600];
        // Copies and concealment filled the gaps: about one frame in five
        // was lost (here or at the host), yet hardly any is silent.
        let frames: Vec<&[f32]> = body.chunks_exact(960).collect();
        let silent = frames.iter().filter(|w| sapora::media::audio::rms(w) < 0.01).count();
        assert!(silent * 100 <= frames.len() * 3, "{silent} of {} frames silent", frames.len());
        let f = frequency(body);
        assert_eq!(f, 1000.0, "the strongest frequency heard");
        // Tone-to-rest ratio per 20 ms frame: clean frames read 25–45 dB,
        // concealed ones less; noise or another pitch reads below 0 dB.
        let median = median_frame_snr_db(body, 1000.0);
        let whole = tone_snr_db(body, 1000.0);
        eprintln!(
            "tone: {f:.1} Hz, SNR median {median:.1} dB per frame, {whole:.1} dB overall; receiver {sb:?}"
        );
        assert!(median > 5.0, "median SNR {median:.1} dB");
        host.shutdown().await;
    });
}

/// Log band energies of 20 ms frames (16 bands, 100 Hz–7 kHz), from 48 kHz.
fn spectrogram(x: &[f32]) -> Vec<[f64; 16]> {
    let n = 960;
    let edges: Vec<f64> = (0..=16).map(|i| 100.0 * (70.0f64).powf(i as f64 / 16.0)).collect();
    x.chunks_exact(n)
        .map(|w| {
            let mut bands = [0.0f64; 16];
            // DFT bins every 50 Hz up to 7 kHz, Hann-windowed.
            for k in 2..=140 {
                let f = k as f64 * 50.0;
                let (mut re, mut im) = (0.0, 0.0);
                for (i, &s) in w.iter().enumerate() {
                    let win = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
                    let ph = std::f64::consts::TAU * f * i as f64 / 48_000.0;
                    re += f64::from(s) * win * ph.cos();
                    im -= f64::from(s) * win * ph.sin();
                }
                if let Some(b) = edges.windows(2).position(|e| f >= e[0] && f < e[1]) {
                    bands[b] += re * re + im * im;
                }
            }
            bands.map(|e| (e + 1e-6).log10())
        })
        .collect()
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

/// Delay (in samples) of `heard` against `sent`: the lag, in 1 ms steps
/// up to 1.5 s, that best correlates their 1 ms amplitude envelopes.
fn best_lag(sent: &[f32], heard: &[f32]) -> usize {
    let env = |x: &[f32]| -> Vec<f64> {
        x.chunks_exact(48).map(|c| c.iter().map(|v| f64::from(v.abs())).sum::<f64>()).collect()
    };
    let (s, h) = (env(sent), env(heard));
    let mut best = (f64::MIN, 0);
    for lag in 0..1500.min(h.len().saturating_sub(s.len()) + 1) {
        let r = pearson(&s, &h[lag..lag + s.len().min(h.len() - lag)]);
        if r > best.0 {
            best = (r, lag);
        }
    }
    best.1 * 48
}

/// Spectro-temporal similarity: the correlation of log band energies (16
/// bands, 20 ms frames) of `heard`, aligned by `lag` samples, with those of
/// `sent`, over the frames where `sent` has speech.
fn speech_similarity(sent: &[f32], heard: &[f32], lag: usize) -> f64 {
    let s = spectrogram(sent);
    let h = spectrogram(&heard[lag.min(heard.len())..]);
    let e: Vec<f64> = s.iter().map(|b| b.iter().map(|v| 10f64.powf(*v)).sum::<f64>()).collect();
    let peak = e.iter().cloned().fold(0.0, f64::max);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in (0..s.len()).filter(|&i| e[i] > peak * 1e-3) {
        if let Some(hb) = h.get(i) {
            a.extend_from_slice(&s[i]);
            b.extend_from_slice(hb);
        }
    }
    pearson(&a, &b)
}

fn speech_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/speech.wav")
}

#[test]
fn speech_from_a_wav_comes_out_intelligible_through_loss_and_jitter() {
    if common::skip_over_tls("speech_from_a_wav_comes_out_intelligible_through_loss_and_jitter") {
        return;
    }
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let shim = Shim::start(host.control_addr, lossy(11));
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("heard.wav");
        // Both join first (a handshake through the shim's loss takes a
        // varying while); the listener's recording starts first, so the
        // speech lies inside it.
        let b = join_through(&shim, "listener", "r").await;
        let a = join_through(&shim, "reader", "r").await;
        let eb = engine(&b, MicSpec::None, SpeakerSpec::Record(wav.clone()));
        smol::Timer::after(SEC / 2).await;
        let ea = engine(&a, MicSpec::File(speech_path()), SpeakerSpec::Null);
        smol::Timer::after(Duration::from_millis(5_500)).await;
        let (sa, sb, hs) = (ea.stats(), eb.stats(), host.audio_stats());
        ea.stop().unwrap();
        eb.stop().unwrap();
        eprintln!("speech: talker {sa:?}\nlistener {sb:?}\nhost {hs:?}");
        let sent = load_wav(&speech_path()).unwrap();
        let heard = read_wav(&wav);
        let lag = best_lag(&sent, &heard);
        let r = speech_similarity(&sent, &heard, lag);
        // Control: the same speech 300 ms out of step (what garbled or
        // unrelated audio would look like).
        let r_wrong = speech_similarity(&sent, &heard, lag + 14_400);
        eprintln!("speech: correlation {r:.3} at {} ms; control {r_wrong:.3}", lag / 48);
        // The same speech through two Opus generations scores about 0.73 on
        // a clean network and about 0.65 with this loss and jitter; the
        // control, and silence or noise, score near 0. 0.5 sits well above
        // anything that is not the same speech in step.
        assert!(r > 0.5, "speech correlation {r:.3}");
        assert!(r_wrong < 0.3, "control {r_wrong:.3}");
        host.shutdown().await;
    });
}

#[test]
fn mix_minus_over_the_network_and_a_lone_listener_hears_silence() {
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let dir = tempfile::tempdir().unwrap();
        let (wa, wc) = (dir.path().join("a.wav"), dir.path().join("c.wav"));
        let a = join(host.control_addr, "a", "one").await;
        let b = join(host.control_addr, "b", "one").await;
        let c = join(host.control_addr, "c", "two").await;
        let ea = engine(&a, MicSpec::Tone(440.0), SpeakerSpec::Record(wa.clone()));
        let eb = engine(&b, MicSpec::Tone(1500.0), SpeakerSpec::Null);
        let ec = engine(&c, MicSpec::Tone(700.0), SpeakerSpec::Record(wc.clone()));
        smol::Timer::after(3 * SEC).await;
        for e in [ea, eb, ec] {
            e.stop().unwrap();
        }
        let xa = read_wav(&wa);
        let body = &xa[48_000..xa.len() - 4_800];
        // A hears B's 1500 Hz, not its own 440 Hz, nor room two's 700 Hz.
        let snr = median_frame_snr_db(body, 1500.0);
        eprintln!("mix-minus: A hears B's tone at {snr:.1} dB SNR (median per frame)");
        assert!(snr > 20.0, "{snr:.1} dB");
        assert!(tone_snr_db(body, 440.0) < -20.0, "never your own voice");
        assert!(tone_snr_db(body, 700.0) < -20.0, "rooms are isolated");
        // C is alone in room two: silence.
        let xc = read_wav(&wc);
        assert!(sapora::media::audio::rms(&xc) < 0.001, "alone → silence");
        host.shutdown().await;
    });
}

#[test]
fn muting_stops_sending_but_the_mix_keeps_coming() {
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let a = join(host.control_addr, "a", "m").await;
        let b = join(host.control_addr, "b", "m").await;
        let ea = engine(&a, MicSpec::Tone(1000.0), SpeakerSpec::Null);
        let eb = engine(&b, MicSpec::Tone(500.0), SpeakerSpec::Null);
        smol::Timer::after(SEC).await;
        ea.set_muted(true);
        let sent = ea.stats().packets_sent;
        let got = ea.stats().packets_received;
        smol::Timer::after(SEC + SEC / 2).await;
        let s = ea.stats();
        assert!(s.packets_sent <= sent + 1, "muted: no audio sent ({sent} → {})", s.packets_sent);
        assert!(s.keepalives_sent >= 1, "{s:?}");
        assert!(s.packets_received >= got + 60, "the mix keeps coming: {s:?}");
        eb.stop().unwrap();
        ea.stop().unwrap();
        host.shutdown().await;
    });
}

/// Someone unmutes while another talks: the host moves them from the
/// room's shared mix to a mix of their own. What they hear must go on
/// without a gap (a fresh encoder there gave a 2.5 ms window at 10 % of the
/// tone's level, right at the unmute).
#[test]
fn unmuting_while_someone_talks_leaves_no_gap_in_what_you_hear() {
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let dir = tempfile::tempdir().unwrap();
        let wb = dir.path().join("b.wav");
        let a = join(host.control_addr, "a", "m").await;
        let b = join(host.control_addr, "b", "m").await;
        let ea = engine(&a, MicSpec::Tone(440.0), SpeakerSpec::Null);
        let mut cfg = AudioConfig::new(MicSpec::Tone(1000.0), SpeakerSpec::Record(wb.clone()));
        cfg.voice = VoiceSettings::OFF;
        cfg.muted = true;
        let eb = AudioEngine::start(MediaLink::of(&b).unwrap(), cfg).unwrap();
        smol::Timer::after(SEC + SEC / 2).await;
        eb.set_muted(false);
        smol::Timer::after(SEC).await;
        let sent = eb.stats().packets_sent;
        eb.stop().unwrap();
        ea.stop().unwrap();
        assert!(sent > 30, "b talked after unmuting: {sent} packets");
        // The recording starts with the engine: from 0.4 s before the
        // unmute to 0.6 s after. (A jitter buffer dropping a frame to cut
        // its delay, which waits for a pause for up to two seconds, is
        // tested in media::audio::jitter.)
        let x = read_wav(&wb);
        let (from, to) = (1.1, 2.1);
        let body = &x[(from * 48_000.0) as usize..(to * 48_000.0) as usize];
        let rms: Vec<f32> = body.chunks_exact(120).map(sapora::media::audio::rms).collect();
        let mut sorted = rms.clone();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        let (at, low) = rms
            .iter()
            .enumerate()
            .min_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, r)| (from + i as f64 * 0.0025, r / median))
            .unwrap();
        eprintln!("unmute: quietest 2.5 ms of the tone at {at:.4} s is {low:.3} of the median");
        assert!(median > 0.1, "b hears a's tone: median window RMS {median}");
        assert!(low > 0.5, "a gap in what b hears at {at:.4} s: {low:.3} of the tone's level");
        host.shutdown().await;
    });
}

/// Spoofed media, both kinds. (a) Plaintext datagrams in the old UDP
/// format (a live member's real session id and token) sent to the host's
/// UDP port reach nobody: the port speaks only QUIC. (b) A member whose
/// audio names another participant as its sender is still heard as itself:
/// the host attributes every datagram to the session that owns the link.
#[test]
fn spoofed_audio_reaches_nobody_and_cannot_speak_for_another() {
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let a = join(host.control_addr, "a", "t").await;
        let victim = join(host.control_addr, "victim", "t").await;
        let listener = join(host.control_addr, "listener", "t").await;
        let el = engine(&listener, MicSpec::None, SpeakerSpec::Null);
        // (a) The old plaintext packet: header, session, token, the rest.
        let w = victim.current();
        let payload = vec![0u8; 1920];
        let mut buf = Vec::new();
        AudioUp {
            session: w.session,
            keepalive: false,
            end: false,
            seq: 1,
            timestamp: 0,
            codec: AudioCodec::Pcm16,
            samples: 960,
            payload: &payload,
        }
        .encode(&mut buf);
        let at = sapora::proto::HEADER_LEN + 4;
        buf.splice(at..at, w.token.to_be_bytes());
        let len = (buf.len() - sapora::proto::HEADER_LEN) as u32;
        buf[2..6].copy_from_slice(&len.to_be_bytes());
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..50 {
            sock.send_to(&buf, host.control_addr).unwrap();
        }
        // And old plaintext video: a fragment and a hello with the token.
        let mut frag = Vec::new();
        let h = sapora::proto::FragmentHeader {
            session: w.session,
            frame_id: 1,
            layer: sapora::proto::Layer::Full,
            index: 0,
            count: 1,
            frame_len: 3,
            capture_us: 0,
            stride: 1100,
        };
        sapora::proto::encode_fragment(&h, &[0xFF, 0xD8, 0xFF], 0, &mut frag);
        frag.splice(at..at, w.token.to_be_bytes());
        for _ in 0..50 {
            sock.send_to(&frag, host.control_addr).unwrap();
        }
        sock.send_to(b"junk", host.control_addr).unwrap();
        smol::Timer::after(SEC / 2).await;
        let v = host.video_stats();
        assert_eq!((v.fragments_in, v.hellos, v.malformed), (0, 0, 0), "{v:?}");
        let (s, sl) = (host.audio_stats(), el.stats());
        assert!(
            s.mixer.packets_in <= sl.keepalives_sent + sl.packets_sent && s.bad_token == 0,
            "only the listener's own datagrams reached the mixer: {s:?} {sl:?}"
        );
        // (b) `a` talks with datagrams that claim to be the victim's.
        let link = MediaLink::of(&a).unwrap();
        let mut enc = sapora::media::audio::Encoder::new(AudioCodec::Opus, 32_000).unwrap();
        let tone: Vec<f32> =
            (0..960).map(|i| 0.3 * (i as f32 * std::f32::consts::TAU / 48.0).sin()).collect();
        for seq in 1..=100u32 {
            let mut packet = Vec::new();
            enc.encode(&tone, &mut packet).unwrap();
            let mut d = Vec::new();
            AudioUp {
                session: w.session,
                keepalive: false,
                end: false,
                seq,
                timestamp: seq * 960,
                codec: AudioCodec::Opus,
                samples: 960,
                payload: &packet,
            }
            .encode(&mut d);
            link.send(d.into()).unwrap();
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        // The listener hears a speaking level: `a`'s, never the victim's.
        let deadline = Instant::now() + 3 * SEC;
        loop {
            let levels = el.levels();
            assert!(
                levels.iter().all(|l| l.session != w.session || l.level == 0),
                "the victim never spoke: {levels:?}"
            );
            if levels.iter().any(|l| l.session == a.current().session && l.level > 0) {
                break;
            }
            assert!(Instant::now() < deadline, "a's audio was heard as a's: {levels:?}");
            smol::Timer::after(SEC / 20).await;
        }
        el.stop().unwrap();
        host.shutdown().await;
    });
}

#[test]
fn a_pcm_host_sends_pcm_and_clients_follow() {
    let _one_at_a_time = serial();
    smol::block_on(async {
        let mut opts = common::options();
        opts.audio_codec = AudioCodec::Pcm16;
        let host = sapora::server::start(opts).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("b.wav");
        let a = join(host.control_addr, "a", "p").await;
        let b = join(host.control_addr, "b", "p").await;
        let ea = engine(&a, MicSpec::Tone(1000.0), SpeakerSpec::Null);
        let eb = engine(&b, MicSpec::None, SpeakerSpec::Record(wav.clone()));
        smol::Timer::after(2 * SEC).await;
        let (sa, sb) = (ea.stats(), eb.stats());
        ea.stop().unwrap();
        eb.stop().unwrap();
        // A PCM host mixes 10 ms frames (20 ms would not fit a QUIC
        // datagram): 960 bytes of 16-bit PCM, where Opus takes about 100.
        let per_packet = sa.bytes_sent as f64 / sa.packets_sent as f64;
        assert!(per_packet > 900.0, "uplink switched to PCM: {per_packet:.0} B/packet");
        assert!(sb.bytes_received as f64 / sb.packets_received as f64 > 950.0);
        let x = read_wav(&wav);
        let body = &x[48_000..x.len() - 4_800];
        assert!(median_frame_snr_db(body, 1000.0) > 20.0);
        host.shutdown().await;
    });
}

#[test]
fn a_10ms_host_gets_10ms_frames_from_clients_that_started_at_20ms() {
    let _one_at_a_time = serial();
    smol::block_on(async {
        let mut opts = common::options();
        opts.audio_frame_samples = sapora::media::audio::FRAME_10MS;
        let host = sapora::server::start(opts).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("b.wav");
        let a = join(host.control_addr, "a", "ten").await;
        let b = join(host.control_addr, "b", "ten").await;
        // Both engines start with the default 20 ms frames.
        let ea = engine(&a, MicSpec::Tone(1000.0), SpeakerSpec::Null);
        let eb = engine(&b, MicSpec::None, SpeakerSpec::Record(wav.clone()));
        smol::Timer::after(SEC).await;
        let (a0, b0) = (ea.stats(), eb.stats());
        smol::Timer::after(2 * SEC).await;
        let (a1, b1) = (ea.stats(), eb.stats());
        ea.stop().unwrap();
        eb.stop().unwrap();
        // 10 ms frames: about 100 packets a second each way (20 ms would be 50).
        let sent = a1.packets_sent - a0.packets_sent;
        let got = b1.packets_received - b0.packets_received;
        assert!((170..=230).contains(&sent), "A sent {sent} packets in 2 s");
        assert!((170..=230).contains(&got), "B received {got} packets in 2 s");
        let host_stats = host.audio_stats();
        assert!(host_stats.mixer.packets_in > 250, "{host_stats:?}");
        // The tone survives: 1 kHz, clean.
        let x = read_wav(&wav);
        let body = &x[48_000..x.len() - 4_800];
        assert_eq!(frequency(body), 1000.0);
        let snr = median_frame_snr_db(body, 1000.0);
        assert!(snr > 10.0, "median SNR {snr:.1} dB");
        host.shutdown().await;
    });
}

#[test]
fn bots_report_audio_counters_and_click_latency() {
    // Runs over both transports. It once failed under load over either one,
    // with nothing lost in transit: the sending bots sent too few talkspurts
    // (their echo cancellers took their own lockstep clicks out, and the
    // clicks microphone dropped clicks between wandering reads); see below
    // and `media::audio::source`.
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sapora"))
            .args(["bot", &host.control_addr.to_string(), "--name", "clk", "--count", "2"])
            .args(["--mic", "clicks", "--speaker", "null", "--duration", "4", "--report", "json"])
            // Both bots click at the same wall-clock instants, so each one's
            // far end (the other's click, ~100 ms after it was made) predicts
            // its own next click 400 ms later: echo cancellation locks onto
            // that delay and takes the bot's own clicks out as echo (measured
            // under load: 1 to 8 of 8 talkspurts sent with it on, 7 or 8 off).
            // This test counts packets and times clicks; the canceller has
            // its own test below.
            .args(["--aec", "off"])
            .output();
        let out = out.expect("bot runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let reports: Vec<serde_json::Value> =
            text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(
            reports.len(),
            2,
            "stdout: {text}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for r in &reports {
            // Silence between clicks is not sent: each click is a talkspurt
            // of about 12 frames (the click, 200 ms of hangover, the end
            // mark), two a second.
            // The host's counters too: a shortfall shows whether it dropped
            // or never got the clicks (the other bot's `audio_packets_sent`).
            let hs = host.audio_stats();
            assert!(r["audio_packets_received"].as_u64().unwrap() > 60, "{text}\nhost: {hs:?}");
            assert!(r["audio_packets_lost"].as_u64().is_some(), "{r}");
            let p50 = r["audio_latency_ms"]["p50"].as_f64().expect("clicks measured");
            let p95 = r["audio_latency_ms"]["p95"].as_f64().unwrap();
            // Measured, and plausible: at least the codec delay, well under the
            // 500 ms click period. The targets (p50 ≤ 50, p95 ≤ 70 ms) are
            // checked by `cargo bench --bench audio`, not here, since a busy
            // test machine stretches thread wake-ups.
            assert!(p50 > 5.0 && p95 < 400.0, "p50 {p50} p95 {p95}");
            assert!(r["errors"].as_array().unwrap().is_empty(), "{r}");
        }
        host.shutdown().await;
    });
}

/// "I hear myself": A talks and records what it hears; B has no microphone
/// of its own but sits in a simulated room (`--echo room`: its speaker comes
/// back into its microphone, RT60 0.3 s, −6 dB, 60 ms). With B's echo
/// cancellation off, A hears itself back through B; with it on, at least
/// 25 dB less once the canceller has converged. Both cases run at once, in
/// two meetings; B's noise suppression and gain control are off in both, so
/// the difference is the canceller's alone.
///
/// A talks (speech, three times over) rather than clicking: AEC3 adapts only
/// on active far-end blocks, and a 2.5 ms click every 500 ms gives it one
/// block in 125, so it takes some 20 s to lock on (about 5 dB after 6 s).
#[test]
fn echo_cancellation_keeps_others_from_hearing_themselves() {
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let dir = tempfile::tempdir().unwrap();
        let speech = load_wav(&speech_path()).unwrap();
        let talk = dir.path().join("talk.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&talk, spec).unwrap();
        for x in speech.iter().chain(&speech).chain(&speech) {
            w.write_sample(*x).unwrap();
        }
        w.finalize().unwrap();
        let addr = host.control_addr.to_string();
        let bot = |args: Vec<String>| {
            std::process::Command::new(env!("CARGO_BIN_EXE_sapora"))
                .arg("bot")
                .arg(&addr)
                .args(args)
                .args(["--duration", "10", "--report", "json"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("bot starts")
        };
        let words = |s: String| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let mut runs = Vec::new();
        for aec in ["off", "on"] {
            let wav = dir.path().join(format!("a-{aec}.wav"));
            let room = format!("echo-{aec}");
            let a = bot(words(format!(
                "--name a --room {room} --mic file:{} --speaker record:{}",
                talk.display(),
                wav.display()
            )));
            let b = bot(words(format!(
                "--name b --room {room} --mic none --speaker null --echo room --aec {aec} \
                 --noise-suppression off --agc off"
            )));
            runs.push((aec, wav, a, b));
        }
        let mut heard = Vec::new();
        for (aec, wav, a, b) in runs {
            for (who, child) in [("a", a), ("b", b)] {
                let out = child.wait_with_output().expect("bot ends");
                let report = common::bot_report(who, &out);
                if who == "b" {
                    eprintln!("B with AEC {aec}: aec {}", report["aec"]);
                    if aec == "on" {
                        assert!(report["aec"]["delay_ms"].as_i64().is_some(), "{report}");
                        assert!(report["aec"]["erle_db"].as_f64().is_some(), "{report}");
                    }
                }
            }
            // From 4.5 s (joining, and the canceller's first convergence on
            // speech, 3.6 s in media::audio::apm's tests) to the end.
            let x = read_wav(&wav);
            let body = &x[(9 * 24_000).min(x.len())..];
            let energy: f64 = body.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            let db = 10.0 * (energy / body.len().max(1) as f64).max(1e-15).log10();
            eprintln!("A hears itself at {db:.1} dBFS with B's AEC {aec}");
            heard.push(db);
        }
        assert!(heard[0] > -50.0, "without AEC the echo is loud ({:.1} dBFS)", heard[0]);
        let gain = heard[0] - heard[1];
        assert!(gain >= 25.0, "AEC makes the echo {gain:.1} dB quieter; want ≥ 25 dB");
        host.shutdown().await;
    });
}

// ---------------------------------------------------------------------------
// Pass-through, loss-adaptive FEC and silence (issue 12).
// ---------------------------------------------------------------------------

/// One talker, one listener: on a clean path the listener gets the talker's
/// packets unchanged (the host encodes nothing), the talker's encoder
/// expects no loss and nobody sends redundancy once the first reports
/// proved the path clean (a call's first second carries copies, lossy
/// until proven clean); when 10 % of datagrams are
/// lost each way, the talker repeats its last packet in each (RFC 2198
/// redundancy), the host rebuilds the uplink's losses from the copies and
/// goes on forwarding, with copies of its own to the listener, and in-band
/// FEC covers only what the copies leave.
#[test]
fn a_lone_talker_is_passed_through_and_fec_follows_measured_loss() {
    if common::skip_over_tls("a_lone_talker_is_passed_through_and_fec_follows_measured_loss") {
        return;
    }
    let _one_at_a_time = serial();
    smol::block_on(async {
        for loss in [0.0, 0.10] {
            let host = start_host().await;
            let imp = Impairment { loss, seed: 5, ..Impairment::none() };
            let shim = Shim::start(host.control_addr, imp);
            let a = join_through(&shim, "talker", "pt").await;
            let b = join_through(&shim, "listener", "pt").await;
            let ea = engine(&a, MicSpec::Tone(440.0), SpeakerSpec::Null);
            let eb = engine(&b, MicSpec::None, SpeakerSpec::Null);
            smol::Timer::after(2 * SEC).await;
            let (half_a, half_host) = (ea.stats(), host.audio_stats());
            smol::Timer::after(2 * SEC).await;
            let (sa, sb) = (ea.stats(), eb.stats());
            let hs = host.audio_stats();
            ea.stop().unwrap();
            eb.stop().unwrap();
            eprintln!("loss {loss}: talker {sa:?}\nlistener {sb:?}\nhost {hs:?}");
            assert!(sb.mix_datagrams > 100, "{sb:?}");
            assert!(sa.up_reports >= 2, "the host reports on the talker's audio: {sa:?}");
            if loss == 0.0 {
                assert_eq!(sb.frames_forwarded, sb.mix_datagrams, "every frame passed through");
                assert_eq!(hs.mixer.encodes, 0, "the host never re-encodes a lone talker");
                assert_eq!(sa.fec_expected_loss_percent, 0, "a clean path needs no FEC");
                assert_eq!(sb.down_lost, 0, "{sb:?}");
                // Two copies a packet until the first report, which comes
                // after a second of packets: then none (the last packet
                // carried none).
                assert_eq!(sa.red_depth, 0, "a clean path sends no redundancy: {sa:?}");
                assert!(sa.red_frames_sent <= 2 * 75, "copies past the first report: {sa:?}");
                assert!(hs.mixer.red_out <= 2 * 75, "the host's, to the listener: {hs:?}");
                assert_eq!(sa.red_frames_sent, half_a.red_frames_sent, "none after 2 s");
                assert_eq!(hs.mixer.red_out, half_host.mixer.red_out, "none after 2 s");
            } else {
                assert!(sa.red_depth >= 1 && sa.red_frames_sent > 100, "{sa:?}");
                assert!(hs.mixer.recovered > 5, "uplink losses rebuilt from copies: {hs:?}");
                assert!(hs.mixer.red_out > 100, "copies to the lossy listener: {hs:?}");
                assert!(sb.frames_recovered > 5, "downlink losses rebuilt from copies: {sb:?}");
                assert!(
                    sb.frames_forwarded > sb.mix_datagrams / 2,
                    "the rebuilt uplink is forwarded, not mixed: {sb:?} {hs:?}"
                );
                // In-band FEC covers only what the copies leave (10 % with
                // two copies leaves 0.1 %): its bits go to the voice, since a
                // packet's FEC and the copy of the same frame ride together.
                let pct = sa.fec_expected_loss_percent;
                assert!(pct <= 3, "FEC tuned for {pct} %: {sa:?}");
                let down = sb.down_lost as f64 / sb.down_expected.max(1) as f64;
                assert!(down > 0.03 && down < 0.35, "listener measured {down} loss: {sb:?}");
                // Of ~200 frames with ~20 lost on the way, few are concealed.
                assert!(sb.frames_concealed < 15, "{sb:?}");
            }
            host.shutdown().await;
        }
    });
}

/// Silent open microphones: nothing is sent but keepalives and reports, the
/// host encodes nothing and sends each member at most a few levels-only
/// datagrams a second.
#[test]
fn a_silent_room_costs_no_encodes_and_almost_no_packets() {
    let _one_at_a_time = serial();
    smol::block_on(async {
        let host = start_host().await;
        let dir = tempfile::tempdir().unwrap();
        let silence = dir.path().join("silence.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&silence, spec).unwrap();
        for _ in 0..4_800 {
            w.write_sample(0i16).unwrap();
        }
        w.finalize().unwrap();
        let mut clients = Vec::new();
        let mut engines = Vec::new();
        for name in ["a", "b", "c"] {
            let c = join(host.control_addr, name, "hush").await;
            engines.push(engine(&c, MicSpec::File(silence.clone()), SpeakerSpec::Null));
            clients.push(c);
        }
        smol::Timer::after(SEC).await;
        let before: Vec<_> = engines.iter().map(|e| e.stats()).collect();
        let encodes = host.audio_stats().mixer.encodes;
        smol::Timer::after(3 * SEC).await;
        for (e, b) in engines.iter().zip(&before) {
            let s = e.stats();
            assert_eq!(s.packets_sent, 0, "silence is not sent: {s:?}");
            let got = s.packets_received - b.packets_received;
            assert!(got <= 9, "{got} datagrams in 3 s of silence: {s:?}");
            assert_eq!(s.frames_concealed, 0, "silence is not loss: {s:?}");
        }
        assert_eq!(host.audio_stats().mixer.encodes, encodes, "no encoder runs for a silent room");
        for e in engines {
            e.stop().unwrap();
        }
        host.shutdown().await;
    });
}
