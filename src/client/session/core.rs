//! The session's sans-IO core: what the link's timers and the host's frames
//! mean, with time as an input. The driver (`super::serve`, `super::rejoin`)
//! owns the link, the channels and the clock; everything here is plain data
//! and is tested on a virtual clock (`Instant`s the tests make up).
//!
//! - [`LinkTimers`]: when to send the next heartbeat (`Welcome::heartbeat_ms`)
//!   and when the host counts as silent (`Welcome::timeout_ms`: nothing heard
//!   for that long ends the link). Floors of 100 ms and 1 s keep a hostile or
//!   broken Welcome from making the client spin or drop at once.
//! - [`Backoff`]: rejoin attempts 200 ms apart, doubling to at most 1 s, so a
//!   restarted host on the LAN is found again within a second of coming back.
//! - [`react`]: one host frame turned into an event for the app, nothing, or
//!   the end of the link.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::{Event, LinkEnd};
use crate::proto::{Control, HostMsg, MediaState, Welcome};

/// The shortest heartbeat period the client accepts from a Welcome.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// The shortest silence timeout the client accepts from a Welcome.
pub const MIN_SILENCE: Duration = Duration::from_secs(1);

/// A timer that is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send a heartbeat now, then call [`LinkTimers::sent_heartbeat`].
    Heartbeat,
    /// Nothing heard from the host for [`LinkTimers::silence`]: the link is lost.
    Silence,
}

/// The two timers of one link: heartbeat and silence.
#[derive(Debug, Clone)]
pub struct LinkTimers {
    heartbeat: Duration,
    silence: Duration,
    next_beat: Instant,
    last_heard: Instant,
}

impl LinkTimers {
    /// Timers for a link the host has just welcomed at `now`.
    pub fn new(welcome: &Welcome, now: Instant) -> LinkTimers {
        let heartbeat = Duration::from_millis(u64::from(welcome.heartbeat_ms)).max(MIN_HEARTBEAT);
        let silence = Duration::from_millis(u64::from(welcome.timeout_ms)).max(MIN_SILENCE);
        LinkTimers { heartbeat, silence, next_beat: now + heartbeat, last_heard: now }
    }

    /// Any frame from the host arrived at `now` (heartbeats included).
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// A heartbeat went out at `now`.
    pub fn sent_heartbeat(&mut self, now: Instant) {
        self.next_beat = now + self.heartbeat;
    }

    /// The earliest instant at which [`LinkTimers::due`] can return something.
    pub fn next_deadline(&self) -> Instant {
        self.next_beat.min(self.silence_deadline())
    }

    /// When the host counts as silent unless something is heard before.
    pub fn silence_deadline(&self) -> Instant {
        self.last_heard + self.silence
    }

    /// How long the host may stay silent.
    pub fn silence(&self) -> Duration {
        self.silence
    }

    /// What is due at `now`; silence wins over a heartbeat due at once.
    pub fn due(&self, now: Instant) -> Option<Due> {
        if now >= self.silence_deadline() {
            Some(Due::Silence)
        } else if now >= self.next_beat {
            Some(Due::Heartbeat)
        } else {
            None
        }
    }
}

/// Rejoin back-off: 200 ms, 400 ms, 800 ms, then 1 s between attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(200);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(1);

    pub fn new() -> Backoff {
        Backoff { next: Backoff::FIRST }
    }

    /// How long to wait after a failed attempt (and doubles the next one).
    pub fn after_failure(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new()
    }
}

/// What one host frame means for the session.
#[derive(Debug)]
pub enum Reaction {
    /// Tell the app.
    Event(Event),
    /// Nothing to tell (a heartbeat, a handshake frame out of place, a
    /// handover to nowhere usable).
    Nothing,
    /// The link ends (a disconnect or a handover).
    End(LinkEnd),
}

/// What `msg` means for a member welcomed as `welcome` on the host at
/// `host_ip`; `sends_media` is [`super::ClientConfig::media`]. A host's
/// control notice that mutes this member or stops its video also turns it
/// off in `media`, so a rejoin does not turn it back on.
pub fn react(
    msg: HostMsg,
    welcome: &Welcome,
    host_ip: IpAddr,
    sends_media: bool,
    media: &mut MediaState,
) -> Reaction {
    let event = match msg {
        HostMsg::Heartbeat => return Reaction::Nothing,
        HostMsg::Disconnect(d) => {
            return Reaction::End(LinkEnd::Lost { reason: d.reason, code: Some(d.code) });
        }
        HostMsg::UserList(l) => Event::Members(l),
        HostMsg::Presence(p) => Event::Presence(p),
        HostMsg::Chat(c) => Event::Chat(c),
        HostMsg::ChatResult(r) => Event::ChatResult(r),
        HostMsg::FileOffered(f) => Event::FileOffered(f),
        HostMsg::Handover(h) => match h.addr.parse::<IpAddr>() {
            Ok(ip) if h.port != 0 => {
                let to = SocketAddr::new(ip, h.port);
                return Reaction::End(LinkEnd::Moved { to, host_name: h.host_name });
            }
            // Nowhere usable to go: stay until the host ends.
            _ => return Reaction::Nothing,
        },
        HostMsg::MediaUnheard(_) if sends_media => {
            Event::MediaBlocked(crate::proto::blocked_warning(host_ip, &welcome.ports))
        }
        HostMsg::MediaUnheard(_) => return Reaction::Nothing,
        HostMsg::ControlResult(r) => Event::ControlResult(r),
        HostMsg::RoomState(r) => Event::RoomState(r),
        HostMsg::ControlNotice(n) => {
            match &n.control {
                Control::Mute { name, .. } if *name == welcome.name => media.mic = false,
                Control::StopVideo { name } if *name == welcome.name => media.camera = false,
                _ => {}
            }
            Event::ControlNotice(n)
        }
        // Only expected during the handshake: ignore.
        HostMsg::Welcome(_) | HostMsg::Refused(_) => return Reaction::Nothing,
    };
    Reaction::Event(event)
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
