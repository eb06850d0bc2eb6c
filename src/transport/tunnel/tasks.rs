//! The tunnel's two tasks per WebSocket (the driver of [`super::mux::Mux`]):
//! the writer writes what the mux gives, in its priority order, and flushes
//! when there is nothing more; the reader hands each arriving message to the
//! mux and its datagrams and accepted streams to their channels.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use bytes::Bytes;
use futures_util::SinkExt;
use smol::io::{AsyncRead, AsyncWrite};
use smol::stream::StreamExt;

use super::mux::{self, Event, Transmit};
use super::{Inner, WRITE_STALL_TIMEOUT};
use crate::transport::limit::ConnectionSlot;

/// The reader and writer tasks yield to the executor after this many
/// messages: a socket that is always ready must not starve other tasks on the
/// same executor thread (smol has no preemption budget).
const YIELD_EVERY: u32 = 32;

type Sink<S> = async_tungstenite::WebSocketSender<S>;
type Source<S> = async_tungstenite::WebSocketReceiver<S>;

/// `work`, or `None` after [`WRITE_STALL_TIMEOUT`].
async fn unless_stalled<T>(work: impl Future<Output = T>) -> Option<T> {
    smol::future::or(async { Some(work.await) }, async {
        smol::Timer::after(WRITE_STALL_TIMEOUT).await;
        None
    })
    .await
}

/// Why a write (`unless_stalled` of a feed or flush) lost the link, if it did.
fn written<E: std::fmt::Display>(outcome: Option<Result<(), E>>) -> Result<(), String> {
    match outcome {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("the peer stopped reading".into()),
    }
}

/// The writer task: writes what the mux gives, in its order; flushes when
/// there is nothing more; sleeps until woken or the next timer.
pub(super) async fn writer<S>(
    inner: Arc<Inner>,
    mut sink: Sink<S>,
    wakes: smol::channel::Receiver<()>,
    slot: Option<ConnectionSlot>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut since_yield = 0;
    // Whether the writer already yielded once since it last found nothing to
    // write (see the flush below).
    let mut yielded = false;
    loop {
        since_yield += 1;
        if since_yield == YIELD_EVERY {
            since_yield = 0;
            smol::future::yield_now().await;
        }
        let now = Instant::now();
        let (next, deadline) = inner.with(|mux| {
            mux.handle_timeout(now);
            (mux.poll_transmit(now), mux.poll_timeout())
        });
        let message = match next {
            Some(Transmit::Message(message)) => Message::Binary(message.into()),
            Some(Transmit::Ping) => Message::Ping(Bytes::new()),
            Some(Transmit::Close { code, reason }) => {
                let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
                let close = async {
                    let _ = sink.send(Message::Close(Some(frame))).await;
                };
                let give_up = async {
                    smol::Timer::after(Duration::from_secs(1)).await;
                };
                smol::future::or(close, give_up).await;
                break;
            }
            None => {
                let Some(deadline) = deadline else { break };
                if !yielded {
                    // A sender (a video frame's fragments) may be queueing
                    // more right now: give it a turn so they go in this
                    // write, one TLS record, rather than a flush each.
                    yielded = true;
                    smol::future::yield_now().await;
                    continue;
                }
                yielded = false;
                if let Err(why) = written(unless_stalled(sink.flush()).await) {
                    inner.with(|mux| mux.handle_lost(why));
                    break;
                }
                smol::future::or(async { wakes.recv().await.is_ok() }, async {
                    smol::Timer::at(deadline).await;
                    true
                })
                .await;
                continue;
            }
        };
        if let Err(why) = written(unless_stalled(sink.feed(message)).await) {
            inner.with(|mux| mux.handle_lost(why));
            break;
        }
    }
    // Flush a close reply tungstenite may owe the peer; bounded.
    let _ = smol::future::or(async { SinkExt::close(&mut sink).await.is_ok() }, async {
        smol::Timer::after(Duration::from_secs(1)).await;
        false
    })
    .await;
    drop(slot);
}

/// The reader task: hands each message to the mux, datagrams and accepted
/// streams to their channels, until the connection closes.
pub(super) async fn reader<S>(
    inner: Arc<Inner>,
    mut stream: Source<S>,
    datagrams: smol::channel::Sender<Bytes>,
    accepted: smol::channel::Sender<u32>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut since_yield = 0;
    let mut events = Vec::new();
    loop {
        since_yield += 1;
        if since_yield == YIELD_EVERY {
            since_yield = 0;
            smol::future::yield_now().await;
        }
        let next = smol::future::or(async { Some(stream.next().await) }, async {
            let _ = inner.closed_rx.recv().await;
            None
        })
        .await;
        let Some(item) = next else { break };
        let now = Instant::now();
        match item {
            Some(Ok(Message::Binary(bytes))) => {
                // One message: one event, or a BATCH's datagrams.
                inner.with(|mux| {
                    mux.handle_message(bytes, now);
                    events.extend(std::iter::from_fn(|| mux.poll_event()));
                });
                for event in events.drain(..) {
                    match event {
                        Event::Datagram(datagram) => {
                            // Newest wins: a full queue gives up its oldest.
                            let _ = datagrams.force_send(datagram);
                        }
                        Event::Accepted(id) => {
                            let _ = accepted.try_send(id);
                        }
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((mux::close_code::NORMAL, String::new()));
                inner.with(|mux| mux.handle_peer_close(code, reason));
            }
            Some(Ok(Message::Text(_))) => {
                inner.with(|mux| mux.handle_violation("a text message"));
            }
            Some(Ok(_)) => inner.with(|mux| mux.handle_activity(now)),
            // An ended WebSocket answers every poll at once: reading on
            // would be a busy loop for as long as the handles live.
            Some(Err(e)) => {
                inner.with(|mux| mux.handle_lost(e.to_string()));
                break;
            }
            None => {
                inner.with(|mux| mux.handle_lost("the connection ended".into()));
                break;
            }
        }
    }
}
