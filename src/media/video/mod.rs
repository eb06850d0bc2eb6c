//! Camera video: capture (nokhwa devices or the test pattern), thumbnail
//! scaling, fragmentation and reassembly, and receive statistics. JPEG itself
//! is `media::jpeg`; the network drivers are `client::video` and
//! `server::video`.

pub mod camera;
pub mod fragment;
pub mod pattern;
pub mod scale;
pub mod stats;

pub use camera::{CameraChoice, CameraError, CaptureConfig, FrameSource, describe_cameras};
pub use fragment::{Assembled, Reassembler, ReassemblyConfig, ReassemblyStats, fragment_frame};
pub use pattern::{TestPattern, read_counter};
pub use stats::{SenderStats, StreamStats};

/// JPEG quality (jpeg-encoder's 1..=100 scale) of the full layer: the
/// product brief's figure for 640×480 at 15 fps on a LAN.
pub const FULL_QUALITY: u8 = 55;
/// JPEG quality (1..=100) of the thumbnail layer: tiles are small, so fewer
/// bits.
pub const THUMB_QUALITY: u8 = 50;
