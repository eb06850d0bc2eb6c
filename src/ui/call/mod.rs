//! The call screen: the video grid (or speaker view, or a presented screen),
//! the control bar, and the side panel (chat, people, files). State and
//! updates here, drawing in `view`.

mod view;

use std::collections::{HashMap, HashSet};

use iced::Task;
use iced::keyboard::{self, Key};
use iced::widget::image;
use iced::widget::scrollable::Viewport;

use super::chat::{self, Chat};
use super::files::{self, Files};
pub use super::notice::Notice;
use super::participants;
use crate::client::Event as SessionEvent;
use crate::proto::{Control, MediaState, Member, PresenceChange, RoomState, Subscription, Welcome};

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
    /// A [`bytes::Bytes`] is kept as it is (shared, not copied).
    pub fn from_rgba(width: u32, height: u32, rgba: impl Into<bytes::Bytes>) -> Option<Frame> {
        let rgba = rgba.into();
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

/// How the header and the people panel name a transport.
fn transport_name(kind: crate::transport::link::TransportKind) -> &'static str {
    match kind {
        crate::transport::link::TransportKind::Quic => "QUIC",
        crate::transport::link::TransportKind::Tls => "TLS over TCP",
    }
}

/// Grids with more tiles than this show thumbnails.
const FULL_LAYER_MAX_TILES: usize = 4;

pub struct Call {
    /// The session's current link (a rejoin replaces it): the participants
    /// panel shows its transport and verification code.
    pub link: Option<std::sync::Arc<std::sync::Mutex<crate::transport::link::Link>>>,
    pub me: String,
    pub room: String,
    pub host_name: String,
    /// The address we joined.
    pub host_addr: String,
    /// Set while this app runs the host: the address others should use.
    pub hosting: Option<String>,
    /// Set while this app runs the host: the browser guests' page
    /// (`https://ADDR:PORT/`) and its QR code, shown in the people panel.
    pub guests: Option<(String, iced::widget::qr_code::Data)>,
    /// Set while this app runs the host of this meeting: each member's
    /// link's verification code, shown per member in the people panel.
    pub member_codes: Option<crate::server::control::MemberCodes>,
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
    pub layers: HashMap<String, Subscription>,
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
    Layers(Vec<(String, Subscription)>),
    OpenSettings,
    Leave,
    /// Ask the host for a control (the answer comes as a session event).
    Control(Control),
}

impl Call {
    /// "Encrypted (QUIC) · verification code 123 456": compare the code
    /// with the host's; equal codes mean nobody relays the connection.
    pub fn security(&self) -> Option<String> {
        let link = self.link.as_ref()?.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let how = transport_name(link.kind());
        Some(format!("Encrypted ({how}) · verification code {}", link.verification_code()))
    }

    /// The transport in use, for the header: "QUIC" or "TLS over TCP".
    pub fn transport(&self) -> Option<&'static str> {
        let link = self.link.as_ref()?.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some(transport_name(link.kind()))
    }

    /// Shows the guests' page address(es) as `text` and `qr_url` as a QR
    /// code (while hosting).
    pub fn set_guest_url(&mut self, text: &str, qr_url: &str) {
        self.guests =
            iced::widget::qr_code::Data::new(qr_url).ok().map(|qr| (text.to_string(), qr));
    }

    pub fn new(welcome: &Welcome, host_addr: String, hosting: Option<String>) -> Call {
        let mut call = Call {
            link: None,
            me: welcome.name.clone(),
            room: welcome.room.clone(),
            host_name: welcome.host_name.clone(),
            host_addr,
            hosting,
            guests: None,
            member_codes: None,
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
    pub fn wanted_layers(&self) -> HashMap<String, Subscription> {
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
                Subscription::None
            } else if self.presenter.is_some() {
                Subscription::Thumb
            } else if self.effective_layout() == Layout::Speaker {
                if featured.as_deref() == Some(*name) {
                    Subscription::Full
                } else {
                    Subscription::Thumb
                }
            } else {
                let row = i / cols;
                let (first, last) = self.rows_in_view;
                if n > 9 && (row < first || row >= last) {
                    Subscription::None
                } else if n <= FULL_LAYER_MAX_TILES || self.always_full {
                    Subscription::Full
                } else {
                    Subscription::Thumb
                }
            };
            out.insert(name.to_string(), layer);
        }
        out
    }

    /// Compares with what was last asked for; returns only the changes.
    fn layer_changes(&mut self) -> Option<Event> {
        let wanted = self.wanted_layers();
        let mut changes: Vec<(String, Subscription)> = wanted
            .iter()
            .filter(|(n, l)| self.layers.get(*n) != Some(l))
            .map(|(n, l)| (n.clone(), *l))
            .collect();
        if changes.is_empty() {
            return None;
        }
        changes.sort_by(|a, b| a.0.cmp(&b.0));
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

    /// Our hand is up (the host's word, from the room state).
    pub fn hand_raised(&self) -> bool {
        self.room_state.hands.iter().any(|h| h.name == self.me)
    }
}
