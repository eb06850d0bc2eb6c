//! One codec shape for every wire type, after quinn-proto's `coding.rs`.
//!
//! Every fixed-layout type implements [`Codec`]:
//! `decode(&mut impl Buf) -> Result<Self, UnexpectedEnd>` and
//! `encode(&self, &mut impl BufMut)`, in network byte order. Decoding checks
//! `remaining()` before every read, so truncated input is the typed
//! [`UnexpectedEnd`], never a panic (the `bytes` getters panic on short
//! input, so nothing here calls one unchecked).
//!
//! [`Frame`] is the unit every stream and datagram carries: the 10-byte
//! [`Header`] and its payload. [`Frame::decode_from`] is the stream
//! decoder for a generic driver: it takes a whole frame off the front of a
//! receive buffer, or says that more bytes are needed, and refuses a length
//! over the channel's limit from the header alone (before waiting for or
//! allocating the payload).
//!
//! Transport v2 (issue 14) phase 1: nothing uses this yet; the switch-over
//! moves `net.rs`, `client/screen.rs`, `server/files.rs` and
//! `client/files.rs` framing onto it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{DecodeError, HEADER_LEN, Header};

/// The input ended before the value did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unexpected end of buffer")]
pub struct UnexpectedEnd;

/// The result of [`Codec::decode`].
pub type Result<T> = std::result::Result<T, UnexpectedEnd>;

impl From<UnexpectedEnd> for DecodeError {
    fn from(_: UnexpectedEnd) -> DecodeError {
        DecodeError::UnexpectedEnd
    }
}

/// A wire type with a fixed layout.
pub trait Codec: Sized {
    /// Reads one value from the front of `buf`, consuming exactly its bytes;
    /// [`UnexpectedEnd`] if `buf` holds fewer (then nothing is consumed).
    fn decode<B: Buf>(buf: &mut B) -> Result<Self>;
    /// Appends the value's bytes to `buf`.
    fn encode<B: BufMut>(&self, buf: &mut B);
}

macro_rules! integer {
    ($ty:ty, $get:ident, $put:ident) => {
        impl Codec for $ty {
            fn decode<B: Buf>(buf: &mut B) -> Result<$ty> {
                if buf.remaining() < std::mem::size_of::<$ty>() {
                    return Err(UnexpectedEnd);
                }
                Ok(buf.$get())
            }

            fn encode<B: BufMut>(&self, buf: &mut B) {
                buf.$put(*self);
            }
        }
    };
}

integer!(u8, get_u8, put_u8);
integer!(u16, get_u16, put_u16);
integer!(u32, get_u32, put_u32);
integer!(u64, get_u64, put_u64);

impl Codec for Header {
    /// `!BBIHH`: version, type, payload length, sequence, flags.
    fn decode<B: Buf>(buf: &mut B) -> Result<Header> {
        if buf.remaining() < HEADER_LEN {
            return Err(UnexpectedEnd);
        }
        Ok(Header {
            version: buf.get_value()?,
            kind: buf.get_value()?,
            len: buf.get_value()?,
            seq: buf.get_value()?,
            flags: buf.get_value()?,
        })
    }

    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_value(self.version);
        buf.put_value(self.kind);
        buf.put_value(self.len);
        buf.put_value(self.seq);
        buf.put_value(self.flags);
    }
}

/// `buf.get_value::<T>()` for any [`Buf`].
pub trait BufExt {
    /// Reads a `T` from the front of `self` (see [`Codec::decode`]).
    fn get_value<T: Codec>(&mut self) -> Result<T>;
}

impl<B: Buf> BufExt for B {
    fn get_value<T: Codec>(&mut self) -> Result<T> {
        T::decode(self)
    }
}

/// `buf.put_value(value)` for any [`BufMut`].
pub trait BufMutExt {
    /// Appends `value`'s bytes (see [`Codec::encode`]).
    fn put_value<T: Codec>(&mut self, value: T);
}

impl<B: BufMut> BufMutExt for B {
    fn put_value<T: Codec>(&mut self, value: T) {
        value.encode(self);
    }
}

/// A header and its payload. `header.len` is the payload's length on the
/// wire; [`Frame::new`] keeps them consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header, `len` equal to the payload's length.
    pub header: Header,
    /// The payload bytes (often sharing the buffer they were read from).
    pub payload: Bytes,
}

impl Frame {
    /// A frame of the current protocol version.
    ///
    /// Panics if `payload` is 4 GiB or longer (no channel allows a tenth of
    /// that; a caller holding such a payload has a bug, not bad input).
    pub fn new(kind: u8, seq: u16, flags: u16, payload: Bytes) -> Frame {
        let len = u32::try_from(payload.len()).expect("frame payload under 4 GiB");
        let header = Header { version: super::PROTOCOL_VERSION, kind, len, seq, flags };
        Frame { header, payload }
    }

    /// Header, then payload.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_value(self.header);
        buf.put_slice(&self.payload);
    }

    /// Takes one whole frame off the front of `buf`.
    ///
    /// - `Ok(Some(frame))`: consumed `HEADER_LEN + len` bytes; the payload
    ///   shares `buf`'s allocation (no copy).
    /// - `Ok(None)`: `buf` holds less than a whole frame; nothing consumed.
    ///   Read more and call again.
    /// - `Err(TooLong)`: the header's length is over `max`; nothing consumed.
    ///   Known as soon as the 10 header bytes are in, so a hostile length
    ///   never makes the caller wait for or reserve its payload.
    pub fn decode_from(
        buf: &mut BytesMut,
        max: u32,
    ) -> std::result::Result<Option<Frame>, DecodeError> {
        let mut peek = &buf[..];
        let Ok(header) = peek.get_value::<Header>() else {
            return Ok(None);
        };
        let len = header.check_len(max)?;
        if buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let payload = buf.split_to(len).freeze();
        Ok(Some(Frame { header, payload }))
    }

    /// Decodes a datagram that must hold exactly one frame (no trailing
    /// bytes, length within `max`).
    pub fn decode_datagram(
        mut datagram: Bytes,
        max: u32,
    ) -> std::result::Result<Frame, DecodeError> {
        let header = datagram.get_value::<Header>()?;
        let len = header.check_len(max)?;
        if datagram.len() < len {
            return Err(DecodeError::UnexpectedEnd);
        }
        if datagram.len() > len {
            return Err(DecodeError::Payload(format!(
                "{} bytes after the frame",
                datagram.len() - len
            )));
        }
        Ok(Frame { header, payload: datagram })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_codec_matches_the_byte_layout() {
        // The worked example of header.rs (Python struct.pack("!BBIHH", ...)).
        let header = Header { version: 1, kind: 0x10, len: 258, seq: 0xBEEF, flags: 3 };
        let mut out = Vec::new();
        out.put_value(header);
        assert_eq!(out, header.to_bytes());
        let mut buf = &out[..];
        assert_eq!(buf.get_value::<Header>(), Ok(header));
        for n in 0..HEADER_LEN {
            let mut short = &out[..n];
            assert_eq!(short.get_value::<Header>(), Err(UnexpectedEnd), "{n} bytes");
        }
    }

    #[test]
    fn integers_are_big_endian_and_checked() {
        let mut out = Vec::new();
        out.put_value(0x0102u16);
        out.put_value(0x03040506u32);
        out.put_value(7u64);
        out.put_value(8u8);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0, 0, 7, 8]);
        let mut buf = &out[..];
        assert_eq!(buf.get_value::<u16>(), Ok(0x0102));
        assert_eq!(buf.get_value::<u32>(), Ok(0x03040506));
        assert_eq!(buf.get_value::<u64>(), Ok(7));
        assert_eq!(buf.get_value::<u8>(), Ok(8));
        assert_eq!(buf.get_value::<u8>(), Err(UnexpectedEnd));
        // A short read consumes nothing.
        let mut short = &[1u8, 2, 3][..];
        assert_eq!(short.get_value::<u32>(), Err(UnexpectedEnd));
        assert_eq!(short.len(), 3);
    }

    fn frames() -> Vec<Frame> {
        vec![
            Frame::new(0x10, 1, 0, Bytes::from_static(b"hello")),
            Frame::new(0x02, 2, 0, Bytes::new()),
            Frame::new(0x41, 0xffff, 0x8001, Bytes::from(vec![0xab; 3000])),
        ]
    }

    #[test]
    fn stream_decoder_takes_whole_frames_however_the_bytes_arrive() {
        let mut wire = Vec::new();
        for frame in frames() {
            frame.encode(&mut wire);
        }
        // Fed one byte at a time, and all at once: the same frames.
        for chunk in [1, 7, wire.len()] {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(frame) = Frame::decode_from(&mut buf, 4096).unwrap() {
                    got.push(frame);
                }
            }
            assert_eq!(got, frames(), "chunks of {chunk}");
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn stream_decoder_refuses_a_long_frame_from_its_header() {
        let mut buf = BytesMut::new();
        Frame::new(1, 0, 0, Bytes::from(vec![0; 100])).encode(&mut buf);
        buf.truncate(HEADER_LEN); // the payload has not arrived (and never will)
        assert_eq!(
            Frame::decode_from(&mut buf, 99),
            Err(DecodeError::TooLong { len: 100, max: 99 })
        );
        assert_eq!(buf.len(), HEADER_LEN, "nothing consumed");
        assert_eq!(Frame::decode_from(&mut buf, 100), Ok(None));
    }

    #[test]
    fn datagram_decoder_table() {
        let mut whole = Vec::new();
        Frame::new(0x40, 5, 0, Bytes::from_static(b"abc")).encode(&mut whole);
        let cases: Vec<(Vec<u8>, std::result::Result<usize, DecodeError>)> = vec![
            (whole.clone(), Ok(3)),
            // Truncated header.
            (whole[..5].to_vec(), Err(DecodeError::UnexpectedEnd)),
            // Truncated payload.
            (whole[..12].to_vec(), Err(DecodeError::UnexpectedEnd)),
            // Trailing garbage is not silently ignored.
            (
                [&whole[..], b"x"].concat(),
                Err(DecodeError::Payload("1 bytes after the frame".into())),
            ),
        ];
        for (bytes, expected) in cases {
            let got =
                Frame::decode_datagram(Bytes::from(bytes.clone()), 1200).map(|f| f.payload.len());
            assert_eq!(got, expected, "{bytes:?}");
        }
        let over = Frame::decode_datagram(Bytes::from(whole), 2);
        assert_eq!(over, Err(DecodeError::TooLong { len: 3, max: 2 }));
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = Frame::decode_from(&mut buf, 32) {}
            let _ = Frame::decode_datagram(Bytes::from(bytes.clone()), 32);
            let mut slice = &bytes[..];
            let _ = slice.get_value::<Header>();
            let _ = slice.get_value::<u64>();
        }

        #[test]
        fn frames_round_trip(kind: u8, seq: u16, flags: u16,
                             payload in proptest::collection::vec(any::<u8>(), 0..200)) {
            let frame = Frame::new(kind, seq, flags, Bytes::from(payload));
            let mut wire = BytesMut::new();
            frame.encode(&mut wire);
            prop_assert_eq!(Frame::decode_from(&mut wire, 200), Ok(Some(frame.clone())));
            prop_assert!(wire.is_empty());
        }
    }
}
