//! Screen sharing media: capture (scrap, or the synthetic `test` screen),
//! the 64×64 changed-tile encoder, the viewer's canvas, and a PNG writer for
//! snapshots. The relay is `server::screen`; the session side is
//! `client::screen`.

pub mod capture;
pub mod png;
pub mod scale;
pub mod synthetic;
pub mod tiles;

pub use capture::{Capture, CaptureError, DEFAULT_FPS, MAX_FPS, ScreenSource, TestSize};
pub use png::{PngError, encode_png_rgba};
pub use scale::{Downscaler, SHARE_MAX, share_size};
pub use synthetic::TestScreen;
pub use tiles::{
    Canvas, DEFAULT_QUALITY, EncodedTile, FrameRef, PixelFormat, TileEncoder, TileError,
};
