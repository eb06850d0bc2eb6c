//! X11 screen capture with scrap: XCB + MIT-SHM on a named display
//! (Xvfb, a desktop's X server, XWayland), BGRA frames borrowed from the
//! shared-memory image.

use super::capture::{CaptureError, resolve_display};
use super::tiles::{FrameRef, PixelFormat};

/// An X11 display captured through scrap (XCB + MIT-SHM), BGRA frames.
pub struct X11Capture {
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
const GEOMETRY_CHECK: std::time::Duration = std::time::Duration::from_secs(2);

/// The X display's default monitor and its size.
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

impl X11Capture {
    /// Opens X display `name` (blank: `$DISPLAY`) and its default monitor.
    pub fn open(name: &str) -> Result<X11Capture, CaptureError> {
        let name = resolve_display(name)?;
        let (display, width, height) = default_display(&name)?;
        let capturer = scrap::x11::Capturer::new(display)
            .map_err(|source| CaptureError::Capturer { display: name.clone(), source })?;
        Ok(X11Capture { capturer, width, height, name, checked: std::time::Instant::now() })
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
            if changed && let Ok(fresh) = X11Capture::open(&self.name) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// An Xvfb server on a free display (`-displayfd`), killed on drop.
    struct Xvfb {
        server: Child,
        display: String,
    }

    impl Xvfb {
        /// A 640×480 screen whose root window is white (`-wr`); `None` if
        /// Xvfb is not installed (scripts/setup.sh installs it).
        fn start() -> Option<Xvfb> {
            let mut server = Command::new("Xvfb")
                .args(["-displayfd", "1", "-screen", "0", "640x480x24", "-nolisten", "tcp", "-wr"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let mut line = String::new();
            BufReader::new(server.stdout.take()?).read_line(&mut line).ok()?;
            let display = format!(":{}", line.trim());
            Some(Xvfb { server, display })
        }
    }

    impl Drop for Xvfb {
        fn drop(&mut self) {
            let _ = self.server.kill();
            let _ = self.server.wait();
        }
    }

    #[test]
    fn an_xvfb_screen_is_captured_at_its_size_and_colour() {
        let Some(x) = Xvfb::start() else {
            eprintln!("skipped: Xvfb is not installed (scripts/setup.sh installs it)");
            return;
        };
        let mut cap = X11Capture::open(&x.display).expect("open Xvfb");
        assert_eq!((cap.width, cap.height), (640, 480));
        let frame = cap.frame().expect("a frame");
        assert_eq!((frame.width, frame.height, frame.stride), (640, 480, 640 * 4));
        assert_eq!(frame.format, PixelFormat::Bgra);
        // The white root window: every pixel's B, G and R are 255.
        let rows = frame.data.chunks(frame.stride).take(frame.height);
        assert!(rows.flat_map(|r| r[..frame.width * 4].chunks(4)).all(|p| p[..3] == [255; 3]));
    }
}
