//! The queues between a cpal device callback and the audio engine: wait-free
//! single-producer single-consumer rings ([`rtrb`]), so the device thread
//! never locks, waits or allocates.
//!
//! Samples are device samples, interleaved (`channels` per frame), and every
//! push, pull and trim moves whole frames, so channels never swap.
//!
//! - Microphone ([`MicQueue`]): the callback pushes, the engine drains all
//!   each 20 ms frame. The ring holds half a second; if the engine stalls
//!   longer, the newest samples are dropped (the engine's own buffer keeps
//!   the freshest three frames once it reads again).
//! - Speaker ([`SpeakerQueue`]): the engine pushes, the callback pulls. At
//!   most `limit` samples (60 ms) are kept for low delay: the callback drops
//!   the oldest above that before playing (a device that plays slower than we
//!   send). Underflow plays silence. The ring holds twice the limit, so a
//!   write between two callbacks never has to drop anything.

use rtrb::{Consumer, Producer, RingBuffer};

/// Device samples that fit whole frames of `channels` in `n`.
fn whole(n: usize, channels: usize) -> usize {
    n / channels * channels
}

/// Creates the microphone queue: a ring of `capacity` samples (rounded down
/// to whole frames, at least one frame) for `channels`-channel audio.
pub fn mic(capacity: usize, channels: usize) -> (MicProducer, MicQueue) {
    let channels = channels.max(1);
    let capacity = whole(capacity, channels).max(channels);
    let (tx, rx) = RingBuffer::new(capacity);
    (MicProducer { tx, channels }, MicQueue { rx })
}

/// The microphone callback's end.
pub struct MicProducer {
    tx: Producer<f32>,
    channels: usize,
}

impl MicProducer {
    /// Queues the whole frames of `data` that fit; returns how many samples
    /// were dropped because the engine has not drained the queue.
    pub fn push<T: Copy>(&mut self, data: &[T], convert: impl Fn(T) -> f32) -> usize {
        let n = whole(self.tx.slots().min(data.len()), self.channels);
        if let Ok(chunk) = self.tx.write_chunk_uninit(n) {
            chunk.fill_from_iter(data[..n].iter().map(|&s| convert(s)));
        }
        data.len() - n
    }
}

/// The engine's end of the microphone queue.
pub struct MicQueue {
    rx: Consumer<f32>,
}

impl MicQueue {
    /// Moves everything queued to the end of `out`.
    pub fn drain_into(&mut self, out: &mut Vec<f32>) {
        let n = self.rx.slots();
        if let Ok(chunk) = self.rx.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            out.extend_from_slice(a);
            out.extend_from_slice(b);
            chunk.commit_all();
        }
    }
}

/// Creates the speaker queue for `channels`-channel audio keeping at most
/// `limit` samples (rounded down to whole frames, at least one frame).
pub fn speaker(limit: usize, channels: usize) -> (SpeakerQueue, SpeakerConsumer) {
    let channels = channels.max(1);
    let limit = whole(limit, channels).max(channels);
    let (tx, rx) = RingBuffer::new(limit * 2);
    (SpeakerQueue { tx, channels, limit }, SpeakerConsumer { rx, channels, limit })
}

/// The engine's end of the speaker queue.
pub struct SpeakerQueue {
    tx: Producer<f32>,
    channels: usize,
    limit: usize,
}

impl SpeakerQueue {
    /// Queues mono `samples`, each copied to every channel. Returns how many
    /// mono samples did not fit (only when the device has stopped pulling).
    pub fn push_mono(&mut self, samples: &[f32]) -> usize {
        let frames = (self.tx.slots() / self.channels).min(samples.len());
        let channels = self.channels;
        if let Ok(chunk) = self.tx.write_chunk_uninit(frames * channels) {
            chunk.fill_from_iter(
                samples[..frames].iter().flat_map(|&x| std::iter::repeat_n(x, channels)),
            );
        }
        samples.len() - frames
    }

    /// Device samples waiting to be played, as the callback will see them
    /// (at most the limit: it drops the oldest above it).
    pub fn queued(&self) -> usize {
        (self.tx.buffer().capacity() - self.tx.slots()).min(self.limit)
    }
}

/// The speaker callback's end.
pub struct SpeakerConsumer {
    rx: Consumer<f32>,
    channels: usize,
    limit: usize,
}

impl SpeakerConsumer {
    /// Fills `out` (interleaved device samples): first drops the oldest
    /// whole frames above the limit, then plays what is queued, then
    /// `silence`. Returns the number of samples dropped.
    pub fn pull<T: Copy>(
        &mut self,
        out: &mut [T],
        convert: impl Fn(f32) -> T,
        silence: T,
    ) -> usize {
        let excess =
            whole(self.rx.slots().saturating_sub(self.limit) + self.channels - 1, self.channels)
                .min(self.rx.slots());
        if let Ok(chunk) = self.rx.read_chunk(excess) {
            chunk.commit_all();
        }
        let n = self.rx.slots().min(out.len());
        let (played, rest) = out.split_at_mut(n);
        if let Ok(chunk) = self.rx.read_chunk(n) {
            for (slot, x) in played.iter_mut().zip(chunk) {
                *slot = convert(x);
            }
        }
        rest.fill(silence);
        excess
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Interleaved stereo frames whose left sample is the frame number and
    /// right sample its negative, so a channel swap or a split frame shows.
    fn stereo(frames: std::ops::Range<i32>) -> Vec<f32> {
        frames.flat_map(|f| [f as f32, -(f as f32)]).collect()
    }

    #[test]
    fn mic_samples_arrive_in_order_converted() {
        let (mut tx, mut rx) = mic(16, 2);
        let data: Vec<i16> = vec![1, -1, 2, -2];
        assert_eq!(tx.push(&data, |s| f32::from(s) / 2.0), 0);
        let mut out = Vec::new();
        rx.drain_into(&mut out);
        assert_eq!(out, [0.5, -0.5, 1.0, -1.0]);
        rx.drain_into(&mut out);
        assert_eq!(out.len(), 4, "drained means empty");
    }

    #[test]
    fn a_full_mic_queue_drops_the_newest_in_whole_frames() {
        // 7 samples of room is 3 stereo frames.
        let (mut tx, mut rx) = mic(7, 2);
        let data = stereo(0..5);
        assert_eq!(tx.push(&data, |s| s), 4, "two frames did not fit");
        assert_eq!(tx.push(&data, |s| s), 10, "nothing fits until drained");
        let mut out = Vec::new();
        rx.drain_into(&mut out);
        assert_eq!(out, stereo(0..3), "the oldest kept, frames whole");
        // Room again after the drain.
        assert_eq!(tx.push(&stereo(7..8), |s| s), 0);
        rx.drain_into(&mut out);
        assert_eq!(out[6..], stereo(7..8));
    }

    #[test]
    fn speaker_copies_mono_to_every_channel_and_underflow_is_silence() {
        let (mut tx, mut rx) = speaker(100, 2);
        assert_eq!(tx.push_mono(&[0.25, 0.5]), 0);
        assert_eq!(tx.queued(), 4);
        let mut out = [9i32; 6];
        let dropped = rx.pull(&mut out, |x| (x * 100.0) as i32, 0);
        assert_eq!(dropped, 0);
        assert_eq!(out, [25, 25, 50, 50, 0, 0]);
        assert_eq!(tx.queued(), 0);
        let mut out = [9i32; 4];
        rx.pull(&mut out, |x| x as i32, 0);
        assert_eq!(out, [0; 4], "nothing queued: silence");
    }

    #[test]
    fn a_slow_speaker_drops_the_oldest_above_the_limit() {
        // Limit 3 stereo frames (6 samples); the ring holds 6 frames.
        let (mut tx, mut rx) = speaker(6, 2);
        let mono: Vec<f32> = (0..5).map(|f| f as f32).collect();
        assert_eq!(tx.push_mono(&mono), 0, "a write between callbacks fits");
        assert_eq!(tx.queued(), 6, "the delay counted is at most the limit");
        let mut out = [0.0f32; 2];
        let dropped = rx.pull(&mut out, |x| x, 0.0);
        assert_eq!(dropped, 4, "two oldest frames dropped");
        assert_eq!(out, [2.0, 2.0], "then the oldest of the newest three plays");
        let mut out = [0.0f32; 6];
        rx.pull(&mut out, |x| x, 0.0);
        assert_eq!(out, [3.0, 3.0, 4.0, 4.0, 0.0, 0.0]);
    }

    #[test]
    fn a_stopped_speaker_refuses_what_does_not_fit() {
        let (mut tx, rx) = speaker(4, 2);
        // Capacity is twice the limit: 4 frames.
        assert_eq!(tx.push_mono(&[1.0; 6]), 2);
        drop(rx);
        assert_eq!(tx.push_mono(&[1.0]), 1, "still full, never blocks");
    }

    #[test]
    fn frames_stay_whole_across_odd_limits() {
        // A limit that is not a multiple of the channel count.
        let (mut tx, mut rx) = speaker(7, 2);
        let mono: Vec<f32> = (0..6).map(|f| f as f32).collect();
        tx.push_mono(&mono);
        let mut out = [0.0f32; 12];
        rx.pull(&mut out, |x| x, -1.0);
        // 6 frames queued, limit 3 frames: frames 3, 4, 5 play, each on both
        // channels.
        assert_eq!(out[..6], [3.0, 3.0, 4.0, 4.0, 5.0, 5.0]);
        assert!(out[6..].iter().all(|&x| x == -1.0));
    }
}
