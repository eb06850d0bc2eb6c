//! Thumbnail downscaling: packed RGB, box filter.

/// The thumbnail size for a `width × height` capture: half each way (a
/// quarter of the area), never below 16×16.
pub fn thumb_size(width: usize, height: usize) -> (usize, usize) {
    ((width / 2).max(16), (height / 2).max(16))
}

/// Halves packed RGB (`width` × `height` × 3 bytes) in both directions,
/// averaging each 2×2 block, into `dst` (resized to `width/2` × `height/2` ×
/// 3). Odd last rows/columns are dropped. A `src` shorter than its size
/// says leaves `dst` only resized, never a panic.
pub fn half_rgb(src: &[u8], width: usize, height: usize, dst: &mut Vec<u8>) {
    let (dw, dh) = (width / 2, height / 2);
    dst.resize(dw * dh * 3, 0);
    if dw == 0 || dh == 0 || src.len() < width * height * 3 {
        return;
    }
    let stride = width * 3;
    for (y, out) in dst.chunks_exact_mut(dw * 3).enumerate() {
        let top = &src[2 * y * stride..][..dw * 6];
        let bottom = &src[(2 * y + 1) * stride..][..dw * 6];
        for ((o, t), b) in
            out.chunks_exact_mut(3).zip(top.chunks_exact(6)).zip(bottom.chunks_exact(6))
        {
            for c in 0..3 {
                let sum =
                    u16::from(t[c]) + u16::from(t[c + 3]) + u16::from(b[c]) + u16::from(b[c + 3]);
                o[c] = ((sum + 2) / 4) as u8;
            }
        }
    }
}

/// Scales packed RGB from `sw` × `sh` to `dw` × `dh` (box average over the
/// covered source pixels) into `dst` (resized to `dw` × `dh` × 3 bytes), for
/// the general case [`half_rgb`] does not cover. A zero size or a `src`
/// shorter than `sw` × `sh` × 3 leaves `dst` only resized, never a panic.
pub fn resize_rgb(src: &[u8], sw: usize, sh: usize, dst: &mut Vec<u8>, dw: usize, dh: usize) {
    dst.resize(dw * dh * 3, 0);
    if sw == 0 || sh == 0 || dw == 0 || dh == 0 || src.len() < sw * sh * 3 {
        return;
    }
    for y in 0..dh {
        let (y0, y1) = (y * sh / dh, ((y + 1) * sh / dh).max(y * sh / dh + 1).min(sh));
        for x in 0..dw {
            let (x0, x1) = (x * sw / dw, ((x + 1) * sw / dw).max(x * sw / dw + 1).min(sw));
            let mut sum = [0u32; 3];
            for yy in y0..y1 {
                for px in src[(yy * sw + x0) * 3..(yy * sw + x1) * 3].chunks_exact(3) {
                    for c in 0..3 {
                        sum[c] += u32::from(px[c]);
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            let o = &mut dst[(y * dw + x) * 3..][..3];
            for c in 0..3 {
                o[c] = ((sum[c] + n / 2) / n) as u8;
            }
        }
    }
}

/// Makes the thumbnail (packed RGB, [`thumb_size`]) of a `width` × `height`
/// packed RGB frame into `dst`, by the fast 2×2 path when it applies;
/// returns the thumbnail's (width, height) in pixels.
pub fn thumbnail(src: &[u8], width: usize, height: usize, dst: &mut Vec<u8>) -> (usize, usize) {
    let (tw, th) = thumb_size(width, height);
    if tw * 2 <= width && th * 2 <= height && tw == width / 2 && th == height / 2 {
        half_rgb(src, width, height, dst);
    } else {
        resize_rgb(src, width, height, dst, tw, th);
    }
    (tw, th)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_by_averaging() {
        // 2×2 picture → 1 pixel, the rounded mean.
        let src = [0, 10, 255, 2, 10, 255, 4, 10, 0, 6, 11, 0];
        let mut dst = Vec::new();
        half_rgb(&src, 2, 2, &mut dst);
        assert_eq!(dst, [3, 10, 128]);
        let (w, h) = thumbnail(&vec![7u8; 640 * 480 * 3], 640, 480, &mut dst);
        assert_eq!((w, h), (320, 240));
        assert!(dst.len() == 320 * 240 * 3 && dst.iter().all(|&v| v == 7));
    }

    #[test]
    fn general_resize_keeps_flat_colour_and_size() {
        let mut dst = Vec::new();
        resize_rgb(&vec![9u8; 30 * 20 * 3], 30, 20, &mut dst, 16, 16);
        assert!(dst.len() == 16 * 16 * 3 && dst.iter().all(|&v| v == 9));
        resize_rgb(&[], 0, 0, &mut dst, 4, 4); // no panic on nothing
        assert_eq!(thumb_size(20, 20), (16, 16));
    }
}
