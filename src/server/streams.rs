//! One entry point for every file and screen stream: [`serve_stream`].
//!
//! A stream (a QUIC bidirectional stream or a tunnel channel, accepted by
//! `control::serve_link` on an admitted link) starts with a
//! [`StreamOpen`] frame: session, token, and which service and role. This
//! module takes a slot under the per-address and total stream caps, reads
//! and authenticates that frame, and hands the stream to the file service
//! or the screen relay. What it cannot hand on is answered with one
//! [`StreamRefused`] and closed; a service refuses in its own words (a bad
//! token is a `FileFailure` with code `Auth` on a file stream and a
//! `ScreenRefused` on a screen stream, as each client expects).

use std::net::SocketAddr;
use std::time::Duration;

use smol::Timer;
use smol::future::FutureExt;

use super::directory::Directory;
use super::files::FileStreams;
use super::screen::ScreenStreams;
use crate::proto::{
    DecodeError, MsgType, STREAM_OPEN_MAX, StreamOpen, StreamRefused, StreamService,
    decode_payload, encode_payload,
};
use crate::transport::framed::{FrameError, FrameReader, FrameWriter};
use crate::transport::limit::{ConnectionCaps, SharedCaps};
use crate::transport::link::{LinkRecv, LinkSend};

/// The first frame must arrive this soon after the stream opens.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on concurrent streams from one address: a machine running a
/// few dozen bots, each presenting, viewing and transferring, stays under it.
pub const MAX_STREAMS_PER_ADDRESS: usize = 256;
/// Default cap on concurrent streams in total.
pub const MAX_STREAMS_TOTAL: usize = 2048;

/// What the stream services need, and who is at the other end.
#[derive(Clone)]
pub struct StreamContext {
    /// Sessions and tokens, to authenticate the first frame.
    pub directory: Directory,
    /// The file service, if this entry point offers it.
    pub files: Option<FileStreams>,
    /// The screen relay, if this entry point offers it.
    pub screen: Option<ScreenStreams>,
    /// Concurrent streams per source address and in total.
    pub caps: SharedCaps,
    /// The peer's address (the source the caps count).
    pub peer: SocketAddr,
}

/// The default stream caps ([`MAX_STREAMS_PER_ADDRESS`], [`MAX_STREAMS_TOTAL`]).
pub fn default_caps() -> SharedCaps {
    SharedCaps::new(ConnectionCaps::new(MAX_STREAMS_PER_ADDRESS, MAX_STREAMS_TOTAL))
}

/// Serves one stream to its end: checks the caps, reads the first frame
/// (within [`OPEN_TIMEOUT`], at most [`STREAM_OPEN_MAX`] bytes), and runs
/// the file or screen driver on the rest of the stream. Errors end this
/// stream only; they are logged at debug level.
pub async fn serve_stream(send: LinkSend, recv: LinkRecv, ctx: StreamContext) {
    let mut writer = FrameWriter::new(send);
    let slot = match ctx.caps.try_open(crate::transport::limit::source_key(ctx.peer.ip())) {
        Ok(slot) => slot,
        Err(e) => {
            tracing::debug!(peer = %ctx.peer, "stream refused: {e}");
            refuse(&mut writer, format!("{e}; close a transfer or a screen and retry")).await;
            return;
        }
    };
    let mut reader = FrameReader::new(recv);
    let open = async { Some(reader.next(|_| STREAM_OPEN_MAX).await) }
        .or(async {
            Timer::after(OPEN_TIMEOUT).await;
            None
        })
        .await;
    let open = match open {
        Some(Ok(f)) if f.header.kind == MsgType::StreamOpen as u8 => {
            decode_payload::<StreamOpen>(&f.payload).map_err(|e| e.to_string())
        }
        Some(Ok(f)) => Err(format!(
            "the first frame of a stream must be a stream open (0x60), not type 0x{:02x}",
            f.header.kind
        )),
        Some(Err(FrameError::Decode(DecodeError::Version { got }))) => Err(format!(
            "protocol version {got} is not supported (this host speaks {})",
            crate::proto::PROTOCOL_VERSION
        )),
        Some(Err(FrameError::Decode(e))) => Err(format!("malformed stream open: {e}")),
        Some(Err(_)) => return,
        None => Err(format!("no stream open within {} s", OPEN_TIMEOUT.as_secs())),
    };
    let open = match open {
        Ok(open) => open,
        Err(reason) => {
            tracing::debug!(peer = %ctx.peer, "stream refused: {reason}");
            refuse(&mut writer, reason).await;
            return;
        }
    };
    let who = ctx.directory.authenticate(open.session, open.token);
    let service = open.role.service();
    match service {
        StreamService::Files => match &ctx.files {
            Some(files) => files.serve(who, open.role, writer, reader).await,
            None => refuse(&mut writer, not_here(service)).await,
        },
        StreamService::Screen => match &ctx.screen {
            Some(screen) => screen.serve(who, open.role, writer, reader).await,
            None => refuse(&mut writer, not_here(service)).await,
        },
    }
    drop(slot);
}

fn not_here(service: StreamService) -> String {
    format!("{service} is not offered by this host")
}

/// Sends a [`StreamRefused`] and finishes the stream (best effort).
async fn refuse(writer: &mut FrameWriter<LinkSend>, reason: String) {
    let msg = encode_payload(&StreamRefused { reason });
    let done = async {
        let _ = writer.send(MsgType::StreamRefused as u8, &msg).await;
        let _ = writer.close().await;
    };
    done.or(async {
        Timer::after(OPEN_TIMEOUT).await;
    })
    .await;
}

// The tests use a Unix socket pair as the link.
#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::net::UnixStream;

    use smol::{Async, Task};

    use super::*;
    use crate::proto::{StreamRole, decode_payload};
    use crate::transport::limit::ConnectionCaps;

    /// A stream served by `serve_stream` on one end of a local socket pair;
    /// the other end is the client's.
    fn served(ctx: &StreamContext) -> (FrameWriter<LinkSend>, FrameReader<LinkRecv>, Task<()>) {
        let (host, client) = Async::<UnixStream>::pair().unwrap();
        let (hr, hw) = smol::io::split(host);
        let task = smol::spawn(serve_stream(Box::new(hw), Box::new(hr), ctx.clone()));
        let (cr, cw) = smol::io::split(client);
        (
            FrameWriter::new(Box::new(cw) as LinkSend),
            FrameReader::new(Box::new(cr) as LinkRecv),
            task,
        )
    }

    async fn refusal(r: &mut FrameReader<LinkRecv>) -> String {
        let f = r.next(|_| 4096).await.unwrap();
        assert_eq!(f.header.kind, MsgType::StreamRefused as u8);
        decode_payload::<StreamRefused>(&f.payload).unwrap().reason
    }

    #[test]
    fn streams_over_the_cap_or_without_a_service_are_refused_with_a_reason() {
        smol::block_on(async {
            let ctx = StreamContext {
                directory: Directory::default(),
                files: None,
                screen: None,
                caps: SharedCaps::new(ConnectionCaps::new(1, 1)),
                peer: "10.0.0.5:4000".parse().unwrap(),
            };
            // The first stream holds the only slot while it says nothing yet.
            let (first_w, first_r, first) = served(&ctx);
            while ctx.caps.snapshot().open_total() == 0 {
                smol::future::yield_now().await;
            }
            let (_w, mut r, _t) = served(&ctx);
            assert!(refusal(&mut r).await.contains("too many"), "a second stream is over the cap");
            // The first one goes away: its slot comes back.
            drop((first_w, first_r));
            first.await;
            assert_eq!(ctx.caps.snapshot().open_total(), 0);
            // A first frame that is not a stream open.
            let (mut w, mut r, _t) = served(&ctx);
            w.send(MsgType::FileChunk as u8, &[0; 8]).await.unwrap();
            assert!(refusal(&mut r).await.contains("must be a stream open"));
            // A well-formed open for a service this entry point lacks.
            let (mut w, mut r, t) = served(&ctx);
            let open = StreamOpen {
                session: crate::proto::SessionId(1),
                token: 2,
                role: StreamRole::ScreenView,
            };
            w.send(MsgType::StreamOpen as u8, &encode_payload(&open)).await.unwrap();
            assert_eq!(refusal(&mut r).await, "screen sharing is not offered by this host");
            t.await;
            assert!(matches!(r.next(|_| 4096).await, Err(FrameError::Closed)), "then closed");
        });
    }
}
