//! Opening file and screen streams to the host.
//!
//! [`StreamOpener`] gives a fresh `(LinkSend, LinkRecv)` pair per transfer,
//! presenter or viewer; [`open_stream`] then sends the stream's first frame
//! ([`StreamOpen`]: session, token, service and role). `FileClient`,
//! `Presenter`, `Viewer` and `BotScreen` take an opener, so they run the
//! same over any transport: today a TCP connection to the host's file or
//! screen port (`StreamOpener::tcp`); the QUIC link's streams join at the
//! transport switch-over.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smol::Async;
use smol::future::FutureExt;

use super::session::Client;
use crate::proto::{
    MsgType, StreamOpen, StreamRefused, StreamRole, StreamService, Welcome, decode_payload,
    encode_payload,
};
use crate::transport::framed::{FrameReader, FrameWriter, tcp_halves};
use crate::transport::link::{LinkRecv, LinkSend};

/// A host that does not accept a stream within this long is given up on.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens streams to the host. Cheap to clone.
#[derive(Clone)]
pub struct StreamOpener(Route);

#[derive(Clone)]
enum Route {
    Tcp(SocketAddr),
    /// The host's port for `service`, read from the session's latest
    /// Welcome at every open (so it follows a host restart).
    Welcome {
        host: IpAddr,
        welcome: Arc<Mutex<Welcome>>,
        service: StreamService,
    },
}

impl StreamOpener {
    /// One TCP connection to `addr` per stream (today's file or screen port).
    pub fn tcp(addr: SocketAddr) -> StreamOpener {
        StreamOpener(Route::Tcp(addr))
    }

    /// One TCP connection per stream to `host`'s port for `service`, as the
    /// session's latest Welcome names it.
    pub fn welcome(
        host: IpAddr,
        welcome: Arc<Mutex<Welcome>>,
        service: StreamService,
    ) -> StreamOpener {
        StreamOpener(Route::Welcome { host, welcome, service })
    }

    /// [`StreamOpener::welcome`] for `client`'s session.
    pub fn for_client(client: &Client, host: IpAddr, service: StreamService) -> StreamOpener {
        StreamOpener::welcome(host, client.current_slot(), service)
    }

    /// Where streams go now.
    pub fn addr(&self) -> SocketAddr {
        match &self.0 {
            Route::Tcp(addr) => *addr,
            Route::Welcome { host, welcome, service } => {
                let w = welcome.lock().unwrap_or_else(|e| e.into_inner());
                let port = match service {
                    StreamService::Files => w.ports.file,
                    StreamService::Screen => w.ports.screen,
                };
                SocketAddr::new(*host, port)
            }
        }
    }

    /// A new stream (within [`OPEN_TIMEOUT`]).
    pub async fn open(&self) -> std::io::Result<(LinkSend, LinkRecv)> {
        let addr = self.addr();
        let connect = async { Async::<TcpStream>::connect(addr).await };
        let stream = connect
            .or(async {
                smol::Timer::after(OPEN_TIMEOUT).await;
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))
            })
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        Ok(tcp_halves(stream))
    }
}

/// Opens a stream and sends its first frame.
pub async fn open_stream(
    opener: &StreamOpener,
    session: u32,
    token: u64,
    role: StreamRole,
) -> std::io::Result<(FrameWriter<LinkSend>, FrameReader<LinkRecv>)> {
    let (send, recv) = opener.open().await?;
    let mut w = FrameWriter::new(send);
    let open = StreamOpen { session, token, role };
    w.send(MsgType::StreamOpen as u8, &encode_payload(&open)).await?;
    Ok((w, FrameReader::new(recv)))
}

/// If a frame is the host's [`StreamRefused`], its reason.
pub fn refusal(kind: u8, payload: &[u8]) -> Option<String> {
    (kind == MsgType::StreamRefused as u8).then(|| {
        decode_payload::<StreamRefused>(payload)
            .map(|r| r.reason)
            .unwrap_or_else(|e| format!("the host refused the stream ({e})"))
    })
}
