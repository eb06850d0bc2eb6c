//! The first frame of every file or screen stream.
//!
//! Each file transfer, file listing, screen presenter and screen viewer gets
//! a stream of its own (a QUIC bidirectional stream, a tunnel channel, or
//! today a TCP connection to the file or screen port). Its first frame is a
//! [`StreamOpen`] (0x60): the session's authentication and the service and
//! role the stream is for. The host checks it, then hands the rest of the
//! stream to that service. A stream the host cannot hand to any service is
//! answered with one [`StreamRefused`] (0x61) and closed; a service refuses
//! in its own words (`FileFailure`, `ScreenRefused`). `docs/protocol.md`
//! "Streams" has the bytes.

use serde::{Deserialize, Serialize};

use super::{DownloadRequest, SessionId, UploadRequest};

/// Largest [`StreamOpen`] payload; nothing longer is read before the
/// session is authenticated.
pub const STREAM_OPEN_MAX: u32 = 8 * 1024;

/// 0x60, client → host: the first frame of every file or screen stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamOpen {
    /// The session id from the Welcome.
    pub session: SessionId,
    /// The session token from the Welcome.
    pub token: u64,
    /// Which service, and what to do.
    pub role: StreamRole,
}

/// Which service a stream is for, and in which role. A file stream carries
/// exactly one operation, so its request rides in the first frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamRole {
    /// List the files I may see; the host answers `FileList` and finishes.
    FileList,
    /// Upload (or resume) a file; the host answers `UploadReady`.
    FileUpload(UploadRequest),
    /// Download a file from an offset; the host answers `FileMetadata`, then chunks.
    FileDownload(DownloadRequest),
    /// Present my screen: `ScreenStart` follows, then tile updates.
    ScreenPresent,
    /// Watch the room's shared screen: the host sends, I acknowledge.
    ScreenView,
}

impl StreamRole {
    /// The service's name, for people and logs.
    pub fn service(&self) -> StreamService {
        match self {
            StreamRole::FileList | StreamRole::FileUpload(_) | StreamRole::FileDownload(_) => {
                StreamService::Files
            }
            StreamRole::ScreenPresent | StreamRole::ScreenView => StreamService::Screen,
        }
    }
}

/// The two stream services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamService {
    /// Files: listing, upload, download (`server::files`).
    Files,
    /// Screen sharing: presenter or viewer (`server::screen`).
    Screen,
}

impl std::fmt::Display for StreamService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StreamService::Files => "file sharing",
            StreamService::Screen => "screen sharing",
        })
    }
}

/// 0x61, host → client: the stream was refused before any service took it
/// (malformed first frame, too many streams, service not offered here).
/// The host closes the stream after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamRefused {
    /// Why, as a sentence for people ("too many streams from your address").
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{MsgType, decode_payload, encode_frame, encode_payload};

    #[test]
    fn every_role_round_trips() {
        let roles = [
            StreamRole::FileList,
            StreamRole::FileUpload(UploadRequest {
                name: "a.txt".into(),
                size: 5,
                to: Some("bob".into()),
                resume: None,
            }),
            StreamRole::FileDownload(DownloadRequest { id: 7, offset: 1 << 33 }),
            StreamRole::ScreenPresent,
            StreamRole::ScreenView,
        ];
        for role in roles {
            let open = StreamOpen { session: SessionId(3), token: u64::MAX, role };
            assert_eq!(decode_payload::<StreamOpen>(&encode_payload(&open)), Ok(open));
        }
        let r = StreamRefused { reason: "no".into() };
        assert_eq!(decode_payload::<StreamRefused>(&encode_payload(&r)), Ok(r));
    }

    #[test]
    fn stream_open_bytes_are_as_documented() {
        // docs/protocol.md, "Streams", worked example: session 3, token 99,
        // a screen viewer.
        let mut out = Vec::new();
        let open = StreamOpen { session: SessionId(3), token: 99, role: StreamRole::ScreenView };
        encode_frame(MsgType::StreamOpen, 0, &open, &mut out);
        assert_eq!(out, [1, 0x60, 0, 0, 0, 3, 0, 0, 0, 0, 3, 0x63, 4]);
        // A download of file 9 from byte 0.
        let mut out = Vec::new();
        let open = StreamOpen {
            session: SessionId(3),
            token: 99,
            role: StreamRole::FileDownload(DownloadRequest { id: 9, offset: 0 }),
        };
        encode_frame(MsgType::StreamOpen, 0, &open, &mut out);
        assert_eq!(out, [1, 0x60, 0, 0, 0, 5, 0, 0, 0, 0, 3, 0x63, 2, 9, 0]);
    }

    proptest::proptest! {
        #[test]
        fn hostile_open_frames_never_panic(bytes in proptest::collection::vec(0u8..=255, 0..64)) {
            let _ = decode_payload::<StreamOpen>(&bytes);
        }
    }
}
