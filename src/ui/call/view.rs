//! Drawing the call screen: tiles, the grid and the strip, the stage
//! (speaker or shared screen), the control bar and the side panel.

use iced::widget::{
    button, column, container, image, mouse_area, row, scrollable, stack, text, tooltip,
};
use iced::{Background, Border, Color, Element, Fill, Length, Theme};

use super::{Call, Layout, Message, Panel, grid_shape, participants};
use crate::proto::Control;
use crate::proto::text::visible;

impl Call {
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
        if let Some((url, _)) = &self.guests {
            header = header.push(text(format!("Browsers: {url}")).size(14));
        }
        if let Some(how) = self.transport() {
            header = header.push(text(format!("Encrypted · {how}")).size(14));
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
        let side: Option<Element<'_, Message>> = self.panel.map(|p| {
            match p {
            Panel::Chat => self.chat.view().map(Message::Chat),
            Panel::Files => self.files.view().map(Message::Files),
            Panel::People => participants::view(
                participants::Trust {
                security: match &self.member_codes {
                    // Our own link is to ourselves: the codes to compare
                    // are the members' links'.
                    Some(_) => Some(
                        "Encrypted · you host this meeting: each person's verification code is \
                         under their name; their app shows the same one unless someone relays \
                         the connection"
                            .to_string(),
                    ),
                    None => self.security(),
                },
                guests: self.guests.as_ref().map(|(url, qr)| (url.as_str(), qr)),
                codes: self.member_codes.as_ref().map(|codes| (self.room.as_str(), codes)),
                },
                &self.members,
                &self.me,
                self.host_member.as_deref(),
                &self.room_state,
                &self.removed,
            )
            .map(|participants::Message::Control(c)| Message::Control(c)),
        }
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
