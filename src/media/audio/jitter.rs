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
    Frame(T),
    /// A frame is missing: conceal it. `next` is the following packet when it
    /// is already here (Opus can rebuild the lost frame from its FEC data).
    Conceal {
        next: Option<T>,
    },
    /// The sender is not sending (not started, muted, or stopped).
    Idle,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets pushed, duplicates and late ones included.
    pub received: u64,
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
    Accepted,
    Duplicate,
    Late,
}

/// A buffered packet, or an end-of-talkspurt mark without audio.
#[derive(Debug)]
struct Slot<T> {
    item: Option<T>,
    end: bool,
}

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

    pub fn stats(&self) -> JitterStats {
        self.stats
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

/// A jump of more than this many sequence numbers is a restarted sender.
const RESTART_GAP: u64 = 3_000;

impl LossMeter {
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
mod tests {
    use super::*;

    const F: u64 = 20_000;

    /// A buffer without the start-up depth (the behaviour after it).
    fn jb() -> JitterBuffer<u32> {
        JitterBuffer::new(JitterConfig { startup_frames: 0, ..JitterConfig::new(F) })
    }

    fn ts(seq: u32) -> u32 {
        seq.wrapping_mul(960)
    }

    /// Pops once per frame from `from_us` to `to_us`, collecting the output.
    fn pops(b: &mut JitterBuffer<u32>, at: u64) -> Playout<u32> {
        b.pop(at)
    }

    #[test]
    fn plays_a_clean_stream_with_no_added_delay() {
        let mut b = jb();
        let mut out = Vec::new();
        for i in 0..200u32 {
            let t = u64::from(i) * F;
            b.push(t + 1_000, i, ts(i), i);
            out.push(pops(&mut b, t + 5_000));
        }
        assert_eq!(out, (0..200).map(Playout::Frame).collect::<Vec<_>>());
        assert_eq!(b.delay_us(), 0);
        let s = b.stats();
        assert_eq!((s.lost, s.stretched, s.dropped, s.late), (0, 0, 0, 0));
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut b = jb();
        for k in 0..20u32 {
            let seq = (u32::MAX - 9).wrapping_add(k);
            b.push(u64::from(k) * F, seq, ts(seq), k);
            assert_eq!(b.pop(u64::from(k) * F + 1), Playout::Frame(k));
        }
    }

    #[test]
    fn duplicates_are_dropped_and_counted() {
        let mut b = jb();
        for i in 0..50u32 {
            let t = u64::from(i) * F;
            assert_eq!(b.push(t, i, ts(i), i), Push::Accepted);
            assert_eq!(b.push(t + 10, i, ts(i), i), Push::Duplicate);
            assert_eq!(b.pop(t + 100), Playout::Frame(i));
            // And again once played: now it is late.
            assert_eq!(b.push(t + 200, i, ts(i), i), Push::Late);
        }
        assert_eq!(b.stats().duplicates, 50);
        assert_eq!(b.stats().played, 50);
    }

    #[test]
    fn reordered_packets_play_in_order() {
        // Pairs swap on the wire: 1 0 3 2 5 4 …, each pair arriving together.
        let mut b = jb();
        let mut played = Vec::new();
        for pair in 0..100u32 {
            let t = u64::from(pair) * 2 * F;
            for i in [2 * pair + 1, 2 * pair] {
                b.push(t, i, ts(i), i);
            }
            for k in 0..2 {
                if let Playout::Frame(x) = b.pop(t + k * F + 1) {
                    played.push(x);
                }
            }
        }
        let sorted = {
            let mut s = played.clone();
            s.sort();
            s
        };
        assert_eq!(played, sorted, "never out of order");
        assert!(played.len() >= 195, "played {}", played.len());
        assert_eq!(b.stats().late, 0);
    }

    #[test]
    fn a_burst_of_loss_is_concealed_and_playout_goes_on() {
        let mut b = jb();
        let mut out = Vec::new();
        for i in 0..100u32 {
            let t = u64::from(i) * F;
            if !(40..45).contains(&i) {
                b.push(t, i, ts(i), i);
            }
            out.push(b.pop(t + 1));
        }
        // After the burst the loss rate is 5 %: the buffer grows by a frame
        // (one more concealment, right after the gap) to have the next
        // packet at hand for FEC, so the last frame plays one pop later.
        out.push(b.pop(100 * F + 1));
        let concealed = out.iter().filter(|p| matches!(p, Playout::Conceal { .. })).count();
        let frames = out.iter().filter(|p| matches!(p, Playout::Frame(_))).count();
        assert_eq!(frames, 95);
        assert_eq!(concealed, 5 + 1, "{out:?}");
        assert_eq!(b.stats().lost, 5);
        assert!(out.iter().all(|p| *p != Playout::Idle), "the gap is concealed, not silence");
        // The FEC hint: the frame after the gap came with the last concealment.
        assert_eq!(b.stats().played, 95);
    }

    #[test]
    fn a_late_packet_is_dropped_after_its_frame_was_concealed() {
        let mut b = jb();
        for i in 0..10u32 {
            b.push(u64::from(i) * F, i, ts(i), i);
            b.pop(u64::from(i) * F + 1);
        }
        // 10 is delayed; 11 and 12 arrive; the buffer gives up on 10.
        b.push(10 * F, 11, ts(11), 11);
        b.push(10 * F + 1, 12, ts(12), 12);
        assert_eq!(b.pop(10 * F + 2), Playout::Conceal { next: Some(11) });
        assert_eq!(b.push(10 * F + 3, 10, ts(10), 10), Push::Late);
        assert_eq!(b.pop(11 * F), Playout::Frame(11));
        assert_eq!(b.stats().late, 1);
    }

    #[test]
    fn jitter_grows_the_buffer_and_keeps_loss_low() {
        // Arrival delay uniform in 0..40 ms (a ±20 ms jitter).
        let mut b = jb();
        let mut rng = 12345u64;
        let mut arrivals = Vec::new();
        for i in 0..3000u32 {
            rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let delay = (rng >> 33) % 40_000;
            arrivals.push((u64::from(i) * F + delay, i));
        }
        arrivals.sort();
        let mut a = arrivals.into_iter().peekable();
        let mut frames = 0;
        for tick in 0..3100u64 {
            let now = tick * F + 10_000;
            while let Some(&(t, i)) = a.peek() {
                if t > now {
                    break;
                }
                b.push(t, i, ts(i), i);
                a.next();
            }
            if matches!(b.pop(now), Playout::Frame(_)) {
                frames += 1;
            }
            assert!(b.delay_us() <= 200_000);
        }
        let s = b.stats();
        assert!(frames >= 2900, "played {frames} of 3000: {s:?}");
        assert!(s.late + s.lost <= 90, "{s:?}");
        assert!(b.target_frames() >= 1, "the target follows the jitter ({} µs)", b.jitter_us());
    }

    #[test]
    fn clock_drift_either_way_keeps_the_delay_bounded() {
        for (sender_ppm, name) in [(10_000i64, "sender 1% fast"), (-10_000, "sender 1% slow")] {
            let mut b = jb();
            let period = (F as i64 * 1_000_000 / (1_000_000 + sender_ppm)) as u64;
            let mut next_send = 0u64;
            let mut seq = 0u32;
            let mut frames = 0u64;
            let ticks = 30_000u64; // ten minutes
            for tick in 0..ticks {
                let now = tick * F + 7_000;
                while next_send <= now {
                    b.push(next_send, seq, ts(seq), seq);
                    seq += 1;
                    next_send += period;
                }
                if matches!(b.pop(now), Playout::Frame(_)) {
                    frames += 1;
                }
                assert!(b.delay_us() <= 200_000, "{name}: {} µs", b.delay_us());
            }
            let s = b.stats();
            // 1% of 30 000 frames is 300 to drop or to stretch.
            assert!(frames as f64 >= ticks as f64 * 0.985, "{name}: played {frames}, {s:?}");
            assert_eq!(s.resets, 0, "{name}: {s:?}");
            if sender_ppm > 0 {
                assert!((250..=450).contains(&s.dropped), "{name}: {s:?}");
            } else {
                assert!((250..=450).contains(&s.stretched), "{name}: {s:?}");
            }
        }
    }

    #[test]
    fn excess_delay_is_dropped_in_a_pause_or_after_two_seconds_without_one() {
        // Two frames more than needed from the start, on a clean network.
        // Returns the pop at which a frame was skipped, and the pops.
        let run = |quiet_at: &dyn Fn(u64) -> bool| -> (Option<u64>, u64) {
            let mut b = jb();
            b.push(0, 0, ts(0), 0);
            b.push(0, 1, ts(1), 1);
            let mut want = 0;
            for k in 0..200u64 {
                let seq = k as u32 + 2;
                b.push(k * F + 1_000, seq, ts(seq), seq);
                b.set_quiet(quiet_at(k));
                let Playout::Frame(got) = b.pop(k * F + 5_000) else { panic!("pop {k}") };
                if got != want {
                    return (Some(k), b.stats().dropped);
                }
                want = got + 1;
            }
            (None, b.stats().dropped)
        };
        // An owner that never says drops after one window (25 pops), both
        // frames in a row (the whole excess in one pause).
        assert_eq!(run(&|_| true), (Some(25), 2));
        // Talking throughout the first window, a pause at pop 40: the drop
        // waits for it, and takes both frames there.
        assert_eq!(run(&|k| (40..45).contains(&k)), (Some(41), 2));
        // No pause at all: after four windows anyway.
        assert_eq!(run(&|_| false), (Some(100), 1));
    }

    #[test]
    fn a_stall_s_excess_is_dropped_in_one_pause() {
        // The sender stalls for 100 ms (frames 20 to 24 arrive together
        // with 25): the buffer stretched five frames waiting. The talker
        // pauses at pops 80 to 89; the five frames go there, in a row.
        let mut b = jb();
        let mut lags = Vec::new();
        for k in 0..200u64 {
            let t = k * F;
            match k {
                20..25 => {}
                25 => {
                    for seq in 20..=25u32 {
                        b.push(t + 1_000, seq, ts(seq), seq);
                    }
                }
                _ => {
                    b.push(t + 1_000, k as u32, ts(k as u32), k as u32);
                }
            }
            b.set_quiet((80..90).contains(&k));
            lags.push(match b.pop(t + 5_000) {
                Playout::Frame(x) => Some(k as i64 - i64::from(x)),
                _ => None,
            });
        }
        assert_eq!(lags[30], Some(5), "{lags:?}");
        let moves: Vec<(usize, i64)> = lags
            .iter()
            .enumerate()
            .skip(30)
            .filter_map(|(k, l)| l.map(|l| (k, l)))
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0].1 != w[1].1)
            .map(|w| (w[1].0, w[1].1))
            .collect();
        // One frame per pop from the pause's first, back to no delay.
        assert_eq!(moves, vec![(81, 4), (82, 3), (83, 2), (84, 1), (85, 0)], "{lags:?}");
        let s = b.stats();
        assert_eq!((s.dropped, s.stretched, s.lost), (5, 5, 0), "{s:?}");
    }

    #[test]
    fn never_holds_more_than_200_ms() {
        let mut b = jb();
        for i in 0..30u32 {
            b.push(0, i, ts(i), i);
        }
        assert!(b.delay_us() <= 200_000);
        assert_eq!(b.stats().dropped, 20);
        // The newest ten are the ones kept.
        assert_eq!(b.pop(1), Playout::Frame(20));
    }

    #[test]
    fn a_silent_sender_goes_idle_and_a_restart_is_followed() {
        let mut b = jb();
        for i in 0..10u32 {
            b.push(u64::from(i) * F, i, ts(i), i);
            b.pop(u64::from(i) * F + 1);
        }
        let outs: Vec<_> = (10..20u64).map(|k| b.pop(k * F + 1)).collect();
        assert!(matches!(outs[0], Playout::Conceal { .. }), "a short gap is concealed first");
        assert_eq!(outs[9], Playout::Idle);
        // The sender comes back with a new sequence (a host restart).
        b.push(21 * F, 5_000_000, 0, 777);
        assert_eq!(b.pop(21 * F + 1), Playout::Frame(777));
    }

    #[test]
    fn an_end_mark_makes_the_pause_silence_not_loss() {
        // A talkspurt of 10 frames, the last marked; a 1 s pause; the next
        // talkspurt goes on with the next sequence number.
        let mut b = jb();
        let mut out = Vec::new();
        for k in 0..100u64 {
            let t = k * F;
            let seq = match k {
                0..10 => Some(k as u32),
                60..70 => Some(k as u32 - 50),
                _ => None,
            };
            if let Some(seq) = seq {
                b.push_marked(t, seq, (k as u32) * 960, Some(seq), seq == 9 || seq == 19);
            }
            out.push(b.pop(t + 1));
            if k == 9 {
                assert!(b.ended());
            }
        }
        let frames: Vec<u32> = out
            .iter()
            .filter_map(|p| if let Playout::Frame(x) = p { Some(*x) } else { None })
            .collect();
        assert_eq!(frames, (0..20).collect::<Vec<_>>());
        assert!(!out.iter().any(|p| matches!(p, Playout::Conceal { .. })), "{out:?}");
        let s = b.stats();
        assert_eq!((s.lost, s.stretched, s.talkspurts), (0, 0, 2), "{s:?}");
        // Without the mark the same pause starts with concealment.
        let mut b = jb();
        for k in 0..10u64 {
            b.push(k * F, k as u32, (k as u32) * 960, k as u32);
            b.pop(k * F + 1);
        }
        assert!(matches!(b.pop(10 * F + 1), Playout::Conceal { .. }));
    }

    #[test]
    fn an_end_mark_without_audio_ends_the_talkspurt_and_late_packets_stay_out() {
        let mut b = jb();
        for k in 0..5u32 {
            b.push(u64::from(k) * F, k, k * 960, k);
            assert_eq!(b.pop(u64::from(k) * F + 1), Playout::Frame(k));
        }
        b.push_marked(5 * F, 5, 5 * 960, None, true);
        assert_eq!(b.pop(5 * F + 1), Playout::Idle);
        assert_eq!(b.pop(6 * F + 1), Playout::Idle);
        // A duplicate of an old frame after the end is late, not replayed.
        assert_eq!(b.push(6 * F + 2, 3, 3 * 960, 3), Push::Late);
        b.push(20 * F, 6, 20 * 960, 6);
        assert_eq!(b.pop(20 * F + 1), Playout::Frame(6));
        assert_eq!(b.stats().lost + b.stats().stretched, 0);
    }

    #[test]
    fn redundant_copies_fill_lost_frames_in_time_and_nothing_else() {
        // Every packet also carries the previous frame (depth 1); every
        // 10th packet is lost. The buffer holds one frame more, so each
        // loss is rebuilt from the next packet's copy: nothing concealed.
        let mut b = jb();
        let mut out = Vec::new();
        for i in 0..200u32 {
            let t = u64::from(i) * F;
            if i % 10 != 5 {
                b.push(t + 1_000, i, ts(i), i);
                b.set_min_depth(1);
                if i > 0 && b.wants(i - 1) {
                    assert!(b.push_redundant(i - 1, i - 1));
                }
            }
            out.push(b.pop(t + 5_000));
        }
        let frames: Vec<u32> = out
            .iter()
            .filter_map(|p| if let Playout::Frame(x) = p { Some(*x) } else { None })
            .collect();
        // One frame of delay: playout starts once a second packet is here,
        // and 199 is still buffered at the end.
        assert_eq!(out[0], Playout::Idle);
        assert_eq!(frames, (0..199).collect::<Vec<_>>());
        let s = b.stats();
        assert_eq!((s.lost, s.recovered, s.received), (0, 20, 180), "{s:?}");
        assert_eq!(s.stretched, 0, "a lost packet is no reason to grow: {s:?}");
        // A copy of a frame that arrived, or that was already played, is ignored.
        assert!(!b.push_redundant(198, 0));
        assert!(!b.push_redundant(150, 0));
        // A copy is not taken for a frame in front of a talkspurt that has
        // not started playing (it would be the tail of an earlier one).
        let mut b = jb();
        b.push(0, 100, ts(100), 100);
        assert!(!b.wants(99) && !b.push_redundant(99, 99));
        assert_eq!(b.pop(1), Playout::Frame(100));
    }

    #[test]
    fn the_redundancy_depth_is_the_largest_seen_lately() {
        let mut b = jb();
        b.set_min_depth(2);
        assert_eq!(b.target_frames(), 2);
        // One packet that carries fewer copies does not move the target...
        b.set_min_depth(0);
        assert_eq!(b.target_frames(), 2);
        // ...a second without any does.
        for _ in 0..DEPTH_MEMORY {
            b.set_min_depth(0);
        }
        assert_eq!(b.target_frames(), 0);
    }

    /// A call's start on a lossy link, on a virtual clock: every 10th
    /// packet is lost; the sender adds two copies of the earlier frames
    /// from packet 15 on (once the receiver's report reached it); the
    /// talker pauses at pops 60 to 65. Frames 35 and 45 have no copies
    /// (lost before a host that forwards: a gap no copy fills). Returns,
    /// per pop, the playout lag
    /// (pop index minus the frame played; `None` when no frame played) and
    /// the stats.
    fn lossy_start(copies: u8, quiet_at: impl Fn(u64) -> bool) -> (Vec<Option<i64>>, JitterStats) {
        lossy_start_with(jb(), copies, quiet_at)
    }

    fn lossy_start_with(
        mut b: JitterBuffer<u32>,
        copies: u8,
        quiet_at: impl Fn(u64) -> bool,
    ) -> (Vec<Option<i64>>, JitterStats) {
        let mut lags = Vec::new();
        for k in 0..300u64 {
            let t = k * F;
            let seq = k as u32;
            if k % 10 != 5 {
                let red = if k >= 15 { copies } else { 0 };
                b.set_min_depth(red);
                b.push(t + 1_000, seq, ts(seq), seq);
                for back in 1..=u32::from(red) {
                    let copied = seq - back != 35 && seq - back != 45;
                    if seq >= 14 + back && copied && b.wants(seq - back) {
                        b.push_redundant(seq - back, seq - back);
                    }
                }
            }
            b.set_quiet(quiet_at(k));
            lags.push(match b.pop(t + 5_000) {
                Playout::Frame(x) => Some(k as i64 - i64::from(x)),
                _ => None,
            });
        }
        (lags, b.stats())
    }

    #[test]
    fn on_a_lossy_start_the_buffer_grows_in_a_pause_not_mid_word() {
        let pause = 60..66u64;
        let (lags, s) = lossy_start(2, |k| pause.contains(&k));
        let played: Vec<(usize, i64)> =
            lags.iter().enumerate().filter_map(|(k, l)| l.map(|l| (k, l))).collect();
        // Where the playout lag moved: a jump of 20 ms (or more) heard.
        let moves: Vec<usize> =
            played.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0).collect();
        // The first loss (frame 5, with nothing after it here yet: it may
        // just be late) is waited for once; every other growth, to the
        // copies' depth of two frames, happens in the pause.
        let mid_word: Vec<usize> = moves
            .iter()
            .copied()
            .filter(|&k| !(pause.start as usize..=pause.end as usize).contains(&k))
            .collect();
        assert!(
            mid_word.len() <= 1,
            "lag moved mid-word at pops {mid_word:?} (all moves {moves:?})"
        );
        let last = played.last().unwrap().1;
        assert_eq!(last, 2, "two frames of delay for two copies: {lags:?}");
        // After the pause every lost packet is rebuilt from a copy.
        let after: Vec<i64> = played.iter().filter(|(k, _)| *k > 70).map(|(_, l)| *l).collect();
        assert!(after.iter().all(|&l| l == last), "{after:?}");
        assert!(s.recovered >= 20, "{s:?}");
        // Talking throughout (no pause to grow in): the frame waited for at
        // the first loss after the copies started (15, rebuilt from 16's
        // copy) left one frame of delay, which rebuilds every single loss;
        // nothing else moves mid-word.
        let (lags, s) = lossy_start(2, |_| false);
        let played: Vec<i64> = lags.iter().filter_map(|l| *l).collect();
        let moves = played.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!((moves, played.last().copied()), (1, Some(1)), "{lags:?} {s:?}");
        assert_eq!(s.lost, 3, "5, before the copies, and 35 and 45: {s:?}");
    }

    /// Playout lags of the frames played, in pop order, and where they moved.
    fn moves(lags: &[Option<i64>]) -> (Vec<i64>, Vec<usize>) {
        let played: Vec<(usize, i64)> =
            lags.iter().enumerate().filter_map(|(k, l)| l.map(|l| (k, l))).collect();
        let moved = played.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0).collect();
        (played.into_iter().map(|(_, l)| l).collect(), moved)
    }

    #[test]
    fn a_call_starts_at_the_redundancy_depth_and_a_lossy_one_never_jumps() {
        // The lossy start above with the start-up depth: the first frame
        // plays two frames late, and that is where it stays: the copies,
        // when they come, find the room they need; no jump, paused or not.
        let b = JitterBuffer::new(JitterConfig::new(F));
        let (lags, s) = lossy_start_with(b, 2, |_| false);
        let (played, moved) = moves(&lags);
        assert_eq!(played[0], 2, "{lags:?}");
        assert!(moved.is_empty(), "moved at pops {moved:?}: {lags:?}");
        // Frame 5 (before the copies) concealed where it fell; all later
        // losses rebuilt, even 35 and 45 (which no copy can fill) are
        // concealed in place.
        assert_eq!((s.lost, s.stretched, s.dropped), (3, 0, 0), "{s:?}");
        assert!(s.recovered >= 25, "{s:?}");
    }

    #[test]
    fn a_clean_call_leaves_the_start_up_depth_in_its_first_pause_after_a_second() {
        let mut b = JitterBuffer::new(JitterConfig::new(F));
        let mut lags = Vec::new();
        for k in 0..200u64 {
            let t = k * F;
            b.push(t + 1_000, k as u32, ts(k as u32), k as u32);
            // Pauses at pops 30 to 39 (too early: not proved clean yet)
            // and 120 to 129.
            b.set_quiet((30..40).contains(&k) || (120..130).contains(&k));
            lags.push(match b.pop(t + 5_000) {
                Playout::Frame(x) => Some(k as i64 - i64::from(x)),
                _ => None,
            });
        }
        let (played, moved) = moves(&lags);
        assert_eq!(&lags[..2], &[None, None], "two frames held first");
        assert_eq!(played[0], 2);
        // Both frames go in one pause, the first after the clean second.
        assert_eq!(moved, vec![121, 122], "{lags:?}");
        assert_eq!(played.last(), Some(&0), "no delay left on a clean link");
        let s = b.stats();
        assert_eq!((s.lost, s.stretched, s.dropped), (0, 0, 2), "{s:?}");
    }

    #[test]
    fn the_start_up_depth_ends_with_the_first_talkspurt() {
        // A click: five frames and an end mark, then a pause; the next
        // click plays at once.
        let mut b = JitterBuffer::new(JitterConfig::new(F));
        let mut out = Vec::new();
        for k in 0..40u64 {
            let seq = match k {
                0..6 => Some(k as u32),
                25..31 => Some(k as u32 - 19),
                _ => None,
            };
            if let Some(seq) = seq {
                let end = seq == 5 || seq == 11;
                b.push_marked(k * F + 1_000, seq, (k as u32) * 960, Some(seq), end);
            }
            out.push(b.pop(k * F + 5_000));
        }
        assert_eq!(&out[..3], &[Playout::Idle, Playout::Idle, Playout::Frame(0)], "held first");
        assert_eq!(out[25], Playout::Frame(6), "the second click at once: {out:?}");
    }

    #[test]
    fn without_copies_a_loss_is_concealed_in_place_and_the_fec_frame_added_in_a_pause() {
        // Every 10th packet lost and no redundancy: the target becomes one
        // frame (the next packet at hand for FEC) once the loss rate shows,
        // and the buffer takes that frame in the pause; each loss before
        // is concealed where it falls, with no jump.
        let pause = 60..66u64;
        let (lags, s) = lossy_start(0, |k| pause.contains(&k));
        let played: Vec<(usize, i64)> =
            lags.iter().enumerate().filter_map(|(k, l)| l.map(|l| (k, l))).collect();
        let moves: Vec<usize> =
            played.windows(2).filter(|w| w[0].1 != w[1].1).map(|w| w[1].0).collect();
        assert!(
            moves.iter().all(|&k| (pause.start as usize..=pause.end as usize).contains(&k)),
            "moves {moves:?}"
        );
        assert_eq!(played.last().unwrap().1, 1, "{lags:?}");
        assert_eq!(s.lost, 30, "{s:?}");
    }

    #[test]
    fn loss_meter_counts_gaps_per_interval() {
        let mut m = LossMeter::new();
        assert_eq!(m.take(), None);
        // 50 packets, every 10th lost, one duplicate.
        for seq in (1000u32..1050).filter(|s| s % 10 != 3) {
            m.record(seq);
        }
        assert_eq!(m.pending(), 50, "1000 to 1049");
        m.record(1049);
        let (loss, expected) = m.take().unwrap();
        assert_eq!(expected, 50);
        // 5 lost, but the duplicate counts as received (RFC 3550 does too).
        assert!((loss - 4.0 / 50.0).abs() < 1e-9, "{loss}");
        // A pause: nothing expected, no figure.
        assert_eq!(m.take(), None);
        // Sequence numbers wrap; a clean interval is 0.
        let mut m = LossMeter::new();
        for k in 0..20u32 {
            m.record((u32::MAX - 10).wrapping_add(k));
        }
        assert_eq!(m.take(), Some((0.0, 20)));
        // A restarted sender starts a new count.
        m.record(100_000);
        m.record(100_001);
        assert_eq!(m.take(), Some((0.0, 2)));
    }
}
