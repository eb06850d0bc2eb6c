//! The TLS/TCP tunnel (issue 14's fallback) as a whole link, over real
//! loopback TCP: admission and pinning, control, datagrams, streams with FIN
//! and flow control, caps, and bounded memory against a peer that stops
//! reading. Run inside a network namespace (scripts/test.sh).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use bytes::Bytes;
use sapora::proto::{self, ChatSend, MsgType};
use sapora::transport::admission;
use sapora::transport::cert::{Fingerprint, HostIdentity};
use sapora::transport::fallback::{self, WsPipe};
use sapora::transport::limit::{AttemptLimiter, ConnectionCaps, SharedCaps};
use sapora::transport::link::{Established, LinkRecv, LinkSend, TransportKind};
use sapora::transport::pake::{Passcode, Proof};
use sapora::transport::pin::{KNOWN_HOSTS_FILE_NAME, KnownHosts, PinError, PinStore, host_key};
use sapora::transport::quic::{self, Trust};
use sapora::transport::tunnel::mux::{self, MAX_CHUNK, STREAM_WINDOW};
use sapora::transport::tunnel::{self, Tunnel, TunnelError};
use smol::io::{AsyncReadExt, AsyncWriteExt};

const LOOPBACK_ANY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const ROOM: &str = "Standup";

/// Every test body runs under this deadline: no test may hang.
fn run<T>(body: impl std::future::Future<Output = T>) -> T {
    smol::block_on(smol::future::or(body, async {
        smol::Timer::after(Duration::from_secs(60)).await;
        panic!("test did not finish within 60 s");
    }))
}

struct TestHost {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    links: smol::channel::Receiver<Established<Tunnel>>,
    caps: SharedCaps,
    _task: smol::Task<()>,
}

impl TestHost {
    async fn link(&self) -> Established<Tunnel> {
        let next = smol::future::or(async { self.links.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        });
        next.await.expect("the host admits the client within 10 s")
    }
}

/// A tunnel host whose room has `passcode` (None: open), with `caps`.
fn start_host(passcode: Option<&str>, caps: ConnectionCaps) -> TestHost {
    start_host_on(passcode, caps, tunnel::Spawner::Global)
}

/// [`start_host`] with the host's per-connection tasks on `spawner`.
fn start_host_on(
    passcode: Option<&str>,
    caps: ConnectionCaps,
    spawner: tunnel::Spawner,
) -> TestHost {
    let identity = HostIdentity::generate().unwrap();
    let tls = Arc::new(quic::server_tls_config(&identity).unwrap());
    let listener = std::net::TcpListener::bind(LOOPBACK_ANY).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = smol::net::TcpListener::try_from(listener).unwrap();
    let (tx, links) = smol::channel::unbounded();
    let passcode = passcode.map(|p| Passcode::new(p).unwrap());
    let caps = SharedCaps::new(caps);
    let task = smol::spawn(tunnel::serve_tcp_on(
        listener,
        tls,
        caps.clone(),
        move |room| if room == ROOM { passcode.clone() } else { None },
        Arc::new(Mutex::new(AttemptLimiter::default())),
        move |link| {
            let _ = tx.try_send(link);
        },
        spawner,
    ));
    TestHost { addr, fingerprint: identity.fingerprint(), links, caps, _task: task }
}

fn pins() -> (tempfile::TempDir, PinStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = PinStore::at(dir.path().join(KNOWN_HOSTS_FILE_NAME));
    (dir, store)
}

async fn join(host: &TestHost, pins: &PinStore) -> Established<Tunnel> {
    tunnel::connect(host.addr, ROOM, None, pins).await.expect("client admitted")
}

/// Byte `i` of the test pattern (not periodic at any power of two).
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 13)) as u8
}

async fn write_pattern(send: &mut LinkSend, len: u64) {
    let mut sent = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    while sent < len {
        let n = (len - sent).min(buf.len() as u64) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern(sent + k as u64);
        }
        send.write_all(&buf[..n]).await.unwrap();
        sent += n as u64;
    }
}

/// Reads to EOF, checking the pattern; returns the length.
async fn read_pattern(recv: &mut LinkRecv) -> u64 {
    let mut got = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = recv.read(&mut buf).await.unwrap();
        if n == 0 {
            return got;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, pattern(got + k as u64), "byte {} differs", got + k as u64);
        }
        got += n as u64;
    }
}

#[test]
fn control_and_datagrams_flow_both_ways_after_tofu_admission() {
    run(async {
        let host = start_host(None, ConnectionCaps::default());
        let (_dir, store) = pins();
        let mut client = join(&host, &store).await;
        let mut server = host.link().await;
        assert_eq!(client.fingerprint, Some(host.fingerprint));
        assert_eq!(store.load().unwrap().get(&host_key(host.addr)), Some(host.fingerprint));
        assert_eq!(client.admission.proof, Proof::None);
        assert_eq!(client.link.kind(), TransportKind::Tls);
        assert_eq!(client.link.verification_code(), server.link.verification_code());
        assert_eq!(client.link.remote_address(), host.addr);

        // Control: a round trip of bytes in both directions.
        client.control_send.write_all(b"hello over TLS").await.unwrap();
        let mut buf = [0u8; 14];
        server.control_recv.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello over TLS");
        server.control_send.write_all(b"welcome").await.unwrap();
        let mut buf = [0u8; 7];
        client.control_recv.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"welcome");

        // Today's control frames pass through unchanged, also a 3 MiB one
        // (larger than the stream window: it flows as the reader reads).
        let mut frame = Vec::new();
        let chat = ChatSend { id: 1, to: None, text: "over TLS".into() };
        proto::encode_frame(MsgType::ChatSend, 7, &chat, &mut frame);
        let big = ChatSend { id: 2, to: None, text: "x".repeat(3 << 20) };
        proto::encode_frame(MsgType::ChatSend, 8, &big, &mut frame);
        let (write, read) = smol::future::zip(client.control_send.write_all(&frame), async {
            let mut frames = sapora::transport::framed::FrameReader::new(&mut server.control_recv);
            let first = frames.next(|_| 4 << 20).await.unwrap();
            let second = frames.next(|_| 4 << 20).await.unwrap();
            (first.header.seq, first.payload.len(), second.header.seq, second.payload.len())
        })
        .await;
        write.unwrap();
        let (seq1, _, seq2, len2) = read;
        assert_eq!((seq1, seq2), (7, 8));
        assert!(len2 > 3 << 20);

        // Datagrams both ways; the client's from a plain thread (a mixer).
        let sender = client.link.clone();
        std::thread::spawn(move || {
            for i in 0u8..10 {
                sender.send_datagram(Bytes::from(vec![i; 1200])).unwrap();
            }
        })
        .join()
        .unwrap();
        for i in 0u8..10 {
            assert_eq!(server.link.read_datagram().await.unwrap(), vec![i; 1200]);
        }
        server.link.send_datagram(Bytes::from_static(b"video")).unwrap();
        assert_eq!(client.link.read_datagram().await.unwrap(), &b"video"[..]);
        let too_big = Bytes::from(vec![0; client.link.max_datagram_size() + 1]);
        assert!(client.link.send_datagram(too_big).is_err());

        // A second connection is trusted through the pin now stored.
        let again = join(&host, &store).await;
        assert_eq!(again.fingerprint, Some(host.fingerprint));

        // Closing: the peer sees the reason, every call fails after.
        client.link.close("bye");
        smol::future::or(server.link.closed(), async {
            smol::Timer::after(Duration::from_secs(5)).await;
            panic!("the host did not see the close");
        })
        .await;
        let reason = server.link.close_reason().unwrap().to_string();
        assert!(reason.contains("bye"), "{reason}");
        assert!(server.link.read_datagram().await.is_err());
        assert!(server.link.accept_bi().await.is_err());
        assert!(client.link.send_datagram(Bytes::from_static(b"x")).is_err());
    });
}

#[test]
fn eight_concurrent_streams_each_way_carry_their_bytes_and_fin() {
    run(async {
        let host = start_host(None, ConnectionCaps::default());
        let (_dir, store) = pins();
        let client = join(&host, &store).await;
        let server = host.link().await;
        // The host echoes every stream the client opens, then finishes it.
        let echo_link = server.link.clone();
        let echo = smol::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let (mut send, mut recv) = echo_link.accept_bi().await.unwrap();
                tasks.push(smol::spawn(async move {
                    smol::io::copy(&mut recv, &mut send).await.unwrap();
                    send.close().await.unwrap();
                }));
            }
            for t in tasks {
                t.await;
            }
        });
        // The test's own (CPU-heavy) tasks run on this thread, the tunnel's
        // on smol's executor.
        let local = smol::LocalExecutor::new();
        let mut transfers = Vec::new();
        for s in 0..8u64 {
            let link = client.link.clone();
            transfers.push(local.spawn(async move {
                let (mut send, mut recv) = link.open_bi().await.unwrap();
                let len = 300_000 + s * 77_777;
                let writer = async {
                    write_pattern(&mut send, len).await;
                    send.close().await.unwrap();
                };
                let (_, got) = smol::future::zip(writer, read_pattern(&mut recv)).await;
                assert_eq!(got, len, "stream {s}");
            }));
        }
        local
            .run(async {
                for t in transfers {
                    t.await;
                }
            })
            .await;
        echo.await;
        // Streams the host opens reach the client too.
        let (mut send, _recv) = server.link.open_bi().await.unwrap();
        write_pattern(&mut send, 1000).await;
        send.close().await.unwrap();
        let (_s, mut recv) = client.link.accept_bi().await.unwrap();
        assert_eq!(read_pattern(&mut recv).await, 1000);
    });
}

#[test]
fn datagrams_keep_flowing_during_a_64_mib_stream() {
    const LEN: u64 = 64 * 1024 * 1024;
    run(async {
        let host = start_host(None, ConnectionCaps::default());
        let (_dir, store) = pins();
        let client = join(&host, &store).await;
        let server = host.link().await;
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A mixer-like thread sends a datagram every 5 ms (1200 bytes, its
        // sequence number first) for as long as the transfer runs.
        let mixer = {
            let (link, done) = (client.link.clone(), done.clone());
            std::thread::spawn(move || {
                let mut seq = 0u32;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut d = vec![0u8; 1200];
                    d[..4].copy_from_slice(&seq.to_be_bytes());
                    link.send_datagram(Bytes::from(d)).unwrap();
                    seq += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                seq
            })
        };
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let receiver = {
            let (link, arrivals) = (server.link.clone(), arrivals.clone());
            smol::spawn(async move {
                while let Ok(d) = link.read_datagram().await {
                    arrivals.lock().unwrap().push(Instant::now());
                    drop(d);
                }
            })
        };
        let sink = async {
            let (_send, mut recv) = server.link.accept_bi().await.unwrap();
            read_pattern(&mut recv).await
        };
        let (mut send, _recv) = client.link.open_bi().await.unwrap();
        let start = Instant::now();
        let source = async {
            write_pattern(&mut send, LEN).await;
            send.close().await.unwrap();
        };
        let (_, got) = smol::future::zip(source, sink).await;
        assert_eq!(got, LEN);
        let end = Instant::now();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        let sent = mixer.join().unwrap();
        smol::Timer::after(Duration::from_millis(200)).await;
        client.link.close("done");
        receiver.await;
        let arrivals = arrivals.lock().unwrap().clone();
        let during: Vec<Instant> =
            arrivals.iter().copied().filter(|t| *t >= start && *t <= end).collect();
        let transfer = end - start;
        eprintln!(
            "64 MiB in {transfer:?}; {} of {sent} datagrams arrived, {} during the transfer",
            arrivals.len(),
            during.len()
        );
        // Delivery continues during the transfer: no gap over 250 ms
        // (the sender sends every 5 ms), and (almost) nothing is lost.
        let mut previous = start;
        for t in during.iter().copied().chain([end]) {
            let gap = t - previous;
            assert!(gap < Duration::from_millis(250), "no datagram for {gap:?} mid-transfer");
            previous = t;
        }
        assert!(arrivals.len() as u32 * 10 >= sent * 9, "{} of {sent}", arrivals.len());
    });
}

#[test]
fn wrong_passcode_and_changed_pin_are_refused() {
    run(async {
        let host = start_host(Some("hunter2"), ConnectionCaps::default());
        let (_dir, store) = pins();
        let wrong = Passcode::new("hunter3").unwrap();
        let err = tunnel::connect(host.addr, ROOM, Some(&wrong), &store).await.err().unwrap();
        assert!(err.is_passcode_refusal(), "{err}");
        assert!(err.to_string().to_lowercase().contains("passcode"), "{err}");
        let err = tunnel::connect(host.addr, ROOM, None, &store).await.err().unwrap();
        assert!(err.is_passcode_refusal(), "{err}");
        assert!(host.links.try_recv().is_err(), "no link reached the host");
        let right = Passcode::new("hunter2").unwrap();
        let ok = tunnel::connect(host.addr, ROOM, Some(&right), &store).await.unwrap();
        assert_eq!(ok.admission.proof, Proof::Passcode);

        // The pin stored for this address is another certificate's.
        let (_dir2, store) = pins();
        let mut known = KnownHosts::default();
        let other = HostIdentity::generate().unwrap().fingerprint();
        known.pin(&host_key(host.addr), other);
        store.save(&known).unwrap();
        let err = tunnel::connect(host.addr, ROOM, Some(&right), &store).await.err().unwrap();
        let TunnelError::Pin(PinError::Changed(changed)) = &err else { panic!("{err:?}") };
        assert_eq!((changed.pinned, changed.presented), (other, host.fingerprint));
    });
}

#[test]
fn connection_caps_are_enforced_and_given_back() {
    run(async {
        let host = start_host(None, ConnectionCaps::new(2, 16));
        let (_dir, store) = pins();
        let first = join(&host, &store).await;
        let _second = join(&host, &store).await;
        assert_eq!(host.caps.snapshot().open_total(), 2);
        let err = tunnel::connect(host.addr, ROOM, None, &store).await.err().unwrap();
        assert!(matches!(err, TunnelError::Fallback(_)), "{err:?}");
        // Closing one gives its slot back.
        first.link.close("leaving");
        drop(first);
        // Within a second (not the 5 s keep-alive tick).
        let deadline = Instant::now() + Duration::from_secs(1);
        while host.caps.snapshot().open_total() > 1 {
            assert!(Instant::now() < deadline, "the slot was not given back");
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        join(&host, &store).await;
    });
}

/// A connection that ends, closed by the client or cut, ends the host's
/// reader and writer tasks: they run on an executor of their own here, which
/// must then hold no task. (The reader used to go on polling a WebSocket that
/// had ended, which answers at once, forever: a busy loop per departed
/// member, which a browser tab closing also left behind.)
#[test]
fn a_closed_or_cut_connection_ends_the_hosts_tasks() {
    let executor = Arc::new(smol::Executor::new());
    let (stop_tx, stop_rx) = smol::channel::bounded::<()>(1);
    let driver = {
        let executor = executor.clone();
        std::thread::spawn(move || smol::block_on(executor.run(stop_rx.recv())))
    };
    run(async {
        let host = start_host_on(
            None,
            ConnectionCaps::new(8, 16),
            tunnel::Spawner::Executor(executor.clone()),
        );
        let (_dir, store) = pins();
        // The host's ends stay held: dropping one would close it from the
        // host's side, which ends its tasks by another path.
        let mut held = Vec::new();
        for how in ["closed", "cut"] {
            if how == "closed" {
                let client = join(&host, &store).await;
                held.push(host.link().await);
                assert!(!executor.is_empty(), "the host's tasks for the link run on it");
                client.link.close("leaving");
            } else {
                // A raw client, admitted, then dropped: its TCP connection
                // ends without a WebSocket close frame.
                let fp = host.fingerprint;
                let mut conn = fallback::connect(host.addr, Trust::Pinned(fp)).await.unwrap();
                let exporter = conn.passcode_exporter();
                admission::client(&mut WsPipe(&mut conn.ws), exporter, ROOM, None).await.unwrap();
                held.push(host.link().await);
                assert!(!executor.is_empty(), "the host's tasks for the link run on it");
                drop(conn);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while !executor.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "5 s after the client {how} its connection, the host still runs its tasks"
                );
                smol::Timer::after(Duration::from_millis(20)).await;
            }
            let ended = held.last().unwrap().link.close_reason();
            assert!(ended.is_some(), "the host's end of a {how} connection is closed");
        }
    });
    let _ = stop_tx.try_send(());
    let _ = driver.join().expect("the executor thread ends");
}

#[test]
fn a_peer_that_stops_reading_cannot_grow_the_other_sides_memory() {
    run(async {
        let host = start_host(None, ConnectionCaps::default());
        // A raw client: admitted, opens one stream, then never reads.
        let mut conn = fallback::connect(host.addr, Trust::Pinned(host.fingerprint)).await.unwrap();
        let exporter = conn.passcode_exporter();
        admission::client(&mut WsPipe(&mut conn.ws), exporter, ROOM, None).await.unwrap();
        conn.ws.send(Message::binary(vec![mux::kind::OPEN, 0, 0, 0, 1])).await.unwrap();
        let mut server = host.link().await;
        let (mut send, _recv) = server.link.accept_bi().await.unwrap();
        // The host pushes a file, control bytes and datagrams at it.
        let file = smol::spawn(async move {
            let chunk = vec![1u8; 1 << 20];
            for _ in 0..100 {
                send.write_all(&chunk).await.unwrap();
            }
        });
        let control = smol::spawn(async move {
            let chunk = vec![2u8; 1 << 20];
            for _ in 0..100 {
                server.control_send.write_all(&chunk).await.unwrap();
            }
        });
        for _ in 0..20_000 {
            server.link.send_datagram(Bytes::from(vec![3u8; 1000])).unwrap();
        }
        let mut peak = 0;
        for _ in 0..20 {
            smol::Timer::after(Duration::from_millis(50)).await;
            peak = peak.max(server.link.buffered_bytes());
        }
        // At most one window per stream (file and control) and the datagram
        // queue, plus a chunk of slack.
        let bound = 2 * STREAM_WINDOW as usize + mux::DATAGRAM_QUEUE_BYTES + MAX_CHUNK;
        assert!(peak <= bound, "{peak} bytes buffered, bound {bound}");
        assert!(server.link.datagrams_dropped() > 0, "newest wins once the queue is full");
        assert!(!file.is_finished() && !control.is_finished(), "writers wait for credit");
        assert!(server.link.close_reason().is_none());
        drop((file, control, conn));
    });
}

#[test]
fn an_application_that_reads_nothing_holds_only_its_windows_and_the_newest_datagrams() {
    run(async {
        let host = start_host(None, ConnectionCaps::default());
        let (_dir, store) = pins();
        let client = join(&host, &store).await;
        // The host's application takes the link and reads nothing from it.
        let server = host.link().await;
        let (mut send, _recv) = client.link.open_bi().await.unwrap();
        let file = smol::spawn(async move {
            let chunk = vec![1u8; 1 << 20];
            for _ in 0..100 {
                send.write_all(&chunk).await.unwrap();
            }
        });
        let mut control_send = client.control_send;
        let control = smol::spawn(async move {
            let chunk = vec![2u8; 1 << 20];
            for _ in 0..100 {
                control_send.write_all(&chunk).await.unwrap();
            }
        });
        const SENT: u32 = 5000;
        for seq in 0..SENT {
            let mut d = vec![0u8; 1000];
            d[..4].copy_from_slice(&seq.to_be_bytes());
            client.link.send_datagram(Bytes::from(d)).unwrap();
            if seq % 100 == 99 {
                smol::Timer::after(Duration::from_millis(1)).await;
            }
        }
        let (mut host_peak, mut client_peak) = (0, 0);
        for _ in 0..20 {
            smol::Timer::after(Duration::from_millis(50)).await;
            host_peak = host_peak.max(server.link.buffered_bytes());
            client_peak = client_peak.max(client.link.buffered_bytes());
        }
        let windows = 2 * STREAM_WINDOW as usize + MAX_CHUNK;
        assert!(host_peak <= windows, "host holds {host_peak} bytes, bound {windows}");
        let bound = windows + mux::DATAGRAM_QUEUE_BYTES;
        assert!(client_peak <= bound, "client holds {client_peak} bytes, bound {bound}");
        assert!(!file.is_finished() && !control.is_finished(), "writers wait for credit");
        // The host kept the newest datagrams, at most its queue's worth.
        let mut seqs = Vec::new();
        loop {
            let next = smol::future::or(async { server.link.read_datagram().await.ok() }, async {
                smol::Timer::after(Duration::from_millis(300)).await;
                None
            });
            let Some(d) = next.await else { break };
            seqs.push(u32::from_be_bytes(d[..4].try_into().unwrap()));
        }
        assert!(!seqs.is_empty() && seqs.len() <= tunnel::RECV_DATAGRAMS, "{}", seqs.len());
        assert_eq!(seqs.last(), Some(&(SENT - 1)), "the newest datagram survives");
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert!(server.link.close_reason().is_none() && client.link.close_reason().is_none());
    });
}

#[test]
fn pings_keep_an_idle_link_open_and_a_silent_peer_times_out() {
    use sapora::transport::tunnel::mux::{CloseReason, Side, Timing};
    run(async {
        // A host built by hand with a short rule: ping after 100 ms of
        // silence, close after 1 s without hearing anything.
        let timing =
            Timing { keep_alive: Duration::from_millis(100), idle_timeout: Duration::from_secs(1) };
        let identity = HostIdentity::generate().unwrap();
        let tls = Arc::new(quic::server_tls_config(&identity).unwrap());
        let listener = smol::net::TcpListener::bind(LOOPBACK_ANY).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, links) = smol::channel::unbounded();
        let _host = smol::spawn(async move {
            let limiter = Mutex::new(AttemptLimiter::default());
            while let Ok((tcp, peer)) = listener.accept().await {
                let mut conn = fallback::accept(tcp, tls.clone()).await.unwrap();
                let exporter = conn.passcode_exporter();
                let pipe = &mut WsPipe(&mut conn.ws);
                admission::host(pipe, exporter, peer.ip(), |_| None, &limiter).await.unwrap();
                let code = conn.verification_code();
                let spawner = tunnel::Spawner::Global;
                let started =
                    Tunnel::start_with(conn.ws, Side::Host, peer, code, None, &spawner, timing);
                tx.send(started).await.unwrap();
            }
        });
        let next_link = || async {
            smol::future::or(async { links.recv().await.ok() }, async {
                smol::Timer::after(Duration::from_secs(10)).await;
                None
            })
            .await
            .expect("admitted")
        };

        // A real client answers the pings (its WebSocket pongs): after 2 s
        // of silence in both directions the link is still up.
        let (_dir, store) = pins();
        let mut client = tunnel::connect(addr, ROOM, None, &store).await.unwrap();
        let (server, _server_send, mut server_recv) = next_link().await;
        smol::Timer::after(Duration::from_secs(2)).await;
        assert_eq!(server.close_reason(), None);
        client.control_send.write_all(b"still here").await.unwrap();
        let mut buf = [0u8; 10];
        server_recv.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"still here");

        // A peer that goes silent (reads nothing, so never pongs) is closed
        // after the idle timeout.
        let mut raw = fallback::connect(addr, Trust::Pinned(identity_fingerprint(&store, addr)))
            .await
            .unwrap();
        let exporter = raw.passcode_exporter();
        admission::client(&mut WsPipe(&mut raw.ws), exporter, ROOM, None).await.unwrap();
        let (silent, _s, _r) = next_link().await;
        let started = Instant::now();
        smol::future::or(silent.closed(), async {
            smol::Timer::after(Duration::from_secs(5)).await;
            panic!("the silent peer was not closed");
        })
        .await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(900), "closed after {waited:?}");
        assert_eq!(silent.close_reason(), Some(CloseReason::TimedOut));
        assert!(silent.send_datagram(Bytes::from_static(b"x")).is_err());
        assert_eq!(server.close_reason(), None, "the answering client is still connected");
        drop(raw);
    });
}

/// The fingerprint `store` pinned for `addr`.
fn identity_fingerprint(store: &PinStore, addr: SocketAddr) -> Fingerprint {
    store.load().unwrap().get(&host_key(addr)).expect("pinned on first use")
}

/// A `Tunnel` goes where a `quinn::Connection` goes: shared across threads,
/// its futures spawned on multi-threaded executors.
#[test]
fn tunnels_and_their_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    fn check(link: &Tunnel) {
        send_sync(link);
        send(&link.open_bi());
        send(&link.accept_bi());
        send(&link.read_datagram());
        send(&link.closed());
    }
    let _ = check;
}

/// The host's TCP port cuts off a client that sends no TLS or only part of
/// a request head within the time limit, and such connections hold their
/// slots in the caps until then (so a slow client cannot open without
/// bound). Without a web service, any path but the tunnel's is a 404.
#[test]
fn slow_heads_are_cut_off_and_hold_their_slots_until_then() {
    use futures_rustls::TlsConnector;
    use sapora::transport::cert::SERVER_NAME;
    run(async {
        const LIMIT: Duration = Duration::from_secs(3);
        let identity = HostIdentity::generate().unwrap();
        let tls = Arc::new(fallback::server_tls_config(&identity).unwrap());
        let listener = smol::net::TcpListener::bind(LOOPBACK_ANY).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let caps = SharedCaps::new(ConnectionCaps::new(2, 16));
        let limiter = Arc::new(Mutex::new(AttemptLimiter::default()));
        let service = tunnel::TcpService {
            head_timeout: LIMIT,
            ..tunnel::TcpService::new(tls, caps.clone(), limiter)
        };
        let _host = smol::spawn(tunnel::serve_tcp_with(listener, service, |_| None, |_| {}));
        let browser_tls = || async {
            let (mut config, _) =
                quic::client_tls_config(Trust::Pinned(identity.fingerprint())).unwrap();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let tcp = smol::net::TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap();
            TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap()
        };
        // Until the peer closes (EOF or reset): how long that took.
        async fn closed_after(mut s: impl smol::io::AsyncRead + Unpin) -> Duration {
            let started = Instant::now();
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            started.elapsed()
        }

        // One client never starts TLS, another sends half a head.
        let started = Instant::now();
        let silent = smol::net::TcpStream::connect(addr).await.unwrap();
        let mut slow = browser_tls().await;
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        assert_eq!(caps.snapshot().open_total(), 2);
        // Both hold a slot: a third from the same address is closed at once.
        let third = smol::net::TcpStream::connect(addr).await.unwrap();
        let refused = closed_after(third).await;
        assert!(refused < LIMIT / 2, "the third connection was closed after {refused:?}");
        // The two are cut off at the limit, and give their slots back.
        smol::future::zip(closed_after(silent), closed_after(slow)).await;
        let waited = started.elapsed();
        assert!(waited >= LIMIT - Duration::from_millis(100), "cut off after {waited:?}");
        assert!(waited < LIMIT * 2, "cut off after {waited:?}");
        let deadline = Instant::now() + Duration::from_secs(2);
        while caps.snapshot().open_total() > 0 && Instant::now() < deadline {
            smol::Timer::after(Duration::from_millis(20)).await;
        }
        assert_eq!(caps.snapshot().open_total(), 0, "slots given back");

        // A complete request is answered: no web service here, so 404.
        let mut tls = browser_tls().await;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        let _ = tls.read_to_string(&mut answer).await;
        assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    });
}
