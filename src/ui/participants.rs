//! The participants panel: who is here, from where, what they share, their
//! roles and raised hands (oldest first), and, for the host and co-hosts,
//! the controls: lock, record, end, and mute / hold muted / stop video /
//! remove / co-host per member, and "let back" for members removed during
//! this call.

use iced::widget::qr_code::Style as QrStyle;
use iced::widget::{button, column, qr_code, row, scrollable, text};
use iced::{Element, Fill};

use crate::proto::text::visible;
use crate::proto::{Control, Member, RoomState};

/// A control the user picked; the call screen sends it to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Control(Control),
}

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

/// Whether `me` may use the host controls: the host's member or a co-host.
pub fn controls_allowed(me: &str, host_member: Option<&str>, state: &RoomState) -> bool {
    host_member == Some(me) || state.co_hosts.iter().any(|c| c == me)
}

/// Members with raised hands first, oldest hand first; then the rest in
/// join order.
pub fn ordered<'a>(members: &'a [Member], state: &RoomState) -> Vec<&'a Member> {
    let mut out: Vec<&Member> =
        state.hands.iter().filter_map(|h| members.iter().find(|m| m.name == h.name)).collect();
    out.extend(members.iter().filter(|m| !state.hands.iter().any(|h| h.name == m.name)));
    out
}

/// `host_member` is the host's word on who runs it (`UserList::host_member`),
/// so the mark is right on loopback, behind NAT and with several people on
/// the host's machine alike.
/// The panel's trust lines: this link's security line, and while hosting
/// the guests' address and QR code and each member's verification code.
#[derive(Default)]
pub struct Trust<'a> {
    /// "Encrypted (QUIC) · verification code 123 456".
    pub security: Option<String>,
    /// The guests' page address(es) and its QR code.
    pub guests: Option<(&'a str, &'a iced::widget::qr_code::Data)>,
    /// This meeting's room and the host's member codes.
    pub codes: Option<(&'a str, &'a crate::server::control::MemberCodes)>,
}

pub fn view<'a>(
    trust: Trust<'a>,
    members: &'a [Member],
    me: &'a str,
    host_member: Option<&'a str>,
    state: &'a RoomState,
    removed: &'a [String],
) -> Element<'a, Message> {
    let Trust { security, guests, codes } = trust;
    let controller = controls_allowed(me, host_member, state);
    let small = |label: &'a str, control: Control| {
        button(text(label).size(11)).padding([2, 6]).on_press(Message::Control(control))
    };
    let mut list = column![].spacing(8);
    for m in ordered(members, state) {
        let mut title = label(m, me, host_member);
        if state.co_hosts.contains(&m.name) {
            title.push_str(" · co-host");
        }
        if let Some(n) = state.hands.iter().position(|h| h.name == m.name) {
            title.push_str(&format!(" · hand raised ({})", n + 1));
        }
        let host_muted = state.host_muted.iter().any(|h| h.name == m.name);
        let state_line = format!(
            "{}{} · {}{} · {}",
            if m.mic { "mic on" } else { "muted" },
            if host_muted { " by the host" } else { "" },
            if m.camera { "camera on" } else { "camera off" },
            if state.video_stopped.contains(&m.name) { " by the host" } else { "" },
            if m.screen { "sharing screen" } else { "not sharing" },
        );
        let mut entry = column![
            row![text(title).size(15)],
            text(visible(&m.ip)).size(11),
            text(state_line).size(11),
        ]
        .spacing(1);
        // The host sees the code of each member's own link: equal to the
        // one that member's app shows unless someone relays it.
        if let Some(code) =
            codes.filter(|_| m.name != me).and_then(|(room, c)| c.get(room, &m.name))
        {
            entry = entry.push(text(format!("verification code {code}")).size(11));
        }
        if controller && m.name != me && host_member != Some(m.name.as_str()) {
            let name = || m.name.clone();
            let co = state.co_hosts.contains(&m.name);
            entry = entry.push(
                row![
                    small("Mute", Control::Mute { name: name(), may_unmute: true }),
                    small("Hold muted", Control::Mute { name: name(), may_unmute: false }),
                    small("Stop video", Control::StopVideo { name: name() }),
                    small("Remove", Control::Remove { name: name() }),
                    small(
                        if co { "Not co-host" } else { "Make co-host" },
                        Control::CoHost { name: name(), on: !co }
                    ),
                ]
                .spacing(4),
            );
        }
        list = list.push(entry);
    }
    let mut head = column![text(format!("People ({})", members.len())).size(18)].spacing(6);
    if let Some(security) = security {
        head = head.push(text(security).size(12));
    }
    if state.locked {
        head = head.push(text("Meeting locked: nobody new can join").size(12));
    }
    if let Some((url, qr)) = guests {
        // Phones and tablets join from a browser: scan, or type the address.
        head = head.push(text("Phones and browsers join at:").size(12)).push(
            // Dark cells on white, as phone scanners expect (the theme's
            // default would be light on dark).
            row![
                qr_code(qr).cell_size(4).style(|_| QrStyle {
                    cell: iced::Color::BLACK,
                    background: iced::Color::WHITE,
                }),
                text(url).size(13)
            ]
            .spacing(8)
            .align_y(iced::Center),
        );
    }
    if controller {
        head = head.push(
            row![
                if state.locked {
                    small("Unlock", Control::Unlock)
                } else {
                    small("Lock", Control::Lock)
                },
                if state.recording {
                    small("Stop recording", Control::Record { on: false })
                } else {
                    small("Record", Control::Record { on: true })
                },
                small("End for all", Control::End),
            ]
            .spacing(4),
        );
    }
    if controller && !removed.is_empty() {
        // Removed members cannot come back until let back (by token, name
        // or address); the host sees who, from this call's notices.
        list = list.push(text("Removed").size(15));
        for name in removed {
            list = list.push(
                row![
                    text(visible(name)).size(13),
                    small("Let back", Control::LetBack { name: name.clone() })
                ]
                .spacing(6),
            );
        }
    }
    column![head, scrollable(list).height(Fill)].spacing(8).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::RaisedHand;

    fn m(name: &str) -> Member {
        Member {
            name: name.into(),
            ip: "10.0.0.2".into(),
            mic: false,
            camera: false,
            screen: false,
        }
    }

    #[test]
    fn raised_hands_come_first_oldest_first_and_only_hosts_control() {
        let members = [m("ann"), m("bob"), m("cy"), m("di")];
        let hand = |name: &str, since_ms| RaisedHand { name: name.into(), since_ms };
        let state = RoomState {
            hands: vec![hand("di", 5), hand("bob", 9)],
            co_hosts: vec!["cy".into()],
            ..RoomState::default()
        };
        let names: Vec<&str> = ordered(&members, &state).iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["di", "bob", "ann", "cy"]);
        assert!(controls_allowed("ann", Some("ann"), &state));
        assert!(controls_allowed("cy", Some("ann"), &state));
        assert!(!controls_allowed("bob", Some("ann"), &state));
        assert!(!controls_allowed("bob", None, &state));
    }
}
