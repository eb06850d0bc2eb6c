//! Network → UI: the app's subscriptions. Each worker is keyed by identity
//! ([`Subscription::run_with`]): a new session or a restarted engine has a
//! new key, so its worker starts and the old one ends; dropping a key from
//! the state ends its worker.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use iced::{Subscription, keyboard, window};
use smol::channel::Receiver;

use super::{App, Message, SEARCH_TIME};
use crate::client::Event as SessionEvent;
use crate::client::audio::AudioEvent;
use crate::client::discover::{DiscoverOptions, DiscoveredHost, spawn_watch};
use crate::client::video::VideoEvent;

/// Identifies one session's event stream; hashing only the id means a new
/// session (new id) starts a new worker and the old one ends.
struct SessionKey {
    id: u64,
    events: Receiver<SessionEvent>,
}

impl Hash for SessionKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

fn session_stream(
    key: &SessionKey,
) -> impl iced::futures::Stream<Item = (u64, SessionEvent)> + use<> {
    use iced::futures::StreamExt;
    let id = key.id;
    key.events.clone().map(move |e| (id, e))
}

/// One audio engine's events, keyed by the session and the engine (a
/// restarted engine has a new event channel, so it needs a new worker).
struct AudioKey {
    id: u64,
    generation: u64,
    events: Receiver<AudioEvent>,
}

impl Hash for AudioKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.id, self.generation).hash(state);
    }
}

fn audio_stream(key: &AudioKey) -> impl iced::futures::Stream<Item = (u64, AudioEvent)> + use<> {
    use iced::futures::StreamExt;
    let id = key.id;
    key.events.clone().map(move |e| (id, e))
}

/// At most this often the UI takes new pictures (and redraws for them):
/// twice the camera rate, so a frame waits at most ~33 ms to be shown, and
/// nine cameras cost 30 redraws a second, not 135.
const FRAME_POLL: Duration = Duration::from_millis(33);

/// An engine's wake-up channel, keyed by the session it belongs to.
struct WakeKey<T> {
    id: u64,
    /// A restarted engine (camera switched) needs a worker of its own.
    generation: u64,
    events: Receiver<T>,
}

impl<T> Hash for WakeKey<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.id, self.generation).hash(state);
    }
}

/// Waits for the video engine's next event, then for the rest of the
/// [`FRAME_POLL`] period, and emits one wake-up for everything that came
/// meanwhile (with any camera failures). Idle when no video arrives.
fn video_wakeups(
    key: &WakeKey<VideoEvent>,
) -> impl iced::futures::Stream<Item = (u64, Vec<String>)> + use<> {
    let id = key.id;
    iced::futures::stream::unfold(
        (key.events.clone(), None::<Instant>),
        move |(rx, last)| async move {
            let first = rx.recv().await.ok()?;
            if let Some(last) = last {
                smol::Timer::at(last + FRAME_POLL).await;
            }
            let mut errors = Vec::new();
            for e in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                if let VideoEvent::CameraFailed(why) = e {
                    errors.push(format!("Camera off: {why}"));
                }
            }
            Some(((id, errors), (rx, Some(Instant::now()))))
        },
    )
}

/// The screen viewer's "newer picture" signal (it never queues).
fn screen_wakeups(
    key: &WakeKey<()>,
) -> impl iced::futures::Stream<Item = (u64, Vec<String>)> + use<> {
    use iced::futures::StreamExt;
    let id = key.id;
    key.events.clone().map(move |()| (id, Vec::new()))
}

/// Hosts found on the LAN, while the launcher shows.
fn discovery_stream(key: &(IpAddr, u16)) -> Receiver<Vec<DiscoveredHost>> {
    spawn_watch(DiscoverOptions { target: key.0, port: key.1, timeout: SEARCH_TIME })
}

impl App {
    pub fn subscription(&self) -> Subscription<Message> {
        let mut subs = vec![window::close_requests().map(Message::CloseRequested)];
        match &self.session {
            Some(s) => {
                let key = SessionKey { id: s.id, events: s.events.clone() };
                subs.push(
                    Subscription::run_with(key, session_stream)
                        .map(|(id, e)| Message::Session(id, e)),
                );
                subs.push(keyboard::listen().map(Message::Key));
                if let Some(a) = &self.media.audio {
                    let key = AudioKey {
                        id: s.id,
                        generation: self.media.audio_generation,
                        events: a.events(),
                    };
                    subs.push(
                        Subscription::run_with(key, audio_stream)
                            .map(|(id, e)| Message::Audio(id, e)),
                    );
                }
                if let Some(v) = &self.media.video {
                    let key =
                        WakeKey { id: s.id, generation: self.media.generation, events: v.events() };
                    subs.push(
                        Subscription::run_with(key, video_wakeups)
                            .map(|(id, errors)| Message::Frames(id, errors)),
                    );
                }
                if let Some(v) = &self.media.viewer {
                    let key = WakeKey { id: s.id, generation: 0, events: v.updated() };
                    subs.push(
                        Subscription::run_with(key, screen_wakeups)
                            .map(|(id, errors)| Message::Frames(id, errors)),
                    );
                }
            }
            // Discovery runs only while the launcher shows.
            None => subs.push(
                Subscription::run_with(self.options.discovery, discovery_stream)
                    .map(Message::Discovered),
            ),
        }
        Subscription::batch(subs)
    }
}
