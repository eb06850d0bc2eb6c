//! 100 MB upload, then download, on loopback with MD5 on both ends, through a
//! real host and real sessions. Also prints the process's peak RSS growth
//! during one transfer each way, to show no file is held in memory.
//!
//! cargo bench --bench files

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sapora::client::files::{Dest, FileClient, UploadOptions};
use sapora::client::{Client, ClientConfig};
use sapora::proto::Ports;
use sapora::server::{self, HostOptions, RunningHost};

const SIZE: usize = 100 * 1024 * 1024;

fn host() -> RunningHost {
    let ports = Ports { control: 0, discovery: 0 };
    let mut opts = HostOptions::new(IpAddr::V4(Ipv4Addr::LOCALHOST), ports, "bench");
    opts.file_retention = Duration::ZERO;
    smol::block_on(server::start(opts)).expect("host starts")
}

fn join(addr: SocketAddr, name: &str, room: &str) -> Client {
    smol::block_on(Client::connect(ClientConfig::new(addr, name, room))).expect("joins")
}

fn make_file(dir: &Path) -> PathBuf {
    let path = dir.join("payload.bin");
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut data = Vec::with_capacity(SIZE);
    while data.len() < SIZE {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&path, &data).unwrap();
    path
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Runs `f` while sampling RSS every 5 ms; returns (seconds, peak growth in KiB).
fn with_rss<T>(f: impl FnOnce() -> T) -> (T, f64, u64) {
    let base = rss_kib();
    let peak = Arc::new(AtomicU64::new(base));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let t = Instant::now();
    let out = f();
    let secs = t.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    (out, secs, peak.load(Ordering::Relaxed).saturating_sub(base))
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = make_file(dir.path());
    let host = host();
    let addr = host.control_addr;

    // One transfer each way with RSS sampling, printed for the report.
    {
        let a = join(addr, "up", "rss");
        let b = join(addr, "down", "rss");
        let (info, up_s, up_rss) = with_rss(|| {
            smol::block_on(FileClient::for_client(&a).upload(&path, UploadOptions::default(), None))
                .expect("upload")
        });
        let out = dir.path().join("rss.out");
        let (_, down_s, down_rss) = with_rss(|| {
            smol::block_on(FileClient::for_client(&b).download(
                info.id,
                Dest::File(out.clone()),
                None,
            ))
            .expect("download")
        });
        let mb = SIZE as f64 / (1024.0 * 1024.0);
        eprintln!(
            "files: 100 MiB upload {:.0} MB/s (RSS +{} KiB), download {:.0} MB/s (RSS +{} KiB), MD5 verified both ends",
            mb / up_s,
            up_rss,
            mb / down_s,
            down_rss
        );
        std::fs::remove_file(out).unwrap();
        smol::block_on(a.leave());
        smol::block_on(b.leave());
    }

    let mut g = c.benchmark_group("files");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(SIZE as u64));
    let mut round = 0u32;
    g.bench_function("upload_100MiB_md5", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // A fresh room per upload, emptied after, so the store stays small.
                round += 1;
                let room = format!("up{round}");
                let a = join(addr, "up", &room);
                let t = Instant::now();
                smol::block_on(FileClient::for_client(&a).upload(
                    &path,
                    UploadOptions::default(),
                    None,
                ))
                .expect("upload");
                total += t.elapsed();
                smol::block_on(a.leave());
            }
            total
        })
    });
    let a = join(addr, "up", "down");
    let b = join(addr, "down", "down");
    let info =
        smol::block_on(FileClient::for_client(&a).upload(&path, UploadOptions::default(), None))
            .expect("upload");
    let out = dir.path().join("copy.bin");
    g.bench_function("download_100MiB_md5", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&out);
                let t = Instant::now();
                smol::block_on(FileClient::for_client(&b).download(
                    info.id,
                    Dest::File(out.clone()),
                    None,
                ))
                .expect("download");
                total += t.elapsed();
            }
            total
        })
    });
    g.finish();
    smol::block_on(host.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
