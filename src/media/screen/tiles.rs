//! Changed-tile encoding (presenter side) and the canvas tiles are painted on
//! (viewer side). Sans-IO: frames in, JPEG tiles out; no clocks, no sockets.

use crate::media::jpeg::{self, JpegError};
use crate::proto::{SCREEN_MAX_SIDE, SCREEN_TILE, screen_grid};

/// JPEG quality for tiles. At 90 jpeg-encoder keeps full-resolution chroma
/// (4:4:4), so coloured 12 px text keeps its edges; below 90 it halves chroma.
pub const DEFAULT_QUALITY: u8 = 90;

/// Byte order of a frame's pixels (4 bytes each; the 4th is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    /// X11 and most capture APIs.
    Bgra,
    /// Most image libraries (and our own test screens).
    Rgba,
}

/// One captured frame, borrowed from the capturer.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bytes from one row to the next (≥ width × 4).
    pub stride: usize,
    /// Byte order of each pixel.
    pub format: PixelFormat,
    /// At least stride × (height − 1) + width × 4 bytes.
    pub data: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
/// Why a frame could not be encoded, or a tile not painted.
pub enum TileError {
    #[error("frame of {width}x{height} (stride {stride}) does not fit its {len}-byte buffer")]
    /// The frame's buffer is shorter than its size and stride need.
    BadFrame {
        /// Pixels per row.
        width: usize,
        /// Rows.
        height: usize,
        /// Bytes per row.
        stride: usize,
        /// Bytes given.
        len: usize,
    },
    #[error("screen of {0}x{1} is not supported (1 to {SCREEN_MAX_SIDE} pixels either side)")]
    /// Width and height outside 1..=[`SCREEN_MAX_SIDE`].
    BadSize(usize, usize),
    #[error("the screen changed size from {old_w}x{old_h} to {new_w}x{new_h}")]
    /// A frame of another size than the encoder's (the caller starts a new
    /// encoder and announces the new size).
    SizeChanged {
        /// Width before, pixels.
        old_w: usize,
        /// Height before, pixels.
        old_h: usize,
        /// Width now, pixels.
        new_w: usize,
        /// Height now, pixels.
        new_h: usize,
    },
    #[error("tile ({col}, {row}) is outside the {width}x{height} screen")]
    /// A tile outside the screen's grid of 64×64 tiles.
    OutOfRange {
        /// Tile column.
        col: u16,
        /// Tile row.
        row: u16,
        /// Screen width, pixels.
        width: usize,
        /// Screen height, pixels.
        height: usize,
    },
    #[error("tile ({col}, {row}) decoded to {got_w}x{got_h}, expected {want_w}x{want_h}")]
    /// A tile's JPEG decoded to another size than its place on the screen.
    WrongTileSize {
        /// Tile column.
        col: u16,
        /// Tile row.
        row: u16,
        /// Decoded width, pixels.
        got_w: usize,
        /// Decoded height, pixels.
        got_h: usize,
        /// The tile's width on this screen, pixels.
        want_w: usize,
        /// The tile's height on this screen, pixels.
        want_h: usize,
    },
    #[error(transparent)]
    /// The tile's JPEG could not be encoded or decoded.
    Jpeg(#[from] JpegError),
}

fn check_size(width: usize, height: usize) -> Result<(), TileError> {
    let max = usize::from(SCREEN_MAX_SIDE);
    if width == 0 || height == 0 || width > max || height > max {
        return Err(TileError::BadSize(width, height));
    }
    Ok(())
}

/// Pixel rectangle `(x, y, w, h)` of tile (`col`, `row`) on a `width`×`height` screen.
pub fn tile_rect(col: u16, row: u16, width: usize, height: usize) -> (usize, usize, usize, usize) {
    let (x, y) = (usize::from(col) * SCREEN_TILE, usize::from(row) * SCREEN_TILE);
    (x, y, SCREEN_TILE.min(width.saturating_sub(x)), SCREEN_TILE.min(height.saturating_sub(y)))
}

/// One changed tile, JPEG-encoded.
#[derive(Debug, Clone, Default)]
pub struct EncodedTile {
    /// Tile column (x / 64).
    pub col: u16,
    /// Tile row (y / 64).
    pub row: u16,
    /// The tile's pixels as a baseline JPEG.
    pub jpeg: Vec<u8>,
}

/// Keeps the previous frame; each call encodes only the tiles that differ
/// from it. Buffers are reused between frames.
pub struct TileEncoder {
    width: usize,
    height: usize,
    quality: u8,
    /// Previous frame, packed 4 bytes per pixel in the capture's own order.
    prev: Vec<u8>,
    /// Everything is sent on the next frame (first frame, or a resync).
    full: bool,
    rgb: Vec<u8>,
    tiles: Vec<EncodedTile>,
}

impl TileEncoder {
    /// An encoder for `width` × `height` frames at JPEG `quality` (1-100);
    /// [`TileError::BadSize`] outside 1..=[`SCREEN_MAX_SIDE`].
    pub fn new(width: usize, height: usize, quality: u8) -> Result<TileEncoder, TileError> {
        check_size(width, height)?;
        Ok(TileEncoder {
            width,
            height,
            quality: quality.clamp(1, 100),
            prev: vec![0; width * height * 4],
            full: true,
            rgb: Vec::with_capacity(SCREEN_TILE * SCREEN_TILE * 3),
            tiles: Vec::new(),
        })
    }

    /// (width, height), pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// The next frame is sent whole.
    pub fn force_full(&mut self) {
        self.full = true;
    }

    /// Diffs `frame` against the previous one and JPEG-encodes the tiles that
    /// changed (all of them on the first frame, or after
    /// [`TileEncoder::force_full`]). [`TileError::SizeChanged`] when the
    /// frame's size is not the encoder's (make a new encoder), or a JPEG
    /// error.
    pub fn encode(&mut self, frame: &FrameRef<'_>) -> Result<&[EncodedTile], TileError> {
        let (w, h) = (frame.width, frame.height);
        if (w, h) != (self.width, self.height) {
            return Err(TileError::SizeChanged {
                old_w: self.width,
                old_h: self.height,
                new_w: w,
                new_h: h,
            });
        }
        if frame.stride < w * 4 || frame.data.len() < frame.stride * (h - 1) + w * 4 {
            return Err(TileError::BadFrame {
                width: w,
                height: h,
                stride: frame.stride,
                len: frame.data.len(),
            });
        }
        let (cols, rows) = screen_grid(w as u16, h as u16);
        let mut n = 0;
        for row in 0..rows {
            for col in 0..cols {
                let (x, y, tw, th) = tile_rect(col, row, w, h);
                let line = |yy: usize| {
                    let at = (y + yy) * frame.stride + x * 4;
                    &frame.data[at..at + tw * 4]
                };
                let old = |yy: usize| (y + yy) * w * 4 + x * 4;
                let changed =
                    self.full || (0..th).any(|yy| line(yy) != &self.prev[old(yy)..][..tw * 4]);
                if !changed {
                    continue;
                }
                self.rgb.clear();
                for yy in 0..th {
                    let src = line(yy);
                    self.prev[old(yy)..][..tw * 4].copy_from_slice(src);
                    match frame.format {
                        PixelFormat::Bgra => {
                            self.rgb.extend(src.chunks_exact(4).flat_map(|p| [p[2], p[1], p[0]]))
                        }
                        PixelFormat::Rgba => {
                            self.rgb.extend(src.chunks_exact(4).flat_map(|p| [p[0], p[1], p[2]]))
                        }
                    }
                }
                if self.tiles.len() == n {
                    self.tiles.push(EncodedTile::default());
                }
                let tile = &mut self.tiles[n];
                tile.col = col;
                tile.row = row;
                jpeg::encode_rgb(&self.rgb, tw, th, self.quality, &mut tile.jpeg)?;
                n += 1;
            }
        }
        self.full = false;
        Ok(&self.tiles[..n])
    }
}

/// The viewer's picture: RGBA, painted tile by tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// width × height × 4 bytes, R, G, B, A.
    pub rgba: Vec<u8>,
}

impl Canvas {
    /// A black (opaque) RGBA canvas of `width` × `height` pixels;
    /// [`TileError::BadSize`] outside 1..=[`SCREEN_MAX_SIDE`].
    pub fn new(width: usize, height: usize) -> Result<Canvas, TileError> {
        check_size(width, height)?;
        let rgba = [0, 0, 0, 255].repeat(width * height);
        Ok(Canvas { width, height, rgba })
    }

    /// Decodes one tile (hostile input) and paints it in place at tile
    /// column `col`, row `row` (64-pixel tiles, [`tile_rect`]). Errors:
    /// [`TileError::OutOfRange`] for a slot outside the canvas,
    /// [`TileError::WrongTileSize`] for a tile whose decoded size does not
    /// match its slot (refused, never clipped), or the JPEG decoder's.
    pub fn apply(&mut self, col: u16, row: u16, jpeg_bytes: &[u8]) -> Result<(), TileError> {
        let (x, y, tw, th) = tile_rect(col, row, self.width, self.height);
        if tw == 0 || th == 0 {
            return Err(TileError::OutOfRange { col, row, width: self.width, height: self.height });
        }
        let img = jpeg::decode_rgba(jpeg_bytes)?;
        if (img.width, img.height) != (tw, th) {
            return Err(TileError::WrongTileSize {
                col,
                row,
                got_w: img.width,
                got_h: img.height,
                want_w: tw,
                want_h: th,
            });
        }
        for yy in 0..th {
            let dst = ((y + yy) * self.width + x) * 4;
            self.rgba[dst..dst + tw * 4].copy_from_slice(&img.pixels[yy * tw * 4..][..tw * 4]);
        }
        Ok(())
    }

    /// Largest difference of any colour channel against `frame`, and the mean
    /// absolute difference, over the whole picture.
    pub fn compare(&self, frame: &FrameRef<'_>) -> (u8, f64) {
        let mut max = 0u8;
        let mut sum = 0u64;
        for y in 0..self.height.min(frame.height) {
            for x in 0..self.width.min(frame.width) {
                let a = &self.rgba[(y * self.width + x) * 4..][..3];
                let p = &frame.data[y * frame.stride + x * 4..][..4];
                let b = match frame.format {
                    PixelFormat::Bgra => [p[2], p[1], p[0]],
                    PixelFormat::Rgba => [p[0], p[1], p[2]],
                };
                for c in 0..3 {
                    let d = a[c].abs_diff(b[c]);
                    max = max.max(d);
                    sum += u64::from(d);
                }
            }
        }
        (max, sum as f64 / (self.width * self.height * 3) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(w: usize, h: usize, seed: u8) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 3) as u8 ^ seed, (y * 2) as u8, ((x + y) / 4) as u8, 255]
            })
            .collect()
    }

    fn fref(data: &[u8], w: usize, h: usize) -> FrameRef<'_> {
        FrameRef { width: w, height: h, stride: w * 4, format: PixelFormat::Rgba, data }
    }

    #[test]
    fn only_changed_tiles_are_encoded_and_the_canvas_follows() {
        let (w, h) = (200, 130); // 4×3 tiles, narrow last column and row
        let mut enc = TileEncoder::new(w, h, DEFAULT_QUALITY).unwrap();
        let mut canvas = Canvas::new(w, h).unwrap();
        let mut img = frame(w, h, 0);
        let first: Vec<_> = enc.encode(&fref(&img, w, h)).unwrap().to_vec();
        assert_eq!(first.len(), 12, "first frame is sent whole");
        for t in &first {
            canvas.apply(t.col, t.row, &t.jpeg).unwrap();
        }
        let (max, mean) = canvas.compare(&fref(&img, w, h));
        assert!(max < 40 && mean < 3.0, "max {max} mean {mean}");

        assert!(enc.encode(&fref(&img, w, h)).unwrap().is_empty(), "still frame costs nothing");

        // One pixel in the bottom-right (partial) tile.
        let at = (129 * w + 199) * 4;
        img[at] = img[at].wrapping_add(128);
        let changed: Vec<_> = enc.encode(&fref(&img, w, h)).unwrap().to_vec();
        assert_eq!(changed.iter().map(|t| (t.col, t.row)).collect::<Vec<_>>(), [(3, 2)]);
        for t in &changed {
            canvas.apply(t.col, t.row, &t.jpeg).unwrap();
        }
        assert!(canvas.compare(&fref(&img, w, h)).0 < 40);
    }

    #[test]
    fn bgra_with_padding_stride_is_read_correctly() {
        let (w, h) = (64, 64);
        let stride = w * 4 + 32;
        let mut data = vec![0u8; stride * h];
        for y in 0..h {
            for x in 0..w {
                data[y * stride + x * 4..][..4].copy_from_slice(&[10, 100, 200, 0]); // B G R X
            }
        }
        let f = FrameRef { width: w, height: h, stride, format: PixelFormat::Bgra, data: &data };
        let mut enc = TileEncoder::new(w, h, DEFAULT_QUALITY).unwrap();
        let t = enc.encode(&f).unwrap()[0].clone();
        let mut c = Canvas::new(w, h).unwrap();
        c.apply(t.col, t.row, &t.jpeg).unwrap();
        let p = &c.rgba[..4];
        assert!(p[0].abs_diff(200) < 6 && p[1].abs_diff(100) < 6 && p[2].abs_diff(10) < 6, "{p:?}");
    }

    #[test]
    fn bad_frames_and_tiles_are_errors() {
        let mut enc = TileEncoder::new(64, 64, 90).unwrap();
        let small = vec![0u8; 100];
        assert!(matches!(enc.encode(&fref(&small, 64, 64)), Err(TileError::BadFrame { .. })));
        assert!(matches!(enc.encode(&fref(&small, 5, 5)), Err(TileError::SizeChanged { .. })));
        assert!(TileEncoder::new(0, 10, 90).is_err());
        assert!(TileEncoder::new(5000, 10, 90).is_err());
        let mut c = Canvas::new(100, 100).unwrap();
        assert!(matches!(c.apply(2, 0, b"x"), Err(TileError::OutOfRange { .. })));
        assert!(matches!(c.apply(0, 0, b"not a jpeg"), Err(TileError::Jpeg(_))));
        // A valid JPEG of the wrong size for its slot (the last column is 36 wide).
        let mut j = Vec::new();
        jpeg::encode_rgb(&[0; 64 * 64 * 3], 64, 64, 90, &mut j).unwrap();
        assert!(matches!(c.apply(1, 0, &j), Err(TileError::WrongTileSize { .. })));
        c.apply(0, 0, &j).unwrap();
    }
}
