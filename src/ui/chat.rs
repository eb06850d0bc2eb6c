//! The chat panel: room and private messages, delivery state, history.

use iced::widget::{button, column, container, pick_list, row, scrollable, text, text_input};
use iced::{Element, Fill, Task};

use crate::proto::text::{visible, visible_lines};

use crate::proto::{ChatMessage, ChatOutcome, ChatResult};

/// The scrollable's id, so new messages can scroll it to the end.
pub const LOG_ID: &str = "chat-log";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    Everyone,
    Member(String),
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recipient::Everyone => f.write_str("Everyone"),
            Recipient::Member(n) => f.write_str(n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Ours, not yet confirmed; holds the session's chat id once sent.
    Sending(Option<u32>),
    Delivered,
    Failed(String),
    /// Someone else's.
    Received,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The host's message id, once known (dedups history against live).
    pub msg_id: Option<u64>,
    pub local: u64,
    pub from: String,
    /// `Some(name)` for a private message.
    pub to: Option<String>,
    pub text: String,
    pub ts_ms: Option<u64>,
    pub delivery: Delivery,
}

impl Entry {
    pub fn is_private(&self) -> bool {
        self.to.is_some()
    }
}

pub struct Chat {
    pub me: String,
    pub entries: Vec<Entry>,
    pub draft: String,
    pub to: Recipient,
    pub members: Vec<String>,
    /// Messages that arrived while the panel was closed.
    pub unread: usize,
    next_local: u64,
}

#[derive(Debug, Clone)]
pub enum Message {
    Draft(String),
    To(Recipient),
    Send,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Send this; report the session's id back with [`Chat::sent`].
    Send { local: u64, to: Option<String>, text: String },
}

fn time_of(ts_ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ts_ms as i64)
        .map(|t| t.to_zoned(jiff::tz::TimeZone::system()).strftime("%H:%M").to_string())
        .unwrap_or_default()
}

impl Chat {
    pub fn new(me: String, history: &[ChatMessage]) -> Chat {
        let mut chat = Chat {
            me,
            entries: Vec::new(),
            draft: String::new(),
            to: Recipient::Everyone,
            members: Vec::new(),
            unread: 0,
            next_local: 1,
        };
        for m in history {
            chat.received(m.clone());
        }
        chat.unread = 0;
        chat
    }

    /// Keeps the recipient picker in step with the room.
    pub fn set_members(&mut self, names: Vec<String>) {
        self.members = names.into_iter().filter(|n| *n != self.me).collect();
        if let Recipient::Member(n) = &self.to
            && !self.members.contains(n)
        {
            self.to = Recipient::Everyone;
        }
    }

    /// After a rejoin the history comes again: messages already shown are skipped.
    pub fn received(&mut self, m: ChatMessage) -> bool {
        if self.entries.iter().any(|e| e.msg_id == Some(m.id)) {
            return false;
        }
        let mine = m.from == self.me;
        self.entries.push(Entry {
            msg_id: Some(m.id),
            local: 0,
            from: m.from,
            to: m.to,
            text: m.text,
            ts_ms: Some(m.ts_ms),
            delivery: if mine { Delivery::Delivered } else { Delivery::Received },
        });
        self.unread += 1;
        true
    }

    /// What the session answered when asked to send `local`.
    pub fn sent(&mut self, local: u64, result: Result<u32, String>) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.local == local) {
            e.delivery = match result {
                Ok(id) => Delivery::Sending(Some(id)),
                Err(reason) => Delivery::Failed(reason),
            };
        }
    }

    pub fn result(&mut self, r: &ChatResult) {
        let Some(e) = self.entries.iter_mut().find(|e| e.delivery == Delivery::Sending(Some(r.id)))
        else {
            return;
        };
        match &r.outcome {
            ChatOutcome::Delivered { msg_id, ts_ms, to } => {
                e.msg_id = Some(*msg_id);
                e.ts_ms = Some(*ts_ms);
                e.to = to.clone();
                e.delivery = Delivery::Delivered;
            }
            ChatOutcome::Refused { reason } => e.delivery = Delivery::Failed(reason.clone()),
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Draft(d) => self.draft = d,
            Message::To(r) => self.to = r,
            Message::Send => {
                let text = self.draft.trim().to_string();
                if text.is_empty() {
                    return (Task::none(), None);
                }
                self.draft.clear();
                let local = self.next_local;
                self.next_local += 1;
                let to = match &self.to {
                    Recipient::Everyone => None,
                    Recipient::Member(n) => Some(n.clone()),
                };
                self.entries.push(Entry {
                    msg_id: None,
                    local,
                    from: self.me.clone(),
                    to: to.clone(),
                    text: text.clone(),
                    ts_ms: None,
                    delivery: Delivery::Sending(None),
                });
                let scroll = iced::widget::operation::snap_to_end(LOG_ID);
                return (scroll, Some(Event::Send { local, to, text }));
            }
        }
        (Task::none(), None)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let mut log = column![].spacing(8).padding([0, 8]);
        if self.entries.is_empty() {
            log = log.push(text("No messages yet.").size(13));
        }
        for e in &self.entries {
            let who = match (&e.to, e.from == self.me) {
                (None, true) => "You".to_string(),
                (None, false) => visible(&e.from),
                (Some(to), true) => format!("You → {} (private)", visible(to)),
                (Some(_), false) => format!("{} → you (private)", visible(&e.from)),
            };
            let when = e.ts_ms.map(time_of).unwrap_or_default();
            let state = match &e.delivery {
                Delivery::Sending(_) => " · sending…".to_string(),
                Delivery::Delivered if e.from == self.me => " · delivered".to_string(),
                Delivery::Failed(why) => format!(" · not delivered: {}", visible(why)),
                _ => String::new(),
            };
            let head = text(format!("{who}  {when}{state}")).size(11);
            let head = if e.is_private() { head.style(text::warning) } else { head };
            // Line breaks stay (a bubble cannot pose as another message);
            // direction overrides and other hidden characters are shown.
            let body = text(visible_lines(&e.text, "")).size(14);
            let body = if matches!(e.delivery, Delivery::Failed(_)) {
                body.style(text::danger)
            } else {
                body
            };
            log = log.push(column![head, body].spacing(2));
        }
        let mut choices = vec![Recipient::Everyone];
        choices.extend(self.members.iter().cloned().map(Recipient::Member));
        let input = row![
            pick_list(choices, Some(self.to.clone()), Message::To).text_size(13),
            text_input("Message", &self.draft)
                .on_input(Message::Draft)
                .on_submit(Message::Send)
                .size(14),
            button(text("Send").size(13)).on_press(Message::Send),
        ]
        .spacing(4);
        column![
            text("Chat").size(18),
            container(scrollable(log).id(LOG_ID).anchor_bottom().height(Fill)).height(Fill),
            input,
        ]
        .spacing(8)
        .into()
    }
}
