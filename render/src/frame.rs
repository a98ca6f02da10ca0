//! Rendered frames: 8-bit grey or RGB pixels, row by row, top to bottom.

/// The pixels of a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pixels {
    /// One byte per pixel.
    Gray8(Vec<u8>),
    /// Three bytes per pixel, R G B.
    Rgb8(Vec<u8>),
}

/// A rendered frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The pixels.
    pub pixels: Pixels,
}

impl Frame {
    /// The pixel bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.pixels {
            Pixels::Gray8(b) | Pixels::Rgb8(b) => b,
        }
    }

    /// Bytes per pixel.
    pub fn channels(&self) -> usize {
        match self.pixels {
            Pixels::Gray8(_) => 1,
            Pixels::Rgb8(_) => 3,
        }
    }

    /// The grey value at (x, y) of a grey frame.
    pub fn gray_at(&self, x: u32, y: u32) -> Option<u8> {
        match &self.pixels {
            Pixels::Gray8(b) if x < self.width && y < self.height => {
                Some(b[(y * self.width + x) as usize])
            }
            _ => None,
        }
    }
}
