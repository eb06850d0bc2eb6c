//! File streams and the file offer sent on the control channel.
//!
//! One stream carries one operation: an upload, a download or a listing,
//! named with its request in the stream's first frame
//! ([`super::StreamOpen`]). Every frame is the usual 10-byte header plus
//! payload; a [`MsgType::FileChunk`] payload is an 8-byte big-endian offset
//! followed by at most [`CHUNK_SIZE`] raw bytes, every other payload is
//! postcard.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{DecodeError, MsgType, decode_payload, encode_payload};

/// Bytes of file data in one chunk frame.
pub const CHUNK_SIZE: usize = 32 * 1024;
/// The chunk frame's sub-header: the chunk's offset in the file.
pub const CHUNK_HEADER: usize = 8;

/// Per-frame payload limits on the file channel, checked before allocating.
pub mod file_limits {
    /// A chunk frame: offset + data.
    pub const CHUNK: u32 = (super::CHUNK_HEADER + super::CHUNK_SIZE) as u32;
    /// Requests, metadata, acknowledgements.
    pub const SMALL: u32 = 8 * 1024;
    /// A file listing ([`super::MAX_FILES_PER_ROOM`] entries).
    pub const LIST: u32 = 1024 * 1024;
}

/// A room keeps at most this many files; the oldest go first.
pub const MAX_FILES_PER_ROOM: usize = 1000;
/// Longest file name kept (bytes of UTF-8), after sanitising.
pub const FILE_NAME_BYTES: usize = 200;

/// In the first frame of an upload stream ([`super::StreamRole::FileUpload`]):
/// start (or resume) an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRequest {
    /// Shown to others after sanitising; never used as a path by the host.
    pub name: String,
    /// The file's size in bytes, declared up front; the host refuses it over
    /// its per-file limit before any chunk arrives.
    pub size: u64,
    /// `None` shares with the room; else the one member who may see it.
    pub to: Option<String>,
    /// The `upload` id of an earlier, interrupted attempt of this upload.
    pub resume: Option<u64>,
}

/// 0x24, host → client: the host is ready for chunks starting at `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadReady {
    /// Give this as `resume` to continue after a dropped connection.
    pub upload: u64,
    /// The first byte the host still needs (0 for a fresh upload).
    pub offset: u64,
}

/// 0x29, client → host: every byte has been sent; this is its MD5. Sent at
/// the end so the sender hashes while sending, in one pass over the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadEnd {
    /// MD5 (RFC 1321) of the whole file, 16 bytes. An integrity check against
    /// broken transfers, not a security measure: the link is already TLS.
    pub md5: [u8; 16],
}

/// 0x24, host → client: the upload is verified and stored under `id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadDone {
    /// The stored file, as others will see it.
    pub file: FileInfo,
    /// Optional trailing field: something the sender should know, e.g. that
    /// the one recipient has left the meeting (the file is kept and offered
    /// if they rejoin).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::trailing"
    )]
    pub notice: Option<String>,
}

/// In the first frame of a download stream
/// ([`super::StreamRole::FileDownload`]): send me file `id`, from byte `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DownloadRequest {
    /// The file's [`FileInfo::id`].
    pub id: u64,
    /// The first byte wanted: 0, or the size of a partial copy to resume.
    pub offset: u64,
}

/// 0x28, host → client: the answer to a listing stream
/// ([`super::StreamRole::FileList`]), oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileList {
    /// The files the asker may fetch: the room's, and those sent to or by
    /// them privately; oldest first.
    pub files: Vec<FileInfo>,
}

/// A stored file as participants see it. Also the payload of 0x20
/// (FILE_METADATA, host → client, before a download's chunks) and, on the
/// control channel, of 0x26 (FILE_OFFERED).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    /// Host-assigned, unique for the host's run.
    pub id: u64,
    /// Sanitised: no directories, control characters or reserved names.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// MD5 (RFC 1321) of the content, 16 bytes, checked by the host on upload
    /// and by the client after download.
    pub md5: [u8; 16],
    /// The sender's name in the room.
    pub sender: String,
    /// `Some(recipient)` for a file shared with one member only.
    pub to: Option<String>,
    /// Host clock, milliseconds since the Unix epoch.
    pub ts_ms: u64,
}

impl FileInfo {
    /// Whether the file was shared with one member only.
    pub fn private(&self) -> bool {
        self.to.is_some()
    }
}

/// Why a file operation failed, in [`FileFailure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FileErrorCode {
    /// Unknown session, or the token does not match.
    Auth,
    /// Over the host's per-file limit (declared or actual size).
    TooLarge,
    /// The named recipient is not in the room.
    NoSuchMember,
    /// No such file, or not one you may see.
    NotFound,
    /// The bytes received do not hash to the MD5 the sender gave.
    Md5Mismatch,
    /// Fewer or more bytes than declared, or a chunk at the wrong offset.
    Size,
    /// The host's disk is full; nothing was kept.
    DiskFull,
    /// Any other failure to read or write the host's store.
    Storage,
    /// The client broke the protocol.
    Protocol,
    /// The upload to resume is unknown or not yours.
    NoSuchUpload,
}

/// 0x25, host → client: the operation failed; the host closes the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFailure {
    /// The machine-readable reason.
    pub code: FileErrorCode,
    /// The same for people ("the file is 120.0 MiB and this host accepts at
    /// most 100.0 MiB").
    pub reason: String,
}

/// Everything a client may send on an upload stream after its first frame.
/// Chunk data shares the received frame's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileClientMsg {
    /// 0x21: file data.
    Chunk {
        /// Where `data` goes in the file, in bytes; chunks come in order.
        offset: u64,
        /// At most [`CHUNK_SIZE`] bytes.
        data: Bytes,
    },
    /// 0x29: every byte is sent; here is the MD5.
    End(UploadEnd),
}

/// Everything a host may send on the file channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileHostMsg {
    /// 0x24 in answer to an upload request: send chunks from this offset.
    Ready(UploadReady),
    /// 0x24 after the End: stored and verified.
    Done(UploadDone),
    /// 0x25: the operation failed; the stream ends.
    Failure(FileFailure),
    /// 0x20: the file about to be downloaded.
    Metadata(FileInfo),
    /// 0x21: file data of a download.
    Chunk {
        /// Where `data` goes in the file, in bytes; chunks come in order.
        offset: u64,
        /// At most [`CHUNK_SIZE`] bytes.
        data: Bytes,
    },
    /// 0x28: the answer to a listing.
    List(FileList),
}

/// The largest payload a client may send with this frame type; the host
/// checks it before allocating.
pub fn client_limit(kind: u8) -> u32 {
    if kind == MsgType::FileChunk as u8 { file_limits::CHUNK } else { file_limits::SMALL }
}

/// The largest payload a host may send with this frame type.
pub fn host_limit(kind: u8) -> u32 {
    match kind {
        k if k == MsgType::FileChunk as u8 => file_limits::CHUNK,
        k if k == MsgType::FileList as u8 => file_limits::LIST,
        _ => file_limits::SMALL,
    }
}

/// Appends a chunk payload (offset + data) to `out`.
pub fn encode_chunk(offset: u64, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&offset.to_be_bytes());
    out.extend_from_slice(data);
}

/// Splits a chunk payload into its offset and data (a slice of `payload`,
/// no copy).
pub fn decode_chunk(payload: Bytes) -> Result<(u64, Bytes), DecodeError> {
    let head: [u8; CHUNK_HEADER] = payload
        .get(..CHUNK_HEADER)
        .and_then(|s| s.try_into().ok())
        .ok_or(DecodeError::UnexpectedEnd)?;
    if payload.len() - CHUNK_HEADER > CHUNK_SIZE {
        return Err(DecodeError::TooLong { len: payload.len() as u32, max: file_limits::CHUNK });
    }
    Ok((u64::from_be_bytes(head), payload.slice(CHUNK_HEADER..)))
}

impl FileClientMsg {
    /// The header's message type for this message.
    pub fn msg_type(&self) -> MsgType {
        match self {
            FileClientMsg::Chunk { .. } => MsgType::FileChunk,
            FileClientMsg::End(_) => MsgType::FileUploadEnd,
        }
    }

    /// The payload: a chunk's offset and data ([`encode_chunk`]), else postcard.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            FileClientMsg::Chunk { offset, data } => {
                let mut out = Vec::with_capacity(CHUNK_HEADER + data.len());
                encode_chunk(*offset, data, &mut out);
                out
            }
            FileClientMsg::End(m) => encode_payload(m),
        }
    }

    /// Parses a payload of header type `kind`; a chunk keeps sharing
    /// `payload`'s buffer. An error for a type a client does not send on a file
    /// stream, or a payload that does not decode.
    pub fn decode(kind: u8, payload: Bytes) -> Result<FileClientMsg, DecodeError> {
        Ok(match MsgType::try_from(kind)? {
            MsgType::FileChunk => {
                let (offset, data) = decode_chunk(payload)?;
                FileClientMsg::Chunk { offset, data }
            }
            MsgType::FileUploadEnd => FileClientMsg::End(decode_payload(&payload)?),
            _ => return Err(DecodeError::Unexpected(kind)),
        })
    }
}

impl FileHostMsg {
    /// The header's message type for this message.
    pub fn msg_type(&self) -> MsgType {
        match self {
            FileHostMsg::Ready(_) | FileHostMsg::Done(_) => MsgType::FileAckSuccess,
            FileHostMsg::Failure(_) => MsgType::FileAckFailure,
            FileHostMsg::Metadata(_) => MsgType::FileMetadata,
            FileHostMsg::Chunk { .. } => MsgType::FileChunk,
            FileHostMsg::List(_) => MsgType::FileList,
        }
    }

    /// The payload: a chunk's offset and data ([`encode_chunk`]), else postcard.
    pub fn payload(&self) -> Vec<u8> {
        match self {
            // The two acknowledgements share 0x24; a leading tag tells them apart.
            FileHostMsg::Ready(m) => encode_payload(&Ack::Ready(m.clone())),
            FileHostMsg::Done(m) => encode_payload(&Ack::Done(m.clone())),
            FileHostMsg::Failure(m) => encode_payload(m),
            FileHostMsg::Metadata(m) => encode_payload(m),
            FileHostMsg::Chunk { offset, data } => {
                let mut out = Vec::with_capacity(CHUNK_HEADER + data.len());
                encode_chunk(*offset, data, &mut out);
                out
            }
            FileHostMsg::List(m) => encode_payload(m),
        }
    }

    /// Parses a payload of header type `kind`; a chunk keeps sharing
    /// `payload`'s buffer. An error for a type a host does not send on a file
    /// stream, or a payload that does not decode.
    pub fn decode(kind: u8, payload: Bytes) -> Result<FileHostMsg, DecodeError> {
        Ok(match MsgType::try_from(kind)? {
            MsgType::FileAckSuccess => match decode_payload::<Ack>(&payload)? {
                Ack::Ready(m) => FileHostMsg::Ready(m),
                Ack::Done(m) => FileHostMsg::Done(m),
            },
            MsgType::FileAckFailure => FileHostMsg::Failure(decode_payload(&payload)?),
            MsgType::FileMetadata => FileHostMsg::Metadata(decode_payload(&payload)?),
            MsgType::FileChunk => {
                let (offset, data) = decode_chunk(payload)?;
                FileHostMsg::Chunk { offset, data }
            }
            MsgType::FileList => FileHostMsg::List(decode_payload(&payload)?),
            _ => return Err(DecodeError::Unexpected(kind)),
        })
    }
}

#[derive(Serialize, Deserialize)]
enum Ack {
    Ready(UploadReady),
    Done(UploadDone),
}

/// Lower-case hex of an MD5 digest, for people and JSON reports.
pub fn md5_hex(md5: &[u8; 16]) -> String {
    md5.iter().map(|b| format!("{b:02x}")).collect()
}

/// A size for people in binary (IEC 80000-13) units: "1 byte", "512 bytes",
/// "1.5 KiB", "3.2 MiB", "2.0 GiB", "1.0 TiB", with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    match n {
        1 => return "1 byte".into(),
        0..1024 => return format!("{n} bytes"),
        _ => {}
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    // Move up while the value would print as 1024.0 or more.
    while value >= 1023.95 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Names Windows reserves for devices, in any case and with any extension.
const RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// A file name safe to show and to save under on any of our platforms: NFC,
/// the last path component only, without hidden characters (controls,
/// format characters such as the right-to-left override that makes
/// `invoice\u{202E}fdp.exe` read as "invoiceexe.pdf", see
/// [`super::text::is_hidden`]), characters Windows forbids, leading or
/// trailing dots and spaces, or a reserved device name. Never empty.
pub fn sanitize_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut name: String = super::text::strip_hidden(last)
        .chars()
        .map(|c| if matches!(c, '<' | '>' | ':' | '"' | '|' | '?' | '*') { '_' } else { c })
        .collect();
    name = name.trim_matches(|c: char| c == '.' || c.is_whitespace()).to_string();
    let stem = name.split('.').next().unwrap_or_default().trim_end();
    if RESERVED
        .iter()
        .any(|r| r.eq_ignore_ascii_case(stem) || r.to_lowercase() == stem.to_lowercase())
    {
        name.insert(0, '_');
    }
    if name.len() > FILE_NAME_BYTES {
        // Keep the extension, cut the middle on a character boundary.
        let ext = name.rfind('.').map(|i| name[i..].to_string()).filter(|e| e.len() <= 16);
        let ext = ext.unwrap_or_default();
        let mut cut = FILE_NAME_BYTES - ext.len();
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name = format!("{}{ext}", &name[..cut]);
    }
    if name.is_empty() { "file".to_string() } else { name }
}

#[cfg(test)]
mod tests {

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1), "1 byte");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(1024 * 1024 - 1), "1.0 MiB");
        assert_eq!(human_bytes(100 * 1024 * 1024), "100.0 MiB");
        assert_eq!(human_bytes(3_355_443), "3.2 MiB");
        assert_eq!(human_bytes(2 << 30), "2.0 GiB");
        assert_eq!(human_bytes(1 << 40), "1.0 TiB");
        assert_eq!(human_bytes(u64::MAX), "16777216.0 TiB");
    }
    use super::*;

    #[test]
    fn every_file_message_round_trips() {
        let info = FileInfo {
            id: 9,
            name: "a.txt".into(),
            size: 3,
            md5: [7; 16],
            sender: "ann".into(),
            to: Some("bob".into()),
            ts_ms: 5,
        };
        let client = [
            FileClientMsg::Chunk { offset: 1 << 40, data: Bytes::from_static(&[1, 2, 3]) },
            FileClientMsg::Chunk { offset: 0, data: Bytes::new() },
            FileClientMsg::End(UploadEnd { md5: [1; 16] }),
        ];
        for m in client {
            assert_eq!(FileClientMsg::decode(m.msg_type() as u8, m.payload().into()).unwrap(), m);
        }
        let host = [
            FileHostMsg::Ready(UploadReady { upload: 3, offset: 32768 }),
            FileHostMsg::Done(UploadDone { file: info.clone(), notice: None }),
            FileHostMsg::Done(UploadDone { file: info.clone(), notice: Some("gone".into()) }),
            FileHostMsg::Failure(FileFailure { code: FileErrorCode::DiskFull, reason: "x".into() }),
            FileHostMsg::Metadata(info.clone()),
            FileHostMsg::Chunk { offset: 5, data: Bytes::from(vec![9; CHUNK_SIZE]) },
            FileHostMsg::List(FileList { files: vec![info] }),
        ];
        for m in host {
            assert_eq!(FileHostMsg::decode(m.msg_type() as u8, m.payload().into()).unwrap(), m);
        }
    }

    #[test]
    fn chunk_bytes_are_as_documented() {
        let m = FileClientMsg::Chunk { offset: 0x0102, data: Bytes::from_static(&[0xAA, 0xBB]) };
        assert_eq!(m.payload(), [0, 0, 0, 0, 0, 0, 1, 2, 0xAA, 0xBB]);
        assert_eq!(MsgType::FileChunk as u8, 0x21);
        // docs/protocol.md, "File transfer", worked examples: a listing
        // stream's first frame.
        let mut out = Vec::new();
        let open = crate::proto::StreamOpen {
            session: crate::proto::SessionId(3),
            token: 99,
            role: crate::proto::StreamRole::FileList,
        };
        crate::proto::encode_frame(MsgType::StreamOpen, 0, &open, &mut out);
        assert_eq!(out, [1, 0x60, 0, 0, 0, 3, 0, 0, 0, 0, 3, 0x63, 0]);
    }

    #[test]
    fn hostile_file_frames_are_errors() {
        // Chunk shorter than its offset field.
        assert!(FileClientMsg::decode(0x21, vec![0; 7].into()).is_err());
        // Chunk over the limit (a driver checks the header first; this is the backstop).
        assert!(
            FileClientMsg::decode(0x21, vec![0; CHUNK_HEADER + CHUNK_SIZE + 1].into()).is_err()
        );
        // Host-only type from a client, and the reverse.
        assert!(FileClientMsg::decode(0x20, Bytes::new()).is_err());
        assert!(FileHostMsg::decode(0x29, Bytes::new()).is_err());
        // Ack with an unknown tag.
        assert!(FileHostMsg::decode(0x24, vec![7].into()).is_err());
        assert_eq!(client_limit(0x21), file_limits::CHUNK);
        assert_eq!(client_limit(0x29), file_limits::SMALL);
        assert_eq!(host_limit(0x28), file_limits::LIST);
    }

    #[test]
    fn names_are_sanitised() {
        // (input, shown name, why)
        let cases: &[(&str, &str, &str)] = &[
            ("report.pdf", "report.pdf", "ordinary"),
            ("../../etc/passwd", "passwd", "unix traversal"),
            ("..\\..\\windows\\win.ini", "win.ini", "windows traversal"),
            ("/etc/shadow", "shadow", "absolute unix"),
            ("C:\\Users\\a\\x.txt", "x.txt", "absolute windows"),
            ("C:x.txt", "C_x.txt", "drive-relative"),
            ("\\\\server\\share\\y", "y", "UNC path"),
            ("..", "file", "parent only"),
            (".", "file", "dot only"),
            ("", "file", "empty"),
            ("a/", "file", "trailing slash leaves nothing"),
            ("evil\0.txt", "evil.txt", "NUL"),
            ("bell\x07\r\n\x1b[31m.txt", "bell[31m.txt", "control characters"),
            ("\u{85}x\u{9f}", "x", "C1 controls"),
            ("CON", "_CON", "reserved"),
            ("con.txt", "_con.txt", "reserved with extension, any case"),
            ("NUL", "_NUL", "reserved NUL"),
            ("com1", "_com1", "reserved COM1"),
            ("LPT9.tar.gz", "_LPT9.tar.gz", "reserved LPT9"),
            ("aux .txt", "_aux .txt", "reserved with trailing space before dot"),
            ("COM10", "COM10", "not reserved"),
            ("console.log", "console.log", "prefix of a reserved name is fine"),
            ("  .hidden.  ", "hidden", "leading/trailing dots and spaces"),
            ("a<b>c:d\"e|f?g*h", "a_b_c_d_e_f_g_h", "characters Windows forbids"),
            ("naïve 👋.txt", "naïve 👋.txt", "unicode kept"),
            ("invoice\u{202E}fdp.exe", "invoicefdp.exe", "right-to-left override"),
            ("a\u{2066}b\u{2069}.txt", "ab.txt", "bidi isolates"),
            ("re\u{200B}port\u{FEFF}.pdf", "report.pdf", "zero-width space, BOM"),
            ("tag\u{E0041}.txt", "tag.txt", "tag characters"),
            ("cafe\u{301}.txt", "café.txt", "NFC"),
            ("a\u{2028}b.txt", "ab.txt", "line separator"),
        ];
        for (raw, want, why) in cases {
            assert_eq!(sanitize_file_name(raw), *want, "{why}");
        }
        let long = format!("{}.txt", "é".repeat(300));
        let s = sanitize_file_name(&long);
        assert!(s.len() <= FILE_NAME_BYTES && s.ends_with(".txt"), "{s}");
    }

    proptest::proptest! {
        #[test]
        fn sanitised_names_are_always_safe(raw in ".{0,300}") {
            let s = sanitize_file_name(&raw);
            proptest::prop_assert!(!s.is_empty() && s.len() <= FILE_NAME_BYTES);
            proptest::prop_assert!(!s.contains(['/', '\\', '\0', ':']));
            proptest::prop_assert!(!s.chars().any(super::super::text::is_hidden));
            proptest::prop_assert!(s != "." && s != "..");
        }

        #[test]
        fn random_file_frames_never_panic(kind in 0u8..=255, bytes in proptest::collection::vec(0u8..=255, 0..64)) {
            let _ = FileClientMsg::decode(kind, bytes.clone().into());
            let _ = FileHostMsg::decode(kind, bytes.into());
        }
    }
}
