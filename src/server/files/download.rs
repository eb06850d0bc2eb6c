//! A download stream: the file's metadata, then its chunks, read ahead from
//! disk in batches on the blocking pool while the stream task writes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use smol::channel::Sender;

use super::core::{failure, storage_failure};
use super::service::{Answer, Shared, Writer, send, timed};
use super::store::State;
use crate::proto::{
    CHUNK_HEADER, CHUNK_SIZE, DownloadRequest, FileErrorCode, FileHostMsg, HEADER_LEN, MsgType,
};
use crate::server::directory::Entry;
use crate::transport::framed::encode_header;

/// Chunks a download reads from disk per blocking call (256 KiB).
const READ_BATCH: usize = 8;

pub(super) async fn download(
    shared: &Arc<Shared>,
    w: &mut Writer,
    who: Entry,
    req: DownloadRequest,
) -> Result<Option<FileHostMsg>, Answer> {
    let DownloadRequest { id, offset } = req;
    let (info, path) = {
        let st = shared.state();
        match st.files.get(&id).filter(|f| State::visible(f, &who)) {
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
    let file = smol::unblock(move || {
        let mut f = File::open(&path)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| storage_failure(&e))?;
    send(w, &FileHostMsg::Metadata(info.clone())).await?;
    let (tx, rx) = smol::channel::bounded::<std::io::Result<(Vec<u8>, u64)>>(4);
    let _reader = crate::server::runtime::spawn(read_frames(file, offset, info.size, tx));
    let mut at = offset;
    while at < info.size {
        let (frames, bytes) = match rx.recv().await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => return Err(storage_failure(&e).into()),
            Err(_) => return Err(failure(FileErrorCode::Storage, "the file ended early").into()),
        };
        timed(w.send_encoded(&frames)).await?;
        at += bytes;
    }
    Ok(None)
}

/// A download's read-ahead task: reads `[from, to)` in batches of whole
/// chunk frames (header, offset, data), each batch one blocking call, so
/// the stream task only writes.
async fn read_frames(file: File, from: u64, to: u64, tx: Sender<std::io::Result<(Vec<u8>, u64)>>) {
    let mut file = Some(file);
    let mut at = from;
    while at < to {
        let Some(mut f) = file.take() else { return };
        let start = at;
        let (f, batch) = smol::unblock(move || {
            let batch = read_batch(&mut f, start, to);
            (f, batch)
        })
        .await;
        file = Some(f);
        let failed = batch.is_err();
        if let Ok((_, n)) = &batch {
            at += n;
        }
        if tx.send(batch).await.is_err() || failed {
            return;
        }
    }
}

/// Up to [`READ_BATCH`] chunk frames from `at` (the file is positioned
/// there), and how many file bytes they hold.
fn read_batch(file: &mut File, mut at: u64, to: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let first = at;
    let want = ((to - at) as usize).min(READ_BATCH * CHUNK_SIZE);
    let mut out = Vec::with_capacity(want + READ_BATCH * (HEADER_LEN + CHUNK_HEADER));
    for _ in 0..READ_BATCH {
        if at >= to {
            break;
        }
        let n = (to - at).min(CHUNK_SIZE as u64) as usize;
        encode_header(MsgType::FileChunk as u8, 0, CHUNK_HEADER + n, &mut out);
        out.extend_from_slice(&at.to_be_bytes());
        let start = out.len();
        out.resize(start + n, 0);
        file.read_exact(&mut out[start..])?;
        at += n as u64;
    }
    Ok((out, at - first))
}
