//! Cameras: real ones through nokhwa, the `test` pattern, or none, behind one
//! [`FrameSource`] trait that yields packed RGB at the configured size.

use std::fmt;

use super::pattern::TestPattern;
use super::scale::resize_rgb;

/// Smallest and largest capture sizes and rates we accept.
pub const MIN_SIZE: (usize, usize) = (320, 240);
pub const MAX_SIZE: (usize, usize) = (1280, 720);
pub const FPS_RANGE: std::ops::RangeInclusive<u32> = 5..=30;

/// Which camera to use, as typed after `--camera`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CameraChoice {
    /// No video is sent (the participant still receives others').
    #[default]
    None,
    /// The built-in moving test pattern.
    Test,
    /// A device by its index in `sapora devices`.
    Index(u32),
    /// A device whose name contains this text (case-insensitive).
    Name(String),
}

impl std::str::FromStr for CameraChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        Ok(match t.to_ascii_lowercase().as_str() {
            "" => return Err("give a camera: test, none, an index or a name".into()),
            "none" | "off" => CameraChoice::None,
            "test" | "pattern" => CameraChoice::Test,
            _ => match t.parse::<u32>() {
                Ok(i) => CameraChoice::Index(i),
                Err(_) => CameraChoice::Name(t.to_string()),
            },
        })
    }
}

impl fmt::Display for CameraChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CameraChoice::None => f.write_str("none"),
            CameraChoice::Test => f.write_str("test"),
            CameraChoice::Index(i) => write!(f, "camera {i}"),
            CameraChoice::Name(n) => write!(f, "camera \"{n}\""),
        }
    }
}

/// Capture size and rate; [`CaptureConfig::check`] enforces the ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureConfig {
    pub width: usize,
    pub height: usize,
    pub fps: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig { width: 640, height: 480, fps: 15 }
    }
}

impl CaptureConfig {
    pub fn check(&self) -> Result<(), CameraError> {
        let size_ok = (MIN_SIZE.0..=MAX_SIZE.0).contains(&self.width)
            && (MIN_SIZE.1..=MAX_SIZE.1).contains(&self.height)
            && self.width % 2 == 0
            && self.height % 2 == 0;
        if !size_ok || !FPS_RANGE.contains(&self.fps) {
            return Err(CameraError::BadConfig(*self));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CameraError {
    #[error(
        "video {}x{} at {} fps is not supported: use even sizes from 320x240 to 1280x720 and 5 to 30 fps",
        .0.width, .0.height, .0.fps
    )]
    BadConfig(CaptureConfig),
    #[error("no camera found{0}; use --camera test for a test pattern, or --camera none")]
    NoCamera(String),
    #[error("{choice} is not among the cameras found ({found}); run `sapora devices` to list them")]
    NotFound { choice: String, found: String },
    #[error("cannot open {name}: {why}. Is another program using it?")]
    Busy { name: String, why: String },
    #[error("the camera stopped delivering frames: {0}")]
    Capture(String),
}

/// Something that produces frames of packed RGB at a fixed size.
pub trait FrameSource {
    /// The size of every frame this source yields.
    fn size(&self) -> (usize, usize);
    /// Blocks until the next frame (a device paces itself; the caller paces
    /// the test pattern) and writes it into `rgb`.
    fn next_frame(&mut self, counter: u32, rgb: &mut Vec<u8>) -> Result<(), CameraError>;
    /// Whether the source keeps its own frame rate (devices) or needs pacing.
    fn self_paced(&self) -> bool;
}

impl FrameSource for TestPattern {
    fn size(&self) -> (usize, usize) {
        TestPattern::size(self)
    }
    fn next_frame(&mut self, counter: u32, rgb: &mut Vec<u8>) -> Result<(), CameraError> {
        self.render(counter, rgb);
        Ok(())
    }
    fn self_paced(&self) -> bool {
        false
    }
}

/// A camera as `sapora devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraDesc {
    pub index: u32,
    pub name: String,
    pub description: String,
}

/// The cameras nokhwa can see; an error text when the backend itself fails.
pub fn list_cameras() -> Result<Vec<CameraDesc>, String> {
    let infos = nokhwa::query(nokhwa::utils::ApiBackend::Auto).map_err(|e| e.to_string())?;
    Ok(infos
        .iter()
        .enumerate()
        .map(|(i, info)| CameraDesc {
            index: info.index().as_index().unwrap_or(i as u32),
            name: info.human_name(),
            description: info.description().to_string(),
        })
        .collect())
}

/// The "Cameras" part of `sapora devices`.
pub fn describe_cameras() -> String {
    let mut out = String::from("Cameras:\n");
    match list_cameras() {
        Ok(list) if list.is_empty() => out.push_str("  (none found)\n"),
        Ok(list) => {
            for c in list {
                out.push_str(&format!("  {}: {}", c.index, c.name));
                if !c.description.is_empty() && c.description != c.name {
                    out.push_str(&format!(" ({})", c.description));
                }
                out.push('\n');
            }
        }
        Err(e) => out.push_str(&format!("  (cannot list cameras: {e})\n")),
    }
    out.push_str("  test: a moving test pattern with your name (no device needed)\n");
    out.push_str("Choose one with --camera INDEX, --camera NAME or --camera test.\n");
    out
}

/// Opens the chosen source at `config`'s size. Must be called on the thread
/// that will read the frames (camera handles stay on one thread).
pub fn open(
    choice: &CameraChoice,
    name: &str,
    config: CaptureConfig,
) -> Result<Box<dyn FrameSource>, CameraError> {
    config.check()?;
    match choice {
        CameraChoice::None => Err(CameraError::NoCamera(" (camera is off)".into())),
        CameraChoice::Test => Ok(Box::new(TestPattern::new(name, config.width, config.height))),
        CameraChoice::Index(_) | CameraChoice::Name(_) => {
            Ok(Box::new(DeviceCamera::open(choice, config)?))
        }
    }
}

/// A real camera through nokhwa, converted to RGB at the configured size.
pub struct DeviceCamera {
    camera: nokhwa::Camera,
    config: CaptureConfig,
    native: Vec<u8>,
}

impl DeviceCamera {
    fn open(choice: &CameraChoice, config: CaptureConfig) -> Result<DeviceCamera, CameraError> {
        use nokhwa::pixel_format::RgbFormat;
        use nokhwa::utils::{
            CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
            Resolution,
        };
        let list = list_cameras().map_err(|e| CameraError::NoCamera(format!(" ({e})")))?;
        if list.is_empty() {
            return Err(CameraError::NoCamera(String::new()));
        }
        let found = list.iter().find(|c| match choice {
            CameraChoice::Index(i) => c.index == *i,
            CameraChoice::Name(n) => c.name.to_lowercase().contains(&n.to_lowercase()),
            _ => false,
        });
        let Some(desc) = found else {
            let names: Vec<String> =
                list.iter().map(|c| format!("{}: {}", c.index, c.name)).collect();
            return Err(CameraError::NotFound {
                choice: choice.to_string(),
                found: names.join(", "),
            });
        };
        let want = CameraFormat::new(
            Resolution::new(config.width as u32, config.height as u32),
            FrameFormat::MJPEG,
            config.fps,
        );
        let format = RequestedFormat::new::<RgbFormat>(RequestedFormatType::Closest(want));
        let busy = |e: nokhwa::NokhwaError| CameraError::Busy {
            name: desc.name.clone(),
            why: e.to_string(),
        };
        let mut camera =
            nokhwa::Camera::new(CameraIndex::Index(desc.index), format).map_err(busy)?;
        camera.open_stream().map_err(busy)?;
        Ok(DeviceCamera { camera, config, native: Vec::new() })
    }
}

impl FrameSource for DeviceCamera {
    fn size(&self) -> (usize, usize) {
        (self.config.width, self.config.height)
    }

    fn next_frame(&mut self, _counter: u32, rgb: &mut Vec<u8>) -> Result<(), CameraError> {
        use nokhwa::pixel_format::RgbFormat;
        let frame = self.camera.frame().map_err(|e| CameraError::Capture(e.to_string()))?;
        let res = frame.resolution();
        let (nw, nh) = (res.width() as usize, res.height() as usize);
        let (w, h) = (self.config.width, self.config.height);
        if (nw, nh) == (w, h) {
            rgb.resize(w * h * 3, 0);
            frame
                .decode_image_to_buffer::<RgbFormat>(rgb)
                .map_err(|e| CameraError::Capture(e.to_string()))
        } else {
            // The camera picked the closest mode it has: scale to ours.
            self.native.resize(nw * nh * 3, 0);
            frame
                .decode_image_to_buffer::<RgbFormat>(&mut self.native)
                .map_err(|e| CameraError::Capture(e.to_string()))?;
            resize_rgb(&self.native, nw, nh, rgb, w, h);
            Ok(())
        }
    }

    fn self_paced(&self) -> bool {
        true
    }
}

impl Drop for DeviceCamera {
    fn drop(&mut self) {
        let _ = self.camera.stop_stream();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse() {
        assert_eq!("test".parse(), Ok(CameraChoice::Test));
        assert_eq!(" NONE ".parse(), Ok(CameraChoice::None));
        assert_eq!("2".parse(), Ok(CameraChoice::Index(2)));
        assert_eq!("HD Webcam".parse(), Ok(CameraChoice::Name("HD Webcam".into())));
        assert!("".parse::<CameraChoice>().is_err());
    }

    #[test]
    fn sizes_and_rates_are_checked() {
        assert!(CaptureConfig::default().check().is_ok());
        assert!(CaptureConfig { width: 1280, height: 720, fps: 30 }.check().is_ok());
        assert!(CaptureConfig { width: 320, height: 240, fps: 5 }.check().is_ok());
        for bad in [(1920, 1080, 15), (160, 120, 15), (640, 480, 60), (640, 480, 4), (641, 480, 15)]
        {
            let c = CaptureConfig { width: bad.0, height: bad.1, fps: bad.2 };
            let msg = c.check().unwrap_err().to_string();
            assert!(msg.contains("320x240 to 1280x720"), "{msg}");
        }
    }

    #[test]
    fn a_missing_device_is_a_clear_error_not_a_panic() {
        // No camera on this machine (or not this one): a message, no panic.
        match open(&CameraChoice::Name("no such camera 9f3a".into()), "x", CaptureConfig::default())
        {
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("camera") || msg.contains("open"), "{msg}");
            }
            Ok(_) => panic!("a camera with that name cannot exist"),
        }
        assert!(describe_cameras().contains("test"));
    }
}
