//! Audio benchmarks.
//!
//! - `mixer tick`: CPU of one 20 ms mixer tick (jitter-buffer pops, decode,
//!   mix-minus, limiter, encode, datagram building) for rooms of 10 and 50
//!   with 3 talkers, Opus. A tick's share of one core is time / 20 ms.
//! - Mouth-to-ear on loopback (printed after criterion): two clients with
//!   `clicks` microphones through a real host for 20 s (`SAPORA_BENCH_SECS`),
//!   with 20 ms and with 10 ms frames; each click's delay
//!   runs from the moment its first sample leaves the (virtual) microphone
//!   to the moment it is handed to the (null) speaker: packetisation, QUIC
//!   datagrams both ways (SAPORA_TRANSPORT=tls: the TLS tunnel's), both jitter buffers, the wait for the mixer's tick and for
//!   the playback slot (clients align both to the host's tick phase), two
//!   Opus generations' look-ahead; device buffers excluded.
//! - Bytes per participant and direction (datagram payloads; QUIC adds
//!   about 30 bytes of packet header and AEAD tag, IPv4+UDP 28), for a continuous
//!   talker (1 kHz tone) and a listener.
//!
//! Run: `cargo bench --bench audio`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion};
use sapora::client::audio::{AudioConfig, AudioEngine};
use sapora::client::{Client, ClientConfig};
use sapora::media::audio::{Encoder, MicSpec, SpeakerSpec};
use sapora::proto::{AudioCodec, AudioUp, Ports, SessionId};
use sapora::server::mixer::{Mixer, MixerConfig, Sender};
use sapora::server::{self, HostOptions};
use sapora::stats::Percentiles;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn mixer_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("mixer tick (3 talkers)");
    for (codec, name) in [(AudioCodec::Opus, "opus"), (AudioCodec::Pcm16, "pcm")] {
        for room in [10u32, 50] {
            // 50 frames of three different tones, encoded once.
            let talkers: Vec<Vec<Vec<u8>>> = (0..3)
                .map(|t| {
                    let mut e = Encoder::new(codec, 48_000).unwrap();
                    (0..50)
                        .map(|k| {
                            let hz = 200.0 + 300.0 * t as f32;
                            let f: Vec<f32> = (0..960)
                                .map(|i| {
                                    0.2 * (std::f32::consts::TAU * hz * (k * 960 + i) as f32
                                        / 48_000.0)
                                        .sin()
                                })
                                .collect();
                            let mut p = Vec::new();
                            e.encode(&f, &mut p).unwrap();
                            p
                        })
                        .collect()
                })
                .collect();
            let mut mixer = Mixer::new(MixerConfig::new(codec));
            let names: Vec<String> = (0..room).map(|s| format!("p{s}")).collect();
            let mut now = 0u64;
            let mut seq = 0u32;
            group.bench_function(BenchmarkId::new(name, format!("room of {room}")), |b| {
                b.iter(|| {
                    now += 20_000;
                    seq += 1;
                    for s in 0..room {
                        let talking = (s as usize) < talkers.len();
                        // Listeners' keepalives come once a second.
                        if !talking && seq % 50 != 1 {
                            continue;
                        }
                        let payload: &[u8] =
                            if talking { &talkers[s as usize][seq as usize % 50] } else { &[] };
                        let up = AudioUp {
                            session: SessionId(s),
                            keepalive: !talking,
                            end: false,
                            seq,
                            timestamp: seq.wrapping_mul(960),
                            codec,
                            samples: 960,
                            payload,
                        };
                        let who =
                            Sender { session: SessionId(s), name: &names[s as usize], room: "r" };
                        mixer.receive(now, who, &up);
                    }
                    let mut bytes = 0usize;
                    mixer.tick(now, |_, d| bytes += d.len());
                    black_box(bytes)
                })
            });
        }
    }
    group.finish();
}

fn engine(client: &Client, mic: MicSpec) -> AudioEngine {
    let media = sapora::client::media::MediaLink::of(client).unwrap();
    AudioEngine::start(media, AudioConfig::new(mic, SpeakerSpec::Null)).unwrap()
}

fn ports() -> Ports {
    Ports { control: 0, discovery: 0 }
}

/// Two participants with `clicks` microphones on a host mixing in frames of
/// `frame_samples`, for `secs` seconds: every click's mouth-to-ear delay.
fn mouth_to_ear(frame_samples: usize, secs: u64) {
    smol::block_on(async {
        let mut opts = HostOptions::new(LOOPBACK, ports(), "bench");
        opts.audio_frame_samples = frame_samples;
        let host = server::start(opts).await.unwrap();
        let join = |name: &'static str| async move {
            Client::connect(ClientConfig::new(host.control_addr, name, "bench")).await.unwrap()
        };
        let (a, b) = (join("a").await, join("b").await);
        let (ea, eb) = (engine(&a, MicSpec::Clicks), engine(&b, MicSpec::Clicks));
        smol::Timer::after(Duration::from_secs(secs)).await;
        let mut lat = ea.latencies_ms();
        lat.extend(eb.latencies_ms());
        let concealed = ea.stats().frames_concealed + eb.stats().frames_concealed;
        drop((ea, eb, a, b));
        let ms = frame_samples / 48;
        match Percentiles::of(&lat) {
            Some(p) => println!(
                "mouth-to-ear on loopback, {ms} ms frames (clicks, 2 participants, {secs} s, {} clicks, {concealed} frames concealed): p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                lat.len(),
                p.p50,
                p.p95,
                p.p99
            ),
            None => println!("mouth-to-ear, {ms} ms frames: no clicks detected"),
        }
        host.shutdown().await;
    });
}

/// Mouth-to-ear delay and bandwidth on loopback, printed as figures.
fn loopback_figures() {
    let secs = std::env::var("SAPORA_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    mouth_to_ear(960, secs);
    mouth_to_ear(480, secs);
    smol::block_on(async {
        let host = server::start(HostOptions::new(LOOPBACK, ports(), "bench")).await.unwrap();
        let join = |name: &'static str| async move {
            Client::connect(ClientConfig::new(host.control_addr, name, "bench")).await.unwrap()
        };
        let (a, b) = (join("a").await, join("b").await);

        // Bandwidth: one continuous talker, two listeners, 10 s.
        let c = join("c").await;
        let talker = engine(&a, MicSpec::Tone(1000.0));
        let (l1, l2) = (engine(&b, MicSpec::None), engine(&c, MicSpec::None));
        smol::Timer::after(Duration::from_secs(10)).await;
        let (st, sl) = (talker.stats(), l1.stats());
        let kbps = |bytes: u64| bytes as f64 * 8.0 / 10.0 / 1000.0;
        let link = |bytes: u64, packets: u64| kbps(bytes + 28 * packets);
        println!(
            "talker: up {:.1} kbps ({:.1} with IP/UDP headers), down {:.1} kbps ({:.1}); listener: up {:.1} kbps, down {:.1} kbps ({:.1})",
            kbps(st.bytes_sent),
            link(st.bytes_sent, st.packets_sent + st.keepalives_sent),
            kbps(st.bytes_received),
            link(st.bytes_received, st.packets_received),
            kbps(sl.bytes_sent),
            kbps(sl.bytes_received),
            link(sl.bytes_received, sl.packets_received),
        );
        drop((talker, l1, l2, a, b, c));
        host.shutdown().await;
    });
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    mixer_tick(&mut c);
    c.final_summary();
    loopback_figures();
}
