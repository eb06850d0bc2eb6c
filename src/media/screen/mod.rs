//! Screen sharing media: capture (X11 through scrap, Wayland through the
//! desktop portal, Windows/macOS through xcap, or the synthetic `test`
//! screen), the 64×64 changed-tile encoder, the viewer's canvas, and a PNG
//! writer for snapshots. The relay is `server::screen`; the session side is
//! `client::screen`.

pub mod capture;
#[cfg(any(target_os = "windows", target_os = "macos"))]
pub mod native;
pub mod png;
#[cfg(all(target_os = "linux", feature = "wayland-capture"))]
pub mod portal;
pub mod scale;
pub mod synthetic;
pub mod tiles;
#[cfg(target_os = "linux")]
pub mod x11;

pub use capture::{Capture, CaptureError, DEFAULT_FPS, MAX_FPS, ScreenSource, TestSize};
pub use png::{PngError, encode_png_rgba};
pub use scale::{Downscaler, SHARE_MAX, share_size};
pub use synthetic::TestScreen;
pub use tiles::{
    Canvas, DEFAULT_QUALITY, EncodedTile, FrameRef, PixelFormat, TileEncoder, TileError,
};
