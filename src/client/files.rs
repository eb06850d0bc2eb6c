//! Sharing files from the participant's side: upload, list, download, with
//! progress reports and resumption after a dropped connection. Used by the
//! CLI, the bots and the desktop app alike; nothing here prints.
//!
//! Each transfer runs one named thread that owns the local file and the MD5
//! state, so hashing and disk I/O overlap the socket work done on the async
//! side. A download lands in `<name>.part` and is renamed only once its MD5
//! matches the host's.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use smol::channel::Sender;
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use smol::{Async, Timer};

use super::session::Client;
use crate::net::ArcStream;
use crate::proto::{
    CHUNK_HEADER, CHUNK_SIZE, DownloadRequest, FileClientMsg, FileErrorCode, FileFailure,
    FileHostMsg, FileInfo, HEADER_LEN, Header, ListRequest, MsgType, PROTOCOL_VERSION, UploadDone,
    UploadEnd, UploadRequest, Welcome, encode_chunk, host_limit, md5_hex, sanitize_file_name,
};

/// A silent host is given up on after this long (then the transfer retries).
const IO_TIMEOUT: Duration = Duration::from_secs(15);
/// Chunks in flight between the socket and the file thread.
const PIPELINE: usize = 32;
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
    control: SocketAddr,
    welcome: Arc<Mutex<Welcome>>,
    file_addr: Option<SocketAddr>,
    /// Reconnections allowed per transfer.
    pub retries: u32,
}

impl FileClient {
    /// `control` is the host's control address (the file port comes from the
    /// latest Welcome, so this keeps working after a host restart).
    pub fn new(control: SocketAddr, welcome: Arc<Mutex<Welcome>>) -> FileClient {
        FileClient { control, welcome, file_addr: None, retries: 5 }
    }

    pub fn for_client(client: &Client, control: SocketAddr) -> FileClient {
        FileClient::new(control, client.current_slot())
    }

    /// Uses this address for the file service instead of the Welcome's port.
    pub fn via(mut self, addr: SocketAddr) -> FileClient {
        self.file_addr = Some(addr);
        self
    }

    fn auth(&self) -> (u32, u64, SocketAddr) {
        let w = self.welcome.lock().unwrap_or_else(|e| e.into_inner());
        let addr = self.file_addr.unwrap_or(SocketAddr::new(self.control.ip(), w.ports.file));
        (w.session, w.token, addr)
    }

    /// The files in my room that I may see, oldest first.
    pub async fn list(&self) -> Result<Vec<FileInfo>, FileError> {
        let (session, token, addr) = self.auth();
        let once = async {
            let mut conn = Conn::open(addr).await?;
            conn.send(&FileClientMsg::List(ListRequest { session, token })).await?;
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
        let size = fs::metadata(path).map_err(local)?.len();
        File::open(path).map_err(local)?;
        let name = opts.name.clone().unwrap_or_else(|| {
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        });
        let mut state = Hashing { md5: Md5::new(), hashed: 0 };
        let mut upload_id = None;
        let mut attempt = 0u32;
        loop {
            let (session, token, addr) = self.auth();
            let req = UploadRequest {
                session,
                token,
                name: name.clone(),
                size,
                to: opts.to.clone(),
                resume: upload_id,
            };
            let result =
                upload_once(addr, path, req, &mut state, &mut upload_id, progress.as_ref()).await;
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
                if fs::metadata(&part).is_ok_and(|m| m.len() > f.size) {
                    let _ = fs::remove_file(&part);
                }
                (None, part)
            }
        };
        let mut fresh_restart_done = false;
        let mut attempt = 0u32;
        loop {
            let resumed_part = part.exists();
            let result = download_once(self, id, &part, progress.as_ref()).await;
            match result {
                Ok(info) => {
                    let path = match &path {
                        Some(p) => p.clone(),
                        None => free_path(
                            part.parent().unwrap_or(Path::new(".")),
                            &sanitize_file_name(&info.name),
                        ),
                    };
                    fs::rename(&part, &path).map_err(|source| FileError::Local {
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

/// One file-service connection.
struct Conn {
    stream: Arc<Async<TcpStream>>,
    reader: BufReader<ArcStream>,
    buf: Vec<u8>,
}

async fn timed<T>(f: impl std::future::Future<Output = std::io::Result<T>>) -> std::io::Result<T> {
    f.or(async {
        Timer::after(IO_TIMEOUT).await;
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the host stopped answering"))
    })
    .await
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, Attempt> {
        let stream = timed(Async::<TcpStream>::connect(addr)).await.map_err(|e| {
            Attempt::Retry(format!("cannot reach the host's file service at {addr}: {e}"))
        })?;
        let _ = stream.get_ref().set_nodelay(true);
        let stream = Arc::new(stream);
        let reader = BufReader::with_capacity(256 * 1024, ArcStream(stream.clone()));
        Ok(Conn { stream, reader, buf: Vec::new() })
    }

    async fn send(&mut self, msg: &FileClientMsg) -> std::io::Result<()> {
        let payload = msg.payload();
        self.buf.clear();
        let kind = msg.msg_type() as u8;
        Header { version: PROTOCOL_VERSION, kind, len: payload.len() as u32, seq: 0, flags: 0 }
            .encode(&mut self.buf);
        self.buf.extend_from_slice(&payload);
        let frame = std::mem::take(&mut self.buf);
        let r = self.write_raw(&frame).await;
        self.buf = frame;
        r
    }

    async fn write_raw(&self, frame: &[u8]) -> std::io::Result<()> {
        let mut w = &*self.stream;
        timed(async {
            w.write_all(frame).await?;
            w.flush().await
        })
        .await
    }

    async fn recv(&mut self) -> Result<FileHostMsg, Attempt> {
        let r = &mut self.reader;
        let read = async {
            let mut head = [0u8; HEADER_LEN];
            r.read_exact(&mut head).await?;
            let h = Header::decode(&head).map_err(std::io::Error::other)?;
            if h.version != PROTOCOL_VERSION {
                return Ok(Err(format!("the host speaks protocol version {}", h.version)));
            }
            let len = match h.check_len(host_limit(h.kind)) {
                Ok(l) => l,
                Err(e) => return Ok(Err(e.to_string())),
            };
            if h.kind == MsgType::FileChunk as u8 && len >= CHUNK_HEADER {
                // The offset apart, so the data needs no shifting.
                let mut offset = [0u8; CHUNK_HEADER];
                r.read_exact(&mut offset).await?;
                let mut data = vec![0u8; len - CHUNK_HEADER];
                r.read_exact(&mut data).await?;
                return Ok(Ok(FileHostMsg::Chunk { offset: u64::from_be_bytes(offset), data }));
            }
            let mut payload = vec![0u8; len];
            r.read_exact(&mut payload).await?;
            Ok(FileHostMsg::decode(h.kind, payload).map_err(|e| e.to_string()))
        };
        match timed(read).await {
            Ok(Ok(m)) => Ok(m),
            Ok(Err(why)) => Err(Attempt::Final(FileError::Protocol(why))),
            Err(e) => Err(Attempt::Retry(e.to_string())),
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.stream.get_ref().shutdown(std::net::Shutdown::Both);
    }
}

async fn upload_once(
    addr: SocketAddr,
    path: &Path,
    req: UploadRequest,
    state: &mut Hashing,
    upload_id: &mut Option<u64>,
    progress: Option<&Sender<Progress>>,
) -> Result<UploadDone, Attempt> {
    let size = req.size;
    let mut conn = Conn::open(addr).await?;
    conn.send(&FileClientMsg::Upload(req)).await?;
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
    // The file thread reads, hashes and frames chunks; this task writes them.
    let (tx, rx) = smol::channel::bounded::<std::io::Result<Vec<u8>>>(PIPELINE);
    let (back_tx, back_rx) = smol::channel::bounded::<Hashing>(1);
    let taken = std::mem::replace(state, Hashing { md5: Md5::new(), hashed: 0 });
    let file_path = path.to_path_buf();
    let spawned = std::thread::Builder::new().name("sapora-file-send".into()).spawn(move || {
        let back = read_and_frame(&file_path, size, offset, taken, &tx);
        let _ = back_tx.send_blocking(back);
    });
    if let Err(e) = spawned {
        return Err(Attempt::Final(FileError::Local {
            what: "cannot start reading",
            path: path.into(),
            source: e,
        }));
    }
    let mut sent = offset;
    let mut next_report = offset + PROGRESS_STEP;
    let mut failure: Option<Attempt> = None;
    while sent < size {
        match rx.recv().await {
            Ok(Ok(frame)) => {
                if let Err(e) = conn.write_raw(&frame).await {
                    failure = Some(e.into());
                    break;
                }
                sent += (frame.len() - HEADER_LEN - CHUNK_HEADER) as u64;
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
    // The thread hands the hash state back whatever happened.
    *state = back_rx.recv().await.unwrap_or(Hashing { md5: Md5::new(), hashed: 0 });
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

/// The body of an upload's file thread: hashes what was never hashed, and
/// frames every chunk from `offset`.
fn read_and_frame(
    path: &Path,
    size: u64,
    offset: u64,
    mut st: Hashing,
    tx: &Sender<std::io::Result<Vec<u8>>>,
) -> Hashing {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send_blocking(Err(e));
            return st;
        }
    };
    let start = offset.min(st.hashed);
    if let Err(e) = file.seek(SeekFrom::Start(start)) {
        let _ = tx.send_blocking(Err(e));
        return st;
    }
    let mut pos = start;
    // Bytes before `offset` the host already has, but that we never hashed.
    while pos < offset {
        let n = (offset - pos).min(CHUNK_SIZE as u64) as usize;
        let mut data = vec![0u8; n];
        if let Err(e) = file.read_exact(&mut data) {
            let _ = tx.send_blocking(Err(e));
            return st;
        }
        hash_new(&mut st, pos, &data);
        pos += n as u64;
    }
    while pos < size {
        let n = (size - pos).min(CHUNK_SIZE as u64) as usize;
        let mut frame = Vec::with_capacity(HEADER_LEN + CHUNK_HEADER + n);
        let len = (CHUNK_HEADER + n) as u32;
        Header { version: PROTOCOL_VERSION, kind: MsgType::FileChunk as u8, len, seq: 0, flags: 0 }
            .encode(&mut frame);
        encode_chunk(pos, &[], &mut frame);
        let at = frame.len();
        frame.resize(at + n, 0);
        if let Err(e) = file.read_exact(&mut frame[at..]) {
            let _ = tx.send_blocking(Err(e));
            return st;
        }
        hash_new(&mut st, pos, &frame[at..]);
        pos += n as u64;
        if tx.send_blocking(Ok(frame)).is_err() {
            return st;
        }
    }
    st
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

/// What the file thread of a download reports when it stops.
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
    let (session, token, addr) = fc.auth();
    let mut conn = Conn::open(addr).await?;
    conn.send(&FileClientMsg::Download(DownloadRequest { session, token, id, offset })).await?;
    let info = match conn.recv().await? {
        FileHostMsg::Metadata(info) => info,
        FileHostMsg::Failure(f) if f.code == FileErrorCode::Size && offset > 0 => {
            // Our .part is longer than the file: it is not this file's.
            let _ = fs::remove_file(part);
            return Err(Attempt::Retry(f.reason));
        }
        FileHostMsg::Failure(f) => return Err(Attempt::Final(FileError::Refused(f))),
        other => return Err(unexpected(&other)),
    };
    report(progress, Progress::Started { total: info.size, from: offset });
    let (tx, rx) = smol::channel::bounded::<Vec<u8>>(PIPELINE);
    let (back_tx, back_rx) = smol::channel::bounded::<Written>(1);
    let path = part.to_path_buf();
    let spawned = std::thread::Builder::new().name("sapora-file-recv".into()).spawn(move || {
        let _ = back_tx.send_blocking(write_and_hash(&path, offset, md5, &rx));
    });
    if let Err(source) = spawned {
        return Err(Attempt::Final(FileError::Local {
            what: "cannot write",
            path: part.into(),
            source,
        }));
    }
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
    let Ok(w) = back_rx.recv().await else {
        return Err(Attempt::Final(FileError::Protocol("the file writer stopped".into())));
    };
    if let Some(source) = w.error {
        let _ = fs::remove_file(part);
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
        let _ = fs::remove_file(part);
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

/// The body of a download's file thread: appends and hashes chunks.
fn write_and_hash(
    path: &Path,
    offset: u64,
    mut md5: Md5,
    rx: &smol::channel::Receiver<Vec<u8>>,
) -> Written {
    let mut written = offset;
    let file = OpenOptions::new().write(true).open(path).and_then(|mut f| {
        f.set_len(offset)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(f)
    });
    let mut file = match file {
        Ok(f) => f,
        Err(e) => return Written { md5, written, error: Some(e) },
    };
    while let Ok(data) = rx.recv_blocking() {
        if let Err(e) = file.write_all(&data) {
            return Written { md5, written, error: Some(e) };
        }
        md5.update(&data);
        written += data.len() as u64;
    }
    let error = file.flush().err();
    Written { md5, written, error }
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
