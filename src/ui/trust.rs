//! Trust in the app: why a join failed (a refused passcode, a changed host
//! certificate), the loud "certificate changed" dialog with its two
//! answers, and the guests' web address (text and QR code) for the host.
//!
//! The certificate model is `transport::pin` (trust on first use, as
//! OpenSSH's `known_hosts`): the dialog's "Trust the new certificate" does
//! what the CLI's warning tells the user to do by hand, forgets the host's
//! pin ([`KnownHosts::forget`](crate::transport::pin::KnownHosts::forget),
//! [`PinStore::save`]), and joins again, which
//! pins the presented certificate.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use iced::widget::{button, column, container, row, text};
use iced::{Background, Border, Color, Element, Fill, Theme};

use crate::client::ClientError;
use crate::proto::HostKey;
use crate::transport::link::ConnectError;
use crate::transport::pake::Passcode;
use crate::transport::pin::{CertChanged, PinError, PinStore};
use crate::transport::quic::QuicError;
use crate::transport::tunnel::TunnelError;

/// Why a join failed, as the app needs it (a `Message` must be `Clone`).
#[derive(Debug, Clone)]
pub struct JoinFailure {
    /// The line shown to the user.
    pub text: String,
    /// The host's certificate is not the pinned one: the dialog opens.
    pub changed: Option<Box<CertChanged>>,
}

impl JoinFailure {
    /// From a failed `Client::connect`; `gave_passcode` says whether this
    /// join gave one (to word a refusal).
    pub fn from_client(e: &ClientError, gave_passcode: bool) -> JoinFailure {
        let text = if e.is_passcode_refusal() {
            let hint = if gave_passcode {
                "Check the passcode (ask whoever runs the meeting) and join again."
            } else {
                "Type the meeting's passcode in the passcode field and join again."
            };
            format!("Not let in: {e}. {hint}")
        } else {
            e.to_string()
        };
        JoinFailure { text, changed: cert_change(e).map(Box::new) }
    }

    /// A failure that is only a message (resolving, starting the host).
    pub fn plain(text: impl Into<String>) -> JoinFailure {
        JoinFailure { text: text.into(), changed: None }
    }
}

/// The pin warning inside `e`, when the host's certificate changed
/// ([`ClientError::is_certificate_changed`]).
pub fn cert_change(e: &ClientError) -> Option<CertChanged> {
    let ClientError::Link(link) = e else { return None };
    let pin = match link {
        ConnectError::Quic { source: QuicError::Pin(pin), .. } => pin,
        ConnectError::Tunnel { source: TunnelError::Pin(pin), .. } => pin,
        _ => return None,
    };
    match pin {
        PinError::Changed(changed) => Some((**changed).clone()),
        _ => None,
    }
}

/// What to join again once the user trusts the new certificate.
#[derive(Debug, Clone)]
pub struct Retry {
    pub addr: SocketAddr,
    pub name: String,
    pub room: String,
    pub host_key: Option<HostKey>,
    pub passcode: Option<Passcode>,
}

/// The open "certificate changed" dialog.
#[derive(Debug, Clone)]
pub struct CertDialog {
    pub change: CertChanged,
    pub retry: Retry,
}

/// The dialog's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogMessage {
    Cancel,
    TrustNew,
}

/// The dialog's button labels (tests click them by label).
pub const CANCEL: &str = "Cancel";
pub const TRUST_NEW: &str = "Trust the new certificate";

impl CertDialog {
    pub fn view(&self) -> Element<'_, DialogMessage> {
        let c = &self.change;
        let title = text(format!("Warning: the certificate of {} has changed", c.host))
            .size(22)
            .color(Color::from_rgb8(0xff, 0x6b, 0x6b));
        let body = column![
            title,
            text(
                "The host presented another certificate than the one this computer \
                 remembered for it. Someone on the network could be intercepting the \
                 connection (a man in the middle), or the host was reinstalled or lost \
                 its configuration."
            )
            .size(14),
            text(format!("Remembered: {}", c.pinned.short())).size(14),
            text(format!("Presented:  {}", c.presented.short())).size(14),
            text(format!("Full new fingerprint: {}", c.presented)).size(11),
            text(
                "Ask the person running the host which fingerprint it shows at start-up \
                 (sapora host prints it). Trust the new one only if they match."
            )
            .size(14),
            row![
                button(text(CANCEL).size(15))
                    .padding([8, 20])
                    .style(button::secondary)
                    .on_press(DialogMessage::Cancel),
                button(text(TRUST_NEW).size(15))
                    .padding([8, 20])
                    .style(button::danger)
                    .on_press(DialogMessage::TrustNew),
            ]
            .spacing(12),
        ]
        .spacing(10)
        .padding(20)
        .max_width(640);
        let card = container(body).style(|theme: &Theme| container::Style {
            background: Some(Background::Color(theme.palette().background)),
            border: Border::default()
                .rounded(10)
                .width(3)
                .color(Color::from_rgb8(0xd0, 0x30, 0x30)),
            ..container::Style::default()
        });
        container(card)
            .center(Fill)
            .style(|_: &Theme| container::Style {
                background: Some(Background::Color(Color::from_rgba(0.0, 0.0, 0.0, 0.7))),
                ..container::Style::default()
            })
            .into()
    }
}

/// Forgets `host`'s pin in the known-hosts file the app's client uses
/// (`known_hosts` in the configuration directory) and saves the file.
/// Blocking file I/O: run it off the UI thread.
pub fn forget_pin(host: &str) -> Result<(), String> {
    let store = PinStore::open_default().map_err(|e| e.to_string())?;
    store.update(|hosts| (hosts.forget(host).is_some(), ())).map_err(|e| e.to_string())
}

/// The address of the browser guests' page: `https://IP:PORT/` (issue 15:
/// the host serves it over TLS on its control port number, TCP). One per
/// LAN address when the host binds every address, else the bound one.
pub fn guest_urls(bind: IpAddr, control_port: u16) -> Vec<String> {
    let url = |ip: IpAddr| crate::guest::page_url(ip, control_port);
    if !bind.is_unspecified() {
        return vec![url(bind)];
    }
    let list = crate::lanif::join_addresses();
    if list.is_empty() {
        return vec![url(IpAddr::V4(Ipv4Addr::LOCALHOST))];
    }
    list.iter().map(|(_, ip)| url(IpAddr::V4(*ip))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_urls_carry_the_control_port_and_brackets_for_ipv6() {
        assert_eq!(guest_urls("10.0.0.7".parse().unwrap(), 5000), ["https://10.0.0.7:5000/"]);
        assert_eq!(guest_urls("fe80::1".parse().unwrap(), 5003), ["https://[fe80::1]:5003/"]);
    }
}
