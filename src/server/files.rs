//! The host's file store and its TCP service (default port 5002).
//!
//! Uploads stream into `<run dir>/room-<n>/<id>.part`, are MD5-verified and
//! renamed to `<id>`; only then are recipients told over the control channel.
//! Paths are built from numbers only, never from a client's file or room name.
//!
//! The decisions about one upload (offsets, sizes, hashing, what a write
//! failure means) live in the sans-IO [`UploadCore`]; the smol tasks here own
//! the sockets, and one named thread per transfer owns the file, so hashing
//! and disk writes overlap the socket reads.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use smol::{Async, Task, Timer};

use super::control::ControlHandle;
use super::core::{HostEvent, SessionId};
use super::directory::{Directory, Entry};
use crate::net::{ArcStream, random_u64, unix_ms};
use crate::proto::text::{confusable_key, visible};
use crate::proto::{
    CHUNK_HEADER, CHUNK_SIZE, DecodeError, FileClientMsg, FileErrorCode, FileFailure, FileHostMsg,
    FileInfo, FileList, HEADER_LEN, Header, HostMsg, MAX_FILES_PER_ROOM, MsgType, PROTOCOL_VERSION,
    UploadDone, UploadReady, UploadRequest, client_limit, human_bytes, sanitize_file_name,
};

/// The reference system's per-file limit.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// A file connection silent this long is dropped (an upload stays resumable).
const IDLE: Duration = Duration::from_secs(30);
/// Chunks in flight between a socket task and its file thread: bounds the
/// memory one transfer can hold to about 1 MiB.
const PIPELINE: usize = 32;

#[derive(Debug, Clone)]
pub struct FileConfig {
    pub max_file_bytes: u64,
    /// A room's files are deleted once it has been empty this long.
    pub retention: Duration,
    /// The run's store is made inside this directory and removed at exit.
    pub base_dir: PathBuf,
}

fn failure(code: FileErrorCode, reason: impl Into<String>) -> FileFailure {
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

    pub fn offset(&self) -> u64 {
        self.received
    }

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

struct Stored {
    info: FileInfo,
    room: String,
    sender: SessionId,
    to: Option<SessionId>,
    path: PathBuf,
    /// Private, and its recipient was away when it was stored: offered to
    /// them when their session comes back (the host gives a member who
    /// rejoins with their token the same session).
    pending: bool,
}

struct Partial {
    room: String,
    sender: SessionId,
    sender_name: String,
    name: String,
    to: Option<(SessionId, String)>,
    path: PathBuf,
    core: UploadCore,
    /// Set while a connection serves this upload; firing it makes that
    /// connection let go (the client reconnected).
    busy: Option<Sender<()>>,
}

struct RoomFiles {
    display: String,
    dir: PathBuf,
}

#[derive(Default)]
struct State {
    rooms: HashMap<String, RoomFiles>,
    room_seq: u64,
    files: HashMap<u64, Stored>,
    uploads: HashMap<u64, Partial>,
    next_id: u64,
}

struct Shared {
    config: FileConfig,
    root: PathBuf,
    directory: Directory,
    control: ControlHandle,
    state: Mutex<State>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn visible(&self, f: &Stored, who: &Entry) -> bool {
        f.room == room_key(&who.room)
            && f.to.is_none_or(|to| to == who.session || f.sender == who.session)
    }

    /// Deletes a room's files and idle partial uploads.
    fn purge(&self, room: &str) {
        let mut st = self.state();
        let gone: Vec<u64> =
            st.files.iter().filter(|(_, f)| f.room == room).map(|(k, _)| *k).collect();
        for id in gone {
            if let Some(f) = st.files.remove(&id) {
                let _ = fs::remove_file(&f.path);
            }
        }
        let idle: Vec<u64> = st
            .uploads
            .iter()
            .filter(|(_, u)| u.room == room && u.busy.is_none())
            .map(|(k, _)| *k)
            .collect();
        for id in idle {
            if let Some(u) = st.uploads.remove(&id) {
                let _ = fs::remove_file(&u.path);
            }
        }
        let busy = st.uploads.values().any(|u| u.room == room);
        if !busy && let Some(r) = st.rooms.remove(room) {
            let _ = fs::remove_dir(&r.dir);
        }
    }
}

fn room_key(room: &str) -> String {
    room.to_lowercase()
}

/// Cheap to clone; tells the file service about joins and leaves.
#[derive(Clone)]
pub struct FileHook {
    shared: Arc<Shared>,
    tx: Sender<String>,
}

impl FileHook {
    /// Call after the [`Directory`] has applied `event`.
    pub fn observe(&self, event: &HostEvent) {
        match event {
            HostEvent::Left { room, .. } if self.shared.directory.room_members(room).is_empty() => {
                let _ = self.tx.try_send(room_key(room));
            }
            HostEvent::Joined { session, .. } => self.offer_pending(*session),
            _ => {}
        }
    }

    /// Offers the private files that waited for `session` to come back.
    fn offer_pending(&self, session: SessionId) {
        let offers: Vec<FileInfo> = {
            let mut st = self.shared.state();
            let mut waiting: Vec<&mut Stored> =
                st.files.values_mut().filter(|f| f.pending && f.to == Some(session)).collect();
            waiting.sort_by_key(|f| f.info.id);
            waiting
                .into_iter()
                .map(|f| {
                    f.pending = false;
                    f.info.clone()
                })
                .collect()
        };
        if offers.is_empty() {
            return;
        }
        let control = self.shared.control.clone();
        smol::spawn(async move {
            for info in offers {
                control.deliver(vec![session], HostMsg::FileOffered(info)).await;
            }
        })
        .detach();
    }
}

/// The running file service. Dropping it stops its tasks and deletes the store.
pub struct FileService {
    pub addr: SocketAddr,
    hook: FileHook,
    _accept: Task<()>,
    _janitor: Task<()>,
}

impl FileService {
    pub fn hook(&self) -> FileHook {
        self.hook.clone()
    }

    /// Where this run keeps its files.
    pub fn root(&self) -> &Path {
        &self.hook.shared.root
    }

    /// Files stored, for tests and status lines.
    pub fn stored(&self) -> usize {
        self.hook.shared.state().files.len()
    }
}

impl Drop for FileService {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.hook.shared.root);
    }
}

/// Makes the run's store directory and starts serving `listener`.
pub fn start(
    listener: Async<TcpListener>,
    config: FileConfig,
    directory: Directory,
    control: ControlHandle,
) -> std::io::Result<FileService> {
    let addr = listener.get_ref().local_addr()?;
    let root = config.base_dir.join(format!("sapora-files-{:016x}", random_u64()));
    fs::create_dir_all(&root)?;
    let shared = Arc::new(Shared {
        config,
        root,
        directory,
        control,
        state: Mutex::new(State { next_id: 1, ..State::default() }),
    });
    let (tx, rx) = smol::channel::unbounded();
    let accept = smol::spawn(accept_loop(listener, shared.clone()));
    let janitor = smol::spawn(janitor(shared.clone(), rx));
    Ok(FileService { addr, hook: FileHook { shared, tx }, _accept: accept, _janitor: janitor })
}

/// Deletes a room's files once it has stayed empty for the retention time.
async fn janitor(shared: Arc<Shared>, emptied: Receiver<String>) {
    let mut due: HashMap<String, Instant> = HashMap::new();
    loop {
        let next = due.values().min().copied();
        let got = async { Some(emptied.recv().await) }
            .or(async {
                match next {
                    Some(t) => Timer::at(t).await,
                    None => Timer::never().await,
                };
                None
            })
            .await;
        match got {
            Some(Ok(room)) => {
                due.insert(room, Instant::now() + shared.config.retention);
            }
            Some(Err(_)) => return,
            None => {
                let now = Instant::now();
                let ripe: Vec<String> =
                    due.iter().filter(|(_, t)| **t <= now).map(|(r, _)| r.clone()).collect();
                for room in ripe {
                    due.remove(&room);
                    let display = shared.state().rooms.get(&room).map(|r| r.display.clone());
                    let occupied =
                        display.is_some_and(|d| !shared.directory.room_members(&d).is_empty());
                    if !occupied {
                        shared.purge(&room);
                    }
                }
            }
        }
    }
}

async fn accept_loop(listener: Async<TcpListener>, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.get_ref().set_nodelay(true);
                let shared = shared.clone();
                smol::spawn(async move {
                    let stream = Arc::new(stream);
                    if let Err(e) = serve(&shared, stream.clone()).await {
                        tracing::debug!("file connection ended: {e}");
                    }
                    let _ = stream.get_ref().shutdown(std::net::Shutdown::Both);
                })
                .detach();
            }
            Err(e) => {
                tracing::warn!("accepting a file connection failed: {e}");
                Timer::after(Duration::from_millis(100)).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("closed")]
    Closed,
    #[error("idle for {0:?}")]
    Idle(Duration),
}

type Reader = BufReader<ArcStream>;

/// Reads one client frame, checking its length before allocating.
async fn read_msg(r: &mut Reader) -> Result<FileClientMsg, ConnError> {
    let read = async {
        let mut head = [0u8; HEADER_LEN];
        match r.read_exact(&mut head).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ConnError::Closed);
            }
            Err(e) => return Err(e.into()),
        }
        let h = Header::decode(&head)?;
        if h.version != PROTOCOL_VERSION {
            return Err(DecodeError::Version { got: h.version }.into());
        }
        let len = h.check_len(client_limit(h.kind))?;
        let eof = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ConnError::Closed,
            _ => e.into(),
        };
        if h.kind == MsgType::FileChunk as u8 && len >= CHUNK_HEADER {
            // Read the offset apart, so the data lands in its own buffer
            // without being shifted.
            let mut offset = [0u8; CHUNK_HEADER];
            r.read_exact(&mut offset).await.map_err(eof)?;
            let mut data = vec![0u8; len - CHUNK_HEADER];
            r.read_exact(&mut data).await.map_err(eof)?;
            return Ok(FileClientMsg::Chunk { offset: u64::from_be_bytes(offset), data });
        }
        let mut payload = vec![0u8; len];
        r.read_exact(&mut payload).await.map_err(eof)?;
        Ok(FileClientMsg::decode(h.kind, payload)?)
    };
    read.or(async {
        Timer::after(IDLE).await;
        Err(ConnError::Idle(IDLE))
    })
    .await
}

async fn send(w: &Async<TcpStream>, msg: &FileHostMsg, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let payload = msg.payload();
    Header {
        version: PROTOCOL_VERSION,
        kind: msg.msg_type() as u8,
        len: payload.len() as u32,
        seq: 0,
        flags: 0,
    }
    .encode(buf);
    buf.extend_from_slice(&payload);
    write_raw(w, buf).await
}

async fn serve(shared: &Arc<Shared>, stream: Arc<Async<TcpStream>>) -> Result<(), ConnError> {
    let mut r = BufReader::with_capacity(256 * 1024, ArcStream(stream.clone()));
    let mut buf = Vec::new();
    let first = match read_msg(&mut r).await {
        Ok(m) => m,
        Err(ConnError::Decode(e)) => {
            let f = failure(FileErrorCode::Protocol, e.to_string());
            send(&stream, &FileHostMsg::Failure(f), &mut buf).await?;
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let (session, token) = match &first {
        FileClientMsg::Upload(m) => (m.session, m.token),
        FileClientMsg::Download(m) => (m.session, m.token),
        FileClientMsg::List(m) => (m.session, m.token),
        _ => {
            let f =
                failure(FileErrorCode::Protocol, "expected an upload, download or list request");
            send(&stream, &FileHostMsg::Failure(f), &mut buf).await?;
            return Ok(());
        }
    };
    let Some(who) = shared.directory.authenticate(session, token) else {
        let f =
            failure(FileErrorCode::Auth, "unknown session or wrong token: join the meeting first");
        send(&stream, &FileHostMsg::Failure(f), &mut buf).await?;
        return Ok(());
    };
    let result = match first {
        FileClientMsg::Upload(req) => upload(shared, &stream, &mut r, who, req).await,
        FileClientMsg::Download(req) => download(shared, &stream, who, req.id, req.offset).await,
        FileClientMsg::List(_) => {
            let st = shared.state();
            let mut files: Vec<FileInfo> = st
                .files
                .values()
                .filter(|f| shared.visible(f, &who))
                .map(|f| f.info.clone())
                .collect();
            drop(st);
            files.sort_by_key(|f| f.id);
            Ok(Some(FileHostMsg::List(FileList { files })))
        }
        _ => unreachable!("checked above"),
    };
    match result {
        Ok(Some(msg)) => send(&stream, &msg, &mut buf).await?,
        Ok(None) => {}
        Err(Answer::Fail(f)) => {
            send(&stream, &FileHostMsg::Failure(f), &mut buf).await?;
            drain(&stream, &mut r).await;
        }
        Err(Answer::Conn(e)) => return Err(e),
    }
    Ok(())
}

/// After a refusal, reads and drops what the client still sends until it
/// hangs up: closing with unread bytes would reset the connection and could
/// destroy the refusal before the client reads it.
async fn drain(stream: &Async<TcpStream>, r: &mut Reader) {
    let _ = stream.get_ref().shutdown(std::net::Shutdown::Write);
    let mut sink = vec![0u8; 64 * 1024];
    let until = Instant::now() + IDLE;
    let read = async {
        while let Ok(n) = r.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    };
    read.or(async {
        Timer::at(until).await;
    })
    .await;
}

enum Answer {
    /// Tell the client why, then close.
    Fail(FileFailure),
    /// The connection itself failed: nobody to tell.
    Conn(ConnError),
}

impl From<FileFailure> for Answer {
    fn from(f: FileFailure) -> Answer {
        Answer::Fail(f)
    }
}

impl From<std::io::Error> for Answer {
    fn from(e: std::io::Error) -> Answer {
        Answer::Conn(e.into())
    }
}

/// What the file thread of an upload is told.
enum ToDisk {
    Chunk(u64, Vec<u8>),
    End([u8; 16]),
}

/// Claims (or creates) the partial upload for this request.
async fn claim(
    shared: &Arc<Shared>,
    who: &Entry,
    req: &UploadRequest,
    cancel: Sender<()>,
) -> Result<(u64, UploadCore, PathBuf), FileFailure> {
    let room = room_key(&who.room);
    if let Some(id) = req.resume {
        // Take over from a connection the host has not yet seen die.
        for _ in 0..100 {
            let previous = {
                let mut st = shared.state();
                let Some(u) = st.uploads.get_mut(&id) else { break };
                let mine = u.room == room
                    && (u.sender == who.session
                        || u.sender_name.to_lowercase() == who.name.to_lowercase())
                    && u.core.declared() == req.size
                    && u.name == sanitize_file_name(&req.name);
                if !mine {
                    break;
                }
                match u.busy.take() {
                    None => {
                        u.busy = Some(cancel.clone());
                        return Ok((id, u.core.clone(), u.path.clone()));
                    }
                    Some(prev) => {
                        u.busy = Some(prev.clone());
                        prev
                    }
                }
            };
            let _ = previous.try_send(());
            Timer::after(Duration::from_millis(20)).await;
        }
        return Err(failure(
            FileErrorCode::NoSuchUpload,
            "that upload cannot be resumed (unknown, finished or not yours); start it again",
        ));
    }
    let core = UploadCore::new(req.size, shared.config.max_file_bytes)?;
    let to = match &req.to {
        None => None,
        Some(name) => {
            // Names compare as the host compares them: look-alikes are one name.
            let want = confusable_key(name);
            let members = shared.directory.room_members(&who.room);
            match members.into_iter().find(|e| confusable_key(&e.name) == want) {
                Some(e) => Some((e.session, e.name)),
                None => {
                    return Err(failure(
                        FileErrorCode::NoSuchMember,
                        format!(
                            "\"{}\" is not in meeting \"{}\" (not joined, or has left): nothing was sent",
                            visible(name.trim()),
                            who.room
                        ),
                    ));
                }
            }
        }
    };
    let mut st = shared.state();
    let id = st.next_id;
    st.next_id += 1;
    let dir = match st.rooms.get_mut(&room) {
        Some(r) => {
            r.display = who.room.clone();
            r.dir.clone()
        }
        None => {
            st.room_seq += 1;
            let dir = shared.root.join(format!("room-{}", st.room_seq));
            st.rooms
                .insert(room.clone(), RoomFiles { display: who.room.clone(), dir: dir.clone() });
            dir
        }
    };
    fs::create_dir_all(&dir).map_err(|e| storage_failure(&e))?;
    let path = dir.join(format!("{id}.part"));
    File::create(&path).map_err(|e| storage_failure(&e))?;
    st.uploads.insert(
        id,
        Partial {
            room,
            sender: who.session,
            sender_name: who.name.clone(),
            name: sanitize_file_name(&req.name),
            to,
            path: path.clone(),
            core: core.clone(),
            busy: Some(cancel),
        },
    );
    Ok((id, core, path))
}

async fn upload(
    shared: &Arc<Shared>,
    stream: &Async<TcpStream>,
    r: &mut Reader,
    who: Entry,
    req: UploadRequest,
) -> Result<Option<FileHostMsg>, Answer> {
    let (cancel_tx, cancel_rx) = smol::channel::bounded::<()>(1);
    let (id, core, path) = claim(shared, &who, &req, cancel_tx).await?;
    let mut buf = Vec::new();
    let ready = FileHostMsg::Ready(UploadReady { upload: id, offset: core.offset() });
    if let Err(e) = send(stream, &ready, &mut buf).await {
        release(shared, id, None);
        return Err(e.into());
    }
    // The file thread: writes and hashes while this task reads the socket.
    let (disk_tx, disk_rx) = smol::channel::bounded::<ToDisk>(PIPELINE);
    let (done_tx, done_rx) = smol::channel::bounded(1);
    let thread_core = core;
    let thread_path = path.clone();
    let spawned = std::thread::Builder::new().name("sapora-file-in".into()).spawn(move || {
        let result = write_upload(thread_core, &thread_path, &disk_rx);
        let _ = done_tx.send_blocking(result);
    });
    if let Err(e) = spawned {
        release(shared, id, None);
        return Err(storage_failure(&e).into());
    }
    let mut protocol_error = None;
    let mut early = None;
    enum Wake {
        Msg(Result<FileClientMsg, ConnError>),
        Cancelled,
        // The file thread stopped by itself (a write failed or a chunk was refused).
        Stopped(Result<(UploadCore, Outcome), smol::channel::RecvError>),
    }
    loop {
        let wake = async { Wake::Msg(read_msg(r).await) }
            .or(async {
                let _ = cancel_rx.recv().await;
                Wake::Cancelled
            })
            .or(async { Wake::Stopped(done_rx.recv().await) })
            .await;
        match wake {
            Wake::Msg(Ok(FileClientMsg::Chunk { offset, data })) => {
                let _ = disk_tx.send(ToDisk::Chunk(offset, data)).await;
            }
            Wake::Msg(Ok(FileClientMsg::End(end))) => {
                let _ = disk_tx.send(ToDisk::End(end.md5)).await;
                break;
            }
            Wake::Msg(Ok(_)) => {
                protocol_error =
                    Some(failure(FileErrorCode::Protocol, "expected a chunk or the end"));
                break;
            }
            Wake::Msg(Err(ConnError::Decode(e))) => {
                protocol_error = Some(failure(FileErrorCode::Protocol, e.to_string()));
                break;
            }
            // The link died or another connection took over: stay resumable.
            Wake::Msg(Err(_)) | Wake::Cancelled => break,
            Wake::Stopped(result) => {
                early = Some(result);
                break;
            }
        }
    }
    drop(disk_tx);
    let done = match early {
        Some(result) => result,
        None => done_rx.recv().await,
    };
    let (core, outcome) = match done {
        Ok(v) => v,
        Err(_) => {
            release(shared, id, None);
            return Err(failure(FileErrorCode::Storage, "the host's file writer crashed").into());
        }
    };
    if let Some(f) = protocol_error {
        discard(shared, id);
        return Err(f.into());
    }
    match outcome {
        Outcome::Interrupted => {
            release(shared, id, Some(core));
            Err(Answer::Conn(ConnError::Closed))
        }
        Outcome::Failed(f) => {
            discard(shared, id);
            Err(f.into())
        }
        Outcome::Complete(md5) => commit(shared, id, md5).await.map(Some).map_err(Answer::Fail),
    }
}

enum Outcome {
    Complete([u8; 16]),
    Failed(FileFailure),
    /// The chunks stopped before the end: resumable from the core's offset.
    Interrupted,
}

/// The body of an upload's file thread.
fn write_upload(mut core: UploadCore, path: &Path, rx: &Receiver<ToDisk>) -> (UploadCore, Outcome) {
    let file = OpenOptions::new().write(true).open(path).and_then(|mut f| {
        // Drop whatever a dead connection wrote past the last accepted chunk.
        f.set_len(core.offset())?;
        f.seek(SeekFrom::Start(core.offset()))?;
        Ok(f)
    });
    let mut file = match file {
        Ok(f) => f,
        Err(e) => return (core, Outcome::Failed(storage_failure(&e))),
    };
    while let Ok(msg) = rx.recv_blocking() {
        match msg {
            ToDisk::Chunk(offset, data) => {
                let before = core.clone();
                if let Err(f) = core.accept(offset, &data, &mut file) {
                    return (before, Outcome::Failed(f));
                }
            }
            ToDisk::End(md5) => {
                return match core.finish(md5, &mut file) {
                    Ok(md5) => (core, Outcome::Complete(md5)),
                    Err(f) => (core, Outcome::Failed(f)),
                };
            }
        }
    }
    (core, Outcome::Interrupted)
}

/// Lets go of a partial upload so a later connection can resume it.
fn release(shared: &Shared, id: u64, core: Option<UploadCore>) {
    if let Some(u) = shared.state().uploads.get_mut(&id) {
        u.busy = None;
        if let Some(c) = core {
            u.core = c;
        }
    }
}

/// Forgets a failed upload and deletes its bytes.
fn discard(shared: &Shared, id: u64) {
    if let Some(u) = shared.state().uploads.remove(&id) {
        let _ = fs::remove_file(&u.path);
    }
}

/// The upload is verified: rename it into place, record it, tell the recipients.
async fn commit(shared: &Arc<Shared>, id: u64, md5: [u8; 16]) -> Result<FileHostMsg, FileFailure> {
    let (info, recipients, notice) = {
        let mut st = shared.state();
        let Some(u) = st.uploads.remove(&id) else {
            return Err(failure(FileErrorCode::NoSuchUpload, "the upload was cancelled"));
        };
        let display = st.rooms.get(&u.room).map(|r| r.display.clone()).unwrap_or_default();
        let members = shared.directory.room_members(&display);
        if members.is_empty() {
            let _ = fs::remove_file(&u.path);
            return Err(failure(
                FileErrorCode::NotFound,
                "the meeting ended before the upload did",
            ));
        }
        let path = u.path.with_extension("");
        if let Err(e) = fs::rename(&u.path, &path) {
            let _ = fs::remove_file(&u.path);
            return Err(storage_failure(&e));
        }
        let info = FileInfo {
            id,
            name: u.name,
            size: u.core.declared(),
            md5,
            sender: u.sender_name,
            to: u.to.as_ref().map(|(_, n)| n.clone()),
            ts_ms: unix_ms(),
        };
        let recipients: Vec<SessionId> = match &u.to {
            Some((s, _)) => members.iter().map(|m| m.session).filter(|m| m == s).collect(),
            None => members.iter().map(|m| m.session).filter(|s| *s != u.sender).collect(),
        };
        // The one recipient left while the upload ran: say so, keep the file.
        let pending = u.to.is_some() && recipients.is_empty();
        let notice = match (&u.to, pending) {
            (Some((_, name)), true) => Some(format!(
                "{name} is no longer in the meeting; the file is kept for them and offered when they rejoin"
            )),
            _ => None,
        };
        st.files.insert(
            id,
            Stored {
                info: info.clone(),
                room: u.room.clone(),
                sender: u.sender,
                to: u.to.map(|(s, _)| s),
                path,
                pending,
            },
        );
        // Bound a room's store: the oldest files go first.
        let mut ids: Vec<u64> =
            st.files.iter().filter(|(_, f)| f.room == u.room).map(|(k, _)| *k).collect();
        if ids.len() > MAX_FILES_PER_ROOM {
            ids.sort_unstable();
            for old in &ids[..ids.len() - MAX_FILES_PER_ROOM] {
                if let Some(f) = st.files.remove(old) {
                    let _ = fs::remove_file(&f.path);
                }
            }
        }
        (info, recipients, notice)
    };
    if !recipients.is_empty() {
        shared.control.deliver(recipients, HostMsg::FileOffered(info.clone())).await;
    }
    Ok(FileHostMsg::Done(UploadDone { file: info, notice }))
}

async fn download(
    shared: &Arc<Shared>,
    stream: &Async<TcpStream>,
    who: Entry,
    id: u64,
    offset: u64,
) -> Result<Option<FileHostMsg>, Answer> {
    let (info, path) = {
        let st = shared.state();
        match st.files.get(&id).filter(|f| shared.visible(f, &who)) {
            Some(f) => (f.info.clone(), f.path.clone()),
            None => {
                return Err(
                    failure(FileErrorCode::NotFound, format!("no file {id} for you here")).into()
                );
            }
        }
    };
    if offset > info.size {
        let why = format!("offset {offset} is past the end of the {}-byte file", info.size);
        return Err(failure(FileErrorCode::Size, why).into());
    }
    // Opened before answering, so a file deleted meanwhile still reads whole.
    let mut file = File::open(&path).map_err(|e| storage_failure(&e))?;
    file.seek(SeekFrom::Start(offset)).map_err(|e| storage_failure(&e))?;
    let mut buf = Vec::new();
    send(stream, &FileHostMsg::Metadata(info.clone()), &mut buf).await?;
    let (tx, rx) = smol::channel::bounded::<std::io::Result<Vec<u8>>>(PIPELINE);
    std::thread::Builder::new()
        .name("sapora-file-out".into())
        .spawn(move || read_frames(file, offset, info.size, &tx))
        .map_err(|e| storage_failure(&e))?;
    let mut at = offset;
    while at < info.size {
        let frame = match rx.recv().await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Err(storage_failure(&e).into()),
            Err(_) => return Err(failure(FileErrorCode::Storage, "the file ended early").into()),
        };
        write_raw(stream, &frame).await?;
        at += (frame.len() - HEADER_LEN - CHUNK_HEADER) as u64;
    }
    Ok(None)
}

async fn write_raw(w: &Async<TcpStream>, frame: &[u8]) -> std::io::Result<()> {
    let mut w = w;
    let write = async {
        w.write_all(frame).await?;
        w.flush().await
    };
    write
        .or(async {
            Timer::after(IDLE).await;
            Err(std::io::ErrorKind::TimedOut.into())
        })
        .await
}

/// The body of a download's file thread: reads `[from, to)` and frames it
/// as whole chunk frames, so the socket task only writes.
fn read_frames(mut file: File, from: u64, to: u64, tx: &Sender<std::io::Result<Vec<u8>>>) {
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK_SIZE as u64) as usize;
        let mut frame = Vec::with_capacity(HEADER_LEN + CHUNK_HEADER + n);
        let len = (CHUNK_HEADER + n) as u32;
        Header { version: PROTOCOL_VERSION, kind: MsgType::FileChunk as u8, len, seq: 0, flags: 0 }
            .encode(&mut frame);
        frame.extend_from_slice(&at.to_be_bytes());
        let start = frame.len();
        frame.resize(start + n, 0);
        let read = file.read_exact(&mut frame[start..]).map(|()| frame);
        let failed = read.is_err();
        if tx.send_blocking(read).is_err() || failed {
            return;
        }
        at += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
