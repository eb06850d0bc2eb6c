//! Joining, hosting and leaving: resolving an address, starting the
//! in-process host, connecting, adopting a connected session into the call
//! screen, following a handover to another host, and closing the window
//! without hanging on the way out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use iced::Task;
use smol::channel::Receiver;

use super::call::{Call, Notice};
use super::settings::Settings;
use super::{App, Handoff, Message, Session, launcher, media, share_address, trust};
use crate::client::{Client, ClientConfig, Event as SessionEvent};
use crate::server::{self, RunningHost};
use crate::transport::pake::Passcode;

/// How long closing the window waits for the goodbye and the host's stop.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

impl App {
    /// `sapora` with no arguments, after [`super::SEARCH_TIME`]: offer a
    /// host found, otherwise host.
    pub(super) fn on_search_done(&mut self) -> Task<Message> {
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
                let t = self.notify(Notice::info("No meeting found on your network: hosting one."));
                Task::batch([t, self.start_host(name, String::new())])
            }
        }
    }

    /// Resolving, starting the host or connecting failed: back to the
    /// launcher with the reason; a changed host certificate opens the
    /// certificate dialog.
    pub(super) fn join_failed(&mut self, failure: trust::JoinFailure) -> Task<Message> {
        self.launcher.status = launcher::Status::Idle;
        let retry = self.attempt.take();
        if let (Some(change), Some(retry)) = (failure.changed, retry) {
            self.launcher.error =
                Some(format!("The certificate of {} has changed: not connected.", change.host));
            self.cert_dialog = Some(trust::CertDialog { change: *change, retry });
            return Task::none();
        }
        self.launcher.error = Some(failure.text.clone());
        self.notify(Notice::error(failure.text))
    }

    /// The certificate dialog's answer: close it, or forget the pin and
    /// join again (which pins the presented certificate).
    pub(super) fn on_cert_dialog(&mut self, m: trust::DialogMessage) -> Task<Message> {
        let Some(dialog) = self.cert_dialog.as_ref() else { return Task::none() };
        match m {
            trust::DialogMessage::Cancel => {
                self.cert_dialog = None;
                Task::none()
            }
            trust::DialogMessage::TrustNew => {
                let host = dialog.change.host.clone();
                self.launcher.status = launcher::Status::Connecting(dialog.retry.addr.to_string());
                Task::perform(smol::unblock(move || trust::forget_pin(&host)), |r| {
                    Message::PinForgotten(r)
                })
            }
        }
    }

    pub(super) fn on_pin_forgotten(&mut self, result: Result<(), String>) -> Task<Message> {
        let Some(dialog) = self.cert_dialog.take() else { return Task::none() };
        match result {
            Ok(()) => {
                let r = dialog.retry;
                self.connect_with(r.addr, r.name, r.room, r.host_key, r.passcode)
            }
            Err(e) => self.join_failed(trust::JoinFailure::plain(format!(
                "Cannot forget the old certificate: {e}"
            ))),
        }
    }

    pub(super) fn on_host_started(
        &mut self,
        host: Handoff<RunningHost>,
        name: String,
        room: String,
    ) -> Task<Message> {
        let Some(host) = host.take() else { return Task::none() };
        if let Some((room, passcode)) = self.host_passcode.take() {
            host.room_passcodes().set(&room, Some(passcode));
        }
        self.guest_urls = trust::guest_urls(self.options.host.bind, host.ports.control);
        self.launcher.guests = Some(self.guest_urls.join(" or "));
        let share = share_address(self.options.host.bind, host.ports.control);
        self.share = Some(share.clone());
        self.launcher.hosting = Some(share);
        let key = host.host_key;
        self.host = Some(host);
        let addr = self.host_control_addr();
        self.connect(addr, name, room, Some(key))
    }

    pub(super) fn on_connected(
        &mut self,
        id: u64,
        result: Result<Handoff<Client>, trust::JoinFailure>,
    ) -> Task<Message> {
        if self.connecting != Some(id) {
            return Task::none();
        }
        self.connecting = None;
        match result.map(|h| h.take()) {
            Ok(Some(client)) => self.adopt(client),
            Ok(None) => Task::none(),
            Err(e) => self.join_failed(e),
        }
    }

    /// An event of the current session (older sessions' are dropped).
    pub(super) fn on_session(&mut self, id: u64, event: SessionEvent) -> Task<Message> {
        if !self.current(id) {
            return Task::none();
        }
        let moved = match &event {
            SessionEvent::Moved { to, .. } => Some(self.follow_handover(id, *to)),
            _ => None,
        };
        let Some(call) = &mut self.call else { return Task::none() };
        let (notices, layers) = call.on_session(event);
        let ended = call.ended.clone();
        let mut tasks: Vec<Task<Message>> = notices.into_iter().map(|n| self.notify(n)).collect();
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

    /// The window's close button: say goodbye and stop the host, but never
    /// hang on the way out (a second close, or [`CLOSE_TIMEOUT`], exits).
    pub(super) fn on_close_requested(&mut self) -> Task<Message> {
        if self.quitting {
            return iced::exit();
        }
        self.quitting = true;
        let bye = match self.session.take() {
            Some(s) => Task::perform(s.client.leave(), |_| Message::Left),
            None => self.stop_host(),
        };
        let cap = Task::perform(smol::Timer::after(CLOSE_TIMEOUT), |_| Message::HostStopped);
        Task::batch([bye, cap])
    }

    pub(super) fn on_left(&mut self) -> Task<Message> {
        if self.quitting { self.stop_host() } else { Task::none() }
    }

    pub(super) fn on_host_stopped(&mut self) -> Task<Message> {
        if self.quitting { iced::exit() } else { Task::none() }
    }

    pub(super) fn resolve(&mut self, address: String, name: String, room: String) -> Task<Message> {
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
    pub(super) fn connect(
        &mut self,
        addr: SocketAddr,
        name: String,
        room: String,
        host_key: Option<crate::proto::HostKey>,
    ) -> Task<Message> {
        // Our own host: the meeting's own passcode, else the host-wide
        // one. Another host: the one typed in the launcher, else the one
        // given on the command line.
        let passcode = match host_key {
            Some(_) => self
                .host
                .as_ref()
                .and_then(|h| h.room_passcodes().get(&room))
                .or_else(|| self.options.host.passcode.clone()),
            None => self.join_passcode.clone().or_else(|| self.options.passcode.clone()),
        };
        self.connect_with(addr, name, room, host_key, passcode)
    }

    /// [`App::connect`] with the passcode chosen.
    pub(super) fn connect_with(
        &mut self,
        addr: SocketAddr,
        name: String,
        room: String,
        host_key: Option<crate::proto::HostKey>,
        passcode: Option<Passcode>,
    ) -> Task<Message> {
        let id = self.next_id();
        self.connecting = Some(id);
        self.joined_addr = addr.to_string();
        self.attempt = Some(trust::Retry {
            addr,
            name: name.clone(),
            room: room.clone(),
            host_key,
            passcode: passcode.clone(),
        });
        let mut config = ClientConfig::new(addr, name, room);
        let gave_passcode = passcode.is_some();
        config.passcode = passcode;
        config.host_key = host_key;
        // A host found by discovery: its beacon's fingerprint is expected
        // (unless a pin says otherwise), over QUIC and the TLS fallback.
        config.beacon_fingerprint = match host_key {
            Some(_) => None,
            None => self.launcher.hosts.iter().find(|h| h.addr == addr).and_then(|h| h.fingerprint),
        };
        // The app always runs media engines: tell the user if none arrives.
        config.media = true;
        Task::perform(Client::connect(config), move |r| {
            let r = r.map(Handoff::new);
            Message::Connected(
                id,
                r.map_err(|e| trust::JoinFailure::from_client(&e, gave_passcode)),
            )
        })
    }

    pub(super) fn start_host(&mut self, name: String, room: String) -> Task<Message> {
        if let Some(key) = self.host.as_ref().map(|h| h.host_key) {
            if let (Some(h), Some((room, passcode))) = (&self.host, self.host_passcode.take()) {
                h.room_passcodes().set(&room, Some(passcode));
            }
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

    /// Our in-process host's key when `addr` is that host (typed into the
    /// launcher as loopback, the bound address or one of this machine's), so
    /// joining it by address still marks us as the host.
    pub(super) fn own_host_key(&self, addr: SocketAddr) -> Option<crate::proto::HostKey> {
        let h = self.host.as_ref()?;
        let ip = addr.ip();
        let ours = ip.is_loopback()
            || ip == h.control_addr.ip()
            || (h.control_addr.ip().is_unspecified()
                && if_addrs::get_if_addrs().is_ok_and(|ifs| ifs.iter().any(|i| i.ip() == ip)));
        (addr.port() == h.control_addr.port() && ours).then_some(h.host_key)
    }

    /// Where we connect to our own host (loopback when it binds every address).
    pub(super) fn host_control_addr(&self) -> SocketAddr {
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

    pub(super) fn end_call(&mut self) -> Task<Message> {
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

    pub(super) fn remember_name(&mut self, name: &str) {
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
    pub(super) fn follow_handover(&mut self, id: u64, to: SocketAddr) -> Task<Message> {
        self.joined_addr = to.to_string();
        // Our host forwards late arrivals for a few seconds, then stops.
        let stop = match self.host.take() {
            Some(h) => {
                self.share = None;
                self.guest_urls.clear();
                self.launcher.guests = None;
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

    pub(super) fn stop_host(&mut self) -> Task<Message> {
        self.share = None;
        self.guest_urls.clear();
        self.launcher.guests = None;
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
        // The guests' page is ours to show only in a meeting on our host.
        let hosting_here = self.host.as_ref().is_some_and(|h| {
            self.joined_addr.parse::<SocketAddr>().is_ok_and(|a| a.port() == h.control_addr.port())
        });
        let mut call = Call::new(&welcome, self.joined_addr.clone(), hosting);
        call.always_full = self.settings.always_full;
        call.link = Some(client.link_slot());
        if hosting_here && let Some(first) = self.guest_urls.first() {
            call.set_guest_url(&self.guest_urls.join(" or "), first);
        }
        if hosting_here {
            call.member_codes = self.host.as_ref().map(|h| h.member_codes().clone());
        }
        // The session reports the first Joined too; the call starts from the
        // welcome, so that one is skipped.
        let _ = events.try_recv();
        let layers = call.refresh_layers();
        self.call = Some(call);
        self.session = Some(Session { id, client, events });
        self.launcher.status = launcher::Status::Idle;
        self.launcher.error = None;
        self.launcher.offer = None;
        self.attempt = None;
        let layers = layers.map(|e| self.call_event(e)).unwrap_or_else(Task::none);
        let host = self
            .joined_addr
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let route = media::Route {
            welcome: self.session.as_ref().expect("just set").client.current_slot(),
            link: self.session.as_ref().expect("just set").client.link_slot(),
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
}
