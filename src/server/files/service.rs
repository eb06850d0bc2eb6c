//! The file service's driver: one stream per operation, generic over the
//! stream ([`LinkSend`]/[`LinkRecv`]), the janitor, and the hook the
//! control plane calls.
//!
//! No thread per transfer and no file-system call on the executor: an
//! upload's chunks go through a bounded channel to a small task that writes
//! and hashes them in batches on the blocking pool (`smol::unblock`), so
//! disk work overlaps reading the stream; a download reads ahead in 256 KiB
//! batches the same way. The store's lock is never held across a
//! file-system call (see `store.rs`).

use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use smol::channel::{Receiver, Sender};
use smol::future::FutureExt;
use smol::{Task, Timer};

use super::core::{Retention, UploadCore, failure, storage_failure};
use super::store::{State, Stored};
use crate::net::{random_u64, unix_ms};
use crate::proto::text::{RoomKey, confusable_key, visible};
use crate::proto::{
    DecodeError, FileClientMsg, FileErrorCode, FileFailure, FileHostMsg, FileInfo, FileList,
    HostMsg, StreamRole, UploadDone, UploadReady, UploadRequest, client_limit, sanitize_file_name,
};
use crate::server::control::ControlHandle;
use crate::server::core::{HostEvent, SessionId};
use crate::server::directory::{Directory, Entry};
use crate::transport::framed::{FrameError, FrameReader, FrameWriter};
use crate::transport::link::{LinkRecv, LinkSend};

/// The reference system's per-file limit.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 100 * 1024 * 1024;
/// A file stream silent this long is dropped (an upload stays resumable).
pub(super) const IDLE: Duration = Duration::from_secs(30);
/// Chunks in flight between a stream and its disk task: bounds the memory
/// one upload can hold to about 1 MiB.
const PIPELINE: usize = 32;

type Reader = FrameReader<LinkRecv>;
pub(super) type Writer = FrameWriter<LinkSend>;

#[derive(Debug, Clone)]
pub struct FileConfig {
    pub max_file_bytes: u64,
    /// A room's files are deleted once it has been empty this long.
    pub retention: Duration,
    /// The run's store is made inside this directory and removed at exit.
    pub base_dir: PathBuf,
}

pub(super) struct Shared {
    config: FileConfig,
    directory: Directory,
    control: ControlHandle,
    state: Mutex<State>,
}

impl Shared {
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes a room's files and idle partial uploads.
    async fn purge(&self, room: &RoomKey) {
        let (paths, dir) = self.state().purge(room);
        smol::unblock(move || {
            for p in paths {
                let _ = fs::remove_file(p);
            }
            if let Some(d) = dir {
                let _ = fs::remove_dir(d);
            }
        })
        .await;
    }
}

/// Deletes `paths` off the executor (best effort).
async fn remove_files(paths: Vec<PathBuf>) {
    if !paths.is_empty() {
        smol::unblock(move || {
            for p in paths {
                let _ = fs::remove_file(p);
            }
        })
        .await;
    }
}

/// Cheap to clone; tells the file service about joins and leaves.
#[derive(Clone)]
pub struct FileHook {
    shared: Arc<Shared>,
    tx: Sender<RoomKey>,
}

impl FileHook {
    /// Call after the [`Directory`] has applied `event`.
    pub fn observe(&self, event: &HostEvent) {
        match event {
            HostEvent::Left { room, .. } if self.shared.directory.room_members(room).is_empty() => {
                let _ = self.tx.try_send(RoomKey::new(room));
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
        crate::server::runtime::spawn(async move {
            for info in offers {
                control.deliver(vec![session], HostMsg::FileOffered(info)).await;
            }
        })
        .detach();
    }
}

/// The file service as the stream entry point sees it
/// ([`crate::server::streams::StreamContext::files`]). Cheap to clone.
#[derive(Clone)]
pub struct FileStreams {
    shared: Arc<Shared>,
}

/// The running file service. Dropping it stops its tasks and deletes the store.
pub struct FileService {
    hook: FileHook,
    root: PathBuf,
    _janitor: Task<()>,
}

impl FileService {
    pub fn hook(&self) -> FileHook {
        self.hook.clone()
    }

    /// The handle [`crate::server::streams::serve_stream`] needs for file streams.
    pub fn streams(&self) -> FileStreams {
        FileStreams { shared: self.hook.shared.clone() }
    }

    /// Where this run keeps its files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Files stored, for tests and status lines.
    pub fn stored(&self) -> usize {
        self.hook.shared.state().files.len()
    }
}

impl Drop for FileService {
    fn drop(&mut self) {
        // Shutdown edge: the run's store goes with the service.
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// Makes the run's store directory and starts the janitor; streams reach
/// the service through [`FileService::streams`] (the links' streams, via
/// [`crate::server::streams::serve_stream`]).
pub fn start(
    config: FileConfig,
    directory: Directory,
    control: ControlHandle,
) -> std::io::Result<FileService> {
    let root = config.base_dir.join(format!("sapora-files-{:016x}", random_u64()));
    // Startup edge: once per run, before any stream is served.
    fs::create_dir_all(&root)?;
    let shared = Arc::new(Shared {
        config,
        directory: directory.clone(),
        control,
        state: Mutex::new(State::new(root.clone())),
    });
    let (tx, rx) = smol::channel::unbounded();
    let janitor = crate::server::runtime::spawn(janitor(shared.clone(), rx));
    Ok(FileService { hook: FileHook { shared, tx }, root, _janitor: janitor })
}

/// Deletes a room's files once it has stayed empty for the retention time.
async fn janitor(shared: Arc<Shared>, emptied: Receiver<RoomKey>) {
    let mut retention = Retention::new(shared.config.retention);
    loop {
        let next = retention.poll_timeout();
        let got = async { Some(emptied.recv().await) }
            .or(async {
                match next {
                    Some(t) => Timer::at(t).await,
                    None => Timer::never().await,
                };
                None
            })
            .await;
        let now = Instant::now();
        match got {
            Some(Ok(room)) => retention.emptied(room, now),
            Some(Err(_)) => return,
            None => {}
        }
        for room in retention.expired(now) {
            if shared.directory.members_of(&room).is_empty() {
                shared.purge(&room).await;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(super) enum ConnError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    #[error("closed")]
    Closed,
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> ConnError {
        match e {
            // The link died mid-frame: like a close (an upload stays resumable).
            FrameError::Closed | FrameError::Decode(DecodeError::UnexpectedEnd) => {
                ConnError::Closed
            }
            FrameError::Io(e) => ConnError::Io(e),
            FrameError::Decode(e) => ConnError::Decode(e),
        }
    }
}

pub(super) async fn timed<T, E: From<std::io::Error>>(
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    f.or(async {
        Timer::after(IDLE).await;
        Err(std::io::Error::from(std::io::ErrorKind::TimedOut).into())
    })
    .await
}

/// Reads one client frame (its length checked against the type's limit
/// before the payload is awaited). The caller watches for idleness.
async fn read_msg(r: &mut Reader) -> Result<FileClientMsg, ConnError> {
    let frame = r.next(client_limit).await?;
    Ok(FileClientMsg::decode(frame.header.kind, frame.payload)?)
}

pub(super) async fn send(w: &mut Writer, msg: &FileHostMsg) -> std::io::Result<()> {
    let payload = msg.payload();
    timed(w.send(msg.msg_type() as u8, &payload)).await
}

impl FileStreams {
    /// Serves one file stream after its first frame: `who` is the
    /// authenticated session (`None`: unknown session or wrong token),
    /// `role` the operation that frame asked for.
    pub async fn serve(
        &self,
        who: Option<Entry>,
        role: StreamRole,
        mut w: FrameWriter<LinkSend>,
        mut r: FrameReader<LinkRecv>,
    ) {
        let shared = &self.shared;
        let result = match who {
            None => Err(Answer::Fail(failure(
                FileErrorCode::Auth,
                "unknown session or wrong token: join the meeting first",
            ))),
            Some(who) => match role {
                StreamRole::FileUpload(req) => upload(shared, &mut w, &mut r, who, req).await,
                StreamRole::FileDownload(req) => {
                    super::download::download(shared, &mut w, who, req).await
                }
                StreamRole::FileList => {
                    Ok(Some(FileHostMsg::List(FileList { files: shared.state().list(&who) })))
                }
                StreamRole::ScreenPresent | StreamRole::ScreenView => {
                    Err(Answer::Fail(failure(FileErrorCode::Protocol, "not a file stream")))
                }
            },
        };
        let ended = match result {
            Ok(Some(msg)) => match send(&mut w, &msg).await {
                Ok(()) => timed(w.close()).await,
                Err(e) => Err(e),
            },
            Ok(None) => timed(w.close()).await,
            Err(Answer::Fail(f)) => {
                let sent = send(&mut w, &FileHostMsg::Failure(f)).await;
                if sent.is_ok() {
                    drain(&mut w, &mut r).await;
                }
                sent
            }
            Err(Answer::Conn(e)) => Err(std::io::Error::other(e.to_string())),
        };
        if let Err(e) = ended {
            tracing::debug!("file stream ended: {e}");
        }
    }
}

/// After a refusal, finishes our side and reads and drops what the client
/// still sends until it hangs up: closing with unread bytes would reset a
/// TCP connection and could destroy the refusal before the client reads it.
async fn drain(w: &mut Writer, r: &mut Reader) {
    let until = Instant::now() + IDLE;
    let read = async {
        let _ = w.close().await;
        while r.next(client_limit).await.is_ok() {}
    };
    read.or(async {
        Timer::at(until).await;
    })
    .await;
}

pub(super) enum Answer {
    /// Tell the client why, then close.
    Fail(FileFailure),
    /// The stream itself failed: nobody to tell.
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

/// What the disk task of an upload is told.
enum ToDisk {
    Chunk(u64, bytes::Bytes),
    End([u8; 16]),
}

/// Claims (or creates) the partial upload for this request.
async fn claim(
    shared: &Arc<Shared>,
    who: &Entry,
    req: &UploadRequest,
    cancel: Sender<()>,
) -> Result<(u64, UploadCore, PathBuf), FileFailure> {
    let room = who.room_key.clone();
    if let Some(id) = req.resume {
        // Take over from a stream the host has not yet seen die.
        for _ in 0..100 {
            let previous = {
                let mut st = shared.state();
                let Some(u) = st.uploads.get_mut(&id) else { break };
                let mine = u.room == room
                    && (u.sender == who.session
                        || confusable_key(&u.sender_name) == confusable_key(&who.name))
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
    let name = sanitize_file_name(&req.name);
    let (id, dir, path) = shared.state().begin_upload(who, name, to, core.clone(), cancel);
    let part = path.clone();
    let made = smol::unblock(move || {
        fs::create_dir_all(&dir)?;
        File::create(&part).map(drop)
    })
    .await;
    if let Err(e) = made {
        discard(shared, id).await;
        return Err(storage_failure(&e));
    }
    Ok((id, core, path))
}

async fn upload(
    shared: &Arc<Shared>,
    w: &mut Writer,
    r: &mut Reader,
    who: Entry,
    req: UploadRequest,
) -> Result<Option<FileHostMsg>, Answer> {
    let (cancel_tx, cancel_rx) = smol::channel::bounded::<()>(1);
    let (id, core, path) = claim(shared, &who, &req, cancel_tx).await?;
    let ready = FileHostMsg::Ready(UploadReady { upload: id, offset: core.offset() });
    if let Err(e) = send(w, &ready).await {
        release(shared, id, None);
        return Err(e.into());
    }
    // The disk task: writes and hashes while this task reads the stream.
    let (disk_tx, disk_rx) = smol::channel::bounded::<ToDisk>(PIPELINE);
    let (done_tx, done_rx) = smol::channel::bounded(1);
    crate::server::runtime::spawn(async move {
        let _ = done_tx.send(write_upload(core, path, disk_rx).await).await;
    })
    .detach();
    let mut protocol_error = None;
    let mut early = None;
    enum Wake {
        Msg(Result<FileClientMsg, ConnError>),
        Cancelled,
        // The disk task stopped by itself (a write failed or a chunk was refused).
        Stopped(Result<(UploadCore, Outcome), smol::channel::RecvError>),
        // Time to check for an idle client.
        Tick,
    }
    // One timer for the whole upload (a timer per frame would wake the
    // reactor thousands of times a second).
    let mut ticker = Timer::interval(IDLE / 6);
    let mut last = Instant::now();
    loop {
        let wake = async { Wake::Msg(read_msg(r).await) }
            .or(async {
                let _ = cancel_rx.recv().await;
                Wake::Cancelled
            })
            .or(async { Wake::Stopped(done_rx.recv().await) })
            .or(async {
                smol::stream::StreamExt::next(&mut ticker).await;
                Wake::Tick
            })
            .await;
        if matches!(wake, Wake::Msg(_)) {
            last = Instant::now();
        }
        match wake {
            Wake::Tick if last.elapsed() < IDLE => {}
            Wake::Tick => {
                tracing::debug!("upload {id}: no frame for {IDLE:?}; kept resumable");
                break;
            }
            Wake::Msg(Ok(FileClientMsg::Chunk { offset, data })) => {
                if disk_tx.send(ToDisk::Chunk(offset, data)).await.is_err() {
                    early = Some(done_rx.recv().await);
                    break;
                }
            }
            Wake::Msg(Ok(FileClientMsg::End(end))) => {
                let _ = disk_tx.send(ToDisk::End(end.md5)).await;
                break;
            }
            Wake::Msg(Err(ConnError::Decode(e))) => {
                protocol_error = Some(failure(FileErrorCode::Protocol, e.to_string()));
                break;
            }
            // The link died or another stream took over: stay resumable.
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
        discard(shared, id).await;
        return Err(f.into());
    }
    match outcome {
        Outcome::Interrupted => {
            release(shared, id, Some(core));
            Err(Answer::Conn(ConnError::Closed))
        }
        Outcome::Failed(f) => {
            discard(shared, id).await;
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

/// An upload's disk task: takes whatever chunks are queued and writes and
/// hashes them in one blocking call, until the end or the stream's loss.
async fn write_upload(
    core: UploadCore,
    path: PathBuf,
    rx: Receiver<ToDisk>,
) -> (UploadCore, Outcome) {
    let offset = core.offset();
    let opened = smol::unblock(move || {
        let mut f = OpenOptions::new().write(true).open(&path)?;
        // Drop whatever a dead stream wrote past the last accepted chunk.
        f.set_len(offset)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok::<_, std::io::Error>(f)
    })
    .await;
    let mut file = match opened {
        Ok(f) => f,
        Err(e) => return (core, Outcome::Failed(storage_failure(&e))),
    };
    let mut core = core;
    loop {
        let Ok(first) = rx.recv().await else { return (core, Outcome::Interrupted) };
        let mut batch = vec![first];
        while batch.len() < PIPELINE {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let step = smol::unblock(move || {
            for msg in batch {
                match msg {
                    ToDisk::Chunk(offset, data) => {
                        let before = core.clone();
                        if let Err(f) = core.accept(offset, &data, &mut file) {
                            return (file, before, Some(Outcome::Failed(f)));
                        }
                    }
                    ToDisk::End(md5) => {
                        let outcome = match core.finish(md5, &mut file) {
                            Ok(md5) => Outcome::Complete(md5),
                            Err(f) => Outcome::Failed(f),
                        };
                        return (file, core, Some(outcome));
                    }
                }
            }
            (file, core, None)
        })
        .await;
        (file, core) = (step.0, step.1);
        if let Some(outcome) = step.2 {
            return (core, outcome);
        }
    }
}

/// Lets go of a partial upload so a later stream can resume it.
fn release(shared: &Shared, id: u64, core: Option<UploadCore>) {
    if let Some(u) = shared.state().uploads.get_mut(&id) {
        u.busy = None;
        if let Some(c) = core {
            u.core = c;
        }
    }
}

/// Forgets a failed upload and deletes its bytes.
async fn discard(shared: &Shared, id: u64) {
    let gone = shared.state().uploads.remove(&id);
    if let Some(u) = gone {
        remove_files(vec![u.path]).await;
    }
}

/// The upload is verified: rename it into place, record it, tell the recipients.
async fn commit(shared: &Arc<Shared>, id: u64, md5: [u8; 16]) -> Result<FileHostMsg, FileFailure> {
    let (u, members) = {
        let mut st = shared.state();
        let Some(u) = st.uploads.remove(&id) else {
            return Err(failure(FileErrorCode::NoSuchUpload, "the upload was cancelled"));
        };
        let members = shared.directory.members_of(&u.room);
        (u, members)
    };
    if members.is_empty() {
        remove_files(vec![u.path]).await;
        return Err(failure(FileErrorCode::NotFound, "the meeting ended before the upload did"));
    }
    let path = u.path.with_extension("");
    let (from, to) = (u.path.clone(), path.clone());
    let renamed = smol::unblock(move || {
        fs::rename(&from, &to).inspect_err(|_| {
            let _ = fs::remove_file(&from);
        })
    })
    .await;
    if let Err(e) = renamed {
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
    let stored = Stored {
        info: info.clone(),
        room: u.room,
        sender: u.sender,
        to: u.to.map(|(s, _)| s),
        path,
        pending,
    };
    let pushed_out = shared.state().store(id, stored);
    remove_files(pushed_out).await;
    if !recipients.is_empty() {
        shared.control.deliver(recipients, HostMsg::FileOffered(info.clone())).await;
    }
    Ok(FileHostMsg::Done(UploadDone { file: info, notice }))
}
