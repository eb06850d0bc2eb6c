//! The first screen: hosts found on the LAN, the join form, Host, and the
//! scheduler.

use iced::widget::{button, column, container, row, scrollable, text, text_input};
use iced::{Center, Element, Fill, Task};

use super::scheduler::{self, Scheduler};
use crate::client::discover::DiscoveredHost;
use crate::proto::text::visible;
use crate::transport::pake::Passcode;

/// What the launcher is doing besides waiting for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Idle,
    /// `sapora` with no arguments: looking for a host before deciding.
    Searching,
    Connecting(String),
    StartingHost,
}

pub struct Launcher {
    pub hosts: Vec<DiscoveredHost>,
    pub address: String,
    pub name: String,
    pub meeting: String,
    /// The meeting's passcode: given when joining, and set on the meeting
    /// when hosting (blank = none).
    pub passcode: String,
    pub status: Status,
    /// The address others should use, while this app hosts a meeting.
    pub hosting: Option<String>,
    /// The browser guests' page, while this app hosts.
    pub guests: Option<String>,
    /// The host found by the one-second look at start, offered in one click.
    pub offer: Option<DiscoveredHost>,
    pub error: Option<String>,
    pub scheduler: Scheduler,
    pub show_scheduler: bool,
}

#[derive(Debug, Clone)]
pub enum Message {
    Hosts(Vec<DiscoveredHost>),
    Pick(usize),
    Address(String),
    Name(String),
    Meeting(String),
    Passcode(String),
    Join,
    JoinOffer,
    Host,
    StopHosting,
    ToggleScheduler,
    Settings,
    Scheduler(scheduler::Message),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `address` as typed: ip, ip:port or a name; the parent resolves it.
    Join {
        address: String,
        name: String,
        room: String,
        /// Checked (`Passcode::new`); `None` when the field is blank.
        passcode: Option<Passcode>,
    },
    Host {
        name: String,
        room: String,
        /// The hosted meeting's own passcode; `None` when the field is blank.
        passcode: Option<Passcode>,
    },
    StopHosting,
    OpenSettings,
}

impl Launcher {
    pub fn new(name: String, scheduler: Scheduler) -> Launcher {
        Launcher {
            hosts: Vec::new(),
            address: String::new(),
            name,
            meeting: String::new(),
            passcode: String::new(),
            status: Status::Idle,
            hosting: None,
            guests: None,
            offer: None,
            error: None,
            scheduler,
            show_scheduler: false,
        }
    }

    /// Fills the form from a discovered host: its address, and its busiest
    /// meeting unless one was typed.
    pub fn fill_from(&mut self, h: &DiscoveredHost) {
        self.address = h.addr.to_string();
        if self.meeting.trim().is_empty()
            && let Some(r) = h.rooms.iter().max_by_key(|r| r.members)
            && r.name != "default"
        {
            self.meeting = r.name.clone();
        }
    }

    fn join_event(&mut self, address: String) -> Option<Event> {
        if address.trim().is_empty() {
            self.error = Some(
                "Enter the host's address (e.g. 192.168.1.20), or pick a host from the list."
                    .into(),
            );
            return None;
        }
        if self.name.trim().is_empty() {
            self.error = Some("Enter your name.".into());
            return None;
        }
        let passcode = self.checked_passcode()?;
        self.error = None;
        self.status = Status::Connecting(address.trim().to_string());
        Some(Event::Join {
            address: address.trim().to_string(),
            name: self.name.trim().to_string(),
            room: self.meeting.trim().to_string(),
            passcode,
        })
    }

    /// The passcode field: `Some(None)` when blank, `Some(Some(p))` when
    /// valid, `None` (and [`Launcher::error`] says why) when not.
    fn checked_passcode(&mut self) -> Option<Option<Passcode>> {
        if self.passcode.trim().is_empty() {
            return Some(None);
        }
        match Passcode::new(&self.passcode) {
            Ok(p) => Some(Some(p)),
            Err(e) => {
                self.error = Some(format!("Passcode: {e}"));
                None
            }
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        let event = match message {
            Message::Hosts(hosts) => {
                self.hosts = hosts;
                None
            }
            Message::Pick(i) => {
                if let Some(h) = self.hosts.get(i).cloned() {
                    self.fill_from(&h);
                }
                None
            }
            Message::Address(v) => {
                self.address = v;
                None
            }
            Message::Name(v) => {
                self.name = v;
                None
            }
            Message::Meeting(v) => {
                self.meeting = v;
                None
            }
            Message::Passcode(v) => {
                self.passcode = v;
                None
            }
            Message::Join => self.join_event(self.address.clone()),
            Message::JoinOffer => match self.offer.clone() {
                Some(h) => {
                    self.fill_from(&h);
                    self.join_event(self.address.clone())
                }
                None => None,
            },
            Message::Host => {
                if self.name.trim().is_empty() {
                    self.error = Some("Enter your name.".into());
                    None
                } else if let Some(passcode) = self.checked_passcode() {
                    self.error = None;
                    self.status = Status::StartingHost;
                    Some(Event::Host {
                        name: self.name.trim().to_string(),
                        room: self.meeting.trim().to_string(),
                        passcode,
                    })
                } else {
                    None
                }
            }
            Message::StopHosting => Some(Event::StopHosting),
            Message::ToggleScheduler => {
                self.show_scheduler = !self.show_scheduler;
                if self.show_scheduler {
                    return (Task::done(scheduler::Message::Refresh).map(Message::Scheduler), None);
                }
                None
            }
            Message::Settings => Some(Event::OpenSettings),
            Message::Scheduler(m) => {
                let (task, event) = self.scheduler.update(m);
                let task = task.map(Message::Scheduler);
                return match event {
                    Some(scheduler::Event::Join { room, host }) => {
                        self.meeting = room;
                        let address = host.unwrap_or_else(|| self.address.clone());
                        self.address = address.clone();
                        self.show_scheduler = false;
                        (task, self.join_event(address))
                    }
                    None => (task, None),
                };
            }
        };
        (Task::none(), event)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let busy = matches!(self.status, Status::Connecting(_) | Status::StartingHost);
        let mut hosts = column![].spacing(4);
        if self.hosts.is_empty() {
            hosts = hosts.push(text("No hosts found yet: still looking…").size(14));
        }
        for (i, h) in self.hosts.iter().enumerate() {
            let rooms = if h.rooms.is_empty() {
                "no meetings yet".to_string()
            } else {
                h.rooms
                    .iter()
                    .map(|r| {
                        format!(
                            "{} ({} {})",
                            visible(&r.name),
                            r.members,
                            if r.members == 1 { "person" } else { "people" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let compat = if h.is_compatible() { "" } else { " · incompatible version" };
            let lock = if h.passcode { " · needs a passcode" } else { "" };
            let entry = column![
                text(format!("{} — {}", visible(&h.host_name), h.addr)).size(15),
                text(h.label()).size(13),
                text(format!("{rooms}{compat}{lock}")).size(12),
            ];
            hosts = hosts.push(
                button(entry).width(Fill).style(button::secondary).on_press(Message::Pick(i)),
            );
        }

        let mut top = column![text("Sapora").size(30)].spacing(10);
        match &self.status {
            Status::Searching => top = top.push(text("Looking for a meeting on your network…")),
            Status::Connecting(a) => top = top.push(text(format!("Connecting to {a}…"))),
            Status::StartingHost => top = top.push(text("Starting a meeting on this computer…")),
            Status::Idle => {}
        }
        if let Some(h) = &self.offer {
            top = top.push(
                button(text(format!("Join \"{}\" at {}", visible(&h.host_name), h.addr)).size(18))
                    .padding(12)
                    .style(button::success)
                    .on_press_maybe((!busy).then_some(Message::JoinOffer)),
            );
        }
        if let Some(url) = &self.guests {
            top = top.push(text(format!("Phones and browsers join at {url}")).size(14));
        }
        if let Some(addr) = &self.hosting {
            top = top.push(
                row![
                    text(format!("You are hosting. Others join with: sapora join {addr}"))
                        .size(15)
                        .width(Fill),
                    button(text("Stop hosting").size(13))
                        .style(button::danger)
                        .on_press(Message::StopHosting),
                ]
                .spacing(8)
                .align_y(Center),
            );
        }

        let form = column![
            text("Join a meeting").size(20),
            text_input("host address, e.g. 192.168.1.20", &self.address)
                .on_input(Message::Address)
                .on_submit(Message::Join)
                .padding(8),
            text_input("your name", &self.name)
                .on_input(Message::Name)
                .on_submit(Message::Join)
                .padding(8),
            text_input("meeting id (blank = default)", &self.meeting)
                .on_input(Message::Meeting)
                .on_submit(Message::Join)
                .padding(8),
            text_input("passcode (blank = none; Host sets it for the meeting)", &self.passcode)
                .on_input(Message::Passcode)
                .on_submit(Message::Join)
                .secure(true)
                .padding(8),
            row![
                button(text("Join").size(16))
                    .padding([8, 20])
                    .on_press_maybe((!busy).then_some(Message::Join)),
                button(text("Host").size(16))
                    .padding([8, 20])
                    .style(button::success)
                    .on_press_maybe((!busy && self.hosting.is_none()).then_some(Message::Host)),
                button(text("Schedule…").size(16))
                    .padding([8, 20])
                    .style(button::secondary)
                    .on_press(Message::ToggleScheduler),
                button(text("Settings…").size(16))
                    .padding([8, 20])
                    .style(button::secondary)
                    .on_press(Message::Settings),
            ]
            .spacing(8),
        ]
        .spacing(8)
        .width(Fill);

        let found = column![text("On your network").size(20), scrollable(hosts).height(Fill)]
            .spacing(8)
            .width(Fill);

        let mut body =
            column![top, row![form, found].spacing(24).height(iced::Length::Fixed(300.0))]
                .spacing(16)
                .padding(24);
        if let Some(e) = &self.error {
            body = body.push(text(e.clone()).style(text::danger));
        }
        if self.show_scheduler {
            body = body.push(
                container(self.scheduler.view().map(Message::Scheduler))
                    .padding(12)
                    .style(container::rounded_box),
            );
        }
        scrollable(body).height(Fill).into()
    }
}
