//! Real screen capture with scrap (X11 via XCB + MIT-SHM on Linux, which
//! includes Xvfb), and the one place a presenter asks for frames from either
//! a display or the synthetic `test` screen.

use super::synthetic::TestScreen;
use super::tiles::{FrameRef, PixelFormat};

/// Default capture rate, frames per second: screens change little, and
/// only changed tiles are sent.
pub const DEFAULT_FPS: u32 = 10;
/// Highest capture rate (`--screen-fps`), frames per second.
pub const MAX_FPS: u32 = 30;

#[derive(Debug, thiserror::Error)]
/// Why a screen cannot be captured; each message says what to do.
pub enum CaptureError {
    #[error(
        "screen capture needs an X11 display, and this looks like a Wayland session without X (WAYLAND_DISPLAY is set, DISPLAY is not); start XWayland, or share the `test` screen"
    )]
    /// A Wayland session without XWayland (scrap captures X11 only).
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
    #[error("screen capture is not supported on this platform")]
    /// This platform has no screen capture in this build (not X11).
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
    /// An X display name such as ":99"; blank means `$DISPLAY`.
    Display(String),
}

impl ScreenSource {
    /// `test` (1920×1080), `test:WxH`, or a display name (`:0`, `:99`, `host:1`).
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
    /// reads them (the X connection is not `Send`).
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
    /// An X display.
    Display(DisplayCapture),
}

impl Capture {
    /// The size of the last frame (or the first, before any).
    pub fn size(&self) -> (usize, usize) {
        match self {
            Capture::Test { screen, .. } => screen.size(),
            Capture::Display(d) => (d.width, d.height),
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

/// Which display name to use, or why there is none.
pub fn resolve_display(name: &str) -> Result<String, CaptureError> {
    let name = name.trim();
    if !name.is_empty() {
        return Ok(name.to_string());
    }
    match std::env::var("DISPLAY") {
        Ok(d) if !d.trim().is_empty() => Ok(d),
        _ if std::env::var_os("WAYLAND_DISPLAY").is_some() => Err(CaptureError::WaylandOnly),
        _ => Err(CaptureError::NoDisplay),
    }
}

#[cfg(all(unix, not(target_os = "macos")))]
/// An X11 display captured through scrap (XCB + MIT-SHM), BGRA frames.
pub struct DisplayCapture {
    capturer: scrap::x11::Capturer,
    /// Pixels per row of the last frame.
    pub width: usize,
    /// Rows of the last frame.
    pub height: usize,
    name: String,
    /// When the display's size was last checked (a resolution change needs
    /// a new capturer: scrap's shared-memory image has the old size).
    checked: std::time::Instant,
}

/// How often a shared X display is checked for a new resolution.
#[cfg(all(unix, not(target_os = "macos")))]
const GEOMETRY_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The X display's default monitor and its size.
#[cfg(all(unix, not(target_os = "macos")))]
fn default_display(name: &str) -> Result<(scrap::x11::Display, usize, usize), CaptureError> {
    use std::rc::Rc;
    let c_name =
        std::ffi::CString::new(name.to_string()).map_err(|_| CaptureError::Connect(name.into()))?;
    let server = scrap::x11::Server::connect(c_name.as_ptr().cast())
        .map_err(|_| CaptureError::Connect(name.into()))?;
    let mut displays: Vec<_> = scrap::x11::Server::displays(Rc::new(server)).collect();
    let pick = displays.iter().position(|d| d.is_default()).unwrap_or(0);
    if displays.is_empty() {
        return Err(CaptureError::NoMonitor(name.into()));
    }
    let display = displays.swap_remove(pick);
    let rect = display.rect();
    let (width, height) = (usize::from(rect.w), usize::from(rect.h));
    if width == 0 || height == 0 {
        return Err(CaptureError::NoMonitor(name.into()));
    }
    Ok((display, width, height))
}

#[cfg(all(unix, not(target_os = "macos")))]
impl DisplayCapture {
    /// Opens X display `name` (blank: `$DISPLAY`) and its default monitor.
    pub fn open(name: &str) -> Result<DisplayCapture, CaptureError> {
        let name = resolve_display(name)?;
        let (display, width, height) = default_display(&name)?;
        let capturer = scrap::x11::Capturer::new(display)
            .map_err(|source| CaptureError::Capturer { display: name.clone(), source })?;
        Ok(DisplayCapture { capturer, width, height, name, checked: std::time::Instant::now() })
    }

    /// The next frame, borrowed from scrap's shared memory; blocks until the
    /// X server has one. Every 2 s it checks the monitor's size and reopens the
    /// capturer when it changed.
    pub fn frame(&mut self) -> Result<FrameRef<'_>, CaptureError> {
        if self.checked.elapsed() >= GEOMETRY_CHECK {
            self.checked = std::time::Instant::now();
            // A new capturer only when the size changed (it allocates the
            // shared-memory image); keep the old one if X cannot be asked now.
            let changed = default_display(&self.name)
                .is_ok_and(|(_, w, h)| (w, h) != (self.width, self.height));
            if changed && let Ok(fresh) = DisplayCapture::open(&self.name) {
                tracing::info!(
                    "display {} changed from {}x{} to {}x{}",
                    self.name,
                    self.width,
                    self.height,
                    fresh.width,
                    fresh.height
                );
                *self = fresh;
            }
        }
        let (width, height) = (self.width, self.height);
        let data = self.capturer.frame();
        if data.len() < width * height * 4 {
            return Err(CaptureError::Frame(std::io::ErrorKind::UnexpectedEof.into()));
        }
        // X11 ZPixmap at depth 24/32: B, G, R, pad; rows are not padded.
        Ok(FrameRef { width, height, stride: width * 4, format: PixelFormat::Bgra, data })
    }
}

/// The primary display captured through scrap (Windows: DXGI; macOS:
/// CoreGraphics), BGRA frames.
#[cfg(not(all(unix, not(target_os = "macos"))))]
pub struct DisplayCapture {
    capturer: scrap::Capturer,
    buf: Vec<u8>,
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
}

#[cfg(not(all(unix, not(target_os = "macos"))))]
impl DisplayCapture {
    /// Elsewhere scrap picks the primary display; `name` is ignored.
    pub fn open(_name: &str) -> Result<DisplayCapture, CaptureError> {
        let display = scrap::Display::primary()
            .map_err(|source| CaptureError::Capturer { display: "primary".into(), source })?;
        let (width, height) = (display.width(), display.height());
        let capturer = scrap::Capturer::new(display)
            .map_err(|source| CaptureError::Capturer { display: "primary".into(), source })?;
        Ok(DisplayCapture { capturer, buf: Vec::new(), width, height })
    }

    /// The next frame, copied out of scrap's buffer.
    pub fn frame(&mut self) -> Result<FrameRef<'_>, CaptureError> {
        let (width, height) = (self.width, self.height);
        let frame = self.capturer.frame().map_err(CaptureError::Frame)?;
        self.buf.clear();
        self.buf.extend_from_slice(&frame);
        let stride = self.buf.len() / height.max(1);
        Ok(FrameRef { width, height, stride, format: PixelFormat::Bgra, data: &self.buf })
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
