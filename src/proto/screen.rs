//! Screen sharing: presenter → host → viewers, one stream each (its first
//! frame, [`super::StreamOpen`], says presenter or viewer).
//!
//! Control messages are postcard structs like the control channel's. Tile
//! updates (`ScreenFrame`, 0x30) use a fixed binary layout instead, so the host
//! can check and store tiles without copying them through serde:
//!
//! ```text
//! frame u32 | capture_ms u64 | width u16 | height u16 | flags u8 | count u16
//! count × ( col u16 | row u16 | len u32 | len bytes of baseline JPEG )
//! ```
//! All integers big-endian. `docs/protocol.md` §8 has the conversation.

use serde::{Deserialize, Serialize};

use super::{DecodeError, MsgType, SessionId, decode_payload, encode_payload};

/// Tiles are `SCREEN_TILE`×`SCREEN_TILE` pixels; the last column and row are
/// narrower when the screen size is not a multiple of it.
pub const SCREEN_TILE: usize = 64;
/// Largest screen either side, in pixels.
pub const SCREEN_MAX_SIDE: u16 = 4096;
/// Largest JPEG for one tile: a 64×64 tile of noise at quality 100 stays well
/// under this.
pub const SCREEN_MAX_TILE_BYTES: usize = 64 * 1024;
/// Largest screen-channel payload in either direction. Senders split larger
/// updates into several `ScreenFrame`s (flag `SCREEN_MORE`).
pub const SCREEN_MAX_PAYLOAD: u32 = 8 * 1024 * 1024;
/// Senders aim at this many bytes of tiles per `ScreenFrame`.
pub const SCREEN_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// `ScreenFrame.flags` bit: more tiles of this update follow in the next
/// `ScreenFrame`; a viewer shows the picture only once it is clear.
pub const SCREEN_MORE: u8 = 1;
/// Fixed part of a `ScreenFrame` payload.
pub const SCREEN_FRAME_HEADER: usize = 4 + 8 + 2 + 2 + 1 + 2;
/// Fixed part of each tile in a `ScreenFrame`.
pub const SCREEN_TILE_HEADER: usize = 2 + 2 + 4;

/// Columns and rows of tiles for a screen of `width`×`height`.
pub fn screen_grid(width: u16, height: u16) -> (u16, u16) {
    let t = SCREEN_TILE as u16;
    (width.div_ceil(t), height.div_ceil(t))
}

/// 0x31, client → host: "I want to present a screen of this size".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenStart {
    /// Screen width in pixels, 1 to [`SCREEN_MAX_SIDE`].
    pub width: u16,
    /// Screen height in pixels, 1 to [`SCREEN_MAX_SIDE`].
    pub height: u16,
}

/// 0x31, host → client: someone is presenting (the presenter gets it too, as
/// the grant). Tiles of this presentation follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenStarted {
    /// The presenter's name in the room.
    pub presenter: String,
    /// The presenter's session id.
    pub session: SessionId,
    /// Screen width in pixels, 1 to [`SCREEN_MAX_SIDE`].
    pub width: u16,
    /// Screen height in pixels, 1 to [`SCREEN_MAX_SIDE`].
    pub height: u16,
}

/// Why a presentation ended, in [`ScreenStopped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ScreenStopReason {
    /// The presenter stopped sharing.
    Stopped,
    /// The presenter left the meeting or lost its link.
    Left,
    /// The presenter broke the protocol and was disconnected.
    Error,
}

/// 0x32, host → client: the presentation is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenStopped {
    /// Who was presenting.
    pub presenter: String,
    /// Why it ended.
    pub reason: ScreenStopReason,
}

/// 0x34, host → client: refused a ScreenStart because someone else presents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenBusy {
    /// Who is presenting now.
    pub presenter: String,
}

/// 0x35, host → client: the connection is refused (bad token, protocol
/// error); the host closes it after this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenRefused {
    /// Why, as a sentence for people.
    pub reason: String,
}

/// 0x36, viewer → host: the tile update for `frame` has been painted. The
/// host sends a viewer its next tile update only after this, so a slow
/// viewer gets fewer, newer updates instead of a backlog in socket buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScreenAck {
    /// The [`TileFrame::frame`] that was painted.
    pub frame: u32,
}

/// One tile of a [`TileFrame`], borrowing its JPEG from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRef<'a> {
    /// Tile column, from 0 at the left, below the grid's column count
    /// ([`screen_grid`]).
    pub col: u16,
    /// Tile row, from 0 at the top, below the grid's row count.
    pub row: u16,
    /// The tile as a baseline JPEG, 1 to [`SCREEN_MAX_TILE_BYTES`] bytes.
    pub jpeg: &'a [u8],
}

/// 0x30, both directions: a tile update, parsed without copying the tiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileFrame<'a> {
    /// The presenter's frame counter (host → viewer: the newest frame whose
    /// tiles this update carries).
    pub frame: u32,
    /// Unix milliseconds when the presenter captured that frame.
    pub capture_ms: u64,
    /// Screen width in pixels, 1 to [`SCREEN_MAX_SIDE`].
    pub width: u16,
    /// Screen height in pixels, 1 to [`SCREEN_MAX_SIDE`].
    pub height: u16,
    /// Bit flags: [`SCREEN_MORE`]; other bits are 0.
    pub flags: u8,
    /// The tiles this update changes, in the order sent.
    pub tiles: Vec<TileRef<'a>>,
}

/// The fixed fields of a tile update, for [`encode_tile_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileFrameHead {
    /// As [`TileFrame::frame`].
    pub frame: u32,
    /// As [`TileFrame::capture_ms`].
    pub capture_ms: u64,
    /// Screen width in pixels.
    pub width: u16,
    /// Screen height in pixels.
    pub height: u16,
    /// As [`TileFrame::flags`].
    pub flags: u8,
}

/// Appends a tile-update payload (no frame header) to `out`.
pub fn encode_tile_frame<'t>(
    head: TileFrameHead,
    tiles: impl IntoIterator<Item = (u16, u16, &'t [u8])>,
    out: &mut Vec<u8>,
) {
    let start = out.len();
    out.extend_from_slice(&head.frame.to_be_bytes());
    out.extend_from_slice(&head.capture_ms.to_be_bytes());
    out.extend_from_slice(&head.width.to_be_bytes());
    out.extend_from_slice(&head.height.to_be_bytes());
    out.push(head.flags);
    let count_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let mut count = 0u16;
    for (col, row, jpeg) in tiles {
        out.extend_from_slice(&col.to_be_bytes());
        out.extend_from_slice(&row.to_be_bytes());
        out.extend_from_slice(&(jpeg.len() as u32).to_be_bytes());
        out.extend_from_slice(jpeg);
        count += 1;
    }
    out[count_at..count_at + 2].copy_from_slice(&count.to_be_bytes());
    debug_assert!(out.len() - start >= SCREEN_FRAME_HEADER);
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
}

impl<'a> TileFrame<'a> {
    /// Parses and checks a tile update: size within limits, every tile inside
    /// the grid, lengths within the payload. Allocates only the tile list,
    /// sized by what the payload can actually hold.
    pub fn parse(payload: &'a [u8]) -> Result<TileFrame<'a>, DecodeError> {
        let bad = |why: String| Err(DecodeError::Payload(why));
        let mut c = Cursor(payload);
        let frame = c.u32()?;
        let capture_ms = c.u64()?;
        let width = c.u16()?;
        let height = c.u16()?;
        let flags = c.u8()?;
        let count = usize::from(c.u16()?);
        if width == 0 || height == 0 || width > SCREEN_MAX_SIDE || height > SCREEN_MAX_SIDE {
            return bad(format!("screen of {width}x{height} is out of range"));
        }
        let (cols, rows) = screen_grid(width, height);
        if count > c.0.len() / SCREEN_TILE_HEADER {
            return Err(DecodeError::UnexpectedEnd);
        }
        let mut tiles = Vec::with_capacity(count);
        for _ in 0..count {
            let col = c.u16()?;
            let row = c.u16()?;
            let len = c.u32()? as usize;
            if col >= cols || row >= rows {
                return bad(format!("tile ({col}, {row}) is outside a {cols}x{rows} grid"));
            }
            if len == 0 || len > SCREEN_MAX_TILE_BYTES {
                return bad(format!("tile of {len} bytes (limit {SCREEN_MAX_TILE_BYTES})"));
            }
            tiles.push(TileRef { col, row, jpeg: c.take(len)? });
        }
        Ok(TileFrame { frame, capture_ms, width, height, flags, tiles })
    }

    /// The fixed fields, for forwarding the update with other tiles.
    pub fn head(&self) -> TileFrameHead {
        TileFrameHead {
            frame: self.frame,
            capture_ms: self.capture_ms,
            width: self.width,
            height: self.height,
            flags: self.flags,
        }
    }
}

/// Everything a client may send on the screen channel. Tile updates are
/// handled apart (see [`TileFrame`]) so they are never copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenClientMsg {
    /// 0x31: start presenting a screen of this size.
    Start(ScreenStart),
    /// 0x32: stop presenting (empty payload).
    Stop,
    /// 0x36: this tile update is painted.
    Ack(ScreenAck),
}

/// Everything a host may send on the screen channel except tile updates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenHostMsg {
    /// 0x31: someone presents (also the presenter's grant).
    Started(ScreenStarted),
    /// 0x32: the presentation is over.
    Stopped(ScreenStopped),
    /// 0x34: someone else presents already.
    Busy(ScreenBusy),
    /// 0x35: refused; the host closes the stream.
    Refused(ScreenRefused),
}

impl ScreenClientMsg {
    /// The header's message type for this message.
    pub fn msg_type(&self) -> MsgType {
        match self {
            ScreenClientMsg::Start(_) => MsgType::ScreenStart,
            ScreenClientMsg::Stop => MsgType::ScreenStop,
            ScreenClientMsg::Ack(_) => MsgType::ScreenAck,
        }
    }

    /// The postcard payload (empty for Stop).
    pub fn payload(&self) -> Vec<u8> {
        match self {
            ScreenClientMsg::Start(m) => encode_payload(m),
            ScreenClientMsg::Stop => Vec::new(),
            ScreenClientMsg::Ack(m) => encode_payload(m),
        }
    }

    /// Decodes a control message; `ScreenFrame` is `Unexpected` here.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<ScreenClientMsg, DecodeError> {
        Ok(match MsgType::try_from(kind)? {
            MsgType::ScreenStart => ScreenClientMsg::Start(decode_payload(payload)?),
            MsgType::ScreenStop => ScreenClientMsg::Stop,
            MsgType::ScreenAck => ScreenClientMsg::Ack(decode_payload(payload)?),
            _ => return Err(DecodeError::Unexpected(kind)),
        })
    }
}

impl ScreenHostMsg {
    /// The header's message type for this message.
    pub fn msg_type(&self) -> MsgType {
        match self {
            ScreenHostMsg::Started(_) => MsgType::ScreenStart,
            ScreenHostMsg::Stopped(_) => MsgType::ScreenStop,
            ScreenHostMsg::Busy(_) => MsgType::ScreenBusy,
            ScreenHostMsg::Refused(_) => MsgType::ScreenRefused,
        }
    }

    /// The postcard payload.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            ScreenHostMsg::Started(m) => encode_payload(m),
            ScreenHostMsg::Stopped(m) => encode_payload(m),
            ScreenHostMsg::Busy(m) => encode_payload(m),
            ScreenHostMsg::Refused(m) => encode_payload(m),
        }
    }

    /// Decodes a control message; `ScreenFrame` is `Unexpected` here.
    pub fn decode(kind: u8, payload: &[u8]) -> Result<ScreenHostMsg, DecodeError> {
        Ok(match MsgType::try_from(kind)? {
            MsgType::ScreenStart => ScreenHostMsg::Started(decode_payload(payload)?),
            MsgType::ScreenStop => ScreenHostMsg::Stopped(decode_payload(payload)?),
            MsgType::ScreenBusy => ScreenHostMsg::Busy(decode_payload(payload)?),
            MsgType::ScreenRefused => ScreenHostMsg::Refused(decode_payload(payload)?),
            _ => return Err(DecodeError::Unexpected(kind)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head() -> TileFrameHead {
        TileFrameHead { frame: 7, capture_ms: 1_700_000_000_123, width: 130, height: 64, flags: 0 }
    }

    #[test]
    fn tile_frame_round_trips_with_documented_layout() {
        let mut out = Vec::new();
        let tiles = [(0u16, 0u16, &b"abc"[..]), (2, 0, &b"z"[..])];
        encode_tile_frame(head(), tiles.iter().copied(), &mut out);
        // docs/protocol.md (Screen sharing, worked example) shows exactly these bytes.
        let doc = "00 00 00 07 00 00 01 8b cf e5 68 7b 00 82 00 40 00 00 02 \
                   00 00 00 00 00 00 00 03 61 62 63 00 02 00 00 00 00 00 01 7a";
        let doc: Vec<u8> =
            doc.split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
        assert_eq!(out, doc);
        assert_eq!(&out[..4], &[0, 0, 0, 7]);
        assert_eq!(&out[12..16], &[0, 130, 0, 64]);
        assert_eq!(&out[16..19], &[0, 0, 2], "flags, then count 2");
        assert_eq!(&out[19..27], &[0, 0, 0, 0, 0, 0, 0, 3]);
        let f = TileFrame::parse(&out).unwrap();
        assert_eq!(f.head(), head());
        assert_eq!(
            f.tiles,
            vec![TileRef { col: 0, row: 0, jpeg: b"abc" }, TileRef { col: 2, row: 0, jpeg: b"z" }]
        );
    }

    #[test]
    fn hostile_tile_frames_are_errors() {
        let mut ok = Vec::new();
        encode_tile_frame(head(), [(1u16, 0u16, &b"xy"[..])], &mut ok);
        let mut cases: Vec<(Vec<u8>, &str)> = Vec::new();
        for cut in 0..ok.len() {
            cases.push((ok[..cut].to_vec(), "truncated"));
        }
        let mut v = ok.clone();
        v[19..21].copy_from_slice(&[0, 3]); // column 3 of a 3-column grid
        cases.push((v, "tile outside the grid"));
        let mut v = ok.clone();
        v[23..27].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
        cases.push((v, "tile claims 4 GiB"));
        let mut v = ok.clone();
        v[23..27].copy_from_slice(&[0, 0, 0, 0]);
        cases.push((v, "empty tile"));
        let mut v = ok.clone();
        v[17..19].copy_from_slice(&[0xFF, 0xFF]);
        cases.push((v, "count far beyond the payload"));
        let mut v = ok.clone();
        v[12..14].copy_from_slice(&[0, 0]);
        cases.push((v, "zero width"));
        let mut v = ok.clone();
        v[12..14].copy_from_slice(&[0x20, 0x01]);
        cases.push((v, "wider than 4096"));
        for (bytes, why) in cases {
            assert!(TileFrame::parse(&bytes).is_err(), "{why}");
        }
    }

    #[test]
    fn control_messages_round_trip() {
        let client = [
            ScreenClientMsg::Start(ScreenStart { width: 1920, height: 1080 }),
            ScreenClientMsg::Stop,
            ScreenClientMsg::Ack(ScreenAck { frame: 9 }),
        ];
        for m in client {
            assert_eq!(ScreenClientMsg::decode(m.msg_type() as u8, &m.payload()).unwrap(), m);
        }
        let host = [
            ScreenHostMsg::Started(ScreenStarted {
                presenter: "ann".into(),
                session: SessionId(1),
                width: 64,
                height: 64,
            }),
            ScreenHostMsg::Stopped(ScreenStopped {
                presenter: "ann".into(),
                reason: ScreenStopReason::Left,
            }),
            ScreenHostMsg::Busy(ScreenBusy { presenter: "ann".into() }),
            ScreenHostMsg::Refused(ScreenRefused { reason: "bad token".into() }),
        ];
        for m in host {
            assert_eq!(ScreenHostMsg::decode(m.msg_type() as u8, &m.payload()).unwrap(), m);
        }
        assert!(ScreenClientMsg::decode(0x30, &[]).is_err(), "frames are parsed apart");
        assert!(ScreenClientMsg::decode(0x01, &[]).is_err(), "control type on screen channel");
        assert!(ScreenHostMsg::decode(0x31, &[]).is_err(), "empty Started");
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(0u8..=255, 0..512)) {
            let _ = TileFrame::parse(&bytes);
            let _ = ScreenClientMsg::decode(0x31, &bytes);
            let _ = ScreenClientMsg::decode(0x36, &bytes);
            let _ = ScreenHostMsg::decode(0x31, &bytes);
        }
    }
}
