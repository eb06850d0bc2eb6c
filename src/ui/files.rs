//! The files panel: files offered in the meeting (download with progress) and
//! sending a file (chosen in the native dialog, or a path typed or pasted,
//! and a recipient).

use iced::widget::{button, column, pick_list, progress_bar, row, scrollable, text, text_input};
use iced::{Element, Fill, Task};

use super::chat::Recipient;
use super::picker::Picked;
use crate::proto::human_bytes;
use crate::proto::text::visible;

#[derive(Debug, Clone, PartialEq)]
pub enum Transfer {
    /// Offered; nothing fetched yet.
    Offered,
    /// Fraction done, 0..=1.
    Running(f32),
    /// Where it was saved (downloads) or "sent".
    Done(String),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub from: String,
    pub state: Transfer,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub path: String,
    pub to: Recipient,
    pub state: Transfer,
}

pub struct Files {
    pub offers: Vec<Offer>,
    pub uploads: Vec<Upload>,
    pub path: String,
    pub to: Recipient,
    pub members: Vec<String>,
    pub error: Option<String>,
    /// A file dialog is open (the typed path still works meanwhile).
    pub choosing: bool,
}

#[derive(Debug, Clone)]
pub enum Message {
    Path(String),
    To(Recipient),
    Send,
    Download(u64),
    /// "Choose file…": open the native dialog.
    Browse,
    /// What the dialog answered.
    Picked(Picked),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Upload {
        path: String,
        to: Option<String>,
    },
    Download(u64),
    /// Open the file dialog (the app owns that effect).
    Browse,
    /// Something the user should be told (e.g. no dialog could be shown).
    Failed(String),
}

impl Files {
    pub fn new() -> Files {
        Files {
            offers: Vec::new(),
            uploads: Vec::new(),
            path: String::new(),
            to: Recipient::Everyone,
            members: Vec::new(),
            error: None,
            choosing: false,
        }
    }

    pub fn set_members(&mut self, names: Vec<String>) {
        self.members = names;
    }

    pub fn offered(&mut self, offer: Offer) {
        if !self.offers.iter().any(|o| o.id == offer.id) {
            self.offers.push(offer);
        }
    }

    pub fn progress(&mut self, id: u64, state: Transfer) {
        if let Some(o) = self.offers.iter_mut().find(|o| o.id == id) {
            o.state = state;
        }
    }

    pub fn upload_progress(&mut self, path: &str, state: Transfer) {
        if let Some(u) = self.uploads.iter_mut().rev().find(|u| u.path == path) {
            u.state = state;
        }
    }

    pub fn update(&mut self, message: Message) -> (Task<Message>, Option<Event>) {
        match message {
            Message::Path(p) => self.path = p,
            Message::To(r) => self.to = r,
            Message::Send => {
                let path = self.path.trim().to_string();
                if path.is_empty() {
                    self.error = Some("Type or paste the path of the file to send.".into());
                    return (Task::none(), None);
                }
                self.error = None;
                self.path.clear();
                let to = match &self.to {
                    Recipient::Everyone => None,
                    Recipient::Member(n) => Some(n.clone()),
                };
                self.uploads.push(Upload {
                    path: path.clone(),
                    to: self.to.clone(),
                    state: Transfer::Running(0.0),
                });
                return (Task::none(), Some(Event::Upload { path, to }));
            }
            Message::Download(id) => {
                if let Some(o) = self.offers.iter_mut().find(|o| o.id == id) {
                    o.state = Transfer::Running(0.0);
                    return (Task::none(), Some(Event::Download(id)));
                }
            }
            Message::Browse => {
                self.choosing = true;
                self.error = None;
                return (Task::none(), Some(Event::Browse));
            }
            Message::Picked(picked) => {
                self.choosing = false;
                match picked {
                    // Sent exactly as if the path had been typed: same
                    // recipient, same checks, same progress.
                    Picked::File(path) => {
                        self.path = path.display().to_string();
                        return self.update(Message::Send);
                    }
                    Picked::Cancelled => {}
                    Picked::Unavailable(why) => {
                        self.error = Some(why.clone());
                        return (Task::none(), Some(Event::Failed(why)));
                    }
                }
            }
        }
        (Task::none(), None)
    }

    fn state_view(state: &Transfer) -> Element<'_, Message> {
        match state {
            Transfer::Offered => text("").into(),
            Transfer::Running(f) => progress_bar(0.0..=1.0, *f).girth(8).into(),
            Transfer::Done(s) => text(visible(s)).size(11).into(),
            Transfer::Failed(e) => text(visible(e)).size(11).style(text::danger).into(),
        }
    }

    pub fn view(&self) -> Element<'_, Message> {
        let mut list = column![].spacing(8);
        if self.offers.is_empty() {
            list = list.push(text("No files shared yet.").size(13));
        }
        for o in &self.offers {
            let get = button(text("Download").size(12)).on_press_maybe(
                matches!(o.state, Transfer::Offered | Transfer::Failed(_))
                    .then_some(Message::Download(o.id)),
            );
            list = list.push(
                column![
                    row![
                        column![
                            text(visible(&o.name)).size(14),
                            text(format!("{} · from {}", human_bytes(o.size), visible(&o.from)))
                                .size(11),
                        ]
                        .width(Fill),
                        get
                    ],
                    Self::state_view(&o.state),
                ]
                .spacing(2),
            );
        }
        for u in &self.uploads {
            list = list.push(
                column![
                    text(format!("Sending {} to {}", u.path, u.to)).size(12),
                    Self::state_view(&u.state)
                ]
                .spacing(2),
            );
        }
        let mut choices = vec![Recipient::Everyone];
        choices.extend(self.members.iter().cloned().map(Recipient::Member));
        let mut body = column![
            text("Files").size(18),
            scrollable(list).height(Fill),
            text_input("path of a file to send, e.g. /home/me/report.pdf", &self.path)
                .on_input(Message::Path)
                .on_submit(Message::Send)
                .size(13),
            row![
                pick_list(choices, Some(self.to.clone()), Message::To).text_size(13),
                button(text(if self.choosing { "Choosing…" } else { "Choose file…" }).size(13))
                    .style(button::secondary)
                    .on_press(Message::Browse),
                button(text("Send file").size(13)).on_press(Message::Send),
            ]
            .spacing(4),
        ]
        .spacing(8);
        if let Some(e) = &self.error {
            body = body.push(text(e.clone()).size(12).style(text::danger));
        }
        body.into()
    }
}

impl Default for Files {
    fn default() -> Files {
        Files::new()
    }
}
