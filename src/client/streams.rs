//! Opening file and screen streams to the host.
//!
//! [`StreamOpener`] gives a fresh `(LinkSend, LinkRecv)` pair per transfer,
//! presenter or viewer: a new bidirectional stream on the session's current
//! link (QUIC or the TLS tunnel; a rejoin makes a new link and the opener
//! follows it). [`open_stream`] then sends the stream's first frame
//! ([`StreamOpen`]: session, token, service and role). `FileClient`,
//! `Presenter`, `Viewer` and `BotScreen` take an opener, so they run the
//! same over any transport.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smol::future::FutureExt;

use super::session::Client;
use crate::proto::{
    MsgType, SessionId, StreamOpen, StreamRefused, StreamRole, decode_payload, encode_payload,
};
use crate::transport::framed::{FrameReader, FrameWriter};
use crate::transport::link::{Link, LinkRecv, LinkSend};

/// A host that does not accept a stream within this long is given up on.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Wraps each stream an opener opens (tests: a stream cut after some bytes).
pub type StreamWrapper = Arc<dyn Fn(LinkSend, LinkRecv) -> (LinkSend, LinkRecv) + Send + Sync>;

/// Opens streams to the host. Cheap to clone.
#[derive(Clone)]
pub struct StreamOpener {
    /// The session's current link, read at every open.
    link: Arc<Mutex<Link>>,
    wrap: Option<StreamWrapper>,
}

impl StreamOpener {
    /// Streams on the link in `slot`, read at every open (so it follows a
    /// rejoin, which puts a new link there: `Client::link_slot`).
    pub fn link(slot: Arc<Mutex<Link>>) -> StreamOpener {
        StreamOpener { link: slot, wrap: None }
    }

    /// Streams on `client`'s current link.
    pub fn for_client(client: &Client) -> StreamOpener {
        StreamOpener::link(client.link_slot())
    }

    /// Passes every stream opened from now on through `wrap` (tests: a
    /// relay that cuts a transfer).
    pub fn wrapped(mut self, wrap: StreamWrapper) -> StreamOpener {
        self.wrap = Some(wrap);
        self
    }

    /// The host's address on the current link.
    pub fn addr(&self) -> SocketAddr {
        self.current().remote_address()
    }

    fn current(&self) -> Link {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A new stream (within [`OPEN_TIMEOUT`]).
    pub async fn open(&self) -> std::io::Result<(LinkSend, LinkRecv)> {
        let link = self.current();
        let addr = link.remote_address();
        let (send, recv) = async { link.open_bi().await }
            .or(async {
                smol::Timer::after(OPEN_TIMEOUT).await;
                Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))
            })
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("{addr}: {e}")))?;
        Ok(match &self.wrap {
            Some(wrap) => wrap(send, recv),
            None => (send, recv),
        })
    }
}

/// Opens a stream and sends its first frame.
pub async fn open_stream(
    opener: &StreamOpener,
    session: SessionId,
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
