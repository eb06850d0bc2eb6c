//! Who is in which room, for the media services (audio, video, files,
//! screen): the control plane owns sessions; this is a read-mostly copy kept
//! up to date from its events, so a UDP packet can be checked against the
//! sender's session token and routed to its room without asking the control
//! task.

#![warn(missing_docs)]

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use super::core::{HostEvent, SessionId};
use crate::proto::text::{RoomKey, confusable_key};

/// One member as the media services see them (a copy of the control
/// plane's session, from [`HostEvent::Joined`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The member's session id.
    pub session: SessionId,
    /// The session token media datagrams and streams must carry.
    pub token: u64,
    /// The member's name, as the host assigned it.
    pub name: String,
    /// The room's display name (shared by all its members while it exists).
    pub room: String,
    /// The room's key: what [`Directory::room_members`] compares.
    pub room_key: RoomKey,
    /// The member's IP address (updated on a rejoin).
    pub ip: IpAddr,
}

/// The shared, cloneable directory: every clone sees the same sessions.
/// Locks are held only for a lookup; a poisoned lock is used as it is (the
/// data is a plain map, never left half-written).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    inner: Arc<RwLock<HashMap<SessionId, Entry>>>,
    /// Sessions a media datagram with a valid token has come from, and those
    /// heard for the first time since the last [`Directory::take_heard`]
    /// (`server::reach` tells members whose media never arrives).
    heard: Arc<RwLock<HashSet<SessionId>>>,
    fresh: Arc<Mutex<Vec<SessionId>>>,
}

impl Directory {
    /// Keeps the directory in step with the control plane.
    pub fn apply(&self, event: &HostEvent) {
        let mut map = self.inner.write().unwrap_or_else(|e| e.into_inner());
        match event {
            HostEvent::Joined { session, token, name, room, ip } => {
                let entry = Entry {
                    session: *session,
                    token: *token,
                    name: name.clone(),
                    room: room.clone(),
                    room_key: RoomKey::new(room),
                    ip: *ip,
                };
                map.insert(*session, entry);
            }
            HostEvent::Rejoined { session, ip, .. } => {
                if let Some(e) = map.get_mut(session) {
                    e.ip = *ip;
                }
            }
            HostEvent::Left { session, .. } => {
                map.remove(session);
                self.heard.write().unwrap_or_else(|e| e.into_inner()).remove(session);
            }
            _ => {}
        }
    }

    /// Forgets everyone (the host is shutting down).
    pub fn clear(&self) {
        self.inner.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The session, if `token` is its token; `None` for strangers and forgers.
    /// Media services call this for the datagrams they receive, so a success
    /// also records that the session's media reaches us.
    pub fn authenticate(&self, session: SessionId, token: u64) -> Option<Entry> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let entry = map.get(&session).filter(|e| e.token == token).cloned();
        if let Some(e) = &entry {
            let known = self.heard.read().unwrap_or_else(|e| e.into_inner()).contains(&e.session);
            if !known && self.heard.write().unwrap_or_else(|e| e.into_inner()).insert(e.session) {
                self.fresh.lock().unwrap_or_else(|e| e.into_inner()).push(e.session);
            }
        }
        entry
    }

    /// The session that owns the link a media datagram arrived on (its
    /// link authenticated it); `None` if it has left. Like
    /// [`Directory::authenticate`], records that its media reaches us.
    pub fn heard(&self, session: SessionId) -> Option<Entry> {
        let entry = self.get(session)?;
        let known = self.heard.read().unwrap_or_else(|e| e.into_inner()).contains(&entry.session);
        if !known && self.heard.write().unwrap_or_else(|e| e.into_inner()).insert(entry.session) {
            self.fresh.lock().unwrap_or_else(|e| e.into_inner()).push(entry.session);
        }
        Some(entry)
    }

    /// Sessions whose first media datagram arrived since the last call.
    pub fn take_heard(&self) -> Vec<SessionId> {
        std::mem::take(&mut *self.fresh.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Every session, in no particular order.
    pub fn sessions(&self) -> Vec<SessionId> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect()
    }

    /// The member with this session id, if they are in a room.
    pub fn get(&self, session: SessionId) -> Option<Entry> {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).get(&session).cloned()
    }

    /// Everyone in `room` (compared by [`RoomKey`]), in no particular order.
    pub fn room_members(&self, room: &str) -> Vec<Entry> {
        self.members_of(&RoomKey::new(room))
    }

    /// Everyone in the room keyed `key`, in no particular order.
    pub fn members_of(&self, key: &RoomKey) -> Vec<Entry> {
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|e| e.room_key == *key).cloned().collect()
    }

    /// The member of `room` called `name`, rooms compared by [`RoomKey`] and
    /// names by [`confusable_key`] (as the control plane compares them, so
    /// case and look-alike letters do not matter).
    pub fn find_in_room(&self, room: &str, name: &str) -> Option<Entry> {
        let (room, name) = (RoomKey::new(room), confusable_key(name));
        let map = self.inner.read().unwrap_or_else(|e| e.into_inner());
        map.values().find(|e| e.room_key == room && confusable_key(&e.name) == name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::PresenceChange;
    use std::net::Ipv4Addr;

    #[test]
    fn follows_joins_rejoins_and_leaves_and_checks_tokens() {
        let d = Directory::default();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let join = |s, token, name: &str, room: &str| HostEvent::Joined {
            session: SessionId(s),
            token,
            name: name.into(),
            room: room.into(),
            ip,
        };
        d.apply(&join(1, 11, "Ann", "lab"));
        d.apply(&join(2, 22, "bob", "lab"));
        d.apply(&join(3, 33, "cy", "other"));
        assert!(d.take_heard().is_empty(), "no media yet");
        assert_eq!(d.authenticate(SessionId(1), 11).map(|e| e.name), Some("Ann".into()));
        assert_eq!(d.authenticate(SessionId(1), 11).map(|e| e.session), Some(SessionId(1)));
        assert_eq!(d.take_heard(), [SessionId(1)], "heard once, reported once");
        assert!(d.take_heard().is_empty());
        assert_eq!(d.authenticate(SessionId(1), 22), None, "wrong token");
        assert_eq!(d.authenticate(SessionId(9), 11), None, "unknown session");
        assert_eq!(d.authenticate(SessionId(2), 11), None, "another session's token");
        assert!(d.take_heard().is_empty(), "forgeries are not media that reached us");
        let mut all = d.sessions();
        all.sort();
        assert_eq!(all, [SessionId(1), SessionId(2), SessionId(3)]);
        assert_eq!(d.room_members("lab").len(), 2);
        assert_eq!(d.room_members(" LAB ").len(), 2, "rooms compare by RoomKey");
        assert_eq!(d.find_in_room("lab", " ANN ").map(|e| e.session), Some(SessionId(1)));
        assert_eq!(
            d.find_in_room("Lab", "\u{430}nn").map(|e| e.session),
            Some(SessionId(1)),
            "names compare as the control plane compares them (Cyrillic а)"
        );
        assert_eq!(d.find_in_room("other", "ann"), None, "rooms are separate");
        let other_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        d.apply(&HostEvent::Rejoined {
            session: SessionId(2),
            name: "bob".into(),
            room: "lab".into(),
            ip: other_ip,
        });
        assert_eq!(d.get(SessionId(2)).map(|e| e.ip), Some(other_ip));
        d.apply(&HostEvent::Left {
            session: SessionId(1),
            name: "Ann".into(),
            room: "lab".into(),
            change: PresenceChange::Left,
        });
        assert_eq!(d.authenticate(SessionId(1), 11), None);
        d.clear();
        assert!(d.room_members("lab").is_empty());
    }
}
