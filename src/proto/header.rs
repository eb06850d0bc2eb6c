//! The 10-byte frame header every Sapora message starts with.
//!
//! Layout (network byte order, Python `struct` format `!BBIHH`):
//! version u8, type u8, payload length u32, sequence u16, flags u16.

use super::DecodeError;

/// Size of [`Header`] on the wire.
pub const HEADER_LEN: usize = 10;

/// A decoded frame header. Decoding checks nothing but the size of the input;
/// callers check `len` against their channel's limit with [`Header::check_len`]
/// before allocating anything for the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Byte 0: the protocol version ([`super::PROTOCOL_VERSION`]).
    pub version: u8,
    /// Byte 1: the message type ([`super::MsgType`] as `u8`); kept raw so an
    /// unknown type can be reported rather than lost.
    pub kind: u8,
    /// Bytes 2–5: the payload's length in bytes, big-endian.
    pub len: u32,
    /// Bytes 6–7: a sequence number, big-endian; 0 where a channel does not
    /// number its frames.
    pub seq: u16,
    /// Bytes 8–9: flags, big-endian; 0 (reserved) in this version.
    pub flags: u16,
}

impl Header {
    /// Reads the first [`HEADER_LEN`] bytes of `buf` (more may follow);
    /// [`DecodeError::UnexpectedEnd`] if there are fewer. Checks no field.
    pub fn decode(buf: &[u8]) -> Result<Header, DecodeError> {
        let b: &[u8; HEADER_LEN] = buf
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(DecodeError::UnexpectedEnd)?;
        Ok(Header {
            version: b[0],
            kind: b[1],
            len: u32::from_be_bytes([b[2], b[3], b[4], b[5]]),
            seq: u16::from_be_bytes([b[6], b[7]]),
            flags: u16::from_be_bytes([b[8], b[9]]),
        })
    }

    /// Appends the [`HEADER_LEN`] header bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.kind);
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.flags.to_be_bytes());
    }

    /// The [`HEADER_LEN`] header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut v = Vec::with_capacity(HEADER_LEN);
        self.encode(&mut v);
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(&v);
        out
    }

    /// Refuses a payload longer than `max` — to be called before allocating.
    pub fn check_len(&self, max: u32) -> Result<usize, DecodeError> {
        if self.len > max {
            return Err(DecodeError::TooLong { len: self.len, max });
        }
        Ok(self.len as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_struct_layout() {
        // struct.pack("!BBIHH", 1, 0x10, 258, 0xBEEF, 3)
        let h = Header { version: 1, kind: 0x10, len: 258, seq: 0xBEEF, flags: 3 };
        assert_eq!(h.to_bytes(), [1, 0x10, 0, 0, 1, 2, 0xBE, 0xEF, 0, 3]);
        assert_eq!(Header::decode(&h.to_bytes()).unwrap(), h);
    }

    #[test]
    fn short_input_is_unexpected_end() {
        for n in 0..HEADER_LEN {
            assert_eq!(Header::decode(&[0u8; HEADER_LEN][..n]), Err(DecodeError::UnexpectedEnd));
        }
    }

    #[test]
    fn four_gib_length_is_refused_before_allocation() {
        let h = Header::decode(&[1, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]).unwrap();
        assert_eq!(h.len, u32::MAX);
        assert_eq!(h.check_len(65536), Err(DecodeError::TooLong { len: u32::MAX, max: 65536 }));
        assert_eq!(Header { len: 65536, ..h }.check_len(65536), Ok(65536));
    }
}
