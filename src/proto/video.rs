//! Video on a member's link (QUIC datagrams, or the TLS tunnel's datagram
//! frames): JPEG frames cut into fragments, and the receiver's
//! hello/subscription packet with the host's roster reply.
//!
//! Every datagram is one whole frame: the 10-byte [`Header`](super::Header)
//! then the payload. Fragments carry a fixed big-endian sub-header (no
//! postcard on the hot path) so the host can route them without decoding
//! anything but these 29 bytes; hello and roster payloads are postcard.
//! Nothing in a datagram authenticates its sender: the host attributes it to
//! the session whose link it arrived on.

use serde::{Deserialize, Serialize};

use super::{DecodeError, HEADER_LEN, Header, MsgType, PROTOCOL_VERSION, SessionId};

/// Most JPEG bytes in one fragment: a whole fragment datagram (1139 bytes)
/// then fits a QUIC datagram before path-MTU discovery (about 1150 bytes
/// with quinn's 1200-byte initial MTU), on every link a relay may forward to.
pub const MAX_FRAGMENT_PAYLOAD: usize = 1100;
/// Fewest JPEG bytes per fragment (the floor a sender keeps whatever its
/// link says; a link that takes less carries no video).
pub const MIN_FRAGMENT_PAYLOAD: usize = 256;
/// Size of the fragment sub-header that follows the frame header.
pub const FRAGMENT_HEADER_LEN: usize = 29;
/// Largest encoded frame (either layer) a receiver accepts.
pub const MAX_FRAME_BYTES: u32 = 1 << 20;
/// Most fragments in one frame: `MAX_FRAME_BYTES` / [`MIN_FRAGMENT_PAYLOAD`].
pub const MAX_FRAGMENTS: u16 = MAX_FRAME_BYTES.div_ceil(MIN_FRAGMENT_PAYLOAD as u32) as u16;
/// Largest video datagram, frame header included.
pub const MAX_VIDEO_DATAGRAM: usize = HEADER_LEN + FRAGMENT_HEADER_LEN + MAX_FRAGMENT_PAYLOAD;
/// Most per-sender entries in one hello (a hello must fit one datagram).
pub const MAX_HELLO_ENTRIES: usize = 64;
/// Largest hello or roster payload.
pub const MAX_VIDEO_CONTROL: u32 = 16 * 1024;

/// Which encoding of a camera frame a fragment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Layer {
    /// The captured size (640×480 by default).
    Full = 0,
    /// Half width and half height: a quarter of the area, for grid tiles.
    Thumb = 1,
}

impl Layer {
    /// The layer of wire byte `b` (0 full, 1 thumbnail); `None` for another.
    pub fn from_u8(b: u8) -> Option<Layer> {
        match b {
            0 => Some(Layer::Full),
            1 => Some(Layer::Thumb),
            _ => None,
        }
    }
}

/// What a receiver wants of one sender's camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Subscription {
    /// Nothing (tile hidden, or video off).
    None,
    /// The thumbnail layer only: never a byte of the full layer.
    #[default]
    Thumb,
    /// The full layer only.
    Full,
}

impl Subscription {
    /// The layer this subscription receives, if any.
    pub fn layer(self) -> Option<Layer> {
        match self {
            Subscription::None => None,
            Subscription::Thumb => Some(Layer::Thumb),
            Subscription::Full => Some(Layer::Full),
        }
    }
}

impl std::str::FromStr for Subscription {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" | "off" => Ok(Subscription::None),
            "thumb" | "thumbnail" => Ok(Subscription::Thumb),
            "full" => Ok(Subscription::Full),
            other => Err(format!("\"{other}\" is not a subscription: use full, thumb or none")),
        }
    }
}

/// The fixed sub-header of a 0x40 video fragment (all big-endian):
///
/// | off | size | field |
/// |---|---|---|
/// | 0 | 4 | session id of the sender (the host writes the real one when relaying) |
/// | 4 | 4 | frame id, +1 per captured frame |
/// | 8 | 1 | layer: 0 full, 1 thumbnail |
/// | 9 | 2 | fragment index, 0-based |
/// | 11 | 2 | fragment count |
/// | 13 | 4 | length of the whole encoded frame in bytes |
/// | 17 | 8 | capture time, microseconds since the Unix epoch (sender clock) |
/// | 25 | 2 | stride: the frame's fragment size, [`MIN_FRAGMENT_PAYLOAD`]..=[`MAX_FRAGMENT_PAYLOAD`] |
/// | 27 | 2 | length of this fragment's data |
///
/// The data follows. Every fragment but the last carries exactly `stride`
/// bytes, so fragment `i` sits at offset `i × stride`. The sender picks the
/// stride from its link's largest datagram ([`fragment_stride`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentHeader {
    /// Offset 0: the sender's session id.
    pub session: SessionId,
    /// Offset 4: +1 per captured frame (wraps).
    pub frame_id: u32,
    /// Offset 8: which encoding of the frame.
    pub layer: Layer,
    /// Offset 9: this fragment's index, from 0, below `count`.
    pub index: u16,
    /// Offset 11: fragments in the frame, 1 to [`MAX_FRAGMENTS`].
    pub count: u16,
    /// Offset 13: the whole encoded frame's length in bytes, at most
    /// [`MAX_FRAME_BYTES`].
    pub frame_len: u32,
    /// Offset 17: capture time, microseconds since the Unix epoch (sender clock).
    pub capture_us: u64,
    /// Offset 25: bytes per fragment of this frame (all but the last).
    pub stride: u16,
}

/// One parsed fragment, borrowing its data from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The sub-header.
    pub header: FragmentHeader,
    /// This fragment's JPEG bytes: [`fragment_len`] of them.
    pub data: &'a [u8],
}

/// Byte offset of the sender's session inside a whole video datagram (the
/// host overwrites it with the session that owns the sending link).
pub const SESSION_OFFSET: usize = HEADER_LEN;

/// Why a video datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The frame header is bad (short, wrong version, unknown type, too long).
    #[error("{0}")]
    Frame(#[from] DecodeError),
    /// The layer byte is neither 0 nor 1.
    #[error("unknown layer {0}")]
    Layer(u8),
    /// The index is not below the count.
    #[error("fragment index {index} is not below the count {count}")]
    Index {
        /// The fragment's index.
        index: u16,
        /// The fragment count it claims.
        count: u16,
    },
    /// The frame is over [`MAX_FRAME_BYTES`].
    #[error("a frame of {0} bytes is over the limit")]
    FrameLen(u32),
    /// The stride is outside [`MIN_FRAGMENT_PAYLOAD`]..=[`MAX_FRAGMENT_PAYLOAD`].
    #[error("fragment size {0} is outside {MIN_FRAGMENT_PAYLOAD}..={MAX_FRAGMENT_PAYLOAD}")]
    Stride(u16),
    /// The count does not match the frame length (`frame_len` / stride, rounded up).
    #[error("fragment count {count} does not fit a {frame_len}-byte frame")]
    Count {
        /// The fragment count.
        count: u16,
        /// The frame length, in bytes.
        frame_len: u32,
    },
    /// A fragment carries the wrong number of data bytes.
    #[error("fragment {index} carries {len} bytes where {expected} belong")]
    DataLen {
        /// The fragment's index.
        index: u16,
        /// The data bytes it carries.
        len: usize,
        /// The bytes a fragment at that index must carry ([`fragment_len`]).
        expected: usize,
    },
}

/// The fragment size (stride) for a link whose datagrams may be
/// `max_datagram` bytes (`Link::max_datagram_size`): as large as fits, at
/// most [`MAX_FRAGMENT_PAYLOAD`], at least [`MIN_FRAGMENT_PAYLOAD`].
pub fn fragment_stride(max_datagram: usize) -> u16 {
    max_datagram
        .saturating_sub(HEADER_LEN + FRAGMENT_HEADER_LEN)
        .clamp(MIN_FRAGMENT_PAYLOAD, MAX_FRAGMENT_PAYLOAD) as u16
}

/// The size fragment `index` of a `frame_len`-byte frame cut every
/// `stride` bytes must have.
pub fn fragment_len(frame_len: u32, index: u16, stride: u16) -> usize {
    let start = usize::from(index) * usize::from(stride);
    (frame_len as usize).saturating_sub(start).min(usize::from(stride))
}

/// How many fragments a `frame_len`-byte frame cut every `stride` bytes
/// makes (`stride` 0 counts as 1).
pub fn fragment_count(frame_len: u32, stride: u16) -> u16 {
    frame_len.div_ceil(u32::from(stride.max(1))).min(u32::from(u16::MAX)) as u16
}

impl FragmentHeader {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.session.0.to_be_bytes());
        out.extend_from_slice(&self.frame_id.to_be_bytes());
        out.push(self.layer as u8);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.frame_len.to_be_bytes());
        out.extend_from_slice(&self.capture_us.to_be_bytes());
        out.extend_from_slice(&self.stride.to_be_bytes());
    }
}

/// Writes one whole fragment datagram into `out` (cleared first). `data` must
/// be the slice [`fragment_len`] says; the caller cuts it.
pub fn encode_fragment(h: &FragmentHeader, data: &[u8], seq: u16, out: &mut Vec<u8>) {
    out.clear();
    let len = (FRAGMENT_HEADER_LEN + data.len()) as u32;
    Header { version: PROTOCOL_VERSION, kind: MsgType::StreamVideo as u8, len, seq, flags: 0 }
        .encode(out);
    h.encode(out);
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

/// Parses and checks a fragment payload (what follows the frame header).
/// Everything a receiver relies on is checked here: the layer, index < count,
/// the frame size, that count matches the size, and the exact data length.
pub fn decode_fragment(payload: &[u8]) -> Result<Fragment<'_>, FragmentError> {
    if payload.len() < FRAGMENT_HEADER_LEN {
        return Err(DecodeError::UnexpectedEnd.into());
    }
    let p = payload;
    let layer_byte = p[8];
    let header = FragmentHeader {
        session: SessionId(u32::from_be_bytes(be(p, 0))),
        frame_id: u32::from_be_bytes(be(p, 4)),
        layer: Layer::from_u8(layer_byte).ok_or(FragmentError::Layer(layer_byte))?,
        index: u16::from_be_bytes(be(p, 9)),
        count: u16::from_be_bytes(be(p, 11)),
        frame_len: u32::from_be_bytes(be(p, 13)),
        capture_us: u64::from_be_bytes(be(p, 17)),
        stride: u16::from_be_bytes(be(p, 25)),
    };
    let data_len = usize::from(u16::from_be_bytes(be(p, 27)));
    let (index, count, frame_len, stride) =
        (header.index, header.count, header.frame_len, header.stride);
    if !(MIN_FRAGMENT_PAYLOAD..=MAX_FRAGMENT_PAYLOAD).contains(&usize::from(stride)) {
        return Err(FragmentError::Stride(stride));
    }
    if index >= count {
        return Err(FragmentError::Index { index, count });
    }
    if frame_len == 0 || frame_len > MAX_FRAME_BYTES {
        return Err(FragmentError::FrameLen(frame_len));
    }
    if fragment_count(frame_len, stride) != count {
        return Err(FragmentError::Count { count, frame_len });
    }
    let expected = fragment_len(frame_len, index, stride);
    let data = &p[FRAGMENT_HEADER_LEN..];
    if data_len != expected || data.len() < data_len {
        return Err(FragmentError::DataLen { index, len: data_len.min(data.len()), expected });
    }
    Ok(Fragment { header, data: &data[..data_len] })
}

/// 0x44, client → host on its link, every [`HELLO_EVERY`] and on every
/// change: "send me video, like this". Loss-tolerant by repetition; the host
/// forgets a receiver it has not heard from for 15 s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoHello {
    /// The receiver's session as it sees it; informative only (the host
    /// takes the session that owns the link).
    pub session: SessionId,
    /// For every sender not listed in `subs`.
    pub default: Subscription,
    /// Per-sender choices by session id; at most [`MAX_HELLO_ENTRIES`].
    pub subs: Vec<(SessionId, Subscription)>,
    /// The [`VideoRoster::version`] the receiver holds (0: none yet). The
    /// host answers with a roster only when the room's differs, so an idle
    /// room's hellos go unanswered.
    pub roster: u32,
}

/// How often a receiver repeats its [`VideoHello`] (three to a host's 15 s
/// receiver timeout, so two may be lost). Each costs a datagram per member
/// even in an idle room (issue 12's idle budget), so no shorter.
pub const HELLO_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// One room member as the video service names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VideoPeer {
    /// The member's session id, as in fragments.
    pub session: SessionId,
    /// The member's name in the room.
    pub name: String,
}

/// 0x45, host → client on its link, in answer to a hello that named another
/// roster version: who is in the room by session id, so a receiver can name
/// the tiles its fragments fill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoRoster {
    /// The room's members, the receiver included.
    pub members: Vec<VideoPeer>,
    /// Names this member list (a hash of it, never 0); the receiver echoes
    /// it in [`VideoHello::roster`].
    pub version: u32,
}

/// Anything that arrives on a video socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoPacket<'a> {
    /// 0x40: a piece of a camera frame.
    Fragment(Fragment<'a>),
    /// 0x44: a receiver's hello (host side).
    Hello(VideoHello),
    /// 0x45: the room's roster (client side).
    Roster(VideoRoster),
}

/// Decodes one video datagram (hostile input: never panics, never allocates
/// more than the datagram's own size).
pub fn decode_video(datagram: &[u8]) -> Result<VideoPacket<'_>, FragmentError> {
    let header = Header::decode(datagram)?;
    if header.version != PROTOCOL_VERSION {
        return Err(DecodeError::Version { got: header.version }.into());
    }
    let max = match MsgType::try_from(header.kind)? {
        MsgType::StreamVideo => (FRAGMENT_HEADER_LEN + MAX_FRAGMENT_PAYLOAD) as u32,
        MsgType::VideoHello | MsgType::VideoRoster => MAX_VIDEO_CONTROL,
        _ => return Err(DecodeError::Unexpected(header.kind).into()),
    };
    let len = header.check_len(max)?;
    let payload = datagram[HEADER_LEN..].get(..len).ok_or(DecodeError::UnexpectedEnd)?;
    Ok(match MsgType::try_from(header.kind)? {
        MsgType::StreamVideo => VideoPacket::Fragment(decode_fragment(payload)?),
        MsgType::VideoHello => {
            let hello: VideoHello = super::decode_payload(payload)?;
            if hello.subs.len() > MAX_HELLO_ENTRIES {
                return Err(DecodeError::Payload("too many subscriptions".into()).into());
            }
            VideoPacket::Hello(hello)
        }
        _ => VideoPacket::Roster(super::decode_payload(payload)?),
    })
}

/// A hello or roster as one datagram.
pub fn encode_video_control<T: Serialize>(kind: MsgType, payload: &T, out: &mut Vec<u8>) {
    out.clear();
    super::encode_frame(kind, 0, payload, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(index: u16, count: u16, frame_len: u32) -> FragmentHeader {
        FragmentHeader {
            session: SessionId(7),
            frame_id: 42,
            layer: Layer::Thumb,
            index,
            count,
            frame_len,
            capture_us: 1_700_000_000_000_000,
            stride: MAX_FRAGMENT_PAYLOAD as u16,
        }
    }

    #[test]
    fn fragment_round_trip_and_layout() {
        let h = header(1, 2, 1200);
        let mut out = Vec::new();
        encode_fragment(&h, &[9u8; 100], 3, &mut out);
        assert_eq!(out.len(), HEADER_LEN + FRAGMENT_HEADER_LEN + 100);
        assert_eq!(out[1], 0x40);
        assert_eq!(&out[SESSION_OFFSET..SESSION_OFFSET + 4], &7u32.to_be_bytes());
        match decode_video(&out).unwrap() {
            VideoPacket::Fragment(f) => {
                assert_eq!(f.header, h);
                assert_eq!(f.data, &[9u8; 100][..]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hostile_fragments_are_errors() {
        let enc = |h: FragmentHeader, data: &[u8]| {
            let mut out = Vec::new();
            encode_fragment(&h, data, 0, &mut out);
            out
        };
        // Index equal to the count.
        let bad = enc(header(2, 2, 1200), &[0; 100]);
        assert!(matches!(decode_video(&bad), Err(FragmentError::Index { .. })));
        // An absurd count for a small frame.
        let bad = enc(header(0, 60000, 1200), &[0; 1100]);
        assert!(matches!(decode_video(&bad), Err(FragmentError::Count { .. })));
        // An absurd frame size.
        let bad = enc(header(0, 60000, u32::MAX), &[0; 1100]);
        assert!(matches!(decode_video(&bad), Err(FragmentError::FrameLen(_))));
        // Zero-length frame.
        let bad = enc(header(0, 1, 0), &[]);
        assert!(matches!(
            decode_video(&bad),
            Err(FragmentError::Index { .. } | FragmentError::FrameLen(_))
        ));
        // Short middle fragment (would misplace the rest of the frame).
        let bad = enc(header(0, 2, 1200), &[0; 1000]);
        assert!(matches!(decode_video(&bad), Err(FragmentError::DataLen { .. })));
        // Data length field larger than what arrived.
        let mut bad = enc(header(1, 2, 1200), &[0; 100]);
        bad.truncate(bad.len() - 10);
        let n = bad.len() - HEADER_LEN;
        bad[2..6].copy_from_slice(&(n as u32).to_be_bytes());
        assert!(decode_video(&bad).is_err());
        // Unknown layer.
        let mut bad = enc(header(1, 2, 1200), &[0; 100]);
        bad[HEADER_LEN + 8] = 9;
        assert_eq!(decode_video(&bad), Err(FragmentError::Layer(9)));
        // A stride under the floor or over the ceiling.
        for stride in [0, MIN_FRAGMENT_PAYLOAD as u16 - 1, MAX_FRAGMENT_PAYLOAD as u16 + 1] {
            let bad = enc(FragmentHeader { stride, ..header(0, 1, 100) }, &[0; 100]);
            assert_eq!(decode_video(&bad), Err(FragmentError::Stride(stride)));
        }
        // A payload length over the fragment limit, and every truncation.
        let mut bad = enc(header(1, 2, 1200), &[0; 100]);
        bad[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_video(&bad).is_err());
        let good = enc(header(1, 2, 1200), &[0; 100]);
        for cut in 0..good.len() {
            assert!(decode_video(&good[..cut]).is_err(), "cut at {cut}");
        }
        // Other message types are not video.
        let mut chat = Vec::new();
        crate::proto::encode_frame(MsgType::Heartbeat, 0, &(), &mut chat);
        assert!(decode_video(&chat).is_err());
    }

    #[test]
    fn hello_round_trip_and_limits() {
        let hello = VideoHello {
            session: SessionId(3),
            default: Subscription::Thumb,
            subs: vec![(SessionId(4), Subscription::Full), (SessionId(5), Subscription::None)],
            roster: 0x1234_5678,
        };
        let mut out = Vec::new();
        encode_video_control(MsgType::VideoHello, &hello, &mut out);
        assert_eq!(decode_video(&out), Ok(VideoPacket::Hello(hello.clone())));
        let many = VideoHello { subs: vec![(SessionId(1), Subscription::Full); 65], ..hello };
        encode_video_control(MsgType::VideoHello, &many, &mut out);
        assert!(decode_video(&out).is_err());
        let roster = VideoRoster {
            members: vec![VideoPeer { session: SessionId(1), name: "Ann".into() }],
            version: 9,
        };
        encode_video_control(MsgType::VideoRoster, &roster, &mut out);
        assert_eq!(decode_video(&out), Ok(VideoPacket::Roster(roster)));
    }

    #[test]
    fn bytes_are_as_documented() {
        // docs/protocol.md, "Video", worked examples.
        let h = FragmentHeader {
            session: SessionId(7),
            frame_id: 42,
            layer: Layer::Thumb,
            index: 0,
            count: 1,
            frame_len: 3,
            capture_us: 1_700_000_000_000_000,
            stride: 1100,
        };
        let mut out = Vec::new();
        encode_fragment(&h, &[0xFF, 0xD8, 0xFF], 5, &mut out);
        let hex: Vec<String> = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "01 40 00 00 00 20 00 05 00 00 00 00 00 07 00 00 00 2a 01 00 00 00 01 00 00 00 03 \
             00 06 0a 24 18 1e 40 00 04 4c 00 03 ff d8 ff"
        );
        let hello = VideoHello {
            session: SessionId(3),
            default: Subscription::Thumb,
            subs: vec![(SessionId(4), Subscription::Full)],
            roster: 0,
        };
        encode_video_control(MsgType::VideoHello, &hello, &mut out);
        assert_eq!(out, [1, 0x44, 0, 0, 0, 6, 0, 0, 0, 0, 3, 1, 1, 4, 2, 0]);
    }

    #[test]
    fn counts_and_lengths() {
        assert_eq!(fragment_count(1, 1100), 1);
        assert_eq!(fragment_count(1100, 1100), 1);
        assert_eq!(fragment_count(1101, 1100), 2);
        assert_eq!(fragment_len(1101, 1, 1100), 1);
        assert_eq!(fragment_len(1101, 2, 1100), 0);
        assert_eq!(fragment_len(1000, 1, 500), 500);
        assert_eq!(MAX_FRAGMENTS, 4096);
        // The stride follows the link: QUIC's first datagrams (about 1150
        // bytes) take the whole ceiling, a tiny link gets the floor.
        assert_eq!(fragment_stride(1150), 1100);
        assert_eq!(fragment_stride(1000), 1000 - 39);
        assert_eq!(fragment_stride(100), 256);
        assert_eq!(HEADER_LEN + FRAGMENT_HEADER_LEN + MAX_FRAGMENT_PAYLOAD, MAX_VIDEO_DATAGRAM);
    }

    proptest::proptest! {
        #[test]
        fn random_datagrams_never_panic(bytes in proptest::collection::vec(0u8..=255, 0..1400)) {
            let _ = decode_video(&bytes);
        }

        #[test]
        fn mutated_fragments_never_panic_and_stay_consistent(
            at in 0usize..60,
            value in 0u8..=255,
            len in 1u32..5000,
        ) {
            let count = fragment_count(len, MAX_FRAGMENT_PAYLOAD as u16);
            let h = FragmentHeader { index: count - 1, count, frame_len: len, ..header(0, 1, 1) };
            let mut out = Vec::new();
            encode_fragment(&h, &vec![1; fragment_len(len, count - 1, h.stride)], 0, &mut out);
            if let Some(b) = out.get_mut(at) {
                *b = value;
            }
            // Whatever parses obeys the invariants receivers rely on.
            if let Ok(VideoPacket::Fragment(f)) = decode_video(&out) {
                let h = f.header;
                proptest::prop_assert!(h.index < h.count);
                proptest::prop_assert!(h.frame_len >= 1 && h.frame_len <= MAX_FRAME_BYTES);
                proptest::prop_assert_eq!(f.data.len(), fragment_len(h.frame_len, h.index, h.stride));
            }
        }
    }
}
