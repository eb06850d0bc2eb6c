//! The TCP fallback: TLS 1.3 over TCP with WebSocket framing.
//!
//! When UDP is blocked a native client cannot complete QUIC; issue 14 has it
//! fall back (after about 2 s) to TLS on TCP 5000. The fallback keeps every
//! security property of the QUIC path, because it uses the same pieces:
//! - the same host certificate and TLS configuration
//!   ([`quic::server_tls_config`], TLS 1.3, ALPN `sapora/2`, checked on both
//!   sides after the handshake), and the same pinned-fingerprint verifier
//!   ([`quic::client_tls_config`]);
//! - the same admission exchange ([`super::admission`]), each passcode frame
//!   one WebSocket binary message ([`WsPipe`]), bound to *this* TLS
//!   session's exporter (so a relay fails here too);
//! - the same verification code.
//!
//! WebSocket (RFC 6455, async-tungstenite on smol, no tokio) frames the
//! byte stream into messages. The upgrade request is `GET /sapora/2`.
//! Messages are capped at [`MAX_MESSAGE`] bytes (before allocation, by
//! tungstenite).
//!
//! The same TCP port serves browser guests: [`accept_any`] reads one HTTP/1.1
//! request head after TLS ([`super::http`]) and routes it: `/sapora/2` to
//! the tunnel, anything else to the host's web service (the guest page and
//! its WebSocket, `crate::guest`), with 400/431 for bad heads and a time
//! limit for slow ones.
//!
//! After admission, [`super::tunnel`] multiplexes control, datagrams and
//! streams over the WebSocket (`docs/transport-v2.md` §5.1–5.5); this module
//! provides the connection and its admission.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::pki_types::ServerName;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use smol::net::TcpStream;
use smol::stream::StreamExt;

use super::admission::{AdmissionError, FramePipe};
use super::cert::{Fingerprint, SERVER_NAME};
use super::http;
use super::pake::{self, Exporter, PakeError, VerificationCode};
use super::quic::{self, ALPN, Trust};

/// The WebSocket path of the native protocol.
pub const WS_PATH: &str = "/sapora/2";
/// The TLS protocol (ALPN) browsers speak on the same port: HTTP/1.1.
pub const HTTP_ALPN: &[u8] = b"http/1.1";
/// Largest WebSocket message (and frame): the largest control frame from the
/// host (`proto::limits::CONTROL_FROM_HOST`, 4 MiB) plus its 10-byte header,
/// rounded up.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024 + 1024;
/// The socket's `TCP_NOTSENT_LOWAT` (Linux, Android): the kernel keeps at
/// most this many bytes queued but not yet sent, so that a datagram written
/// after a file chunk does not wait behind megabytes in the send buffer.
pub const NOTSENT_LOWAT: u32 = 128 * 1024;
/// The WebSocket read buffer, bytes (tungstenite's default is 128 KiB).
/// tungstenite zeroes the whole free part of it before every read, also a
/// read that finds nothing: on an idle host with 78 members on the
/// fallback, that zeroing was the largest single cost in perf (5 % of the
/// host's samples). A read returns the plaintext of the TLS records at
/// hand (16 KiB each), and 100 MiB streams in `cargo bench --bench tunnel`
/// ran at 565–710 MiB/s with this buffer, 650–750 with 128 KiB (run to
/// run spread).
pub const WS_READ_BUFFER: usize = 32 * 1024;
/// TCP connect + TLS + WebSocket upgrade must finish within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The host's side of a fallback connection.
pub type HostTls = futures_rustls::server::TlsStream<TcpStream>;
/// The client's side of a fallback connection.
pub type ClientTls = futures_rustls::client::TlsStream<TcpStream>;

/// Errors of the fallback transport.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("the TLS connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the WebSocket upgrade failed: {0}")]
    WebSocket(#[from] Box<WsError>),
    #[error(
        "the host presented certificate {presented} ({}), but {expected} ({}) is the one expected for it; refusing to connect",
        presented.short(), expected.short()
    )]
    PinMismatch { expected: Fingerprint, presented: Fingerprint },
    #[error("the other side does not speak sapora/2 (no matching ALPN)")]
    WrongProtocol,
    #[error("cannot derive the TLS exporter for this connection")]
    Exporter,
    #[error("the TLS/WebSocket handshake did not finish within {} s", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("answered {status}: {reason}")]
    Refused { status: u16, reason: String },
}

impl From<WsError> for FallbackError {
    fn from(e: WsError) -> FallbackError {
        FallbackError::WebSocket(Box::new(e))
    }
}

/// An established fallback connection: the WebSocket and what the TLS
/// session below it proves.
pub struct FallbackConnection<S> {
    pub ws: WebSocketStream<S>,
    pub peer: SocketAddr,
    /// The host's certificate fingerprint (client side only).
    pub fingerprint: Option<Fingerprint>,
    passcode_exporter: Exporter,
    verify_exporter: Exporter,
}

impl<S> FallbackConnection<S> {
    /// The exporter for the passcode check ([`pake::EXPORTER_LABEL`]).
    pub fn passcode_exporter(&self) -> Exporter {
        self.passcode_exporter
    }

    /// The code both ends of this TLS session show.
    pub fn verification_code(&self) -> VerificationCode {
        VerificationCode::from_exporter(&self.verify_exporter)
    }
}

/// No Nagle delay, and a short unsent queue ([`NOTSENT_LOWAT`]).
fn tune(tcp: &TcpStream) -> std::io::Result<()> {
    tcp.set_nodelay(true)?;
    // Best effort: a kernel without the option only loses the bound.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(NOTSENT_LOWAT) {
        tracing::debug!(error = %e, "cannot set TCP_NOTSENT_LOWAT");
    }
    Ok(())
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .read_buffer_size(WS_READ_BUFFER)
}

async fn with_timeout<T>(
    work: impl std::future::Future<Output = Result<T, FallbackError>>,
) -> Result<T, FallbackError> {
    with_timeout_of(HANDSHAKE_TIMEOUT, work).await
}

async fn with_timeout_of<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, FallbackError>>,
) -> Result<T, FallbackError> {
    smol::future::or(work, async {
        smol::Timer::after(limit).await;
        Err(FallbackError::Timeout(limit))
    })
    .await
}

/// Both exporters of a finished TLS session, after checking its ALPN.
fn exporters<D>(conn: &rustls::ConnectionCommon<D>) -> Result<(Exporter, Exporter), FallbackError> {
    if conn.alpn_protocol() != Some(ALPN) {
        return Err(FallbackError::WrongProtocol);
    }
    let export = |label: &[u8]| {
        conn.export_keying_material([0u8; pake::EXPORTER_LEN], label, Some(b""))
            .map(Exporter)
            .map_err(|_| FallbackError::Exporter)
    };
    Ok((export(pake::EXPORTER_LABEL)?, export(pake::VERIFY_EXPORTER_LABEL)?))
}

/// The TLS configuration of the host's TCP port: the native one
/// ([`quic::server_tls_config`], same certificate) that also speaks
/// HTTP/1.1 ([`HTTP_ALPN`]) to browsers. No h2: the page and its WebSocket
/// are HTTP/1.1.
pub fn server_tls_config(
    identity: &super::cert::HostIdentity,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut tls = quic::server_tls_config(identity)?;
    tls.alpn_protocols = vec![ALPN.to_vec(), HTTP_ALPN.to_vec()];
    Ok(tls)
}

/// What one connection to the host's TCP port asked for ([`accept_any`]).
pub enum Accepted {
    /// The native tunnel's upgrade on [`WS_PATH`], done: run the admission
    /// next with [`WsPipe`] and [`super::admission::host`].
    Tunnel(Box<FallbackConnection<HostTls>>),
    /// Any other well-formed request (the browser guests' page and
    /// WebSocket): `tls` is positioned just after the head.
    Web { request: http::Request, tls: Box<HostTls>, peer: SocketAddr },
}

/// The host's side of one connection to its TCP port: TLS with `config`
/// ([`server_tls_config`]), one HTTP/1.1 request head, and its route.
///
/// - `GET` [`WS_PATH`] with a valid WebSocket upgrade and ALPN `sapora/2`
///   becomes [`Accepted::Tunnel`] (the 101 answer sent);
/// - another request is [`Accepted::Web`];
/// - a malformed head is answered 400, an oversized one 431 (both
///   [`FallbackError::Refused`]), a bad upgrade on [`WS_PATH`] 400;
/// - plain HTTP (no TLS) gets a `301` to the same address over `https://`.
///
/// TLS and the head must arrive within `head_timeout` (a slow or silent
/// client is cut off: [`FallbackError::Timeout`]); the head is at most
/// [`http::MAX_HEAD`] bytes.
pub async fn accept_any(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    head_timeout: Duration,
) -> Result<Accepted, FallbackError> {
    let peer = tcp.peer_addr()?;
    tune(&tcp)?;
    with_timeout_of(head_timeout, async {
        // Every TLS connection opens with a handshake record (type 22); a
        // browser sent to http:// on this port is redirected to https://.
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
            return Err(redirect_plain(tcp).await);
        }
        let mut tls = TlsAcceptor::from(config).accept(tcp).await?;
        let request = match read_head(&mut tls).await? {
            Ok(request) => request,
            Err(e) => return Err(refuse(tls, e.status(), &e.to_string()).await),
        };
        if request.path != WS_PATH {
            return Ok(Accepted::Web { request, tls: Box::new(tls), peer });
        }
        let accept = match request.websocket_accept() {
            Ok(accept) => accept,
            Err(text) => return Err(refuse(tls, 400, text).await),
        };
        let (passcode_exporter, verify_exporter) = match exporters(tls.get_ref().1) {
            Ok(exporters) => exporters,
            Err(FallbackError::WrongProtocol) => {
                let text = "the native protocol needs TLS ALPN sapora/2";
                return Err(refuse(tls, 400, text).await);
            }
            Err(e) => return Err(e),
        };
        tls.write_all(&http::upgrade_response(&accept)).await?;
        tls.flush().await?;
        let ws = WebSocketStream::from_raw_socket(tls, Role::Server, Some(ws_config())).await;
        Ok(Accepted::Tunnel(Box::new(FallbackConnection {
            ws,
            peer,
            fingerprint: None,
            passcode_exporter,
            verify_exporter,
        })))
    })
    .await
}

/// The host's side for the tunnel only: [`accept_any`] within
/// [`HANDSHAKE_TIMEOUT`], where any other request is answered 404
/// ([`FallbackError::Refused`]).
pub async fn accept(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Result<FallbackConnection<HostTls>, FallbackError> {
    match accept_any(tcp, config, HANDSHAKE_TIMEOUT).await? {
        Accepted::Tunnel(conn) => Ok(*conn),
        Accepted::Web { tls, .. } => Err(refuse(*tls, 404, NOT_FOUND).await),
    }
}

/// The first byte of a TLS connection: a handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE_RECORD: u8 = 22;

/// Answers a plain-HTTP request on the TLS port: a `301` to the same
/// address over `https://` (400/431 for a bad head, 400 without a `Host`).
async fn redirect_plain(mut tcp: TcpStream) -> FallbackError {
    let request = match read_head(&mut tcp).await {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => return refuse(tcp, e.status(), &e.to_string()).await,
        Err(e) => return e.into(),
    };
    let Some(location) = http::https_location(&request) else {
        return refuse(tcp, 400, "this is an HTTPS port").await;
    };
    let answered = async {
        tcp.write_all(&http::redirect_response(&location)).await?;
        linger_close(&mut tcp).await;
        Ok::<_, std::io::Error>(())
    };
    match answered.await {
        Ok(()) => FallbackError::Refused {
            status: 301,
            reason: format!("plain HTTP, sent to {location}"),
        },
        Err(e) => e.into(),
    }
}

/// The 404 text of a host that serves no web page.
pub const NOT_FOUND: &str = "no such path";

/// Reads one request head from `tls`, a byte at a time so that nothing
/// after it is taken from the stream (a WebSocket may follow at once).
/// Parses at each line end: a malformed request line is refused at once,
/// not after [`http::MAX_HEAD`] bytes.
async fn read_head<S: AsyncRead + Unpin>(
    tls: &mut S,
) -> std::io::Result<Result<http::Request, http::HeadError>> {
    let mut buf = Vec::with_capacity(1024);
    let mut byte = [0u8; 1];
    loop {
        if tls.read(&mut byte).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
        if byte[0] == b'\n' || buf.len() >= http::MAX_HEAD {
            match http::parse(&buf) {
                Ok(Some((request, _))) => return Ok(Ok(request)),
                Ok(None) => {}
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

/// Answers `status` with `text` on `tls` and closes it ([`linger_close`]);
/// the error to return.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    mut tls: S,
    status: u16,
    text: &str,
) -> FallbackError {
    let answered = async {
        tls.write_all(&http::error_response(status, text)).await?;
        linger_close(&mut tls).await;
        Ok::<_, std::io::Error>(())
    };
    match answered.await {
        Ok(()) => FallbackError::Refused { status, reason: text.to_string() },
        Err(e) => e.into(),
    }
}

/// How long [`linger_close`] reads what the client still sends.
pub const LINGER: Duration = Duration::from_secs(1);
/// How much [`linger_close`] reads at most.
pub const LINGER_BYTES: usize = 64 * 1024;

/// Closes our side (TLS close_notify, TCP FIN), then reads and drops what
/// the client still sends for up to [`LINGER`] / [`LINGER_BYTES`]: closing
/// a socket with unread bytes makes the kernel send a reset, which can
/// destroy the answer before the client reads it (a client still sending an
/// oversized head).
pub async fn linger_close<S: AsyncRead + AsyncWrite + Unpin>(tls: &mut S) {
    let drain = async {
        let _ = tls.close().await;
        let mut scratch = [0u8; 4096];
        let mut read = 0;
        while read < LINGER_BYTES {
            match tls.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    smol::future::or(drain, async {
        smol::Timer::after(LINGER).await;
    })
    .await;
}

/// The client's side: TCP to `addr`, TLS checking the host's certificate per
/// `trust`, then the WebSocket upgrade. Run the admission next with
/// [`WsPipe`] and [`super::admission::client`].
pub async fn connect(
    addr: SocketAddr,
    trust: Trust,
) -> Result<FallbackConnection<ClientTls>, FallbackError> {
    with_timeout(async {
        let tcp = TcpStream::connect(addr).await?;
        tune(&tcp)?;
        let (config, verifier) = quic::client_tls_config(trust)?;
        let name = ServerName::try_from(SERVER_NAME).map_err(|_| FallbackError::WrongProtocol)?;
        let tls = match TlsConnector::from(Arc::new(config)).connect(name, tcp).await {
            Ok(tls) => tls,
            Err(e) => {
                return Err(match (trust, verifier.presented()) {
                    (Trust::Pinned(expected), Some(presented)) if presented != expected => {
                        FallbackError::PinMismatch { expected, presented }
                    }
                    _ => FallbackError::Io(e),
                });
            }
        };
        let (passcode_exporter, verify_exporter) = exporters(tls.get_ref().1)?;
        let url = format!("wss://{SERVER_NAME}{WS_PATH}");
        let (ws, _) =
            async_tungstenite::client_async_with_config(url, tls, Some(ws_config())).await?;
        Ok(FallbackConnection {
            ws,
            peer: addr,
            fingerprint: verifier.presented(),
            passcode_exporter,
            verify_exporter,
        })
    })
    .await
}

/// A WebSocket as a [`FramePipe`]: one passcode frame per binary message.
pub struct WsPipe<'a, S>(pub &'a mut WebSocketStream<S>);

fn io_error(e: impl std::fmt::Display) -> AdmissionError {
    AdmissionError::Io(e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramePipe for WsPipe<'_, S> {
    async fn send_frame(&mut self, frame: &[u8]) -> Result<(), AdmissionError> {
        self.0.send(Message::binary(frame.to_vec())).await.map_err(io_error)
    }

    async fn recv_frame(&mut self) -> Result<Vec<u8>, AdmissionError> {
        loop {
            match self.0.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    if bytes.len() > 2 + pake::MAX_BODY_LEN {
                        return Err(
                            PakeError::Malformed(pake::MsgError::TooLong(bytes.len())).into()
                        );
                    }
                    return Ok(bytes.to_vec());
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    return Err(io_error("a text message during the passcode check"));
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(io_error("the other side closed the connection"));
                }
                Some(Err(e)) => return Err(io_error(e)),
            }
        }
    }

    async fn flush_before_close(&mut self) {
        // Every send is flushed already; a close frame tells the peer we
        // are done (bounded: the peer may not read).
        let close = async {
            let _ = self.0.close(None).await;
        };
        let give_up = async {
            smol::Timer::after(Duration::from_secs(1)).await;
        };
        smol::future::or(close, give_up).await;
    }
}
