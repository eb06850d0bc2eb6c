//! The desktop app (iced). One module per screen, each with a state struct,
//! `Message`, `Event` (child → parent), `update` and `view`; this module is
//! the parent: it owns the session, the in-process host and the media
//! engines, and turns children's `Event`s into work.
//!
//! Network → UI goes through subscriptions keyed by identity
//! ([`Subscription::run_with`]): dropping a key from the state ends its
//! worker. Nothing here blocks: connecting, hosting, resolving names and
//! file I/O run as tasks.

pub mod call;
pub mod chat;
pub mod files;
pub mod launcher;
pub mod media;
pub mod participants;
pub mod picker;
pub mod scheduler;
pub mod settings;

use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iced::widget::{column, container, stack, text};
use iced::{Background, Border, Color, Element, Fill, Subscription, Task, Theme, keyboard, window};
use smol::channel::Receiver;

use crate::client::audio::{AudioEngine, AudioEvent};
use crate::client::discover::{DiscoverOptions, DiscoveredHost, spawn_watch};
use crate::client::files::{Dest, FileClient, Progress, UploadOptions};
use crate::client::screen::{Presenter, Viewer};
use crate::client::video::{VideoEngine, VideoEvent};
use crate::client::{Client, ClientConfig, Event as SessionEvent};
use crate::schedule::Store;
use crate::server::{self, HostOptions, RunningHost};
use call::{Call, Notice};
use launcher::Launcher;
use settings::Settings;

/// How long `sapora` with no arguments looks for a host before hosting.
pub const SEARCH_TIME: Duration = Duration::from_secs(1);
/// How long a notification stays up.
const NOTICE_TIME: Duration = Duration::from_secs(6);

/// What the app does when it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// The launcher, nothing else.
    Launcher,
    /// `sapora` with no arguments: look for about a second, offer a host
    /// found, otherwise host.
    Auto,
    /// `sapora join`: join at once.
    Join { address: String, name: String, room: String },
    /// `sapora host`: host in-process and join it.
    Host { name: String, room: String },
}

/// Device choices from the command line; they override the saved settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaChoice {
    pub camera: Option<String>,
    pub mic: Option<String>,
    pub speaker: Option<String>,
    /// `--aec`, `--noise-suppression`, `--agc`.
    pub aec: Option<bool>,
    pub noise_suppression: Option<crate::media::audio::apm::NoiseSuppression>,
    pub agc: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub launch: Launch,
    /// Where discovery probes go, and the discovery port.
    pub discovery: (IpAddr, u16),
    /// The host this app starts when it hosts (ports, bind address, name).
    pub host: HostOptions,
    pub media: MediaChoice,
}

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("the desktop app could not start: {0}")]
    Iced(#[from] iced::Error),
}

/// Whether a window can be opened at all: without a display the CLI falls
/// back to the terminal.
pub fn display_available() -> bool {
    std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty())
}

/// The address to tell others: the bound one, or every LAN address of this
/// machine with its interface name ("10.77.0.1 (eth0), or 10.78.0.1 (eth1)"),
/// with the port when it is not the default.
pub fn share_address(bind: IpAddr, control_port: u16) -> String {
    let with_port = |ip: IpAddr| {
        if control_port == crate::proto::Ports::with_offset(0).map(|p| p.control).unwrap_or(5000) {
            ip.to_string()
        } else {
            SocketAddr::new(ip, control_port).to_string()
        }
    };
    if !bind.is_unspecified() {
        return with_port(bind);
    }
    let list = crate::lanif::join_addresses();
    if list.is_empty() {
        return with_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    list.iter()
        .map(|(name, ip)| format!("{} ({name})", with_port(IpAddr::V4(*ip))))
        .collect::<Vec<_>>()
        .join(", or ")
}

/// Opens the app and returns when its window closes.
pub fn run(options: Options) -> Result<(), UiError> {
    iced::application(move || App::new(options.clone()), App::update, App::view)
        .title(App::title)
        .subscription(App::subscription)
        .theme(App::theme)
        .exit_on_close_request(false)
        .window_size((1280.0, 800.0))
        .run()?;
    Ok(())
}

/// Moves a value that is not `Clone` through a `Message` (which must be):
/// the first `take` gets it.
pub struct Handoff<T>(Arc<Mutex<Option<T>>>);

impl<T> Handoff<T> {
    pub fn new(value: T) -> Handoff<T> {
        Handoff(Arc::new(Mutex::new(Some(value))))
    }

    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Handoff(self.0.clone())
    }
}

impl<T> fmt::Debug for Handoff<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handoff<{}>", std::any::type_name::<T>())
    }
}

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

/// A file transfer's progress, then its outcome.
#[derive(Debug, Clone)]
pub enum FileUpdate {
    Progress(Progress),
    Done(Result<String, String>),
}

/// Which transfer an update belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferKey {
    Upload(String),
    Download(u64),
}

fn discovery_stream(key: &(IpAddr, u16)) -> Receiver<Vec<DiscoveredHost>> {
    spawn_watch(DiscoverOptions { target: key.0, port: key.1, timeout: SEARCH_TIME })
}

struct Session {
    id: u64,
    client: Client,
    events: Receiver<SessionEvent>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Launcher(launcher::Message),
    Call(call::Message),
    Settings(settings::Message),
    Discovered(Vec<DiscoveredHost>),
    SearchDone,
    Resolved(Result<SocketAddr, String>, String, String),
    Connected(u64, Result<Handoff<Client>, String>),
    HostStarted(Result<Handoff<RunningHost>, String>, String, String),
    Session(u64, SessionEvent),
    Audio(u64, AudioEvent),
    /// New pictures may be waiting (and cameras that failed).
    Frames(u64, Vec<String>),
    VideoStarted(u64, Result<Handoff<(VideoEngine, Option<String>)>, String>),
    AudioStarted(u64, Result<Handoff<AudioEngine>, String>),
    ViewerStarted(u64, Result<Handoff<Viewer>, String>),
    PresenterStarted(u64, Result<Handoff<Presenter>, String>),
    File(TransferKey, FileUpdate),
    Left,
    HostStopped,
    Expire(u64),
    CloseRequested(window::Id),
    Key(keyboard::Event),
}

pub struct App {
    options: Options,
    pub settings: Settings,
    pub dialog: Option<settings::Dialog>,
    pub launcher: Launcher,
    pub call: Option<Call>,
    session: Option<Session>,
    media: media::Media,
    route: Option<media::Route>,
    host: Option<RunningHost>,
    /// The address others use, while we host.
    pub share: Option<String>,
    pub notices: Vec<(u64, Notice)>,
    next_id: u64,
    /// The connect attempt whose answer we wait for; older ones are dropped.
    connecting: Option<u64>,
    joined_addr: String,
    quitting: bool,
    /// When the user asked to join, until the first remote frame is shown.
    join_clicked: Option<Instant>,
    /// Join → first remote frame shown, for the benchmark and tests.
    pub first_frame_ms: Option<f64>,
    /// Frames shown since `shown_since`, logged every 10 s (benchmarks).
    shown: u64,
    shown_since: Option<Instant>,
    /// The "choose a file" dialog; tests replace it with one that answers
    /// without opening a window.
    pub file_picker: picker::FilePicker,
}

impl App {
    pub fn new(options: Options) -> (App, Task<Message>) {
        let mut settings = Settings::load();
        let m = &options.media;
        if let Some(c) = &m.camera {
            settings.camera = c.clone();
        }
        if let Some(c) = &m.mic {
            settings.mic = c.clone();
        }
        if let Some(c) = &m.speaker {
            settings.speaker = c.clone();
        }
        let v = &mut settings.voice;
        v.aec = m.aec.unwrap_or(v.aec);
        v.noise_suppression = m.noise_suppression.unwrap_or(v.noise_suppression);
        v.agc = m.agc.unwrap_or(v.agc);
        let name = Some(settings.name.clone())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(default_name);
        let (scheduler, sched_task) = scheduler::Scheduler::new(Store::open_default().ok());
        let mut app = App {
            settings,
            dialog: None,
            launcher: Launcher::new(name, scheduler),
            call: None,
            session: None,
            media: media::Media::default(),
            route: None,
            host: None,
            share: None,
            notices: Vec::new(),
            next_id: 1,
            connecting: None,
            joined_addr: String::new(),
            quitting: false,
            join_clicked: None,
            first_frame_ms: None,
            shown: 0,
            shown_since: None,
            file_picker: picker::FilePicker::native(),
            options: options.clone(),
        };
        let sched_task = sched_task.map(|m| Message::Launcher(launcher::Message::Scheduler(m)));
        let start = match options.launch {
            Launch::Launcher => Task::none(),
            Launch::Auto => {
                app.launcher.status = launcher::Status::Searching;
                Task::perform(smol::Timer::after(SEARCH_TIME), |_| Message::SearchDone)
            }
            Launch::Join { address, name, room } => {
                app.launcher.address = address.clone();
                app.launcher.name = name.clone();
                app.launcher.meeting = room.clone();
                app.launcher.status = launcher::Status::Connecting(address.clone());
                app.resolve(address, name, room)
            }
            Launch::Host { name, room } => {
                app.launcher.name = name.clone();
                app.launcher.meeting = room.clone();
                app.start_host(name, room)
            }
        };
        (app, Task::batch([sched_task, start]))
    }

    fn title(&self) -> String {
        match &self.call {
            Some(c) => format!("Sapora — {} ({})", c.room, c.me),
            None => "Sapora".to_string(),
        }
    }

    fn theme(&self) -> Theme {
        Theme::Dark
    }

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

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn notify(&mut self, notice: Notice) -> Task<Message> {
        // Engines may report one failure twice (result and event).
        if self.notices.iter().any(|(_, n)| *n == notice) {
            return Task::none();
        }
        let id = self.next_id();
        self.notices.push((id, notice));
        if self.notices.len() > 5 {
            self.notices.remove(0);
        }
        Task::perform(smol::Timer::after(NOTICE_TIME), move |_| Message::Expire(id))
    }

    fn resolve(&mut self, address: String, name: String, room: String) -> Task<Message> {
        self.join_clicked = Some(Instant::now());
        let default_port = self.options.host.ports.control;
        let default_port = if default_port == 0 { 5000 } else { default_port };
        Task::perform(
            smol::unblock(move || crate::client::parse_address(&address, default_port)),
            move |r| Message::Resolved(r, name.clone(), room.clone()),
        )
    }

    /// `host_key`: set when joining our own in-process host, so the room
    /// sees us marked as the host.
    fn connect(
        &mut self,
        addr: SocketAddr,
        name: String,
        room: String,
        host_key: Option<crate::proto::HostKey>,
    ) -> Task<Message> {
        let id = self.next_id();
        self.connecting = Some(id);
        self.joined_addr = addr.to_string();
        let mut config = ClientConfig::new(addr, name, room);
        config.host_key = host_key;
        // The app always runs media engines: tell the user if none arrives.
        config.media = true;
        Task::perform(Client::connect(config), move |r| {
            Message::Connected(id, r.map(Handoff::new).map_err(|e| e.to_string()))
        })
    }

    fn start_host(&mut self, name: String, room: String) -> Task<Message> {
        if let Some(key) = self.host.as_ref().map(|h| h.host_key) {
            let addr = self.host_control_addr();
            return self.connect(addr, name, room, Some(key));
        }
        self.launcher.status = launcher::Status::StartingHost;
        let opts = self.options.host.clone();
        Task::perform(server::start(opts), move |r| {
            Message::HostStarted(
                r.map(Handoff::new).map_err(|e| e.to_string()),
                name.clone(),
                room.clone(),
            )
        })
    }

    /// Where we connect to our own host.
    /// Our in-process host's key when `addr` is that host (typed into the
    /// launcher as loopback, the bound address or one of this machine's), so
    /// joining it by address still marks us as the host.
    fn own_host_key(&self, addr: SocketAddr) -> Option<crate::proto::HostKey> {
        let h = self.host.as_ref()?;
        let ip = addr.ip();
        let ours = ip.is_loopback()
            || ip == h.control_addr.ip()
            || (h.control_addr.ip().is_unspecified()
                && if_addrs::get_if_addrs().is_ok_and(|ifs| ifs.iter().any(|i| i.ip() == ip)));
        (addr.port() == h.control_addr.port() && ours).then_some(h.host_key)
    }

    fn host_control_addr(&self) -> SocketAddr {
        let h = self.host.as_ref().expect("called while hosting");
        let ip = if h.control_addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            h.control_addr.ip()
        };
        SocketAddr::new(ip, h.control_addr.port())
    }

    /// The current session's id (what `Message::Session`/`Frames` carry).
    pub fn session_id(&self) -> Option<u64> {
        self.session.as_ref().map(|s| s.id)
    }

    /// The session's events as the app's subscription reads them, for
    /// driving the app without iced's runtime (tests, scripts).
    pub fn session_events(&self) -> Option<(u64, Receiver<SessionEvent>)> {
        self.session.as_ref().map(|s| (s.id, s.events.clone()))
    }

    /// Whether the app is in a meeting.
    pub fn in_call(&self) -> bool {
        self.session.is_some()
    }

    fn end_call(&mut self) -> Task<Message> {
        self.call = None;
        self.route = None;
        self.launcher.status = launcher::Status::Idle;
        // Engines join their threads when dropped: not on the UI thread.
        let stop = self.media.take_all();
        self.media = media::Media::default();
        smol::spawn(smol::unblock(stop)).detach();
        match self.session.take() {
            Some(s) => Task::perform(s.client.leave(), |_| Message::Left),
            None => Task::none(),
        }
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        match message {
            Message::Launcher(m) => {
                let (task, event) = self.launcher.update(m);
                let task = task.map(Message::Launcher);
                let more = match event {
                    Some(launcher::Event::Join { address, name, room }) => {
                        self.remember_name(&name);
                        self.resolve(address, name, room)
                    }
                    Some(launcher::Event::Host { name, room }) => {
                        self.remember_name(&name);
                        self.start_host(name, room)
                    }
                    Some(launcher::Event::StopHosting) => self.stop_host(),
                    Some(launcher::Event::OpenSettings) => {
                        self.dialog = Some(settings::Dialog::new(&self.settings));
                        Task::none()
                    }
                    None => Task::none(),
                };
                Task::batch([task, more])
            }
            Message::Settings(m) => {
                let Some(dialog) = &mut self.dialog else { return Task::none() };
                let (task, event) = dialog.update(m);
                let task = task.map(Message::Settings);
                match event {
                    Some(settings::Event::Apply(s)) => {
                        let old = std::mem::replace(&mut self.settings, s);
                        Task::batch([task, self.apply_live(&old)])
                    }
                    Some(settings::Event::Close) => {
                        self.dialog = None;
                        task
                    }
                    None => task,
                }
            }
            Message::Discovered(hosts) => {
                self.launcher.update(launcher::Message::Hosts(hosts)).0.map(Message::Launcher)
            }
            Message::SearchDone => {
                if self.launcher.status != launcher::Status::Searching {
                    return Task::none();
                }
                self.launcher.status = launcher::Status::Idle;
                match self.launcher.hosts.iter().find(|h| h.is_compatible()).cloned() {
                    Some(h) => {
                        self.launcher.fill_from(&h);
                        self.launcher.offer = Some(h);
                        Task::none()
                    }
                    None => {
                        let name = self.launcher.name.clone();
                        // Started by double-click: if someone else did the
                        // same at this moment, the two hosts merge.
                        self.options.host.merge_room = Some("default".into());
                        let t = self.notify(Notice {
                            text: "No meeting found on your network: hosting one.".into(),
                            error: false,
                        });
                        Task::batch([t, self.start_host(name, String::new())])
                    }
                }
            }
            Message::Resolved(Ok(addr), name, room) => {
                let key = self.own_host_key(addr);
                self.connect(addr, name, room, key)
            }
            Message::Resolved(Err(e), ..) | Message::HostStarted(Err(e), ..) => {
                self.launcher.status = launcher::Status::Idle;
                self.launcher.error = Some(e.clone());
                self.notify(Notice { text: e, error: true })
            }
            Message::HostStarted(Ok(h), name, room) => {
                let Some(host) = h.take() else { return Task::none() };
                let share = share_address(self.options.host.bind, host.ports.control);
                self.share = Some(share.clone());
                self.launcher.hosting = Some(share);
                let key = host.host_key;
                self.host = Some(host);
                let addr = self.host_control_addr();
                self.connect(addr, name, room, Some(key))
            }
            Message::Connected(id, result) => {
                if self.connecting != Some(id) {
                    return Task::none();
                }
                self.connecting = None;
                match result.map(|h| h.take()) {
                    Ok(Some(client)) => self.adopt(client),
                    Ok(None) => Task::none(),
                    Err(e) => {
                        self.launcher.status = launcher::Status::Idle;
                        self.launcher.error = Some(e.clone());
                        self.notify(Notice { text: e, error: true })
                    }
                }
            }
            Message::Session(id, event) => {
                if self.session.as_ref().map(|s| s.id) != Some(id) {
                    return Task::none();
                }
                let moved = match &event {
                    SessionEvent::Moved { to, .. } => Some(self.follow_handover(id, *to)),
                    _ => None,
                };
                let Some(call) = &mut self.call else { return Task::none() };
                let (notices, layers) = call.on_session(event);
                let ended = call.ended.clone();
                let mut tasks: Vec<Task<Message>> =
                    notices.into_iter().map(|n| self.notify(n)).collect();
                if let Some(e) = layers {
                    tasks.push(self.call_event(e));
                }
                if let Some(reason) = ended {
                    self.launcher.error = Some(reason);
                    tasks.push(self.end_call());
                }
                tasks.extend(moved);
                Task::batch(tasks)
            }
            Message::Call(m) => {
                let Some(call) = &mut self.call else { return Task::none() };
                let (task, event) = call.update(m);
                let task = task.map(Message::Call);
                match event {
                    Some(e) => Task::batch([task, self.call_event(e)]),
                    None => task,
                }
            }
            Message::Key(k) => {
                if self.call.is_some() {
                    return self.update(Message::Call(call::Message::Key(k)));
                }
                Task::none()
            }
            Message::Audio(id, event) => {
                if self.session.as_ref().map(|s| s.id) == Some(id)
                    && let Some(call) = &mut self.call
                {
                    call.set_speaking(media::Media::speaking(&event));
                }
                Task::none()
            }
            Message::Frames(id, errors) => {
                if !self.current(id) {
                    return Task::none();
                }
                let mut tasks = Vec::new();
                for e in errors {
                    tasks.push(self.set_camera_state(false));
                    tasks.push(self.notify(Notice { text: e, error: true }));
                }
                self.poll_media();
                Task::batch(tasks)
            }
            Message::VideoStarted(id, result) => {
                if !self.current(id) {
                    return Task::none();
                }
                match result.map(|h| h.take()) {
                    Ok(Some((engine, camera_error))) => {
                        let camera = engine.camera_on();
                        let old = self.media.replace_video(Some(engine));
                        smol::spawn(smol::unblock(move || drop(old))).detach();
                        let mut tasks = vec![self.set_camera_state(camera)];
                        if let Some(why) = camera_error {
                            tasks.push(self.notify(Notice {
                                text: format!("Camera off: {why}"),
                                error: true,
                            }));
                        }
                        Task::batch(tasks)
                    }
                    Ok(None) => Task::none(),
                    Err(e) => {
                        let t = self.set_camera_state(false);
                        Task::batch([
                            t,
                            self.notify(Notice { text: format!("No video: {e}"), error: true }),
                        ])
                    }
                }
            }
            Message::AudioStarted(id, result) => {
                if !self.current(id) {
                    return Task::none();
                }
                match result.map(|h| h.take()) {
                    Ok(Some(engine)) => {
                        let mic = !engine.muted();
                        let old = self.media.replace_audio(Some(engine));
                        if let Some(old) = old {
                            smol::spawn(smol::unblock(move || drop(old))).detach();
                        }
                        self.set_mic_state(mic);
                        Task::none()
                    }
                    Ok(None) => Task::none(),
                    Err(e) => {
                        self.set_mic_state(false);
                        self.notify(Notice { text: format!("No sound: {e}"), error: true })
                    }
                }
            }
            Message::ViewerStarted(id, result) => {
                if !self.current(id) {
                    return Task::none();
                }
                match result.map(|h| h.take()) {
                    Ok(Some(viewer)) => {
                        self.media.viewer = Some(viewer);
                        Task::none()
                    }
                    Ok(None) => Task::none(),
                    Err(e) => self.notify(Notice {
                        text: format!("Cannot watch shared screens: {e}"),
                        error: true,
                    }),
                }
            }
            Message::PresenterStarted(id, result) => {
                if !self.current(id) {
                    return Task::none();
                }
                match result.map(|h| h.take()) {
                    Ok(Some(p)) => {
                        self.media.presenter = Some(p);
                        self.set_screen_state(true);
                        Task::none()
                    }
                    Ok(None) => Task::none(),
                    Err(e) => {
                        self.set_screen_state(false);
                        self.notify(Notice {
                            text: format!("Cannot share the screen: {e}"),
                            error: true,
                        })
                    }
                }
            }
            Message::File(key, update) => self.file_update(key, update),
            Message::Left => {
                if self.quitting {
                    return self.stop_host();
                }
                Task::none()
            }
            Message::HostStopped => {
                if self.quitting {
                    return iced::exit();
                }
                Task::none()
            }
            Message::Expire(id) => {
                self.notices.retain(|(i, _)| *i != id);
                Task::none()
            }
            Message::CloseRequested(_) => {
                if self.quitting {
                    return iced::exit();
                }
                self.quitting = true;
                // Say goodbye and stop the host, but never hang on the way out.
                let bye = match self.session.take() {
                    Some(s) => Task::perform(s.client.leave(), |_| Message::Left),
                    None => self.stop_host(),
                };
                let cap = Task::perform(smol::Timer::after(Duration::from_secs(3)), |_| {
                    Message::HostStopped
                });
                Task::batch([bye, cap])
            }
        }
    }

    fn remember_name(&mut self, name: &str) {
        if self.settings.name != name {
            self.settings.name = name.to_string();
            let name = name.to_string();
            // Only the name: command-line device choices are for this run.
            smol::spawn(smol::unblock(move || {
                let mut saved = Settings::load();
                saved.name = name;
                // Failing to remember the name is not worth bothering the user.
                let _ = saved.save();
            }))
            .detach();
        }
    }

    /// The session moved to another host (double-click merge): stop our own
    /// host if we ran the one that handed over, and point the media engines
    /// at the new host.
    fn follow_handover(&mut self, id: u64, to: SocketAddr) -> Task<Message> {
        self.joined_addr = to.to_string();
        // Our host forwards late arrivals for a few seconds, then stops.
        let stop = match self.host.take() {
            Some(h) => {
                self.share = None;
                self.launcher.hosting = None;
                Task::perform(h.retire(), |_| Message::HostStopped)
            }
            None => Task::none(),
        };
        let Some(mut route) = self.route.clone() else { return stop };
        route.host = to.ip();
        self.route = Some(route.clone());
        Task::batch([stop, self.start_engines(id, route)])
    }

    fn stop_host(&mut self) -> Task<Message> {
        self.share = None;
        self.launcher.hosting = None;
        match self.host.take() {
            Some(h) => Task::perform(h.shutdown(), |_| Message::HostStopped),
            None if self.quitting => iced::exit(),
            None => Task::none(),
        }
    }

    /// Shows the call for a session that has just connected.
    pub fn adopt(&mut self, client: Client) -> Task<Message> {
        let id = self.next_id();
        let welcome = client.welcome().clone();
        let events = client.events();
        let hosting = self.share.clone();
        let mut call = Call::new(&welcome, self.joined_addr.clone(), hosting);
        call.always_full = self.settings.always_full;
        // The session reports the first Joined too; the call starts from the
        // welcome, so that one is skipped.
        let _ = events.try_recv();
        let layers = call.refresh_layers();
        self.call = Some(call);
        self.session = Some(Session { id, client, events });
        self.launcher.status = launcher::Status::Idle;
        self.launcher.error = None;
        self.launcher.offer = None;
        let layers = layers.map(|e| self.call_event(e)).unwrap_or_else(Task::none);
        let host = self
            .joined_addr
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let route = media::Route {
            welcome: self.session.as_ref().expect("just set").client.current_slot(),
            host,
            name: welcome.name.clone(),
        };
        self.route = Some(route.clone());
        let engines = self.start_engines(id, route);
        let notice = self.notify(Notice {
            text: format!(
                "Joined \"{}\" on {} as {}",
                welcome.room, welcome.host_name, welcome.name
            ),
            error: false,
        });
        Task::batch([layers, notice, engines])
    }

    /// Carries out what the call screen asked for.
    fn call_event(&mut self, event: call::Event) -> Task<Message> {
        match event {
            call::Event::Leave => self.end_call(),
            call::Event::Media(state) => self.media_changed(state),
            call::Event::Chat { local, to, text } => {
                let result = match &self.session {
                    Some(s) => s.client.chat(to.as_deref(), &text).map_err(|e| e.to_string()),
                    None => Err("not in a meeting".to_string()),
                };
                if let Some(call) = &mut self.call {
                    call.chat.sent(local, result);
                }
                Task::none()
            }
            call::Event::Layers(changes) => {
                self.media.set_layers(changes);
                Task::none()
            }
            call::Event::Files(e) => self.file_event(e),
            call::Event::OpenSettings => {
                self.dialog = Some(settings::Dialog::in_call(&self.settings));
                Task::none()
            }
            call::Event::Control(c) => {
                if let Some(s) = &self.session {
                    // A refusal comes back as a session event (shown as a notice).
                    let _ = s.client.control(c);
                }
                Task::none()
            }
        }
    }

    /// (video, audio) engine generations: each restart bumps one.
    pub fn engine_generations(&self) -> (u64, u64) {
        (self.media.generation, self.media.audio_generation)
    }

    /// New settings saved during a call: restarts only the engines whose
    /// choices changed, off the UI thread; a failure becomes a notification
    /// (via `VideoStarted`/`AudioStarted`) and the call goes on.
    fn apply_live(&mut self, old: &Settings) -> Task<Message> {
        let (Some(route), Some(id), Some(call)) =
            (self.route.clone(), self.session.as_ref().map(|s| s.id), self.call.as_mut())
        else {
            return Task::none();
        };
        let new = self.settings.clone();
        let mut layers = None;
        if new.always_full != old.always_full {
            call.always_full = new.always_full;
            layers = call.refresh_layers();
        }
        let (camera_on, mic_on) = (call.media.camera, call.media.mic);
        let mut tasks: Vec<Task<Message>> =
            layers.into_iter().map(|e| self.call_event(e)).collect();
        // A camera that is off picks the new choice up when turned on.
        let video_changed = new.camera != old.camera || new.quality != old.quality;
        if video_changed && (camera_on || self.media.video.is_none()) {
            let camera = camera_on || new.camera.trim() != "none";
            let old_video = self.media.replace_video(None);
            let (r, s) = (route.clone(), new.clone());
            tasks.push(Task::perform(
                smol::unblock(move || {
                    drop(old_video);
                    media::start_video(&r, &s, camera)
                }),
                move |r| Message::VideoStarted(id, r.map(Handoff::new)),
            ));
        }
        if new.voice != old.voice {
            // Takes effect at the engine's next frame; no restart.
            if let Some(audio) = &self.media.audio {
                audio.set_voice(new.voice);
            }
        }
        if new.mic != old.mic || new.speaker != old.speaker {
            let muted = !mic_on || new.mic.trim() == "none";
            let old_audio = self.media.replace_audio(None);
            tasks.push(Task::perform(
                smol::unblock(move || {
                    drop(old_audio);
                    media::start_audio(&route, &new, muted)
                }),
                move |r| Message::AudioStarted(id, r.map(Handoff::new)),
            ));
        }
        Task::batch(tasks)
    }

    fn current(&self, id: u64) -> bool {
        self.session.as_ref().map(|s| s.id) == Some(id)
    }

    /// Starts video, audio and the screen viewer, each off the UI thread.
    fn start_engines(&mut self, id: u64, route: media::Route) -> Task<Message> {
        let settings = self.settings.clone();
        let camera = settings.camera.trim() != "none";
        let mic = settings.mic.trim() != "none";
        let (r1, s1, r2, s2, r3) =
            (route.clone(), settings.clone(), route.clone(), settings, route);
        Task::batch([
            Task::perform(smol::unblock(move || media::start_video(&r1, &s1, camera)), move |r| {
                Message::VideoStarted(id, r.map(Handoff::new))
            }),
            Task::perform(smol::unblock(move || media::start_audio(&r2, &s2, !mic)), move |r| {
                Message::AudioStarted(id, r.map(Handoff::new))
            }),
            Task::perform(smol::unblock(move || media::start_viewer(&r3)), move |r| {
                Message::ViewerStarted(id, r.map(Handoff::new))
            }),
        ])
    }

    fn poll_media(&mut self) {
        let polled = self.media.poll();
        if let Some(call) = &mut self.call {
            if let (Some(clicked), false) = (self.join_clicked, polled.frames.is_empty()) {
                let ms = clicked.elapsed().as_secs_f64() * 1000.0;
                self.first_frame_ms = Some(ms);
                self.join_clicked = None;
                tracing::info!("join → first remote frame shown: {ms:.0} ms");
            }
            self.shown += polled.frames.len() as u64;
            let since = *self.shown_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(10) {
                let secs = since.elapsed().as_secs_f64();
                tracing::info!("video: {:.1} frames/s shown", self.shown as f64 / secs);
                self.shown = 0;
                self.shown_since = Some(Instant::now());
            }
            for (name, frame) in polled.frames {
                call.set_frame(&name, frame);
            }
            if let Some((presenter, frame)) = polled.screen
                && call.presenter.as_deref() == Some(presenter.as_str())
            {
                call.screen = Some(frame);
            }
        }
    }

    fn publish_media(&mut self) {
        if let (Some(call), Some(s)) = (&self.call, &self.session) {
            let _ = s.client.set_media(call.media);
        }
    }

    fn set_camera_state(&mut self, on: bool) -> Task<Message> {
        if let Some(call) = &mut self.call {
            call.media.camera = on;
            let _ = call.update(call::Message::Refresh);
        }
        self.publish_media();
        Task::none()
    }

    fn set_mic_state(&mut self, on: bool) {
        if let Some(call) = &mut self.call {
            call.media.mic = on;
            let _ = call.update(call::Message::Refresh);
        }
        self.publish_media();
    }

    fn set_screen_state(&mut self, on: bool) {
        if let Some(call) = &mut self.call {
            call.media.screen = on;
            let _ = call.update(call::Message::Refresh);
        }
        self.publish_media();
    }

    /// The user flipped mic, camera or screen in the call screen.
    fn media_changed(&mut self, wanted: crate::proto::MediaState) -> Task<Message> {
        let (Some(route), Some(id)) = (self.route.clone(), self.session.as_ref().map(|s| s.id))
        else {
            return Task::none();
        };
        let mut tasks = Vec::new();
        // Microphone: the engine just stops sending.
        match &self.media.audio {
            Some(a) => a.set_muted(!wanted.mic),
            None if wanted.mic => {
                self.set_mic_state(false);
                tasks.push(self.notify(Notice {
                    text: "No microphone: choose one in Settings (or \"tone\").".into(),
                    error: true,
                }));
            }
            None => {}
        }
        // Camera: restart the video engine with or without it.
        let camera_now = self.media.video.as_ref().is_some_and(|v| v.camera_on());
        if wanted.camera != camera_now {
            let old = self.media.replace_video(None);
            let settings = self.settings.clone();
            let camera = wanted.camera;
            let r = route.clone();
            tasks.push(Task::perform(
                smol::unblock(move || {
                    drop(old);
                    media::start_video(&r, &settings, camera)
                }),
                move |r| Message::VideoStarted(id, r.map(Handoff::new)),
            ));
        }
        // Screen: start or stop presenting.
        if wanted.screen && self.media.presenter.is_none() {
            tasks.push(Task::perform(
                smol::unblock(move || media::start_presenter(&route)),
                move |r| Message::PresenterStarted(id, r.map(Handoff::new)),
            ));
        } else if !wanted.screen
            && let Some(p) = self.media.presenter.take()
        {
            smol::spawn(smol::unblock(move || drop(p))).detach();
        }
        self.publish_media();
        Task::batch(tasks)
    }

    fn file_client(&self) -> Option<FileClient> {
        let s = self.session.as_ref()?;
        let control = self.joined_addr.parse().ok()?;
        Some(FileClient::for_client(&s.client, control))
    }

    fn file_event(&mut self, event: files::Event) -> Task<Message> {
        match event {
            // The dialog is a future on the executor: the window keeps
            // drawing while it is open, and the typed path still works.
            files::Event::Browse => Task::perform(self.file_picker.pick(), |p| {
                Message::Call(call::Message::Files(files::Message::Picked(p)))
            }),
            files::Event::Failed(why) => self.notify(Notice { text: why, error: true }),
            files::Event::Upload { path, to } => {
                let Some(fc) = self.file_client() else { return Task::none() };
                transfer(TransferKey::Upload(path.clone()), move |p| async move {
                    let opts = UploadOptions { to, name: None };
                    fc.upload_done(std::path::Path::new(&path), opts, Some(p))
                        .await
                        .map(|d| match d.notice {
                            // The recipient left: "shared" alone would mislead.
                            Some(n) => format!("stored as \"{}\"; {n}", d.file.name),
                            None => format!("shared as \"{}\"", d.file.name),
                        })
                        .map_err(|e| e.to_string())
                })
            }
            files::Event::Download(id) => {
                let Some(fc) = self.file_client() else { return Task::none() };
                let dir = download_dir();
                transfer(TransferKey::Download(id), move |p| async move {
                    fc.download(id, Dest::Dir(dir), Some(p))
                        .await
                        .map(|d| format!("saved to {}", d.path.display()))
                        .map_err(|e| e.to_string())
                })
            }
        }
    }

    fn file_update(&mut self, key: TransferKey, update: FileUpdate) -> Task<Message> {
        let Some(call) = &mut self.call else { return Task::none() };
        let state = match &update {
            FileUpdate::Progress(Progress::Bytes { done, total }) => {
                files::Transfer::Running(if *total == 0 {
                    1.0
                } else {
                    *done as f32 / *total as f32
                })
            }
            FileUpdate::Progress(_) => return Task::none(),
            FileUpdate::Done(Ok(s)) => files::Transfer::Done(s.clone()),
            FileUpdate::Done(Err(e)) => files::Transfer::Failed(e.clone()),
        };
        match &key {
            TransferKey::Upload(path) => call.files.upload_progress(path, state),
            TransferKey::Download(id) => call.files.progress(*id, state),
        }
        match update {
            FileUpdate::Done(Ok(s)) => {
                self.notify(Notice { text: format!("File {s}"), error: false })
            }
            FileUpdate::Done(Err(e)) => self.notify(Notice { text: e, error: true }),
            FileUpdate::Progress(_) => Task::none(),
        }
    }

    pub fn view(&self) -> Element<'_, Message> {
        let screen: Element<'_, Message> =
            if let (Some(d), Some(call)) = (&self.dialog, &self.call) {
                // During a call the settings float over it: the video keeps
                // playing underneath, and clicks stay in the card.
                let card = container(d.view().map(Message::Settings)).max_width(720).style(
                    |theme: &Theme| container::Style {
                        background: Some(Background::Color(theme.palette().background)),
                        border: Border::default().rounded(10),
                        ..container::Style::default()
                    },
                );
                let backdrop = container(card).center(Fill).style(|_: &Theme| container::Style {
                    background: Some(Background::Color(Color::from_rgba(0.0, 0.0, 0.0, 0.6))),
                    ..container::Style::default()
                });
                stack![call.view().map(Message::Call), iced::widget::opaque(backdrop)].into()
            } else if let Some(d) = &self.dialog {
                d.view().map(Message::Settings)
            } else if let Some(call) = &self.call {
                call.view().map(Message::Call)
            } else {
                self.launcher.view().map(Message::Launcher)
            };
        if self.notices.is_empty() {
            return screen;
        }
        let mut list = column![].spacing(6);
        for (_, n) in &self.notices {
            let error = n.error;
            list = list.push(
                container(text(n.text.clone()).size(13)).padding([6, 10]).width(340).style(
                    move |_: &Theme| container::Style {
                        background: Some(Background::Color(if error {
                            Color::from_rgb8(0x8a, 0x22, 0x22)
                        } else {
                            Color::from_rgb8(0x2d, 0x33, 0x3d)
                        })),
                        text_color: Some(Color::WHITE),
                        border: Border::default().rounded(6),
                        ..container::Style::default()
                    },
                ),
            );
        }
        let overlay = container(list).center_x(Fill).padding([40, 12]);
        stack![screen, overlay].into()
    }
}

fn default_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "guest".into())
}

/// Runs a file transfer on the executor and streams its progress and
/// outcome back as messages.
fn transfer<F, Fut>(key: TransferKey, job: F) -> Task<Message>
where
    F: FnOnce(smol::channel::Sender<Progress>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
{
    let (tx, rx) = smol::channel::unbounded::<FileUpdate>();
    let (ptx, prx) = smol::channel::bounded::<Progress>(16);
    let forward = tx.clone();
    smol::spawn(async move {
        while let Ok(p) = prx.recv().await {
            if forward.send(FileUpdate::Progress(p)).await.is_err() {
                break;
            }
        }
    })
    .detach();
    smol::spawn(async move {
        let result = job(ptx).await;
        let _ = tx.send(FileUpdate::Done(result)).await;
    })
    .detach();
    Task::run(rx, move |u| Message::File(key.clone(), u))
}

/// Downloads go to the user's download folder, else home, else here.
fn download_dir() -> std::path::PathBuf {
    directories::UserDirs::new()
        .and_then(|d| {
            d.download_dir().map(|p| p.to_path_buf()).or_else(|| Some(d.home_dir().to_path_buf()))
        })
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}
