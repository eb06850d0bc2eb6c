//! Sharing files from the participant's side: upload, list, download, with
//! progress reports and resumption after a dropped connection. Used by the
//! CLI, the bots and the desktop app alike; nothing here prints.
//!
//! Each transfer is one stream ([`StreamOpener`]). No thread per transfer:
//! reading, hashing and framing (upload) or writing and hashing (download)
//! run in batches on the blocking pool (`smol::unblock`), fed by a bounded
//! channel, so disk I/O overlaps the stream. A download lands in
//! `<name>.part` and is renamed only once its MD5 matches the host's.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use md5::{Digest, Md5};
use smol::Timer;
use smol::channel::Sender;
use smol::future::FutureExt;

use super::session::Client;
use super::streams::{StreamOpener, open_stream, refusal};
use crate::proto::{
    CHUNK_HEADER, CHUNK_SIZE, DownloadRequest, FileClientMsg, FileErrorCode, FileFailure,
    FileHostMsg, FileInfo, HEADER_LEN, MsgType, StreamRole, StreamService, UploadDone, UploadEnd,
    UploadRequest, Welcome, host_limit, md5_hex, sanitize_file_name,
};
use crate::transport::framed::{FrameError, FrameReader, FrameWriter, encode_header};
use crate::transport::link::{LinkRecv, LinkSend};

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

    /// For `client`'s session with the host at `control` (its control
    /// address; the file port comes from the latest Welcome, so this keeps
    /// working after a host restart).
    pub fn for_client(client: &Client, control: SocketAddr) -> FileClient {
        let opener = StreamOpener::for_client(client, control.ip(), StreamService::Files);
        FileClient::new(opener, client.current_slot())
    }

    /// Opens streams to this address instead (a relay in tests).
    pub fn via(mut self, addr: SocketAddr) -> FileClient {
        self.opener = StreamOpener::tcp(addr);
        self
    }

    fn auth(&self) -> (u32, u64) {
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

/// One file stream.
struct Conn {
    w: FrameWriter<LinkSend>,
    r: FrameReader<LinkRecv>,
    /// Wakes [`watched`] now and then to check for a silent host (one timer
    /// per stream, not one per frame: each new timer wakes the reactor).
    ticker: Timer,
}

/// Runs `f`, giving up with `TimedOut` once it has run for [`IO_TIMEOUT`]
/// (checked at each tick of `ticker`).
async fn watched<T, E: From<std::io::Error>>(
    ticker: &mut Timer,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use smol::stream::StreamExt;
    let started = Instant::now();
    f.or(async {
        loop {
            ticker.next().await;
            if started.elapsed() >= IO_TIMEOUT {
                let kind = std::io::ErrorKind::TimedOut;
                return Err(std::io::Error::new(kind, "the host stopped answering").into());
            }
        }
    })
    .await
}

async fn timed<T>(f: impl std::future::Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    f.or(async {
        Timer::after(IO_TIMEOUT).await;
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the host stopped answering"))
    })
    .await
}

impl Conn {
    async fn open(
        opener: &StreamOpener,
        session: u32,
        token: u64,
        role: StreamRole,
    ) -> Result<Conn, Attempt> {
        let (w, r) = timed(open_stream(opener, session, token, role))
            .await
            .map_err(|e| Attempt::Retry(format!("cannot reach the host's file service at {e}")))?;
        Ok(Conn { w, r, ticker: Timer::interval(IO_TIMEOUT / 5) })
    }

    async fn send(&mut self, msg: &FileClientMsg) -> std::io::Result<()> {
        let payload = msg.payload();
        watched(&mut self.ticker, self.w.send(msg.msg_type() as u8, &payload)).await
    }

    async fn write_raw(&mut self, frames: &[u8]) -> std::io::Result<()> {
        watched(&mut self.ticker, self.w.send_encoded(frames)).await
    }

    async fn recv(&mut self) -> Result<FileHostMsg, Attempt> {
        let limit = |kind| {
            if kind == MsgType::StreamRefused as u8 {
                crate::proto::file_limits::SMALL
            } else {
                host_limit(kind)
            }
        };
        let frame = match watched(&mut self.ticker, self.r.next(limit)).await {
            Ok(f) => f,
            Err(FrameError::Decode(d)) if d != crate::proto::DecodeError::UnexpectedEnd => {
                return Err(Attempt::Final(FileError::Protocol(d.to_string())));
            }
            Err(FrameError::Closed) => {
                return Err(Attempt::Retry("the host closed the file stream".into()));
            }
            Err(e) => return Err(Attempt::Retry(e.to_string())),
        };
        let kind = frame.header.kind;
        if let Some(reason) = refusal(kind, &frame.payload) {
            // Too many streams, for one: worth another try.
            return Err(Attempt::Retry(format!("the host refused the stream: {reason}")));
        }
        FileHostMsg::decode(kind, frame.payload)
            .map_err(|e| Attempt::Final(FileError::Protocol(e.to_string())))
    }
}

async fn upload_once(
    fc: &FileClient,
    path: &Path,
    req: UploadRequest,
    state: &mut Hashing,
    upload_id: &mut Option<u64>,
    progress: Option<&Sender<Progress>>,
) -> Result<UploadDone, Attempt> {
    let size = req.size;
    let mut conn = fc.open(StreamRole::FileUpload(req)).await?;
    let offset = match conn.recv().await? {
        FileHostMsg::Ready(r) => {
            *upload_id = Some(r.upload);
            r.offset
        }
        FileHostMsg::Failure(f) => return Err(Attempt::Final(FileError::Refused(f))),
        other => return Err(unexpected(&other)),
    };
    if offset > size {
        return Err(Attempt::Final(FileError::Protocol(format!(
            "the host asked to resume at byte {offset} of {size}"
        ))));
    }
    report(progress, Progress::Started { total: size, from: offset });
    // The read-ahead task reads, hashes and frames chunks; this task writes them.
    let (tx, rx) = smol::channel::bounded::<std::io::Result<(Vec<u8>, u64)>>(4);
    let taken = std::mem::replace(state, Hashing { md5: Md5::new(), hashed: 0 });
    let reader = smol::spawn(read_ahead(path.to_path_buf(), size, offset, taken, tx));
    let mut sent = offset;
    let mut next_report = offset + PROGRESS_STEP;
    let mut failure: Option<Attempt> = None;
    while sent < size {
        match rx.recv().await {
            Ok(Ok((frames, bytes))) => {
                if let Err(e) = conn.write_raw(&frames).await {
                    failure = Some(e.into());
                    break;
                }
                sent += bytes;
                if sent >= next_report || sent == size {
                    report(progress, Progress::Bytes { done: sent, total: size });
                    next_report = sent + PROGRESS_STEP;
                }
            }
            Ok(Err(source)) => {
                failure = Some(Attempt::Final(FileError::Local {
                    what: "cannot read",
                    path: path.into(),
                    source,
                }));
                break;
            }
            Err(_) => {
                failure =
                    Some(Attempt::Final(FileError::Protocol("the file reader stopped".into())));
                break;
            }
        }
    }
    drop(rx);
    // The task hands the hash state back whatever happened.
    *state = reader.await;
    if let Some(f) = failure {
        return Err(f);
    }
    if size == 0 {
        report(progress, Progress::Bytes { done: 0, total: 0 });
    }
    if state.hashed != size {
        return Err(Attempt::Final(FileError::Protocol(
            "the file changed while being sent".into(),
        )));
    }
    let md5: [u8; 16] = state.md5.clone().finalize().into();
    conn.send(&FileClientMsg::End(UploadEnd { md5 })).await?;
    match conn.recv().await? {
        FileHostMsg::Done(d) => Ok(d),
        FileHostMsg::Failure(f) => Err(Attempt::Final(FileError::Refused(f))),
        other => Err(unexpected(&other)),
    }
}

/// An upload's read-ahead task: hashes what was never hashed, and reads and
/// frames every chunk from `offset`, [`READ_BATCH`] chunks per blocking
/// call. Returns the hash state when done or when the receiver is gone.
async fn read_ahead(
    path: PathBuf,
    size: u64,
    offset: u64,
    st: Hashing,
    tx: Sender<std::io::Result<(Vec<u8>, u64)>>,
) -> Hashing {
    let opened = smol::unblock(move || {
        let mut st = st;
        let result = open_and_catch_up(&path, offset, &mut st);
        (st, result)
    })
    .await;
    let (mut st, mut file) = match opened {
        (st, Ok(f)) => (st, f),
        (st, Err(e)) => {
            let _ = tx.send(Err(e)).await;
            return st;
        }
    };
    let mut pos = offset;
    while pos < size {
        let (f, s, batch) = smol::unblock(move || {
            let batch = read_batch(&mut file, pos, size, &mut st);
            (file, st, batch)
        })
        .await;
        (file, st) = (f, s);
        let failed = batch.is_err();
        if let Ok((_, n)) = &batch {
            pos += n;
        }
        if tx.send(batch).await.is_err() || failed {
            return st;
        }
    }
    st
}

/// Opens the file at `offset`, hashing the bytes before it that the host
/// already has but that were never hashed here.
fn open_and_catch_up(path: &Path, offset: u64, st: &mut Hashing) -> std::io::Result<File> {
    let mut file = File::open(path)?;
    let start = offset.min(st.hashed);
    file.seek(SeekFrom::Start(start))?;
    let mut pos = start;
    let mut data = vec![0u8; CHUNK_SIZE];
    while pos < offset {
        let n = (offset - pos).min(CHUNK_SIZE as u64) as usize;
        file.read_exact(&mut data[..n])?;
        hash_new(st, pos, &data[..n]);
        pos += n as u64;
    }
    Ok(file)
}

/// Up to [`READ_BATCH`] chunk frames from `pos` (where `file` is), hashed;
/// and how many file bytes they hold.
fn read_batch(
    file: &mut File,
    mut pos: u64,
    size: u64,
    st: &mut Hashing,
) -> std::io::Result<(Vec<u8>, u64)> {
    let first = pos;
    let mut out = Vec::with_capacity(READ_BATCH * (HEADER_LEN + CHUNK_HEADER + CHUNK_SIZE));
    for _ in 0..READ_BATCH {
        if pos >= size {
            break;
        }
        let n = (size - pos).min(CHUNK_SIZE as u64) as usize;
        encode_header(MsgType::FileChunk as u8, 0, CHUNK_HEADER + n, &mut out);
        out.extend_from_slice(&pos.to_be_bytes());
        let at = out.len();
        out.resize(at + n, 0);
        file.read_exact(&mut out[at..])?;
        hash_new(st, pos, &out[at..]);
        pos += n as u64;
    }
    Ok((out, pos - first))
}

/// Hashes the part of `data` (which starts at byte `pos`) not yet hashed.
fn hash_new(st: &mut Hashing, pos: u64, data: &[u8]) {
    let end = pos + data.len() as u64;
    if end > st.hashed && pos <= st.hashed {
        let skip = (st.hashed - pos) as usize;
        st.md5.update(&data[skip..]);
        st.hashed = end;
    }
}

/// What the disk task of a download reports when it stops.
struct Written {
    md5: Md5,
    written: u64,
    error: Option<std::io::Error>,
}

async fn download_once(
    fc: &FileClient,
    id: u64,
    part: &Path,
    progress: Option<&Sender<Progress>>,
) -> Result<FileInfo, Attempt> {
    // Rehash what an earlier try left (the verified prefix), off the executor.
    let part_owned = part.to_path_buf();
    let prefix = smol::unblock(move || hash_prefix(&part_owned)).await;
    let (md5, offset) = prefix.map_err(|source| {
        Attempt::Final(FileError::Local { what: "cannot write", path: part.into(), source })
    })?;
    let mut conn = fc.open(StreamRole::FileDownload(DownloadRequest { id, offset })).await?;
    let info = match conn.recv().await? {
        FileHostMsg::Metadata(info) => info,
        FileHostMsg::Failure(f) if f.code == FileErrorCode::Size && offset > 0 => {
            // Our .part is longer than the file: it is not this file's.
            let p = part.to_path_buf();
            smol::unblock(move || fs::remove_file(p)).await.ok();
            return Err(Attempt::Retry(f.reason));
        }
        FileHostMsg::Failure(f) => return Err(Attempt::Final(FileError::Refused(f))),
        other => return Err(unexpected(&other)),
    };
    report(progress, Progress::Started { total: info.size, from: offset });
    let (tx, rx) = smol::channel::bounded::<Bytes>(PIPELINE);
    let writer = smol::spawn(write_and_hash(part.to_path_buf(), offset, md5, rx));
    let mut at = offset;
    let mut next_report = offset + PROGRESS_STEP;
    let mut failure = None;
    while at < info.size {
        match conn.recv().await {
            Ok(FileHostMsg::Chunk { offset: o, data }) if o == at && !data.is_empty() => {
                at += data.len() as u64;
                if at > info.size || tx.send(data).await.is_err() {
                    failure = Some(Attempt::Final(FileError::Protocol(
                        "more bytes than the file has".into(),
                    )));
                    break;
                }
                if at >= next_report || at == info.size {
                    report(progress, Progress::Bytes { done: at, total: info.size });
                    next_report = at + PROGRESS_STEP;
                }
            }
            Ok(FileHostMsg::Failure(f)) => {
                failure = Some(Attempt::Final(FileError::Refused(f)));
                break;
            }
            Ok(other) => {
                failure = Some(unexpected(&other));
                break;
            }
            Err(a) => {
                failure = Some(a);
                break;
            }
        }
    }
    drop(tx);
    drop(conn);
    let w = writer.await;
    if let Some(source) = w.error {
        let p = part.to_path_buf();
        smol::unblock(move || fs::remove_file(p)).await.ok();
        return Err(Attempt::Final(FileError::Local {
            what: "cannot write",
            path: part.into(),
            source,
        }));
    }
    if let Some(f) = failure {
        return Err(f);
    }
    if info.size == 0 {
        report(progress, Progress::Bytes { done: 0, total: 0 });
    }
    let got: [u8; 16] = w.md5.finalize().into();
    if w.written != info.size || got != info.md5 {
        let p = part.to_path_buf();
        smol::unblock(move || fs::remove_file(p)).await.ok();
        return Err(Attempt::Final(FileError::Md5Mismatch));
    }
    Ok(info)
}

/// MD5 state and length of an existing `.part` file (a fresh one if none).
fn hash_prefix(part: &Path) -> std::io::Result<(Md5, u64)> {
    let mut md5 = Md5::new();
    let mut file = match File::open(part) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            File::create(part)?;
            return Ok((md5, 0));
        }
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((md5, len));
        }
        md5.update(&buf[..n]);
        len += n as u64;
    }
}

/// A download's disk task: appends and hashes whatever chunks are queued,
/// in one blocking call per batch.
async fn write_and_hash(
    path: PathBuf,
    offset: u64,
    md5: Md5,
    rx: smol::channel::Receiver<Bytes>,
) -> Written {
    let opened = smol::unblock(move || {
        let mut f = OpenOptions::new().write(true).open(&path)?;
        f.set_len(offset)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok::<_, std::io::Error>(f)
    })
    .await;
    let mut w = Written { md5, written: offset, error: None };
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => {
            w.error = Some(e);
            return w;
        }
    };
    while let Ok(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < PIPELINE {
            match rx.try_recv() {
                Ok(d) => batch.push(d),
                Err(_) => break,
            }
        }
        let (f, back) = smol::unblock(move || {
            for data in batch {
                if let Err(e) = file.write_all(&data) {
                    w.error = Some(e);
                    break;
                }
                w.md5.update(&data);
                w.written += data.len() as u64;
            }
            (file, w)
        })
        .await;
        (file, w) = (f, back);
        if w.error.is_some() {
            return w;
        }
    }
    let flushed = smol::unblock(move || file.flush()).await;
    w.error = flushed.err();
    w
}

#[cfg(test)]
mod tests {
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
