//! QUIC endpoints (quinn on smol, rustls on ring) and the admission drivers.
//!
//! What this module fixes for every Sapora QUIC connection:
//! - TLS 1.3 only, ALPN [`ALPN`] (`sapora/2`), the host's self-signed
//!   [`HostIdentity`]; no client certificates.
//! - The client checks the host's certificate by its SHA-256
//!   [`Fingerprint`] only ([`Trust::Pinned`]), or accepts any on first use
//!   ([`Trust::FirstUse`]) and then pins it ([`connect_tofu`]). Either way the
//!   handshake signature is verified against the presented certificate's key,
//!   so a relay cannot replay the host's certificate without its private key.
//! - Idle rule: a connection with no packets for [`IDLE_TIMEOUT`] (15 s, as
//!   the plaintext control plane) is dead; each side sends a QUIC PING after
//!   [`KEEP_ALIVE_INTERVAL`] of silence, so only a lost peer hits the timeout.
//! - Datagrams are on (for audio and video), with [`DATAGRAM_BUFFER`] bytes of
//!   receive and send buffer.
//!
//! The endpoints run on `quinn::SmolRuntime` (the global smol executor and
//! async-io reactor); no tokio runtime exists (quinn links tokio only for its
//! `sync` primitives).
//!
//! Admission: the first bidirectional stream a client opens is the control
//! stream. Before any control frame it carries the passcode exchange of
//! [`super::pake`]: [`client_admission`] and [`host_admission`] drive it
//! through [`super::admission`] (length-prefixed frames on the stream).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::admission::{self, AdmissionError, FramePipe};
use super::cert::{Fingerprint, HostIdentity, SERVER_NAME};
use super::limit::{AttemptLimiter, ConnectionSlot, SharedCaps};
use super::pake::{self, Admission, Exporter, PakeError, Passcode, VerificationCode};
use super::pin::{PinError, PinStore, host_key};

/// ALPN protocol id of Sapora over QUIC (and over the TLS fallback).
pub const ALPN: &[u8] = b"sapora/2";
/// A connection silent this long is closed (the control plane's 15 s rule).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// A side that sent nothing for this long sends a PING (a third of the idle
/// timeout, so two may be lost before the peer gives up).
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Datagram receive and send buffer per connection, in bytes (about 0.5 s of
/// full-layer video at 15 fps).
pub const DATAGRAM_BUFFER: usize = 1 << 20;

/// Errors of the QUIC layer, worded for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot set up QUIC over TLS: {0}")]
    NoInitialCipherSuite(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("cannot open UDP socket {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("the connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error(
        "the host presented certificate {presented} ({}), but {expected} ({}) is the one expected for it; refusing to connect",
        presented.short(), expected.short()
    )]
    PinMismatch { expected: Fingerprint, presented: Fingerprint },
    #[error("{0}")]
    Pin(#[from] PinError),
    #[error("the host presented no certificate")]
    NoPeerCertificate,
    #[error("cannot derive the TLS exporter for this connection")]
    Exporter,
}

/// The transport parameters every Sapora connection uses (see module docs).
pub fn transport_config() -> quinn::TransportConfig {
    let mut config = quinn::TransportConfig::default();
    // 15 s fits in a QUIC varint of milliseconds: cannot fail.
    config.max_idle_timeout(quinn::IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    config.keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    config.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER));
    config.datagram_send_buffer_size(DATAGRAM_BUFFER);
    // Audio and video are datagrams under the connection's congestion
    // control: a loss-based controller (Cubic) shrinks to its floor on a
    // path that loses or reorders packets at random, and real-time media
    // then waits behind it. BBR paces to the measured bottleneck instead.
    config.congestion_controller_factory(Arc::new(quinn::congestion::BbrConfig::default()));
    config
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The host's TLS configuration, shared by QUIC and the TCP fallback:
/// TLS 1.3 only, ALPN `sapora/2`, its certificate, no client certificates.
pub fn server_tls_config(identity: &HostIdentity) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![identity.certificate().clone()], identity.private_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok(tls)
}

/// The host's QUIC server configuration: [`server_tls_config`] and
/// [`transport_config`].
pub fn server_config(identity: &HostIdentity) -> Result<quinn::ServerConfig, QuicError> {
    let tls = server_tls_config(identity)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// How a client decides whether the host's certificate is the right one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Only the certificate with this fingerprint.
    Pinned(Fingerprint),
    /// Any certificate (trust on first use: pin what was presented).
    FirstUse,
}

/// rustls verifier that trusts a certificate by fingerprint, and records
/// what the host presented (so a mismatch can be reported precisely).
#[derive(Debug)]
pub struct PinVerifier {
    trust: Trust,
    provider: Arc<CryptoProvider>,
    presented: Mutex<Option<Fingerprint>>,
}

impl PinVerifier {
    pub fn new(trust: Trust) -> PinVerifier {
        PinVerifier { trust, provider: provider(), presented: Mutex::new(None) }
    }

    /// The fingerprint of the last certificate the host presented.
    pub fn presented(&self) -> Option<Fingerprint> {
        *self.presented.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Names and dates carry no meaning for a pinned self-signed
        // certificate: the fingerprint is the whole check.
        let presented = Fingerprint::of(end_entity);
        *self.presented.lock().unwrap_or_else(|e| e.into_inner()) = Some(presented);
        match self.trust {
            Trust::FirstUse => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(expected) if expected == presented => Ok(ServerCertVerified::assertion()),
            Trust::Pinned(_) => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The proof that the host holds the certificate's private key.
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The client's TLS configuration for one connection, shared by QUIC and
/// the TCP fallback, and its verifier (make a new one per connection: the
/// verifier records what that host presented).
pub fn client_tls_config(
    trust: Trust,
) -> Result<(rustls::ClientConfig, Arc<PinVerifier>), rustls::Error> {
    let verifier = Arc::new(PinVerifier::new(trust));
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    Ok((tls, verifier))
}

/// A QUIC client configuration for one connection ([`client_tls_config`] and
/// [`transport_config`]) and its verifier.
pub fn client_config(trust: Trust) -> Result<(quinn::ClientConfig, Arc<PinVerifier>), QuicError> {
    let (tls, verifier) = client_tls_config(trust)?;
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok((config, verifier))
}

/// Starts an executor on `threads` named threads (`name(i)` for the i-th),
/// each running `smol::block_on` so an idle one drives the I/O reactor. A
/// thread that cannot start is logged; if none can, the executor runs as a
/// task on smol's global executor instead, so what is spawned still runs.
/// The threads run for the rest of the process.
pub fn start_executor(
    threads: usize,
    name: impl Fn(usize) -> String,
) -> Arc<smol::Executor<'static>> {
    let executor = Arc::new(smol::Executor::new());
    let mut started = 0;
    for i in 0..threads.max(1) {
        let ex = executor.clone();
        let spawned = std::thread::Builder::new()
            .name(name(i))
            .spawn(move || smol::block_on(ex.run(smol::future::pending::<()>())));
        match spawned {
            Ok(_) => started += 1,
            Err(e) => tracing::warn!("cannot start thread {}: {e}", name(i)),
        }
    }
    if started == 0 {
        tracing::warn!("no {} thread could start; using the shared executor", name(0));
        let ex = executor.clone();
        smol::spawn(async move { ex.run(smol::future::pending::<()>()).await }).detach();
    }
    executor
}

/// A quinn runtime that spawns quinn's tasks (the endpoint driver) onto a
/// given executor (the explicit executor with named threads that issue 14
/// asks for) instead of smol's global one; timers and UDP sockets are
/// [`quinn::SmolRuntime`]'s (async-io's reactor).
#[derive(Clone)]
pub struct ExecutorRuntime(pub Arc<smol::Executor<'static>>);

impl std::fmt::Debug for ExecutorRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExecutorRuntime")
    }
}

impl quinn::Runtime for ExecutorRuntime {
    fn new_timer(&self, at: std::time::Instant) -> Pin<Box<dyn quinn::AsyncTimer>> {
        quinn::SmolRuntime.new_timer(at)
    }

    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) {
        self.0.spawn(future).detach();
    }

    fn wrap_udp_socket(
        &self,
        socket: std::net::UdpSocket,
    ) -> std::io::Result<Arc<dyn quinn::AsyncUdpSocket>> {
        quinn::SmolRuntime.wrap_udp_socket(socket)
    }
}

/// The receive and send buffers asked for on every QUIC endpoint's UDP
/// socket, bytes. The kernel's default (`net.core.rmem_default`, 208 KiB
/// on Linux) overflowed on a host with 200 members while its threads waited
/// for a busy CPU: handshake packets were lost and joins timed out
/// (`RcvbufErrors` in `/proc/net/snmp`, `scripts/bench-idle.sh`). Linux
/// caps the request at `net.core.rmem_max`/`wmem_max` and doubles it.
pub const UDP_BUFFER_BYTES: usize = 4 << 20;

fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    runtime: Arc<dyn quinn::Runtime>,
) -> Result<quinn::Endpoint, QuicError> {
    let bind = |source| QuicError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
    let sock = socket2::SockRef::from(&socket);
    for (what, set) in [
        ("receive", sock.set_recv_buffer_size(UDP_BUFFER_BYTES)),
        ("send", sock.set_send_buffer_size(UDP_BUFFER_BYTES)),
    ] {
        // The kernel's limit (net.core.[rw]mem_max) still applies: a
        // smaller buffer than asked for is no error.
        if let Err(e) = set {
            tracing::debug!(%addr, "UDP {what} buffer not enlarged: {e}");
        }
    }
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime).map_err(bind)
}

/// The host's endpoint on `addr` (UDP; port 0 picks one, see
/// `Endpoint::local_addr`), its driver on smol's global executor. It also
/// works as a client endpoint.
pub fn host_endpoint(
    addr: SocketAddr,
    identity: &HostIdentity,
) -> Result<quinn::Endpoint, QuicError> {
    endpoint(addr, Some(server_config(identity)?), Arc::new(quinn::SmolRuntime))
}

/// [`host_endpoint`] with its driver on `runtime` (e.g. [`ExecutorRuntime`]).
pub fn host_endpoint_on(
    addr: SocketAddr,
    identity: &HostIdentity,
    runtime: Arc<dyn quinn::Runtime>,
) -> Result<quinn::Endpoint, QuicError> {
    endpoint(addr, Some(server_config(identity)?), runtime)
}

/// A client endpoint bound to `addr` (usually `0.0.0.0:0` or `127.0.0.1:0`).
pub fn client_endpoint(addr: SocketAddr) -> Result<quinn::Endpoint, QuicError> {
    endpoint(addr, None, Arc::new(quinn::SmolRuntime))
}

/// [`client_endpoint`] with its driver on `runtime`.
pub fn client_endpoint_on(
    addr: SocketAddr,
    runtime: Arc<dyn quinn::Runtime>,
) -> Result<quinn::Endpoint, QuicError> {
    endpoint(addr, None, runtime)
}

/// An established connection and the fingerprint the host presented.
#[derive(Debug, Clone)]
pub struct Connected {
    pub connection: quinn::Connection,
    pub fingerprint: Fingerprint,
}

/// Connects to the host at `addr`, checking its certificate per `trust`.
/// The handshake is bounded by [`IDLE_TIMEOUT`]; callers that want a faster
/// fallback (the 2 s TCP rule) race it against a timer.
pub async fn connect(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    trust: Trust,
) -> Result<Connected, QuicError> {
    let (config, verifier) = client_config(trust)?;
    match endpoint.connect_with(config, addr, SERVER_NAME)?.await {
        Ok(connection) => {
            let fingerprint = verifier.presented().ok_or(QuicError::NoPeerCertificate)?;
            Ok(Connected { connection, fingerprint })
        }
        Err(e) => match (trust, verifier.presented()) {
            (Trust::Pinned(expected), Some(presented)) if presented != expected => {
                Err(QuicError::PinMismatch { expected, presented })
            }
            _ => Err(QuicError::Connection(e)),
        },
    }
}

/// [`connect`] with trust on first use through `store`: a known host must
/// present its pinned certificate (else the loud [`PinError::Changed`]); an
/// unknown host is pinned once the handshake has completed. The file is read
/// and written off the executor (`smol::unblock`).
pub async fn connect_tofu(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    store: &PinStore,
) -> Result<Connected, QuicError> {
    let host = host_key(addr);
    let known = {
        let store = store.clone();
        smol::unblock(move || store.load()).await?
    };
    let trust = known.get(&host).map_or(Trust::FirstUse, Trust::Pinned);
    match connect(endpoint, addr, trust).await {
        Err(QuicError::PinMismatch { expected, presented }) => {
            Err(store.changed(&known, &host, expected, presented).into())
        }
        Err(e) => Err(e),
        Ok(connected) => {
            if trust == Trust::FirstUse {
                let (store, fingerprint) = (store.clone(), connected.fingerprint);
                if let Err(e) = smol::unblock(move || store.check_and_pin(&host, fingerprint)).await
                {
                    connected.connection.close(0u32.into(), b"certificate not trusted");
                    return Err(e.into());
                }
            }
            Ok(connected)
        }
    }
}

/// The exporter value of `connection` for `label` (RFC 8446 §7.5, empty
/// context, 32 bytes). Both ends of one TLS session get the same value.
pub fn exporter(connection: &quinn::Connection, label: &[u8]) -> Result<Exporter, QuicError> {
    let mut out = [0u8; pake::EXPORTER_LEN];
    connection.export_keying_material(&mut out, label, b"").map_err(|_| QuicError::Exporter)?;
    Ok(Exporter(out))
}

/// The 6-digit code both ends of `connection` can show (rooms without a
/// passcode compare it to detect a relay).
pub fn verification_code(connection: &quinn::Connection) -> Result<VerificationCode, QuicError> {
    Ok(VerificationCode::from_exporter(&exporter(connection, pake::VERIFY_EXPORTER_LABEL)?))
}

/// The control stream as a [`FramePipe`] for the admission exchange.
pub struct QuicPipe<'a> {
    pub send: &'a mut quinn::SendStream,
    pub recv: &'a mut quinn::RecvStream,
}

fn io_error(e: impl std::fmt::Display) -> AdmissionError {
    AdmissionError::Io(e.to_string())
}

impl FramePipe for QuicPipe<'_> {
    async fn send_frame(&mut self, frame: &[u8]) -> Result<(), AdmissionError> {
        self.send.write_all(frame).await.map_err(io_error)
    }

    async fn recv_frame(&mut self) -> Result<Vec<u8>, AdmissionError> {
        let mut prefix = [0u8; 2];
        self.recv.read_exact(&mut prefix).await.map_err(io_error)?;
        let len = pake::body_len(prefix).map_err(PakeError::from)?;
        let mut frame = vec![0u8; 2 + len];
        frame[..2].copy_from_slice(&prefix);
        self.recv.read_exact(&mut frame[2..]).await.map_err(io_error)?;
        Ok(frame)
    }

    async fn flush_before_close(&mut self) {
        // quinn delivers what was written before FIN, even after the
        // SendStream is dropped, but not after the connection is closed,
        // which callers do next: wait (bounded) until the peer has it.
        let _ = self.send.finish();
        let acked = async {
            let _ = self.send.stopped().await;
        };
        let give_up = async {
            smol::Timer::after(Duration::from_secs(1)).await;
        };
        smol::future::or(acked, give_up).await;
    }
}

/// The client's side of admission on the control stream (`send`/`recv`, the
/// first bidirectional stream it opened); see [`admission::client`].
pub async fn client_admission(
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    room: &str,
    passcode: Option<&Passcode>,
) -> Result<Admission, AdmissionError> {
    let exporter =
        exporter(connection, pake::EXPORTER_LABEL).map_err(|_| AdmissionError::Exporter)?;
    admission::client(&mut QuicPipe { send, recv }, exporter, room, passcode).await
}

/// The host's side of admission on a client's control stream, keyed for the
/// limiter by the connection's remote IP; see [`admission::host`].
pub async fn host_admission(
    connection: &quinn::Connection,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    passcode_for: impl Fn(&str) -> Option<Passcode>,
    limiter: &Mutex<AttemptLimiter>,
) -> Result<Admission, AdmissionError> {
    let exporter =
        exporter(connection, pake::EXPORTER_LABEL).map_err(|_| AdmissionError::Exporter)?;
    let ip = connection.remote_address().ip();
    admission::host(&mut QuicPipe { send, recv }, exporter, ip, passcode_for, limiter).await
}

/// An incoming connection that passed the caps: await `connecting` (in its
/// own task: a slow handshake must not hold up the accept loop) and keep
/// `slot` as long as the connection lives.
pub struct Accepted {
    pub connecting: quinn::Connecting,
    pub slot: ConnectionSlot,
}

/// The host's accept loop step. A client whose address is not validated yet
/// is sent a stateless Retry first (one extra round trip), so connection
/// caps count only addresses that can receive packets: a spoofer cannot use
/// up a victim's slots. Connections over the caps are refused. `None` when
/// the endpoint is closed.
pub async fn accept(endpoint: &quinn::Endpoint, caps: &SharedCaps) -> Option<Accepted> {
    loop {
        let incoming = endpoint.accept().await?;
        if !incoming.remote_address_validated() && incoming.may_retry() {
            let _ = incoming.retry();
            continue;
        }
        let remote = incoming.remote_address();
        match caps.try_open(remote.ip()) {
            Ok(slot) => match incoming.accept() {
                Ok(connecting) => return Some(Accepted { connecting, slot }),
                Err(e) => tracing::debug!(%remote, error = %e, "incoming connection failed"),
            },
            Err(refusal) => {
                tracing::warn!(%remote, %refusal, "refusing connection");
                incoming.refuse();
            }
        }
    }
}
