//! A tiny built-in bitmap font for the names and scores drawn on the live MJPEG stream of
//! `facegate serve` (and its snapshots).
//!
//! It is a fixed 5x7 font for printable ASCII, compiled into the binary, so that annotating a
//! frame needs no font file on the board and no text-rendering dependency. Integer scaling keeps
//! the glyphs crisp after JPEG compression, where antialiased small text would smear.

use image::{Rgb, RgbImage};

/// Vertical advance from one line of text to the next at scale 1: the 7 glyph rows plus a 1 px
/// gap, so stacked labels do not touch.
pub const LINE_HEIGHT: u32 = 8;

const GLYPH_W: i64 = 5;
const GLYPH_H: i64 = 7;
/// Horizontal advance at scale 1: the glyph plus a 1 px gap.
const ADVANCE: u32 = 6;
const MIN_SCALE: u32 = 1;
/// Larger text than this would cover the faces it is meant to name.
const MAX_SCALE: u32 = 8;
const FIRST: u32 = 32;
const LAST: u32 = 126;

/// Glyphs for ASCII 32..=126, indexed by `code - 32`. Each byte is one row, top row first; the
/// low 5 bits are the columns, bit 4 being the leftmost.
#[rustfmt::skip]
const GLYPHS: [[u8; 7]; 95] = [
    // ' '
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000],
    // '!'
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00000, 0b00100],
    // '"'
    [0b01010, 0b01010, 0b01010, 0b00000, 0b00000, 0b00000, 0b00000],
    // '#'
    [0b01010, 0b01010, 0b11111, 0b01010, 0b11111, 0b01010, 0b01010],
    // '$'
    [0b00100, 0b01111, 0b10100, 0b01110, 0b00101, 0b11110, 0b00100],
    // '%'
    [0b11000, 0b11001, 0b00010, 0b00100, 0b01000, 0b10011, 0b00011],
    // '&'
    [0b01100, 0b10010, 0b10100, 0b01000, 0b10101, 0b10010, 0b01101],
    // '\''
    [0b00100, 0b00100, 0b01000, 0b00000, 0b00000, 0b00000, 0b00000],
    // '('
    [0b00010, 0b00100, 0b01000, 0b01000, 0b01000, 0b00100, 0b00010],
    // ')'
    [0b01000, 0b00100, 0b00010, 0b00010, 0b00010, 0b00100, 0b01000],
    // '*'
    [0b00000, 0b00100, 0b10101, 0b01110, 0b10101, 0b00100, 0b00000],
    // '+'
    [0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000],
    // ','
    [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000],
    // '-'
    [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000],
    // '.'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100],
    // '/'
    [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000],
    // '0'
    [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
    // '1'
    [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
    // '2'
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
    // '3'
    [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
    // '4'
    [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
    // '5'
    [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
    // '6'
    [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
    // '7'
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
    // '8'
    [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
    // '9'
    [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
    // ':'
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000],
    // ';'
    [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b00100, 0b01000],
    // '<'
    [0b00010, 0b00100, 0b01000, 0b10000, 0b01000, 0b00100, 0b00010],
    // '='
    [0b00000, 0b00000, 0b11111, 0b00000, 0b11111, 0b00000, 0b00000],
    // '>'
    [0b01000, 0b00100, 0b00010, 0b00001, 0b00010, 0b00100, 0b01000],
    // '?'
    [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100],
    // '@'
    [0b01110, 0b10001, 0b00001, 0b01101, 0b10101, 0b10101, 0b01110],
    // 'A'
    [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
    // 'B'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
    // 'C'
    [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
    // 'D'
    [0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100],
    // 'E'
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
    // 'F'
    [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
    // 'G'
    [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
    // 'H'
    [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
    // 'I'
    [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
    // 'J'
    [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100],
    // 'K'
    [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
    // 'L'
    [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
    // 'M'
    [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
    // 'N'
    [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
    // 'O'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
    // 'P'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
    // 'Q'
    [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101],
    // 'R'
    [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
    // 'S'
    [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
    // 'T'
    [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
    // 'U'
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
    // 'V'
    [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
    // 'W'
    [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
    // 'X'
    [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
    // 'Y'
    [0b10001, 0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100],
    // 'Z'
    [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111],
    // '['
    [0b01110, 0b01000, 0b01000, 0b01000, 0b01000, 0b01000, 0b01110],
    // '\\'
    [0b00000, 0b10000, 0b01000, 0b00100, 0b00010, 0b00001, 0b00000],
    // ']'
    [0b01110, 0b00010, 0b00010, 0b00010, 0b00010, 0b00010, 0b01110],
    // '^'
    [0b00100, 0b01010, 0b10001, 0b00000, 0b00000, 0b00000, 0b00000],
    // '_'
    [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b11111],
    // '`'
    [0b01000, 0b00100, 0b00010, 0b00000, 0b00000, 0b00000, 0b00000],
    // 'a'
    [0b00000, 0b00000, 0b01110, 0b00001, 0b01111, 0b10001, 0b01111],
    // 'b'
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b11110],
    // 'c'
    [0b00000, 0b00000, 0b01110, 0b10000, 0b10000, 0b10001, 0b01110],
    // 'd'
    [0b00001, 0b00001, 0b01101, 0b10011, 0b10001, 0b10001, 0b01111],
    // 'e'
    [0b00000, 0b00000, 0b01110, 0b10001, 0b11111, 0b10000, 0b01110],
    // 'f'
    [0b00110, 0b01001, 0b01000, 0b11100, 0b01000, 0b01000, 0b01000],
    // 'g'
    [0b00000, 0b01111, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
    // 'h'
    [0b10000, 0b10000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
    // 'i'
    [0b00100, 0b00000, 0b01100, 0b00100, 0b00100, 0b00100, 0b01110],
    // 'j'
    [0b00010, 0b00000, 0b00110, 0b00010, 0b00010, 0b10010, 0b01100],
    // 'k'
    [0b10000, 0b10000, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010],
    // 'l'
    [0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
    // 'm'
    [0b00000, 0b00000, 0b11010, 0b10101, 0b10101, 0b10001, 0b10001],
    // 'n'
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10001, 0b10001, 0b10001],
    // 'o'
    [0b00000, 0b00000, 0b01110, 0b10001, 0b10001, 0b10001, 0b01110],
    // 'p'
    [0b00000, 0b00000, 0b11110, 0b10001, 0b11110, 0b10000, 0b10000],
    // 'q'
    [0b00000, 0b00000, 0b01101, 0b10011, 0b01111, 0b00001, 0b00001],
    // 'r'
    [0b00000, 0b00000, 0b10110, 0b11001, 0b10000, 0b10000, 0b10000],
    // 's'
    [0b00000, 0b00000, 0b01110, 0b10000, 0b01110, 0b00001, 0b11110],
    // 't'
    [0b01000, 0b01000, 0b11100, 0b01000, 0b01000, 0b01001, 0b00110],
    // 'u'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b10011, 0b01101],
    // 'v'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
    // 'w'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b10101, 0b10101, 0b01010],
    // 'x'
    [0b00000, 0b00000, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001],
    // 'y'
    [0b00000, 0b00000, 0b10001, 0b10001, 0b01111, 0b00001, 0b01110],
    // 'z'
    [0b00000, 0b00000, 0b11111, 0b00010, 0b00100, 0b01000, 0b11111],
    // '{'
    [0b00010, 0b00100, 0b00100, 0b01000, 0b00100, 0b00100, 0b00010],
    // '|'
    [0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
    // '}'
    [0b01000, 0b00100, 0b00100, 0b00010, 0b00100, 0b00100, 0b01000],
    // '~'
    [0b00000, 0b00000, 0b01000, 0b10101, 0b00010, 0b00000, 0b00000],
];

fn clamp_scale(scale: u32) -> u32 {
    scale.clamp(MIN_SCALE, MAX_SCALE)
}

fn glyph(c: char) -> &'static [u8; 7] {
    let code = c as u32;
    // Names can hold any Unicode; a visible '?' shows that something was there, where
    // skipping the char would silently change the name shown.
    let code = if (FIRST..=LAST).contains(&code) {
        code
    } else {
        '?' as u32
    };
    &GLYPHS[(code - FIRST) as usize]
}

/// Width in pixels of `s` drawn at `scale` (clamped to 1..=8), including the 1 px gap after the
/// last char.
pub fn text_width(s: &str, scale: u32) -> u32 {
    let chars = u32::try_from(s.chars().count()).unwrap_or(u32::MAX);
    chars.saturating_mul(ADVANCE * clamp_scale(scale))
}

/// Draws `s` with its top-left corner at (`x`, `y`); each font pixel becomes a `scale` x `scale`
/// block (scale clamped to 1..=8). Whatever falls outside the image is skipped, so a label of a
/// face at the frame's edge is cut off instead of panicking.
pub fn draw_text(img: &mut RgbImage, x: i32, y: i32, s: &str, scale: u32, colour: [u8; 3]) {
    draw_glyphs(
        img,
        i64::from(x),
        i64::from(y),
        s,
        i64::from(clamp_scale(scale)),
        colour,
    );
}

/// Draws `s` on a filled `bg` rectangle whose top-left corner is at (`x`, `y`), with a margin of
/// `2 * scale` pixels around the text, so the name stays readable on any background. Clipped to
/// the image like [`draw_text`].
pub fn label(img: &mut RgbImage, x: i32, y: i32, s: &str, scale: u32, fg: [u8; 3], bg: [u8; 3]) {
    if s.is_empty() {
        // A padding-only box would be a stray coloured square with nothing to read.
        return;
    }
    let scale = i64::from(clamp_scale(scale));
    let pad = 2 * scale;
    // The gap after the last char is left out so that the margin is even on both sides.
    let text_w = i64::from(text_width(s, scale as u32)) - scale;
    let (x, y) = (i64::from(x), i64::from(y));
    fill_rect(img, x, y, text_w + 2 * pad, GLYPH_H * scale + 2 * pad, bg);
    draw_glyphs(img, x + pad, y + pad, s, scale, fg);
}

// Coordinates are i64 so that offsets near i32::MIN/MAX plus padding and glyph advances cannot
// overflow.
fn draw_glyphs(img: &mut RgbImage, x: i64, y: i64, s: &str, scale: i64, colour: [u8; 3]) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    if y >= h || y + GLYPH_H * scale <= 0 {
        return;
    }
    let advance = i64::from(ADVANCE) * scale;
    let mut gx = x;
    for c in s.chars() {
        if gx >= w {
            // Chars only move further right from here; stop rather than walk a long string.
            break;
        }
        if gx + GLYPH_W * scale > 0 {
            for (row, bits) in (0i64..).zip(glyph(c)) {
                for col in 0..GLYPH_W {
                    if bits & (0x10 >> col) != 0 {
                        let (px, py) = (gx + col * scale, y + row * scale);
                        fill_rect(img, px, py, scale, scale, colour);
                    }
                }
            }
        }
        gx += advance;
    }
}

fn fill_rect(img: &mut RgbImage, x: i64, y: i64, w: i64, h: i64, colour: [u8; 3]) {
    let x0 = x.max(0);
    let y0 = y.max(0);
    let x1 = x.saturating_add(w).min(i64::from(img.width()));
    let y1 = y.saturating_add(h).min(i64::from(img.height()));
    for py in y0..y1 {
        for px in x0..x1 {
            img.put_pixel(px as u32, py as u32, Rgb(colour));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHITE: [u8; 3] = [255, 255, 255];
    const BLUE: [u8; 3] = [0, 0, 200];

    fn lit(img: &RgbImage) -> Vec<(u32, u32)> {
        img.enumerate_pixels()
            .filter(|(_, _, p)| p.0 != [0, 0, 0])
            .map(|(x, y, _)| (x, y))
            .collect()
    }

    #[test]
    fn every_glyph_but_space_has_ink_within_five_columns() {
        assert!(GLYPHS[0].iter().all(|&row| row == 0), "space must be blank");
        for (i, g) in GLYPHS.iter().enumerate().skip(1) {
            let c = char::from(b' ' + i as u8);
            assert!(g.iter().any(|&row| row != 0), "glyph {c:?} is blank");
            assert!(
                g.iter().all(|&row| row & !0x1f == 0),
                "glyph {c:?} uses bits above 4"
            );
        }
    }

    #[test]
    fn drawing_anywhere_does_not_panic() {
        let offsets = [
            i32::MIN,
            i32::MIN + 1,
            -100_000,
            -41,
            -7,
            -1,
            0,
            3,
            19,
            20,
            1000,
            i32::MAX,
        ];
        for (w, h) in [(20, 10), (1, 1), (0, 0), (0, 5)] {
            let mut img = RgbImage::new(w, h);
            for &x in &offsets {
                for &y in &offsets {
                    for scale in 0..=10 {
                        draw_text(&mut img, x, y, "Ada 0.71 \u{e9}~", scale, WHITE);
                        label(&mut img, x, y, "Ada 0.71", scale, WHITE, BLUE);
                    }
                }
            }
        }
    }

    #[test]
    fn capital_i_lands_on_the_expected_pixels() {
        let mut img = RgbImage::new(12, 12);
        draw_text(&mut img, 3, 2, "I", 1, WHITE);
        // .###. on the top and bottom rows, a single stem in the middle column between them.
        let mut expected = vec![(4, 2), (5, 2), (6, 2), (4, 8), (5, 8), (6, 8)];
        expected.extend((3..=7).map(|y| (5, y)));
        let mut got = lit(&img);
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(img.get_pixel(5, 5).0, WHITE);
    }

    #[test]
    fn scale_turns_each_font_pixel_into_a_block() {
        let mut img = RgbImage::new(12, 16);
        draw_text(&mut img, 0, 0, "I", 2, WHITE);
        // The top row's leftmost ink is column 1, i.e. x 2..=3 at scale 2.
        assert_eq!(img.get_pixel(1, 0).0, [0, 0, 0]);
        for (x, y) in [(2, 0), (3, 0), (2, 1), (3, 1), (4, 4), (5, 5)] {
            assert_eq!(img.get_pixel(x, y).0, WHITE, "({x}, {y})");
        }
        assert_eq!(lit(&img).len(), 11 * 4);
    }

    #[test]
    fn clipped_glyph_keeps_its_visible_part() {
        let mut img = RgbImage::new(12, 12);
        draw_text(&mut img, -5, 0, "AI", 1, WHITE);
        // 'A' is wholly off the left edge; 'I' starts at x 1 and keeps all 11 pixels.
        assert_eq!(lit(&img).len(), 11);
        assert_eq!(img.get_pixel(2, 0).0, WHITE);
    }

    #[test]
    fn text_width_counts_six_pixels_per_char() {
        assert_eq!(text_width("Ada", 2), 36);
        assert_eq!(text_width("", 3), 0);
        assert_eq!(text_width("A", 0), 6, "scale 0 is clamped to 1");
        assert_eq!(text_width("A", 100), 48, "scale is clamped to 8");
        assert_eq!(
            text_width("\u{e9}t\u{e9}", 1),
            18,
            "counts chars, not bytes"
        );
    }

    #[test]
    fn unprintable_chars_draw_as_question_mark() {
        let mut odd = RgbImage::new(30, 10);
        let mut question = RgbImage::new(30, 10);
        draw_text(&mut odd, 0, 0, "\u{e9}\n\u{7f}", 1, WHITE);
        draw_text(&mut question, 0, 0, "???", 1, WHITE);
        assert_eq!(odd, question);
    }

    #[test]
    fn label_pads_the_text_on_a_filled_box() {
        let mut img = RgbImage::new(20, 20);
        label(&mut img, 0, 0, "I", 1, WHITE, BLUE);
        // Box: 5 px of glyph plus 2 px of padding each side wide, 7 + 2 * 2 tall.
        for (x, y) in [(0, 0), (8, 0), (0, 10), (8, 10), (2, 2)] {
            assert_eq!(img.get_pixel(x, y).0, BLUE, "({x}, {y})");
        }
        for (x, y) in [(9, 0), (0, 11), (9, 11)] {
            assert_eq!(img.get_pixel(x, y).0, [0, 0, 0], "({x}, {y})");
        }
        assert_eq!(img.get_pixel(3, 2).0, WHITE);
        assert_eq!(img.get_pixel(4, 5).0, WHITE);
    }

    #[test]
    fn empty_label_draws_nothing() {
        let mut img = RgbImage::new(10, 10);
        label(&mut img, 1, 1, "", 2, WHITE, BLUE);
        assert!(lit(&img).is_empty());
    }
}
