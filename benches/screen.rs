//! Screen-sharing benchmarks.
//!
//! Criterion times capture + diff + encode of one 1920×1080 frame of the
//! `test` screen while its text scrolls (the worst ordinary case: about 60%
//! of the tiles change every frame). Before that, `main` prints the figures
//! the issue asks for, measured directly:
//! - the bytes a still 1920×1080 desktop costs (and one with a blinking cursor),
//! - capture + diff + encode p50/p95 per 1080p frame over 200 frames,
//! - capture → viewer delay p50/p95 at 10 fps through a real loopback host.
//!
//! Run: `cargo bench --bench screen`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use sapora::client::screen::{PresentOptions, Presenter, ScreenTarget, Viewer};
use sapora::client::{Client, ClientConfig};
use sapora::media::screen::{DEFAULT_QUALITY, ScreenSource, TestScreen, TileEncoder};
use sapora::proto::{Ports, SCREEN_FRAME_HEADER, SCREEN_TILE_HEADER};
use sapora::server::{self, HostOptions};
use sapora::stats::Percentiles;

const W: usize = 1920;
const H: usize = 1080;

fn payload_bytes(tiles: &[sapora::media::screen::EncodedTile]) -> usize {
    if tiles.is_empty() {
        return 0; // nothing changed: nothing is sent
    }
    SCREEN_FRAME_HEADER + tiles.iter().map(|t| SCREEN_TILE_HEADER + t.jpeg.len()).sum::<usize>()
}

fn still_desktop() {
    let mut screen = TestScreen::new(W, H);
    let mut enc = TileEncoder::new(W, H, DEFAULT_QUALITY).unwrap();
    let first = payload_bytes(enc.encode(&screen.frame(1)).unwrap());
    let mut still = 0;
    for _ in 0..100 {
        still += payload_bytes(enc.encode(&screen.frame(1)).unwrap());
    }
    // A blinking text cursor: one 8×14 block toggling every frame.
    let mut cursor = 0;
    let base = screen.frame(1).data.to_vec();
    for i in 0..100 {
        let mut f = base.clone();
        if i % 2 == 0 {
            for y in 500..514 {
                f[(y * W + 300) * 4..(y * W + 308) * 4].fill(255);
            }
        }
        let fr = sapora::media::screen::FrameRef {
            width: W,
            height: H,
            stride: W * 4,
            format: sapora::media::screen::PixelFormat::Rgba,
            data: &f,
        };
        cursor += payload_bytes(enc.encode(&fr).unwrap());
    }
    println!(
        "still 1920x1080 desktop: first frame {first} bytes, then {} bytes/s at 10 fps",
        still / 10
    );
    println!("still desktop + blinking cursor: {} bytes/s at 10 fps", cursor / 10);
}

fn encode_percentiles() {
    let mut screen = TestScreen::new(W, H);
    let mut enc = TileEncoder::new(W, H, DEFAULT_QUALITY).unwrap();
    enc.encode(&screen.frame(0)).unwrap();
    let (mut ms, mut bytes, mut tiles) = (Vec::new(), 0usize, 0usize);
    for n in 1..=200 {
        let t = Instant::now();
        let f = screen.frame(n);
        let out = enc.encode(&f).unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        bytes += payload_bytes(out);
        tiles += out.len();
    }
    let p = Percentiles::of(&ms).unwrap();
    println!(
        "capture+diff+encode 1080p, text scrolling: p50 {:.1} ms, p95 {:.1} ms; {} tiles/frame, {} KiB/frame",
        p.p50,
        p.p95,
        tiles / 200,
        bytes / 200 / 1024
    );
}

fn loopback_latency() {
    smol::block_on(async {
        let ports = Ports { control: 0, discovery: 0 };
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let host = server::start(HostOptions::new(lo, ports, "bench")).await.unwrap();
        let a = Client::connect(ClientConfig::new(host.control_addr, "ann", "")).await.unwrap();
        let b = Client::connect(ClientConfig::new(host.control_addr, "bob", "")).await.unwrap();
        let viewer = Viewer::start(ScreenTarget::new(&b)).unwrap();
        let opts = PresentOptions::new(ScreenSource::Test { width: W, height: H });
        let presenter = Presenter::start(ScreenTarget::new(&a), opts).unwrap();
        smol::Timer::after(Duration::from_secs(8)).await;
        let ps = presenter.stop();
        let vs = viewer.stop();
        let lat = Percentiles::of(&vs.latency_ms).unwrap();
        let secs = 8.0;
        println!(
            "capture -> viewer at 10 fps, 1080p text scrolling: p50 {:.0} ms, p95 {:.0} ms over {} pictures; presenter sent {} updates, {:.0} KiB/s",
            lat.p50,
            lat.p95,
            vs.updates,
            ps.updates,
            ps.bytes as f64 / secs / 1024.0
        );
        drop((a, b));
        host.shutdown().await;
    });
}

fn bench_encode(c: &mut Criterion) {
    let mut screen = TestScreen::new(W, H);
    let mut enc = TileEncoder::new(W, H, DEFAULT_QUALITY).unwrap();
    let mut n = 0;
    c.bench_function("capture+diff+encode 1080p (text scrolling)", |b| {
        b.iter(|| {
            n += 1;
            let f = screen.frame(n);
            black_box(enc.encode(&f).unwrap().len())
        })
    });
    let mut still = TestScreen::new(W, H);
    let mut enc = TileEncoder::new(W, H, DEFAULT_QUALITY).unwrap();
    enc.encode(&still.frame(1)).unwrap();
    c.bench_function("diff of a still 1080p frame", |b| {
        b.iter(|| black_box(enc.encode(&still.frame(1)).unwrap().len()))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5));
    targets = bench_encode
}

fn main() {
    still_desktop();
    encode_percentiles();
    loopback_latency();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
