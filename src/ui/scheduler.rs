//! The scheduler dialog: list, add, edit, delete and join meetings. It reads
//! and writes the same store as `sapora schedule`, always off the UI thread.

use iced::widget::{button, column, container, row, scrollable, text, text_input};
use iced::{Element, Fill, Task};

use crate::schedule::{Meeting, MeetingEdit, Store};

/// The form's fields, as typed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form {
    pub id: String,
    pub title: String,
    pub start: String,
    pub duration: String,
    pub host: String,
    /// `Some(id)` while editing an existing meeting (its id cannot change).
    pub editing: Option<String>,
}

pub struct Scheduler {
    store: Option<Store>,
    pub meetings: Vec<Meeting>,
    pub form: Form,
    pub error: Option<String>,
    pub loading: bool,
}

#[derive(Debug, Clone)]
pub enum Message {
    Loaded(Result<Vec<Meeting>, String>),
    Saved(Result<Meeting, String>),
    Removed(Result<Meeting, String>),
    Id(String),
    Title(String),
    Start(String),
    Duration(String),
    Host(String),
    Save,
    Edit(String),
    Cancel,
    Delete(String),
    Join(String),
    Refresh,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Join this meeting: its room, and its host if it names one.
    Join { room: String, host: Option<String> },
}

impl Scheduler {
    /// `store: None` when there is no config directory; the dialog then says so.
    pub fn new(store: Option<Store>) -> (Scheduler, Task<Message>) {
        let s = Scheduler {
            store,
            meetings: Vec::new(),
            form: Form { duration: "60".into(), ..Form::default() },
            error: None,
            loading: false,
        };
        let task = s.reload();
        (s, task)
    }

    fn reload(&self) -> Task<Message> {
        match self.store.clone() {
            Some(store) => Task::perform(
                smol::unblock(move || store.list().map_err(|e| e.to_string())),
                Message::Loaded,
            ),
            None => Task::none(),
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        let no_store = || "no configuration directory to keep the schedule in".to_string();
        match message {
            Message::Loaded(Ok(list)) => {
                self.meetings = list;
                self.loading = false;
            }
            Message::Loaded(Err(e)) | Message::Saved(Err(e)) | Message::Removed(Err(e)) => {
                self.error = Some(e);
                self.loading = false;
            }
            Message::Saved(Ok(_)) | Message::Removed(Ok(_)) => {
                self.error = None;
                self.form = Form { duration: "60".into(), ..Form::default() };
                return (self.reload(), None);
            }
            Message::Id(v) => self.form.id = v,
            Message::Title(v) => self.form.title = v,
            Message::Start(v) => self.form.start = v,
            Message::Duration(v) => self.form.duration = v,
            Message::Host(v) => self.form.host = v,
            Message::Refresh => return (self.reload(), None),
            Message::Cancel => self.form = Form { duration: "60".into(), ..Form::default() },
            Message::Edit(id) => {
                if let Some(m) = self.meetings.iter().find(|m| m.id == id) {
                    self.form = Form {
                        id: m.id.clone(),
                        title: m.title.clone(),
                        start: m.start.clone(),
                        duration: m.duration_min.to_string(),
                        host: m.host.clone().unwrap_or_default(),
                        editing: Some(m.id.clone()),
                    };
                }
            }
            Message::Save => {
                let Ok(duration) = self.form.duration.trim().parse::<u32>() else {
                    self.error = Some(format!(
                        "\"{}\" is not a number of minutes",
                        self.form.duration.trim()
                    ));
                    return (Task::none(), None);
                };
                let Some(store) = self.store.clone() else {
                    self.error = Some(no_store());
                    return (Task::none(), None);
                };
                let f = self.form.clone();
                let host = Some(f.host.trim().to_string()).filter(|h| !h.is_empty());
                self.loading = true;
                let job = move || match f.editing {
                    Some(id) => store.edit(
                        &id,
                        MeetingEdit {
                            title: Some(f.title),
                            start: Some(f.start),
                            duration_min: Some(duration),
                            host: Some(host),
                        },
                    ),
                    None => {
                        let mut m = Meeting::new(f.id, f.title, f.start);
                        m.duration_min = duration;
                        m.host = host;
                        store.add(m)
                    }
                };
                let task = Task::perform(
                    smol::unblock(move || job().map_err(|e| e.to_string())),
                    Message::Saved,
                );
                return (task, None);
            }
            Message::Delete(id) => {
                let Some(store) = self.store.clone() else {
                    self.error = Some(no_store());
                    return (Task::none(), None);
                };
                let task = Task::perform(
                    smol::unblock(move || store.remove(&id).map_err(|e| e.to_string())),
                    Message::Removed,
                );
                return (task, None);
            }
            Message::Join(id) => {
                if let Some(m) = self.meetings.iter().find(|m| m.id == id) {
                    let event = Event::Join { room: m.room().to_string(), host: m.host.clone() };
                    return (Task::none(), Some(event));
                }
            }
        }
        (Task::none(), None)
    }

    pub fn view(&self) -> Element<'_, Message> {
        let mut list = column![].spacing(6);
        if self.meetings.is_empty() {
            list = list.push(text("No meetings scheduled.").size(14));
        }
        for m in &self.meetings {
            let when = m
                .start_time()
                .map(|z| z.strftime("%a %d %b %H:%M").to_string())
                .unwrap_or_else(|_| m.start.clone());
            let line = column![
                text(format!("{} ({})", m.title, m.id)).size(15),
                text(format!(
                    "{when} · {} min · host {}",
                    m.duration_min,
                    m.host.as_deref().unwrap_or("any")
                ))
                .size(12),
            ];
            list = list.push(
                row![
                    container(line).width(Fill),
                    button(text("Join").size(13)).on_press(Message::Join(m.id.clone())),
                    button(text("Edit").size(13))
                        .style(button::secondary)
                        .on_press(Message::Edit(m.id.clone())),
                    button(text("Delete").size(13))
                        .style(button::danger)
                        .on_press(Message::Delete(m.id.clone())),
                ]
                .spacing(6)
                .align_y(iced::Center),
            );
        }
        let f = &self.form;
        let mut id_input = text_input("meeting id (also the room)", &f.id).size(14);
        if f.editing.is_none() {
            id_input = id_input.on_input(Message::Id);
        }
        let form = column![
            text(if f.editing.is_some() { "Edit meeting" } else { "New meeting" }).size(15),
            row![id_input, text_input("title", &f.title).on_input(Message::Title).size(14),]
                .spacing(6),
            row![
                text_input("start, e.g. 2026-11-21T14:30", &f.start)
                    .on_input(Message::Start)
                    .size(14),
                text_input("minutes", &f.duration).on_input(Message::Duration).size(14).width(80),
                text_input("host address (optional)", &f.host).on_input(Message::Host).size(14),
            ]
            .spacing(6),
            row![
                button(
                    text(if f.editing.is_some() { "Save changes" } else { "Schedule" }).size(14)
                )
                .on_press_maybe((!self.loading).then_some(Message::Save)),
                button(text("Clear").size(14)).style(button::secondary).on_press(Message::Cancel),
            ]
            .spacing(6),
        ]
        .spacing(6);
        let mut body = column![
            text("Scheduled meetings").size(18),
            scrollable(list).height(iced::Length::Fixed(160.0)),
            form
        ]
        .spacing(10);
        if let Some(e) = &self.error {
            body = body.push(text(e.clone()).size(13).style(text::danger));
        }
        body.into()
    }
}
