//! Does a member's media reach the host? A member whose audio and video
//! datagrams never arrive (a firewall that drops UDP but lets the control
//! connection through) sees and hears nothing, and without this nobody would
//! be told why.
//!
//! [`MediaWatch`] is sans-IO: joins, leaves, "first datagram heard" and time
//! go in; members overdue by [`MediaWatch::GRACE`] come out, once each.
//! [`run`] drives it from the host's events and the `Directory`'s record of
//! sessions whose media datagrams authenticated, tells each overdue member
//! (`HostMsg::MediaUnheard`) and names them in the host's log.
//!
//! It watches whatever the media services authenticate through the
//! `Directory`, not a particular port, so it stays true when the transport
//! changes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use smol::Timer;
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;

use super::control::ControlHandle;
use super::core::{HostEvent, SessionId};
use super::directory::Directory;
use crate::proto::{HostMsg, MediaUnheard};

/// A member whose media has not reached the host in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unheard {
    pub session: SessionId,
    pub name: String,
    pub room: String,
    pub ip: IpAddr,
    pub waited: Duration,
}

#[derive(Debug, Clone)]
struct Pending {
    since: Instant,
    name: String,
    room: String,
    ip: IpAddr,
}

/// Members who joined and have not been heard on the media channels yet.
#[derive(Debug, Default, Clone)]
pub struct MediaWatch {
    pending: HashMap<SessionId, Pending>,
}

impl MediaWatch {
    /// The "within 3 s of joining": media engines send their first
    /// datagram at once and then again within 2 s (audio keepalive,
    /// `client::audio::KEEPALIVE_EVERY`), and the video engine its hello
    /// every 100 ms until the host answers, so 3 s is several chances.
    pub const GRACE: Duration = Duration::from_secs(3);

    pub fn new() -> MediaWatch {
        MediaWatch::default()
    }

    /// A member joined at `now`.
    pub fn joined(&mut self, now: Instant, session: SessionId, name: &str, room: &str, ip: IpAddr) {
        let p = Pending { since: now, name: name.to_string(), room: room.to_string(), ip };
        self.pending.insert(session, p);
    }

    /// A media datagram from `session` arrived: nothing to report.
    pub fn heard(&mut self, session: SessionId) {
        self.pending.remove(&session);
    }

    pub fn left(&mut self, session: SessionId) {
        self.pending.remove(&session);
    }

    /// Members overdue at `now`, each reported once, in session order.
    pub fn poll(&mut self, now: Instant) -> Vec<Unheard> {
        let mut due: Vec<Unheard> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.since) >= Self::GRACE)
            .map(|(s, p)| Unheard {
                session: *s,
                name: p.name.clone(),
                room: p.room.clone(),
                ip: p.ip,
                waited: now.saturating_duration_since(p.since),
            })
            .collect();
        due.sort_by_key(|u| u.session);
        for u in &due {
            self.pending.remove(&u.session);
        }
        due
    }

    /// When the next member falls due, so a driver knows how long to sleep.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.since + Self::GRACE).min()
    }
}

pub use crate::proto::{blocked_warning, describe_media_ports};

/// How often the driver collects "first datagram heard" from the directory.
const HEARD_POLL: Duration = Duration::from_millis(250);

/// Runs the watch until `events` closes: tells each unheard member over the
/// control channel, logs it naming the member, and passes it to `notices`
/// (dropped if nobody reads them). `media_ports` only words the log line.
pub async fn run(
    events: Receiver<HostEvent>,
    directory: Directory,
    control: ControlHandle,
    notices: Sender<Unheard>,
    media_ports: String,
) {
    let mut watch = MediaWatch::new();
    loop {
        let now = Instant::now();
        for s in directory.take_heard() {
            watch.heard(s);
        }
        for u in watch.poll(now) {
            // The host's own log line (`sapora host`) says it once; this is
            // for SAPORA_LOG=info.
            tracing::info!(
                member = %u.name, ip = %u.ip, room = %u.room,
                "no audio/video datagram from {} ({}) within {} s of joining: UDP to {} may be blocked",
                u.name, u.ip, u.waited.as_secs(), media_ports
            );
            let waited_ms = u32::try_from(u.waited.as_millis()).unwrap_or(u32::MAX);
            control
                .deliver(vec![u.session], HostMsg::MediaUnheard(MediaUnheard { waited_ms }))
                .await;
            let _ = notices.try_send(u);
        }
        let wake_at = watch.poll_timeout().map_or(now + HEARD_POLL, |t| t.min(now + HEARD_POLL));
        let next = async { events.recv().await.ok().map(Some) }
            .or(async {
                Timer::at(wake_at).await;
                Some(None)
            })
            .await;
        match next {
            None => return,
            Some(None) => {}
            Some(Some(HostEvent::Joined { session, name, room, ip, .. })) => {
                watch.joined(Instant::now(), session, &name, &room, ip)
            }
            Some(Some(HostEvent::Left { session, .. })) => watch.left(session),
            Some(Some(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn media_ports_in_words() {
        let mut p = crate::proto::Ports::with_offset(0).unwrap();
        assert_eq!(describe_media_ports(&p), "port 5000");
        p.control = 5010;
        assert_eq!(describe_media_ports(&p), "port 5010");
        let w = blocked_warning(IpAddr::V4(Ipv4Addr::new(10, 77, 0, 1)), &p);
        assert!(w.contains("UDP to 10.77.0.1 port 5010 seems blocked by a firewall"), "{w}");
    }

    #[test]
    fn reports_members_unheard_after_the_grace_time_once() {
        let t0 = Instant::now();
        let ip = IpAddr::V4(Ipv4Addr::new(10, 77, 0, 2));
        let mut w = MediaWatch::new();
        w.joined(t0, SessionId(1), "ana", "default", ip);
        w.joined(t0 + Duration::from_millis(500), SessionId(2), "bo", "default", ip);
        w.joined(t0, SessionId(3), "cy", "default", ip);
        w.heard(SessionId(3));
        assert_eq!(w.poll_timeout(), Some(t0 + MediaWatch::GRACE));
        assert!(w.poll(t0 + MediaWatch::GRACE - Duration::from_millis(1)).is_empty());
        let due = w.poll(t0 + MediaWatch::GRACE);
        assert_eq!(due.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["ana"]);
        assert_eq!(due[0].waited, MediaWatch::GRACE);
        assert!(w.poll(t0 + MediaWatch::GRACE).is_empty(), "reported once");
        // bo leaves before his time is up: nothing to say.
        w.left(SessionId(2));
        assert!(w.poll(t0 + Duration::from_secs(60)).is_empty());
        assert_eq!(w.poll_timeout(), None);
    }
}
