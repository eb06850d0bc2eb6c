//! The gateway's translation core (sans-IO): browser guest messages in,
//! client-library calls out; session [`Event`]s in, guest messages out.
//!
//! Text WebSocket messages carry JSON objects with a `"t"` (type) field; the
//! layout is in `docs/protocol.md`, "Browser guests". A guest is an ordinary
//! member: the gateway joins on its behalf through
//! [`crate::client::Client`], so the host applies the same naming, room and
//! admission rules as to anyone.

use serde::{Deserialize, Serialize};

use crate::client::Event;
use crate::proto::{ChatMessage, FileInfo, Layer, Member, SessionId, limits};

/// Largest text message a guest may send (a chat line plus JSON quoting).
pub const MAX_GUEST_TEXT: usize = limits::CHAT_TEXT * 6 + 1024;

/// What a guest sends (JSON text messages).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case", deny_unknown_fields)]
pub enum FromGuest {
    /// The first message: who joins which room. `passcode` is handed to
    /// the host's admission (ignored by a host without passcodes).
    Join {
        name: String,
        #[serde(default)]
        room: String,
        #[serde(default)]
        passcode: Option<String>,
    },
    /// A chat line to the room (`to: null`) or to one member.
    Chat {
        #[serde(default)]
        to: Option<String>,
        text: String,
    },
    /// The guest's microphone and camera switches.
    Media { mic: bool, camera: bool },
    /// The guest's layout: the senders (session ids) it shows large get the
    /// full layer, all others `default` ("thumb", "full" or "none").
    Video {
        #[serde(default)]
        default: Option<String>,
        #[serde(default)]
        full: Vec<SessionId>,
    },
    /// Download a file offered to the guest (by its `file` message's id).
    Download { id: u64 },
    /// Start sharing a file of `size` bytes called `name` (with `to` only,
    /// or the room); its bytes follow as [`KIND_UPLOAD`] messages, then
    /// `upload_end`. One upload at a time.
    UploadStart {
        name: String,
        size: u64,
        #[serde(default)]
        to: Option<String>,
    },
    /// All of the upload's bytes were sent.
    UploadEnd,
    /// The guest leaves the meeting.
    Leave,
}

/// Binary message kind: a video frame (both directions). Kinds follow the
/// browser's range of `docs/transport-v2.md` §5 (0x40 and up).
pub const KIND_VIDEO: u8 = 0x40;
/// Binary message kind: audio, 16-bit PCM (both directions).
pub const KIND_PCM: u8 = 0x41;
/// Binary message kind: audio, one Opus packet (guest → gateway).
pub const KIND_OPUS: u8 = 0x42;

/// Binary message kind: a piece of a downloaded file (gateway → guest).
pub const KIND_FILE: u8 = 0x43;
/// Bytes of a file per [`KIND_FILE`] message.
pub const FILE_PIECE: usize = 64 * 1024;

/// A piece of a file for a guest: `[0x43][file id u64 BE][offset u64 BE][bytes]`;
/// a piece with no bytes at offset = size ends the file.
pub fn encode_file_piece(id: u64, offset: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + bytes.len());
    out.push(KIND_FILE);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Binary message kind: bytes of the guest's upload, in order (guest →
/// gateway): `[0x44][bytes]`.
pub const KIND_UPLOAD: u8 = 0x44;

/// Binary message kind: the shared screen's newest picture (gateway →
/// guest): `[0x45][frame u32 BE][width u16 BE][height u16 BE][JPEG]`.
pub const KIND_SCREEN: u8 = 0x45;

/// The screen picture message of [`KIND_SCREEN`].
pub fn encode_screen(frame: u32, width: u16, height: u16, jpeg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + jpeg.len());
    out.push(KIND_SCREEN);
    out.extend_from_slice(&frame.to_be_bytes());
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(jpeg);
    out
}

/// A binary message from a guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestMedia<'a> {
    /// `[0x40][layer u8][frame id u32 BE][JPEG]`: one layer of one camera
    /// frame (the page encodes both, with the same frame id).
    Video { layer: Layer, frame_id: u32, jpeg: &'a [u8] },
    /// `[0x41][16-bit little-endian PCM, mono, 48 kHz]`.
    Pcm(&'a [u8]),
    /// `[0x42][one Opus packet, mono, 48 kHz]`.
    Opus(&'a [u8]),
    /// `[0x44][bytes of the current upload]`.
    Upload(&'a [u8]),
}

/// Parses a binary message from a guest.
pub fn parse_media(bytes: &[u8]) -> Result<GuestMedia<'_>, GuestError> {
    let bad = |why: &str| GuestError::Malformed(why.to_string());
    match bytes.first() {
        Some(&KIND_VIDEO) => {
            let (Some(&layer), Some(id)) = (bytes.get(1), bytes.get(2..6)) else {
                return Err(bad("short video message"));
            };
            let layer = Layer::from_u8(layer).ok_or_else(|| bad("unknown video layer"))?;
            let jpeg = &bytes[6..];
            if jpeg.len() > crate::proto::MAX_FRAME_BYTES as usize {
                return Err(GuestError::TooLong(jpeg.len()));
            }
            if !jpeg.starts_with(&[0xff, 0xd8]) {
                return Err(bad("the video frame is not a JPEG"));
            }
            let frame_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
            Ok(GuestMedia::Video { layer, frame_id, jpeg })
        }
        Some(&KIND_PCM) if bytes.len() % 2 == 1 => Ok(GuestMedia::Pcm(&bytes[1..])),
        Some(&KIND_PCM) => Err(bad("odd PCM length")),
        Some(&KIND_OPUS) => Ok(GuestMedia::Opus(&bytes[1..])),
        Some(&KIND_UPLOAD) => Ok(GuestMedia::Upload(&bytes[1..])),
        Some(other) => Err(GuestError::Malformed(format!("unknown binary kind 0x{other:02x}"))),
        None => Err(bad("empty binary message")),
    }
}

/// A video frame for a guest:
/// `[0x40][layer u8][sender u32 BE][frame id u32 BE][name length u8][name UTF-8][JPEG]`.
pub fn encode_video(
    sender: SessionId,
    name: &str,
    layer: Layer,
    frame_id: u32,
    jpeg: &[u8],
) -> Vec<u8> {
    let mut name = name;
    while name.len() > 255 {
        let mut cut = 255;
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name = &name[..cut];
    }
    let mut out = Vec::with_capacity(11 + name.len() + jpeg.len());
    out.push(KIND_VIDEO);
    out.push(layer as u8);
    out.extend_from_slice(&sender.0.to_be_bytes());
    out.extend_from_slice(&frame_id.to_be_bytes());
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(jpeg);
    out
}

/// Why a guest message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    #[error("message of {0} bytes is too long (limit {MAX_GUEST_TEXT})")]
    TooLong(usize),
    #[error("not a guest message: {0}")]
    Malformed(String),
}

/// Parses one text message from a guest.
pub fn parse(text: &str) -> Result<FromGuest, GuestError> {
    if text.len() > MAX_GUEST_TEXT {
        return Err(GuestError::TooLong(text.len()));
    }
    serde_json::from_str(text).map_err(|e| GuestError::Malformed(e.to_string()))
}

/// A file offer as the page sees it (the MD5 in hex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestFile {
    pub id: u64,
    pub name: String,
    pub size: u64,
    pub md5: String,
    pub sender: String,
    pub to: Option<String>,
}

impl From<&FileInfo> for GuestFile {
    fn from(f: &FileInfo) -> GuestFile {
        GuestFile {
            id: f.id,
            name: f.name.clone(),
            size: f.size,
            md5: f.md5.iter().map(|b| format!("{b:02x}")).collect(),
            sender: f.sender.clone(),
            to: f.to.clone(),
        }
    }
}

/// What the gateway sends a guest (JSON text messages).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToGuest {
    /// Admitted: the name the host gave (as typed, checked), the room, the
    /// meeting's name, who is there and the room's chat so far.
    Joined {
        name: String,
        room: String,
        host: String,
        members: Vec<Member>,
        history: Vec<ChatMessage>,
    },
    /// Not admitted (or a later refusal); the connection closes after it.
    Refused { reason: String },
    /// The room's member list, whole.
    Members { members: Vec<Member> },
    /// Someone joined or left.
    Presence { name: String, joined: bool },
    /// A chat line (room or private).
    Chat(ChatMessage),
    /// A chat line of ours was not delivered.
    ChatFailed { reason: String },
    /// A file was shared with the room or with the guest.
    File(GuestFile),
    /// The guest's upload is shared (or failed: `error` set).
    Uploaded { name: String, error: Option<String> },
    /// Someone started (`presenter` set) or stopped sharing a screen.
    Screen { presenter: Option<String> },
    /// A download could not be done.
    DownloadFailed { id: u64, reason: String },
    /// A notice to show (host controls, blocked media).
    Notice { text: String },
    /// The session is over; the connection closes after it.
    Ended { reason: String },
}

impl ToGuest {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"t\":\"ended\"}"))
    }
}

/// The message for a session event, if the guest sees it. `Joined` after a
/// rejoin is sent again (the member list may have changed).
pub fn translate(event: &Event) -> Option<ToGuest> {
    Some(match event {
        Event::Joined { welcome, .. } => ToGuest::Joined {
            name: welcome.name.clone(),
            room: welcome.room.clone(),
            host: welcome.host_name.clone(),
            members: welcome.members.clone(),
            history: welcome.history.clone(),
        },
        Event::Members(list) => ToGuest::Members { members: list.members.clone() },
        Event::Presence(p) => ToGuest::Presence {
            name: p.name.clone(),
            joined: p.change == crate::proto::PresenceChange::Joined,
        },
        Event::Chat(msg) => ToGuest::Chat(msg.clone()),
        Event::ChatResult(result) => match &result.outcome {
            crate::proto::ChatOutcome::Delivered { .. } => return None,
            other => ToGuest::ChatFailed { reason: format!("{other:?}") },
        },
        Event::FileOffered(info) => ToGuest::File(info.into()),
        Event::Disconnected { reason, retrying: true, .. } => {
            ToGuest::Notice { text: format!("Connection lost ({reason}); rejoining…") }
        }
        Event::Disconnected { reason, retrying: false, .. } => {
            ToGuest::Ended { reason: reason.clone() }
        }
        Event::Refused(refused) => ToGuest::Refused { reason: refused.reason.clone() },
        Event::Moved { host_name, .. } => {
            ToGuest::Notice { text: format!("The meeting moved to {host_name}'s host.") }
        }
        Event::MediaBlocked(text) => ToGuest::Notice { text: text.clone() },
        Event::ControlNotice(notice) => ToGuest::Notice { text: format!("{notice:?}") },
        Event::ControlResult(_) | Event::RoomState(_) => return None,
        Event::Ended => ToGuest::Ended { reason: "left the meeting".into() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_messages_parse_and_bad_ones_are_errors() {
        assert_eq!(
            parse(r#"{"t":"join","name":"Ana","room":"r1"}"#),
            Ok(FromGuest::Join { name: "Ana".into(), room: "r1".into(), passcode: None })
        );
        assert_eq!(
            parse(r#"{"t":"chat","to":"Bo","text":"hi"}"#),
            Ok(FromGuest::Chat { to: Some("Bo".into()), text: "hi".into() })
        );
        assert_eq!(parse(r#"{"t":"leave"}"#), Ok(FromGuest::Leave));
        assert!(matches!(parse(r#"{"t":"fly"}"#), Err(GuestError::Malformed(_))));
        assert!(matches!(parse("not json"), Err(GuestError::Malformed(_))));
        assert!(matches!(parse(r#"{"t":"chat"}"#), Err(GuestError::Malformed(_))));
        let long = format!(r#"{{"t":"chat","text":"{}"}}"#, "a".repeat(MAX_GUEST_TEXT));
        assert!(matches!(parse(&long), Err(GuestError::TooLong(_))));
    }

    #[test]
    fn events_become_guest_messages() {
        let msg =
            ChatMessage { id: 7, from: "Bo".into(), to: None, text: "hello".into(), ts_ms: 1 };
        let json = translate(&Event::Chat(msg)).unwrap().to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["t"], "chat");
        assert_eq!(value["from"], "Bo");
        assert_eq!(value["text"], "hello");
        let file = FileInfo {
            id: 3,
            name: "a.bin".into(),
            size: 2,
            md5: [0xab; 16],
            sender: "Bo".into(),
            to: None,
            ts_ms: 0,
        };
        let json = translate(&Event::FileOffered(file)).unwrap().to_json();
        assert!(json.contains(&"ab".repeat(16)), "{json}");
        assert!(translate(&Event::Ended).is_some());
    }

    #[test]
    fn binary_media_messages_parse_and_bad_ones_are_errors() {
        let mut up = vec![KIND_VIDEO, 1, 0, 0, 0, 9, 0xff, 0xd8, 0xff];
        assert_eq!(
            parse_media(&up),
            Ok(GuestMedia::Video { layer: Layer::Thumb, frame_id: 9, jpeg: &[0xff, 0xd8, 0xff] })
        );
        up[6] = 0;
        assert!(parse_media(&up).is_err(), "not a JPEG");
        assert!(parse_media(&[KIND_VIDEO, 7, 0, 0, 0, 0, 0xff, 0xd8]).is_err());
        assert!(parse_media(&[KIND_VIDEO, 0]).is_err());
        assert_eq!(parse_media(&[KIND_PCM, 1, 2]), Ok(GuestMedia::Pcm(&[1, 2])));
        assert!(parse_media(&[KIND_PCM, 1]).is_err());
        assert!(parse_media(&[]).is_err());
        assert!(parse_media(&[0x99]).is_err());
        let down = encode_video(SessionId(5), "bot1", Layer::Full, 3, &[0xff, 0xd8]);
        assert_eq!(down, [0x40, 0, 0, 0, 0, 5, 0, 0, 0, 3, 4, b'b', b'o', b't', b'1', 0xff, 0xd8]);
        assert_eq!(
            encode_video(SessionId(1), &"é".repeat(200), Layer::Full, 0, &[]).len(),
            11 + 254
        );
    }
}
