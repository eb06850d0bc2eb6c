//! Screen capture on Windows and macOS through xcap (Windows: DXGI desktop
//! duplication with a GDI fallback; macOS: CoreGraphics), RGBA frames.

use super::capture::CaptureError;
use super::tiles::{FrameRef, PixelFormat};

/// A monitor captured through xcap, one screenshot per frame.
pub struct NativeCapture {
    monitor: xcap::Monitor,
    buf: Vec<u8>,
    width: usize,
    height: usize,
}

impl NativeCapture {
    /// Opens the monitor named `name` (xcap's monitor name, e.g.
    /// `\\.\DISPLAY1`), or the primary monitor when `name` is blank.
    ///
    /// Errors: [`CaptureError::Native`] when the monitors cannot be listed or
    /// none has that name (the message lists the names there are).
    pub fn open(name: &str) -> Result<NativeCapture, CaptureError> {
        let err = |e: xcap::XCapError| CaptureError::Native(e.to_string());
        let monitors = xcap::Monitor::all().map_err(err)?;
        let name = name.trim();
        let pick = if name.is_empty() {
            monitors
                .iter()
                .position(|m| m.is_primary().unwrap_or(false))
                .or(if monitors.is_empty() { None } else { Some(0) })
        } else {
            monitors.iter().position(|m| m.name().is_ok_and(|n| n == name))
        };
        let Some(i) = pick else {
            let names: Vec<String> = monitors.iter().filter_map(|m| m.name().ok()).collect();
            return Err(CaptureError::Native(if name.is_empty() {
                "no monitor found".into()
            } else {
                format!("no monitor named \"{name}\" (there are: {})", names.join(", "))
            }));
        };
        let monitor = monitors[i].clone();
        let width = monitor.width().map_err(err)? as usize;
        let height = monitor.height().map_err(err)? as usize;
        Ok(NativeCapture { monitor, buf: Vec::new(), width, height })
    }

    /// The size of the last frame (width, height), pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The next frame: a fresh screenshot of the monitor (its size may change).
    pub fn frame(&mut self) -> Result<FrameRef<'_>, CaptureError> {
        let image =
            self.monitor.capture_image().map_err(|e| CaptureError::Native(e.to_string()))?;
        let (width, height) = (image.width() as usize, image.height() as usize);
        self.buf = image.into_raw();
        if width == 0 || height == 0 || self.buf.len() < width * height * 4 {
            return Err(CaptureError::Frame(std::io::ErrorKind::UnexpectedEof.into()));
        }
        (self.width, self.height) = (width, height);
        Ok(FrameRef {
            width,
            height,
            stride: width * 4,
            format: PixelFormat::Rgba,
            data: &self.buf,
        })
    }
}
