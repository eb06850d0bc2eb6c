//! Screen sharing for a participant, used by the bots and the desktop app.
//!
//! - [`Presenter`]: a named thread captures the chosen screen at the chosen
//!   rate, diffs it against the previous frame, JPEG-encodes the changed
//!   64×64 tiles and sends them to the host.
//! - [`Viewer`]: a named thread receives tile updates, paints them on an RGBA
//!   canvas and publishes each complete picture in a latest-image slot
//!   ([`ScreenSlot`]); start/stop arrive as [`ViewerEvent`]s on a smol channel,
//!   and a bounded(1) "updated" channel wakes a UI without ever queueing.
//!
//! Both run on their own threads (capture, encoding and decoding are CPU
//! work that must not stall an async executor) and drive their stream, any
//! `(LinkSend, LinkRecv)` a [`StreamOpener`] gives, with `smol::block_on`.
//!
//! `presenter.rs`, `viewer.rs` and `bot.rs` hold the three parts; this file
//! the stream plumbing they share.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use smol::future::FutureExt;

use super::session::Client;
use super::streams::{StreamOpener, open_stream, refusal};
use crate::media::screen::{CaptureError, TileError};
use crate::proto::{SCREEN_MAX_PAYLOAD, SessionId, StreamRole, Welcome};
use crate::transport::framed::{FrameError, FrameReader, FrameWriter};
use crate::transport::link::{Link, LinkRecv, LinkSend};

mod bot;
mod presenter;
mod viewer;

pub use bot::{BotScreen, BotScreenOptions, ScreenReport};
pub use presenter::{PresentOptions, Presenter, PresenterEvent, PresenterStats};
pub use viewer::{ScreenImage, ScreenSlot, Viewer, ViewerEvent, ViewerStats};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a presenter's `stop()` waits for the host to end the
/// presentation (its `Stopped`, or its end of the stream) before returning.
const STOP_ACK_TIMEOUT: Duration = Duration::from_secs(1);
/// Latency samples kept for the report (about 3 hours at 10 fps).
const MAX_SAMPLES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum ScreenError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Tiles(#[from] TileError),
    #[error("cannot reach the host's screen service at {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("{presenter} is presenting; you can share your screen once they stop")]
    Busy { presenter: String },
    #[error("the host refused screen sharing: {0}")]
    Refused(String),
    #[error("the screen link to the host failed: {0}")]
    Link(String),
}

/// How to reach the host's screen service (a [`StreamOpener`]) and who we
/// are, read from the session's latest Welcome (it changes when the
/// session rejoins).
#[derive(Clone)]
pub struct ScreenTarget {
    pub opener: StreamOpener,
    pub welcome: Arc<Mutex<Welcome>>,
}

impl ScreenTarget {
    /// Streams on `client`'s current link, as its latest Welcome's session.
    pub fn new(client: &Client) -> ScreenTarget {
        ScreenTarget::link(client.link_slot(), client.current_slot())
    }

    /// Streams on the link in `link`, as the session in the latest Welcome
    /// in `welcome` (both slots are the client's: they follow a rejoin).
    pub fn link(link: Arc<Mutex<Link>>, welcome: Arc<Mutex<Welcome>>) -> ScreenTarget {
        ScreenTarget { opener: StreamOpener::link(link), welcome }
    }

    fn auth(&self) -> (SessionId, u64) {
        let w = self.welcome.lock().unwrap_or_else(|e| e.into_inner());
        (w.session, w.token)
    }
}

type Writer = FrameWriter<LinkSend>;
type Reader = FrameReader<LinkRecv>;

/// Opens a presenter's or viewer's stream (blocking: call from a thread).
fn connect(
    target: &ScreenTarget,
    role: StreamRole,
) -> Result<(Writer, Reader, SessionId), ScreenError> {
    let (session, token) = target.auth();
    let addr: SocketAddr = target.opener.addr();
    let (w, r) = smol::block_on(open_stream(&target.opener, session, token, role))
        .map_err(|source| ScreenError::Connect { addr, source })?;
    Ok((w, r, session))
}

/// Writes one frame (blocking, at most [`WRITE_TIMEOUT`]).
fn write_msg(w: &mut Writer, kind: u8, payload: &[u8]) -> std::io::Result<()> {
    smol::block_on(w.send(kind, payload).or(async {
        smol::Timer::after(WRITE_TIMEOUT).await;
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the host stopped reading"))
    }))
}

/// Why [`read_msg`] returned no frame, worded for people.
enum ReadFail {
    /// The host refused the stream (`StreamRefused`).
    Refused(String),
    /// The stream broke, ended, timed out, or we stopped.
    Link(String),
}

impl From<ReadFail> for String {
    fn from(f: ReadFail) -> String {
        match f {
            ReadFail::Refused(s) | ReadFail::Link(s) => s,
        }
    }
}

/// Reads one frame (blocking; the length is checked before the buffer
/// grows), unless `stop` fires or `timeout` passes first.
fn read_msg(
    r: &mut Reader,
    stop: &smol::channel::Receiver<()>,
    timeout: Option<Duration>,
) -> Result<(u8, Bytes), ReadFail> {
    let read = async {
        match r.next(|_| SCREEN_MAX_PAYLOAD).await {
            Ok(f) => Ok((f.header.kind, f.payload)),
            Err(FrameError::Closed) => Err("the host closed the screen stream".to_string()),
            Err(e) => Err(e.to_string()),
        }
    };
    let stopped = async {
        let _ = stop.recv().await;
        Err("stopped".to_string())
    };
    let timed_out = async {
        match timeout {
            Some(t) => smol::Timer::after(t).await,
            None => smol::Timer::never().await,
        };
        Err("the host did not answer in time".to_string())
    };
    let (kind, payload) = smol::block_on(read.or(stopped).or(timed_out)).map_err(ReadFail::Link)?;
    match refusal(kind, &payload) {
        Some(reason) => Err(ReadFail::Refused(reason)),
        None => Ok((kind, payload)),
    }
}
