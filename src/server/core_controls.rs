//! Host controls (issue 17) on the control plane: a member's
//! [`ControlRequest`], the headless host's console, who may do what, and
//! the room's control state ([`RoomState`]). Part of the sans-IO [`Host`];
//! `core.rs` routes the inputs here.

use super::*;

impl Host {
    pub(super) fn on_control_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        sid: SessionId,
        req: ControlRequest,
    ) {
        let Some(room_key) = self.sessions.get(&sid).map(|s| s.room.clone()) else {
            return;
        };
        let outcome = self.apply_control(now, Actor::Member(sid), &room_key, req.control);
        // The requester may have ended the meeting (and so be gone).
        if self.conns.contains_key(&conn) {
            let refused = outcome.err();
            self.send(vec![conn], HostMsg::ControlResult(ControlResult { id: req.id, refused }));
        }
    }

    /// The console speaks for the host in every room: room-wide controls go
    /// to each room, a member's name is looked up in all of them.
    pub(super) fn on_console(&mut self, now: Instant, control: Control) -> Result<String, String> {
        let target = match &control {
            Control::Mute { name, .. }
            | Control::StopVideo { name }
            | Control::Remove { name }
            | Control::CoHost { name, .. } => Some(name.clone()),
            Control::LetBack { name } => {
                let k = key(name.trim());
                let room = self
                    .rooms
                    .iter()
                    .find(|(_, r)| r.removed.iter().any(|x| x.name_key == k))
                    .map(|(rk, _)| rk.clone())
                    .ok_or_else(|| format!("nobody called \"{}\" was removed", name.trim()))?;
                let done = describe(&control);
                self.apply_control(now, Actor::Console, &room, control)?;
                return Ok(done);
            }
            Control::Hand { .. } => return Err("the console has no hand to raise".into()),
            Control::Lock | Control::Unlock | Control::End | Control::Record { .. } => None,
        };
        match target {
            Some(name) => {
                let k = key(name.trim());
                let room = self
                    .sessions
                    .values()
                    .find(|s| key(&s.member.name) == k)
                    .map(|s| s.room.clone())
                    .ok_or_else(|| format!("no such member \"{}\" in any meeting", name.trim()))?;
                let done = describe(&control);
                self.apply_control(now, Actor::Console, &room, control)?;
                Ok(done)
            }
            None => {
                let rooms: Vec<RoomKey> = self.rooms.keys().cloned().collect();
                if rooms.is_empty() {
                    return Err("there is no meeting yet (nobody has joined)".into());
                }
                let mut done = Vec::new();
                for room in rooms {
                    let display = self.rooms.get(&room).map(|r| r.display.clone());
                    self.apply_control(now, Actor::Console, &room, control.clone())?;
                    done.extend(display);
                }
                Ok(format!("{} in {}", describe(&control), done.join(", ")))
            }
        }
    }

    /// Applies `control` in `room_key` on behalf of `actor`: `Err` is the
    /// refusal as a sentence for the user.
    pub(super) fn apply_control(
        &mut self,
        now: Instant,
        actor: Actor,
        room_key: &RoomKey,
        control: Control,
    ) -> Result<(), String> {
        let (by, is_host, is_co_host) = match actor {
            Actor::Console => ("the host".to_string(), true, false),
            Actor::Member(sid) => {
                let s = self.sessions.get(&sid).ok_or("you are not in the meeting")?;
                (s.member.name.clone(), s.host, s.co_host)
            }
        };
        let room_display = self.rooms.get(room_key).ok_or("the meeting has ended")?.display.clone();
        if let Control::Hand { raised } = control {
            let Actor::Member(sid) = actor else {
                return Err("the console has no hand to raise".into());
            };
            let now_ms = self.now_ms(now);
            let s = self.sessions.get_mut(&sid).expect("checked above");
            match (raised, s.hand) {
                (true, None) => s.hand = Some(now_ms),
                (false, Some(_)) => s.hand = None,
                _ => return Ok(()),
            }
            self.push_room_state(room_key);
            return Ok(());
        }
        let allowed = match control {
            Control::CoHost { .. } => is_host,
            _ => is_host || is_co_host,
        };
        if !allowed {
            let who = if matches!(control, Control::CoHost { .. }) {
                "only the host"
            } else {
                "only the host or a co-host"
            };
            return Err(format!("{who} can {}", verb(&control)));
        }
        // The member a control is about, looked up in this room.
        let find = |this: &Host, name: &str| -> Result<SessionId, String> {
            let k = key(name.trim());
            this.rooms[room_key]
                .members
                .iter()
                .copied()
                .find(|m| this.sessions.get(m).is_some_and(|s| key(&s.member.name) == k))
                .ok_or_else(|| {
                    format!("no such member \"{}\" in meeting \"{room_display}\"", name.trim())
                })
        };
        let protect = |this: &Host, target: SessionId| -> Result<(), String> {
            if this.sessions.get(&target).is_some_and(|s| s.host) {
                Err(format!("nobody can {} the host", verb(&control).replace(" someone", "")))
            } else {
                Ok(())
            }
        };
        let room_wide = |this: &mut Host, text: String, control: Control| {
            let to = this.conns_of(room_key, None);
            this.send(to, HostMsg::ControlNotice(ControlNotice { by: by.clone(), control, text }));
        };
        match control.clone() {
            Control::Hand { .. } => unreachable!("handled above"),
            Control::Lock | Control::Unlock => {
                let on = control == Control::Lock;
                let room = self.rooms.get_mut(room_key).expect("checked above");
                if room.locked != on {
                    room.locked = on;
                    let text = if on {
                        format!("{by} locked the meeting: nobody new can join")
                    } else {
                        format!("{by} unlocked the meeting")
                    };
                    room_wide(self, text, control);
                    self.push_room_state(room_key);
                }
            }
            Control::Record { on } => {
                if let (true, Some(why)) = (on, &self.config.cannot_record) {
                    return Err(why.clone());
                }
                let room = self.rooms.get_mut(room_key).expect("checked above");
                if room.recording != on {
                    room.recording = on;
                    let text = if on {
                        format!("{by} started recording the meeting (sound and chat)")
                    } else {
                        format!("{by} stopped recording the meeting")
                    };
                    self.out.push_back(Output::Event(HostEvent::Recording {
                        room: room_display.clone(),
                        on,
                    }));
                    room_wide(self, text, control);
                    self.push_room_state(room_key);
                }
            }
            Control::Mute { name, may_unmute } => {
                let target = find(self, &name)?;
                protect(self, target)?;
                let s = self.sessions.get_mut(&target).expect("found above");
                s.member.mic = false;
                let was_held = s.host_mute == Some(false);
                s.host_mute = Some(may_unmute);
                if was_held == may_unmute {
                    let event = HostEvent::HeldMuted { session: target, held: !may_unmute };
                    self.out.push_back(Output::Event(event));
                }
                let text = if may_unmute {
                    format!("{by} muted you; you may unmute yourself")
                } else {
                    format!("{by} muted you; only the host can let you unmute")
                };
                let conn = s.conn;
                self.send(vec![conn], HostMsg::ControlNotice(ControlNotice { by, control, text }));
                self.push_user_list(room_key);
                self.push_room_state(room_key);
            }
            Control::StopVideo { name } => {
                let target = find(self, &name)?;
                protect(self, target)?;
                let s = self.sessions.get_mut(&target).expect("found above");
                s.member.camera = false;
                s.video_stopped = true;
                let text = format!("{by} stopped your video");
                let conn = s.conn;
                self.send(vec![conn], HostMsg::ControlNotice(ControlNotice { by, control, text }));
                self.push_user_list(room_key);
                self.push_room_state(room_key);
            }
            Control::Remove { name } => {
                let target = find(self, &name)?;
                protect(self, target)?;
                if actor_is(actor, target) {
                    return Err("you cannot remove yourself: leave the meeting instead".into());
                }
                let s = &self.sessions[&target];
                let (conn, removal) = (
                    s.conn,
                    Removal {
                        token: s.token,
                        name_key: key(&s.member.name),
                        ip: s.member.ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
                    },
                );
                self.rooms.get_mut(room_key).expect("checked above").removed.push(removal);
                let notice = Disconnect {
                    code: DisconnectCode::Removed,
                    reason: format!("{by} removed you from meeting \"{room_display}\""),
                };
                self.drop_conn(conn, PresenceChange::Left, Some(notice));
            }
            Control::LetBack { name } => {
                let k = key(name.trim());
                let room = self.rooms.get_mut(room_key).expect("checked above");
                let before = room.removed.len();
                room.removed.retain(|r| r.name_key != k);
                if room.removed.len() == before {
                    return Err(format!(
                        "nobody called \"{}\" was removed from meeting \"{room_display}\"",
                        name.trim()
                    ));
                }
            }
            Control::End => {
                let conns = self.conns_of(room_key, None);
                let reason = format!("{by} ended the meeting");
                for conn in conns {
                    let notice = Disconnect { code: DisconnectCode::Ended, reason: reason.clone() };
                    self.drop_conn(conn, PresenceChange::Left, Some(notice));
                }
            }
            Control::CoHost { name, on } => {
                let target = find(self, &name)?;
                protect(self, target)?;
                let s = self.sessions.get_mut(&target).expect("found above");
                if s.co_host != on {
                    s.co_host = on;
                    let who = s.member.name.clone();
                    let room = self.rooms.get_mut(room_key).expect("checked above");
                    room.co_hosts.retain(|m| *m != target);
                    if on {
                        room.co_hosts.push(target);
                    }
                    let text = if on {
                        format!("{by} made {who} a co-host")
                    } else {
                        format!("{by} made {who} no longer a co-host")
                    };
                    room_wide(self, text, control);
                    self.push_room_state(room_key);
                }
            }
        }
        Ok(())
    }

    /// The room's control state, as [`RoomState`].
    pub fn room_state(&self, room_key: &RoomKey) -> Option<RoomState> {
        let room = self.rooms.get(room_key)?;
        let members: Vec<&Session> =
            room.members.iter().filter_map(|m| self.sessions.get(m)).collect();
        let mut hands: Vec<RaisedHand> = members
            .iter()
            .filter_map(|s| {
                s.hand.map(|since_ms| RaisedHand { name: s.member.name.clone(), since_ms })
            })
            .collect();
        hands.sort_by_key(|h| h.since_ms);
        Some(RoomState {
            room: room.display.clone(),
            locked: room.locked,
            recording: room.recording,
            co_hosts: room
                .co_hosts
                .iter()
                .filter_map(|m| self.sessions.get(m))
                .map(|s| s.member.name.clone())
                .collect(),
            hands,
            host_muted: members
                .iter()
                .filter_map(|s| {
                    s.host_mute
                        .map(|may_unmute| HostMute { name: s.member.name.clone(), may_unmute })
                })
                .collect(),
            video_stopped: members
                .iter()
                .filter(|s| s.video_stopped)
                .map(|s| s.member.name.clone())
                .collect(),
        })
    }

    pub(super) fn push_room_state(&mut self, room_key: &RoomKey) {
        if let Some(state) = self.room_state(room_key) {
            let to = self.conns_of(room_key, None);
            self.send(to, HostMsg::RoomState(state));
        }
    }
}

fn actor_is(actor: Actor, sid: SessionId) -> bool {
    matches!(actor, Actor::Member(s) if s == sid)
}

/// What a control does, for "only the host can …".
fn verb(control: &Control) -> &'static str {
    match control {
        Control::Lock => "lock the meeting",
        Control::Unlock => "unlock the meeting",
        Control::Mute { .. } => "mute someone",
        Control::StopVideo { .. } => "stop someone's video",
        Control::Remove { .. } => "remove someone",
        Control::LetBack { .. } => "let someone back in",
        Control::End => "end the meeting",
        Control::CoHost { .. } => "make someone co-host",
        Control::Hand { .. } => "raise a hand",
        Control::Record { .. } => "start or stop recording",
    }
}

/// A console's summary of a control ("locked", "muted Ana").
fn describe(control: &Control) -> String {
    match control {
        Control::Lock => "locked".into(),
        Control::Unlock => "unlocked".into(),
        Control::End => "ended the meeting".into(),
        Control::Record { on } => format!("recording {}", if *on { "on" } else { "off" }),
        Control::Mute { name, may_unmute: true } => format!("muted {}", name.trim()),
        Control::Mute { name, may_unmute: false } => {
            format!("muted {} (they cannot unmute)", name.trim())
        }
        Control::StopVideo { name } => format!("stopped the video of {}", name.trim()),
        Control::Remove { name } => format!("removed {}", name.trim()),
        Control::LetBack { name } => format!("let {} back in", name.trim()),
        Control::CoHost { name, on: true } => format!("made {} a co-host", name.trim()),
        Control::CoHost { name, on: false } => format!("{} is no longer a co-host", name.trim()),
        Control::Hand { raised } => format!("hand {}", if *raised { "raised" } else { "lowered" }),
    }
}
