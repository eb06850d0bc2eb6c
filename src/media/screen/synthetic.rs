//! The `test` screen: a device-free desktop with a terminal whose text
//! scrolls one line per frame and a small window sliding across it. Each
//! frame depends only on its number, so tests can re-create any frame.

use super::tiles::{FrameRef, PixelFormat};

const CELL_W: usize = 8;
/// Line height; glyphs are 10 px tall, as on a 12 px terminal font.
const CELL_H: usize = 14;
const GLYPH_W: usize = 6;
const GLYPH_H: usize = 10;
const WINDOW_W: usize = 360;
const WINDOW_H: usize = 220;
/// The window slides this many pixels per frame.
const WINDOW_STEP: usize = 8;

const DESKTOP: [u8; 3] = [38, 70, 110];
const TERM_BG: [u8; 3] = [24, 24, 28];
const TERM_FG: [u8; 3] = [210, 215, 200];
const KEYWORD: [u8; 3] = [250, 180, 90];
const WIN_BG: [u8; 3] = [236, 236, 232];
const WIN_TITLE: [u8; 3] = [70, 120, 200];
const WIN_TEXT: [u8; 3] = [30, 30, 30];

fn hash(mut x: u64) -> u64 {
    // splitmix64: cheap, well mixed, deterministic.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Rendered test desktop, `width`×`height` RGBA.
pub struct TestScreen {
    width: usize,
    height: usize,
    /// Desktop and terminal frame, drawn once.
    base: Vec<u8>,
    pixels: Vec<u8>,
    term: (usize, usize, usize, usize),
}

impl TestScreen {
    /// A desktop of `width` × `height` pixels (each at least 64) with a
    /// terminal window on it.
    pub fn new(width: usize, height: usize) -> TestScreen {
        let (width, height) = (width.max(64), height.max(64));
        let mut s = TestScreen {
            width,
            height,
            base: vec![0; width * height * 4],
            pixels: vec![0; width * height * 4],
            term: (0, 0, 0, 0),
        };
        let mut base = std::mem::take(&mut s.base);
        for y in 0..height {
            // A gentle vertical gradient, like a wallpaper.
            let shade = (y * 24 / height) as u8;
            let c = [DESKTOP[0] + shade, DESKTOP[1] + shade, DESKTOP[2] + shade, 255];
            for px in base[y * width * 4..][..width * 4].chunks_exact_mut(4) {
                px.copy_from_slice(&c);
            }
        }
        s.base = base;
        let tw = (width * 3 / 5).max(32);
        let th = (height - height / 10).max(32);
        s.term =
            (width / 30, height / 20, tw.min(width - width / 30), th.min(height - height / 20));
        let (x, y, w, h) = s.term;
        fill(&mut s.base, width, x, y, w, h, TERM_BG);
        s
    }

    /// (width, height), pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Renders frame `n` and returns it.
    pub fn frame(&mut self, n: u64) -> FrameRef<'_> {
        self.pixels.copy_from_slice(&self.base);
        let (tx, ty, tw, th) = self.term;
        let lines = th.saturating_sub(8) / CELL_H;
        let cols = tw.saturating_sub(8) / CELL_W;
        for r in 0..lines {
            let line = n + r as u64;
            self.text_line(tx + 4, ty + 4 + r * CELL_H, cols, line, TERM_FG);
        }
        // The window bounces across the screen below the terminal's top.
        // On small screens the window shrinks so the terminal stays visible.
        let (win_w, win_h) = (WINDOW_W.min(self.width / 3), WINDOW_H.min(self.height / 3));
        let span = self.width.saturating_sub(win_w).max(1);
        let travel = (n as usize * WINDOW_STEP) % (2 * span);
        let wx = if travel < span { travel } else { 2 * span - travel };
        let wy = (self.height / 3).min(self.height.saturating_sub(win_h));
        let (ww, wh) = (win_w.min(self.width - wx), win_h.min(self.height - wy));
        fill(&mut self.pixels, self.width, wx, wy, ww, wh, WIN_BG);
        fill(&mut self.pixels, self.width, wx, wy, ww, 22.min(wh), WIN_TITLE);
        for r in 0..(wh.saturating_sub(30) / CELL_H) {
            self.text_line(
                wx + 8,
                wy + 28 + r * CELL_H,
                (ww - 16) / CELL_W,
                1_000_000 + r as u64,
                WIN_TEXT,
            );
        }
        FrameRef {
            width: self.width,
            height: self.height,
            stride: self.width * 4,
            format: PixelFormat::Rgba,
            data: &self.pixels,
        }
    }

    /// Draws pseudo-code line number `line`: indentation, then words of
    /// text-like glyphs; the first word of some lines is highlighted.
    fn text_line(&mut self, x: usize, y: usize, cols: usize, line: u64, fg: [u8; 3]) {
        let h = hash(line);
        let indent = (h % 4) as usize * 2;
        let len = (indent + 8 + (h >> 8) as usize % 60).min(cols);
        let mut col = indent;
        let mut word = 0u64;
        while col < len {
            let wh = hash(line ^ (word << 40));
            let wlen = 2 + (wh % 8) as usize;
            let color = if word == 0 && h & 0x10000 != 0 { KEYWORD } else { fg };
            for i in 0..wlen.min(len - col) {
                let glyph = hash(wh ^ i as u64);
                self.glyph(x + (col + i) * CELL_W, y, glyph, color);
            }
            col += wlen + 1;
            word += 1;
        }
    }

    fn glyph(&mut self, x: usize, y: usize, bits: u64, color: [u8; 3]) {
        // A 6×10 cell: a stem or bowl shape picked by the hash, so the
        // "text" has the stroke density and edges of real glyphs.
        for gy in 1..GLYPH_H - 1 {
            for gx in 0..GLYPH_W - 1 {
                let on = match bits & 3 {
                    0 => gx == 0 || (gy == 5 && gx < 4) || gy == 1,
                    1 => (gx == 0 || gx == 4) && gy > 2 || gy == 3 || gy == GLYPH_H - 2,
                    2 => gx == 2 || (gy == GLYPH_H - 2 && gx > 0),
                    _ => (gy + gx) % 4 == 0 || gx == 4,
                } ^ (bits >> (8 + gy * 5 + gx) & 1 == 1 && gy > 6);
                if on {
                    let (px, py) = (x + gx, y + gy);
                    if px < self.width && py < self.height {
                        let at = (py * self.width + px) * 4;
                        self.pixels[at..at + 3].copy_from_slice(&color);
                    }
                }
            }
        }
    }
}

fn fill(buf: &mut [u8], stride_px: usize, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
    for yy in y..y + h {
        for px in buf[(yy * stride_px + x) * 4..][..w * 4].chunks_exact_mut(4) {
            px.copy_from_slice(&[c[0], c[1], c[2], 255]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_screens_change_every_frame_too() {
        let mut s = TestScreen::new(320, 200);
        let a = s.frame(1).data.to_vec();
        assert_ne!(a, s.frame(2).data, "the window must not cover the terminal");
    }

    #[test]
    fn frames_are_deterministic_and_move() {
        let mut a = TestScreen::new(640, 360);
        let mut b = TestScreen::new(640, 360);
        let f0 = a.frame(5).data.to_vec();
        assert_eq!(f0, b.frame(5).data, "same number, same picture");
        let f1 = a.frame(6).data.to_vec();
        let changed = f0.chunks(4).zip(f1.chunks(4)).filter(|(p, q)| p != q).count();
        assert!(changed > 1000, "text scrolls and the window moves: {changed} pixels changed");
        assert!(changed < 640 * 360 / 2, "most of the desktop stays still: {changed}");
    }
}
