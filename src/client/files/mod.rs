//! Sharing files from the participant's side: upload, list, download, with
//! progress reports and resumption after a dropped connection. Used by the
//! CLI, the bots and the desktop app alike; nothing here prints.
//!
//! Each transfer is one stream ([`StreamOpener`]). No thread per transfer:
//! reading, hashing and framing (upload) or writing and hashing (download)
//! run in batches on the blocking pool (`smol::unblock`), fed by a bounded
//! channel, so disk I/O overlaps the stream. A download lands in
//! `<name>.part` and is renamed only once its MD5 matches the host's.
//!
//! This file is the API ([`FileClient`]) and the retry logic; `transfer.rs`
//! runs one attempt on one stream.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use smol::Timer;
use smol::channel::Sender;

use super::session::Client;
use super::streams::StreamOpener;
use crate::proto::{
    FileErrorCode, FileFailure, FileHostMsg, FileInfo, SessionId, StreamRole, UploadDone,
    UploadRequest, Welcome, md5_hex, sanitize_file_name,
};

mod transfer;

use transfer::{Conn, download_once, upload_once};

/// A silent host is given up on after this long (then the transfer retries).
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Chunks in flight between the stream and the disk task.
const PIPELINE: usize = 32;
/// Chunks an upload reads from disk per blocking call (256 KiB).
const READ_BATCH: usize = 8;
/// Progress is reported about this often (in bytes), and at the end.
const PROGRESS_STEP: u64 = 1024 * 1024;

/// What a transfer reports while it runs (sent with `try_send`: a slow
/// reader misses updates, it never slows the transfer).
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Connected; `from` > 0 when resuming.
    Started {
        total: u64,
        from: u64,
    },
    Bytes {
        done: u64,
        total: u64,
    },
    /// The connection dropped; trying again from the last verified byte.
    Retrying {
        attempt: u32,
        reason: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("the host refused: {}", .0.reason)]
    Refused(FileFailure),
    #[error("{what} {}: {source}", path.display())]
    Local { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the file transfer failed after {attempts} attempt(s): {reason}")]
    Link { attempts: u32, reason: String },
    #[error("the download arrived damaged (MD5 mismatch); the partial file was deleted")]
    Md5Mismatch,
    #[error("the host broke the file protocol: {0}")]
    Protocol(String),
}

impl FileError {
    /// The host's reason code, if the host refused.
    pub fn code(&self) -> Option<FileErrorCode> {
        match self {
            FileError::Refused(f) => Some(f.code),
            _ => None,
        }
    }
}

/// A failure of one connection: retried unless it is the host's final word.
enum Attempt {
    Final(FileError),
    Retry(String),
}

impl From<std::io::Error> for Attempt {
    fn from(e: std::io::Error) -> Attempt {
        Attempt::Retry(e.to_string())
    }
}

/// A finished download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub info: FileInfo,
    pub path: PathBuf,
    pub seconds: f64,
    /// Reconnections it took.
    pub retries: u32,
}

/// Where a download goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// This exact path (replaced if it exists).
    File(PathBuf),
    /// This directory, under the file's sanitised name (made unique).
    Dir(PathBuf),
}

#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// Share with this member only.
    pub to: Option<String>,
    /// The name others see (default: the file's own name).
    pub name: Option<String>,
}

/// Talks to a host's file service on behalf of a session. Cheap to clone.
#[derive(Clone)]
pub struct FileClient {
    opener: StreamOpener,
    welcome: Arc<Mutex<Welcome>>,
    /// Reconnections allowed per transfer.
    pub retries: u32,
}

impl FileClient {
    /// Streams come from `opener`; session and token from the latest
    /// Welcome in `welcome` (so this follows rejoins).
    pub fn new(opener: StreamOpener, welcome: Arc<Mutex<Welcome>>) -> FileClient {
        FileClient { opener, welcome, retries: 5 }
    }

    /// For `client`'s session: streams on its current link, session and
    /// token from its latest Welcome (both follow a rejoin).
    pub fn for_client(client: &Client) -> FileClient {
        FileClient::new(StreamOpener::for_client(client), client.current_slot())
    }

    /// Passes every stream through `wrap` (tests: a relay that cuts).
    pub fn wrapped(mut self, wrap: super::streams::StreamWrapper) -> FileClient {
        self.opener = self.opener.wrapped(wrap);
        self
    }

    fn auth(&self) -> (SessionId, u64) {
        let w = self.welcome.lock().unwrap_or_else(|e| e.into_inner());
        (w.session, w.token)
    }

    async fn open(&self, role: StreamRole) -> Result<Conn, Attempt> {
        let (session, token) = self.auth();
        Conn::open(&self.opener, session, token, role).await
    }

    /// The files in my room that I may see, oldest first.
    pub async fn list(&self) -> Result<Vec<FileInfo>, FileError> {
        let once = async {
            let mut conn = self.open(StreamRole::FileList).await?;
            match conn.recv().await? {
                FileHostMsg::List(l) => Ok(l.files),
                FileHostMsg::Failure(f) => Err(Attempt::Final(FileError::Refused(f))),
                other => Err(unexpected(&other)),
            }
        };
        once.await.map_err(|a| match a {
            Attempt::Final(e) => e,
            Attempt::Retry(reason) => FileError::Link { attempts: 1, reason },
        })
    }

    /// Uploads `path`; returns the file as the host stored it, once the host
    /// has verified it and told the recipients.
    pub async fn upload(
        &self,
        path: &Path,
        opts: UploadOptions,
        progress: Option<Sender<Progress>>,
    ) -> Result<FileInfo, FileError> {
        self.upload_done(path, opts, progress).await.map(|d| d.file)
    }

    /// [`FileClient::upload`], with the host's whole answer: the stored
    /// file and, if any, a notice for the sender (e.g. that the recipient
    /// has left the meeting).
    pub async fn upload_done(
        &self,
        path: &Path,
        opts: UploadOptions,
        progress: Option<Sender<Progress>>,
    ) -> Result<UploadDone, FileError> {
        let local = |source| FileError::Local { what: "cannot read", path: path.into(), source };
        let p = path.to_path_buf();
        let size = smol::unblock(move || File::open(&p)?.metadata().map(|m| m.len()))
            .await
            .map_err(local)?;
        let name = opts.name.clone().unwrap_or_else(|| {
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        });
        let mut state = Hashing { md5: Md5::new(), hashed: 0 };
        let mut upload_id = None;
        let mut attempt = 0u32;
        loop {
            let req =
                UploadRequest { name: name.clone(), size, to: opts.to.clone(), resume: upload_id };
            let result =
                upload_once(self, path, req, &mut state, &mut upload_id, progress.as_ref()).await;
            match result {
                Ok(info) => return Ok(info),
                Err(Attempt::Final(FileError::Refused(f)))
                    if f.code == FileErrorCode::NoSuchUpload && upload_id.is_some() =>
                {
                    // The host forgot the partial upload (e.g. it restarted).
                    upload_id = None;
                    state = Hashing { md5: Md5::new(), hashed: 0 };
                    attempt += 1;
                    if attempt > self.retries {
                        return Err(FileError::Refused(f));
                    }
                }
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(reason)) => {
                    self.retry_after(&mut attempt, reason, progress.as_ref()).await?;
                }
            }
        }
    }

    /// Downloads file `id`; resumes a `.part` file left by an earlier try.
    pub async fn download(
        &self,
        id: u64,
        dest: Dest,
        progress: Option<Sender<Progress>>,
    ) -> Result<Downloaded, FileError> {
        let started = Instant::now();
        // Into a folder, the download lands in a `.part` named after the
        // file's name and MD5, so a later run (after Ctrl+C) finds and
        // resumes it, and a same-named other file never clobbers it. The
        // final name is chosen when the bytes are verified.
        let (path, part) = match dest {
            Dest::File(p) => {
                let part = part_path(&p);
                (Some(p), part)
            }
            Dest::Dir(dir) => {
                let files = self.list().await?;
                let Some(f) = files.iter().find(|f| f.id == id) else {
                    return Err(FileError::Refused(FileFailure {
                        code: FileErrorCode::NotFound,
                        reason: format!("no file {id} for you here"),
                    }));
                };
                let part = resume_part_path(&dir, &sanitize_file_name(&f.name), &f.md5);
                // A `.part` longer than the file cannot be this file's.
                let (p, size) = (part.clone(), f.size);
                smol::unblock(move || {
                    if fs::metadata(&p).is_ok_and(|m| m.len() > size) {
                        let _ = fs::remove_file(&p);
                    }
                })
                .await;
                (None, part)
            }
        };
        let mut fresh_restart_done = false;
        let mut attempt = 0u32;
        loop {
            let p = part.clone();
            let resumed_part = smol::unblock(move || p.exists()).await;
            let result = download_once(self, id, &part, progress.as_ref()).await;
            match result {
                Ok(info) => {
                    let (chosen, from) = (path.clone(), part.clone());
                    let name = sanitize_file_name(&info.name);
                    let (path, renamed) = smol::unblock(move || {
                        let path = match chosen {
                            Some(p) => p,
                            None => free_path(from.parent().unwrap_or(Path::new(".")), &name),
                        };
                        let renamed = fs::rename(&from, &path);
                        (path, renamed)
                    })
                    .await;
                    renamed.map_err(|source| FileError::Local {
                        what: "cannot rename the finished download to",
                        path: path.clone(),
                        source,
                    })?;
                    let seconds = started.elapsed().as_secs_f64();
                    return Ok(Downloaded { info, path, seconds, retries: attempt });
                }
                Err(Attempt::Final(FileError::Md5Mismatch))
                    if resumed_part && !fresh_restart_done =>
                {
                    // A stale .part from another file: start over once.
                    fresh_restart_done = true;
                }
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(reason)) => {
                    self.retry_after(&mut attempt, reason, progress.as_ref()).await?;
                }
            }
        }
    }
}

impl FileClient {
    /// After an attempt that failed on the link: counts it and gives up once
    /// `retries` are spent, else reports the retry and backs off.
    async fn retry_after(
        &self,
        attempt: &mut u32,
        reason: String,
        progress: Option<&Sender<Progress>>,
    ) -> Result<(), FileError> {
        *attempt += 1;
        if *attempt > self.retries {
            return Err(FileError::Link { attempts: *attempt, reason });
        }
        report(progress, Progress::Retrying { attempt: *attempt, reason });
        Timer::after(backoff(*attempt)).await;
        Ok(())
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * u64::from(attempt.min(10)))
}

fn report(progress: Option<&Sender<Progress>>, p: Progress) {
    if let Some(tx) = progress {
        let _ = tx.try_send(p);
    }
}

fn unexpected(msg: &FileHostMsg) -> Attempt {
    Attempt::Final(FileError::Protocol(format!("unexpected {:?}", msg.msg_type())))
}

/// `file.ext.part` next to `file.ext`.
pub fn part_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Where a download of the file `name` with this MD5 into `dir` keeps its
/// bytes until they are verified: `dir/name.<first 12 hex digits of the
/// MD5>.part`. The same file fetched again (another run, even another host
/// or file id) maps to the same `.part` and resumes it; another file of the
/// same name does not.
pub fn resume_part_path(dir: &Path, name: &str, md5: &[u8; 16]) -> PathBuf {
    dir.join(format!("{name}.{}.part", &md5_hex(md5)[..12]))
}

/// `dir/name`, or `dir/name (2).ext` … if taken.
pub fn free_path(dir: &Path, name: &str) -> PathBuf {
    let first = dir.join(name);
    if !first.exists() {
        return first;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    (2..).map(|n| dir.join(format!("{stem} ({n}){ext}"))).find(|p| !p.exists()).unwrap_or(first)
}

/// The MD5 of the bytes `[0, hashed)` of the file being sent.
struct Hashing {
    md5: Md5,
    hashed: u64,
}

#[cfg(test)]
mod tests {
    use super::transfer::hash_new;
    use super::*;

    #[test]
    fn part_and_free_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(part_path(Path::new("/x/a.txt")), Path::new("/x/a.txt.part"));
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a.txt"));
        fs::write(dir.path().join("a.txt"), b"x").unwrap();
        assert_eq!(free_path(dir.path(), "a.txt"), dir.path().join("a (2).txt"));
        fs::write(dir.path().join("noext"), b"x").unwrap();
        assert_eq!(free_path(dir.path(), "noext"), dir.path().join("noext (2)"));
        // A .part of its own does not make a name taken: it is resumed.
        fs::write(dir.path().join("b.txt.0123456789ab.part"), b"x").unwrap();
        assert_eq!(free_path(dir.path(), "b.txt"), dir.path().join("b.txt"));
        let md5 = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            resume_part_path(dir.path(), "b.txt", &md5),
            dir.path().join("b.txt.0123456789ab.part")
        );
    }

    #[test]
    fn resuming_hashes_each_byte_once() {
        let data: Vec<u8> = (0..100u8).collect();
        let mut st = Hashing { md5: Md5::new(), hashed: 0 };
        hash_new(&mut st, 0, &data[..60]);
        // A resume from byte 40 re-reads 40..60: only 60.. is new.
        hash_new(&mut st, 40, &data[40..100]);
        assert_eq!(st.hashed, 100);
        let want: [u8; 16] = Md5::digest(&data).into();
        assert_eq!(<[u8; 16]>::from(st.md5.finalize()), want);
    }
}
