//! The file service's decisions, sans IO: one upload's rules
//! ([`UploadCore`]) and when an emptied room's files go ([`Retention`]).
//! Neither reads a clock nor touches a file: time and the writer are inputs.

#![warn(missing_docs)]

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use crate::proto::text::RoomKey;
use crate::proto::{FileErrorCode, FileFailure, human_bytes};

pub(super) fn failure(code: FileErrorCode, reason: impl Into<String>) -> FileFailure {
    FileFailure { code, reason: reason.into() }
}

/// What a failed write to the store means to the uploader.
pub fn storage_failure(e: &std::io::Error) -> FileFailure {
    // ENOSPC (28) and EDQUOT (122) on Linux; StorageFull where std maps it.
    if e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(28 | 122))
    {
        failure(
            FileErrorCode::DiskFull,
            format!("the host's disk is full ({e}); nothing was kept — free some space and retry"),
        )
    } else {
        failure(FileErrorCode::Storage, format!("the host could not store the file: {e}"))
    }
}

/// One upload's rules, sans IO: chunks must arrive in order, never past the
/// declared size; each is hashed and handed to `sink`; the end must match the
/// declared size and MD5. Bytes up to [`UploadCore::offset`] have been
/// written and hashed, so an interrupted upload resumes there.
#[derive(Clone)]
pub struct UploadCore {
    declared: u64,
    received: u64,
    md5: Md5,
}

impl UploadCore {
    /// Checks the declared size against the host's limit.
    pub fn new(declared: u64, max: u64) -> Result<UploadCore, FileFailure> {
        if declared > max {
            return Err(failure(
                FileErrorCode::TooLarge,
                format!(
                    "the file is {} and this host accepts at most {}",
                    human_bytes(declared),
                    human_bytes(max)
                ),
            ));
        }
        Ok(UploadCore { declared, received: 0, md5: Md5::new() })
    }

    /// The next byte expected: bytes received so far (where a resumed upload
    /// goes on).
    pub fn offset(&self) -> u64 {
        self.received
    }

    /// The size the sender declared, in bytes.
    pub fn declared(&self) -> u64 {
        self.declared
    }

    /// Takes one chunk. On an error nothing more may be accepted.
    pub fn accept(
        &mut self,
        offset: u64,
        data: &[u8],
        sink: &mut impl Write,
    ) -> Result<(), FileFailure> {
        if offset != self.received {
            return Err(failure(
                FileErrorCode::Size,
                format!("chunk at byte {offset}, expected byte {}", self.received),
            ));
        }
        let end = self.received + data.len() as u64;
        if end > self.declared {
            return Err(failure(
                FileErrorCode::Size,
                format!("more bytes than the {} declared", self.declared),
            ));
        }
        sink.write_all(data).map_err(|e| storage_failure(&e))?;
        self.md5.update(data);
        self.received = end;
        Ok(())
    }

    /// All bytes are in: checks the size and the sender's MD5.
    pub fn finish(&self, md5: [u8; 16], sink: &mut impl Write) -> Result<[u8; 16], FileFailure> {
        if self.received != self.declared {
            return Err(failure(
                FileErrorCode::Size,
                format!(
                    "the upload ended after {} of the {} bytes declared",
                    self.received, self.declared
                ),
            ));
        }
        sink.flush().map_err(|e| storage_failure(&e))?;
        let got: [u8; 16] = self.md5.clone().finalize().into();
        if got != md5 {
            return Err(failure(
                FileErrorCode::Md5Mismatch,
                "the file arrived damaged (MD5 mismatch); nothing was kept — send it again",
            ));
        }
        Ok(got)
    }
}

/// When emptied rooms' files are deleted: a room that has been empty for the
/// retention time is purged, unless someone came back meanwhile (the driver
/// checks the directory when a room falls due).
#[derive(Debug)]
pub struct Retention {
    retention: Duration,
    due: HashMap<RoomKey, Instant>,
}

impl Retention {
    /// No room is due yet; an emptied room's files go `retention` after it
    /// empties (`sapora host --file-retention-secs`, 60 s by default).
    pub fn new(retention: Duration) -> Retention {
        Retention { retention, due: HashMap::new() }
    }

    /// `room` became empty at `now`: it falls due one retention time later
    /// (a later emptying restarts the wait).
    pub fn emptied(&mut self, room: RoomKey, now: Instant) {
        self.due.insert(room, now + self.retention);
    }

    /// When the next room falls due; `None` when none waits.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// The rooms due at `now`, each returned once.
    pub fn expired(&mut self, now: Instant) -> Vec<RoomKey> {
        let mut ripe: Vec<RoomKey> =
            self.due.iter().filter(|(_, t)| **t <= now).map(|(r, _)| r.clone()).collect();
        ripe.sort();
        for r in &ripe {
            self.due.remove(r);
        }
        ripe
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::CHUNK_SIZE;

    /// A disk that fills up after `room` bytes, as a real one reports it.
    struct FullAfter {
        room: usize,
        written: Vec<u8>,
    }

    impl Write for FullAfter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.written.len() + buf.len() > self.room {
                return Err(std::io::Error::from_raw_os_error(28));
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn md5_of(b: &[u8]) -> [u8; 16] {
        Md5::digest(b).into()
    }

    #[test]
    fn accepts_in_order_chunks_and_checks_the_md5() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7) as u8).collect();
        let mut core = UploadCore::new(data.len() as u64, 1 << 20).unwrap();
        let mut sink = Vec::new();
        for (i, c) in data.chunks(CHUNK_SIZE).enumerate() {
            core.accept((i * CHUNK_SIZE) as u64, c, &mut sink).unwrap();
        }
        assert_eq!(core.finish(md5_of(&data), &mut sink), Ok(md5_of(&data)));
        assert_eq!(sink, data);
    }

    #[test]
    fn a_corrupted_chunk_fails_the_md5() {
        let data = vec![5u8; 70_000];
        let mut core = UploadCore::new(70_000, 1 << 20).unwrap();
        let mut bad = data.clone();
        bad[40_000] ^= 1;
        for (i, c) in bad.chunks(CHUNK_SIZE).enumerate() {
            core.accept((i * CHUNK_SIZE) as u64, c, &mut std::io::sink()).unwrap();
        }
        let err = core.finish(md5_of(&data), &mut std::io::sink()).unwrap_err();
        assert_eq!(err.code, FileErrorCode::Md5Mismatch);
    }

    #[test]
    fn sizes_and_offsets_are_enforced() {
        assert_eq!(UploadCore::new(11, 10).err().map(|f| f.code), Some(FileErrorCode::TooLarge));
        let mut core = UploadCore::new(10, 10).unwrap();
        let sink = &mut std::io::sink();
        // A gap, a replay and an overrun are all refused.
        assert_eq!(core.accept(1, b"x", sink).unwrap_err().code, FileErrorCode::Size);
        core.accept(0, b"abcd", sink).unwrap();
        assert_eq!(core.accept(0, b"abcd", sink).unwrap_err().code, FileErrorCode::Size);
        assert_eq!(core.accept(4, b"0123456", sink).unwrap_err().code, FileErrorCode::Size);
        assert_eq!(core.offset(), 4);
        // Ending early is a truncated upload, whatever the MD5 says.
        let err = core.finish(md5_of(b"abcd"), sink).unwrap_err();
        assert_eq!(err.code, FileErrorCode::Size);
        // The empty file is fine.
        let empty = UploadCore::new(0, 10).unwrap();
        assert!(empty.finish(md5_of(b""), sink).is_ok());
    }

    #[test]
    fn a_full_disk_is_a_clear_error() {
        let mut core = UploadCore::new(100_000, 1 << 20).unwrap();
        let mut disk = FullAfter { room: 50_000, written: Vec::new() };
        core.accept(0, &[1; CHUNK_SIZE], &mut disk).unwrap();
        let err = core.accept(CHUNK_SIZE as u64, &[1; CHUNK_SIZE], &mut disk).unwrap_err();
        assert_eq!(err.code, FileErrorCode::DiskFull);
        assert!(err.reason.contains("disk is full"), "{}", err.reason);
        // The failed chunk was not counted: the verified offset stays put.
        assert_eq!(core.offset(), CHUNK_SIZE as u64);
        let other = storage_failure(&std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        assert_eq!(other.code, FileErrorCode::Storage);
    }

    #[test]
    fn emptied_rooms_fall_due_after_the_retention_time_on_a_virtual_clock() {
        let t0 = Instant::now();
        let mut r = Retention::new(Duration::from_secs(60));
        assert_eq!(r.poll_timeout(), None);
        r.emptied(RoomKey::new("a"), t0);
        r.emptied(RoomKey::new("b"), t0 + Duration::from_secs(30));
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(60)));
        assert!(r.expired(t0 + Duration::from_secs(59)).is_empty());
        assert_eq!(r.expired(t0 + Duration::from_secs(60)), [RoomKey::new("a")]);
        assert!(r.expired(t0 + Duration::from_secs(61)).is_empty(), "each room once");
        // Emptied again before it fell due: the wait starts over.
        r.emptied(RoomKey::new("b"), t0 + Duration::from_secs(80));
        assert!(r.expired(t0 + Duration::from_secs(100)).is_empty());
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(140)));
        assert_eq!(r.expired(t0 + Duration::from_secs(3600)), [RoomKey::new("b")]);
        assert_eq!(r.poll_timeout(), None);
        // A zero retention purges at once.
        let mut now = Retention::new(Duration::ZERO);
        now.emptied(RoomKey::new("c"), t0);
        assert_eq!(now.expired(t0), [RoomKey::new("c")]);
    }
}
