//! The `Link` seam: one authenticated, encrypted connection between a client
//! and the host, whatever carries it (QUIC, or the TLS/TCP tunnel where UDP
//! is blocked: [`connect_expecting`] tries QUIC for [`QUIC_GRACE`], then the
//! tunnel). Control, files and screen run over its reliable
//! streams, audio and video over its datagrams.
//!
//! Establishing a link ([`connect`] on the client, [`accept`] on the host):
//! QUIC handshake (certificate checked by fingerprint, trust on first use
//! through the known-hosts [`PinStore`]), then the first bidirectional
//! stream, the **control stream**, carries the admission exchange
//! (`transport::admission`) and after it the control frames
//! (`docs/protocol.md` §2).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use smol::io::{AsyncRead, AsyncWrite};

use super::admission::AdmissionError;
use super::cert::Fingerprint;
use super::limit::{AttemptLimiter, ConnectionSlot};
use super::pake::{Admission, Passcode, VerificationCode};
use super::pin::PinStore;
use super::quic::{self, QuicError};

/// Which transport carries a link; the bot report's `transport` field
/// prints it as "quic" or "tls".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Quic,
    Tls,
}

impl std::fmt::Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Quic => "quic",
            TransportKind::Tls => "tls",
        })
    }
}

/// The write half of one reliable, ordered stream; `close()` (AsyncWriteExt)
/// finishes it (FIN), dropping it without close resets it.
/// (`smol::io::AsyncWrite` is `futures_lite::AsyncWrite`, one trait.)
pub type LinkSend = Box<dyn AsyncWrite + Send + Unpin>;
/// The read half; EOF after the peer finished its side.
pub type LinkRecv = Box<dyn AsyncRead + Send + Unpin>;

/// An authenticated, encrypted connection between a client and the host.
#[derive(Clone)]
pub enum Link {
    Quic(quinn::Connection),
    /// The TLS/TCP fallback (`transport::tunnel`), for networks that drop UDP.
    Tunnel(super::tunnel::Tunnel),
}

/// Application close code for [`Link::close`] (QUIC `CONNECTION_CLOSE`).
const CLOSE_CODE: u32 = 0;

fn connection_lost(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, e.to_string())
}

impl Link {
    pub fn kind(&self) -> TransportKind {
        match self {
            Link::Quic(_) => TransportKind::Quic,
            Link::Tunnel(t) => t.kind(),
        }
    }

    pub fn remote_address(&self) -> SocketAddr {
        match self {
            Link::Quic(c) => c.remote_address(),
            Link::Tunnel(t) => t.remote_address(),
        }
    }

    /// A new bidirectional stream (files, screen).
    pub async fn open_bi(&self) -> std::io::Result<(LinkSend, LinkRecv)> {
        match self {
            Link::Quic(c) => {
                let (send, recv) = c.open_bi().await.map_err(connection_lost)?;
                Ok(quic_pair(send, recv))
            }
            Link::Tunnel(t) => t.open_bi().await,
        }
    }

    /// The next stream the peer opened; an error once the link is closed.
    pub async fn accept_bi(&self) -> std::io::Result<(LinkSend, LinkRecv)> {
        match self {
            Link::Quic(c) => {
                let (send, recv) = c.accept_bi().await.map_err(connection_lost)?;
                Ok(quic_pair(send, recv))
            }
            Link::Tunnel(t) => t.accept_bi().await,
        }
    }

    /// Unreliable, unordered datagram (audio, video). Never blocks and may be
    /// called from any thread (the mixer's): when the queue is full the
    /// oldest queued datagram is dropped (newest wins, quinn's rule for
    /// `Connection::send_datagram`). Err only when the link is closed or the
    /// datagram is larger than `max_datagram_size()`.
    pub fn send_datagram(&self, data: Bytes) -> std::io::Result<()> {
        match self {
            Link::Quic(c) => c.send_datagram(data).map_err(|e| match e {
                quinn::SendDatagramError::TooLarge => {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
                }
                other => connection_lost(other),
            }),
            Link::Tunnel(t) => t.send_datagram(data),
        }
    }

    /// The next datagram; an error once the link is closed.
    pub async fn read_datagram(&self) -> std::io::Result<Bytes> {
        match self {
            Link::Quic(c) => c.read_datagram().await.map_err(connection_lost),
            Link::Tunnel(t) => t.read_datagram().await,
        }
    }

    /// Largest datagram `send_datagram` takes now, in bytes (about 1150
    /// before path-MTU discovery raises it; 0 if the peer takes none).
    pub fn max_datagram_size(&self) -> usize {
        match self {
            Link::Quic(c) => c.max_datagram_size().unwrap_or(0),
            Link::Tunnel(t) => t.max_datagram_size(),
        }
    }

    /// The 6-digit code both ends show (`pake::VerificationCode`).
    pub fn verification_code(&self) -> VerificationCode {
        match self {
            // The exporter of an established QUIC connection always exists;
            // a failure would mean a closed session, shown as 000 000.
            Link::Quic(c) => quic::verification_code(c).unwrap_or(VerificationCode(0)),
            Link::Tunnel(t) => t.verification_code(),
        }
    }

    /// Closes the link; the peer sees `reason`.
    pub fn close(&self, reason: &str) {
        match self {
            Link::Quic(c) => c.close(CLOSE_CODE.into(), reason.as_bytes()),
            Link::Tunnel(t) => t.close(reason),
        }
    }

    /// Resolves when the link is closed, by either side or by idle timeout.
    pub async fn closed(&self) {
        match self {
            Link::Quic(c) => {
                c.closed().await;
            }
            Link::Tunnel(t) => t.closed().await,
        }
    }

    /// Why the link closed (`None` while it is open), worded for a person.
    pub fn close_reason(&self) -> Option<String> {
        match self {
            Link::Quic(c) => c.close_reason().map(|e| match e {
                quinn::ConnectionError::ApplicationClosed(a) => {
                    String::from_utf8_lossy(&a.reason).into_owned()
                }
                other => other.to_string(),
            }),
            Link::Tunnel(t) => t.close_reason().map(|r| match r {
                super::tunnel::mux::CloseReason::Peer { reason, .. } if !reason.is_empty() => {
                    reason
                }
                other => other.to_string(),
            }),
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link({} to {})", self.kind(), self.remote_address())
    }
}

/// A quinn send stream that resets when dropped without `close()`
/// (quinn's own drop finishes it, which would pass a truncated transfer off
/// as complete).
struct QuicSend {
    stream: quinn::SendStream,
    closed: bool,
}

impl AsyncWrite for QuicSend {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.stream), cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.closed = true;
        match self.stream.finish() {
            // Finishing twice is not an error for a caller.
            Ok(()) | Err(quinn::ClosedStream { .. }) => Poll::Ready(Ok(())),
        }
    }
}

impl Drop for QuicSend {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.stream.reset(0u32.into());
        }
    }
}

fn quic_pair(send: quinn::SendStream, recv: quinn::RecvStream) -> (LinkSend, LinkRecv) {
    (Box::new(QuicSend { stream: send, closed: false }), Box::new(recv))
}

/// A link that passed admission, with its control stream.
pub struct Established<L> {
    pub link: L,
    pub control_send: LinkSend,
    pub control_recv: LinkRecv,
    pub admission: Admission,
    /// The host's certificate fingerprint (client side; None on the host).
    pub fingerprint: Option<Fingerprint>,
}

/// Why a client could not establish a link, worded for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot reach a Sapora host at {addr}: {source}")]
    Quic { addr: SocketAddr, source: QuicError },
    #[error("the host at {addr} did not let you in: {source}")]
    Admission { addr: SocketAddr, source: AdmissionError },
    #[error("the host at {addr} did not answer within {secs} s")]
    Timeout { addr: SocketAddr, secs: u64 },
    /// The TLS/TCP fallback failed (after QUIC did, or when forced).
    #[error("cannot reach a Sapora host at {addr} over TLS: {source}")]
    Tunnel { addr: SocketAddr, source: super::tunnel::TunnelError },
    /// `SAPORA_TRANSPORT` holds something else than quic, tls or auto.
    #[error("{0}")]
    BadTransport(String),
}

impl ConnectError {
    /// A missing, wrong or too-often-tried passcode (its own exit code).
    pub fn is_passcode_refusal(&self) -> bool {
        match self {
            ConnectError::Admission { source, .. } => source.is_passcode_refusal(),
            ConnectError::Tunnel { source, .. } => source.is_passcode_refusal(),
            _ => false,
        }
    }

    /// The host's certificate is not the one pinned for it (the loud
    /// warning; retrying cannot help).
    pub fn is_certificate_changed(&self) -> bool {
        matches!(
            self,
            ConnectError::Quic { source: QuicError::Pin(super::pin::PinError::Changed(_)), .. }
                | ConnectError::Tunnel {
                    source: super::tunnel::TunnelError::Pin(super::pin::PinError::Changed(_)),
                    ..
                }
        )
    }

    /// Retrying cannot help: a refusal by passcode, a changed certificate,
    /// or a known-hosts file that cannot be read or written.
    pub fn is_permanent(&self) -> bool {
        self.is_passcode_refusal()
            || matches!(
                self,
                ConnectError::Quic { source: QuicError::Pin(_), .. }
                    | ConnectError::Tunnel { source: super::tunnel::TunnelError::Pin(_), .. }
                    | ConnectError::BadTransport(_)
            )
    }
}

/// The client's side: connects over QUIC to `addr`, checks the host's
/// certificate against `pins` (trust on first use: an unknown host is pinned
/// after the handshake, a changed one refused loudly), opens the control
/// stream and runs admission for `room` (with `passcode`, or as an open room).
/// The handshake is bounded by the QUIC idle timeout and admission by
/// `admission::ADMISSION_TIMEOUT`; callers add their own overall timeout.
pub async fn connect(
    addr: SocketAddr,
    room: &str,
    passcode: Option<&Passcode>,
    pins: &PinStore,
) -> Result<Established<Link>, ConnectError> {
    connect_expecting(addr, room, passcode, pins, None).await
}

/// [`connect`], trusting `beacon` (the fingerprint a discovery beacon
/// announced, `DiscoveredHost::fingerprint`) instead of first use for a host
/// with no known-hosts pin; the host is then pinned. A known-hosts pin
/// always wins over the beacon (beacons are not authenticated).
pub async fn connect_expecting(
    addr: SocketAddr,
    room: &str,
    passcode: Option<&Passcode>,
    pins: &PinStore,
    beacon: Option<Fingerprint>,
) -> Result<Established<Link>, ConnectError> {
    let tunnel = || async {
        let est = super::tunnel::connect_expecting(addr, room, passcode, pins, beacon)
            .await
            .map_err(|source| ConnectError::Tunnel { addr, source })?;
        Ok(Established {
            link: Link::Tunnel(est.link),
            control_send: est.control_send,
            control_recv: est.control_recv,
            admission: est.admission,
            fingerprint: est.fingerprint,
        })
    };
    match Transport::from_env().map_err(ConnectError::BadTransport)? {
        Transport::Quic => connect_quic(addr, room, passcode, pins, beacon).await,
        Transport::Tls => tunnel().await,
        Transport::Auto => {
            let quic = async { Some(connect_quic(addr, room, passcode, pins, beacon).await) };
            let grace = async {
                smol::Timer::after(QUIC_GRACE).await;
                None
            };
            let quic_error = match smol::future::or(quic, grace).await {
                Some(Ok(est)) => return Ok(est),
                // A refusal by passcode or a changed certificate is the
                // host's answer: another transport must not retry it.
                Some(Err(e)) if e.is_permanent() => return Err(e),
                Some(Err(e)) => Some(e),
                None => None,
            };
            tracing::info!(%addr, "QUIC did not connect within {} s; trying TLS over TCP", QUIC_GRACE.as_secs());
            match tunnel().await {
                Ok(est) => Ok(est),
                Err(e) if e.is_permanent() => Err(e),
                // Neither works: QUIC's reason is the more telling one
                // (the TLS listener shares its port number).
                Err(e) => Err(quic_error.unwrap_or(e)),
            }
        }
    }
}

/// How long a client gives QUIC before it tries the TLS/TCP fallback
/// (issue 14: "about 2 s").
pub const QUIC_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Which transport a client uses: `SAPORA_TRANSPORT=quic|tls|auto`
/// (default auto: QUIC, then TLS after [`QUIC_GRACE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Quic,
    Tls,
    Auto,
}

impl Transport {
    /// The environment variable that forces a transport (tests, diagnosis).
    pub const ENV: &'static str = "SAPORA_TRANSPORT";

    /// From [`Transport::ENV`]; unset or empty is auto.
    pub fn from_env() -> Result<Transport, String> {
        match std::env::var(Self::ENV) {
            Err(_) => Ok(Transport::Auto),
            Ok(v) => Transport::parse(&v),
        }
    }

    /// `quic`, `tls` or `auto` (case-insensitive; empty is auto).
    pub fn parse(word: &str) -> Result<Transport, String> {
        match word.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Transport::Auto),
            "quic" => Ok(Transport::Quic),
            "tls" => Ok(Transport::Tls),
            other => Err(format!("{}={other:?}: use quic, tls or auto", Self::ENV)),
        }
    }
}

/// [`connect_expecting`] over QUIC only.
async fn connect_quic(
    addr: SocketAddr,
    room: &str,
    passcode: Option<&Passcode>,
    pins: &PinStore,
    beacon: Option<Fingerprint>,
) -> Result<Established<Link>, ConnectError> {
    let quic_err = |source| ConnectError::Quic { addr, source };
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    // One endpoint per link: its driver lives as long as the connection.
    let endpoint = quic::client_endpoint_on(local, client_runtime()).map_err(quic_err)?;
    let connected = match beacon {
        None => quic::connect_tofu(&endpoint, addr, pins).await,
        Some(beacon) => connect_beacon(&endpoint, addr, pins, beacon).await,
    }
    .map_err(quic_err)?;
    let connection = connected.connection;
    let (mut send, mut recv) =
        connection.open_bi().await.map_err(|e| quic_err(QuicError::Connection(e)))?;
    let admission = quic::client_admission(&connection, &mut send, &mut recv, room, passcode)
        .await
        .map_err(|source| {
            connection.close(CLOSE_CODE.into(), b"admission failed");
            ConnectError::Admission { addr, source }
        })?;
    let (control_send, control_recv) = quic_pair(send, recv);
    Ok(Established {
        link: Link::Quic(connection),
        control_send,
        control_recv,
        admission,
        fingerprint: Some(connected.fingerprint),
    })
}

/// The clients' QUIC runtime: quinn's endpoint and connection drivers run
/// on one executor with its own thread (`sapora-quic`), not on smol's global
/// executor. QUIC acknowledges, paces and keeps alive in user space: a
/// task that blocks the global executor for a while (a bot's or the app's)
/// must not stall every link of the process, as a kernel TCP stack would
/// not have been.
fn client_runtime() -> Arc<dyn quinn::Runtime> {
    static EXECUTOR: std::sync::OnceLock<Arc<smol::Executor<'static>>> = std::sync::OnceLock::new();
    let executor = EXECUTOR.get_or_init(|| quic::start_executor(1, |_| "sapora-quic".into()));
    Arc::new(quic::ExecutorRuntime(executor.clone()))
}

/// Trust the beacon's fingerprint for a host not in `pins`, then pin it.
async fn connect_beacon(
    endpoint: &quinn::Endpoint,
    addr: SocketAddr,
    pins: &PinStore,
    beacon: Fingerprint,
) -> Result<quic::Connected, QuicError> {
    let host = super::pin::host_key(addr);
    let known = {
        let pins = pins.clone();
        smol::unblock(move || pins.load()).await?
    };
    if known.get(&host).is_some() {
        return quic::connect_tofu(endpoint, addr, pins).await;
    }
    let connected = quic::connect(endpoint, addr, quic::Trust::Pinned(beacon)).await?;
    let (pins, fingerprint) = (pins.clone(), connected.fingerprint);
    if let Err(e) = smol::unblock(move || pins.check_and_pin(&host, fingerprint)).await {
        connected.connection.close(CLOSE_CODE.into(), b"certificate not trusted");
        return Err(e.into());
    }
    Ok(connected)
}

/// The host's side for one incoming connection that passed the caps: the
/// handshake, the client's first bidirectional stream (the control stream)
/// and admission. The connection slot is released when the connection
/// closes. Refused or failed clients are closed with the reason.
pub async fn accept(
    accepted: quic::Accepted,
    passcode_for: impl Fn(&str) -> Option<Passcode>,
    limiter: &Mutex<AttemptLimiter>,
) -> Result<Established<Link>, AdmissionError> {
    let quic::Accepted { connecting, slot } = accepted;
    let connection = connecting.await.map_err(|e| AdmissionError::Io(e.to_string()))?;
    hold_slot(&connection, slot);
    let first =
        async { connection.accept_bi().await.map_err(|e| AdmissionError::Io(e.to_string())) };
    let timeout = async {
        smol::Timer::after(super::admission::ADMISSION_TIMEOUT).await;
        Err(AdmissionError::Timeout)
    };
    let (mut send, mut recv) = smol::future::or(first, timeout).await.inspect_err(|_| {
        connection.close(CLOSE_CODE.into(), b"no control stream");
    })?;
    match quic::host_admission(&connection, &mut send, &mut recv, passcode_for, limiter).await {
        Ok(admission) => {
            let (control_send, control_recv) = quic_pair(send, recv);
            Ok(Established {
                link: Link::Quic(connection),
                control_send,
                control_recv,
                admission,
                fingerprint: None,
            })
        }
        Err(e) => {
            // The refusal frame was written and finished; give it a moment
            // to leave before the connection goes.
            let _ = send.finish();
            let conn = connection.clone();
            smol::spawn(async move {
                let _ = smol::future::or(
                    async {
                        let _ = send.stopped().await;
                    },
                    async {
                        smol::Timer::after(std::time::Duration::from_millis(500)).await;
                    },
                )
                .await;
                conn.close(CLOSE_CODE.into(), b"refused");
            })
            .detach();
            Err(e)
        }
    }
}

/// Keeps `slot` (a connection cap) until `connection` closes.
fn hold_slot(connection: &quinn::Connection, slot: ConnectionSlot) {
    let connection = connection.clone();
    smol::spawn(async move {
        connection.closed().await;
        drop(slot);
    })
    .detach();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use smol::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::transport::cert::HostIdentity;
    use crate::transport::limit::{ATTEMPT_WINDOW, ConnectionCaps, MAX_FAILURES, SharedCaps};

    struct TestHost {
        addr: SocketAddr,
        fingerprint: Fingerprint,
        links: smol::channel::Receiver<Result<Established<Link>, String>>,
        _task: smol::Task<()>,
    }

    fn host(passcode: Option<&str>) -> TestHost {
        let identity = HostIdentity::generate().unwrap();
        let endpoint = quic::host_endpoint("127.0.0.1:0".parse().unwrap(), &identity).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let caps = SharedCaps::new(ConnectionCaps::new(64, 1024));
        let limiter = Arc::new(Mutex::new(AttemptLimiter::new(MAX_FAILURES, ATTEMPT_WINDOW)));
        let passcode = passcode.map(|p| Passcode::new(p).unwrap());
        let (tx, links) = smol::channel::unbounded();
        let task = smol::spawn(async move {
            while let Some(accepted) = quic::accept(&endpoint, &caps).await {
                let (tx, limiter, passcode) = (tx.clone(), limiter.clone(), passcode.clone());
                smol::spawn(async move {
                    let got = accept(accepted, |_| passcode.clone(), &limiter).await;
                    let _ = tx.send(got.map_err(|e| e.to_string())).await;
                })
                .detach();
            }
        });
        TestHost { addr, fingerprint: identity.fingerprint(), links, _task: task }
    }

    fn pins() -> (tempfile::TempDir, PinStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = PinStore::at(dir.path().join("known_hosts"));
        (dir, store)
    }

    #[test]
    fn streams_and_datagrams_flow_both_ways_after_admission() {
        smol::block_on(async {
            let host = host(Some("open sesame"));
            let (_dir, pins) = pins();
            let code = Passcode::new("open sesame").unwrap();
            let mut client = connect(host.addr, "Room", Some(&code), &pins).await.unwrap();
            let mut served = host.links.recv().await.unwrap().unwrap();
            assert_eq!(client.fingerprint, Some(host.fingerprint));
            assert_eq!(served.admission.room, "Room");
            assert_eq!(client.link.kind(), TransportKind::Quic);
            assert_eq!(client.link.verification_code(), served.link.verification_code());
            assert!(client.link.max_datagram_size() >= 1100);

            // Control stream both ways.
            client.control_send.write_all(b"hello host").await.unwrap();
            let mut got = [0u8; 10];
            served.control_recv.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hello host");
            served.control_send.write_all(b"hi").await.unwrap();
            let mut got = [0u8; 2];
            client.control_recv.read_exact(&mut got).await.unwrap();
            assert_eq!(&got, b"hi");

            // A further stream opened by the client; close() is a clean EOF.
            let (mut s, _r) = client.link.open_bi().await.unwrap();
            s.write_all(b"file bytes").await.unwrap();
            s.close().await.unwrap();
            let (_hs, mut hr) = served.link.accept_bi().await.unwrap();
            let mut all = Vec::new();
            hr.read_to_end(&mut all).await.unwrap();
            assert_eq!(all, b"file bytes");

            // A stream dropped without close() is reset, not a clean EOF.
            let (mut s, _r) = client.link.open_bi().await.unwrap();
            s.write_all(b"half").await.unwrap();
            drop(s);
            let (_hs, mut hr) = served.link.accept_bi().await.unwrap();
            let mut all = Vec::new();
            assert!(hr.read_to_end(&mut all).await.is_err(), "a reset is not an EOF");

            // Datagrams both ways; one over the limit is refused.
            client.link.send_datagram(Bytes::from_static(b"up")).unwrap();
            assert_eq!(&served.link.read_datagram().await.unwrap()[..], b"up");
            served.link.send_datagram(Bytes::from_static(b"down")).unwrap();
            assert_eq!(&client.link.read_datagram().await.unwrap()[..], b"down");
            let big = Bytes::from(vec![0u8; client.link.max_datagram_size() + 1]);
            assert!(client.link.send_datagram(big).is_err());

            client.link.close("bye");
            served.link.closed().await;
            assert_eq!(served.link.close_reason().as_deref(), Some("bye"));
            assert!(served.link.read_datagram().await.is_err());
        });
    }

    #[test]
    fn wrong_passcode_is_a_passcode_refusal() {
        smol::block_on(async {
            let host = host(Some("right"));
            let (_dir, pins) = pins();
            let wrong = Passcode::new("wrong").unwrap();
            let err = connect(host.addr, "r", Some(&wrong), &pins).await.err().unwrap();
            assert!(err.is_passcode_refusal(), "{err}");
            let err = connect(host.addr, "r", None, &pins).await.err().unwrap();
            assert!(err.is_passcode_refusal(), "missing passcode: {err}");
            assert!(host.links.recv().await.unwrap().is_err());
        });
    }

    #[test]
    fn a_pinned_host_with_another_certificate_is_refused_loudly() {
        smol::block_on(async {
            let first = host(None);
            let (_dir, pins) = pins();
            let ok = connect(first.addr, "", None, &pins).await.unwrap();
            ok.link.close("done");
            // Same address, new certificate.
            let mut hosts = pins.load().unwrap();
            let other = HostIdentity::generate().unwrap().fingerprint();
            hosts.forget(&crate::transport::pin::host_key(first.addr));
            hosts.pin(&crate::transport::pin::host_key(first.addr), other);
            pins.save(&hosts).unwrap();
            let err = connect(first.addr, "", None, &pins).await.err().unwrap();
            assert!(err.is_certificate_changed(), "{err}");
            assert!(err.is_permanent());
            let text = err.to_string();
            assert!(text.contains(&other.short()), "{text}");
            assert!(text.contains(&first.fingerprint.short()), "{text}");
        });
    }

    #[test]
    fn a_beacon_fingerprint_is_trusted_for_an_unknown_host_but_a_pin_wins() {
        smol::block_on(async {
            let host = host(None);
            let (_dir, pins) = pins();
            let other = HostIdentity::generate().unwrap().fingerprint();
            // A beacon naming another certificate: refused, nothing pinned.
            let err = connect_expecting(host.addr, "", None, &pins, Some(other)).await.err();
            assert!(matches!(
                err,
                Some(ConnectError::Quic { source: QuicError::PinMismatch { .. }, .. })
            ));
            assert!(pins.load().unwrap().is_empty());
            // The right one: admitted and pinned.
            let ok = connect_expecting(host.addr, "", None, &pins, Some(host.fingerprint)).await;
            ok.unwrap().link.close("done");
            let key = crate::transport::pin::host_key(host.addr);
            assert_eq!(pins.load().unwrap().get(&key), Some(host.fingerprint));
            // Now the pin wins over a beacon that says otherwise.
            let ok = connect_expecting(host.addr, "", None, &pins, Some(other)).await;
            ok.unwrap().link.close("done");
        });
    }

    #[test]
    fn a_client_that_never_opens_the_control_stream_times_out() {
        smol::block_on(async {
            let host = host(None);
            let endpoint = quic::client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap();
            let c = quic::connect(&endpoint, host.addr, quic::Trust::FirstUse).await.unwrap();
            let got = smol::future::or(async { Some(host.links.recv().await) }, async {
                smol::Timer::after(Duration::from_secs(15)).await;
                None
            })
            .await;
            assert!(matches!(got, Some(Ok(Err(_)))), "the host gave up on the silent client");
            drop(c);
        });
    }
}
