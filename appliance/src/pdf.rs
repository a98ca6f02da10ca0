//! Printable documents (consultation reports, admission slips) as PDF, with Chinese text in
//! Noto Sans CJK SC (Debian's fonts-noto-cjk), subset into each file by krilla. A document is
//! a list of blocks laid out top to bottom on A4 pages, wrapping lines by the glyphs' widths
//! (CJK full width, Latin about half) and breaking pages as needed. Pure: blocks in, bytes out.

use std::sync::OnceLock;

use krilla::Document;
use krilla::geom::{Point, Size, Transform};
use krilla::image::Image;
use krilla::page::PageSettings;
use krilla::text::{Font, TextDirection};

/// Where fonts-noto-cjk puts the font, and the face index of Simplified Chinese in it.
pub const FONT_PATH: &str = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc";
/// The "Noto Sans CJK SC" face in [`FONT_PATH`].
pub const FONT_INDEX: u32 = 2;

/// Why a document could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PdfError {
    /// The Chinese font is not installed.
    #[error("{FONT_PATH}: cannot read the Chinese font ({0}); install the fonts-noto-cjk package")]
    Font(String),
    /// An image could not be embedded.
    #[error("image: {0}")]
    Image(String),
    /// Writing the PDF failed.
    #[error("PDF: {0}")]
    Write(String),
}

/// One block of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// The document's title, centred.
    Title(String),
    /// A section heading.
    Heading(String),
    /// A label and its value on one line (wrapped if long).
    Field(String, String),
    /// Running text, wrapped; blank lines in it start new paragraphs.
    Text(String),
    /// An image (PNG or JPEG bytes) drawn `width` points wide, keeping its aspect ratio.
    Image {
        /// The bytes.
        bytes: Vec<u8>,
        /// "image/png" or "image/jpeg".
        mime: String,
        /// Width on the page, points.
        width: f32,
        /// Its pixel size (width, height).
        pixels: (u32, u32),
    },
    /// Vertical space, points.
    Space(f32),
}

fn font() -> Result<Font, PdfError> {
    static FONT: OnceLock<Result<Font, String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let data = std::fs::read(FONT_PATH).map_err(|e| e.to_string())?;
        Font::new(data.into(), FONT_INDEX).ok_or_else(|| "not a font collection".to_owned())
    })
    .clone()
    .map_err(PdfError::Font)
}

const PAGE: (f32, f32) = (595.0, 842.0);
const MARGIN: f32 = 56.0;

/// The width of `text` at `size`: CJK and full-width forms one em, the rest about half.
fn width(text: &str, size: f32) -> f32 {
    text.chars()
        .map(|c| {
            if u32::from(c) >= 0x2E80 {
                size
            } else {
                size * 0.56
            }
        })
        .sum()
}

/// Breaks `text` into lines no wider than `max` at `size`: at spaces when it can, anywhere
/// between CJK characters.
pub fn wrap(text: &str, size: f32, max: f32) -> Vec<String> {
    let mut lines = Vec::new();
    for paragraph in text.split('\n') {
        let mut line = String::new();
        for word in split_keep(paragraph) {
            let candidate = format!("{line}{word}");
            if width(&candidate, size) <= max || line.is_empty() {
                line = candidate;
                // A single overlong word (a hash, a URL) is cut.
                while width(&line, size) > max {
                    let mut head = String::new();
                    for c in line.chars() {
                        if width(&format!("{head}{c}"), size) > max {
                            break;
                        }
                        head.push(c);
                    }
                    if head.is_empty() {
                        break;
                    }
                    line = line[head.len()..].to_owned();
                    lines.push(head);
                }
            } else {
                lines.push(line.trim_end().to_owned());
                line = word.trim_start().to_owned();
            }
        }
        lines.push(line.trim_end().to_owned());
    }
    lines
}

/// Words for wrapping: runs of non-CJK characters with their trailing space, and single CJK
/// characters (which may break anywhere).
fn split_keep(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if u32::from(c) >= 0x2E80 {
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
            out.push(c.to_string());
        } else {
            current.push(c);
            if c == ' ' {
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Lays `blocks` out and writes the PDF.
pub fn render(blocks: &[Block], footer: &str) -> Result<Vec<u8>, PdfError> {
    let font = font()?;
    let settings =
        PageSettings::from_wh(PAGE.0, PAGE.1).ok_or_else(|| PdfError::Write("page size".into()))?;
    let text_width = PAGE.0 - 2.0 * MARGIN;
    // Positioned items, page by page: (page, x, y-baseline, size, text) or images.
    enum Item {
        Text(f32, f32, f32, String),
        Image(f32, f32, f32, f32, Image),
    }
    let mut pages: Vec<Vec<Item>> = vec![Vec::new()];
    let mut y = MARGIN;
    let bottom = PAGE.1 - MARGIN - 24.0;
    let need = |pages: &mut Vec<Vec<Item>>, y: &mut f32, height: f32| {
        if *y + height > bottom {
            pages.push(Vec::new());
            *y = MARGIN;
        }
    };
    for block in blocks {
        match block {
            Block::Title(t) => {
                let size = 20.0;
                for line in wrap(t, size, text_width) {
                    need(&mut pages, &mut y, size * 1.8);
                    y += size * 1.4;
                    let x = MARGIN + (text_width - width(&line, size)).max(0.0) / 2.0;
                    if let Some(p) = pages.last_mut() {
                        p.push(Item::Text(x, y, size, line));
                    }
                }
                y += 12.0;
            }
            Block::Heading(h) => {
                let size = 13.0;
                need(&mut pages, &mut y, size * 3.0);
                y += size * 1.9;
                if let Some(p) = pages.last_mut() {
                    p.push(Item::Text(MARGIN, y, size, h.clone()));
                }
                y += 4.0;
            }
            Block::Field(label, value) => {
                let size = 11.0;
                let label = format!("{label}：");
                let indent = width(&label, size);
                for (i, line) in wrap(value, size, text_width - indent)
                    .into_iter()
                    .enumerate()
                {
                    need(&mut pages, &mut y, size * 1.7);
                    y += size * 1.7;
                    if let Some(p) = pages.last_mut() {
                        if i == 0 {
                            p.push(Item::Text(MARGIN, y, size, label.clone()));
                        }
                        p.push(Item::Text(MARGIN + indent, y, size, line));
                    }
                }
            }
            Block::Text(t) => {
                let size = 11.0;
                for line in wrap(t, size, text_width) {
                    need(&mut pages, &mut y, size * 1.7);
                    y += size * 1.7;
                    if let Some(p) = pages.last_mut() {
                        p.push(Item::Text(MARGIN, y, size, line));
                    }
                }
            }
            Block::Image {
                bytes,
                mime,
                width: w,
                pixels,
            } => {
                let data: krilla::Data = bytes.clone().into();
                let image = match mime.as_str() {
                    "image/png" => Image::from_png(data, true),
                    "image/jpeg" => Image::from_jpeg(data, true),
                    other => Err(format!("{other}: PNG or JPEG only")),
                }
                .map_err(PdfError::Image)?;
                let h = w * pixels.1.max(1) as f32 / pixels.0.max(1) as f32;
                need(&mut pages, &mut y, h + 8.0);
                y += 4.0;
                if let Some(p) = pages.last_mut() {
                    p.push(Item::Image(MARGIN, y, *w, h, image));
                }
                y += h + 4.0;
            }
            Block::Space(s) => y += s,
        }
    }
    let total = pages.len();
    let mut document = Document::new();
    for (n, items) in pages.into_iter().enumerate() {
        let mut page = document.start_page_with(settings.clone());
        let mut surface = page.surface();
        for item in items {
            match item {
                Item::Text(x, y, size, text) => surface.draw_text(
                    Point::from_xy(x, y),
                    font.clone(),
                    size,
                    &text,
                    false,
                    TextDirection::Auto,
                ),
                Item::Image(x, y, w, h, image) => {
                    surface.push_transform(&Transform::from_translate(x, y));
                    if let Some(size) = Size::from_wh(w, h) {
                        surface.draw_image(image, size);
                    }
                    surface.pop();
                }
            }
        }
        let foot = format!("{footer}    第 {} / {total} 页", n + 1);
        surface.draw_text(
            Point::from_xy(MARGIN, PAGE.1 - MARGIN / 2.0),
            font.clone(),
            8.0,
            &foot,
            false,
            TextDirection::Auto,
        );
        surface.finish();
        page.finish();
    }
    document
        .finish()
        .map_err(|e| PdfError::Write(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_respects_the_width() {
        let text =
            "左侧基底节区见片状低密度灶，边界模糊，考虑急性脑梗死。Left basal ganglia hypodensity.";
        let lines = wrap(text, 11.0, 120.0);
        assert!(lines.len() > 2, "{lines:?}");
        assert!(lines.iter().all(|l| width(l, 11.0) <= 120.0), "{lines:?}");
        assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
        // A long unbroken token is cut rather than overflowing.
        let hash = "a".repeat(64);
        assert!(
            wrap(&hash, 11.0, 100.0)
                .iter()
                .all(|l| width(l, 11.0) <= 100.0)
        );
        assert_eq!(wrap("一\n\n二", 11.0, 100.0), ["一", "", "二"]);
    }
}
