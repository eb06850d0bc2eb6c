//! A man in the middle fails (issue 14). A proxy that terminates TLS on both
//! sides — it presents its own certificate to the client, which trusts it on
//! first use, and opens its own connection to the real host — relays every
//! byte faithfully, over QUIC and over the TLS/TCP fallback. With a passcode
//! the check fails on both sides (the two TLS sessions have different
//! exporters), the client gets a clear refusal (the CLI a non-zero exit
//! code) and the host admits no one. Without a passcode the client and the
//! host show different verification codes, which is what users compare.
//!
//! Also: the TLS fallback checks the host certificate against the pin and
//! the beacon's fingerprint as QUIC does. Run inside a network namespace
//! (scripts/test.sh); everything is on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures_rustls::{TlsAcceptor, TlsConnector};
use sapora::server;
use sapora::transport::admission::{self, AdmissionError};
use sapora::transport::cert::{HostIdentity, SERVER_NAME};
use sapora::transport::fallback::{self, WsPipe};
use sapora::transport::limit::{
    ATTEMPT_WINDOW, AttemptLimiter, ConnectionCaps, MAX_FAILURES, SharedCaps,
};
use sapora::transport::link::{self, Established, Link};
use sapora::transport::pake::{Passcode, VerificationCode};
use sapora::transport::pin::{KNOWN_HOSTS_FILE_NAME, PinStore, host_key};
use sapora::transport::quic::{self, Trust};
use sapora::transport::tunnel::{self, TunnelError};

const ROOM: &str = "Board";

fn code(text: &str) -> Passcode {
    Passcode::new(text).unwrap()
}

/// Every test body runs under this deadline: no test may hang.
fn run<T>(body: impl std::future::Future<Output = T>) -> T {
    smol::block_on(smol::future::or(body, async {
        smol::Timer::after(Duration::from_secs(60)).await;
        panic!("test did not finish within 60 s");
    }))
}

fn fresh_pins() -> (tempfile::TempDir, PinStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = PinStore::at(dir.path().join(KNOWN_HOSTS_FILE_NAME));
    (dir, store)
}

fn loopback0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

// ---------------------------------------------------------------- proxies

/// A TLS-terminating relay. `codes` receives, per relayed connection, the
/// verification codes of its two TLS sessions: (client side, host side).
struct Proxy {
    addr: SocketAddr,
    codes: smol::channel::Receiver<(VerificationCode, VerificationCode)>,
    _task: smol::Task<()>,
}

/// Copies `from` into `to` until EOF, then finishes `to`.
async fn pipe(
    mut from: impl smol::io::AsyncRead + Unpin,
    mut to: impl smol::io::AsyncWrite + Unpin,
) {
    let _ = smol::io::copy(&mut from, &mut to).await;
    let _ = smol::io::AsyncWriteExt::close(&mut to).await;
}

/// Relays every stream either side opens, and datagrams both ways.
async fn relay_quic(down: quinn::Connection, up: quinn::Connection) {
    let streams = |from: quinn::Connection, to: quinn::Connection| async move {
        while let Ok((send, recv)) = from.accept_bi().await {
            let Ok((to_send, to_recv)) = to.open_bi().await else { break };
            smol::spawn(pipe(recv, to_send)).detach();
            smol::spawn(pipe(to_recv, send)).detach();
        }
    };
    let datagrams = |from: quinn::Connection, to: quinn::Connection| async move {
        while let Ok(d) = from.read_datagram().await {
            let _ = to.send_datagram(d);
        }
    };
    smol::spawn(streams(down.clone(), up.clone())).detach();
    smol::spawn(streams(up.clone(), down.clone())).detach();
    smol::spawn(datagrams(down.clone(), up.clone())).detach();
    smol::spawn(datagrams(up.clone(), down.clone())).detach();
    // Either side closing closes the other, with its reason, after a
    // moment for the bytes still in the pipes (a faithful relay).
    let reason = smol::future::or(down.closed(), up.closed()).await;
    smol::Timer::after(Duration::from_millis(500)).await;
    let text = reason.to_string();
    down.close(0u32.into(), text.as_bytes());
    up.close(0u32.into(), text.as_bytes());
}

/// A QUIC man in the middle in front of `upstream` (a host's UDP address),
/// with its own self-signed certificate.
fn quic_proxy(upstream: SocketAddr) -> Proxy {
    let identity = HostIdentity::generate().unwrap();
    let endpoint = quic::host_endpoint(loopback0(), &identity).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let (tx, codes) = smol::channel::unbounded();
    let task = smol::spawn(async move {
        let client_side = quic::client_endpoint(loopback0()).unwrap();
        while let Some(incoming) = endpoint.accept().await {
            let (client_side, tx) = (client_side.clone(), tx.clone());
            smol::spawn(async move {
                let Ok(down) = incoming.await else { return };
                let Ok(up) = quic::connect(&client_side, upstream, Trust::FirstUse).await else {
                    down.close(0u32.into(), b"upstream unreachable");
                    return;
                };
                let up = up.connection;
                let codes = (
                    quic::verification_code(&down).unwrap(),
                    quic::verification_code(&up).unwrap(),
                );
                let _ = tx.send(codes).await;
                relay_quic(down, up).await;
            })
            .detach();
        }
    });
    Proxy { addr, codes, _task: task }
}

fn tls_code<D>(conn: &rustls::ConnectionCommon<D>) -> VerificationCode {
    let mut out = [0u8; sapora::transport::pake::EXPORTER_LEN];
    conn.export_keying_material(
        &mut out,
        sapora::transport::pake::VERIFY_EXPORTER_LABEL,
        Some(b""),
    )
    .unwrap();
    VerificationCode::from_exporter(&sapora::transport::pake::Exporter(out))
}

/// A TLS-terminating TCP proxy in front of `upstream` (a host's TCP
/// address): TLS with its own certificate towards the client, TLS (trusting
/// anything) towards the host, and the plaintext relayed byte for byte
/// (the WebSocket upgrade and every message included).
fn tls_proxy(upstream: SocketAddr) -> Proxy {
    let identity = HostIdentity::generate().unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(quic::server_tls_config(&identity).unwrap()));
    let listener = std::net::TcpListener::bind(loopback0()).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = smol::net::TcpListener::try_from(listener).unwrap();
    let (tx, codes) = smol::channel::unbounded();
    let task = smol::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            smol::spawn(async move {
                let Ok(down) = acceptor.accept(tcp).await else { return };
                let Ok(up_tcp) = smol::net::TcpStream::connect(upstream).await else { return };
                let (config, _) = quic::client_tls_config(Trust::FirstUse).unwrap();
                let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).unwrap();
                let Ok(up) = TlsConnector::from(Arc::new(config)).connect(name, up_tcp).await
                else {
                    return;
                };
                let codes = (tls_code(down.get_ref().1), tls_code(up.get_ref().1));
                let _ = tx.send(codes).await;
                let (down_r, down_w) = smol::io::split(down);
                let (up_r, up_w) = smol::io::split(up);
                smol::future::zip(pipe(down_r, up_w), pipe(up_r, down_w)).await;
            })
            .detach();
        }
    });
    Proxy { addr, codes, _task: task }
}

impl Proxy {
    async fn relayed(&self) -> (VerificationCode, VerificationCode) {
        smol::future::or(async { self.codes.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_secs(10)).await;
            None
        })
        .await
        .expect("the proxy relayed a connection within 10 s")
    }
}

// ------------------------------------------------ hosts that show their side

/// What a test host's side of one connection ended in: admitted with its
/// link's verification code, or refused with the admission error.
type HostSide = Result<VerificationCode, AdmissionError>;

struct LinkHost {
    addr: SocketAddr,
    outcomes: smol::channel::Receiver<HostSide>,
    _task: smol::Task<()>,
}

impl LinkHost {
    async fn outcome(&self) -> HostSide {
        smol::future::or(async { self.outcomes.recv().await.ok() }, async {
            smol::Timer::after(Duration::from_secs(15)).await;
            None
        })
        .await
        .expect("the host finished the admission within 15 s")
    }
}

fn limiter() -> Arc<Mutex<AttemptLimiter>> {
    Arc::new(Mutex::new(AttemptLimiter::new(MAX_FAILURES, ATTEMPT_WINDOW)))
}

/// A QUIC host (the production accept path, `link::accept`) whose room
/// [`ROOM`] has `passcode`.
fn quic_host(passcode: Option<&str>) -> LinkHost {
    let identity = HostIdentity::generate().unwrap();
    let endpoint = quic::host_endpoint(loopback0(), &identity).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let passcode = passcode.map(code);
    let (tx, outcomes) = smol::channel::unbounded();
    let task = smol::spawn(async move {
        let caps = SharedCaps::new(ConnectionCaps::new(64, 1024));
        let limiter = limiter();
        while let Some(accepted) = quic::accept(&endpoint, &caps).await {
            let (tx, limiter, passcode) = (tx.clone(), limiter.clone(), passcode.clone());
            smol::spawn(async move {
                let got = link::accept(accepted, |_| passcode.clone(), &limiter).await;
                let outcome = got.map(|est: Established<Link>| {
                    let code = est.link.verification_code();
                    // Keep the link open until the client has compared.
                    smol::spawn(async move {
                        est.link.closed().await;
                        drop(est);
                    })
                    .detach();
                    code
                });
                let _ = tx.send(outcome).await;
            })
            .detach();
        }
    });
    LinkHost { addr, outcomes, _task: task }
}

/// A TLS/TCP fallback host (`fallback::accept` and the admission, as
/// `tunnel::serve_tcp` runs them), whose room [`ROOM`] has `passcode`.
fn tls_host(passcode: Option<&str>) -> LinkHost {
    let identity = HostIdentity::generate().unwrap();
    let tls = Arc::new(quic::server_tls_config(&identity).unwrap());
    let listener = std::net::TcpListener::bind(loopback0()).unwrap();
    let addr = listener.local_addr().unwrap();
    let listener = smol::net::TcpListener::try_from(listener).unwrap();
    let passcode = passcode.map(code);
    let (tx, outcomes) = smol::channel::unbounded();
    let task = smol::spawn(async move {
        let limiter = limiter();
        while let Ok((tcp, peer)) = listener.accept().await {
            let (tx, limiter, passcode, tls) =
                (tx.clone(), limiter.clone(), passcode.clone(), tls.clone());
            smol::spawn(async move {
                let Ok(mut conn) = fallback::accept(tcp, tls).await else { return };
                let exporter = conn.passcode_exporter();
                let got = admission::host(
                    &mut WsPipe(&mut conn.ws),
                    exporter,
                    peer.ip(),
                    |_| passcode.clone(),
                    &limiter,
                )
                .await;
                let code = conn.verification_code();
                let _ = tx.send(got.map(|_| code)).await;
                // Keep the WebSocket open a moment for the client's side.
                smol::Timer::after(Duration::from_secs(2)).await;
                drop(conn);
            })
            .detach();
        }
    });
    LinkHost { addr, outcomes, _task: task }
}

fn assert_host_refused(outcome: HostSide, transport: &str) {
    match outcome {
        Ok(code) => panic!("{transport}: the host admitted the proxy (code {code})"),
        // The check itself failed (the client aborted after the host's
        // confirmation did not verify), not a timeout.
        Err(e @ AdmissionError::Pake(_)) => {
            assert!(e.is_passcode_refusal() || e.to_string().contains("passcode"), "{e}")
        }
        Err(e) => panic!("{transport}: expected a failed passcode check, got: {e}"),
    }
}

// ------------------------------------------------------------------- tests

#[test]
fn over_quic_a_relaying_proxy_fails_the_passcode_check_on_both_sides() {
    run(async {
        let host = quic_host(Some("tern"));
        let proxy = quic_proxy(host.addr);
        let (_dir, pins) = fresh_pins();
        let err = link::connect(proxy.addr, ROOM, Some(&code("tern")), &pins)
            .await
            .err()
            .expect("the client must not be admitted through a man in the middle");
        assert!(err.is_passcode_refusal(), "{err}");
        let text = err.to_string();
        assert!(text.contains("intercepting"), "a clear reason: {text}");
        proxy.relayed().await;
        assert_host_refused(host.outcome().await, "QUIC");

        // Control: the same passcode straight to the host is admitted.
        let (_dir, pins) = fresh_pins();
        let est = link::connect(host.addr, ROOM, Some(&code("tern")), &pins).await.unwrap();
        assert_eq!(host.outcome().await.unwrap(), est.link.verification_code());
    });
}

#[test]
fn over_tls_a_relaying_proxy_fails_the_passcode_check_on_both_sides() {
    run(async {
        let host = tls_host(Some("tern"));
        let proxy = tls_proxy(host.addr);
        let (_dir, pins) = fresh_pins();
        let err = tunnel::connect(proxy.addr, ROOM, Some(&code("tern")), &pins)
            .await
            .err()
            .expect("the client must not be admitted through a man in the middle");
        assert!(err.is_passcode_refusal(), "{err}");
        assert!(err.to_string().contains("intercepting"), "a clear reason: {err}");
        proxy.relayed().await;
        assert_host_refused(host.outcome().await, "TLS");

        let (_dir, pins) = fresh_pins();
        let est = tunnel::connect(host.addr, ROOM, Some(&code("tern")), &pins).await.unwrap();
        assert_eq!(host.outcome().await.unwrap(), est.link.verification_code());
    });
}

#[test]
fn without_a_passcode_the_verification_codes_differ_through_a_proxy() {
    run(async {
        // QUIC: the proxy gets in (the room is open), but what the client
        // and the host show differ; straight to the host they match.
        let host = quic_host(None);
        let proxy = quic_proxy(host.addr);
        let (_dir, pins) = fresh_pins();
        let est = link::connect(proxy.addr, ROOM, None, &pins).await.unwrap();
        let client_code = est.link.verification_code();
        let host_code = host.outcome().await.expect("open room");
        let (proxy_down, proxy_up) = proxy.relayed().await;
        assert_ne!(client_code, host_code, "QUIC: the codes must differ through a proxy");
        assert_eq!((client_code, host_code), (proxy_down, proxy_up));
        let (_dir, pins) = fresh_pins();
        let direct = link::connect(host.addr, ROOM, None, &pins).await.unwrap();
        assert_eq!(direct.link.verification_code(), host.outcome().await.unwrap());

        // TLS over TCP: the same.
        let host = tls_host(None);
        let proxy = tls_proxy(host.addr);
        let (_dir, pins) = fresh_pins();
        let est = tunnel::connect(proxy.addr, ROOM, None, &pins).await.unwrap();
        let client_code = est.link.verification_code();
        let host_code = host.outcome().await.expect("open room");
        assert_ne!(client_code, host_code, "TLS: the codes must differ through a proxy");
        assert_eq!((client_code, host_code), proxy.relayed().await);
        let (_dir, pins) = fresh_pins();
        let direct = tunnel::connect(host.addr, ROOM, None, &pins).await.unwrap();
        assert_eq!(direct.link.verification_code(), host.outcome().await.unwrap());
    });
}

/// `sapora bot` through the proxies to a real host: refused with a clear
/// message and a non-zero exit code; the host has no member.
#[test]
fn the_cli_through_a_proxy_is_refused_and_the_host_admits_no_one() {
    run(async {
        let mut opts = options();
        opts.passcode = Some(code("blue heron"));
        let host = server::start(opts).await.expect("host starts");
        let quic = quic_proxy(host.control_addr);
        let tls = tls_proxy(host.control_addr);
        for (proxy, transport) in [(&quic, "quic"), (&tls, "tls")] {
            let config = tempfile::tempdir().unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_sapora"))
                .args(["bot", &proxy.addr.to_string(), "--name", "pat", "--duration", "0.5"])
                .args(["--passcode", "blue heron"])
                .env("SAPORA_CONFIG_DIR", config.path())
                .env("SAPORA_TRANSPORT", transport)
                .env_remove("SAPORA_PASSCODE")
                .output()
                .expect("sapora runs");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{transport}: admitted through a proxy: {stderr}");
            assert_eq!(out.status.code(), Some(3), "{transport}: {stderr}");
            assert!(stderr.contains("intercepting"), "{transport}: {stderr}");
            proxy.relayed().await;
        }
        assert_eq!(host.stats().members, 0);
        // The same bot straight to the host gets in.
        let config = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_sapora"))
            .args(["bot", &host.control_addr.to_string(), "--name", "pat", "--duration", "0.3"])
            .args(["--passcode", "blue heron"])
            .env("SAPORA_CONFIG_DIR", config.path())
            .output()
            .expect("sapora runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        host.shutdown().await;
    });
}

// ------------------------------------- the fallback checks the fingerprint

#[test]
fn the_tls_fallback_refuses_a_changed_pin_and_a_wrong_beacon_fingerprint() {
    run(async {
        let host = tls_host(None);
        let proxy = tls_proxy(host.addr);
        let (_dir, pins) = fresh_pins();

        // First use pins the host; then the proxy, at the pinned address,
        // is the loud certificate-changed error.
        let first = tunnel::connect(host.addr, ROOM, None, &pins).await.unwrap();
        let real = first.fingerprint.expect("the client saw the host's certificate");
        host.outcome().await.unwrap();
        let mut known = pins.load().unwrap();
        assert_eq!(known.get(&host_key(host.addr)), Some(real));
        known.pin(&host_key(proxy.addr), real);
        pins.save(&known).unwrap();
        let err = tunnel::connect(proxy.addr, ROOM, None, &pins).await.err().unwrap();
        assert!(err.is_certificate_changed(), "{err}");
        assert!(matches!(err, TunnelError::Pin(_)), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("HAS CHANGED") && text.contains(&real.short()), "{text}");
        // Through `link` (as `Client` connects) it is the same error.
        let err = link::connect_expecting(proxy.addr, ROOM, None, &pins, None).await.err();
        let err = err.unwrap();
        assert!(err.is_certificate_changed(), "{err}");

        // An unknown address whose beacon announced the real fingerprint:
        // the proxy's certificate is refused and nothing is pinned.
        let (_dir2, fresh) = fresh_pins();
        let err = tunnel::connect_expecting(proxy.addr, ROOM, None, &fresh, Some(real))
            .await
            .err()
            .expect("the beacon's fingerprint is checked");
        assert!(
            matches!(err, TunnelError::Fallback(fallback::FallbackError::PinMismatch { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains(&real.short()), "{err}");
        assert_eq!(fresh.load().unwrap().get(&host_key(proxy.addr)), None);
        // The real host with the beacon's fingerprint is trusted and pinned.
        let ok = tunnel::connect_expecting(host.addr, ROOM, None, &fresh, Some(real)).await;
        assert_eq!(ok.unwrap().fingerprint, Some(real));
        host.outcome().await.unwrap();
        assert_eq!(fresh.load().unwrap().get(&host_key(host.addr)), Some(real));
    });
}

/// The app's "Trust the new certificate": forgetting the pin and saving
/// lets the next join pin the presented certificate.
#[test]
fn forgetting_a_changed_pin_lets_the_next_join_trust_the_new_certificate() {
    run(async {
        let host = quic_host(None);
        let (_dir, pins) = fresh_pins();
        let mut known = pins.load().unwrap();
        let stale = HostIdentity::generate().unwrap().fingerprint();
        known.pin(&host_key(host.addr), stale);
        pins.save(&known).unwrap();
        let err = link::connect(host.addr, ROOM, None, &pins).await.err().unwrap();
        assert!(err.is_certificate_changed(), "{err}");
        assert!(host.outcome().await.is_err(), "the refused handshake admitted no one");
        let mut known = pins.load().unwrap();
        assert_eq!(known.forget(&host_key(host.addr)), Some(stale));
        pins.save(&known).unwrap();
        let est = link::connect(host.addr, ROOM, None, &pins).await.unwrap();
        host.outcome().await.unwrap();
        assert_eq!(pins.load().unwrap().get(&host_key(host.addr)), est.fingerprint);
    });
}

/// What users compare: the code a member's app shows and the code the
/// hosting app shows for that member (`RunningHost::member_codes`), on a
/// real host: equal on a direct link, different through either proxy.
#[test]
fn the_hosts_code_for_a_member_differs_from_the_members_through_a_proxy() {
    use sapora::client::{Client, ClientConfig};
    run(async {
        let host = server::start(options()).await.expect("host starts");
        let quic = quic_proxy(host.control_addr);
        let tls = tls_proxy(host.control_addr);
        let join = |addr, name: &str| {
            let mut c = ClientConfig::new(addr, name, ROOM);
            let dir = tempfile::tempdir().unwrap();
            c.pins = Some(PinStore::at(dir.path().join(KNOWN_HOSTS_FILE_NAME)));
            c.reconnect = false;
            (dir, Client::connect(c))
        };
        // The host records a member's code when it welcomes it.
        let host_code = |name: &str| host.member_codes().get(ROOM, name);

        let (_d, direct) = join(host.control_addr, "ann");
        let direct = direct.await.expect("direct join");
        assert_eq!(host_code("ann"), Some(direct.verification_code()));

        let (_d, relayed) = join(quic.addr, "bob");
        let relayed = relayed.await.expect("an open room admits the proxy's QUIC session");
        let seen = host_code("bob").expect("the host lists bob's code");
        assert_ne!(seen, relayed.verification_code(), "QUIC: the codes must differ");
        assert_eq!((relayed.verification_code(), seen), quic.relayed().await);

        // The TLS proxy: tunnel::connect as the fallback would.
        let (_d, pins) = fresh_pins();
        let est = tunnel::connect(tls.addr, ROOM, None, &pins).await.expect("admitted");
        let (client_side, host_side) = tls.relayed().await;
        assert_eq!(client_side, est.link.verification_code());
        assert_ne!(client_side, host_side, "TLS: the codes must differ");
        drop(est);
        direct.leave().await;
        relayed.leave().await;
        host.shutdown().await;
    });
}
