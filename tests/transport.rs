//! Transport v2 foundation over real QUIC on 127.0.0.1 (port 0): pinned
//! certificates, the control stream carrying today's frames, datagrams, the
//! passcode check and its rate limit, and a TLS-terminating relay.
//!
//! The host here is a small echo service built only from `transport::quic`
//! (the real services switch over in a later session).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use sapora::proto::{self, ChatSend, MsgType, limits};
use sapora::transport::admission::{self, AdmissionError};
use sapora::transport::cert::{Fingerprint, HostIdentity};
use sapora::transport::limit::{AttemptLimiter, SharedCaps};
use sapora::transport::pake::{Admission, PakeError, Passcode, Proof, RefuseReason};
use sapora::transport::pin::{KNOWN_HOSTS_FILE_NAME, KnownHosts, PinError, PinStore, Verdict};
use sapora::transport::quic::{self, QuicError, Trust};
use smol::stream::StreamExt;

const LOOPBACK_ANY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
const ROOM: &str = "Standup";

/// Every test body runs under this deadline: no test may hang.
fn run<T>(body: impl std::future::Future<Output = T>) -> T {
    smol::block_on(smol::future::or(body, async {
        smol::Timer::after(Duration::from_secs(30)).await;
        panic!("test did not finish within 30 s");
    }))
}

/// What the host saw of one connection.
#[derive(Debug)]
struct HostOutcome {
    admission: Result<Admission, String>,
    code: String,
}

struct TestHost {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    outcomes: smol::channel::Receiver<HostOutcome>,
    _task: smol::Task<()>,
}

impl TestHost {
    async fn outcome(&self) -> HostOutcome {
        self.outcomes.recv().await.expect("host reports each connection")
    }
}

/// A host whose room has `passcode` (None: open). After admission it echoes
/// control frames on the control stream and datagrams.
fn start_host(passcode: Option<&str>) -> TestHost {
    let identity = HostIdentity::generate().unwrap();
    let endpoint = quic::host_endpoint(LOOPBACK_ANY, &identity).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, outcomes) = smol::channel::unbounded();
    let limiter = Arc::new(Mutex::new(AttemptLimiter::default()));
    let caps = SharedCaps::default();
    let passcode = passcode.map(|p| Passcode::new(p).unwrap());
    let task = smol::spawn(async move {
        while let Some(accepted) = quic::accept(&endpoint, &caps).await {
            let (tx, limiter, passcode) = (tx.clone(), limiter.clone(), passcode.clone());
            smol::spawn(async move {
                let _slot = accepted.slot;
                let Ok(conn) = accepted.connecting.await else { return };
                let Ok((mut send, mut recv)) = conn.accept_bi().await else { return };
                let admission = quic::host_admission(
                    &conn,
                    &mut send,
                    &mut recv,
                    |room| if room == ROOM { passcode.clone() } else { None },
                    &limiter,
                )
                .await;
                let code = quic::verification_code(&conn).unwrap().to_string();
                let admitted = admission.is_ok();
                let outcome = HostOutcome { admission: admission.map_err(|e| e.to_string()), code };
                let _ = tx.send(outcome).await;
                if !admitted {
                    // Give the refusal time to reach the client.
                    let _ = smol::future::or(conn.closed(), async {
                        smol::Timer::after(Duration::from_secs(2)).await;
                        quinn::ConnectionError::TimedOut
                    })
                    .await;
                    return;
                }
                let datagrams = conn.clone();
                smol::spawn(async move {
                    while let Ok(datagram) = datagrams.read_datagram().await {
                        let _ = datagrams.send_datagram(datagram);
                    }
                })
                .detach();
                // The echo's sequence numbers count frames like the
                // client's, so they match what came in.
                let mut frames = sapora::transport::framed::FrameReader::new(&mut recv);
                let mut echo = sapora::transport::framed::FrameWriter::new(&mut send);
                while let Ok(frame) = frames.next(|_| limits::CONTROL_FROM_CLIENT).await {
                    if echo.send(frame.header.kind, &frame.payload).await.is_err() {
                        break;
                    }
                }
                conn.closed().await;
            })
            .detach();
        }
    });
    TestHost { addr, fingerprint: identity.fingerprint(), outcomes, _task: task }
}

/// A client's admitted (or refused) connection.
struct Joined {
    connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    admission: Result<Admission, AdmissionError>,
    _endpoint: quinn::Endpoint,
}

async fn join(addr: SocketAddr, trust: Trust, passcode: Option<&str>) -> Result<Joined, QuicError> {
    let endpoint = quic::client_endpoint(LOOPBACK_ANY)?;
    let connected = quic::connect(&endpoint, addr, trust).await?;
    let connection = connected.connection;
    let (mut send, mut recv) = connection.open_bi().await?;
    let passcode = passcode.map(|p| Passcode::new(p).unwrap());
    let admission =
        quic::client_admission(&connection, &mut send, &mut recv, ROOM, passcode.as_ref()).await;
    Ok(Joined { connection, send, recv, admission, _endpoint: endpoint })
}

#[test]
fn control_frames_and_datagrams_flow_after_the_passcode_check() {
    run(async {
        let host = start_host(Some("hunter2"));
        let mut joined = join(host.addr, Trust::Pinned(host.fingerprint), Some("hunter2"))
            .await
            .expect("connects to the pinned host");
        let expected = Admission { room: ROOM.into(), proof: Proof::Passcode };
        assert_eq!(joined.admission.as_ref().unwrap(), &expected);
        let seen = host.outcome().await;
        assert_eq!(seen.admission, Ok(expected));
        // Both ends of one TLS session show the same verification code.
        let code = quic::verification_code(&joined.connection).unwrap().to_string();
        assert_eq!(code, seen.code);
        assert_eq!(code.len(), 7, "{code}");

        // Today's control frames travel unchanged on the control stream.
        let mut out = Vec::new();
        for (seq, text) in ["hello", "über", &"x".repeat(3000)].into_iter().enumerate() {
            let chat = ChatSend { id: seq as u32, to: None, text: text.to_string() };
            proto::encode_frame(MsgType::ChatSend, seq as u16, &chat, &mut out);
        }
        smol::io::AsyncWriteExt::write_all(&mut joined.send, &out).await.unwrap();
        let mut frames = sapora::transport::framed::FrameReader::new(&mut joined.recv);
        for (seq, text) in ["hello", "über", &"x".repeat(3000)].into_iter().enumerate() {
            let frame = frames.next(|_| limits::CONTROL_FROM_HOST).await.unwrap();
            let header = frame.header;
            assert_eq!((header.kind, header.seq), (MsgType::ChatSend as u8, seq as u16));
            let chat: ChatSend = proto::decode_payload(&frame.payload).unwrap();
            assert_eq!(chat.text, text);
        }

        // Datagrams: every one comes back (loopback loses nothing).
        let max = joined.connection.max_datagram_size().expect("datagrams are enabled");
        // QUIC starts at a 1200-byte MTU (RFC 9000 §14), so before path-MTU
        // discovery a datagram holds about 1150 bytes: media must size its
        // packets from max_datagram_size(), not assume 1200.
        assert!(max >= 1100, "max datagram {max}");
        let mut sent: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 1000]).collect();
        for datagram in &sent {
            joined.connection.send_datagram(datagram.clone().into()).unwrap();
        }
        let mut echoed = Vec::new();
        while echoed.len() < sent.len() {
            echoed.push(joined.connection.read_datagram().await.unwrap().to_vec());
        }
        echoed.sort();
        sent.sort();
        assert_eq!(echoed, sent);
    });
}

#[test]
fn open_room_admits_without_passcode() {
    run(async {
        let host = start_host(None);
        let joined = join(host.addr, Trust::Pinned(host.fingerprint), None).await.unwrap();
        assert_eq!(joined.admission.unwrap().proof, Proof::None);
        assert_eq!(host.outcome().await.admission.unwrap().proof, Proof::None);
    });
}

#[test]
fn wrong_or_missing_passcode_is_refused_clearly() {
    run(async {
        let host = start_host(Some("hunter2"));
        let trust = Trust::Pinned(host.fingerprint);

        let joined = join(host.addr, trust, Some("hunter3")).await.unwrap();
        let err = joined.admission.unwrap_err();
        assert!(err.is_passcode_refusal(), "{err:?}");
        assert!(err.to_string().contains("passcode is wrong"), "{err}");
        let seen = host.outcome().await.admission.unwrap_err();
        assert!(seen.contains("passcode is wrong"), "{seen}");

        let joined = join(host.addr, trust, None).await.unwrap();
        let err = joined.admission.unwrap_err();
        assert!(
            matches!(
                err,
                AdmissionError::Pake(PakeError::Refused {
                    reason: RefuseReason::PasscodeRequired,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("needs a passcode"), "{err}");
        assert!(err.is_passcode_refusal());
        host.outcome().await;
    });
}

#[test]
fn sixth_wrong_passcode_is_refused_before_any_pake() {
    run(async {
        let host = start_host(Some("hunter2"));
        let trust = Trust::Pinned(host.fingerprint);
        for attempt in 1..=5 {
            let joined = join(host.addr, trust, Some("guess")).await.unwrap();
            let err = joined.admission.unwrap_err();
            assert!(
                matches!(err, AdmissionError::Pake(PakeError::WrongPasscodeOrIntercepted)),
                "attempt {attempt}: {err:?}"
            );
            host.outcome().await;
        }
        // Even the right passcode: the host refuses before running SPAKE2.
        let joined = join(host.addr, trust, Some("hunter2")).await.unwrap();
        let err = joined.admission.unwrap_err();
        let AdmissionError::Pake(PakeError::Refused {
            reason: RefuseReason::TooManyAttempts,
            retry_after_ms,
        }) = err
        else {
            panic!("{err:?}")
        };
        assert!((50_000..=60_000).contains(&retry_after_ms), "{retry_after_ms}");
        assert!(err.to_string().contains("try again in"), "{err}");
        let seen = host.outcome().await.admission.unwrap_err();
        assert!(seen.contains("before the passcode check"), "{seen}");
    });
}

#[test]
fn wrong_pinned_fingerprint_is_refused() {
    run(async {
        let host = start_host(None);
        let wrong = Fingerprint([0x5a; 32]);
        let err = join(host.addr, Trust::Pinned(wrong), None).await.err().expect("refused");
        let QuicError::PinMismatch { expected, presented } = err else { panic!("{err:?}") };
        assert_eq!((expected, presented), (wrong, host.fingerprint));
    });
}

#[test]
fn trust_on_first_use_pins_and_then_refuses_a_changed_certificate() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::at(dir.path().join(KNOWN_HOSTS_FILE_NAME));
        let host = start_host(None);
        let endpoint = quic::client_endpoint(LOOPBACK_ANY).unwrap();

        let first = quic::connect_tofu(&endpoint, host.addr, &store).await.unwrap();
        assert_eq!(first.fingerprint, host.fingerprint);
        let key = sapora::transport::pin::host_key(host.addr);
        assert_eq!(store.load().unwrap().get(&key), Some(host.fingerprint));
        let again = quic::connect_tofu(&endpoint, host.addr, &store).await.unwrap();
        assert_eq!(again.fingerprint, host.fingerprint);

        // The address now answers with another certificate (as if another
        // machine or a relay took it over): pin a different one for it.
        let mut known = KnownHosts::default();
        let old = HostIdentity::generate().unwrap().fingerprint();
        known.pin(&key, old);
        store.save(&known).unwrap();
        let err = quic::connect_tofu(&endpoint, host.addr, &store).await.unwrap_err();
        let message = err.to_string();
        let QuicError::Pin(PinError::Changed(changed)) = err else { panic!("{err:?}") };
        assert_eq!((changed.pinned, changed.presented), (old, host.fingerprint));
        assert!(message.contains("HAS CHANGED"), "{message}");
        // Nothing was re-pinned behind the user's back.
        assert_eq!(
            store.load().unwrap().check(&key, host.fingerprint),
            Verdict::Changed { pinned: old }
        );
    });
}

/// A relay that terminates TLS on both sides: its own certificate towards
/// the client (who has never seen the real host, so trusts it on first use),
/// a client connection to the host, and the control stream copied both ways.
fn start_relay(host: SocketAddr) -> (SocketAddr, smol::Task<()>) {
    let identity = HostIdentity::generate().unwrap();
    let endpoint = quic::host_endpoint(LOOPBACK_ANY, &identity).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let task = smol::spawn(async move {
        let caps = SharedCaps::default();
        let Some(accepted) = quic::accept(&endpoint, &caps).await else { return };
        let victim = accepted.connecting.await.unwrap();
        let upstream = quic::connect(&endpoint, host, Trust::FirstUse).await.unwrap().connection;
        let (mut to_victim, from_victim) = victim.accept_bi().await.unwrap();
        let (mut to_host, from_host) = upstream.open_bi().await.unwrap();
        let _ = smol::future::zip(
            smol::io::copy(from_victim, &mut to_host),
            smol::io::copy(from_host, &mut to_victim),
        )
        .await;
        victim.closed().await;
    });
    (addr, task)
}

#[test]
fn tls_terminating_relay_makes_the_passcode_check_fail() {
    run(async {
        let host = start_host(Some("hunter2"));
        let (relay, _relay_task) = start_relay(host.addr);
        // The right passcode on both ends, relayed byte for byte.
        let joined = join(relay, Trust::FirstUse, Some("hunter2")).await.unwrap();
        let err = joined.admission.unwrap_err();
        assert!(
            matches!(err, AdmissionError::Pake(PakeError::WrongPasscodeOrIntercepted)),
            "{err:?}"
        );
        assert!(err.to_string().contains("intercepting"), "{err}");
        let seen = host.outcome().await;
        assert!(seen.admission.is_err(), "{seen:?}");
        // Without a passcode the verification codes give the relay away
        // (they could match by chance with probability 1e-6).
        let code = quic::verification_code(&joined.connection).unwrap().to_string();
        assert_ne!(code, seen.code);
    });
}

#[test]
fn verification_codes_differ_through_a_relay_in_an_open_room() {
    run(async {
        let host = start_host(None);
        let (relay, _relay_task) = start_relay(host.addr);
        let joined = join(relay, Trust::FirstUse, None).await.unwrap();
        // The relay passes the open-room request through: admitted...
        assert_eq!(joined.admission.as_ref().unwrap().proof, Proof::None);
        let seen = host.outcome().await;
        // ...but the two people would read different codes (equal by chance
        // with probability 1e-6).
        let code = quic::verification_code(&joined.connection).unwrap().to_string();
        assert_ne!(code, seen.code);
    });
}

/// A fallback host (TLS over TCP + WebSocket) whose room has `passcode`;
/// after admission it echoes binary messages.
fn start_fallback_host(passcode: Option<&str>) -> TestHost {
    use sapora::transport::fallback;
    let identity = HostIdentity::generate().unwrap();
    let config = Arc::new(quic::server_tls_config(&identity).unwrap());
    let listener = std::net::TcpListener::bind(LOOPBACK_ANY).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = smol::net::TcpListener::try_from(listener).unwrap();
    let (tx, outcomes) = smol::channel::unbounded();
    let limiter = Arc::new(Mutex::new(AttemptLimiter::default()));
    let passcode = passcode.map(|p| Passcode::new(p).unwrap());
    let task = smol::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (tx, limiter, passcode, config) =
                (tx.clone(), limiter.clone(), passcode.clone(), config.clone());
            smol::spawn(async move {
                let Ok(mut conn) = fallback::accept(tcp, config).await else { return };
                let exporter = conn.passcode_exporter();
                let admission = admission::host(
                    &mut fallback::WsPipe(&mut conn.ws),
                    exporter,
                    conn.peer.ip(),
                    |room| if room == ROOM { passcode.clone() } else { None },
                    &limiter,
                )
                .await;
                let code = conn.verification_code().to_string();
                let admitted = admission.is_ok();
                let outcome = HostOutcome { admission: admission.map_err(|e| e.to_string()), code };
                let _ = tx.send(outcome).await;
                if !admitted {
                    return;
                }
                loop {
                    match conn.ws.next().await {
                        Some(Ok(message @ Message::Binary(_))) => {
                            if conn.ws.send(message).await.is_err() {
                                break;
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => break,
                    }
                }
            })
            .detach();
        }
    });
    TestHost { addr, fingerprint: identity.fingerprint(), outcomes, _task: task }
}

#[test]
fn tls_websocket_fallback_runs_the_same_admission_and_carries_frames() {
    use sapora::transport::fallback::{self, FallbackError, WsPipe};
    run(async {
        let host = start_fallback_host(Some("hunter2"));
        let trust = Trust::Pinned(host.fingerprint);

        let mut conn = fallback::connect(host.addr, trust).await.unwrap();
        assert_eq!(conn.fingerprint, Some(host.fingerprint));
        let exporter = conn.passcode_exporter();
        let passcode = Passcode::new("hunter2").unwrap();
        let admitted =
            admission::client(&mut WsPipe(&mut conn.ws), exporter, ROOM, Some(&passcode)).await;
        assert_eq!(admitted.unwrap().proof, Proof::Passcode);
        let seen = host.outcome().await;
        assert_eq!(seen.admission.unwrap().proof, Proof::Passcode);
        assert_eq!(conn.verification_code().to_string(), seen.code);
        // A control frame as one binary message, echoed.
        let mut frame = Vec::new();
        let chat = ChatSend { id: 1, to: None, text: "over TCP".into() };
        proto::encode_frame(MsgType::ChatSend, 7, &chat, &mut frame);
        conn.ws.send(Message::binary(frame.clone())).await.unwrap();
        let echoed = loop {
            match conn.ws.next().await.unwrap().unwrap() {
                Message::Binary(bytes) => break bytes.to_vec(),
                _ => continue,
            }
        };
        assert_eq!(echoed, frame);

        // A wrong passcode is refused clearly on both sides.
        let mut conn = fallback::connect(host.addr, trust).await.unwrap();
        let exporter = conn.passcode_exporter();
        let wrong = Passcode::new("hunter3").unwrap();
        let err = admission::client(&mut WsPipe(&mut conn.ws), exporter, ROOM, Some(&wrong))
            .await
            .unwrap_err();
        assert!(err.is_passcode_refusal(), "{err:?}");
        let seen = host.outcome().await.admission.unwrap_err();
        assert!(seen.contains("passcode is wrong"), "{seen}");

        // A wrong pin is refused before any WebSocket byte.
        let wrong_pin = Fingerprint([9; 32]);
        let err = fallback::connect(host.addr, Trust::Pinned(wrong_pin)).await.err().unwrap();
        let FallbackError::PinMismatch { expected, presented } = err else { panic!("{err:?}") };
        assert_eq!((expected, presented), (wrong_pin, host.fingerprint));
    });
}

#[test]
fn endpoints_can_run_on_an_explicit_named_executor() {
    use sapora::transport::quic::ExecutorRuntime;
    // One named thread runs the executor, as the host's runtime will.
    let executor = Arc::new(smol::Executor::new());
    let (stop, stopped) = smol::channel::bounded::<()>(1);
    let thread = {
        let executor = executor.clone();
        std::thread::Builder::new()
            .name("sapora-net".into())
            .spawn(move || smol::block_on(executor.run(stopped.recv())))
            .unwrap()
    };
    run(async {
        let runtime = Arc::new(ExecutorRuntime(executor.clone()));
        let identity = HostIdentity::generate().unwrap();
        let host = quic::host_endpoint_on(LOOPBACK_ANY, &identity, runtime.clone()).unwrap();
        // The endpoint's driver task lives on our executor, not the global one.
        assert!(!executor.is_empty());
        let client = quic::client_endpoint_on(LOOPBACK_ANY, runtime).unwrap();
        let addr = host.local_addr().unwrap();
        let accept = async {
            let caps = SharedCaps::default();
            let accepted = quic::accept(&host, &caps).await.unwrap();
            accepted.connecting.await.unwrap()
        };
        let connect = quic::connect(&client, addr, Trust::Pinned(identity.fingerprint()));
        let (server_side, client_side) = smol::future::zip(accept, connect).await;
        let client_side = client_side.unwrap().connection;
        client_side.send_datagram(vec![1, 2, 3].into()).unwrap();
        assert_eq!(server_side.read_datagram().await.unwrap().to_vec(), [1, 2, 3]);
    });
    stop.send_blocking(()).unwrap();
    thread.join().unwrap().expect("the executor thread stops when told");
}

#[test]
fn hostile_bytes_before_admission_get_a_refusal_not_a_hang() {
    use sapora::transport::pake::Msg;
    run(async {
        let host = start_host(Some("hunter2"));
        let endpoint = quic::client_endpoint(LOOPBACK_ANY).unwrap();
        let trust = Trust::Pinned(host.fingerprint);
        let conn = quic::connect(&endpoint, host.addr, trust).await.unwrap().connection;
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        // A length prefix of 65535: refused from the prefix alone.
        send.write_all(&[0xff, 0xff, 0x01]).await.unwrap();
        let seen = host.outcome().await.admission.unwrap_err();
        assert!(seen.contains("over the limit"), "{seen}");
        let mut reply = Vec::new();
        smol::io::AsyncReadExt::read_to_end(&mut recv, &mut reply).await.unwrap();
        assert_eq!(
            Msg::decode(&reply),
            Ok(Msg::Refused { reason: RefuseReason::BadRequest, retry_after_ms: 0 })
        );
    });
}
