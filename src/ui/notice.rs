//! Notifications: short lines over whatever screen shows, each for
//! six seconds (`NOTICE_TIME`), at most five at once, the same text never twice.

use std::time::Duration;

use iced::widget::{column, container, stack, text};
use iced::{Background, Border, Color, Element, Fill, Task, Theme};

use super::{App, Message};

/// How long a notification stays up.
const NOTICE_TIME: Duration = Duration::from_secs(6);
/// The most notifications shown at once; a sixth pushes out the oldest.
const MAX_NOTICES: usize = 5;

/// A line for the notifications area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    /// Shown in red.
    pub error: bool,
}

impl Notice {
    /// An informational (not error) notice.
    pub fn info(text: impl Into<String>) -> Notice {
        Notice { text: text.into(), error: false }
    }

    /// An error notice.
    pub fn error(text: impl Into<String>) -> Notice {
        Notice { text: text.into(), error: true }
    }
}

impl App {
    /// Shows `notice` and schedules its [`Message::Expire`].
    pub(super) fn notify(&mut self, notice: Notice) -> Task<Message> {
        // Engines may report one failure twice (result and event).
        if self.notices.iter().any(|(_, n)| *n == notice) {
            return Task::none();
        }
        let id = self.next_id();
        self.notices.push((id, notice));
        if self.notices.len() > MAX_NOTICES {
            self.notices.remove(0);
        }
        Task::perform(smol::Timer::after(NOTICE_TIME), move |_| Message::Expire(id))
    }

    pub(super) fn expire(&mut self, id: u64) -> Task<Message> {
        self.notices.retain(|(i, _)| *i != id);
        Task::none()
    }

    /// `screen` with the notifications over it (or alone when there are none).
    pub(super) fn with_notices<'a>(&'a self, screen: Element<'a, Message>) -> Element<'a, Message> {
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
