//! The tunnel: a whole Sapora link over one TLS/TCP WebSocket, for networks
//! that block UDP (issue 14's TCP fallback).
//!
//! [`Tunnel`] has the methods of `transport::link::Link` (its
//! [`Tunnel::kind`] is [`TransportKind::Tls`]): after the admission of
//! [`super::fallback`], one WebSocket carries
//! - the control stream (stream 0, reliable and ordered),
//! - datagrams (audio, video): bounded queues, newest wins, never blocking
//!   the sender (which may be the host's mixer thread),
//! - bidirectional streams opened by either side (files, screen), each with
//!   its own id, FIN, reset and credit-based flow control, so that a big
//!   file cannot starve control or media.
//!
//! The wire layout is `docs/transport-v2.md` §5.1–5.5. The logic is the sans-IO
//! [`mux::Mux`] (its vocabulary in [`events`], a stream's state in `stream`,
//! the datagram queue and BATCH messages in [`datagrams`]); this module is
//! its driver: one writer task (which writes in the mux's priority order:
//! protocol messages, control, datagrams, then stream chunks round-robin,
//! and WebSocket pings for keep-alive) and one reader task per WebSocket
//! (both in `tasks`), spawned on the executor given (smol's global one by
//! default).
//!
//! [`connect`] is the client's side (TOFU through [`PinStore`], as
//! `quic::connect_tofu`), [`serve_tcp_with`] the host's accept loop, which
//! also hands the browser guests' requests to a [`WebService`] (one port:
//! the request after TLS picks the route, [`fallback::accept_any`]).
//!
//! Head-of-line blocking: TCP delivers in order, so a datagram still waits
//! for the bytes already handed to the kernel. The writer never queues more
//! than one chunk ([`mux::MAX_CHUNK`]) ahead of a datagram in user space, and
//! the socket's unsent-bytes mark (`TCP_NOTSENT_LOWAT`,
//! [`fallback::NOTSENT_LOWAT`], set by [`fallback`]) keeps the kernel's
//! queue of unsent bytes short as well.

pub mod datagrams;
pub mod events;
pub mod mux;
mod stream;
mod tasks;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use smol::io::{AsyncRead, AsyncWrite};

use self::mux::{CONTROL_ID, Mux, Read, Side, StreamError, Timing};
use super::admission::{self, AdmissionError};
use super::cert::Fingerprint;
use super::fallback::{self, Accepted, FallbackError, HostTls, WsPipe};
use super::http::Request;
use super::limit::{AttemptLimiter, ConnectionSlot, SharedCaps};
use super::link::{Established, LinkRecv, LinkSend, TransportKind};
use super::pake::{Passcode, VerificationCode};
use super::pin::{PinError, PinStore, host_key};
use super::quic::Trust;

/// [`connect`] must be admitted within this time (TCP, TLS, WebSocket
/// upgrade and the passcode check together).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Received datagrams waiting for `read_datagram`; past it the oldest is
/// dropped (newest wins). At [`mux::MAX_DATAGRAM`] bytes each at most 8 MiB;
/// media datagrams are ~1.2 KiB (about 0.6 MiB).
pub const RECV_DATAGRAMS: usize = 512;
/// A write of the WebSocket that makes no progress for this long means the
/// peer stopped reading: the connection is closed.
pub const WRITE_STALL_TIMEOUT: Duration = mux::IDLE_TIMEOUT;

/// Errors of [`connect`], worded for the CLI.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("{0}")]
    Fallback(#[from] FallbackError),
    #[error("{0}")]
    Pin(#[from] PinError),
    #[error("{0}")]
    Admission(#[from] AdmissionError),
    #[error("the TLS connection was not admitted within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

impl TunnelError {
    /// The host's certificate is not the one pinned for it
    /// ([`PinError::Changed`], the loud warning).
    pub fn is_certificate_changed(&self) -> bool {
        matches!(self, TunnelError::Pin(PinError::Changed(_)))
    }

    /// Whether this is a refusal about the passcode (see
    /// [`AdmissionError::is_passcode_refusal`]).
    pub fn is_passcode_refusal(&self) -> bool {
        matches!(self, TunnelError::Admission(e) if e.is_passcode_refusal())
    }
}

/// Where the tunnel's reader and writer tasks run.
#[derive(Clone, Default)]
pub enum Spawner {
    /// smol's global executor.
    #[default]
    Global,
    /// An explicit executor (the host's sized, named-thread one).
    Executor(Arc<smol::Executor<'static>>),
}

impl Spawner {
    fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        match self {
            Spawner::Global => smol::spawn(future).detach(),
            Spawner::Executor(executor) => executor.spawn(future).detach(),
        }
    }
}

/// What the tasks and the handles share.
struct Inner {
    mux: Mutex<Mux>,
    /// Wakes the writer (capacity 1: a pending wake is enough).
    wake_writer: smol::channel::Sender<()>,
    /// Dropped when the connection closes: `closed()` resolves.
    closed_tx: Mutex<Option<smol::channel::Sender<()>>>,
    closed_rx: smol::channel::Receiver<()>,
    datagrams: smol::channel::Receiver<Bytes>,
    accepted: smol::channel::Receiver<u32>,
    remote: SocketAddr,
    code: VerificationCode,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Mux> {
        // Every mux operation leaves it consistent: ignore poisoning.
        self.mux.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the mux, then wakes the writer if it has something to
    /// write and signals `closed()` if the connection ended.
    fn with<R>(&self, f: impl FnOnce(&mut Mux) -> R) -> R {
        let mut mux = self.lock();
        let result = f(&mut mux);
        let wants = mux.wants_transmit();
        let closed = mux.close_reason().is_some();
        drop(mux);
        // The writer also ends (and gives its connection slot back) on close.
        if wants || closed {
            let _ = self.wake_writer.try_send(());
        }
        if closed {
            self.closed_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        result
    }

    fn closed_error(&self) -> std::io::Error {
        let reason = self.lock().close_reason().cloned();
        let reason = reason.unwrap_or(mux::CloseReason::Lost("tasks ended".into()));
        StreamError::Closed(reason).into()
    }
}

/// Held by every user handle ([`Tunnel`] and stream halves); when the last
/// goes, the connection is closed (as dropping a quinn connection).
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        self.0.with(|mux| mux.close("the link was dropped"));
    }
}

/// A Sapora link over a TLS/TCP WebSocket (see the module docs). Cloning
/// gives another handle to the same connection.
#[derive(Clone)]
pub struct Tunnel {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tunnel").field("remote", &self.inner().remote).finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Starts the multiplexer on an admitted WebSocket: spawns its reader
    /// and writer tasks with `spawner`. `slot` (the host's connection cap)
    /// is given back when the connection ends. Returns the tunnel and the
    /// control stream's halves (stream 0).
    pub fn start<S>(
        ws: WebSocketStream<S>,
        side: Side,
        remote: SocketAddr,
        code: VerificationCode,
        slot: Option<ConnectionSlot>,
        spawner: &Spawner,
    ) -> (Tunnel, LinkSend, LinkRecv)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Tunnel::start_with(ws, side, remote, code, slot, spawner, Timing::default())
    }

    /// [`Tunnel::start`] with another keep-alive and idle rule.
    pub fn start_with<S>(
        ws: WebSocketStream<S>,
        side: Side,
        remote: SocketAddr,
        code: VerificationCode,
        slot: Option<ConnectionSlot>,
        spawner: &Spawner,
        timing: Timing,
    ) -> (Tunnel, LinkSend, LinkRecv)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (wake_writer, wakes) = smol::channel::bounded(1);
        let (closed_tx, closed_rx) = smol::channel::bounded(1);
        let (datagram_tx, datagrams) = smol::channel::bounded(RECV_DATAGRAMS);
        let (accepted_tx, accepted) = smol::channel::unbounded();
        let inner = Arc::new(Inner {
            mux: Mutex::new(Mux::with_timing(side, Instant::now(), timing)),
            wake_writer,
            closed_tx: Mutex::new(Some(closed_tx)),
            closed_rx,
            datagrams,
            accepted,
            remote,
            code,
        });
        let (sink, stream) = ws.split();
        spawner.spawn(tasks::writer(inner.clone(), sink, wakes, slot));
        spawner.spawn(tasks::reader(inner.clone(), stream, datagram_tx, accepted_tx));
        let tunnel = Tunnel { owner: Arc::new(Owner(inner)) };
        let (send, recv) = tunnel.halves(CONTROL_ID);
        (tunnel, send, recv)
    }

    fn inner(&self) -> &Inner {
        &self.owner.0
    }

    fn halves(&self, id: u32) -> (LinkSend, LinkRecv) {
        (
            Box::new(TunnelSend { owner: self.owner.clone(), id }),
            Box::new(TunnelRecv { owner: self.owner.clone(), id }),
        )
    }

    /// Always [`TransportKind::Tls`].
    pub fn kind(&self) -> TransportKind {
        TransportKind::Tls
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.inner().remote
    }

    /// A new bidirectional stream; waits while [`mux::MAX_STREAMS`] opened
    /// here are open.
    pub async fn open_bi(&self) -> std::io::Result<(LinkSend, LinkRecv)> {
        let id = std::future::poll_fn(|cx| match self.inner().with(|mux| mux.open(cx.waker())) {
            Ok(Some(id)) => Poll::Ready(Ok(id)),
            Ok(None) => Poll::Pending,
            Err(e) => Poll::Ready(Err(std::io::Error::from(e))),
        })
        .await?;
        Ok(self.halves(id))
    }

    /// The next stream the peer opened; an error once the link is closed.
    pub async fn accept_bi(&self) -> std::io::Result<(LinkSend, LinkRecv)> {
        let inner = self.inner();
        let id = smol::future::or(async { inner.accepted.recv().await.ok() }, async {
            let _ = inner.closed_rx.recv().await;
            None
        })
        .await;
        match id {
            Some(id) => Ok(self.halves(id)),
            None => Err(inner.closed_error()),
        }
    }

    /// Queues a datagram (audio, video). Never blocks and may be called from
    /// any thread: a full queue drops its oldest datagram (newest wins). Err
    /// only when the link is closed or `data` is over
    /// [`Tunnel::max_datagram_size`].
    pub fn send_datagram(&self, data: Bytes) -> std::io::Result<()> {
        self.inner().with(|mux| mux.send_datagram(data)).map_err(std::io::Error::from)
    }

    /// The next datagram; an error once the link is closed.
    pub async fn read_datagram(&self) -> std::io::Result<Bytes> {
        let inner = self.inner();
        match inner.datagrams.try_recv() {
            Ok(datagram) => return Ok(datagram),
            Err(_) if inner.lock().close_reason().is_some() => return Err(inner.closed_error()),
            Err(_) => {}
        }
        let datagram = smol::future::or(async { inner.datagrams.recv().await.ok() }, async {
            let _ = inner.closed_rx.recv().await;
            None
        })
        .await;
        datagram.ok_or_else(|| inner.closed_error())
    }

    /// Largest datagram [`Tunnel::send_datagram`] takes, in bytes
    /// ([`mux::MAX_DATAGRAM`]).
    pub fn max_datagram_size(&self) -> usize {
        mux::MAX_DATAGRAM
    }

    /// The 6-digit code both ends show (from this TLS session's exporter).
    pub fn verification_code(&self) -> VerificationCode {
        self.inner().code
    }

    /// Closes the link; the peer sees `reason` (in the WebSocket close frame,
    /// cut to [`mux::MAX_REASON`] bytes).
    pub fn close(&self, reason: &str) {
        self.inner().with(|mux| mux.close(reason));
    }

    /// Resolves when the link is closed, by either side, by the idle
    /// timeout or by a failure.
    pub async fn closed(&self) {
        let _ = self.inner().closed_rx.recv().await;
    }

    /// Why the link closed, once it has.
    pub fn close_reason(&self) -> Option<mux::CloseReason> {
        self.inner().lock().close_reason().cloned()
    }

    /// Bytes this side holds for the connection now (queued to send, received
    /// but unread), for tests and reports.
    pub fn buffered_bytes(&self) -> usize {
        self.inner().lock().buffered_bytes()
    }

    /// Outgoing datagrams dropped so far because the queue was full.
    pub fn datagrams_dropped(&self) -> u64 {
        self.inner().lock().datagrams_dropped()
    }
}

/// The write half of a tunnel stream.
struct TunnelSend {
    owner: Arc<Owner>,
    id: u32,
}

impl AsyncWrite for TunnelSend {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.owner.0.with(|mux| mux.write(self.id, buf, cx.waker())) {
            Ok(0) => Poll::Pending,
            Ok(n) => Poll::Ready(Ok(n)),
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }

    /// Written bytes are queued for the writer task at once: nothing to do
    /// (as quinn's streams).
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Finishes the stream: FIN follows the queued bytes.
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.owner.0.with(|mux| mux.finish(self.id)).map_err(Into::into))
    }
}

impl Drop for TunnelSend {
    fn drop(&mut self) {
        self.owner.0.with(|mux| mux.drop_send(self.id));
    }
}

/// The read half of a tunnel stream.
struct TunnelRecv {
    owner: Arc<Owner>,
    id: u32,
}

impl AsyncRead for TunnelRecv {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        match self.owner.0.with(|mux| mux.read(self.id, buf, cx.waker())) {
            Ok(Read::Data(n)) => Poll::Ready(Ok(n)),
            Ok(Read::Fin) => Poll::Ready(Ok(0)),
            Ok(Read::Blocked) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e.into())),
        }
    }
}

impl Drop for TunnelRecv {
    fn drop(&mut self) {
        self.owner.0.with(|mux| mux.drop_recv(self.id));
    }
}

/// The client's side: TLS/WebSocket to the host at `addr` with trust on
/// first use through `pins` (a known host must present its pinned
/// certificate, else [`PinError::Changed`]; an unknown one is pinned after
/// the TLS handshake), then the passcode check for `room`, then the tunnel.
/// All within [`CONNECT_TIMEOUT`]. Tasks run on smol's global executor.
pub async fn connect(
    addr: SocketAddr,
    room: &str,
    passcode: Option<&Passcode>,
    pins: &PinStore,
) -> Result<Established<Tunnel>, TunnelError> {
    connect_on(addr, room, passcode, pins, &Spawner::Global).await
}

/// [`connect`], trusting `beacon` (the fingerprint a discovery beacon
/// announced) instead of first use for a host with no known-hosts pin, as
/// `link::connect_expecting` does over QUIC: a host that presents another
/// certificate than the beacon's is refused
/// ([`FallbackError::PinMismatch`]), one that presents it is pinned. A
/// known-hosts pin always wins over the beacon (beacons are not
/// authenticated); a pinned host that presents another certificate is the
/// loud [`PinError::Changed`], the same error as over QUIC.
pub async fn connect_expecting(
    addr: SocketAddr,
    room: &str,
    passcode: Option<&Passcode>,
    pins: &PinStore,
    beacon: Option<Fingerprint>,
) -> Result<Established<Tunnel>, TunnelError> {
    connect_expecting_on(addr, room, passcode, pins, beacon, &Spawner::Global).await
}

/// [`connect`] with the tunnel's tasks on `spawner`.
pub async fn connect_on(
    addr: SocketAddr,
    room: &str,
    passcode: Option<&Passcode>,
    pins: &PinStore,
    spawner: &Spawner,
) -> Result<Established<Tunnel>, TunnelError> {
    connect_expecting_on(addr, room, passcode, pins, None, spawner).await
}

/// [`connect_expecting`] with the tunnel's tasks on `spawner`.
pub async fn connect_expecting_on(
    addr: SocketAddr,
    room: &str,
    passcode: Option<&Passcode>,
    pins: &PinStore,
    beacon: Option<Fingerprint>,
    spawner: &Spawner,
) -> Result<Established<Tunnel>, TunnelError> {
    let work = async {
        let host = host_key(addr);
        let known = {
            let pins = pins.clone();
            smol::unblock(move || pins.load()).await?
        };
        let pinned = known.get(&host);
        let trust = match (pinned, beacon) {
            (Some(pinned), _) => Trust::Pinned(pinned),
            (None, Some(beacon)) => Trust::Pinned(beacon),
            (None, None) => Trust::FirstUse,
        };
        let mut conn = match fallback::connect(addr, trust).await {
            Err(FallbackError::PinMismatch { expected, presented }) if pinned.is_some() => {
                return Err(pins.changed(&known, &host, expected, presented).into());
            }
            other => other?,
        };
        let fingerprint = conn.fingerprint;
        if let (None, Some(presented)) = (pinned, fingerprint) {
            let pins = pins.clone();
            smol::unblock(move || pins.check_and_pin(&host, presented)).await?;
        }
        let exporter = conn.passcode_exporter();
        let admission =
            admission::client(&mut WsPipe(&mut conn.ws), exporter, room, passcode).await?;
        let code = conn.verification_code();
        let (link, control_send, control_recv) =
            Tunnel::start(conn.ws, Side::Client, conn.peer, code, None, spawner);
        Ok(Established { link, control_send, control_recv, admission, fingerprint })
    };
    smol::future::or(work, async {
        smol::Timer::after(CONNECT_TIMEOUT).await;
        Err(TunnelError::Timeout)
    })
    .await
}

/// A web application served on the host's TCP port beside the tunnel (the
/// browser guests' page and their WebSocket, `crate::guest`): it answers
/// every request that is not the tunnel's ([`fallback::Accepted::Web`]).
pub trait WebService: Send + Sync + std::fmt::Debug + 'static {
    /// Answers `request` on `tls` (positioned just after the head) and
    /// resolves when the connection is done; the connection's slot in the
    /// caps is held until then. `host` is the address of the host's QUIC
    /// endpoint (the same port number), for a gateway that joins it as a
    /// client; `peer` is the browser's address.
    fn serve(
        &self,
        request: Request,
        tls: Box<HostTls>,
        peer: SocketAddr,
        host: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>>;
}

/// What the host's TCP port serves, and its limits ([`serve_tcp_with`]).
#[derive(Clone, Debug)]
pub struct TcpService {
    /// [`fallback::server_tls_config`] (ALPN `sapora/2` and `http/1.1`).
    pub tls: Arc<rustls::ServerConfig>,
    /// Open connections per source address and in total; every connection
    /// (tunnel or web) holds a slot until it ends.
    pub caps: SharedCaps,
    /// Wrong passcodes per source address (shared with QUIC).
    pub limiter: Arc<Mutex<AttemptLimiter>>,
    pub spawner: Spawner,
    /// Answers every request but the tunnel's; `None`: 404.
    pub web: Option<Arc<dyn WebService>>,
    /// TLS and the request head must arrive within this, else the connection
    /// is closed ([`fallback::HANDSHAKE_TIMEOUT`] by default).
    pub head_timeout: Duration,
}

impl TcpService {
    /// The tunnel only (no web service), with the default time limit.
    pub fn new(
        tls: Arc<rustls::ServerConfig>,
        caps: SharedCaps,
        limiter: Arc<Mutex<AttemptLimiter>>,
    ) -> TcpService {
        TcpService {
            tls,
            caps,
            limiter,
            spawner: Spawner::Global,
            web: None,
            head_timeout: fallback::HANDSHAKE_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for Spawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Spawner::Global => "Global",
            Spawner::Executor(_) => "Executor",
        })
    }
}

/// The host's accept loop on `listener` (TCP 5000), tunnel only:
/// [`serve_tcp_with`] with [`TcpService::new`].
pub async fn serve_tcp(
    listener: smol::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    caps: SharedCaps,
    passcode_for: impl Fn(&str) -> Option<Passcode> + Send + Sync + 'static,
    limiter: Arc<Mutex<AttemptLimiter>>,
    on_link: impl Fn(Established<Tunnel>) + Send + Sync + 'static,
) {
    serve_tcp_on(listener, tls, caps, passcode_for, limiter, on_link, Spawner::Global).await
}

/// [`serve_tcp`] with every task on `spawner`.
pub async fn serve_tcp_on(
    listener: smol::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    caps: SharedCaps,
    passcode_for: impl Fn(&str) -> Option<Passcode> + Send + Sync + 'static,
    limiter: Arc<Mutex<AttemptLimiter>>,
    on_link: impl Fn(Established<Tunnel>) + Send + Sync + 'static,
    spawner: Spawner,
) {
    let service = TcpService { spawner, ..TcpService::new(tls, caps, limiter) };
    serve_tcp_with(listener, service, passcode_for, on_link).await
}

/// The host's accept loop on `listener` (TCP 5000). Per connection: a slot
/// from `service.caps` (per source address and in total; over the caps the
/// TCP connection is closed at once), then in its own task
/// [`fallback::accept_any`]: TLS, one request head within
/// `service.head_timeout`, and its route. The tunnel's upgrade runs the
/// passcode check (`passcode_for` gives a room's passcode,
/// `service.limiter` counts wrong ones) and hands the admitted tunnel to
/// `on_link`; any other request goes to `service.web` (404 without one).
/// The slot is held until the connection ends. Runs until the task is
/// dropped; accept errors (e.g. out of file descriptors) are logged and
/// retried after 100 ms.
pub async fn serve_tcp_with(
    listener: smol::net::TcpListener,
    service: TcpService,
    passcode_for: impl Fn(&str) -> Option<Passcode> + Send + Sync + 'static,
    on_link: impl Fn(Established<Tunnel>) + Send + Sync + 'static,
) {
    let passcode_for = Arc::new(passcode_for);
    let on_link = Arc::new(on_link);
    // Where a web service's gateway reaches the host: this port's number
    // (QUIC listens on the same one), on loopback if bound to any address.
    let host = match listener.local_addr() {
        Ok(addr) if addr.ip().is_unspecified() => {
            let ip: std::net::IpAddr = if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(ip, addr.port())
        }
        Ok(addr) => addr,
        Err(e) => {
            tracing::warn!(error = %e, "the TCP listener has no address");
            return;
        }
    };
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a TLS connection");
                smol::Timer::after(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match service.caps.try_open(peer.ip()) {
            Ok(slot) => slot,
            Err(refusal) => {
                tracing::warn!(remote = %peer, %refusal, "refusing TLS connection");
                continue;
            }
        };
        let (service, passcode_for, on_link) =
            (service.clone(), passcode_for.clone(), on_link.clone());
        service.spawner.clone().spawn(async move {
            let accepted = fallback::accept_any(tcp, service.tls.clone(), service.head_timeout);
            let mut conn = match accepted.await {
                Ok(Accepted::Tunnel(conn)) => *conn,
                Ok(Accepted::Web { request, tls, peer }) => {
                    match &service.web {
                        Some(web) => web.serve(request, tls, peer, host).await,
                        None => drop(fallback::refuse(*tls, 404, fallback::NOT_FOUND).await),
                    }
                    drop(slot);
                    return;
                }
                Err(e) => {
                    tracing::debug!(remote = %peer, error = %e, "TLS connection not served");
                    return;
                }
            };
            let exporter = conn.passcode_exporter();
            let admission = admission::host(
                &mut WsPipe(&mut conn.ws),
                exporter,
                peer.ip(),
                |room| passcode_for(room),
                &service.limiter,
            )
            .await;
            let admission = match admission {
                Ok(admission) => admission,
                Err(e) => {
                    tracing::info!(remote = %peer, error = %e, "TLS client not admitted");
                    return;
                }
            };
            let code = conn.verification_code();
            let (link, control_send, control_recv) =
                Tunnel::start(conn.ws, Side::Host, peer, code, Some(slot), &service.spawner);
            on_link(Established { link, control_send, control_recv, admission, fingerprint: None });
        });
    }
}
