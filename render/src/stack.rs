//! 2D images and stacks (CR, DR, MG, US, XA, multi-frame, colour): grey frames are a volume
//! with one slice per frame and go through the same viewport path as MPR; colour (RGB) frames
//! are sampled through the viewport as they are, without window/level; palette colour maps
//! stored values to RGB first.

use std::sync::Arc;

use rayon::prelude::*;

use crate::error::RenderError;
use crate::frame::{Frame, Pixels};
use crate::math::V3;
use crate::viewport::{Plane, Viewport};
use crate::volume::{Geometry, Rescale, Volume};

/// A grey stack of `frames` images of `width` x `height` stored values, with pixel spacing
/// (mm, along a row and down a column) and 1 mm between frames, as a volume.
pub fn grey_stack(
    width: usize,
    height: usize,
    spacing: [f64; 2],
    frames: usize,
    values: impl Into<Arc<[i16]>>,
    rescale: Rescale,
) -> Result<Volume, RenderError> {
    let g = Geometry::axis_aligned(
        [width, height, frames],
        V3::default(),
        [spacing[0], spacing[1], 1.0],
    )?;
    Volume::new(g, values, rescale)
}

/// The plane showing frame `k` of a stack made by [`grey_stack`] (or of any volume, the slice
/// `k` in its own row/column orientation).
pub fn frame_plane(geometry: &Geometry, k: usize) -> Plane {
    let [nx, ny, _] = geometry.dims();
    let center = geometry.voxel_to_patient(V3::new(
        (nx as f64 - 1.0) / 2.0,
        (ny as f64 - 1.0) / 2.0,
        k as f64,
    ));
    let [a0, a1, _] = geometry.axes();
    Plane::new(center, a0, a1).unwrap_or(Plane {
        center,
        row: V3::new(1.0, 0.0, 0.0),
        col: V3::new(0.0, 1.0, 0.0),
    })
}

/// RGB frames shown as they are.
#[derive(Debug, Clone)]
pub struct ColourStack {
    width: usize,
    height: usize,
    spacing: [f64; 2],
    frames: Vec<Arc<[u8]>>,
}

impl ColourStack {
    /// Frames of `width` x `height` RGB pixels (3 bytes each) with pixel spacing in mm.
    pub fn new(
        width: usize,
        height: usize,
        spacing: [f64; 2],
        frames: Vec<Arc<[u8]>>,
    ) -> Result<Self, RenderError> {
        if width == 0 || height == 0 || frames.is_empty() {
            return Err(RenderError::Geometry(
                "a colour stack needs a size and at least one frame".into(),
            ));
        }
        if !spacing.iter().all(|s| s.is_finite() && *s > 0.0) {
            return Err(RenderError::Geometry(format!(
                "pixel spacing {spacing:?} must be positive"
            )));
        }
        let expected = width * height * 3;
        if let Some(f) = frames.iter().find(|f| f.len() != expected) {
            return Err(RenderError::DataSize {
                expected,
                got: f.len(),
            });
        }
        Ok(Self {
            width,
            height,
            spacing,
            frames,
        })
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// The plane of the image (centre at the image centre, rows to the right, columns down).
    pub fn plane(&self) -> Plane {
        Plane {
            center: V3::default(),
            row: V3::new(1.0, 0.0, 0.0),
            col: V3::new(0.0, 1.0, 0.0),
        }
    }

    /// A viewport of the given canvas size that fits the whole image.
    pub fn fit(&self, width: u32, height: u32) -> Viewport {
        let w = self.width as f64 * self.spacing[0];
        let h = self.height as f64 * self.spacing[1];
        let s = (w / f64::from(width.max(1))).max(h / f64::from(height.max(1)));
        Viewport::native(self.plane(), width, height, [s, s])
    }

    /// Renders frame `k` through `vp` with nearest sampling; outside the image is `background`.
    pub fn render(
        &self,
        k: usize,
        vp: &Viewport,
        background: [u8; 3],
    ) -> Result<Frame, RenderError> {
        vp.validate()?;
        let frame = self.frames.get(k).ok_or_else(|| RenderError::View {
            field: "frame",
            reason: format!("{k} of {}", self.frames.len()),
        })?;
        let (w, h) = (vp.width as usize, vp.height as usize);
        let (o, dx, dy) = vp.basis();
        // Image pixel coordinates of a patient point on the image plane (centre at the middle).
        let to_px = |p: V3| {
            (
                p.x / self.spacing[0] + (self.width as f64 - 1.0) / 2.0,
                p.y / self.spacing[1] + (self.height as f64 - 1.0) / 2.0,
            )
        };
        let mut out = vec![0u8; w * h * 3];
        out.par_chunks_mut(w * 3).enumerate().for_each(|(y, row)| {
            for (x, px) in row.chunks_exact_mut(3).enumerate() {
                let (fx, fy) = to_px(o + dx * x as f64 + dy * y as f64);
                let (ix, iy) = ((fx + 0.5).floor(), (fy + 0.5).floor());
                if ix >= 0.0
                    && iy >= 0.0
                    && (ix as usize) < self.width
                    && (iy as usize) < self.height
                {
                    let at = (iy as usize * self.width + ix as usize) * 3;
                    px.copy_from_slice(&frame[at..at + 3]);
                } else {
                    px.copy_from_slice(&background);
                }
            }
        });
        Ok(Frame {
            width: vp.width,
            height: vp.height,
            pixels: Pixels::Rgb8(out),
        })
    }
}

/// A palette colour lookup table (PS3.3 C.7.6.3.1.5): red, green and blue tables of equal
/// length starting at `first_mapped`, entries of `bits` bits.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    /// First stored value mapped.
    pub first_mapped: i32,
    /// Bits per entry (8 or 16).
    pub bits: u8,
    /// Red entries.
    pub red: Vec<u16>,
    /// Green entries.
    pub green: Vec<u16>,
    /// Blue entries.
    pub blue: Vec<u16>,
}

impl Palette {
    /// Maps stored values to RGB bytes.
    pub fn to_rgb(&self, stored: &[i16]) -> Result<Vec<u8>, RenderError> {
        let n = self.red.len();
        if n == 0
            || self.green.len() != n
            || self.blue.len() != n
            || !(self.bits == 8 || self.bits == 16)
        {
            return Err(RenderError::Window(
                "palette tables must be non-empty, equal in length, 8 or 16 bits".into(),
            ));
        }
        let shift = self.bits - 8;
        let mut out = Vec::with_capacity(stored.len() * 3);
        for s in stored {
            let idx = (i32::from(*s) - self.first_mapped).clamp(0, n as i32 - 1) as usize;
            for t in [&self.red, &self.green, &self.blue] {
                out.push((t[idx] >> shift) as u8);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_passes_through_with_flips() {
        // 2x1 image: red, blue.
        let img = ColourStack::new(
            2,
            1,
            [1.0, 1.0],
            vec![Arc::from(vec![255u8, 0, 0, 0, 0, 255])],
        )
        .unwrap();
        let vp = Viewport::native(img.plane(), 2, 1, [1.0, 1.0]);
        assert_eq!(
            img.render(0, &vp, [0; 3]).unwrap().bytes(),
            &[255, 0, 0, 0, 0, 255]
        );
        let flipped = Viewport { flip_h: true, ..vp };
        assert_eq!(
            img.render(0, &flipped, [0; 3]).unwrap().bytes(),
            &[0, 0, 255, 255, 0, 0]
        );
        assert!(img.render(1, &vp, [0; 3]).is_err());
        assert!(ColourStack::new(2, 1, [1.0, 1.0], vec![Arc::from(vec![0u8; 5])]).is_err());
    }

    #[test]
    fn palette_maps_and_clamps() {
        let p = Palette {
            first_mapped: 1,
            bits: 16,
            red: vec![0, 0xff00],
            green: vec![0x1000, 0],
            blue: vec![0, 0],
        };
        assert_eq!(
            p.to_rgb(&[0, 2, 9]).unwrap(),
            vec![0, 0x10, 0, 0xff, 0, 0, 0xff, 0, 0]
        );
    }
}
