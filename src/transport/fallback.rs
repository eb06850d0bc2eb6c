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
//! byte stream into messages, and is what browser guests will speak to the
//! same port. The upgrade request is `GET /sapora/2`; other paths get 404.
//! Messages are capped at [`MAX_MESSAGE`] bytes (before allocation, by
//! tungstenite).
//!
//! After admission, [`super::tunnel`] multiplexes control, datagrams and
//! streams over the WebSocket (`docs/transport-v2.md` §5.1–5.5); this module
//! provides the connection and its admission.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::StatusCode;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::pki_types::ServerName;
use smol::io::{AsyncRead, AsyncWrite};
use smol::net::TcpStream;
use smol::stream::StreamExt;

use super::admission::{AdmissionError, FramePipe};
use super::cert::{Fingerprint, SERVER_NAME};
use super::pake::{self, Exporter, PakeError, VerificationCode};
use super::quic::{self, ALPN, Trust};

/// The WebSocket path of the native protocol.
pub const WS_PATH: &str = "/sapora/2";
/// Largest WebSocket message (and frame): the largest control frame from the
/// host (`proto::limits::CONTROL_FROM_HOST`, 4 MiB) plus its 10-byte header,
/// rounded up.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024 + 1024;
/// The socket's `TCP_NOTSENT_LOWAT` (Linux, Android): the kernel keeps at
/// most this many bytes queued but not yet sent, so that a datagram written
/// after a file chunk does not wait behind megabytes in the send buffer.
pub const NOTSENT_LOWAT: u32 = 128 * 1024;
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
    #[error("the TLS/WebSocket handshake did not finish within {} s", HANDSHAKE_TIMEOUT.as_secs())]
    Timeout,
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
    WebSocketConfig::default().max_message_size(Some(MAX_MESSAGE)).max_frame_size(Some(MAX_MESSAGE))
}

async fn with_timeout<T>(
    work: impl std::future::Future<Output = Result<T, FallbackError>>,
) -> Result<T, FallbackError> {
    smol::future::or(work, async {
        smol::Timer::after(HANDSHAKE_TIMEOUT).await;
        Err(FallbackError::Timeout)
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

/// The host's side: TLS (with `config` from [`quic::server_tls_config`]),
/// then the WebSocket upgrade on [`WS_PATH`]. Run the admission next with
/// [`WsPipe`] and [`super::admission::host`].
pub async fn accept(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> Result<FallbackConnection<HostTls>, FallbackError> {
    let peer = tcp.peer_addr()?;
    tune(&tcp)?;
    with_timeout(async {
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        let (passcode_exporter, verify_exporter) = exporters(tls.get_ref().1)?;
        // The signature is tungstenite's `Callback`; its error type is large.
        #[allow(clippy::result_large_err)]
        let check_path = |request: &Request, response: Response| {
            if request.uri().path() == WS_PATH {
                Ok(response)
            } else {
                let mut refusal = ErrorResponse::new(Some(format!("no such path; use {WS_PATH}")));
                *refusal.status_mut() = StatusCode::NOT_FOUND;
                Err(refusal)
            }
        };
        let ws =
            async_tungstenite::accept_hdr_async_with_config(tls, check_path, Some(ws_config()))
                .await?;
        Ok(FallbackConnection { ws, peer, fingerprint: None, passcode_exporter, verify_exporter })
    })
    .await
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
