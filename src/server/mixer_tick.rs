//! The mixer's tick: every sender's jitter buffer gives up a frame, each
//! room's listeners get their stream (pass-through, the shared mix, an own
//! mix, or nothing), and once a second the reception reports go out. See
//! the parent module for the streams and the rules between them.

use super::*;

impl Mixer {
    /// One frame period: mixes every room and sends each listener its mix
    /// (`send` gets the listener's session and the datagram).
    pub fn tick(&mut self, now_us: u64, mut send: impl FnMut(SessionId, &[u8])) {
        self.stats.ticks += 1;
        self.tick += 1;
        let tick = self.tick;
        let n = self.cfg.frame_samples;
        let codec = self.cfg.codec;
        let unproven = self.cfg.unproven_loss;
        for (id, m) in self.members.iter_mut() {
            m.jb.set_quiet(!m.talking || rms(&m.frame) < QUIET_FRAME_RMS);
            m.has_packet = false;
            m.fec_packet = false;
            let before = m.jb.stats();
            let stretched = before.stretched;
            m.talking = match m.jb.pop(now_us) {
                Playout::Frame((c, data)) => {
                    m.decoder.decode(c, &data, &mut m.frame);
                    m.has_packet = c == codec;
                    m.foreign_codec = c != codec;
                    m.packet = data;
                    true
                }
                Playout::Conceal { next } => {
                    m.decoder.conceal(next.as_ref().map(|(c, d)| (*c, &d[..])), &mut m.frame);
                    if let Some((c, d)) = next.filter(|(c, _)| *c == codec) {
                        m.fec_packet = c == AudioCodec::Opus;
                        m.packet = d;
                    }
                    true
                }
                Playout::Idle => false,
            } && !self.silenced.contains(id);
            let after = m.jb.stats();
            m.waiting = after.stretched > stretched;
            m.jb.log_events_since(&before, now_us, format_args!("host talker {id}"));
            m.end = m.has_packet && m.jb.ended();
            if m.talking {
                m.level = m.level.max(level_from_rms(rms(&m.frame)));
                m.ticks_since_talk = 0;
                // This tick's frame and the PRIME_FRAMES before it.
                let mut slot = if m.history.len() > PRIME_FRAMES {
                    m.history.pop_front().map(|(_, f)| f).unwrap_or_default()
                } else {
                    Vec::with_capacity(n)
                };
                slot.clear();
                slot.extend_from_slice(&m.frame);
                m.history.push_back((tick, slot));
            } else {
                m.ticks_since_talk = m.ticks_since_talk.saturating_add(1);
            }
        }
        let release_after = (RELEASE_AFTER_US / frame_us(n)) as u32;
        let levels_every = u64::from(self.cfg.levels_every.max(1));
        let report_levels = tick.is_multiple_of(levels_every);
        let silent_levels = tick.is_multiple_of(levels_every * SILENT_LEVELS_EVERY);
        let timestamp = (tick as u32).wrapping_mul(n as u32);
        let share = self.cfg.share_mix;
        let groups = match self.groups.take() {
            Some(g) => g,
            None => {
                let mut g: BTreeMap<&str, Vec<SessionId>> = BTreeMap::new();
                for (&s, m) in &self.members {
                    g.entry(&m.room).or_default().push(s);
                }
                g.into_iter().map(|(r, ids)| (r.to_string(), ids)).collect()
            }
        };
        for (room, ids) in &groups {
            let ids = &ids[..];
            let talkers: Vec<SessionId> =
                ids.iter().copied().filter(|s| self.members[s].talking).collect();
            if !self.rooms.contains_key(room) {
                self.rooms.insert(room.clone(), RoomMix::default());
            }
            // A silent room whose listeners all heard its end: nothing to
            // do but the occasional levels.
            if talkers.is_empty()
                && !self.recorded.contains(room.as_str())
                && !(report_levels && silent_levels)
                && ids
                    .iter()
                    .all(|s| self.members[s].stream == Stream::Silent && !self.members[s].hint)
            {
                let state = self.rooms.get_mut(room).expect("inserted above");
                state.quiet_run = state.quiet_run.saturating_add(1);
                state.shared_live = false;
                continue;
            }
            let levels: Vec<SpeakingLevel> = if report_levels {
                let mut l: Vec<SpeakingLevel> = ids
                    .iter()
                    .map(|s| {
                        let m = &self.members[s];
                        SpeakingLevel { session: *s, level: m.level, name: m.name.clone() }
                    })
                    .collect();
                l.sort_by_key(|l| std::cmp::Reverse(l.level));
                l.truncate(MAX_LEVELS);
                l
            } else {
                Vec::new()
            };
            // The sum of every talker, in session order.
            self.sum.fill(0.0);
            for s in &talkers {
                for (acc, x) in self.sum.iter_mut().zip(&self.members[s].frame) {
                    *acc += x;
                }
            }
            let state = self.rooms.get_mut(room).expect("inserted above");
            state.quiet_run = if talkers.is_empty() || rms(&self.sum) < QUIET_RMS {
                state.quiet_run.saturating_add(1)
            } else {
                0
            };
            let quiet = state.quiet_run >= 2;
            let shared_was_live = std::mem::take(&mut state.shared_live);
            let shared_loss = std::mem::take(&mut state.shared_loss);
            let mut shared_ready = false;
            for &s in ids {
                let (talking, prev, since_talk, stale, waited) = {
                    let m = &self.members[&s];
                    (
                        m.talking,
                        m.stream,
                        m.ticks_since_talk,
                        now_us.saturating_sub(m.last_heard_us) > self.cfg.listener_timeout_us,
                        m.mix_for_one,
                    )
                };
                if stale {
                    continue;
                }
                let mut others = talkers.iter().copied().filter(|&t| t != s);
                let (first, more) = (others.next(), others.next().is_some());
                // The mix streams: the shared one for a listener who is not
                // talking, when it can take them over without a seam.
                let mixed = || -> Stream {
                    if !share || talking {
                        return Stream::Own;
                    }
                    match prev {
                        Stream::Shared | Stream::Silent => Stream::Shared,
                        // Its own mix is the shared sum by now, from
                        // another encoder: move in a pause.
                        Stream::Own if quiet || since_talk > release_after => Stream::Shared,
                        Stream::Own => Stream::Own,
                        // A fresh shared stream is primed with the room's
                        // sum, which is what this listener heard.
                        Stream::Forward(_)
                            if !shared_was_live && since_talk > PRIME_FRAMES as u32 =>
                        {
                            Stream::Shared
                        }
                        Stream::Forward(_) => Stream::Own,
                    }
                };
                let want = match (first, more) {
                    (None, _) => Stream::Silent,
                    (Some(t), false)
                        if self.cfg.pass_through
                            && !self.members[&t].foreign_codec
                            && self.members[&t].residual_up_loss(now_us)
                                < PASS_THROUGH_MAX_UP_LOSS =>
                    {
                        match prev {
                            Stream::Silent => Stream::Forward(t),
                            Stream::Forward(x) if x == t => Stream::Forward(t),
                            // From a mix (or another talker's stream), at a
                            // quiet moment: the decoder's state then matters
                            // little.
                            _ if quiet || waited > release_after => Stream::Forward(t),
                            _ => mixed(),
                        }
                    }
                    _ => mixed(),
                };
                let mut sent_end = None;
                let mut forward_from = None;
                let mut fec = false;
                let mut audio = true;
                self.payload.clear();
                match want {
                    Stream::Silent => {
                        audio = false;
                        let m = self.members.get_mut(&s).expect("listed above");
                        if prev != Stream::Silent && !m.ended {
                            // End the talkspurt: an own encoder fades out on
                            // a silent frame; other streams stop with a mark.
                            if let (Stream::Own, Some(enc)) = (prev, m.encoder.as_mut()) {
                                self.mix.fill(0.0);
                                if enc.encode(&self.mix, &mut self.payload).is_ok() {
                                    self.stats.encodes += 1;
                                } else {
                                    self.payload.clear();
                                }
                            }
                            sent_end = Some(true);
                            audio = true;
                        }
                    }
                    Stream::Forward(t) => {
                        let (has, end, has_fec, late) = {
                            let tm = &self.members[&t];
                            (tm.has_packet, tm.end, tm.fec_packet, tm.waiting)
                        };
                        self.forwarded.push((t, self.members[&s].residual_down_loss(unproven)));
                        if has || has_fec {
                            // A frame lost on the way here goes on as the
                            // next packet, for its FEC: the listener rebuilds
                            // it even if the next one's own datagram is lost.
                            forward_from = Some(t);
                            fec = has_fec;
                            sent_end = Some(end && has);
                        } else if late {
                            // Late, not lost: it goes out when it comes, and
                            // the listener's jitter buffer absorbs the wait
                            // (a gap here would make it conceal a frame and
                            // then play one frame later: a slip).
                            audio = false;
                        } else {
                            // Lost, and the next packet not here yet: a gap,
                            // which the listener conceals (with the next
                            // packet's FEC if it comes in time).
                            audio = false;
                            let m = self.members.get_mut(&s).expect("listed above");
                            m.out_seq = m.out_seq.wrapping_add(1);
                            m.ended = false;
                        }
                    }
                    Stream::Own => {
                        // Everyone else, summed in the same order as the shared sum.
                        self.mix.fill(0.0);
                        for o in talkers.iter().filter(|&&o| o != s) {
                            for (acc, x) in self.mix.iter_mut().zip(&self.members[o].frame) {
                                *acc += x;
                            }
                        }
                        for x in self.mix.iter_mut() {
                            *x = soft_limit(*x);
                        }
                        let cfg = self.cfg;
                        let m = self.members.get_mut(&s).expect("listed above");
                        let fresh = prev != Stream::Own || m.encoder.is_none();
                        if fresh {
                            match m.encoder.as_mut() {
                                Some(enc) => enc.reset(),
                                None => {
                                    m.encoder = Encoder::with_complexity(
                                        cfg.codec,
                                        cfg.bitrate,
                                        cfg.complexity,
                                    )
                                    .ok()
                                }
                            }
                        }
                        let loss = expected_loss_percent(m.residual_down_loss(unproven));
                        let mut enc = m.encoder.take();
                        if let (Some(e), true) = (enc.as_mut(), fresh && prev != Stream::Silent) {
                            // Continue what this listener heard.
                            let mut frame = std::mem::take(&mut self.shared_mix);
                            self.stats.encodes += prime(
                                e,
                                &self.members,
                                ids,
                                Some(s),
                                tick,
                                &mut frame,
                                &mut self.datagram,
                            );
                            self.shared_mix = frame;
                        }
                        let m = self.members.get_mut(&s).expect("listed above");
                        m.encoder = enc;
                        let Some(e) = m.encoder.as_mut() else { continue };
                        e.set_expected_loss(loss);
                        if e.encode(&self.mix, &mut self.payload).is_err() {
                            continue;
                        }
                        self.stats.encodes += 1;
                        sent_end = Some(false);
                    }
                    Stream::Shared => {
                        let state = self.rooms.get_mut(&self.members[&s].room).expect("room");
                        if !shared_ready {
                            if state.shared.is_none() {
                                state.shared = Encoder::with_complexity(
                                    self.cfg.codec,
                                    self.cfg.bitrate,
                                    self.cfg.complexity,
                                )
                                .ok();
                            } else if !shared_was_live && let Some(e) = state.shared.as_mut() {
                                e.reset();
                            }
                            let Some(enc) = state.shared.as_mut() else { continue };
                            if !shared_was_live && codec == AudioCodec::Opus {
                                // Continue the room's sum, as its listeners heard it.
                                self.stats.encodes += prime(
                                    enc,
                                    &self.members,
                                    ids,
                                    None,
                                    tick,
                                    &mut self.shared_mix,
                                    &mut self.datagram,
                                );
                            }
                            for (x, s) in self.shared_mix.iter_mut().zip(&self.sum) {
                                *x = soft_limit(*s);
                            }
                            enc.set_expected_loss(expected_loss_percent(shared_loss));
                            self.shared_payload.clear();
                            if enc.encode(&self.shared_mix, &mut self.shared_payload).is_err() {
                                continue;
                            }
                            self.stats.encodes += 1;
                            shared_ready = true;
                            state.shared_live = true;
                        }
                        state.shared_loss =
                            state.shared_loss.max(self.members[&s].residual_down_loss(unproven));
                        sent_end = Some(false);
                    }
                }
                let m = self.members.get_mut(&s).expect("listed above");
                if want != Stream::Own {
                    m.encoder = None;
                }
                let mix_for_one = first.is_some() && !more && !matches!(want, Stream::Forward(_));
                m.mix_for_one = if mix_for_one { m.mix_for_one.saturating_add(1) } else { 0 };
                m.stream = want;
                let datagram = &mut self.datagram;
                datagram.clear();
                if let (true, Some(end)) = (audio, sent_end) {
                    m.out_seq = m.out_seq.wrapping_add(1);
                    m.ended = end;
                    let copies = if codec == AudioCodec::Opus { m.down_red(unproven) } else { 0 };
                    if copies == 0 {
                        m.red_sent.clear();
                    }
                    let payload: &[u8] = if let Some(t) = forward_from {
                        &self.members[&t].packet
                    } else if want == Stream::Shared {
                        &self.shared_payload
                    } else {
                        &self.payload
                    };
                    let m = &self.members[&s];
                    let red = copies > 0 && !payload.is_empty();
                    let (out_codec, body) = if red {
                        // Redundancy for a listener who reports loss: the
                        // last datagrams' packets ride along (RFC 2198).
                        let mut blocks = [RedBlock::default(); MAX_RED_BLOCKS];
                        let mut k = 0;
                        for (seq, was_fec, data) in &m.red_sent {
                            let back = m.out_seq.wrapping_sub(*seq);
                            if (1..=u32::from(copies)).contains(&back) && k < blocks.len() {
                                blocks[k] = RedBlock { back: back as u8, fec: *was_fec, data };
                                k += 1;
                            }
                        }
                        self.stats.red_out += k as u64;
                        self.red_payload.clear();
                        RedPayload::encode(&blocks[..k], payload, &mut self.red_payload);
                        self.red_keep.clear();
                        self.red_keep.extend_from_slice(payload);
                        (AudioCodec::OpusRed, &self.red_payload[..])
                    } else {
                        (codec, payload)
                    };
                    AudioDown {
                        seq: m.out_seq,
                        keepalive: false,
                        end,
                        forwarded: forward_from.is_some(),
                        fec,
                        timestamp,
                        codec: out_codec,
                        samples: n as u16,
                        levels: levels.clone(),
                        payload: body,
                    }
                    .encode(datagram);
                    if forward_from.is_some() {
                        self.stats.forwarded += 1;
                    }
                    if red {
                        // Keep this packet for the next datagrams.
                        let m = self.members.get_mut(&s).expect("listed above");
                        let mut keep = if m.red_sent.len() >= MAX_RED_BLOCKS {
                            m.red_sent.pop_front().map(|(_, _, v)| v).unwrap_or_default()
                        } else {
                            Vec::new()
                        };
                        keep.clear();
                        keep.extend_from_slice(&self.red_keep);
                        m.red_sent.push_back((m.out_seq, fec, keep));
                    }
                } else if report_levels && (!talkers.is_empty() || silent_levels) || m.hint {
                    // No audio this tick: the levels alone, outside the
                    // sequence (and our frame size, to a member sending another).
                    m.hint = false;
                    AudioDown {
                        seq: m.out_seq,
                        keepalive: true,
                        end: false,
                        forwarded: false,
                        fec: false,
                        timestamp,
                        codec,
                        samples: n as u16,
                        levels: levels.clone(),
                        payload: &[],
                    }
                    .encode(datagram);
                } else {
                    continue;
                }
                self.stats.datagrams_out += 1;
                self.stats.bytes_out += datagram.len() as u64;
                send(s, datagram);
            }
            if self.recorded.contains(room.as_str()) && codec == AudioCodec::Opus {
                let state = self.rooms.get_mut(room).expect("inserted above");
                if !shared_ready {
                    for (x, s) in self.shared_mix.iter_mut().zip(&self.sum) {
                        *x = soft_limit(*s);
                    }
                    let cfg = self.cfg;
                    if state.shared.is_none() {
                        state.shared =
                            Encoder::with_complexity(cfg.codec, cfg.bitrate, cfg.complexity).ok();
                    }
                    if let Some(enc) = state.shared.as_mut() {
                        self.shared_payload.clear();
                        shared_ready =
                            enc.encode(&self.shared_mix, &mut self.shared_payload).is_ok();
                        self.stats.encodes += 1;
                        // The shared encoder ran on this tick's room sum: a
                        // listener moving to it continues a live stream.
                        state.shared_live = true;
                    }
                }
                if let (true, Some(tap)) = (shared_ready, self.tap.as_mut()) {
                    tap(room, &self.shared_payload);
                }
            }
        }
        if self.groups.is_none() {
            self.groups = Some(groups);
        }
        for (t, loss) in self.forwarded.drain(..) {
            if let Some(m) = self.members.get_mut(&t) {
                m.forward_loss = m.forward_loss.max(loss);
            }
        }
        if report_levels {
            for m in self.members.values_mut() {
                m.level = 0;
            }
        }
        let every = u64::from(self.cfg.feedback_every.max(1));
        if tick.is_multiple_of(every) {
            self.send_feedback(now_us, &mut send, false);
        } else if tick.is_multiple_of((every / 10).max(1)) {
            // A new sender hears about its uplink's loss after a quarter
            // second of audio, not up to a second (its redundancy and FEC
            // start sooner).
            self.send_feedback(now_us, &mut send, true);
        }
    }

    /// Reception reports to every member whose audio arrived since the last
    /// ones: their loss and jitter, and the loss their encoder should expect.
    fn send_feedback(
        &mut self,
        now_us: u64,
        send: &mut impl FnMut(SessionId, &[u8]),
        first_only: bool,
    ) {
        let proven_clean_after = u64::from(self.cfg.feedback_every.max(1));
        for (&session, m) in self.members.iter_mut() {
            // A first report says "lossy" as soon as it can, "clean" only
            // over a second of packets (`LossMeter::first_report_due`).
            let due = if m.reported {
                !first_only
            } else {
                m.up_meter.first_report_due(proven_clean_after)
            };
            if !due {
                continue;
            }
            m.reported = true;
            let forward_loss = std::mem::take(&mut m.forward_loss);
            let Some((loss, _)) = m.up_meter.take() else { continue };
            let up = m.up_loss.update(loss);
            m.up_lossy = redundancy_frames(up) > 0;
            m.lossy_since_us = match (m.lossy_since_us, redundancy_frames(up) > 0) {
                (_, false) => None,
                (None, true) => Some(now_us),
                (since, true) => since,
            };
            // A forwarded packet's FEC serves both legs; what its listeners
            // measure already includes the uplink's losses (the host leaves
            // a gap for each).
            // Redundancy leaves only the loss it cannot rebuild to FEC.
            let both =
                if m.up_red > 0 { residual_loss(up, m.up_red) } else { up }.max(forward_loss);
            let report = FeedbackDown {
                loss,
                jitter_us: m.jb.jitter_us().round().clamp(0.0, u32::MAX as f64) as u32,
                expected_loss_percent: expected_loss_percent(both),
            };
            self.datagram.clear();
            report.encode(&mut self.datagram);
            self.stats.feedback_out += 1;
            send(session, &self.datagram);
        }
    }
}
