//! Video benchmarks.
//!
//! Criterion: 640×480 quality-55 JPEG encode and decode (one core), thumbnail
//! scaling, fragmentation + reassembly, and the relay core's per-fragment cost.
//!
//! Then two loopback load runs against an in-process host (printed, not
//! criterion): 8 senders → 7 receivers each at 15 fps full layer over their
//! QUIC links (SAPORA_TRANSPORT=tls: the TLS tunnel) (host CPU: the host's
//! `sapora-net-*` threads, which run QUIC, and smol's, which run the relay;
//! loss), and a 9-person grid's host bytes out with thumbnails vs everyone
//! full. Run: `cargo bench --bench video` (add `-- --quick` for a fast pass;
//! `SAPORA_BENCH_SECS=N` sets the load runs' length, default 8).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use sapora::client::{Client, ClientConfig};
use sapora::media::jpeg;
use sapora::media::video::{Reassembler, ReassemblyConfig, TestPattern, fragment_frame, scale};
use sapora::proto::{
    FragmentHeader, Layer, MsgType, Ports, Subscription, VideoHello, VideoPacket, decode_video,
    encode_video_control,
};
use sapora::server::core::{HostEvent, SessionId};
use sapora::server::video::{RelayConfig, VideoRelay};
use sapora::server::{self, Directory, HostOptions};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn pattern_frame(counter: u32) -> Vec<u8> {
    let mut rgb = Vec::new();
    TestPattern::new("bench", 640, 480).render(counter, &mut rgb);
    rgb
}

fn codec(c: &mut Criterion) {
    let rgb = pattern_frame(7);
    let mut out = Vec::new();
    c.bench_function("jpeg encode 640x480 q55", |b| {
        b.iter(|| jpeg::encode_rgb(black_box(&rgb), 640, 480, 55, &mut out).unwrap())
    });
    jpeg::encode_rgb(&rgb, 640, 480, 55, &mut out).unwrap();
    let encoded = out.clone();
    c.bench_function("jpeg decode 640x480 q55 to RGBA", |b| {
        b.iter(|| jpeg::decode_rgba(black_box(&encoded)).unwrap())
    });
    let mut thumb = Vec::new();
    c.bench_function("thumbnail 640x480 -> 320x240", |b| {
        b.iter(|| scale::thumbnail(black_box(&rgb), 640, 480, &mut thumb))
    });
    let t0 = Instant::now();
    let mut reasm = Reassembler::new(ReassemblyConfig::default());
    let mut id = 0u32;
    let mut buf = Vec::new();
    let mut seq = 0u16;
    c.bench_function("fragment + reassemble one 640x480 frame", |b| {
        b.iter(|| {
            id += 1;
            let h = FragmentHeader {
                session: SessionId(1),
                frame_id: id,
                layer: Layer::Full,
                index: 0,
                count: 0,
                frame_len: 0,
                capture_us: 0,
                stride: sapora::proto::MAX_FRAGMENT_PAYLOAD as u16,
            };
            let mut done = None;
            fragment_frame(h, &encoded, &mut seq, &mut buf, |d| {
                if let Ok(VideoPacket::Fragment(f)) = decode_video(d) {
                    done = done.take().or(reasm.push(t0, &f));
                }
            });
            assert!(done.is_some());
        })
    });

    // The relay core: one full-layer fragment into a room of 8, fanned out to 7.
    let dir = Directory::default();
    for s in 1..=8u32 {
        dir.apply(&HostEvent::Joined {
            session: SessionId(s),
            token: u64::from(s),
            name: format!("p{s}"),
            room: "r".into(),
            ip: LOOPBACK,
        });
    }
    let mut relay = VideoRelay::new(RelayConfig::default(), dir);
    let mut targets = Vec::new();
    for s in 1..=8u32 {
        let h = VideoHello {
            session: SessionId(s),
            default: Subscription::Full,
            subs: vec![],
            roster: 0,
        };
        let mut d = Vec::new();
        encode_video_control(MsgType::VideoHello, &h, &mut d);
        relay.handle(t0, SessionId(s), &mut d, &mut targets);
    }
    let mut frags = Vec::new();
    let h = FragmentHeader {
        session: SessionId(3),
        frame_id: 1,
        layer: Layer::Full,
        index: 0,
        count: 0,
        frame_len: 0,
        capture_us: 0,
        stride: sapora::proto::MAX_FRAGMENT_PAYLOAD as u16,
    };
    fragment_frame(h, &encoded, &mut seq, &mut buf, |d| frags.push(d.to_vec()));
    let mut i = 0;
    let mut scratch = Vec::new();
    c.bench_function("relay core: route one fragment to 7 of 8", |b| {
        b.iter(|| {
            i = (i + 1) % frags.len();
            // The relay stamps the sender in place: work on a fresh copy, as
            // the driver does with each received datagram.
            scratch.clear();
            scratch.extend_from_slice(&frags[i]);
            let out = relay.handle(t0, SessionId(3), &mut scratch, &mut targets);
            assert_eq!(targets.len(), 7);
            black_box(out)
        })
    });
}

/// CPU seconds used so far by this process's threads whose name starts with
/// `prefix` (Linux /proc; 0 elsewhere).
fn thread_cpu(prefix: &str) -> f64 {
    let mut ticks = 0u64;
    if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
        for t in dir.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if !comm.trim().starts_with(prefix) {
                continue;
            }
            let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            // Fields after the ")" that ends the name: utime is the 12th, stime the 13th.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let f: Vec<&str> = rest.split_whitespace().collect();
                ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                ticks += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    ticks as f64 / 100.0
}

/// Real JPEGs of the test pattern, both layers, for a loop of frames.
fn encoded_frames(n: u32) -> Vec<(Vec<u8>, Vec<u8>)> {
    let pattern = TestPattern::new("load", 640, 480);
    let (mut rgb, mut small) = (Vec::new(), Vec::new());
    (0..n)
        .map(|i| {
            pattern.render(i, &mut rgb);
            let (tw, th) = scale::thumbnail(&rgb, 640, 480, &mut small);
            let (mut full, mut thumb) = (Vec::new(), Vec::new());
            jpeg::encode_rgb(&rgb, 640, 480, 55, &mut full).unwrap();
            jpeg::encode_rgb(&small, tw, th, 50, &mut thumb).unwrap();
            (full, thumb)
        })
        .collect()
}

struct LoadResult {
    secs: f64,
    host_cpu: f64,
    /// Of `host_cpu`, the host's network threads (QUIC or TLS).
    net_cpu: f64,
    frag_sent: u64,
    frag_expected: u64,
    frag_received: u64,
    bytes_out: u64,
}

/// `n` participants in one room, each sending both layers at 15 fps as
/// datagrams on its link (pre-encoded frames, so the load generator is cheap) and
/// receiving with `sub` from everyone. Measures the host.
fn load(n: u32, sub: Subscription, secs: f64) -> LoadResult {
    let frames = Arc::new(encoded_frames(15));
    let ports = Ports { control: 0, discovery: 0 };
    let opts = HostOptions::new(LOOPBACK, ports, "bench");
    let (host, clients) = smol::block_on(async {
        let host = server::start(opts).await.unwrap();
        let mut clients = Vec::new();
        for i in 0..n {
            let cfg = ClientConfig::new(host.control_addr, format!("p{i}"), "grid");
            clients.push(Client::connect(cfg).await.unwrap());
        }
        (host, clients)
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for c in &clients {
        let w = c.current();
        let media = sapora::client::media::MediaLink::of(c).unwrap();
        let arrivals = media.video();
        // Receiver: hello every second, count fragments.
        let (m2, stop2, rx) = (media.clone(), stop.clone(), received.clone());
        threads.push(
            std::thread::Builder::new()
                .name("load-rx".into())
                .spawn(move || {
                    let mut hello = Vec::new();
                    let h =
                        VideoHello { session: w.session, default: sub, subs: vec![], roster: 0 };
                    encode_video_control(MsgType::VideoHello, &h, &mut hello);
                    let mut next = Instant::now();
                    while !stop2.load(Ordering::Relaxed) {
                        if Instant::now() >= next {
                            let _ = m2.send(hello.clone().into());
                            next = Instant::now() + Duration::from_secs(1);
                        }
                        if let Ok(d) = arrivals.recv_timeout(Duration::from_millis(20))
                            && d.get(1) == Some(&(MsgType::StreamVideo as u8))
                        {
                            rx.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .unwrap(),
        );
        // Sender: 15 fps, both layers.
        let (frames, stop3, tx) = (frames.clone(), stop.clone(), sent.clone());
        threads.push(
            std::thread::Builder::new()
                .name("load-tx".into())
                .spawn(move || {
                    std::thread::sleep(Duration::from_millis(300)); // hellos first
                    let (mut buf, mut seq) = (Vec::new(), 0u16);
                    let start = Instant::now();
                    let mut id = 0u32;
                    while !stop3.load(Ordering::Relaxed) {
                        let at = start + Duration::from_secs_f64(f64::from(id) / 15.0);
                        if let Some(d) = at.checked_duration_since(Instant::now()) {
                            std::thread::sleep(d);
                        }
                        let link = media.link();
                        let stride = sapora::proto::fragment_stride(link.max_datagram_size());
                        let (full, thumb) = &frames[id as usize % frames.len()];
                        for (layer, data) in [(Layer::Full, full), (Layer::Thumb, thumb)] {
                            let h = FragmentHeader {
                                session: w.session,
                                frame_id: id,
                                layer,
                                index: 0,
                                count: 0,
                                frame_len: 0,
                                capture_us: 0,
                                stride,
                            };
                            fragment_frame(h, data, &mut seq, &mut buf, |d| {
                                let _ = link.send_datagram(bytes::Bytes::copy_from_slice(d));
                                if (layer == Layer::Full) == (sub == Subscription::Full) {
                                    tx.fetch_add(1, Ordering::Relaxed);
                                }
                            });
                        }
                        id += 1;
                    }
                })
                .unwrap(),
        );
    }
    std::thread::sleep(Duration::from_millis(1000));
    let host_threads = || thread_cpu("smol") + thread_cpu("sapora-net");
    let cpu0 = host_threads();
    let net0 = thread_cpu("sapora-net");
    let (rx0, tx0, out0) = (
        received.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        host.video_stats().bytes_out,
    );
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let (rx1, tx1) = (received.load(Ordering::Relaxed), sent.load(Ordering::Relaxed));
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = host_threads();
    let net1 = thread_cpu("sapora-net");
    std::thread::sleep(Duration::from_millis(300)); // let the stats tick
    let out1 = host.video_stats().bytes_out;
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    drop(clients);
    smol::block_on(host.shutdown());
    LoadResult {
        secs: elapsed,
        host_cpu: cpu1 - cpu0,
        net_cpu: net1 - net0,
        frag_sent: tx1 - tx0,
        frag_expected: (tx1 - tx0) * u64::from(n - 1),
        frag_received: rx1 - rx0,
        bytes_out: out1 - out0,
    }
}

fn load_runs() {
    let secs: f64 =
        std::env::var("SAPORA_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8.0);
    let r = load(8, Subscription::Full, secs);
    println!(
        "relay 8 senders -> 7 receivers, 15 fps full layer, {:.1} s: host CPU {:.1}% of one core \
         ({:.1}% on the network threads); \
         fragments sent {} (x7 = {} expected), received {} ({:.2}% lost); host out {:.1} Mbit/s",
        r.secs,
        r.host_cpu / r.secs * 100.0,
        r.net_cpu / r.secs * 100.0,
        r.frag_sent,
        r.frag_expected,
        r.frag_received,
        100.0 * (1.0 - r.frag_received as f64 / r.frag_expected.max(1) as f64),
        r.bytes_out as f64 * 8.0 / 1e6 / r.secs,
    );
    let full = load(9, Subscription::Full, secs);
    let thumb = load(9, Subscription::Thumb, secs);
    let rate = |r: &LoadResult| r.bytes_out as f64 * 8.0 / 1e6 / r.secs;
    println!(
        "9-person grid, host video out: everyone full {:.1} Mbit/s, thumbnails {:.1} Mbit/s: {:.2}x less \
         (host CPU {:.1}% vs {:.1}%)",
        rate(&full),
        rate(&thumb),
        rate(&full) / rate(&thumb).max(1e-9),
        full.host_cpu / full.secs * 100.0,
        thumb.host_cpu / thumb.secs * 100.0,
    );
}

/// p50/p95 of encode and decode over many frames of the moving pattern, on
/// this one thread (the codecs are single-threaded).
fn codec_percentiles() {
    let pattern = TestPattern::new("bench", 640, 480);
    let (mut rgb, mut out) = (Vec::new(), Vec::new());
    let (mut enc, mut dec) = (Vec::new(), Vec::new());
    for i in 0..600 {
        pattern.render(i, &mut rgb);
        let t = Instant::now();
        jpeg::encode_rgb(&rgb, 640, 480, 55, &mut out).unwrap();
        enc.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        black_box(jpeg::decode_rgba(&out).unwrap());
        dec.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let pct = |v: &mut Vec<f64>, p: f64| {
        v.sort_by(f64::total_cmp);
        v[((p / 100.0 * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]
    };
    println!(
        "640x480 q55 ({} bytes): encode p50 {:.2} ms p95 {:.2} ms; decode to RGBA p50 {:.2} ms p95 {:.2} ms",
        out.len(),
        pct(&mut enc, 50.0),
        pct(&mut enc, 95.0),
        pct(&mut dec, 50.0),
        pct(&mut dec, 95.0)
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    codec(&mut c);
    c.final_summary();
    if !std::env::args().any(|a| a == "--list") {
        codec_percentiles();
        load_runs();
    }
}
