//! Per-sender receive statistics: frame rate, bit rate, loss and delay over a
//! sliding window. Sans-IO: time comes in as arguments.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// What a tile's overlay or a bot report shows for one sender.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SenderStats {
    /// Frames shown since the start.
    pub frames: u64,
    /// Frames per second over the window.
    pub fps: f64,
    /// Kilobits per second of JPEG data over the window.
    pub kbps: f64,
    /// Fraction of the sender's frames (by frame id) that never arrived
    /// whole, over the window, 0.0–1.0.
    pub loss: f64,
    /// Mean capture → decoded delay over the window, milliseconds.
    pub delay_ms: f64,
}

struct Sample {
    at: Instant,
    frame_id: u32,
    bytes: usize,
    delay_ms: f64,
}

/// Keeps the window, the totals and (bounded) every delay for percentiles.
pub struct StreamStats {
    window: Duration,
    recent: VecDeque<Sample>,
    frames: u64,
    bytes: u64,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    delays: Vec<f64>,
}

/// Delays kept for percentiles: an hour at 30 fps.
const MAX_DELAYS: usize = 108_000;

impl StreamStats {
    /// Statistics whose rates cover the last `window`.
    pub fn new(window: Duration) -> StreamStats {
        StreamStats {
            window,
            recent: VecDeque::new(),
            frames: 0,
            bytes: 0,
            first_at: None,
            last_at: None,
            delays: Vec::new(),
        }
    }

    /// A frame of `bytes` JPEG bytes was decoded at `now`, `delay_ms` after capture.
    pub fn on_frame(&mut self, now: Instant, frame_id: u32, bytes: usize, delay_ms: f64) {
        self.frames += 1;
        self.bytes += bytes as u64;
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        if self.delays.len() < MAX_DELAYS {
            self.delays.push(delay_ms);
        }
        self.recent.push_back(Sample { at: now, frame_id, bytes, delay_ms });
        self.trim(now);
    }

    fn trim(&mut self, now: Instant) {
        while self.recent.front().is_some_and(|s| now.saturating_duration_since(s.at) > self.window)
        {
            self.recent.pop_front();
        }
    }

    /// Rates over the window ending at `now`, totals and delay percentiles.
    pub fn snapshot(&mut self, now: Instant) -> SenderStats {
        self.trim(now);
        let n = self.recent.len();
        let mut s = SenderStats { frames: self.frames, ..SenderStats::default() };
        if n == 0 {
            return s;
        }
        let secs = self.window.as_secs_f64();
        s.fps = n as f64 / secs;
        s.kbps = self.recent.iter().map(|r| r.bytes as f64).sum::<f64>() * 8.0 / 1000.0 / secs;
        s.delay_ms = self.recent.iter().map(|r| r.delay_ms).sum::<f64>() / n as f64;
        let first = self.recent.front().map(|r| r.frame_id).unwrap_or(0);
        let last = self.recent.back().map(|r| r.frame_id).unwrap_or(0);
        let expected = f64::from(last.wrapping_sub(first).saturating_add(1));
        if expected >= n as f64 {
            s.loss = 1.0 - n as f64 / expected;
        }
        s
    }

    /// Frames since the start.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// JPEG bytes since the start.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// From the first frame to the last.
    pub fn span(&self) -> Duration {
        match (self.first_at, self.last_at) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        }
    }

    /// Every capture → decoded delay seen, in arrival order (milliseconds).
    pub fn delays_ms(&self) -> &[f64] {
        &self.delays
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_loss_and_delay_over_the_window() {
        let t0 = Instant::now();
        let mut s = StreamStats::new(Duration::from_secs(2));
        // 15 fps for 4 s, every 4th frame lost, 10 kB frames, 20 ms delay.
        let mut id = 0;
        for i in 0..60u32 {
            id += 1;
            if id % 4 == 0 {
                continue;
            }
            let at = t0 + Duration::from_millis(u64::from(i) * 1000 / 15);
            s.on_frame(at, id, 10_000, 20.0);
        }
        let snap = s.snapshot(t0 + Duration::from_millis(59 * 1000 / 15));
        assert!((snap.fps - 11.25).abs() < 1.0, "{snap:?}");
        assert!((snap.kbps - 900.0).abs() < 80.0, "{snap:?}");
        assert!((snap.loss - 0.25).abs() < 0.05, "{snap:?}");
        assert_eq!(snap.delay_ms, 20.0);
        assert_eq!(snap.frames, 45);
        // Long silence: the window empties.
        let later = s.snapshot(t0 + Duration::from_secs(60));
        assert_eq!((later.fps, later.frames), (0.0, 45));
    }
}
