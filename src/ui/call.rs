//! The call screen: the video grid (or speaker view, or a presented screen),
//! the control bar, and the side panel (chat, people, files).

use std::collections::{HashMap, HashSet};

use iced::keyboard::{self, Key};
use iced::widget::scrollable::Viewport;
use iced::widget::{
    button, column, container, image, mouse_area, row, scrollable, stack, text, tooltip,
};
use iced::{Background, Border, Color, Element, Fill, Length, Task, Theme};

use super::chat::{self, Chat};
use super::files::{self, Files};
use super::participants;
use crate::client::Event as SessionEvent;
use crate::proto::text::visible;
use crate::proto::{Control, MediaState, Member, PresenceChange, RoomState, Welcome};

/// A decoded picture ready to draw. The handle is built once, when the frame
/// arrives, so drawing never copies pixels.
#[derive(Debug, Clone)]
pub struct Frame {
    pub handle: image::Handle,
    pub width: u32,
    pub height: u32,
}

impl Frame {
    /// `rgba` must hold `width * height * 4` bytes; anything else is refused.
    pub fn from_rgba(width: u32, height: u32, rgba: Vec<u8>) -> Option<Frame> {
        if rgba.len() as u64 != u64::from(width) * u64::from(height) * 4 || width == 0 {
            return None;
        }
        Some(Frame { handle: image::Handle::from_rgba(width, height, rgba), width, height })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Grid,
    Speaker,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Panel {
    Chat,
    People,
    Files,
}

/// Which video layer a tile needs from its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Layer {
    None,
    Thumbnail,
    Full,
}

/// Columns and visible rows of the grid for `n` tiles: 1×1, 2×1, 2×2, 3×2,
/// 3×3, then three columns of rows that scroll, three rows in view.
pub fn grid_shape(n: usize) -> (usize, usize) {
    match n {
        0 | 1 => (1, 1),
        2 => (2, 1),
        3 | 4 => (2, 2),
        5 | 6 => (3, 2),
        _ => (3, 3),
    }
}

/// Grids with more tiles than this show thumbnails.
const FULL_LAYER_MAX_TILES: usize = 4;

pub struct Call {
    pub me: String,
    pub room: String,
    pub host_name: String,
    /// The address we joined.
    pub host_addr: String,
    /// Set while this app runs the host: the address others should use.
    pub hosting: Option<String>,
    pub members: Vec<Member>,
    /// The member running the host, as the host marks it (its own app
    /// registered with the host's key); `None` when not in this room.
    pub host_member: Option<String>,
    pub media: MediaState,
    /// Newest frame per participant (our own preview under our name).
    pub frames: HashMap<String, Frame>,
    pub speaking: HashSet<String>,
    /// The last person heard, shown large in speaker view.
    pub active_speaker: Option<String>,
    pub pinned: Option<String>,
    pub layout: Layout,
    pub panel: Option<Panel>,
    pub chat: Chat,
    pub files: Files,
    /// Set while the link is down and the session rejoins.
    pub reconnecting: Option<String>,
    pub presenter: Option<String>,
    pub screen: Option<Frame>,
    /// Grid rows in view, first..last (exclusive), when the grid scrolls.
    pub rows_in_view: (usize, usize),
    /// Last layers requested, to tell the engine only about changes.
    pub layers: HashMap<String, Layer>,
    pub ended: Option<String>,
    /// The user's choice: full-size video from everyone, whatever the grid.
    pub always_full: bool,
    /// Co-hosts, raised hands, host mutes, lock and recording (issue 17).
    pub room_state: RoomState,
    /// Members removed during this call and not let back yet (from the
    /// host's notices), for the people panel's "Let back".
    pub removed: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Message {
    ToggleMic,
    ToggleCamera,
    ToggleShare,
    Panel(Panel),
    ToggleLayout,
    Pin(String),
    GridScrolled(Viewport),
    Key(keyboard::Event),
    Chat(chat::Message),
    Files(files::Message),
    /// Camera, microphone, speaker and quality, changed during the call.
    OpenSettings,
    Leave,
    /// Our own media state changed outside the screen (an engine started).
    Refresh,
    /// A host control, or raising/lowering our hand.
    Control(Control),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Media(MediaState),
    Chat {
        local: u64,
        to: Option<String>,
        text: String,
    },
    Files(files::Event),
    /// What each sender should send us; only senders whose layer changed.
    Layers(Vec<(String, Layer)>),
    OpenSettings,
    Leave,
    /// Ask the host for a control (the answer comes as a session event).
    Control(Control),
}

/// A line for the notifications area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
}

impl Notice {
    fn info(text: impl Into<String>) -> Notice {
        Notice { text: text.into(), error: false }
    }
}

impl Call {
    pub fn new(welcome: &Welcome, host_addr: String, hosting: Option<String>) -> Call {
        let mut call = Call {
            me: welcome.name.clone(),
            room: welcome.room.clone(),
            host_name: welcome.host_name.clone(),
            host_addr,
            hosting,
            members: Vec::new(),
            host_member: welcome.host_member.clone(),
            media: MediaState::default(),
            frames: HashMap::new(),
            speaking: HashSet::new(),
            active_speaker: None,
            pinned: None,
            layout: Layout::Grid,
            panel: None,
            chat: Chat::new(welcome.name.clone(), &welcome.history),
            files: Files::new(),
            reconnecting: None,
            presenter: None,
            screen: None,
            rows_in_view: (0, 3),
            layers: HashMap::new(),
            ended: None,
            always_full: false,
            room_state: RoomState::default(),
            removed: Vec::new(),
        };
        call.set_members(welcome.members.clone());
        call
    }

    /// Tile order: us first, then the others in the host's (join) order.
    pub fn tiles(&self) -> Vec<&str> {
        let mut names = vec![self.me.as_str()];
        names.extend(self.members.iter().map(|m| m.name.as_str()).filter(|n| *n != self.me));
        names
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    pub fn set_members(&mut self, members: Vec<Member>) {
        self.members = members;
        let names: Vec<String> = self.members.iter().map(|m| m.name.clone()).collect();
        self.frames.retain(|n, _| names.contains(n) || *n == self.me);
        self.speaking.retain(|n| names.contains(n));
        if self.pinned.as_ref().is_some_and(|p| !names.contains(p)) {
            self.pinned = None;
        }
        self.presenter = self.members.iter().find(|m| m.screen).map(|m| m.name.clone());
        if self.presenter.is_none() {
            self.screen = None;
        }
        self.chat.set_members(names.clone());
        self.files.set_members(names.into_iter().filter(|n| *n != self.me).collect());
    }

    /// The newest frame replaces the previous one; older ones are dropped.
    pub fn set_frame(&mut self, name: &str, frame: Frame) {
        self.frames.insert(name.to_string(), frame);
    }

    pub fn clear_frame(&mut self, name: &str) {
        self.frames.remove(name);
    }

    pub fn set_speaking(&mut self, names: impl IntoIterator<Item = String>) {
        self.speaking = names.into_iter().collect();
        if let Some(loudest) = self.speaking.iter().find(|n| **n != self.me) {
            self.active_speaker = Some(loudest.clone());
        }
    }

    /// The participant shown large in speaker view.
    pub fn featured(&self) -> Option<&str> {
        self.pinned
            .as_deref()
            .or(self.active_speaker.as_deref())
            .or_else(|| self.tiles().into_iter().find(|n| *n != self.me))
            .or(Some(self.me.as_str()))
    }

    pub fn effective_layout(&self) -> Layout {
        if self.pinned.is_some() { Layout::Speaker } else { self.layout }
    }

    /// The layer each other participant's video should come in, given the
    /// layout: full for the featured or a small grid, thumbnails in a big
    /// grid or the strip, none when scrolled out of view or camera off.
    pub fn wanted_layers(&self) -> HashMap<String, Layer> {
        let tiles = self.tiles();
        let n = tiles.len();
        let featured = self.featured().map(str::to_string);
        let (cols, _) = grid_shape(n);
        let mut out = HashMap::new();
        for (i, name) in tiles.iter().enumerate() {
            if *name == self.me {
                continue;
            }
            let camera = self.member(name).is_some_and(|m| m.camera);
            let layer = if !camera {
                Layer::None
            } else if self.presenter.is_some() {
                Layer::Thumbnail
            } else if self.effective_layout() == Layout::Speaker {
                if featured.as_deref() == Some(*name) { Layer::Full } else { Layer::Thumbnail }
            } else {
                let row = i / cols;
                let (first, last) = self.rows_in_view;
                if n > 9 && (row < first || row >= last) {
                    Layer::None
                } else if n <= FULL_LAYER_MAX_TILES || self.always_full {
                    Layer::Full
                } else {
                    Layer::Thumbnail
                }
            };
            out.insert(name.to_string(), layer);
        }
        out
    }

    /// Compares with what was last asked for; returns only the changes.
    fn layer_changes(&mut self) -> Option<Event> {
        let wanted = self.wanted_layers();
        let mut changes: Vec<(String, Layer)> = wanted
            .iter()
            .filter(|(n, l)| self.layers.get(*n) != Some(l))
            .map(|(n, l)| (n.clone(), *l))
            .collect();
        if changes.is_empty() {
            return None;
        }
        changes.sort();
        self.layers = wanted;
        Some(Event::Layers(changes))
    }

    /// Applies a session event; returns notices for the user and, when the
    /// visible layout changed, which layers to ask for.
    pub fn on_session(&mut self, event: SessionEvent) -> (Vec<Notice>, Option<Event>) {
        let mut notices = Vec::new();
        match event {
            SessionEvent::Joined { welcome, rejoined } => {
                if rejoined {
                    self.reconnecting = None;
                    notices.push(Notice::info("Reconnected."));
                }
                self.me = welcome.name.clone();
                self.chat.me = welcome.name.clone();
                for m in &welcome.history {
                    self.chat.received(m.clone());
                }
                self.host_member = welcome.host_member.clone();
                self.set_members(welcome.members.clone());
                // The host forgot our subscriptions with the old session.
                self.layers.clear();
            }
            SessionEvent::Members(list) => {
                self.host_member = list.host_member;
                self.set_members(list.members);
            }
            SessionEvent::Presence(p) => {
                let how = match p.change {
                    PresenceChange::Joined => "joined",
                    PresenceChange::Left => "left",
                    PresenceChange::TimedOut => "timed out",
                    PresenceChange::Dropped => "dropped out",
                };
                notices.push(Notice::info(format!("{} {how}", p.name)));
            }
            SessionEvent::Chat(m) => {
                let private = m.to.is_some();
                let from = m.from.clone();
                if self.chat.received(m) && self.panel != Some(Panel::Chat) {
                    let what = if private { "private message" } else { "message" };
                    notices.push(Notice::info(format!("New {what} from {from}")));
                }
                if self.panel == Some(Panel::Chat) {
                    self.chat.unread = 0;
                }
            }
            SessionEvent::ChatResult(r) => self.chat.result(&r),
            SessionEvent::FileOffered(f) => {
                let private = if f.private() { " (private)" } else { "" };
                notices.push(Notice::info(format!("{} shared {}{private}", f.sender, f.name)));
                self.files.offered(files::Offer {
                    id: f.id,
                    name: f.name,
                    size: f.size,
                    from: f.sender,
                    state: files::Transfer::Offered,
                });
            }
            SessionEvent::Disconnected { reason, retrying, .. } => {
                if retrying {
                    self.reconnecting = Some(reason);
                } else {
                    self.ended = Some(reason.clone());
                    notices.push(Notice { text: reason, error: true });
                }
            }
            SessionEvent::Refused(r) => {
                self.ended = Some(r.reason.clone());
                notices.push(Notice { text: r.reason, error: true });
            }
            SessionEvent::Moved { to, host_name } => {
                self.host_addr = to.to_string();
                let text = format!("Two meetings started at once: moving to {host_name}'s at {to}");
                notices.push(Notice::info(text));
            }
            SessionEvent::MediaBlocked(text) => notices.push(Notice { text, error: true }),
            SessionEvent::RoomState(state) => self.room_state = state,
            SessionEvent::ControlResult(r) => {
                if let Some(reason) = r.refused {
                    notices.push(Notice { text: reason, error: true });
                }
            }
            SessionEvent::ControlNotice(n) => {
                notices.push(Notice::info(n.text));
                match &n.control {
                    Control::Remove { name } if !self.removed.contains(name) => {
                        self.removed.push(name.clone())
                    }
                    Control::LetBack { name } => self.removed.retain(|r| r != name),
                    _ => {}
                }
                let me = |name: &str| name == self.me;
                let media = match &n.control {
                    Control::Mute { name, .. } if me(name) && self.media.mic => {
                        self.media.mic = false;
                        true
                    }
                    Control::StopVideo { name } if me(name) && self.media.camera => {
                        self.media.camera = false;
                        let name = self.me.clone();
                        self.clear_frame(&name);
                        true
                    }
                    _ => false,
                };
                if media {
                    self.update_me();
                    return (notices, Some(Event::Media(self.media)));
                }
            }
            SessionEvent::Ended => {
                if self.ended.is_none() {
                    self.ended = Some("The meeting ended.".into());
                }
            }
        }
        (notices, self.layer_changes())
    }

    fn shortcut(&self, event: &keyboard::Event) -> Option<Message> {
        let keyboard::Event::KeyPressed { key, modifiers, .. } = event else {
            return None;
        };
        if !modifiers.command() {
            return None;
        }
        let Key::Character(c) = key.as_ref() else {
            return None;
        };
        let c = c.to_lowercase();
        match (modifiers.shift(), c.as_str()) {
            (false, "d") => Some(Message::ToggleMic),
            (false, "e") => Some(Message::ToggleCamera),
            (true, "s") => Some(Message::ToggleShare),
            (true, "c") => Some(Message::Panel(Panel::Chat)),
            (true, "p") => Some(Message::Panel(Panel::People)),
            (true, "f") => Some(Message::Panel(Panel::Files)),
            (true, "v") => Some(Message::ToggleLayout),
            (true, "h") => Some(Message::Leave),
            (false, ",") => Some(Message::OpenSettings),
            _ => None,
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::ToggleMic => {
                self.media.mic = !self.media.mic;
                self.update_me();
                return (Task::none(), Some(Event::Media(self.media)));
            }
            Message::ToggleCamera => {
                self.media.camera = !self.media.camera;
                if !self.media.camera {
                    let me = self.me.clone();
                    self.clear_frame(&me);
                }
                self.update_me();
                return (Task::none(), Some(Event::Media(self.media)));
            }
            Message::ToggleShare => {
                self.media.screen = !self.media.screen;
                self.update_me();
                return (Task::none(), Some(Event::Media(self.media)));
            }
            Message::Panel(p) => {
                self.panel = if self.panel == Some(p) { None } else { Some(p) };
                if self.panel == Some(Panel::Chat) {
                    self.chat.unread = 0;
                    return (iced::widget::operation::snap_to_end(chat::LOG_ID), None);
                }
            }
            Message::ToggleLayout => {
                self.pinned = None;
                self.layout = match self.layout {
                    Layout::Grid => Layout::Speaker,
                    Layout::Speaker => Layout::Grid,
                };
                return (Task::none(), self.layer_changes());
            }
            Message::Pin(name) => {
                self.pinned = if self.pinned.as_deref() == Some(&name) { None } else { Some(name) };
                return (Task::none(), self.layer_changes());
            }
            Message::GridScrolled(v) => {
                let rows = self.tiles().len().div_ceil(3).max(1);
                let row_h = v.content_bounds().height / rows as f32;
                if row_h > 0.0 {
                    let top = v.absolute_offset().y;
                    let first = (top / row_h).floor() as usize;
                    let last = ((top + v.bounds().height) / row_h).ceil() as usize;
                    self.rows_in_view = (first, last.max(first + 1));
                }
                return (Task::none(), self.layer_changes());
            }
            Message::Key(k) => {
                if let Some(m) = self.shortcut(&k) {
                    return self.update(m);
                }
            }
            Message::Chat(m) => {
                let (task, event) = self.chat.update(m);
                let event = event.map(|chat::Event::Send { local, to, text }| Event::Chat {
                    local,
                    to,
                    text,
                });
                return (task.map(Message::Chat), event);
            }
            Message::Files(m) => {
                let (task, event) = self.files.update(m);
                return (task.map(Message::Files), event.map(Event::Files));
            }
            Message::OpenSettings => return (Task::none(), Some(Event::OpenSettings)),
            Message::Leave => return (Task::none(), Some(Event::Leave)),
            Message::Control(c) => return (Task::none(), Some(Event::Control(c))),
            Message::Refresh => {
                self.update_me();
                return (Task::none(), self.layer_changes());
            }
        }
        (Task::none(), None)
    }

    /// Shows our own state at once rather than after the host's round trip.
    fn update_me(&mut self) {
        let media = self.media;
        if let Some(m) = self.members.iter_mut().find(|m| m.name == self.me) {
            m.mic = media.mic;
            m.camera = media.camera;
            m.screen = media.screen;
        }
    }

    /// Pulls the layer bookkeeping forward (e.g. right after joining).
    pub fn refresh_layers(&mut self) -> Option<Event> {
        self.layer_changes()
    }

    // ---- view ----

    /// Our hand is up (the host's word, from the room state).
    pub fn hand_raised(&self) -> bool {
        self.room_state.hands.iter().any(|h| h.name == self.me)
    }

    fn tile<'a>(&'a self, name: &'a str, compact: bool) -> Element<'a, Message> {
        let member = self.member(name);
        let is_me = name == self.me;
        let camera = if is_me { self.media.camera } else { member.is_some_and(|m| m.camera) };
        let mic = if is_me { self.media.mic } else { member.is_some_and(|m| m.mic) };
        let picture: Element<'a, Message> = match self.frames.get(name).filter(|_| camera) {
            Some(f) => image(f.handle.clone())
                .width(Fill)
                .height(Fill)
                .content_fit(iced::ContentFit::Contain)
                .into(),
            None => container(
                text(initials(name)).size(if compact { 22 } else { 48 }).color(Color::WHITE),
            )
            .center(Fill)
            .into(),
        };
        let mut label = name.to_string();
        if is_me {
            label.push_str(" (You)");
        }
        let hand = self.room_state.hands.iter().position(|h| h.name == name);
        let state = format!(
            "{}{}{}",
            hand.map(|n| format!(" · hand raised ({})", n + 1)).unwrap_or_default(),
            if mic { "" } else { " · muted" },
            if camera { "" } else { " · camera off" }
        );
        let tag = container(row![
            text(label).size(13).color(Color::WHITE),
            text(state).size(13).color(Color::from_rgb8(0xf0, 0x9a, 0x9a)),
        ])
        .padding([2, 6])
        .style(|_| container::Style {
            background: Some(Background::Color(Color::from_rgba(0.0, 0.0, 0.0, 0.6))),
            border: Border::default().rounded(4),
            ..container::Style::default()
        });
        let overlay = container(tag).align_bottom(Fill).align_left(Fill).padding(6);
        let speaking = self.speaking.contains(name);
        let pinned = self.pinned.as_deref() == Some(name);
        let body =
            container(stack![picture, overlay]).width(Fill).height(Fill).style(move |_: &Theme| {
                container::Style {
                    background: Some(Background::Color(Color::from_rgb8(0x24, 0x26, 0x2b))),
                    border: Border {
                        color: if speaking {
                            Color::from_rgb8(0x3d, 0xd6, 0x8c)
                        } else if pinned {
                            Color::from_rgb8(0x5b, 0x8d, 0xef)
                        } else {
                            Color::from_rgb8(0x24, 0x26, 0x2b)
                        },
                        width: 3.0,
                        radius: 8.into(),
                    },
                    ..container::Style::default()
                }
            });
        mouse_area(body).on_press(Message::Pin(name.to_string())).into()
    }

    fn grid(&self) -> Element<'_, Message> {
        let tiles = self.tiles();
        let n = tiles.len();
        let (cols, rows_shown) = grid_shape(n);
        let mut rows = column![].spacing(6);
        for chunk in tiles.chunks(cols) {
            let mut r = row![].spacing(6).height(Fill);
            for name in chunk {
                r = r.push(self.tile(name, false));
            }
            // Keep the last row's tiles the same size as the others.
            for _ in chunk.len()..cols {
                r = r.push(iced::widget::space().width(Fill));
            }
            rows = rows.push(r);
        }
        if n <= 9 {
            return rows.padding(6).into();
        }
        // Beyond nine: three rows in view, the rest scroll.
        let total_rows = n.div_ceil(cols);
        iced::widget::responsive(move |size| {
            let row_h = ((size.height - 12.0) / rows_shown as f32).max(60.0);
            let mut rows = column![].spacing(6).padding(6);
            for chunk in self.tiles().chunks(cols) {
                let mut r = row![].spacing(6).height(Length::Fixed(row_h - 6.0));
                for name in chunk {
                    r = r.push(self.tile(name, false));
                }
                for _ in chunk.len()..cols {
                    r = r.push(iced::widget::space().width(Fill));
                }
                rows = rows.push(r);
            }
            let _ = total_rows;
            scrollable(rows).on_scroll(Message::GridScrolled).height(Fill).into()
        })
        .into()
    }

    fn strip<'a>(&'a self, skip: Option<&'a str>) -> Element<'a, Message> {
        let mut r = row![].spacing(6);
        for name in self.tiles().into_iter().filter(|n| Some(*n) != skip) {
            r = r.push(container(self.tile(name, true)).width(176).height(132));
        }
        scrollable(r)
            .direction(scrollable::Direction::Horizontal(scrollable::Scrollbar::default()))
            .height(Length::Fixed(144.0))
            .into()
    }

    fn stage(&self) -> Element<'_, Message> {
        if let Some(presenter) = &self.presenter {
            let screen: Element<'_, Message> = match &self.screen {
                Some(f) => image(f.handle.clone())
                    .width(Fill)
                    .height(Fill)
                    .content_fit(iced::ContentFit::Contain)
                    .into(),
                None => container(text(format!("{} is presenting…", visible(presenter))).size(24))
                    .center(Fill)
                    .into(),
            };
            return column![
                text(format!("{} is sharing their screen", visible(presenter))).size(14),
                screen,
                self.strip(None)
            ]
            .spacing(6)
            .padding(6)
            .into();
        }
        match self.effective_layout() {
            Layout::Grid => self.grid(),
            Layout::Speaker => {
                let featured = self.featured().unwrap_or(&self.me);
                column![self.tile(featured, false), self.strip(Some(featured))]
                    .spacing(6)
                    .padding(6)
                    .into()
            }
        }
    }

    fn controls(&self) -> Element<'_, Message> {
        fn control<'a>(
            label: String,
            tip: &'a str,
            msg: Message,
            style: fn(&Theme, button::Status) -> button::Style,
        ) -> Element<'a, Message> {
            tooltip(
                button(text(label).size(14)).padding([8, 14]).style(style).on_press(msg),
                container(text(tip).size(12)).padding(6).style(container::rounded_box),
                tooltip::Position::Top,
            )
            .into()
        }
        let on_off = |on: bool| if on { button::primary } else { button::secondary };
        let chat_label = if self.chat.unread > 0 && self.panel != Some(Panel::Chat) {
            format!("Chat ({})", self.chat.unread)
        } else {
            "Chat".to_string()
        };
        let bar = row![
            control(
                if self.media.mic { "Mute" } else { "Unmute" }.into(),
                "Microphone on/off (Ctrl+D)",
                Message::ToggleMic,
                on_off(self.media.mic),
            ),
            control(
                if self.media.camera { "Stop video" } else { "Start video" }.into(),
                "Camera on/off (Ctrl+E)",
                Message::ToggleCamera,
                on_off(self.media.camera),
            ),
            control(
                if self.media.screen { "Stop sharing" } else { "Share screen" }.into(),
                "Share your screen (Ctrl+Shift+S)",
                Message::ToggleShare,
                on_off(self.media.screen),
            ),
            control(
                match self.effective_layout() {
                    Layout::Grid => "Speaker view",
                    Layout::Speaker => "Grid view",
                }
                .into(),
                "Switch between grid and speaker view (Ctrl+Shift+V)",
                Message::ToggleLayout,
                button::secondary,
            ),
            control(
                chat_label,
                "Chat (Ctrl+Shift+C)",
                Message::Panel(Panel::Chat),
                on_off(self.panel == Some(Panel::Chat)),
            ),
            control(
                format!("People ({})", self.members.len()),
                "Participants (Ctrl+Shift+P)",
                Message::Panel(Panel::People),
                on_off(self.panel == Some(Panel::People)),
            ),
            control(
                "Files".into(),
                "Files (Ctrl+Shift+F)",
                Message::Panel(Panel::Files),
                on_off(self.panel == Some(Panel::Files)),
            ),
            control(
                "Settings".into(),
                "Camera, microphone, speaker and video quality (Ctrl+,)",
                Message::OpenSettings,
                button::secondary,
            ),
            control(
                if self.hand_raised() { "Lower hand" } else { "Raise hand" }.into(),
                "Raise or lower your hand; raised hands show in the grid and the people list",
                Message::Control(Control::Hand { raised: !self.hand_raised() }),
                on_off(self.hand_raised()),
            ),
            control(
                "Leave".into(),
                "Leave the meeting (Ctrl+Shift+H)",
                Message::Leave,
                button::danger
            ),
        ]
        .spacing(8);
        container(bar).center_x(Fill).padding(8).into()
    }

    pub fn view(&self) -> Element<'_, Message> {
        let mut header = row![
            text(format!("{} · meeting \"{}\" on {}", self.host_name, self.room, self.host_addr))
                .size(14)
                .width(Fill)
        ]
        .spacing(12);
        if self.room_state.recording {
            header =
                header.push(text("● Recording").size(14).color(Color::from_rgb8(0xf0, 0x5a, 0x5a)));
        }
        if let Some(addr) = &self.hosting {
            header = header
                .push(text(format!("You are hosting · others join: sapora join {addr}")).size(14));
        }
        let mut main = column![container(header).padding([4, 10])];
        if let Some(reason) = &self.reconnecting {
            main = main.push(
                container(text(format!("Reconnecting… ({reason})")).color(Color::BLACK))
                    .padding(6)
                    .center_x(Fill)
                    .style(|_| container::Style {
                        background: Some(Background::Color(Color::from_rgb8(0xf5, 0xc2, 0x42))),
                        ..container::Style::default()
                    }),
            );
        }
        let side: Option<Element<'_, Message>> = self.panel.map(|p| match p {
            Panel::Chat => self.chat.view().map(Message::Chat),
            Panel::Files => self.files.view().map(Message::Files),
            Panel::People => participants::view(
                &self.members,
                &self.me,
                self.host_member.as_deref(),
                &self.room_state,
                &self.removed,
            )
            .map(|participants::Message::Control(c)| Message::Control(c)),
        });
        let mut center = row![container(self.stage()).width(Fill).height(Fill)];
        if let Some(side) = side {
            center = center.push(container(side).width(320).height(Fill).padding(8));
        }
        main = main.push(center.height(Fill)).push(self.controls());
        container(main)
            .width(Fill)
            .height(Fill)
            .style(|_| container::Style {
                background: Some(Background::Color(Color::from_rgb8(0x18, 0x19, 0x1c))),
                text_color: Some(Color::from_rgb8(0xe8, 0xe8, 0xe8)),
                ..container::Style::default()
            })
            .into()
    }
}

fn initials(name: &str) -> String {
    name.split(|c: char| c.is_whitespace() || c == '_' || c == '-' || c == '.')
        .filter_map(|w| w.chars().next())
        .take(2)
        .flat_map(char::to_uppercase)
        .collect()
}
