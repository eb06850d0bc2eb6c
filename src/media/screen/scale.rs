//! Screen geometry for sharing: how big a shared picture may be, and the
//! downscaler that gets a larger monitor there.
//!
//! A 5120×1440 ultrawide (or a 7680×2160 pair of 4K monitors) is shared at
//! most [`SHARE_MAX`]: scaled down by one factor for both sides, so text
//! keeps its shape, instead of being refused.

use super::tiles::FrameRef;
#[cfg(test)]
use super::tiles::PixelFormat;

/// Largest shared picture, width × height: the common 2560×1600 class of
/// displays. Bigger screens are scaled down to fit, keeping their shape.
/// Well inside the wire limit (`proto::SCREEN_MAX_SIDE`, 4096).
pub const SHARE_MAX: (usize, usize) = (2560, 1600);

/// The size a `width × height` screen is shared at: itself if it fits in
/// [`SHARE_MAX`], else scaled by one factor (rounded down, at least 1×1)
/// so that it does.
pub fn share_size(width: usize, height: usize) -> (usize, usize) {
    let (mw, mh) = SHARE_MAX;
    if width <= mw && height <= mh {
        return (width.max(1), height.max(1));
    }
    // Exact integer comparisons: scale = min(mw / width, mh / height).
    if mw * height <= mh * width {
        (mw, (height * mw / width).max(1))
    } else {
        ((width * mh / height).max(1), mh)
    }
}

/// Scales 4-byte pixels down by a box filter (each output pixel is the mean
/// of the source pixels it covers), into a buffer it keeps and reuses.
#[derive(Debug, Default)]
pub struct Downscaler {
    out: Vec<u8>,
    /// Per output column: the first source column and how many it covers.
    cols: Vec<(usize, usize)>,
    key: (usize, usize, usize, usize),
    sums: Vec<u32>,
}

impl Downscaler {
    /// `frame` scaled to `width × height` (both ≤ the frame's), same pixel
    /// order, tightly packed. A frame already that size is returned as is.
    pub fn scale<'a>(
        &'a mut self,
        frame: &FrameRef<'a>,
        width: usize,
        height: usize,
    ) -> FrameRef<'a> {
        let (sw, sh) = (frame.width, frame.height);
        if (sw, sh) == (width, height) || width == 0 || height == 0 || width > sw || height > sh {
            return *frame;
        }
        if self.key != (sw, sh, width, height) {
            self.key = (sw, sh, width, height);
            self.cols = (0..width)
                .map(|x| {
                    let (a, b) = (x * sw / width, ((x + 1) * sw / width).max(x * sw / width + 1));
                    (a, b - a)
                })
                .collect();
        }
        self.out.resize(width * height * 4, 0);
        self.sums.resize(width * 4, 0);
        for y in 0..height {
            let (y0, y1) = (y * sh / height, ((y + 1) * sh / height).max(y * sh / height + 1));
            self.sums.fill(0);
            for sy in y0..y1.min(sh) {
                let row = &frame.data[sy * frame.stride..][..sw * 4];
                for (x, &(x0, n)) in self.cols.iter().enumerate() {
                    let s = &mut self.sums[x * 4..][..4];
                    for p in row[x0 * 4..][..n * 4].chunks_exact(4) {
                        s[0] += u32::from(p[0]);
                        s[1] += u32::from(p[1]);
                        s[2] += u32::from(p[2]);
                    }
                }
            }
            let rows = (y1.min(sh) - y0) as u32;
            let out = &mut self.out[y * width * 4..][..width * 4];
            for (x, &(_, n)) in self.cols.iter().enumerate() {
                let count = rows * n as u32;
                for c in 0..3 {
                    out[x * 4 + c] = ((self.sums[x * 4 + c] + count / 2) / count) as u8;
                }
                out[x * 4 + 3] = 255;
            }
        }
        FrameRef { width, height, stride: width * 4, format: frame.format, data: &self.out }
    }
}

#[cfg(test)]
fn rgba_frame(data: &[u8], width: usize, height: usize) -> FrameRef<'_> {
    FrameRef { width, height, stride: width * 4, format: PixelFormat::Rgba, data }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_screens_are_bounded_keeping_their_shape() {
        // (screen, shared as, why)
        let cases = [
            ((1920, 1080), (1920, 1080), "fits"),
            ((2560, 1600), (2560, 1600), "exactly the bound"),
            ((5120, 1440), (2560, 720), "ultrawide: halved"),
            ((3840, 2160), (2560, 1440), "4K"),
            ((7680, 2160), (2560, 720), "two 4K side by side"),
            ((1440, 5120), (450, 1600), "portrait"),
            ((100_000, 10), (2560, 1), "absurd, never 0"),
        ];
        for ((w, h), want, why) in cases {
            assert_eq!(share_size(w, h), want, "{why}");
            let (sw, sh) = share_size(w, h);
            assert!(sw <= SHARE_MAX.0 && sh <= SHARE_MAX.1, "{why}");
        }
    }

    #[test]
    fn downscaling_averages_what_each_pixel_covers() {
        // 4×2: left half black, right half white → 2×1: one black, one white.
        let mut px = Vec::new();
        for _ in 0..2 {
            for x in 0..4 {
                let v = if x < 2 { 0 } else { 255 };
                px.extend_from_slice(&[v, v, v, 255]);
            }
        }
        let mut d = Downscaler::default();
        let f = d.scale(&rgba_frame(&px, 4, 2), 2, 1);
        assert_eq!((f.width, f.height, f.stride), (2, 1, 8));
        assert_eq!(f.data, [0, 0, 0, 255, 255, 255, 255, 255]);
        // Non-integer ratios cover every source pixel; a flat grey stays grey.
        let grey = vec![100u8; 7 * 5 * 4];
        let mut d = Downscaler::default();
        let f = d.scale(&rgba_frame(&grey, 7, 5), 3, 2);
        assert!(f.data.chunks(4).all(|p| p[..3] == [100, 100, 100]));
    }
}
