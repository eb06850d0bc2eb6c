//! JPEG encode (jpeg-encoder, SIMD) and decode (zune-jpeg, straight to RGBA),
//! shared by the camera and screen pipelines.

use jpeg_encoder::{ColorType, Encoder};
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// Largest image either side, in pixels: anything bigger from the network is
/// refused before decoding.
pub const MAX_SIDE: usize = 4096;

#[derive(Debug, thiserror::Error)]
/// Why a picture could not be encoded or decoded.
pub enum JpegError {
    #[error("image of {width}x{height} does not fit its {len}-byte buffer")]
    /// The pixel buffer does not hold width × height × bytes per pixel.
    BadSize {
        /// Pixels per row.
        width: usize,
        /// Rows.
        height: usize,
        /// Bytes in the buffer given.
        len: usize,
    },
    #[error("image of {0}x{1} is too large to encode or decode")]
    /// Width and height (0, or over [`MAX_SIDE`]).
    TooLarge(usize, usize),
    #[error("JPEG encoding failed: {0}")]
    /// jpeg-encoder's error.
    Encode(String),
    #[error("JPEG decoding failed: {0}")]
    /// zune-jpeg's error (corrupt or unsupported JPEG).
    Decode(String),
}

/// A decoded picture: tightly packed RGBA rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgba {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// width × height × 4 bytes, R, G, B, A (A = 255).
    pub pixels: Vec<u8>,
}

fn check(width: usize, height: usize, len: usize, bpp: usize) -> Result<(), JpegError> {
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(JpegError::TooLarge(width, height));
    }
    if width * height * bpp != len {
        return Err(JpegError::BadSize { width, height, len });
    }
    Ok(())
}

fn encode(
    pixels: &[u8],
    width: usize,
    height: usize,
    quality: u8,
    color: ColorType,
    bpp: usize,
    out: &mut Vec<u8>,
) -> Result<(), JpegError> {
    check(width, height, pixels.len(), bpp)?;
    out.clear();
    let encoder = Encoder::new(&mut *out, quality.clamp(1, 100));
    encoder
        .encode(pixels, width as u16, height as u16, color)
        .map_err(|e| JpegError::Encode(e.to_string()))
}

/// Encodes packed RGB into `out` (cleared first, so its capacity is reused).
pub fn encode_rgb(
    rgb: &[u8],
    width: usize,
    height: usize,
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<(), JpegError> {
    encode(rgb, width, height, quality, ColorType::Rgb, 3, out)
}

/// Encodes packed RGBA (alpha ignored) into `out`.
pub fn encode_rgba(
    rgba: &[u8],
    width: usize,
    height: usize,
    quality: u8,
    out: &mut Vec<u8>,
) -> Result<(), JpegError> {
    encode(rgba, width, height, quality, ColorType::Rgba, 4, out)
}

/// Decodes a JPEG from the network (hostile input) to RGBA. The header is
/// read first and absurd sizes are refused before any pixel memory is
/// allocated.
pub fn decode_rgba(jpeg: &[u8]) -> Result<Rgba, JpegError> {
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGBA)
        .set_max_width(MAX_SIDE)
        .set_max_height(MAX_SIDE);
    let mut decoder = JpegDecoder::new_with_options(jpeg, options);
    decoder.decode_headers().map_err(|e| JpegError::Decode(format!("{e:?}")))?;
    let info = decoder.info().ok_or_else(|| JpegError::Decode("no image header".into()))?;
    let (width, height) = (usize::from(info.width), usize::from(info.height));
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(JpegError::TooLarge(width, height));
    }
    let pixels = decoder.decode().map_err(|e| JpegError::Decode(format!("{e:?}")))?;
    if pixels.len() != width * height * 4 {
        return Err(JpegError::BadSize { width, height, len: pixels.len() });
    }
    Ok(Rgba { width, height, pixels })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: usize, h: usize) -> Vec<u8> {
        (0..w * h).flat_map(|i| [(i % w * 255 / w) as u8, (i / w * 255 / h) as u8, 128]).collect()
    }

    #[test]
    fn round_trip_stays_close() {
        let (w, h) = (64, 48);
        let rgb = gradient(w, h);
        let mut jpeg = Vec::new();
        encode_rgb(&rgb, w, h, 90, &mut jpeg).unwrap();
        assert!(jpeg.len() < rgb.len(), "compressed");
        let img = decode_rgba(&jpeg).unwrap();
        assert_eq!((img.width, img.height), (w, h));
        let max_err = rgb
            .chunks(3)
            .zip(img.pixels.chunks(4))
            .flat_map(|(a, b)| {
                (0..3).map(move |c| (i16::from(a[c]) - i16::from(b[c])).unsigned_abs())
            })
            .max()
            .unwrap();
        assert!(max_err < 24, "max channel error {max_err}");
        assert!(img.pixels.chunks(4).all(|p| p[3] == 255));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        assert!(matches!(encode_rgb(&[0; 10], 2, 2, 50, &mut out), Err(JpegError::BadSize { .. })));
        assert!(matches!(encode_rgb(&[], 0, 0, 50, &mut out), Err(JpegError::TooLarge(0, 0))));
        assert!(decode_rgba(&[]).is_err());
        assert!(
            decode_rgba(&[0xFF, 0xD8, 0xFF, 0xC0, 0, 0x11, 8, 0xFF, 0xFF, 0xFF, 0xFF]).is_err()
        );
        let mut jpeg = Vec::new();
        encode_rgb(&gradient(16, 16), 16, 16, 50, &mut jpeg).unwrap();
        for cut in [2, 20, jpeg.len() / 2] {
            let _ = decode_rgba(&jpeg[..cut]); // must not panic
        }
    }
}
