//! Cameras: real ones through nokhwa, the `test` pattern, or none, behind one
//! [`FrameSource`] trait that yields packed RGB at the configured size.

use std::fmt;

use super::pattern::TestPattern;
use super::scale::resize_rgb;

/// Smallest capture size we accept, (width, height) pixels (QVGA).
pub const MIN_SIZE: (usize, usize) = (320, 240);
/// Largest capture size we accept, (width, height) pixels (720p: more is
/// more than a LAN call's tiles show, and JPEG cost grows with the area).
pub const MAX_SIZE: (usize, usize) = (1280, 720);
/// Capture rates we accept, frames per second.
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
    /// Pixels per row (even).
    pub width: usize,
    /// Rows (even).
    pub height: usize,
    /// Frames per second.
    pub fps: u32,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig { width: 640, height: 480, fps: 15 }
    }
}

impl CaptureConfig {
    /// [`CameraError::BadConfig`] unless the size is even and within
    /// [`MIN_SIZE`]..=[`MAX_SIZE`] and the rate within [`FPS_RANGE`].
    pub fn check(&self) -> Result<(), CameraError> {
        let size_ok = (MIN_SIZE.0..=MAX_SIZE.0).contains(&self.width)
            && (MIN_SIZE.1..=MAX_SIZE.1).contains(&self.height)
            && self.width.is_multiple_of(2)
            && self.height.is_multiple_of(2);
        if !size_ok || !FPS_RANGE.contains(&self.fps) {
            return Err(CameraError::BadConfig(*self));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why a camera could not be used; each message says what to do.
pub enum CameraError {
    #[error(
        "video {}x{} at {} fps is not supported: use even sizes from 320x240 to 1280x720 and 5 to 30 fps",
        .0.width, .0.height, .0.fps
    )]
    /// A size or rate outside the accepted ranges.
    BadConfig(CaptureConfig),
    #[error("no camera found{0}; use --camera test for a test pattern, or --camera none")]
    /// No camera at all (the text says where we looked).
    NoCamera(String),
    #[error("{choice} is not among the cameras found ({found}); run `sapora devices` to list them")]
    /// The chosen camera is not among those found.
    NotFound {
        /// The choice as typed.
        choice: String,
        /// The cameras found, listed.
        found: String,
    },
    #[error(
        "{name} is in use by another program ({why}); close that program, or choose another camera"
    )]
    /// Another program holds the camera.
    Busy {
        /// The camera.
        name: String,
        /// The driver's error.
        why: String,
    },
    #[error(
        "no permission to open {name} ({why}); on Linux, add yourself to the \"video\" group and log in again"
    )]
    /// The user may not open the camera.
    Permission {
        /// The camera.
        name: String,
        /// The driver's error.
        why: String,
    },
    #[error("{name} offers no picture format Sapora can read; it offers: {offered}")]
    /// The camera offers no format we decode (MJPEG, YUYV, NV12, GRAY, RGB, BGR).
    NoUsableFormat {
        /// The camera.
        name: String,
        /// The formats it offers.
        offered: String,
    },
    #[error("cannot open {name}: {why}")]
    /// Opening failed otherwise.
    Open {
        /// The camera.
        name: String,
        /// nokhwa's error.
        why: String,
    },
    #[error("the camera stopped delivering frames: {0}")]
    /// The camera stopped delivering frames (the driver's error).
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
    /// Index for `--camera INDEX`.
    pub index: u32,
    /// Name for `--camera NAME` (any part of it).
    pub name: String,
    /// What the driver says about it.
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

/// Pixel formats a camera may deliver (the V4L2/UVC ones nokhwa names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// Motion JPEG: every frame a JPEG.
    Mjpeg,
    /// YUV 4:2:2 packed Y0 U Y1 V (YUY2).
    Yuyv,
    /// YUV 4:2:0: a Y plane, then interleaved U V at half size each way.
    Nv12,
    /// 8-bit luma only.
    Gray,
    /// Packed 8-bit R G B.
    Rgb,
    /// Packed 8-bit B G R.
    Bgr,
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::Mjpeg => "MJPEG",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
            PixelFormat::Gray => "GRAY",
            PixelFormat::Rgb => "RGB",
            PixelFormat::Bgr => "BGR",
        })
    }
}

/// One mode a camera offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CameraMode {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Frames per second.
    pub fps: u32,
    /// Pixel format the camera delivers.
    pub format: PixelFormat,
}

impl fmt::Display for CameraMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}x{} at {} fps", self.format, self.width, self.height, self.fps)
    }
}

/// Largest capture side we decode (a 4K mode costs too much to decode 15×
/// a second only to be scaled down to 640×480).
const MAX_DECODE_SIDE: usize = 1920;

/// Picks the camera mode closest to `want`, among `offered`; `None` when
/// nothing is usable (no modes, or only sizes above 1920 on a side).
///
/// Order of preference: a size at least as large as wanted (scaling down
/// keeps detail, scaling up invents it) and the smallest such; else the
/// largest smaller one; then the same aspect ratio (less cropped away); then
/// a frame rate at least the wanted one, closest; then a format that is
/// cheaper to decode (raw before MJPEG, at equal size). Every format in
/// [`PixelFormat`] is decoded by [`decode_frame`], so a YUYV-only camera,
/// or one with MJPEG only at 1280×720, is used rather than refused.
pub fn choose_mode(offered: &[CameraMode], want: CaptureConfig) -> Option<CameraMode> {
    let want_area = (want.width * want.height) as f64;
    let want_aspect = want.width as f64 / want.height as f64;
    let score = |m: &CameraMode| {
        let area = (m.width * m.height) as f64;
        let covers = m.width >= want.width && m.height >= want.height;
        // Down-scaling: the less surplus the better. Up-scaling: always
        // after any mode that covers, the closer the better.
        let size = if covers { (area / want_area).ln() } else { 100.0 + (want_area / area).ln() };
        let aspect = ((m.width as f64 / m.height as f64) / want_aspect).ln().abs();
        let fps = if m.fps >= want.fps {
            f64::from(m.fps - want.fps) / 1000.0
        } else {
            1.0 + f64::from(want.fps - m.fps) / f64::from(want.fps)
        };
        let format = match m.format {
            PixelFormat::Mjpeg => 0.01,
            _ => 0.0,
        };
        size + aspect + fps + format
    };
    offered
        .iter()
        .filter(|m| {
            m.width >= 2
                && m.height >= 2
                && m.width <= MAX_DECODE_SIDE
                && m.height <= MAX_DECODE_SIDE
                && m.fps > 0
        })
        .min_by(|a, b| score(a).total_cmp(&score(b)))
        .copied()
}

/// Decodes one captured frame of `mode`'s format and size to packed RGB
/// (`rgb` is resized to `width × height × 3`). YUV is converted with the
/// BT.601 limited-range matrix that UVC cameras use. Errors say what was
/// wrong with the frame (a short buffer, a broken JPEG, a size that does
/// not match the mode).
pub fn decode_frame(
    format: PixelFormat,
    data: &[u8],
    width: usize,
    height: usize,
    rgb: &mut Vec<u8>,
) -> Result<(), String> {
    let px = width * height;
    let need = |n: usize| {
        if data.len() < n {
            Err(format!(
                "a {format} {width}x{height} frame needs {n} bytes, the camera sent {}",
                data.len()
            ))
        } else {
            Ok(())
        }
    };
    rgb.resize(px * 3, 0);
    match format {
        PixelFormat::Mjpeg => {
            use zune_jpeg::zune_core::colorspace::ColorSpace;
            use zune_jpeg::zune_core::options::DecoderOptions;
            let options = DecoderOptions::default()
                .jpeg_set_out_colorspace(ColorSpace::RGB)
                .set_max_width(MAX_DECODE_SIDE * 2)
                .set_max_height(MAX_DECODE_SIDE * 2);
            let mut d = zune_jpeg::JpegDecoder::new_with_options(data, options);
            let pixels = d.decode().map_err(|e| format!("a broken MJPEG frame: {e:?}"))?;
            let (w, h) = d.dimensions().unwrap_or((0, 0));
            if (w, h) != (width, height) || pixels.len() != px * 3 {
                return Err(format!(
                    "the camera sent a {w}x{h} MJPEG frame in its {width}x{height} mode"
                ));
            }
            rgb.copy_from_slice(&pixels);
        }
        PixelFormat::Yuyv => {
            need(px * 2)?;
            for (o, i) in rgb.chunks_exact_mut(6).zip(data.chunks_exact(4)) {
                let (u, v) = (i[1], i[3]);
                o[..3].copy_from_slice(&yuv_to_rgb(i[0], u, v));
                o[3..].copy_from_slice(&yuv_to_rgb(i[2], u, v));
            }
        }
        PixelFormat::Nv12 => {
            need(px + 2 * width.div_ceil(2) * height.div_ceil(2))?;
            let (luma, chroma) = data.split_at(px);
            let cw = width.div_ceil(2) * 2;
            for y in 0..height {
                for x in 0..width {
                    let c = (y / 2) * cw + (x / 2) * 2;
                    let p = yuv_to_rgb(luma[y * width + x], chroma[c], chroma[c + 1]);
                    rgb[(y * width + x) * 3..][..3].copy_from_slice(&p);
                }
            }
        }
        PixelFormat::Gray => {
            need(px)?;
            for (o, g) in rgb.chunks_exact_mut(3).zip(data) {
                o.fill(*g);
            }
        }
        PixelFormat::Rgb => {
            need(px * 3)?;
            rgb.copy_from_slice(&data[..px * 3]);
        }
        PixelFormat::Bgr => {
            need(px * 3)?;
            for (o, i) in rgb.chunks_exact_mut(3).zip(data.chunks_exact(3)) {
                o.copy_from_slice(&[i[2], i[1], i[0]]);
            }
        }
    }
    Ok(())
}

/// BT.601 limited range (Y 16–235, Cb/Cr 16–240) to RGB, in 16.16 fixed point.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (i32::from(y) - 16).max(0) * 76_309;
    let d = i32::from(u) - 128;
    let e = i32::from(v) - 128;
    let clamp = |x: i32| ((x + 32_768) >> 16).clamp(0, 255) as u8;
    [clamp(c + 104_597 * e), clamp(c - 25_675 * d - 53_279 * e), clamp(c + 132_201 * d)]
}

/// Scales packed RGB `sw × sh` to `dw × dh`, cropping the centre to the
/// target's aspect ratio first (a 16:9 camera fills a 4:3 picture without
/// stretching faces).
pub fn fit_rgb(src: &[u8], sw: usize, sh: usize, dst: &mut Vec<u8>, dw: usize, dh: usize) {
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || src.len() < sw * sh * 3 {
        dst.clear();
        dst.resize(dw * dh * 3, 0);
        return;
    }
    // The largest centred window of the target's aspect ratio.
    let (cw, ch) = if sw * dh > sh * dw { (sh * dw / dh, sh) } else { (sw, sw * dh / dw) };
    let (cw, ch) = (cw.clamp(1, sw), ch.clamp(1, sh));
    if (cw, ch) == (sw, sh) {
        resize_rgb(src, sw, sh, dst, dw, dh);
        return;
    }
    let (x0, y0) = ((sw - cw) / 2, (sh - ch) / 2);
    let mut crop = Vec::with_capacity(cw * ch * 3);
    for y in y0..y0 + ch {
        crop.extend_from_slice(&src[(y * sw + x0) * 3..][..cw * 3]);
    }
    resize_rgb(&crop, cw, ch, dst, dw, dh);
}

/// What an error from opening a camera means, for people: busy, no
/// permission, or the backend's own words.
pub fn explain_open_error(name: &str, why: &str) -> CameraError {
    let w = why.to_lowercase();
    let (name, why) = (name.to_string(), why.to_string());
    if w.contains("busy") || w.contains("ebusy") || w.contains("in use") {
        CameraError::Busy { name, why }
    } else if w.contains("permission") || w.contains("eacces") || w.contains("access denied") {
        CameraError::Permission { name, why }
    } else {
        CameraError::Open { name, why }
    }
}

fn to_pixel_format(f: nokhwa::utils::FrameFormat) -> PixelFormat {
    use nokhwa::utils::FrameFormat;
    match f {
        FrameFormat::MJPEG => PixelFormat::Mjpeg,
        FrameFormat::YUYV => PixelFormat::Yuyv,
        FrameFormat::NV12 => PixelFormat::Nv12,
        FrameFormat::GRAY => PixelFormat::Gray,
        FrameFormat::RAWRGB => PixelFormat::Rgb,
        FrameFormat::RAWBGR => PixelFormat::Bgr,
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
        let explain = |e: nokhwa::NokhwaError| explain_open_error(&desc.name, &e.to_string());
        // Open with whatever the driver has set, then choose ourselves among
        // everything it offers: asking nokhwa for exactly 640x480 MJPEG
        // fails on a YUYV-only camera.
        let any = RequestedFormat::with_formats(RequestedFormatType::None, ALL_FORMATS);
        let mut camera =
            nokhwa::Camera::new(CameraIndex::Index(desc.index), any).map_err(explain)?;
        let modes: Vec<CameraMode> = match camera.compatible_camera_formats() {
            Ok(list) => list
                .iter()
                .map(|f| CameraMode {
                    width: f.width() as usize,
                    height: f.height() as usize,
                    fps: f.frame_rate(),
                    format: to_pixel_format(f.format()),
                })
                .collect(),
            // Some backends cannot list modes: keep the driver's current one.
            Err(_) => {
                let f = camera.camera_format();
                vec![CameraMode {
                    width: f.width() as usize,
                    height: f.height() as usize,
                    fps: f.frame_rate(),
                    format: to_pixel_format(f.format()),
                }]
            }
        };
        let Some(mode) = choose_mode(&modes, config) else {
            let offered: Vec<String> = modes.iter().map(|m| m.to_string()).collect();
            return Err(CameraError::NoUsableFormat {
                name: desc.name.clone(),
                offered: if offered.is_empty() { "nothing".into() } else { offered.join(", ") },
            });
        };
        let format = match mode.format {
            PixelFormat::Mjpeg => FrameFormat::MJPEG,
            PixelFormat::Yuyv => FrameFormat::YUYV,
            PixelFormat::Nv12 => FrameFormat::NV12,
            PixelFormat::Gray => FrameFormat::GRAY,
            PixelFormat::Rgb => FrameFormat::RAWRGB,
            PixelFormat::Bgr => FrameFormat::RAWBGR,
        };
        let exact = CameraFormat::new(
            Resolution::new(mode.width as u32, mode.height as u32),
            format,
            mode.fps,
        );
        camera
            .set_camera_requset(RequestedFormat::with_formats(
                RequestedFormatType::Exact(exact),
                ALL_FORMATS,
            ))
            .map_err(|e| CameraError::Open {
                name: desc.name.clone(),
                why: format!("it refused its own mode {mode}: {e}"),
            })?;
        camera.open_stream().map_err(explain)?;
        tracing::info!(
            "camera {}: {mode}, scaled to {}x{}",
            desc.name,
            config.width,
            config.height
        );
        Ok(DeviceCamera { camera, config, native: Vec::new() })
    }
}

/// Every format [`decode_frame`] reads.
const ALL_FORMATS: &[nokhwa::utils::FrameFormat] = &[
    nokhwa::utils::FrameFormat::MJPEG,
    nokhwa::utils::FrameFormat::YUYV,
    nokhwa::utils::FrameFormat::NV12,
    nokhwa::utils::FrameFormat::GRAY,
    nokhwa::utils::FrameFormat::RAWRGB,
    nokhwa::utils::FrameFormat::RAWBGR,
];

impl FrameSource for DeviceCamera {
    fn size(&self) -> (usize, usize) {
        (self.config.width, self.config.height)
    }

    fn next_frame(&mut self, _counter: u32, rgb: &mut Vec<u8>) -> Result<(), CameraError> {
        let frame = self.camera.frame().map_err(|e| CameraError::Capture(e.to_string()))?;
        let res = frame.resolution();
        let (nw, nh) = (res.width() as usize, res.height() as usize);
        let format = to_pixel_format(frame.source_frame_format());
        decode_frame(format, frame.buffer(), nw, nh, &mut self.native)
            .map_err(CameraError::Capture)?;
        fit_rgb(&self.native, nw, nh, rgb, self.config.width, self.config.height);
        Ok(())
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
#[path = "camera_tests.rs"]
mod tests;
