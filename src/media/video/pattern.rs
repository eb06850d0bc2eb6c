//! The `test` camera: a moving colour pattern with the participant's name and
//! a frame counter drawn in a tiny built-in bitmap font, for device-free use.
//!
//! The counter is also drawn as two strips of black and white cells, at the
//! top (the counter) and at the bottom (its complement), so a receiver can
//! check with [`read_counter`] that a decoded picture is one whole, real frame:
//! a frame missing its last fragments has no readable bottom strip.

/// 5×7 glyphs, one byte per row, bit 4 = leftmost column.
const GLYPHS: &[(char, [u8; 7])] = &[
    ('0', [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E]),
    ('1', [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    ('2', [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F]),
    ('3', [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E]),
    ('4', [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02]),
    ('5', [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E]),
    ('6', [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E]),
    ('7', [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08]),
    ('8', [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E]),
    ('9', [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C]),
    ('A', [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11]),
    ('B', [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E]),
    ('C', [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E]),
    ('D', [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C]),
    ('E', [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F]),
    ('F', [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10]),
    ('G', [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F]),
    ('H', [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11]),
    ('I', [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E]),
    ('J', [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C]),
    ('K', [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11]),
    ('L', [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F]),
    ('M', [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11]),
    ('N', [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11]),
    ('O', [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E]),
    ('P', [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10]),
    ('Q', [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D]),
    ('R', [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11]),
    ('S', [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E]),
    ('T', [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04]),
    ('U', [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E]),
    ('V', [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04]),
    ('W', [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A]),
    ('X', [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11]),
    ('Y', [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04]),
    ('Z', [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F]),
    (' ', [0, 0, 0, 0, 0, 0, 0]),
    ('-', [0, 0, 0, 0x1F, 0, 0, 0]),
    ('_', [0, 0, 0, 0, 0, 0, 0x1F]),
    ('#', [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A]),
    (':', [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0]),
    ('.', [0, 0, 0, 0, 0, 0x0C, 0x0C]),
    ('?', [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04]),
];

fn glyph(c: char) -> [u8; 7] {
    let c = c.to_ascii_uppercase();
    GLYPHS
        .iter()
        .find(|(g, _)| *g == c)
        .or_else(|| GLYPHS.last())
        .map(|(_, rows)| *rows)
        .unwrap_or_default()
}

/// Cells per code strip: the counter's low 16 bits.
const CODE_BITS: usize = 16;
/// Colour period of the moving background, in pixels.
const PERIOD: usize = 256;

/// A test-pattern source of packed RGB frames.
pub struct TestPattern {
    name: String,
    width: usize,
    height: usize,
    /// The scrolling background, `height + PERIOD` rows, so every row of a
    /// frame is a plain copy out of it.
    background: Vec<u8>,
}

/// Camera-like grain, ± this much per channel. Without it the pattern is so
/// smooth that its JPEGs are a fraction of a real camera's, which would make
/// bandwidth figures (and the thumbnail layer's saving) look unlike a call.
pub const GRAIN: i32 = 16;

impl TestPattern {
    /// A pattern of `width` × `height` pixels showing `name` (its first 24
    /// characters).
    pub fn new(name: &str, width: usize, height: usize) -> TestPattern {
        let palette: Vec<[i32; 3]> = (0..PERIOD)
            .map(|i| {
                let t = i as f32 / PERIOD as f32 * std::f32::consts::TAU;
                let c = |phase: f32| (96.0 + 64.0 * (t + phase).sin()) as i32;
                [c(0.0), c(2.1), c(4.2)]
            })
            .collect();
        let rows = height + PERIOD;
        let mut background = Vec::with_capacity(rows * width * 3);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for r in 0..rows {
            for x in 0..width {
                let base = palette[(x + r) % PERIOD];
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                for (c, v) in base.iter().enumerate() {
                    let grain = ((seed >> (c * 8)) & 0xFF) as i32 * (2 * GRAIN + 1) / 256 - GRAIN;
                    background.push((v + grain).clamp(0, 255) as u8);
                }
            }
        }
        let name: String = name.chars().take(24).collect();
        TestPattern { name, width, height, background }
    }

    /// (width, height), pixels.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    /// Draws frame `counter` into `rgb` (resized to width × height × 3).
    pub fn render(&self, counter: u32, rgb: &mut Vec<u8>) {
        let (w, h) = (self.width, self.height);
        rgb.resize(w * h * 3, 0);
        let shift = (counter as usize * 4) % PERIOD;
        let from = &self.background[shift * w * 3..][..w * h * 3];
        rgb.copy_from_slice(from);
        // A white bar sweeping left to right: motion a viewer can follow.
        let bar_w = (w / 20).max(4);
        let bar_x = (counter as usize * 8) % (w.saturating_sub(bar_w).max(1));
        fill(rgb, w, bar_x, h / 8, bar_w, h - h / 4, [235, 235, 235]);
        // Name and counter on a dark panel.
        let scale = (h / 120).max(1);
        let line = 9 * scale;
        let text_w = 6 * scale * self.name.chars().count().max(8) + 2 * scale;
        fill(
            rgb,
            w,
            scale * 2,
            h / 10,
            text_w.min(w - 2 * scale),
            2 * line + 2 * scale,
            [16, 16, 24],
        );
        draw_text(rgb, w, (3 * scale, h / 10 + 2 * scale), scale, &self.name, [255, 255, 255]);
        let label = format!("#{counter}");
        draw_text(rgb, w, (3 * scale, h / 10 + 2 * scale + line), scale, &label, [255, 220, 0]);
        // Machine-readable counter: top strip = bits, bottom strip = complement.
        let code = counter as u16;
        let cell_w = w / CODE_BITS;
        let cell_h = (h / 20).max(2);
        for bit in 0..CODE_BITS {
            let one = code >> (CODE_BITS - 1 - bit) & 1 == 1;
            let (on, off) = ([255, 255, 255], [0, 0, 0]);
            fill(rgb, w, bit * cell_w, 0, cell_w, cell_h, if one { on } else { off });
            fill(rgb, w, bit * cell_w, h - cell_h, cell_w, cell_h, if one { off } else { on });
        }
    }
}

fn fill(rgb: &mut [u8], w: usize, x: usize, y: usize, fw: usize, fh: usize, c: [u8; 3]) {
    let h = rgb.len() / 3 / w.max(1);
    for yy in y.min(h)..(y + fh).min(h) {
        let row = &mut rgb[yy * w * 3..(yy + 1) * w * 3];
        for px in row[x.min(w) * 3..(x + fw).min(w) * 3].chunks_exact_mut(3) {
            px.copy_from_slice(&c);
        }
    }
}

/// Draws `text` with its top-left corner at (x, y), each font pixel `scale`
/// pixels wide; clipped at the picture's edges.
pub fn draw_text(
    rgb: &mut [u8],
    w: usize,
    (x, y): (usize, usize),
    scale: usize,
    text: &str,
    color: [u8; 3],
) {
    for (i, c) in text.chars().enumerate() {
        let gx = x + i * 6 * scale;
        if gx >= w {
            break;
        }
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..5 {
                if bits >> (4 - col) & 1 == 1 {
                    fill(rgb, w, gx + col * scale, y + row * scale, scale, scale, color);
                }
            }
        }
    }
}

/// Reads the counter from a decoded test-pattern frame (RGBA, any size the
/// pattern was scaled to). `None` unless both strips are clean and agree:
/// a grey, smeared or missing bottom strip means the frame is not whole.
pub fn read_counter(rgba: &[u8], width: usize, height: usize) -> Option<u16> {
    if width < CODE_BITS * 2 || height < 20 || rgba.len() != width * height * 4 {
        return None;
    }
    let cell_w = width / CODE_BITS;
    let cell_h = (height / 20).max(2);
    let luma = |cx: usize, cy: usize| {
        let p = &rgba[(cy * width + cx) * 4..][..3];
        (u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3
    };
    let read = |y: usize| -> Option<u16> {
        let mut v = 0u16;
        for bit in 0..CODE_BITS {
            let l = luma(bit * cell_w + cell_w / 2, y);
            let one = match l {
                0..=70 => false,
                185.. => true,
                _ => return None,
            };
            v = v << 1 | u16::from(one);
        }
        Some(v)
    };
    let top = read(cell_h / 2)?;
    let bottom = read(height - cell_h + cell_h / 2)?;
    (bottom == !top).then_some(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to_rgba(rgb: &[u8]) -> Vec<u8> {
        rgb.chunks(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
    }

    #[test]
    fn counter_survives_jpeg_at_every_size() {
        for (w, h) in [(640, 480), (320, 240), (1280, 720), (160, 120)] {
            let pattern = TestPattern::new("Ann", w, h);
            let mut rgb = Vec::new();
            let mut jpeg = Vec::new();
            for counter in [0u32, 1, 0xA5A5, 70_000] {
                pattern.render(counter, &mut rgb);
                assert_eq!(read_counter(&to_rgba(&rgb), w, h), Some(counter as u16));
                crate::media::jpeg::encode_rgb(&rgb, w, h, 55, &mut jpeg).unwrap();
                let img = crate::media::jpeg::decode_rgba(&jpeg).unwrap();
                assert_eq!(read_counter(&img.pixels, w, h), Some(counter as u16), "{w}x{h}");
            }
        }
    }

    #[test]
    fn a_frame_cut_short_does_not_read() {
        let pattern = TestPattern::new("bob", 640, 480);
        let mut rgb = Vec::new();
        pattern.render(1234, &mut rgb);
        // The last rows lost (as a decoder fills them): grey.
        let cut = rgb.len() - 640 * 3 * 100;
        rgb[cut..].fill(128);
        assert_eq!(read_counter(&to_rgba(&rgb), 640, 480), None);
        assert_eq!(read_counter(&[], 0, 0), None);
    }

    #[test]
    fn frames_move_and_show_the_name() {
        let pattern = TestPattern::new("Zed", 320, 240);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        pattern.render(1, &mut a);
        pattern.render(2, &mut b);
        assert_ne!(a, b);
        // Some pure white glyph pixels are on the text panel.
        let panel_row = 240 / 10 + 2 * 2 + 2;
        let row = &a[panel_row * 320 * 3..(panel_row + 1) * 320 * 3];
        assert!(row[..60 * 3].chunks(3).any(|p| p == [255, 255, 255]));
    }
}
