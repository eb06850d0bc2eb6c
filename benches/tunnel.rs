//! The TLS/TCP tunnel (issue 14's fallback) over loopback: stream throughput
//! for a 100 MiB transfer each way (issue 14's target: >= 250 MB/s) and the
//! round trip of a 1200-byte datagram, alone, as a video frame's burst of 25
//! (sent as BATCH messages), and while a stream uploads without pause on the
//! same connection.
//!
//! The host's and the client's tunnel tasks each run on their own
//! one-thread executor (as on two machines); the client's application side
//! runs on the bench thread. Run inside a network namespace:
//!
//! ```text
//! unshare --net sh -c 'ip link set lo up && exec cargo bench --bench tunnel'
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sapora::transport::cert::HostIdentity;
use sapora::transport::limit::{AttemptLimiter, SharedCaps};
use sapora::transport::link::{Established, LinkRecv, LinkSend};
use sapora::transport::pin::{KNOWN_HOSTS_FILE_NAME, PinStore};
use sapora::transport::quic;
use sapora::transport::tunnel::{self, Spawner, Tunnel};
use smol::io::{AsyncReadExt, AsyncWriteExt};

const TRANSFER: u64 = 100 * 1024 * 1024;
const UPLOAD: u8 = b'u';
const DOWNLOAD: u8 = b'd';

/// An executor on its own named thread.
fn executor(name: &str) -> Arc<smol::Executor<'static>> {
    let executor = Arc::new(smol::Executor::new());
    let runner = executor.clone();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || smol::block_on(runner.run(smol::future::pending::<()>())))
        .unwrap();
    executor
}

/// Serves one stream: `u` = read to EOF, then answer one byte; `d` = send
/// [`TRANSFER`] bytes and finish.
async fn serve(mut send: LinkSend, mut recv: LinkRecv) {
    let mut what = [0u8; 1];
    if recv.read_exact(&mut what).await.is_err() {
        return;
    }
    let mut buf = vec![0u8; 1 << 20];
    match what[0] {
        UPLOAD => {
            let mut got = 0u64;
            while let Ok(n) = recv.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                got += n as u64;
            }
            let _ = send.write_all(&got.to_be_bytes()).await;
            let _ = send.close().await;
        }
        DOWNLOAD => {
            let mut sent = 0u64;
            while sent < TRANSFER {
                let n = (TRANSFER - sent).min(buf.len() as u64) as usize;
                if send.write_all(&buf[..n]).await.is_err() {
                    return;
                }
                sent += n as u64;
            }
            let _ = send.close().await;
        }
        _ => {}
    }
}

/// A host that serves streams ([`serve`]) and echoes datagrams, and a
/// client admitted to it.
fn setup() -> (Established<Tunnel>, tempfile::TempDir) {
    let host_ex = executor("tunnel-host");
    let client_ex = executor("tunnel-client");
    let identity = HostIdentity::generate().unwrap();
    let tls = Arc::new(quic::server_tls_config(&identity).unwrap());
    let listener =
        std::net::TcpListener::bind(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = smol::net::TcpListener::try_from(listener).unwrap();
    let spawn_on = host_ex.clone();
    host_ex
        .spawn(tunnel::serve_tcp_on(
            listener,
            tls,
            SharedCaps::default(),
            |_| None,
            Arc::new(Mutex::new(AttemptLimiter::default())),
            move |established: Established<Tunnel>| {
                let link = established.link;
                let streams = link.clone();
                let ex = spawn_on.clone();
                spawn_on
                    .spawn(async move {
                        while let Ok((send, recv)) = streams.accept_bi().await {
                            ex.spawn(serve(send, recv)).detach();
                        }
                    })
                    .detach();
                spawn_on
                    .spawn(async move {
                        let _control = (established.control_send, established.control_recv);
                        while let Ok(datagram) = link.read_datagram().await {
                            let _ = link.send_datagram(datagram);
                        }
                    })
                    .detach();
            },
            Spawner::Executor(host_ex.clone()),
        ))
        .detach();
    let dir = tempfile::tempdir().unwrap();
    let pins = PinStore::at(dir.path().join(KNOWN_HOSTS_FILE_NAME));
    let client = smol::block_on(tunnel::connect_on(
        addr,
        "bench",
        None,
        &pins,
        &Spawner::Executor(client_ex),
    ))
    .unwrap();
    (client, dir)
}

fn stream_throughput(c: &mut Criterion) {
    let (client, _dir) = setup();
    let link = client.link.clone();
    let mut group = c.benchmark_group("tunnel stream 100 MiB");
    group.sample_size(10).measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Bytes(TRANSFER));
    let chunk = vec![7u8; 1 << 20];
    group.bench_function("client to host", |b| {
        b.iter(|| {
            smol::block_on(async {
                let (mut send, mut recv) = link.open_bi().await.unwrap();
                send.write_all(&[UPLOAD]).await.unwrap();
                for _ in 0..(TRANSFER / chunk.len() as u64) {
                    send.write_all(&chunk).await.unwrap();
                }
                send.close().await.unwrap();
                let mut got = [0u8; 8];
                recv.read_exact(&mut got).await.unwrap();
                assert_eq!(u64::from_be_bytes(got), TRANSFER);
            })
        })
    });
    group.bench_function("host to client", |b| {
        let mut buf = vec![0u8; 1 << 20];
        b.iter(|| {
            smol::block_on(async {
                let (mut send, mut recv) = link.open_bi().await.unwrap();
                send.write_all(&[DOWNLOAD]).await.unwrap();
                let mut got = 0u64;
                loop {
                    let n = recv.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    got += n as u64;
                }
                assert_eq!(got, TRANSFER);
            })
        })
    });
    group.finish();
}

fn datagram_round_trip(c: &mut Criterion) {
    let (client, _dir) = setup();
    let link = client.link.clone();
    let datagram = Bytes::from(vec![5u8; 1200]);
    c.bench_function("tunnel datagram round trip (1200 bytes)", |b| {
        b.iter(|| {
            smol::block_on(async {
                link.send_datagram(datagram.clone()).unwrap();
                let echoed = link.read_datagram().await.unwrap();
                assert_eq!(echoed.len(), 1200);
            })
        })
    });
}

/// A video frame's worth of datagrams (25 fragments of 1200 bytes, a
/// 640x480 JPEG) sent at once and echoed: the queued fragments travel as
/// BATCH messages (`tunnel::datagrams`), one WebSocket frame and write
/// instead of one per fragment.
fn datagram_burst_round_trip(c: &mut Criterion) {
    let (client, _dir) = setup();
    let link = client.link.clone();
    let datagram = Bytes::from(vec![5u8; 1200]);
    c.bench_function("tunnel video frame round trip (25 x 1200 bytes)", |b| {
        b.iter(|| {
            smol::block_on(async {
                for _ in 0..25 {
                    link.send_datagram(datagram.clone()).unwrap();
                }
                for _ in 0..25 {
                    assert_eq!(link.read_datagram().await.unwrap().len(), 1200);
                }
            })
        })
    });
}

/// The same round trip while the client uploads without pause on a stream
/// of the same connection: what a file transfer adds to media latency
/// (head-of-line blocking in TCP, bounded by the writer's priority and
/// `TCP_NOTSENT_LOWAT`).
fn datagram_round_trip_during_upload(c: &mut Criterion) {
    let (client, _dir) = setup();
    let link = client.link.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let uploader = {
        let (link, stop) = (link.clone(), stop.clone());
        std::thread::spawn(move || {
            smol::block_on(async {
                let (mut send, _recv) = link.open_bi().await.unwrap();
                send.write_all(&[UPLOAD]).await.unwrap();
                let chunk = vec![7u8; 1 << 20];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    send.write_all(&chunk).await.unwrap();
                }
                send.close().await.unwrap();
            })
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let datagram = Bytes::from(vec![5u8; 1200]);
    c.bench_function("tunnel datagram round trip during an upload (1200 bytes)", |b| {
        b.iter(|| {
            smol::block_on(async {
                link.send_datagram(datagram.clone()).unwrap();
                let echoed = link.read_datagram().await.unwrap();
                assert_eq!(echoed.len(), 1200);
            })
        })
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    uploader.join().unwrap();
}

criterion_group!(
    benches,
    stream_throughput,
    datagram_round_trip,
    datagram_burst_round_trip,
    datagram_round_trip_during_upload
);
criterion_main!(benches);
