//! File transfers started from the call's files panel: the upload/download
//! tasks, their progress as messages, and where downloads go.

use iced::Task;

use super::call::Notice;
use super::{App, Message, call, files};
use crate::client::files::{Dest, FileClient, Progress, UploadOptions};

/// A file transfer's progress, then its outcome.
#[derive(Debug, Clone)]
pub enum FileUpdate {
    Progress(Progress),
    Done(Result<String, String>),
}

/// Which transfer an update belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferKey {
    Upload(String),
    Download(u64),
}

impl App {
    pub(super) fn file_client(&self) -> Option<FileClient> {
        let s = self.session.as_ref()?;
        Some(FileClient::for_client(&s.client))
    }

    pub(super) fn file_event(&mut self, event: files::Event) -> Task<Message> {
        match event {
            // The dialog is a future on the executor: the window keeps
            // drawing while it is open, and the typed path still works.
            files::Event::Browse => Task::perform(self.file_picker.pick(), |p| {
                Message::Call(call::Message::Files(files::Message::Picked(p)))
            }),
            files::Event::Failed(why) => self.notify(Notice { text: why, error: true }),
            files::Event::Upload { path, to } => {
                let Some(fc) = self.file_client() else { return Task::none() };
                transfer(TransferKey::Upload(path.clone()), move |p| async move {
                    let opts = UploadOptions { to, name: None };
                    fc.upload_done(std::path::Path::new(&path), opts, Some(p))
                        .await
                        .map(|d| match d.notice {
                            // The recipient left: "shared" alone would mislead.
                            Some(n) => format!("stored as \"{}\"; {n}", d.file.name),
                            None => format!("shared as \"{}\"", d.file.name),
                        })
                        .map_err(|e| e.to_string())
                })
            }
            files::Event::Download(id) => {
                let Some(fc) = self.file_client() else { return Task::none() };
                let dir = download_dir();
                transfer(TransferKey::Download(id), move |p| async move {
                    fc.download(id, Dest::Dir(dir), Some(p))
                        .await
                        .map(|d| format!("saved to {}", d.path.display()))
                        .map_err(|e| e.to_string())
                })
            }
        }
    }

    pub(super) fn file_update(&mut self, key: TransferKey, update: FileUpdate) -> Task<Message> {
        let Some(call) = &mut self.call else { return Task::none() };
        let state = match &update {
            FileUpdate::Progress(Progress::Bytes { done, total }) => {
                files::Transfer::Running(if *total == 0 {
                    1.0
                } else {
                    *done as f32 / *total as f32
                })
            }
            FileUpdate::Progress(_) => return Task::none(),
            FileUpdate::Done(Ok(s)) => files::Transfer::Done(s.clone()),
            FileUpdate::Done(Err(e)) => files::Transfer::Failed(e.clone()),
        };
        match &key {
            TransferKey::Upload(path) => call.files.upload_progress(path, state),
            TransferKey::Download(id) => call.files.progress(*id, state),
        }
        match update {
            FileUpdate::Done(Ok(s)) => {
                self.notify(Notice { text: format!("File {s}"), error: false })
            }
            FileUpdate::Done(Err(e)) => self.notify(Notice { text: e, error: true }),
            FileUpdate::Progress(_) => Task::none(),
        }
    }
}

/// Runs a file transfer on the executor and streams its progress and
/// outcome back as messages.
fn transfer<F, Fut>(key: TransferKey, job: F) -> Task<Message>
where
    F: FnOnce(smol::channel::Sender<Progress>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + Send + 'static,
{
    let (tx, rx) = smol::channel::unbounded::<FileUpdate>();
    let (ptx, prx) = smol::channel::bounded::<Progress>(16);
    let forward = tx.clone();
    smol::spawn(async move {
        while let Ok(p) = prx.recv().await {
            if forward.send(FileUpdate::Progress(p)).await.is_err() {
                break;
            }
        }
    })
    .detach();
    smol::spawn(async move {
        let result = job(ptx).await;
        let _ = tx.send(FileUpdate::Done(result)).await;
    })
    .detach();
    Task::run(rx, move |u| Message::File(key.clone(), u))
}

/// Downloads go to the user's download folder, else home, else here.
fn download_dir() -> std::path::PathBuf {
    directories::UserDirs::new()
        .and_then(|d| {
            d.download_dir().map(|p| p.to_path_buf()).or_else(|| Some(d.home_dir().to_path_buf()))
        })
        .unwrap_or_else(|| std::path::PathBuf::from("."))
}
