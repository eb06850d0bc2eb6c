//! The client's end of the media datagrams: audio and video travel on the
//! session's link (`Link::send_datagram` / `read_datagram`), and one reader
//! per link hands each arriving datagram to the engine it is for, by the
//! type byte of its header (0x41 audio, 0x40 and 0x45 video).
//!
//! [`MediaLink`] is what the audio and video engines keep: it sends on the
//! link the session has now (it changes after a rejoin) and receives what
//! the reader sorted for them. Engines of one session share one reader
//! (several readers of one link would each get only part of it).

use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::session::Client;
use crate::proto::{MsgType, SessionId, Welcome};
use crate::transport::link::Link;

/// Datagrams waiting for the audio engine (about a second of mix at 10 ms)
/// and for the video engine (a few frames' fragments) before the newest are
/// dropped.
const AUDIO_QUEUE: usize = 128;
const VIDEO_QUEUE: usize = 2048;

/// How often an idle reader checks that someone still listens.
const IDLE_CHECK: Duration = Duration::from_millis(250);

/// Where the reader puts datagrams: the engines' queues.
#[derive(Default)]
struct Hub {
    audio: Mutex<Option<SyncSender<Bytes>>>,
    video: Mutex<Option<SyncSender<Bytes>>>,
}

impl Hub {
    fn dispatch(&self, data: Bytes) {
        let slot = match data.get(1).map(|&k| MsgType::try_from(k)) {
            Some(Ok(MsgType::StreamAudio)) => &self.audio,
            Some(Ok(MsgType::StreamVideo | MsgType::VideoRoster)) => &self.video,
            _ => return,
        };
        if let Some(tx) = slot.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            // A full queue means a stalled engine: this datagram is lost.
            let _ = tx.try_send(data);
        }
    }
}

type Registry = Vec<(Weak<Mutex<Link>>, Weak<Hub>)>;

/// One hub per link slot (one per session), found again by every engine.
static HUBS: Mutex<Registry> = Mutex::new(Vec::new());

/// A session's media datagrams, for an engine. Cheap to clone.
#[derive(Clone)]
pub struct MediaLink {
    link: Arc<Mutex<Link>>,
    welcome: Arc<Mutex<Welcome>>,
    hub: Arc<Hub>,
}

impl MediaLink {
    /// `link` is the session's link slot ([`Client::link_slot`]) and
    /// `welcome` its latest Welcome ([`Client::current_slot`]); both change
    /// after a rejoin and are read on every use.
    pub fn new(link: Arc<Mutex<Link>>, welcome: Arc<Mutex<Welcome>>) -> std::io::Result<MediaLink> {
        let mut hubs = HUBS.lock().unwrap_or_else(|e| e.into_inner());
        hubs.retain(|(l, h)| l.strong_count() > 0 && h.strong_count() > 0);
        let found = hubs
            .iter()
            .find(|(l, _)| l.as_ptr() == Arc::as_ptr(&link))
            .and_then(|(_, h)| h.upgrade());
        let hub = match found {
            Some(hub) => hub,
            None => {
                let hub = Arc::new(Hub::default());
                let (slot, weak) = (Arc::downgrade(&link), Arc::downgrade(&hub));
                std::thread::Builder::new()
                    .name("sapora-media-rx".into())
                    .spawn(move || smol::block_on(read_loop(slot, weak)))?;
                hubs.push((Arc::downgrade(&link), Arc::downgrade(&hub)));
                hub
            }
        };
        Ok(MediaLink { link, welcome, hub })
    }

    /// The media of `client`'s session.
    pub fn of(client: &Client) -> std::io::Result<MediaLink> {
        MediaLink::new(client.link_slot(), client.current_slot())
    }

    /// The session's latest Welcome.
    pub fn welcome(&self) -> Welcome {
        self.welcome.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Our session id now.
    pub fn session(&self) -> SessionId {
        self.welcome.lock().unwrap_or_else(|e| e.into_inner()).session
    }

    /// The link the session has now.
    pub fn link(&self) -> Link {
        self.link.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends one datagram on the current link; never blocks (newest wins
    /// when its queue is full). Err when the link is closed or the datagram
    /// is larger than [`MediaLink::max_datagram_size`].
    pub fn send(&self, data: Bytes) -> std::io::Result<()> {
        self.link().send_datagram(data)
    }

    /// Largest datagram the current link takes now, bytes.
    pub fn max_datagram_size(&self) -> usize {
        self.link().max_datagram_size()
    }

    /// The audio datagrams (0x41) from now on; a later call takes them over.
    pub fn audio(&self) -> Receiver<Bytes> {
        let (tx, rx) = std::sync::mpsc::sync_channel(AUDIO_QUEUE);
        *self.hub.audio.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// The video datagrams (fragments 0x40, rosters 0x45) from now on; a
    /// later call takes them over.
    pub fn video(&self) -> Receiver<Bytes> {
        let (tx, rx) = std::sync::mpsc::sync_channel(VIDEO_QUEUE);
        *self.hub.video.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }
}

/// Reads the slot's current link until the slot or the hub is gone,
/// following a rejoin's new link.
async fn read_loop(slot: Weak<Mutex<Link>>, hub: Weak<Hub>) {
    loop {
        let Some(link) =
            slot.upgrade().map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).clone())
        else {
            return;
        };
        let got = smol::future::or(async { Some(link.read_datagram().await) }, async {
            smol::Timer::after(IDLE_CHECK).await;
            None
        })
        .await;
        let Some(hub) = hub.upgrade() else { return };
        match got {
            Some(Ok(data)) => hub.dispatch(data),
            // Closed: wait for the session's next link (a rejoin).
            Some(Err(_)) => {
                smol::Timer::after(Duration::from_millis(50)).await;
            }
            None => {}
        }
    }
}
