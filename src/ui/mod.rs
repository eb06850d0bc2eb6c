//! The desktop app (iced). One module per screen, each with a state struct,
//! `Message`, `Event` (child → parent), `update` and `view`; this module is
//! the parent: it owns the session, the in-process host and the media
//! engines, and turns children's `Event`s into work.
//!
//! Network → UI goes through subscriptions keyed by identity
//! ([`Subscription::run_with`](iced::Subscription::run_with)): dropping a
//! key from the state ends its worker. Nothing here blocks: connecting,
//! hosting, resolving names and file I/O run as tasks.
//!
//! The parent is split by job: `app` (state, messages, dispatch, view),
//! `stream` (subscriptions), `lifecycle` (join, host, leave, handover),
//! `engines` (media engines and the call's media buttons), `transfers`
//! (file uploads and downloads), `notice` (notifications) and `trust`
//! (join failures, the certificate-changed dialog, the guests' address).

mod app;
pub mod call;
pub mod chat;
mod engines;
pub mod files;
pub mod launcher;
mod lifecycle;
pub mod media;
pub mod notice;
pub mod participants;
pub mod picker;
pub mod scheduler;
pub mod settings;
mod stream;
mod transfers;
pub mod trust;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::server::HostOptions;
use app::Session;
pub use app::{App, Message};
pub use transfers::{FileUpdate, TransferKey};

/// How long `sapora` with no arguments looks for a host before hosting.
pub const SEARCH_TIME: Duration = Duration::from_secs(1);

/// What the app does when it opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Launch {
    /// The launcher, nothing else.
    Launcher,
    /// `sapora` with no arguments: look for about a second, offer a host
    /// found, otherwise host.
    Auto,
    /// `sapora join`: join at once.
    Join { address: String, name: String, room: String },
    /// `sapora host`: host in-process and join it.
    Host { name: String, room: String },
}

/// Device choices from the command line; they override the saved settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaChoice {
    pub camera: Option<String>,
    pub mic: Option<String>,
    pub speaker: Option<String>,
    /// `--aec`, `--noise-suppression`, `--agc`.
    pub aec: Option<bool>,
    pub noise_suppression: Option<crate::media::audio::apm::NoiseSuppression>,
    pub agc: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub launch: Launch,
    /// Where discovery probes go, and the discovery port.
    pub discovery: (IpAddr, u16),
    /// The host this app starts when it hosts (ports, bind address, name,
    /// passcode: the app's own client joins it with `host.passcode`).
    pub host: HostOptions,
    pub media: MediaChoice,
    /// The passcode the app gives when it joins another host
    /// (`sapora join --passcode`, `SAPORA_PASSCODE`).
    pub passcode: Option<crate::transport::pake::Passcode>,
}

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("the desktop app could not start: {0}")]
    Iced(#[from] iced::Error),
}

/// Whether a window can be opened at all: without a display the CLI falls
/// back to the terminal.
pub fn display_available() -> bool {
    std::env::var_os("DISPLAY").is_some_and(|d| !d.is_empty())
        || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|d| !d.is_empty())
}

/// The address to tell others: the bound one, or every LAN address of this
/// machine with its interface name ("10.77.0.1 (eth0), or 10.78.0.1 (eth1)"),
/// with the port when it is not the default.
pub fn share_address(bind: IpAddr, control_port: u16) -> String {
    let with_port = |ip: IpAddr| {
        if control_port == crate::proto::Ports::with_offset(0).map(|p| p.control).unwrap_or(5000) {
            ip.to_string()
        } else {
            SocketAddr::new(ip, control_port).to_string()
        }
    };
    if !bind.is_unspecified() {
        return with_port(bind);
    }
    let list = crate::lanif::join_addresses();
    if list.is_empty() {
        return with_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    list.iter()
        .map(|(name, ip)| format!("{} ({name})", with_port(IpAddr::V4(*ip))))
        .collect::<Vec<_>>()
        .join(", or ")
}

/// Opens the app and returns when its window closes.
pub fn run(options: Options) -> Result<(), UiError> {
    iced::application(move || App::new(options.clone()), App::update, App::view)
        .title(App::title)
        .subscription(App::subscription)
        .theme(App::theme)
        .exit_on_close_request(false)
        .window_size((1280.0, 800.0))
        .run()?;
    Ok(())
}

/// Moves a value that is not `Clone` through a `Message` (which must be):
/// the first `take` gets it.
pub struct Handoff<T>(Arc<Mutex<Option<T>>>);

impl<T> Handoff<T> {
    pub fn new(value: T) -> Handoff<T> {
        Handoff(Arc::new(Mutex::new(Some(value))))
    }

    pub fn take(&self) -> Option<T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl<T> Clone for Handoff<T> {
    fn clone(&self) -> Self {
        Handoff(self.0.clone())
    }
}

impl<T> fmt::Debug for Handoff<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handoff<{}>", std::any::type_name::<T>())
    }
}
