//! Real screen capture, and the one place a presenter asks for frames from
//! either a display or the synthetic `test` screen.
//!
//! Backends ([`select_backend`] picks one):
//! - X11 (Linux, including Xvfb and XWayland): scrap, XCB + MIT-SHM on a named
//!   display ([`super::x11`]).
//! - Wayland (Linux, cargo feature `wayland-capture`): xcap's XDG desktop
//!   portal ScreenCast stream over PipeWire ([`super::portal`]).
//! - Windows and macOS: xcap's monitor capture (DXGI/GDI, CoreGraphics)
//!   (`native.rs`, built for those targets only).

use super::synthetic::TestScreen;
use super::tiles::FrameRef;

/// Default capture rate, frames per second: screens change little, and
/// only changed tiles are sent.
pub const DEFAULT_FPS: u32 = 10;
/// Highest capture rate (`--screen-fps`), frames per second.
pub const MAX_FPS: u32 = 30;

#[derive(Debug, thiserror::Error)]
/// Why a screen cannot be captured; each message says what to do.
pub enum CaptureError {
    #[error(
        "this is a Wayland session without X (WAYLAND_DISPLAY is set, DISPLAY is not) and this build has no Wayland capture (cargo feature `wayland-capture`); start XWayland, or share the `test` screen"
    )]
    /// A Wayland session without XWayland, in a build without the portal backend.
    WaylandOnly,
    #[error(
        "no display to capture: DISPLAY is unset. Give one (e.g. --share-screen :99 with `Xvfb :99 -screen 0 1920x1080x24 &`), or share the `test` screen"
    )]
    /// `DISPLAY` is unset and no display was named.
    NoDisplay,
    #[error("cannot connect to X display \"{0}\": is an X server running there?")]
    /// The X display (named here) did not accept a connection.
    Connect(String),
    #[error("X display \"{0}\" has no monitor to capture")]
    /// The X display (named here) reports no monitor, or a 0-sized one.
    NoMonitor(String),
    #[error("cannot capture X display \"{display}\" (needs the MIT-SHM extension): {source}")]
    /// The capturer could not start (e.g. no MIT-SHM).
    Capturer {
        /// The X display name.
        display: String,
        /// scrap's error.
        source: std::io::Error,
    },
    #[error("reading a frame from the screen failed: {0}")]
    /// Reading one frame failed (scrap's error).
    Frame(std::io::Error),
    #[error(
        "Wayland screen capture through the desktop portal failed: {0}. It needs xdg-desktop-portal with a backend for this desktop (GNOME, KDE, wlroots) and PipeWire; otherwise share an X display (--share-screen :0) or the `test` screen"
    )]
    /// The XDG desktop portal or its PipeWire stream could not be used (the
    /// reason is in the message).
    Portal(String),
    #[error(
        "the desktop portal gave no screen within {0} s: was the screen-sharing dialog dismissed or left open?"
    )]
    /// The portal did not answer in time (seconds), e.g. its dialog is still open.
    PortalTimeout(u64),
    #[error(
        "this build has no Wayland screen capture (cargo feature `wayland-capture`); share an X display (--share-screen :0) or the `test` screen"
    )]
    /// `portal` was asked for in a build without the `wayland-capture` feature.
    PortalNotBuilt,
    #[error("cannot capture the screen: {0}")]
    /// The platform capturer (xcap on Windows/macOS) failed; its reason.
    Native(String),
    #[error("screen capture is not supported on this platform")]
    /// This platform has no screen capture in this build.
    Unsupported,
}

/// The size of a [`ScreenSource::Resizable`] test screen, changeable while
/// it is shared (as a monitor's resolution changes). Clones share the size.
#[derive(Debug, Clone)]
pub struct TestSize(std::sync::Arc<std::sync::Mutex<(usize, usize)>>);

impl TestSize {
    /// A test screen size of `width` × `height` pixels.
    pub fn new(width: usize, height: usize) -> TestSize {
        TestSize(std::sync::Arc::new(std::sync::Mutex::new((width, height))))
    }
    /// The current size (width, height), pixels.
    pub fn get(&self) -> (usize, usize) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The next frame captured has this size.
    pub fn set(&self, width: usize, height: usize) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = (width, height);
    }
}

impl PartialEq for TestSize {
    fn eq(&self, other: &TestSize) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TestSize {}

/// What to share: a display or the synthetic test screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenSource {
    /// The `test` screen at this size.
    Test {
        /// Pixels per row (at least 64).
        width: usize,
        /// Rows (at least 64).
        height: usize,
    },
    /// The `test` screen at a size that may change while it is shared.
    Resizable(TestSize),
    /// A display: an X display name such as ":99", `portal` (Wayland: the
    /// desktop portal's screen cast), a monitor name (Windows/macOS), or
    /// blank for this session's own screen (see [`select_backend`]).
    Display(String),
}

impl ScreenSource {
    /// `test` (1920×1080), `test:WxH`, or a display name (`:0`, `:99`,
    /// `host:1`, `portal`).
    pub fn parse(s: &str) -> ScreenSource {
        let s = s.trim();
        if s == "test" {
            return ScreenSource::Test { width: 1920, height: 1080 };
        }
        if let Some((w, h)) = s.strip_prefix("test:").and_then(|r| r.split_once('x'))
            && let (Ok(width), Ok(height)) = (w.parse(), h.parse())
        {
            return ScreenSource::Test { width, height };
        }
        ScreenSource::Display(s.to_string())
    }

    /// Opens the source. Real displays must be opened on the thread that
    /// reads them (the X connection is not `Send`). Opening the Wayland portal
    /// waits for the user's choice in the desktop's dialog (at most
    /// [`PORTAL_TIMEOUT`]).
    pub fn open(&self) -> Result<Capture, CaptureError> {
        Ok(match self {
            ScreenSource::Test { width, height } => {
                Capture::Test { screen: TestScreen::new(*width, *height), n: 0, size: None }
            }
            ScreenSource::Resizable(size) => {
                let (width, height) = size.get();
                Capture::Test {
                    screen: TestScreen::new(width, height),
                    n: 0,
                    size: Some(size.clone()),
                }
            }
            ScreenSource::Display(name) => Capture::Display(DisplayCapture::open(name)?),
        })
    }
}

/// An open source of frames. Its size may change between frames (a
/// monitor's resolution changed): each [`FrameRef`] carries its own.
pub enum Capture {
    /// The synthetic `test` screen.
    Test {
        /// The synthetic screen.
        screen: TestScreen,
        /// Frames drawn so far (the animation step).
        n: u64,
        /// Where a resizable test screen's size is read from.
        size: Option<TestSize>,
    },
    /// A real display.
    Display(DisplayCapture),
}

impl Capture {
    /// The size of the last frame (or the first, before any).
    pub fn size(&self) -> (usize, usize) {
        match self {
            Capture::Test { screen, .. } => screen.size(),
            Capture::Display(d) => d.size(),
        }
    }

    /// The next frame (the test screen advances one step per call).
    pub fn frame(&mut self) -> Result<FrameRef<'_>, CaptureError> {
        match self {
            Capture::Test { screen, n, size } => {
                if let Some(want) = size.as_ref().map(TestSize::get)
                    && want != screen.size()
                {
                    *screen = TestScreen::new(want.0, want.1);
                }
                *n += 1;
                Ok(screen.frame(*n))
            }
            Capture::Display(d) => d.frame(),
        }
    }
}

/// How long opening the Wayland portal may wait for the user to pick a
/// screen in the desktop's dialog before [`CaptureError::PortalTimeout`].
pub const PORTAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// The display-related environment of this session, as read by
/// [`SessionEnv::from_env`]; blank values count as unset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionEnv {
    /// `$DISPLAY` (X11 or XWayland).
    pub display: Option<String>,
    /// `$WAYLAND_DISPLAY`.
    pub wayland_display: Option<String>,
    /// `$XDG_SESSION_TYPE` (`x11`, `wayland`, `tty`, ...).
    pub session_type: Option<String>,
}

impl SessionEnv {
    /// This process's environment.
    pub fn from_env() -> SessionEnv {
        let var = |k| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        SessionEnv {
            display: var("DISPLAY"),
            wayland_display: var("WAYLAND_DISPLAY"),
            session_type: var("XDG_SESSION_TYPE"),
        }
    }

    /// A Wayland session: `XDG_SESSION_TYPE=wayland` or `WAYLAND_DISPLAY` set.
    pub fn is_wayland(&self) -> bool {
        self.session_type.as_deref().is_some_and(|t| t.trim().eq_ignore_ascii_case("wayland"))
            || self.wayland_display.is_some()
    }
}

/// Which capturer a display name opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// An X11 display (scrap), by name such as ":99".
    X11(String),
    /// The XDG desktop portal's screen cast (Wayland).
    Portal,
    /// A monitor of the platform's own capture API (Windows, macOS): blank
    /// is the primary monitor.
    Native(String),
}

/// Whether this build has the Wayland (portal) backend.
pub const HAS_PORTAL: bool = cfg!(all(target_os = "linux", feature = "wayland-capture"));

/// Picks the backend for display `name` in session `env`, as on Linux:
/// `portal` is the portal; any other name is an X display; blank is the
/// portal in a Wayland session (XWayland would show only X clients), else
/// `$DISPLAY`. `has_portal` is [`HAS_PORTAL`] (a parameter for tests).
///
/// Errors: [`CaptureError::PortalNotBuilt`] for `portal` without the backend;
/// a blank name gives [`CaptureError::WaylandOnly`] in a Wayland session
/// without `DISPLAY` and the backend, [`CaptureError::NoDisplay`] with neither.
pub fn select_backend_unix(
    name: &str,
    env: &SessionEnv,
    has_portal: bool,
) -> Result<Backend, CaptureError> {
    let name = name.trim();
    if name.eq_ignore_ascii_case("portal") {
        return if has_portal { Ok(Backend::Portal) } else { Err(CaptureError::PortalNotBuilt) };
    }
    if !name.is_empty() {
        return Ok(Backend::X11(name.to_string()));
    }
    if env.is_wayland() && has_portal {
        return Ok(Backend::Portal);
    }
    match &env.display {
        Some(d) => Ok(Backend::X11(d.trim().to_string())),
        None if env.is_wayland() => Err(CaptureError::WaylandOnly),
        None => Err(CaptureError::NoDisplay),
    }
}

/// The backend display `name` opens on this platform, in this session.
pub fn select_backend(name: &str) -> Result<Backend, CaptureError> {
    if cfg!(any(target_os = "windows", target_os = "macos")) {
        return if name.trim().eq_ignore_ascii_case("portal") {
            Err(CaptureError::PortalNotBuilt)
        } else {
            Ok(Backend::Native(name.trim().to_string()))
        };
    }
    select_backend_unix(name, &SessionEnv::from_env(), HAS_PORTAL)
}

/// Which X display name to use, or why there is none (blank: `$DISPLAY`).
pub fn resolve_display(name: &str) -> Result<String, CaptureError> {
    match select_backend_unix(name, &SessionEnv::from_env(), false)? {
        Backend::X11(d) | Backend::Native(d) => Ok(d),
        Backend::Portal => Err(CaptureError::PortalNotBuilt),
    }
}

/// An open real display: whichever backend [`select_backend`] chose.
pub enum DisplayCapture {
    /// An X11 display through scrap.
    #[cfg(target_os = "linux")]
    X11(super::x11::X11Capture),
    /// The Wayland desktop portal's screen cast through xcap.
    #[cfg(all(target_os = "linux", feature = "wayland-capture"))]
    Portal(super::portal::PortalCapture),
    /// A monitor through xcap (Windows, macOS).
    #[cfg(any(target_os = "windows", target_os = "macos"))]
    Native(super::native::NativeCapture),
}

impl DisplayCapture {
    /// Opens display `name` with the backend [`select_backend`] picks.
    pub fn open(name: &str) -> Result<DisplayCapture, CaptureError> {
        match select_backend(name)? {
            #[cfg(target_os = "linux")]
            Backend::X11(display) => {
                Ok(DisplayCapture::X11(super::x11::X11Capture::open(&display)?))
            }
            #[cfg(all(target_os = "linux", feature = "wayland-capture"))]
            Backend::Portal => Ok(DisplayCapture::Portal(super::portal::PortalCapture::open()?)),
            #[cfg(any(target_os = "windows", target_os = "macos"))]
            Backend::Native(monitor) => {
                Ok(DisplayCapture::Native(super::native::NativeCapture::open(&monitor)?))
            }
            #[allow(unreachable_patterns)]
            _ => Err(CaptureError::Unsupported),
        }
    }

    /// The size of the last frame (width, height), pixels.
    pub fn size(&self) -> (usize, usize) {
        match self {
            #[cfg(target_os = "linux")]
            DisplayCapture::X11(c) => (c.width, c.height),
            #[cfg(all(target_os = "linux", feature = "wayland-capture"))]
            DisplayCapture::Portal(c) => c.size(),
            #[cfg(any(target_os = "windows", target_os = "macos"))]
            DisplayCapture::Native(c) => c.size(),
        }
    }

    /// The next frame.
    pub fn frame(&mut self) -> Result<FrameRef<'_>, CaptureError> {
        match self {
            #[cfg(target_os = "linux")]
            DisplayCapture::X11(c) => c.frame(),
            #[cfg(all(target_os = "linux", feature = "wayland-capture"))]
            DisplayCapture::Portal(c) => c.frame(),
            #[cfg(any(target_os = "windows", target_os = "macos"))]
            DisplayCapture::Native(c) => c.frame(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse() {
        assert_eq!(ScreenSource::parse("test"), ScreenSource::Test { width: 1920, height: 1080 });
        assert_eq!(
            ScreenSource::parse("test:640x480"),
            ScreenSource::Test { width: 640, height: 480 }
        );
        assert_eq!(ScreenSource::parse(":99"), ScreenSource::Display(":99".into()));
    }

    fn env(display: Option<&str>, wayland: Option<&str>, session: Option<&str>) -> SessionEnv {
        SessionEnv {
            display: display.map(Into::into),
            wayland_display: wayland.map(Into::into),
            session_type: session.map(Into::into),
        }
    }

    #[test]
    fn named_x_displays_are_x11_in_any_session() {
        for e in [env(None, None, None), env(Some(":0"), Some("wayland-0"), Some("wayland"))] {
            for portal in [false, true] {
                assert_eq!(
                    select_backend_unix(" :99 ", &e, portal).unwrap(),
                    Backend::X11(":99".into())
                );
            }
        }
    }

    #[test]
    fn an_x11_session_shares_its_display() {
        let e = env(Some(":1"), None, Some("x11"));
        assert_eq!(select_backend_unix("", &e, true).unwrap(), Backend::X11(":1".into()));
        assert_eq!(select_backend_unix("", &e, false).unwrap(), Backend::X11(":1".into()));
    }

    #[test]
    fn a_wayland_session_uses_the_portal_when_built() {
        // GNOME/KDE Wayland with XWayland: XWayland would show only X clients.
        let e = env(Some(":0"), Some("wayland-0"), Some("wayland"));
        assert_eq!(select_backend_unix("", &e, true).unwrap(), Backend::Portal);
        // Either variable alone marks a Wayland session.
        let only_var = env(None, Some("wayland-1"), None);
        assert_eq!(select_backend_unix("", &only_var, true).unwrap(), Backend::Portal);
        let only_type = env(None, None, Some("Wayland"));
        assert_eq!(select_backend_unix("", &only_type, true).unwrap(), Backend::Portal);
        // Without the backend: XWayland as before, or a clear error.
        assert_eq!(select_backend_unix("", &e, false).unwrap(), Backend::X11(":0".into()));
        assert!(matches!(
            select_backend_unix("", &only_var, false),
            Err(CaptureError::WaylandOnly)
        ));
    }

    #[test]
    fn portal_by_name_and_no_display_at_all() {
        let none = env(None, None, Some("tty"));
        assert_eq!(select_backend_unix("portal", &none, true).unwrap(), Backend::Portal);
        assert!(matches!(
            select_backend_unix("Portal", &none, false),
            Err(CaptureError::PortalNotBuilt)
        ));
        assert!(matches!(select_backend_unix("  ", &none, true), Err(CaptureError::NoDisplay)));
        let msg = CaptureError::NoDisplay.to_string();
        assert!(msg.contains("DISPLAY is unset") && msg.contains("test"), "{msg}");
    }

    #[test]
    fn session_type_is_trimmed_and_case_blind() {
        let e = env(None, None, Some(" x11 "));
        assert!(!e.is_wayland());
        assert!(env(None, None, Some(" wayland ")).is_wayland());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_missing_x_server_is_a_clear_error() {
        // Display 250 is almost certainly not running; either way no panic.
        match DisplayCapture::open(":250") {
            Err(CaptureError::Connect(name)) => assert_eq!(name, ":250"),
            Err(e) => panic!("unexpected error: {e}"),
            Ok(_) => {} // someone runs an X server on :250
        }
    }
}
