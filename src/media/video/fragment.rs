//! Cutting encoded frames into fragments, and putting them back together.
//!
//! Sans-IO: the [`Reassembler`] is fed fragments with the time they arrived
//! and hands back whole frames. It never reads a clock, so tests run loss,
//! reordering and timeouts on a virtual one.
//!
//! A frame is emitted only when every one of its fragments arrived with the
//! size and count its first fragment announced; a frame that stays incomplete
//! for [`ReassemblyConfig::timeout`] is dropped, and a frame older than one
//! already emitted is never emitted (the screen only moves forward).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::proto::{
    Fragment, FragmentHeader, Layer, MAX_FRAGMENT_PAYLOAD, MIN_FRAGMENT_PAYLOAD, SessionId,
    encode_fragment, fragment_count, fragment_len,
};

/// Calls `send` with each whole fragment datagram of `jpeg`, built in one
/// reused buffer. `header.index`, `count` and `frame_len` are filled in here;
/// `header.stride` (the link's, `proto::fragment_stride`) is kept within
/// the protocol's floor and ceiling.
pub fn fragment_frame(
    mut header: FragmentHeader,
    jpeg: &[u8],
    seq: &mut u16,
    buf: &mut Vec<u8>,
    mut send: impl FnMut(&[u8]),
) {
    let frame_len = jpeg.len() as u32;
    header.frame_len = frame_len;
    header.stride =
        usize::from(header.stride).clamp(MIN_FRAGMENT_PAYLOAD, MAX_FRAGMENT_PAYLOAD) as u16;
    header.count = fragment_count(frame_len, header.stride);
    for (index, chunk) in jpeg.chunks(usize::from(header.stride)).enumerate() {
        header.index = index as u16;
        debug_assert_eq!(chunk.len(), fragment_len(frame_len, header.index, header.stride));
        encode_fragment(&header, chunk, *seq, buf);
        *seq = seq.wrapping_add(1);
        send(buf);
    }
}

#[derive(Debug, Clone, Copy)]
/// Limits of a [`Reassembler`]; the default suits a LAN call at 15 fps.
pub struct ReassemblyConfig {
    /// A frame not complete this long after its first fragment is dropped.
    pub timeout: Duration,
    /// Frames in progress per (sender, layer); the oldest is dropped beyond it.
    pub max_pending: usize,
    /// Streams (sender, layer) tracked at once.
    pub max_streams: usize,
    /// Bytes held in frames in progress, all streams together: a new frame
    /// that would go over it is refused (its fragments count as dropped).
    pub max_pending_bytes: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        // At 15 fps a frame's fragments leave the sender within a few ms; 150
        // ms covers jitter on a LAN without holding a stale frame for long.
        ReassemblyConfig {
            timeout: Duration::from_millis(150),
            max_pending: 4,
            max_streams: 128,
            max_pending_bytes: 16 << 20,
        }
    }
}

/// A whole encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// The sender's session id.
    pub sender: SessionId,
    /// Full or thumbnail.
    pub layer: Layer,
    /// The sender's frame counter.
    pub frame_id: u32,
    /// Capture time, µs since the Unix epoch (sender clock).
    pub capture_us: u64,
    /// The whole JPEG.
    pub data: Vec<u8>,
}

/// Why fragments or frames were thrown away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Fragments taken.
    pub fragments: u64,
    /// Fragments already held (sent twice, or duplicated on the way).
    pub duplicates: u64,
    /// Disagreed with the first fragment of their frame (size or count).
    pub inconsistent: u64,
    /// For a frame older than one already shown.
    pub late: u64,
    /// Refused because frames in progress already hold too much memory.
    pub over_budget: u64,
    /// Frames completed.
    pub frames: u64,
    /// Incomplete at the timeout, or pushed out by newer frames.
    pub frames_dropped: u64,
}

struct Pending {
    frame_id: u32,
    capture_us: u64,
    frame_len: u32,
    stride: u16,
    count: u16,
    first_seen: Instant,
    have: Vec<bool>,
    missing: u16,
    data: Vec<u8>,
}

#[derive(Default)]
struct Stream {
    pending: Vec<Pending>,
    last_emitted: Option<u32>,
}

/// `a` is after `b` in wrapping frame-id order.
fn newer(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// A backward jump this large means the sender restarted its counter.
const RESTART_GAP: u32 = 64;

/// Puts video fragments back into frames, per (sender, layer); drops
/// incomplete, late and over-budget frames, never allocating more than
/// [`ReassemblyConfig::max_pending_bytes`]. Sans-IO: time is passed in.
pub struct Reassembler {
    config: ReassemblyConfig,
    streams: HashMap<(SessionId, Layer), Stream>,
    stats: ReassemblyStats,
    pending_total: usize,
}

impl Reassembler {
    /// A reassembler with these limits and nothing pending.
    pub fn new(config: ReassemblyConfig) -> Reassembler {
        Reassembler {
            config,
            streams: HashMap::new(),
            stats: ReassemblyStats::default(),
            pending_total: 0,
        }
    }

    /// What was taken and thrown away so far.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// Takes one checked fragment (see `proto::decode_fragment`); returns the
    /// frame it completes, if any.
    pub fn push(&mut self, now: Instant, frag: &Fragment<'_>) -> Option<Assembled> {
        self.stats.fragments += 1;
        let h = &frag.header;
        let key = (h.session, h.layer);
        if !self.streams.contains_key(&key) && self.streams.len() >= self.config.max_streams {
            return None;
        }
        let stream = self.streams.entry(key).or_default();
        if let Some(last) = stream.last_emitted {
            let behind = last.wrapping_sub(h.frame_id);
            if !newer(h.frame_id, last) && behind < RESTART_GAP {
                self.stats.late += 1;
                return None;
            }
        }
        let slot = match stream.pending.iter().position(|p| p.frame_id == h.frame_id) {
            Some(i) => i,
            None => {
                if self.pending_total + h.frame_len as usize > self.config.max_pending_bytes {
                    self.stats.over_budget += 1;
                    return None;
                }
                if stream.pending.len() >= self.config.max_pending {
                    // Drop the oldest frame in progress: a newer one is coming.
                    let oldest = (0..stream.pending.len())
                        .min_by_key(|&i| stream.pending[i].first_seen)
                        .unwrap_or(0);
                    let gone = stream.pending.swap_remove(oldest);
                    self.pending_total -= gone.data.len();
                    self.stats.frames_dropped += 1;
                }
                stream.pending.push(Pending {
                    frame_id: h.frame_id,
                    capture_us: h.capture_us,
                    frame_len: h.frame_len,
                    stride: h.stride,
                    count: h.count,
                    first_seen: now,
                    have: vec![false; usize::from(h.count)],
                    missing: h.count,
                    data: vec![0; h.frame_len as usize],
                });
                self.pending_total += h.frame_len as usize;
                stream.pending.len() - 1
            }
        };
        let p = &mut stream.pending[slot];
        if p.frame_len != h.frame_len
            || p.count != h.count
            || p.stride != h.stride
            || p.capture_us != h.capture_us
        {
            self.stats.inconsistent += 1;
            return None;
        }
        let index = usize::from(h.index);
        // decode_fragment checked index < count and the exact length; these
        // guards keep a caller that skipped it from panicking.
        let start = index * usize::from(h.stride);
        let Some(dest) = p.data.get_mut(start..start + frag.data.len()) else {
            self.stats.inconsistent += 1;
            return None;
        };
        match p.have.get(index) {
            Some(false) => {}
            Some(true) => {
                self.stats.duplicates += 1;
                return None;
            }
            None => {
                self.stats.inconsistent += 1;
                return None;
            }
        }
        dest.copy_from_slice(frag.data);
        p.have[index] = true;
        p.missing -= 1;
        if p.missing > 0 {
            return None;
        }
        let done = stream.pending.swap_remove(slot);
        self.pending_total -= done.data.len();
        // Frames older than this one will never be shown: drop them now.
        let mut freed = 0;
        let before = stream.pending.len();
        stream.pending.retain(|q| {
            let keep = newer(q.frame_id, done.frame_id);
            if !keep {
                freed += q.data.len();
            }
            keep
        });
        self.pending_total -= freed;
        self.stats.frames_dropped += (before - stream.pending.len()) as u64;
        stream.last_emitted = Some(done.frame_id);
        self.stats.frames += 1;
        Some(Assembled {
            sender: h.session,
            layer: h.layer,
            frame_id: done.frame_id,
            capture_us: done.capture_us,
            data: done.data,
        })
    }

    /// Drops frames that have waited longer than the timeout; returns how
    /// many. Call it now and then (each receive, or every few ms).
    pub fn expire(&mut self, now: Instant) -> u64 {
        let timeout = self.config.timeout;
        let mut dropped = 0;
        let mut freed = 0;
        for stream in self.streams.values_mut() {
            stream.pending.retain(|p| {
                let keep = now.saturating_duration_since(p.first_seen) < timeout;
                if !keep {
                    dropped += 1;
                    freed += p.data.len();
                }
                keep
            });
        }
        self.pending_total -= freed;
        self.stats.frames_dropped += dropped;
        dropped
    }

    /// When the next frame in progress times out, if any.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.streams
            .values()
            .flat_map(|s| s.pending.iter().map(|p| p.first_seen + self.config.timeout))
            .min()
    }

    /// Forgets a sender (they left), so a later one with the same id starts fresh.
    pub fn forget(&mut self, sender: SessionId) {
        self.streams.retain(|(s, _), _| *s != sender);
        self.pending_total = self.pending_bytes_counted();
    }

    /// Bytes held in frames in progress (memory stays bounded).
    pub fn pending_bytes(&self) -> usize {
        self.pending_total
    }

    fn pending_bytes_counted(&self) -> usize {
        self.streams.values().flat_map(|s| s.pending.iter().map(|p| p.data.len())).sum()
    }
}
