//! Audio datagrams on a member's link (QUIC datagrams, or the TLS tunnel's
//! datagram frames), message type 0x41.
//!
//! Every datagram is the usual 10-byte [`Header`] (kind `STREAM_AUDIO`, `seq`
//! = low 16 bits of the packet sequence, `flags` below) followed by a fixed
//! big-endian sub-header and the codec payload. These are not postcard
//! payloads: a mixer handles thousands a second and the layout never changes
//! shape. `docs/protocol.md` ("Audio") has the byte tables.
//!
//! Decoders check every length before touching the bytes and never panic;
//! they borrow the codec payload from the datagram rather than copying it.

use super::{DecodeError, Header, MsgType, PROTOCOL_VERSION, SessionId};

/// Flag bit: the datagram goes host → client (a mix). Clear: client → host.
pub const AUDIO_FROM_HOST: u16 = 1 << 0;
/// Flag bit: no audio. Client → host: "I am here, send me the mix" (sent
/// while muted, silent or without a microphone). Host → client: speaking
/// levels only, outside the audio sequence (`seq` repeats the last one).
pub const AUDIO_KEEPALIVE: u16 = 1 << 1;
/// Flag bit: the last datagram of a talkspurt. Nothing follows until the
/// sender has sound again, and the gap is silence, not loss. The payload may
/// be empty (an end marker that carries no audio).
pub const AUDIO_END: u16 = 1 << 2;
/// Flag bit: a reception report ([`FeedbackUp`], [`FeedbackDown`]), not audio.
pub const AUDIO_FEEDBACK: u16 = 1 << 3;
/// Flag bit (host → client): the payload is one talker's packet, forwarded
/// unchanged (pass-through), not a mix the host encoded.
pub const AUDIO_FORWARDED: u16 = 1 << 4;
/// Flag bit (host → client, with [`AUDIO_FORWARDED`]): the talker's packet
/// for this frame never reached the host; the payload is the talker's
/// *next* packet, to rebuild this frame from its in-band FEC (Opus
/// `decode_fec`). The next packet still follows in its own datagram.
pub const AUDIO_FEC: u16 = 1 << 5;

/// Largest audio datagram we send or accept: one 20 ms frame of 16-bit PCM
/// (1920 bytes) plus headers and speaking levels fits with room to spare.
pub const AUDIO_DATAGRAM_MAX: usize = 4096;
/// Client → host sub-header: session u32, seq u32, timestamp u32, codec u8,
/// samples u16. The session is informative only: the host attributes every
/// datagram to the session whose link it arrived on.
pub const UP_HEADER_LEN: usize = 15;
/// Host → client sub-header: seq u32, timestamp u32, codec u8, samples u16,
/// level count u8.
pub const DOWN_HEADER_LEN: usize = 12;
/// Client → host reception report: session u32, loss u16, jitter u32 (the
/// session is informative only, as in [`UP_HEADER_LEN`]).
pub const FEEDBACK_UP_LEN: usize = 10;
/// Host → client reception report: loss u16, jitter u32, expected loss u8.
pub const FEEDBACK_DOWN_LEN: usize = 7;
/// At most this many speaking levels ride in one mix datagram.
pub const MAX_LEVELS: usize = 32;

/// How a frame's samples are coded. Always 48 kHz mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AudioCodec {
    /// Signed 16-bit little-endian samples (the reference's raw PCM, at 48 kHz).
    Pcm16 = 0,
    /// One Opus packet (RFC 6716).
    Opus = 1,
    /// Opus with redundancy, after RFC 2198 (RTP "RED"): the payload holds
    /// copies of up to [`MAX_RED_BLOCKS`] earlier frames' Opus packets,
    /// then this frame's ([`RedPayload`]). Sent only while the receiver
    /// reports loss; a packet lost on the way is rebuilt from a later one.
    OpusRed = 2,
}

impl AudioCodec {
    /// The codec of wire byte `b`; [`DecodeError::Payload`] for an unknown one.
    pub fn from_u8(b: u8) -> Result<AudioCodec, DecodeError> {
        match b {
            0 => Ok(AudioCodec::Pcm16),
            1 => Ok(AudioCodec::Opus),
            2 => Ok(AudioCodec::OpusRed),
            other => Err(DecodeError::Payload(format!("unknown audio codec {other}"))),
        }
    }

    /// The codec of the frames inside: [`AudioCodec::Opus`] for
    /// [`AudioCodec::OpusRed`], else itself.
    pub fn base(self) -> AudioCodec {
        match self {
            AudioCodec::OpusRed => AudioCodec::Opus,
            other => other,
        }
    }
}

/// At most this many redundant frames ride in one [`AudioCodec::OpusRed`] payload.
pub const MAX_RED_BLOCKS: usize = 2;
/// Bytes of one redundant block's header: back u8, flags u8, length u16.
pub const RED_BLOCK_HEADER_LEN: usize = 4;
/// Redundant-block flag: the block is a frame's stand-in carried for its
/// in-band FEC, as [`AUDIO_FEC`] says of a whole datagram.
pub const RED_BLOCK_FEC: u8 = 1 << 0;

/// One earlier frame's packet, carried again ([`AudioCodec::OpusRed`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedBlock<'a> {
    /// The block is the frame numbered `seq - back` of the datagram's
    /// sequence (1 = the previous frame), 1..=255.
    pub back: u8,
    /// The block stood in for its frame to carry the next frame's FEC
    /// ([`RED_BLOCK_FEC`]; host → client only).
    pub fec: bool,
    /// The Opus packet.
    pub data: &'a [u8],
}

/// An [`AudioCodec::OpusRed`] payload: `count` u8 (0..=[`MAX_RED_BLOCKS`]),
/// `count` block headers {`back` u8, `flags` u8, `len` u16}, the blocks'
/// bytes in the same order, then this frame's Opus packet (the rest).
/// Borrowed from the datagram; no allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedPayload<'a> {
    blocks: [RedBlock<'a>; MAX_RED_BLOCKS],
    count: usize,
    /// This frame's own packet (may be empty: an end mark without audio).
    pub primary: &'a [u8],
}

impl<'a> RedPayload<'a> {
    /// The redundant frames, as sent (oldest first, by convention).
    pub fn blocks(&self) -> &[RedBlock<'a>] {
        &self.blocks[..self.count]
    }

    /// The largest `back` carried: how many frames later a lost packet's
    /// copy comes (0 without blocks).
    pub fn depth(&self) -> u8 {
        self.blocks().iter().map(|b| b.back).max().unwrap_or(0)
    }

    /// Appends the payload for `primary` with `blocks` (at most
    /// [`MAX_RED_BLOCKS`]; further ones are left out).
    pub fn encode(blocks: &[RedBlock<'_>], primary: &[u8], out: &mut Vec<u8>) {
        let blocks = &blocks[..blocks.len().min(MAX_RED_BLOCKS)];
        out.push(blocks.len() as u8);
        for b in blocks {
            out.push(b.back);
            out.push(if b.fec { RED_BLOCK_FEC } else { 0 });
            out.extend_from_slice(&(b.data.len().min(u16::MAX as usize) as u16).to_be_bytes());
        }
        for b in blocks {
            out.extend_from_slice(&b.data[..b.data.len().min(u16::MAX as usize)]);
        }
        out.extend_from_slice(primary);
    }

    /// Splits a payload; errors on a count over [`MAX_RED_BLOCKS`], a
    /// `back` of 0, or lengths past the end.
    pub fn decode(payload: &'a [u8]) -> Result<RedPayload<'a>, DecodeError> {
        let count = byte(payload, 0)? as usize;
        if count > MAX_RED_BLOCKS {
            return Err(DecodeError::Payload(format!(
                "{count} redundant audio frames (max {MAX_RED_BLOCKS})"
            )));
        }
        let mut red = RedPayload { count, ..RedPayload::default() };
        let mut at = 1 + count * RED_BLOCK_HEADER_LEN;
        for i in 0..count {
            let h = 1 + i * RED_BLOCK_HEADER_LEN;
            let back = byte(payload, h)?;
            if back == 0 {
                return Err(DecodeError::Payload("a redundant audio frame 0 frames back".into()));
            }
            let fec = byte(payload, h + 1)? & RED_BLOCK_FEC != 0;
            let len = be_u16(payload, h + 2)? as usize;
            let data = payload.get(at..at + len).ok_or(DecodeError::UnexpectedEnd)?;
            red.blocks[i] = RedBlock { back, fec, data };
            at += len;
        }
        red.primary = payload.get(at..).ok_or(DecodeError::UnexpectedEnd)?;
        Ok(red)
    }
}

/// One client → host audio datagram (or keepalive: `payload` empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioUp<'a> {
    /// The sender's session as it sees it; the host ignores it (the link
    /// names the sender). A u32 at offset 0 of the sub-header.
    pub session: SessionId,
    /// No audio, only "I am here" ([`AUDIO_KEEPALIVE`]); `payload` is empty.
    pub keepalive: bool,
    /// Last frame of a talkspurt ([`AUDIO_END`]).
    pub end: bool,
    /// +1 per audio frame sent; keepalives repeat the last. Frames not sent
    /// in a pause take no number, so a gap in `seq` is always a loss.
    pub seq: u32,
    /// Sample clock (48 kHz) of the frame's first sample.
    pub timestamp: u32,
    /// How `payload` is coded.
    pub codec: AudioCodec,
    /// Samples in the frame (960 for 20 ms, 480 for 10 ms).
    pub samples: u16,
    /// The codec payload, borrowed from the datagram: 16-bit PCM
    /// (`samples` × 2 bytes), one Opus packet, or a [`RedPayload`].
    pub payload: &'a [u8],
}

/// A participant's speaking level, 0 (silent) ..= 255 (full scale); see
/// [`level_from_rms`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakingLevel {
    /// The talker's session id (a big-endian u32 on the wire).
    pub session: SessionId,
    /// Speaking level, 0 (silent) ..= 255 (full scale).
    pub level: u8,
    /// The talker's name, at most 255 bytes of UTF-8 on the wire.
    pub name: String,
}

/// One host → client mix datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDown<'a> {
    /// Per listener, +1 per audio datagram (a frame the host could not
    /// forward leaves a gap, a loss). Levels-only datagrams repeat the last.
    pub seq: u32,
    /// No audio: speaking levels only ([`AUDIO_KEEPALIVE`]); not in the sequence.
    pub keepalive: bool,
    /// Last datagram of a talkspurt ([`AUDIO_END`]).
    pub end: bool,
    /// The payload is a talker's own packet ([`AUDIO_FORWARDED`]).
    pub forwarded: bool,
    /// The payload is the next frame's packet, for its FEC ([`AUDIO_FEC`]).
    pub fec: bool,
    /// Sample clock (48 kHz) of the frame's first sample.
    pub timestamp: u32,
    /// How `payload` is coded.
    pub codec: AudioCodec,
    /// Samples in the frame (960 for 20 ms, 480 for 10 ms).
    pub samples: u16,
    /// Present a few times a second, empty otherwise.
    pub levels: Vec<SpeakingLevel>,
    /// The codec payload, borrowed from the datagram (empty for a keepalive
    /// or a bare end marker).
    pub payload: &'a [u8],
}

fn be_u32(b: &[u8], at: usize) -> Result<u32, DecodeError> {
    let s = b.get(at..at + 4).ok_or(DecodeError::UnexpectedEnd)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be_u16(b: &[u8], at: usize) -> Result<u16, DecodeError> {
    let s = b.get(at..at + 2).ok_or(DecodeError::UnexpectedEnd)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

fn byte(b: &[u8], at: usize) -> Result<u8, DecodeError> {
    b.get(at).copied().ok_or(DecodeError::UnexpectedEnd)
}

/// A datagram whose codec is [`AudioCodec::OpusRed`] must hold a well-formed
/// [`RedPayload`], so that receivers can split it without checking again.
fn check_red(codec: AudioCodec, payload: &[u8]) -> Result<AudioCodec, DecodeError> {
    if codec == AudioCodec::OpusRed {
        RedPayload::decode(payload)?;
    }
    Ok(codec)
}

/// Splits a datagram into header and payload, checking version, type and length.
fn open(buf: &[u8]) -> Result<(Header, &[u8]), DecodeError> {
    if buf.len() > AUDIO_DATAGRAM_MAX {
        return Err(DecodeError::TooLong { len: buf.len() as u32, max: AUDIO_DATAGRAM_MAX as u32 });
    }
    let (header, payload) = super::decode_datagram(buf, AUDIO_DATAGRAM_MAX as u32)?;
    if header.kind != MsgType::StreamAudio as u8 {
        return Err(DecodeError::Unexpected(header.kind));
    }
    Ok((header, payload))
}

fn header(len: usize, seq: u32, flags: u16) -> Header {
    Header {
        version: PROTOCOL_VERSION,
        kind: MsgType::StreamAudio as u8,
        len: len as u32,
        seq: seq as u16,
        flags,
    }
}

impl<'a> AudioUp<'a> {
    /// Appends the whole datagram (header, sub-header, payload) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let flags =
            if self.keepalive { AUDIO_KEEPALIVE } else { 0 } | if self.end { AUDIO_END } else { 0 };
        header(UP_HEADER_LEN + self.payload.len(), self.seq, flags).encode(out);
        out.extend_from_slice(&self.session.0.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.push(self.codec as u8);
        out.extend_from_slice(&self.samples.to_be_bytes());
        out.extend_from_slice(self.payload);
    }

    /// Parses a whole client → host datagram, borrowing the payload. An error,
    /// never a panic, for a short or oversized datagram, another direction or a
    /// feedback report, an unknown codec, or a malformed RED payload.
    pub fn decode(buf: &'a [u8]) -> Result<AudioUp<'a>, DecodeError> {
        let (h, p) = open(buf)?;
        if h.flags & (AUDIO_FROM_HOST | AUDIO_FEEDBACK) != 0 {
            return Err(DecodeError::Unexpected(h.kind));
        }
        if p.len() < UP_HEADER_LEN {
            return Err(DecodeError::UnexpectedEnd);
        }
        Ok(AudioUp {
            session: SessionId(be_u32(p, 0)?),
            keepalive: h.flags & AUDIO_KEEPALIVE != 0,
            end: h.flags & AUDIO_END != 0,
            seq: be_u32(p, 4)?,
            timestamp: be_u32(p, 8)?,
            codec: check_red(AudioCodec::from_u8(byte(p, 12)?)?, &p[UP_HEADER_LEN..])?,
            samples: be_u16(p, 13)?,
            payload: &p[UP_HEADER_LEN..],
        })
    }
}

impl<'a> AudioDown<'a> {
    /// Appends the whole datagram to `out`; at most [`MAX_LEVELS`] levels
    /// are written, names cut to 255 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let levels: &[SpeakingLevel] = &self.levels[..self.levels.len().min(MAX_LEVELS)];
        let level_bytes: usize =
            levels.iter().map(|l| 6 + l.name.len().min(u8::MAX as usize)).sum();
        let flags = AUDIO_FROM_HOST
            | if self.keepalive { AUDIO_KEEPALIVE } else { 0 }
            | if self.end { AUDIO_END } else { 0 }
            | if self.forwarded { AUDIO_FORWARDED } else { 0 }
            | if self.fec { AUDIO_FEC } else { 0 };
        header(DOWN_HEADER_LEN + level_bytes + self.payload.len(), self.seq, flags).encode(out);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.push(self.codec as u8);
        out.extend_from_slice(&self.samples.to_be_bytes());
        out.push(levels.len() as u8);
        for l in levels {
            out.extend_from_slice(&l.session.0.to_be_bytes());
            out.push(l.level);
            // Names are at most 32 characters; cut at a byte limit all the same.
            let name = truncate_utf8(&l.name, u8::MAX as usize);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(self.payload);
    }

    /// Parses a whole host → client datagram, borrowing the payload. An error,
    /// never a panic, for a short or oversized datagram, the other direction or
    /// a feedback report, an unknown codec, or levels that run past the end.
    pub fn decode(buf: &'a [u8]) -> Result<AudioDown<'a>, DecodeError> {
        let (h, p) = open(buf)?;
        if h.flags & AUDIO_FROM_HOST == 0 || h.flags & AUDIO_FEEDBACK != 0 {
            return Err(DecodeError::Unexpected(h.kind));
        }
        if p.len() < DOWN_HEADER_LEN {
            return Err(DecodeError::UnexpectedEnd);
        }
        let count = byte(p, 11)? as usize;
        if count > MAX_LEVELS {
            return Err(DecodeError::Payload(format!(
                "{count} speaking levels (max {MAX_LEVELS})"
            )));
        }
        let mut at = DOWN_HEADER_LEN;
        let mut levels = Vec::with_capacity(count);
        for _ in 0..count {
            let session = SessionId(be_u32(p, at)?);
            let level = byte(p, at + 4)?;
            let len = byte(p, at + 5)? as usize;
            let name = p.get(at + 6..at + 6 + len).ok_or(DecodeError::UnexpectedEnd)?;
            let name = String::from_utf8_lossy(name).into_owned();
            levels.push(SpeakingLevel { session, level, name });
            at += 6 + len;
        }
        Ok(AudioDown {
            seq: be_u32(p, 0)?,
            keepalive: h.flags & AUDIO_KEEPALIVE != 0,
            end: h.flags & AUDIO_END != 0,
            forwarded: h.flags & AUDIO_FORWARDED != 0,
            fec: h.flags & AUDIO_FEC != 0,
            timestamp: be_u32(p, 4)?,
            codec: check_red(AudioCodec::from_u8(byte(p, 8)?)?, &p[at..])?,
            samples: be_u16(p, 9)?,
            levels,
            payload: &p[at..],
        })
    }
}

/// Whether a datagram is a reception report (client → host or host →
/// client), to pick the decoder. False for anything that is not one.
pub fn is_audio_feedback(buf: &[u8]) -> bool {
    buf.len() >= super::HEADER_LEN
        && buf[1] == MsgType::StreamAudio as u8
        && u16::from_be_bytes([buf[8], buf[9]]) & AUDIO_FEEDBACK != 0
}

/// Loss as a fraction 0..=1 ↔ per mille on the wire (saturating).
fn permille(fraction: f64) -> u16 {
    (fraction.clamp(0.0, 1.0) * 1000.0).round() as u16
}

/// A client's reception report on the mix it receives, about once a second
/// while mix datagrams arrive ([`AUDIO_FEEDBACK`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeedbackUp {
    /// Informative only, as in [`AudioUp::session`].
    pub session: SessionId,
    /// Share of the mix datagrams lost since the last report, 0..=1 (sent
    /// in per mille: RFC 3550 "fraction lost", from the gaps in `seq`).
    pub loss: f64,
    /// RFC 3550 interarrival jitter of the mix, µs.
    pub jitter_us: u32,
}

/// The host's reception report on a client's audio, about once a second
/// while the client sends audio ([`AUDIO_FROM_HOST`] | [`AUDIO_FEEDBACK`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeedbackDown {
    /// Share of the client's audio datagrams lost on the way to the host
    /// since the last report, 0..=1 (per mille on the wire).
    pub loss: f64,
    /// Interarrival jitter of the client's audio at the host, µs.
    pub jitter_us: u32,
    /// Packet loss, percent 0..=100, the client's encoder should expect
    /// (Opus `OPUS_SET_PACKET_LOSS_PERC`; 0 = no in-band FEC): the worse of
    /// its uplink loss and the loss that listeners of its forwarded packets
    /// measure end to end (one packet's FEC serves both legs).
    pub expected_loss_percent: u8,
}

impl FeedbackUp {
    /// Appends the whole report datagram ([`FEEDBACK_UP_LEN`] bytes after the
    /// header) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        header(FEEDBACK_UP_LEN, 0, AUDIO_FEEDBACK).encode(out);
        out.extend_from_slice(&self.session.0.to_be_bytes());
        out.extend_from_slice(&permille(self.loss).to_be_bytes());
        out.extend_from_slice(&self.jitter_us.to_be_bytes());
    }

    /// Parses a client's report: an error for a short datagram, another kind
    /// of datagram, or a loss over 1000 per mille.
    pub fn decode(buf: &[u8]) -> Result<FeedbackUp, DecodeError> {
        let (h, p) = open(buf)?;
        if h.flags & AUDIO_FEEDBACK == 0 || h.flags & AUDIO_FROM_HOST != 0 {
            return Err(DecodeError::Unexpected(h.kind));
        }
        if p.len() < FEEDBACK_UP_LEN {
            return Err(DecodeError::UnexpectedEnd);
        }
        let loss = be_u16(p, 4)?;
        if loss > 1000 {
            return Err(DecodeError::Payload(format!("loss {loss} per mille (max 1000)")));
        }
        Ok(FeedbackUp {
            session: SessionId(be_u32(p, 0)?),
            loss: f64::from(loss) / 1000.0,
            jitter_us: be_u32(p, 6)?,
        })
    }
}

impl FeedbackDown {
    /// Appends the whole report datagram ([`FEEDBACK_DOWN_LEN`] bytes after
    /// the header) to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        header(FEEDBACK_DOWN_LEN, 0, AUDIO_FROM_HOST | AUDIO_FEEDBACK).encode(out);
        out.extend_from_slice(&permille(self.loss).to_be_bytes());
        out.extend_from_slice(&self.jitter_us.to_be_bytes());
        out.push(self.expected_loss_percent.min(100));
    }

    /// Parses the host's report: an error for a short datagram or another
    /// kind of datagram.
    pub fn decode(buf: &[u8]) -> Result<FeedbackDown, DecodeError> {
        let (h, p) = open(buf)?;
        if h.flags & AUDIO_FEEDBACK == 0 || h.flags & AUDIO_FROM_HOST == 0 {
            return Err(DecodeError::Unexpected(h.kind));
        }
        if p.len() < FEEDBACK_DOWN_LEN {
            return Err(DecodeError::UnexpectedEnd);
        }
        let loss = be_u16(p, 0)?;
        let expected = byte(p, 6)?;
        if loss > 1000 || expected > 100 {
            return Err(DecodeError::Payload(format!(
                "loss {loss} per mille, expected loss {expected} % (max 1000, 100)"
            )));
        }
        Ok(FeedbackDown {
            loss: f64::from(loss) / 1000.0,
            jitter_us: be_u32(p, 2)?,
            expected_loss_percent: expected,
        })
    }
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Maps a frame's RMS (full scale = 1.0) to a level byte: -60 dBFS and below
/// is 0, 0 dBFS is 255, linear in decibels between.
pub fn level_from_rms(rms: f32) -> u8 {
    if rms <= 0.0 {
        return 0;
    }
    let db = 20.0 * rms.log10();
    (((db + 60.0) / 60.0).clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Levels at or above this (about -42 dBFS) count as speaking.
pub const SPEAKING_LEVEL: u8 = 75;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::HEADER_LEN;

    #[test]
    fn up_round_trips() {
        let payload = [1u8, 2, 3, 4, 5];
        let up = AudioUp {
            session: SessionId(7),
            keepalive: false,
            end: true,
            seq: 70_000,
            timestamp: 960 * 3,
            codec: AudioCodec::Opus,
            samples: 960,
            payload: &payload,
        };
        let mut buf = Vec::new();
        up.encode(&mut buf);
        assert_eq!(buf.len(), HEADER_LEN + UP_HEADER_LEN + 5);
        assert_eq!(buf[1], 0x41);
        assert_eq!(AudioUp::decode(&buf), Ok(up));
        // A mix decoder refuses an uplink datagram.
        assert!(AudioDown::decode(&buf).is_err());
    }

    #[test]
    fn up_bytes_are_as_documented() {
        // The worked example in docs/protocol.md, "Audio".
        let up = AudioUp {
            session: SessionId(7),
            keepalive: false,
            end: false,
            seq: 3,
            timestamp: 2880,
            codec: AudioCodec::Opus,
            samples: 960,
            payload: &[0xfc, 0xff, 0xfe],
        };
        let mut buf = Vec::new();
        up.encode(&mut buf);
        let want = [
            0x01, 0x41, 0, 0, 0, 0x12, 0, 3, 0, 0, // header
            0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0x0b, 0x40, 1, 0x03, 0xc0, 0xfc, 0xff, 0xfe,
        ];
        assert_eq!(buf, want);
    }

    #[test]
    fn down_round_trips_with_levels() {
        let payload = vec![9u8; 40];
        let down = AudioDown {
            seq: 3,
            keepalive: false,
            end: true,
            forwarded: true,
            fec: true,
            timestamp: 480,
            codec: AudioCodec::Pcm16,
            samples: 480,
            levels: vec![
                SpeakingLevel { session: SessionId(1), level: 200, name: "Ann".into() },
                SpeakingLevel { session: SessionId(2), level: 0, name: "Bö".into() },
            ],
            payload: &payload,
        };
        let mut buf = Vec::new();
        down.encode(&mut buf);
        assert_eq!(AudioDown::decode(&buf), Ok(down));
        assert!(AudioUp::decode(&buf).is_err());
    }

    #[test]
    fn hostile_datagrams_are_errors_not_panics() {
        let mut good = Vec::new();
        AudioDown {
            seq: 1,
            keepalive: false,
            end: false,
            forwarded: false,
            fec: false,
            timestamp: 0,
            codec: AudioCodec::Opus,
            samples: 960,
            levels: vec![SpeakingLevel { session: SessionId(1), level: 1, name: "x".into() }],
            payload: &[1, 2, 3],
        }
        .encode(&mut good);
        // Every truncation fails cleanly (the header's length no longer matches).
        for cut in 0..good.len() {
            assert!(AudioDown::decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        // A level count over the limit.
        let mut bad = good.clone();
        bad[HEADER_LEN + 11] = 200;
        assert!(AudioDown::decode(&bad).is_err());
        // A name length running past the end.
        let mut bad = good.clone();
        bad[HEADER_LEN + DOWN_HEADER_LEN + 5] = 250;
        assert!(AudioDown::decode(&bad).is_err());
        // Unknown codec.
        let mut bad = good.clone();
        bad[HEADER_LEN + 8] = 9;
        assert!(AudioDown::decode(&bad).is_err());
        // Wrong message type.
        let mut bad = good;
        bad[1] = 0x11;
        assert!(AudioDown::decode(&bad).is_err());
        // Oversized datagram.
        assert!(AudioUp::decode(&vec![0u8; AUDIO_DATAGRAM_MAX + 1]).is_err());
    }

    #[test]
    fn feedback_round_trips_and_is_told_apart_from_audio() {
        let up = FeedbackUp { session: SessionId(9), loss: 0.125, jitter_us: 3_400 };
        let mut buf = Vec::new();
        up.encode(&mut buf);
        assert_eq!(buf.len(), HEADER_LEN + FEEDBACK_UP_LEN);
        assert!(is_audio_feedback(&buf));
        assert_eq!(FeedbackUp::decode(&buf), Ok(up));
        // An audio decoder refuses it: the host must not take it for a frame.
        assert!(AudioUp::decode(&buf).is_err());
        assert!(FeedbackDown::decode(&buf).is_err());
        let down = FeedbackDown { loss: 0.0, jitter_us: 0, expected_loss_percent: 12 };
        let mut buf = Vec::new();
        down.encode(&mut buf);
        assert_eq!(buf.len(), HEADER_LEN + FEEDBACK_DOWN_LEN);
        assert_eq!(FeedbackDown::decode(&buf), Ok(down));
        assert!(AudioDown::decode(&buf).is_err());
        assert!(FeedbackUp::decode(&buf).is_err());
        // Loss over 100 % and truncations are errors, not panics.
        let mut bad = buf.clone();
        bad[HEADER_LEN] = 0xff;
        assert!(FeedbackDown::decode(&bad).is_err());
        for cut in 0..buf.len() {
            assert!(FeedbackDown::decode(&buf[..cut]).is_err());
        }
        // Audio is not feedback.
        let mut audio = Vec::new();
        AudioUp {
            session: SessionId(1),
            keepalive: true,
            end: false,
            seq: 0,
            timestamp: 0,
            codec: AudioCodec::Opus,
            samples: 960,
            payload: &[],
        }
        .encode(&mut audio);
        assert!(!is_audio_feedback(&audio) && !is_audio_feedback(&[]));
    }

    #[test]
    fn redundant_frames_round_trip_and_hostile_ones_are_errors() {
        let (a, b, now) = ([1u8, 2, 3], [4u8; 300], [9u8, 8]);
        let blocks =
            [RedBlock { back: 2, fec: false, data: &a }, RedBlock { back: 1, fec: true, data: &b }];
        let mut payload = Vec::new();
        RedPayload::encode(&blocks, &now, &mut payload);
        assert_eq!(payload.len(), 1 + 2 * RED_BLOCK_HEADER_LEN + 3 + 300 + 2);
        let red = RedPayload::decode(&payload).unwrap();
        assert_eq!(red.blocks(), &blocks);
        assert_eq!((red.primary, red.depth()), (&now[..], 2));
        // No blocks: just the count byte, then the packet.
        let mut bare = Vec::new();
        RedPayload::encode(&[], &now, &mut bare);
        assert_eq!(bare, [0, 9, 8]);
        assert_eq!(RedPayload::decode(&bare).unwrap().depth(), 0);
        // In a datagram, both ways.
        let up = AudioUp {
            session: SessionId(1),
            keepalive: false,
            end: false,
            seq: 5,
            timestamp: 0,
            codec: AudioCodec::OpusRed,
            samples: 960,
            payload: &payload,
        };
        let mut buf = Vec::new();
        up.encode(&mut buf);
        assert_eq!(AudioUp::decode(&buf), Ok(up));
        // Every truncation of the payload is an error, never a panic
        // (the datagram's own length is fixed up so only the RED layout is wrong).
        for cut in 0..payload.len() - now.len() {
            assert!(RedPayload::decode(&payload[..cut]).is_err(), "cut at {cut}");
            let mut buf = Vec::new();
            AudioUp { payload: &payload[..cut], ..up }.encode(&mut buf);
            assert!(AudioUp::decode(&buf).is_err(), "datagram cut at {cut}");
        }
        // Too many blocks; a block 0 frames back.
        let mut bad = payload.clone();
        bad[0] = 3;
        assert!(RedPayload::decode(&bad).is_err());
        let mut bad = payload;
        bad[1] = 0;
        assert!(RedPayload::decode(&bad).is_err());
        assert_eq!(AudioCodec::from_u8(2), Ok(AudioCodec::OpusRed));
        assert_eq!(AudioCodec::OpusRed.base(), AudioCodec::Opus);
    }

    #[test]
    fn levels_map_decibels() {
        assert_eq!(level_from_rms(0.0), 0);
        assert_eq!(level_from_rms(0.0005), 0);
        assert_eq!(level_from_rms(1.0), 255);
        assert!(level_from_rms(0.1) > SPEAKING_LEVEL);
        assert!(level_from_rms(0.005) < SPEAKING_LEVEL);
    }
}
