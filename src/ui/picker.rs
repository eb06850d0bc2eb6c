//! The native "choose a file" dialog, as an effect the app can swap out:
//! the real one is rfd's XDG desktop portal dialog (zenity when there is no
//! portal), tests put in one that answers at once without opening windows.
//! Either way it runs as a future inside an iced task, so the window keeps
//! drawing while the dialog is open.

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the user did with the dialog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    File(PathBuf),
    Cancelled,
    /// No dialog could be shown; the text says why and what to do instead.
    Unavailable(String),
}

pub type PickFuture = Pin<Box<dyn Future<Output = Picked> + Send>>;

/// Opens a file dialog and resolves to the user's choice.
#[derive(Clone)]
pub struct FilePicker(Arc<dyn Fn() -> PickFuture + Send + Sync>);

impl fmt::Debug for FilePicker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FilePicker")
    }
}

impl Default for FilePicker {
    fn default() -> FilePicker {
        FilePicker::native()
    }
}

/// rfd answers "nothing chosen" both when the user cancels and when no
/// dialog could be shown (portal and zenity both failed). Nobody cancels a
/// dialog faster than this after asking for it, so a quicker "nothing" means
/// no dialog appeared.
const FASTEST_HUMAN_CANCEL: Duration = Duration::from_millis(400);

const NO_DIALOG: &str = "No file dialog can be shown here (no desktop portal on the session \
                         bus and no zenity installed): type or paste the file's path instead.";

impl FilePicker {
    /// The system's dialog (rfd: XDG desktop portal, else zenity).
    pub fn native() -> FilePicker {
        FilePicker(Arc::new(|| Box::pin(native_pick())))
    }

    /// A picker that runs `f` instead of showing a dialog (tests, scripts).
    pub fn from_fn<F, Fut>(f: F) -> FilePicker
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Picked> + Send + 'static,
    {
        FilePicker(Arc::new(move || Box::pin(f())))
    }

    pub fn pick(&self) -> PickFuture {
        (self.0)()
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| is_executable(&d.join(program))))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Elsewhere (Windows) there is no execute bit: any file counts.
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// Whether libdbus could find a session bus (where the portal lives):
/// the address variable, or the standard socket under `$XDG_RUNTIME_DIR`.
fn session_bus() -> bool {
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty())
        || std::env::var_os("XDG_RUNTIME_DIR")
            .is_some_and(|d| !d.is_empty() && Path::new(&d).join("bus").exists())
}

async fn native_pick() -> Picked {
    if !session_bus() && !on_path("zenity") {
        return Picked::Unavailable(NO_DIALOG.into());
    }
    let mut dialog = rfd::AsyncFileDialog::new().set_title("Send a file to the meeting");
    if let Some(home) = directories::UserDirs::new().map(|d| d.home_dir().to_path_buf()) {
        dialog = dialog.set_directory(home);
    }
    let asked = Instant::now();
    // rfd runs the portal call (or zenity) on a thread of its own and hands
    // the answer back through a oneshot, so this future needs no runtime.
    match dialog.pick_file().await {
        Some(file) => Picked::File(file.path().to_path_buf()),
        None if asked.elapsed() < FASTEST_HUMAN_CANCEL => Picked::Unavailable(NO_DIALOG.into()),
        None => Picked::Cancelled,
    }
}
