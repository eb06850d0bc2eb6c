//! The file-sharing part of a bot: send one file (to the room or to one
//! member, once they are there) and fetch every file offered to it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use smol::Task;
use smol::future::FutureExt;

use super::files::{Dest, FileClient, FileError, UploadOptions};
use super::session::Client;
use crate::proto::FileInfo;
use crate::proto::text::confusable_key;

/// How long a bot that is leaving waits for transfers still running.
const FINISH_WAIT: Duration = Duration::from_secs(120);

/// One file a bot sent or fetched, as its JSON report shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileReport {
    pub id: u64,
    pub name: String,
    pub bytes: u64,
    /// Sent: the host verified it; fetched: it matched the host's MD5.
    pub md5_ok: bool,
    pub seconds: f64,
    /// true for the file this bot sent, false for one it fetched.
    pub sent: bool,
}

type Outcome = Result<FileReport, String>;

/// `--send-file PATH` and `--fetch-files DIR` (the recipient is the bot's `--to`).
#[derive(Debug, Clone, Default)]
pub struct BotFileOptions {
    pub send_file: Option<PathBuf>,
    pub fetch_dir: Option<PathBuf>,
}

pub struct FileBot {
    files: FileClient,
    send: Option<(PathBuf, Option<String>)>,
    fetch_dir: Option<PathBuf>,
    tasks: Vec<Task<Outcome>>,
}

impl FileBot {
    pub fn new(client: &Client, opts: &BotFileOptions, to: Option<String>) -> FileBot {
        FileBot {
            files: FileClient::for_client(client),
            send: opts.send_file.clone().map(|p| (p, to)),
            fetch_dir: opts.fetch_dir.clone(),
            tasks: Vec::new(),
        }
    }

    /// Starts the upload once its recipient (if any) is in the room.
    pub fn poll(&mut self, members: &[String]) {
        let ready = match &self.send {
            Some((_, Some(to))) => members.iter().any(|m| confusable_key(m) == confusable_key(to)),
            Some((_, None)) => true,
            None => false,
        };
        if !ready {
            return;
        }
        let Some((path, to)) = self.send.take() else { return };
        let files = self.files.clone();
        self.tasks.push(smol::spawn(async move {
            let started = Instant::now();
            let info = files
                .upload(&path, UploadOptions { to, name: None }, None)
                .await
                .map_err(|e| format!("file {} not sent: {e}", path.display()))?;
            Ok(report(&info, started, true))
        }));
    }

    /// Fetches an offered file, if this bot fetches files.
    pub fn offered(&mut self, info: FileInfo) {
        let Some(dir) = self.fetch_dir.clone() else { return };
        let files = self.files.clone();
        self.tasks.push(smol::spawn(async move {
            let started = Instant::now();
            match files.download(info.id, Dest::Dir(dir), None).await {
                Ok(d) => Ok(report(&d.info, started, false)),
                Err(FileError::Md5Mismatch) => {
                    Ok(FileReport { md5_ok: false, ..report(&info, started, false) })
                }
                Err(e) => Err(format!("file {} (\"{}\") not fetched: {e}", info.id, info.name)),
            }
        }));
    }

    /// Waits for running transfers; reports them, and their errors into `errors`.
    pub async fn finish(self, errors: &mut Vec<String>) -> Vec<FileReport> {
        let mut out = Vec::new();
        if let Some((path, Some(to))) = &self.send {
            errors.push(format!(
                "\"{to}\" never joined the meeting, so {} was not sent",
                path.display()
            ));
        }
        let deadline = Instant::now() + FINISH_WAIT;
        for t in self.tasks {
            let r = async { Some(t.await) }
                .or(async {
                    smol::Timer::at(deadline).await;
                    None
                })
                .await;
            match r {
                Some(Ok(f)) => {
                    if !f.md5_ok {
                        errors.push(format!("file {} arrived damaged (MD5 mismatch)", f.id));
                    }
                    out.push(f)
                }
                Some(Err(e)) => errors.push(e),
                None => errors.push("a file transfer was still running when the bot left".into()),
            }
        }
        out
    }
}

fn report(info: &FileInfo, started: Instant, sent: bool) -> FileReport {
    FileReport {
        id: info.id,
        name: info.name.clone(),
        bytes: info.size,
        md5_ok: true,
        seconds: started.elapsed().as_secs_f64(),
        sent,
    }
}
