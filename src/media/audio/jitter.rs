//! Adaptive jitter buffer, sans-IO: time comes in as microseconds on any
//! clock the caller likes (a test's virtual clock, or `Instant` offsets).
//!
//! The owner pushes packets as they arrive and pops one frame per frame
//! period. The buffer plays packets in sequence order and decides, at every
//! pop, between playing, concealing a loss, and stretching:
//!
//! - the next packet is here → play it;
//! - it is missing but enough later packets are here (more than the target
//!   depth) → call it lost, conceal (with the next packet for Opus FEC), move on;
//! - it is missing and nothing later is here (or less than the jitter
//!   allows) → it is probably just
//!   late: conceal *without* moving on, so the delay grows by one frame
//!   (this is how the buffer grows under jitter, and absorbs a sender whose
//!   clock runs slow); if those packets then turn out lost, the frames
//!   already stretched for are skipped rather than concealed a second time;
//! - nothing arrives for a few frames → the sender stopped (mute, end of
//!   talk): report [`Playout::Idle`] and start afresh with its next packet;
//! - the packet just played was marked as the end of a talkspurt
//!   ([`JitterBuffer::push_marked`]) → the gap that follows is silence, not
//!   loss: [`Playout::Idle`] at once, nothing concealed or counted lost, and
//!   playout starts afresh (at the depth the network needs) with the next
//!   talkspurt. A pause is where a buffer may change its delay unheard.
//!
//! A stream with redundancy (each packet also carries the frames before it)
//! fills gaps with the copies ([`JitterBuffer::push_redundant`]) and holds as
//! many frames as the copies go back ([`JitterBuffer::set_min_depth`]),
//! growing to that depth in a pause (a 20 ms jump mid-word costs a
//! listener, and PESQ, more than a concealed frame).
//!
//! A stream starts at the start-up depth ([`JitterConfig::startup_frames`],
//! the most copies a sender adds) until it proves clean or its first
//! talkspurt ends: on a lossy link the copies start a moment into the call,
//! and find the buffer ready instead of growing it while the first words play.
//!
//! It shrinks when the smallest depth seen over a window (half a second) is
//! above the target, by dropping the excess, which also absorbs a sender whose
//! clock runs fast. Dropping a frame mid-sound is a click, so the drop waits
//! for the owner to say the audio is quiet ([`JitterBuffer::set_quiet`]), a
//! pause between words, for up to three more windows. The target depth follows the RFC 3550 interarrival
//! jitter estimate. It never holds more than `max_delay_us`: anything beyond
//! is dropped oldest-first, and packets for frames already played are late
//! and dropped.

use std::collections::BTreeMap;

/// A [`JitterBuffer`]'s tuning. Durations are in microseconds on the
/// owner's clock; counts are in frames or packets as named.
#[derive(Debug, Clone, Copy)]
pub struct JitterConfig {
    /// One frame's duration.
    pub frame_us: u64,
    /// The most audio the buffer holds (200 ms).
    pub max_delay_us: u64,
    /// Frames concealed without any arrival before the sender counts as gone.
    pub idle_after: u32,
    /// Pops per shrink decision (half a second: a frame of delay gained by
    /// waiting for one late packet is won back soon).
    pub shrink_window: u32,
    /// Frames held from a stream's start until it proves clean
    /// ([`JitterConfig::startup_clean`]): the depth redundancy will need
    /// if the link turns out lossy (the most copies a packet carries,
    /// [`MAX_RED_BLOCKS`](crate::proto::MAX_RED_BLOCKS)), so that copies
    /// arriving a second into a call find the buffer ready rather than
    /// growing it frame by frame mid-word. 0: start at the jitter's depth.
    pub startup_frames: u64,
    /// Packets in a row without a gap that end the start-up depth (one
    /// second of 20 ms frames; at 10 % loss a run that long comes about
    /// once in 200 calls). The buffer then shrinks to its target in a
    /// pause. The end of the first talkspurt ends it as well.
    pub startup_clean: u32,
}

impl JitterConfig {
    /// The defaults for frames of `frame_us` µs (20 000 for 20 ms Opus
    /// frames; 0 is taken as 1): hold at most 200 ms, idle after 6 frames
    /// concealed, shrink decisions every half second, start two frames deep
    /// until a second of packets without a gap.
    pub fn new(frame_us: u64) -> JitterConfig {
        JitterConfig {
            frame_us: frame_us.max(1),
            max_delay_us: 200_000,
            idle_after: 6,
            shrink_window: (500_000 / frame_us.max(1)) as u32,
            startup_frames: crate::proto::MAX_RED_BLOCKS as u64,
            startup_clean: (1_000_000 / frame_us.max(1)) as u32,
        }
    }

    fn max_frames(&self) -> u64 {
        (self.max_delay_us / self.frame_us).max(1)
    }
}

/// What to play for one frame period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout<T> {
    /// Play this packet's frame.
    Frame(T),
    /// A frame is missing: conceal it. `next` is the following packet when it
    /// is already here (Opus can rebuild the lost frame from its FEC data).
    Conceal {
        /// The packet of the frame after the missing one, if already here.
        next: Option<T>,
    },
    /// The sender is not sending (not started, muted, or stopped).
    Idle,
}

/// Counters since the buffer was made (each a number of packets or frames).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed, duplicates and late ones included.
    pub received: u64,
    /// Packets pushed for a frame that was already buffered.
    pub duplicates: u64,
    /// Arrived after their frame was played or given up on.
    pub late: u64,
    /// Frames concealed and skipped (never arrived in time).
    pub lost: u64,
    /// Frames concealed while waiting for a late packet (the delay grew).
    pub stretched: u64,
    /// Frames dropped to shrink the delay or to stay under the maximum.
    pub dropped: u64,
    /// Frames played from a packet.
    pub played: u64,
    /// Times the sender went idle or restarted.
    pub resets: u64,
    /// Talkspurts that ended with an end mark (their pauses were silence).
    pub talkspurts: u64,
    /// Frames whose own packet never came, filled in from a later packet's
    /// redundant copy ([`JitterBuffer::push_redundant`]) in time to play.
    pub recovered: u64,
}

/// What became of a pushed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Buffered for playout.
    Accepted,
    /// Its frame was already buffered; dropped.
    Duplicate,
    /// Its frame was already played or concealed; dropped.
    Late,
}

/// A buffered packet, or an end-of-talkspurt mark without audio.
#[derive(Debug)]
struct Slot<T> {
    item: Option<T>,
    end: bool,
}

/// The adaptive jitter buffer (module docs): packets of type `T` (an Opus
/// payload, or anything cloneable) in by sequence number and arrival time,
/// one [`Playout`] out per frame period.
#[derive(Debug)]
pub struct JitterBuffer<T> {
    cfg: JitterConfig,
    slots: BTreeMap<u64, Slot<T>>,
    /// Extended sequence number of the next frame to play; `None` until
    /// playout starts.
    next: Option<u64>,
    /// Extended sequence number of the newest packet seen (for unwrapping).
    highest: Option<u64>,
    last_arrival: Option<(u64, u32)>,
    /// RFC 3550 interarrival jitter, µs.
    jitter_us: f64,
    loss_rate: f64,
    misses: u32,
    /// Frames of stretch concealment not yet won back: when the packets we
    /// waited for turn out to be lost, that many are skipped, not concealed twice.
    debt: u64,
    /// The stream has not proved clean yet: hold `startup_frames`.
    startup: bool,
    /// Packets in a row without a gap, up to `startup_clean`.
    clean_run: u32,
    /// Frames still to drop in the pause under way (see `shrink`).
    excess: u64,
    /// The frame the last stretch waited for.
    waited: Option<u64>,
    window_min: u64,
    window_pops: u32,
    /// The owner's latest word on whether the audio just played was quiet.
    quiet: bool,
    /// The frame just played ended a talkspurt.
    ended: bool,
    /// Between talkspurts: packets below this are late.
    floor: Option<u64>,
    /// Frames of later packets the owner wants held: the stream's
    /// redundancy depth ([`JitterBuffer::set_min_depth`]), the largest
    /// seen lately, and pushes since it was last seen that large.
    min_depth: u64,
    min_depth_age: u32,
    /// The buffer grew by a frame for the redundancy and no packet came
    /// since (so it does not grow on and on at the end of a talkspurt).
    grew: bool,
    /// Pops in a row that found fewer frames buffered than the redundancy needs.
    short_pops: u32,
    stats: JitterStats,
}

/// Packets over which [`JitterBuffer::set_min_depth`] keeps the largest
/// redundancy depth seen (a second of 20 ms frames).
pub const DEPTH_MEMORY: u32 = 50;

/// Windows a shrink may wait for a quiet moment before dropping anyway.
const SHRINK_WAIT_WINDOWS: u32 = 4;

impl<T: Clone> JitterBuffer<T> {
    /// An empty buffer; playout starts with the first packet pushed.
    pub fn new(cfg: JitterConfig) -> JitterBuffer<T> {
        JitterBuffer {
            cfg,
            slots: BTreeMap::new(),
            next: None,
            highest: None,
            last_arrival: None,
            jitter_us: 0.0,
            loss_rate: 0.0,
            misses: 0,
            debt: 0,
            waited: None,
            excess: 0,
            startup: cfg.startup_frames > 0,
            clean_run: 0,
            window_min: u64::MAX,
            window_pops: 0,
            quiet: true,
            ended: false,
            floor: None,
            min_depth: 0,
            min_depth_age: 0,
            grew: false,
            short_pops: 0,
            stats: JitterStats::default(),
        }
    }

    /// The packet just pushed carries copies of the `frames` frames before
    /// it (RFC 2198 redundancy; 0: none): hold that many frames beyond the
    /// one playing, so that a lost packet's copy arrives before its turn.
    /// The largest depth of the last [`DEPTH_MEMORY`] packets counts, so a
    /// packet that happens to carry fewer copies (the first of a stream,
    /// one after a gap) does not move the target. 0 (the default, and a
    /// clean network's) adds no delay.
    pub fn set_min_depth(&mut self, frames: u8) {
        let frames = u64::from(frames);
        if frames >= self.min_depth {
            self.min_depth = frames;
            self.min_depth_age = 0;
        } else {
            self.min_depth_age += 1;
            if self.min_depth_age > DEPTH_MEMORY {
                self.min_depth = frames;
                self.min_depth_age = 0;
            }
        }
    }

    /// A redundant copy of frame `seq` arrived inside a later packet
    /// (which the owner pushed first). It fills the frame's slot if that
    /// frame is still to play and its own packet never came; otherwise it
    /// is ignored (the usual case: the original arrived). Copies do not
    /// count as arrivals: the jitter estimate, the counters of received and
    /// duplicate packets, and the start of playout are left alone. Returns
    /// whether it filled a gap.
    pub fn push_redundant(&mut self, seq: u32, item: T) -> bool {
        if !self.wants(seq) {
            return false;
        }
        let ext = self.unwrap_seq(seq);
        self.slots.insert(ext, Slot { item: Some(item), end: false });
        self.stats.recovered += 1;
        true
    }

    /// Whether a redundant copy of frame `seq` would fill a gap
    /// ([`JitterBuffer::push_redundant`]): lets an owner skip copying
    /// the bytes of the copies it does not need.
    pub fn wants(&self, seq: u32) -> bool {
        let Some(highest) = self.highest else { return false };
        let ext = self.unwrap_seq(seq);
        if ext >= highest || highest - ext >= self.cfg.max_frames() {
            return false;
        }
        let fills = match self.next.or(self.floor) {
            // Still to play.
            Some(n) if self.next.is_some() => ext >= n,
            // Between talkspurts or before playout: only a gap inside what
            // is buffered, never in front of it (an earlier talkspurt's tail).
            floor => {
                floor.is_none_or(|f| ext >= f)
                    && self.slots.first_key_value().is_some_and(|(&first, _)| first < ext)
            }
        };
        fills && !self.slots.contains_key(&ext)
    }

    /// The frame the last pop played ended its talkspurt (the next pops are
    /// [`Playout::Idle`] until the sender talks again).
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Whether the frame the owner just played was quiet (a pause): the
    /// next frame dropped to shrink the delay then goes unheard. An owner
    /// that never says is taken as always quiet (shrinks at once).
    pub fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    /// The counters so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Logs at debug level (target `sapora::jitter`, enabled with
    /// `SAPORA_LOG=warn,sapora::jitter=debug`) the frames lost, stretched,
    /// dropped and recovered and the resets since `before` (an earlier
    /// [`JitterBuffer::stats`]), with the depth in frames; `who` names the
    /// stream ("client", "host talker 3"). Logs nothing if none changed.
    pub fn log_events_since(&self, before: &JitterStats, now_us: u64, who: std::fmt::Arguments) {
        let after = &self.stats;
        if (after.lost, after.stretched, after.dropped, after.recovered, after.resets)
            == (before.lost, before.stretched, before.dropped, before.recovered, before.resets)
        {
            return;
        }
        tracing::debug!(
            target: "sapora::jitter",
            "{who} t={}ms: lost {} stretched {} dropped {} recovered {} resets {} depth {} frames",
            now_us / 1000,
            after.lost - before.lost,
            after.stretched - before.stretched,
            after.dropped - before.dropped,
            after.recovered - before.recovered,
            after.resets - before.resets,
            self.delay_us() / self.cfg.frame_us,
        );
    }

    /// The interarrival jitter estimate, µs.
    pub fn jitter_us(&self) -> f64 {
        self.jitter_us
    }

    /// Frames the buffer aims to hold beyond the one being played: enough
    /// for the jitter, and at least one on a lossy network so that a lost
    /// frame can be rebuilt from the next packet's FEC.
    pub fn target_frames(&self) -> u64 {
        let mut t = self.wait_frames();
        if self.loss_rate > 0.01 {
            t = t.max(1);
        }
        if self.startup {
            t = t.max(self.cfg.startup_frames);
        }
        t.max(self.min_depth).min(self.cfg.max_frames() - 1)
    }

    /// Frames of later packets that must be here before a missing one is
    /// given up as lost: the network's jitter (twice the RFC 3550
    /// estimate), nothing else. Loss and redundancy raise the target depth
    /// ([`JitterBuffer::target_frames`]) but say nothing about how late a
    /// packet may still come, so a packet missing while later ones are
    /// here is lost, concealed and skipped, not waited for: the buffer
    /// grows to a deeper target in a pause, never by a stretch mid-word.
    fn wait_frames(&self) -> u64 {
        ((2.0 * self.jitter_us / self.cfg.frame_us as f64).round() as u64)
            .min(self.cfg.max_frames() - 1)
    }

    /// Playout is under way but the next frame's packet is not here yet: a
    /// pop now would conceal. A caller that can afford to wait a moment
    /// (a late packet on a busy machine) may pop a little later instead.
    pub fn waiting(&self) -> bool {
        self.next.is_some_and(|n| !self.slots.contains_key(&n)) && self.misses == 0 && !self.ended
    }

    /// [`JitterBuffer::waiting`], and too few later packets are here to
    /// give the frame up: a pop now would stretch (conceal it and wait, the
    /// delay growing by a frame, a 20 ms slip mid-word) rather than conceal
    /// a loss and move on. Where a missing packet is most likely lost (later
    /// ones came), waiting for it would only delay the others.
    pub fn late(&self) -> bool {
        self.waiting()
            && self.next.is_some_and(|n| {
                let later = self.slots.last_key_value().map_or(0, |(&l, _)| l.saturating_sub(n));
                later < self.wait_frames().max(1)
            })
    }

    /// Recent share of frames lost (exponentially weighted over ~100 frames).
    pub fn loss_rate(&self) -> f64 {
        self.loss_rate
    }

    fn note_loss(&mut self, lost: bool) {
        self.loss_rate += (if lost { 1.0 } else { 0.0 } - self.loss_rate) / 100.0;
    }

    /// The audio currently buffered ahead of the playout point, µs.
    pub fn delay_us(&self) -> u64 {
        self.span() * self.cfg.frame_us
    }

    fn span(&self) -> u64 {
        match (self.next, self.slots.last_key_value()) {
            (Some(n), Some((&last, _))) if last >= n => last + 1 - n,
            (None, Some((&last, _))) => {
                let first = *self.slots.keys().next().unwrap_or(&last);
                last + 1 - first
            }
            _ => 0,
        }
    }

    fn unwrap_seq(&self, seq: u32) -> u64 {
        match self.highest {
            None => u64::from(seq) + (1 << 32),
            Some(h) => {
                let d = i64::from(seq.wrapping_sub(h as u32) as i32);
                (h as i64 + d).max(0) as u64
            }
        }
    }

    fn reset(&mut self) {
        self.slots.clear();
        self.next = None;
        self.highest = None;
        self.misses = 0;
        self.debt = 0;
        self.waited = None;
        self.excess = 0;
        self.startup = self.cfg.startup_frames > 0;
        self.clean_run = 0;
        self.last_arrival = None;
        self.window_min = u64::MAX;
        self.window_pops = 0;
        self.ended = false;
        self.floor = None;
        self.stats.resets += 1;
    }

    /// Playout stops after a talkspurt; the next one starts afresh from its
    /// first packet (already here, or still to come). Unlike a reset, the
    /// sequence and the jitter estimate carry on: the sender's clocks do.
    fn end_talkspurt(&mut self) {
        // The first pause ends the start-up depth too: the next talkspurt
        // starts at the depth the link has shown it needs (the copies'
        // depth on a lossy one), and short ones (a click, a "yes") do not
        // each pay the start-up delay.
        self.startup = false;
        self.floor = self.next;
        self.next = None;
        self.misses = 0;
        self.debt = 0;
        self.excess = 0;
        self.window_min = u64::MAX;
        self.window_pops = 0;
        self.ended = false;
    }

    /// A packet arrived at `now_us`. `timestamp` is its 48 kHz sample clock.
    pub fn push(&mut self, now_us: u64, seq: u32, timestamp: u32, item: T) -> Push {
        self.push_marked(now_us, seq, timestamp, Some(item), false)
    }

    /// [`JitterBuffer::push`] for a packet that may end a talkspurt (`end`),
    /// or an end mark that carries no audio (`item` `None`, `end` true).
    pub fn push_marked(
        &mut self,
        now_us: u64,
        seq: u32,
        timestamp: u32,
        item: Option<T>,
        end: bool,
    ) -> Push {
        self.stats.received += 1;
        let mut ext = self.unwrap_seq(seq);
        // A jump of many frames either way means the sender restarted.
        let far = 5 * self.cfg.max_frames();
        if let Some(h) = self.highest
            && ext.abs_diff(h) > far
        {
            self.reset();
            ext = self.unwrap_seq(seq);
        }
        if let Some(n) = self.next.or(self.floor)
            && ext < n
        {
            self.stats.late += 1;
            return Push::Late;
        }
        if self.slots.contains_key(&ext) {
            self.stats.duplicates += 1;
            return Push::Duplicate;
        }
        if let Some((t0, ts0)) = self.last_arrival {
            let sent = f64::from(timestamp.wrapping_sub(ts0) as i32) * 1e6 / 48_000.0;
            let d = (now_us as f64 - t0 as f64) - sent;
            self.jitter_us += (d.abs() - self.jitter_us) / 16.0;
        }
        self.last_arrival = Some((now_us, timestamp));
        // A gap (a packet lost, or late) keeps the start-up depth; a long
        // enough clean run ends it.
        let gap = self.highest.is_some_and(|h| ext > h + 1);
        self.clean_run = if gap { 0 } else { self.clean_run.saturating_add(1) };
        if self.clean_run >= self.cfg.startup_clean {
            self.startup = false;
        }
        self.slots.insert(ext, Slot { item, end });
        self.grew = false;
        self.highest = Some(self.highest.map_or(ext, |h| h.max(ext)));
        self.misses = 0;
        // Never hold more than the maximum: drop the oldest.
        while self.span() > self.cfg.max_frames() {
            match self.next {
                Some(n) => {
                    if let Some(slot) = self.slots.remove(&n) {
                        self.stats.dropped += 1;
                        self.ended |= slot.end;
                    }
                    self.next = Some(n + 1);
                }
                None => {
                    self.slots.pop_first();
                    self.stats.dropped += 1;
                }
            }
        }
        Push::Accepted
    }

    /// One frame period has come: what to play.
    pub fn pop(&mut self, _now_us: u64) -> Playout<T> {
        let ended = std::mem::take(&mut self.ended);
        if ended && self.next.is_some_and(|n| !self.slots.contains_key(&n)) {
            // The pause after a talkspurt: silence, not loss.
            self.end_talkspurt();
            return Playout::Idle;
        }
        // An end mark with no talkspurt before it: nothing to play.
        while self.next.is_none()
            && self.slots.first_key_value().is_some_and(|(_, s)| s.item.is_none())
        {
            self.slots.pop_first();
        }
        let playing = self.next.is_some();
        let n = match self.next {
            Some(n) => n,
            None => match self.slots.keys().next() {
                // Playout starts once the target depth has built up (at once
                // on a quiet network).
                Some(&first) if self.span() > self.target_frames() => first,
                _ => return Playout::Idle,
            },
        };
        let mut n = n;
        let later =
            |b: &Self, n: u64| b.slots.last_key_value().map_or(0, |(&l, _)| l.saturating_sub(n));
        // Frames we already stretched for and that never came: skip them,
        // back to the target depth; the frame just waited for, back to the
        // depth the jitter needs (a deeper target for loss is reached in a
        // pause, not by this loss mid-word).
        while self.debt > 0 && !self.slots.contains_key(&n) && {
            let keep =
                if self.waited == Some(n) { self.wait_frames() } else { self.target_frames() };
            later(self, n) > keep
        } {
            self.debt -= 1;
            self.stats.lost += 1;
            // A loss like any other: it raises the target depth, so that
            // the next loss can be rebuilt from the following packet's FEC.
            self.note_loss(true);
            n += 1;
        }
        self.next = Some(n);
        // Shallower than the target (the redundancy's depth, one frame for
        // FEC on a lossy network), pop after pop (once is just the next
        // packet lost, and its copy on the way).
        let short = playing
            && self.slots.get(&n).is_some_and(|s| s.item.is_some() && !s.end)
            && later(self, n) < self.target_frames();
        self.short_pops = if short { self.short_pops.saturating_add(1) } else { 0 };
        if self.short_pops >= 2 && self.quiet && !self.grew {
            // Loss or redundancy came on mid-talkspurt: the buffer must hold
            // the copies' frames (or the next packet's FEC). It grows by a
            // frame here, in a pause, where a concealed frame goes unheard;
            // a loss before then is concealed, not waited for (see
            // `wait_frames`): a 20 ms jump mid-word costs more.
            self.stats.stretched += 1;
            self.grew = true;
            return Playout::Conceal { next: None };
        }
        let out = if let Some(slot) = self.slots.remove(&n) {
            self.next = Some(n + 1);
            self.misses = 0;
            self.note_loss(false);
            let Some(item) = slot.item else {
                // An end mark: the talkspurt is over.
                self.stats.talkspurts += 1;
                self.end_talkspurt();
                return Playout::Idle;
            };
            self.stats.played += 1;
            if slot.end {
                self.stats.talkspurts += 1;
                self.ended = true;
            }
            Playout::Frame(item)
        } else {
            if later(self, n) >= self.wait_frames().max(1) {
                self.next = Some(n + 1);
                self.stats.lost += 1;
                self.note_loss(true);
                Playout::Conceal { next: self.slots.get(&(n + 1)).and_then(|s| s.item.clone()) }
            } else {
                self.misses += 1;
                if self.misses > self.cfg.idle_after {
                    self.reset();
                    return Playout::Idle;
                }
                self.stats.stretched += 1;
                self.debt += 1;
                self.waited = Some(n);
                Playout::Conceal { next: None }
            }
        };
        self.shrink();
        out
    }

    /// Drops a frame when the buffer held more than its target for a whole window.
    ///
    /// A drop in a pause takes the whole excess of the window, a frame per
    /// pop while the pause lasts: one jump where nobody talks, not one per
    /// window (a machine that stalled for 140 ms leaves seven frames too
    /// many; seven separate 20 ms jumps each cost the words around them).
    fn shrink(&mut self) {
        if self.excess > 0 {
            if self.quiet && self.span() > self.target_frames() {
                self.drop_next();
                self.excess -= 1;
            } else {
                // Talking again: the rest waits for the next window.
                self.excess = 0;
            }
        }
        self.window_min = self.window_min.min(self.span());
        self.window_pops += 1;
        if self.window_pops < self.cfg.shrink_window {
            return;
        }
        let target = self.target_frames();
        if self.window_min > target {
            // More than needed all window long. Drop in a pause if one comes
            // (the depth keeps being watched meanwhile).
            if !self.quiet && self.window_pops < self.cfg.shrink_window * SHRINK_WAIT_WINDOWS {
                return;
            }
            if self.quiet {
                self.excess = self.window_min - target - 1;
            }
            self.drop_next();
        }
        self.window_min = u64::MAX;
        self.window_pops = 0;
    }

    fn drop_next(&mut self) {
        if let Some(n) = self.next {
            if let Some(slot) = self.slots.remove(&n) {
                self.stats.dropped += 1;
                self.ended |= slot.end;
            }
            self.next = Some(n + 1);
            self.debt = self.debt.saturating_sub(1);
        }
    }
}

/// Packet loss from sequence numbers, as RFC 3550 (appendix A.3) counts it
/// for a receiver report: over an interval, expected = growth of the highest
/// sequence number seen, lost = expected − received. Sans-IO; the owner
/// feeds every arriving sequence number and takes a figure about once a
/// second. Silence costs nothing here: senders number only what they send.
#[derive(Debug, Clone, Default)]
pub struct LossMeter {
    /// Extended highest sequence number seen.
    highest: Option<u64>,
    /// `highest` when the interval began.
    base: u64,
    received: u64,
}

/// Packets expected before a first report that shows loss goes out (a
/// quarter second of 20 ms frames), not at the next whole-second report:
/// [`LossMeter::first_report_due`].
pub const FIRST_REPORT_AFTER: u64 = 12;

/// A jump of more than this many sequence numbers is a restarted sender.
const RESTART_GAP: u64 = 3_000;

impl LossMeter {
    /// A meter that has seen nothing yet.
    pub fn new() -> LossMeter {
        LossMeter::default()
    }

    /// A packet numbered `seq` arrived (duplicates count as received; the
    /// interval's figure is clamped at no loss).
    pub fn record(&mut self, seq: u32) {
        let ext = match self.highest {
            None => u64::from(seq) + (1 << 32),
            Some(h) => (h as i64 + i64::from(seq.wrapping_sub(h as u32) as i32)).max(0) as u64,
        };
        match self.highest {
            Some(h) if ext.abs_diff(h) <= RESTART_GAP => {
                if ext > h {
                    self.highest = Some(ext);
                }
            }
            _ => {
                self.highest = Some(ext);
                self.base = ext - 1;
                self.received = 0;
            }
        }
        self.received += 1;
    }

    /// Packets expected since the last [`LossMeter::take`] (0 before any
    /// arrived): lets an owner send its first report early.
    pub fn pending(&self) -> u64 {
        self.highest.map_or(0, |h| h.saturating_sub(self.base))
    }

    /// Packets lost since the last [`LossMeter::take`] (of
    /// [`LossMeter::pending`] expected): lets an owner tell a first
    /// figure that shows loss, worth reporting at once, from one that
    /// shows none yet, which proves little until it covers more packets.
    pub fn pending_lost(&self) -> u64 {
        self.pending().saturating_sub(self.received)
    }

    /// Whether a receiver's first report on this stream is due: once
    /// [`FIRST_REPORT_AFTER`] packets were expected if some were lost (so the
    /// sender's redundancy stays on), or once `proven_clean_after` packets (a
    /// second's worth) were expected without a loss: the sender assumes loss
    /// until then, and 12 packets in a row get through a 10 % lossy link in
    /// a quarter of calls.
    pub fn first_report_due(&self, proven_clean_after: u64) -> bool {
        (self.pending() >= FIRST_REPORT_AFTER && self.pending_lost() > 0)
            || self.pending() >= proven_clean_after
    }

    /// The share of packets lost since the last call (0..=1), and how many
    /// were expected; `None` when nothing was expected (a pause, or nothing
    /// heard yet).
    pub fn take(&mut self) -> Option<(f64, u64)> {
        let h = self.highest?;
        let expected = h.saturating_sub(self.base);
        let received = std::mem::take(&mut self.received);
        self.base = h;
        if expected == 0 {
            return None;
        }
        let lost = expected.saturating_sub(received);
        Some((lost as f64 / expected as f64, expected))
    }
}

#[cfg(test)]
#[path = "jitter_tests.rs"]
mod tests;
