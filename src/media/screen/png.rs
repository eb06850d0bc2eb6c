//! Saving a viewed screen as PNG (RGBA, 8 bits per channel) with the `png`
//! crate, so a viewer can keep what it sees (`--save-png`).

/// Why a picture could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    /// PNG has no empty pictures: width and height must be at least 1.
    #[error("cannot save an empty picture as PNG ({width}x{height} pixels)")]
    Empty {
        /// Pixels per row given.
        width: usize,
        /// Rows given.
        height: usize,
    },
    /// The pixel buffer does not hold `width * height * 4` bytes.
    #[error("a {width}x{height} RGBA picture needs {expected} bytes, got {got}")]
    Size {
        /// Pixels per row.
        width: usize,
        /// Rows.
        height: usize,
        /// width × height × 4.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// PNG sizes are 32-bit (at most 2^31 - 1 by the specification).
    #[error("{width}x{height} pixels is too large for PNG")]
    TooLarge {
        /// Pixels per row given.
        width: usize,
        /// Rows given.
        height: usize,
    },
    /// The encoder failed (it writes to memory, so this is not expected).
    #[error("PNG encoder: {0}")]
    Encode(#[from] ::png::EncodingError),
}

/// Encodes tightly packed RGBA rows (`width * height * 4` bytes, top row
/// first) as a PNG file in memory.
///
/// # Errors
/// [`PngError::Empty`] for a width or height of 0, [`PngError::Size`] when
/// `rgba` has the wrong length, [`PngError::TooLarge`] past PNG's 32-bit sizes.
pub fn encode_png_rgba(width: usize, height: usize, rgba: &[u8]) -> Result<Vec<u8>, PngError> {
    if width == 0 || height == 0 {
        return Err(PngError::Empty { width, height });
    }
    let too_large = || PngError::TooLarge { width, height };
    let expected =
        width.checked_mul(height).and_then(|n| n.checked_mul(4)).ok_or_else(too_large)?;
    if rgba.len() != expected {
        return Err(PngError::Size { width, height, expected, got: rgba.len() });
    }
    let w = u32::try_from(width).map_err(|_| too_large())?;
    let h = u32::try_from(height).map_err(|_| too_large())?;
    let mut out = Vec::new();
    let mut encoder = ::png::Encoder::new(&mut out, w, h);
    encoder.set_color(::png::ColorType::Rgba);
    encoder.set_depth(::png::BitDepth::Eight);
    // Screens are mostly flat areas and text: adaptive filtering with the
    // fast deflate level is small and quick enough for a snapshot.
    encoder.set_compression(::png::Compression::Fast);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgba)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> (u32, u32, ::png::ColorType, ::png::BitDepth, Vec<u8>) {
        let decoder = ::png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().expect("a valid PNG header");
        let mut buf = vec![0; reader.output_buffer_size().expect("a sane size")];
        let info = reader.next_frame(&mut buf).expect("valid image data");
        buf.truncate(info.buffer_size());
        (info.width, info.height, info.color_type, info.bit_depth, buf)
    }

    #[test]
    fn decodes_back_to_the_same_pixels() {
        for (w, h) in [(300, 200), (1, 1), (7, 3)] {
            let px: Vec<u8> = (0..w * h * 4).map(|i| (i * 7 % 251) as u8).collect();
            let png = encode_png_rgba(w, h, &px).unwrap();
            let (dw, dh, color, depth, pixels) = decode(&png);
            assert_eq!((dw, dh), (w as u32, h as u32));
            assert_eq!((color, depth), (::png::ColorType::Rgba, ::png::BitDepth::Eight));
            assert_eq!(pixels, px, "{w}x{h} pixels differ after a round trip");
        }
    }

    #[test]
    fn empty_or_short_pictures_are_clear_errors() {
        let e = encode_png_rgba(0, 10, &[]).unwrap_err();
        assert!(matches!(e, PngError::Empty { width: 0, height: 10 }), "{e}");
        assert!(e.to_string().contains("empty picture"));
        assert!(matches!(encode_png_rgba(10, 0, &[]), Err(PngError::Empty { .. })));
        let e = encode_png_rgba(2, 2, &[0; 15]).unwrap_err();
        assert_eq!(e.to_string(), "a 2x2 RGBA picture needs 16 bytes, got 15");
        assert!(matches!(encode_png_rgba(usize::MAX, 2, &[]), Err(PngError::TooLarge { .. })));
    }
}
