//! The participants panel: who is here, from where, and what they share.

use iced::widget::{column, row, scrollable, text};
use iced::{Element, Fill};

use crate::proto::Member;
use crate::proto::text::visible;

/// The panel has no state of its own: it shows the call's member list.
#[derive(Debug, Clone)]
pub enum Message {}

/// The line under a member's name.
pub fn label(m: &Member, me: &str, host_member: Option<&str>) -> String {
    let mut name = visible(&m.name);
    if m.name == me {
        name.push_str(" (You)");
    }
    if host_member == Some(m.name.as_str()) {
        name.push_str(" · host");
    }
    name
}

/// `host_member` is the host's word on who runs it (`UserList::host_member`),
/// so the mark is right on loopback, behind NAT and with several people on
/// the host's machine alike.
pub fn view<'a>(
    members: &'a [Member],
    me: &'a str,
    host_member: Option<&'a str>,
) -> Element<'a, Message> {
    let mut list = column![].spacing(8);
    for m in members {
        let state = format!(
            "{} · {} · {}",
            if m.mic { "mic on" } else { "muted" },
            if m.camera { "camera on" } else { "camera off" },
            if m.screen { "sharing screen" } else { "not sharing" },
        );
        list = list.push(
            column![
                row![text(label(m, me, host_member)).size(15)],
                text(visible(&m.ip)).size(11),
                text(state).size(11),
            ]
            .spacing(1),
        );
    }
    column![text(format!("People ({})", members.len())).size(18), scrollable(list).height(Fill)]
        .spacing(8)
        .into()
}
