//! The app's state, its messages, and the dispatch between the screens
//! (launcher, settings, call) and the work the other modules do.

use std::net::SocketAddr;
use std::time::Instant;

use iced::widget::{container, stack};
use iced::{Background, Border, Color, Element, Fill, Task, Theme, keyboard, window};
use smol::channel::Receiver;

use super::call::{self, Call, Notice};
use super::launcher::{self, Launcher};
use super::settings::{self, Settings};
use super::transfers::{FileUpdate, TransferKey};
use super::{Handoff, Launch, Options, SEARCH_TIME, media, picker, scheduler, trust};
use crate::client::audio::{AudioEngine, AudioEvent};
use crate::client::discover::DiscoveredHost;
use crate::client::screen::{Presenter, Viewer};
use crate::client::video::VideoEngine;
use crate::client::{Client, Event as SessionEvent};
use crate::schedule::Store;
use crate::server::RunningHost;

/// The session the app holds, under the id its messages carry.
pub(super) struct Session {
    pub(super) id: u64,
    pub(super) client: Client,
    pub(super) events: Receiver<SessionEvent>,
}

#[derive(Debug, Clone)]
pub enum Message {
    Launcher(launcher::Message),
    Call(call::Message),
    Settings(settings::Message),
    Discovered(Vec<DiscoveredHost>),
    SearchDone,
    Resolved(Result<SocketAddr, String>, String, String),
    Connected(u64, Result<Handoff<Client>, trust::JoinFailure>),
    /// The certificate-changed dialog's answer.
    CertDialog(trust::DialogMessage),
    /// The changed host's pin is forgotten (or could not be).
    PinForgotten(Result<(), String>),
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
    pub(super) options: Options,
    pub settings: Settings,
    pub dialog: Option<settings::Dialog>,
    pub launcher: Launcher,
    pub call: Option<Call>,
    pub(super) session: Option<Session>,
    pub(super) media: media::Media,
    pub(super) route: Option<media::Route>,
    pub(super) host: Option<RunningHost>,
    /// The address others use, while we host.
    pub share: Option<String>,
    pub notices: Vec<(u64, Notice)>,
    pub(super) next_id: u64,
    /// The connect attempt whose answer we wait for; older ones are dropped.
    pub(super) connecting: Option<u64>,
    pub(super) joined_addr: String,
    /// What the connect in flight was (to join again after trusting a new
    /// certificate).
    pub(super) attempt: Option<trust::Retry>,
    /// The passcode typed in the launcher for the next join of another host.
    pub(super) join_passcode: Option<crate::transport::pake::Passcode>,
    /// The passcode to set on the meeting this app hosts next.
    pub(super) host_passcode: Option<(String, crate::transport::pake::Passcode)>,
    /// Open while a join failed because the host's certificate changed.
    pub cert_dialog: Option<trust::CertDialog>,
    /// The guests' web page (`https://ADDR:PORT/`, one per LAN address)
    /// while we host; the call shows the first as a QR code for phones.
    pub guest_urls: Vec<String>,
    pub(super) quitting: bool,
    /// When the user asked to join, until the first remote frame is shown.
    pub(super) join_clicked: Option<Instant>,
    /// Join → first remote frame shown, for the benchmark and tests.
    pub first_frame_ms: Option<f64>,
    /// Frames shown since `shown_since`, logged every 10 s (benchmarks).
    pub(super) shown: u64,
    pub(super) shown_since: Option<Instant>,
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
            attempt: None,
            join_passcode: None,
            host_passcode: None,
            cert_dialog: None,
            guest_urls: Vec::new(),
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

    pub(super) fn title(&self) -> String {
        match &self.call {
            Some(c) => format!("Sapora — {} ({})", c.room, c.me),
            None => "Sapora".to_string(),
        }
    }

    pub(super) fn theme(&self) -> Theme {
        Theme::Dark
    }

    pub(super) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        match message {
            Message::Launcher(m) => self.on_launcher(m),
            Message::Settings(m) => self.on_settings(m),
            Message::Discovered(hosts) => {
                self.launcher.update(launcher::Message::Hosts(hosts)).0.map(Message::Launcher)
            }
            Message::SearchDone => self.on_search_done(),
            Message::Resolved(Ok(addr), name, room) => {
                let key = self.own_host_key(addr);
                self.connect(addr, name, room, key)
            }
            Message::Resolved(Err(e), ..) | Message::HostStarted(Err(e), ..) => {
                self.join_failed(trust::JoinFailure::plain(e))
            }
            Message::CertDialog(m) => self.on_cert_dialog(m),
            Message::PinForgotten(result) => self.on_pin_forgotten(result),
            Message::HostStarted(Ok(h), name, room) => self.on_host_started(h, name, room),
            Message::Connected(id, result) => self.on_connected(id, result),
            Message::Session(id, event) => self.on_session(id, event),
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
            Message::Audio(id, event) => self.on_audio(id, event),
            Message::Frames(id, errors) => self.on_frames(id, errors),
            Message::VideoStarted(id, result) => self.on_video_started(id, result),
            Message::AudioStarted(id, result) => self.on_audio_started(id, result),
            Message::ViewerStarted(id, result) => self.on_viewer_started(id, result),
            Message::PresenterStarted(id, result) => self.on_presenter_started(id, result),
            Message::File(key, update) => self.file_update(key, update),
            Message::Left => self.on_left(),
            Message::HostStopped => self.on_host_stopped(),
            Message::Expire(id) => self.expire(id),
            Message::CloseRequested(_) => self.on_close_requested(),
        }
    }

    fn on_launcher(&mut self, m: launcher::Message) -> Task<Message> {
        let (task, event) = self.launcher.update(m);
        let task = task.map(Message::Launcher);
        let more = match event {
            Some(launcher::Event::Join { address, name, room, passcode }) => {
                self.remember_name(&name);
                self.join_passcode = passcode;
                self.resolve(address, name, room)
            }
            Some(launcher::Event::Host { name, room, passcode }) => {
                self.remember_name(&name);
                self.host_passcode = passcode.map(|p| (room.clone(), p));
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

    fn on_settings(&mut self, m: settings::Message) -> Task<Message> {
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

    /// Carries out what the call screen asked for.
    pub(super) fn call_event(&mut self, event: call::Event) -> Task<Message> {
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
            } else if let Some(d) = &self.cert_dialog {
                let under = match &self.call {
                    Some(call) => call.view().map(Message::Call),
                    None => self.launcher.view().map(Message::Launcher),
                };
                let dialog = iced::widget::opaque(d.view().map(Message::CertDialog));
                stack![under, dialog].into()
            } else if let Some(d) = &self.dialog {
                d.view().map(Message::Settings)
            } else if let Some(call) = &self.call {
                call.view().map(Message::Call)
            } else {
                self.launcher.view().map(Message::Launcher)
            };
        self.with_notices(screen)
    }
}

/// `$USER` (or `%USERNAME%`), else "guest".
fn default_name() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "guest".into())
}
