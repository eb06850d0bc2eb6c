//! One attempt of a transfer on one stream: the stream itself ([`Conn`]),
//! and the upload and download pipelines (reading, hashing and writing in
//! batches on the blocking pool).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;
use md5::{Digest, Md5};
use smol::Timer;
use smol::channel::Sender;
use smol::future::FutureExt;

use super::super::streams::{StreamOpener, open_stream, refusal};
use super::{
    Attempt, FileClient, FileError, Hashing, IO_TIMEOUT, PIPELINE, PROGRESS_STEP, Progress,
    READ_BATCH, report, unexpected,
};
use crate::proto::{
    CHUNK_HEADER, CHUNK_SIZE, DownloadRequest, FileClientMsg, FileErrorCode, FileHostMsg, FileInfo,
    HEADER_LEN, MsgType, SessionId, StreamRole, UploadDone, UploadEnd, UploadRequest, host_limit,
};
use crate::transport::framed::{FrameError, FrameReader, FrameWriter, encode_header};
use crate::transport::link::{LinkRecv, LinkSend};

/// One file stream.
pub(super) struct Conn {
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
    pub(super) async fn open(
        opener: &StreamOpener,
        session: SessionId,
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

    pub(super) async fn recv(&mut self) -> Result<FileHostMsg, Attempt> {
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

pub(super) async fn upload_once(
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
pub(super) fn hash_new(st: &mut Hashing, pos: u64, data: &[u8]) {
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

pub(super) async fn download_once(
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
