//! Unit tests of `camera.rs` (a child module of it, so private items
//! are in reach).

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
    for bad in [(1920, 1080, 15), (160, 120, 15), (640, 480, 60), (640, 480, 4), (641, 480, 15)] {
        let c = CaptureConfig { width: bad.0, height: bad.1, fps: bad.2 };
        let msg = c.check().unwrap_err().to_string();
        assert!(msg.contains("320x240 to 1280x720"), "{msg}");
    }
}

#[test]
fn a_missing_device_is_a_clear_error_not_a_panic() {
    // No camera on this machine (or not this one): a message, no panic.
    match open(&CameraChoice::Name("no such camera 9f3a".into()), "x", CaptureConfig::default()) {
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("camera") || msg.contains("open"), "{msg}");
        }
        Ok(_) => panic!("a camera with that name cannot exist"),
    }
    assert!(describe_cameras().contains("test"));
}

fn mode(width: usize, height: usize, fps: u32, format: PixelFormat) -> CameraMode {
    CameraMode { width, height, fps, format }
}

#[test]
fn the_closest_offered_mode_is_taken() {
    use PixelFormat::*;
    let want = CaptureConfig::default();
    // (offered, expected, why)
    let cases: Vec<(Vec<CameraMode>, Option<CameraMode>, &str)> = vec![
        (
            vec![mode(320, 240, 30, Yuyv), mode(640, 480, 30, Yuyv), mode(1280, 720, 10, Yuyv)],
            Some(mode(640, 480, 30, Yuyv)),
            "YUYV-only webcam: its 640x480",
        ),
        (
            vec![mode(1280, 720, 30, Mjpeg), mode(640, 480, 5, Yuyv), mode(320, 240, 30, Yuyv)],
            Some(mode(1280, 720, 30, Mjpeg)),
            "MJPEG only at 1280x720: rather that than 5 fps or an up-scaled 320x240",
        ),
        (vec![mode(1280, 720, 30, Mjpeg)], Some(mode(1280, 720, 30, Mjpeg)), "one mode: take it"),
        (
            vec![mode(3840, 2160, 30, Mjpeg), mode(1920, 1080, 30, Mjpeg)],
            Some(mode(1920, 1080, 30, Mjpeg)),
            "4K is too costly to decode",
        ),
        (
            vec![mode(800, 600, 15, Nv12), mode(960, 540, 15, Nv12)],
            Some(mode(800, 600, 15, Nv12)),
            "same aspect ratio, smaller surplus",
        ),
        (
            vec![mode(640, 480, 30, Mjpeg), mode(640, 480, 30, Yuyv)],
            Some(mode(640, 480, 30, Yuyv)),
            "raw is cheaper to decode at the same size",
        ),
        (
            vec![mode(640, 480, 10, Yuyv), mode(640, 480, 15, Mjpeg), mode(640, 480, 60, Yuyv)],
            Some(mode(640, 480, 15, Mjpeg)),
            "the wanted rate",
        ),
        (vec![mode(320, 240, 30, Gray)], Some(mode(320, 240, 30, Gray)), "only smaller"),
        (vec![], None, "nothing offered"),
        (vec![mode(4096, 2160, 30, Mjpeg)], None, "nothing decodable at a sane cost"),
    ];
    for (offered, expected, why) in cases {
        assert_eq!(choose_mode(&offered, want), expected, "{why}");
    }
}

/// A frame whose left half is red and right half blue, in `format`.
fn synthetic(format: PixelFormat, w: usize, h: usize) -> Vec<u8> {
    let rgb: Vec<u8> = (0..w * h)
        .flat_map(|i| if i % w < w / 2 { [200, 30, 30] } else { [30, 30, 200] })
        .collect();
    // BT.601 limited range, the inverse of yuv_to_rgb.
    let yuv = |p: &[u8]| {
        let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
        let y = 16.0 + 0.257 * r + 0.504 * g + 0.098 * b;
        let u = 128.0 - 0.148 * r - 0.291 * g + 0.439 * b;
        let v = 128.0 + 0.439 * r - 0.368 * g - 0.071 * b;
        [y.round() as u8, u.round() as u8, v.round() as u8]
    };
    match format {
        PixelFormat::Rgb => rgb,
        PixelFormat::Bgr => rgb.chunks(3).flat_map(|p| [p[2], p[1], p[0]]).collect(),
        PixelFormat::Gray => rgb.chunks(3).map(|p| yuv(p)[0]).collect(),
        PixelFormat::Yuyv => rgb
            .chunks(6)
            .flat_map(|p| {
                let (a, b) = (yuv(&p[..3]), yuv(&p[3..]));
                [a[0], a[1], b[0], a[2]]
            })
            .collect(),
        PixelFormat::Nv12 => {
            let mut out: Vec<u8> = rgb.chunks(3).map(|p| yuv(p)[0]).collect();
            for y in (0..h).step_by(2) {
                for x in (0..w).step_by(2) {
                    let c = yuv(&rgb[(y * w + x) * 3..][..3]);
                    out.extend_from_slice(&[c[1], c[2]]);
                }
            }
            out
        }
        PixelFormat::Mjpeg => {
            let mut jpeg = Vec::new();
            crate::media::jpeg::encode_rgb(&rgb, w, h, 90, &mut jpeg).unwrap();
            jpeg
        }
    }
}

#[test]
fn every_format_decodes_and_scales_to_our_size() {
    let formats = [
        PixelFormat::Mjpeg,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
        PixelFormat::Rgb,
        PixelFormat::Bgr,
    ];
    for (format, (w, h)) in
        formats.into_iter().zip([(1280, 720), (640, 480), (1280, 720), (320, 240), (800, 600)])
    {
        let data = synthetic(format, w, h);
        let mut native = Vec::new();
        decode_frame(format, &data, w, h, &mut native).unwrap_or_else(|e| panic!("{format}: {e}"));
        let mut out = Vec::new();
        fit_rgb(&native, w, h, &mut out, 640, 480);
        assert_eq!(out.len(), 640 * 480 * 3, "{format}");
        // Left reads red, right reads blue, within codec error.
        let at = |x: usize, y: usize| &out[(y * 640 + x) * 3..][..3];
        for y in [10, 240, 470] {
            let (l, r) = (at(100, y), at(540, y));
            assert!(l[0] > 170 && l[2] < 70, "{format} left {l:?}");
            assert!(r[2] > 170 && r[0] < 70, "{format} right {r:?}");
        }
    }
    let gray = synthetic(PixelFormat::Gray, 64, 48);
    let mut native = Vec::new();
    decode_frame(PixelFormat::Gray, &gray, 64, 48, &mut native).unwrap();
    assert_eq!(native[0], native[1]);
}

#[test]
fn bad_frames_and_open_failures_say_what_went_wrong() {
    let mut out = Vec::new();
    let e = decode_frame(PixelFormat::Yuyv, &[0; 100], 640, 480, &mut out).unwrap_err();
    assert!(e.contains("needs 614400 bytes") && e.contains("sent 100"), "{e}");
    let e = decode_frame(PixelFormat::Mjpeg, b"not a jpeg", 640, 480, &mut out).unwrap_err();
    assert!(e.contains("MJPEG"), "{e}");
    let jpeg = synthetic(PixelFormat::Mjpeg, 320, 240);
    let e = decode_frame(PixelFormat::Mjpeg, &jpeg, 640, 480, &mut out).unwrap_err();
    assert!(e.contains("320x240"), "{e}");
    let busy = explain_open_error("HD Webcam", "Device or resource busy (os error 16)");
    assert!(busy.to_string().contains("in use by another program"), "{busy}");
    let perm = explain_open_error("HD Webcam", "Permission denied (os error 13)");
    assert!(perm.to_string().contains("\"video\" group"), "{perm}");
    let other = explain_open_error("HD Webcam", "Inappropriate ioctl for device");
    assert!(!other.to_string().contains("another program"), "{other}");
    let none = CameraError::NoUsableFormat {
        name: "X".into(),
        offered: "H264 1920x1080 at 30 fps".into(),
    };
    assert!(none.to_string().contains("H264"), "{none}");
}
