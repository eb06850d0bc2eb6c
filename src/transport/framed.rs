//! Frames over any reliable, ordered byte stream: the one framing of every
//! stream service (control, files, screen) on every transport (a QUIC
//! stream or a tunnel channel).
//!
//! The bytes are [`proto::coding`](crate::proto::coding)'s: [`FrameReader`]
//! buffers what arrives and takes whole frames off it with
//! [`Frame::decode_from`] (a length over the channel's limit is refused from
//! the header alone, before its payload is awaited or allocated; payloads
//! share the receive buffer, no copy), and [`FrameWriter`] writes header and
//! payload with one `write_all`, so a frame is one segment on a
//! `TCP_NODELAY` socket.

use bytes::BytesMut;
use smol::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proto::coding::{BufMutExt, Frame};
use crate::proto::{DecodeError, HEADER_LEN, Header, PROTOCOL_VERSION};

/// Bytes asked of the stream per read when no bigger frame is pending.
const READ_SIZE: usize = 64 * 1024;

/// Why no frame could be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer finished the stream between two frames.
    #[error("the stream was closed")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Malformed, over the limit, cut short, or of another protocol version.
    #[error("{0}")]
    Decode(#[from] DecodeError),
}

/// Reads whole frames from a byte stream.
pub struct FrameReader<R> {
    r: R,
    /// Received bytes not yet taken as frames.
    buf: BytesMut,
    /// Where reads land (zeroed once, reused).
    scratch: Box<[u8]>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(r: R) -> FrameReader<R> {
        FrameReader { r, buf: BytesMut::new(), scratch: vec![0; READ_SIZE].into_boxed_slice() }
    }

    /// The next frame. `limit(kind)` is the largest payload allowed for a
    /// frame of that type, in bytes; a longer one is
    /// [`DecodeError::TooLong`] as soon as its header is in. A header of
    /// another protocol version is [`DecodeError::Version`]. End of stream
    /// between frames is [`FrameError::Closed`], inside one
    /// [`DecodeError::UnexpectedEnd`].
    pub async fn next(&mut self, limit: impl Fn(u8) -> u32) -> Result<Frame, FrameError> {
        loop {
            let need = if self.buf.len() >= HEADER_LEN {
                let header = Header::decode(&self.buf)?;
                if header.version != PROTOCOL_VERSION {
                    return Err(DecodeError::Version { got: header.version }.into());
                }
                if let Some(frame) = Frame::decode_from(&mut self.buf, limit(header.kind))? {
                    return Ok(frame);
                }
                // Within the limit (checked above): wait for the rest.
                HEADER_LEN + header.len as usize - self.buf.len()
            } else {
                HEADER_LEN - self.buf.len()
            };
            self.buf.reserve(need);
            match self.r.read(&mut self.scratch).await? {
                0 if self.buf.is_empty() => return Err(FrameError::Closed),
                0 => return Err(DecodeError::UnexpectedEnd.into()),
                n => self.buf.extend_from_slice(&self.scratch[..n]),
            }
        }
    }

    /// The stream itself (bytes already buffered stay here).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.r
    }
}

/// Writes whole frames to a byte stream.
pub struct FrameWriter<W> {
    w: W,
    scratch: Vec<u8>,
    seq: u16,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(w: W) -> FrameWriter<W> {
        FrameWriter { w, scratch: Vec::new(), seq: 0 }
    }

    /// Writes one frame of type `kind` (the sequence number counts frames
    /// on this stream) and flushes it.
    pub async fn send(&mut self, kind: u8, payload: &[u8]) -> std::io::Result<()> {
        self.scratch.clear();
        encode_header(kind, self.seq, payload.len(), &mut self.scratch);
        self.scratch.extend_from_slice(payload);
        self.seq = self.seq.wrapping_add(1);
        self.w.write_all(&self.scratch).await?;
        // Big buffers are not kept around per stream.
        if self.scratch.capacity() > 256 * 1024 {
            self.scratch = Vec::new();
        }
        self.w.flush().await
    }

    /// Writes bytes that already hold whole frames (see [`encode_header`]),
    /// e.g. file chunks framed where they were read from disk.
    pub async fn send_encoded(&mut self, frames: &[u8]) -> std::io::Result<()> {
        self.w.write_all(frames).await?;
        self.w.flush().await
    }

    /// Finishes the stream (FIN): the peer reads the end after our frames.
    pub async fn close(&mut self) -> std::io::Result<()> {
        self.w.close().await
    }
}

/// Appends the header of a frame of type `kind` with a `len`-byte payload.
///
/// Panics if `len` is 4 GiB or more (no channel allows a tenth of it).
pub fn encode_header(kind: u8, seq: u16, len: usize, out: &mut Vec<u8>) {
    let len = u32::try_from(len).expect("frame payload under 4 GiB");
    out.put_value(Header { version: PROTOCOL_VERSION, kind, len, seq, flags: 0 });
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use super::*;
    use crate::proto::limits;

    #[test]
    fn reads_frames_and_rejects_hostile_streams() {
        smol::block_on(async {
            let mut wire = Vec::new();
            let mut w = FrameWriter::new(&mut wire);
            w.send(0x02, &[]).await.unwrap();
            w.send(0x10, b"abc").await.unwrap();
            let mut r = FrameReader::new(&wire[..]);
            let any = |_| 100;
            let f = r.next(any).await.unwrap();
            assert_eq!((f.header.kind, f.header.seq, f.payload.len()), (0x02, 0, 0));
            let f = r.next(any).await.unwrap();
            assert_eq!((f.header.kind, f.header.seq, &f.payload[..]), (0x10, 1, &b"abc"[..]));
            assert!(matches!(r.next(any).await, Err(FrameError::Closed)));
            // Half a header, then the end.
            let mut r = FrameReader::new(&[1u8, 2, 0][..]);
            assert!(matches!(
                r.next(any).await,
                Err(FrameError::Decode(DecodeError::UnexpectedEnd))
            ));
            // A 4 GiB length is refused from the header, without waiting
            // for (or reserving) its payload.
            let mut r = FrameReader::new(&[1u8, 0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0][..]);
            assert!(matches!(
                r.next(|_| limits::CONTROL_FROM_CLIENT).await,
                Err(FrameError::Decode(DecodeError::TooLong { .. }))
            ));
            assert!(r.buf.capacity() < 1 << 20);
            // The limit depends on the type.
            let mut r = FrameReader::new(&wire[..]);
            let strict = |kind| if kind == 0x10 { 2 } else { 100 };
            assert!(r.next(strict).await.is_ok());
            assert!(matches!(
                r.next(strict).await,
                Err(FrameError::Decode(DecodeError::TooLong { len: 3, max: 2 }))
            ));
            // A payload shorter than announced.
            let mut r = FrameReader::new(&[1u8, 0x10, 0, 0, 0, 5, 0, 0, 0, 0, 1, 2][..]);
            assert!(matches!(
                r.next(any).await,
                Err(FrameError::Decode(DecodeError::UnexpectedEnd))
            ));
            // Another protocol version.
            let mut r = FrameReader::new(&[9u8, 0x10, 0, 0, 0, 0, 0, 0, 0, 0][..]);
            assert!(matches!(
                r.next(any).await,
                Err(FrameError::Decode(DecodeError::Version { got: 9 }))
            ));
        });
    }

    #[test]
    fn frames_arrive_whole_however_the_bytes_are_cut() {
        /// Hands out at most `step` bytes per read.
        struct Trickle<'a>(&'a [u8], usize);
        impl AsyncRead for Trickle<'_> {
            fn poll_read(
                mut self: Pin<&mut Self>,
                _: &mut Context<'_>,
                buf: &mut [u8],
            ) -> Poll<std::io::Result<usize>> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Poll::Ready(Ok(n))
            }
        }
        smol::block_on(async {
            let mut wire = Vec::new();
            let mut w = FrameWriter::new(&mut wire);
            let big = vec![7u8; 200_000];
            w.send(0x21, &big).await.unwrap();
            w.send(0x29, b"end").await.unwrap();
            for step in [1, 9, 10, 4096, usize::MAX] {
                let mut r = FrameReader::new(Trickle(&wire, step));
                assert_eq!(r.next(|_| 1 << 20).await.unwrap().payload, big[..], "step {step}");
                assert_eq!(&r.next(|_| 1 << 20).await.unwrap().payload[..], b"end");
                assert!(matches!(r.next(|_| 1 << 20).await, Err(FrameError::Closed)));
            }
        });
    }
}
