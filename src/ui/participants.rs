//! The participants panel: who is here, from where, and what they share.

use iced::widget::{column, row, scrollable, text};
use iced::{Element, Fill};

use crate::proto::Member;

/// The panel has no state of its own: it shows the call's member list.
#[derive(Debug, Clone)]
pub enum Message {}

/// `host_ip`: members connecting from the host's own machine are marked as
/// the host. On loopback everyone shares one IP, so `hosting` (this app
/// runs the host) marks just us then.
pub fn view<'a>(
    members: &'a [Member],
    me: &'a str,
    host_ip: Option<&'a str>,
    hosting: bool,
) -> Element<'a, Message> {
    let loopback = host_ip.is_some_and(|ip| ip.starts_with("127.") || ip == "::1");
    let mut list = column![].spacing(8);
    for m in members {
        let is_me = m.name == me;
        let is_host = if hosting || loopback { hosting && is_me } else { host_ip == Some(&m.ip) };
        let mut name = m.name.clone();
        if is_me {
            name.push_str(" (You)");
        }
        if is_host {
            name.push_str(" · host");
        }
        let state = format!(
            "{} · {} · {}",
            if m.mic { "mic on" } else { "muted" },
            if m.camera { "camera on" } else { "camera off" },
            if m.screen { "sharing screen" } else { "not sharing" },
        );
        list = list.push(
            column![row![text(name).size(15)], text(m.ip.clone()).size(11), text(state).size(11),]
                .spacing(1),
        );
    }
    column![text(format!("People ({})", members.len())).size(18), scrollable(list).height(Fill)]
        .spacing(8)
        .into()
}
