//! The tunnel's outgoing datagram queue and the datagrams' wire form
//! (`docs/transport-v2.md` §5.4): sans-IO, no clock.
//!
//! - [`DatagramQueue`] holds at most [`DATAGRAM_QUEUE_BYTES`] of payload and
//!   drops the **oldest** datagram past it (newest wins, as a QUIC send
//!   buffer under load): pushing never blocks.
//! - [`DatagramQueue::pop_message`] turns what is queued into one
//!   WebSocket message: a lone datagram as a DATAGRAM message (kind `0x01`),
//!   two or more as one BATCH message (kind `0x08`) of up to
//!   [`MAX_BATCH`] bytes. A video frame's fragments, queued together by the
//!   sender, so cost one WebSocket frame, one TLS record (up to 16 KiB of
//!   them) and one write instead of one of each per fragment.
//! - [`decode_batch`] is the receiver's side of a BATCH.

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

use super::mux::{MAX_CHUNK, MAX_DATAGRAM, kind};

/// Outgoing datagrams waiting for the writer, in bytes of payload; past it
/// the oldest is dropped (about 0.5 s of full-layer video, as QUIC's send
/// buffer).
pub const DATAGRAM_QUEUE_BYTES: usize = 1 << 20;
/// Largest BATCH message written, in bytes (kind byte and length prefixes
/// included): one [`MAX_CHUNK`], so a datagram or a control message waits
/// behind at most as much as behind one stream chunk.
pub const MAX_BATCH: usize = MAX_CHUNK;
/// Bytes of a BATCH entry's length prefix (`u16`, big-endian).
const LEN_BYTES: usize = 2;

// A datagram's length must fit the prefix.
const _: () = assert!(MAX_DATAGRAM <= u16::MAX as usize);
// Any datagram fits a batch (with the kind byte and its prefix).
const _: () = assert!(1 + LEN_BYTES + MAX_DATAGRAM <= MAX_BATCH);

/// Queued outgoing datagrams, newest wins (see the module docs).
#[derive(Debug, Default)]
pub struct DatagramQueue {
    queue: VecDeque<Bytes>,
    bytes: usize,
    dropped: u64,
}

impl DatagramQueue {
    /// Queues `data` (at most [`MAX_DATAGRAM`] bytes: the caller checks),
    /// then drops the oldest datagrams while over [`DATAGRAM_QUEUE_BYTES`].
    pub fn push(&mut self, data: Bytes) {
        debug_assert!(data.len() <= MAX_DATAGRAM);
        self.bytes += data.len();
        self.queue.push_back(data);
        while self.bytes > DATAGRAM_QUEUE_BYTES {
            let Some(old) = self.queue.pop_front() else { break };
            self.bytes -= old.len();
            self.dropped += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Payload bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Datagrams dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets every queued datagram (the connection closed).
    pub fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }

    /// The next message carrying queued datagrams, oldest first: a DATAGRAM
    /// message when one is queued (or the next one would not fit a batch
    /// with it), else a BATCH of as many as fit [`MAX_BATCH`] bytes.
    pub fn pop_message(&mut self) -> Option<Vec<u8>> {
        let first = self.queue.pop_front()?;
        self.bytes -= first.len();
        let fits = |size: usize, next: &Bytes| size + LEN_BYTES + next.len() <= MAX_BATCH;
        let mut size = 1 + LEN_BYTES + first.len();
        if !self.queue.front().is_some_and(|next| fits(size, next)) {
            let mut message = Vec::with_capacity(1 + first.len());
            message.push(kind::DATAGRAM);
            message.extend_from_slice(&first);
            return Some(message);
        }
        let mut taken = 1;
        for next in self.queue.iter() {
            if !fits(size, next) {
                break;
            }
            size += LEN_BYTES + next.len();
            taken += 1;
        }
        let mut message = Vec::with_capacity(size);
        message.push(kind::BATCH);
        let mut put = |d: &Bytes| {
            // Every queued datagram is at most MAX_DATAGRAM (< 2^16) bytes.
            message.extend_from_slice(&(d.len() as u16).to_be_bytes());
            message.extend_from_slice(d);
        };
        put(&first);
        for d in self.queue.drain(..taken - 1) {
            self.bytes -= d.len();
            put(&d);
        }
        Some(message)
    }
}

/// The datagrams of a BATCH message's body (after the kind byte), in order,
/// each handed to `out` (slices of `body`, no copy). `Err` names what is
/// wrong (the connection then closes with 1002): an empty batch, a length
/// prefix cut short, a length past the end, or a datagram over
/// [`MAX_DATAGRAM`]; nothing is handed out then.
pub fn decode_batch(mut body: Bytes, mut out: impl FnMut(Bytes)) -> Result<(), String> {
    if body.is_empty() {
        return Err("an empty batch".into());
    }
    // Check the whole message before handing anything out.
    let mut rest = &body[..];
    while !rest.is_empty() {
        if rest.len() < LEN_BYTES {
            return Err("a batch entry's length cut short".into());
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if len > MAX_DATAGRAM {
            return Err(format!("a datagram of {len} bytes in a batch"));
        }
        if rest.len() < LEN_BYTES + len {
            return Err(format!("a batch entry of {len} bytes past the message's end"));
        }
        rest = &rest[LEN_BYTES + len..];
    }
    while body.has_remaining() {
        let len = usize::from(body.get_u16());
        out(body.split_to(len));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(message: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut got = Vec::new();
        decode_batch(Bytes::copy_from_slice(message), |d| got.push(d.to_vec()))?;
        Ok(got)
    }

    #[test]
    fn one_datagram_is_a_datagram_message_and_several_are_one_batch() {
        let mut q = DatagramQueue::default();
        q.push(Bytes::from_static(b"voice"));
        assert_eq!(q.pop_message().unwrap(), b"\x01voice");
        assert!(q.pop_message().is_none());
        q.push(Bytes::from_static(b"ab"));
        q.push(Bytes::from_static(b""));
        q.push(Bytes::from_static(b"xyz"));
        // The documented bytes: 08, then (u16 length, payload) per datagram.
        let batch = q.pop_message().unwrap();
        assert_eq!(batch, b"\x08\x00\x02ab\x00\x00\x00\x03xyz");
        assert_eq!(q.bytes(), 0);
        assert!(q.is_empty());
        assert_eq!(decode(&batch[1..]).unwrap(), vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]);
    }

    #[test]
    fn a_batch_stops_at_its_size_and_keeps_the_order() {
        let mut q = DatagramQueue::default();
        for i in 0..10u8 {
            q.push(Bytes::from(vec![i; MAX_DATAGRAM]));
        }
        let mut seen = Vec::new();
        while let Some(m) = q.pop_message() {
            assert!(m.len() <= MAX_BATCH, "{}", m.len());
            match m[0] {
                kind::BATCH => seen.extend(decode(&m[1..]).unwrap().iter().map(|d| d[0])),
                kind::DATAGRAM => seen.push(m[1]),
                other => panic!("kind {other}"),
            }
        }
        assert_eq!(seen, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        let mut q = DatagramQueue::default();
        let n = DATAGRAM_QUEUE_BYTES / 1000 + 10;
        for i in 0..n {
            q.push(Bytes::from(vec![(i % 251) as u8; 1000]));
        }
        let kept = DATAGRAM_QUEUE_BYTES / 1000;
        assert_eq!(q.dropped(), (n - kept) as u64);
        assert_eq!(q.bytes(), kept * 1000);
        let m = q.pop_message().unwrap();
        assert_eq!(decode(&m[1..]).unwrap()[0][0], ((n - kept) % 251) as u8, "the newest survive");
    }

    #[test]
    fn malformed_batches_are_refused_whole() {
        for bad in [&b""[..], b"\x00", b"\x00\x05abc", b"\x00\x01a\x00", b"\xff\xff"] {
            let mut got = 0;
            let r = decode_batch(Bytes::copy_from_slice(bad), |_| got += 1);
            assert!(r.is_err(), "{bad:?}");
            assert_eq!(got, 0, "{bad:?}: nothing handed out");
        }
        let over = (MAX_DATAGRAM as u16 + 1).to_be_bytes();
        let mut body = over.to_vec();
        body.resize(2 + MAX_DATAGRAM + 1, 0);
        assert!(decode(&body).unwrap_err().contains("16385 bytes"));
    }
}
