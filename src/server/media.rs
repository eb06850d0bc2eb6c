//! Media datagrams on the members' links: who owns which link, and where an
//! arriving datagram goes.
//!
//! Audio and video travel as datagrams on each member's [`Link`] (QUIC
//! datagrams, or the TLS tunnel's datagram frames). Nothing inside a
//! datagram authenticates its sender: the host attributes every datagram to
//! the session that owns the link it arrived on ([`MediaRouter::deliver`]
//! takes that session from the link's reader, never from the bytes), and
//! sends to a session through its link ([`Peers::send`]).
//!
//! The type byte of the usual 10-byte header (`docs/protocol.md`, "Media
//! datagrams") tells the services apart: 0x41 audio and audio reception
//! reports (told apart by a flag), 0x40 video fragments, 0x44 video hellos.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;

use crate::proto::{MsgType, SessionId};
use crate::transport::link::Link;

/// Arriving datagrams queued for a service before the newest are dropped
/// (a service that falls behind loses media, it never stalls the links).
pub const INBOX: usize = 4096;

/// The link each session's media goes out on. Cheap to clone; shared by
/// the control driver (which binds a session to the link it registered
/// on), the mixer thread and the video relay.
#[derive(Clone, Default)]
pub struct Peers {
    inner: Arc<RwLock<HashMap<SessionId, Bound>>>,
    /// Datagrams that could not be sent (no link, closed, too large).
    unsent: Arc<AtomicU64>,
}

#[derive(Clone)]
struct Bound {
    /// The control driver's connection id, so a late unbind of an old
    /// link never removes a rejoined session's new one.
    conn: u64,
    link: Link,
}

impl Peers {
    /// `session` registered (or rejoined) on `link` (connection `conn`).
    pub fn bind(&self, session: SessionId, conn: u64, link: Link) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.insert(session, Bound { conn, link });
    }

    /// Connection `conn` closed: whatever session it carried has no link now.
    pub fn unbind_conn(&self, conn: u64) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, b| b.conn != conn);
    }

    /// Forgets every link (the host is shutting down: a link kept here
    /// would keep its QUIC endpoint, and the endpoint its UDP port).
    pub fn clear(&self) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Sends one datagram to `session`; never blocks (the link's queue is
    /// newest-wins). False, and counted, when the session has no link, the
    /// link is closed or the datagram is larger than it takes.
    pub fn send(&self, session: SessionId, data: Bytes) -> bool {
        let link = {
            let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
            map.get(&session).map(|b| b.link.clone())
        };
        let sent = link.is_some_and(|l| l.send_datagram(data).is_ok());
        if !sent {
            self.unsent.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    /// Datagrams [`Peers::send`] could not send so far.
    pub fn unsent(&self) -> u64 {
        self.unsent.load(Ordering::Relaxed)
    }

    /// Sessions with a link, in no particular order.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }
}

/// One datagram from a session, for a media service.
pub type Arrival = (SessionId, Bytes);

/// Hands each arriving datagram to its service with the session that owns
/// the link it came on. Cheap to clone (one per link reader).
#[derive(Clone)]
pub struct MediaRouter {
    pub peers: Peers,
    audio: std::sync::mpsc::SyncSender<Arrival>,
    video: smol::channel::Sender<Arrival>,
    dropped: Arc<AtomicU64>,
}

/// The receiving ends a [`MediaRouter`] feeds: the audio service's
/// receive thread and the video relay's task.
pub struct MediaInputs {
    pub audio: std::sync::mpsc::Receiver<Arrival>,
    pub video: smol::channel::Receiver<Arrival>,
}

impl MediaRouter {
    pub fn new(peers: Peers) -> (MediaRouter, MediaInputs) {
        let (audio, audio_rx) = std::sync::mpsc::sync_channel(INBOX);
        let (video, video_rx) = smol::channel::bounded(INBOX);
        let router = MediaRouter { peers, audio, video, dropped: Arc::default() };
        (router, MediaInputs { audio: audio_rx, video: video_rx })
    }

    /// A datagram `session` sent on its own link. Unknown types and full
    /// service queues drop it (counted in [`MediaRouter::dropped`]).
    pub fn deliver(&self, session: SessionId, data: Bytes) {
        let queued = match data.get(1).map(|&k| MsgType::try_from(k)) {
            Some(Ok(MsgType::StreamAudio)) => self.audio.try_send((session, data)).is_ok(),
            Some(Ok(MsgType::StreamVideo | MsgType::VideoHello)) => {
                self.video.try_send((session, data)).is_ok()
            }
            _ => false,
        };
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Datagrams of an unknown type, or that found their service's queue full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The session a link carries, once it registered (the control driver sets
/// it when it welcomes the session on that link; the link's datagram reader
/// reads it). Datagrams before that are dropped.
#[derive(Debug, Default)]
pub struct LinkSession(AtomicU64);

impl LinkSession {
    const NONE: u64 = u64::MAX;

    pub fn new() -> LinkSession {
        LinkSession(AtomicU64::new(Self::NONE))
    }

    pub fn set(&self, session: SessionId) {
        self.0.store(u64::from(session.0), Ordering::Release);
    }

    pub fn get(&self) -> Option<SessionId> {
        match self.0.load(Ordering::Acquire) {
            Self::NONE => None,
            s => Some(SessionId(s as u32)),
        }
    }
}

/// Reads `link`'s datagrams until it closes and delivers each as sent by
/// the session `owner` names (datagrams before registration are dropped).
pub async fn read_datagrams(link: Link, owner: Arc<LinkSession>, router: MediaRouter) {
    while let Ok(data) = link.read_datagram().await {
        match owner.get() {
            Some(session) => router.deliver(session, data),
            None => {
                router.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_go_to_their_service_under_the_links_session() {
        let (router, inputs) = MediaRouter::new(Peers::default());
        let mut audio = vec![0u8; 12];
        audio[1] = MsgType::StreamAudio as u8;
        let mut video = vec![0u8; 12];
        video[1] = MsgType::StreamVideo as u8;
        let mut hello = vec![0u8; 12];
        hello[1] = MsgType::VideoHello as u8;
        let mut chat = vec![0u8; 12];
        chat[1] = MsgType::Chat as u8;
        router.deliver(SessionId(7), Bytes::from(audio.clone()));
        router.deliver(SessionId(8), Bytes::from(video.clone()));
        router.deliver(SessionId(9), Bytes::from(hello.clone()));
        router.deliver(SessionId(9), Bytes::from(chat));
        router.deliver(SessionId(9), Bytes::new());
        assert_eq!(inputs.audio.try_recv().unwrap(), (SessionId(7), Bytes::from(audio)));
        assert_eq!(inputs.video.try_recv().unwrap(), (SessionId(8), Bytes::from(video)));
        assert_eq!(inputs.video.try_recv().unwrap(), (SessionId(9), Bytes::from(hello)));
        assert!(inputs.audio.try_recv().is_err() && inputs.video.try_recv().is_err());
        assert_eq!(router.dropped(), 2, "a control type and an empty datagram");
        // Nobody bound: nothing to send to.
        assert!(!router.peers.send(SessionId(7), Bytes::from_static(b"x")));
        assert_eq!(router.peers.unsent(), 1);
        let owner = LinkSession::new();
        assert_eq!(owner.get(), None);
        owner.set(SessionId(0));
        assert_eq!(owner.get(), Some(SessionId(0)));
    }
}
